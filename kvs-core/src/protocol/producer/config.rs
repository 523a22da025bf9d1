//! The producer's settings.

use super::*;

/// When fragments start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPolicy {
    /// A key frame starts a new fragment once the current one lasts this
    /// long (video; 0: every key frame). Audio-only streams cut every
    /// `min_duration` (2 s when 0).
    pub min_duration: Duration,
    /// The longest fragment (the service refuses longer ones, 4002).
    pub max_duration: Duration,
}

impl Default for FragmentPolicy {
    fn default() -> Self {
        Self {
            min_duration: Duration::ZERO,
            max_duration: Duration::from_secs(20),
        }
    }
}

/// What to do when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PressurePolicy {
    /// Drop the oldest whole fragment (one event each) and keep taking frames
    /// — live video, where fresh media matters most.
    #[default]
    DropOldest,
    /// Refuse frames until ACKs free space (`put_frame` waits) — nothing is
    /// ever dropped, the source is slowed instead.
    Wait,
}

/// What to do with frames before the first video key frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeadingPolicy {
    /// Skip them, counted ([`ProducerEvent::LeadingFramesSkipped`]); the
    /// official producer SDKs do the same.
    #[default]
    Skip,
    /// Refuse them with [`FrameError::LeadingFrame`].
    Refuse,
}

/// Which ACK completes a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckLevel {
    /// PERSISTED (streams with retention).
    #[default]
    Persisted,
    /// RECEIVED (streams without retention get no PERSISTED).
    Received,
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The tracks (CodecPrivate may be `None` for Annex-B H.264/H.265, taken
    /// from the first key frame).
    pub tracks: Vec<TrackConfig>,
    /// Producer time of `pts == 0`, ms since the epoch.
    pub start_ms: u64,
    /// Fragmentation.
    pub fragments: FragmentPolicy,
    /// Buffer limit in bytes of media (default 32 MiB).
    pub max_buffer_bytes: usize,
    /// Buffer limit in media time (default 120 s).
    pub max_buffer_duration: Duration,
    /// What a full buffer does.
    pub pressure: PressurePolicy,
    /// What frames before the first video key frame do (default: skipped).
    pub leading: LeadingPolicy,
    /// Which ACK completes a fragment.
    pub ack_level: AckLevel,
    /// How long a fragment waits for the other tracks to pass its end
    /// (default 500 ms).
    pub max_lateness: Duration,
    /// Connection age after which it is rotated at the next fragment
    /// boundary (the service ends connections at 45 minutes).
    pub rotation_age: Duration,
    /// A written fragment with no ACK for this long means the connection is
    /// stalled (default 20 s); it is replaced.
    pub ack_timeout: Duration,
}

impl ProducerConfig {
    /// Settings for these tracks, starting now-ish at `start_ms`.
    pub fn new(tracks: Vec<TrackConfig>, start_ms: u64) -> Self {
        Self {
            tracks,
            start_ms,
            fragments: FragmentPolicy::default(),
            max_buffer_bytes: 32 << 20,
            max_buffer_duration: Duration::from_secs(120),
            pressure: PressurePolicy::default(),
            leading: LeadingPolicy::default(),
            ack_level: AckLevel::default(),
            max_lateness: Duration::from_millis(500),
            rotation_age: Duration::from_secs(40 * 60),
            ack_timeout: Duration::from_secs(20),
        }
    }
}
