//! Where the shared test vectors are, for every test crate of the
//! workspace (included by path where it is not a module of this binary).

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
