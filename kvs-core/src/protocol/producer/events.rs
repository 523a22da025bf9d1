//! What the producer reports, and what a put or a file write gives.

use super::*;

/// Why a fragment was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The buffer was full ([`PressurePolicy::DropOldest`]).
    BufferFull,
    /// The service refused it with an error that a retry cannot fix.
    Rejected(ServiceErrorCode),
    /// It could not be written (a frame the checks let through that the
    /// Matroska writer refuses — reported rather than lost silently).
    Unwritable(String),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BufferFull => f.write_str("the buffer was full"),
            Self::Rejected(code) => write!(f, "the service refused it ({code})"),
            Self::Unwritable(why) => write!(f, "it cannot be written: {why}"),
        }
    }
}

/// Why a connection is being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationReason {
    /// It reached the rotation age.
    Age,
    /// The next fragment needs a new stream header (CodecPrivate changed).
    NewHeader,
    /// The credentials that signed it expire soon; the next connection is
    /// signed with fresh ones.
    CredentialsExpiring,
}

/// What the producer reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProducerEvent {
    /// A fragment completed at the configured [`AckLevel`].
    Acked {
        /// Its producer timestamp (the cluster timecode), UTC.
        producer_timestamp: SystemTime,
        /// The service's fragment number.
        fragment_number: String,
        /// From the fragment's last byte written to this ACK.
        latency: Duration,
        /// Frames in it.
        frames: usize,
    },
    /// The service sent an ERROR ACK.
    ServiceError {
        /// The producer timestamp of the fragment it names, if any, UTC.
        producer_timestamp: Option<SystemTime>,
        /// The service's number of that fragment, when the ACK gives it.
        fragment_number: Option<String>,
        /// The error.
        code: ServiceErrorCode,
        /// Whether sending it again can succeed.
        retriable: bool,
    },
    /// Frames before the first video key frame were skipped
    /// ([`LeadingPolicy::Skip`]); reported once, when the first fragment
    /// closes (or at the end of a stream that never had a key frame).
    LeadingFramesSkipped {
        /// Frames skipped, all tracks.
        frames: usize,
        /// Their bytes.
        bytes: usize,
        /// The first video key frame's presentation time since the
        /// producer's start (`None`: none came).
        first_key: Option<Duration>,
    },
    /// A fragment was given up.
    FragmentDropped {
        /// Its producer timestamp, UTC.
        producer_timestamp: SystemTime,
        /// Frames lost with it.
        frames: usize,
        /// Why.
        reason: DropReason,
    },
    /// A connection is being replaced.
    Rotating {
        /// Why.
        reason: RotationReason,
    },
    /// A connection started.
    Connected {
        /// Its number (1, 2, …).
        connection: u64,
        /// Fragments it will send again (not acknowledged before).
        resending: usize,
    },
    /// A connection ended before its fragments were all acknowledged.
    Disconnected {
        /// Its number.
        connection: u64,
        /// What happened.
        reason: String,
    },
    /// A connection failed or could not be opened; the next try comes after
    /// `delay` (from the async producer).
    Reconnecting {
        /// Failed tries in a row.
        attempt: u32,
        /// The wait before the next.
        delay: Duration,
        /// What failed.
        error: String,
    },
    /// The stream could not be looked up (or created) by a producer
    /// started without waiting (`ProducerBuilder::start`); it tries again
    /// after `delay`, for good — credentials may be renewed, the network
    /// may come back — but `retriable == false` says the service refused
    /// (a bad stream name, credentials it does not take) and will again
    /// unless something changes.
    StreamLookupFailed {
        /// What failed.
        error: String,
        /// The service's exception name, when it answered with one.
        code: Option<String>,
        /// Whether trying again can work as things are.
        retriable: bool,
        /// The wait before the next try.
        delay: Duration,
    },
    /// A subscriber fell more than its backlog behind: this many events
    /// were lost to it (from the async producer's event stream).
    EventsLost {
        /// Events it missed.
        missed: u64,
    },
    /// Buffer and upload figures (from the async producer, each second).
    Stats {
        /// Media bytes not yet acknowledged.
        buffered_bytes: usize,
        /// Media time not yet acknowledged.
        buffered_duration: Duration,
        /// Fragments not yet acknowledged.
        buffered_fragments: usize,
        /// Bytes written to connections so far (resent ones again).
        bytes_sent: u64,
    },
}

/// What [`ProducerCore::drain_as_file`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileWritten {
    /// Stream headers written.
    pub headers: usize,
    /// Each fragment's cluster timecode (ms) and its range in the output.
    pub fragments: Vec<(i64, std::ops::Range<usize>)>,
}

/// The outcome of [`ProducerCore::put_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Taken.
    Accepted,
    /// Not taken: the buffer is full and the policy is [`PressurePolicy::Wait`].
    Full,
    /// Skipped: it comes before the first video key frame
    /// ([`LeadingPolicy::Skip`]).
    Skipped,
}
