//! `pacsbak verify`: structure always, data as asked.

use std::process::ExitCode;

use clap::Args;

use anyhow::Context;

use super::context::{finish, load_config, runtime};
use super::GlobalArgs;
use crate::outcome::Outcome;
use crate::repository::ReadData;

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
    let cfg = load_config(global)?;
    let rt = runtime()?;
    rt.block_on(async {
        let read_data = args.read_data.unwrap_or(ReadData::None);
        let outcome = crate::jobs::verify::run(&cfg, args.target.as_deref(), read_data)
            .await
            .with_context(|| match &args.target {
                Some(t) => format!("cannot verify the repository on target {t:?}"),
                None => "cannot verify the repository".to_string(),
            })?;
        finish(&Outcome::Verify(outcome), global.json)
    })
}
