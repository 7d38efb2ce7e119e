//! `pacsbak status`: are we protected right now? (src/jobs/status.rs)

use std::process::ExitCode;

use clap::Args;

use super::context::{finish, load_config, runtime};
use super::GlobalArgs;
use crate::outcome::{Outcome, StatusRun};

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this policy (name or file); default: every policy in policies/.
    #[arg(long)]
    policy: Option<String>,
}

/// Runs `status`; exit 1 when a database misses its RPO or a problem is open.
pub fn run(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global)?;
    let names: Vec<String> = match args.policy {
        Some(p) => vec![p],
        None => crate::config::toml_files(&cfg.dir.join("policies"))?
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
            .collect(),
    };
    let journal = crate::journal::Journal::open(&cfg.journal_path()).ok();
    let clock = crate::clock::current();
    let rt = runtime()?;
    rt.block_on(async {
        let mut policies = Vec::new();
        for name in &names {
            let policy = crate::policy::Policy::find(&cfg.dir, name)?;
            let targets = crate::jobs::open_targets(&cfg, &policy)
                .await
                .unwrap_or_else(|e| crate::jobs::PolicyTargets {
                    open: Vec::new(),
                    unreachable: vec![crate::jobs::UnreachableTarget {
                        target: e.context("target").unwrap_or("of the policy").to_string(),
                        error: e.record(),
                    }],
                });
            policies
                .push(crate::jobs::status::run(&policy, &targets, journal.as_ref(), &clock).await?);
        }
        let ok = !policies.is_empty() && policies.iter().all(|p| p.ok);
        finish(&Outcome::Status(StatusRun { policies, ok }), global.json)
    })
}
