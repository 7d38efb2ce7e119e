//! `pacsbak alert test`: a test message to every channel of `[alerts]`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::context::{load_config, print_json, runtime};
use super::GlobalArgs;
use crate::alerts::{Alert, Alerter, Severity};

/// Options of `alert`.
#[derive(Debug, Args)]
pub struct AlertArgs {
    #[command(subcommand)]
    command: AlertCommand,
}

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// Send a test message to each channel; exit 1 when one cannot be reached.
    Test,
}

/// Runs `alert`.
pub fn run(global: &GlobalArgs, args: AlertArgs) -> anyhow::Result<ExitCode> {
    let AlertCommand::Test = args.command;
    let cfg = load_config(global)?;
    let alerter = Alerter::from_config(&cfg)?;
    if alerter.is_empty() {
        anyhow::bail!(
            "no alert channel is configured: add [[alerts.webhook]], [[alerts.wecom]], [[alerts.dingtalk]] or [[alerts.email]] to {}",
            cfg.dir.join(crate::config::MAIN_FILE).display()
        );
    }
    let alert = Alert::new(
        Severity::Test,
        "test message".into(),
        "pacsbak can reach this channel. Failures of scheduled jobs will arrive here.".into(),
    );
    let rt = runtime()?;
    let deliveries = rt.block_on(alerter.send(&alert));
    let ok = deliveries.iter().all(|d| d.ok);
    if global.json {
        print_json(&serde_json::json!({"ok": ok, "deliveries": deliveries}))?;
    } else {
        for d in &deliveries {
            match &d.error {
                None => println!("OK      {} ({})", d.channel, d.kind),
                Some(e) => println!("FAILED  {} ({}): {e}", d.channel, d.kind),
            }
        }
    }
    Ok(super::context::done(ok))
}
