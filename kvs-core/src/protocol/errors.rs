//! The service's numeric error codes, as sent in PutMedia ERROR ACKs
//! (`ErrorId`) and in GetMedia error tags (`AWS_KINESISVIDEO_ERROR_ID`).

/// A KVS service error code. Unknown numbers are kept, not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceErrorCode {
    /// 3002: error writing to the stream (GetMedia).
    WriteError,
    /// 4000: error reading the input stream (PutMedia); fragment not found (GetMedia).
    StreamReadError,
    /// 4001: fragment larger than 50 MB.
    MaxFragmentSizeReached,
    /// 4002: fragment longer than the limit.
    MaxFragmentDurationReached,
    /// 4003: connection older than the service allows (45 minutes).
    MaxConnectionDurationReached,
    /// 4004: fragment timecode not greater than the previous one.
    FragmentTimecodeLesserThanPrevious,
    /// 4005: more than one track (deprecated).
    MoreThanOneTrackFound,
    /// 4006: invalid MKV data (parse failure, a second segment, illegal elements).
    InvalidMkvData,
    /// 4007: invalid producer timestamp.
    InvalidProducerTimestamp,
    /// 4008: the stream is not active.
    StreamNotActive,
    /// 4009: fragment metadata limits exceeded.
    FragmentMetadataLimitReached,
    /// 4010: a block names a track that Tracks does not declare.
    TrackNumberMismatch,
    /// 4011: a declared track has no frame in the fragment.
    FramesMissingForTrack,
    /// 4012: more than three tracks.
    MoreThanAllowedTracksFound,
    /// 4500: access to the stream's KMS key denied.
    KmsKeyAccessDenied,
    /// 4501: the KMS key is disabled.
    KmsKeyDisabled,
    /// 4502: KMS key validation error.
    KmsKeyValidationError,
    /// 4503: the KMS key is unavailable.
    KmsKeyUnavailable,
    /// 4504: invalid use of the KMS key.
    KmsKeyInvalidUsage,
    /// 4505: the KMS key is in an invalid state.
    KmsKeyInvalidState,
    /// 4506: the KMS key was not found.
    KmsKeyNotFound,
    /// 4507: the stream has been or is being deleted.
    StreamDeleted,
    /// 5000: internal service error.
    InternalError,
    /// 5001: the service failed to persist the fragment.
    ArchivalError,
    /// Any other number.
    Unknown(u32),
}

const TABLE: [(u32, ServiceErrorCode, &str); 24] = [
    (3002, ServiceErrorCode::WriteError, "WRITE_ERROR"),
    (4000, ServiceErrorCode::StreamReadError, "STREAM_READ_ERROR"),
    (
        4001,
        ServiceErrorCode::MaxFragmentSizeReached,
        "MAX_FRAGMENT_SIZE_REACHED",
    ),
    (
        4002,
        ServiceErrorCode::MaxFragmentDurationReached,
        "MAX_FRAGMENT_DURATION_REACHED",
    ),
    (
        4003,
        ServiceErrorCode::MaxConnectionDurationReached,
        "MAX_CONNECTION_DURATION_REACHED",
    ),
    (
        4004,
        ServiceErrorCode::FragmentTimecodeLesserThanPrevious,
        "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
    ),
    (
        4005,
        ServiceErrorCode::MoreThanOneTrackFound,
        "MORE_THAN_ONE_TRACK_FOUND",
    ),
    (4006, ServiceErrorCode::InvalidMkvData, "INVALID_MKV_DATA"),
    (
        4007,
        ServiceErrorCode::InvalidProducerTimestamp,
        "INVALID_PRODUCER_TIMESTAMP",
    ),
    (4008, ServiceErrorCode::StreamNotActive, "STREAM_NOT_ACTIVE"),
    (
        4009,
        ServiceErrorCode::FragmentMetadataLimitReached,
        "FRAGMENT_METADATA_LIMIT_REACHED",
    ),
    (
        4010,
        ServiceErrorCode::TrackNumberMismatch,
        "TRACK_NUMBER_MISMATCH",
    ),
    (
        4011,
        ServiceErrorCode::FramesMissingForTrack,
        "FRAMES_MISSING_FOR_TRACK",
    ),
    (
        4012,
        ServiceErrorCode::MoreThanAllowedTracksFound,
        "MORE_THAN_ALLOWED_TRACKS_FOUND",
    ),
    (
        4500,
        ServiceErrorCode::KmsKeyAccessDenied,
        "KMS_KEY_ACCESS_DENIED",
    ),
    (4501, ServiceErrorCode::KmsKeyDisabled, "KMS_KEY_DISABLED"),
    (
        4502,
        ServiceErrorCode::KmsKeyValidationError,
        "KMS_KEY_VALIDATION_ERROR",
    ),
    (
        4503,
        ServiceErrorCode::KmsKeyUnavailable,
        "KMS_KEY_UNAVAILABLE",
    ),
    (
        4504,
        ServiceErrorCode::KmsKeyInvalidUsage,
        "KMS_KEY_INVALID_USAGE",
    ),
    (
        4505,
        ServiceErrorCode::KmsKeyInvalidState,
        "KMS_KEY_INVALID_STATE",
    ),
    (4506, ServiceErrorCode::KmsKeyNotFound, "KMS_KEY_NOT_FOUND"),
    (4507, ServiceErrorCode::StreamDeleted, "STREAM_DELETED"),
    (5000, ServiceErrorCode::InternalError, "INTERNAL_ERROR"),
    (5001, ServiceErrorCode::ArchivalError, "ARCHIVAL_ERROR"),
];

impl ServiceErrorCode {
    /// The code for a number.
    pub fn from_id(id: u32) -> Self {
        TABLE
            .iter()
            .find(|(n, _, _)| *n == id)
            .map_or(Self::Unknown(id), |(_, c, _)| *c)
    }

    /// The code for a symbolic name (`MAX_FRAGMENT_SIZE_REACHED`), if known.
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, _, s)| *s == name)
            .map(|(_, c, _)| *c)
    }

    /// The number.
    pub fn id(self) -> u32 {
        match self {
            Self::Unknown(n) => n,
            known => TABLE
                .iter()
                .find(|(_, c, _)| *c == known)
                .map_or(0, |(n, _, _)| *n),
        }
    }

    /// The symbolic name the service pairs with the number, if known.
    pub fn name(self) -> Option<&'static str> {
        TABLE
            .iter()
            .find(|(_, c, _)| *c == self)
            .map(|(_, _, s)| *s)
    }

    /// Whether sending the fragment again can succeed (the AWS producers'
    /// classification: read errors, connection age, internal and archival
    /// errors and unknown codes are retried; the others mean the data or the
    /// stream is wrong).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::WriteError
                | Self::StreamReadError
                | Self::MaxConnectionDurationReached
                | Self::InternalError
                | Self::ArchivalError
                | Self::Unknown(_)
        )
    }
}

impl std::fmt::Display for ServiceErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({n})", self.id()),
            None => write!(f, "{}", self.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_names_and_retry_classes() {
        for (n, c, s) in TABLE {
            assert_eq!(ServiceErrorCode::from_id(n), c);
            assert_eq!(c.id(), n);
            assert_eq!(ServiceErrorCode::from_name(s), Some(c));
        }
        assert_eq!(ServiceErrorCode::from_id(7), ServiceErrorCode::Unknown(7));
        assert_eq!(ServiceErrorCode::Unknown(7).id(), 7);
        let retry: Vec<u32> = TABLE
            .iter()
            .filter(|(_, c, _)| c.is_retryable())
            .map(|(n, _, _)| *n)
            .collect();
        assert_eq!(retry, [3002, 4000, 4003, 5000, 5001]);
        assert!(ServiceErrorCode::Unknown(6000).is_retryable());
        assert_eq!(
            ServiceErrorCode::from_id(4002).to_string(),
            "4002 (MAX_FRAGMENT_DURATION_REACHED)"
        );
    }
}
