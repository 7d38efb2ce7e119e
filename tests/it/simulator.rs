//! The SQL Server simulator over real TCP, with tiberius (and FreeTDS tsql and
//! python-tds when installed): login, SELECTs, BACKUP with progress seen from a second
//! connection, RESTORE and its chain rules, cancel, faults.

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

use crate::simulator_support::{connect, rows, sql_err, start, PW};

#[tokio::test]
async fn login_version_spid_serverproperty() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let r = rows(
        &mut c,
        "SELECT @@VERSION, @@SPID, SERVERPROPERTY('ProductVersion') AS v",
    )
    .await;
    let v: &str = r[0].get(0).unwrap();
    assert!(v.starts_with("Microsoft SQL Server 2019"));
    let spid: i16 = r[0].get(1).unwrap();
    assert!(spid >= 51);
    let ver: &str = r[0].get(2).unwrap();
    assert_eq!(ver, "15.0.4355.3");
    // Wrong password is refused, the server goes on.
    let mut cfg = Config::new();
    cfg.host("127.0.0.1");
    cfg.port(sim.addr.port());
    cfg.authentication(AuthMethod::sql_server("sa", "nope"));
    cfg.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(sim.addr).await.unwrap();
    assert!(Client::connect(cfg, tcp.compat_write()).await.is_err());
    let _ = rows(&mut c, "SELECT 1").await;
}

#[tokio::test]
async fn rpc_parameters_and_catalog() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let r = c
        .query(
            "SELECT name, state_desc, recovery_model_desc FROM sys.databases WHERE name = @P1",
            &[&"PACS"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<&str, _>(1), Some("ONLINE"));
    let r = rows(&mut c, "SELECT TOP 5 m.name, m.type_desc, m.size, m.is_percent_growth FROM sys.master_files m JOIN sys.databases d ON d.database_id = m.database_id WHERE d.name = N'PACS'").await;
    assert_eq!(r.len(), 2);
    assert!(r[0].get::<i32, _>(2).unwrap() > 0);
    let r = rows(&mut c, "SELECT COUNT(*) AS n FROM [PACS].dbo.[Image]").await;
    assert!(r[0].get::<i32, _>(0).unwrap() > 100);
    // IN lists and parenthesised conditions, as SQL Server takes them.
    let r = rows(&mut c, "SELECT name FROM sys.databases WHERE name IN (N'PACS', N'master') AND (database_id > 0 OR name = N'x') AND NOT (name = N'master')").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<&str, _>(0), Some("PACS"));
    let r = rows(&mut c, "SELECT servicename, status_desc, last_startup_time FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%'").await;
    assert_eq!(r[0].get::<&str, _>(1), Some("Running"));
    let r = rows(&mut c, "SELECT name, CAST(CAST(packagedata AS varbinary(max)) AS xml) FROM msdb.dbo.sysssispackages WHERE packagetype = 6").await;
    let xml: &str = r[0].get::<&tiberius::xml::XmlData, _>(1).unwrap().as_ref();
    assert!(xml.contains("DbMaintenanceFileCleanupTask") && xml.contains("RemoveOlderThan"));
    // Quotes and brackets, and syntax errors that keep the connection.
    let r = rows(&mut c, "SELECT N'O''Brien' AS s, 'x' AS [a]]b]").await;
    assert_eq!(r[0].get::<&str, _>(0), Some("O'Brien"));
    assert_eq!(r[0].columns()[1].name(), "a]b");
    assert_eq!(sql_err(&mut c, "SELEC 1").await, 102);
    assert_eq!(sql_err(&mut c, "SELECT FROM WHERE").await, 156);
    assert_eq!(sql_err(&mut c, "SELECT * FROM sys.nothing").await, 208);
    assert_eq!(
        sql_err(&mut c, "BACKUP DATABASE [PACS]]x] TO DISK = N'/tmp/x.bak'").await,
        911
    );
    let _ = rows(&mut c, "SELECT 1").await;
}

#[tokio::test]
async fn backup_progress_seen_from_second_connection() {
    let sim = start(false).await;
    let mut c1 = connect(sim.addr).await;
    let mut c2 = connect(sim.addr).await;
    let spid: i16 = rows(&mut c1, "SELECT @@SPID").await[0].get(0).unwrap();
    c2.simple_query("SIMCTL FAULT pause_backup AT 40")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let bak = sim.dir.path().join("full.bak");
    let sql = format!(
        "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM, INIT, STATS = 10",
        bak.display()
    );
    let backup = tokio::spawn(async move {
        c1.simple_query(sql)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
        c1
    });
    // Wait until the backup shows up paused at 40 percent (bounded, event-driven by the pause).
    let mut seen = None;
    for _ in 0..2000 {
        let r = c2
            .query("SELECT session_id, command, percent_complete, estimated_completion_time FROM sys.dm_exec_requests WHERE session_id = @P1", &[&spid])
            .await
            .unwrap()
            .into_first_result()
            .await
            .unwrap();
        if let Some(row) = r.first() {
            let pct: f32 = row.get(2).unwrap();
            if pct >= 40.0 {
                seen = Some((row.get::<&str, _>(1).unwrap().to_string(), pct));
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    let (cmd, pct) = seen.expect("backup request visible");
    assert_eq!(cmd, "BACKUP DATABASE");
    assert!((40.0..100.0).contains(&pct));
    c2.simple_query("SIMCTL RESUME")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let _c1 = backup.await.unwrap();
    let r = rows(&mut c2, "SELECT bs.type, bs.first_lsn, bs.last_lsn, bs.backup_size, bs.backup_finish_date, mf.physical_device_name FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<&str, _>(0), Some("D"));
    let first: tiberius::numeric::Numeric = r[0].get(1).unwrap();
    assert!(first.value() > 0);
    let r = rows(
        &mut c2,
        &format!("RESTORE HEADERONLY FROM DISK = N'{}'", bak.display()),
    )
    .await;
    let names: Vec<&str> = r[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        &names[..4],
        &[
            "BackupName",
            "BackupDescription",
            "BackupType",
            "ExpirationDate"
        ]
    );
    assert_eq!(r[0].get::<i16, _>("BackupType"), Some(1));
    assert_eq!(r[0].get::<bool, _>("HasBackupChecksums"), Some(true));
}

#[tokio::test]
async fn full_diff_log_restore_chain_and_errors() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let d = sim.dir.path();
    let p = |n: &str| d.join(n).display().to_string();
    for sql in [
        format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM, INIT",
            p("full.bak")
        ),
        "SIMCTL ADVANCE MINUTES = 60".into(),
        format!(
            "BACKUP LOG [PACS] TO DISK = N'{}' WITH CHECKSUM",
            p("log1.trn")
        ),
        "SIMCTL ADVANCE MINUTES = 60".into(),
        format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH DIFFERENTIAL, CHECKSUM, COMPRESSION",
            p("diff.bak")
        ),
        "SIMCTL ADVANCE MINUTES = 60".into(),
        format!(
            "BACKUP LOG [PACS] TO DISK = N'{}' WITH CHECKSUM",
            p("log2.trn")
        ),
    ] {
        c.simple_query(sql)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
    }
    let expected: i32 = rows(&mut c, "SELECT COUNT(*) FROM PACS.dbo.Image").await[0]
        .get(0)
        .unwrap();
    let r = rows(
        &mut c,
        &format!("RESTORE FILELISTONLY FROM DISK = N'{}'", p("full.bak")),
    )
    .await;
    assert_eq!(r.len(), 2);
    let mv = format!(
        "MOVE N'PACS' TO N'{}', MOVE N'PACS_log' TO N'{}'",
        p("drill.mdf"),
        p("drill.ldf")
    );
    // Chain: log2 cannot follow the full directly (4305), then the right order works.
    c.simple_query(format!(
        "RESTORE DATABASE [PACS_drill] FROM DISK = N'{}' WITH {mv}, NORECOVERY, STATS = 25",
        p("full.bak")
    ))
    .await
    .unwrap()
    .into_results()
    .await
    .unwrap();
    assert_eq!(
        sql_err(
            &mut c,
            &format!(
                "RESTORE LOG [PACS_drill] FROM DISK = N'{}' WITH NORECOVERY",
                p("log2.trn")
            )
        )
        .await,
        4305
    );
    c.simple_query(format!(
        "RESTORE DATABASE [PACS_drill] FROM DISK = N'{}' WITH NORECOVERY",
        p("diff.bak")
    ))
    .await
    .unwrap()
    .into_results()
    .await
    .unwrap();
    c.simple_query(format!(
        "RESTORE LOG [PACS_drill] FROM DISK = N'{}' WITH RECOVERY",
        p("log2.trn")
    ))
    .await
    .unwrap()
    .into_results()
    .await
    .unwrap();
    let got: i32 = rows(&mut c, "SELECT COUNT(*) FROM [PACS_drill].dbo.Image").await[0]
        .get(0)
        .unwrap();
    assert_eq!(got, expected);
    c.simple_query("DBCC CHECKDB (N'PACS_drill') WITH NO_INFOMSGS")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    // Errors, each followed by 3013 (tiberius reports the first).
    assert_eq!(
        sql_err(
            &mut c,
            &format!(
                "RESTORE DATABASE [PACS_drill] FROM DISK = N'{}' WITH {mv}",
                p("full.bak")
            )
        )
        .await,
        3154
    );
    assert_eq!(
        sql_err(
            &mut c,
            &format!("RESTORE DATABASE [Other] FROM DISK = N'{}'", p("full.bak"))
        )
        .await,
        1834
    );
    c.simple_query("SIMCTL ADVANCE MINUTES = 10")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        sql_err(
            &mut c,
            &format!("RESTORE DATABASE [PACS] FROM DISK = N'{}'", p("full.bak"))
        )
        .await,
        3159
    );
    assert_eq!(
        sql_err(
            &mut c,
            &format!("RESTORE VERIFYONLY FROM DISK = N'{}'", p("missing.bak"))
        )
        .await,
        3201
    );
    std::fs::write(d.join("junk.bak"), b"not a backup").unwrap();
    assert_eq!(
        sql_err(
            &mut c,
            &format!("RESTORE HEADERONLY FROM DISK = N'{}'", p("junk.bak"))
        )
        .await,
        3241
    );
    c.simple_query("CREATE DATABASE [Fresh]")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        sql_err(
            &mut c,
            &format!("BACKUP LOG [Fresh] TO DISK = N'{}'", p("f.trn"))
        )
        .await,
        4214
    );
    assert_eq!(
        sql_err(
            &mut c,
            &format!(
                "BACKUP DATABASE [Fresh] TO DISK = N'{}' WITH DIFFERENTIAL",
                p("f.bak")
            )
        )
        .await,
        3035
    );
    c.simple_query("DROP DATABASE [PACS_drill]")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert!(rows(
        &mut c,
        "SELECT name FROM sys.databases WHERE name = 'PACS_drill'"
    )
    .await
    .is_empty());
}

#[tokio::test]
async fn faults_and_agent_cleanup() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let d = sim.dir.path();
    let p = |n: &str| d.join(n).display().to_string();
    c.simple_query("SIMCTL FAULT disk_full AT 30")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        sql_err(
            &mut c,
            &format!("BACKUP DATABASE [PACS] TO DISK = N'{}'", p("a.bak"))
        )
        .await,
        3202
    );
    c.simple_query("SIMCTL CLEAR")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("SIMCTL FAULT unreachable_path N'/mnt/nas'")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        sql_err(&mut c, "BACKUP DATABASE [PACS] TO DISK = N'/mnt/nas/x.bak'").await,
        3201
    );
    c.simple_query("SIMCTL FAULT damage_after_write")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query(format!(
        "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM",
        p("b.bak")
    ))
    .await
    .unwrap()
    .into_results()
    .await
    .unwrap();
    assert_eq!(
        sql_err(
            &mut c,
            &format!(
                "RESTORE VERIFYONLY FROM DISK = N'{}' WITH CHECKSUM",
                p("b.bak")
            )
        )
        .await,
        3183
    );
    // Drop the connection mid-backup: the client sees an I/O error, the server lives on.
    c.simple_query("SIMCTL FAULT drop_connection AT 50")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let mut c2 = connect(sim.addr).await;
    let r = c2
        .simple_query(format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}'",
            p("c.bak")
        ))
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(s) => s.into_results().await.is_err(),
    };
    assert!(failed);
    c.simple_query("SIMCTL CLEAR")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    // Agent: cleanup deletes old .bak files in the plan's folder.
    let folder = sim.dir.path().join("root/backup");
    let old = folder.join("old.bak");
    std::fs::write(&old, b"x").unwrap();
    filetime::set_file_mtime(&old, filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    c.simple_query("SIMCTL FAULT cleanup_noop")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("EXEC msdb.dbo.sp_start_job @job_name = N'Nightly PACS maintenance.Subplan_1'")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert!(old.exists());
    c.simple_query("SIMCTL FAULT cleanup_noop OFF")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("EXEC msdb.dbo.sp_start_job @job_name = N'Nightly PACS maintenance.Subplan_1'")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert!(!old.exists());
    c.simple_query("SIMCTL FAULT cleanup_fails")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("EXEC msdb.dbo.sp_start_job @job_name = N'Nightly PACS maintenance.Subplan_1'")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let r = rows(&mut c, "SELECT TOP 1 run_status FROM msdb.dbo.sysjobhistory WHERE step_id = 0 ORDER BY instance_id DESC").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(0));
    c.simple_query("SIMCTL AGENT STOP")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        sql_err(
            &mut c,
            "EXEC msdb.dbo.sp_start_job @job_name = N'Nightly PACS maintenance.Subplan_1'"
        )
        .await,
        22022
    );
}

#[tokio::test]
async fn cancel_a_slow_backup() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    c.simple_query("SIMCTL FAULT pause_backup AT 20")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let bak = sim.dir.path().join("cancel.bak");
    // The backup holds at 20 percent (pause fault), so this never completes by itself:
    // give up waiting for its first result, then cancel it with ATTENTION.
    let sql = format!(
        "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH STATS = 10",
        bak.display()
    );
    let timed_out =
        tokio::time::timeout(std::time::Duration::from_millis(300), c.simple_query(sql))
            .await
            .is_err();
    assert!(timed_out, "a paused backup cannot finish");
    c.cancel_query().await.unwrap();
    // The connection is usable afterwards.
    let r = rows(&mut c, "SELECT 42").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(42));
}

fn which(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn freetds_tsql_client() {
    if !which("tsql") {
        println!("skipped: freetds_tsql_client: tsql (Debian freetds-bin) is not installed");
        return;
    }
    let sim = start(false).await;
    let bak = sim.dir.path().join("tsql.bak");
    let input = format!(
        "SELECT @@VERSION\ngo\nBACKUP DATABASE [PACS] TO DISK = N'{0}' WITH CHECKSUM, STATS = 25\ngo\nRESTORE HEADERONLY FROM DISK = N'{0}'\ngo\nquit\n",
        bak.display()
    );
    let port = sim.addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("tsql")
            .args(["-H", "127.0.0.1", "-p", &port, "-U", "sa", "-P", PW])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("Microsoft SQL Server 2019"), "{all}");
    assert!(all.contains("25 percent processed"), "{all}");
    assert!(
        all.contains("BACKUP DATABASE successfully processed"),
        "{all}"
    );
    assert!(
        all.contains("BackupName\tBackupDescription\tBackupType"),
        "{all}"
    );
}

#[tokio::test]
async fn python_tds_client() {
    let has = std::process::Command::new("python3")
        .args(["-c", "import pytds"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has {
        println!(
            "skipped: python_tds_client: python3 with pytds (PyPI python-tds) is not installed"
        );
        return;
    }
    let sim = start(false).await;
    let bak = sim.dir.path().join("py.bak");
    let script = format!(
        r#"
import pytds
c = pytds.connect(server='127.0.0.1', port={port}, user='sa', password='{pw}', autocommit=True)
cur = c.cursor()
cur.execute('SELECT @@VERSION')
print(cur.fetchone()[0].split(' (')[0])
cur.execute("BACKUP DATABASE [PACS] TO DISK = N'{bak}' WITH CHECKSUM, STATS = 50")
for m in cur.messages:
    print('MSG', m[1].msg_no, m[1].text)
cur.execute("RESTORE HEADERONLY FROM DISK = N'{bak}'")
print('COLS', ','.join(d[0] for d in cur.description[:5]))
print('ROW', cur.fetchone()[2])
cur.execute('EXEC master.dbo.xp_fixeddrives')
print('DRIVES', ','.join(d[0] for d in cur.description), cur.fetchone()[0])
cur.execute('SIMCTL FAULT corrupt_restore')
cur.execute("RESTORE DATABASE [PACS_py] FROM DISK = N'{bak}' WITH MOVE N'PACS' TO N'{dir}/py.mdf', MOVE N'PACS_log' TO N'{dir}/py_log.ldf', RECOVERY")
try:
    cur.execute("DBCC CHECKDB (N'PACS_py') WITH NO_INFOMSGS, ALL_ERRORMSGS")
    print('CHECKDB passed')
except pytds.tds_base.Error as e:
    print('CHECKDB', e.msg_no, e.text)
"#,
        port = sim.addr.port(),
        pw = PW,
        bak = bak.display(),
        dir = sim.dir.path().display()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("Microsoft SQL Server 2019"), "{all}");
    assert!(all.contains("MSG 3211 50 percent processed."), "{all}");
    assert!(
        all.contains("MSG 3014 BACKUP DATABASE successfully processed"),
        "{all}"
    );
    assert!(
        all.contains("COLS BackupName,BackupDescription,BackupType,ExpirationDate,Compressed"),
        "{all}"
    );
    assert!(all.contains("ROW 1"), "{all}");
    assert!(all.contains("DRIVES drive,MB free C"), "{all}");
    // python-tds raises the last error of the batch: the minimum repair level.
    assert!(all.contains("CHECKDB 8958 repair_allow_data_loss"), "{all}");
}
