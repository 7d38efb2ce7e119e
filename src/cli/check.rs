//! `pacsbak check --policy P`: the instance's threats to the policy, with what to do.

use std::process::ExitCode;

use clap::Args;

use super::context::{load_policy, print_json, runtime};
use super::GlobalArgs;
use crate::jobs::check::{self, Severity};
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
    let (_cfg, policy) = load_policy(global, &a.policy)?;
    let rt = runtime()?;
    rt.block_on(async {
        let instance = Instance::open(&policy.instance_spec()?).await?;
        let r = check::run(&policy, &instance).await?;
        if global.json {
            print_json(&r)?;
        } else {
            println!("Check of policy {} on {}", r.policy, r.instance);
            for f in &r.findings {
                let sev = format!("{:?}", f.severity).to_uppercase();
                println!(
                    "  {sev:<8} {:<14} {}{}",
                    f.area,
                    f.database
                        .as_ref()
                        .map(|d| format!("[{d}] "))
                        .unwrap_or_default(),
                    f.finding
                );
                if f.severity >= Severity::Warning {
                    println!("           do: {}", f.action);
                }
            }
        }
        Ok(match r.worst {
            Severity::Critical => ExitCode::from(2),
            Severity::Warning => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        })
    })
}
