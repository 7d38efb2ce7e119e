//! pacsbak: backup and disaster recovery for a hospital PACS whose data lives in
//! Microsoft SQL Server.
//!
//! The library does the work; the binary in `main.rs` is a thin shell over [`cli`].
//! Modules are split by domain: configuration, the offsite repository, storage
//! targets, SQL Server backup files, the SQL Server simulator and the command line.

pub mod bakfile;
pub mod cli;
pub mod clock;
pub mod config;
pub mod direct_io;
pub mod error;
pub mod jobs;
pub mod outcome;
pub mod policy;
pub mod records;
pub mod simulator;
pub mod sqlserver;

pub use error::{Error, ErrorKind};
pub mod render;
pub mod repository;
pub mod storage;
