//! Client errors, with the service's exception names typed.

use std::fmt;

/// The exceptions the KVS API models declare (all five models), by the name
/// the service sends in `x-amzn-ErrorType`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceException {
    /// `AccessDeniedException`
    AccessDenied,
    /// `AccountChannelLimitExceededException`
    AccountChannelLimitExceeded,
    /// `AccountStreamLimitExceededException`
    AccountStreamLimitExceeded,
    /// `ClientLimitExceededException`: throttled.
    ClientLimitExceeded,
    /// `ConnectionLimitExceededException`: too many connections.
    ConnectionLimitExceeded,
    /// `DeviceStreamLimitExceededException`
    DeviceStreamLimitExceeded,
    /// `InvalidArgumentException`
    InvalidArgument,
    /// `InvalidClientException`
    InvalidClient,
    /// `InvalidCodecPrivateDataException`
    InvalidCodecPrivateData,
    /// `InvalidDeviceException`
    InvalidDevice,
    /// `InvalidEndpointException`: call GetDataEndpoint again.
    InvalidEndpoint,
    /// `InvalidMediaFrameException`
    InvalidMediaFrame,
    /// `InvalidResourceFormatException`
    InvalidResourceFormat,
    /// `MissingCodecPrivateDataException`
    MissingCodecPrivateData,
    /// `NoDataRetentionException`
    NoDataRetention,
    /// `NotAuthorizedException`
    NotAuthorized,
    /// `ResourceInUseException`
    ResourceInUse,
    /// `ResourceNotFoundException`
    ResourceNotFound,
    /// `SessionExpiredException`
    SessionExpired,
    /// `StreamEdgeConfigurationNotFoundException`
    StreamEdgeConfigurationNotFound,
    /// `TagsPerResourceExceededLimitException`
    TagsPerResourceExceededLimit,
    /// `UnsupportedStreamMediaTypeException`
    UnsupportedStreamMediaType,
    /// `VersionMismatchException`
    VersionMismatch,
    /// Any other name (`UnrecognizedClientException`, `SerializationException`, …).
    Other(String),
}

const NAMES: [(&str, ServiceException); 23] = [
    ("AccessDeniedException", ServiceException::AccessDenied),
    (
        "AccountChannelLimitExceededException",
        ServiceException::AccountChannelLimitExceeded,
    ),
    (
        "AccountStreamLimitExceededException",
        ServiceException::AccountStreamLimitExceeded,
    ),
    (
        "ClientLimitExceededException",
        ServiceException::ClientLimitExceeded,
    ),
    (
        "ConnectionLimitExceededException",
        ServiceException::ConnectionLimitExceeded,
    ),
    (
        "DeviceStreamLimitExceededException",
        ServiceException::DeviceStreamLimitExceeded,
    ),
    (
        "InvalidArgumentException",
        ServiceException::InvalidArgument,
    ),
    ("InvalidClientException", ServiceException::InvalidClient),
    (
        "InvalidCodecPrivateDataException",
        ServiceException::InvalidCodecPrivateData,
    ),
    ("InvalidDeviceException", ServiceException::InvalidDevice),
    (
        "InvalidEndpointException",
        ServiceException::InvalidEndpoint,
    ),
    (
        "InvalidMediaFrameException",
        ServiceException::InvalidMediaFrame,
    ),
    (
        "InvalidResourceFormatException",
        ServiceException::InvalidResourceFormat,
    ),
    (
        "MissingCodecPrivateDataException",
        ServiceException::MissingCodecPrivateData,
    ),
    (
        "NoDataRetentionException",
        ServiceException::NoDataRetention,
    ),
    ("NotAuthorizedException", ServiceException::NotAuthorized),
    ("ResourceInUseException", ServiceException::ResourceInUse),
    (
        "ResourceNotFoundException",
        ServiceException::ResourceNotFound,
    ),
    ("SessionExpiredException", ServiceException::SessionExpired),
    (
        "StreamEdgeConfigurationNotFoundException",
        ServiceException::StreamEdgeConfigurationNotFound,
    ),
    (
        "TagsPerResourceExceededLimitException",
        ServiceException::TagsPerResourceExceededLimit,
    ),
    (
        "UnsupportedStreamMediaTypeException",
        ServiceException::UnsupportedStreamMediaType,
    ),
    (
        "VersionMismatchException",
        ServiceException::VersionMismatch,
    ),
];

impl ServiceException {
    /// The exception for a name as sent: `x-amzn-ErrorType` values carry a
    /// `:url` suffix, JSON `__type` values may carry a `namespace#` prefix.
    pub fn from_wire(raw: &str) -> Self {
        let name = raw.split(':').next().unwrap_or(raw);
        let name = name.rsplit('#').next().unwrap_or(name).trim();
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| Self::Other(name.to_owned()), |(_, e)| e.clone())
    }

    /// The exception's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Other(n) => n,
            known => NAMES
                .iter()
                .find(|(_, e)| e == known)
                .map_or("", |(n, _)| n),
        }
    }
}

impl fmt::Display for ServiceException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service answered with an error.
    #[error("{exception} (HTTP {status}): {message}{}", request_id.as_deref().map(|r| format!(" [request {r}]")).unwrap_or_default())]
    Service {
        /// The exception.
        exception: ServiceException,
        /// The message the service gave.
        message: String,
        /// HTTP status.
        status: u16,
        /// `x-amzn-RequestId`, if sent.
        request_id: Option<String>,
    },
    /// A response that is neither success nor a service error (an HTML page
    /// from a proxy, an empty 502 …). `body` is a printable excerpt.
    #[error("unexpected HTTP {status} response: {body}")]
    UnexpectedResponse {
        /// HTTP status.
        status: u16,
        /// The first bytes of the body, made printable.
        body: String,
    },
    /// A success response whose body is not what the API returns.
    #[error("cannot decode the {operation} response: {reason}")]
    Decode {
        /// The operation.
        operation: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The service's media could not be read (GetMedia,
    /// GetMediaForFragmentList): the parser's typed error, with the byte
    /// offset it refers to.
    #[error("cannot read the {operation} media: {source}")]
    Media {
        /// The operation.
        operation: &'static str,
        /// What the fragment assembler found.
        #[source]
        source: crate::mkv::fragment::FragmentError,
    },
    /// The service stopped a media response with an error chunk (GetMedia's
    /// `AWS_KINESISVIDEO_ERROR_ID`/`_ERROR_CODE` tags, GetMediaForFragmentList's
    /// `…_EXCEPTION_…` tags): its numeric id and code, and the fragment it
    /// names. Ids (GetMedia API reference): 3002 error writing to the
    /// stream, 4000 fragment not found, 4500–4506 the stream's KMS key
    /// (access denied, disabled, invalid …), 5000 internal error. 4000 and
    /// the KMS ids are not retryable; the others (3002, 5000, ids not
    /// listed) are.
    #[error("{operation} stopped with error {}{}{}", error_id.map_or("?".to_owned(), |i| i.to_string()), error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(), fragment_number.as_deref().map(|n| format!(" at fragment {n}")).unwrap_or_default())]
    InStream {
        /// The operation.
        operation: &'static str,
        /// The fragment the error names.
        fragment_number: Option<String>,
        /// The numeric error id.
        error_id: Option<u64>,
        /// The error code (text).
        error_code: Option<String>,
    },
    /// PutMedia's ACK stream could not be decoded (an HTML page where ACKs
    /// belong, a malformed ACK): the decoder's typed error, with its offset.
    #[error("cannot decode the PutMedia ACKs: {0}")]
    Ack(#[source] crate::protocol::AckError),
    /// Connecting, TLS, or the connection failing mid-request.
    #[error("transport error: {0}")]
    Transport(String),
    /// No response within the configured time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// No credentials.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A configuration the client refuses (plain http to a remote host, a bad URL …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A background task was to start with no tokio runtime to run it: the
    /// client was made outside one and none was given
    /// ([`crate::client::ClientConfig::runtime`]), or use [`crate::blocking`].
    #[error("no tokio runtime: create the client inside one, give one with ClientConfig::runtime, or use kvs_core::blocking")]
    NoRuntime,
}

impl ClientError {
    /// Whether trying again may succeed: throttling, 5xx, connection
    /// failures and timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Service {
                exception, status, ..
            } => {
                *status >= 500
                    || matches!(
                        exception,
                        ServiceException::ClientLimitExceeded
                            | ServiceException::ConnectionLimitExceeded
                    )
            }
            Self::UnexpectedResponse { status, .. } => *status >= 500 || *status == 429,
            Self::Transport(_) | Self::Timeout(_) => true,
            Self::InStream { error_id, .. } => !matches!(error_id, Some(4000 | 4500..=4506)),
            Self::Decode { .. }
            | Self::Media { .. }
            | Self::Ack(_)
            | Self::Credentials(_)
            | Self::Config(_)
            | Self::NoRuntime => false,
        }
    }

    /// The fragment the error concerns, where one applies (an in-stream
    /// error chunk names one).
    pub fn fragment_number(&self) -> Option<&str> {
        match self {
            Self::InStream {
                fragment_number, ..
            } => fragment_number.as_deref(),
            _ => None,
        }
    }

    /// The service exception, for service errors.
    pub fn service_code(&self) -> Option<&ServiceException> {
        match self {
            Self::Service { exception, .. } => Some(exception),
            _ => None,
        }
    }

    /// Builds the error for a non-success response.
    pub fn from_response(
        status: u16,
        error_type: Option<&str>,
        request_id: Option<&str>,
        body: &[u8],
    ) -> Self {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |k: &str| {
            json.as_ref()
                .and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let name = error_type
            .map(str::to_owned)
            .or_else(|| field("__type"))
            .or_else(|| field("code"));
        match name {
            Some(n) if !n.is_empty() => Self::Service {
                exception: ServiceException::from_wire(&n),
                message: field("Message")
                    .or_else(|| field("message"))
                    .unwrap_or_default(),
                status,
                request_id: request_id.map(str::to_owned),
            },
            _ => Self::UnexpectedResponse {
                status,
                body: printable(body),
            },
        }
    }
}

/// The first 200 bytes of a body with control characters replaced.
fn printable(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_responses() {
        let e = ClientError::from_response(
            404,
            Some("ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.kinesisvideo/"),
            Some("req-1"),
            br#"{"Message":"The requested stream is not found or not active."}"#,
        );
        assert_eq!(e.service_code(), Some(&ServiceException::ResourceNotFound));
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("not found") && e.to_string().contains("req-1"));
        let t = ClientError::from_response(
            400,
            None,
            None,
            br#"{"__type":"com.amazonaws#ClientLimitExceededException","message":"slow down"}"#,
        );
        assert_eq!(
            t.service_code(),
            Some(&ServiceException::ClientLimitExceeded)
        );
        assert!(t.is_retryable());
        let html =
            ClientError::from_response(502, None, None, b"<html>\n<body>Bad Gateway</body></html>");
        assert!(
            matches!(&html, ClientError::UnexpectedResponse { status: 502, body } if body.contains("Bad Gateway"))
        );
        assert!(html.is_retryable());
        let other =
            ClientError::from_response(403, Some("UnrecognizedClientException"), None, b"{}");
        assert_eq!(
            other.service_code(),
            Some(&ServiceException::Other(
                "UnrecognizedClientException".into()
            ))
        );
        for (n, e) in NAMES {
            assert_eq!(ServiceException::from_wire(n), e);
            assert_eq!(e.name(), n);
        }
    }
}
