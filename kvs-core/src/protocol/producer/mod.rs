//! The producer's state machine, without I/O: frames in, MKV chunks for the
//! current PutMedia connection out, ACKs and connection changes in, events
//! out. [`crate::producer::Producer`] drives it over real connections; tests
//! drive it directly with a manual clock.
//!
//! What it guarantees:
//!
//! - **Fragments.** A video stream starts a fragment at a key frame once the
//!   current one lasts [`FragmentPolicy::min_duration`] (default: every key
//!   frame) and holds a frame of every track (the service refuses a fragment
//!   without, 4011 — unless a track has been silent for half the longest
//!   fragment); an audio-only stream every `min_duration` (default 2 s there).
//!   Frames of every track are interleaved in decode order; a fragment is
//!   closed once every other track has passed its end, or
//!   [`ProducerConfig::max_lateness`] after its end was seen.
//! - **Timestamps are checked when a frame is put**, with an error that says
//!   what is wrong ([`FrameError`]): decode times must increase per track, a
//!   frame may not land in a fragment already closed, and a fragment may not
//!   outgrow the service's duration limit — so the service never answers
//!   4004 or 4002 for our uploads.
//! - **Leading frames.** A video stream starts at its first video key frame,
//!   as the official producer SDKs do: frames before it (a recording cut
//!   mid-GOP, audio that starts a little before the video, leading pictures
//!   of an open GOP whose presentation time precedes the key frame) are
//!   skipped and counted, reported once as
//!   [`ProducerEvent::LeadingFramesSkipped`] when the first fragment closes —
//!   or refused with [`FrameError::LeadingFrame`] under
//!   [`LeadingPolicy::Refuse`].
//! - **The stream header follows the parameter sets.** CodecPrivate and
//!   PixelWidth/PixelHeight come from the parameter sets in force: those of
//!   the configured CodecPrivate, then the in-band SPS/PPS (VPS) of Annex-B
//!   H.264/H.265 key frames. The SPS decides the size; a size the caller
//!   configured that differs is replaced (with a warning). When the
//!   parameter sets change, the next fragment starts at that key frame with
//!   a new stream header, so the connection is rotated there.
//! - **Nothing is lost across connections.** Every fragment stays buffered
//!   until acknowledged at [`AckLevel`] (PERSISTED, or RECEIVED for streams
//!   without retention). When a connection ends, every fragment it did not
//!   get acknowledged is sent again on the next one, with a fresh stream
//!   header and its original timecode (ABSOLUTE timecodes).
//! - **Resent fragments the service had in fact stored** (its ACK was lost in
//!   the cut) are stored twice by the service, with the same producer
//!   timestamp; [`crate::consumer`] delivers each producer timestamp once, so
//!   readers see every frame exactly once.
//! - **The buffer is bounded** by bytes and by duration. When full, the
//!   [`PressurePolicy`] decides: drop the oldest whole fragment (one
//!   [`ProducerEvent::FragmentDropped`] each) or refuse the frame until ACKs
//!   free space ([`PutOutcome::Full`]; the async producer waits).
//! - **Service errors**: a retriable ERROR ACK (4000, 5000, 5001 …) means the
//!   fragment is sent again on the next connection; any other drops that
//!   fragment with an event and streaming goes on with the next one.
//! - **Rotation**: a connection older than the rotation age is ended at the
//!   next fragment boundary and a new one takes over from the first fragment
//!   not yet acknowledged.

mod config;
mod events;
mod fragmenting;
mod params;
mod sending;

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::codec::{h264, h265, Codec, CodecError};
use crate::mkv::builder::{
    validate_tags, BuildError, FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig,
    TrackKind,
};
use crate::protocol::{Ack, ServiceErrorCode};

pub use config::{AckLevel, FragmentPolicy, LeadingPolicy, PressurePolicy, ProducerConfig};
pub use events::{DropReason, FileWritten, ProducerEvent, PutOutcome, RotationReason};
use params::size_from_codec_private;

/// A frame as the application has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Matroska track number (as in the configuration).
    pub track: u64,
    /// Presentation time since the producer's start time.
    pub pts: Duration,
    /// Decode time, when it differs from `pts` (B-frames).
    pub dts: Option<Duration>,
    /// A key frame (every audio frame is one).
    pub key: bool,
    /// The frame: Annex-B (start codes) or AVCC/raw.
    pub payload: Payload,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The track is not configured.
    #[error("track {0} is not configured")]
    UnknownTrack(u64),
    /// Decode times must increase on each track.
    #[error(
        "track {track}: decode time {got_ms} ms is not after the previous frame's {previous_ms} ms"
    )]
    TimestampNotIncreasing {
        /// The track.
        track: u64,
        /// The previous frame's decode time, ms.
        previous_ms: u64,
        /// This frame's, ms.
        got_ms: u64,
    },
    /// No fragment is open (after [`ProducerCore::flush`]) and only a video
    /// key frame can open one.
    #[error("track {0}: no fragment is open and only a video key frame can start one")]
    NoKeyFrameYet(u64),
    /// A frame before the first video key frame (in presentation time), with
    /// [`LeadingPolicy::Refuse`].
    #[error("track {track}: frame at {pts_ms} ms comes before the first video key frame{}; the stream starts at a video key frame", first_key_ms.map_or(String::new(), |k| format!(" ({k} ms)")))]
    LeadingFrame {
        /// The track.
        track: u64,
        /// The frame's presentation time, ms.
        pts_ms: u64,
        /// The first video key frame's presentation time, once seen.
        first_key_ms: Option<u64>,
    },
    /// The frame belongs to a fragment that was already closed.
    #[error("track {track}: frame at {pts_ms} ms arrived after its fragment (ending at {closed_ms} ms) was closed; interleave tracks within {lateness_ms} ms")]
    TooLate {
        /// The track.
        track: u64,
        /// The frame's presentation time, ms.
        pts_ms: u64,
        /// Where the closed fragment ended, ms.
        closed_ms: u64,
        /// The configured lateness.
        lateness_ms: u64,
    },
    /// No key frame for longer than a fragment may last.
    #[error("no key frame for {span_ms} ms; a fragment may last at most {max_ms} ms (send key frames more often)")]
    FragmentTooLong {
        /// How long the fragment would last.
        span_ms: u64,
        /// The limit.
        max_ms: u64,
    },
    /// The first key frame of an Annex-B H.264/H.265 track without a
    /// configured CodecPrivate carries no parameter sets.
    #[error("track {track}: no CodecPrivate configured and none in the key frame: {reason}")]
    NoCodecPrivate {
        /// The track.
        track: u64,
        /// What is missing.
        reason: String,
    },
    /// The frame cannot be written.
    #[error("cannot write the frame: {0}")]
    Build(#[from] BuildError),
    /// Parameter sets given apart from the frames that cannot be used.
    #[error("track {track}: the parameter sets given cannot be used: {reason} ({expected})")]
    BadParameterSets {
        /// The track.
        track: u64,
        /// Why.
        reason: String,
        /// What the track takes.
        expected: &'static str,
    },
    /// The frame has no bytes.
    #[error("track {track}: frame at {pts_ms} ms is empty")]
    Empty {
        /// Its track.
        track: u64,
        /// Its presentation time since the producer's start, ms.
        pts_ms: u64,
    },
    /// The frame alone is larger than a fragment may be (the service's
    /// limit: 50 MB a fragment, KVS quotas).
    #[error(
        "track {track}: a {size}-byte frame exceeds the service's {limit}-byte fragment limit"
    )]
    TooLarge {
        /// Its track.
        track: u64,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// The service's largest fragment, bytes (KVS quotas: 50 MB).
pub const MAX_FRAGMENT_BYTES: usize = 50 * 1000 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FragState {
    /// Not yet sent on the current connection.
    Pending,
    /// Being written or written on connection `conn`.
    Sent { conn: u64 },
}

#[derive(Debug)]
struct Fragment {
    timecode_ms: u64,
    duration_ms: u64,
    header: usize,
    chunks: Vec<Bytes>,
    bytes: usize,
    frames: usize,
    state: FragState,
    /// When its last chunk was handed out (once closed).
    written_at: Option<Instant>,
    /// Chunks handed out on the current connection.
    cursor: usize,
    /// Still taking frames (the newest fragment, until its boundary).
    open: bool,
    /// The tracks it has a frame of.
    tracks: Vec<u64>,
    /// Refused by the service while still open: dropped when it closes.
    rejected: Option<ServiceErrorCode>,
}

#[derive(Debug)]
struct Pending {
    track: u64,
    /// Decode order key, ms since the producer start.
    dts_ms: u64,
    /// Presentation time, ms since the producer start.
    pts_ms: u64,
    key: bool,
    payload: Payload,
    /// The track settings generation it was put under.
    gen: usize,
    /// When it was put (it waits at most the lateness for other tracks).
    put_at: Instant,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    opened: Instant,
    /// Rotate at this time (credentials expiring), if set.
    deadline: Option<Instant>,
    header: Option<usize>,
    header_sent: bool,
    draining: bool,
    rotation: Option<RotationReason>,
    /// When the last ACK came on it (any kind: progress).
    last_ack: Option<Instant>,
}

/// The producer state machine (see the module docs).
#[derive(Debug)]
pub struct ProducerCore {
    cfg: ProducerConfig,
    /// Stream headers; each fragment names the one it needs.
    headers: Vec<Bytes>,
    builder: Option<FragmentBuilder>,
    tracks: Vec<TrackConfig>,
    has_video: bool,
    h264_sets: Vec<(u64, h264::ParameterSets)>,
    h265_sets: Vec<(u64, h265::ParameterSets)>,
    /// Frames of the open fragment, and of the next one once its boundary
    /// was seen.
    open: Vec<Pending>,
    open_start: Option<u64>,
    /// The next fragment's start (a key frame seen) and when it was seen.
    boundary: Option<(u64, u64, Instant)>,
    /// Last decode time per track.
    last_dts: Vec<(u64, u64)>,
    /// Where the last closed fragment ended (frames before it are late).
    closed_until: Option<u64>,
    /// Per-track time reached (for closing at a boundary).
    reached: Vec<(u64, u64)>,
    /// Track settings by generation (a generation per CodecPrivate change).
    gens: Vec<Vec<TrackConfig>>,
    /// The generation the builder writes.
    builder_gen: Option<usize>,
    buffer: VecDeque<Fragment>,
    buffered_bytes: usize,
    conn: Option<Conn>,
    next_conn: u64,
    events: VecDeque<ProducerEvent>,
    /// Metadata tags for the next fragment to close (written after its
    /// blocks, where the service takes them for that fragment).
    tags: Vec<Tag>,
    bytes_sent: u64,
    /// Presentation time of the first video key frame taken.
    first_key: Option<u64>,
    /// Leading frames skipped (frames, bytes), and whether reported.
    leading: (usize, usize),
    leading_reported: bool,
    /// Parameter sets given out of band ([`Self::set_parameter_sets`]),
    /// Annex-B, applied at the track's next key frame.
    pending_sets: Vec<(u64, Bytes)>,
}

/// A producer timestamp (ms since the epoch, as timecodes carry it) as UTC.
fn utc(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl ProducerCore {
    /// A producer with these settings.
    pub fn new(cfg: ProducerConfig) -> Result<Self, BuildError> {
        // Checks the tracks once (numbers, count).
        FragmentBuilder::new(StreamConfig::new(cfg.tracks.clone()))?;
        let has_video = cfg
            .tracks
            .iter()
            .any(|t| matches!(t.kind, TrackKind::Video { .. }));
        let mut tracks = cfg.tracks.clone();
        for t in &mut tracks {
            size_from_codec_private(t);
        }
        Ok(Self {
            tracks,
            cfg,
            headers: Vec::new(),
            builder: None,
            has_video,
            h264_sets: Vec::new(),
            h265_sets: Vec::new(),
            open: Vec::new(),
            open_start: None,
            boundary: None,
            last_dts: Vec::new(),
            closed_until: None,
            reached: Vec::new(),
            gens: Vec::new(),
            builder_gen: None,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            conn: None,
            next_conn: 1,
            events: VecDeque::new(),
            tags: Vec::new(),
            bytes_sent: 0,
            first_key: None,
            leading: (0, 0),
            leading_reported: false,
            pending_sets: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.cfg
    }

    /// Sets when a fragment counts as delivered (the async producer learns
    /// the stream's retention after it started taking frames).
    pub fn set_ack_level(&mut self, level: AckLevel) {
        self.cfg.ack_level = level;
    }

    /// Whether the track has a CodecPrivate (configured, or from
    /// parameter sets taken).
    pub(super) fn has_codec_private(&self, track: u64) -> bool {
        self.tracks
            .iter()
            .any(|t| t.number == track && t.codec_private.as_ref().is_some_and(|p| !p.is_empty()))
    }

    pub(super) fn is_video(&self, track: u64) -> bool {
        self.tracks
            .iter()
            .any(|t| t.number == track && matches!(t.kind, TrackKind::Video { .. }))
    }

    /// Media bytes buffered (closed fragments not yet acknowledged, plus the
    /// open fragment's frames).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes + self.open.iter().map(|p| p.payload.len()).sum::<usize>()
    }

    /// Media time buffered, from the oldest unacknowledged fragment to the
    /// newest frame.
    pub fn buffered_duration(&self) -> Duration {
        let oldest = self
            .buffer
            .front()
            .map(|f| f.timecode_ms.saturating_sub(self.cfg.start_ms))
            .or(self.open_start);
        let newest = self.open.iter().map(|p| p.pts_ms).max().or_else(|| {
            self.buffer
                .back()
                .map(|f| f.timecode_ms.saturating_sub(self.cfg.start_ms) + f.duration_ms)
        });
        match (oldest, newest) {
            (Some(a), Some(b)) => Duration::from_millis(b.saturating_sub(a)),
            _ => Duration::ZERO,
        }
    }

    /// Fragments waiting for their ACK or to be sent, the open one (still
    /// taking frames) included.
    pub fn buffered_fragments(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes handed out for sending so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<ProducerEvent> {
        self.events.pop_front()
    }

    /// Reports the leading frames skipped, once.
    pub(super) fn report_leading(&mut self) {
        if !self.leading_reported && self.leading.0 > 0 {
            self.leading_reported = true;
            self.events.push_back(ProducerEvent::LeadingFramesSkipped {
                frames: self.leading.0,
                bytes: self.leading.1,
                first_key: self.first_key.map(Duration::from_millis),
            });
        }
    }

    /// The latest presentation time of any frame taken so far, ms since the
    /// start time (`None` before the first).
    pub fn time_reached(&self) -> Option<u64> {
        self.reached.iter().map(|(_, ms)| *ms).max()
    }

    /// Frames skipped before the first video key frame so far (frames,
    /// bytes).
    pub fn leading_skipped(&self) -> (usize, usize) {
        self.leading
    }

    /// Adds a metadata tag (name and value, the service's limits: at most 10
    /// per fragment, no `AWS` prefix) to the next fragment to close.
    pub fn tag_next_fragment(&mut self, name: &str, value: &str) -> Result<(), BuildError> {
        let mut tags = self.tags.clone();
        tags.push(Tag {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        validate_tags(&tags)?;
        self.tags = tags;
        Ok(())
    }

    /// Closes the open fragment (at the end of the media).
    pub fn flush(&mut self, now: Instant) -> Result<(), FrameError> {
        self.try_close(now, true)?;
        self.report_leading();
        self.open_start = None;
        Ok(())
    }

    /// Nothing left to send or to be acknowledged (after [`Self::flush`]).
    pub fn is_idle(&self) -> bool {
        self.buffer.is_empty() && self.open.is_empty()
    }
}
