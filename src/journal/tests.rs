use super::*;

fn entry(job: &str, status: Option<&str>) -> NewEntry {
    NewEntry {
        kind: if status.is_some() {
            EntryKind::JobEnd
        } else {
            EntryKind::JobStart
        },
        job_id: "j1".into(),
        job: job.into(),
        policy: Some("pacs".into()),
        database: Some("PACS".into()),
        status: status.map(str::to_string),
        who: Who {
            user: "it".into(),
            host: "pacs-backup".into(),
            command_line: "pacsbak backup db --policy pacs".into(),
            reason: None,
        },
        outcome: status.map(|s| serde_json::json!({ "job": job, "ok": s == "ok" })),
    }
}

fn journal_with(n: usize) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("journal.sqlite3")).unwrap();
    for i in 0..n {
        j.append(entry("backup", (i % 2 == 1).then_some("ok")))
            .unwrap();
    }
    (dir, j)
}

#[test]
fn an_intact_journal_verifies_and_lists_by_filter() {
    let (_d, j) = journal_with(6);
    let check = j.verify().unwrap();
    assert!(check.ok && check.entries == 6, "{check:?}");
    let all = j.list(&JournalFilter::default()).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[3].outcome.as_ref().unwrap()["ok"], true);
    assert!(j
        .list(&JournalFilter {
            job: Some("restore".into()),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    assert_eq!(
        j.list(&JournalFilter {
            database: Some("pacs".into()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        6
    );
}

#[test]
fn an_edited_entry_is_found_and_named() {
    let (_d, j) = journal_with(5);
    j.conn
        .execute("UPDATE entries SET status = 'failed' WHERE seq = 2", [])
        .unwrap();
    let check = j.verify().unwrap();
    assert!(!check.ok);
    assert!(
        check.problems.iter().any(|p| p.starts_with("entry 2 ")),
        "{check:?}"
    );
    assert_eq!(check.problems.len(), 1, "{check:?}");
}

#[test]
fn a_deleted_entry_is_found() {
    let (_d, j) = journal_with(5);
    j.conn
        .execute("DELETE FROM entries WHERE seq = 3", [])
        .unwrap();
    let check = j.verify().unwrap();
    assert!(!check.ok);
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("entries 3 to 3 are missing")),
        "{check:?}"
    );
    // The last entry deleted too: the chain still ends where it ends, but a
    // re-chained rewrite would not verify either.
    j.conn
        .execute("UPDATE entries SET prev_hash = 'x' WHERE seq = 4", [])
        .unwrap();
    assert!(j.verify().unwrap().problems.len() >= 2);
}

#[test]
fn pruning_keeps_the_chain_checkable_and_never_goes_below_six_months() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let start = time::macros::datetime!(2026-01-01 00:00 UTC);
    let clock = crate::clock::Clock::manual(start, "UTC").unwrap();
    let mut j = Journal::open(&path).unwrap().with_clock(clock.clone());
    for day in 0..300 {
        clock.set(start + time::Duration::days(day));
        j.append(entry("backup", Some("ok"))).unwrap();
    }
    // keep_days 30 is raised to 180.
    let removed = j.prune(30, &Who::default()).unwrap();
    assert_eq!(
        removed,
        300 - 181,
        "entries of the last 180 days (and today) stay"
    );
    let check = j.verify().unwrap();
    assert!(check.ok, "{check:?}");
    assert_eq!(check.entries, 182);
}
