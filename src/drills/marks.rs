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

    /// Every mark in `dir`.
    pub fn load_all(dir: &Path) -> Result<Vec<DrillMark>> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut out = Vec::new();
        for item in rd {
            let p = item.map_err(|e| Error::io(dir, e))?.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
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

/// What the server shows of a database: (database_id, create_date).
pub async fn database_identity(
    instance: &Instance,
    database: &str,
) -> Result<Option<(i64, String)>> {
    let mut sql = instance.connect().await?;
    let rows = sql
        .rows(&format!(
            "SELECT database_id, create_date, name FROM sys.databases WHERE name = {}",
            quote::string(database)
        ))
        .await?;
    Ok(rows.first().map(|r| {
        (
            int(r, 0usize).unwrap_or(0),
            datetime(r, 1usize)
                .map(fmt_time)
                .or_else(|| text(r, 1usize))
                .unwrap_or_default(),
        )
    }))
}

/// `YYYY-MM-DD HH:MM:SS`, which sorts as time does (SQL Server's own form).
pub fn fmt_time(t: time::PrimitiveDateTime) -> String {
    crate::bakfile::MtfDate::from_datetime(t).to_string()
}

/// Whether the database the server shows is the one `mark` describes.
pub fn is_marked(mark: &DrillMark, shown: &(i64, String)) -> bool {
    match (&mark.database_id, &mark.create_date) {
        (Some(id), Some(created)) => *id == shown.0 && *created == shown.1,
        // Killed before the identity was written: created after the drill's clock
        // reading (the name did not exist then: the drill checked).
        _ => shown.1 >= mark.since,
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
            // A drill killed mid-restore leaves it RESTORING; DROP takes it as it is.
            sql.exec(&format!("DROP DATABASE {}", quote::ident(&mark.database)))
                .await
                .map_err(|e| e.with("database", &mark.database))?;
            info!(database = %mark.database, server = %mark.instance, "drill database dropped");
            (true, "dropped".to_string())
        }
        Some((id, created)) => {
            warn!(database = %mark.database, "a database of that name exists but the drill did not create it: left alone");
            (
                false,
                format!(
                    "left alone: database_id {id} created {created} is not the one the drill created (marked {}): someone else made it",
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
