//! A KVS-compatible endpoint on 127.0.0.1 (feature `local`), for tests,
//! demos and offline development. It answers the control-plane APIs with
//! the service's paths, JSON shapes, error headers and status codes, and
//! names itself as every stream's data endpoint. `/putMedia` checks uploads
//! as the service does ([`crate::protocol::ingest`]) and answers with ACKs; `/getMedia` sends
//! one EBML document per fragment with the service's tags before and after
//! the Cluster, and follows the stream live. Fragments are kept in memory.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kvs_core::local::{LocalConfig, LocalEndpoint};
//! let endpoint = LocalEndpoint::start(LocalConfig::default()).await?;
//! println!("KVS endpoint at {}", endpoint.url());
//! endpoint.shutdown().await;
//! # Ok(()) }
//! ```

mod images;

mod media;
mod playback;
mod server;
pub mod store;
pub mod verify;

pub use media::Faults;
pub use server::{LocalConfig, LocalEndpoint};
