//! Maintenance plans as msdb stores them: each Maintenance Cleanup Task's folder,
//! extension and age (from the plan's package XML in `sysssispackages`), and the
//! Agent jobs that run the plan's subplans with their schedules and last outcome
//! (`sysmaintplan_subplans`, `sysjobs`, `sysjobschedules`, `sysjobhistory`).
//! Read by `retention audit`; the facts are in ../shared/spec/sqlserver.md.

use serde::Serialize;
use time::PrimitiveDateTime;

use super::conn::{bit, bytes, int, text};
use super::Sql;
use crate::error::Result;

/// One Maintenance Cleanup Task of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupTask {
    /// The plan's name.
    pub plan: String,
    /// The task's name in the plan.
    pub task: String,
    /// The folder it deletes in.
    pub folder: String,
    /// The extension it deletes (without the dot).
    pub extension: String,
    /// Whether it deletes by age (`AgeBased`).
    pub age_based: bool,
    /// Files older than this many seconds are deleted (`RemoveOlderThan` in its
    /// `TimeUnitsType`); `None` when the unit is not one SQL Server documents.
    pub older_than_seconds: Option<i64>,
    /// The age as the plan shows it (`4 days`).
    pub older_than: String,
    /// First-level subfolders too.
    pub subfolders: bool,
    /// The Agent jobs of the plan's subplans.
    pub jobs: Vec<AgentJob>,
}

/// An Agent job and how it last ran.
#[derive(Debug, Clone, Serialize)]
pub struct AgentJob {
    /// Job name.
    pub name: String,
    /// `sysjobs.enabled`.
    pub enabled: bool,
    /// Has an enabled schedule.
    pub scheduled: bool,
    /// The last run's outcome (`sysjobhistory`, step 0): 0 failed, 1 succeeded,
    /// 2 retry, 3 canceled, 4 in progress. `None`: never ran.
    pub last_status: Option<i64>,
    /// When it last ran (server local time).
    #[serde(skip)]
    pub last_run: Option<PrimitiveDateTime>,
    /// The last run's message, and the failing step's when it failed.
    pub last_message: Option<String>,
}

/// `SQLTask:NAME="value"` within `xml`.
fn task_attr(xml: &str, name: &str) -> Option<String> {
    let key = format!("SQLTask:{name}=\"");
    let i = xml.find(&key)? + key.len();
    Some(xml[i..].split('"').next()?.to_string())
}

/// The package XML, whichever encoding msdb holds it in.
fn decode(b: &[u8]) -> String {
    if b.starts_with(&[0xFF, 0xFE]) {
        let units: Vec<u16> = b[2..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(b.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(b)).to_string()
}

/// The Maintenance Cleanup Tasks in one plan's package XML.
pub fn cleanup_tasks_in(plan: &str, xml: &str) -> Vec<CleanupTask> {
    xml.split("<DTS:Executable")
        .filter(|seg| {
            seg.split('>')
                .next()
                .is_some_and(|head| head.contains("DbMaintenanceFileCleanupTask"))
        })
        .map(|seg| {
            let name = seg
                .find("DTS:Name=\"ObjectName\">")
                .map(|i| &seg[i + 22..])
                .and_then(|r| r.split('<').next())
                .unwrap_or("Maintenance Cleanup Task")
                .to_string();
            let n: Option<i64> = task_attr(seg, "RemoveOlderThan").and_then(|v| v.parse().ok());
            let unit: Option<i64> = task_attr(seg, "TimeUnitsType").and_then(|v| v.parse().ok());
            let (secs, words) = match unit {
                Some(0) => (Some(86_400), "day(s)"),
                Some(1) => (Some(7 * 86_400), "week(s)"),
                Some(2) => (Some(30 * 86_400), "month(s)"),
                Some(3) => (Some(365 * 86_400), "year(s)"),
                Some(5) => (Some(3_600), "hour(s)"),
                _ => (None, "units unknown"),
            };
            CleanupTask {
                plan: plan.to_string(),
                task: name,
                folder: task_attr(seg, "FolderPath").unwrap_or_default(),
                extension: task_attr(seg, "FileExtension")
                    .unwrap_or_default()
                    .trim_start_matches('.')
                    .to_ascii_lowercase(),
                age_based: task_attr(seg, "AgeBased")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                older_than_seconds: n.zip(secs).map(|(n, s)| n * s),
                older_than: format!("{} {words}", n.unwrap_or(0)),
                subfolders: task_attr(seg, "CleanSubFolders")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                jobs: Vec::new(),
            }
        })
        .collect()
}

/// Every Maintenance Cleanup Task of every maintenance plan, with its plan's jobs.
pub async fn cleanup_tasks(sql: &mut Sql) -> Result<Vec<CleanupTask>> {
    let plans = sql
        .rows("SELECT name, id, CAST(packagedata AS varbinary(max)) FROM msdb.dbo.sysssispackages WHERE packagetype = 6")
        .await?;
    let subplans = sql
        .rows("SELECT sp.plan_id, j.job_id, j.name, j.enabled FROM msdb.dbo.sysmaintplan_subplans sp JOIN msdb.dbo.sysjobs j ON j.job_id = sp.job_id")
        .await?;
    let schedules = sql
        .rows("SELECT js.job_id, s.enabled FROM msdb.dbo.sysjobschedules js JOIN msdb.dbo.sysschedules s ON s.schedule_id = js.schedule_id")
        .await?;
    let history = sql
        .rows("SELECT job_id, step_id, run_status, run_date, run_time, message FROM msdb.dbo.sysjobhistory ORDER BY instance_id")
        .await?;
    let mut out = Vec::new();
    for p in &plans {
        let name = text(p, 0usize).unwrap_or_default();
        let id = text(p, 1usize).unwrap_or_default();
        let xml = decode(&bytes(p, 2usize).unwrap_or_default());
        let jobs: Vec<AgentJob> = subplans
            .iter()
            .filter(|s| text(s, 0usize).is_some_and(|x| x.eq_ignore_ascii_case(&id)))
            .map(|s| {
                let job_id = text(s, 1usize).unwrap_or_default();
                let same = |r: &tiberius::Row| {
                    text(r, 0usize).is_some_and(|x| x.eq_ignore_ascii_case(&job_id))
                };
                let last = history
                    .iter()
                    .rfind(|h| same(h) && int(h, 1usize) == Some(0));
                let failed_step = history
                    .iter()
                    .rfind(|h| same(h) && int(h, 1usize) != Some(0) && int(h, 2usize) == Some(0));
                AgentJob {
                    name: text(s, 2usize).unwrap_or_default(),
                    enabled: bit(s, 3usize).unwrap_or(false),
                    scheduled: schedules
                        .iter()
                        .any(|r| same(r) && bit(r, 1usize).unwrap_or(false)),
                    last_status: last.and_then(|h| int(h, 2usize)),
                    last_run: last.and_then(|h| run_time(int(h, 3usize)?, int(h, 4usize)?)),
                    last_message: last.and_then(|h| {
                        let m = text(h, 5usize)?;
                        Some(
                            match (int(h, 2usize), failed_step.and_then(|f| text(f, 5usize))) {
                                (Some(0), Some(step)) => format!("{m} {step}"),
                                _ => m,
                            },
                        )
                    }),
                }
            })
            .collect();
        for mut t in cleanup_tasks_in(&name, &xml) {
            t.jobs = jobs.clone();
            out.push(t);
        }
    }
    Ok(out)
}

/// `run_date` (yyyymmdd) and `run_time` (HHMMSS) as a time.
fn run_time(date: i64, time: i64) -> Option<PrimitiveDateTime> {
    let d = time::Date::from_calendar_date(
        (date / 10_000) as i32,
        time::Month::try_from((date / 100 % 100) as u8).ok()?,
        (date % 100) as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(
        (time / 10_000) as u8,
        (time / 100 % 100) as u8,
        (time % 100) as u8,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(d, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cleanup_task_is_read_from_the_package_xml() {
        // As SSMS stores a plan with a backup task and a cleanup task.
        let xml = r#"<DTS:Executable DTS:ExecutableType="MSDTS.Package.2">
<DTS:Executable DTS:ExecutableType="Microsoft.SqlServer.Management.DatabaseMaintenance.DbMaintenanceBackupTask, Microsoft.SqlServer.MaintenancePlanTasks">
<DTS:ObjectData><SQLTask:SqlTaskData SQLTask:BackupDestinationAutoFolderPath="E:\SQLBackup" SQLTask:BackupFileExtension="trn"/></DTS:ObjectData>
</DTS:Executable>
<DTS:Executable DTS:ExecutableType="Microsoft.SqlServer.Management.DatabaseMaintenance.DbMaintenanceFileCleanupTask, Microsoft.SqlServer.MaintenancePlanTasks">
<DTS:Property DTS:Name="ObjectName">Maintenance Cleanup Task</DTS:Property>
<DTS:ObjectData><SQLTask:SqlTaskData SQLTask:FolderPath="E:\SQLBackup" SQLTask:CleanSubFolders="False" SQLTask:FileExtension="trn" SQLTask:AgeBased="True" SQLTask:RemoveOlderThan="36" SQLTask:TimeUnitsType="5"/></DTS:ObjectData>
</DTS:Executable>
</DTS:Executable>"#;
        let tasks = cleanup_tasks_in("Nightly", xml);
        assert_eq!(tasks.len(), 1, "the backup task is not a cleanup task");
        let t = &tasks[0];
        assert_eq!(t.folder, r"E:\SQLBackup");
        assert_eq!(t.extension, "trn");
        assert_eq!(t.older_than_seconds, Some(36 * 3600));
        assert_eq!(t.task, "Maintenance Cleanup Task");
        assert!(t.age_based && !t.subfolders);
        assert_eq!(
            run_time(20261203, 13005),
            time::macros::datetime!(2026-12-03 01:30:05).into()
        );
    }
}
