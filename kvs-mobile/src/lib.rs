//! kvs-mobile: kvs-core's producer for iOS and Android apps, through
//! UniFFI (Kotlin, Swift, Python bindings generated from this library).
//!
//! A thin facade: [`KvsProducer`] converts what a phone encoder gives
//! (Android MediaCodec, iOS VideoToolbox: Annex-B or AVCC access units,
//! parameter sets apart) into kvs-core [`kvs_core::producer::Producer`]
//! calls, and its events into [`ProducerListener`] callbacks. Every
//! behaviour — buffering, fragmenting, reconnecting, rotating before the
//! credentials expire — is kvs-core's, with its tests.
//!
//! Threads: one tokio runtime owned by the library ([`runtime`], two
//! workers, started on first use) does the network; no call blocks on it
//! (`putVideoFrame` and the rest return at once; `finish` is `suspend` in
//! Kotlin and `async` in Swift). Listener callbacks come on a thread of
//! the library's own ("kvs-listener"), never the caller's; credentials
//! are asked for on the runtime's blocking pool.
//!
//! Errors are [`KvsError`] (mapped in one place, [`errors`]).

uniffi::setup_scaffolding!();

pub mod config;
pub mod credentials;
pub mod errors;
pub mod listener;
pub mod producer;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{AudioFormat, G711Law, NalFormat, ProducerConfig, VideoCodec, VideoFormat};
pub use credentials::{CredentialsProvider, TemporaryCredentials};
pub use errors::KvsError;
pub use listener::{ConnectionState, FragmentAck, ProducerListener, ProducerStats};
pub use producer::{FinishReport, KvsProducer};

/// The library's runtime: two worker threads, started on first use.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kvs-runtime")
            .enable_all()
            .build()
            .expect("a tokio runtime (threads and timers) can be built")
    })
}
