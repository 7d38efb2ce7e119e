//! `copy`: snapshots a destination lacks, only what it lacks. Each destination is
//! copied on its own: one that is down fails while the others still get their copy.

use tracing::{info_span, Instrument};

use crate::config::{repository_passphrase, ConfigDir};
use crate::error::Result;
use crate::outcome::{CopyRun, CopyTarget, Status};

/// Copies from target `from` to each of `to`.
pub async fn run(cfg: &ConfigDir, from: &str, to: &[String]) -> Result<CopyRun> {
    let span = info_span!("job", job = "copy", from);
    async {
        let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
        let src = super::open_repository(cfg.target(Some(from))?, &pass).await?;
        let mut targets = Vec::new();
        for name in to {
            let copied = match cfg.target(Some(name)) {
                Ok(t) => match super::open_repository(t, &pass).await {
                    Ok(dest) => src.copy_to(&dest).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            targets.push(match copied {
                Ok(r) => CopyTarget {
                    target: name.clone(),
                    status: Status::Ok,
                    ok: true,
                    report: Some(r),
                    error: None,
                },
                Err(e) => {
                    let mut error = e.with("target", name).record();
                    error.message = format!("copy to target {name:?}: {}", error.message);
                    CopyTarget {
                        target: name.clone(),
                        status: Status::Failed,
                        ok: false,
                        report: None,
                        error: Some(error),
                    }
                }
            });
        }
        let failed = targets.iter().filter(|t| !t.ok).count();
        Ok(CopyRun {
            from: from.to_string(),
            targets,
            failed,
            ok: failed == 0,
        })
    }
    .instrument(span)
    .await
}
