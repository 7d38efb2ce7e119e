//! Faults from outside the test suite (issue 14): each test reproduces one as the
//! reliability engineer found it and shows what pacsbak says and does now.

use pacsbak::jobs::db_backup::{self, DbBackupOptions};
use pacsbak::records::BackupKind;

use crate::simulator_support as sim;
use crate::sqlserver_jobs::{setup, sim_ado};

fn full() -> DbBackupOptions {
    DbBackupOptions {
        kind: Some(BackupKind::Full),
        ..DbBackupOptions::default()
    }
}

/// Fault 8: the stall detector's KILL is refused. The report says so, with the error
/// number and the session that still runs, instead of "it was killed"; when KILL is
/// allowed the session is really gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_kill_is_reported_as_it_is() {
    let s = sim::start(false).await;
    let backups = s.dir.path().join("backups");
    let mut env = setup(&sim_ado(s.addr), &backups, "full = \"0 0 * * SUN\"").await;
    env.policy.stall = std::time::Duration::from_secs(2);
    let mut c = sim::connect(s.addr).await;
    let backup_requests =
        "SELECT COUNT(*) FROM sys.dm_exec_requests WHERE command = 'BACKUP DATABASE'";

    sim::exec(&mut c, "SIMCTL FAULT slow_backup 20000").await;
    sim::exec(&mut c, "SIMCTL FAULT pause_backup AT 30").await;
    sim::exec(&mut c, "SIMCTL FAULT kill_denied").await;
    let r = db_backup::run(&env.policy, &env.instance, &env.targets, &full())
        .await
        .unwrap();
    let e = r.results[0].error.clone().expect("a stalled backup fails");
    assert!(!r.ok, "{r:#?}");
    assert!(
        e.message.contains("KILL")
            && e.message.contains("failed")
            && !e.message.contains("it was killed"),
        "{e}"
    );
    assert_eq!(e.sql_error, Some(6102), "{e}");
    // The BACKUP is still there, as the report says; the engineer's own KILL ends it.
    let rows = sim::rows(&mut c, &backup_requests.replace("COUNT(*)", "session_id")).await;
    assert_eq!(rows.len(), 1);
    let session = pacsbak::sqlserver::conn::int(&rows[0], 0usize).unwrap();
    sim::exec(&mut c, "SIMCTL FAULT kill_denied OFF").await;
    sim::exec(&mut c, &format!("KILL {session}")).await;
    wait_until_no_backup_runs(&mut c, backup_requests).await;

    // The same stall with KILL allowed: killed, and gone.
    let r = db_backup::run(&env.policy, &env.instance, &env.targets, &full())
        .await
        .unwrap();
    let e = r.results[0].error.clone().expect("a stalled backup fails");
    assert!(e.message.contains("it was killed"), "{e}");
    wait_until_no_backup_runs(&mut c, backup_requests).await;
    sim::exec(&mut c, "SIMCTL CLEAR").await;
}

/// Waits (up to 5 s) for sys.dm_exec_requests to show no BACKUP: a killed session
/// leaves it as its connection closes, a moment after KILL returns.
async fn wait_until_no_backup_runs(c: &mut sim::Conn, count_sql: &str) {
    for _ in 0..100 {
        let rows = sim::rows(c, count_sql).await;
        if pacsbak::sqlserver::conn::int(&rows[0], 0usize) == Some(0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("a killed BACKUP still runs");
}
