//! `pacsbak check --policy P`: the instance's threats to the policy, with what to do.

use std::process::ExitCode;

use clap::Args;

use super::context::{finish, load_policy, runtime};
use super::GlobalArgs;
use crate::jobs::check;
use crate::outcome::Outcome;
use crate::sqlserver::Instance;

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy name or file.
    #[arg(long)]
    pub policy: String,
}

/// Runs `check`; exit 2 with a critical finding, 1 with a warning.
pub fn run(global: &GlobalArgs, a: CheckArgs) -> anyhow::Result<ExitCode> {
    let (cfg, policy) = load_policy(global, &a.policy)?;
    let rt = runtime()?;
    rt.block_on(async {
        let instance = Instance::open(&policy.instance_spec()?).await?;
        let targets = crate::jobs::open_targets(&cfg, &policy).await;
        let repo = targets
            .as_ref()
            .ok()
            .and_then(|t| t.open.first())
            .map(|t| &t.repo);
        let mut r = check::run(&policy, &instance, repo).await?;
        match &targets {
            Ok(t) => r.note_unreachable(&t.unreachable),
            Err(e) => r.note_unreachable(&[crate::jobs::UnreachableTarget {
                target: e.context("target").unwrap_or("of the policy").to_string(),
                error: e.record(),
            }]),
        }
        finish(&Outcome::Check(r), global.json)
    })
}
