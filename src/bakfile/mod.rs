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
pub use plan::{plan, BackupDescription, PlanRequest, PlanStep, RestorePlan};
pub use header::{BackupHeader, BackupType, FileListEntry, Lsn};
pub use mtf::MtfDate;

pub use writer::{write_backup, DataFile, SetDescription};
pub use reader::{inspect, BackupFile, BackupSet, ContainerKind, Damage, MediaInfo};

