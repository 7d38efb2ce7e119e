//! BACKUP and RESTORE VERIFYONLY statements, run with progress polled from a second
//! connection and a stall detector instead of a command timeout.
//!
//! tiberius does not surface the INFO messages ("10 percent processed.") SQL Server
//! sends while a backup runs, so a second connection polls
//! `sys.dm_exec_requests.percent_complete` for the backup connection's `@@SPID`.
//! The backup connection has no command timeout (a large BACKUP may send nothing for
//! minutes); when `percent_complete` does not move for the stall limit, the run is
//! abandoned with a `KILL` from the monitoring connection and reported as stalled.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::conn::{float, Instance, Sql};
use super::quote;
use crate::error::{Error, ErrorKind, Result};
use crate::records::BackupKind;

/// One BACKUP statement.
#[derive(Debug, Clone)]
pub struct BackupStatement {
    /// Database.
    pub database: String,
    /// Kind.
    pub kind: BackupKind,
    /// Files as SQL Server sees them; several stripe the backup.
    pub files: Vec<String>,
    /// WITH COMPRESSION.
    pub compression: bool,
    /// WITH COPY_ONLY (ignored by SQL Server for a differential).
    pub copy_only: bool,
    /// DESCRIPTION.
    pub description: Option<String>,
}

impl BackupStatement {
    /// The T-SQL; always WITH CHECKSUM and INIT (a new file per backup).
    pub fn sql(&self) -> String {
        let what = match self.kind {
            BackupKind::Log => "LOG",
            _ => "DATABASE",
        };
        let disks: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("DISK = {}", quote::string(f)))
            .collect();
        let mut with = vec!["CHECKSUM".to_string(), "INIT".into(), "FORMAT".into()];
        if self.kind == BackupKind::Diff {
            with.push("DIFFERENTIAL".into());
        }
        if self.compression {
            with.push("COMPRESSION".into());
        }
        if self.copy_only && self.kind != BackupKind::Diff {
            with.push("COPY_ONLY".into());
        }
        if let Some(d) = &self.description {
            with.push(format!("DESCRIPTION = {}", quote::string(d)));
        }
        with.push("STATS = 10".into());
        format!(
            "BACKUP {what} {} TO {} WITH {}",
            quote::ident(&self.database),
            disks.join(", "),
            with.join(", ")
        )
    }
}

/// `RESTORE VERIFYONLY FROM DISK = ... WITH CHECKSUM`.
pub fn verifyonly_sql(files: &[String]) -> String {
    let disks: Vec<String> = files
        .iter()
        .map(|f| format!("DISK = {}", quote::string(f)))
        .collect();
    format!("RESTORE VERIFYONLY FROM {} WITH CHECKSUM", disks.join(", "))
}

/// Timing of a long statement.
#[derive(Debug, Clone, Serialize)]
pub struct LongRun {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Highest percent_complete seen (0 when the statement was too quick to see).
    pub last_percent: f64,
}

/// Runs a long statement (BACKUP, RESTORE) on its own connection while a second one
/// polls its progress; `progress` gets each new percentage. Fails with a stall error
/// when the percentage does not move for `stall`, and with a cancelled one when
/// `cancel` fires (the daemon stopping, a job's time-out): either way the
/// statement's session is ended with `KILL`, so nothing keeps writing behind us.
pub async fn run_long(
    instance: &Instance,
    database: &str,
    sql: &str,
    stall: Duration,
    cancel: &CancellationToken,
    progress: &mut (dyn FnMut(f64) + Send),
) -> Result<LongRun> {
    let span = info_span!("sql_statement", server = %instance.name, database);
    async {
        let mut main = instance.connect().await?;
        let spid = main.spid().await?;
        let mut mon = instance.connect().await?;
        let started = Instant::now();
        let poll = format!(
            "SELECT percent_complete, estimated_completion_time, command FROM sys.dm_exec_requests WHERE session_id = {spid}"
        );
        let fut = main.exec(sql);
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = 0.0f64;
        let mut last_change = Instant::now();
        loop {
            tokio::select! {
                r = &mut fut => {
                    return match r {
                        Ok(()) => {
                            progress(100.0);
                            info!(seconds = started.elapsed().as_secs_f64(), "statement finished");
                            Ok(LongRun { seconds: started.elapsed().as_secs_f64(), last_percent: last })
                        }
                        Err(e) => Err(e.with("database", database)),
                    };
                }
                _ = cancel.cancelled() => {
                    let why = Ended::Cancelled;
                    return Err(kill(instance, database, spid, why, &mut mon).await);
                }
                _ = tick.tick() => {
                    match mon.rows(&poll).await {
                        Ok(rows) => {
                            if let Some(p) = rows.first().and_then(|r| float(r, 0usize)) {
                                if p > last + 0.001 {
                                    last = p;
                                    last_change = Instant::now();
                                    progress(p);
                                }
                            }
                        }
                        Err(e) => warn!(error = %e, "progress poll failed"),
                    }
                    if last_change.elapsed() >= stall {
                        let why = Ended::Stalled { last, stall };
                        return Err(kill(instance, database, spid, why, &mut mon).await);
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Why a long statement is being ended.
enum Ended {
    /// No progress for `stall`, last seen at `last` percent.
    Stalled { last: f64, stall: Duration },
    /// The job was cancelled (shutdown, time-out).
    Cancelled,
}

/// The error for a statement ended early, after trying to `KILL` its session. What
/// the error says about the session is what KILL answered: a refused KILL leaves the
/// statement running on the server, and the engineer must know that.
async fn kill(instance: &Instance, database: &str, spid: i64, why: Ended, mon: &mut Sql) -> Error {
    let (kind, what, then) = match why {
        Ended::Stalled { last, stall } => (
            ErrorKind::SqlServer,
            format!(
                "the statement stalled: no progress for {} s at {last:.0} percent",
                stall.as_secs()
            ),
            "Check the backup device, then run again",
        ),
        Ended::Cancelled => (
            ErrorKind::Cancelled,
            "the job was stopped (pacsbak is stopping, or the job ran past its time-out)"
                .to_string(),
            "Nothing of it was stored; it runs again at its next schedule",
        ),
    };
    // A KILL that does not answer must not hold a stop past its promise.
    let killed = tokio::time::timeout(Duration::from_secs(5), mon.exec(&format!("KILL {spid}")))
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::SqlServer,
                "KILL did not answer within 5 s",
            ))
        });
    let err = match killed {
        Ok(()) => Error::new(
            kind,
            format!("{what}; it was killed (session {spid}). {then}"),
        ),
        Err(kill) => {
            let number = kill.sql_error();
            let e = Error::new(
                kind,
                format!(
                    "{what}; KILL {spid} failed ({}), so the statement may still be running on the server: end session {spid} there (KILL {spid} as a sysadmin) before running again",
                    kill.message()
                ),
            );
            let e = e.with("still running", "maybe");
            match number {
                Some(n) => e.with_sql_error(n),
                None => e,
            }
        }
    };
    err.with("server", &instance.name)
        .with("database", database)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_and_always_checksum() {
        let s = BackupStatement {
            database: "PA]CS".into(),
            kind: BackupKind::Diff,
            files: vec!["E:\\b\\it's.bak".into(), "F:\\b\\2.bak".into()],
            compression: true,
            copy_only: true,
            description: None,
        };
        assert_eq!(
            s.sql(),
            "BACKUP DATABASE [PA]]CS] TO DISK = N'E:\\b\\it''s.bak', DISK = N'F:\\b\\2.bak' WITH CHECKSUM, INIT, FORMAT, DIFFERENTIAL, COMPRESSION, STATS = 10"
        );
        let l = BackupStatement {
            kind: BackupKind::Log,
            copy_only: true,
            compression: false,
            ..s
        };
        assert!(l.sql().starts_with("BACKUP LOG [PA]]CS]"));
        assert!(l.sql().contains("COPY_ONLY"));
        assert_eq!(
            verifyonly_sql(&["a'b".into()]),
            "RESTORE VERIFYONLY FROM DISK = N'a''b' WITH CHECKSUM"
        );
    }
}
