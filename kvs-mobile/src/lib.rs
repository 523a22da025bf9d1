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
mod foreign;
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
            .on_thread_start(foreign::mark_ours)
            .enable_all()
            .build()
            .expect("a tokio runtime (threads and timers) can be built")
    })
}

/// Runs `fut` on the library's runtime and awaits it from the app's
/// executor (Kotlin coroutines, Swift, asyncio). Once it has resolved, the
/// app's executor is not woken again, and a wake already under way on a
/// runtime thread has ended: nothing calls into the app's runtime after
/// the app saw the result (a Python interpreter shutting down ends any
/// thread that calls it, which aborts the process).
pub(crate) fn on_runtime<F>(
    fut: F,
) -> impl std::future::Future<Output = Result<F::Output, tokio::task::JoinError>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    Quiet {
        inner: runtime().spawn(fut),
        wakes: std::sync::Arc::new(Wakes::default()),
    }
}

/// A future whose inner wakes reach the outer waker only until it
/// resolves ([`on_runtime`]).
struct Quiet<F> {
    inner: F,
    wakes: std::sync::Arc<Wakes>,
}

/// The outer waker, and how many wakes are passing it on.
#[derive(Default)]
struct Wakes {
    slot: std::sync::Mutex<Option<std::task::Waker>>,
    passing: std::sync::atomic::AtomicUsize,
}

impl std::task::Wake for Wakes {
    fn wake(self: std::sync::Arc<Self>) {
        let w = {
            let mut slot = self
                .slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.passing
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            slot.take()
        };
        if let Some(w) = w {
            w.wake();
        }
        self.passing
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for Quiet<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        *self
            .wakes
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cx.waker().clone());
        let forward = std::task::Waker::from(self.wakes.clone());
        let out =
            std::pin::Pin::new(&mut self.inner).poll(&mut std::task::Context::from_waker(&forward));
        if out.is_ready() {
            *self
                .wakes
                .slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            // A wake that took the waker before it was cleared ends first
            // (it calls the app's runtime, which is still running).
            let since = std::time::Instant::now();
            while self.wakes.passing.load(std::sync::atomic::Ordering::SeqCst) > 0
                && since.elapsed() < std::time::Duration::from_secs(1)
            {
                std::thread::yield_now();
            }
        }
        out
    }
}
