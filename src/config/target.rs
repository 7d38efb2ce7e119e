//! Storage target files (`storage-targets/NAME.toml`): which OpenDAL service, where.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::storage::{OpendalStorage, Storage};

/// The OpenDAL services pacsbak supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// A local folder or a mounted NAS share.
    Fs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    service: ServiceKind,
    #[serde(default)]
    description: String,
    root: Option<String>,
}

/// A validated storage target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Name (the file stem).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Service.
    pub service: ServiceKind,
    /// Free text for reports.
    pub description: String,
    /// Root folder (fs), resolved against the config folder.
    pub root: Option<PathBuf>,
}

impl TargetConfig {
    /// Loads `path`; relative roots are relative to `config_dir`.
    pub fn load(path: &Path, config_dir: &Path) -> Result<TargetConfig> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let raw: TargetFile = super::parse_file(path)?;
        let missing = |key: &str| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "{}: key `{key}` is required for service {:?}",
                    path.display(),
                    raw.service
                ),
            )
            .with("file", path.display())
            .with("key", key)
        };
        let root = match raw.service {
            ServiceKind::Fs => {
                let r = raw.root.as_deref().ok_or_else(|| missing("root"))?;
                Some(resolve_root(r, config_dir))
            }
        };
        Ok(TargetConfig {
            name,
            file: path.to_path_buf(),
            service: raw.service,
            description: raw.description,
            root,
        })
    }

    /// Connects to the target (no network I/O for local folders).
    pub fn open(&self) -> Result<Arc<dyn Storage>> {
        match self.service {
            ServiceKind::Fs => {
                let root = self.root.as_deref().ok_or_else(|| {
                    Error::new(ErrorKind::Config, "fs target without root")
                        .with("target", &self.name)
                })?;
                Ok(Arc::new(OpendalStorage::local_folder(&self.name, root)?))
            }
        }
    }
}

/// Windows drive (`E:\repo`) and UNC (`\\nas\backup`) roots are absolute on any OS.
fn resolve_root(root: &str, config_dir: &Path) -> PathBuf {
    let is_windows_abs = root.starts_with("\\\\")
        || (root.len() >= 3
            && root.as_bytes()[1] == b':'
            && (root.as_bytes()[2] == b'\\' || root.as_bytes()[2] == b'/'));
    let p = PathBuf::from(root);
    if p.is_absolute() || is_windows_abs {
        p
    } else {
        config_dir.join(p)
    }
}
