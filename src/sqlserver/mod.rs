//! The SQL Server client: connections (ADO strings, encryption modes, the embedded
//! simulator), quoting, BACKUP/VERIFYONLY/RESTORE with progress and stall detection,
//! msdb and catalog queries. Built on tiberius 0.13 (see ../shared/spec/tds.md for
//! what it does and does not expose).

pub mod backup;
pub mod catalog;
pub mod conn;
pub mod maintenance;
pub mod quote;
pub mod restore;

pub use backup::{run_long, verifyonly_sql, BackupStatement, LongRun};
pub use conn::{Encryption, Endpoint, Instance, InstanceSpec, Sql};
