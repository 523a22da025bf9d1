//! One error type for the whole crate, for code (and bindings) that want a
//! single surface: every module's typed error converts into [`Error`] with
//! `?`, keeps its typed source (a parser error keeps its byte offset), and
//! answers the questions a caller asks of any error — what kind of failure
//! ([`Error::kind`]), whether trying again can help ([`Error::is_retryable`]),
//! which service error it was ([`Error::service_error`]), where in the bytes
//! ([`Error::offset`]).
//!
//! The module errors stay the precise types of their functions; this is the
//! common roof over them (as `std::io::Error` is over the OS's errors).

#[cfg(feature = "client")]
use crate::client::{ClientError, ServiceException};
use crate::codec::CodecError;
use crate::mkv::builder::BuildError;
use crate::mkv::fragment::FragmentError;
use crate::mkv::mux::MuxError;
use crate::mkv::ParseError;
#[cfg(feature = "client")]
use crate::producer::ProducerError;
use crate::protocol::producer::FrameError;
use crate::protocol::AckError;

/// Any error of kvs-core, with its typed source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A client call (control plane, media, archive).
    #[cfg(feature = "client")]
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The producer.
    #[cfg(feature = "client")]
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// A frame the producer refused.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Bad or cut Matroska.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Bad or oversized fragments.
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    /// Codec data (parameter sets, ADTS, AVCC) that cannot be used.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Matroska that cannot be written (tracks, tags, timecodes).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// An elementary stream that cannot be muxed.
    #[error(transparent)]
    Mux(#[from] MuxError),
    /// A PutMedia ACK stream that cannot be decoded.
    #[error(transparent)]
    Ack(#[from] AckError),
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service answered with an exception ([`Error::service_error`]).
    Service,
    /// Connecting, TLS, a broken connection, no response in time.
    Transport,
    /// No credentials, or none that work.
    Credentials,
    /// Settings that cannot work (an endpoint, a track, a limit, no
    /// runtime).
    Config,
    /// Bytes from outside that are not what they must be (Matroska, ACKs,
    /// JSON, parameter sets), with where.
    InvalidData,
    /// A frame the caller put that breaks the rules.
    InvalidFrame,
    /// `finish` ran out of time with fragments unacknowledged.
    Timeout,
    /// The producer was already finished.
    Finished,
    /// Fragments were given up (a full buffer, refused by the service).
    Lost,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            #[cfg(feature = "client")]
            Self::Client(e) => client_kind(e),
            #[cfg(feature = "client")]
            Self::Producer(e) => match e {
                ProducerError::Frame(_) => ErrorKind::InvalidFrame,
                ProducerError::Bootstrap(c) => client_kind(c),
                ProducerError::Config(_) => ErrorKind::Config,
                ProducerError::Timeout { .. } => ErrorKind::Timeout,
                ProducerError::Finished => ErrorKind::Finished,
                ProducerError::FragmentsLost(_) => ErrorKind::Lost,
            },
            Self::Frame(_) => ErrorKind::InvalidFrame,
            Self::Build(_) => ErrorKind::Config,
            Self::Parse(_) | Self::Fragment(_) | Self::Codec(_) | Self::Mux(_) | Self::Ack(_) => {
                ErrorKind::InvalidData
            }
        }
    }

    /// Whether the same call can succeed later: throttling, 5xx, broken
    /// connections and timeouts of a client call (see
    /// [`ClientError::is_retryable`]); never for bad data or settings.
    pub fn is_retryable(&self) -> bool {
        match self {
            #[cfg(feature = "client")]
            Self::Client(e) | Self::Producer(ProducerError::Bootstrap(e)) => e.is_retryable(),
            _ => false,
        }
    }

    /// The service's exception (`ResourceNotFoundException` …), when the
    /// service answered a call with one.
    #[cfg(feature = "client")]
    pub fn service_error(&self) -> Option<&ServiceException> {
        match self {
            Self::Client(e) | Self::Producer(ProducerError::Bootstrap(e)) => e.service_code(),
            _ => None,
        }
    }

    /// The fragment the error concerns, where one applies: the fragment an
    /// in-stream error chunk names ([`ClientError::InStream`]). (A fragment
    /// the service refuses on upload is an event with its number,
    /// [`crate::producer::ProducerEvent::ServiceError`], not an error.)
    #[cfg(feature = "client")]
    pub fn fragment_number(&self) -> Option<&str> {
        match self {
            Self::Client(e) | Self::Producer(ProducerError::Bootstrap(e)) => e.fragment_number(),
            _ => None,
        }
    }

    /// The byte offset in the input the error refers to (bad Matroska, a
    /// bad ACK stream), when it has one.
    pub fn offset(&self) -> Option<u64> {
        fn fragment(e: &FragmentError) -> Option<u64> {
            match e {
                FragmentError::Parse(p) => Some(p.offset()),
                FragmentError::TooLarge { offset, .. } => Some(*offset),
            }
        }
        match self {
            Self::Parse(e) => Some(e.offset()),
            Self::Fragment(e) => fragment(e),
            Self::Ack(e) => Some(e.offset()),
            #[cfg(feature = "client")]
            Self::Client(ClientError::Media { source, .. }) => fragment(source),
            #[cfg(feature = "client")]
            Self::Client(ClientError::Ack(e)) => Some(e.offset()),
            _ => None,
        }
    }
}

#[cfg(feature = "client")]
fn client_kind(e: &ClientError) -> ErrorKind {
    match e {
        ClientError::Service { .. } | ClientError::InStream { .. } => ErrorKind::Service,
        ClientError::Transport(_) | ClientError::Timeout(_) => ErrorKind::Transport,
        ClientError::UnexpectedResponse { .. }
        | ClientError::Decode { .. }
        | ClientError::Media { .. }
        | ClientError::Ack(_) => ErrorKind::InvalidData,
        ClientError::Credentials(_) => ErrorKind::Credentials,
        _ => ErrorKind::Config,
    }
}
