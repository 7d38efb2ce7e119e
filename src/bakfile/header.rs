//! What RESTORE HEADERONLY and RESTORE FILELISTONLY report, under SQL Server's own
//! column names.
//!
//! Scripts written against SQL Server's result sets read pacsbak's `--json` without
//! translation: every field is renamed to the column it reproduces. Values that the
//! bytes do not hold (or that nobody has confirmed where they sit) are `null`, never
//! guessed.

use std::fmt;

use serde::{Serialize, Serializer};

use super::mtf::MtfDate;
use crate::records::BackupKind;

/// A log sequence number, as the numeric(25,0) SQL Server shows:
/// VLF * 10^15 + block * 10^5 + slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u128);

impl Lsn {
    /// Reads the 10-byte {VLF u32, block u32, slot u16} form; `None` when zero.
    pub fn parse(b: &[u8], at: usize) -> Option<Lsn> {
        let v = b.get(at..at + 10)?;
        let vlf = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        let block = u32::from_le_bytes([v[4], v[5], v[6], v[7]]);
        let slot = u16::from_le_bytes([v[8], v[9]]);
        let n = u128::from(vlf) * 1_000_000_000_000_000
            + u128::from(block) * 100_000
            + u128::from(slot);
        (n != 0).then_some(Lsn(n))
    }

    /// The 10-byte on-disk form (parts that do not fit are truncated).
    pub fn encode(&self) -> [u8; 10] {
        let vlf = (self.0 / 1_000_000_000_000_000) as u32;
        let block = ((self.0 / 100_000) % 10_000_000_000) as u32;
        let slot = (self.0 % 100_000) as u16;
        let mut b = [0u8; 10];
        b[0..4].copy_from_slice(&vlf.to_le_bytes());
        b[4..8].copy_from_slice(&block.to_le_bytes());
        b[8..10].copy_from_slice(&slot.to_le_bytes());
        b
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Lsn {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Lsn)
    }
}

/// LSNs are strings in JSON: numeric(25,0) does not fit a double.
impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read back from the string form (a bare JSON number is accepted too).
impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Number(u64),
        }
        match Form::deserialize(d)? {
            Form::Text(t) => t
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{t:?} is not an LSN"))),
            Form::Number(n) => Ok(Lsn(u128::from(n))),
        }
    }
}

/// The type of a backup set as its file says: one of the kinds pacsbak takes
/// ([`BackupKind`], the one type every part of pacsbak uses), or another letter SQL
/// Server writes (file, partial...) kept so it can be reported, never planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackupType {
    /// Full, differential or log.
    Kind(BackupKind),
    /// Any other msdb letter.
    Other(u8),
}

impl BackupType {
    /// A full backup (`D`).
    pub const FULL: BackupType = BackupType::Kind(BackupKind::Full);
    /// A differential (`I`).
    pub const DIFF: BackupType = BackupType::Kind(BackupKind::Diff);
    /// A log backup (`L`).
    pub const LOG: BackupType = BackupType::Kind(BackupKind::Log);

    /// From the msdb letter stored in SCIN.
    pub fn from_letter(c: u8) -> Self {
        match BackupKind::from_letter(c as char) {
            Some(k) => Self::Kind(k),
            None => Self::Other(c),
        }
    }

    /// The kind pacsbak takes and restores, or `None` for the others, which the
    /// planner reports instead of using.
    pub fn native(&self) -> Option<BackupKind> {
        match self {
            Self::Kind(k) => Some(*k),
            Self::Other(_) => None,
        }
    }

    /// The msdb letter.
    pub fn letter(&self) -> char {
        match self {
            Self::Kind(k) => k.letter(),
            Self::Other(c) => *c as char,
        }
    }

    /// HEADERONLY's BackupType number (1 database, 2 log, 5 differential, 4 file).
    pub fn code(&self) -> u8 {
        match self {
            Self::Kind(k) => k.headeronly_code(),
            Self::Other(b'F') => 4,
            Self::Other(_) => 0,
        }
    }

    /// HEADERONLY's BackupTypeDescription.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Kind(k) => k.headeronly_description(),
            Self::Other(_) => "Other",
        }
    }
}

impl From<BackupKind> for BackupType {
    fn from(k: BackupKind) -> Self {
        Self::Kind(k)
    }
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.native() {
            Some(k) => k.fmt(f),
            None => f.pad("other"),
        }
    }
}

/// As [`crate::records::BackupKind`] spells it (`full`, `diff`, `log`), or `other`.
impl Serialize for BackupType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One row of RESTORE HEADERONLY, as far as the bytes tell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupHeader {
    /// RESTORE HEADERONLY's `BackupName` (`WITH NAME`), from SSET; empty when none.
    #[serde(rename = "BackupName")]
    pub backup_name: String,
    /// HEADERONLY's `BackupDescription` (`WITH DESCRIPTION`), from SSET; empty
    /// when none.
    #[serde(rename = "BackupDescription")]
    pub backup_description: String,
    /// HEADERONLY's `BackupType`: 1 database, 2 log, 5 differential, 4 file, 0 for
    /// another letter or no SCIN.
    #[serde(rename = "BackupType")]
    pub backup_type: u8,
    /// HEADERONLY's `BackupTypeDescription` (`Database`, `Transaction Log`,
    /// `Database Differential`).
    #[serde(rename = "BackupTypeDescription")]
    pub backup_type_description: String,
    /// HEADERONLY's `Compressed`: the file is the `MSSQLBAK` container
    /// (`WITH COMPRESSION`).
    #[serde(rename = "Compressed")]
    pub compressed: bool,
    /// HEADERONLY's `Position`: the set's number in the file, 1-based (SSET's data
    /// set number; RESTORE's `FILE =`).
    #[serde(rename = "Position")]
    pub position: u16,
    /// 2: disk.
    #[serde(rename = "DeviceType")]
    pub device_type: u8,
    /// HEADERONLY's `UserName`: the login that took the backup, from SSET.
    #[serde(rename = "UserName")]
    pub user_name: String,
    /// HEADERONLY's `ServerName` (server\instance), from SCIN.
    #[serde(rename = "ServerName")]
    pub server_name: String,
    /// HEADERONLY's `DatabaseName`, from SCIN.
    #[serde(rename = "DatabaseName")]
    pub database_name: String,
    /// HEADERONLY's `DatabaseVersion`: the internal database version (611 for
    /// 2005 ... 998 for 2025), from SCIN.
    #[serde(rename = "DatabaseVersion")]
    pub database_version: u16,
    /// HEADERONLY's `DatabaseCreationDate`, from SCIN; null when zero.
    #[serde(rename = "DatabaseCreationDate")]
    pub database_creation_date: Option<MtfDate>,
    /// HEADERONLY's `FirstLSN`: the first log record in the set; null when zero.
    #[serde(rename = "FirstLSN")]
    pub first_lsn: Option<Lsn>,
    /// HEADERONLY's `LastLSN`: the next log record after the set; null when zero.
    #[serde(rename = "LastLSN")]
    pub last_lsn: Option<Lsn>,
    /// HEADERONLY's `CheckpointLSN`: the checkpoint the backup started from; a
    /// differential's DatabaseBackupLSN points at its full's. Null when zero.
    #[serde(rename = "CheckpointLSN")]
    pub checkpoint_lsn: Option<Lsn>,
    /// HEADERONLY's `DatabaseBackupLSN`: CheckpointLSN of the full backup this one
    /// builds on; null when zero.
    #[serde(rename = "DatabaseBackupLSN")]
    pub database_backup_lsn: Option<Lsn>,
    /// HEADERONLY's `BackupStartDate` (server local time), from SCIN; null when
    /// zero.
    #[serde(rename = "BackupStartDate")]
    pub backup_start_date: Option<MtfDate>,
    /// HEADERONLY's `SortOrder` (server sort order id), from SCIN.
    #[serde(rename = "SortOrder")]
    pub sort_order: u8,
    /// HEADERONLY's `UnicodeLocaleId` of the collation, from SCIN.
    #[serde(rename = "UnicodeLocaleId")]
    pub unicode_locale_id: u32,
    /// HEADERONLY's `UnicodeComparisonStyle` of the collation, from SCIN.
    #[serde(rename = "UnicodeComparisonStyle")]
    pub unicode_comparison_style: u32,
    /// HEADERONLY's `CompatibilityLevel` of the database (160 for 2022), from SCIN.
    #[serde(rename = "CompatibilityLevel")]
    pub compatibility_level: u8,
    /// HEADERONLY's `SoftwareVendorId`, from SSET (4608 for SQL Server).
    #[serde(rename = "SoftwareVendorId")]
    pub software_vendor_id: u16,
    /// HEADERONLY's `SoftwareVersionMajor` of the server that wrote the backup,
    /// from SCIN (SSET's until SCIN is read).
    #[serde(rename = "SoftwareVersionMajor")]
    pub software_version_major: u8,
    /// HEADERONLY's `SoftwareVersionMinor`, from SCIN (SSET's until SCIN is read).
    #[serde(rename = "SoftwareVersionMinor")]
    pub software_version_minor: u8,
    /// HEADERONLY's `SoftwareVersionBuild`, from SCIN; 0 until SCIN is read.
    #[serde(rename = "SoftwareVersionBuild")]
    pub software_version_build: u16,
    /// HEADERONLY's `MachineName`: the computer the backup ran on, from VOLB.
    #[serde(rename = "MachineName")]
    pub machine_name: String,
    /// SCIN's flag word; 0x10 is WITH CHECKSUM as in HEADERONLY's Flags.
    #[serde(rename = "Flags")]
    pub flags: u32,
    /// HEADERONLY's `HasBackupChecksums`: taken WITH CHECKSUM (SCIN flag 0x10), so
    /// CSUM streams are expected.
    #[serde(rename = "HasBackupChecksums")]
    pub has_backup_checksums: bool,
    /// Not found in the bytes yet: `null` rather than a guess.
    #[serde(rename = "IsCopyOnly")]
    pub is_copy_only: Option<bool>,
}

impl BackupHeader {
    /// The backup type from the HEADERONLY code.
    pub fn kind(&self) -> BackupType {
        match self.backup_type {
            1 => BackupType::FULL,
            2 => BackupType::LOG,
            5 => BackupType::DIFF,
            _ => BackupType::Other(b'?'),
        }
    }

    /// "major.minor.build", as SERVERPROPERTY('ProductVersion') starts.
    pub fn software_version(&self) -> String {
        format!(
            "{}.{}.{}",
            self.software_version_major, self.software_version_minor, self.software_version_build
        )
    }
}

/// One row of RESTORE FILELISTONLY, as far as the bytes tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileListEntry {
    /// RESTORE FILELISTONLY's `LogicalName`: the file's name inside the database
    /// (what `MOVE` names), from SFIN.
    #[serde(rename = "LogicalName")]
    pub logical_name: String,
    /// FILELISTONLY's `PhysicalName`: the file's path on the server backed up,
    /// from SFIN.
    #[serde(rename = "PhysicalName")]
    pub physical_name: String,
    /// 'D' data, 'L' log (inferred: the log file belongs to no filegroup).
    #[serde(rename = "Type")]
    pub file_type: char,
    /// FILELISTONLY's `FileGroupName`, from the SFGI of the file's group; null for
    /// the log file or a group no SFGI names.
    #[serde(rename = "FileGroupName")]
    pub file_group_name: Option<String>,
    /// FILELISTONLY's `FileID`, from SFIN (u32 at 0x14).
    #[serde(rename = "FileID")]
    pub file_id: u32,
    /// FILELISTONLY's `FileGroupID`, from SFIN (u32 at 0x24); 0 for the log file.
    #[serde(rename = "FileGroupID")]
    pub file_group_id: u32,
}
