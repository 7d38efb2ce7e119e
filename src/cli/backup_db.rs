//! `backup db`, `backup folders`, `backup manual`: the policy jobs of src/jobs/,
//! printed for people or as JSON.

use std::process::ExitCode;

use super::context::{human_bytes, load_policy, print_json, runtime, terminal_progress};
use super::GlobalArgs;
use crate::jobs::db_backup::{self, DbBackupOptions, DbBackupRun};
use crate::jobs::folders::{self, FoldersRun};
use crate::jobs::{manual, open_targets};
use crate::sqlserver::{BackupKind, Instance};

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints a database run.
pub fn print_db_run(r: &DbBackupRun) {
    println!("Database backups of policy {} on {}", r.policy, r.instance);
    for d in &r.results {
        if d.ok {
            println!(
                "  OK    {:<20} {:<4}{} {}  backup {:.1}s, verifyonly {:.1}s",
                d.database,
                d.kind.as_str(),
                if d.copy_only { " copy-only" } else { "" },
                human_bytes(d.size),
                d.backup_seconds,
                d.verifyonly_seconds
            );
        } else {
            println!(
                "  FAIL  {:<20} {:<4} {}",
                d.database,
                d.kind.as_str(),
                d.error.as_deref().unwrap_or("failed")
            );
        }
        for n in &d.notes {
            println!("        note: {n}");
        }
        for f in &d.files {
            println!("        file: {f}");
        }
        for o in &d.offsite {
            println!(
                "        offsite {}: snapshot {} {}",
                o.target,
                o.snapshot.as_deref().unwrap_or("-"),
                if o.verified {
                    format!(
                        "stored {:.1}s, read back {:.1}s",
                        o.ingest_seconds, o.verify_seconds
                    )
                } else {
                    format!("FAILED: {}", o.error.as_deref().unwrap_or("?"))
                }
            );
        }
    }
}

/// Prints a folders run.
pub fn print_folders_run(r: &FoldersRun) {
    println!("Program folders of policy {}", r.policy);
    for f in &r.results {
        match f.status.as_str() {
            "backed-up" => println!(
                "  OK     {:<20} {}  -> {}",
                f.name,
                f.path,
                f.offsite
                    .iter()
                    .map(|o| format!("{} {}", o.target, o.snapshot.as_deref().unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "not-due" => println!(
                "  -      {:<20} {}  not due (last good copy {}; next {})",
                f.name,
                f.path,
                f.last_good_age_hours
                    .map(|h| format!("{h:.1} hours ago"))
                    .unwrap_or_else(|| "none".into()),
                f.next_due.as_deref().unwrap_or("-")
            ),
            "missed" => println!(
                "  MISSED {:<20} {} ({}); last good copy: {}",
                f.name,
                f.path,
                f.error.as_deref().unwrap_or("unreachable"),
                f.last_good_age_hours
                    .map(|h| format!("{h:.1} hours ago"))
                    .unwrap_or_else(|| "none".into())
            ),
            _ => println!(
                "  FAIL   {:<20} {}: {}",
                f.name,
                f.path,
                f.error.as_deref().unwrap_or("failed")
            ),
        }
    }
}

/// `backup db`.
pub fn run_db(
    global: &GlobalArgs,
    policy: &str,
    kind: Option<BackupKind>,
    database: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (cfg, policy) = load_policy(global, policy)?;
    let rt = runtime()?;
    rt.block_on(async {
        let targets = open_targets(&cfg, &policy).await?;
        let instance = Instance::open(&policy.instance_spec()?).await?;
        let opts = DbBackupOptions {
            kind,
            database,
            progress: terminal_progress(global.json),
            ..DbBackupOptions::default()
        };
        let r = db_backup::run(&policy, &instance, &targets, &opts).await?;
        if global.json {
            print_json(&r)?;
        } else {
            print_db_run(&r);
        }
        Ok(exit(r.ok))
    })
}

/// `backup folders`.
pub fn run_folders(
    global: &GlobalArgs,
    policy: &str,
    names: Vec<String>,
    due: bool,
) -> anyhow::Result<ExitCode> {
    let (cfg, policy) = load_policy(global, policy)?;
    if let Some(unknown) = names
        .iter()
        .find(|n| !policy.folders.iter().any(|f| &f.name == *n))
    {
        let known: Vec<&str> = policy.folders.iter().map(|f| f.name.as_str()).collect();
        anyhow::bail!(
            "policy {} has no folder named {unknown:?}; its folders: {}",
            policy.name,
            known.join(", ")
        );
    }
    let filter = folders::FolderFilter {
        only_server: false,
        names,
        due_at: due.then(crate::storage::local_now),
    };
    let rt = runtime()?;
    rt.block_on(async {
        let targets = open_targets(&cfg, &policy).await?;
        let r = folders::run(&policy, &targets, &filter, false, &[], &Default::default()).await;
        if global.json {
            print_json(&r)?;
        } else {
            print_folders_run(&r);
        }
        Ok(exit(r.ok))
    })
}

/// `backup manual`.
pub fn run_manual(global: &GlobalArgs, policy: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let (cfg, policy) = load_policy(global, policy)?;
    let rt = runtime()?;
    rt.block_on(async {
        let targets = open_targets(&cfg, &policy).await?;
        let instance = Instance::open(&policy.instance_spec()?).await?;
        let r = manual::run(
            &policy,
            &instance,
            &targets,
            reason,
            terminal_progress(global.json),
        )
        .await?;
        if global.json {
            print_json(&r)?;
        } else {
            println!("Manual backup: {reason}");
            print_db_run(&r.databases);
            print_folders_run(&r.folders);
            println!(
                "What can be restored from where (pinned: retention keeps it until unpinned):"
            );
            for l in &r.restorable {
                println!("  {l}");
            }
        }
        Ok(exit(r.ok))
    })
}
