//! Snapshot manifests: what a backup contains and where it came from.
//!
//! A manifest is JSON, zstd-compressed and sealed at `snapshots/<id>`. It is written
//! last, after every pack and index it references, so a manifest that exists always
//! describes data that is stored. Paths inside are relative, `/`-separated, and start
//! with the source root's name; restores validate every component again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::id::Id;

/// Current manifest version.
pub const MANIFEST_VERSION: u32 = 1;

/// Files with at most this many chunks list them inline; larger files store their
/// chunk list in the repository as chunk-list blobs.
pub const INLINE_CHUNKS: usize = 64;

/// Ids per chunk-list blob (1 MiB of ids).
pub const IDS_PER_LIST: usize = 32 * 1024;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// Folder trees or single files given on the command line.
    Files,
    /// A SQL Server backup file with its metadata.
    SqlBackup,
}

/// A source given to `backup`, and the name its entries appear under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRoot {
    /// The name of the top-level entry.
    pub name: String,
    /// The path as given (may be a Windows drive or UNC path).
    pub path: String,
    /// When the path given is a link: what it points to. Its contents were backed up
    /// (a configured folder that is a link means the folder it leads to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// The kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Folder.
    Dir,
    /// Symbolic link, stored as a link.
    Symlink,
}

/// One file, folder or link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative `/`-separated path.
    pub path: String,
    /// Kind.
    pub kind: EntryKind,
    /// Size in bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Permission bits (Unix mode; on Windows 0o444 for read-only files, else 0o666).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Modification time, nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i128>,
    /// Creation time, nanoseconds since the Unix epoch (backed up on Windows only,
    /// where a restore sets it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ns: Option<i128>,
    /// Windows file attributes kept and restored: read-only 0x1, hidden 0x2,
    /// system 0x4, archive 0x20 (backed up on Windows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<u32>,
    /// Plain blake3 of the file's bytes, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Chunk ids, for files of at most `INLINE_CHUNKS` (64) chunks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<Id>,
    /// Chunk-list blobs, for larger files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_lists: Vec<Id>,
    /// Link target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Counters of a backup run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Files stored.
    pub files: u64,
    /// Folders stored.
    pub dirs: u64,
    /// Symlinks stored.
    pub symlinks: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Chunks that were new.
    pub new_chunks: u64,
    /// Bytes of new chunks, before compression.
    pub new_bytes: u64,
    /// Bytes added to the repository (packs and index).
    pub added_bytes: u64,
    /// Files that could not be read, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A snapshot manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Manifest version.
    pub version: u32,
    /// When the backup started.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339")]
    pub finished: OffsetDateTime,
    /// Host that took it.
    pub hostname: String,
    /// Tags given.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Kind.
    pub kind: SnapshotKind,
    /// Sources.
    pub sources: Vec<SourceRoot>,
    /// Entries in path order.
    pub entries: Vec<Entry>,
    /// Counters.
    pub summary: Summary,
    /// Pinned snapshots are never removed by retention.
    #[serde(default)]
    pub pinned: bool,
    /// Origin facts: for `sql-backup` snapshots the [`crate::records::BackupRecord`]
    /// (read it with `BackupRecord::from_snapshot`); for program folders the policy,
    /// folder and path; for copies the id they were copied from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, serde_json::Value>,
}

/// A snapshot with its id.
#[derive(Debug, Clone)]
pub struct SnapshotRef {
    /// Snapshot id.
    pub id: Id,
    /// The manifest.
    pub snapshot: Snapshot,
}

impl SnapshotRef {
    /// Dated later than `now` plus [`super::backup::CLOCK_TOLERANCE`]: taken under a
    /// clock that was ahead. Never `latest`, never counted as a recent backup.
    pub fn is_future_dated(&self, now: OffsetDateTime) -> bool {
        self.snapshot.time > now + super::backup::CLOCK_TOLERANCE
    }
}

/// A manifest that could not be read back (decryption, decompression or parsing
/// failed): reported, and skipped by everything that lists snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedSnapshot {
    /// Its id (the object name).
    pub id: Id,
    /// Why it cannot be read.
    pub error: crate::ErrorRecord,
}

/// What `snapshots/` holds.
#[derive(Debug, Clone, Default)]
pub struct SnapshotListing {
    /// Manifests read, oldest first.
    pub readable: Vec<SnapshotRef>,
    /// Manifests that are damaged.
    pub damaged: Vec<DamagedSnapshot>,
}

/// Which snapshots a command means (`--kind`, `--tag`, and for `diff OLD latest`
/// the source of OLD): `latest` is the newest snapshot that matches.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only this kind.
    pub kind: Option<SnapshotKind>,
    /// Only snapshots carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only snapshots of this source (see [`Snapshot::source_key`]).
    pub source: Option<String>,
}

impl SnapshotFilter {
    /// Whether `s` is one of the snapshots meant.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.kind.is_none_or(|k| k == s.kind)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self
                .source
                .as_ref()
                .is_none_or(|src| *src == s.source_key())
    }
}

impl std::fmt::Display for SnapshotFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(k) = self.kind {
            parts.push(format!("kind {}", k.as_str()));
        }
        for t in &self.tags {
            parts.push(format!("tag {t}"));
        }
        if let Some(src) = &self.source {
            parts.push(format!("source {}", src.replace('\n', " ")));
        }
        if parts.is_empty() {
            f.write_str("any")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

impl SnapshotKind {
    /// The kind as `--kind` and manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Files => "files",
            SnapshotKind::SqlBackup => "sql-backup",
        }
    }
}

/// The `meta` key naming the job run that took a program-folder or files snapshot:
/// the same run's snapshots on several targets are one backup (see
/// [`Snapshot::twin_key`]).
pub const RUN: &str = "run";

/// The `meta` key under which a re-encrypted copy records the snapshot's id in the
/// repository it came from (in `meta`, so builds that predate it still read it).
pub const COPIED_FROM: &str = "copied_from";

impl Snapshot {
    /// What makes two snapshots the same backup stored on two targets (a policy that
    /// backs up to both, then a `copy` between them): for a native backup its
    /// database and LSN range; for a program folder or files, the run that took it.
    /// `None` when nothing identifies it beyond its id.
    pub fn twin_key(&self) -> Option<String> {
        if let Some(run) = self.meta.get(RUN).and_then(|v| v.as_str()) {
            return Some(format!("run\n{run}\n{}", self.source_key()));
        }
        if self.kind != SnapshotKind::SqlBackup {
            return None;
        }
        let record = crate::records::BackupRecord::from_snapshot(self).ok()?;
        Some(format!(
            "sql-backup\n{}\n{}\n{}\n{:?}\n{:?}\n{:?}",
            record.instance,
            record.database,
            record.kind,
            record.first_lsn,
            record.last_lsn,
            record.backup_finish
        ))
    }

    /// What the snapshot is a version of: one database of one instance (any backup
    /// type), one program folder of one policy, or the same `backup files` sources.
    /// `diff OLD latest` compares OLD with the newest of its own source.
    pub fn source_key(&self) -> String {
        let tags = crate::records::Tags(&self.tags);
        match (self.kind, tags.database(), tags.folder()) {
            (SnapshotKind::SqlBackup, Some(db), _) => {
                let instance = self
                    .meta
                    .get("instance")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                format!("sql-backup\n{instance}\n{db}")
            }
            (_, _, Some(folder)) => {
                format!("folder\n{}\n{folder}", tags.policy().unwrap_or_default())
            }
            _ => {
                let paths: Vec<&str> = self.sources.iter().map(|s| s.path.as_str()).collect();
                format!("files\n{}", paths.join("\n"))
            }
        }
    }

    /// For a copy re-encrypted from a repository with other keys: the snapshot's id
    /// there.
    pub fn copied_from(&self) -> Option<Id> {
        self.meta
            .get(COPIED_FROM)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
    }

    /// A snapshot with nothing in it, for tests that build their own.
    #[cfg(test)]
    pub(crate) fn empty_for_tests() -> Snapshot {
        let t = time::OffsetDateTime::UNIX_EPOCH;
        Snapshot {
            version: MANIFEST_VERSION,
            time: t,
            finished: t,
            hostname: "test".into(),
            tags: Vec::new(),
            kind: SnapshotKind::SqlBackup,
            sources: Vec::new(),
            entries: Vec::new(),
            summary: Summary::default(),
            pinned: false,
            meta: BTreeMap::new(),
        }
    }

    /// Total bytes of the files.
    pub fn total_size(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .sum()
    }
}

/// The name a source path appears under: its last component, whether it is
/// written with `/` or `\`, a drive (`D:\PACS`) or a share (`\\srv\share\PACS`).
pub fn source_name(path: &str) -> String {
    let trimmed = path.trim_end_matches(['/', '\\']);
    let last = trimmed.rsplit(['/', '\\']).next().unwrap_or("");
    let last = last.trim_end_matches(':');
    if last.is_empty() || last == "." || last == ".." {
        "root".to_string()
    } else {
        last.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_of_windows_and_unix_paths() {
        assert_eq!(source_name(r"D:\PACS\Server\"), "Server");
        assert_eq!(source_name(r"\\ws-07\c$\PACS"), "PACS");
        assert_eq!(source_name(r"C:\"), "C");
        assert_eq!(source_name("/srv/pacs/"), "pacs");
        assert_eq!(source_name("影像.bak"), "影像.bak");
        assert_eq!(source_name("/"), "root");
    }
}
