#![warn(missing_docs)]
//! pacsbak: backup and disaster recovery for a hospital PACS whose data lives in
//! Microsoft SQL Server.
//!
//! The library does the work; the binary in `main.rs` is a thin shell over [`cli`].
//! Modules are split by domain (docs/architecture.md):
//!
//! - what is configured: [`config`] (pacsbak.toml, storage targets, secrets),
//!   [`policy`] (policies/*.toml: instance, databases, schedules, folders), [`clock`]
//!   (now and the hospital's time zone);
//! - where backups go: [`storage`] (targets behind one trait) and [`repository`]
//!   (the encrypted, deduplicated offsite repository);
//! - SQL Server: [`sqlserver`] (the client), [`bakfile`] (backup files without a
//!   server), [`simulator`] (a SQL Server that speaks TDS, for tests and training);
//! - what is done and said: [`jobs`] (the policy jobs), [`records`] (the typed backup
//!   record, kinds, tags), [`outcome`] (what a job hands back), [`render`] (outcomes
//!   as text or JSON), [`cli`] (the command line);
//! - running unattended: [`scheduler`] (the daemon: schedules, locks, retries,
//!   reload, metrics), [`journal`] (the audit trail), [`alerts`] (who is told).
//!
//! Errors are [`Error`] with an [`ErrorKind`]; as data, [`ErrorRecord`].

pub mod alerts;
pub mod bakfile;
pub mod cli;
pub mod clock;
pub mod config;
mod direct_io;
pub mod drills;
mod error;
#[cfg(windows)]
pub mod eventlog;
pub mod jobs;
pub mod journal;
pub mod logfile;
pub mod outcome;
pub mod policy;
pub mod records;
pub mod render;
pub mod repository;
pub mod retention;
pub mod scheduler;
pub mod simulator;
pub mod sqlserver;
pub mod storage;

pub use error::{Error, ErrorKind, ErrorRecord, Result};
