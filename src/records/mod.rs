//! The typed records everything after a backup reads: the one [`BackupKind`], the
//! [`BackupRecord`] a SQL Server backup's snapshot carries, and the tags and series
//! names snapshots are found by.
//!
//! Restore planning, the scheduler's journal, retention, drills and reports all ask
//! the same questions of the repository (which database, which type, which chain,
//! pinned or not). They ask them here, of typed values, instead of each re-parsing
//! manifest maps and tag strings its own way. The formats are written down in
//! docs/repository-format.md ("The backup record", "Tags and series").

mod backup;
mod kind;
mod tags;

pub use backup::{BackupRecord, CheckVerdict, StripeFile};
pub use kind::BackupKind;
pub use tags::{Series, Tag, Tags};
