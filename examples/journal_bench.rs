//! The journal at a year's size (issue 15): 20 databases, a log every 15 minutes, a
//! full or differential each night, one verify a night: about 700,000 jobs, each a
//! start and an end entry. Prints how long `status` takes to read what it needs
//! from it (the last verify) and how long `journal verify` takes over all of it.
//!
//! `cargo run --release --example journal_bench [-- JOBS]`

use std::time::Instant;

use pacsbak::journal::{EntryKind, Journal, NewEntry, Who};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20 * 96 * 365);
    let dir = tempfile_dir()?;
    let path = dir.join("journal.sqlite3");
    let mut journal = Journal::open(&path)?;
    let who = Who {
        user: "pacsbak".into(),
        host: "pacs-backup".into(),
        command_line: "pacsbak daemon".into(),
        reason: None,
    };
    let started = Instant::now();
    let mut batch = Vec::with_capacity(20_000);
    for n in 0..jobs {
        let (job, database) = if n % 1000 == 999 {
            ("verify", None)
        } else {
            ("backup", Some(format!("PACS{:02}", n % 20)))
        };
        for kind in [EntryKind::JobStart, EntryKind::JobEnd] {
            batch.push(NewEntry {
                kind,
                job_id: format!("{n:016x}"),
                job: job.into(),
                policy: Some("pacs".into()),
                database: database.clone(),
                status: (kind == EntryKind::JobEnd).then(|| "ok".into()),
                who: who.clone(),
                outcome: (kind == EntryKind::JobEnd).then(|| {
                    serde_json::json!({"job": "backup-db", "ok": true, "results": [{"database": database, "kind": "log", "size": 1_048_576, "status": "ok"}]})
                }),
            });
        }
        if batch.len() >= 20_000 {
            journal.append_all(std::mem::take(&mut batch))?;
        }
    }
    journal.append_all(batch)?;
    let fill = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path)?.len();

    let t = Instant::now();
    let last = journal.last_end("verify")?;
    let status_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let check = journal.verify()?;
    let verify_s = t.elapsed().as_secs_f64();
    assert!(check.ok && last.is_some(), "{check:?}");

    println!("| measure | value | bound |");
    println!("|---|---|---|");
    println!("| jobs (entries) | {jobs} ({}) | |", check.entries);
    println!("| journal file | {:.0} MiB | |", size as f64 / 1048576.0);
    println!("| filling it (batches of 20,000) | {fill:.1} s | |");
    println!(
        "| status's journal read (last verify) | {status_ms:.2} ms | < 200 ms for all of status |"
    );
    println!("| journal verify | {verify_s:.2} s | < 5 s |");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("pacsbak-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
