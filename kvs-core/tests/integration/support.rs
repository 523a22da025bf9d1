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

/// Whether `tool` runs (`tool version_arg` succeeds). Under `CI=true` a
/// missing tool is a failure, never a skip; elsewhere the caller skips with
/// a note.
#[allow(clippy::print_stderr)]
pub fn have(tool: &str, version_arg: &str) -> bool {
    let ok = std::process::Command::new(tool)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing; CI must have it (run the README test command)"
        );
        eprintln!("SKIPPED: {tool} is not installed (the README test command installs it)");
    }
    ok
}
