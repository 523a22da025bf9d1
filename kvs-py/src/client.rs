//! `kvs.Client`: credentials and region as boto3 finds them, the control
//! plane, and the doors to the consumer and the producer.

use std::collections::HashMap;
use std::sync::Arc;

use kvs_core::auth::Credentials;
use kvs_core::client::{ClientConfig, CreateStream, FragmentSelector, KvsClient, StreamInfo};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{config, to_py};
use crate::runtime::{runtime, wait};
use crate::time::{from_datetime, seconds_since_epoch, to_datetime};

/// A client of Kinesis Video Streams (or of a local endpoint).
///
/// Credentials: the keys given, else the AWS SDKs' chain (environment,
/// shared profiles — `profile` or `AWS_PROFILE` — SSO, credential_process,
/// web identity, ECS and EC2 metadata), as boto3 resolves them. Region:
/// `region`, else the chain's (`AWS_REGION`, `AWS_DEFAULT_REGION`, the
/// profile's). `endpoint_url`: a local endpoint (`kvs.LocalEndpoint`) or
/// any other control-plane URL.
///
/// Raises ConfigError (no region, a bad URL) and AccessDeniedError (no
/// credentials found).
#[pyclass(frozen, subclass, module = "kvs._kvs")]
pub(crate) struct Client {
    pub(crate) inner: Arc<KvsClient>,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (region=None, endpoint_url=None, profile=None, access_key_id=None, secret_access_key=None, session_token=None))]
    fn new(
        py: Python<'_>,
        region: Option<String>,
        endpoint_url: Option<String>,
        profile: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        session_token: Option<String>,
    ) -> PyResult<Self> {
        let mut cfg = match (access_key_id, secret_access_key) {
            (Some(key), Some(secret)) => {
                let region = region
                    .or_else(kvs_core::auth::default_region)
                    .ok_or_else(|| config("no AWS region: pass region=, or set AWS_REGION"))?;
                ClientConfig::new(
                    region,
                    Credentials::new(key, secret, session_token, None, "kvs-python"),
                )
            }
            (None, None) => {
                let mut loader = kvs_core::auth::aws_config::loader();
                if let Some(p) = &profile {
                    loader = loader.profile_name(p);
                }
                let sdk = wait(py, loader.load())?;
                let creds = sdk.credentials_provider().ok_or_else(|| {
                    to_py(
                        py,
                        kvs_core::client::ClientError::Credentials(
                            "no credentials provider in the AWS configuration".into(),
                        ),
                    )
                })?;
                let region = region
                    .or_else(|| sdk.region().map(|r| r.to_string()))
                    .ok_or_else(|| config("no AWS region: pass region=, set AWS_REGION, or give the profile a region"))?;
                ClientConfig::new(region, creds)
            }
            _ => {
                return Err(config(
                    "give both access_key_id and secret_access_key, or neither",
                ))
            }
        };
        if let Some(url) = endpoint_url {
            cfg = cfg.endpoint(url);
        }
        cfg = cfg.runtime(runtime()?.handle().clone());
        let inner = KvsClient::new(cfg).map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The region the client signs for.
    #[getter]
    fn region(&self) -> String {
        self.inner.config().region.clone()
    }

    /// CreateStream; returns the stream's ARN. `retention_hours` 0 keeps
    /// nothing (live readers only). Raises ServiceError
    /// (ResourceInUseException when it exists), AccessDeniedError.
    #[pyo3(signature = (name, retention_hours=24, media_type=None, kms_key_id=None, tags=None))]
    fn create_stream(
        &self,
        py: Python<'_>,
        name: String,
        retention_hours: u32,
        media_type: Option<String>,
        kms_key_id: Option<String>,
        tags: Option<HashMap<String, String>>,
    ) -> PyResult<String> {
        let req = CreateStream {
            stream_name: name,
            data_retention_in_hours: retention_hours,
            media_type,
            kms_key_id,
            tags: tags.unwrap_or_default(),
            ..CreateStream::default()
        };
        let c = self.inner.clone();
        wait(py, async move { c.create_stream(&req).await })?.map_err(|e| to_py(py, e))
    }

    /// DescribeStream: a dict (name, arn, status, media_type, kms_key_id,
    /// version, creation_time as an aware datetime, retention_hours,
    /// device_name). Raises NotFoundError.
    fn describe_stream<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.clone();
        let info = wait(py, async move { c.describe_stream(name.as_str()).await })?
            .map_err(|e| to_py(py, e))?;
        stream_dict(py, &info)
    }

    /// ListStreams (every page): a list of dicts as describe_stream's.
    fn list_streams<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let c = self.inner.clone();
        let all = wait(py, async move { c.list_streams().await })?.map_err(|e| to_py(py, e))?;
        let out = PyList::empty(py);
        for s in &all {
            out.append(stream_dict(py, s)?)?;
        }
        Ok(out)
    }

    /// DeleteStream by name or ARN. Raises NotFoundError.
    fn delete_stream(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let c = self.inner.clone();
        wait(py, async move {
            let info = c.describe_stream(name.as_str()).await?;
            c.delete_stream(&info.stream_arn, info.version.as_deref())
                .await
        })?
        .map_err(|e| to_py(py, e))
    }

    /// Sets the stream's data retention to `retention_hours` (0: nothing
    /// kept once acknowledged): UpdateDataRetention by the difference from
    /// its current retention. Raises NotFoundError, ServiceError
    /// (VersionMismatch when the stream changed meanwhile, InvalidArgument
    /// past 87,600 hours).
    fn update_data_retention(
        &self,
        py: Python<'_>,
        stream: String,
        retention_hours: u32,
    ) -> PyResult<()> {
        let c = self.inner.clone();
        wait(py, async move {
            c.set_data_retention(stream.as_str(), retention_hours).await
        })?
        .map_err(|e| to_py(py, e))
    }

    /// ListFragments (every page) with producer timestamps in
    /// [start, end] (aware datetimes; both or neither): dicts with number,
    /// producer_timestamp and server_timestamp (aware datetimes),
    /// duration (seconds) and size (bytes), in producer-time order.
    #[pyo3(signature = (stream, start=None, end=None))]
    fn list_fragments<'py>(
        &self,
        py: Python<'py>,
        stream: String,
        start: Option<Bound<'py, PyAny>>,
        end: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let selector = match (start, end) {
            (Some(s), Some(e)) => Some(FragmentSelector::Producer {
                start: from_datetime(&s)?,
                end: from_datetime(&e)?,
            }),
            (None, None) => None,
            _ => return Err(config("give both start and end, or neither")),
        };
        let c = self.inner.clone();
        let mut all = wait(py, async move {
            c.list_fragments(stream.as_str(), selector).await
        })?
        .map_err(|e| to_py(py, e))?;
        all.sort_by(|a, b| a.producer_timestamp.total_cmp(&b.producer_timestamp));
        let out = PyList::empty(py);
        for f in &all {
            let d = PyDict::new(py);
            d.set_item("number", &f.fragment_number)?;
            d.set_item("producer_timestamp", to_datetime(py, f.producer_time())?)?;
            d.set_item("server_timestamp", to_datetime(py, f.server_time())?)?;
            d.set_item("duration", f.duration().as_secs_f64())?;
            d.set_item("size", f.fragment_size_in_bytes)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// The frames of a stream, each as soon as it arrives: an iterator of
    /// `kvs.Frame` (also `async for`).
    ///
    /// `start`: "now" (default), "earliest", an aware datetime (the first
    /// fragment at or after that producer time), a fragment number (digits:
    /// the fragment after it) or a continuation token (where an earlier
    /// read stopped). Without `end` it follows the stream live, resuming by
    /// itself across dropped connections, each frame once; with `end` (an
    /// aware datetime, `start` a datetime too) it reads that producer-time
    /// range from the archive and stops after it. `idle_timeout` (seconds)
    /// ends a live iteration after that long without a frame.
    ///
    /// Raises NotFoundError, AccessDeniedError, ServiceError (the stream's
    /// KMS key, a fragment gone) while iterating.
    #[pyo3(signature = (stream, start=None, end=None, idle_timeout=None))]
    fn frames(
        &self,
        py: Python<'_>,
        stream: String,
        start: Option<Bound<'_, PyAny>>,
        end: Option<Bound<'_, PyAny>>,
        idle_timeout: Option<f64>,
    ) -> PyResult<crate::consumer::FrameIterator> {
        let s = crate::consumer::open(py, &self.inner, stream, start, end)?;
        crate::consumer::FrameIterator::new(s, idle_timeout)
    }

    /// The fragments of a stream, whole: an iterator of `kvs.Fragment`;
    /// arguments and errors as `frames`.
    #[pyo3(signature = (stream, start=None, end=None, idle_timeout=None))]
    fn fragments(
        &self,
        py: Python<'_>,
        stream: String,
        start: Option<Bound<'_, PyAny>>,
        end: Option<Bound<'_, PyAny>>,
        idle_timeout: Option<f64>,
    ) -> PyResult<crate::consumer::FragmentIterator> {
        let s = crate::consumer::open(py, &self.inner, stream, start, end)?;
        crate::consumer::FragmentIterator::new(s, idle_timeout)
    }

    /// Uploads a video file to `stream` and waits until every fragment is
    /// acknowledged: Matroska/WebM (`.mkv`, `.webm`, with their tracks) or
    /// an Annex-B H.264/H.265 elementary stream (`.h264`, `.h265`) at
    /// `fps`. Without `realtime` it goes as fast as the upload takes it,
    /// nothing dropped, its producer time ending now (the file's length
    /// back); with `realtime` each frame goes at its time, as from a
    /// camera, from now. Returns the number of frames put.
    ///
    /// Raises InvalidMediaError for a file that is not valid media,
    /// ConfigError for an unknown kind of file, KvsTimeoutError when the
    /// ACKs do not come, FragmentsLostError when the service refused
    /// fragments, and the errors of `producer`.
    #[pyo3(signature = (stream, path, fps=25.0, realtime=false, create_if_missing=true, retention_hours=24))]
    #[allow(clippy::too_many_arguments)]
    fn put_file(
        &self,
        py: Python<'_>,
        stream: String,
        path: std::path::PathBuf,
        fps: f64,
        realtime: bool,
        create_if_missing: bool,
        retention_hours: u32,
    ) -> PyResult<usize> {
        let input = crate::producer::file_input(&path, fps)?;
        let now = std::time::SystemTime::now();
        let start = if realtime {
            now
        } else {
            now - input.duration() - std::time::Duration::from_secs(1)
        };
        let mut b = kvs_core::producer::Producer::builder(self.inner.clone(), stream.as_str())
            .start_time(start);
        for t in input.tracks {
            b = b.track(t);
        }
        if create_if_missing {
            b = b.create_if_missing(CreateStream {
                data_retention_in_hours: retention_hours,
                ..CreateStream::default()
            });
        }
        if !realtime {
            b = b.pressure(kvs_core::producer::PressurePolicy::Wait);
        }
        let frames = input.frames;
        wait(py, async move {
            let p = b.build().await?;
            let n = p.put_frames(frames, realtime).await?;
            p.finish(std::time::Duration::from_secs(60)).await?;
            p.losses().check()?;
            Ok::<_, kvs_core::producer::ProducerError>(n)
        })?
        .map_err(|e| to_py(py, e))
    }

    /// A producer of `stream` (see `kvs.Producer`): a context manager that
    /// waits, on exit, until every fragment is acknowledged.
    ///
    /// `video`: kvs.H264(...) or kvs.H265(...) (track 1); `audio`:
    /// kvs.AAC(...) or kvs.G711(...) (track 2, or 1 without video).
    /// `create_if_missing` creates the stream with `retention_hours`.
    /// `start_time` (aware datetime, default now): the producer time of
    /// pts 0. `wait_when_full`: put_frame waits for ACKs when the buffer is
    /// full instead of dropping the oldest fragment (right for files).
    #[pyo3(signature = (stream, video=None, audio=None, create_if_missing=true, retention_hours=24, start_time=None, wait_when_full=false))]
    #[allow(clippy::too_many_arguments)]
    fn producer(
        &self,
        py: Python<'_>,
        stream: String,
        video: Option<Bound<'_, PyAny>>,
        audio: Option<Bound<'_, PyAny>>,
        create_if_missing: bool,
        retention_hours: u32,
        start_time: Option<Bound<'_, PyAny>>,
        wait_when_full: bool,
    ) -> PyResult<crate::producer::Producer> {
        let start = match start_time {
            Some(t) => from_datetime(&t)?,
            None => std::time::SystemTime::now(),
        };
        crate::producer::Producer::build(
            py,
            &self.inner,
            crate::producer::Settings {
                stream,
                video,
                audio,
                create: create_if_missing.then_some(retention_hours),
                start,
                wait_when_full,
            },
        )
    }
}

/// A StreamInfo as a dict.
fn stream_dict<'py>(py: Python<'py>, s: &StreamInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &s.stream_name)?;
    d.set_item("arn", &s.stream_arn)?;
    d.set_item("status", &s.status)?;
    d.set_item("media_type", &s.media_type)?;
    d.set_item("kms_key_id", &s.kms_key_id)?;
    d.set_item("version", &s.version)?;
    d.set_item("device_name", &s.device_name)?;
    d.set_item("retention_hours", s.data_retention_in_hours)?;
    let created = match s.creation_time {
        Some(t) => Some(to_datetime(py, seconds_since_epoch(t.max(0.0))?)?),
        None => None,
    };
    d.set_item("creation_time", created)?;
    Ok(d)
}
