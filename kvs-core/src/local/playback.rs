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
use crate::client::{DiscontinuityMode, ServiceException};
use crate::mkv::fragment::{Fragment, FragmentAssembler};
use crate::mp4::{self, Mp4Error, Mp4Track};
use crate::mpegts::{self, TsTrack};
use crate::timeline::Span;

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
    let doc = f.doc().map_err(|e| {
        ApiError::new(
            ServiceException::ResourceNotFound,
            format!("fragment {} is gone: {e}", f.number),
        )
    })?;
    for part in doc {
        asm.push(part);
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
    /// HLS: where `EXT-X-DISCONTINUITY` goes.
    discontinuity: DiscontinuityMode,
    /// `DisplayFragmentTimestamp=ALWAYS`: HLS `EXT-X-PROGRAM-DATE-TIME`,
    /// DASH `kvs:ts` on every `S`.
    show_timestamp: bool,
    /// DASH `DisplayFragmentNumber=ALWAYS`: `kvs:fn` on every `S`.
    show_number: bool,
}

/// The gap or overlap (ms) beyond which `ON_DISCONTINUITY` marks a
/// discontinuity (the GetHLSStreamingSessionURL reference).
const DISCONTINUITY_MS: u64 = 50;

/// An enumeration member of a request: `None` when absent, an
/// InvalidArgumentException naming the allowed values when not one of them.
fn one_of<'a>(req: &'a Value, member: &str, allowed: &[&str]) -> Result<Option<&'a str>, ApiError> {
    match req.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) if allowed.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => Err(bad(format!(
            "{member} must be one of {}; got {v}",
            allowed.join(", ")
        ))),
    }
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
        let mode = match one_of(req, "PlaybackMode", &["LIVE", "LIVE_REPLAY", "ON_DEMAND"])? {
            None | Some("LIVE") => Mode::Live,
            Some("LIVE_REPLAY") => Mode::LiveReplay,
            _ => Mode::OnDemand,
        };
        let ts = match protocol {
            Protocol::Hls => {
                one_of(req, "ContainerFormat", &["FRAGMENTED_MP4", "MPEG_TS"])? == Some("MPEG_TS")
            }
            Protocol::Dash => false,
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
        // The default is 5 fragments for LIVE and LIVE_REPLAY, 1,000 for
        // ON_DEMAND (the Max…FragmentResults reference).
        let max = match req.get(max_key) {
            None | Some(Value::Null) => {
                if mode == Mode::OnDemand {
                    1000
                } else {
                    5
                }
            }
            Some(v) => v
                .as_u64()
                .filter(|m| (1..=5000).contains(m))
                .ok_or_else(|| bad(format!("{max_key} must be 1 to 5000")))?
                as usize,
        };
        let sel = req.get(sel_key).filter(|s| !s.is_null());
        let has_range = sel
            .and_then(|s| s.get("TimestampRange"))
            .is_some_and(|r| !r.is_null());
        let (by_server, start, end) = match (mode, sel) {
            // LIVE: "the FragmentSelectorType can be set, but the
            // TimestampRange should not be set".
            (Mode::Live, _) if has_range => {
                return Err(bad(format!(
                    "{sel_key}.TimestampRange must not be set for LIVE"
                )))
            }
            (Mode::Live, None) => (true, 0, None),
            (Mode::Live, Some(sel)) => {
                let by_server = one_of(
                    sel,
                    "FragmentSelectorType",
                    &["PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP"],
                )? != Some("PRODUCER_TIMESTAMP");
                (by_server, 0, None)
            }
            (_, Some(sel)) if has_range => range(sel, true, mode == Mode::OnDemand)?,
            _ => {
                return Err(bad(format!(
                    "{sel_key} with a TimestampRange is required for {}",
                    if mode == Mode::OnDemand {
                        "ON_DEMAND"
                    } else {
                        "LIVE_REPLAY"
                    }
                )))
            }
        };
        // The HLS and DASH models: an end, when given, "must be later than
        // the StartTimestamp", "within 24 hours" of it, and in the past for
        // SERVER_TIMESTAMP.
        if let Some(e) = end {
            if e <= start {
                return Err(bad("EndTimestamp must be later than StartTimestamp"));
            }
            if e - start > 24 * 3600 * 1000 {
                return Err(bad(
                    "EndTimestamp must be within 24 hours of StartTimestamp",
                ));
            }
            if by_server && e > super::media::now_ms() {
                return Err(bad("EndTimestamp must be in the past for SERVER_TIMESTAMP"));
            }
        }
        let discontinuity = match protocol {
            Protocol::Hls => match one_of(
                req,
                "DiscontinuityMode",
                &["ALWAYS", "NEVER", "ON_DISCONTINUITY"],
            )? {
                Some("ALWAYS") => DiscontinuityMode::Always,
                Some("NEVER") => DiscontinuityMode::Never,
                Some(_) => DiscontinuityMode::OnDiscontinuity,
                // ALWAYS for SERVER_TIMESTAMP, NEVER for PRODUCER_TIMESTAMP.
                None if by_server => DiscontinuityMode::Always,
                None => DiscontinuityMode::Never,
            },
            Protocol::Dash => DiscontinuityMode::Never,
        };
        let show_timestamp =
            one_of(req, "DisplayFragmentTimestamp", &["ALWAYS", "NEVER"])? == Some("ALWAYS");
        let show_number = match protocol {
            Protocol::Dash => {
                one_of(req, "DisplayFragmentNumber", &["ALWAYS", "NEVER"])? == Some("ALWAYS")
            }
            Protocol::Hls => false,
        };
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
            discontinuity,
            show_timestamp,
            show_number,
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

    /// The fragments the session would show before `first` (its earlier
    /// window), oldest first: those a live playlist has moved past.
    fn before<'a>(&self, media: Option<&'a Media>, first: &Stored) -> Vec<&'a Arc<Stored>> {
        let Some(m) = media else { return Vec::new() };
        let all = match self.mode {
            Mode::Live => playable(m.fragments.iter()),
            _ => playable(
                m.fragments
                    .iter()
                    .filter(|f| in_range(f, self.by_server, self.start, self.end)),
            ),
        };
        all.into_iter()
            .take_while(|f| f.producer_ms < first.producer_ms)
            .collect()
    }

    /// A fragment's start as `DisplayFragmentTimestamp` shows it: server
    /// or producer time, as the session's selector says (epoch ms).
    fn shown_time(&self, f: &Stored) -> u64 {
        if self.by_server {
            f.server_ms
        } else {
            f.producer_ms
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

/// The fragments to play, in producer-time order, duplicates resolved as
/// the service documents them ([`crate::timeline::playable`]).
/// `fragments` come in ingest order.
pub(crate) fn playable<'a>(
    fragments: impl Iterator<Item = &'a Arc<Stored>>,
) -> Vec<&'a Arc<Stored>> {
    crate::timeline::playable(fragments, |f| Span::new(f.producer_ms, f.media_ms))
}

/// Seconds each fragment's media plays (its own duration, not the
/// distance to the next fragment: a gap stays a gap).
fn durations(all: &[&Arc<Stored>]) -> Vec<f64> {
    all.iter()
        .map(|f| f.media_ms.max(1) as f64 / 1000.0)
        .collect()
}

/// Whether the timeline breaks between two fragments played one after
/// the other: a gap or an overlap of more than [`DISCONTINUITY_MS`].
fn breaks(prev: &Stored, next: &Stored) -> bool {
    let end = prev.producer_ms.saturating_add(prev.media_ms);
    end.abs_diff(next.producer_ms) > DISCONTINUITY_MS
}

/// RFC 3339 UTC (ISO 8601, as `EXT-X-PROGRAM-DATE-TIME` wants it) of
/// epoch ms.
fn iso8601(ms: u64) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from_millis(ms as i64)
        .fmt(Format::DateTime)
        .unwrap_or_default()
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
            "V_MPEGH/ISO/HEVC" => hvc1_codecs(p)?,
            c if c.starts_with("A_AAC") && !p.is_empty() => format!("mp4a.40.{}", p[0] >> 3),
            _ => return None,
        });
    }
    Some(out.join(","))
}

/// The `hvc1` codecs string of an HEVCDecoderConfigurationRecord (ISO/IEC
/// 14496-15 Annex E.3): profile space and profile, the compatibility flags
/// bit-reversed in hex, tier and level, then the constraint bytes without
/// the trailing zero ones — `hvc1.1.6.L93.B0`.
fn hvc1_codecs(p: &[u8]) -> Option<String> {
    if p.len() < 13 {
        return None;
    }
    let space = ["", "A", "B", "C"][usize::from(p[1] >> 6)];
    let tier = if p[1] & 0x20 != 0 { 'H' } else { 'L' };
    let compat = u32::from_be_bytes([p[2], p[3], p[4], p[5]]).reverse_bits();
    let mut s = format!("hvc1.{space}{}.{compat:X}.{tier}{}", p[1] & 0x1f, p[12]);
    let constraints = &p[6..12];
    let used = constraints
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        let _ = write!(s, ".{b:X}");
    }
    Some(s)
}

/// The XML namespace of the `kvs:ts` and `kvs:fn` attributes of DASH `S`
/// elements. [I]: the reference names the attributes, not their namespace.
const KVS_NAMESPACE: &str = "https://kinesisvideo.amazonaws.com/dash";

/// Producer time (ms) where session timelines start: the earliest
/// producer timestamp stored in the stream (not the first ingested: an
/// upload may fill in time before it). Every segment's timestamps and every
/// DASH `t` count from it.
fn origin_ms(m: &Media) -> u64 {
    m.fragments.iter().map(|f| f.producer_ms).min().unwrap_or(0)
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
            let secs: f64 = durations(&frags).iter().sum::<f64>().max(0.001);
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
            let d = durations(&frags);
            // Each EXTINF, rounded, must not exceed the target duration.
            let target = d.iter().fold(1.0f64, |a, b| a.max(b.round())) as u64;
            let seq = m
                .fragments
                .iter()
                .position(|f| Arc::ptr_eq(f, frags[0]))
                .unwrap_or(0);
            let marked = |prev: &Stored, next: &Stored| match session.discontinuity {
                DiscontinuityMode::Always => true,
                DiscontinuityMode::Never => false,
                DiscontinuityMode::OnDiscontinuity => breaks(prev, next),
            };
            // Discontinuities before the playlist's first segment (those of
            // the segments a live playlist has moved past).
            let mut earlier = session.before(media, frags[0]);
            earlier.push(frags[0]);
            let disc_seq = earlier.windows(2).filter(|w| marked(w[0], w[1])).count();
            let version = if session.ts { 3 } else { 7 };
            let mut s = format!("#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{seq}\n");
            if disc_seq > 0 {
                let _ = writeln!(s, "#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}");
            }
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
            for (i, (f, d)) in frags.iter().zip(&d).enumerate() {
                if i > 0 && marked(frags[i - 1], f) {
                    s.push_str("#EXT-X-DISCONTINUITY\n");
                }
                if session.show_timestamp {
                    let at = session.shown_time(f);
                    let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(at));
                }
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
            let d = durations(&frags);
            // The timeline's span: first start to last end, gaps included.
            let last = frags[frags.len() - 1];
            let total = (last.producer_ms + last.media_ms.max(1))
                .saturating_sub(frags[0].producer_ms) as f64
                / 1000.0;
            let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            let ns = if session.show_timestamp || session.show_number {
                format!(" xmlns:kvs=\"{KVS_NAMESPACE}\"")
            } else {
                String::new()
            };
            if session.ended() {
                let _ = writeln!(s, "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"{ns} profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"static\" mediaPresentationDuration=\"PT{total:.3}S\" minBufferTime=\"PT2S\">");
            } else {
                let _ = writeln!(s, "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"{ns} profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\" minimumUpdatePeriod=\"PT2S\" minBufferTime=\"PT2S\">");
            }
            s.push_str("<Period id=\"0\" start=\"PT0S\">\n<AdaptationSet segmentAlignment=\"true\" mimeType=\"video/mp4\">\n");
            let _ = write!(
                s,
                "<Representation id=\"0\" bandwidth=\"{}\"",
                (frags.iter().map(|f| f.size).sum::<u64>() as f64 * 8.0
                    / d.iter().sum::<f64>().max(0.001)) as u64
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
            // Each segment at its place on the stream's timeline (producer
            // time since its first fragment, as the segments' own
            // timestamps): `t` wherever it does not follow on from the one
            // before, so gaps stay gaps.
            let origin = origin_ms(m);
            let mut next_t = None;
            for (f, d) in frags.iter().zip(&d) {
                let t = f.producer_ms.saturating_sub(origin);
                let d = (d * 1000.0).round() as u64;
                s.push_str("<S");
                if next_t != Some(t) {
                    let _ = write!(s, " t=\"{t}\"");
                }
                let _ = write!(s, " d=\"{d}\"");
                if session.show_timestamp {
                    let at = session.shown_time(f);
                    let _ = write!(s, " kvs:ts=\"{}\"", iso8601(at));
                }
                if session.show_number {
                    let _ = write!(s, " kvs:fn=\"{}\"", f.number);
                }
                s.push_str("/>\n");
                next_t = Some(t + d);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hvc1_strings_follow_iso_14496_15_annex_e() {
        // Main profile, level 3.1, progressive-source flag (0x90 → "B0" once
        // trailing zeros go): the example of the annex.
        let mut p = vec![1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93];
        assert_eq!(hvc1_codecs(&p).as_deref(), Some("hvc1.1.6.L93.B0"));
        // Main 10, high tier, level 5.1 (153), constraint bytes 0x90 0x08.
        p[1] = 0x22;
        p[2..6].copy_from_slice(&[0x20, 0, 0, 0]);
        p[6..8].copy_from_slice(&[0x90, 0x08]);
        p[12] = 153;
        assert_eq!(hvc1_codecs(&p).as_deref(), Some("hvc1.2.4.H153.90.8"));
        assert_eq!(hvc1_codecs(&p[..12]), None);
    }

    #[test]
    fn program_date_times_are_rfc_3339_utc() {
        assert_eq!(iso8601(1_732_012_345_000), "2024-11-19T10:32:25Z");
        assert_eq!(iso8601(1_732_012_345_120), "2024-11-19T10:32:25.12Z");
    }
}
