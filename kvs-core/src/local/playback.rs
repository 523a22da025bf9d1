//! GetClip, HLS and DASH on the local endpoint: stored fragments turned into
//! MP4 (one progressive file per clip; fragmented MP4 segments, one per KVS
//! fragment, behind HLS playlists and DASH manifests).
//!
//! Streaming sessions work as the service's do: the session URL carries a
//! token, and the playback requests (`GET` playlists, manifests, init and
//! media segments) need no signature, only a token that has not expired.
//! HLS segments are fragmented MP4 or, when asked for, MPEG-TS (H.264/H.265
//! and AAC); every session plays on one timeline, producer time since the
//! stream's first fragment, whatever timecodes each upload used.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::media::{in_range, time_range as range, Media, Stored};
use super::store::{ApiError, StreamMeta};
use crate::client::ServiceException;
use crate::mkv::fragment::{Fragment, FragmentAssembler};
use crate::mp4::{self, Mp4Error, Mp4Track};
use crate::mpegts::{self, TsTrack};

/// Fragments per clip, at most (the service's limit).
const CLIP_MAX_FRAGMENTS: usize = 200;
/// Fragment bytes per clip, at most (the service's limit).
const CLIP_MAX_BYTES: u64 = 100 * 1024 * 1024;

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ServiceException::InvalidArgument, m)
}

fn mp4_error(e: Mp4Error) -> ApiError {
    let exception = match e {
        Mp4Error::UnsupportedCodec { .. } => ServiceException::UnsupportedStreamMediaType,
        Mp4Error::MissingCodecPrivate { .. } => ServiceException::MissingCodecPrivateData,
        _ => ServiceException::InvalidCodecPrivateData,
    };
    ApiError::new(exception, e.to_string())
}

/// A stored fragment parsed back.
pub(crate) fn parse(f: &Stored) -> Result<Fragment, ApiError> {
    let mut asm = FragmentAssembler::default();
    for part in &f.doc {
        asm.push(part.clone());
    }
    asm.finish();
    asm.next_fragment().ok().flatten().ok_or_else(|| {
        ApiError::new(
            ServiceException::InvalidMediaFrame,
            format!("fragment {} cannot be read back", f.number),
        )
    })
}

fn need_retention(meta: &StreamMeta, api: &str) -> Result<(), ApiError> {
    if meta.retention_hours == 0 {
        return Err(ApiError::new(
            ServiceException::NoDataRetention,
            format!(
                "{api} needs a stream that retains data; {} has a retention of 0",
                meta.name
            ),
        ));
    }
    Ok(())
}

/// GetClip: the fragments in the range as one MP4 file.
pub(crate) fn get_clip(
    meta: &StreamMeta,
    media: Option<&Media>,
    req: &Value,
) -> Result<Vec<Bytes>, ApiError> {
    need_retention(meta, "GetClip")?;
    let sel = req
        .get("ClipFragmentSelector")
        .ok_or_else(|| bad("ClipFragmentSelector is required"))?;
    if sel.get("FragmentSelectorType").is_none() {
        return Err(bad("ClipFragmentSelector.FragmentSelectorType is required"));
    }
    let (by_server, start, end) = range(sel, true, true)?;
    let end = end.unwrap_or(start);
    // GetClip's model: the end "must be later than the StartTimestamp".
    if end <= start {
        return Err(bad("EndTimestamp must be later than StartTimestamp"));
    }
    if end - start > 24 * 3600 * 1000 {
        return Err(bad("the clip range is longer than 24 hours"));
    }
    let mut bytes = 0u64;
    let chosen: Vec<&Arc<Stored>> = media
        .map(|m| {
            playable(
                m.fragments
                    .iter()
                    .filter(|f| in_range(f, by_server, start, Some(end))),
            )
            .into_iter()
            .take(CLIP_MAX_FRAGMENTS)
            .take_while(|f| {
                bytes += f.size;
                bytes <= CLIP_MAX_BYTES
            })
            .collect()
        })
        .unwrap_or_default();
    if chosen.is_empty() {
        return Err(ApiError::new(
            ServiceException::ResourceNotFound,
            "No fragments found in the requested time range.",
        ));
    }
    // Every fragment on the producer-time timeline (its cluster timecode
    // may restart at 0 on each RELATIVE upload), gaps kept as gaps.
    let frags = chosen
        .iter()
        .map(|s| {
            let mut f = parse(s)?;
            let offset = frame_offset_ns(&f, s);
            for fr in &mut f.frames {
                fr.timestamp_ns += offset;
            }
            Ok(f)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let tracks = Mp4Track::from_mkv(&frags[0].tracks).map_err(mp4_error)?;
    let base = frags[0]
        .frames
        .iter()
        .map(|f| f.timestamp_ns)
        .min()
        .unwrap_or(0);
    let mut samples = Vec::new();
    for (i, f) in frags.iter().enumerate() {
        let end = frags
            .get(i + 1)
            .and_then(|n| n.frames.iter().map(|f| f.timestamp_ns).min());
        samples.extend(mp4::samples(&tracks, &f.frames, base, end));
    }
    Ok(mp4::progressive(&tracks, &samples))
}

/// HLS or DASH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Hls,
    Dash,
}

/// A streaming session behind a session URL.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    protocol: Protocol,
    stream: String,
    mode: Mode,
    by_server: bool,
    start: u64,
    end: Option<u64>,
    max: usize,
    expires: Instant,
    /// HLS with MPEG-TS segments rather than fragmented MP4.
    ts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    LiveReplay,
    OnDemand,
}

/// Open streaming sessions by token.
#[derive(Debug, Default)]
pub(crate) struct Sessions(std::sync::Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Get{HLS,DASH}StreamingSessionURL: checks the request, opens a session
    /// and returns its URL.
    pub(crate) fn open(
        &self,
        protocol: Protocol,
        meta: &StreamMeta,
        media: Option<&Media>,
        req: &Value,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let api = match protocol {
            Protocol::Hls => "GetHLSStreamingSessionURL",
            Protocol::Dash => "GetDASHStreamingSessionURL",
        };
        need_retention(meta, api)?;
        let mode = match req.get("PlaybackMode").and_then(Value::as_str) {
            None | Some("LIVE") => Mode::Live,
            Some("LIVE_REPLAY") => Mode::LiveReplay,
            Some("ON_DEMAND") => Mode::OnDemand,
            Some(m) => return Err(bad(format!("unknown PlaybackMode {m}"))),
        };
        let ts = match (protocol, req.get("ContainerFormat").and_then(Value::as_str)) {
            (Protocol::Dash, _) | (Protocol::Hls, None | Some("FRAGMENTED_MP4")) => false,
            (Protocol::Hls, Some("MPEG_TS")) => true,
            (_, Some(c)) => return Err(bad(format!("unknown ContainerFormat {c}"))),
        };
        let expires = match req.get("Expires") {
            None | Some(Value::Null) => 300,
            Some(v) => v
                .as_u64()
                .filter(|s| (300..=43_200).contains(s))
                .ok_or_else(|| bad("Expires must be 300 to 43200 seconds"))?,
        };
        let (max_key, sel_key) = match protocol {
            Protocol::Hls => ("MaxMediaPlaylistFragmentResults", "HLSFragmentSelector"),
            Protocol::Dash => ("MaxManifestFragmentResults", "DASHFragmentSelector"),
        };
        let max = match req.get(max_key) {
            None | Some(Value::Null) => {
                if mode == Mode::Live {
                    5
                } else {
                    1000
                }
            }
            Some(v) => v
                .as_u64()
                .filter(|m| (1..=5000).contains(m))
                .ok_or_else(|| bad(format!("{max_key} must be 1 to 5000")))?
                as usize,
        };
        let sel = req.get(sel_key).filter(|s| !s.is_null());
        let (by_server, start, end) = match (mode, sel) {
            (Mode::Live, _) => (true, 0, None),
            (_, None) => {
                return Err(bad(format!(
                    "{sel_key} with a TimestampRange is required for {mode:?}"
                )))
            }
            (_, Some(sel)) => range(sel, true, mode == Mode::OnDemand)?,
        };
        // The HLS and DASH models: an end, when given, "must be later than
        // the StartTimestamp".
        if end.is_some_and(|e| e <= start) {
            return Err(bad("EndTimestamp must be later than StartTimestamp"));
        }
        let session = Session {
            protocol,
            stream: meta.name.clone(),
            mode,
            by_server,
            start,
            end,
            max,
            expires: Instant::now() + Duration::from_secs(expires),
            ts,
        };
        let frags = session.fragments(media);
        if frags.is_empty() {
            return Err(ApiError::new(
                ServiceException::ResourceNotFound,
                "No fragments found for the requested playback mode and range.",
            ));
        }
        let tracks = &parse(frags[0])?.tracks;
        if ts {
            TsTrack::from_mkv(tracks).map_err(mp4_error)?;
        } else {
            Mp4Track::from_mkv(tracks).map_err(mp4_error)?;
        }
        let token = format!("CiR{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.clone(), session);
        Ok(match protocol {
            Protocol::Hls => {
                json!({"HLSStreamingSessionURL": format!("{base_url}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}")})
            }
            Protocol::Dash => {
                json!({"DASHStreamingSessionURL": format!("{base_url}/dash/v1/getDASHManifest.mpd?SessionToken={token}")})
            }
        })
    }

    /// The session of a playback request's token.
    pub(crate) fn find(&self, token: Option<&str>) -> Result<Session, ApiError> {
        let denied = |m: &str| ApiError::new(ServiceException::NotAuthorized, m);
        let token = token.ok_or_else(|| bad("SessionToken is required"))?;
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|_, s| s.expires > Instant::now());
        all.get(token)
            .cloned()
            .ok_or_else(|| denied("Streaming session token is expired or not valid."))
    }
}

impl Session {
    /// The fragments the session shows now, oldest first.
    fn fragments<'a>(&self, media: Option<&'a Media>) -> Vec<&'a Arc<Stored>> {
        let Some(m) = media else { return Vec::new() };
        match self.mode {
            Mode::Live => {
                let n = m.fragments.len();
                playable(m.fragments[n.saturating_sub(self.max)..].iter())
            }
            _ => playable(
                m.fragments
                    .iter()
                    .filter(|f| in_range(f, self.by_server, self.start, self.end)),
            )
            .into_iter()
            .take(self.max)
            .collect(),
        }
    }

    /// The stream the session plays.
    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    fn ended(&self) -> bool {
        self.mode == Mode::OnDemand || (self.mode == Mode::LiveReplay && self.end.is_some())
    }
}

/// The fragments to play, in producer-time order, with duplicates resolved
/// as the service documents them (of fragments covering the same producer
/// time, the one ingested first is kept). Two fragments cover the same time
/// when they start together or overlap by more than half of the shorter
/// one — not when one's last audio frames run a few ms into the next's
/// start. `fragments` come in ingest order.
pub(crate) fn playable<'a>(
    fragments: impl Iterator<Item = &'a Arc<Stored>>,
) -> Vec<&'a Arc<Stored>> {
    // Kept spans by start: (end, fragment), end = start + duration.
    let mut kept: std::collections::BTreeMap<u64, (u64, &'a Arc<Stored>)> =
        std::collections::BTreeMap::new();
    let same_time = |(a, b): (u64, u64), (c, d): (u64, u64)| {
        let overlap = b.min(d).saturating_sub(a.max(c));
        a == c || overlap.saturating_mul(2) > (b - a).min(d - c)
    };
    for f in fragments {
        let span = (f.producer_ms, f.producer_ms.saturating_add(f.duration_ms));
        let before = kept
            .range(..=span.0)
            .next_back()
            .map(|(s, (e, _))| (*s, *e));
        let after = kept.range(span.0..).next().map(|(s, (e, _))| (*s, *e));
        let duplicate = [before, after]
            .into_iter()
            .flatten()
            .any(|k| same_time(span, k));
        if !duplicate {
            kept.insert(span.0, (span.1, f));
        }
    }
    kept.into_values().map(|(_, f)| f).collect()
}

/// Seconds each fragment lasts: to the next stored fragment's producer
/// timestamp, or its own span for the newest one.
fn durations(all: &[&Arc<Stored>], media: &Media) -> Vec<f64> {
    all.iter()
        .map(|f| {
            let next = media
                .fragments
                .iter()
                .find(|n| n.producer_ms > f.producer_ms)
                .map(|n| n.producer_ms - f.producer_ms);
            next.unwrap_or(f.duration_ms.max(1)) as f64 / 1000.0
        })
        .collect()
}

/// An RFC 6381 codecs string for the tracks, when every track's is known.
fn codecs(frag: &Fragment) -> Option<String> {
    let mut out = Vec::new();
    for t in frag.tracks.iter() {
        let p = t.codec_private.as_deref().unwrap_or_default();
        out.push(match t.codec_id.as_str() {
            "V_MPEG4/ISO/AVC" if p.len() >= 4 => {
                format!("avc1.{:02x}{:02x}{:02x}", p[1], p[2], p[3])
            }
            c if c.starts_with("A_AAC") && !p.is_empty() => format!("mp4a.40.{}", p[0] >> 3),
            _ => return None,
        });
    }
    Some(out.join(","))
}

/// Producer time (ms) of the stream's first fragment: where session
/// timelines start.
fn origin_ms(m: &Media) -> u64 {
    m.fragments.first().map_or(0, |f| f.producer_ms)
}

/// What to add to a fragment's frame timestamps to get producer time (ns):
/// its cluster timecode is its producer timestamp.
fn frame_offset_ns(f: &Fragment, stored: &Stored) -> i64 {
    let cluster_ns = i128::from(f.cluster_timecode.unwrap_or(0)) * i128::from(f.timecode_scale);
    (i128::from(stored.producer_ms) * 1_000_000 - cluster_ns) as i64
}

/// A playback response: content type and body.
pub(crate) type Playback = (&'static str, Vec<Bytes>);

/// Serves one playback request (`GET …/hls/v1/…` or `…/dash/v1/…`).
pub(crate) fn serve(
    session: &Session,
    token: &str,
    op: &str,
    query: &HashMap<String, String>,
    media: Option<&Media>,
) -> Result<Playback, ApiError> {
    let frags = session.fragments(media);
    let Some(m) = media.filter(|_| !frags.is_empty()) else {
        return Err(ApiError::new(
            ServiceException::ResourceNotFound,
            "No fragments found.",
        ));
    };
    let text = |ct: &'static str, s: String| Ok((ct, vec![Bytes::from(s)]));
    let first = || parse(frags[0]);
    match (session.protocol, op) {
        (Protocol::Hls, "getHLSMasterPlaylist.m3u8") => {
            let f = first()?;
            let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
            let bytes: u64 = frags.iter().map(|f| f.size).sum();
            let secs: f64 = durations(&frags, m).iter().sum::<f64>().max(0.001);
            let _ = write!(
                s,
                "#EXT-X-STREAM-INF:BANDWIDTH={}",
                (bytes as f64 * 8.0 / secs) as u64
            );
            if let Some(c) = codecs(&f) {
                let _ = write!(s, ",CODECS=\"{c}\"");
            }
            if let Some(v) = f.tracks.iter().find_map(|t| t.video.as_ref()) {
                let _ = write!(s, ",RESOLUTION={}x{}", v.pixel_width, v.pixel_height);
            }
            let _ = write!(s, "\ngetHLSMediaPlaylist.m3u8?SessionToken={token}\n");
            text("application/x-mpegURL", s)
        }
        (Protocol::Hls, "getHLSMediaPlaylist.m3u8") => {
            let d = durations(&frags, m);
            // Each EXTINF, rounded, must not exceed the target duration.
            let target = d.iter().fold(1.0f64, |a, b| a.max(b.round())) as u64;
            let seq = m
                .fragments
                .iter()
                .position(|f| Arc::ptr_eq(f, frags[0]))
                .unwrap_or(0);
            let version = if session.ts { 3 } else { 7 };
            let mut s = format!("#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{seq}\n");
            if session.ended() {
                s.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
            }
            let segment = if session.ts {
                "getTSFragment.ts"
            } else {
                let _ = writeln!(
                    s,
                    "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken={token}\""
                );
                "getMP4MediaFragment.mp4"
            };
            for (f, d) in frags.iter().zip(&d) {
                let _ = write!(
                    s,
                    "#EXTINF:{d:.3},\n{segment}?SessionToken={token}&FragmentNumber={}\n",
                    f.number
                );
            }
            if session.ended() {
                s.push_str("#EXT-X-ENDLIST\n");
            }
            text("application/x-mpegURL", s)
        }
        (Protocol::Dash, "getDASHManifest.mpd") => {
            let f = first()?;
            let d = durations(&frags, m);
            let total: f64 = d.iter().sum();
            let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            if session.ended() {
                let _ = writeln!(s, "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"static\" mediaPresentationDuration=\"PT{total:.3}S\" minBufferTime=\"PT2S\">");
            } else {
                let _ = writeln!(s, "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\" minimumUpdatePeriod=\"PT2S\" minBufferTime=\"PT2S\">");
            }
            s.push_str("<Period id=\"0\" start=\"PT0S\">\n<AdaptationSet segmentAlignment=\"true\" mimeType=\"video/mp4\">\n");
            let _ = write!(
                s,
                "<Representation id=\"0\" bandwidth=\"{}\"",
                (frags.iter().map(|f| f.size).sum::<u64>() as f64 * 8.0 / total.max(0.001)) as u64
            );
            if let Some(c) = codecs(&f) {
                let _ = write!(s, " codecs=\"{c}\"");
            }
            if let Some(v) = f.tracks.iter().find_map(|t| t.video.as_ref()) {
                let _ = write!(
                    s,
                    " width=\"{}\" height=\"{}\"",
                    v.pixel_width, v.pixel_height
                );
            }
            s.push_str(">\n<SegmentList timescale=\"1000\">\n");
            let _ = writeln!(
                s,
                "<Initialization sourceURL=\"getMP4InitFragment.mp4?SessionToken={token}\"/>"
            );
            s.push_str("<SegmentTimeline>\n");
            for (i, d) in d.iter().enumerate() {
                let d = (d * 1000.0).round() as u64;
                if i == 0 {
                    let t = frags[0].producer_ms.saturating_sub(origin_ms(m));
                    let _ = writeln!(s, "<S t=\"{t}\" d=\"{d}\"/>");
                } else {
                    let _ = writeln!(s, "<S d=\"{d}\"/>");
                }
            }
            s.push_str("</SegmentTimeline>\n");
            for f in &frags {
                let _ = writeln!(s, "<SegmentURL media=\"getMP4MediaFragment.mp4?SessionToken={token}&amp;FragmentNumber={}\"/>", f.number);
            }
            s.push_str("</SegmentList>\n</Representation>\n</AdaptationSet>\n</Period>\n</MPD>\n");
            text("application/dash+xml", s)
        }
        (_, "getMP4InitFragment.mp4") => {
            let tracks = Mp4Track::from_mkv(&first()?.tracks).map_err(mp4_error)?;
            Ok(("video/mp4", vec![mp4::init_segment(&tracks)]))
        }
        (_, "getMP4MediaFragment.mp4") | (Protocol::Hls, "getTSFragment.ts") => {
            let number = query
                .get("FragmentNumber")
                .ok_or_else(|| bad("FragmentNumber is required"))?;
            let (seq, stored) = m
                .fragments
                .iter()
                .enumerate()
                .find(|(_, f)| &f.number == number)
                .ok_or_else(|| {
                    ApiError::new(
                        ServiceException::ResourceNotFound,
                        format!("fragment {number} not found"),
                    )
                })?;
            let f = parse(stored)?;
            let tracks = &first()?.tracks;
            // One timeline for the whole stream: producer time since its
            // first fragment, whatever timecodes each upload used.
            let base = origin_ms(m) as i64 * 1_000_000 - frame_offset_ns(&f, stored);
            if op == "getTSFragment.ts" {
                let tracks = TsTrack::from_mkv(tracks).map_err(mp4_error)?;
                return Ok((
                    "video/MP2T",
                    vec![mpegts::segment_bytes(&tracks, &f.frames, base)],
                ));
            }
            let tracks = Mp4Track::from_mkv(tracks).map_err(mp4_error)?;
            let samples = mp4::samples(&tracks, &f.frames, base, None);
            Ok((
                "video/mp4",
                mp4::media_segment(seq as u32 + 1, &tracks, &samples),
            ))
        }
        _ => Err(ApiError::new(
            ServiceException::Other("UnknownOperationException".into()),
            format!("{op} is not a playback request of this session"),
        )),
    }
}
