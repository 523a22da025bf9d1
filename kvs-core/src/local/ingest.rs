//! PutMedia ingest without I/O: checks an uploaded Matroska stream as the
//! service does and cuts it into stored fragments.
//!
//! Rules (service error codes): one EBML document and Segment per
//! connection, Info and Tracks before the first Cluster (4006); at most 3
//! tracks (4012); blocks only for declared tracks (4010); every declared
//! track in every fragment (4011); a fragment starts with a key frame (4006);
//! fragment timecodes strictly increase (4004); a fragment ≤ 50 MB (4001)
//! and ≤ the duration limit (4002); ≤ 10 metadata tags per fragment (4009).

use bytes::Bytes;

use crate::ebml::reader::ChunkQueue;
use crate::mkv::{Event, ParseError, Parser, ParserConfig, SimpleTag};
use crate::protocol::ServiceErrorCode;

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
    /// The producer's metadata Tags elements for this fragment, raw.
    pub tags: Vec<Bytes>,
    /// The Cluster element, raw, as received: the body chunks it arrived
    /// in, sliced (never copied).
    pub cluster: Vec<Bytes>,
    /// Frames in the fragment.
    pub frames: usize,
    /// From the first frame's start to the last frame's, ms.
    pub duration_ms: u64,
}

/// What the ingest reports.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestEvent {
    /// A fragment's first bytes arrived.
    Buffering {
        /// Its cluster timecode.
        timecode: u64,
    },
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
    tags: Vec<Bytes>,
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
            cur: None,
            last_timecode: None,
        }
    }

    fn err(&self, code: u32, reason: impl Into<String>) -> IngestError {
        IngestError {
            code: ServiceErrorCode::from_id(code),
            timecode: self.cur.as_ref().and_then(|c| c.timecode),
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

    /// The body ended: the open fragment is complete if it is whole.
    pub fn finish(&mut self) -> (Vec<IngestEvent>, Result<(), IngestError>) {
        self.parser.finish();
        self.drain()
    }

    fn drain(&mut self) -> (Vec<IngestEvent>, Result<(), IngestError>) {
        let mut out = Vec::new();
        let r = self.drain_into(&mut out);
        (out, r)
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
            .map_or(self.last_end, |c| c.start)
            .min(self.last_end);
        if keep_from > self.raw.offset() {
            self.raw.skip(keep_from - self.raw.offset());
        }
        Ok(())
    }

    fn close_fragment(&mut self, end: u64, out: &mut Vec<IngestEvent>) -> Result<(), IngestError> {
        let Some(cur) = &self.cur else { return Ok(()) };
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
        let Some(cur) = self.cur.take() else {
            return Ok(());
        };
        let cluster = self.take(cur.start, end);
        self.last_timecode = Some(timecode);
        out.push(IngestEvent::Received(IngestedFragment {
            timecode,
            timecode_scale: self.scale,
            header: self.header.clone().unwrap_or_default(),
            tags: cur.tags,
            cluster,
            frames: cur.frames,
            duration_ms: span_ms,
        }));
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
                if self.cur.is_some() {
                    // Tags end an unknown-size Cluster; ClusterEnd came first.
                    self.close_fragment(start, out)?;
                }
                let user = tags.iter().filter(|t: &&SimpleTag| t.level == 0).count();
                if tags
                    .iter()
                    .any(|t| t.name == "AWS_KINESISVIDEO_END_OF_FRAGMENT")
                {
                    return Ok(());
                }
                self.pending_tags.push(self.slice(start, end));
                if self.pending_tags.len() > self.limits.max_tags || user > self.limits.max_tags {
                    return Err(self.err(4009, "more than 10 metadata tags for one fragment"));
                }
            }
            Event::ClusterStart { offset, .. } => {
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
                    tags: std::mem::take(&mut self.pending_tags),
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
                if let Some(c) = self.cur.as_mut() {
                    c.timecode = Some(tc);
                }
                out.push(IngestEvent::Buffering { timecode: tc });
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
                    if end - c.start > self.limits.max_fragment_bytes {
                        return Err(self.err(4001, "fragment larger than 50 MB"));
                    }
                }
            }
            Event::ClusterEnd => self.close_fragment(end, out)?,
            Event::DocumentEnd => {}
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
            for f in &frags {
                assert_eq!(f.frames, 2);
                assert_eq!(f.tags.len(), 1);
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
                let (events, e) = crate::mkv::parse_all(Bytes::from(doc), ParserConfig::default());
                assert!(e.is_none());
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
}
