//! A local folder or mounted NAS share: OpenDAL for reads, listing and deletion; our
//! own writer, so a pack goes to disk without passing through the page cache.
//!
//! Objects are written with [`DirectWriter`] (past the page cache where the system
//! allows: see [`crate::direct_io`] for why), flushed with `fsync` and renamed into
//! place from `.tmp/`, so a crash never leaves a partial object under its final name,
//! as with OpenDAL's own atomic writes.
//!
//! Renames are made durable where it matters: after an index file, a manifest, a key
//! or the config is renamed into place its folder is flushed (on Unix), which on ext4
//! and XFS (one journal, committed in order) also commits every earlier rename, so
//! the packs an index or a manifest names are durable before it is. A pack's own
//! rename is not flushed alone: that would cost a folder flush per 16 MiB pack for
//! what the next index checkpoint gives anyway on those file systems. On Windows,
//! btrfs or a NAS share the order is the file system's. A share that cannot flush a
//! folder (EINVAL or ENOTSUP, as some CIFS and FUSE mounts answer) is written
//! without the flush rather than failing a write whose object is already in place.
//!
//! [`LocalFolder::remove_crash_leftovers`] removes pacsbak's own temporary files a
//! crashed writer left in `.tmp/`, once they are a day old (a running writer writes
//! an object from memory in one go, so its file is seconds old).

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::opendal_storage::LOCAL_TEMP_DIR;
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
    /// Opens the folder `root` as the target `name`; a folder that does not exist is
    /// an error ([`LocalFolder::create`] makes it, for a new repository).
    pub fn open(name: impl Into<String>, root: &Path) -> Result<Self> {
        let inner = OpendalStorage::local_folder(name, root)?;
        Ok(Self {
            inner,
            root: root.to_path_buf(),
        })
    }

    /// Creates the folder `root` (for `repo init`) and opens it.
    pub fn create(name: impl Into<String>, root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        Self::open(name, root)
    }

    /// Removes the temporary files of writers that crashed (pacsbak's own names, a
    /// day old or more). Best effort: what cannot be removed now is tried next time.
    pub fn remove_crash_leftovers(&self) {
        remove_stale_temporaries(&self.root.join(LOCAL_TEMP_DIR));
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

    async fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        self.inner.modified(path).await
    }
}

/// Whether `path` holds exactly `data` and is on disk (flushed now).
fn same_object(path: &Path, data: &[u8]) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    if f.metadata().map(|m| m.len()).ok() != Some(data.len() as u64) {
        return false;
    }
    std::fs::read(path).is_ok_and(|there| there == data) && f.sync_all().is_ok()
}

/// Writes `data` to `root/rel` by way of `root/.tmp/`, flushed before the rename.
fn write_atomically(root: &Path, rel: &str, data: &[u8]) -> Result<()> {
    let dest = root.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp_dir = root.join(LOCAL_TEMP_DIR);
    std::fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    let tmp = tmp_dir.join(format!(
        "{}.{:016x}",
        rel.replace('/', "_"),
        rand::random::<u64>()
    ));
    let written = write_file(&tmp, data).and_then(|()| match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(()),
        // Windows refuses to replace a file another writer holds open (access
        // denied 5, sharing violation 32): a copy or a second backup storing the
        // same pack, whose name is its content's hash. The object being there,
        // durable, with these very bytes is what the write wanted.
        Err(e) if matches!(e.raw_os_error(), Some(5 | 32)) && same_object(&dest, data) => {
            tracing::debug!(object = rel, error = %e, "another writer stored the same object first");
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        Err(e) => Err(Error::io(&dest, e)),
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    match dest.parent() {
        Some(parent) if !rel.starts_with("data/") => sync_folder(parent),
        _ => Ok(()),
    }
}

/// Makes the renames into `folder` durable, where the file system can.
#[cfg(unix)]
fn sync_folder(folder: &Path) -> Result<()> {
    match std::fs::File::open(folder).and_then(|f| f.sync_all()) {
        Ok(()) => Ok(()),
        // EINVAL and ENOTSUP.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
            ) =>
        {
            tracing::debug!(folder = %folder.display(), "this file system cannot flush a folder");
            Ok(())
        }
        Err(e) => Err(Error::io(folder, e)),
    }
}

/// The standard library cannot open a folder for flushing on Windows; NTFS journals
/// the rename and commits it with its log, the file's bytes being flushed already.
#[cfg(not(unix))]
fn sync_folder(_folder: &Path) -> Result<()> {
    Ok(())
}

/// A temporary file this old was left by a writer that crashed.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether `name` is one [`write_atomically`] gives: `<object>.<16 hex digits>`.
fn is_our_temporary(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(object, suffix)| {
        !object.is_empty() && suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Removes what crashed writers left in `tmp`: temporaries a day older than a file
/// made there now. Both times come from the same file system, so a machine (or a
/// process) whose clock is off cannot take a running writer's file for a leftover.
fn remove_stale_temporaries(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let ours: Vec<std::fs::DirEntry> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_our_temporary))
        .collect();
    // The probe is made only when there is something to judge: opening a target
    // with an empty `.tmp/` writes nothing.
    if ours.is_empty() {
        return;
    }
    let probe = tmp.join(format!(".clock-probe.{:016x}", rand::random::<u64>()));
    let now = std::fs::File::create_new(&probe)
        .and_then(|f| f.metadata())
        .and_then(|m| m.modified());
    let _ = std::fs::remove_file(&probe);
    let Ok(now) = now else {
        return;
    };
    let mut removed = 0;
    for entry in ours {
        let stale = entry
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_TEMPORARY);
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(folder = %tmp.display(), removed, "removed temporary files a crashed backup left");
    }
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

    #[test]
    fn day_old_temporaries_of_ours_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::open("t", dir.path()).unwrap();
        let tmp = dir.path().join(".tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let old = tmp.join("data_ab_pack.00112233aabbccdd");
        let fresh = tmp.join("data_cd_pack.0011223344556677");
        let not_ours = tmp.join("someone-elses.txt");
        let two_days_ago = std::time::SystemTime::now() - 2 * STALE_TEMPORARY;
        for (f, modified) in [
            (&old, Some(two_days_ago)),
            (&fresh, None),
            (&not_ours, Some(two_days_ago)),
        ] {
            std::fs::write(f, b"partial").unwrap();
            if let Some(t) = modified {
                std::fs::File::options()
                    .write(true)
                    .open(f)
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
        }
        folder.remove_crash_leftovers();
        assert!(!old.exists(), "a day-old leftover is removed");
        assert!(
            fresh.exists(),
            "a file a writer may still be writing is kept"
        );
        assert!(
            not_ours.exists(),
            "only pacsbak's own temporary names are touched"
        );
    }
}
