//! The command line: argument parsing and output formatting over the library.
//!
//! One file per command; each has an `Args` struct (clap) and a `run` function that
//! calls the library and prints the result, as text or, with `--json`, as JSON for
//! scripts and monitoring.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod alert;
mod backup;
mod backup_db;
mod check;
mod context;
mod copy;
mod daemon;
mod diff;
mod drill;
mod filter;
mod inspect;
mod journal;
mod repo;
mod restore;
mod restore_files;
mod retention;
mod sandbox;
mod secret;
mod service;
mod simulator;
mod snapshots;
mod status;
mod target;
mod verify;

/// pacsbak: SQL Server and PACS program backups, offsite, verified.
#[derive(Debug, Parser)]
#[command(name = "pacsbak", version, about, long_about = None)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration folder (pacsbak.toml, storage-targets/, policies/, restore-tests/).
    #[arg(long, global = true, env = "PACSBAK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository and manage its passphrases.
    Repo(repo::RepoArgs),
    /// The journal of jobs (who ran what, when, and the outcome); `journal verify`.
    Journal(journal::JournalArgs),
    /// Are we protected right now? Per database the newest restorable point against
    /// the RPO, the copies on each target, folders, last verify, next runs, problems.
    Status(status::StatusArgs),
    /// Run every schedule unattended (foreground; a service wraps it).
    Daemon(daemon::DaemonArgs),
    /// Alert channels: `alert test` sends a test message to each.
    Alert(alert::AlertArgs),
    /// The daemon as a Windows service: `service install`, `service uninstall`.
    Service(service::ServiceArgs),
    /// Back up into the repository.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// Show what changed between two snapshots.
    Diff(diff::DiffArgs),
    /// Restore files from the repository, or plan a database restore.
    Restore(restore::RestoreArgs),
    /// Check the repository (and read data back).
    Verify(verify::VerifyArgs),
    /// Show what SQL Server backup files hold (HEADERONLY, FILELISTONLY); --check verifies them.
    Inspect(inspect::InspectArgs),
    /// Check storage targets.
    Target(target::TargetArgs),
    /// Copy snapshots to other targets (only missing packs travel).
    Copy(copy::CopyArgs),
    /// Which snapshots the rules keep (`retention plan`), and removing the rest
    /// (`retention apply`).
    Retention(retention::RetentionArgs),
    /// Free the space of removed snapshots: two phases, a grace period, no lock.
    Prune(retention::PruneArgs),
    /// Secrets kept with Windows DPAPI (`secret set NAME`).
    Secret(secret::SecretArgs),
    /// DR drills: restore from the offsite copy into a staging instance, check,
    /// time against the RTO, drop (`restore-tests/*.toml`).
    Drill(drill::DrillArgs),
    /// Run the SQL Server simulator (TDS) for tests and training.
    Simulator(simulator::SimulatorArgs),
    /// Check an instance against a policy: Agent, recovery models, growth, log, space, RPO.
    Check(check::CheckArgs),
    /// Try pacsbak end to end on the bundled simulator, in a folder of its own.
    Sandbox(sandbox::SandboxArgs),
}

/// Sets up logging to stderr (`RUST_LOG` wins over `-v`) and, for the daemon, to
/// the log file of `[log]`: rotated at its size cap, JSON lines or text, no colour.
pub fn init_tracing(cli: &Cli) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    let log = match cli.command {
        Command::Daemon(_) | Command::Service(_) => context::load_config(&cli.global)
            .ok()
            .map(|c| (c.main.log.clone(), c.dir)),
        _ => None,
    };
    let default = match cli.global.verbose {
        // tiberius warns on every plaintext connection (the policy's `encryption`
        // already says so) and logs every server ERROR token itself, before pacsbak
        // reports the same error once, with its context: it is silenced.
        0 if log.is_some() => "info,tiberius=off",
        0 => "warn,tiberius=off",
        1 => "info,tiberius=off",
        _ => "debug",
    };
    let level = log
        .as_ref()
        .and_then(|(l, _)| l.level.clone())
        .map(|l| format!("{l},tiberius=off"));
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.as_deref().unwrap_or(default)));
    type Boxed = Box<
        dyn Layer<tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>>
            + Send
            + Sync,
    >;
    let mut layers: Vec<Boxed> = vec![tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .boxed()];
    let mut file_error = None;
    if let Some((section, dir)) = &log {
        if let Some(path) = &section.path {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                dir.join(path)
            };
            match crate::logfile::RotatingFile::open(
                &path,
                section.max_size_mib << 20,
                section.keep_files,
            ) {
                Ok(f) => {
                    let f = std::sync::Arc::new(f);
                    let layer = tracing_subscriber::fmt::layer()
                        .with_writer(f)
                        .with_ansi(false);
                    layers.push(match section.format {
                        crate::config::LogFormat::Json => layer.json().boxed(),
                        crate::config::LogFormat::Text => layer.boxed(),
                    });
                }
                Err(e) => file_error = Some(e),
            }
        }
    }
    // The Windows service's failures also go to the event log.
    #[cfg(windows)]
    if matches!(cli.command, Command::Service(_)) {
        if let Some(l) = crate::eventlog::EventLogLayer::open() {
            layers.push(l.boxed());
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init();
    if let Some(e) = file_error {
        tracing::error!(error = %e, "the log file cannot be opened: logging to stderr only");
    }
}

/// The structured form of a command's failure: the library's error (its kind,
/// context and SQL Server error number) under what the command was doing.
pub fn error_record(e: &anyhow::Error) -> crate::error::ErrorRecord {
    let inner = e.chain().find_map(|c| c.downcast_ref::<crate::Error>());
    let Some(inner) = inner else {
        // Only argument checks of the CLI itself fail without a library error.
        return crate::error::ErrorRecord::new(crate::ErrorKind::Config, format!("{e:#}"));
    };
    let mut record = inner.record();
    // What the command was doing, outermost first, down to the library's error.
    let doing: Vec<String> = e
        .chain()
        .take_while(|c| c.downcast_ref::<crate::Error>().is_none())
        .map(|c| c.to_string())
        .collect();
    if !doing.is_empty() {
        record.message = format!("{}: {}", doing.join(": "), record.message);
    }
    record
}

/// Reports a command that could not run, on stderr (or as JSON on stdout with
/// `--json`), and gives its exit code: the one place errors become exit codes.
pub fn report_failure(command: &str, e: &anyhow::Error, json: bool) -> ExitCode {
    let record = error_record(e);
    let code = record.kind.exit_code();
    if json {
        let failure = crate::outcome::Outcome::Failed(crate::outcome::JobFailure {
            command: command.to_string(),
            ok: false,
            error: record,
        });
        if crate::render::print(&failure, true).is_err() {
            eprintln!("error: {e:#}");
        }
    } else {
        eprintln!("error: {record}");
    }
    ExitCode::from(code)
}

impl Command {
    /// The command's name as outcomes and the journal record it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Repo(_) => "repo",
            Command::Journal(_) => "journal",
            Command::Status(_) => "status",
            Command::Daemon(_) => "daemon",
            Command::Alert(_) => "alert",
            Command::Service(_) => "service",
            Command::Backup(_) => "backup",
            Command::Snapshots(_) => "snapshots",
            Command::Diff(_) => "diff",
            Command::Restore(_) => "restore",
            Command::Verify(_) => "verify",
            Command::Inspect(_) => "inspect",
            Command::Target(_) => "target",
            Command::Copy(_) => "copy",
            Command::Retention(_) => "retention",
            Command::Prune(_) => "prune",
            Command::Drill(_) => "drill",
            Command::Secret(_) => "secret",
            Command::Simulator(_) => "simulator",
            Command::Check(_) => "check",
            Command::Sandbox(_) => "sandbox",
        }
    }
}

impl Command {
    /// Whether the journal records this command: everything that backs up,
    /// restores, checks, copies or changes keys; not the read-only listings.
    fn is_journaled(&self) -> bool {
        matches!(
            self,
            Command::Repo(_)
                | Command::Backup(_)
                | Command::Restore(_)
                | Command::Verify(_)
                | Command::Copy(_)
                | Command::Retention(_)
                | Command::Prune(_)
                | Command::Drill(_)
                | Command::Check(_)
        )
    }
}

/// The binary's whole run: the command inside its journal session, failures
/// reported, the exit code.
pub fn main(cli: Cli) -> ExitCode {
    let (name, json) = (cli.command.name(), cli.global.json);
    let session = if cli.command.is_journaled() {
        journal::JournalSession::begin(&cli.global, name)
    } else {
        None
    };
    let (code, failure) = match run(cli) {
        Ok(code) => (code, None),
        Err(err) => {
            let record = error_record(&err);
            (report_failure(name, &err, json), Some(record))
        }
    };
    if let Some(s) = session {
        s.end(code == ExitCode::SUCCESS, failure.as_ref());
    }
    code
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Repo(a) => repo::run(g, a),
        Command::Journal(a) => journal::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Daemon(a) => daemon::run(g, a),
        Command::Alert(a) => alert::run(g, a),
        Command::Service(a) => service::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Verify(a) => verify::run(g, a),
        Command::Inspect(a) => inspect::run(&a, g.json),
        Command::Target(a) => target::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Retention(a) => retention::run(g, a),
        Command::Prune(a) => retention::run_prune(g, a),
        Command::Drill(a) => drill::run(g, a),
        Command::Secret(a) => secret::run(g, a),
        Command::Simulator(a) => simulator::run(a),
        Command::Check(a) => check::run(g, a),
        Command::Sandbox(a) => sandbox::run(g, a),
    }
}
