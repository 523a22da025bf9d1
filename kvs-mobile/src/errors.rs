//! Every error of kvs-core as a [`KvsError`], in one place.

use kvs_core::{Error, ErrorKind};

/// What went wrong; every variant has a `detail` (what happened and what
/// to do), which Kotlin's and Swift's exceptions show in their message
/// (`message` itself cannot be a field: Kotlin's `Exception` has one).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum KvsError {
    /// A frame that breaks the rules (not a key frame first, timestamps
    /// going back, parameter sets that do not parse): the producer goes on.
    #[error("{detail}")]
    InvalidFrame {
        /// What was wrong, and where.
        detail: String,
    },
    /// Settings that cannot work (no tracks, a bad endpoint URL, an audio
    /// format the service does not take).
    #[error("{detail}")]
    Config {
        /// What was wrong.
        detail: String,
    },
    /// The service refused a call: `code` is its exception name or numeric
    /// error.
    #[error("{detail}")]
    Service {
        /// The service's exception name, or its numeric error.
        code: String,
        /// What it said.
        detail: String,
    },
    /// Connecting failed, or the credentials could not be had.
    #[error("{detail}")]
    Connection {
        /// What failed.
        detail: String,
    },
    /// `finish` ran out of time with fragments unacknowledged (they were
    /// given up).
    #[error("{detail}")]
    Timeout {
        /// How many, within what time.
        detail: String,
    },
    /// The producer was finished or shut down already.
    #[error("{detail}")]
    Finished {
        /// What was asked.
        detail: String,
    },
}

impl KvsError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config {
            detail: message.into(),
        }
    }
}

impl From<Error> for KvsError {
    fn from(e: Error) -> Self {
        let detail = e.to_string();
        match e.kind() {
            ErrorKind::InvalidFrame | ErrorKind::InvalidData => Self::InvalidFrame { detail },
            ErrorKind::Config => Self::Config { detail },
            ErrorKind::Service => Self::Service {
                code: e
                    .service_error()
                    .map_or_else(|| "Unknown".to_owned(), |s| s.name().to_owned()),
                detail,
            },
            ErrorKind::Timeout => Self::Timeout { detail },
            ErrorKind::Finished => Self::Finished { detail },
            _ => Self::Connection { detail },
        }
    }
}

impl From<kvs_core::producer::ProducerError> for KvsError {
    fn from(e: kvs_core::producer::ProducerError) -> Self {
        Error::from(e).into()
    }
}

impl From<kvs_core::client::ClientError> for KvsError {
    fn from(e: kvs_core::client::ClientError) -> Self {
        Error::from(e).into()
    }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for KvsError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Connection {
            detail: format!("the credentials provider failed: {}", e.reason),
        }
    }
}
