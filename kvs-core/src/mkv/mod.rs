//! Matroska: element IDs, the KVS fragment builder, the streaming parser and
//! the fragment assembler on top of it.

pub mod builder;
pub mod error;
pub mod fragment;
pub mod ids;
pub mod merge;
mod meta;
pub mod mux;
pub mod parser;
pub mod summary;
pub mod types;

pub use error::ParseError;
pub use parser::{parse_all, parse_split, Event, Limits, Parser, ParserConfig};
pub use types::{AudioInfo, EbmlHeader, ParsedFrame, SegmentInfo, SimpleTag, TrackInfo, VideoInfo};
