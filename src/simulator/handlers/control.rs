//! SIMCTL, the simulator's own control statement (documented in docs/simulator.md):
//! advance simulated time and workload, set and clear faults, resume a paused
//! backup, start and stop the Agent. A real SQL Server answers it with error 102.

use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::sql::lexer::Tok;
use crate::simulator::sql::{Parser, SqlError, StmtError};

/// Runs a SIMCTL statement.
pub fn run(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let mut p = Parser::new(t);
    p.i = 1;
    let verb = p
        .peek()
        .and_then(|x| x.ident())
        .map(|s| s.to_ascii_uppercase())
        .ok_or_else(|| SqlError::near(p.peek()))?;
    p.i += 1;
    let params = ctx.params.clone();
    let mut inst = ctx.shared.lock();
    let msg = match verb.as_str() {
        "ADVANCE" => {
            let mut minutes = 60;
            let mut images = None;
            while !p.done() {
                let k = p
                    .peek()
                    .and_then(|x| x.ident())
                    .map(|s| s.to_ascii_uppercase())
                    .ok_or_else(|| SqlError::near(p.peek()))?;
                p.i += 1;
                p.expect_sym("=")?;
                let v = p.number(&params)?;
                match k.as_str() {
                    "MINUTES" => minutes = v,
                    "HOURS" => minutes = v * 60,
                    "DAYS" => minutes = v * 1440,
                    "IMAGES" => images = Some(v.max(0) as usize),
                    _ => return Err(SqlError::syntax(&k).into()),
                }
                p.eat_sym(",");
            }
            inst.advance(minutes, images)
                .map_err(|e| SqlError::new(50000, e.to_string()))?;
            format!("Simulated time advanced by {minutes} minutes.")
        }
        "FAULT" => {
            let name = p
                .peek()
                .and_then(|x| x.ident())
                .map(|s| s.to_ascii_lowercase())
                .ok_or_else(|| SqlError::near(p.peek()))?;
            p.i += 1;
            let off = p.eat_kw("OFF");
            p.eat_sym("=");
            p.eat_kw("AT");
            let num = |p: &mut Parser| -> Result<Option<u32>, SqlError> {
                if p.done() {
                    Ok(Some(50))
                } else {
                    Ok(Some(p.number(&params)?.clamp(0, 100) as u32))
                }
            };
            let f = &mut inst.state.faults;
            match name.as_str() {
                "disk_full" => f.disk_full_at = if off { None } else { num(&mut p)? },
                "drop_connection" => f.drop_connection_at = if off { None } else { num(&mut p)? },
                "pause_backup" => f.pause_backup_at = if off { None } else { num(&mut p)? },
                "slow_backup" => {
                    f.slow_us_per_page = if off {
                        None
                    } else {
                        Some(if p.done() {
                            2000
                        } else {
                            p.number(&params)?.max(0) as u64
                        })
                    }
                }
                "unreachable_path" => {
                    f.unreachable_prefix = if off { None } else { Some(p.string(&params)?) }
                }
                "damage_after_write" => f.damage_after_write = !off,
                "cleanup_fails" => f.cleanup_fails = !off,
                "cleanup_noop" => f.cleanup_noop = !off,
                "kill_denied" => f.kill_denied = !off,
                "slow_restore" => {
                    f.slow_restore_ms = if off {
                        None
                    } else {
                        Some(if p.done() {
                            1000
                        } else {
                            p.number(&params)?.max(0) as u64
                        })
                    }
                }
                "corrupt_restore" => f.corrupt_restore = !off,
                "disk_free_mb" => {
                    f.disk_free_mb = if off {
                        None
                    } else {
                        Some(p.number(&params)?.max(0) as u64)
                    }
                }
                "agent_stopped" => inst.state.agent_running = off,
                _ => {
                    return Err(
                        SqlError::new(50000, format!("SIMCTL: unknown fault '{name}'")).into(),
                    )
                }
            }
            format!("Fault {name} {}.", if off { "cleared" } else { "set" })
        }
        "CLEANUP" => {
            // An administrator editing the plan's Maintenance Cleanup Task:
            // SIMCTL CLEANUP FOLDER = 'E:\x', AGE = 4, UNIT = 0, EXT = 'bak'
            let xml: Vec<u8> = inst
                .catalog
                .conn
                .query_row(
                    "SELECT packagedata FROM msdb.sysssispackages WHERE id = ?1",
                    rusqlite::params![crate::simulator::engine::catalog::PLAN_ID],
                    |r| r.get(0),
                )
                .map_err(|e| SqlError::new(50000, e.to_string()))?;
            let xml = String::from_utf8_lossy(&xml).to_string();
            let attr = |name: &str| -> String {
                let key = format!("SQLTask:{name}=\"");
                xml.rfind(&key)
                    .and_then(|i| xml[i + key.len()..].split('"').next())
                    .unwrap_or_default()
                    .to_string()
            };
            let (mut folder, mut ext) = (attr("FolderPath"), attr("FileExtension"));
            let mut age: i64 = attr("RemoveOlderThan").parse().unwrap_or(4);
            let mut unit: i64 = attr("TimeUnitsType").parse().unwrap_or(0);
            while !p.done() {
                let k = p
                    .peek()
                    .and_then(|x| x.ident())
                    .map(|s| s.to_ascii_uppercase())
                    .ok_or_else(|| SqlError::near(p.peek()))?;
                p.i += 1;
                p.expect_sym("=")?;
                match k.as_str() {
                    "FOLDER" => folder = p.string(&params)?,
                    "EXT" => ext = p.string(&params)?,
                    "AGE" => age = p.number(&params)?,
                    "UNIT" => unit = p.number(&params)?,
                    _ => return Err(SqlError::syntax(&k).into()),
                }
                p.eat_sym(",");
            }
            let new =
                crate::simulator::engine::catalog::cleanup_package_xml(&folder, &ext, age, unit);
            inst.catalog
                .conn
                .execute(
                    "UPDATE msdb.sysssispackages SET packagedata = ?2 WHERE id = ?1",
                    rusqlite::params![crate::simulator::engine::catalog::PLAN_ID, new.into_bytes()],
                )
                .map_err(|e| SqlError::new(50000, e.to_string()))?;
            format!("Maintenance Cleanup Task now deletes *.{ext} older than {age} (unit {unit}) in {folder}.")
        }
        "CLEAR" => {
            inst.state.faults = Default::default();
            inst.state.agent_running = true;
            "All faults cleared.".to_string()
        }
        "RESUME" => {
            inst.state.faults.pause_backup_at = None;
            ctx.shared.resume.notify_waiters();
            "Paused backups resumed.".to_string()
        }
        "AGENT" => {
            let start = p.eat_kw("START");
            if !start && !p.eat_kw("STOP") {
                return Err(SqlError::near(p.peek()).into());
            }
            inst.state.agent_running = start;
            format!(
                "SQL Server Agent {}.",
                if start { "started" } else { "stopped" }
            )
        }
        _ => return Err(SqlError::syntax(&verb).into()),
    };
    let _ = inst.save();
    drop(inst);
    ctx.info0(0, &msg);
    Ok(Outcome::default())
}
