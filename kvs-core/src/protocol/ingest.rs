//! PutMedia ingest without I/O: checks an uploaded Matroska stream as the
//! service does and cuts it into stored fragments.
//!
//! Rules (service error codes): one EBML document and Segment per
//! connection, Info and Tracks before the first Cluster (4006); at most 3
//! tracks (4012); blocks only for declared tracks (4010); every declared
//! track in every fragment (4011); a fragment starts with a key frame (4006);
//! fragment timecodes strictly increase (4004); a fragment ≤ 50 MB (4001)
//! and ≤ the duration limit (4002); ≤ 10 metadata tags per fragment (4009).
//!
//! # Which fragment a producer's metadata Tags belong to
//!
//! Tags are level-1 elements, so a producer cannot put them inside an
//! (unknown-size) Cluster: they sit between Clusters, and the ingest must
//! decide which fragment they go with. It does what the service does:
//!
//! * Tags **after a Cluster's blocks** (up to the next Cluster, or the end
//!   of the upload) belong to **that** fragment, and are stored after its
//!   Cluster, before the service's trailing `MILLIS_BEHIND_NOW` and
//!   `CONTINUATION_TOKEN` tags. The fragment is complete (RECEIVED) when the
//!   next Cluster starts, when an `AWS_KINESISVIDEO_END_OF_FRAGMENT` tag
//!   arrives, or when the upload ends; Tags after the last Cluster of a
//!   connection therefore go with its last fragment.
//! * Tags **before the first Cluster**, or after an end-of-fragment tag,
//!   belong to the **next** fragment and are stored in front of it.
//!
//! Evidence. The AWS C producer library (PIC, `src/client/src/Stream.c`,
//! `putFrame`) writes the metadata queued by `putKinesisVideoFragmentMetadata`
//! when a frame starts a new cluster, "after the MKV header but before the
//! cluster": in the upload they follow the previous Cluster's blocks. On
//! an end-of-fragment frame it writes the queued metadata, then the
//! `AWS_KINESISVIDEO_END_OF_FRAGMENT` tag. The service's side is shown by
//! the parser library's GetMedia capture `test_mixed_tags.mkv` (in
//! `../shared/vectors/kvs-parser-java`). Its upload was made by PIC's mkvgen
//! test `MkvgenApiFunctionalityTest` (the test writes the file
//! `test_mixed_tags.mkv`): 5 tags `testTag_0..4` in front of each of the 10
//! key frames that start a cluster (the first 5 after the EBML/Segment
//! header, before Info), and 5 more after the last cluster — 55 tags. The
//! service returned fragment 1 with 10 of them (5 before Info, 5 after its
//! Cluster's blocks) and fragments 2–10 with 5 each, after their Cluster's
//! blocks and before `MILLIS_BEHIND_NOW`: the tags written in front of
//! cluster k+1 came back on fragment k, and the tags after the last
//! cluster on the last fragment. (Had the service attached them to the
//! following cluster, fragment 1 would have 5 and the last 10.)
//!
//! One difference is kept: Tags before the first Cluster are stored after
//! the header elements (Info, Tracks …), where PIC writes them today,
//! rather than at the exact position they arrived in.

use bytes::Bytes;

use crate::ebml::reader::ChunkQueue;
use crate::mkv::{Event, ParseError, Parser, ParserConfig, SimpleTag};
use crate::protocol::ServiceErrorCode;

/// The tag that ends a fragment without waiting for the next Cluster.
const END_OF_FRAGMENT: &str = "AWS_KINESISVIDEO_END_OF_FRAGMENT";

/// Limits of the ingest checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest fragment, bytes (service: 50 MB).
    pub max_fragment_bytes: u64,
    /// Longest fragment, ms (service: 20 s).
    pub max_fragment_ms: u64,
    /// Most tracks (service: 3).
    pub max_tracks: usize,
    /// Most metadata tags per fragment (service: 10).
    pub max_tags: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_fragment_bytes: 50_000_000,
            max_fragment_ms: 20_000,
            max_tracks: 3,
            max_tags: 10,
        }
    }
}

/// A fragment cut out of the upload.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedFragment {
    /// The Cluster's Timecode as sent (TimecodeScale units).
    pub timecode: u64,
    /// Nanoseconds per timecode unit.
    pub timecode_scale: u64,
    /// The stream header as received: everything in the Segment before the
    /// first Cluster except metadata Tags (Info, Tracks, SeekHead, Void …).
    pub header: Bytes,
    /// The producer's metadata Tags elements that came before the Cluster
    /// (before the first Cluster, or after an end-of-fragment tag), raw.
    pub tags: Vec<Bytes>,
    /// The Cluster element, raw, as received: the body chunks it arrived
    /// in, sliced (never copied).
    pub cluster: Vec<Bytes>,
    /// The producer's metadata Tags elements that followed the Cluster's
    /// blocks (see the module docs), raw.
    pub trailing_tags: Vec<Bytes>,
    /// Frames in the fragment.
    pub frames: usize,
    /// From the first frame's start to the last frame's, ms.
    pub duration_ms: u64,
    /// From the first frame's start to where the media ends, ms: where the
    /// last frame of the stream's first track (the video track of a KVS
    /// stream; KVS wants video as track 1) ends — its `BlockDuration`
    /// when it has one, otherwise the track's frame interval in the
    /// fragment (its span over its frames less one). Audio frames that run
    /// past the video's end belong to the next fragment's time on the
    /// timeline (or, in the last fragment, run on for a few ms).
    pub media_ms: u64,
}

/// What the ingest reports.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestEvent {
    /// A fragment's Cluster started (its Timecode arrived).
    Buffering {
        /// Its cluster timecode.
        timecode: u64,
        /// The stream header in force (as [`IngestedFragment::header`]).
        header: Bytes,
        /// The producer's Tags that came before the Cluster (as
        /// [`IngestedFragment::tags`]).
        tags: Vec<Bytes>,
    },
    /// More of the open fragment's Cluster arrived, raw (its start, then
    /// each block as it is parsed): what a live reader is sent at once.
    /// Together, in order, the parts of one fragment are its
    /// [`IngestedFragment::cluster`].
    Data(Vec<Bytes>),
    /// A whole fragment arrived and passed the checks.
    Received(IngestedFragment),
}

/// An upload the service would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} (fragment timecode {timecode:?}): {reason}")]
pub struct IngestError {
    /// The service error code.
    pub code: ServiceErrorCode,
    /// The fragment's timecode, when known.
    pub timecode: Option<u64>,
    /// What was wrong.
    pub reason: String,
}

#[derive(Debug)]
struct Current {
    timecode: Option<u64>,
    start: u64,
    tracks_seen: Vec<u64>,
    frames: usize,
    first_ts: Option<i64>,
    last_ts: i64,
    /// Per track: where its frames lie, for [`IngestedFragment::media_ms`].
    spans: Vec<TrackSpan>,
    tags: Vec<Bytes>,
    /// Metadata SimpleTags counted against the per-fragment limit.
    user_tags: usize,
    /// The Cluster's bytes handed out so far ([`IngestEvent::Data`]), and
    /// the stream offset they reach.
    parts: Vec<Bytes>,
    taken: u64,
    /// Set when the Cluster ended (its raw bytes, its duration): the
    /// fragment then collects the Tags that follow it until it is complete.
    sealed: Option<(Vec<Bytes>, u64, u64)>,
    trailing: Vec<Bytes>,
}

/// The frames of one track in a fragment.
#[derive(Debug)]
struct TrackSpan {
    track: u64,
    first_ns: i64,
    last_ns: i64,
    frames: u64,
    /// The latest `timestamp + BlockDuration` among frames that carry one.
    end_ns: Option<i64>,
}

impl Current {
    fn note_frame(&mut self, track: u64, ts: i64, duration_ns: Option<i64>) {
        let end = duration_ns.map(|d| ts.saturating_add(d));
        match self.spans.iter_mut().find(|s| s.track == track) {
            Some(s) => {
                s.first_ns = s.first_ns.min(ts);
                s.last_ns = s.last_ns.max(ts);
                s.frames += 1;
                s.end_ns = s.end_ns.max(end);
            }
            None => self.spans.push(TrackSpan {
                track,
                first_ns: ts,
                last_ns: ts,
                frames: 1,
                end_ns: end,
            }),
        }
    }

    /// See [`IngestedFragment::media_ms`]; `first_track` is the stream's.
    fn media_ms(&self, first_track: Option<u64>) -> u64 {
        let Some(first) = self.first_ts else { return 0 };
        let end = self
            .spans
            .iter()
            .filter(|s| first_track.is_none_or(|t| t == s.track))
            .map(|s| {
                let interval = if s.frames > 1 {
                    (s.last_ns - s.first_ns) / (s.frames as i64 - 1)
                } else {
                    0
                };
                s.end_ns
                    .unwrap_or(i64::MIN)
                    .max(s.last_ns.saturating_add(interval))
            })
            .max()
            .unwrap_or(first);
        end.saturating_sub(first).max(0) as u64 / 1_000_000
    }
}

/// The ingest state of one PutMedia connection.
#[derive(Debug)]
pub struct Ingest {
    parser: Parser,
    limits: IngestLimits,
    /// Body bytes not yet released, as received.
    raw: ChunkQueue,
    last_end: u64,
    segments: u32,
    header: Option<Bytes>,
    header_parts: Vec<Bytes>,
    tracks: Vec<u64>,
    scale: u64,
    pending_tags: Vec<Bytes>,
    pending_user_tags: usize,
    cur: Option<Current>,
    last_timecode: Option<u64>,
}

impl Ingest {
    /// A fresh connection's ingest.
    pub fn new(limits: IngestLimits) -> Self {
        Self {
            // No block may be larger than a whole fragment may be: refused
            // before it is buffered.
            parser: Parser::new(ParserConfig {
                limits: crate::mkv::Limits {
                    max_block_size: limits.max_fragment_bytes,
                    ..crate::mkv::Limits::default()
                },
                ..ParserConfig::default()
            }),
            limits,
            raw: ChunkQueue::new(),
            last_end: 0,
            segments: 0,
            header: None,
            header_parts: Vec::new(),
            tracks: Vec::new(),
            scale: 1_000_000,
            pending_tags: Vec::new(),
            pending_user_tags: 0,
            cur: None,
            last_timecode: None,
        }
    }

    /// Nanoseconds per timecode unit (the Info's TimecodeScale, once read).
    pub fn timecode_scale(&self) -> u64 {
        self.scale
    }

    fn err(&self, code: u32, reason: impl Into<String>) -> IngestError {
        IngestError {
            code: ServiceErrorCode::from_id(code),
            // A fragment whose Cluster has ended is not the one at fault
            // (unless it has too many tags, which is reported with 4009).
            timecode: self
                .cur
                .as_ref()
                .filter(|c| c.sealed.is_none() || code == 4009)
                .and_then(|c| c.timecode),
            reason: reason.into(),
        }
    }

    /// Takes the raw bytes between two stream offsets out of the buffer
    /// without copying; everything before them is dropped.
    fn take(&mut self, from: u64, to: u64) -> Vec<Bytes> {
        self.raw.skip(from - self.raw.offset());
        self.raw.take_chunks((to - from) as usize)
    }

    /// A copy of the raw bytes between two stream offsets (still buffered).
    fn slice(&self, from: u64, to: u64) -> Bytes {
        let skip = (from - self.raw.offset()) as usize;
        self.raw.copy_range(skip, (to - from) as usize)
    }

    /// Feeds body bytes; returns what they completed and, if the upload
    /// broke a rule, the error (fragments completed before it still count).
    pub fn push(&mut self, chunk: Bytes) -> (Vec<IngestEvent>, Result<(), IngestError>) {
        self.raw.push(chunk.clone());
        self.parser.push(chunk);
        self.drain()
    }

    /// The body ended: the open fragment is complete if it is whole, and
    /// takes the Tags that followed its Cluster.
    pub fn finish(&mut self) -> (Vec<IngestEvent>, Result<(), IngestError>) {
        self.parser.finish();
        let (mut out, r) = self.drain();
        if r.is_ok() {
            self.complete(&mut out);
            if !self.pending_tags.is_empty() {
                tracing::warn!(
                    tags = self.pending_user_tags,
                    "metadata tags after the last fragment's end-of-fragment tag have no fragment to go with"
                );
            }
        }
        (out, r)
    }

    /// The body broke off: a fragment whose Cluster had ended is whole and
    /// is kept, with the Tags that had followed it.
    pub fn abort(&mut self) -> Vec<IngestEvent> {
        let mut out = Vec::new();
        self.complete(&mut out);
        out
    }

    fn drain(&mut self) -> (Vec<IngestEvent>, Result<(), IngestError>) {
        let mut out = Vec::new();
        let r = self.drain_into(&mut out);
        if let Err(e) = &r {
            // A fragment whose Cluster ended is whole; what broke the rules
            // came after it (except too many tags: those are its own).
            if e.code.id() != 4009 {
                self.complete(&mut out);
            }
        }
        (out, r)
    }

    /// Hands out the fragment whose Cluster has ended, if there is one.
    fn complete(&mut self, out: &mut Vec<IngestEvent>) {
        if self.cur.as_ref().is_none_or(|c| c.sealed.is_none()) {
            return;
        }
        let Some(cur) = self.cur.take() else { return };
        let Some((cluster, duration_ms, media_ms)) = cur.sealed else {
            return;
        };
        out.push(IngestEvent::Received(IngestedFragment {
            timecode: cur.timecode.unwrap_or_default(),
            timecode_scale: self.scale,
            header: self.header.clone().unwrap_or_default(),
            tags: cur.tags,
            cluster,
            trailing_tags: cur.trailing,
            frames: cur.frames,
            duration_ms,
            media_ms,
        }));
    }

    fn drain_into(&mut self, out: &mut Vec<IngestEvent>) -> Result<(), IngestError> {
        loop {
            let ev = match self.parser.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(ParseError::Truncated { .. }) => {
                    return Err(self.err(4000, "the upload ended inside an element"))
                }
                Err(e @ ParseError::TooLarge { id, .. })
                    if id == crate::mkv::ids::SIMPLE_BLOCK
                        || id == crate::mkv::ids::BLOCK_GROUP =>
                {
                    return Err(self.err(4001, e.to_string()))
                }
                Err(e) => return Err(self.err(4006, e.to_string())),
            };
            let end = self.parser.offset();
            self.on_event(ev, end, out)?;
            self.last_end = end;
        }
        // Keep only what an open fragment or header may still need.
        let keep_from = self
            .cur
            .as_ref()
            .filter(|c| c.sealed.is_none())
            .map_or(self.last_end, |c| c.taken)
            .min(self.last_end);
        if keep_from > self.raw.offset() {
            self.raw.skip(keep_from - self.raw.offset());
        }
        Ok(())
    }

    /// Hands out the open Cluster's bytes up to `end` ([`IngestEvent::Data`]).
    fn hand_out(&mut self, end: u64, out: &mut Vec<IngestEvent>) {
        let Some(from) = self
            .cur
            .as_ref()
            .filter(|c| c.sealed.is_none() && c.taken < end)
            .map(|c| c.taken)
        else {
            return;
        };
        let parts = self.take(from, end);
        if let Some(c) = self.cur.as_mut() {
            c.taken = end;
            c.parts.extend(parts.iter().cloned());
        }
        out.push(IngestEvent::Data(parts));
    }

    /// The Cluster ended at `end`: checks the fragment and keeps its bytes;
    /// it is handed out by [`Self::complete`] once the Tags after it are in.
    fn seal(&mut self, end: u64, out: &mut Vec<IngestEvent>) -> Result<(), IngestError> {
        let Some(cur) = &self.cur else { return Ok(()) };
        if cur.sealed.is_some() {
            return Ok(());
        }
        let timecode = cur
            .timecode
            .ok_or_else(|| self.err(4006, "cluster without Timecode"))?;
        if let Some(missing) = self.tracks.iter().find(|t| !cur.tracks_seen.contains(t)) {
            return Err(self.err(
                4011,
                format!("no frame for track {missing} in the fragment"),
            ));
        }
        let span_ms = (cur.last_ts - cur.first_ts.unwrap_or(cur.last_ts)).max(0) as u64 / 1_000_000;
        if span_ms > self.limits.max_fragment_ms {
            return Err(self.err(4002, format!("fragment lasts {span_ms} ms")));
        }
        if end - cur.start > self.limits.max_fragment_bytes {
            return Err(self.err(4001, format!("fragment is {} bytes", end - cur.start)));
        }
        self.hand_out(end, out);
        self.last_timecode = Some(timecode);
        if let Some(cur) = self.cur.as_mut() {
            let media_ms = cur.media_ms(self.tracks.first().copied());
            cur.sealed = Some((std::mem::take(&mut cur.parts), span_ms, media_ms));
        }
        Ok(())
    }

    fn on_event(
        &mut self,
        ev: Event,
        end: u64,
        out: &mut Vec<IngestEvent>,
    ) -> Result<(), IngestError> {
        let start = self.last_end;
        match ev {
            Event::Header(_) => {
                if self.segments > 0 {
                    return Err(self.err(4006, "a second EBML document on one connection"));
                }
            }
            Event::SegmentStart { .. } => {
                self.segments += 1;
                if self.segments > 1 {
                    return Err(self.err(4006, "a second Segment on one connection"));
                }
            }
            Event::Info(i) => {
                if self.header.is_some() {
                    return Err(self.err(4006, "Info after the first Cluster"));
                }
                self.scale = i.timecode_scale;
                self.header_parts.push(self.slice(start, end));
            }
            Event::Tracks(t) => {
                if self.header.is_some() {
                    return Err(self.err(4006, "Tracks after the first Cluster"));
                }
                if t.len() > self.limits.max_tracks {
                    return Err(self.err(4012, format!("{} tracks", t.len())));
                }
                self.tracks = t.iter().map(|t| t.number).collect();
                self.header_parts.push(self.slice(start, end));
            }
            Event::Tags { tags, .. } => {
                if self.cur.as_ref().is_some_and(|c| c.sealed.is_none()) {
                    // Tags end an unknown-size Cluster; ClusterEnd came first.
                    self.seal(start, out)?;
                }
                let end_of_fragment = tags.iter().any(|t| t.name == END_OF_FRAGMENT);
                let user = tags
                    .iter()
                    .filter(|t: &&SimpleTag| t.level == 0 && t.name != END_OF_FRAGMENT)
                    .count();
                if user > 0 {
                    let raw = self.slice(start, end);
                    let max = self.limits.max_tags;
                    let count = match self.cur.as_mut() {
                        // After a Cluster's blocks: that fragment's.
                        Some(c) => {
                            c.trailing.push(raw);
                            c.user_tags += user;
                            c.user_tags
                        }
                        // Before the first Cluster or after an end of fragment: the next one's.
                        None => {
                            self.pending_tags.push(raw);
                            self.pending_user_tags += user;
                            self.pending_user_tags
                        }
                    };
                    if count > max {
                        return Err(self.err(
                            4009,
                            format!("{count} metadata tags for one fragment; at most {max}"),
                        ));
                    }
                }
                if end_of_fragment {
                    self.complete(out);
                }
            }
            Event::ClusterStart { offset, .. } => {
                self.complete(out);
                if self.tracks.is_empty() {
                    return Err(self.err(4006, "Cluster before Tracks"));
                }
                if self.header.is_none() {
                    self.header = Some(self.header_parts.concat().into());
                }
                self.cur = Some(Current {
                    timecode: None,
                    start: offset,
                    tracks_seen: Vec::new(),
                    frames: 0,
                    first_ts: None,
                    last_ts: 0,
                    spans: Vec::new(),
                    tags: std::mem::take(&mut self.pending_tags),
                    user_tags: std::mem::take(&mut self.pending_user_tags),
                    parts: Vec::new(),
                    taken: offset,
                    sealed: None,
                    trailing: Vec::new(),
                });
            }
            Event::ClusterTimecode(tc) => {
                if self.last_timecode.is_some_and(|last| tc <= last) {
                    let mut e = self.err(
                        4004,
                        format!(
                            "fragment timecode {tc} is not after {}",
                            self.last_timecode.unwrap_or(0)
                        ),
                    );
                    e.timecode = Some(tc);
                    return Err(e);
                }
                let tags = match self.cur.as_mut() {
                    Some(c) => {
                        c.timecode = Some(tc);
                        c.tags.clone()
                    }
                    None => Vec::new(),
                };
                out.push(IngestEvent::Buffering {
                    timecode: tc,
                    header: self.header.clone().unwrap_or_default(),
                    tags,
                });
                self.hand_out(end, out);
            }
            Event::Frame(f) => {
                if !self.tracks.contains(&f.track) {
                    return Err(self.err(4010, format!("block for undeclared track {}", f.track)));
                }
                let first = self.cur.as_ref().is_some_and(|c| c.frames == 0);
                if first && !f.key {
                    return Err(self.err(4006, "a fragment must start with a key frame"));
                }
                if let Some(c) = self.cur.as_mut() {
                    c.frames += 1;
                    if !c.tracks_seen.contains(&f.track) {
                        c.tracks_seen.push(f.track);
                    }
                    c.first_ts.get_or_insert(f.timestamp_ns);
                    c.last_ts = c.last_ts.max(f.timestamp_ns);
                    let scale = i64::try_from(self.scale).unwrap_or(i64::MAX);
                    let duration_ns = f
                        .duration
                        .and_then(|d| i64::try_from(d).ok())
                        .map(|d| d.saturating_mul(scale));
                    c.note_frame(f.track, f.timestamp_ns, duration_ns);
                    if end - c.start > self.limits.max_fragment_bytes {
                        return Err(self.err(4001, "fragment larger than 50 MB"));
                    }
                }
                self.hand_out(end, out);
            }
            Event::ClusterEnd => self.seal(end, out)?,
            Event::DocumentEnd => self.complete(out),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig};

    fn stream(frags: &[(i64, bool)], tags: &[Tag]) -> Vec<u8> {
        let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
            1,
            "V_MPEG4/ISO/AVC",
            Bytes::from_static(&[1]),
            64,
            64,
        )]))
        .unwrap();
        let mut chunks = vec![b.header()];
        for &(tc, key) in frags {
            let frames = [
                FrameIn {
                    track: 1,
                    timecode: tc,
                    key,
                    payload: Payload::Raw(Bytes::from_static(b"key")),
                },
                FrameIn {
                    track: 1,
                    timecode: tc + 40,
                    key: false,
                    payload: Payload::Raw(Bytes::from_static(b"delta")),
                },
            ];
            if key {
                b.fragment(&frames, tags, &mut chunks).unwrap();
            } else {
                // The builder refuses a non-key start; write it by hand.
                let mut c = Vec::new();
                b.fragment(
                    &[FrameIn {
                        key: true,
                        ..frames[0].clone()
                    }],
                    &[],
                    &mut c,
                )
                .unwrap();
                let mut raw: Vec<u8> = c.concat();
                let pos = raw.windows(2).rposition(|w| w == [0x00, 0x80]).unwrap();
                raw[pos + 1] = 0x00;
                chunks.push(Bytes::from(raw));
            }
        }
        chunks.concat()
    }

    fn run(data: &[u8], chunk: usize) -> (Vec<IngestEvent>, Option<IngestError>) {
        let mut ing = Ingest::new(IngestLimits::default());
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            let (mut ev, r) = ing.push(Bytes::copy_from_slice(c));
            out.append(&mut ev);
            if let Err(e) = r {
                return (out, Some(e));
            }
        }
        let (mut ev, r) = ing.finish();
        out.append(&mut ev);
        (out, r.err())
    }

    #[test]
    fn fragments_come_out_raw_and_whole() {
        let tag = Tag {
            name: "camera".into(),
            value: "porch".into(),
        };
        let data = stream(
            &[(1000, true), (2000, true), (3000, true)],
            std::slice::from_ref(&tag),
        );
        for chunk in [data.len(), 100, 7] {
            let (ev, err) = run(&data, chunk);
            assert!(err.is_none(), "{err:?}");
            let frags: Vec<&IngestedFragment> = ev
                .iter()
                .filter_map(|e| {
                    if let IngestEvent::Received(f) = e {
                        Some(f)
                    } else {
                        None
                    }
                })
                .collect();
            assert_eq!(
                frags.iter().map(|f| f.timecode).collect::<Vec<_>>(),
                [1000, 2000, 3000]
            );
            assert_eq!(
                ev.iter()
                    .filter(|e| matches!(e, IngestEvent::Buffering { .. }))
                    .count(),
                3
            );
            // The tag in front of the first Cluster goes with it; the ones
            // in front of the later Clusters follow the blocks of the one
            // before (as the service attaches them).
            let counts: Vec<(usize, usize)> = frags
                .iter()
                .map(|f| (f.tags.len(), f.trailing_tags.len()))
                .collect();
            assert_eq!(counts, [(1, 1), (0, 1), (0, 0)]);
            for f in &frags {
                assert_eq!(f.frames, 2);
                // Two frames 40 ms apart: 40 ms first to last, 80 ms of
                // media (the last one lasts its track's interval).
                assert_eq!((f.duration_ms, f.media_ms), (40, 80));
                let cluster = f.cluster.concat();
                assert_eq!(&cluster[..4], &[0x1F, 0x43, 0xB6, 0x75]);
                assert_eq!(&f.header[..4], &[0x15, 0x49, 0xA9, 0x66], "Info first");
                // Header + tags + cluster parse back as one fragment.
                let mut doc = Vec::new();
                crate::ebml::writer::ebml_header(&mut doc, "matroska", 2);
                doc.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF]);
                doc.extend_from_slice(&f.header);
                for t in &f.tags {
                    doc.extend_from_slice(t);
                }
                doc.extend_from_slice(&cluster);
                for t in &f.trailing_tags {
                    doc.extend_from_slice(t);
                }
                let (events, e) = crate::mkv::parse_all(Bytes::from(doc), ParserConfig::default());
                assert!(e.is_none());
                assert_eq!(
                    events
                        .iter()
                        .filter(|e| matches!(e, Event::Tags { .. }))
                        .count(),
                    f.tags.len() + f.trailing_tags.len()
                );
                assert_eq!(
                    events
                        .iter()
                        .filter(|e| matches!(e, Event::Frame(_)))
                        .count(),
                    2
                );
            }
        }
    }

    #[test]
    fn service_rules_give_the_service_codes() {
        let code = |data: &[u8]| run(data, 13).1.map(|e| e.code.id());
        assert_eq!(
            code(&stream(&[(1000, true), (1000, true)], &[])),
            Some(4004)
        );
        assert_eq!(
            code(&stream(&[(2000, true), (1000, true)], &[])),
            Some(4004)
        );
        assert_eq!(
            code(&stream(&[(1000, true), (2000, false)], &[])),
            Some(4006)
        );
        let many: Vec<Tag> = (0..10)
            .map(|i| Tag {
                name: format!("t{i}"),
                value: "v".into(),
            })
            .collect();
        assert_eq!(code(&stream(&[(1000, true)], &many)), None);
        let mut twice = stream(&[(1000, true)], &[]);
        twice.extend_from_slice(&stream(&[(2000, true)], &[]));
        assert_eq!(code(&twice), Some(4006));
        assert_eq!(code(b"GET / HTTP/1.1\r\n\r\n"), Some(4006));
        let full = stream(&[(1000, true)], &[]);
        assert_eq!(code(&full[..full.len() - 3]), Some(4000));
    }

    fn received(ev: &[IngestEvent]) -> Vec<&IngestedFragment> {
        ev.iter()
            .filter_map(|e| match e {
                IngestEvent::Received(f) => Some(f),
                IngestEvent::Buffering { .. } | IngestEvent::Data(_) => None,
            })
            .collect()
    }

    fn tag(name: &str) -> Tag {
        Tag {
            name: name.into(),
            value: "v".into(),
        }
    }

    /// A stream header and fragments whose metadata is written as PIC
    /// writes it: in front of the next Cluster, and after the last one.
    fn pic_layout(batches: &[usize], eofr_at_end: bool) -> Vec<u8> {
        let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
            1,
            "V_MPEG4/ISO/AVC",
            Bytes::from_static(&[1]),
            64,
            64,
        )]))
        .unwrap();
        let mut chunks = vec![b.header()];
        let mut n = 0;
        for (i, &k) in batches.iter().enumerate() {
            let tags: Vec<Tag> = (0..k).map(|j| tag(&format!("t{}", n + j))).collect();
            n += k;
            chunks.push(b.tags(&tags).unwrap());
            if i + 1 < batches.len() {
                let frame = FrameIn {
                    track: 1,
                    timecode: 1000 * (i as i64 + 1),
                    key: true,
                    payload: Payload::Raw(Bytes::from_static(b"key")),
                };
                b.fragment(&[frame], &[], &mut chunks).unwrap();
            }
        }
        if eofr_at_end {
            chunks.push(FragmentBuilder::end_of_fragment_tag());
        }
        chunks.concat()
    }

    #[test]
    fn tags_after_a_cluster_go_with_it_and_none_is_dropped() {
        // 3 fragments; batch 0 before the first Cluster, batch 3 after the last.
        let data = pic_layout(&[2, 3, 4, 5], false);
        for chunk in [data.len(), 64, 5] {
            let (ev, err) = run(&data, chunk);
            assert!(err.is_none(), "{err:?}");
            let frags = received(&ev);
            let shape: Vec<(u64, usize, usize)> = frags
                .iter()
                .map(|f| (f.timecode, f.tags.len(), f.trailing_tags.len()))
                .collect();
            assert_eq!(shape, [(1000, 2, 3), (2000, 0, 4), (3000, 0, 5)]);
        }
    }

    #[test]
    fn end_of_fragment_completes_at_once_and_later_tags_go_to_the_next() {
        let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
            1,
            "V_MPEG4/ISO/AVC",
            Bytes::from_static(&[1]),
            64,
            64,
        )]))
        .unwrap();
        let frame = |tc| FrameIn {
            track: 1,
            timecode: tc,
            key: true,
            payload: Payload::Raw(Bytes::from_static(b"key")),
        };
        // As this crate's producer writes: tags, Cluster, end of fragment.
        let mut first = vec![b.header()];
        b.fragment(&[frame(1000)], &[tag("a")], &mut first).unwrap();
        first.push(b.tags(&[tag("b")]).unwrap());
        first.push(FragmentBuilder::end_of_fragment_tag());
        let mut second = Vec::new();
        b.fragment(&[frame(2000)], &[tag("c")], &mut second)
            .unwrap();
        second.push(FragmentBuilder::end_of_fragment_tag());
        let mut ing = Ingest::new(IngestLimits::default());
        let (ev, r) = ing.push(Bytes::from(first.concat()));
        assert!(r.is_ok());
        let frags = received(&ev);
        assert_eq!(
            frags.len(),
            1,
            "complete without waiting for the next Cluster"
        );
        assert_eq!((frags[0].tags.len(), frags[0].trailing_tags.len()), (1, 1));
        let (ev, r) = ing.push(Bytes::from(second.concat()));
        assert!(r.is_ok());
        let frags = received(&ev);
        assert_eq!(frags.len(), 1);
        assert_eq!((frags[0].tags.len(), frags[0].trailing_tags.len()), (1, 0));
        let (ev, r) = ing.finish();
        assert!(r.is_ok() && ev.is_empty());
    }

    #[test]
    fn a_broken_upload_keeps_the_fragment_whose_cluster_ended() {
        let data = pic_layout(&[1, 1, 1], false);
        let mut ing = Ingest::new(IngestLimits::default());
        let (ev, r) = ing.push(Bytes::from(data));
        assert!(r.is_ok());
        // The first fragment is complete (the second Cluster started).
        assert_eq!(received(&ev).len(), 1);
        let ev = ing.abort();
        let frags = received(&ev);
        assert_eq!(frags.len(), 1);
        assert_eq!((frags[0].timecode, frags[0].trailing_tags.len()), (2000, 1));
    }

    #[test]
    fn the_tag_limit_counts_every_tag_of_a_fragment() {
        // 6 before the first Cluster and 5 after it: 11 for fragment 1.
        let (ev, err) = run(&pic_layout(&[6, 5], false), 50);
        assert_eq!(
            err.map(|e| (e.code.id(), e.timecode)),
            Some((4009, Some(1000)))
        );
        assert!(
            received(&ev).is_empty(),
            "the fragment with too many tags is not stored"
        );
        // 5 + 5 is within the limit; the end-of-fragment tag does not count.
        let (ev, err) = run(&pic_layout(&[5, 5], true), 50);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(received(&ev)[0].trailing_tags.len(), 5);
    }
}
