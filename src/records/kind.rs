//! The kind of a native SQL Server backup, in every part of pacsbak: the BACKUP
//! statement, msdb's letter, the backup file's header, restore plans, tags and
//! records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of a native backup pacsbak takes and restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// BACKUP DATABASE.
    Full,
    /// BACKUP DATABASE ... WITH DIFFERENTIAL.
    #[serde(alias = "differential")]
    Diff,
    /// BACKUP LOG.
    Log,
}

impl BackupKind {
    /// msdb's `type` letter (and the backup file's).
    pub fn letter(self) -> char {
        match self {
            BackupKind::Full => 'D',
            BackupKind::Diff => 'I',
            BackupKind::Log => 'L',
        }
    }

    /// From msdb's (or the file's) letter; `None` for types pacsbak does not take
    /// (file, partial...).
    pub fn from_letter(c: char) -> Option<BackupKind> {
        match c.to_ascii_uppercase() {
            'D' => Some(BackupKind::Full),
            'I' => Some(BackupKind::Diff),
            'L' => Some(BackupKind::Log),
            _ => None,
        }
    }

    /// RESTORE HEADERONLY's BackupType number.
    pub fn headeronly_code(self) -> u8 {
        match self {
            BackupKind::Full => 1,
            BackupKind::Log => 2,
            BackupKind::Diff => 5,
        }
    }

    /// RESTORE HEADERONLY's BackupTypeDescription.
    pub fn headeronly_description(self) -> &'static str {
        match self {
            BackupKind::Full => "Database",
            BackupKind::Log => "Transaction Log",
            BackupKind::Diff => "Database Differential",
        }
    }

    /// The file extension pacsbak gives it.
    pub fn extension(self) -> &'static str {
        match self {
            BackupKind::Full | BackupKind::Diff => "bak",
            BackupKind::Log => "trn",
        }
    }

    /// `full`, `diff` or `log`: tags, records, JSON and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Diff => "diff",
            BackupKind::Log => "log",
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for BackupKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(BackupKind::Full),
            "diff" | "differential" => Ok(BackupKind::Diff),
            "log" => Ok(BackupKind::Log),
            _ => Err(format!("backup type is full, diff or log, not {s:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_names_and_codes_agree() {
        for k in [BackupKind::Full, BackupKind::Diff, BackupKind::Log] {
            assert_eq!(BackupKind::from_letter(k.letter()), Some(k));
            assert_eq!(k.as_str().parse::<BackupKind>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<BackupKind>(&json).unwrap(), k);
        }
        assert_eq!(BackupKind::from_letter('F'), None);
        assert_eq!(
            serde_json::from_str::<BackupKind>("\"differential\"").unwrap(),
            BackupKind::Diff
        );
    }
}
