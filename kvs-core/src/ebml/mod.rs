//! EBML, the binary container under Matroska: variable-length integers, an
//! element writer and a push reader that walks elements without I/O.
//!
//! Hand-written on purpose: no published crate reads EBML incrementally from
//! chunks with unknown-size masters, back-to-back documents and zero-copy
//! payloads, which is what GetMedia responses need.

pub mod reader;
pub mod vint;
pub mod writer;

pub use reader::{ChunkQueue, ElementHeader};
