//! A local folder or mounted NAS share: OpenDAL for reads, listing and deletion; our
//! own writer, so a pack goes to disk without passing through the page cache.
//!
//! A backup writes hundreds of megabytes of packs that nobody reads back soon. Copied
//! into the page cache, they cost as much system time as reading the source file
//! (measured in docs/benchmarks.md), evict the database files from the cache, and a
//! read-back "verify" would be served from memory rather than from the disk. On Linux
//! the writer opens the temporary file with `O_DIRECT` and writes through a small
//! aligned buffer; where the file system refuses `O_DIRECT` (tmpfs, some network
//! mounts) or on other systems it writes normally. Either way the file is flushed with
//! `fsync` and renamed into place, so a crash never leaves a partial object under its
//! final name, as with OpenDAL's own atomic writes.

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectInfo, OpendalStorage, Storage};
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
    #[cfg(target_os = "linux")]
    if let Some(file) = direct::create(path).map_err(io)? {
        direct::write(&file, data).map_err(io)?;
        return file.sync_all().map_err(io);
    }
    let mut file = File::create(path).map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(target_os = "linux")]
mod direct {
    use std::cell::RefCell;
    use std::fs::File;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::path::Path;

    /// Alignment `O_DIRECT` asks of buffer, offset and length (covers 512-byte and
    /// 4 KiB sector devices).
    const ALIGN: usize = 4096;
    /// The aligned staging buffer a writer thread keeps: big enough for few system
    /// calls, small enough to stay in cache.
    const STAGE: usize = 4 * 1024 * 1024;

    thread_local! {
        static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// Creates `path` for writing with `O_DIRECT`, or `None` where the file system
    /// does not do direct I/O.
    pub(super) fn create(path: &Path) -> std::io::Result<Option<File>> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `data` through the thread's aligned staging buffer, the last block
    /// padded with zeros and cut off again with `set_len`.
    pub(super) fn write(file: &File, data: &[u8]) -> std::io::Result<()> {
        STAGING.with(|cell| {
            let mut owned = cell.borrow_mut();
            if owned.len() < STAGE + ALIGN {
                *owned = vec![0u8; STAGE + ALIGN];
            }
            let start = owned.as_ptr().align_offset(ALIGN);
            let stage = &mut owned[start..start + STAGE];
            for (n, piece) in data.chunks(STAGE).enumerate() {
                let padded = piece.len().next_multiple_of(ALIGN);
                stage[..piece.len()].copy_from_slice(piece);
                stage[piece.len()..padded].fill(0);
                file.write_all_at(&stage[..padded], (n * STAGE) as u64)?;
            }
            file.set_len(data.len() as u64)
        })
    }
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
