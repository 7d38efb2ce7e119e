//! `pacsbak journal [verify]`, and the journal session every job command runs in:
//! its start (who, the command line) before it runs, its end with the typed outcome.

use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Subcommand};

use super::context::{load_config, print_json};
use super::GlobalArgs;
use crate::journal::{EntryKind, Journal, JournalFilter, NewEntry, Who};

/// Options of `journal`.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// `verify`: check that no entry was changed or deleted.
    #[command(subcommand)]
    command: Option<JournalCommand>,
    /// Only entries at or after this time (`2026-12-01`, `2026-12-01T08:00`; UTC).
    #[arg(long)]
    since: Option<String>,
    /// Only this job: a command (`backup`, `restore`, `verify`, `copy`, `check`,
    /// `repo`), or a daemon job (`backup-full`, `backup-diff`, `backup-log`,
    /// `backup-folders`, `copy`, `verify`; `daemon` for its starts, reloads, stops).
    #[arg(long)]
    job: Option<String>,
    /// Only entries about this database.
    #[arg(long)]
    database: Option<String>,
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Check the chain of entries: names every entry edited or deleted; exit 1 then.
    Verify,
}

/// Runs `journal`.
pub fn run(global: &GlobalArgs, args: JournalArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global)?;
    let journal = Journal::open(&cfg.journal_path())?;
    if let Some(JournalCommand::Verify) = args.command {
        let check = journal.verify()?;
        if global.json {
            print_json(&check)?;
        } else {
            for p in &check.problems {
                println!("TAMPERED {p}");
            }
            println!(
                "{}: {} entries, {}",
                check.path,
                check.entries,
                if check.ok {
                    "chain intact"
                } else {
                    "CHAIN BROKEN: entries were changed or deleted after they were written"
                }
            );
        }
        return Ok(super::context::done(check.ok));
    }
    let entries = journal.list(&JournalFilter {
        since: args.since,
        job: args.job,
        database: args.database,
    })?;
    if global.json {
        print_json(&entries)?;
    } else {
        for e in &entries {
            println!(
                "{:>6} {} {:<9} {:<8} {:<10} {:<12} {:<7} {}@{}  {}",
                e.seq,
                e.time,
                e.kind.as_str(),
                e.job,
                e.policy.as_deref().unwrap_or("-"),
                e.database.as_deref().unwrap_or("-"),
                e.status.as_deref().unwrap_or("-"),
                e.who.user,
                e.who.host,
                if e.kind == EntryKind::JobStart {
                    e.who.command_line.as_str()
                } else {
                    ""
                }
            );
        }
        println!("{} entries", entries.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// The outcome the command printed, kept for its journal entry.
static OUTCOME: Mutex<Option<serde_json::Value>> = Mutex::new(None);

/// Keeps `outcome` for the journal (called where outcomes are printed).
pub(super) fn keep_outcome(outcome: &crate::outcome::Outcome) {
    if let Ok(v) = serde_json::to_value(outcome) {
        *OUTCOME.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }
}

/// One job command's journal entries.
pub(super) struct JournalSession {
    journal: Journal,
    job_id: String,
    job: String,
    policy: Option<String>,
    database: Option<String>,
    who: Who,
}

impl JournalSession {
    /// Records the start of `job`. A journal that cannot be opened or written does
    /// not stop the job (a backup matters more than its log line): it is said loudly.
    pub(super) fn begin(global: &GlobalArgs, job: &str) -> Option<JournalSession> {
        let cfg = load_config(global).ok()?;
        let args: Vec<String> = std::env::args().collect();
        let who = Who::this_process(arg_value(&args, "--reason"));
        let opened = Journal::open(&cfg.journal_path()).and_then(|mut journal| {
            journal.prune(
                cfg.main
                    .journal
                    .keep_days
                    .unwrap_or(crate::journal::MIN_KEEP_DAYS),
                &who,
            )?;
            Ok(journal)
        });
        let mut session = match opened {
            Ok(journal) => JournalSession {
                journal,
                job_id: format!("{:016x}", rand::random::<u64>()),
                job: job.to_string(),
                policy: arg_value(&args, "--policy"),
                database: arg_value(&args, "--database"),
                who,
            },
            Err(e) => {
                tracing::error!(error = %e, "the journal cannot be opened: this job is not recorded");
                return None;
            }
        };
        match session.write(EntryKind::JobStart, None, None) {
            Ok(()) => Some(session),
            Err(e) => {
                tracing::error!(error = %e, "the journal cannot be written: this job is not recorded");
                None
            }
        }
    }

    /// Records the end: the status, and the outcome printed (or the failure).
    pub(super) fn end(mut self, ok: bool, failure: Option<&crate::ErrorRecord>) {
        let kept = OUTCOME.lock().unwrap_or_else(|p| p.into_inner()).take();
        let outcome = kept.or_else(|| failure.and_then(|f| serde_json::to_value(f).ok()));
        let status = if ok { "ok" } else { "failed" };
        if let Err(e) = self.write(EntryKind::JobEnd, Some(status), outcome) {
            tracing::error!(error = %e, "the journal cannot be written: this job's end is not recorded");
        }
    }

    fn write(
        &mut self,
        kind: EntryKind,
        status: Option<&str>,
        outcome: Option<serde_json::Value>,
    ) -> crate::Result<()> {
        self.journal
            .append(NewEntry {
                kind,
                job_id: self.job_id.clone(),
                job: self.job.clone(),
                policy: self.policy.clone(),
                database: self.database.clone(),
                status: status.map(str::to_string),
                who: self.who.clone(),
                outcome,
            })
            .map(|_| ())
    }
}

/// The value of `--name VALUE` or `--name=VALUE` in the command line.
fn arg_value(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&prefix).map(str::to_string)
        }
    })
}
