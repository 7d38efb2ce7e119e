//! Shared setup for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The folder of real SQL Server backups, if this checkout sits beside `shared/`.
pub fn shared_baks() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/baks");
    dir.join("expected.json").is_file().then_some(dir)
}

/// Prints the standard skip line and returns `None` when the real backups are absent.
pub fn require_shared_baks(test: &str) -> Option<PathBuf> {
    let dir = shared_baks();
    if dir.is_none() {
        println!("skipped: {test}: ../shared/baks/ is not present");
    }
    dir
}
