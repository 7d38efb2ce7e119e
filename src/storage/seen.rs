//! What this machine has seen on each configured target: the repository it held. A
//! target that held one and now looks empty is an unmounted share or a wiped bucket,
//! not a place for a new repository, and is reported as missing.
//!
//! Kept in the cache folder (`PACSBAK_CACHE_DIR`, else the platform's cache), one
//! small JSON file per target location. Losing it loses only the better message.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::TargetConfig;

/// A repository seen on a target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    /// The repository id.
    pub repository: String,
    /// When it was last opened there (RFC 3339).
    pub seen: String,
}

/// The file for `t`'s location (service, root, endpoint, bucket): renaming a target
/// file keeps its memory, pointing it elsewhere starts afresh.
fn file_of(t: &TargetConfig) -> Option<PathBuf> {
    let location = format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        t.service, t.root, t.endpoint, t.bucket
    );
    let key = blake3::hash(location.as_bytes()).to_hex();
    crate::repository::cut_cache_dir()
        .map(|d| d.join("targets").join(format!("{}.json", &key[..32])))
}

/// Notes that `t` holds `repository` now. Best effort.
pub fn remember(t: &TargetConfig, repository: &str) {
    let Some(path) = file_of(t) else {
        return;
    };
    let seen = Seen {
        repository: repository.to_string(),
        seen: crate::clock::current()
            .now()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    };
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_vec(&seen).unwrap_or_default())
    };
    if let Err(e) = write() {
        tracing::debug!(path = %path.display(), error = %e, "cannot remember the target's repository");
    }
}

/// The repository `t` held when this machine last opened it, if it ever did.
pub fn held_before(t: &TargetConfig) -> Option<Seen> {
    let bytes = std::fs::read(file_of(t)?).ok()?;
    serde_json::from_slice(&bytes).ok()
}
