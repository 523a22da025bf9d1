//! The consumer for Python: `Client.frames` / `Client.fragments` iterators
//! over kvs-core's Consumer, and the `Frame` and `Fragment` they yield.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvs_core::client::{ClientError, FragmentSelector, KvsClient, StartSelector};
use kvs_core::consumer::{Consumer, FragmentStream, FrameStream};
use kvs_core::mkv::fragment::FragmentHead;
use kvs_core::mkv::types::ParsedFrame;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::buffer::FrameData;
use crate::errors::{config, to_py};
use crate::runtime::wait_until;
use crate::time::{from_datetime, ms_to_datetime, seconds};

/// Starts kvs-core's consumer for `Client.frames`/`fragments` arguments.
pub(crate) fn open(
    _py: Python<'_>,
    client: &Arc<KvsClient>,
    stream: String,
    start: Option<Bound<'_, PyAny>>,
    end: Option<Bound<'_, PyAny>>,
) -> PyResult<FragmentStream> {
    let builder = Consumer::builder(client.clone(), stream.as_str());
    match end {
        Some(end) => {
            let start = start
                .filter(|s| !s.is_instance_of::<PyString>())
                .ok_or_else(|| config("a range (end=) needs start= as a datetime too"))?;
            Ok(builder.range(FragmentSelector::Producer {
                start: from_datetime(&start)?,
                end: from_datetime(&end)?,
            }))
        }
        None => Ok(builder.start(selector(start)?)),
    }
}

/// A live start: "now", "earliest", a datetime, a fragment number, a
/// continuation token.
fn selector(start: Option<Bound<'_, PyAny>>) -> PyResult<StartSelector> {
    let Some(start) = start else {
        return Ok(StartSelector::Now);
    };
    if let Ok(s) = start.extract::<String>() {
        return Ok(match s.as_str() {
            "now" => StartSelector::Now,
            "earliest" => StartSelector::Earliest,
            "" => return Err(config("start= is empty")),
            n if n.bytes().all(|b| b.is_ascii_digit()) => StartSelector::AfterFragmentNumber(s),
            _ => StartSelector::ContinuationToken(s),
        });
    }
    Ok(StartSelector::ProducerTimestamp(from_datetime(&start)?))
}

fn idle(idle_timeout: Option<f64>) -> PyResult<Option<Duration>> {
    idle_timeout.map(|s| seconds("idle_timeout", s)).transpose()
}

/// Frames as they arrive (`for frame in client.frames(...)`).
#[pyclass(module = "kvs._kvs")]
pub(crate) struct FrameIterator {
    stream: Mutex<Option<FrameStream>>,
    idle: Option<Duration>,
}

impl FrameIterator {
    pub(crate) fn new(s: FragmentStream, idle_timeout: Option<f64>) -> PyResult<Self> {
        Ok(Self {
            stream: Mutex::new(Some(s.frames())),
            idle: idle(idle_timeout)?,
        })
    }
}

#[pymethods]
impl FrameIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next frame; StopIteration at the end of a range, after
    /// `idle_timeout`, or after an error was raised.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Frame>> {
        Ok(pull(py, &self.stream, self.idle)?.map(|(head, frame)| Frame { head, frame }))
    }

    /// Stops reading (also when the iterator is dropped).
    fn close(&self) {
        stop(&self.stream);
    }
}

/// Whole fragments (`for fragment in client.fragments(...)`).
#[pyclass(module = "kvs._kvs")]
pub(crate) struct FragmentIterator {
    stream: Mutex<Option<FragmentStream>>,
    idle: Option<Duration>,
}

impl FragmentIterator {
    pub(crate) fn new(s: FragmentStream, idle_timeout: Option<f64>) -> PyResult<Self> {
        Ok(Self {
            stream: Mutex::new(Some(s)),
            idle: idle(idle_timeout)?,
        })
    }
}

#[pymethods]
impl FragmentIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next fragment; StopIteration as for frames.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Fragment>> {
        Ok(pull(py, &self.stream, self.idle)?.map(|f| Fragment { inner: Arc::new(f) }))
    }

    /// Stops reading (also when the iterator is dropped).
    fn close(&self) {
        stop(&self.stream);
    }
}

/// kvs-core's frame and fragment streams, pulled the same way.
trait Pull: Send {
    type Item: Send;
    fn pull(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Self::Item, ClientError>>> + Send;
}

impl Pull for FrameStream {
    type Item = (Arc<FragmentHead>, ParsedFrame);
    fn pull(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Self::Item, ClientError>>> + Send {
        self.next()
    }
}

impl Pull for FragmentStream {
    type Item = kvs_core::mkv::fragment::Fragment;
    fn pull(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Self::Item, ClientError>>> + Send {
        self.next()
    }
}

/// The next item of an iterator's stream (GIL released while waiting);
/// `None` at its end, after `idle`, or once an error was raised.
fn pull<S: Pull>(
    py: Python<'_>,
    m: &Mutex<Option<S>>,
    idle: Option<Duration>,
) -> PyResult<Option<S::Item>> {
    let mut guard = m
        .try_lock()
        .map_err(|_| config("this iterator is being read by another thread"))?;
    let Some(s) = guard.as_mut() else {
        return Ok(None);
    };
    match wait_until(py, s.pull(), idle)? {
        Some(Some(Ok(item))) => Ok(Some(item)),
        Some(Some(Err(e))) => {
            *guard = None;
            Err(to_py(py, e))
        }
        Some(None) | None => {
            *guard = None;
            Ok(None)
        }
    }
}

/// Stops an iterator's stream.
fn stop<S>(m: &Mutex<Option<S>>) {
    if let Ok(mut g) = m.lock() {
        *g = None;
    }
}

/// One frame and what is known of its fragment.
///
/// `track` (int), `pts` (producer time, seconds since the epoch, float) and
/// `pts_ns` (the same in ns, int), `key` (bool), `fragment_number` (str),
/// `producer_timestamp` / `server_timestamp` (the fragment's, aware UTC
/// datetimes), `data` (the frame's bytes as a read-only memoryview, no
/// copy: AVCC for H.264/H.265, raw for audio).
#[pyclass(frozen, module = "kvs._kvs")]
pub(crate) struct Frame {
    head: Arc<FragmentHead>,
    frame: ParsedFrame,
}

#[pymethods]
impl Frame {
    #[getter]
    fn track(&self) -> u64 {
        self.frame.track
    }

    #[getter]
    fn pts(&self) -> f64 {
        self.frame.timestamp_ns as f64 / 1e9
    }

    #[getter]
    fn pts_ns(&self) -> i64 {
        self.frame.timestamp_ns
    }

    #[getter]
    fn key(&self) -> bool {
        self.frame.key
    }

    #[getter]
    fn fragment_number(&self) -> Option<String> {
        self.head.fragment_number.clone()
    }

    #[getter]
    fn producer_timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.head
            .producer_timestamp_ms
            .map(|ms| ms_to_datetime(py, ms))
            .transpose()
    }

    #[getter]
    fn server_timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.head
            .server_timestamp_ms
            .map(|ms| ms_to_datetime(py, ms))
            .transpose()
    }

    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        memoryview(py, &self.frame)
    }

    fn __repr__(&self) -> String {
        format!(
            "Frame(track={}, pts={:.3}, key={}, {} bytes, fragment {})",
            self.frame.track,
            self.pts(),
            self.frame.key,
            self.frame.payload.len(),
            self.head.fragment_number.as_deref().unwrap_or("?")
        )
    }
}

fn memoryview<'py>(py: Python<'py>, frame: &ParsedFrame) -> PyResult<Bound<'py, PyAny>> {
    let data = Bound::new(py, FrameData::new(frame.payload.clone()))?;
    py.import("builtins")?.getattr("memoryview")?.call1((data,))
}

/// One whole fragment: `number`, `producer_timestamp` and
/// `server_timestamp` (aware UTC datetimes), `continuation_token`,
/// `millis_behind_now`, `tags` (the producer's metadata, dict), `frames`
/// (list of kvs.Frame).
#[pyclass(frozen, module = "kvs._kvs")]
pub(crate) struct Fragment {
    inner: Arc<kvs_core::mkv::fragment::Fragment>,
}

#[pymethods]
impl Fragment {
    #[getter]
    fn number(&self) -> Option<String> {
        self.inner.fragment_number.clone()
    }

    #[getter]
    fn producer_timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .producer_timestamp_ms
            .map(|ms| ms_to_datetime(py, ms))
            .transpose()
    }

    #[getter]
    fn server_timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .server_timestamp_ms
            .map(|ms| ms_to_datetime(py, ms))
            .transpose()
    }

    #[getter]
    fn continuation_token(&self) -> Option<String> {
        self.inner.continuation_token.clone()
    }

    #[getter]
    fn millis_behind_now(&self) -> Option<u64> {
        self.inner.millis_behind_now
    }

    #[getter]
    fn tags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.inner.tags {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    #[getter]
    fn frames<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let head = Arc::new(FragmentHead::from(&*self.inner));
        let out = PyList::empty(py);
        for f in &self.inner.frames {
            out.append(Frame {
                head: head.clone(),
                frame: f.clone(),
            })?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!(
            "Fragment({}, {} frames)",
            self.inner.fragment_number.as_deref().unwrap_or("?"),
            self.inner.frames.len()
        )
    }
}
