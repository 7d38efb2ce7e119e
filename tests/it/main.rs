//! The integration tests: one binary, one module per area.
//!
//! Tests that need something this machine may lack (the real backups in
//! `../shared/baks/`, a real SQL Server) print `skipped: <why>` and return.

mod alerts;
mod bakfile;
mod bakfile_padding;
mod common;
mod config_files;
mod daemon;
mod drills;
mod faults;
mod fixture_repository;
mod journal;
mod json_outcomes;
mod repository;
mod retention;
mod simulator;
mod simulator_bakfile;
mod simulator_columns;
mod simulator_faults;
mod simulator_support;
mod sqlserver_jobs;
mod status;
mod targets;
mod wine;
