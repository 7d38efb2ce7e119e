//! A repository written by an earlier build (../shared/fixtures/repository-2026-12,
//! main at ac30f7c) must read, plan and restore with this build, and what this build
//! writes into it must read too. Every later change of the format runs this test.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/repository-2026-12");
    if dir.join("expected.json").is_file() {
        Some(dir)
    } else {
        println!(
            "skipped: fixture repository: ../shared/fixtures/repository-2026-12 is not present"
        );
        None
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn pacsbak(config: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pacsbak"))
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .env_remove("PACSBAK_PASSWORD")
        .env_remove("PACSBAK_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("pacsbak {args:?}: not JSON ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Every snapshot, its record and the plan, as the earlier build reported them.
fn check_as_reported(cfg: &Path, expected: &Value) {
    let (code, snaps, err) = pacsbak(cfg, &["snapshots"]);
    assert_eq!(code, 0, "{err}");
    let snaps = snaps["snapshots"].as_array().unwrap();
    for want in expected["snapshots"].as_array().unwrap() {
        let got = snaps
            .iter()
            .find(|s| s["id"] == want["id"])
            .unwrap_or_else(|| panic!("snapshot {} is not listed", want["id"]));
        for key in ["kind", "pinned", "files", "size"] {
            assert_eq!(got[key], want[key], "snapshot {} {key}", want["id"]);
        }
        let sorted = |v: &Value| {
            let mut t: Vec<String> = serde_json::from_value(v.clone()).unwrap();
            t.sort();
            t
        };
        assert_eq!(
            sorted(&got["tags"]),
            sorted(&want["tags"]),
            "{}",
            want["id"]
        );
        if want["kind"] == "sql-backup" {
            // Read as a typed record, not from the raw map.
            let r = &got["record"];
            assert_eq!(r["database"], want["database"], "{}", want["id"]);
            for lsn in ["first_lsn", "last_lsn", "checkpoint_lsn"] {
                assert_eq!(r[lsn], want[lsn], "snapshot {} {lsn}", want["id"]);
            }
            assert_eq!(r["copy_only"], want["copy_only"]);
            assert!(r["server_version"].is_string(), "{r}");
        }
    }
    let (code, plan, err) = pacsbak(cfg, &["restore", "db", "plan", "--database", "PACS"]);
    assert_eq!(code, 0, "{plan}\n{err}");
    let want = &expected["restore_db_plan_latest"];
    assert_eq!(plan["database"], want["database"]);
    let steps = plan["steps"].as_array().unwrap();
    let want_steps = want["steps"].as_array().unwrap();
    assert_eq!(steps.len(), want_steps.len(), "{plan}");
    for (s, w) in steps.iter().zip(want_steps) {
        for key in ["kind", "first_lsn", "last_lsn"] {
            assert_eq!(s[key], w[key], "{plan}");
        }
    }
}

#[test]
fn a_repository_of_an_earlier_build_reads_plans_and_restores() {
    let Some(src) = fixture() else { return };
    let expected: Value =
        serde_json::from_slice(&std::fs::read(src.join("expected.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("fixture");
    copy_tree(&src, &cfg);
    // The fixture's passphrase file must be private, as pacsbak demands.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let pass = cfg.join("repository.pass");
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    check_as_reported(&cfg, &expected);

    // The file snapshot restores byte for byte (its link as a link).
    let files = &expected["files_snapshot"];
    let out = tmp.path().join("restored");
    let id = files["id"].as_str().unwrap();
    let (code, _, err) = pacsbak(
        &cfg,
        &["restore", "files", id, "--to", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let root = out.join("files");
    for (path, want) in files["files"].as_object().unwrap() {
        let p = root.join(path);
        if let Some(sum) = want.get("sha256") {
            assert_eq!(sha256(&p), sum.as_str().unwrap(), "{path}");
        } else {
            let link = std::fs::read_link(&p).unwrap();
            assert_eq!(
                link.to_string_lossy(),
                want["link"].as_str().unwrap(),
                "{path}"
            );
        }
    }

    // This build writes a native backup's record into the old repository: the
    // newest full's file again, as a copy-only full, stored with the new record.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use pacsbak::records::{BackupRecord, Tag};
        use pacsbak::repository::{BackupOptions, Repository, RestoreOptions, SnapshotKind};
        let config = pacsbak::config::ConfigDir::load(&cfg).unwrap();
        let pass = pacsbak::config::repository_passphrase(&config.main, &config.dir).unwrap();
        let repo = Repository::open(
            pacsbak::storage::open_target(config.target(None).unwrap()).unwrap(),
            &pass,
        )
        .await
        .unwrap();
        let snaps = repo.snapshots().await.unwrap();
        let full = snaps
            .iter()
            .filter(|s| s.snapshot.kind == SnapshotKind::SqlBackup && !s.snapshot.pinned)
            .filter_map(|s| Some((s, BackupRecord::from_snapshot(&s.snapshot).ok()?)))
            .filter(|(_, r)| r.kind == pacsbak::records::BackupKind::Full)
            .max_by_key(|(_, r)| r.checkpoint_lsn)
            .unwrap();
        let staged = tmp.path().join("staged");
        repo.restore(full.0, &staged, &RestoreOptions::default())
            .await
            .unwrap();
        let file = staged.join(&full.1.files[0].name);
        let record = BackupRecord {
            copy_only: true,
            pinned: true,
            reason: Some("fixture: written by this build".into()),
            ..full.1.clone()
        };
        let opts = BackupOptions {
            tags: [
                Tag::SqlBackup,
                Tag::Database(record.database.clone()),
                Tag::Kind(record.kind),
                Tag::CopyOnly,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            kind: SnapshotKind::SqlBackup,
            meta: record.to_meta(),
            pinned: true,
            ..BackupOptions::default()
        };
        let report = repo.backup(&[file], &opts).await.unwrap();
        let written = repo
            .find_snapshot(&report.snapshot_id.to_hex())
            .await
            .unwrap();
        assert_eq!(
            BackupRecord::from_snapshot(&written.snapshot).unwrap(),
            record
        );
    });
    // Everything the earlier build wrote still reads the same beside it.
    check_as_reported(&cfg, &expected);
}
