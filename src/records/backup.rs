//! The record a SQL Server backup's snapshot carries: what restore planning,
//! retention, drills and reports need to know of it without reading the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BackupKind;
use crate::bakfile::{Lsn, MtfDate};
use crate::error::{Error, ErrorKind, Result};

/// One native backup, as stored in its snapshot's manifest (`meta`).
///
/// Written by `backup db` and `backup manual`; read by restore planning and every
/// later consumer. The keys are those earlier builds wrote key by key, so their
/// snapshots read as records too (docs/repository-format.md, "The backup record").
/// Dates are SQL Server's own: the server's local time, as msdb keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// The instance's name in the policy.
    pub instance: String,
    /// The database.
    pub database: String,
    /// Full, differential or log.
    #[serde(rename = "type")]
    pub kind: BackupKind,
    /// COPY_ONLY: outside the differential chain (a copy-only log is outside the
    /// log chain too).
    #[serde(default)]
    pub copy_only: bool,
    /// Pinned: retention keeps it until it is unpinned. Stored on the snapshot, not
    /// in `meta`; filled in by [`BackupRecord::from_snapshot`].
    #[serde(skip)]
    pub pinned: bool,
    /// Why it was taken (and pinned), for manual backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The policy that took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// msdb's first_lsn (the file's FirstLSN when msdb had no row).
    #[serde(default)]
    pub first_lsn: Option<Lsn>,
    /// msdb's last_lsn.
    #[serde(default)]
    pub last_lsn: Option<Lsn>,
    /// msdb's checkpoint_lsn.
    #[serde(default)]
    pub checkpoint_lsn: Option<Lsn>,
    /// msdb's database_backup_lsn: the full a differential or log is based on.
    #[serde(default)]
    pub database_backup_lsn: Option<Lsn>,
    /// backup_start_date, server local time.
    #[serde(default)]
    pub backup_start: Option<MtfDate>,
    /// backup_finish_date, server local time.
    #[serde(default)]
    pub backup_finish: Option<MtfDate>,
    /// Bytes in all its files.
    #[serde(default)]
    pub size: u64,
    /// The files (stripes) of the backup set, in family order.
    #[serde(default)]
    pub files: Vec<StripeFile>,
    /// Taken WITH CHECKSUM (page checksums verified while it was written).
    #[serde(default)]
    pub has_backup_checksums: bool,
    /// Taken WITH COMPRESSION.
    #[serde(default)]
    pub compression: bool,
    /// RESTORE VERIFYONLY's verdict before the snapshot was written.
    #[serde(default)]
    pub verifyonly: CheckVerdict,
    /// The server's version (`major.minor.build`, from the file's header): which
    /// SQL Server can restore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The database's files and their sizes when it was backed up
    /// (`sys.master_files`): what a restore must find room for, known before any
    /// file is fetched. Empty in records written before drills existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub database_files: Vec<crate::sqlserver::restore::DatabaseFile>,
    /// Rows of the tables the policy counts (`[backup] count_rows`) when the backup
    /// was taken: a drill compares the restored database with them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub row_counts: BTreeMap<String, u64>,
}

/// One file of a backup set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeFile {
    /// The file's name inside the snapshot.
    pub name: String,
    /// The path SQL Server wrote it to.
    #[serde(default)]
    pub server_path: String,
    /// Its family number, 1-based.
    #[serde(default = "one")]
    pub family_sequence: u16,
    /// How many files the set is striped over.
    #[serde(default = "one")]
    pub family_count: u16,
    /// The media set, to tell two stripes of one set from two copies.
    #[serde(default)]
    pub media_set_id: Option<String>,
    /// The backup set's position in the file (RESTORE ... WITH FILE = n).
    #[serde(default = "one")]
    pub position: u16,
    /// Bytes.
    #[serde(default)]
    pub size: u64,
}

fn one() -> u16 {
    1
}

/// The verdict of a check run before the snapshot was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckVerdict {
    /// It ran and passed.
    Passed,
    /// It did not run (a record read from elsewhere).
    #[default]
    NotRun,
}

impl BackupRecord {
    /// The record of a `sql-backup` snapshot, from its manifest. Snapshots written
    /// by earlier builds read too: their keys are the record's, and the server's
    /// version is taken from the copy of the file's header they kept.
    pub fn from_snapshot(s: &crate::repository::Snapshot) -> Result<BackupRecord> {
        let map: serde_json::Map<String, Value> =
            s.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut r: BackupRecord = serde_json::from_value(Value::Object(map)).map_err(|e| {
            Error::new(
                ErrorKind::Format,
                format!("the snapshot's backup record cannot be read: {e}"),
            )
        })?;
        r.pinned = s.pinned;
        if r.server_version.is_none() {
            r.server_version = legacy_server_version(&s.meta);
        }
        Ok(r)
    }

    /// The manifest `meta` this record is stored as.
    pub fn to_meta(&self) -> BTreeMap<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Stripes of the set: how many files a restore needs at once.
    pub fn stripes(&self) -> u16 {
        self.files
            .iter()
            .map(|f| f.family_count)
            .max()
            .unwrap_or(1)
            .max(1)
    }
}

/// Builds before the record kept the file's whole HEADERONLY row under `header`.
fn legacy_server_version(meta: &BTreeMap<String, Value>) -> Option<String> {
    let h = meta.get("header")?;
    let part = |k: &str| h.get(k).and_then(Value::as_u64);
    Some(format!(
        "{}.{}.{}",
        part("SoftwareVersionMajor")?,
        part("SoftwareVersionMinor")?,
        part("SoftwareVersionBuild")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The meta map exactly as the build at ac30f7c wrote it (key by key).
    fn legacy_meta() -> BTreeMap<String, Value> {
        let v = json!({
            "instance": "sandbox", "database": "PACS", "type": "diff", "copy_only": false,
            "first_lsn": "37000000010600001", "last_lsn": "37000000010700002",
            "checkpoint_lsn": "37000000010600001", "database_backup_lsn": "37000000010300001",
            "backup_start": "2026-12-03 08:01:02", "backup_finish": "2026-12-03 08:01:03",
            "size": 66048, "has_backup_checksums": true, "verifyonly": "passed",
            "compression": false,
            "files": [{"name": "PACS_diff.bak", "server_path": "C:\\b\\PACS_diff.bak",
                       "family_sequence": 1, "family_count": 1, "media_set_id": null,
                       "position": 1, "size": 66048}],
            "header": {"SoftwareVersionMajor": 16, "SoftwareVersionMinor": 0,
                       "SoftwareVersionBuild": 1000},
            "msdb": {"backup_start_date": [2026, 337, 8, 1, 2, 0]},
            "policy": "sandbox"
        });
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn a_record_written_key_by_key_by_earlier_builds_reads() {
        let snap = crate::repository::Snapshot {
            meta: legacy_meta(),
            pinned: true,
            ..crate::repository::Snapshot::empty_for_tests()
        };
        let r = BackupRecord::from_snapshot(&snap).unwrap();
        assert_eq!(r.kind, BackupKind::Diff);
        assert_eq!(r.database_backup_lsn, Some(Lsn(37000000010300001)));
        assert_eq!(
            r.backup_start.map(|d| d.to_string()).as_deref(),
            Some("2026-12-03 08:01:02")
        );
        assert_eq!(r.verifyonly, CheckVerdict::Passed);
        assert_eq!(r.server_version.as_deref(), Some("16.0.1000"));
        assert!(r.pinned);
        assert_eq!(r.stripes(), 1);
        // Written again, it reads back the same.
        let again = crate::repository::Snapshot {
            meta: r.to_meta(),
            pinned: true,
            ..crate::repository::Snapshot::empty_for_tests()
        };
        assert_eq!(BackupRecord::from_snapshot(&again).unwrap(), r);
    }

    #[test]
    fn a_record_without_a_type_is_a_format_error() {
        let mut m = legacy_meta();
        m.remove("type");
        let snap = crate::repository::Snapshot {
            meta: m,
            ..crate::repository::Snapshot::empty_for_tests()
        };
        let e = BackupRecord::from_snapshot(&snap).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format);
    }
}
