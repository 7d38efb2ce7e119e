//! Catalog and msdb queries: databases, files, log usage, the Agent, and the msdb
//! history row of a backup just taken. Every name sent is quoted (see `quote`).

use serde::Serialize;
use time::PrimitiveDateTime;

use super::conn::{big, bit, datetime, float, int, text, Sql};
use super::quote;
use crate::bakfile::Lsn;
use crate::error::Result;
use crate::records::BackupKind;

/// A row of sys.databases.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseInfo {
    /// Name.
    pub name: String,
    /// database_id.
    pub id: i64,
    /// ONLINE, RESTORING, OFFLINE...
    pub state: String,
    /// FULL, BULK_LOGGED or SIMPLE.
    pub recovery_model: String,
    /// What the log waits for (LOG_BACKUP: nobody takes log backups).
    pub log_reuse_wait: String,
}

impl DatabaseInfo {
    /// master, model, msdb, tempdb.
    pub fn is_system(&self) -> bool {
        self.id <= 4
            || ["master", "model", "msdb", "tempdb"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&self.name))
    }
}

/// Every database.
pub async fn databases(sql: &mut Sql) -> Result<Vec<DatabaseInfo>> {
    let rows = sql
        .rows("SELECT name, database_id, state_desc, recovery_model_desc, log_reuse_wait_desc FROM sys.databases ORDER BY name")
        .await?;
    Ok(rows
        .iter()
        .map(|r| DatabaseInfo {
            name: text(r, 0usize).unwrap_or_default(),
            id: int(r, 1usize).unwrap_or(0),
            state: text(r, 2usize).unwrap_or_default(),
            recovery_model: text(r, 3usize).unwrap_or_default(),
            log_reuse_wait: text(r, 4usize).unwrap_or_default(),
        })
        .collect())
}

/// The msdb history of one backup set.
#[derive(Debug, Clone, Serialize)]
pub struct MsdbBackup {
    /// backup_set_id.
    pub backup_set_id: i64,
    /// media_set_id.
    pub media_set_id: i64,
    /// database_name.
    pub database_name: String,
    /// server_name.
    pub server_name: String,
    /// type: D, I, L (or another letter, kept to be reported).
    pub backup_type: crate::bakfile::BackupType,
    /// is_copy_only.
    pub is_copy_only: bool,
    /// first_lsn.
    pub first_lsn: Option<Lsn>,
    /// last_lsn.
    pub last_lsn: Option<Lsn>,
    /// checkpoint_lsn.
    pub checkpoint_lsn: Option<Lsn>,
    /// database_backup_lsn.
    pub database_backup_lsn: Option<Lsn>,
    /// backup_start_date (server local time; `YYYY-MM-DD HH:MM:SS` in JSON).
    #[serde(serialize_with = "server_local_time")]
    pub backup_start_date: Option<PrimitiveDateTime>,
    /// backup_finish_date.
    #[serde(serialize_with = "server_local_time")]
    pub backup_finish_date: Option<PrimitiveDateTime>,
    /// backup_size.
    pub backup_size: Option<u128>,
    /// has_backup_checksums.
    pub has_backup_checksums: bool,
    /// is_damaged.
    pub is_damaged: bool,
}

/// msdb's dates carry no offset (the server's local time): written as SQL Server
/// shows them, not as arrays of numbers.
fn server_local_time<S: serde::Serializer>(
    t: &Option<PrimitiveDateTime>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(&crate::bakfile::MtfDate::from_datetime(*t)),
        None => s.serialize_none(),
    }
}

const BACKUPSET_COLUMNS: &str = "bs.backup_set_id, bs.media_set_id, bs.database_name, bs.server_name, bs.type, \
     bs.is_copy_only, bs.first_lsn, bs.last_lsn, bs.checkpoint_lsn, bs.database_backup_lsn, \
     bs.backup_start_date, bs.backup_finish_date, bs.backup_size, bs.has_backup_checksums, bs.is_damaged";

fn msdb_backup(r: &tiberius::Row) -> MsdbBackup {
    MsdbBackup {
        backup_set_id: int(r, 0usize).unwrap_or(0),
        media_set_id: int(r, 1usize).unwrap_or(0),
        database_name: text(r, 2usize).unwrap_or_default(),
        server_name: text(r, 3usize).unwrap_or_default(),
        backup_type: crate::bakfile::BackupType::from_letter(
            text(r, 4usize)
                .and_then(|s| s.bytes().next())
                .unwrap_or(b'?'),
        ),
        is_copy_only: bit(r, 5usize).unwrap_or(false),
        first_lsn: big(r, 6usize).map(Lsn),
        last_lsn: big(r, 7usize).map(Lsn),
        checkpoint_lsn: big(r, 8usize).map(Lsn),
        database_backup_lsn: big(r, 9usize).map(Lsn),
        backup_start_date: datetime(r, 10usize),
        backup_finish_date: datetime(r, 11usize),
        backup_size: big(r, 12usize),
        has_backup_checksums: bit(r, 13usize).unwrap_or(false),
        is_damaged: bit(r, 14usize).unwrap_or(false),
    }
}

/// The newest backup set written to `device` (the path SQL Server was given).
pub async fn msdb_backup_for_device(sql: &mut Sql, device: &str) -> Result<Option<MsdbBackup>> {
    let q = format!(
        "SELECT TOP 1 {BACKUPSET_COLUMNS} \
         FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id \
         WHERE mf.physical_device_name = {} ORDER BY bs.backup_set_id DESC",
        quote::string(device)
    );
    let rows = sql.rows(&q).await?;
    Ok(rows.first().map(msdb_backup))
}

/// Every full and log backup (not copy-only) of `database` msdb records as started
/// at or after `since`, oldest first: the ones that move a restore chain, which
/// another tool, or a person, may have taken beside pacsbak.
pub async fn msdb_backups_since(
    sql: &mut Sql,
    database: &str,
    since: PrimitiveDateTime,
) -> Result<Vec<MsdbBackup>> {
    // Newest first, read until `since` is passed; the date is compared here, not in
    // T-SQL, so no date literal format is involved. Five thousand sets are seven
    // weeks of 15-minute logs.
    let q = format!(
        "SELECT TOP 5000 {BACKUPSET_COLUMNS} FROM msdb.dbo.backupset bs \
         WHERE bs.database_name = {} AND bs.type IN ('D', 'L') AND bs.is_copy_only = 0 \
         ORDER BY bs.backup_set_id DESC",
        quote::string(database),
    );
    let mut sets: Vec<MsdbBackup> = Vec::new();
    for r in sql.rows(&q).await? {
        let b = msdb_backup(&r);
        if b.backup_start_date.is_some_and(|t| t < since) {
            break;
        }
        let moves_chain = matches!(
            b.backup_type.native(),
            Some(BackupKind::Full | BackupKind::Log)
        );
        if moves_chain && !b.is_copy_only {
            sets.push(b);
        }
    }
    sets.reverse();
    Ok(sets)
}

/// The newest `limit` backup sets of every database with each file they were
/// written to (one row per file), newest first: what the backup folder should hold.
pub async fn backup_files(sql: &mut Sql, limit: u32) -> Result<Vec<(MsdbBackup, String)>> {
    let q = format!(
        "SELECT TOP {limit} {BACKUPSET_COLUMNS}, mf.physical_device_name FROM msdb.dbo.backupset bs \
         JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id \
         ORDER BY bs.backup_set_id DESC"
    );
    Ok(sql
        .rows(&q)
        .await?
        .iter()
        .map(|r| (msdb_backup(r), text(r, 15usize).unwrap_or_default()))
        .collect())
}

/// The files (device paths, as the server sees them) of a media set, stripe order.
pub async fn media_devices(sql: &mut Sql, media_set_id: i64) -> Result<Vec<String>> {
    let q = format!(
        "SELECT physical_device_name FROM msdb.dbo.backupmediafamily \
         WHERE media_set_id = {media_set_id} ORDER BY family_sequence_number"
    );
    Ok(sql
        .rows(&q)
        .await?
        .iter()
        .filter_map(|r| text(r, 0usize))
        .collect())
}

/// Whether msdb knows a full (not copy-only) backup of `database`, the base a
/// differential needs.
pub async fn has_full_base(sql: &mut Sql, database: &str) -> Result<bool> {
    let q = format!(
        "SELECT COUNT(*) FROM msdb.dbo.backupset WHERE database_name = {} AND type = 'D' AND is_copy_only = 0",
        quote::string(database)
    );
    let rows = sql.rows(&q).await?;
    Ok(rows.first().and_then(|r| int(r, 0usize)).unwrap_or(0) > 0)
}

/// The newest finish date per (database, type letter) in msdb.
pub async fn last_backups(sql: &mut Sql) -> Result<Vec<(String, char, Option<PrimitiveDateTime>)>> {
    let rows = sql
        .rows("SELECT database_name, type, MAX(backup_finish_date) AS last_finish FROM msdb.dbo.backupset GROUP BY database_name, type")
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                text(r, 0usize).unwrap_or_default(),
                text(r, 1usize)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?'),
                datetime(r, 2usize),
            )
        })
        .collect())
}

/// A row of sys.master_files.
#[derive(Debug, Clone, Serialize)]
pub struct MasterFile {
    /// Database id.
    pub database_id: i64,
    /// ROWS or LOG.
    pub type_desc: String,
    /// Logical name.
    pub name: String,
    /// Path on the server.
    pub physical_name: String,
    /// Size in 8 KiB pages.
    pub size_pages: i64,
    /// Growth in pages, or percent.
    pub growth: i64,
    /// Whether growth is a percentage.
    pub is_percent_growth: bool,
}

/// Every database file.
pub async fn master_files(sql: &mut Sql) -> Result<Vec<MasterFile>> {
    let rows = sql
        .rows("SELECT database_id, type_desc, name, physical_name, size, growth, is_percent_growth FROM sys.master_files")
        .await?;
    Ok(rows
        .iter()
        .map(|r| MasterFile {
            database_id: int(r, 0usize).unwrap_or(0),
            type_desc: text(r, 1usize).unwrap_or_default(),
            name: text(r, 2usize).unwrap_or_default(),
            physical_name: text(r, 3usize).unwrap_or_default(),
            size_pages: int(r, 4usize).unwrap_or(0),
            growth: int(r, 5usize).unwrap_or(0),
            is_percent_growth: bit(r, 6usize).unwrap_or(false),
        })
        .collect())
}

/// Log size and use of one database: (total bytes, percent used).
pub async fn log_usage(sql: &mut Sql, database: &str) -> Result<Option<(i64, f64)>> {
    let q = format!(
        "SELECT total_log_size_in_bytes, used_log_space_in_percent FROM {}.sys.dm_db_log_space_usage",
        quote::ident(database)
    );
    let rows = sql.rows(&q).await?;
    Ok(rows
        .first()
        .map(|r| (int(r, 0usize).unwrap_or(0), float(r, 1usize).unwrap_or(0.0))))
}

/// The SQL Server Agent's status_desc (`Running`, `Stopped`), if the server has one.
pub async fn agent_status(sql: &mut Sql) -> Result<Option<String>> {
    let rows = sql
        .rows("SELECT servicename, status_desc FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%'")
        .await?;
    Ok(rows.first().and_then(|r| text(r, 1usize)))
}

/// The server's clock (GETDATE()), for RPO ages and file names.
pub async fn server_now(sql: &mut Sql) -> Result<Option<PrimitiveDateTime>> {
    let rows = sql.rows("SELECT GETDATE()").await?;
    Ok(rows.first().and_then(|r| datetime(r, 0usize)))
}

/// The files of one database with their sizes now (`sys.master_files`): what a
/// restore of its backup will need on disk.
pub async fn database_files(
    sql: &mut Sql,
    database: &str,
) -> Result<Vec<crate::sqlserver::restore::DatabaseFile>> {
    let rows = sql
        .rows(&format!(
            "SELECT name, type_desc, size FROM sys.master_files WHERE database_id = DB_ID({}) ORDER BY file_id",
            quote::string(database)
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| crate::sqlserver::restore::DatabaseFile {
            logical_name: text(r, 0usize).unwrap_or_default(),
            file_type: if text(r, 1usize).is_some_and(|t| t.eq_ignore_ascii_case("LOG")) {
                "L".into()
            } else {
                "D".into()
            },
            // sys.master_files counts 8 KiB pages.
            size: int(r, 2usize)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0)
                * 8192,
        })
        .collect())
}

/// Rows of `table` (`dbo.Study`, or `Study` for dbo) in `database`; read without
/// locks, so a busy PACS is not held up by the count.
pub async fn count_rows(sql: &mut Sql, database: &str, table: &str) -> Result<u64> {
    let rows = sql
        .rows(&format!(
            "SELECT COUNT_BIG(*) FROM {}.{} WITH (NOLOCK)",
            quote::ident(database),
            table_name(table)
        ))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| int(r, 0usize))
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0))
}

/// `schema.table` quoted part by part (`dbo` when no schema is given).
pub fn table_name(table: &str) -> String {
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote::ident(schema), quote::ident(name)),
        None => format!("[dbo].{}", quote::ident(table)),
    }
}
