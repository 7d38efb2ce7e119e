//! `pacsbak verify`: structure always, data as asked.

use std::process::ExitCode;

use clap::Args;

use super::context::{human_bytes, open_repository, print_json, runtime};
use super::GlobalArgs;
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
        if global.json {
            let mut v = serde_json::to_value(&report)?;
            v["ok"] = serde_json::Value::Bool(report.ok());
            print_json(&v)?;
        } else {
            println!(
                "{} snapshots, {} packs; {} packs read ({}), {} chunks checked",
                report.snapshots,
                report.packs,
                report.packs_read,
                human_bytes(report.bytes_read),
                report.chunks_checked
            );
            for d in &report.damaged_packs {
                println!("DAMAGED pack {}: {}", &d.pack[..16], d.problem);
                println!("  breaks snapshots: {}", d.snapshots.join(", "));
                for f in &d.files {
                    println!("  breaks file: {f}");
                }
            }
            for m in &report.missing_chunks {
                println!("MISSING {m}");
            }
            if report.unindexed_packs > 0 {
                println!(
                    "{} packs are stored but not indexed (left by an interrupted backup; the next backup reuses them)",
                    report.unindexed_packs
                );
            }
            println!("{}", if report.ok() { "repository OK" } else { "repository DAMAGED" });
        }
        Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}
