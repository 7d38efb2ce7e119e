//! The command line: argument parsing and output formatting over the library.
//!
//! One file per command; each has an `Args` struct (clap) and a `run` function that
//! calls the library and prints the result, as text or, with `--json`, as JSON for
//! scripts and monitoring.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod backup;
mod backup_db;
mod check;
mod context;
mod copy;
mod diff;
mod inspect;
mod repo;
mod restore;
mod restore_files;
mod sandbox;
mod simulator;
mod snapshots;
mod target;
mod verify;

/// pacsbak: SQL Server and PACS program backups, offsite, verified.
#[derive(Debug, Parser)]
#[command(name = "pacsbak", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
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
    /// Run the SQL Server simulator (TDS) for tests and training.
    Simulator(simulator::SimulatorArgs),
    /// Check an instance against a policy: Agent, recovery models, growth, log, space, RPO.
    Check(check::CheckArgs),
    /// Try pacsbak end to end on the bundled simulator, in a folder of its own.
    Sandbox(sandbox::SandboxArgs),
}

/// Sets up logging to stderr; `RUST_LOG` wins over `-v`.
pub fn init_tracing(global: &GlobalArgs) {
    let default = match global.verbose {
        // tiberius warns on every plaintext connection; the policy's `encryption`
        // already says so, and pacsbak warns itself where it matters.
        0 => "warn,tiberius=error",
        1 => "info,tiberius=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    // Read the local UTC offset while the process still has one thread.
    crate::storage::init_local_offset();
    match cli.command {
        Command::Repo(a) => repo::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Verify(a) => verify::run(g, a),
        Command::Inspect(a) => inspect::run(&a, g.json),
        Command::Target(a) => target::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Simulator(a) => simulator::run(a),
        Command::Check(a) => check::run(g, a),
        Command::Sandbox(a) => sandbox::run(g, a),
    }
}
