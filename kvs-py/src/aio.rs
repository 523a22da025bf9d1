//! `await` for Python: a Rust future run on the module's runtime, its
//! result handed to an asyncio future on the caller's event loop — and an
//! interpreter exit that waits for those hand-overs.
//!
//! Written here rather than taken from pyo3-async-runtimes because of how a
//! result reaches the loop: `loop.call_soon_threadsafe` releases the GIL
//! while it wakes the loop, so the runtime's thread must take the GIL again
//! afterwards to let go of its references. When the program ends meanwhile
//! (the loop got the result and `asyncio.run` returned), CPython ≤ 3.13
//! ends a thread that takes the GIL during finalization with
//! `pthread_exit`, which unwinds through Rust code that drops Python
//! objects without the GIL: a segmentation fault at exit
//! (PyO3/pyo3-async-runtimes#40; seen here once in a few runs of 16
//! `async for` readers). Here every hand-over is counted, and an `atexit`
//! hook — which runs before finalization — stops the futures still
//! running and waits, the GIL released, until no hand-over is under way.
//!
//! Cancelling the asyncio future (`task.cancel()`, `asyncio.wait_for`)
//! drops the Rust future at its next await: the readers' futures are
//! cancel-safe (nothing read is lost, the next `__anext__` gets it).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;
use pyo3::IntoPyObjectExt;
use tokio::sync::{oneshot, watch};

/// Futures started and not yet done with Python.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Set at interpreter exit: futures still running stop.
static EXIT: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// The longest an exit waits for hand-overs under way.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// One future counted in [`IN_FLIGHT`] until dropped.
struct Counted;

impl Counted {
    fn new() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An asyncio future (of the running loop) for `fut`'s output, `fut`
/// running on the module's runtime. Raises RuntimeError outside a running
/// event loop.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let rt = crate::runtime::runtime()?;
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let py_future = event_loop.call_method0("create_future")?;
    let (cancel, cancelled) = oneshot::channel();
    py_future.call_method1(
        "add_done_callback",
        (CancelOnDone(Mutex::new(Some(cancel))),),
    )?;
    let (event_loop, target) = (event_loop.unbind(), py_future.clone().unbind());
    let counted = Counted::new();
    let mut exit = EXIT.subscribe();
    rt.spawn(async move {
        // Dropped last: after every Python reference below.
        let _counted = counted;
        let out = tokio::select! {
            out = fut => out,
            _ = cancelled => return,
            _ = exit.wait_for(|&e| e) => return,
        };
        Python::attach(|py| {
            let (ok, value) = match out.and_then(|v| v.into_py_any(py)) {
                Ok(v) => (true, v),
                Err(e) => (false, e.into_value(py).into_any()),
            };
            let done = match complete(py) {
                Ok(f) => f,
                Err(e) => return e.write_unraisable(py, None),
            };
            if let Err(e) =
                event_loop.call_method1(py, "call_soon_threadsafe", (done, target, ok, value))
            {
                // The loop was closed: nobody awaits any more.
                tracing::debug!(error = %e, "event loop gone; result dropped");
            }
            drop(event_loop);
        });
    });
    Ok(py_future)
}

/// `done(future, ok, value)`, on the loop: sets the result (or the
/// exception) unless the future was cancelled meanwhile.
fn complete(py: Python<'_>) -> PyResult<&Bound<'_, PyCFunction>> {
    static DONE: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();
    DONE.get_or_try_init(py, || {
        PyCFunction::new_closure(
            py,
            Some(c"_kvs_complete"),
            None,
            |args, _kwargs| -> PyResult<()> {
                let (future, ok, value): (Bound<'_, PyAny>, bool, Bound<'_, PyAny>) =
                    args.extract()?;
                if future.call_method0("done")?.is_truthy()? {
                    return Ok(());
                }
                let method = if ok { "set_result" } else { "set_exception" };
                future.call_method1(method, (value,))?;
                Ok(())
            },
        )
        .map(Bound::unbind)
    })
    .map(|f| f.bind(py))
}

/// The asyncio future's done callback: a cancelled future stops its Rust
/// future.
#[pyclass(module = "kvs._kvs", name = "_CancelOnDone")]
struct CancelOnDone(Mutex<Option<oneshot::Sender<()>>>);

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            if let Some(tx) = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
            {
                let _ = tx.send(());
            }
        }
        Ok(())
    }
}

/// The `atexit` hook: stops the futures still running and waits (GIL
/// released, at most [`EXIT_WAIT`]) until none is handing a result over.
#[pyfunction(name = "_at_exit")]
fn at_exit(py: Python<'_>) {
    EXIT.send_replace(true);
    py.detach(|| {
        let until = Instant::now() + EXIT_WAIT;
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Registers the exit hook (module initialisation).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let hook = wrap_pyfunction!(at_exit, m)?;
    m.py().import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}
