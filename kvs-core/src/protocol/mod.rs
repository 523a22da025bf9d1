//! The KVS wire protocol above Matroska, without I/O: PutMedia ACKs, the
//! service's numeric error codes, and the producer's state machine.

pub mod ack;
pub mod errors;
pub mod producer;

pub use ack::{Ack, AckDecoder, AckError};
pub use errors::ServiceErrorCode;
