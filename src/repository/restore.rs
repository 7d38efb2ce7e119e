//! `restore files`: a snapshot's files back onto disk, each proven by its blake3.
//!
//! Nothing is written outside the target folder whatever the manifest says; an
//! existing file is never replaced unless asked; a file is written under a temporary
//! name and renamed only once its blake3 matches the manifest.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info_span, Instrument};

use super::fetch::GroupReader;
use super::safe_path::{check_no_symlink_parents, resolve};
use super::snapshot::{Entry, EntryKind, SnapshotRef};
use super::Repository;
use crate::direct_io::DirectWriter;
use crate::error::{Error, ErrorKind, Result};

/// What to restore and how.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only this path (and what is below it), `/` or `\` separated.
    pub path: Option<String>,
    /// Replace existing files.
    pub overwrite: bool,
}

/// The outcome of a restore.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Files written and verified.
    pub files: u64,
    /// Folders created.
    pub dirs: u64,
    /// Links created.
    pub symlinks: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries that failed, with the reason.
    pub errors: Vec<String>,
}

impl Repository {
    /// Restores `snap` (or part of it) into `to`.
    pub async fn restore(
        &self,
        snap: &SnapshotRef,
        to: &Path,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let span = info_span!("restore", snapshot = %snap.id.short(), to = %to.display());
        async move {
            let filter = opts
                .path
                .as_ref()
                .map(|p| p.replace('\\', "/").trim_matches('/').to_string());
            let selected: Vec<Entry> = snap
                .snapshot
                .entries
                .iter()
                .filter(|e| match &filter {
                    None => true,
                    Some(f) => e.path == *f || e.path.starts_with(&format!("{f}/")),
                })
                .cloned()
                .collect();
            if selected.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    "nothing in the snapshot matches that path",
                )
                .with("snapshot", snap.id.short())
                .with("path", opts.path.as_deref().unwrap_or("")));
            }
            std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
            let root = to.canonicalize().map_err(|e| Error::io(to, e))?;
            // Resolve every path and check for existing files before writing anything.
            let mut planned = Vec::with_capacity(selected.len());
            for e in selected {
                let p = resolve(&root, &e.path)?;
                if e.kind != EntryKind::Dir && !opts.overwrite && std::fs::symlink_metadata(&p).is_ok()
                {
                    return Err(Error::new(
                        ErrorKind::Refused,
                        "the restore folder already has this file; choose an empty folder or pass --overwrite",
                    )
                    .with("path", p.display()));
                }
                planned.push((e, p));
            }
            let index = Arc::new(self.load_index().await?);
            let reader = GroupReader {
                repo: self.clone(),
                index,
                handle: tokio::runtime::Handle::current(),
            };
            let overwrite = opts.overwrite;
            tokio::task::spawn_blocking(move || restore_entries(&reader, &root, &planned, overwrite))
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("restore task failed: {e}")))?
        }
        .instrument(span)
        .await
    }
}

fn restore_entries(
    reader: &GroupReader,
    root: &Path,
    planned: &[(Entry, PathBuf)],
    overwrite: bool,
) -> Result<RestoreReport> {
    let mut report = RestoreReport::default();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    for (e, p) in planned {
        let res = match e.kind {
            EntryKind::Dir => check_no_symlink_parents(root, p)
                .and_then(|_| std::fs::create_dir_all(p).map_err(|err| Error::io(p, err)))
                .map(|_| report.dirs += 1),
            EntryKind::File => restore_file(reader, root, e, p, workers, overwrite).map(|n| {
                report.files += 1;
                report.bytes += n;
            }),
            EntryKind::Symlink => Ok(()),
        };
        if let Err(err) = res {
            report.errors.push(format!("{}: {err}", e.path));
        }
    }
    // Links last, so none can redirect a write above.
    for (e, p) in planned.iter().filter(|(e, _)| e.kind == EntryKind::Symlink) {
        match restore_symlink(root, e, p, overwrite) {
            Ok(()) => report.symlinks += 1,
            Err(err) => report.errors.push(format!("{}: {err}", e.path)),
        }
    }
    // Folder times last: writing files inside changes them.
    for (e, p) in planned
        .iter()
        .rev()
        .filter(|(e, _)| e.kind == EntryKind::Dir)
    {
        set_metadata(e, p);
    }
    Ok(report)
}

fn restore_file(
    reader: &GroupReader,
    root: &Path,
    e: &Entry,
    p: &Path,
    workers: usize,
    overwrite: bool,
) -> Result<u64> {
    check_no_symlink_parents(root, p)?;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|err| Error::io(parent, err))?;
    }
    let tmp = partial_name(p);
    // A partial file left by an interrupted restore is ours to replace.
    match std::fs::remove_file(&tmp) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&tmp, err)),
        _ => {}
    }
    let mut out = DirectWriter::create_new(&tmp).map_err(|err| Error::io(&tmp, err))?;
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    let ids = reader.file_chunks(e)?;
    let res = reader.for_each_chunk(&ids, workers, |data| {
        hasher.update(data);
        written += data.len() as u64;
        out.write_all(data).map_err(|err| Error::io(&tmp, err))
    });
    // No fsync: the bytes were proven against the manifest as they were written, and
    // forcing a 100 GiB file (its size and extents) to stable storage here would
    // double the restore time. The operating system flushes it; a drill or
    // `inspect --check` re-reads it.
    let res = res.and_then(|_| out.finish(false).map_err(|err| Error::io(&tmp, err)));
    let hash = hasher.finalize().to_hex().to_string();
    let verdict = res.and_then(|_| {
        if Some(&hash) != e.blake3.as_ref() || written != e.size {
            Err(Error::new(
                ErrorKind::Integrity,
                "restored bytes do not match the blake3 recorded at backup",
            )
            .with("expected", e.blake3.as_deref().unwrap_or("none"))
            .with("got", &hash))
        } else {
            Ok(())
        }
    });
    if let Err(err) = verdict {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    if overwrite {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.is_dir() {
                return Err(
                    Error::new(ErrorKind::Refused, "a folder stands where the file goes")
                        .with("path", p.display()),
                );
            }
        }
    }
    std::fs::rename(&tmp, p).map_err(|err| Error::io(p, err))?;
    set_metadata(e, p);
    Ok(written)
}

fn restore_symlink(root: &Path, e: &Entry, p: &Path, overwrite: bool) -> Result<()> {
    check_no_symlink_parents(root, p)?;
    let target = e
        .target
        .as_deref()
        .ok_or_else(|| Error::new(ErrorKind::Integrity, "symlink without a target"))?;
    if overwrite && std::fs::symlink_metadata(p).is_ok() {
        std::fs::remove_file(p).map_err(|err| Error::io(p, err))?;
    }
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|err| Error::io(parent, err))?;
    }
    make_symlink(target, p).map_err(|err| Error::io(p, err))
}

#[cfg(unix)]
fn make_symlink(target: &str, p: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, p)
}

#[cfg(windows)]
fn make_symlink(target: &str, p: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, p)
}

#[cfg(not(any(unix, windows)))]
fn make_symlink(_target: &str, _p: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("symlinks are not supported here"))
}

/// Read-only, hidden, system, archive: the Windows attributes kept in a snapshot.
pub const KEPT_ATTRIBUTES: u32 = 0x1 | 0x2 | 0x4 | 0x20;

/// Best effort: permissions, attributes and times are restored where the platform
/// allows (the time first: a read-only file takes no new time).
fn set_metadata(e: &Entry, p: &Path) {
    if let Some(ns) = e.mtime_ns {
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let nanos = ns.rem_euclid(1_000_000_000) as u32;
        let _ = filetime::set_file_mtime(p, filetime::FileTime::from_unix_time(secs, nanos));
    }
    if let Some(ns) = e.created_ns {
        set_created(p, ns);
    }
    match (e.attributes, e.mode) {
        (Some(attributes), _) => set_attributes(p, attributes, e.kind == EntryKind::Dir),
        (None, Some(mode)) => set_mode(p, mode),
        (None, None) => {}
    }
}

/// The creation time, as Windows keeps it (a folder's too).
#[cfg(windows)]
fn set_created(p: &Path, ns: i128) {
    use std::os::windows::fs::{FileTimesExt, OpenOptionsExt};
    let Some(t) = (if ns >= 0 {
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_nanos(ns as u64))
    } else {
        std::time::UNIX_EPOCH.checked_sub(std::time::Duration::from_nanos(ns.unsigned_abs() as u64))
    }) else {
        return;
    };
    // FILE_WRITE_ATTRIBUTES; FILE_FLAG_BACKUP_SEMANTICS opens a folder too.
    let opened = std::fs::OpenOptions::new()
        .access_mode(0x0100)
        .custom_flags(0x0200_0000)
        .open(p);
    if let Ok(f) = opened {
        let _ = f.set_times(std::fs::FileTimes::new().set_created(t));
    }
}

#[cfg(not(windows))]
fn set_created(_p: &Path, _ns: i128) {}

/// Windows attributes as the snapshot has them (taken on Windows).
#[cfg(windows)]
fn set_attributes(p: &Path, attributes: u32, _dir: bool) {
    use std::os::windows::ffi::OsStrExt;
    // `\\?\` so a path longer than MAX_PATH is set too (the API takes it as given).
    let full = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut name = full.as_os_str().to_os_string();
    if !name.to_string_lossy().starts_with(r"\\") {
        let mut prefixed = std::ffi::OsString::from(r"\\?\");
        prefixed.push(&name);
        name = prefixed;
    }
    let wide: Vec<u16> = name.encode_wide().chain(std::iter::once(0)).collect();
    let attributes = attributes & KEPT_ATTRIBUTES;
    // FILE_ATTRIBUTE_NORMAL (0x80) stands for none.
    let value = if attributes == 0 { 0x80 } else { attributes };
    // SAFETY: `wide` is a NUL-terminated path.
    unsafe {
        windows_sys::Win32::Storage::FileSystem::SetFileAttributesW(wide.as_ptr(), value);
    }
}

/// Elsewhere, read-only is what a Windows attribute can say (a folder keeps the
/// right to be entered).
#[cfg(not(windows))]
fn set_attributes(p: &Path, attributes: u32, dir: bool) {
    let read_only = attributes & KEPT_ATTRIBUTES & 0x1 != 0;
    let mode = match (dir, read_only) {
        (true, true) => 0o555,
        (true, false) => 0o755,
        (false, true) => 0o444,
        (false, false) => 0o644,
    };
    set_mode(p, mode);
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn set_mode(p: &Path, mode: u32) {
    if let Ok(m) = std::fs::metadata(p) {
        let mut perms = m.permissions();
        perms.set_readonly(mode & 0o222 == 0);
        let _ = std::fs::set_permissions(p, perms);
    }
}

/// The temporary name a file is restored under until its blake3 is proven: short
/// and fixed in length whatever the file's name (a name near the 255-byte limit
/// must still restore), and the same for the same path, so an interrupted
/// restore's leftover is found and replaced.
fn partial_name(p: &Path) -> std::path::PathBuf {
    let name = p
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    let tag = blake3::hash(name).to_hex();
    p.with_file_name(format!(".pacsbak-partial-{}", &tag[..16]))
}
