//! Setup every area shares, whatever the features.

pub use crate::vectors_path::vectors;

/// A UTC time as ms since the epoch (how timecodes and selectors count).
pub fn epoch_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The UTC instant `ms` milliseconds after the epoch.
pub fn at_ms(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}
