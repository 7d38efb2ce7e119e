//! One handler per statement family: BACKUP, RESTORE, the Agent's procedures, the
//! simulator's SIMCTL control statement, and the small ones (DBCC, DDL, USE, SET).

pub mod agent;
pub mod backup;
pub mod control;
pub mod misc;
pub mod restore;

use super::session::{Ctx, Outcome};
use super::sql::SqlError;

/// Reports errors followed by SQL Server's 3013 trailer.
pub fn fail(ctx: &mut Ctx<'_>, errs: &[SqlError], what: &str) -> Outcome {
    for e in errs {
        ctx.error(e.number, e.class, &e.message);
    }
    ctx.error(3013, 16, &format!("{what} is terminating abnormally."));
    Outcome {
        count: None,
        error: true,
    }
}

/// The 3201 error for a device that cannot be opened.
pub fn cannot_open(path: &str, os: i32, text: &str) -> SqlError {
    SqlError::new(
        3201,
        format!("Cannot open backup device '{path}'. Operating system error {os}({text})."),
    )
}

/// The error for a media error.
pub fn media_error(e: &super::backup_media::MediaError, path: &str) -> SqlError {
    use super::backup_media::MediaError;
    match e {
        MediaError::Open(io) if io.kind() == std::io::ErrorKind::NotFound => cannot_open(path, 2, "The system cannot find the file specified."),
        MediaError::Open(_) => cannot_open(path, 5, "Access is denied."),
        MediaError::Write(io) if io.kind() == std::io::ErrorKind::StorageFull => SqlError::new(3202, format!("Write on \"{path}\" failed: 112(There is not enough space on the disk.)")),
        MediaError::Write(io) => SqlError::new(3202, format!("Write on \"{path}\" failed: {}({io})", io.raw_os_error().unwrap_or(1117))),
        MediaError::Malformed(detail) => {
            tracing::warn!(path, detail = %detail, "simulator: backup media incorrectly formed");
            SqlError::new(3241, format!("The media family on device '{path}' is incorrectly formed. SQL Server cannot process this media family."))
        }
        MediaError::PageError { page, database, detail } => {
            tracing::warn!(path, detail = %detail, "simulator: page error in backup set");
            SqlError::new(3183, format!("RESTORE detected an error on page ({page}) in database \"{database}\" as read from the backup set."))
        }
        MediaError::Damaged(detail) => {
            // SQL Server names the damaged place in its error log, not to the client.
            tracing::warn!(path, detail = %detail, "simulator: damaged backup set");
            SqlError::new(3189, "Damage to the backup set was detected.")
        }
        MediaError::Foreign => SqlError::new(3203, format!("Read on \"{path}\" failed: 50(The request is not supported.) The simulator restores only backups it wrote; this set holds SQL Server's own pages.")),
        MediaError::NoSet(n) => SqlError::new(3206, format!("Cannot find file ID {n} on device '{path}'.")),
    }
}
