//! A local folder or mounted NAS share: OpenDAL for reads, listing and deletion; our
//! own writer, so a pack goes to disk without passing through the page cache.
//!
//! Objects are written with [`DirectWriter`] (past the page cache where the system
//! allows: see [`crate::direct_io`] for why), flushed with `fsync` and renamed into
//! place from `.tmp/`, so a crash never leaves a partial object under its final name,
//! as with OpenDAL's own atomic writes.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectInfo, OpendalStorage, Storage};
use crate::direct_io::DirectWriter;
use crate::error::{Error, ErrorKind, Result};

/// A local folder target.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    inner: OpendalStorage,
    root: PathBuf,
}

impl LocalFolder {
    /// Opens (creating if missing) the folder `root` as the target `name`.
    pub fn open(name: impl Into<String>, root: &Path) -> Result<Self> {
        let inner = OpendalStorage::local_folder(name, root)?;
        Ok(Self {
            inner,
            root: root.to_path_buf(),
        })
    }

    /// Sets how many packs the backup pipeline writes at once.
    pub fn with_upload_concurrency(mut self, n: usize) -> Self {
        self.inner = self.inner.with_mode(super::WriteMode {
            upload_concurrency: n,
            ..super::WriteMode::default()
        });
        self
    }
}

#[async_trait]
impl Storage for LocalFolder {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn upload_concurrency(&self) -> usize {
        self.inner.upload_concurrency()
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        self.inner.read(path).await
    }

    async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.read_range(path, range).await
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<()> {
        let root = self.root.clone();
        let rel = path.to_string();
        let name = self.name().to_string();
        tokio::task::spawn_blocking(move || write_atomically(&root, &rel, &data))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("write task failed: {e}")))?
            .map_err(|e| e.with("target", &name).with("object", path))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>> {
        self.inner.size(path).await
    }
}

/// Writes `data` to `root/rel` by way of `root/.tmp/`, flushed before the rename.
fn write_atomically(root: &Path, rel: &str, data: &[u8]) -> Result<()> {
    let dest = root.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp_dir = root.join(".tmp");
    let tmp = tmp_dir.join(format!(
        "{}.{:016x}",
        rel.replace('/', "_"),
        rand::random::<u64>()
    ));
    let written = write_file(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut file = DirectWriter::create_new(path).map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.finish(true).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_any_length_exactly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".tmp")).unwrap();
        const STAGE: usize = 4 * 1024 * 1024;
        for len in [
            0usize,
            1,
            4095,
            4096,
            4097,
            STAGE,
            STAGE + 4097,
            3 * STAGE - 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let rel = format!("packs/ab/{len}");
            write_atomically(dir.path(), &rel, &data).unwrap();
            assert_eq!(
                std::fs::read(dir.path().join(&rel)).unwrap(),
                data,
                "length {len}"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            0
        );
    }
}
