//! Snapshot tags and backup series: built and parsed here only.
//!
//! Tags are how snapshots are found (`snapshots --tag`, last good copies, restore
//! planning); a series names what a backup continues, so its large files are cut
//! along the previous version's cuts (docs/decisions/0007). Both are written into
//! repositories, so their spelling is part of the format: changing one orphans what
//! older builds wrote.

use std::fmt;

use super::BackupKind;

/// One snapshot tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tag {
    /// `sql-backup`: a native SQL Server backup.
    SqlBackup,
    /// `program-folder`: a policy's PACS program folder.
    ProgramFolder,
    /// `manual`: taken by `backup manual` (before an upgrade).
    Manual,
    /// `copy-only`: a COPY_ONLY backup, outside the differential chain.
    CopyOnly,
    /// `policy:NAME`.
    Policy(String),
    /// `db:NAME`.
    Database(String),
    /// `type:full|diff|log`.
    Kind(BackupKind),
    /// `folder:NAME`: the folder's name in its policy.
    Folder(String),
    /// `role:server|workstation`.
    Role(String),
    /// Anything else (`--tag` given by a person).
    Other(String),
}

impl Tag {
    /// Reads a stored tag; never fails (unknown tags are [`Tag::Other`]).
    pub fn parse(s: &str) -> Tag {
        match s {
            "sql-backup" => return Tag::SqlBackup,
            "program-folder" => return Tag::ProgramFolder,
            "manual" => return Tag::Manual,
            "copy-only" => return Tag::CopyOnly,
            _ => {}
        }
        let Some((key, value)) = s.split_once(':') else {
            return Tag::Other(s.to_string());
        };
        match key {
            "policy" => Tag::Policy(value.to_string()),
            "db" => Tag::Database(value.to_string()),
            "folder" => Tag::Folder(value.to_string()),
            "role" => Tag::Role(value.to_string()),
            "type" => match value.parse() {
                Ok(k) => Tag::Kind(k),
                Err(_) => Tag::Other(s.to_string()),
            },
            _ => Tag::Other(s.to_string()),
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::SqlBackup => f.write_str("sql-backup"),
            Tag::ProgramFolder => f.write_str("program-folder"),
            Tag::Manual => f.write_str("manual"),
            Tag::CopyOnly => f.write_str("copy-only"),
            Tag::Policy(p) => write!(f, "policy:{p}"),
            Tag::Database(d) => write!(f, "db:{d}"),
            Tag::Kind(k) => write!(f, "type:{k}"),
            Tag::Folder(n) => write!(f, "folder:{n}"),
            Tag::Role(r) => write!(f, "role:{r}"),
            Tag::Other(s) => f.write_str(s),
        }
    }
}

impl From<Tag> for String {
    fn from(t: Tag) -> String {
        t.to_string()
    }
}

/// A snapshot's stored tags, read as [`Tag`]s.
#[derive(Debug, Clone, Copy)]
pub struct Tags<'a>(pub &'a [String]);

impl<'a> Tags<'a> {
    /// Every tag, parsed.
    pub fn iter(&self) -> impl Iterator<Item = Tag> + 'a {
        self.0.iter().map(|t| Tag::parse(t))
    }

    /// Whether `tag` is among them.
    pub fn has(&self, tag: &Tag) -> bool {
        self.iter().any(|t| &t == tag)
    }

    /// The policy that took it.
    pub fn policy(&self) -> Option<String> {
        self.iter().find_map(|t| match t {
            Tag::Policy(p) => Some(p),
            _ => None,
        })
    }

    /// The program folder's name in its policy.
    pub fn folder(&self) -> Option<String> {
        self.iter().find_map(|t| match t {
            Tag::Folder(n) => Some(n),
            _ => None,
        })
    }

    /// The database of a native backup.
    pub fn database(&self) -> Option<String> {
        self.iter().find_map(|t| match t {
            Tag::Database(d) => Some(d),
            _ => None,
        })
    }

    /// The kind of a native backup.
    pub fn kind(&self) -> Option<BackupKind> {
        self.iter().find_map(|t| match t {
            Tag::Kind(k) => Some(k),
            _ => None,
        })
    }
}

/// What a backup continues: the previous version of the same series is the one its
/// large files are cut along (docs/decisions/0007).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Series {
    /// One database's fulls (copy-only ones too), or its differentials.
    Sql {
        /// The instance's name in the policy.
        instance: String,
        /// The database.
        database: String,
        /// Full or differential; logs have no series.
        kind: BackupKind,
    },
    /// One program folder of one policy.
    Folder {
        /// The policy.
        policy: String,
        /// The folder's name in it.
        folder: String,
    },
    /// `backup files` of the same absolute sources.
    Files(Vec<String>),
}

impl Series {
    /// The key the cut cache files this series under, or `None` when the backup
    /// shares nothing with the one before (a log backup). The strings are those
    /// earlier builds used, so caches survive an upgrade.
    pub fn key(&self) -> Option<String> {
        match self {
            Series::Sql { kind, .. } if *kind == BackupKind::Log => None,
            Series::Sql {
                instance,
                database,
                kind,
            } => Some(format!("sql-backup\n{instance}\n{database}\n{kind}")),
            Series::Folder { policy, folder } => Some(format!("folder\n{policy}\n{folder}")),
            Series::Files(paths) => Some(format!("files\n{}", paths.join("\n"))),
        }
    }

    /// The series of `backup files` over `paths`, made absolute so that the same
    /// folders named from another working folder are the same series.
    pub fn files(paths: &[std::path::PathBuf]) -> Series {
        Series::Files(
            paths
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .map(|p| p.display().to_string())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_read_back_as_written() {
        let all = [
            Tag::SqlBackup,
            Tag::ProgramFolder,
            Tag::Manual,
            Tag::CopyOnly,
            Tag::Policy("pacs".into()),
            Tag::Database("PACS".into()),
            Tag::Kind(BackupKind::Diff),
            Tag::Folder("reg-1".into()),
            Tag::Role("workstation".into()),
            Tag::Other("upgrade-3.2".into()),
        ];
        for t in &all {
            assert_eq!(&Tag::parse(&t.to_string()), t);
        }
        assert_eq!(Tag::parse("type:bogus"), Tag::Other("type:bogus".into()));
        let stored: Vec<String> = all.iter().map(|t| t.to_string()).collect();
        let tags = Tags(&stored);
        assert_eq!(tags.policy().as_deref(), Some("pacs"));
        assert_eq!(tags.database().as_deref(), Some("PACS"));
        assert_eq!(tags.kind(), Some(BackupKind::Diff));
        assert!(tags.has(&Tag::Manual));
    }

    #[test]
    fn fulls_and_differentials_of_a_database_are_separate_series_and_logs_none() {
        let sql = |i: &str, d: &str, kind| Series::Sql {
            instance: i.into(),
            database: d.into(),
            kind,
        };
        let full = sql("PACSDB01", "PACS", BackupKind::Full).key();
        let diff = sql("PACSDB01", "PACS", BackupKind::Diff).key();
        assert!(full.is_some() && diff.is_some());
        assert_ne!(full, diff);
        assert_ne!(full, sql("PACSDB01", "RIS", BackupKind::Full).key());
        assert_ne!(full, sql("PACSDB02", "PACS", BackupKind::Full).key());
        assert_eq!(sql("PACSDB01", "PACS", BackupKind::Log).key(), None);
        // The keys earlier builds wrote, so cut caches survive the upgrade.
        assert_eq!(full.as_deref(), Some("sql-backup\nPACSDB01\nPACS\nfull"));
        assert_eq!(
            Series::Folder {
                policy: "pacs".into(),
                folder: "reg-1".into()
            }
            .key()
            .as_deref(),
            Some("folder\npacs\nreg-1")
        );
    }
}
