//! kvs-core: the engine of a client for Amazon Kinesis Video Streams.
//!
//! Quick start — parse Matroska as it streams in:
//!
//! ```
//! use kvs_core::mkv::{Event, Parser};
//! let mut parser = Parser::default();
//! parser.push_slice(&[0x1A, 0x45, 0xDF, 0xA3, 0x80]); // an empty EBML header
//! parser.finish();
//! assert!(matches!(parser.next_event(), Ok(Some(Event::Header(_)))));
//! ```
#![forbid(unsafe_code)]

pub mod codec;
pub mod ebml;
pub mod fuzzing;
pub mod mkv;
