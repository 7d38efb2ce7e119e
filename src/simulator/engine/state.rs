//! The persistent instance state under the root folder (`instance.json`): databases
//! with their files, LSNs and backup bookkeeping, the simulated clock, the Agent's
//! state and the active faults. Written after every change so a restart finds
//! everything as it was.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A database file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileMeta {
    /// file_id (1 data, 2 log).
    pub file_id: i64,
    /// Logical name.
    pub logical: String,
    /// Physical path.
    pub physical: String,
    /// True for the log file.
    pub is_log: bool,
    /// Growth in pages, or percent when `is_percent_growth`.
    pub growth: i64,
    /// Whether growth is a percentage.
    pub is_percent_growth: bool,
    /// max_size in pages (-1 unlimited).
    pub max_size: i64,
}

/// A log record: LSN, simulated time (unix seconds) and the operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    /// Its LSN.
    pub lsn: i64,
    /// When it was written (simulated unix seconds).
    pub time: i64,
    /// `I\tTable\trow` or `U\tTable\trow`, or `CKPT`.
    pub op: String,
}

/// Where a database in RESTORING state stands in its restore sequence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RestoreProgress {
    /// LastLSN of the last backup applied.
    pub last_lsn: i64,
    /// CheckpointLSN of the full backup restored first.
    pub full_checkpoint_lsn: i64,
    /// The full's backup set GUID (a differential's base).
    pub full_guid: String,
    /// A STOPAT point was reached: no later log applies.
    pub stopped: bool,
}

/// One database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbMeta {
    /// Name.
    pub name: String,
    /// database_id.
    pub database_id: i64,
    /// database_guid.
    pub guid: String,
    /// Recovery fork GUID.
    pub fork_guid: String,
    /// Creation time (simulated unix seconds).
    pub create_date: i64,
    /// ONLINE, RESTORING, OFFLINE, SUSPECT.
    pub state: String,
    /// FULL, SIMPLE, BULK_LOGGED.
    pub recovery_model: String,
    /// Data and log files.
    pub files: Vec<FileMeta>,
    /// Next LSN to assign.
    pub lsn: i64,
    /// LSN of the last checkpoint.
    pub checkpoint_lsn: i64,
    /// Differential base: CheckpointLSN and backup set GUID of the last normal full.
    pub diff_base: Option<(i64, String)>,
    /// LSN where the next log backup starts (the log chain's end); None: no chain.
    pub log_chain_lsn: Option<i64>,
    /// Log space truncation point (bytes before it are reusable).
    pub log_truncated_lsn: i64,
    /// Set while RESTORING.
    pub restore: Option<RestoreProgress>,
    /// Next key of each table (Patient, Study, Series, Image).
    pub next_ids: [i64; 4],
}

impl DbMeta {
    /// The data file.
    pub fn data_file(&self) -> Option<&FileMeta> {
        self.files.iter().find(|f| !f.is_log)
    }

    /// The log file.
    pub fn log_file(&self) -> Option<&FileMeta> {
        self.files.iter().find(|f| f.is_log)
    }
}

/// Faults to inject; see docs/simulator.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Faults {
    /// Disk full when a backup reaches this percentage (3202 then 3013).
    pub disk_full_at: Option<u32>,
    /// Backup paths starting with this prefix cannot be opened (3201).
    pub unreachable_prefix: Option<String>,
    /// Damage the next backup file after writing it.
    pub damage_after_write: bool,
    /// Drop the connection when a backup reaches this percentage.
    pub drop_connection_at: Option<u32>,
    /// Extra delay per page while backing up, in microseconds.
    pub slow_us_per_page: Option<u64>,
    /// Hold backups at this percentage until `SIMCTL RESUME`.
    pub pause_backup_at: Option<u32>,
    /// The cleanup job fails.
    pub cleanup_fails: bool,
    /// The cleanup job succeeds but deletes nothing.
    pub cleanup_noop: bool,
    /// `KILL` is refused with 6102 (a login without ALTER ANY CONNECTION).
    #[serde(default)]
    pub kill_denied: bool,
    /// Each RESTORE that reads a backup takes this much longer, in milliseconds.
    #[serde(default)]
    pub slow_restore_ms: Option<u64>,
    /// A database brought online by RESTORE ... RECOVERY gets a damaged data page
    /// (a storage fault on the staging disk): DBCC CHECKDB finds it.
    #[serde(default)]
    pub corrupt_restore: bool,
    /// xp_fixeddrives reports this many MB free instead of the real free space.
    #[serde(default)]
    pub disk_free_mb: Option<u64>,
}

/// Everything persisted in `instance.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceState {
    /// Databases (user databases; master and msdb are implied).
    pub databases: Vec<DbMeta>,
    /// Next database_id.
    pub next_database_id: i64,
    /// Simulated clock offset from the real clock, in seconds.
    pub clock_offset: i64,
    /// Whether SQL Server Agent runs.
    pub agent_running: bool,
    /// When the services started (simulated unix seconds).
    pub started_at: i64,
    /// Active faults.
    pub faults: Faults,
    /// Seed for the deterministic workload.
    pub workload_seed: u64,
}

impl InstanceState {
    /// The state file under `root`.
    pub fn path(root: &Path) -> PathBuf {
        root.join("instance.json")
    }

    /// Reads it, `Ok(None)` if absent.
    pub fn load(root: &Path) -> std::io::Result<Option<InstanceState>> {
        match std::fs::read(Self::path(root)) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes it atomically.
    pub fn save(&self, root: &Path) -> std::io::Result<()> {
        let path = Self::path(root);
        let tmp = path.with_extension("json.tmp");
        let b = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, b)?;
        std::fs::rename(tmp, path)
    }

    /// A database by name (case-insensitive, as the default collation compares).
    pub fn db(&self, name: &str) -> Option<&DbMeta> {
        self.databases
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// A database by name, mutable.
    pub fn db_mut(&mut self, name: &str) -> Option<&mut DbMeta> {
        self.databases
            .iter_mut()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }
}
