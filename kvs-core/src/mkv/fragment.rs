//! KVS fragment assembler: groups parser events into [`Fragment`]s with the
//! service's metadata tags.
//!
//! GetMedia and GetMediaForFragmentList send one EBML document per fragment:
//! `FRAGMENT_NUMBER`, `SERVER_TIMESTAMP` and `PRODUCER_TIMESTAMP` tags before
//! the Cluster (GetMediaForFragmentList spells them `SERVER_SIDE_TIMESTAMP`
//! and `PRODUCER_SIDE_TIMESTAMP`; both are read), `MILLIS_BEHIND_NOW` and
//! `CONTINUATION_TOKEN` after it (GetMedia only). A
//! fragment is handed out as soon as its trailing service tags arrive, so a
//! live consumer is never one fragment late. Producer-side streams (one
//! Segment, many Clusters) give one fragment per Cluster; tags in front of a
//! Cluster belong to it, as in PutMedia.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::error::ParseError;
use super::parser::{Event, Parser, ParserConfig};
use super::types::{ParsedFrame, SimpleTag, TrackInfo};

/// Service tag: fragment number.
pub const TAG_FRAGMENT_NUMBER: &str = "AWS_KINESISVIDEO_FRAGMENT_NUMBER";
/// Service tag: server timestamp (GetMedia spelling).
pub const TAG_SERVER_TIMESTAMP: &str = "AWS_KINESISVIDEO_SERVER_TIMESTAMP";
/// Service tag: server timestamp (GetMediaForFragmentList spelling).
pub const TAG_SERVER_SIDE_TIMESTAMP: &str = "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP";
/// Service tag: producer timestamp (GetMedia spelling).
pub const TAG_PRODUCER_TIMESTAMP: &str = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP";
/// Service tag: producer timestamp (GetMediaForFragmentList spelling).
pub const TAG_PRODUCER_SIDE_TIMESTAMP: &str = "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP";
/// Service tag: how far behind live the fragment is.
pub const TAG_MILLIS_BEHIND_NOW: &str = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW";
/// Service tag: where to resume.
pub const TAG_CONTINUATION_TOKEN: &str = "AWS_KINESISVIDEO_CONTINUATION_TOKEN";
/// Service tag: numeric error.
pub const TAG_ERROR_ID: &str = "AWS_KINESISVIDEO_EXCEPTION_ERROR_ID";
/// Service tag: the exception's integer code (GetMediaForFragmentList
/// spelling; read into both [`Fragment::error_id`] and
/// [`Fragment::error_code`]).
pub const TAG_ERROR_CODE: &str = "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE";
/// Service tag: error code (GetMedia spelling).
pub const TAG_GETMEDIA_ERROR_CODE: &str = "AWS_KINESISVIDEO_ERROR_CODE";
/// Service tag: numeric error (GetMedia spelling).
pub const TAG_GETMEDIA_ERROR_ID: &str = "AWS_KINESISVIDEO_ERROR_ID";
/// Service tag: error message.
pub const TAG_ERROR_MESSAGE: &str = "AWS_KINESISVIDEO_EXCEPTION_MESSAGE";

/// One fragment with its frames and the service's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// Service-assigned fragment number (a long decimal string).
    pub fragment_number: Option<String>,
    /// When the service received the fragment, ms since the epoch.
    pub server_timestamp_ms: Option<u64>,
    /// The producer's timestamp of the fragment, ms since the epoch.
    pub producer_timestamp_ms: Option<u64>,
    /// How far behind live this fragment was sent.
    pub millis_behind_now: Option<u64>,
    /// Token to resume GetMedia after this fragment.
    pub continuation_token: Option<String>,
    /// Numeric error the service reported in place of / after the fragment.
    pub error_id: Option<u64>,
    /// Error code the service reported.
    pub error_code: Option<String>,
    /// The cluster's Timecode (TimecodeScale units).
    pub cluster_timecode: Option<u64>,
    /// Nanoseconds per timecode unit.
    pub timecode_scale: u64,
    /// The tracks in force.
    pub tracks: Arc<Vec<TrackInfo>>,
    /// The frames, in stream order.
    pub frames: Vec<ParsedFrame>,
    /// Tags that are not the service's, in stream order: (name, value).
    pub tags: Vec<(String, String)>,
    /// False when the input ended inside this fragment.
    pub complete: bool,
}

/// What is known of a fragment from its leading tags and Cluster head,
/// before its frames: it comes with each frame handed out as soon as its
/// block is parsed ([`Assembled::Frame`]). The same values as the
/// fragment's own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentHead {
    /// Service-assigned fragment number (a long decimal string).
    pub fragment_number: Option<String>,
    /// When the service received the fragment, ms since the epoch (UTC).
    pub server_timestamp_ms: Option<u64>,
    /// The producer's timestamp of the fragment, ms since the epoch (UTC).
    pub producer_timestamp_ms: Option<u64>,
    /// The cluster's Timecode (TimecodeScale units).
    pub cluster_timecode: Option<u64>,
    /// Nanoseconds per timecode unit.
    pub timecode_scale: u64,
    /// The tracks in force.
    pub tracks: Arc<Vec<TrackInfo>>,
}

impl From<&Fragment> for FragmentHead {
    fn from(f: &Fragment) -> Self {
        Self {
            fragment_number: f.fragment_number.clone(),
            server_timestamp_ms: f.server_timestamp_ms,
            producer_timestamp_ms: f.producer_timestamp_ms,
            cluster_timecode: f.cluster_timecode,
            timecode_scale: f.timecode_scale,
            tracks: f.tracks.clone(),
        }
    }
}

/// What [`FragmentAssembler::next_item`] hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembled {
    /// A frame, as soon as its block is parsed (only with
    /// [`FragmentAssembler::yield_frames`]), with its fragment's head. The
    /// fragment itself follows once it ends, with this frame among its
    /// frames.
    Frame(Arc<FragmentHead>, ParsedFrame),
    /// A fragment that ended (whole, or cut: `complete == false`).
    Fragment(Fragment),
}

impl Fragment {
    fn new(tracks: Arc<Vec<TrackInfo>>, timecode_scale: u64) -> Self {
        Self {
            fragment_number: None,
            server_timestamp_ms: None,
            producer_timestamp_ms: None,
            millis_behind_now: None,
            continuation_token: None,
            error_id: None,
            error_code: None,
            cluster_timecode: None,
            timecode_scale,
            tracks,
            frames: Vec::new(),
            tags: Vec::new(),
            complete: true,
        }
    }

    /// Payload bytes of all frames.
    pub fn payload_bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.payload.len() as u64).sum()
    }

    /// The fragment as a Matroska file of its own (a stream header with its
    /// tracks, then one Cluster with its frames at their timestamps, ms),
    /// which players and FFmpeg read: for saving a fragment, or handing it
    /// to a tool. Chunks, in order.
    ///
    /// Errors: [`BuildError`](super::builder::BuildError) for a fragment without frames, one whose first
    /// frame is not a key frame, or tracks the builder refuses.
    pub fn to_mkv(&self) -> Result<Vec<Bytes>, super::builder::BuildError> {
        use super::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
        let tracks: Vec<TrackConfig> = self.tracks.iter().map(TrackConfig::from).collect();
        let mut b = FragmentBuilder::new(StreamConfig::new(tracks))?;
        let frames: Vec<FrameIn> = self
            .frames
            .iter()
            .map(|f| FrameIn {
                track: f.track,
                timecode: f.timestamp_ns.div_euclid(1_000_000),
                key: f.key,
                payload: Payload::Raw(f.payload.clone()),
            })
            .collect();
        let mut out = vec![b.header()];
        b.fragment(&frames, &[], &mut out)?;
        Ok(out)
    }

    fn apply(&mut self, t: &SimpleTag) {
        let v = t.string.as_deref().unwrap_or("").trim_end_matches('\0');
        match t.name.as_str() {
            TAG_FRAGMENT_NUMBER => self.fragment_number = Some(v.to_owned()),
            TAG_SERVER_TIMESTAMP | TAG_SERVER_SIDE_TIMESTAMP => {
                self.server_timestamp_ms = parse_epoch_ms(v)
            }
            TAG_PRODUCER_TIMESTAMP | TAG_PRODUCER_SIDE_TIMESTAMP => {
                self.producer_timestamp_ms = parse_epoch_ms(v)
            }
            TAG_MILLIS_BEHIND_NOW => self.millis_behind_now = v.parse().ok(),
            TAG_CONTINUATION_TOKEN => self.continuation_token = Some(v.to_owned()),
            TAG_ERROR_ID | TAG_GETMEDIA_ERROR_ID => self.error_id = v.parse().ok(),
            TAG_ERROR_CODE => {
                // GetMediaForFragmentList: "the integer code" of the exception.
                if self.error_id.is_none() {
                    self.error_id = v.parse().ok();
                }
                self.error_code = Some(v.to_owned());
            }
            TAG_GETMEDIA_ERROR_CODE => self.error_code = Some(v.to_owned()),
            TAG_ERROR_MESSAGE => {}
            _ => {
                if let Some(s) = &t.string {
                    self.tags.push((t.name.clone(), s.clone()));
                }
            }
        }
    }

    fn has_metadata(&self) -> bool {
        self.fragment_number.is_some()
            || self.error_code.is_some()
            || self.error_id.is_some()
            || !self.tags.is_empty()
    }
}

/// Parses decimal epoch seconds (`1511852109.126`) into milliseconds.
pub fn parse_epoch_ms(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let mut ms = 0u64;
    for (i, b) in frac.bytes().take(3).enumerate() {
        ms += u64::from(b - b'0') * 10u64.pow(2 - i as u32);
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

/// Names the service puts after a Cluster.
fn is_trailing(name: &str) -> bool {
    name == TAG_MILLIS_BEHIND_NOW || name == TAG_CONTINUATION_TOKEN
}

/// Names the service puts before a Cluster.
fn is_leading(name: &str) -> bool {
    matches!(
        name,
        TAG_FRAGMENT_NUMBER
            | TAG_SERVER_TIMESTAMP
            | TAG_SERVER_SIDE_TIMESTAMP
            | TAG_PRODUCER_TIMESTAMP
            | TAG_PRODUCER_SIDE_TIMESTAMP
    )
}

/// Limits of the assembler on top of the parser's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerLimits {
    /// Largest fragment (payload bytes) held before it is handed out (default 64 MiB).
    pub max_fragment_bytes: u64,
}

impl Default for AssemblerLimits {
    fn default() -> Self {
        Self {
            max_fragment_bytes: 64 << 20,
        }
    }
}

/// Errors of the assembler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    /// The Matroska underneath is bad or was cut.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A fragment grew past [`AssemblerLimits::max_fragment_bytes`].
    #[error("fragment at byte {offset} exceeds {limit} payload bytes")]
    TooLarge {
        /// Offset of the block that crossed the limit.
        offset: u64,
        /// The limit in force.
        limit: u64,
    },
}

/// Push-style fragment assembler. Feed bytes, poll fragments.
#[derive(Debug)]
pub struct FragmentAssembler {
    parser: Parser,
    limits: AssemblerLimits,
    tracks: Arc<Vec<TrackInfo>>,
    scale: u64,
    /// Metadata gathered for the next cluster.
    next: Option<Fragment>,
    /// The fragment of the current (or just ended) cluster.
    cur: Option<Fragment>,
    cur_bytes: u64,
    cluster_open: bool,
    /// User tags seen after the current cluster ended.
    after: Vec<(String, String)>,
    /// Whether frames are handed out as they are parsed.
    frames: bool,
    /// The current fragment's head, once its first frame came.
    head: Option<Arc<FragmentHead>>,
    /// The current fragment's frames are not kept ([`Self::release_frames`]).
    released: bool,
    ready: VecDeque<Assembled>,
    failed: Option<FragmentError>,
}

impl Default for FragmentAssembler {
    fn default() -> Self {
        Self::new(ParserConfig::default(), AssemblerLimits::default())
    }
}

impl FragmentAssembler {
    /// An assembler over a parser with these settings.
    pub fn new(cfg: ParserConfig, limits: AssemblerLimits) -> Self {
        Self {
            parser: Parser::new(cfg),
            limits,
            tracks: Arc::new(Vec::new()),
            scale: 1_000_000,
            next: None,
            cur: None,
            cur_bytes: 0,
            cluster_open: false,
            after: Vec::new(),
            frames: false,
            head: None,
            released: false,
            ready: VecDeque::new(),
            failed: None,
        }
    }

    /// Hands out each frame as soon as its block is parsed
    /// ([`Assembled::Frame`] from [`Self::next_item`]), not only within
    /// its fragment once the fragment ends.
    pub fn yield_frames(&mut self, on: bool) {
        self.frames = on;
    }

    /// Drops the frames of the fragment being assembled and keeps none of
    /// its later ones: its [`Assembled::Fragment`] comes with `frames`
    /// empty (its metadata, tags and `complete` as ever). For a reader that
    /// took every frame of it as [`Assembled::Frame`]s, so a fragment's
    /// frames are not held twice — memory stays at the frames in flight
    /// rather than a whole fragment. Its size limit
    /// ([`AssemblerLimits::max_fragment_bytes`]) no longer applies to it.
    /// `head` names the fragment (that of its frames handed out); nothing
    /// happens when the fragment being assembled is another.
    pub fn release_frames(&mut self, head: &Arc<FragmentHead>) {
        let same = self.head.as_ref().is_some_and(|h| Arc::ptr_eq(h, head));
        if let (true, Some(f)) = (same, self.cur.as_mut()) {
            self.released = true;
            f.frames = Vec::new();
        }
    }

    /// Feeds a chunk (kept, not copied).
    pub fn push(&mut self, chunk: Bytes) {
        self.parser.push(chunk);
    }

    /// Feeds a chunk by copying it.
    pub fn push_slice(&mut self, chunk: &[u8]) {
        self.parser.push_slice(chunk);
    }

    /// Declares the end of input.
    pub fn finish(&mut self) {
        self.parser.finish();
    }

    /// Stream bytes consumed so far. Right after [`Self::next_fragment`]
    /// returns a fragment that its trailing service tags closed (as in
    /// GetMedia output), this is the offset where that fragment's bytes end.
    pub fn offset(&self) -> u64 {
        self.parser.offset()
    }

    /// The next complete fragment; `Ok(None)` when more input is needed or
    /// the input is done. If the input was cut inside a fragment, that
    /// fragment comes out with `complete == false` before the error.
    pub fn next_fragment(&mut self) -> Result<Option<Fragment>, FragmentError> {
        loop {
            match self.next_item()? {
                Some(Assembled::Fragment(f)) => return Ok(Some(f)),
                Some(Assembled::Frame(..)) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next frame (with [`Self::yield_frames`]) or fragment, in stream
    /// order; `Ok(None)` when more input is needed or the input is done. As
    /// [`Self::next_fragment`] otherwise.
    pub fn next_item(&mut self) -> Result<Option<Assembled>, FragmentError> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Ok(Some(f));
            }
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            match self.parser.next_event() {
                Ok(Some(ev)) => {
                    if let Err(e) = self.on_event(ev) {
                        self.failed = Some(e);
                    }
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    if let Some(mut f) = self.cur.take() {
                        f.tags.append(&mut self.after);
                        f.complete = false;
                        self.ready.push_back(Assembled::Fragment(f));
                    }
                    self.failed = Some(e.into());
                }
            }
        }
    }

    fn close_cur(&mut self) {
        if let Some(mut f) = self.cur.take() {
            f.tags.append(&mut self.after);
            self.ready.push_back(Assembled::Fragment(f));
        }
        self.after.clear();
        self.cluster_open = false;
        self.head = None;
        self.released = false;
    }

    fn on_event(&mut self, ev: Event) -> Result<(), FragmentError> {
        match ev {
            Event::Header(_) | Event::SegmentStart { .. } => {
                self.close_cur();
                if matches!(ev, Event::SegmentStart { .. }) {
                    self.scale = 1_000_000;
                }
            }
            Event::Info(i) => self.scale = i.timecode_scale,
            Event::Tracks(t) => self.tracks = Arc::new(t),
            Event::Tags { tags, .. } => {
                let mut closes = false;
                for t in &tags {
                    if is_leading(&t.name) {
                        if self.cur.is_some() && !self.cluster_open {
                            self.close_cur();
                        }
                        self.next
                            .get_or_insert_with(|| Fragment::new(self.tracks.clone(), self.scale))
                            .apply(t);
                    } else if let Some(cur) = self.cur.as_mut().filter(|_| {
                        is_trailing(&t.name) || t.name.starts_with("AWS_KINESISVIDEO_E")
                    }) {
                        cur.apply(t);
                        closes |= is_trailing(&t.name);
                    } else if self.cur.is_some() && !t.name.starts_with("AWS_KINESISVIDEO_") {
                        if let Some(s) = &t.string {
                            self.after.push((t.name.clone(), s.clone()));
                        }
                    } else {
                        self.next
                            .get_or_insert_with(|| Fragment::new(self.tracks.clone(), self.scale))
                            .apply(t);
                    }
                }
                if closes {
                    self.close_cur();
                }
            }
            Event::ClusterStart { .. } => {
                // Tags between two clusters of one segment belong to the next.
                let carried = std::mem::take(&mut self.after);
                self.close_cur();
                let mut f = self
                    .next
                    .take()
                    .unwrap_or_else(|| Fragment::new(self.tracks.clone(), self.scale));
                f.tracks = self.tracks.clone();
                f.timecode_scale = self.scale;
                let mut tags = carried;
                tags.append(&mut f.tags);
                f.tags = tags;
                self.cur = Some(f);
                self.head = None;
                self.released = false;
                self.cur_bytes = 0;
                self.cluster_open = true;
            }
            Event::ClusterTimecode(tc) => {
                if let Some(f) = self.cur.as_mut() {
                    f.cluster_timecode = Some(tc);
                }
            }
            Event::Frame(fr) => {
                self.cur_bytes += fr.payload.len() as u64;
                if !self.released && self.cur_bytes > self.limits.max_fragment_bytes {
                    return Err(FragmentError::TooLarge {
                        offset: fr.offset,
                        limit: self.limits.max_fragment_bytes,
                    });
                }
                if let Some(f) = self.cur.as_mut() {
                    if self.frames {
                        let head = self
                            .head
                            .get_or_insert_with(|| Arc::new(FragmentHead::from(&*f)));
                        self.ready
                            .push_back(Assembled::Frame(head.clone(), fr.clone()));
                    }
                    if !self.released {
                        f.frames.push(fr);
                    }
                }
            }
            Event::ClusterEnd => self.cluster_open = false,
            Event::DocumentEnd => {
                self.close_cur();
                if let Some(f) = self.next.take().filter(Fragment::has_metadata) {
                    self.ready.push_back(Assembled::Fragment(f));
                }
            }
        }
        Ok(())
    }
}
