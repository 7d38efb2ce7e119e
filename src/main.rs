//! The `pacsbak` binary: parse arguments, set up logging, hand over to the library.
//!
//! Everything that does work lives in the library; this file only turns its errors
//! into messages and exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pacsbak::cli::Cli::parse();
    pacsbak::cli::init_tracing(&cli.global);
    match pacsbak::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
