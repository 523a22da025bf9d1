//! The KVS wire protocol above Matroska, without I/O: PutMedia ACKs, the
//! service's numeric error codes, the producer's state machine, and the
//! service's ingest rules (what the local endpoint applies to uploads, and
//! what the producer's own tests check it against).

pub mod ack;
pub mod errors;
pub mod ingest;
pub mod producer;

pub use ack::{Ack, AckDecoder, AckError};
pub use errors::ServiceErrorCode;
