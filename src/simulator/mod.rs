//! A SQL Server simulator that speaks TDS 7.4, for tests, the sandbox demo and
//! training: layered like mini-redis, packet framing ([`tds`]) → sessions and
//! messages → one handler per statement family (`sql`, `handlers`), over an
//! instance whose state lives in files under a root folder (`engine`). Backup
//! files go through `backup_media` alone. See docs/simulator.md.

mod backup_media;
mod engine;
mod handlers;
mod server;
mod session;
mod sql;
pub mod tds;

pub use server::{run, SimConfig, Simulator, SA_PASSWORD_ENV};
