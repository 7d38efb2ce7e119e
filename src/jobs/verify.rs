//! `verify`: a target's repository checked, and as much data read back as asked.

use tracing::{info_span, Instrument};

use crate::config::{repository_passphrase, ConfigDir};
use crate::error::Result;
use crate::outcome::VerifyOutcome;
use crate::repository::{ReadData, VerifyOptions};

/// Verifies the repository on `target` (the only or default one when `None`).
pub async fn run(
    cfg: &ConfigDir,
    target: Option<&str>,
    read_data: ReadData,
) -> Result<VerifyOutcome> {
    let span = info_span!("job", job = "verify", target = target.unwrap_or("default"));
    async {
        let t = cfg.target(target)?;
        let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
        let repo = super::open_repository(t, &pass).await?;
        let report = repo.verify(&VerifyOptions { read_data }).await?;
        Ok(VerifyOutcome {
            target: t.name.clone(),
            ok: report.ok(),
            report,
        })
    }
    .instrument(span)
    .await
}
