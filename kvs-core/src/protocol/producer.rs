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

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::codec::{h264, h265, Codec, CodecError};
use crate::mkv::builder::{
    validate_tags, BuildError, FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig,
    TrackKind,
};
use crate::protocol::{Ack, ServiceErrorCode};

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
}

/// When fragments start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPolicy {
    /// A key frame starts a new fragment once the current one lasts this
    /// long (video; 0: every key frame). Audio-only streams cut every
    /// `min_duration` (2 s when 0).
    pub min_duration: Duration,
    /// The longest fragment (the service refuses longer ones, 4002).
    pub max_duration: Duration,
}

impl Default for FragmentPolicy {
    fn default() -> Self {
        Self {
            min_duration: Duration::ZERO,
            max_duration: Duration::from_secs(20),
        }
    }
}

/// What to do when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PressurePolicy {
    /// Drop the oldest whole fragment (one event each) and keep taking frames
    /// — live video, where fresh media matters most.
    #[default]
    DropOldest,
    /// Refuse frames until ACKs free space (`put_frame` waits) — nothing is
    /// ever dropped, the source is slowed instead.
    Wait,
}

/// What to do with frames before the first video key frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeadingPolicy {
    /// Skip them, counted ([`ProducerEvent::LeadingFramesSkipped`]); the
    /// official producer SDKs do the same.
    #[default]
    Skip,
    /// Refuse them with [`FrameError::LeadingFrame`].
    Refuse,
}

/// Which ACK completes a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckLevel {
    /// PERSISTED (streams with retention).
    #[default]
    Persisted,
    /// RECEIVED (streams without retention get no PERSISTED).
    Received,
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The tracks (CodecPrivate may be `None` for Annex-B H.264/H.265, taken
    /// from the first key frame).
    pub tracks: Vec<TrackConfig>,
    /// Producer time of `pts == 0`, ms since the epoch.
    pub start_ms: u64,
    /// Fragmentation.
    pub fragments: FragmentPolicy,
    /// Buffer limit in bytes of media (default 32 MiB).
    pub max_buffer_bytes: usize,
    /// Buffer limit in media time (default 120 s).
    pub max_buffer_duration: Duration,
    /// What a full buffer does.
    pub pressure: PressurePolicy,
    /// What frames before the first video key frame do (default: skipped).
    pub leading: LeadingPolicy,
    /// Which ACK completes a fragment.
    pub ack_level: AckLevel,
    /// How long a fragment waits for the other tracks to pass its end
    /// (default 500 ms).
    pub max_lateness: Duration,
    /// Connection age after which it is rotated at the next fragment
    /// boundary (the service ends connections at 45 minutes).
    pub rotation_age: Duration,
    /// A written fragment with no ACK for this long means the connection is
    /// stalled (default 20 s); it is replaced.
    pub ack_timeout: Duration,
}

impl ProducerConfig {
    /// Settings for these tracks, starting now-ish at `start_ms`.
    pub fn new(tracks: Vec<TrackConfig>, start_ms: u64) -> Self {
        Self {
            tracks,
            start_ms,
            fragments: FragmentPolicy::default(),
            max_buffer_bytes: 32 << 20,
            max_buffer_duration: Duration::from_secs(120),
            pressure: PressurePolicy::default(),
            leading: LeadingPolicy::default(),
            ack_level: AckLevel::default(),
            max_lateness: Duration::from_millis(500),
            rotation_age: Duration::from_secs(40 * 60),
            ack_timeout: Duration::from_secs(20),
        }
    }
}

/// Why a fragment was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The buffer was full ([`PressurePolicy::DropOldest`]).
    BufferFull,
    /// The service refused it with an error that a retry cannot fix.
    Rejected(ServiceErrorCode),
    /// It could not be written (a frame the checks let through that the
    /// Matroska writer refuses — reported rather than lost silently).
    Unwritable(String),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BufferFull => f.write_str("the buffer was full"),
            Self::Rejected(code) => write!(f, "the service refused it ({code})"),
            Self::Unwritable(why) => write!(f, "it cannot be written: {why}"),
        }
    }
}

/// Why a connection is being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationReason {
    /// It reached the rotation age.
    Age,
    /// The next fragment needs a new stream header (CodecPrivate changed).
    NewHeader,
    /// The credentials that signed it expire soon; the next connection is
    /// signed with fresh ones.
    CredentialsExpiring,
}

/// What the producer reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProducerEvent {
    /// A fragment completed at the configured [`AckLevel`].
    Acked {
        /// Its producer timestamp (the cluster timecode), UTC.
        producer_timestamp: SystemTime,
        /// The service's fragment number.
        fragment_number: String,
        /// From the fragment's last byte written to this ACK.
        latency: Duration,
        /// Frames in it.
        frames: usize,
    },
    /// The service sent an ERROR ACK.
    ServiceError {
        /// The producer timestamp of the fragment it names, if any, UTC.
        producer_timestamp: Option<SystemTime>,
        /// The error.
        code: ServiceErrorCode,
        /// Whether sending it again can succeed.
        retriable: bool,
    },
    /// Frames before the first video key frame were skipped
    /// ([`LeadingPolicy::Skip`]); reported once, when the first fragment
    /// closes (or at the end of a stream that never had a key frame).
    LeadingFramesSkipped {
        /// Frames skipped, all tracks.
        frames: usize,
        /// Their bytes.
        bytes: usize,
        /// The first video key frame's presentation time since the
        /// producer's start (`None`: none came).
        first_key: Option<Duration>,
    },
    /// A fragment was given up.
    FragmentDropped {
        /// Its producer timestamp, UTC.
        producer_timestamp: SystemTime,
        /// Frames lost with it.
        frames: usize,
        /// Why.
        reason: DropReason,
    },
    /// A connection is being replaced.
    Rotating {
        /// Why.
        reason: RotationReason,
    },
    /// A connection started.
    Connected {
        /// Its number (1, 2, …).
        connection: u64,
        /// Fragments it will send again (not acknowledged before).
        resending: usize,
    },
    /// A connection ended before its fragments were all acknowledged.
    Disconnected {
        /// Its number.
        connection: u64,
        /// What happened.
        reason: String,
    },
    /// A connection failed or could not be opened; the next try comes after
    /// `delay` (from the async producer).
    Reconnecting {
        /// Failed tries in a row.
        attempt: u32,
        /// The wait before the next.
        delay: Duration,
        /// What failed.
        error: String,
    },
    /// A subscriber fell more than its backlog behind: this many events
    /// were lost to it (from the async producer's event stream).
    EventsLost {
        /// Events it missed.
        missed: u64,
    },
    /// Buffer and upload figures (from the async producer, each second).
    Stats {
        /// Media bytes not yet acknowledged.
        buffered_bytes: usize,
        /// Media time not yet acknowledged.
        buffered_duration: Duration,
        /// Fragments not yet acknowledged.
        buffered_fragments: usize,
        /// Bytes written to connections so far (resent ones again).
        bytes_sent: u64,
    },
}

/// What [`ProducerCore::drain_as_file`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileWritten {
    /// Stream headers written.
    pub headers: usize,
    /// Each fragment's cluster timecode (ms) and its range in the output.
    pub fragments: Vec<(i64, std::ops::Range<usize>)>,
}

/// The outcome of [`ProducerCore::put_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Taken.
    Accepted,
    /// Not taken: the buffer is full and the policy is [`PressurePolicy::Wait`].
    Full,
    /// Skipped: it comes before the first video key frame
    /// ([`LeadingPolicy::Skip`]).
    Skipped,
}

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
    /// When its last chunk was handed out.
    written_at: Option<Instant>,
    /// Chunks handed out on the current connection.
    cursor: usize,
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

/// Parameter sets of one track.
#[derive(Debug)]
enum ParamSets {
    H264(h264::ParameterSets),
    H265(h265::ParameterSets),
}

/// In-band parameter sets of a codec.
trait InBand: Clone + Default {
    /// Takes the sets of an access unit; true when they changed.
    fn take(&mut self, au: &Bytes) -> bool;
    /// The CodecPrivate for the sets held.
    fn private(&self) -> Result<Bytes, CodecError>;
    /// The picture size of the SPS held.
    fn dimensions(&self) -> Result<(u32, u32), CodecError>;
}

impl InBand for h264::ParameterSets {
    fn take(&mut self, au: &Bytes) -> bool {
        self.collect_annexb(au)
    }
    fn private(&self) -> Result<Bytes, CodecError> {
        self.codec_private()
    }
    fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        h264::ParameterSets::dimensions(self)
    }
}

impl InBand for h265::ParameterSets {
    fn take(&mut self, au: &Bytes) -> bool {
        self.collect_annexb(au)
    }
    fn private(&self) -> Result<Bytes, CodecError> {
        self.codec_private()
    }
    fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        h265::ParameterSets::dimensions(self)
    }
}

/// What a key frame's parameter sets give once they changed: the
/// CodecPrivate and the picture size, or why they give none.
type Derived = Option<Result<(Bytes, (u32, u32)), CodecError>>;

/// A track's sets with an access unit's added (a copy), and what they give
/// when they changed.
fn collect<S: InBand>(all: &[(u64, S)], track: u64, au: &Bytes) -> (S, Derived) {
    let mut sets = all
        .iter()
        .find(|(n, _)| *n == track)
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let derived = sets
        .take(au)
        .then(|| Ok((sets.private()?, sets.dimensions()?)));
    (sets, derived)
}

/// Replaces a video track's configured size with the one of the SPS in its
/// CodecPrivate (H.264/H.265), when there is one and they differ.
fn size_from_codec_private(t: &mut TrackConfig) {
    let hevc = match t.codec() {
        Codec::H264 => false,
        Codec::H265 => true,
        _ => return,
    };
    let TrackKind::Video { width, height } = &mut t.kind else {
        return;
    };
    let Some(record) = t.codec_private.as_ref().filter(|p| !p.is_empty()) else {
        return;
    };
    let Some((sets, _)) = crate::codec::annexb::record_parameter_sets(record, hevc) else {
        return;
    };
    let sets = Bytes::from(sets);
    let size = if hevc {
        let mut s = h265::ParameterSets::default();
        s.collect_annexb(&sets);
        s.dimensions()
    } else {
        let mut s = h264::ParameterSets::default();
        s.collect_annexb(&sets);
        s.dimensions()
    };
    if let Ok((w, h)) = size {
        if (w, h) != (*width, *height) {
            tracing::warn!(
                track = t.number,
                configured = %format!("{width}x{height}"),
                sps = %format!("{w}x{h}"),
                "the configured picture size differs from the SPS; the SPS decides"
            );
            *width = w;
            *height = h;
        }
    }
}

/// What a key frame's in-band parameter sets change.
#[derive(Debug)]
struct SetsUpdate {
    /// Index into the tracks.
    track: usize,
    sets: ParamSets,
    /// The new CodecPrivate and picture size, when the CodecPrivate differs.
    private: Option<(Bytes, (u32, u32))>,
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
    /// Metadata tags for the next fragment to close.
    tags: Vec<Tag>,
    bytes_sent: u64,
    /// Presentation time of the first video key frame taken.
    first_key: Option<u64>,
    /// Leading frames skipped (frames, bytes), and whether reported.
    leading: (usize, usize),
    leading_reported: bool,
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
        })
    }

    /// The settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.cfg
    }

    fn is_video(&self, track: u64) -> bool {
        self.tracks
            .iter()
            .any(|t| t.number == track && matches!(t.kind, TrackKind::Video { .. }))
    }

    /// Media bytes buffered (closed fragments not yet acknowledged, plus the
    /// open fragment's frames).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
            + self
                .open
                .iter()
                .map(|p| payload_len(&p.payload))
                .sum::<usize>()
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

    /// Closed fragments waiting for their ACK (or to be sent).
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

    /// Takes a frame (see the module docs for the rules).
    pub fn put_frame(&mut self, frame: Frame, now: Instant) -> Result<PutOutcome, FrameError> {
        let track = frame.track;
        let Some(cfg_track) = self.tracks.iter().find(|t| t.number == track) else {
            return Err(FrameError::UnknownTrack(track));
        };
        let video = matches!(cfg_track.kind, TrackKind::Video { .. });
        let pts_ms = ms(frame.pts);
        let dts_ms = ms(frame.dts.unwrap_or(frame.pts));
        let key = frame.key || !video;
        // Before the first video key frame, or (until the first fragment
        // closes) presented before it: leading frames.
        let leading = self.has_video
            && match self.first_key {
                None => !(video && key),
                Some(k) => self.closed_until.is_none() && pts_ms < k,
            };
        if leading {
            return match self.cfg.leading {
                LeadingPolicy::Skip => {
                    self.leading.0 += 1;
                    self.leading.1 += payload_len(&frame.payload);
                    Ok(PutOutcome::Skipped)
                }
                LeadingPolicy::Refuse => Err(FrameError::LeadingFrame {
                    track,
                    pts_ms,
                    first_key_ms: self.first_key,
                }),
            };
        }
        if let Some((_, prev)) = self.last_dts.iter().find(|(t, _)| *t == track) {
            if dts_ms <= *prev {
                return Err(FrameError::TimestampNotIncreasing {
                    track,
                    previous_ms: *prev,
                    got_ms: dts_ms,
                });
            }
        }
        // With video, every fragment starts at a video key frame: with none
        // open, only such a frame can come.
        if self.has_video && self.open_start.is_none() && !(video && key) {
            return Err(FrameError::NoKeyFrameYet(track));
        }
        if !video {
            // Not into a fragment already closed, nor before the open one.
            let floor = self.closed_until.max(self.open_start);
            if let Some(closed) = floor.filter(|f| pts_ms < *f) {
                return Err(FrameError::TooLate {
                    track,
                    pts_ms,
                    closed_ms: closed,
                    lateness_ms: ms(self.cfg.max_lateness),
                });
            }
        }
        // Parameter sets (checked now, applied once the frame is taken).
        let plan = match (&frame.payload, video && key) {
            (Payload::AnnexB(p), true) => self.plan_codec_private(track, p)?,
            _ => None,
        };
        let new_header =
            !self.gens.is_empty() && plan.as_ref().is_some_and(|p| p.private.is_some());
        // Fragment boundaries.
        let start = self.open_start.unwrap_or(pts_ms);
        let min = ms(self.cfg.fragments.min_duration);
        let max = ms(self.cfg.fragments.max_duration);
        let due = if self.has_video {
            video && key && pts_ms > start && pts_ms >= start + min
        } else {
            pts_ms >= start + if min == 0 { 2000 } else { min }
        };
        // The service refuses a fragment without a frame of every track
        // (4011): the fragment goes on until each track has one, unless a
        // track has been silent for half the longest fragment. New
        // parameter sets need a new header, so they start a fragment.
        let starts_fragment = (due
            && (self.boundary.is_some()
                || self.every_track_before(pts_ms, dts_ms)
                || pts_ms - start >= max / 2))
            || (new_header && video && key && pts_ms > start);
        if !starts_fragment && self.boundary.is_none() && pts_ms.saturating_sub(start) > max {
            return Err(FrameError::FragmentTooLong {
                span_ms: pts_ms - start,
                max_ms: max,
            });
        }
        let size = payload_len(&frame.payload);
        if self.buffered_bytes() + size > self.cfg.max_buffer_bytes
            || self.buffered_duration() > self.cfg.max_buffer_duration
        {
            match self.cfg.pressure {
                PressurePolicy::Wait if !self.buffer.is_empty() => return Ok(PutOutcome::Full),
                PressurePolicy::Wait => {}
                PressurePolicy::DropOldest => self.drop_oldest(size),
            }
        }
        // Taken: from here on the state changes.
        if video && key {
            self.first_key.get_or_insert(pts_ms);
        }
        if let Some(plan) = plan {
            self.commit_codec_private(plan);
        }
        if self.gens.is_empty() || new_header {
            self.gens.push(self.tracks.clone());
        }
        self.open_start.get_or_insert(pts_ms);
        if starts_fragment && self.boundary.is_none() {
            self.boundary = Some((pts_ms, dts_ms, now));
        }
        match self.last_dts.iter_mut().find(|(t, _)| *t == track) {
            Some(e) => e.1 = dts_ms,
            None => self.last_dts.push((track, dts_ms)),
        }
        match self.reached.iter_mut().find(|(t, _)| *t == track) {
            Some(e) => e.1 = e.1.max(pts_ms),
            None => self.reached.push((track, pts_ms)),
        }
        self.open.push(Pending {
            track,
            dts_ms,
            pts_ms,
            key,
            payload: frame.payload,
            gen: self.gens.len() - 1,
        });
        self.try_close(now, false)?;
        Ok(PutOutcome::Accepted)
    }

    /// Whether the open frames before a boundary at (`pts`, `dts`) hold a
    /// frame of every track.
    fn every_track_before(&self, pts: u64, dts: u64) -> bool {
        self.tracks.iter().all(|t| {
            let video = matches!(t.kind, TrackKind::Video { .. });
            self.open.iter().any(|p| {
                p.track == t.number
                    && if video {
                        p.dts_ms < dts
                    } else {
                        p.pts_ms < pts
                    }
            })
        })
    }

    /// What in-band parameter sets would change, without changing anything:
    /// the updated sets and the new CodecPrivate when it differs from the
    /// current one. Fails when the track still has no CodecPrivate.
    fn plan_codec_private(&self, track: u64, au: &Bytes) -> Result<Option<SetsUpdate>, FrameError> {
        let Some(t) = self.tracks.iter().position(|t| t.number == track) else {
            return Ok(None);
        };
        let (sets, derived) = match self.tracks[t].codec() {
            Codec::H264 => {
                let (sets, derived) = collect(&self.h264_sets, track, au);
                (ParamSets::H264(sets), derived)
            }
            Codec::H265 => {
                let (sets, derived) = collect(&self.h265_sets, track, au);
                (ParamSets::H265(sets), derived)
            }
            _ => return Ok(None),
        };
        let current = self.tracks[t]
            .codec_private
            .clone()
            .filter(|p| !p.is_empty());
        let private = match derived {
            Some(Ok(d)) => Some(d).filter(|(p, _)| current.as_ref() != Some(p)),
            Some(Err(e)) if current.is_none() => {
                return Err(FrameError::NoCodecPrivate {
                    track,
                    reason: e.to_string(),
                })
            }
            Some(Err(e)) => {
                // The sets in force stay; the stream goes on with them.
                tracing::warn!(track, error = %e, "in-band parameter sets unusable; keeping the ones in force");
                None
            }
            None => None,
        };
        if current.is_none() && private.is_none() {
            return Err(FrameError::NoCodecPrivate {
                track,
                reason: "the key frame carries no parameter sets (SPS/PPS, and VPS for H.265)"
                    .into(),
            });
        }
        Ok(Some(SetsUpdate {
            track: t,
            sets,
            private,
        }))
    }

    /// Applies a plan; true when an in-use CodecPrivate changed (a new
    /// header is needed).
    fn commit_codec_private(&mut self, plan: SetsUpdate) -> bool {
        let number = self.tracks[plan.track].number;
        match plan.sets {
            ParamSets::H264(s) => match self.h264_sets.iter_mut().find(|(n, _)| *n == number) {
                Some(e) => e.1 = s,
                None => self.h264_sets.push((number, s)),
            },
            ParamSets::H265(s) => match self.h265_sets.iter_mut().find(|(n, _)| *n == number) {
                Some(e) => e.1 = s,
                None => self.h265_sets.push((number, s)),
            },
        }
        let Some((p, (w, h))) = plan.private else {
            return false;
        };
        let t = &mut self.tracks[plan.track];
        t.codec_private = Some(p);
        if let TrackKind::Video { width, height } = &mut t.kind {
            (*width, *height) = (w, h);
        }
        // Before anything was put, the first settings are simply completed.
        !self.gens.is_empty()
    }

    /// Closes fragments that are due: every other track passed the boundary,
    /// the lateness ran out, or (`flush`) the caller wants everything out.
    fn try_close(&mut self, now: Instant, flush: bool) -> Result<(), FrameError> {
        loop {
            let Some((cut_pts, cut_dts, seen)) = self.boundary else {
                if flush && !self.open.is_empty() {
                    self.close(None)?;
                    self.open_start = None;
                }
                return Ok(());
            };
            let boundary_track = self
                .open
                .iter()
                .find(|p| p.pts_ms == cut_pts && p.dts_ms == cut_dts && p.key)
                .map(|p| p.track);
            let others_passed = self.tracks.iter().all(|t| {
                Some(t.number) == boundary_track
                    || self
                        .reached
                        .iter()
                        .any(|(n, r)| *n == t.number && *r >= cut_pts)
            });
            if !(flush || others_passed || now.duration_since(seen) >= self.cfg.max_lateness) {
                return Ok(());
            }
            self.close(Some((cut_pts, cut_dts)))?;
            // The frames left open the next fragment; another boundary may
            // already be among them.
            self.open_start = Some(cut_pts);
            let min = ms(self.cfg.fragments.min_duration);
            self.boundary = self
                .open
                .iter()
                .filter(|p| {
                    self.is_video(p.track)
                        && p.key
                        && p.pts_ms > cut_pts
                        && p.pts_ms >= cut_pts + min
                })
                .map(|p| (p.pts_ms, p.dts_ms, seen))
                .next();
        }
    }

    /// Makes a fragment of the open frames before the boundary (video before
    /// the boundary key frame in decode order, other tracks before its
    /// presentation time), or of all of them, and buffers it.
    fn close(&mut self, cut: Option<(u64, u64)>) -> Result<(), FrameError> {
        let video_tracks: Vec<u64> = self
            .tracks
            .iter()
            .filter(|t| matches!(t.kind, TrackKind::Video { .. }))
            .map(|t| t.number)
            .collect();
        let (mut mine, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|p| match cut {
                None => true,
                Some((_, cut_dts)) if video_tracks.contains(&p.track) => p.dts_ms < cut_dts,
                Some((cut_pts, _)) => p.pts_ms < cut_pts,
            });
        self.open = rest;
        let closed = cut.map_or_else(
            || mine.iter().map(|p| p.pts_ms + 1).max().unwrap_or(0),
            |(c, _)| c,
        );
        self.closed_until = Some(self.closed_until.map_or(closed, |c| c.max(closed)));
        self.report_leading();
        if mine.is_empty() {
            return Ok(());
        }
        // Interleave by decode time; each track is already in decode order.
        mine.sort_by_key(|p| p.dts_ms);
        // The fragment's settings are those its first frame was put under.
        let gen = mine[0].gen;
        let first = mine[0].pts_ms;
        let unwritable = |e: BuildError, events: &mut VecDeque<ProducerEvent>| {
            events.push_back(ProducerEvent::FragmentDropped {
                producer_timestamp: utc(self.cfg.start_ms + first),
                frames: mine.len(),
                reason: DropReason::Unwritable(e.to_string()),
            });
        };
        if self.builder_gen != Some(gen) {
            let builder = match FragmentBuilder::new(StreamConfig::new(self.gens[gen].clone())) {
                Ok(b) => b,
                Err(e) => {
                    unwritable(e, &mut self.events);
                    return Ok(());
                }
            };
            self.headers.push(builder.header());
            self.builder = Some(builder);
            self.builder_gen = Some(gen);
        }
        let start_ms = self.cfg.start_ms;
        let frames: Vec<FrameIn> = mine
            .iter()
            .map(|p| FrameIn {
                track: p.track,
                timecode: (start_ms + p.pts_ms) as i64,
                key: p.key,
                payload: p.payload.clone(),
            })
            .collect();
        let mut chunks = Vec::new();
        let Some(builder) = self.builder.as_mut() else {
            return Ok(());
        };
        if let Err(e) = builder.fragment(&frames, &self.tags, &mut chunks) {
            unwritable(e, &mut self.events);
            return Ok(());
        }
        self.tags.clear();
        // The end-of-fragment tag ends the unknown-size Cluster, so the
        // service acknowledges the fragment without waiting for the next.
        chunks.push(FragmentBuilder::end_of_fragment_tag());
        let bytes: usize = mine.iter().map(|p| payload_len(&p.payload)).sum();
        let last = mine.iter().map(|p| p.pts_ms).max().unwrap_or(first);
        self.buffered_bytes += bytes;
        self.buffer.push_back(Fragment {
            timecode_ms: start_ms + first,
            duration_ms: last - first,
            header: self.headers.len() - 1,
            chunks,
            bytes,
            frames: mine.len(),
            state: FragState::Pending,
            written_at: None,
            cursor: 0,
        });
        Ok(())
    }

    /// Reports the leading frames skipped, once.
    fn report_leading(&mut self) {
        if !self.leading_reported && self.leading.0 > 0 {
            self.leading_reported = true;
            self.events.push_back(ProducerEvent::LeadingFramesSkipped {
                frames: self.leading.0,
                bytes: self.leading.1,
                first_key: self.first_key.map(Duration::from_millis),
            });
        }
    }

    /// Frames skipped before the first video key frame so far (frames,
    /// bytes).
    pub fn leading_skipped(&self) -> (usize, usize) {
        self.leading
    }

    fn drop_oldest(&mut self, incoming: usize) {
        while self.buffered_bytes() + incoming > self.cfg.max_buffer_bytes
            || self.buffered_duration() > self.cfg.max_buffer_duration
        {
            // Never the fragment whose chunks are going out right now.
            let live = self.conn.is_some();
            let Some(i) = self
                .buffer
                .iter()
                .position(|f| !live || f.cursor == 0 || f.written_at.is_some())
            else {
                return;
            };
            let Some(f) = self.buffer.remove(i) else {
                return;
            };
            self.buffered_bytes -= f.bytes;
            self.events.push_back(ProducerEvent::FragmentDropped {
                producer_timestamp: utc(f.timecode_ms),
                frames: f.frames,
                reason: DropReason::BufferFull,
            });
        }
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

    /// Time has passed: closes fragments whose lateness ran out, and starts a
    /// rotation when the connection is old.
    pub fn tick(&mut self, now: Instant) {
        let _ = self.try_close(now, false);
        if let Some(c) = &mut self.conn {
            let reason = if now.duration_since(c.opened) >= self.cfg.rotation_age {
                Some(RotationReason::Age)
            } else if c.deadline.is_some_and(|d| now >= d) {
                Some(RotationReason::CredentialsExpiring)
            } else {
                None
            };
            if let (None, Some(r)) = (c.rotation, reason) {
                c.rotation = Some(r);
                self.events.push_back(ProducerEvent::Rotating { reason: r });
            }
        }
    }

    /// The next instant something is due without any input: a fragment
    /// closing because its lateness ran out, a rotation (connection age or
    /// expiring credentials), the connection becoming stalled. A driver
    /// calls [`Self::tick`] (and checks [`Self::stalled`]) then, instead of
    /// polling on a fixed period. `None`: nothing is due until more input.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lateness = self
            .boundary
            .map(|(_, _, seen)| seen + self.cfg.max_lateness);
        let (rotation, credentials, stall) = match &self.conn {
            Some(c) if c.rotation.is_none() => (
                Some(c.opened + self.cfg.rotation_age),
                c.deadline,
                self.stall_clock(c).map(|s| s + self.cfg.ack_timeout),
            ),
            Some(c) => (
                None,
                None,
                self.stall_clock(c).map(|s| s + self.cfg.ack_timeout),
            ),
            None => (None, None, None),
        };
        [lateness, rotation, credentials, stall]
            .into_iter()
            .flatten()
            .min()
    }

    /// Where the ACK timeout of connection `c` counts from: the later of
    /// its last ACK and the oldest unacknowledged write (`None`: nothing
    /// written waits for an ACK).
    fn stall_clock(&self, c: &Conn) -> Option<Instant> {
        let oldest = self.buffer.iter().filter_map(|f| f.written_at).min()?;
        Some(c.last_ack.map_or(oldest, |a| a.max(oldest)))
    }

    /// Whether the current connection is stalled (to be replaced): data
    /// written on it waits for an ACK, and no ACK has come for the ACK
    /// timeout — counted from the later of the last ACK and the oldest
    /// unacknowledged write. A slow but moving connection (ACKs still
    /// coming while a backlog drains through a narrow uplink) is never
    /// stalled; a silent one (a dead NAT mapping) is, after the timeout.
    pub fn stalled(&self, now: Instant) -> bool {
        self.conn
            .as_ref()
            .and_then(|c| self.stall_clock(c))
            .is_some_and(|since| now.duration_since(since) >= self.cfg.ack_timeout)
    }

    /// Closes the open fragment (at the end of the media).
    pub fn flush(&mut self, now: Instant) -> Result<(), FrameError> {
        self.try_close(now, true)?;
        self.report_leading();
        self.open_start = None;
        Ok(())
    }

    /// A new connection is up; returns its number. Every fragment not yet
    /// acknowledged will go out on it, after a stream header.
    pub fn connected(&mut self, now: Instant) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let mut resending = 0;
        for f in &mut self.buffer {
            if f.state != FragState::Pending || f.cursor > 0 {
                resending += 1;
            }
            f.state = FragState::Pending;
            f.cursor = 0;
            f.written_at = None;
        }
        self.conn = Some(Conn {
            id,
            opened: now,
            deadline: None,
            header: None,
            header_sent: false,
            draining: false,
            rotation: None,
            last_ack: None,
        });
        self.events.push_back(ProducerEvent::Connected {
            connection: id,
            resending,
        });
        id
    }

    /// The current connection must be replaced by `at` (its credentials
    /// expire); the rotation happens at the first fragment boundary after.
    pub fn rotate_by(&mut self, at: Instant) {
        if let Some(c) = &mut self.conn {
            c.deadline = Some(at);
        }
    }

    /// The connection ended (cut, refused, or drained after a rotation).
    /// Its unacknowledged fragments will be sent again on the next one.
    pub fn disconnected(&mut self, reason: &str) {
        let Some(c) = self.conn.take() else { return };
        let unacked = self
            .buffer
            .iter()
            .any(|f| matches!(f.state, FragState::Sent { conn } if conn == c.id));
        // What it sent but did not get acknowledged goes out again on the
        // next connection (counted there).
        if unacked || c.rotation.is_none() {
            self.events.push_back(ProducerEvent::Disconnected {
                connection: c.id,
                reason: reason.to_owned(),
            });
        }
    }

    /// Whether the current connection should end its body now: it is being
    /// rotated and has written every fragment it started.
    pub fn should_end_body(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.draining)
    }

    /// Whether the current connection is being replaced.
    pub fn rotating(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.rotation.is_some())
    }

    /// The next chunk to write on the current connection, if any: the stream
    /// header, then the fragments not yet sent, in order.
    pub fn next_chunk(&mut self, now: Instant) -> Option<Bytes> {
        let conn = self.conn.as_mut()?;
        if conn.draining {
            return None;
        }
        // A fragment under way is finished first.
        let idx = self
            .buffer
            .iter()
            .position(|f| f.cursor > 0 && f.written_at.is_none())
            .or_else(|| {
                self.buffer
                    .iter()
                    .position(|f| f.state == FragState::Pending && f.cursor == 0)
            })?;
        let f = &self.buffer[idx];
        if f.cursor == 0 {
            // A new fragment: rotate first if needed.
            if conn.rotation.is_some() {
                conn.draining = true;
                return None;
            }
            match conn.header {
                Some(h) if h != f.header => {
                    conn.rotation = Some(RotationReason::NewHeader);
                    conn.draining = true;
                    self.events.push_back(ProducerEvent::Rotating {
                        reason: RotationReason::NewHeader,
                    });
                    return None;
                }
                _ => {}
            }
            if !conn.header_sent {
                conn.header_sent = true;
                conn.header = Some(f.header);
                let h = self.headers[f.header].clone();
                self.bytes_sent += h.len() as u64;
                return Some(h);
            }
        }
        let id = conn.id;
        let f = &mut self.buffer[idx];
        let chunk = f.chunks[f.cursor].clone();
        f.cursor += 1;
        f.state = FragState::Sent { conn: id };
        if f.cursor == f.chunks.len() {
            f.written_at = Some(now);
        }
        self.bytes_sent += chunk.len() as u64;
        Some(chunk)
    }

    /// An ACK arrived on connection `conn`.
    pub fn on_ack(&mut self, conn: u64, ack: &Ack, now: Instant) {
        match self.conn.as_mut() {
            // IDLE says the service has nothing from us: not progress.
            Some(c) if c.id == conn => {
                if !matches!(ack, Ack::Idle) {
                    c.last_ack = Some(now);
                }
            }
            _ => return,
        }
        let find = |buffer: &VecDeque<Fragment>, tc: u64| {
            buffer.iter().position(|f| {
                f.timecode_ms == tc && matches!(f.state, FragState::Sent { conn: c } if c == conn)
            })
        };
        match ack {
            Ack::Received {
                fragment_timecode,
                fragment_number,
            }
            | Ack::Persisted {
                fragment_timecode,
                fragment_number,
            } => {
                let Some(i) = find(&self.buffer, *fragment_timecode) else {
                    return;
                };
                let persisted = matches!(ack, Ack::Persisted { .. });
                if persisted || self.cfg.ack_level == AckLevel::Received {
                    let Some(f) = self.buffer.remove(i) else {
                        return;
                    };
                    self.buffered_bytes -= f.bytes;
                    self.events.push_back(ProducerEvent::Acked {
                        producer_timestamp: utc(f.timecode_ms),
                        fragment_number: fragment_number.clone(),
                        latency: f
                            .written_at
                            .map_or(Duration::ZERO, |w| now.duration_since(w)),
                        frames: f.frames,
                    });
                }
            }
            Ack::Error {
                fragment_timecode,
                code,
                ..
            } => {
                let retriable = code.is_retryable();
                self.events.push_back(ProducerEvent::ServiceError {
                    producer_timestamp: fragment_timecode.map(utc),
                    code: *code,
                    retriable,
                });
                if !retriable {
                    let found = fragment_timecode.and_then(|tc| find(&self.buffer, tc));
                    if let Some(f) = found.and_then(|i| self.buffer.remove(i)) {
                        self.buffered_bytes -= f.bytes;
                        self.events.push_back(ProducerEvent::FragmentDropped {
                            producer_timestamp: utc(f.timecode_ms),
                            frames: f.frames,
                            reason: DropReason::Rejected(*code),
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Takes every buffered fragment out as one Matroska stream, for a file
    /// rather than a connection: a stream header, the fragments in order, and
    /// a new header wherever the parameter sets change. The END_OF_FRAGMENT
    /// tags, a signal to the service only, are left out. The fragments count
    /// as written and leave the buffer (no ACK will come for them).
    pub fn drain_as_file(&mut self, out: &mut Vec<Bytes>) -> FileWritten {
        let mut written = FileWritten::default();
        let mut header = None;
        for f in std::mem::take(&mut self.buffer) {
            if header != Some(f.header) {
                header = Some(f.header);
                out.push(self.headers[f.header].clone());
                written.headers += 1;
            }
            let first = out.len();
            // The last chunk is the END_OF_FRAGMENT tag.
            let media = f.chunks.len().saturating_sub(1);
            out.extend(f.chunks.into_iter().take(media));
            written
                .fragments
                .push((f.timecode_ms as i64, first..out.len()));
        }
        self.buffered_bytes = 0;
        written
    }

    /// Nothing left to send or to be acknowledged (after [`Self::flush`]).
    pub fn is_idle(&self) -> bool {
        self.buffer.is_empty() && self.open.is_empty()
    }
}

fn payload_len(p: &Payload) -> usize {
    match p {
        Payload::Raw(b) | Payload::AnnexB(b) => b.len(),
    }
}
