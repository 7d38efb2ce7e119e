//! `pacsbak simulator`: runs the SQL Server simulator on a TCP port until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::simulator::{SimConfig, Simulator};

/// Arguments of `pacsbak simulator`.
#[derive(Debug, Args)]
pub struct SimulatorArgs {
    /// Address to listen on, e.g. 127.0.0.1:14330.
    #[arg(long, default_value = "127.0.0.1:14330")]
    pub listen: String,
    /// Folder for the instance's state, database files and msdb.
    #[arg(long)]
    pub root: PathBuf,
    /// Do not create the sample PACS database on an empty root.
    #[arg(long)]
    pub empty: bool,
}

/// Runs the simulator.
pub fn run(args: SimulatorArgs) -> anyhow::Result<ExitCode> {
    let config = SimConfig::from_env(args.root.clone(), args.empty)?;
    let sim = Simulator::open(config)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        eprintln!("pacsbak simulator listening on {}", listener.local_addr()?);
        sim.run(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
