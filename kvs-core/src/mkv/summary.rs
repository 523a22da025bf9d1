//! Whole-stream statistics: what `kvs inspect` prints.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::error::ParseError;
use super::parser::{Event, Parser, ParserConfig};

/// Per-track totals over a whole stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackSummary {
    /// CodecID of the track (from the last Tracks element that declared it).
    pub codec_id: String,
    /// Frames, laced frames counted one by one.
    pub frames: u64,
    /// Payload bytes, without block or lace headers.
    pub frame_bytes: u64,
    /// Key frames.
    pub keyframes: u64,
    /// Timestamp of the first frame in stream order, ns.
    pub first_ts_ns: Option<i64>,
    /// Timestamp of the last frame in stream order, ns.
    pub last_ts_ns: Option<i64>,
}

/// Totals over a whole stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// EBML headers seen.
    pub documents: u64,
    /// Segments seen.
    pub segments: u64,
    /// Clusters seen.
    pub clusters: u64,
    /// Per track number.
    pub tracks: BTreeMap<u64, TrackSummary>,
    /// Every SimpleTag with a string value, in stream order: (name, value).
    pub tags: Vec<(String, String)>,
    /// The error that ended the stream early, if any (truncation included).
    pub error: Option<ParseError>,
}

impl Summary {
    /// Folds one parser event into the totals.
    pub fn add(&mut self, ev: &Event) {
        match ev {
            Event::Header(_) => self.documents += 1,
            Event::SegmentStart { .. } => self.segments += 1,
            Event::ClusterStart { .. } => self.clusters += 1,
            Event::Tracks(ts) => {
                for t in ts {
                    self.tracks
                        .entry(t.number)
                        .or_default()
                        .codec_id
                        .clone_from(&t.codec_id);
                }
            }
            Event::Frame(f) => {
                let t = self.tracks.entry(f.track).or_default();
                t.frames += 1;
                t.frame_bytes += f.payload.len() as u64;
                t.keyframes += u64::from(f.key);
                t.first_ts_ns.get_or_insert(f.timestamp_ns);
                t.last_ts_ns = Some(f.timestamp_ns);
            }
            Event::Tags { tags, .. } => {
                self.tags.extend(
                    tags.iter()
                        .filter_map(|t| Some((t.name.clone(), t.string.clone()?))),
                );
            }
            _ => {}
        }
    }

    /// Summarises a whole buffer.
    pub fn of(data: Bytes, cfg: ParserConfig) -> Self {
        let mut p = Parser::new(cfg);
        p.push(data);
        p.finish();
        let mut s = Summary::default();
        loop {
            match p.next_event() {
                Ok(Some(ev)) => s.add(&ev),
                Ok(None) => return s,
                Err(e) => {
                    s.error = Some(e);
                    return s;
                }
            }
        }
    }

    /// True when the stream ended inside an element.
    pub fn truncated(&self) -> bool {
        self.error.as_ref().is_some_and(ParseError::is_truncated)
    }
}
