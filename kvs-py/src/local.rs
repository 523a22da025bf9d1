//! `kvs.LocalEndpoint`: kvs-core's KVS-compatible endpoint in-process, for
//! tests without an AWS account.

use std::sync::Mutex;

use kvs_core::local::{Faults, LocalConfig};
use pyo3::prelude::*;

use crate::errors::config;
use crate::runtime::wait;

/// A KVS-compatible endpoint on 127.0.0.1 (control plane, PutMedia,
/// GetMedia, the archive), running in this process until `close()` or the
/// end of a `with` block.
///
/// `port` 0 picks a free one. `data_dir` keeps streams and fragments on
/// disk across restarts. `faults`: `kvs local --fault` specs such as
/// "drop-after-bytes=250000", "error-ack=4006@2", "ack-delay-ms=300",
/// "throttle=0.5", "get-media-error=4500@2". With `access_key_id` and
/// `secret_access_key` every request must be signed with them (SigV4).
///
/// A pytest fixture:
///
/// ```python
/// @pytest.fixture
/// def kvs_client():
///     with kvs.LocalEndpoint() as ep:
///         yield kvs.Client(region="us-east-1", endpoint_url=ep.endpoint_url,
///                          access_key_id="test", secret_access_key="test")
/// ```
///
/// Raises ConfigError for a bad fault spec, KvsError when the port is taken.
#[pyclass(module = "kvs._kvs")]
pub(crate) struct LocalEndpoint {
    inner: Mutex<Option<kvs_core::local::LocalEndpoint>>,
    url: String,
}

#[pymethods]
impl LocalEndpoint {
    #[new]
    #[pyo3(signature = (port=0, data_dir=None, faults=None, access_key_id=None, secret_access_key=None))]
    fn new(
        py: Python<'_>,
        port: u16,
        data_dir: Option<std::path::PathBuf>,
        faults: Option<Vec<String>>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    ) -> PyResult<Self> {
        let mut f = Faults::default();
        for spec in faults.unwrap_or_default() {
            f.apply(&spec).map_err(config)?;
        }
        let credentials = match (access_key_id, secret_access_key) {
            (Some(k), Some(s)) => Some((k, s)),
            (None, None) => None,
            _ => {
                return Err(config(
                    "give both access_key_id and secret_access_key, or neither",
                ))
            }
        };
        let cfg = LocalConfig {
            port,
            data_dir,
            faults: f,
            credentials,
            ..LocalConfig::default()
        };
        let ep = wait(py, kvs_core::local::LocalEndpoint::start(cfg))?.map_err(|e| {
            crate::errors::KvsError::new_err(format!("cannot start the local endpoint: {e}"))
        })?;
        let url = ep.url().to_owned();
        Ok(Self {
            inner: Mutex::new(Some(ep)),
            url,
        })
    }

    /// The URL to give `kvs.Client(endpoint_url=...)` (and boto3's
    /// `endpoint_url`).
    #[getter]
    fn endpoint_url(&self) -> String {
        self.url.clone()
    }

    /// Stops the endpoint; its open connections are cut.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let ep = self
            .inner
            .lock()
            .map_err(|_| config("endpoint state unusable"))?
            .take();
        if let Some(ep) = ep {
            wait(py, ep.shutdown())?;
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}
