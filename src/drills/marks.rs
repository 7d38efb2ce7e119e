//! What a drill created, remembered so that only that is ever dropped.
//!
//! Before its first RESTORE a drill writes a mark (a small JSON file beside the
//! journal): the staging server's address, the database name, and the server's
//! clock just before the restore. After the first RESTORE it adds the database's
//! id and create_date as the server reports them. A database is dropped by a drill
//! or by `drill cleanup` only when a mark names it and the server still shows that
//! database: the same id and create_date, or (when the drill was killed before it
//! could add them) a create_date no older than the mark's clock reading. A database
//! created by anyone else is never touched, whatever its name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{Error, ErrorKind, Result};
use crate::sqlserver::conn::{datetime, int, text};
use crate::sqlserver::{quote, Instance};

/// The mark of one drill database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillMark {
    /// The restore test that created it.
    pub drill: String,
    /// The staging instance's name in reports.
    pub instance: String,
    /// Where the staging instance listens (`host:port`): which server the mark is of.
    pub address: String,
    /// The drill database.
    pub database: String,
    /// The server's clock before the first RESTORE (`YYYY-MM-DD HH:MM:SS`).
    pub since: String,
    /// sys.databases' database_id after the first RESTORE.
    #[serde(default)]
    pub database_id: Option<i64>,
    /// sys.databases' create_date after the first RESTORE.
    #[serde(default)]
    pub create_date: Option<String>,
    /// The fetched backup files' folder, removed with the database.
    #[serde(default)]
    pub fetch_folder: Option<PathBuf>,
    /// The drill's process: while it runs, its mark is not a leftover.
    #[serde(default)]
    pub pid: u32,
    /// When that process started (seconds since 1970), so a reused pid is not it.
    #[serde(default)]
    pub process_started: u64,
    /// The machine it runs on.
    #[serde(default)]
    pub host: String,
}

/// This process: (pid, start time, host name).
pub fn this_process() -> (u32, u64, String) {
    let pid = std::process::id();
    let started = process_start(pid).unwrap_or(0);
    let host = sysinfo::System::host_name().unwrap_or_default();
    (pid, started, host)
}

fn process_start(pid: u32) -> Option<u64> {
    let pid = sysinfo::Pid::from_u32(pid);
    let mut sys = sysinfo::System::new();
    sys.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    sys.process(pid).map(|p| p.start_time())
}

/// The folder of marks: `drill-marks/` beside the journal.
pub fn marks_dir(journal_path: &Path) -> PathBuf {
    journal_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join("drill-marks")
}

impl DrillMark {
    fn file_name(&self) -> String {
        let safe = |s: &str| crate::sqlserver::restore::file_safe(s);
        format!("{}__{}.json", safe(&self.address), safe(&self.database))
    }

    /// Writes (or rewrites) the mark, synced, before the server is touched.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(self.file_name());
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Removes the mark (the database it names is gone, or handed over).
    pub fn remove(&self, dir: &Path) -> Result<()> {
        let path = dir.join(self.file_name());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Whether the drill that wrote the mark still runs (on this machine; a mark
    /// of another machine's drill is taken as running: that machine cleans it).
    pub fn owner_running(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        let host = sysinfo::System::host_name().unwrap_or_default();
        if !self.host.is_empty() && self.host != host {
            return true;
        }
        process_start(self.pid).is_some_and(|t| t == self.process_started)
    }

    /// Every mark in `dir`.
    pub fn load_all(dir: &Path) -> Result<Vec<DrillMark>> {
        let mut out = Vec::new();
        for p in crate::config::files_with_extension(dir, "json")? {
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            let mark: DrillMark = serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Format,
                    format!("drill mark {} cannot be read: {e}", p.display()),
                )
                .with("file", p.display())
            })?;
            out.push(mark);
        }
        out.sort_by(|a, b| a.database.cmp(&b.database));
        Ok(out)
    }
}

/// What the server shows of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// sys.databases' database_id.
    pub id: i64,
    /// Its create_date (`YYYY-MM-DD HH:MM:SS`).
    pub created: String,
    /// Its state_desc (`ONLINE`, `RESTORING`...).
    pub state: String,
}

/// What the server shows of `database`, if it exists.
pub async fn database_identity(instance: &Instance, database: &str) -> Result<Option<Shown>> {
    let mut sql = instance.connect().await?;
    let rows = sql
        .rows(&format!(
            "SELECT database_id, create_date, state_desc FROM sys.databases WHERE name = {}",
            quote::string(database)
        ))
        .await?;
    Ok(rows.first().map(|r| Shown {
        id: int(r, 0usize).unwrap_or(0),
        created: datetime(r, 1usize)
            .map(fmt_time)
            .or_else(|| text(r, 1usize))
            .unwrap_or_default(),
        state: text(r, 2usize).unwrap_or_default(),
    }))
}

/// `YYYY-MM-DD HH:MM:SS`, which sorts as time does (SQL Server's own form).
pub fn fmt_time(t: time::PrimitiveDateTime) -> String {
    crate::bakfile::MtfDate::from_datetime(t).to_string()
}

/// Whether the database the server shows is the one `mark` describes.
pub fn is_marked(mark: &DrillMark, shown: &Shown) -> bool {
    match (&mark.database_id, &mark.create_date) {
        (Some(id), Some(created)) => *id == shown.id && *created == shown.created,
        // Stopped before the identity was written, so inside its first RESTORE: a
        // database still RESTORING, created after the drill's clock reading taken
        // just before that RESTORE, when the name did not exist (the drill checked).
        // Anyone else's database of that name would be online, or older.
        _ => shown.state.eq_ignore_ascii_case("RESTORING") && shown.created >= mark.since,
    }
}

/// What cleaning up one mark did.
#[derive(Debug, Clone, Serialize)]
pub struct Cleaned {
    /// The database.
    pub database: String,
    /// The staging instance.
    pub instance: String,
    /// Dropped now.
    pub dropped: bool,
    /// In words: dropped, already gone, or left because it is not the drill's.
    pub detail: String,
}

/// Drops the database `mark` names if the server still shows that very database,
/// removes the fetched files, and forgets the mark. A database that is not the
/// one marked is left alone and said so (the mark is forgotten: it can never
/// match again).
pub async fn clean(instance: &Instance, mark: &DrillMark, dir: &Path) -> Result<Cleaned> {
    let shown = database_identity(instance, &mark.database).await?;
    let (dropped, detail) = match shown {
        None => (false, "already gone".to_string()),
        Some(s) if is_marked(mark, &s) => {
            let mut sql = instance.connect().await?;
            let db = quote::ident(&mark.database);
            // A session left in it (a DBA looking, a probe's connection closing)
            // would fail the DROP with 3702. A database still RESTORING (a drill
            // killed mid-restore) takes no ALTER and has no sessions: dropped as it is.
            if s.state.eq_ignore_ascii_case("ONLINE") {
                sql.exec(&format!(
                    "ALTER DATABASE {db} SET SINGLE_USER WITH ROLLBACK IMMEDIATE"
                ))
                .await
                .map_err(|e| e.with("database", &mark.database))?;
            }
            sql.exec(&format!("DROP DATABASE {db}"))
                .await
                .map_err(|e| e.with("database", &mark.database))?;
            info!(database = %mark.database, server = %mark.instance, "drill database dropped");
            (true, "dropped".to_string())
        }
        Some(s) => {
            warn!(database = %mark.database, "a database of that name exists but the drill did not create it: left alone");
            (
                false,
                format!(
                    "left alone: database_id {} created {} ({}) is not the one the drill created (marked {}): someone else made it",
                    s.id,
                    s.created,
                    s.state,
                    mark.create_date.as_deref().unwrap_or(&mark.since)
                ),
            )
        }
    };
    if let Some(folder) = &mark.fetch_folder {
        match std::fs::remove_dir_all(folder) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(folder, e)),
        }
    }
    mark.remove(dir)?;
    Ok(Cleaned {
        database: mark.database.clone(),
        instance: mark.instance.clone(),
        dropped,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(id: Option<i64>) -> DrillMark {
        DrillMark {
            drill: "d".into(),
            instance: "S".into(),
            address: "127.0.0.1:1433".into(),
            database: "PACS_drill_20261125".into(),
            since: "2026-11-25 03:00:00".into(),
            database_id: id,
            create_date: id.map(|_| "2026-11-25 03:00:05".into()),
            fetch_folder: None,
            pid: 0,
            process_started: 0,
            host: String::new(),
        }
    }

    fn shown(id: i64, created: &str, state: &str) -> Shown {
        Shown {
            id,
            created: created.into(),
            state: state.into(),
        }
    }

    #[test]
    fn only_the_database_the_drill_created_is_its_own() {
        let with_id = mark(Some(7));
        assert!(is_marked(
            &with_id,
            &shown(7, "2026-11-25 03:00:05", "ONLINE")
        ));
        // Same name, recreated by someone else: another id or create_date.
        assert!(!is_marked(
            &with_id,
            &shown(8, "2026-11-25 03:00:05", "ONLINE")
        ));
        assert!(!is_marked(
            &with_id,
            &shown(7, "2026-11-25 04:00:00", "ONLINE")
        ));
        // Killed inside the first RESTORE: a RESTORING database made after the
        // clock reading is the drill's; an online one, or an older one, is not.
        let no_id = mark(None);
        assert!(is_marked(
            &no_id,
            &shown(9, "2026-11-25 03:00:01", "RESTORING")
        ));
        assert!(!is_marked(
            &no_id,
            &shown(9, "2026-11-25 03:00:01", "ONLINE")
        ));
        assert!(!is_marked(
            &no_id,
            &shown(9, "2026-11-25 02:59:59", "RESTORING")
        ));
        // A mark of a running process is not a leftover; pid 0 never runs.
        let (pid, started, host) = this_process();
        let running = DrillMark {
            pid,
            process_started: started,
            host,
            ..mark(None)
        };
        assert!(running.owner_running());
        assert!(!no_id.owner_running());
    }
}
