//! The consumer for Python: `Client.frames` / `Client.fragments` iterators
//! over kvs-core's Consumer, and the `Frame` and `Fragment` they yield.

use std::sync::Arc;
use std::time::Duration;

use kvs_core::client::{ClientError, FragmentSelector, KvsClient, StartSelector};
use kvs_core::codec::Codec;
use kvs_core::consumer::{Consumer, FragmentStream, FrameStream};
use kvs_core::mkv::fragment::FragmentHead;
use kvs_core::mkv::types::ParsedFrame;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::buffer::FrameData;
use crate::errors::{config, to_py};
use crate::runtime::wait_until;
use crate::time::{from_datetime, ms_to_datetime_opt, seconds};

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
    if start.is_instance_of::<pyo3::types::PyInt>()
        && !start.is_instance_of::<pyo3::types::PyBool>()
    {
        // A fragment number given as an int (47 digits: wider than u128).
        let n = start.str()?.to_string();
        if n.starts_with('-') {
            return Err(config(format!(
                "start={n}: fragment numbers are not negative"
            )));
        }
        return Ok(StartSelector::AfterFragmentNumber(n));
    }
    if let Ok(s) = start.extract::<String>() {
        return Ok(match s.to_ascii_lowercase().as_str() {
            "now" => StartSelector::Now,
            "earliest" => StartSelector::Earliest,
            "" => return Err(config("start= is empty")),
            n if n.bytes().all(|b| b.is_ascii_digit()) => StartSelector::AfterFragmentNumber(s),
            _ => StartSelector::ContinuationToken(s),
        });
    }
    if start.hasattr("tzinfo")? {
        return Ok(StartSelector::ProducerTimestamp(from_datetime(&start)?));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "start= must be \"now\", \"earliest\", an aware datetime, a fragment number or a continuation token, not {}",
        start.get_type().name()?
    )))
}

fn idle(idle_timeout: Option<f64>) -> PyResult<Option<Duration>> {
    idle_timeout.map(|s| seconds("idle_timeout", s)).transpose()
}

/// Frames as they arrive (`for frame in client.frames(...)`).
#[pyclass(module = "kvs._kvs")]
pub(crate) struct FrameIterator {
    stream: Shared<FrameStream>,
    idle: Option<Duration>,
}

impl FrameIterator {
    pub(crate) fn new(s: FragmentStream, idle_timeout: Option<f64>) -> PyResult<Self> {
        Ok(Self {
            stream: Arc::new(tokio::sync::Mutex::new(Some(s.frames()))),
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
        Ok(
            pull(py, &self.stream, self.idle)?.map(|(head, frame)| Frame {
                head,
                frame,
                image: None,
            }),
        )
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// `async for`: the next frame, awaited on the module's runtime.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (m, idle) = (self.stream.clone(), self.idle);
        crate::aio::awaitable(py, async move {
            Ok(pull_async(&m, idle).await?.map(|(head, frame)| Frame {
                head,
                frame,
                image: None,
            }))
            .and_then(stop_async_iteration)
        })
    }

    /// Stops reading (also when the iterator is dropped).
    fn close(&self) {
        stop(&self.stream);
    }
}

/// Whole fragments (`for fragment in client.fragments(...)`).
#[pyclass(module = "kvs._kvs")]
pub(crate) struct FragmentIterator {
    stream: Shared<FragmentStream>,
    idle: Option<Duration>,
}

impl FragmentIterator {
    pub(crate) fn new(s: FragmentStream, idle_timeout: Option<f64>) -> PyResult<Self> {
        Ok(Self {
            stream: Arc::new(tokio::sync::Mutex::new(Some(s))),
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

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// `async for`: the next fragment, awaited on the module's runtime.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (m, idle) = (self.stream.clone(), self.idle);
        crate::aio::awaitable(py, async move {
            Ok(pull_async(&m, idle)
                .await?
                .map(|f| Fragment { inner: Arc::new(f) }))
            .and_then(stop_async_iteration)
        })
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

/// An iterator's stream: shared with the futures of `async for`.
type Shared<S> = Arc<tokio::sync::Mutex<Option<S>>>;

/// The next item of an iterator's stream (GIL released while waiting);
/// `None` at its end, after `idle`, or once an error was raised.
fn pull<S: Pull>(
    py: Python<'_>,
    m: &Shared<S>,
    idle: Option<Duration>,
) -> PyResult<Option<S::Item>> {
    let mut guard = m
        .try_lock()
        .map_err(|_| config("this iterator is being read elsewhere (another thread or task)"))?;
    let Some(s) = guard.as_mut() else {
        return Ok(None);
    };
    let got = wait_until(py, s.pull(), idle)?;
    settle(&mut guard, got.flatten()).map_err(|e| to_py(py, e))
}

/// As [`pull`], awaited (for `async for`).
async fn pull_async<S: Pull>(m: &Shared<S>, idle: Option<Duration>) -> PyResult<Option<S::Item>> {
    let mut guard = m.lock().await;
    let Some(s) = guard.as_mut() else {
        return Ok(None);
    };
    let got = match idle {
        Some(d) => tokio::time::timeout(d, s.pull()).await.ok().flatten(),
        None => s.pull().await,
    };
    settle(&mut guard, got).map_err(|e| Python::attach(|py| to_py(py, e)))
}

/// An item, or the end (the stream dropped after its end or an error).
fn settle<S, T>(
    slot: &mut Option<S>,
    got: Option<Result<T, ClientError>>,
) -> Result<Option<T>, ClientError> {
    match got {
        Some(Ok(item)) => Ok(Some(item)),
        Some(Err(e)) => {
            *slot = None;
            Err(e)
        }
        None => {
            *slot = None;
            Ok(None)
        }
    }
}

/// `None` ends an `async for`.
fn stop_async_iteration<T>(item: Option<T>) -> PyResult<T> {
    item.ok_or_else(|| pyo3::exceptions::PyStopAsyncIteration::new_err(()))
}

/// Stops an iterator's stream.
fn stop<S>(m: &Shared<S>) {
    if let Ok(mut g) = m.try_lock() {
        *g = None;
    }
}

/// One frame and what is known of its fragment.
///
/// `track` (int), `pts` (producer time, seconds since the epoch, float) and
/// `pts_ns` (the same in ns, int), `key` (bool), `fragment_number` (str),
/// `producer_timestamp` / `server_timestamp` (the fragment's, aware UTC
/// datetimes), `data` (the frame's bytes as a read-only memoryview, no
/// copy: AVCC for H.264/H.265, raw for audio), `codec` ("h264", "h265",
/// "aac", "g711" or the Matroska CodecID) and `codec_private` (its
/// CodecPrivate: avcC/hvcC, AudioSpecificConfig …), `image` (the decoded
/// picture as a numpy array with `decode=`, else None).
#[pyclass(module = "kvs._kvs")]
pub(crate) struct Frame {
    head: Arc<FragmentHead>,
    frame: ParsedFrame,
    /// Set by the decoding iterator.
    #[pyo3(get, set)]
    image: Option<Py<PyAny>>,
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
        ms_to_datetime_opt(py, self.head.producer_timestamp_ms)
    }

    #[getter]
    fn server_timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        ms_to_datetime_opt(py, self.head.server_timestamp_ms)
    }

    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        memoryview(py, &self.frame)
    }

    #[getter]
    fn codec(&self) -> Option<String> {
        let t = self
            .head
            .tracks
            .iter()
            .find(|t| t.number == self.frame.track)?;
        Some(match Codec::from_codec_id(&t.codec_id) {
            Codec::H264 => "h264".to_owned(),
            Codec::H265 => "h265".to_owned(),
            Codec::Aac => "aac".to_owned(),
            Codec::G711 => "g711".to_owned(),
            _ => t.codec_id.clone(),
        })
    }

    #[getter]
    fn codec_private<'py>(&self, py: Python<'py>) -> Option<Bound<'py, pyo3::types::PyBytes>> {
        let t = self
            .head
            .tracks
            .iter()
            .find(|t| t.number == self.frame.track)?;
        t.codec_private
            .as_ref()
            .map(|cp| pyo3::types::PyBytes::new(py, cp))
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
        ms_to_datetime_opt(py, self.inner.producer_timestamp_ms)
    }

    #[getter]
    fn server_timestamp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        ms_to_datetime_opt(py, self.inner.server_timestamp_ms)
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
                image: None,
            })?;
        }
        Ok(out)
    }

    /// The fragment as a Matroska file of its own (bytes) that players and
    /// FFmpeg read. Raises InvalidMediaError for a fragment without frames.
    fn to_mkv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let chunks = self.inner.to_mkv().map_err(|e| to_py(py, e))?;
        Ok(pyo3::types::PyBytes::new(py, &chunks.concat()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Fragment({}, {} frames)",
            self.inner.fragment_number.as_deref().unwrap_or("?"),
            self.inner.frames.len()
        )
    }
}
