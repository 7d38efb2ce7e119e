//! `pacsbak verify`: structure always, data as asked.

use std::process::ExitCode;

use clap::Args;

use super::context::{finish, open_repository, runtime};
use super::GlobalArgs;
use crate::outcome::{Outcome, VerifyOutcome};
use crate::repository::{ReadData, VerifyOptions};

/// Options of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Storage target (optional when there is only one).
    #[arg(long)]
    target: Option<String>,
    /// Also read data back: all (default when given bare), N% or n/m.
    #[arg(long, num_args = 0..=1, default_missing_value = "all", require_equals = true)]
    read_data: Option<ReadData>,
}

/// Runs `verify`; exit code 1 when anything is damaged.
pub fn run(global: &GlobalArgs, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let repo = open_repository(global, args.target.as_deref()).await?;
        let opts = VerifyOptions {
            read_data: args.read_data.unwrap_or(ReadData::None),
        };
        let report = repo.verify(&opts).await?;
        let outcome = Outcome::Verify(VerifyOutcome {
            target: repo.storage().name().to_string(),
            ok: report.ok(),
            report,
        });
        finish(&outcome, global.json)
    })
}
