//! Every error of kvs-core as a Python exception, in one place.
//!
//! ```text
//! KvsError                      the root; .kind .retryable .code .fragment_number .offset
//! ├── NotFoundError             ResourceNotFoundException (stream, fragment)
//! ├── AccessDeniedError         AccessDenied / NotAuthorized, no or bad credentials
//! ├── ThrottledError            ClientLimitExceeded / ConnectionLimitExceeded
//! ├── ConnectionFailedError     connecting, TLS, a broken connection
//! ├── KvsTimeoutError           no answer in time; finish() with fragments unacknowledged
//! ├── InvalidMediaError         a frame that breaks the rules, bytes that are not valid media
//! ├── ServiceError              any other service exception or in-stream error (.code)
//! ├── FragmentsLostError        finish(): fragments given up (.fragments .frames; .code of a refusal)
//! └── ConfigError               settings that cannot work (region, endpoint, tracks)
//! ```

use kvs_core::client::ServiceException;
use kvs_core::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    kvs,
    KvsError,
    PyException,
    "The root of every kvs error. Attributes: kind (str), retryable (bool: the same call may succeed later), code (the service's exception name or numeric error, or None), fragment_number (str or None), offset (byte offset in the input, or None)."
);
create_exception!(
    kvs,
    NotFoundError,
    KvsError,
    "The stream (or fragment) does not exist: ResourceNotFoundException."
);
create_exception!(
    kvs,
    AccessDeniedError,
    KvsError,
    "The credentials are missing, wrong, expired, or not allowed to do this."
);
create_exception!(
    kvs,
    ThrottledError,
    KvsError,
    "The service limits this call (ClientLimitExceeded, ConnectionLimitExceeded): try again later."
);
create_exception!(
    kvs,
    ConnectionFailedError,
    KvsError,
    "Connecting, TLS, or the connection failed."
);
create_exception!(
    kvs,
    KvsTimeoutError,
    KvsError,
    "No answer in time, or finish() ran out of time with fragments unacknowledged."
);
create_exception!(
    kvs,
    InvalidMediaError,
    KvsError,
    "A frame that breaks the rules, or bytes that are not valid media (with where)."
);
create_exception!(kvs, ServiceError, KvsError, "The service refused the call or stopped the media: .code names its exception or numeric error.");
create_exception!(
    kvs,
    FragmentsLostError,
    KvsError,
    "finish() found fragments given up over the producer's life: refused by the service (.code: its numeric error) or dropped from a full buffer. Attributes: fragments, frames (int)."
);
create_exception!(
    kvs,
    ConfigError,
    KvsError,
    "Settings that cannot work (no region, a bad endpoint, a bad track)."
);

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("KvsError", py.get_type::<KvsError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("AccessDeniedError", py.get_type::<AccessDeniedError>())?;
    m.add("ThrottledError", py.get_type::<ThrottledError>())?;
    m.add(
        "ConnectionFailedError",
        py.get_type::<ConnectionFailedError>(),
    )?;
    m.add("KvsTimeoutError", py.get_type::<KvsTimeoutError>())?;
    m.add("InvalidMediaError", py.get_type::<InvalidMediaError>())?;
    m.add("ServiceError", py.get_type::<ServiceError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("FragmentsLostError", py.get_type::<FragmentsLostError>())?;
    // Every instance answers these, also one raised before kvs-core was
    // asked (a bad argument).
    let root = py.get_type::<KvsError>();
    root.setattr("kind", "Config")?;
    root.setattr("retryable", false)?;
    for name in ["code", "fragment_number", "offset", "hint"] {
        root.setattr(name, py.None())?;
    }
    Ok(())
}

/// A settings error raised by the bindings themselves.
pub(crate) fn config(msg: impl Into<String>) -> PyErr {
    ConfigError::new_err(msg.into())
}

/// Media the bindings were given that is not valid (a file).
pub(crate) fn invalid_media(msg: impl Into<String>) -> PyErr {
    InvalidMediaError::new_err(msg.into())
}

/// What to do about fragments given up, by the last one's reason.
fn lost_hint(e: &Error) -> &'static str {
    use kvs_core::producer::{DropReason, ProducerError};
    use kvs_core::protocol::ServiceErrorCode;
    match e {
        Error::Producer(ProducerError::FragmentsLost(l)) => match &l.last {
            Some(DropReason::Rejected(ServiceErrorCode::InvalidProducerTimestamp)) => {
                "producer timestamps in the future are refused: give start_time= far enough in the past for what is put at once (a file: its length), or put in real time"
            }
            Some(DropReason::BufferFull) => {
                "the buffer was full: raise its limits, or use wait_when_full=True so put_frame waits for ACKs"
            }
            _ => "see the producer's events: each refused fragment names the service's error",
        },
        _ => "",
    }
}

/// Any kvs-core error as the Python exception of its kind, with what to do
/// about it and its attributes.
pub(crate) fn to_py(py: Python<'_>, e: impl Into<Error>) -> PyErr {
    let e: Error = e.into();
    let service = e.service_error().cloned();
    let in_stream = match &e {
        Error::Client(kvs_core::client::ClientError::InStream { error_id, .. }) => *error_id,
        _ => None,
    };
    // Signing and key problems come as 403s with their own names.
    let client = match &e {
        Error::Client(c) | Error::Producer(kvs_core::producer::ProducerError::Bootstrap(c)) => {
            Some(c)
        }
        _ => None,
    };
    let denied = matches!(
        client,
        Some(kvs_core::client::ClientError::Service { status: 403, .. })
    ) || matches!(
        &service,
        Some(ServiceException::AccessDenied | ServiceException::NotAuthorized)
    );
    let (err, hint) = match (e.kind(), &service) {
        (ErrorKind::Service, Some(ServiceException::ResourceNotFound)) => (
            NotFoundError::new_err(e.to_string()),
            "check the stream name, the region and the endpoint",
        ),
        (ErrorKind::Service, _) | (ErrorKind::Credentials, _) if denied || e.kind() == ErrorKind::Credentials => (
            AccessDeniedError::new_err(e.to_string()),
            "check the credentials (access key, secret, session token, profile) and what they may do",
        ),
        (
            ErrorKind::Service,
            Some(ServiceException::ClientLimitExceeded | ServiceException::ConnectionLimitExceeded),
        ) => (
            ThrottledError::new_err(e.to_string()),
            "the service limits this call: try again later, or make fewer calls at once",
        ),
        (ErrorKind::Service, _) => (ServiceError::new_err(e.to_string()), ""),
        (ErrorKind::Transport, _) => (
            ConnectionFailedError::new_err(e.to_string()),
            "check endpoint_url, the network and TLS",
        ),
        (ErrorKind::Timeout, _) => (
            KvsTimeoutError::new_err(e.to_string()),
            "the service (or the network) is slow to answer: allow more time (finish(timeout=...), Client.producer(finish_timeout=...)); check the producer's events",
        ),
        (ErrorKind::InvalidData | ErrorKind::InvalidFrame, _) => {
            (InvalidMediaError::new_err(e.to_string()), "")
        }
        (ErrorKind::Config, _) => (ConfigError::new_err(e.to_string()), ""),
        (ErrorKind::Lost, _) => (
            FragmentsLostError::new_err(e.to_string()),
            lost_hint(&e),
        ),
        _ => (KvsError::new_err(e.to_string()), ""),
    };
    let value = err.value(py);
    let lost = match &e {
        Error::Producer(kvs_core::producer::ProducerError::FragmentsLost(l)) => Some(l.clone()),
        _ => None,
    };
    let refused = match lost.as_ref().and_then(|l| l.last.as_ref()) {
        Some(kvs_core::producer::DropReason::Rejected(code)) => Some(u64::from(code.id())),
        _ => None,
    };
    if let Some(l) = &lost {
        let _ = value.setattr("fragments", l.fragments);
        let _ = value.setattr("frames", l.frames);
    }
    let code = service
        .map(|s| s.name().to_owned())
        .or_else(|| in_stream.or(refused).map(|i| i.to_string()));
    let _ = value.setattr("kind", format!("{:?}", e.kind()));
    let _ = value.setattr("retryable", e.is_retryable());
    let _ = value.setattr("code", code);
    let _ = value.setattr("fragment_number", e.fragment_number().map(str::to_owned));
    let _ = value.setattr("offset", e.offset());
    if !hint.is_empty() {
        let _ = value.setattr("hint", hint);
        if let Ok(note) = value.getattr("add_note") {
            let _ = note.call1((format!("What to do: {hint}."),));
        }
    }
    err
}
