//! Retry with exponential backoff and full jitter.

use std::time::Duration;

/// Exponential backoff with full jitter, the one backoff of the crate (the
/// client's retries, the producer's reconnects, the consumer's resumes):
/// the wait after failed attempt `n` (0-based) is uniform in
/// `[0, min(cap, base × 2^n)]` ("full jitter", AWS Architecture Blog,
/// "Exponential Backoff And Jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait's upper bound.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 200 ms doubling to 10 s: the producer's reconnects and the
    /// consumer's resumes.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt `attempt` (0-based), drawn from
    /// `random`.
    pub fn delay_with(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let nanos = ceiling.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { random % (nanos + 1) })
    }

    /// The wait after failed attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::u64(..))
    }
}

/// When and how long to wait before trying a failed call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 4).
    pub max_attempts: u32,
    /// Backoff before the second attempt, doubled each time (default 100 ms).
    pub base: Duration,
    /// Longest backoff (default 5 s).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Its waits between attempts.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: self.base,
            cap: self.cap,
        }
    }

    /// The wait after failed attempt number `attempt` (0-based), drawn from
    /// `random` (see [`Backoff`]).
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        self.backoff().delay_with(attempt, random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, u64::MAX),
            Duration::from_nanos(u64::MAX % 100_000_001)
        );
        assert!(p.delay(3, u64::MAX - 1) <= Duration::from_millis(800));
        assert!(p.delay(30, 123_456_789_012) <= Duration::from_secs(5));
        assert_eq!(p.delay(2, 0), Duration::ZERO);
    }
}
