//! EXEC of the procedures the orchestrator calls: msdb.dbo.sp_start_job, which runs
//! the maintenance plan's cleanup (deleting files older than the plan's age, by
//! extension, in its folder, as xp_delete_file does) and records job history; with
//! the Agent-stopped and cleanup faults.

use std::path::Path;

use rusqlite::params;

use crate::simulator::engine::catalog::{CLEANUP_JOB_ID, PLAN_ID, SUBPLAN_ID};
use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::sql::lexer::Tok;
use crate::simulator::sql::{fmt_unix, Parser, SqlError, StmtError};

fn attr(xml: &str, name: &str) -> Option<String> {
    let key = format!("SQLTask:{name}=\"");
    let cleanup = xml.find("DbMaintenanceFileCleanupTask")?;
    let rest = &xml[cleanup..];
    let i = rest.find(&key)? + key.len();
    Some(rest[i..].split('"').next()?.to_string())
}

/// EXEC procedure [args].
pub async fn exec(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let mut p = Parser::new(t);
    p.i = 1;
    let mut parts = vec![p.ident(&ctx.params)?];
    while p.eat_sym(".") {
        if p.peek().is_some_and(|x| x.is_sym(".")) {
            parts.push("dbo".into());
            continue;
        }
        parts.push(p.ident(&ctx.params)?);
    }
    let proc_name = parts.last().cloned().unwrap_or_default();
    let mut args = Vec::new();
    while !p.done() {
        let name = match p.peek() {
            Some(Tok::Var(v)) if p.t.get(p.i + 1).is_some_and(|x| x.is_sym("=")) => {
                p.i += 2;
                Some(v.to_ascii_lowercase())
            }
            _ => None,
        };
        let v = match p.peek() {
            Some(Tok::Num(_)) => p.number(&ctx.params)?.to_string(),
            _ => p.string(&ctx.params)?,
        };
        args.push((name, v));
        if !p.eat_sym(",") {
            break;
        }
    }
    match proc_name.to_ascii_lowercase().as_str() {
        "sp_start_job" => start_job(ctx, &args),
        "sp_update_job" => update_job(ctx, &args),
        "xp_fixeddrives" => Ok(fixed_drives(ctx)),
        _ => Err(SqlError::new(
            2812,
            format!("Could not find stored procedure '{}'.", parts.join(".")),
        )
        .into()),
    }
}

/// `master.dbo.xp_fixeddrives`: one row per drive, `drive` and `MB free`. The
/// simulator has one drive, C, with the free space of the volume holding its
/// folder (or what the `disk_free_mb` fault says).
fn fixed_drives(ctx: &mut Ctx<'_>) -> Outcome {
    use crate::simulator::tds::token::Column;
    use crate::simulator::tds::types::{SqlType, Value};
    let (root, fault) = {
        let inst = ctx.shared.lock();
        (inst.root.clone(), inst.state.faults.disk_free_mb)
    };
    let mb =
        fault.unwrap_or_else(|| crate::jobs::free_space(&root).map_or(0, |b| b / (1024 * 1024)));
    let cols = [
        Column::new("drive", SqlType::Char(1)),
        Column::new("MB free", SqlType::Int),
    ];
    let rows = vec![vec![
        Value::Str("C".into()),
        Value::Int(
            i64::try_from(mb)
                .unwrap_or(i64::MAX)
                .min(i64::from(i32::MAX)),
        ),
    ]];
    ctx.rows(&cols, &rows);
    Outcome {
        count: Some(1),
        error: false,
    }
}

/// `msdb.dbo.sp_update_job @job_name = N'...', @enabled = 0|1`: the one change
/// the audit tests make to a job (others are not simulated).
fn update_job(ctx: &mut Ctx<'_>, args: &[(Option<String>, String)]) -> Result<Outcome, StmtError> {
    let arg = |n: &str| {
        args.iter()
            .find(|(k, _)| k.as_deref() == Some(n))
            .map(|(_, v)| v.clone())
    };
    let name = arg("job_name")
        .or_else(|| arg("job_id"))
        .unwrap_or_default();
    let inst = ctx.shared.lock();
    let changed = match arg("enabled") {
        Some(e) => inst
            .catalog
            .conn
            .execute(
                "UPDATE msdb.sysjobs SET enabled = ?2 WHERE name = ?1 COLLATE NOCASE OR job_id = ?1 COLLATE NOCASE",
                params![name, e.parse::<i64>().unwrap_or(1)],
            )
            .unwrap_or(0),
        None => 1,
    };
    let _ = inst.save();
    drop(inst);
    if changed == 0 {
        return Err(SqlError::new(
            14262,
            format!("The specified @job_name ('{name}') does not exist."),
        )
        .into());
    }
    Ok(Outcome::default())
}

fn start_job(ctx: &mut Ctx<'_>, args: &[(Option<String>, String)]) -> Result<Outcome, StmtError> {
    let job_name = args
        .iter()
        .find(|(n, _)| n.as_deref() == Some("job_name") || n.is_none())
        .map(|(_, v)| v.clone());
    let job_id = args
        .iter()
        .find(|(n, _)| n.as_deref() == Some("job_id"))
        .map(|(_, v)| v.clone());
    let inst = ctx.shared.lock();
    if !inst.state.agent_running {
        return Err(SqlError::new(
            22022,
            "SQLServerAgent is not currently running so it cannot be notified of this action.",
        )
        .into());
    }
    let row: Option<(String, String)> = inst
        .catalog
        .conn
        .query_row(
            "SELECT job_id, name FROM msdb.sysjobs WHERE name = ?1 COLLATE NOCASE OR job_id = ?2 COLLATE NOCASE",
            params![job_name.clone().unwrap_or_default(), job_id.clone().unwrap_or_default()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    let Some((id, name)) = row else {
        let shown = job_name.or(job_id).unwrap_or_default();
        return Err(SqlError::new(
            14262,
            format!("The specified @job_name ('{shown}') does not exist."),
        )
        .into());
    };
    let now = inst.now();
    let now_unix = inst.now_unix();
    let faults = inst.state.faults.clone();
    let (ok, message) = if id.eq_ignore_ascii_case(CLEANUP_JOB_ID) {
        let xml: Vec<u8> = inst
            .catalog
            .conn
            .query_row(
                "SELECT packagedata FROM msdb.sysssispackages WHERE id = ?1",
                params![PLAN_ID],
                |r| r.get(0),
            )
            .unwrap_or_default();
        let xml = String::from_utf8_lossy(&xml).to_string();
        if faults.cleanup_fails {
            (false, "Executed as user: NT Service\\SQLSERVERAGENT. Microsoft (R) SQL Server Execute Package Utility. The package execution failed. xp_delete_file() returned error 2, 'The system cannot find the file specified.'  The step failed.".to_string())
        } else {
            let folder = attr(&xml, "FolderPath").unwrap_or_default();
            let ext = attr(&xml, "FileExtension")
                .unwrap_or_default()
                .trim_start_matches('.')
                .to_ascii_lowercase();
            let age: i64 = attr(&xml, "RemoveOlderThan")
                .and_then(|s| s.parse().ok())
                .unwrap_or(4);
            let unit: i64 = attr(&xml, "TimeUnitsType")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let secs = match unit {
                5 => 3600,
                1 => 7 * 86400,
                2 => 30 * 86400,
                3 => 365 * 86400,
                _ => 86400,
            } * age;
            let cutoff = now_unix - secs;
            let mut deleted = 0;
            if !faults.cleanup_noop {
                if let Ok(rd) = std::fs::read_dir(Path::new(&folder)) {
                    for e in rd.flatten() {
                        let path = e.path();
                        let matches = path
                            .extension()
                            .map(|x| x.to_string_lossy().to_ascii_lowercase() == ext)
                            .unwrap_or(false);
                        let old = e.metadata().ok().and_then(|m| m.modified().ok()).map(|m| {
                            m.duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_secs() as i64)
                                .unwrap_or(0)
                                < cutoff
                        });
                        if path.is_file()
                            && matches
                            && old == Some(true)
                            && std::fs::remove_file(&path).is_ok()
                        {
                            deleted += 1;
                        }
                    }
                }
            }
            tracing::info!(folder, deleted, "simulator: maintenance cleanup ran");
            (true, "Executed as user: NT Service\\SQLSERVERAGENT. Microsoft (R) SQL Server Execute Package Utility. The package executed successfully.  The step succeeded.".to_string())
        }
    } else {
        (
            true,
            "Executed as user: NT Service\\SQLSERVERAGENT. The step succeeded.".to_string(),
        )
    };
    let run_date = now.year() as i64 * 10000 + now.month() as i64 * 100 + now.day() as i64;
    let run_time = now.hour() as i64 * 10000 + now.minute() as i64 * 100 + now.second() as i64;
    let c = &inst.catalog.conn;
    let status = i64::from(ok);
    let _ = c.execute(
        "INSERT INTO msdb.sysjobhistory(job_id, step_id, step_name, sql_message_id, sql_severity, message, run_status, run_date, run_time, run_duration, operator_id_emailed, retries_attempted, server)
         VALUES (?1, 1, 'Subplan_1', 0, 0, ?2, ?3, ?4, ?5, 1, 0, 0, 'PACSSIM')",
        params![id, message, status, run_date, run_time],
    );
    let outcome_msg = if ok {
        "The job succeeded.  The Job was invoked by User sa.  The last step to run was step 1 (Subplan_1)."
    } else {
        "The job failed.  The Job was invoked by User sa.  The last step to run was step 1 (Subplan_1)."
    };
    let _ = c.execute(
        "INSERT INTO msdb.sysjobhistory(job_id, step_id, step_name, sql_message_id, sql_severity, message, run_status, run_date, run_time, run_duration, operator_id_emailed, retries_attempted, server)
         VALUES (?1, 0, '(Job outcome)', 0, 0, ?2, ?3, ?4, ?5, 1, 0, 0, 'PACSSIM')",
        params![id, outcome_msg, status, run_date, run_time],
    );
    let _ = c.execute(
        "UPDATE msdb.sysjobsteps SET last_run_outcome = ?2, last_run_date = ?3, last_run_time = ?4, last_run_duration = 1 WHERE job_id = ?1",
        params![id, status, run_date, run_time],
    );
    if id.eq_ignore_ascii_case(CLEANUP_JOB_ID) {
        let _ = c.execute(
            "INSERT INTO msdb.sysmaintplan_log(task_detail_id, plan_id, subplan_id, start_time, end_time, succeeded, logged_remotely, source_server_name, plan_name, subplan_name)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, 0, 'PACSSIM', 'Nightly PACS maintenance', 'Subplan_1')",
            params![crate::simulator::engine::new_guid(), PLAN_ID, SUBPLAN_ID, fmt_unix(now_unix), status],
        );
    }
    drop(inst);
    ctx.info0(0, &format!("Job '{name}' started successfully."));
    Ok(Outcome::default())
}
