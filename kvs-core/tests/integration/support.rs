//! Setup every area shares, whatever the features.

use std::path::PathBuf;

/// The shared test vectors (real GetMedia captures, producer frame sets):
/// `$KVS_VECTORS`, else `../shared/vectors` beside the repository. A
/// missing folder fails with where it was looked for and how to point at
/// it, not with a bare "not found".
pub fn vectors() -> PathBuf {
    let dir = std::env::var_os("KVS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"));
    assert!(
        dir.join("facts.json").is_file(),
        "the shared test vectors are not in {} (no facts.json): set KVS_VECTORS to their folder",
        dir.display()
    );
    dir
}

/// A UTC time as ms since the epoch (how timecodes and selectors count).
pub fn epoch_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The UTC instant `ms` milliseconds after the epoch.
pub fn at_ms(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}
