//! The streaming Matroska push parser.
//!
//! Bytes go in with [`Parser::push`] in chunks of any size; events come out of
//! [`Parser::next_event`]. The parser waits for whole elements before acting
//! on them, so the events do not depend on where the input was cut
//! (split-invariant). Frame payloads are slices of the pushed chunks; only a
//! block that straddles two chunks is copied, once.
//!
//! What it accepts: unknown-size Segment and Cluster (ended by the next
//! element that cannot be their child, or by the end of input), back-to-back
//! EBML documents (one per GetMedia fragment), known sizes of any width,
//! CRC-32 and Void anywhere, SeekHead/Cues/Chapters/Attachments (skipped
//! without buffering), BlockGroups, Xiph/EBML/fixed lacing, any TimecodeScale.
//! Unknown elements are skipped unless [`ParserConfig::strict`] is set.

use std::collections::VecDeque;

use bytes::Bytes;

use super::error::ParseError;
use super::ids;
use super::meta;
use super::types::{EbmlHeader, ParsedFrame, SegmentInfo, SimpleTag, TrackInfo};
use crate::ebml::reader::{read_header, ChunkQueue, HeaderRead};

/// Resource limits, enforced before anything is buffered or allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest SimpleBlock or BlockGroup buffered whole (default 64 MiB; the
    /// service caps a whole fragment at 50 MB).
    pub max_block_size: u64,
    /// Largest EBML header, Info, Tracks or Tags element (default 8 MiB).
    pub max_metadata_size: u64,
    /// Deepest nesting inside a buffered element (default 32).
    pub max_depth: usize,
    /// Most SimpleTags in one Tags element (default 1024).
    pub max_tags: usize,
    /// Most tracks in one Tracks element (default 127).
    pub max_tracks: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_block_size: 64 << 20,
            max_metadata_size: 8 << 20,
            max_depth: 32,
            max_tags: 1024,
            max_tracks: 127,
        }
    }
}

/// Parser settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParserConfig {
    /// Limits on what the input may make the parser hold.
    pub limits: Limits,
    /// Reject unknown elements and CRC-32 mismatches instead of skipping them.
    pub strict: bool,
}

/// What the parser reports, in stream order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// An EBML header: a new document starts.
    Header(EbmlHeader),
    /// A Segment starts.
    SegmentStart {
        /// Stream offset of the Segment element.
        offset: u64,
        /// Its declared size, `None` when unknown.
        size: Option<u64>,
    },
    /// The segment's Info.
    Info(SegmentInfo),
    /// The segment's Tracks.
    Tracks(Vec<TrackInfo>),
    /// A Cluster starts.
    ClusterStart {
        /// Stream offset of the Cluster element.
        offset: u64,
        /// Its declared size, `None` when unknown.
        size: Option<u64>,
    },
    /// The cluster's Timecode (TimecodeScale units).
    ClusterTimecode(u64),
    /// One frame (one per lace of a laced block).
    Frame(ParsedFrame),
    /// The SimpleTags of one Tags element, flattened in document order.
    Tags {
        /// Stream offset of the Tags element.
        offset: u64,
        /// The tags.
        tags: Vec<SimpleTag>,
    },
    /// The current Cluster ended.
    ClusterEnd,
    /// The Segment ended, and with it the document.
    DocumentEnd,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    id: u32,
    offset: u64,
    /// Its own end, when its size is known.
    end: Option<u64>,
    /// Where it must end at the latest: its own end, else the nearest known
    /// end of an enclosing element (an unknown-size Cluster in a sized Segment).
    limit: Option<u64>,
}

/// The streaming parser. See the module docs.
#[derive(Debug)]
pub struct Parser {
    q: ChunkQueue,
    cfg: ParserConfig,
    stack: Vec<Open>,
    skip: u64,
    skip_from: (u64, u32),
    pending: VecDeque<Event>,
    failed: Option<ParseError>,
    finished: bool,
    seen_element: bool,
    timecode_scale: u64,
    cluster_timecode: Option<u64>,
    default_durations: Vec<(u64, u64)>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(ParserConfig::default())
    }
}

fn is_level1(id: u32) -> bool {
    matches!(
        id,
        ids::SEEK_HEAD
            | ids::INFO
            | ids::TRACKS
            | ids::CLUSTER
            | ids::CUES
            | ids::CHAPTERS
            | ids::ATTACHMENTS
            | ids::TAGS
    )
}

fn is_child(parent: u32, id: u32) -> bool {
    match parent {
        ids::SEGMENT => id != ids::EBML && id != ids::SEGMENT,
        ids::CLUSTER => id != ids::EBML && id != ids::SEGMENT && !is_level1(id),
        _ => true,
    }
}

impl Parser {
    /// A parser with the given settings.
    pub fn new(cfg: ParserConfig) -> Self {
        Self {
            q: ChunkQueue::new(),
            cfg,
            stack: Vec::with_capacity(4),
            skip: 0,
            skip_from: (0, 0),
            pending: VecDeque::new(),
            failed: None,
            finished: false,
            seen_element: false,
            timecode_scale: 1_000_000,
            cluster_timecode: None,
            default_durations: Vec::new(),
        }
    }

    /// Feeds a chunk of input. Cheap: the chunk is kept, not copied.
    pub fn push(&mut self, chunk: Bytes) {
        debug_assert!(!self.finished, "push after finish");
        self.q.push(chunk);
    }

    /// Feeds a chunk of input by copying it.
    pub fn push_slice(&mut self, chunk: &[u8]) {
        self.push(Bytes::copy_from_slice(chunk));
    }

    /// Declares the end of input: open unknown-size elements close, and an
    /// element cut short becomes [`ParseError::Truncated`] once every event
    /// before it has been returned.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Stream offset of the next byte the parser will look at.
    pub fn offset(&self) -> u64 {
        self.q.offset()
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.q.len()
    }

    /// The current TimecodeScale (ns per timecode unit).
    pub fn timecode_scale(&self) -> u64 {
        self.timecode_scale
    }

    /// The next event; `Ok(None)` means more input is needed (or, after
    /// [`Parser::finish`], that the input is fully consumed). After an error
    /// every call returns the same error.
    pub fn next_event(&mut self) -> Result<Option<Event>, ParseError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            if let Some(f) = self.fast_block() {
                return Ok(Some(Event::Frame(f)));
            }
            match self.step() {
                Ok(true) => continue,
                Ok(false) => return Ok(None),
                Err(e) => {
                    self.failed = Some(e);
                }
            }
        }
    }

    /// The common case without the general machinery: an unlaced SimpleBlock
    /// that lies whole in the first buffered chunk, inside an open Cluster
    /// whose Timecode is known. Anything else goes the general way.
    #[inline]
    fn fast_block(&mut self) -> Option<ParsedFrame> {
        use crate::ebml::vint::{read_size, VintRead, UNKNOWN_SIZE};
        if self.skip != 0 {
            return None;
        }
        let top = *self.stack.last()?;
        let cluster_tc = self.cluster_timecode?;
        if top.id != ids::CLUSTER {
            return None;
        }
        let front = self.q.front();
        if front.first() != Some(&(ids::SIMPLE_BLOCK as u8)) {
            return None;
        }
        let (size, sw) = match read_size(&front[1..]) {
            VintRead::Ok(s, w) if s != UNKNOWN_SIZE => (s, w),
            _ => return None,
        };
        let hl = 1 + sw;
        let total = (hl as u64).checked_add(size)?;
        if size > self.cfg.limits.max_block_size || total > front.len() as u64 {
            return None;
        }
        let pos = self.q.offset();
        if top.limit.is_some_and(|end| pos + total > end) {
            return None;
        }
        let body = &front[hl..total as usize];
        let (track, tw) = match read_size(body) {
            VintRead::Ok(t, w) if t != UNKNOWN_SIZE => (t, w),
            _ => return None,
        };
        if body.len() < tw + 3 || body[tw + 2] & 0x06 != 0 {
            return None;
        }
        let rel = i16::from_be_bytes([body[tw], body[tw + 1]]);
        let flags = body[tw + 2];
        let mut payload = self.q.take(total as usize);
        bytes::Buf::advance(&mut payload, hl + tw + 3);
        let timecode = (cluster_tc as i64).wrapping_add(i64::from(rel));
        Some(ParsedFrame {
            track,
            timecode,
            timestamp_ns: timecode.saturating_mul(self.timecode_scale as i64),
            key: flags & 0x80 != 0,
            invisible: flags & 0x08 != 0,
            discardable: flags & 0x01 != 0,
            duration: None,
            discard_padding_ns: None,
            lace_index: 0,
            offset: pos,
            payload,
        })
    }

    fn close_top(&mut self) {
        if let Some(open) = self.stack.pop() {
            match open.id {
                ids::CLUSTER => {
                    self.cluster_timecode = None;
                    self.pending.push_back(Event::ClusterEnd);
                }
                ids::SEGMENT => self.pending.push_back(Event::DocumentEnd),
                _ => {}
            }
        }
    }

    /// One step; Ok(true) when progress was made, Ok(false) when more input is needed.
    fn step(&mut self) -> Result<bool, ParseError> {
        if self.skip > 0 {
            let n = self.q.skip(self.skip);
            self.skip -= n;
            if self.skip > 0 {
                if self.finished {
                    let (offset, id) = self.skip_from;
                    return Err(self.truncated(offset, id, self.skip));
                }
                return Ok(false);
            }
        }
        let pos = self.q.offset();
        if let Some(top) = self.stack.last() {
            if top.limit == Some(pos) {
                self.close_top();
                return Ok(true);
            }
        }
        if self.q.is_empty() {
            if !self.finished {
                return Ok(false);
            }
            // End of input: unknown-size masters end here; known ones were cut.
            match self.stack.last() {
                None => return Ok(false),
                Some(top) if top.end.is_none() => {
                    self.close_top();
                    return Ok(true);
                }
                Some(top) => {
                    let (id, offset, end) = (top.id, top.offset, top.end.unwrap_or(pos));
                    return Err(ParseError::Truncated {
                        offset,
                        id,
                        needed: end - offset,
                        available: pos - offset,
                    });
                }
            }
        }
        let h = match read_header(self.q.peek(12)) {
            HeaderRead::Ok(h) => h,
            HeaderRead::NeedMore if self.finished => {
                return Err(ParseError::Truncated {
                    offset: pos,
                    id: 0,
                    needed: 12,
                    available: self.q.len() as u64,
                })
            }
            HeaderRead::NeedMore => return Ok(false),
            HeaderRead::BadId => return Err(ParseError::BadId { offset: pos }),
            HeaderRead::BadSize => return Err(ParseError::BadSize { offset: pos }),
        };
        let parent = self.stack.last().copied();
        if let Some(p) = parent {
            if p.end.is_none() && !is_child(p.id, h.id) {
                self.close_top();
                return Ok(true);
            }
        }
        let hl = h.header_len as u64;
        let end = h.size.map(|s| pos.saturating_add(hl).saturating_add(s));
        if let Some(Open {
            limit: Some(pend), ..
        }) = parent
        {
            match end {
                Some(e) if e <= pend => {}
                Some(e) => {
                    return Err(ParseError::OverflowsParent {
                        offset: pos,
                        id: h.id,
                        end: e,
                        parent_end: pend,
                    })
                }
                None if h.id == ids::CLUSTER => {}
                None => {
                    return Err(ParseError::UnknownSizeNotAllowed {
                        offset: pos,
                        id: h.id,
                    })
                }
            }
        }
        let first = !self.seen_element;
        self.seen_element = true;
        let strict = self.cfg.strict;
        let parent_id = parent.map_or(0, |p| p.id);
        match (parent_id, h.id) {
            (0, ids::EBML) => {
                let Some((body, base)) =
                    self.buffer(pos, h.id, h.size, hl, self.cfg.limits.max_metadata_size)?
                else {
                    return Ok(false);
                };
                meta::check_crc(&body, pos, h.id, strict)?;
                let header = meta::parse_ebml_header(&body, pos, base, strict)?;
                self.pending.push_back(Event::Header(header));
            }
            (0, ids::SEGMENT) => {
                self.q.skip(hl);
                self.stack.push(Open {
                    id: ids::SEGMENT,
                    offset: pos,
                    end,
                    limit: end,
                });
                self.timecode_scale = 1_000_000;
                self.default_durations.clear();
                self.pending.push_back(Event::SegmentStart {
                    offset: pos,
                    size: h.size,
                });
            }
            (0, _) if first => {
                return Err(ParseError::NotMatroska {
                    offset: pos,
                    id: h.id,
                })
            }
            (ids::SEGMENT, ids::CLUSTER) => {
                self.q.skip(hl);
                self.stack.push(Open {
                    id: ids::CLUSTER,
                    offset: pos,
                    end,
                    limit: end.or(parent.and_then(|p| p.limit)),
                });
                self.cluster_timecode = None;
                self.pending.push_back(Event::ClusterStart {
                    offset: pos,
                    size: h.size,
                });
            }
            (ids::SEGMENT, ids::INFO | ids::TRACKS | ids::TAGS) => {
                let Some((body, base)) =
                    self.buffer(pos, h.id, h.size, hl, self.cfg.limits.max_metadata_size)?
                else {
                    return Ok(false);
                };
                meta::check_crc(&body, pos, h.id, strict)?;
                let ev = match h.id {
                    ids::INFO => {
                        let info = meta::parse_info(&body, base, strict)?;
                        self.timecode_scale = info.timecode_scale;
                        Event::Info(info)
                    }
                    ids::TRACKS => {
                        let tracks = meta::parse_tracks(&body, base, &self.cfg.limits, strict)?;
                        self.default_durations = tracks
                            .iter()
                            .filter_map(|t| t.default_duration_ns.map(|d| (t.number, d)))
                            .collect();
                        Event::Tracks(tracks)
                    }
                    _ => Event::Tags {
                        offset: pos,
                        tags: meta::parse_tags(&body, base, &self.cfg.limits, strict)?,
                    },
                };
                self.pending.push_back(ev);
            }
            (ids::CLUSTER, ids::TIMECODE) => {
                let Some((body, base)) = self.buffer(pos, h.id, h.size, hl, 8)? else {
                    return Ok(false);
                };
                let tc = meta::uint(&meta::Child {
                    id: h.id,
                    offset: pos,
                    body_offset: base,
                    body,
                })?;
                self.cluster_timecode = Some(tc);
                self.pending.push_back(Event::ClusterTimecode(tc));
            }
            (ids::CLUSTER, ids::SIMPLE_BLOCK | ids::BLOCK_GROUP) => {
                let Some((body, base)) =
                    self.buffer(pos, h.id, h.size, hl, self.cfg.limits.max_block_size)?
                else {
                    return Ok(false);
                };
                if h.id == ids::SIMPLE_BLOCK {
                    self.emit_block(&body, pos, None, None, None)?;
                } else {
                    self.block_group(&body, pos, base)?;
                }
            }
            (ids::SEGMENT | ids::CLUSTER | 0, _) => {
                let known = matches!(
                    h.id,
                    ids::VOID
                        | ids::CRC32
                        | ids::SEEK_HEAD
                        | ids::CUES
                        | ids::CHAPTERS
                        | ids::ATTACHMENTS
                        | ids::POSITION
                        | ids::PREV_SIZE
                        | ids::SILENT_TRACKS
                        | ids::ENCRYPTED_BLOCK
                );
                if strict && !known {
                    return Err(ParseError::Unexpected {
                        offset: pos,
                        id: h.id,
                        parent: parent_id,
                    });
                }
                let Some(size) = h.size else {
                    return Err(ParseError::UnknownSizeNotAllowed {
                        offset: pos,
                        id: h.id,
                    });
                };
                self.q.skip(hl);
                self.skip = size;
                self.skip_from = (pos, h.id);
            }
            _ => unreachable!("only Segment and Cluster are ever opened"),
        }
        Ok(true)
    }

    fn truncated(&self, offset: u64, id: u32, missing: u64) -> ParseError {
        let available = self.q.offset().saturating_sub(offset);
        ParseError::Truncated {
            offset,
            id,
            needed: available + missing,
            available,
        }
    }

    /// Takes a whole known-size element once it is buffered; returns its body
    /// and the body's stream offset, or `None` when more input is needed.
    fn buffer(
        &mut self,
        pos: u64,
        id: u32,
        size: Option<u64>,
        hl: u64,
        limit: u64,
    ) -> Result<Option<(Bytes, u64)>, ParseError> {
        let Some(size) = size else {
            return Err(ParseError::UnknownSizeNotAllowed { offset: pos, id });
        };
        if size > limit {
            return Err(ParseError::TooLarge {
                offset: pos,
                id,
                size,
                limit,
            });
        }
        let total = hl + size;
        if (self.q.len() as u64) < total {
            if self.finished {
                let available = (self.q.len() as u64).saturating_sub(hl);
                return Err(ParseError::Truncated {
                    offset: pos,
                    id,
                    needed: size,
                    available,
                });
            }
            return Ok(None);
        }
        self.q.skip(hl);
        Ok(Some((self.q.take(size as usize), pos + hl)))
    }

    fn block_group(&mut self, body: &Bytes, pos: u64, base: u64) -> Result<(), ParseError> {
        let mut block = None;
        let mut referenced = false;
        let mut duration = None;
        let mut padding = None;
        for c in meta::children(body, base) {
            let c = c?;
            match c.id {
                ids::BLOCK => block = Some(c.body),
                ids::REFERENCE_BLOCK => referenced = true,
                ids::BLOCK_DURATION => duration = Some(meta::uint(&c)?),
                ids::DISCARD_PADDING => padding = Some(meta::sint(&c)?),
                _ => {}
            }
        }
        let Some(block) = block else {
            return Err(ParseError::BadBlock {
                offset: pos,
                reason: "BlockGroup without a Block",
            });
        };
        self.emit_block(&block, pos, Some(!referenced), duration, padding)
    }

    fn emit_block(
        &mut self,
        body: &Bytes,
        offset: u64,
        key_override: Option<bool>,
        duration: Option<u64>,
        discard_padding_ns: Option<i64>,
    ) -> Result<(), ParseError> {
        let cluster_tc = match self.cluster_timecode {
            Some(tc) => tc,
            None if self.cfg.strict => {
                return Err(ParseError::BadBlock {
                    offset,
                    reason: "block before the cluster's Timecode",
                })
            }
            None => 0,
        };
        let scale = self.timecode_scale;
        let start = self.pending.len();
        let mut count = 1u8;
        let head = meta::parse_block(body, offset, |i, n, payload| {
            count = n;
            self.pending.push_back(Event::Frame(ParsedFrame {
                track: 0,
                timecode: 0,
                timestamp_ns: 0,
                key: false,
                invisible: false,
                discardable: false,
                duration,
                discard_padding_ns,
                lace_index: i,
                offset,
                payload,
            }));
        })?;
        let base_tc = (cluster_tc as i64).wrapping_add(i64::from(head.rel_timecode));
        // Laced frames share the block's duration (BlockDuration, else
        // DefaultDuration × frames): frame i starts i/n of the way in,
        // rounded down, as Matroska demuxers (libavformat) place them.
        let span = if count > 1 {
            let per_frame_ns = self
                .default_durations
                .iter()
                .find(|(t, _)| *t == head.track)
                .map(|(_, d)| *d);
            duration
                .or_else(|| per_frame_ns.map(|d| d.saturating_mul(u64::from(count)) / scale))
                .unwrap_or(0)
        } else {
            0
        };
        for (i, ev) in self.pending.iter_mut().skip(start).enumerate() {
            if let Event::Frame(f) = ev {
                f.track = head.track;
                f.timecode =
                    base_tc.wrapping_add((u128::from(span) * i as u128 / u128::from(count)) as i64);
                f.timestamp_ns = f.timecode.saturating_mul(scale as i64);
                f.key = key_override.unwrap_or(head.flags & 0x80 != 0);
                f.invisible = head.flags & 0x08 != 0;
                f.discardable = head.flags & 0x01 != 0;
            }
        }
        Ok(())
    }
}

/// Parses a whole buffer and returns every event, then the error (if any)
/// that stopped it. Convenience for files and tests.
pub fn parse_all(data: Bytes, cfg: ParserConfig) -> (Vec<Event>, Option<ParseError>) {
    let mut p = Parser::new(cfg);
    p.push(data);
    p.finish();
    let mut out = Vec::new();
    loop {
        match p.next_event() {
            Ok(Some(ev)) => out.push(ev),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Parses `data` pushed in pieces that end at the offsets `ends` (sorted,
/// clamped to the input), draining events after every push. Tests and the
/// fuzz targets compare this with [`parse_all`] to check split invariance.
pub fn parse_split(
    data: &[u8],
    ends: &[usize],
    cfg: ParserConfig,
) -> (Vec<Event>, Option<ParseError>) {
    let mut p = Parser::new(cfg);
    let mut out = Vec::new();
    let mut ends: Vec<usize> = ends.iter().map(|&e| e.min(data.len())).collect();
    ends.sort_unstable();
    ends.push(data.len());
    let mut start = 0;
    let drain = |p: &mut Parser, out: &mut Vec<Event>| loop {
        match p.next_event() {
            Ok(Some(ev)) => out.push(ev),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    };
    for end in ends {
        p.push(Bytes::copy_from_slice(&data[start..end]));
        start = end;
        if let Some(e) = drain(&mut p, &mut out) {
            return (out, Some(e));
        }
    }
    p.finish();
    let e = drain(&mut p, &mut out);
    (out, e)
}
