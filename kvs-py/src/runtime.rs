//! The module's one tokio runtime, and waiting on it from Python: the GIL
//! is released while waiting and Ctrl-C is looked for every 100 ms.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How often a wait comes back for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The runtime every client, producer, consumer and local endpoint of the
/// module runs on (two worker threads), started on first use; `async for`
/// awaits on it too ([`crate::aio`]).
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let rt = RT
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("kvs-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| crate::errors::config(format!("cannot start the I/O runtime: {e}")))?;
    Ok(rt)
}

/// Runs `fut` to completion on the module's runtime, the GIL released.
/// Ctrl-C (or any pending signal handler's exception) interrupts it within
/// 100 ms: the exception is raised and `fut` is dropped.
pub(crate) fn wait<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    match wait_until(py, fut, None)? {
        Some(v) => Ok(v),
        None => Err(crate::errors::config("a wait without a limit ended")),
    }
}

/// As [`wait`], giving up after `limit` (`Ok(None)`).
pub(crate) fn wait_until<F>(
    py: Python<'_>,
    fut: F,
    limit: Option<Duration>,
) -> PyResult<Option<F::Output>>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    let deadline = limit.map(|l| Instant::now() + l);
    let mut fut = std::pin::pin!(fut);
    // Ready at once (a frame already read ahead): no GIL release, no
    // runtime round trip — what makes small frames cheap.
    // (Polled in the runtime's context: timers and sockets register with it.)
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let first = {
        let _in_runtime = rt.enter();
        fut.as_mut().poll(&mut cx)
    };
    if let std::task::Poll::Ready(v) = first {
        return Ok(Some(v));
    }
    loop {
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                left.min(SIGNAL_CHECK)
            }
            None => SIGNAL_CHECK,
        };
        let step =
            py.detach(|| rt.block_on(async { tokio::time::timeout(slice, &mut fut).await.ok() }));
        if let Some(v) = step {
            return Ok(Some(v));
        }
        py.check_signals()?;
    }
}
