//! The RESTORE statements of a planned chain: FILELISTONLY to learn the logical
//! files, MOVE clauses that relocate them, then full, differential and logs WITH
//! NORECOVERY (the last log with STOPAT) and a final RECOVERY. One place writes
//! them, so `restore db run`, `restore db fetch` (which prints them for a DBA) and
//! the drills say the same T-SQL.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::conn::{big, text, Sql};
use super::quote;
use crate::bakfile::plan::RestorePlan;
use crate::error::Result;
use crate::records::BackupKind;

/// One database file a backup restores (a FILELISTONLY row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseFile {
    /// The logical name MOVE names.
    pub logical_name: String,
    /// `D` data, `L` log (FILELISTONLY's Type).
    pub file_type: String,
    /// Bytes the restore creates (FILELISTONLY's Size).
    pub size: u64,
}

impl DatabaseFile {
    /// Whether it is the transaction log.
    pub fn is_log(&self) -> bool {
        self.file_type.eq_ignore_ascii_case("L")
    }
}

/// RESTORE FILELISTONLY of the set at `position` on `devices` (server paths).
pub async fn file_list(
    sql: &mut Sql,
    devices: &[String],
    position: u16,
) -> Result<Vec<DatabaseFile>> {
    let rows = sql
        .rows(&format!(
            "RESTORE FILELISTONLY FROM {} WITH FILE = {position}",
            disks(devices)
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| DatabaseFile {
            logical_name: text(r, "LogicalName").unwrap_or_default(),
            file_type: text(r, "Type").unwrap_or_else(|| "D".into()),
            size: big(r, "Size")
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
        })
        .collect())
}

/// `DISK = N'a', DISK = N'b'`.
pub fn disks(devices: &[String]) -> String {
    devices
        .iter()
        .map(|d| format!("DISK = {}", quote::string(d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the files of database `as_name` go: the first data file as
/// `NAME.mdf`, further ones `NAME_2.ndf`..., logs `NAME_log.ldf`, `NAME_log2.ldf`.
pub fn move_clauses(
    files: &[DatabaseFile],
    as_name: &str,
    data_folder: &str,
    log_folder: &str,
) -> Vec<String> {
    let base = file_safe(as_name);
    let (mut data, mut logs) = (0, 0);
    files
        .iter()
        .map(|f| {
            let target = if f.is_log() {
                logs += 1;
                let n = if logs > 1 {
                    logs.to_string()
                } else {
                    String::new()
                };
                crate::policy::server_join(log_folder, &format!("{base}_log{n}.ldf"))
            } else {
                data += 1;
                let name = if data > 1 {
                    format!("{base}_{data}.ndf")
                } else {
                    format!("{base}.mdf")
                };
                crate::policy::server_join(data_folder, &name)
            };
            format!(
                "MOVE {} TO {}",
                quote::string(&f.logical_name),
                quote::string(&target)
            )
        })
        .collect()
}

/// One statement of a restore sequence.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreStatement {
    /// What it restores; `None` for the final RECOVERY.
    pub kind: Option<BackupKind>,
    /// The T-SQL.
    pub sql: String,
}

/// The statements restoring `plan` as `as_name`; `device_of` maps each planned
/// source (`SNAPSHOT:FILE`) to the path SQL Server reads it from.
pub fn statements(
    plan: &RestorePlan,
    device_of: &BTreeMap<String, String>,
    as_name: &str,
    moves: &[String],
    replace: bool,
) -> Vec<RestoreStatement> {
    let db = quote::ident(as_name);
    let devices = |files: &[String]| -> String {
        let paths: Vec<String> = files
            .iter()
            .map(|f| device_of.get(f).cloned().unwrap_or_else(|| f.clone()))
            .collect();
        disks(&paths)
    };
    let mut out = Vec::new();
    for s in &plan.steps {
        let mut with = vec![format!("FILE = {}", s.position)];
        let verb = match s.kind {
            BackupKind::Full => {
                with.extend(moves.iter().cloned());
                with.push("CHECKSUM".into());
                if replace {
                    with.push("REPLACE".into());
                }
                "DATABASE"
            }
            BackupKind::Diff => "DATABASE",
            BackupKind::Log => "LOG",
        };
        with.push("NORECOVERY".into());
        if let (BackupKind::Log, Some(at)) = (s.kind, s.stop_at) {
            with.push(format!(
                "STOPAT = {}",
                quote::string(&at.to_string().replace(' ', "T"))
            ));
        }
        out.push(RestoreStatement {
            kind: Some(s.kind),
            sql: format!(
                "RESTORE {verb} {db} FROM {} WITH {}",
                devices(&s.files),
                with.join(", ")
            ),
        });
    }
    out.push(RestoreStatement {
        kind: None,
        sql: format!("RESTORE DATABASE {db} WITH RECOVERY"),
    });
    out
}

/// A name usable in a file name: letters, digits, `-` and `_`; anything else `_`.
pub fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_name_every_file_after_the_new_database() {
        let f = |n: &str, t: &str| DatabaseFile {
            logical_name: n.into(),
            file_type: t.into(),
            size: 8192,
        };
        let m = move_clauses(
            &[f("PACS", "D"), f("PACS_log", "L"), f("PACS_img", "D")],
            "PACS_drill_20261125",
            "E:\\drill",
            "/var/opt/mssql/log",
        );
        assert_eq!(
            m,
            [
                "MOVE N'PACS' TO N'E:\\drill\\PACS_drill_20261125.mdf'",
                "MOVE N'PACS_log' TO N'/var/opt/mssql/log/PACS_drill_20261125_log.ldf'",
                "MOVE N'PACS_img' TO N'E:\\drill\\PACS_drill_20261125_2.ndf'",
            ]
        );
        assert_eq!(file_safe("a b]c"), "a_b_c");
    }
}
