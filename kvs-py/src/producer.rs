//! The producer for Python: track settings (`kvs.H264`, `kvs.H265`,
//! `kvs.AAC`, `kvs.G711`) and `kvs.Producer` over kvs-core's Producer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kvs_core::client::{CreateStream, KvsClient};
use kvs_core::mkv::builder::{Payload, TrackConfig};
use kvs_core::producer::{DropReason, Events, Frame, PressurePolicy, ProducerEvent};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{config, to_py};
use crate::runtime::wait;
use crate::time::{seconds, to_datetime};

/// H.264 video. `codec_private`: the avcC record (bytes); without it the
/// first key frame's in-band SPS/PPS (Annex-B) give it. `width`/`height`:
/// pixels, taken from the SPS when 0.
#[pyclass(frozen, module = "kvs._kvs")]
#[derive(Clone)]
pub(crate) struct H264 {
    codec_private: Option<Vec<u8>>,
    width: u32,
    height: u32,
}

#[pymethods]
impl H264 {
    #[new]
    #[pyo3(signature = (codec_private=None, width=0, height=0))]
    fn new(codec_private: Option<Vec<u8>>, width: u32, height: u32) -> Self {
        Self {
            codec_private,
            width,
            height,
        }
    }
}

/// H.265 video. `codec_private`: the hvcC record (bytes); without it the
/// first key frame's in-band VPS/SPS/PPS give it. `width`/`height` as H264.
#[pyclass(frozen, module = "kvs._kvs")]
#[derive(Clone)]
pub(crate) struct H265 {
    codec_private: Option<Vec<u8>>,
    width: u32,
    height: u32,
}

#[pymethods]
impl H265 {
    #[new]
    #[pyo3(signature = (codec_private=None, width=0, height=0))]
    fn new(codec_private: Option<Vec<u8>>, width: u32, height: u32) -> Self {
        Self {
            codec_private,
            width,
            height,
        }
    }
}

/// AAC audio (raw AAC frames, no ADTS header): sampling `rate` in Hz and
/// `channels`.
#[pyclass(frozen, module = "kvs._kvs", name = "AAC")]
#[derive(Clone)]
pub(crate) struct Aac {
    rate: u32,
    channels: u8,
}

#[pymethods]
impl Aac {
    #[new]
    #[pyo3(signature = (rate=48000, channels=2))]
    fn new(rate: u32, channels: u8) -> Self {
        Self { rate, channels }
    }
}

/// G.711 audio: `law` "mulaw" or "alaw", sampling `rate` in Hz (8000),
/// `channels`.
#[pyclass(frozen, module = "kvs._kvs")]
#[derive(Clone)]
pub(crate) struct G711 {
    alaw: bool,
    rate: u32,
    channels: u8,
}

#[pymethods]
impl G711 {
    #[new]
    #[pyo3(signature = (law="mulaw", rate=8000, channels=1))]
    fn new(law: &str, rate: u32, channels: u8) -> PyResult<Self> {
        let alaw = match law {
            "alaw" => true,
            "mulaw" => false,
            other => {
                return Err(config(format!(
                    "law must be \"mulaw\" or \"alaw\", not {other:?}"
                )))
            }
        };
        Ok(Self {
            alaw,
            rate,
            channels,
        })
    }
}

fn video_track(number: u64, codec_id: &str, cp: &Option<Vec<u8>>, w: u32, h: u32) -> TrackConfig {
    let mut t = TrackConfig::video(number, codec_id, Bytes::new(), w, h);
    t.codec_private = cp.as_ref().map(|c| Bytes::from(c.clone()));
    t
}

/// The settings `Client.producer` passes on.
pub(crate) struct Settings<'py> {
    pub stream: String,
    pub video: Option<Bound<'py, PyAny>>,
    pub audio: Option<Bound<'py, PyAny>>,
    /// Create the stream with this retention when it is missing.
    pub create: Option<u32>,
    pub start: SystemTime,
    pub wait_when_full: bool,
}

/// A producer of one stream (from `Client.producer`). Use it as a context
/// manager: on exit it waits until every fragment is acknowledged
/// (`finish`).
///
/// Frames go out as they are put — each block is written to the open
/// PutMedia connection at once — and stay buffered until acknowledged, so
/// nothing is lost across dropped connections.
#[pyclass(module = "kvs._kvs")]
pub(crate) struct Producer {
    inner: kvs_core::producer::Producer,
    events: Arc<tokio::sync::Mutex<Events>>,
    video: Option<u64>,
    audio: Option<u64>,
}

impl Producer {
    pub(crate) fn build(
        py: Python<'_>,
        client: &Arc<KvsClient>,
        s: Settings<'_>,
    ) -> PyResult<Self> {
        let mut b = kvs_core::producer::Producer::builder(client.clone(), s.stream.as_str())
            .start_time(s.start);
        let mut next = 1;
        let mut video = None;
        if let Some(v) = &s.video {
            let t = if let Ok(h) = v.extract::<PyRef<'_, H264>>() {
                video_track(
                    next,
                    kvs_core::codec::h264::CODEC_ID,
                    &h.codec_private,
                    h.width,
                    h.height,
                )
            } else if let Ok(h) = v.extract::<PyRef<'_, H265>>() {
                video_track(
                    next,
                    kvs_core::codec::h265::CODEC_ID,
                    &h.codec_private,
                    h.width,
                    h.height,
                )
            } else {
                return Err(config("video= must be kvs.H264(...) or kvs.H265(...)"));
            };
            b = b.track(t);
            video = Some(next);
            next += 1;
        }
        let mut audio = None;
        if let Some(a) = &s.audio {
            let t = if let Ok(x) = a.extract::<PyRef<'_, Aac>>() {
                TrackConfig::aac(next, x.rate, x.channels).map_err(|e| to_py(py, e))?
            } else if let Ok(x) = a.extract::<PyRef<'_, G711>>() {
                let law = if x.alaw {
                    kvs_core::codec::g711::Law::ALaw
                } else {
                    kvs_core::codec::g711::Law::MuLaw
                };
                TrackConfig::g711(next, law, x.rate, x.channels)
            } else {
                return Err(config("audio= must be kvs.AAC(...) or kvs.G711(...)"));
            };
            b = b.track(t);
            audio = Some(next);
        }
        if video.is_none() && audio.is_none() {
            return Err(config("a producer needs video= or audio= (or both)"));
        }
        if let Some(hours) = s.create {
            b = b.create_if_missing(CreateStream {
                data_retention_in_hours: hours,
                ..CreateStream::default()
            });
        }
        if s.wait_when_full {
            b = b.pressure(PressurePolicy::Wait);
        }
        let inner = wait(py, b.build())?.map_err(|e| to_py(py, e))?;
        let events = Arc::new(tokio::sync::Mutex::new(inner.subscribe()));
        Ok(Self {
            inner,
            events,
            video,
            audio,
        })
    }
}

#[pymethods]
impl Producer {
    /// Puts one frame. `data`: bytes-like — an H.264/H.265 access unit
    /// (Annex-B or AVCC, told apart by its start code) or an audio frame.
    /// `pts`: seconds since the producer's start time (float); `dts`:
    /// decode time when it differs (B-frames). `key`: a key frame (every
    /// audio frame is one). `track`: 1 for video (or the only track),
    /// 2 for audio next to video; default the video track.
    ///
    /// Blocks (GIL released) only while the buffer is full with
    /// wait_when_full. Raises InvalidMediaError for a frame that breaks the
    /// rules (decode times must increase per track; a key frame at least
    /// every 20 s; parameter sets that parse), KvsError after finish().
    #[pyo3(signature = (data, pts, key=false, track=None, dts=None))]
    fn put_frame(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        pts: f64,
        key: bool,
        track: Option<u64>,
        dts: Option<f64>,
    ) -> PyResult<()> {
        let track = track.or(self.video).or(self.audio).unwrap_or(1);
        let buf = PyBuffer::<u8>::get(data)?;
        let bytes = Bytes::from(buf.to_vec(py)?);
        let payload = if Some(track) == self.video {
            Payload::video(bytes)
        } else {
            Payload::Raw(bytes)
        };
        let frame = Frame {
            track,
            pts: seconds("pts", pts)?,
            dts: dts.map(|d| seconds("dts", d)).transpose()?,
            key,
            payload,
        };
        let p = self.inner.clone();
        wait(py, async move { p.put_frame(frame).await })?.map_err(|e| to_py(py, e))
    }

    /// Puts a video file's frames: Matroska/WebM (`.mkv`, `.webm`, whose
    /// tracks must be this producer's: same numbers and codecs) or an
    /// Annex-B H.264/H.265 stream (`.h264`, `.h265`) at `fps` frames a
    /// second. They go on this producer's timeline — at the file's own
    /// times when nothing was put before, else one frame interval after
    /// the latest frame put — as fast as the buffer takes them, or with
    /// `realtime` each at its time from now, as a camera would. Returns
    /// the number of frames put (leading frames before the first key frame
    /// are skipped).
    ///
    /// Raises ConfigError for a file of another kind or with tracks this
    /// producer lacks, InvalidMediaError for a file that is not valid
    /// media, and what put_frame raises.
    #[pyo3(signature = (path, fps=25.0, realtime=false))]
    fn put_file(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        fps: f64,
        realtime: bool,
    ) -> PyResult<usize> {
        let input = file_input(&path, fps)?;
        let p = self.inner.clone();
        wait(py, async move { p.put_file(input, realtime).await })?.map_err(|e| to_py(py, e))
    }

    /// Adds a metadata tag (the service's limits: 10 a fragment, no `AWS`
    /// prefix, name ≤ 128 bytes, value ≤ 256) to the next fragment to
    /// close. Raises InvalidMediaError / ConfigError past the limits.
    fn tag_next_fragment(&self, py: Python<'_>, name: &str, value: &str) -> PyResult<()> {
        self.inner
            .tag_next_fragment(name, value)
            .map_err(|e| to_py(py, e))
    }

    /// The producer's events as they come, an iterator of dicts with a
    /// "type": "acked" (fragment_number, producer_timestamp, latency in
    /// seconds, frames), "service_error" (code, name, retriable,
    /// fragment_number, producer_timestamp), "fragment_dropped"
    /// (producer_timestamp, frames, reason), "connected", "disconnected",
    /// "reconnecting", "rotating", "leading_frames_skipped", "stats",
    /// "events_lost" (at most 256 are kept unread). Each step waits up to
    /// `timeout` seconds (GIL released) for the next event; the iteration
    /// ends when none comes in that time — with the default 0, once the
    /// events so far are read.
    #[pyo3(signature = (timeout=0.0))]
    fn events(&self, timeout: f64) -> PyResult<EventIterator> {
        Ok(EventIterator {
            events: self.events.clone(),
            timeout: seconds("timeout", timeout)?,
        })
    }

    /// Closes the open fragment and waits (GIL released) until every
    /// fragment is acknowledged, at most `timeout` seconds. Raises
    /// KvsTimeoutError naming what was not acknowledged, and
    /// FragmentsLostError when fragments were given up over the
    /// producer's life (refused by the service, or dropped from a full
    /// buffer; each also an event). The producer stops either way; called
    /// again, it raises the same at once.
    #[pyo3(signature = (timeout=30.0))]
    fn finish(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let t = seconds("timeout", timeout)?;
        let p = self.inner.clone();
        wait(py, async move {
            p.finish(t).await?;
            p.losses().check()
        })?
        .map_err(|e| to_py(py, e))
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Finishes (30 s at most). An exception already on its way is not
    /// hidden by one from finishing.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let r = self.finish(py, 30.0);
        if exc_type.is_none() {
            r?;
        }
        Ok(false)
    }
}

/// The events of a producer (`Producer.events`).
#[pyclass(module = "kvs._kvs")]
pub(crate) struct EventIterator {
    events: Arc<tokio::sync::Mutex<Events>>,
    timeout: Duration,
}

#[pymethods]
impl EventIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next event; StopIteration when none comes within the timeout.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut rx = self
            .events
            .try_lock()
            .map_err(|_| config("the events are being read elsewhere"))?;
        if let Some(e) = rx.try_recv() {
            return event(py, &e).map(Some);
        }
        if self.timeout.is_zero() {
            return Ok(None);
        }
        match crate::runtime::wait_until(py, rx.recv(), Some(self.timeout))? {
            Some(Some(e)) => event(py, &e).map(Some),
            _ => Ok(None),
        }
    }
}

/// A producer event as a dict.
fn event<'py>(py: Python<'py>, e: &ProducerEvent) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let secs = |x: &Duration| x.as_secs_f64();
    match e {
        ProducerEvent::Acked {
            producer_timestamp,
            fragment_number,
            latency,
            frames,
        } => {
            d.set_item("type", "acked")?;
            d.set_item("producer_timestamp", to_datetime(py, *producer_timestamp)?)?;
            d.set_item("fragment_number", fragment_number)?;
            d.set_item("latency", secs(latency))?;
            d.set_item("frames", frames)?;
        }
        ProducerEvent::ServiceError {
            producer_timestamp,
            fragment_number,
            code,
            retriable,
        } => {
            d.set_item("type", "service_error")?;
            d.set_item(
                "producer_timestamp",
                producer_timestamp.map(|t| to_datetime(py, t)).transpose()?,
            )?;
            d.set_item("fragment_number", fragment_number)?;
            d.set_item("code", code.id())?;
            d.set_item("name", code.name())?;
            d.set_item("retriable", retriable)?;
        }
        ProducerEvent::FragmentDropped {
            producer_timestamp,
            frames,
            reason,
        } => {
            d.set_item("type", "fragment_dropped")?;
            d.set_item("producer_timestamp", to_datetime(py, *producer_timestamp)?)?;
            d.set_item("frames", frames)?;
            let why = match reason {
                DropReason::BufferFull => "buffer_full".to_owned(),
                other => other.to_string(),
            };
            d.set_item("reason", why)?;
        }
        ProducerEvent::LeadingFramesSkipped {
            frames,
            bytes,
            first_key,
        } => {
            d.set_item("type", "leading_frames_skipped")?;
            d.set_item("frames", frames)?;
            d.set_item("bytes", bytes)?;
            d.set_item("first_key", first_key.as_ref().map(secs))?;
        }
        ProducerEvent::Rotating { reason } => {
            d.set_item("type", "rotating")?;
            d.set_item("reason", format!("{reason:?}"))?;
        }
        ProducerEvent::Connected {
            connection,
            resending,
        } => {
            d.set_item("type", "connected")?;
            d.set_item("connection", connection)?;
            d.set_item("resending", resending)?;
        }
        ProducerEvent::Disconnected { connection, reason } => {
            d.set_item("type", "disconnected")?;
            d.set_item("connection", connection)?;
            d.set_item("reason", reason)?;
        }
        ProducerEvent::Reconnecting {
            attempt,
            delay,
            error,
        } => {
            d.set_item("type", "reconnecting")?;
            d.set_item("attempt", attempt)?;
            d.set_item("delay", secs(delay))?;
            d.set_item("error", error)?;
        }
        ProducerEvent::EventsLost { missed } => {
            d.set_item("type", "events_lost")?;
            d.set_item("missed", missed)?;
        }
        ProducerEvent::Stats {
            buffered_bytes,
            buffered_duration,
            buffered_fragments,
            bytes_sent,
        } => {
            d.set_item("type", "stats")?;
            d.set_item("buffered_bytes", buffered_bytes)?;
            d.set_item("buffered_duration", secs(buffered_duration))?;
            d.set_item("buffered_fragments", buffered_fragments)?;
            d.set_item("bytes_sent", bytes_sent)?;
        }
        _ => {
            d.set_item("type", "other")?;
            d.set_item("detail", format!("{e:?}"))?;
        }
    }
    Ok(d)
}

/// Reads a video file into a producer's input: Matroska/WebM (`.mkv`,
/// `.webm`: its tracks and frames) or an Annex-B elementary stream
/// (`.h264`/`.264`, `.h265`/`.hevc`) at `fps`, told apart by the
/// file's extension.
pub(crate) fn file_input(
    path: &std::path::Path,
    fps: f64,
) -> PyResult<kvs_core::mkv::mux::FrameInput> {
    use kvs_core::codec::annexb::VideoCodec;
    if !(fps.is_finite() && fps > 0.0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "fps must be a number of frames a second > 0, not {fps}"
        )));
    }
    let data = std::fs::read(path).map_err(|e| {
        let msg = format!("{}: {e}", path.display());
        match e.kind() {
            std::io::ErrorKind::NotFound => pyo3::exceptions::PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => {
                pyo3::exceptions::PyPermissionError::new_err(msg)
            }
            _ => pyo3::exceptions::PyOSError::new_err(msg),
        }
    })?;
    let data = bytes::Bytes::from(data);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let r = match ext.as_str() {
        "mkv" | "webm" => kvs_core::mkv::mux::matroska_frames(data),
        "h264" | "264" => kvs_core::mkv::mux::annexb_frames(VideoCodec::H264, &data, fps, None),
        "h265" | "265" | "hevc" => {
            kvs_core::mkv::mux::annexb_frames(VideoCodec::H265, &data, fps, None)
        }
        _ => {
            return Err(config(format!(
                "{}: not a .mkv, .webm, .h264 or .h265 file",
                path.display()
            )))
        }
    };
    r.map_err(|e| crate::errors::invalid_media(format!("{}: {e}", path.display())))
}
