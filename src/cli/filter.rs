//! `--kind` and `--tag`: which snapshots `snapshots`, `diff` and `restore files` mean,
//! and so what `latest` resolves to.

use clap::Args;

use crate::repository::{SnapshotFilter, SnapshotKind};

/// The snapshot filter options shared by the commands that name snapshots.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only snapshots of this kind: `files` (folders and files) or `sql-backup`.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<SnapshotKind>,
    /// Only snapshots carrying this tag; repeat for several (all must match), e.g.
    /// `--tag folder:pacs-server`, `--tag db:PACS --tag type:full`.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

impl FilterArgs {
    /// The library's filter.
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            kind: self.kind,
            tags: self.tags.clone(),
            source: None,
        }
    }
}

fn parse_kind(s: &str) -> Result<SnapshotKind, String> {
    match s {
        "files" => Ok(SnapshotKind::Files),
        "sql-backup" => Ok(SnapshotKind::SqlBackup),
        _ => Err(format!("{s:?}: use files or sql-backup")),
    }
}
