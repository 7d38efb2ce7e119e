//! The journal (issue 15): every job command is recorded with who ran it and its
//! typed outcome, and an entry edited or deleted afterwards with the sqlite3 tool
//! (here Python's sqlite3 module, the same library) is found and named.

use serde_json::Value;

use crate::common::TestConfig;

fn sqlite(db: &std::path::Path, sql: &str) {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
        ])
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn jobs_are_journaled_and_tampering_is_found() {
    let t = TestConfig::new();
    let src = t.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.ini"), "x=1\n").unwrap();
    let src = src.to_str().unwrap();
    t.ok(&["repo", "init"]);
    t.ok(&["backup", "files", src]);
    let (code, _, _) = t.run(&["backup", "files", "/nonexistent/pacs"]);
    assert_eq!(code, 2);
    t.ok(&["verify"]);
    t.ok(&["snapshots"]); // a listing: not journaled

    let entries: Value = serde_json::from_str(&t.ok(&["--json", "journal"])).unwrap();
    let entries = entries.as_array().unwrap();
    let kinds: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["job"].as_str().unwrap(),
                e["status"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("job-start", "repo", "-"),
            ("job-end", "repo", "ok"),
            ("job-start", "backup", "-"),
            ("job-end", "backup", "ok"),
            ("job-start", "backup", "-"),
            ("job-end", "backup", "failed"),
            ("job-start", "verify", "-"),
            ("job-end", "verify", "ok"),
        ],
        "{entries:#?}"
    );
    // The typed outcome as --json prints it, and who ran what.
    assert_eq!(
        entries[3]["outcome"]["summary"]["files"], 1,
        "{:#}",
        entries[3]
    );
    assert_eq!(entries[5]["outcome"]["kind"], "io", "{:#}", entries[5]);
    assert!(entries[2]["who"]["command_line"]
        .as_str()
        .unwrap()
        .contains("backup files"));
    assert!(!entries[2]["who"]["host"].as_str().unwrap().is_empty());
    let (code, out, _) = t.run(&["journal", "verify"]);
    assert_eq!(code, 0, "{out}");

    // The failed backup made to look good: found, by number.
    let db = t.config().join("journal.sqlite3");
    sqlite(&db, "UPDATE entries SET status = 'ok' WHERE seq = 6");
    let (code, out, _) = t.run(&["journal", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 6 (job-end backup"), "{out}");
    // An entry deleted: the gap is named.
    sqlite(&db, "DELETE FROM entries WHERE seq = 3");
    let v: Value = serde_json::from_str(&t.run(&["--json", "journal", "verify"]).1).unwrap();
    let problems = v["problems"].to_string();
    assert!(problems.contains("entries 3 to 3 are missing"), "{v}");
}
