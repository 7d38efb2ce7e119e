//! Each fault of issue 5, one test apiece, over TCP with tiberius: the error numbers
//! SQL Server sends (cause, then the 3013 trailer), what is left behind, and that the
//! connection (or, when it is dropped, the server) goes on serving.

use std::time::{Duration, Instant};

use tiberius::numeric::Numeric;

use crate::simulator_support::{
    assert_usable, connect, exec, rows, sql_error_numbers, sql_errors, start, Conn,
};

const CLEANUP_JOB: &str = "Nightly PACS maintenance.Subplan_1";

async fn backup_count(c: &mut Conn) -> i32 {
    rows(c, "SELECT COUNT(*) FROM msdb.dbo.backupset").await[0]
        .get(0)
        .unwrap()
}

async fn request_count(c: &mut Conn) -> i32 {
    // The querying session's own request is listed too, as on SQL Server.
    rows(
        c,
        "SELECT COUNT(*) FROM sys.dm_exec_requests WHERE session_id <> @@SPID",
    )
    .await[0]
        .get(0)
        .unwrap()
}

#[tokio::test]
async fn fault_disk_full_3202_then_3013() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let bak = sim.dir.path().join("full.bak");
    exec(&mut c, "SIMCTL FAULT disk_full AT 30").await;
    let errs = sql_errors(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM, STATS = 10",
            bak.display()
        ),
    )
    .await;
    let numbers: Vec<u32> = errs.iter().map(|e| e.0).collect();
    assert_eq!(numbers, [3202, 3013], "{errs:?}");
    assert!(
        errs[0]
            .1
            .contains("112(There is not enough space on the disk.)"),
        "{errs:?}"
    );
    assert_eq!(errs[1].1, "BACKUP DATABASE is terminating abnormally.");
    // The same connection goes on; no history row, no request left behind; the partial
    // file is not a backup anyone can restore.
    assert_usable(&mut c).await;
    assert_eq!(backup_count(&mut c).await, 0);
    assert_eq!(request_count(&mut c).await, 0);
    assert!(
        bak.exists(),
        "the partial file stays, as on a real full disk"
    );
    let verify = format!("RESTORE VERIFYONLY FROM DISK = N'{}'", bak.display());
    assert_eq!(sql_error_numbers(&mut c, &verify).await, [3241, 3013]);
    // Space freed: the next backup to the same path succeeds.
    exec(&mut c, "SIMCTL FAULT disk_full OFF").await;
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH INIT",
            bak.display()
        ),
    )
    .await;
    exec(&mut c, &verify).await;
}

#[tokio::test]
async fn fault_unreachable_path_3201_then_3013() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    exec(&mut c, "SIMCTL FAULT unreachable_path N'\\\\nas01\\pacs'").await;
    let errs = sql_errors(
        &mut c,
        "BACKUP DATABASE [PACS] TO DISK = N'\\\\nas01\\pacs\\PACS_full.bak' WITH CHECKSUM",
    )
    .await;
    let numbers: Vec<u32> = errs.iter().map(|e| e.0).collect();
    assert_eq!(numbers, [3201, 3013], "{errs:?}");
    assert_eq!(
        errs[0].1,
        "Cannot open backup device '\\\\nas01\\pacs\\PACS_full.bak'. Operating system error 53(The network path was not found.)."
    );
    assert_usable(&mut c).await;
    assert_eq!(backup_count(&mut c).await, 0);
    // A BACKUP LOG to the same share fails the same way; other paths still work.
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}'",
            sim.dir.path().join("local.bak").display()
        ),
    )
    .await;
    assert_eq!(
        sql_error_numbers(
            &mut c,
            "BACKUP LOG [PACS] TO DISK = N'\\\\nas01\\pacs\\PACS_log.trn'"
        )
        .await,
        [3201, 3013]
    );
    // A folder that does not exist is error 3201 too (OS error 3).
    let missing = sim.dir.path().join("no/such/dir/x.bak");
    let errs = sql_errors(
        &mut c,
        &format!("BACKUP DATABASE [PACS] TO DISK = N'{}'", missing.display()),
    )
    .await;
    assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), [3201, 3013]);
    assert!(errs[0].1.contains("Operating system error 3("), "{errs:?}");
    assert_usable(&mut c).await;
}

#[tokio::test]
async fn fault_damage_after_write_fails_verifyonly_3183() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let bad = sim.dir.path().join("damaged.bak");
    let good = sim.dir.path().join("good.bak");
    exec(&mut c, "SIMCTL FAULT damage_after_write").await;
    // The backup itself succeeds: the damage happens after the file is written.
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM",
            bad.display()
        ),
    )
    .await;
    let errs = sql_errors(
        &mut c,
        &format!(
            "RESTORE VERIFYONLY FROM DISK = N'{}' WITH CHECKSUM",
            bad.display()
        ),
    )
    .await;
    let numbers: Vec<u32> = errs.iter().map(|e| e.0).collect();
    assert_eq!(numbers, [3183, 3013], "{errs:?}");
    assert_eq!(errs[1].1, "VERIFY DATABASE is terminating abnormally.");
    assert_usable(&mut c).await;
    // Restoring it fails the same way and creates nothing.
    assert_eq!(
        sql_error_numbers(
            &mut c,
            &format!(
                "RESTORE DATABASE [PACS_drill] FROM DISK = N'{}' WITH MOVE N'PACS' TO N'{}', MOVE N'PACS_log' TO N'{}'",
                bad.display(),
                sim.dir.path().join("d.mdf").display(),
                sim.dir.path().join("d.ldf").display()
            )
        )
        .await,
        [3183, 3013]
    );
    assert!(rows(
        &mut c,
        "SELECT name FROM sys.databases WHERE name = N'PACS_drill'"
    )
    .await
    .is_empty());
    // The fault damages one file only: the next backup verifies.
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM",
            good.display()
        ),
    )
    .await;
    exec(
        &mut c,
        &format!(
            "RESTORE VERIFYONLY FROM DISK = N'{}' WITH CHECKSUM",
            good.display()
        ),
    )
    .await;
}

#[tokio::test]
async fn fault_drop_connection_mid_backup() {
    let sim = start(false).await;
    let mut victim = connect(sim.addr).await;
    let mut other = connect(sim.addr).await;
    let spid: i16 = rows(&mut victim, "SELECT @@SPID").await[0].get(0).unwrap();
    exec(&mut other, "SIMCTL FAULT drop_connection AT 50").await;
    let sql = format!(
        "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH STATS = 10",
        sim.dir.path().join("dropped.bak").display()
    );
    let err = match victim.simple_query(sql).await {
        Err(e) => e,
        Ok(s) => s
            .into_results()
            .await
            .expect_err("the connection is dropped"),
    };
    // The client sees the connection closed, not a server error.
    assert!(
        matches!(err, tiberius::error::Error::Io { .. }),
        "expected an I/O error, got {err:?}"
    );
    // The victim's session is gone and nothing of its backup remains...
    let left = other
        .query(
            "SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE session_id = @P1",
            &[&spid],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(left[0].get::<i32, _>(0), Some(0));
    assert_eq!(request_count(&mut other).await, 0);
    assert_eq!(backup_count(&mut other).await, 0);
    // ...while the server goes on serving the other connection and new ones.
    assert_usable(&mut other).await;
    exec(&mut other, "SIMCTL FAULT drop_connection OFF").await;
    let mut fresh = connect(sim.addr).await;
    exec(
        &mut fresh,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}'",
            sim.dir.path().join("after.bak").display()
        ),
    )
    .await;
    assert_eq!(backup_count(&mut other).await, 1);
}

#[tokio::test]
async fn fault_slow_backup_progress_advances_over_time() {
    let sim = start(false).await;
    let mut c1 = connect(sim.addr).await;
    let mut c2 = connect(sim.addr).await;
    let spid: i16 = rows(&mut c1, "SELECT @@SPID").await[0].get(0).unwrap();
    // Pages the backup copies: the data file's and two log pages.
    let pages: i32 = rows(
        &mut c2,
        "SELECT m.size FROM sys.master_files m JOIN sys.databases d ON d.database_id = m.database_id WHERE d.name = N'PACS' AND m.type_desc = N'ROWS'",
    )
    .await[0]
        .get(0)
        .unwrap();
    let pages = u64::try_from(pages).unwrap() + 2;
    // About 1.5 s in all, in ten steps of STATS = 10.
    let us_per_page = (1_500_000 / pages).max(1);
    exec(&mut c2, &format!("SIMCTL FAULT slow_backup {us_per_page}")).await;
    let sql = format!(
        "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM, STATS = 10",
        sim.dir.path().join("slow.bak").display()
    );
    let started = Instant::now();
    let backup = tokio::spawn(async move {
        c1.simple_query(sql)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
        started.elapsed()
    });
    // Poll from the second connection until the backup has finished: every answer is
    // recorded, so the test depends on no timing but the backup's own duration.
    let mut seen: Vec<(f32, i64)> = Vec::new();
    while !backup.is_finished() {
        let r = c2
            .query(
                "SELECT percent_complete, estimated_completion_time, command FROM sys.dm_exec_requests WHERE session_id = @P1",
                &[&spid],
            )
            .await
            .unwrap()
            .into_first_result()
            .await
            .unwrap();
        if let Some(row) = r.first() {
            assert_eq!(row.get::<&str, _>(2), Some("BACKUP DATABASE"));
            seen.push((row.get(0).unwrap(), row.get(1).unwrap()));
        }
    }
    let elapsed = backup.await.unwrap();
    // The backup took the time the fault asks for (sleeps only ever last longer).
    let floor = Duration::from_micros(us_per_page * pages * 8 / 10);
    assert!(elapsed >= floor, "{elapsed:?} < {floor:?}");
    // Progress only moved forward, through several intermediate steps, with an
    // estimate of the time left while it ran.
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress went back: {seen:?}"
    );
    let mut steps: Vec<f32> = seen
        .iter()
        .map(|s| s.0)
        .filter(|p| *p > 0.0 && *p < 100.0)
        .collect();
    steps.dedup();
    assert!(steps.len() >= 3, "progress seen at {steps:?}");
    assert!(
        seen.iter().any(|s| s.1 > 0),
        "no estimated_completion_time: {seen:?}"
    );
    // Done: the request is gone, the history row is there.
    assert_eq!(request_count(&mut c2).await, 0);
    let r = rows(&mut c2, "SELECT type, backup_size FROM msdb.dbo.backupset").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<&str, _>(0), Some("D"));
    assert!(r[0].get::<Numeric, _>(1).unwrap().value() > 0);
}

async fn agent_status(c: &mut Conn) -> String {
    let r = rows(
        c,
        "SELECT servicename, status_desc, startup_type_desc, last_startup_time FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%'",
    )
    .await;
    assert_eq!(r.len(), 1);
    r[0].get::<&str, _>(1).unwrap().to_string()
}

#[tokio::test]
async fn fault_agent_stopped() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    assert_eq!(agent_status(&mut c).await, "Running");
    exec(&mut c, "SIMCTL FAULT agent_stopped").await;
    assert_eq!(agent_status(&mut c).await, "Stopped");
    // The database engine itself still runs.
    let r = rows(
        &mut c,
        "SELECT status_desc FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server (%'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("Running"));
    let start_job = format!("EXEC msdb.dbo.sp_start_job @job_name = N'{CLEANUP_JOB}'");
    let errs = sql_errors(&mut c, &start_job).await;
    assert_eq!(
        errs.iter().map(|e| e.0).collect::<Vec<_>>(),
        [22022],
        "{errs:?}"
    );
    assert_eq!(
        errs[0].1,
        "SQLServerAgent is not currently running so it cannot be notified of this action."
    );
    // Through RPC (a procedure called by name) too.
    let err = c
        .execute(
            "EXEC msdb.dbo.sp_start_job @job_name = @P1",
            &[&CLEANUP_JOB],
        )
        .await
        .expect_err("Agent stopped");
    assert!(
        matches!(err, tiberius::error::Error::Server(ref e) if e.code() == 22022),
        "{err:?}"
    );
    assert_usable(&mut c).await;
    // No history was written for the refused start.
    let r = rows(&mut c, "SELECT COUNT(*) FROM msdb.dbo.sysjobhistory").await;
    let before: i32 = r[0].get(0).unwrap();
    exec(&mut c, "SIMCTL FAULT agent_stopped OFF").await;
    assert_eq!(agent_status(&mut c).await, "Running");
    exec(&mut c, &start_job).await;
    let r = rows(&mut c, "SELECT COUNT(*) FROM msdb.dbo.sysjobhistory").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(before + 2));
}

/// Puts an old and a new `.bak` into the maintenance plan's folder.
fn plan_files(sim: &crate::simulator_support::Sim) -> (std::path::PathBuf, std::path::PathBuf) {
    let folder = sim.dir.path().join("root/backup");
    let old = folder.join("PACS_old.bak");
    let new = folder.join("PACS_new.bak");
    std::fs::write(&old, b"x").unwrap();
    std::fs::write(&new, b"y").unwrap();
    filetime::set_file_mtime(&old, filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    (old, new)
}

async fn last_outcome(c: &mut Conn) -> (i32, i32, String) {
    let job = rows(
        c,
        "SELECT TOP 1 h.run_status, s.last_run_outcome FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobsteps s ON s.job_id = h.job_id WHERE h.step_id = 0 ORDER BY h.instance_id DESC",
    )
    .await;
    let step = rows(
        c,
        "SELECT TOP 1 message FROM msdb.dbo.sysjobhistory WHERE step_id = 1 ORDER BY instance_id DESC",
    )
    .await;
    (
        job[0].get(0).unwrap(),
        job[0].get(1).unwrap(),
        step[0].get::<&str, _>(0).unwrap().to_string(),
    )
}

#[tokio::test]
async fn fault_cleanup_job_fails() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let (old, new) = plan_files(&sim);
    exec(&mut c, "SIMCTL FAULT cleanup_fails").await;
    // sp_start_job only starts the job: it succeeds; the failure is in the history.
    exec(
        &mut c,
        &format!("EXEC msdb.dbo.sp_start_job @job_name = N'{CLEANUP_JOB}'"),
    )
    .await;
    let (run_status, step_outcome, message) = last_outcome(&mut c).await;
    assert_eq!(run_status, 0, "job outcome: failed");
    assert_eq!(step_outcome, 0);
    assert!(message.contains("The step failed."), "{message}");
    let r = rows(
        &mut c,
        "SELECT TOP 1 succeeded FROM msdb.dbo.sysmaintplan_log ORDER BY start_time DESC",
    )
    .await;
    assert_eq!(r[0].get::<bool, _>(0), Some(false));
    assert!(
        old.exists() && new.exists(),
        "a failed cleanup deletes nothing"
    );
    assert_usable(&mut c).await;
    // Fixed: the next run succeeds and deletes the old file only.
    exec(&mut c, "SIMCTL FAULT cleanup_fails OFF").await;
    exec(
        &mut c,
        &format!("EXEC msdb.dbo.sp_start_job @job_name = N'{CLEANUP_JOB}'"),
    )
    .await;
    assert_eq!(last_outcome(&mut c).await.0, 1);
    assert!(!old.exists() && new.exists());
}

#[tokio::test]
async fn fault_cleanup_job_silently_deletes_nothing() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let (old, new) = plan_files(&sim);
    exec(&mut c, "SIMCTL FAULT cleanup_noop").await;
    exec(
        &mut c,
        &format!("EXEC msdb.dbo.sp_start_job @job_name = N'{CLEANUP_JOB}'"),
    )
    .await;
    // Reported as success everywhere...
    let (run_status, step_outcome, message) = last_outcome(&mut c).await;
    assert_eq!((run_status, step_outcome), (1, 1));
    assert!(message.contains("The step succeeded."), "{message}");
    let r = rows(
        &mut c,
        "SELECT TOP 1 succeeded FROM msdb.dbo.sysmaintplan_log ORDER BY start_time DESC",
    )
    .await;
    assert_eq!(r[0].get::<bool, _>(0), Some(true));
    // ...yet the file the plan should have deleted is still there.
    assert!(old.exists() && new.exists());
    assert_usable(&mut c).await;
    // Without the fault the same run deletes it: it was old enough all along.
    exec(&mut c, "SIMCTL FAULT cleanup_noop OFF").await;
    exec(
        &mut c,
        &format!("EXEC msdb.dbo.sp_start_job @job_name = N'{CLEANUP_JOB}'"),
    )
    .await;
    assert!(!old.exists() && new.exists());
}
