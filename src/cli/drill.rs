//! `pacsbak drill run|list|cleanup|estimate|report`: DR drills from the restore
//! tests in `restore-tests/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::context::{finish, load_config, load_policy, runtime};
use super::GlobalArgs;
use crate::drills::{self, DrillOptions, RestoreTest};
use crate::outcome::Outcome;

/// Options of `drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(subcommand)]
    command: DrillCommand,
}

#[derive(Debug, Subcommand)]
enum DrillCommand {
    /// Restore a test's database from the offsite copy into its staging instance,
    /// check it, time it against the RTO, drop it; write the HTML report.
    Run {
        /// The restore test (`restore-tests/NAME.toml`), or a file.
        name: String,
        /// Write the HTML report here (default: reports/drills/ beside the journal).
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// The restore tests and their last drills; databases killed drills left.
    List,
    /// Drop what killed drills left on the staging instances (only what a drill
    /// created, by its mark).
    Cleanup,
    /// How long a full restore of every database of a policy would take now, from
    /// the sizes in the repository and the throughput drills measured.
    Estimate {
        /// The policy.
        #[arg(long)]
        policy: String,
    },
    /// The HTML report of the last recorded drill of a restore test.
    Report {
        /// The restore test.
        name: String,
        /// Where to write it.
        #[arg(long)]
        html: PathBuf,
    },
}

/// Runs `drill`.
pub fn run(global: &GlobalArgs, args: DrillArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        match args.command {
            DrillCommand::Run { name, html } => {
                let cfg = load_config(global)?;
                let test = RestoreTest::find(&cfg, &name)?;
                let mut rec = drills::run(&cfg, &test, &DrillOptions::default()).await;
                if let Err(e) = drills::save_report(&cfg, &mut rec, html.as_deref()) {
                    tracing::error!(error = %e, "the drill's HTML report could not be written");
                }
                finish(&Outcome::Drill(rec), global.json)
            }
            DrillCommand::List => {
                let cfg = load_config(global)?;
                finish(&Outcome::DrillList(drills::list(&cfg)?), global.json)
            }
            DrillCommand::Cleanup => {
                let cfg = load_config(global)?;
                finish(&Outcome::DrillCleanup(drills::cleanup(&cfg).await?), global.json)
            }
            DrillCommand::Estimate { policy } => {
                let (cfg, policy) = load_policy(global, &policy)?;
                let history = crate::journal::Journal::open(&cfg.journal_path())
                    .and_then(|j| drills::recorded(&j))
                    .unwrap_or_default();
                let run = drills::estimate::estimate(&cfg, &policy, &history).await?;
                finish(&Outcome::DrillEstimate(run), global.json)
            }
            DrillCommand::Report { name, html } => {
                let cfg = load_config(global)?;
                let journal = crate::journal::Journal::open(&cfg.journal_path())?;
                let mut last = drills::recorded(&journal)?
                    .into_iter()
                    .rev()
                    .find(|r| r.drill == name)
                    .ok_or_else(|| anyhow::anyhow!("the journal holds no drill of restore test {name:?}: run `pacsbak drill run {name}` first"))?;
                let path = drills::save_report(&cfg, &mut last, Some(&html))?;
                if global.json {
                    super::context::print_json(&serde_json::json!({ "report": path }))?;
                } else {
                    println!("{}", path.display());
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
