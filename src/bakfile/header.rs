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

/// The kind of backup, as msdb's letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackupType {
    /// `D`, BACKUP DATABASE.
    Full,
    /// `I`, BACKUP DATABASE WITH DIFFERENTIAL.
    Differential,
    /// `L`, BACKUP LOG.
    Log,
    /// Any other letter (file, partial...), kept so it can be reported.
    Other(u8),
}

impl BackupType {
    /// From the msdb letter stored in SCIN.
    pub fn from_letter(c: u8) -> Self {
        match c {
            b'D' => Self::Full,
            b'I' => Self::Differential,
            b'L' => Self::Log,
            other => Self::Other(other),
        }
    }

    /// The file's type of a backup pacsbak takes.
    pub fn from_kind(kind: crate::records::BackupKind) -> Self {
        use crate::records::BackupKind;
        match kind {
            BackupKind::Full => Self::Full,
            BackupKind::Diff => Self::Differential,
            BackupKind::Log => Self::Log,
        }
    }

    /// The kind pacsbak takes and restores, or `None` for the others (file,
    /// partial...), which the planner reports instead of using.
    pub fn native(&self) -> Option<crate::records::BackupKind> {
        use crate::records::BackupKind;
        match self {
            Self::Full => Some(BackupKind::Full),
            Self::Differential => Some(BackupKind::Diff),
            Self::Log => Some(BackupKind::Log),
            Self::Other(_) => None,
        }
    }

    /// The msdb letter.
    pub fn letter(&self) -> char {
        match self {
            Self::Full => 'D',
            Self::Differential => 'I',
            Self::Log => 'L',
            Self::Other(c) => *c as char,
        }
    }

    /// HEADERONLY's BackupType number (1 database, 2 log, 5 differential).
    pub fn code(&self) -> u8 {
        match self {
            Self::Full => 1,
            Self::Log => 2,
            Self::Differential => 5,
            Self::Other(b'F') => 4,
            Self::Other(_) => 0,
        }
    }

    /// HEADERONLY's BackupTypeDescription.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Full => "Database",
            Self::Log => "Transaction Log",
            Self::Differential => "Database Differential",
            Self::Other(_) => "Other",
        }
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
    #[serde(rename = "BackupName")]
    pub backup_name: String,
    #[serde(rename = "BackupDescription")]
    pub backup_description: String,
    #[serde(rename = "BackupType")]
    pub backup_type: u8,
    #[serde(rename = "BackupTypeDescription")]
    pub backup_type_description: String,
    #[serde(rename = "Compressed")]
    pub compressed: bool,
    #[serde(rename = "Position")]
    pub position: u16,
    /// 2: disk.
    #[serde(rename = "DeviceType")]
    pub device_type: u8,
    #[serde(rename = "UserName")]
    pub user_name: String,
    #[serde(rename = "ServerName")]
    pub server_name: String,
    #[serde(rename = "DatabaseName")]
    pub database_name: String,
    #[serde(rename = "DatabaseVersion")]
    pub database_version: u16,
    #[serde(rename = "DatabaseCreationDate")]
    pub database_creation_date: Option<MtfDate>,
    #[serde(rename = "FirstLSN")]
    pub first_lsn: Option<Lsn>,
    #[serde(rename = "LastLSN")]
    pub last_lsn: Option<Lsn>,
    #[serde(rename = "CheckpointLSN")]
    pub checkpoint_lsn: Option<Lsn>,
    #[serde(rename = "DatabaseBackupLSN")]
    pub database_backup_lsn: Option<Lsn>,
    #[serde(rename = "BackupStartDate")]
    pub backup_start_date: Option<MtfDate>,
    #[serde(rename = "SortOrder")]
    pub sort_order: u8,
    #[serde(rename = "UnicodeLocaleId")]
    pub unicode_locale_id: u32,
    #[serde(rename = "UnicodeComparisonStyle")]
    pub unicode_comparison_style: u32,
    #[serde(rename = "CompatibilityLevel")]
    pub compatibility_level: u8,
    #[serde(rename = "SoftwareVendorId")]
    pub software_vendor_id: u16,
    #[serde(rename = "SoftwareVersionMajor")]
    pub software_version_major: u8,
    #[serde(rename = "SoftwareVersionMinor")]
    pub software_version_minor: u8,
    #[serde(rename = "SoftwareVersionBuild")]
    pub software_version_build: u16,
    #[serde(rename = "MachineName")]
    pub machine_name: String,
    /// SCIN's flag word; 0x10 is WITH CHECKSUM as in HEADERONLY's Flags.
    #[serde(rename = "Flags")]
    pub flags: u32,
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
            1 => BackupType::Full,
            2 => BackupType::Log,
            5 => BackupType::Differential,
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
    #[serde(rename = "LogicalName")]
    pub logical_name: String,
    #[serde(rename = "PhysicalName")]
    pub physical_name: String,
    /// 'D' data, 'L' log (inferred: the log file belongs to no filegroup).
    #[serde(rename = "Type")]
    pub file_type: char,
    #[serde(rename = "FileGroupName")]
    pub file_group_name: Option<String>,
    #[serde(rename = "FileID")]
    pub file_id: u32,
    #[serde(rename = "FileGroupID")]
    pub file_group_id: u32,
}
