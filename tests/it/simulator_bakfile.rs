//! The simulator's backup files are SQL Server's format: written by the bakfile
//! writer, read by `pacsbak::bakfile` as real backups are, and the simulator's
//! RESTORE HEADERONLY / FILELISTONLY / VERIFYONLY read real backups as it reads its
//! own (checked against ../shared/baks/expected.json when it is there).

use std::path::{Path, PathBuf};

use pacsbak::bakfile::{self, BackupDescription, PlanRequest};

use crate::simulator_support::{connect, exec, rows, sql_error_numbers, start, Conn};

fn baks() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/baks");
    p.join("expected.json").exists().then_some(p)
}

/// msdb's row for the backup written to `path`: type, first/last/checkpoint/base LSN.
async fn msdb_row(c: &mut Conn, path: &Path) -> (String, String, [String; 4], bool) {
    let r = rows(
        c,
        &format!(
            "SELECT b.type, b.database_name, CAST(b.first_lsn AS varchar(30)), CAST(b.last_lsn AS varchar(30)),
                    CAST(b.checkpoint_lsn AS varchar(30)), CAST(b.database_backup_lsn AS varchar(30)), b.has_backup_checksums
             FROM msdb.dbo.backupset b JOIN msdb.dbo.backupmediafamily f ON f.media_set_id = b.media_set_id
             WHERE f.physical_device_name = N'{}'",
            path.display()
        ),
    )
    .await;
    assert_eq!(r.len(), 1, "one msdb row for {}", path.display());
    let s = |i: usize| r[0].get::<&str, _>(i).unwrap_or("").to_string();
    (
        s(0),
        s(1),
        [s(2), s(3), s(4), s(5)],
        r[0].get::<bool, _>(6).unwrap_or(false),
    )
}

fn lsn_text(l: Option<bakfile::Lsn>) -> String {
    l.map(|l| l.to_string()).unwrap_or_else(|| "0".into())
}

#[tokio::test]
async fn simulator_backups_read_check_and_plan_as_real_ones() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let d = sim.dir.path();
    let full = d.join("full.bak");
    let diff = d.join("diff.bak");
    let log1 = d.join("log1.trn");
    let log2 = d.join("log2.trn");
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM, INIT",
            full.display()
        ),
    )
    .await;
    exec(&mut c, "SIMCTL ADVANCE MINUTES = 30").await;
    exec(
        &mut c,
        &format!(
            "BACKUP LOG [PACS] TO DISK = N'{}' WITH CHECKSUM",
            log1.display()
        ),
    )
    .await;
    exec(&mut c, "SIMCTL ADVANCE MINUTES = 30").await;
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH DIFFERENTIAL, CHECKSUM",
            diff.display()
        ),
    )
    .await;
    exec(&mut c, "SIMCTL ADVANCE MINUTES = 30").await;
    exec(
        &mut c,
        &format!("BACKUP LOG [PACS] TO DISK = N'{}'", log2.display()),
    )
    .await;

    // inspect: the same type, database and LSNs as msdb.dbo.backupset.
    let mut files = Vec::new();
    for (p, letter) in [(&full, "D"), (&log1, "L"), (&diff, "I"), (&log2, "L")] {
        let f = bakfile::inspect(p).unwrap();
        assert!(f.is_sound(), "{}: {:?}", p.display(), f.damage);
        assert_eq!(f.sets.len(), 1);
        let h = &f.sets[0].header;
        let (ty, db, lsns, checksums) = msdb_row(&mut c, p).await;
        assert_eq!(ty, letter);
        assert_eq!(h.kind().letter().to_string(), ty, "{}", p.display());
        assert_eq!(h.database_name, db);
        assert_eq!(db, "PACS");
        assert_eq!(h.server_name, "PACSSIM");
        assert_eq!(h.has_backup_checksums, checksums);
        assert_eq!(
            [
                lsn_text(h.first_lsn),
                lsn_text(h.last_lsn),
                lsn_text(h.checkpoint_lsn),
                lsn_text(h.database_backup_lsn)
            ],
            lsns,
            "{}",
            p.display()
        );
        // check: every page checksum and, WITH CHECKSUM, the CSUM streams.
        let r = bakfile::check(p).unwrap();
        assert!(r.ok, "{}: {:?}", p.display(), r.damage);
        if checksums {
            assert!(r.csums_verified >= 1, "{}", p.display());
        }
        if letter != "L" {
            assert!(r.pages_verified > 0, "{}", p.display());
        }
        files.push(f);
    }
    // The full's file list is the database's.
    let names: Vec<&str> = files[0].sets[0]
        .files
        .iter()
        .map(|f| f.logical_name.as_str())
        .collect();
    assert_eq!(names, ["PACS", "PACS_log"]);

    // A flipped byte in a page of the full: check names the page; VERIFYONLY fails.
    let bytes = std::fs::read(&full).unwrap();
    let mqda = &files[0].sets[0].streams[0];
    assert_eq!(mqda.kind, "MQDA");
    let mut bad = bytes.clone();
    let at = (mqda.data_offset + 2 + 8192 + 500) as usize;
    bad[at] ^= 0x01;
    let r = bakfile::check_bytes(&bad).unwrap();
    assert!(!r.ok);
    assert!(
        r.damage.iter().any(|d| d.page_id.as_deref() == Some("1:1")),
        "{:?}",
        r.damage
    );
    let bad_path = d.join("flipped.bak");
    std::fs::write(&bad_path, &bad).unwrap();
    assert_eq!(
        sql_error_numbers(
            &mut c,
            &format!(
                "RESTORE VERIFYONLY FROM DISK = N'{}' WITH CHECKSUM",
                bad_path.display()
            )
        )
        .await,
        [3183, 3013]
    );
    // A flipped byte in the log stream (no page there): only the CSUM sees it, 3189.
    let mqtl = files[1].sets[0]
        .streams
        .iter()
        .find(|s| s.kind == "MQTL")
        .unwrap();
    let mut bad = std::fs::read(&log1).unwrap();
    bad[(mqtl.data_offset + 2 + 40) as usize] ^= 0x20;
    assert!(!bakfile::check_bytes(&bad).unwrap().ok);
    std::fs::write(&bad_path, &bad).unwrap();
    assert_eq!(
        sql_error_numbers(
            &mut c,
            &format!(
                "RESTORE VERIFYONLY FROM DISK = N'{}' WITH CHECKSUM",
                bad_path.display()
            )
        )
        .await,
        [3189, 3013]
    );

    // The planner plans the chain as the simulator's own RESTORE sequence accepts it.
    let descs: Vec<BackupDescription> = files
        .iter()
        .flat_map(BackupDescription::from_file)
        .collect();
    let plan = bakfile::plan(
        &descs,
        &PlanRequest {
            database: Some("PACS".into()),
            at: None,
        },
    );
    assert!(plan.ok, "{:?}", plan.problems);
    let steps: Vec<(String, String)> = plan
        .steps
        .iter()
        .map(|s| (s.kind.to_string(), s.files[0].clone()))
        .collect();
    let name = |p: &Path| p.display().to_string();
    assert_eq!(
        steps,
        [
            ("full".to_string(), name(&full)),
            ("diff".to_string(), name(&diff)),
            ("log".to_string(), name(&log2)),
        ]
    );
    let data = d.join("drill.mdf");
    let logf = d.join("drill.ldf");
    for (k, s) in plan.steps.iter().enumerate() {
        let verb = if s.kind == pacsbak::records::BackupKind::Log {
            "LOG"
        } else {
            "DATABASE"
        };
        let moves = if k == 0 {
            format!(
                ", MOVE N'PACS' TO N'{}', MOVE N'PACS_log' TO N'{}'",
                data.display(),
                logf.display()
            )
        } else {
            String::new()
        };
        exec(
            &mut c,
            &format!(
                "RESTORE {verb} [PACS_drill] FROM DISK = N'{}' WITH FILE = {}, NORECOVERY{moves}",
                s.files[0], s.position
            ),
        )
        .await;
    }
    exec(&mut c, "RESTORE DATABASE [PACS_drill] WITH RECOVERY").await;
    let src: i32 = rows(&mut c, "SELECT COUNT(*) FROM [PACS].dbo.Image").await[0]
        .get(0)
        .unwrap();
    let got: i32 = rows(&mut c, "SELECT COUNT(*) FROM [PACS_drill].dbo.Image").await[0]
        .get(0)
        .unwrap();
    assert_eq!(got, src);
    exec(&mut c, "DBCC CHECKDB (N'PACS_drill') WITH NO_INFOMSGS").await;
}

#[tokio::test]
async fn striped_and_appended_sets_are_mtf_families_and_positions() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let d = sim.dir.path();
    let (a, b) = (d.join("s1.bak"), d.join("s2.bak"));
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}', DISK = N'{}' WITH CHECKSUM, INIT",
            a.display(),
            b.display()
        ),
    )
    .await;
    let fa = bakfile::inspect(&a).unwrap();
    let fb = bakfile::inspect(&b).unwrap();
    assert_eq!((fa.media.family_count, fa.media.family_sequence), (2, 1));
    assert_eq!((fb.media.family_count, fb.media.family_sequence), (2, 2));
    assert_eq!(fa.media.media_set_id, fb.media.media_set_id);
    assert!(bakfile::check(&a).unwrap().ok && bakfile::check(&b).unwrap().ok);
    // One family alone is not the set (3132); both restore it.
    let mv = format!(
        "MOVE N'PACS' TO N'{}', MOVE N'PACS_log' TO N'{}'",
        d.join("st.mdf").display(),
        d.join("st.ldf").display()
    );
    assert_eq!(
        sql_error_numbers(
            &mut c,
            &format!(
                "RESTORE DATABASE [PACS_st] FROM DISK = N'{}' WITH {mv}",
                a.display()
            )
        )
        .await,
        [3132, 3013]
    );
    exec(
        &mut c,
        &format!(
            "RESTORE DATABASE [PACS_st] FROM DISK = N'{}', DISK = N'{}' WITH {mv}",
            a.display(),
            b.display()
        ),
    )
    .await;
    let plan = bakfile::plan(
        &[fa, fb]
            .iter()
            .flat_map(BackupDescription::from_file)
            .collect::<Vec<_>>(),
        &PlanRequest::default(),
    );
    assert!(plan.ok, "{:?}", plan.problems);
    assert_eq!(plan.steps[0].files.len(), 2);

    // COMPRESSION writes SQL Server's container, with the zero-padded tail: it reads,
    // checks and restores like the plain file.
    let z = d.join("z.bak");
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH COMPRESSION, INIT",
            z.display()
        ),
    )
    .await;
    assert_eq!(&std::fs::read(&z).unwrap()[..8], b"MSSQLBAK");
    let fz = bakfile::inspect(&z).unwrap();
    assert_eq!(fz.container, bakfile::ContainerKind::MssqlbakCompressed);
    assert!(fz.is_sound(), "{:?}", fz.damage);
    let h = rows(
        &mut c,
        &format!("RESTORE HEADERONLY FROM DISK = N'{}'", z.display()),
    )
    .await;
    assert_eq!(h[0].get::<bool, _>("Compressed"), Some(true));
    assert!(bakfile::check(&z).unwrap().ok);
    exec(
        &mut c,
        &format!(
            "RESTORE DATABASE [PACS_z] FROM DISK = N'{}' WITH MOVE N'PACS' TO N'{}', MOVE N'PACS_log' TO N'{}'",
            z.display(),
            d.join("z.mdf").display(),
            d.join("z.ldf").display()
        ),
    )
    .await;

    // NOINIT appends a second set to the same file: position 2, still one TAPE.
    let multi = d.join("multi.bak");
    for _ in 0..2 {
        exec(
            &mut c,
            &format!(
                "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM",
                multi.display()
            ),
        )
        .await;
        exec(&mut c, "SIMCTL ADVANCE MINUTES = 10").await;
    }
    let f = bakfile::inspect(&multi).unwrap();
    assert!(f.is_sound(), "{:?}", f.damage);
    let pos: Vec<u16> = f.sets.iter().map(|s| s.header.position).collect();
    assert_eq!(pos, [1, 2]);
    assert!(bakfile::check(&multi).unwrap().ok);
    let r = rows(
        &mut c,
        &format!("RESTORE HEADERONLY FROM DISK = N'{}'", multi.display()),
    )
    .await;
    assert_eq!(r.len(), 2);
    exec(
        &mut c,
        &format!(
            "RESTORE VERIFYONLY FROM DISK = N'{}' WITH FILE = 2, CHECKSUM",
            multi.display()
        ),
    )
    .await;
}

/// A datetime column as text, from tiberius' raw form (days since 1900, 1/300 s).
fn dt_text(r: &tiberius::Row, col: &str) -> Option<String> {
    let v = r.cells().find_map(|(c, v)| match v {
        tiberius::ColumnData::DateTime(Some(d)) if c.name() == col => Some(*d),
        _ => None,
    })?;
    let base = time::Date::from_calendar_date(1900, time::Month::January, 1).unwrap();
    let date = base + time::Duration::days(i64::from(v.days()));
    let secs = (u64::from(v.seconds_fragments()) * 10 / 3 / 1000) as u32;
    Some(format!(
        "{date} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

fn numeric_text(r: &tiberius::Row, col: &str) -> Option<String> {
    r.get::<tiberius::numeric::Numeric, _>(col)
        .map(|n| n.value().to_string())
}

#[tokio::test]
async fn headeronly_filelistonly_verifyonly_answer_for_real_backups() {
    let Some(dir) = baks() else {
        println!("skipped: ../shared/baks/expected.json not found");
        return;
    };
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let sim = start(true).await;
    let mut c = connect(sim.addr).await;
    let mut n = 0;
    for e in expected["backups"].as_array().unwrap() {
        let file = dir.join(e["file"].as_str().unwrap());
        if !file.exists() {
            println!("skipped: {} not found", file.display());
            continue;
        }
        let path = file.display().to_string();
        let h = rows(&mut c, &format!("RESTORE HEADERONLY FROM DISK = N'{path}'")).await;
        assert_eq!(h.len(), 1, "{path}");
        let r = &h[0];
        let s = |k: &str| e[k].as_str().map(str::to_string);
        let col = |c: &str| r.get::<&str, _>(c).map(str::to_string);
        assert_eq!(col("DatabaseName"), s("database_name"), "{path}");
        assert_eq!(col("ServerName"), s("server_name"), "{path}");
        assert_eq!(col("UserName"), s("user_name"), "{path}");
        assert_eq!(col("MachineName"), s("machine_name"), "{path}");
        let name = s("backup_set_name").filter(|n| !n.is_empty());
        assert_eq!(col("BackupName"), name, "{path}");
        let ty = match e["backup_type"].as_str().unwrap() {
            "D" => 1,
            "L" => 2,
            "I" => 5,
            other => panic!("type {other}"),
        };
        assert_eq!(r.get::<i16, _>("BackupType"), Some(ty), "{path}");
        for (colname, key) in [
            ("FirstLSN", "first_lsn"),
            ("LastLSN", "last_lsn"),
            ("CheckpointLSN", "checkpoint_lsn"),
            ("DatabaseBackupLSN", "database_backup_lsn"),
        ] {
            assert_eq!(numeric_text(r, colname), s(key), "{path} {colname}");
        }
        assert_eq!(
            dt_text(r, "BackupStartDate"),
            s("backup_start_date"),
            "{path}"
        );
        assert_eq!(
            dt_text(r, "DatabaseCreationDate"),
            s("database_creation_date"),
            "{path}"
        );
        let version = format!(
            "{}.{}.{}",
            r.get::<i32, _>("SoftwareVersionMajor").unwrap(),
            r.get::<i32, _>("SoftwareVersionMinor").unwrap(),
            r.get::<i32, _>("SoftwareVersionBuild").unwrap()
        );
        assert_eq!(Some(version), s("software_version"), "{path}");
        assert_eq!(
            r.get::<i32, _>("DatabaseVersion").map(i64::from),
            e["database_version"].as_i64(),
            "{path}"
        );
        assert_eq!(
            r.get::<u8, _>("CompatibilityLevel").map(i64::from),
            e["compatibility_level"].as_i64(),
            "{path}"
        );
        assert_eq!(
            r.get::<i32, _>("UnicodeLocaleId").map(i64::from),
            e["unicode_locale_id"].as_i64(),
            "{path}"
        );
        assert_eq!(
            r.get::<bool, _>("HasBackupChecksums"),
            e["has_backup_checksums"].as_bool(),
            "{path}"
        );
        assert_eq!(
            r.get::<bool, _>("Compressed"),
            Some(e["container"] == "mssqlbak-compressed"),
            "{path}"
        );

        let fl = rows(
            &mut c,
            &format!("RESTORE FILELISTONLY FROM DISK = N'{path}'"),
        )
        .await;
        let logical: Vec<String> = fl
            .iter()
            .map(|r| r.get::<&str, _>("LogicalName").unwrap().to_string())
            .collect();
        let physical: Vec<String> = fl
            .iter()
            .map(|r| r.get::<&str, _>("PhysicalName").unwrap().to_string())
            .collect();
        let list = |k: &str| -> Vec<String> {
            e[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(logical, list("files"), "{path}");
        assert_eq!(physical, list("physical_names"), "{path}");

        // VERIFYONLY checks the real file with the same checker as inspect --check.
        let with = if e["has_backup_checksums"].as_bool() == Some(true) {
            " WITH CHECKSUM"
        } else {
            ""
        };
        exec(
            &mut c,
            &format!("RESTORE VERIFYONLY FROM DISK = N'{path}'{with}"),
        )
        .await;
        if with.is_empty() {
            assert_eq!(
                sql_error_numbers(
                    &mut c,
                    &format!("RESTORE VERIFYONLY FROM DISK = N'{path}' WITH CHECKSUM")
                )
                .await,
                [3187, 3013],
                "{path}"
            );
        }
        if n == 0 {
            // Its pages are SQL Server's, not the simulator's: no RESTORE from it.
            assert_eq!(
                sql_error_numbers(
                    &mut c,
                    &format!("RESTORE DATABASE [Real] FROM DISK = N'{path}'")
                )
                .await,
                [3203, 3013],
                "{path}"
            );
        }
        n += 1;
    }
    assert!(n > 0);
}
