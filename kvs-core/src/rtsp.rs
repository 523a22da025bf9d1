//! RTSP camera ingest (feature `rtsp`): pulls H.264/H.265 video, with AAC
//! or G.711 audio when the camera has it, from an RTSP URL with the
//! [`retina`] client (a Rust RTSP client built from years of real cameras'
//! quirks: we do not write our own) and feeds a [`Producer`].
//!
//! - **Timestamps** from RTP (retina extends the 32-bit timestamps, so
//!   wrap-around is handled): each stream of a connection is placed on the
//!   wall clock where its first frame arrived — or, when an RTCP sender
//!   report for it came first, where the report puts it — and advances
//!   with its RTP clock from there; a reconnection starts a new anchor, so
//!   an outage is a gap.
//! - **Reconnects** on its own, with backoff (0.5 s doubling to
//!   `max_backoff`), while the producer keeps its buffer and its connection
//!   to KVS; each reconnection is an event. The tracks must stay the same
//!   (a camera that changes codec ends the ingest with an error).
//! - **Frames that cannot be decoded are never handed on**: after a
//!   (re)connection, and after lost packets (retina's `loss` count), video
//!   is dropped up to the next key frame, counted in events and in the
//!   report; a camera that sends no key frame for `key_frame_warning` is
//!   reported once per wait.
//! - **Parameter-set changes** (a camera reconfigured) reach the producer
//!   in band: video goes as Annex-B with the parameter sets in front of each
//!   key frame, and the producer starts a fragment with a new stream header
//!   where they change.
//! - **Credentials** in the URL are taken out of it before anything else
//!   sees it: logs, events and errors name the URL without them.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tokio::sync::{mpsc, watch};

use crate::mkv::builder::{Payload, TrackConfig};
use crate::producer::{Producer, ProducerBuilder, ProducerError, ProducerEvent};
use crate::protocol::producer::Frame;

/// How an ingest runs.
#[derive(Debug, Clone)]
pub struct RtspOptions {
    /// RTP over the RTSP connection (`Tcp`, the default: works through
    /// NAT and firewalls) or over UDP.
    pub transport: RtspTransport,
    /// Longest wait between reconnection attempts (default 10 s).
    pub max_backoff: Duration,
    /// Attempts at the first connection before giving up (default 5): a
    /// wrong URL or password should fail, not retry forever. Later
    /// disconnections are retried without end.
    pub first_connect_attempts: u32,
    /// A video stream without a key frame for this long is reported
    /// ([`RtspEvent::NoKeyFrame`]; default 10 s).
    pub key_frame_warning: Duration,
    /// How long [`ingest`] waits at the end for every fragment to be
    /// acknowledged (default 30 s).
    pub finish_timeout: Duration,
}

impl Default for RtspOptions {
    fn default() -> Self {
        RtspOptions {
            transport: RtspTransport::Tcp,
            max_backoff: Duration::from_secs(10),
            first_connect_attempts: 5,
            key_frame_warning: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(30),
        }
    }
}

/// The RTP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtspTransport {
    /// Interleaved on the RTSP TCP connection.
    Tcp,
    /// UDP (retina: no reorder buffer; suited to a LAN).
    Udp,
}

/// What an ingest reports as it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RtspEvent {
    /// Connected and playing.
    Connected {
        /// 0 for the first connection, then 1, 2… for reconnections.
        reconnection: u32,
        /// The media taken, e.g. `video/h264`, `audio/mpeg4-generic`.
        media: Vec<String>,
    },
    /// The camera connection ended; reconnection attempts follow, the
    /// first after `delay` (one event per outage).
    Reconnecting {
        /// Why it ended (the URL named without credentials).
        error: String,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// Video frames that could not be decoded were dropped, up to a key frame.
    FramesDropped {
        /// How many.
        frames: usize,
        /// `"lost packets"` or `"before the first key frame"`.
        reason: &'static str,
    },
    /// No key frame has come for this long.
    NoKeyFrame {
        /// Since the last one (or the connection).
        waited: Duration,
    },
    /// An event of the producer (ACKs, errors, KVS reconnections).
    Producer(ProducerEvent),
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtspReport {
    /// Frames put to the producer (video and audio).
    pub frames: u64,
    /// Video frames dropped (lost packets, before a key frame).
    pub dropped: u64,
    /// Reconnections to the camera.
    pub reconnections: u32,
}

/// Why an ingest stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtspError {
    /// The URL is not an `rtsp://` URL.
    #[error("not an RTSP URL: {0}")]
    BadUrl(String),
    /// The first connection failed every attempt (wrong host, path or
    /// credentials).
    #[error("cannot play {url}: {error}")]
    Connect {
        /// The URL, without credentials.
        url: String,
        /// The last attempt's error.
        error: String,
    },
    /// The camera has no H.264 or H.265 video.
    #[error("{url} has no H.264 or H.265 video stream")]
    NoVideo {
        /// The URL, without credentials.
        url: String,
    },
    /// The camera's streams changed across a reconnection.
    #[error("{url} changed its streams ({reason}); a producer's tracks cannot change")]
    TracksChanged {
        /// The URL, without credentials.
        url: String,
        /// What changed.
        reason: String,
    },
    /// The producer failed.
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

/// How a URL is named in errors, events and logs: without credentials (taken
/// out before) and without its query, where some cameras take a password.
pub fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// An error's first line (a server that answers something else than RTSP
/// gets a hex dump of it), with the URL's query, if it appears, hidden.
fn plain(error: &str, url: &url::Url) -> String {
    let first = error.lines().next().unwrap_or_default().trim();
    match url.query() {
        Some(q) if !q.is_empty() => first.replace(q, "…"),
        _ => first.to_owned(),
    }
}

/// Whether the camera refused the request for good (RTSP 401 after the
/// credentials were tried, 403, 404: a wrong password or path), which no
/// retry of the first connection will change.
fn refused(e: &RtspError) -> bool {
    matches!(e, RtspError::Connect { error, .. }
        if [" 401 ", "401 response", "403 response", "404 response"]
            .iter()
            .any(|s| error.contains(s)))
}

/// `url` without its user and password, and those as retina credentials.
///
/// Errors: [`RtspError::BadUrl`].
pub fn split_credentials(
    url: &str,
) -> Result<(url::Url, Option<retina::client::Credentials>), RtspError> {
    let mut u = url::Url::parse(url).map_err(|e| {
        // Never echo the input: it may hold a password.
        RtspError::BadUrl(format!("{e}"))
    })?;
    if u.scheme() != "rtsp" {
        return Err(RtspError::BadUrl(format!(
            "the scheme is {}, not rtsp",
            u.scheme()
        )));
    }
    let creds = (!u.username().is_empty()).then(|| retina::client::Credentials {
        username: percent_decode(u.username()),
        password: percent_decode(u.password().unwrap_or_default()),
    });
    let _ = u.set_username("");
    let _ = u.set_password(None);
    Ok((u, creds))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// One stream taken from the camera.
struct Taken {
    /// Index in the session's streams.
    index: usize,
    /// The producer's track number.
    track: u64,
    video: bool,
    media: String,
}

/// A camera session playing, with the streams taken.
struct Playing {
    demuxed: retina::client::Demuxed,
    taken: Vec<Taken>,
    tracks: Vec<TrackConfig>,
}

async fn connect(
    url: &url::Url,
    creds: &Option<retina::client::Credentials>,
    transport: RtspTransport,
) -> Result<Playing, RtspError> {
    let fail = |e: &dyn std::fmt::Display| RtspError::Connect {
        url: shown(url),
        error: plain(&e.to_string(), url),
    };
    let opts = SessionOptions::default()
        .creds(creds.clone())
        .user_agent("kvs".to_owned());
    let mut session = Session::describe(url.clone(), opts)
        .await
        .map_err(|e| fail(&e))?;
    let mut taken = Vec::new();
    let mut tracks = Vec::new();
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"));
    let Some(video) = video else {
        return Err(RtspError::NoVideo { url: shown(url) });
    };
    let audio = session.streams().iter().position(|s| {
        s.media() == "audio" && matches!(s.encoding_name(), "mpeg4-generic" | "pcmu" | "pcma")
    });
    for (index, is_video) in [(Some(video), true), (audio, false)] {
        let Some(index) = index else { continue };
        let s = &session.streams()[index];
        let number = tracks.len() as u64 + 1;
        let media = format!("{}/{}", s.media(), s.encoding_name());
        let track = if is_video {
            let id = if s.encoding_name() == "h264" {
                crate::codec::h264::CODEC_ID
            } else {
                crate::codec::h265::CODEC_ID
            };
            // CodecPrivate and size from the parameter sets in band.
            let mut t = TrackConfig::video(number, id, Bytes::new(), 0, 0);
            t.codec_private = None;
            t
        } else if s.encoding_name() == "mpeg4-generic" {
            let Some(ParametersRef::Audio(p)) = s.parameters() else {
                tracing::warn!(url = %shown(url), "AAC stream without its configuration; audio left out");
                continue;
            };
            TrackConfig::audio(
                number,
                crate::codec::aac::CODEC_ID,
                Some(Bytes::copy_from_slice(p.extra_data())),
                f64::from(p.clock_rate()),
                p.channels().get().min(255) as u8,
            )
        } else {
            let law = if s.encoding_name() == "pcmu" {
                crate::codec::g711::Law::MuLaw
            } else {
                crate::codec::g711::Law::ALaw
            };
            let channels = s.channels().map_or(1, |c| c.get().min(255) as u8);
            TrackConfig::g711(number, law, s.clock_rate_hz(), channels)
        };
        let t = match transport {
            RtspTransport::Tcp => Transport::Tcp(Default::default()),
            RtspTransport::Udp => Transport::Udp(Default::default()),
        };
        let format = FrameFormat {
            h26x_framing: retina::codec::h26x::Framing::AnnexB,
            parameter_set_insertion: retina::codec::ParameterSetInsertion::EachKeyFrame,
            aac_framing: retina::codec::aac::Framing::Raw,
        };
        session
            .setup(
                index,
                SetupOptions::default().transport(t).frame_format(format),
            )
            .await
            .map_err(|e| fail(&e))?;
        taken.push(Taken {
            index,
            track: number,
            video: is_video,
            media,
        });
        tracks.push(track);
    }
    let playing = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| fail(&e))?;
    let demuxed = playing.demuxed().map_err(|e| fail(&e))?;
    Ok(Playing {
        demuxed,
        taken,
        tracks,
    })
}

/// What becomes of a video frame.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    /// Put it; `dropped`: the frames dropped before it, and why.
    Pass {
        dropped: Option<(usize, &'static str)>,
    },
    /// Drop it: it cannot be decoded.
    Drop,
}

/// Video frames that can be decoded, and nothing else: after a connection
/// starts, and after packets are lost (retina's `loss`: packets missing
/// before this frame), frames wait for the next key frame. Also notices a
/// camera that sends no key frame for a long time. Sans-IO: the caller
/// gives the time.
#[derive(Debug)]
struct KeyFrameGate {
    need_key: bool,
    dropped: usize,
    reason: &'static str,
    last_key: Instant,
    warned: bool,
}

impl KeyFrameGate {
    fn new(now: Instant) -> Self {
        KeyFrameGate {
            need_key: true,
            dropped: 0,
            reason: "before the first key frame",
            last_key: now,
            warned: false,
        }
    }

    /// A video frame: whether it goes on.
    fn video(&mut self, key: bool, loss: u16, now: Instant) -> Gate {
        if key {
            // A key frame decodes whatever was lost before it.
            self.last_key = now;
            self.warned = false;
            let dropped =
                (self.need_key && self.dropped > 0).then_some((self.dropped, self.reason));
            self.need_key = false;
            self.dropped = 0;
            return Gate::Pass { dropped };
        }
        if loss > 0 && !self.need_key {
            self.need_key = true;
            self.reason = "lost packets";
        }
        if self.need_key {
            self.dropped += 1;
            Gate::Drop
        } else {
            Gate::Pass { dropped: None }
        }
    }

    /// How long since the last key frame, once per wait, when it is
    /// `warning` or more.
    fn overdue(&mut self, now: Instant, warning: Duration) -> Option<Duration> {
        let waited = now.saturating_duration_since(self.last_key);
        (waited >= warning && !self.warned).then(|| {
            self.warned = true;
            waited
        })
    }
}

/// Where a stream's frames go on the producer's timeline, for one
/// connection.
#[derive(Clone, Copy)]
struct Anchor {
    /// RTP timestamp (extended) and the producer time (since the
    /// producer's start) it stands for.
    rtp: i64,
    at: Duration,
    rate: u32,
}

impl Anchor {
    fn pts(&self, rtp: i64) -> Duration {
        let delta_ns = (i128::from(rtp - self.rtp) * 1_000_000_000) / i128::from(self.rate.max(1));
        let ns = self.at.as_nanos() as i128 + delta_ns;
        Duration::from_nanos(ns.max(0) as u64)
    }
}

/// Reads `url` and puts its frames with a producer made from `builder`
/// (with the camera's tracks added), until `stop` turns true or a fatal
/// error; then finishes the producer (every fragment acknowledged, or
/// `finish_timeout`). Events go to `events` as they happen.
///
/// Errors: [`RtspError::BadUrl`], [`RtspError::Connect`] when the first
/// connection fails `first_connect_attempts` times, [`RtspError::NoVideo`],
/// [`RtspError::TracksChanged`], [`RtspError::Producer`].
pub async fn ingest(
    url: &str,
    builder: ProducerBuilder,
    opts: RtspOptions,
    events: mpsc::UnboundedSender<RtspEvent>,
    mut stop: watch::Receiver<bool>,
) -> Result<RtspReport, RtspError> {
    let (url, creds) = split_credentials(url)?;
    let mut report = RtspReport::default();
    // The first connection, retried a few times.
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 0;
    let mut playing = loop {
        attempt += 1;
        match connect(&url, &creds, opts.transport).await {
            Ok(p) => break p,
            Err(e @ RtspError::NoVideo { .. }) => return Err(e),
            Err(e) if attempt >= opts.first_connect_attempts || refused(&e) => return Err(e),
            Err(e) => {
                tracing::info!(error = %e, "RTSP connection failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Ok(report),
                }
                backoff = (backoff * 2).min(opts.max_backoff);
            }
        }
    };
    let start = SystemTime::now();
    let mut b = builder.start_time(start);
    for t in &playing.tracks {
        b = b.track(t.clone());
    }
    let producer = b.build().await?;
    let tracks: Vec<(u64, String)> = playing
        .taken
        .iter()
        .map(|t| (t.track, t.media.clone()))
        .collect();
    {
        let mut sub = producer.subscribe();
        let ev = events.clone();
        tokio::spawn(async move {
            while let Some(e) = sub.recv().await {
                if ev.send(RtspEvent::Producer(e)).is_err() {
                    break;
                }
            }
        });
    }
    let mut last_pts: Vec<Option<Duration>> = vec![None; tracks.len()];
    loop {
        let _ = events.send(RtspEvent::Connected {
            reconnection: report.reconnections,
            media: playing.taken.iter().map(|t| t.media.clone()).collect(),
        });
        let ended = run_connection(
            &mut playing,
            &producer,
            start,
            &opts,
            &events,
            &mut report,
            &mut last_pts,
            &mut stop,
        )
        .await?;
        let Some(error) = ended else { break };
        // Reconnect, with backoff, while the producer keeps its buffer: one
        // event per outage, the attempts in the log.
        let mut delay = Duration::from_millis(500);
        let _ = events.send(RtspEvent::Reconnecting {
            error: error.clone(),
            delay,
        });
        playing = loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {
                    producer.finish(opts.finish_timeout).await?;
                    return Ok(report);
                }
            }
            match connect(&url, &creds, opts.transport).await {
                Ok(p) => break p,
                Err(e @ RtspError::NoVideo { .. }) => return Err(e),
                Err(e) => {
                    tracing::info!(error = %e, "RTSP reconnection failed");
                    delay = (delay * 2).min(opts.max_backoff);
                }
            }
        };
        let now: Vec<(u64, String)> = playing
            .taken
            .iter()
            .map(|t| (t.track, t.media.clone()))
            .collect();
        if now != tracks {
            return Err(RtspError::TracksChanged {
                url: shown(&url),
                reason: format!("{tracks:?} then {now:?}"),
            });
        }
        report.reconnections += 1;
    }
    producer.finish(opts.finish_timeout).await?;
    Ok(report)
}

/// Puts one connection's frames; `Ok(None)` when stopped, `Ok(Some(error))`
/// when the camera connection ended.
#[allow(clippy::too_many_arguments)]
async fn run_connection(
    playing: &mut Playing,
    producer: &Producer,
    start: SystemTime,
    opts: &RtspOptions,
    events: &mpsc::UnboundedSender<RtspEvent>,
    report: &mut RtspReport,
    last_pts: &mut [Option<Duration>],
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<String>, RtspError> {
    let mut anchors: Vec<Option<Anchor>> = vec![None; playing.taken.len()];
    // Wall clock from RTCP sender reports, per stream: (RTP, NTP as
    // SystemTime), used for a stream whose first frame has not come yet.
    let mut reports: Vec<Option<(i64, SystemTime)>> = vec![None; playing.taken.len()];
    // Video waits for a key frame (at the start, and after lost packets).
    let mut gate = KeyFrameGate::new(Instant::now());
    loop {
        let item = tokio::select! {
            item = playing.demuxed.next() => item,
            _ = stop.changed() => return Ok(None),
            () = tokio::time::sleep(opts.key_frame_warning.min(Duration::from_secs(1))) => {
                if let Some(waited) = gate.overdue(Instant::now(), opts.key_frame_warning) {
                    let _ = events.send(RtspEvent::NoKeyFrame { waited });
                }
                continue;
            }
        };
        let item = match item {
            None => return Ok(Some("the camera ended the stream".into())),
            Some(Err(e)) => {
                return Ok(Some(
                    e.to_string().lines().next().unwrap_or_default().to_owned(),
                ))
            }
            Some(Ok(i)) => i,
        };
        let (stream_id, ts, data, is_key, loss) = match item {
            CodecItem::VideoFrame(f) => {
                let (s, ts, key, loss) = (
                    f.stream_id(),
                    f.timestamp(),
                    f.is_random_access_point(),
                    f.loss(),
                );
                (s, ts, Bytes::from(f.into_data()), Some(key), loss)
            }
            CodecItem::AudioFrame(f) => (
                f.stream_id(),
                f.timestamp(),
                Bytes::copy_from_slice(f.data()),
                None,
                f.loss(),
            ),
            CodecItem::Rtcp(r) => {
                let Some(i) = playing.taken.iter().position(|t| t.index == r.stream_id()) else {
                    continue;
                };
                if let (Some(rtp), Some(Ok(Some(sr)))) = (
                    r.rtp_timestamp(),
                    r.pkts().next().map(|p| p.as_sender_report()),
                ) {
                    let ntp = sr.ntp_timestamp().0;
                    // NTP: seconds since 1900 in the top 32 bits.
                    let secs = (ntp >> 32).saturating_sub(2_208_988_800);
                    let frac = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
                    let wall = std::time::UNIX_EPOCH + Duration::new(secs, frac as u32);
                    reports[i] = Some((rtp.timestamp(), wall));
                }
                continue;
            }
            _ => continue,
        };
        let Some(i) = playing.taken.iter().position(|t| t.index == stream_id) else {
            continue;
        };
        let taken = &playing.taken[i];
        if let Some(key) = is_key {
            match gate.video(key, loss, Instant::now()) {
                Gate::Drop => {
                    report.dropped += 1;
                    continue;
                }
                Gate::Pass { dropped } => {
                    if let Some((frames, reason)) = dropped {
                        let _ = events.send(RtspEvent::FramesDropped { frames, reason });
                    }
                }
            }
        }
        let rate = ts.clock_rate().get();
        let anchor = *anchors[i].get_or_insert_with(|| {
            // Where this stream starts on the producer's timeline: its
            // sender report's wall clock if one came, else now.
            let wall = match reports[i] {
                Some((rtp, at)) => {
                    let d = (ts.timestamp() - rtp) as f64 / f64::from(rate);
                    if d >= 0.0 {
                        at + Duration::from_secs_f64(d)
                    } else {
                        at - Duration::from_secs_f64(-d)
                    }
                }
                None => SystemTime::now(),
            };
            Anchor {
                rtp: ts.timestamp(),
                at: wall.duration_since(start).unwrap_or_default(),
                rate,
            }
        });
        let mut pts = anchor.pts(ts.timestamp());
        // Never back in time on a track (a camera clock that jumps).
        if let Some(last) = last_pts[i] {
            if pts <= last {
                pts = last + Duration::from_millis(1);
            }
        }
        last_pts[i] = Some(pts);
        let payload = if taken.video {
            Payload::AnnexB(data)
        } else {
            Payload::Raw(data)
        };
        producer
            .put_frame(Frame {
                track: taken.track,
                pts,
                dts: None,
                key: is_key.unwrap_or(true),
                payload,
            })
            .await?;
        report.frames += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decodable_video_goes_on() {
        let t0 = Instant::now();
        let mut g = KeyFrameGate::new(t0);
        // Joined mid-GOP: two frames wait for the key frame, then reported.
        assert_eq!(g.video(false, 0, t0), Gate::Drop);
        assert_eq!(g.video(false, 0, t0), Gate::Drop);
        assert_eq!(
            g.video(true, 0, t0),
            Gate::Pass {
                dropped: Some((2, "before the first key frame"))
            }
        );
        assert_eq!(g.video(false, 0, t0), Gate::Pass { dropped: None });
        // Packets lost before a frame: it and the rest of the GOP go.
        assert_eq!(g.video(false, 3, t0), Gate::Drop);
        assert_eq!(g.video(false, 0, t0), Gate::Drop);
        assert_eq!(
            g.video(true, 0, t0),
            Gate::Pass {
                dropped: Some((2, "lost packets"))
            }
        );
        // Loss just before a key frame costs nothing.
        assert_eq!(g.video(true, 5, t0), Gate::Pass { dropped: None });
    }

    #[test]
    fn a_long_wait_for_a_key_frame_is_reported_once() {
        let t0 = Instant::now();
        let mut g = KeyFrameGate::new(t0);
        let w = Duration::from_secs(10);
        assert_eq!(g.overdue(t0 + Duration::from_secs(9), w), None);
        assert_eq!(g.overdue(t0 + w, w), Some(w));
        assert_eq!(g.overdue(t0 + Duration::from_secs(30), w), None, "once");
        let _ = g.video(true, 0, t0 + Duration::from_secs(31));
        assert_eq!(
            g.overdue(t0 + Duration::from_secs(41), w),
            Some(w),
            "again after a key frame"
        );
    }

    #[test]
    fn credentials_leave_the_url() {
        let (u, c) = split_credentials("rtsp://cam:s3cret%20pw@10.0.0.2:554/live?x=1").unwrap();
        assert_eq!(u.as_str(), "rtsp://10.0.0.2:554/live?x=1");
        let c = c.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("cam", "s3cret pw")
        );
        assert!(split_credentials("rtsp://10.0.0.2/live")
            .unwrap()
            .1
            .is_none());
        let e = split_credentials("http://u:s3cret@h/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        let e = split_credentials("rtsp://u:s3cret@[bad")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
