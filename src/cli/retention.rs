//! `pacsbak retention plan|apply` and `pacsbak prune`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::context::{finish, load_config, load_policy, runtime};
use super::GlobalArgs;
use crate::jobs::retention::RetentionRequest;
use crate::outcome::Outcome;
use crate::repository::PruneOptions;
use crate::retention::{Age, Rules};

/// Options of `retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(subcommand)]
    command: RetentionCommand,
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Every snapshot of each target, kept or removed, and the rule that decided.
    Plan(Scope),
    /// Remove the snapshots the plan removes (manifests only; `prune` frees the space).
    Apply {
        #[command(flatten)]
        scope: Scope,
        /// Prune afterwards (with the default grace period).
        #[arg(long)]
        prune: bool,
    },
    /// Compare the maintenance plan's cleanup of the backup folder with the policy:
    /// findings with severity and the fix.
    Audit {
        /// The policy whose backup folder is audited.
        #[arg(long)]
        policy: String,
    },
    /// Delete backup files from the policy's local backup folder that are older
    /// than `[local_cleanup] after` and proven on every offsite target.
    Local {
        /// The policy whose backup folder is cleaned.
        #[arg(long)]
        policy: String,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which snapshots, under which rules.
#[derive(Debug, Args)]
struct Scope {
    /// Only the backups of this policy.
    #[arg(long)]
    policy: Option<String>,
    /// Only this target (default: every target the policies name).
    #[arg(long)]
    target: Option<String>,
    /// Rules for every group in place of the configured ones: keep the last N.
    #[arg(long)]
    keep_last: Option<u32>,
    /// ... the newest of each of the last N days.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// ... of the last N ISO weeks.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// ... of the last N months.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// ... of the last N years.
    #[arg(long)]
    keep_yearly: Option<u32>,
    /// ... everything younger than this (36h, 14d, 8w, 1y).
    #[arg(long)]
    keep_within: Option<Age>,
}

impl Scope {
    fn request(self, apply: bool) -> RetentionRequest {
        let given = [
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(Option::is_some)
            || self.keep_within.is_some();
        RetentionRequest {
            policy: self.policy,
            target: self.target,
            rules: given.then(|| Rules {
                keep_last: self.keep_last.unwrap_or(0),
                keep_hourly: 0,
                keep_daily: self.keep_daily.unwrap_or(0),
                keep_weekly: self.keep_weekly.unwrap_or(0),
                keep_monthly: self.keep_monthly.unwrap_or(0),
                keep_yearly: self.keep_yearly.unwrap_or(0),
                keep_within: self.keep_within,
            }),
            apply,
        }
    }
}

/// Options of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this target (default: every target the policies name).
    #[arg(long)]
    target: Option<String>,
    /// Report what would be freed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// How old a mark must be before its packs are deleted: longer than any backup
    /// runs. `0h` deletes in the same run: only when no backup is running.
    #[arg(long, default_value = "24h")]
    grace: Age,
    /// Repack a pack once this percentage of it is unused.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=100))]
    repack_unused: u8,
}

/// Runs `retention`.
pub fn run(global: &GlobalArgs, args: RetentionArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global)?;
    let rt = runtime()?;
    rt.block_on(async {
        let (req, then_prune) = match args.command {
            RetentionCommand::Plan(s) => (s.request(false), false),
            RetentionCommand::Apply { scope, prune } => (scope.request(true), prune),
            RetentionCommand::Audit { policy } => {
                let (cfg, policy) = load_policy(global, &policy)?;
                let instance = crate::sqlserver::Instance::open(&policy.instance_spec()?).await?;
                let targets = crate::jobs::open_targets(&cfg, &policy).await.ok();
                let repo = targets
                    .as_ref()
                    .and_then(|t| t.open.first())
                    .map(|t| &t.repo);
                let lag = crate::journal::Journal::open(&cfg.journal_path())
                    .ok()
                    .and_then(|j| crate::jobs::audit::offsite_lag(&j, &policy.name));
                let report = crate::jobs::audit::run(&policy, &instance, repo, lag).await?;
                return finish(&Outcome::Audit(report), global.json);
            }
            RetentionCommand::Local { policy, dry_run } => {
                let (cfg, policy) = load_policy(global, &policy)?;
                let run = crate::jobs::local_cleanup::run(&cfg, &policy, dry_run).await?;
                return finish(&Outcome::LocalCleanup(run), global.json);
            }
        };
        let target = req.target.clone();
        let run = crate::jobs::retention::run(&cfg, &req).await?;
        if !then_prune || !run.ok {
            return finish(&Outcome::Retention(run), global.json);
        }
        finish(&Outcome::Retention(run), global.json)?;
        let pruned =
            crate::jobs::retention::prune(&cfg, target.as_deref(), &PruneOptions::default())
                .await?;
        finish(&Outcome::Prune(pruned), global.json)
    })
}

/// Runs `prune`.
pub fn run_prune(global: &GlobalArgs, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global)?;
    let rt = runtime()?;
    rt.block_on(async {
        let opts = PruneOptions {
            repack_unused_percent: args.repack_unused,
            grace: args.grace.0,
            dry_run: args.dry_run,
        };
        let run = crate::jobs::retention::prune(&cfg, args.target.as_deref(), &opts).await?;
        finish(&Outcome::Prune(run), global.json)
    })
}
