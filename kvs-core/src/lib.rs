//! kvs-core: the engine of a client for Amazon Kinesis Video Streams (KVS):
//! producers that upload H.264/H.265 video with AAC or G.711 audio, and
//! consumers that read it back frame by frame.
//!
//! # Quick start
//!
//! Put frames with a [`Producer`], read them back with a [`Consumer`] — here
//! against the KVS-compatible local endpoint (feature `local`), so no AWS
//! account is needed; against AWS, leave out `.endpoint(..)`:
//!
//! ```
//! # #[cfg(feature = "local")]
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), kvs_core::Error> {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use kvs_core::{ClientConfig, Consumer, CreateStream, Credentials, Frame, KvsClient, Payload,
//!                Producer, StartSelector, TrackConfig};
//! use kvs_core::local::{LocalConfig, LocalEndpoint};
//!
//! let local = LocalEndpoint::start(LocalConfig::default()).await.expect("endpoint");
//! let creds = Credentials::new("AKID", "SECRET", None, None, "example");
//! let client = KvsClient::new(ClientConfig::new("us-east-1", creds).endpoint(local.url()))?;
//!
//! // H.264 in Annex-B; CodecPrivate and picture size come from the SPS/PPS.
//! let mut video = TrackConfig::video(1, "V_MPEG4/ISO/AVC", Bytes::new(), 0, 0);
//! video.codec_private = None;
//! let producer = Producer::builder(client.clone(), "front-door")
//!     .track(video)
//!     .create_if_missing(CreateStream { data_retention_in_hours: 1, ..Default::default() })
//!     .build()
//!     .await?;
//! # let sps = Bytes::from_static(&[0, 0, 0, 1, 0x67, 0x4d, 0x40, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48]);
//! # let pps = Bytes::from_static(&[0, 0, 0, 1, 0x68, 0xeb, 0xcc, 0xb2]);
//! # let idr = Bytes::from([&sps[..], &pps[..], &[0, 0, 0, 1, 0x65, 0x88, 0x84][..]].concat());
//! for i in 0..50u64 {
//!     // A key frame (with its SPS/PPS) every second at 25 fps.
//!     let (key, au) = if i % 25 == 0 { (true, idr.clone()) } else { (false, Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9a])) };
//!     let pts = Duration::from_millis(i * 40);
//!     producer.put_frame(Frame { track: 1, pts, dts: None, key, payload: Payload::AnnexB(au) }).await?;
//! }
//! producer.finish(Duration::from_secs(10)).await?;
//!
//! let mut frames = Consumer::builder(client, "front-door").start(StartSelector::Earliest).frames();
//! // Each frame as soon as it arrives, with its fragment's number and
//! // timestamps.
//! let (fragment, first) = frames.next().await.expect("a frame")?;
//! assert!(first.key);
//! assert!(fragment.fragment_number.is_some());
//! # Ok(()) }
//! # #[cfg(not(feature = "local"))]
//! # fn main() {}
//! ```
//!
//! Threads without an async runtime use [`blocking`]; every error converts
//! into one [`Error`] (kind, retryability, the service's exception, byte
//! offsets).
//!
//! # Modules
//!
//! [`ebml`] (varints, writer, chunk queue), [`mkv`] (parser, fragment
//! assembler, builder, muxer), [`codec`] (H.264/H.265/AAC/G.711 adaptation),
//! [`mp4`] and [`mpegts`] (clips, HLS/DASH segments), [`timeline`]
//! (which archived fragments play, duplicates resolved), [`protocol`] (PutMedia
//! ACKs, service error codes, the producer's state machine), [`auth`]
//! (credentials, SigV4). [`client`], [`producer`], [`consumer`] and
//! [`blocking`] do the I/O, and [`local`] serves it. Everything else is
//! sans-IO: bytes in, events out, no clock, no threads;
//! `cargo check -p kvs-core --no-default-features` proves it.
//!
//! # Crate features
//!
//! - `client` (default): the HTTP clients (hyper over rustls, tokio), the
//!   [`producer`], [`consumer`] and [`blocking`] modules.
//! - `aws-config`: credentials and region from the AWS SDKs' standard chain
//!   (SSO, IMDS, ECS, web identity, `credential_process`) —
//!   `ClientConfig::from_sdk_config`.
//! - `local`: the KVS-compatible endpoint on 127.0.0.1 ([`local`]; implies
//!   `client`).
//! - `rtsp`: RTSP camera ingest ([`rtsp`]): the `retina` client feeding a
//!   Producer (implies `client`).
//! - `images`: the endpoint's GetImages decodes H.264 (openh264, a C codec
//!   built from source) into JPEG/PNG; without it GetImages answers
//!   `MEDIA_ERROR` for every picture.
//! - `fuzzing`: entry points of the fuzz targets; not API.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

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
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "local")]
pub mod local;
pub mod mkv;
pub mod mp4;
pub mod mpegts;
#[cfg(feature = "client")]
pub mod producer;
pub mod protocol;
#[cfg(feature = "rtsp")]
pub mod rtsp;
pub mod timeline;

pub use auth::Credentials;
pub use codec::Codec;
pub use error::{Error, ErrorKind};
pub use mkv::builder::{Payload, TrackConfig};
pub use mkv::fragment::Fragment;
pub use protocol::producer::Frame;
#[cfg(feature = "client")]
pub use {
    client::{ClientConfig, ClientError, CreateStream, KvsClient, StartSelector, StreamId},
    consumer::Consumer,
    producer::{Producer, ProducerError, ProducerEvent},
};
