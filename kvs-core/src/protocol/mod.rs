//! The KVS wire protocol above Matroska, without I/O: PutMedia ACKs and the
//! service's numeric error codes.

pub mod ack;
pub mod errors;

pub use ack::{Ack, AckDecoder, AckError};
pub use errors::ServiceErrorCode;
