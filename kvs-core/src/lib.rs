//! kvs-core: the engine of a client for Amazon Kinesis Video Streams.
//!
//! Quick start — build a KVS fragment, then read it back as it streams in:
//!
//! ```
//! use bytes::Bytes;
//! use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, Tag, TrackConfig};
//! use kvs_core::mkv::fragment::FragmentAssembler;
//!
//! // A stream with one H.264 track (CodecPrivate would come from the SPS/PPS).
//! let track = TrackConfig::video(1, "V_MPEG4/ISO/AVC", Bytes::from_static(&[1, 0x64, 0, 0x28]), 1920, 1080);
//! let mut builder = FragmentBuilder::new(StreamConfig::new(vec![track]))?;
//! let mut chunks = vec![builder.header()];
//! let frames = [
//!     FrameIn { track: 1, timecode: 1_000, key: true, payload: Payload::AnnexB(Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88])) },
//!     FrameIn { track: 1, timecode: 1_040, key: false, payload: Payload::AnnexB(Bytes::from_static(&[0, 0, 1, 0x41, 0x9a])) },
//! ];
//! let tags = [Tag { name: "camera".into(), value: "front-door".into() }];
//! builder.fragment(&frames, &tags, &mut chunks)?;
//!
//! // Feed the bytes in any chunking; fragments come out whole.
//! let mut assembler = FragmentAssembler::default();
//! for chunk in chunks {
//!     assembler.push(chunk);
//! }
//! assembler.finish();
//! let fragment = assembler.next_fragment()?.expect("one fragment");
//! assert_eq!(fragment.frames.len(), 2);
//! assert_eq!(fragment.frames[1].timestamp_ns, 1_040_000_000);
//! assert_eq!(&fragment.frames[0].payload[..], &[0, 0, 0, 2, 0x65, 0x88]); // AVCC now
//! assert_eq!(fragment.tags, [("camera".to_string(), "front-door".to_string())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`ebml`] (varints, writer, chunk queue), [`mkv`] (parser, fragment
//! assembler, builder, muxer), [`codec`] (H.264/H.265/AAC/G.711 adaptation),
//! [`mp4`] (MP4 clips and HLS/DASH segments), [`protocol`] (PutMedia ACKs,
//! service error codes), [`auth`] (credentials,
//! SigV4).
//! [`client`] (feature `client`, default) and [`local`] (feature `local`)
//! do the I/O. Everything else is sans-IO: bytes in, events out, no clock,
//! no threads; `cargo check -p kvs-core --no-default-features` proves it.
//!
//! Cargo features: `client` (default) — hyper/rustls clients; `local` — the
//! KVS-compatible endpoint on 127.0.0.1 (implies `client`).
#![forbid(unsafe_code)]

pub mod auth;
#[cfg(feature = "client")]
pub mod blocking;
#[cfg(feature = "client")]
pub mod client;
pub mod codec;
#[cfg(feature = "client")]
pub mod consumer;
pub mod ebml;
pub mod error;
pub mod fuzzing;
#[cfg(feature = "local")]
pub mod local;
pub mod mkv;
pub mod mp4;
pub mod mpegts;
#[cfg(feature = "client")]
pub mod producer;
pub mod protocol;

pub use error::{Error, ErrorKind};
