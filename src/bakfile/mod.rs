//! SQL Server native backup files (`.bak`, `.trn`) read, checked, planned and
//! written without a SQL Server.
//!
//! When the PACS server is lost, msdb goes with it; these files are then the only
//! record of what can be restored. This module reads their format (Microsoft Tape
//! Format with SQL Server's records, plain or inside the `MSSQLBAK` compressed
//! container), verifies them as RESTORE VERIFYONLY WITH CHECKSUM would, plans a
//! restore sequence by LSN, and writes the same format for the simulator.
//! See docs/bakfile.md and ../shared/spec/bak-format.md.

pub mod check;
pub mod checksum;
pub mod container;
pub mod header;
pub mod mtf;
pub mod plan;
pub mod reader;
pub mod records;
pub mod source;
pub mod writer;
pub mod xpress;

pub use check::{check, CheckReport};
pub use header::{BackupHeader, BackupType, FileListEntry, Lsn};
pub use mtf::MtfDate;
pub use plan::{plan, BackupDescription, PlanRequest, PlanStep, RestorePlan};

pub use reader::{inspect, BackupFile, BackupSet, ContainerKind, Damage, MediaInfo};
pub use writer::{append_backup, write_backup, DataFile, SetDescription};

/// Inspects a backup held in memory (tests, fuzzing, data already fetched).
pub fn inspect_bytes(bytes: &[u8]) -> crate::error::Result<BackupFile> {
    with_bytes(bytes, |src, kind| {
        reader::read_sets(src, "<memory>".into(), bytes.len() as u64, kind)
    })
}

/// Checks a backup held in memory, as [`check()`] does a file.
pub fn check_bytes(bytes: &[u8]) -> crate::error::Result<CheckReport> {
    with_bytes(bytes, |src, kind| {
        let file = reader::read_sets(src, "<memory>".into(), bytes.len() as u64, kind);
        check::check_source(src, file)
    })
}

fn with_bytes<T>(
    bytes: &[u8],
    f: impl FnOnce(&mut dyn source::ReadAt, ContainerKind) -> T,
) -> crate::error::Result<T> {
    if bytes.starts_with(b"TAPE") {
        let mut src = bytes;
        Ok(f(&mut src, ContainerKind::Mtf))
    } else if bytes.starts_with(container::MAGIC) {
        let mut c = container::Container::new(bytes);
        Ok(f(&mut c, ContainerKind::MssqlbakCompressed))
    } else {
        Err(crate::Error::new(
            crate::ErrorKind::Format,
            if bytes.is_empty() {
                "empty file (0 bytes): not a SQL Server backup"
            } else {
                "not a SQL Server backup: starts with neither TAPE nor MSSQLBAK"
            },
        ))
    }
}
