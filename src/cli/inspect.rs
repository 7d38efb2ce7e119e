//! `pacsbak inspect FILE... [--check]`: what a backup file holds, and whether it is
//! intact, without a SQL Server.
//!
//! Text output is written for the engineer on call; `--json` gives the same facts
//! under SQL Server's HEADERONLY/FILELISTONLY column names for scripts. Exit code 1
//! when any file is damaged; a file that cannot be read is reported and the others
//! are still inspected.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::bakfile::{self, BackupFile, CheckReport, Damage};

/// Arguments of `pacsbak inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Backup files (.bak, .trn), plain or compressed.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also verify every checksum, as RESTORE VERIFYONLY WITH CHECKSUM (reads all data).
    #[arg(long)]
    pub check: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Entry {
    Inspected(BackupFile),
    Checked(Box<CheckReport>),
    Failed { path: String, error: String },
}

/// Runs `inspect`.
pub fn run(args: &InspectArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut entries = Vec::new();
    let mut damaged = false;
    let mut unreadable = false;
    for path in &args.files {
        let entry = if args.check {
            match bakfile::check(path) {
                Ok(r) => {
                    damaged |= !r.ok;
                    Entry::Checked(Box::new(r))
                }
                Err(e) => fail(path, e, &mut damaged, &mut unreadable),
            }
        } else {
            match bakfile::inspect(path) {
                Ok(f) => {
                    damaged |= !f.is_sound();
                    Entry::Inspected(f)
                }
                Err(e) => fail(path, e, &mut damaged, &mut unreadable),
            }
        };
        entries.push(entry);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
    } else {
        for e in &entries {
            match e {
                Entry::Inspected(f) => print_file(&mut out, f, &f.damage)?,
                Entry::Checked(r) => {
                    print_file(&mut out, &r.file, &r.damage)?;
                    print_check(&mut out, r)?;
                }
                Entry::Failed { path, error } => writeln!(out, "{path}\n  ERROR: {error}\n")?,
            }
        }
    }
    Ok(if damaged {
        ExitCode::from(1)
    } else if unreadable {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn fail(
    path: &std::path::Path,
    e: crate::Error,
    damaged: &mut bool,
    unreadable: &mut bool,
) -> Entry {
    if e.kind() == crate::ErrorKind::Format {
        *damaged = true;
    } else {
        *unreadable = true;
    }
    Entry::Failed {
        path: path.display().to_string(),
        error: e.to_string(),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |x| x.to_string())
}

fn print_file(out: &mut impl Write, f: &BackupFile, damage: &[Damage]) -> std::io::Result<()> {
    writeln!(out, "{}", f.path)?;
    writeln!(
        out,
        "  container:        {} ({} bytes)",
        f.container.name(),
        f.size
    )?;
    if f.media.media_password {
        writeln!(out, "  media password:   YES: RESTORE needs WITH MEDIAPASSWORD (the data itself is not encrypted)")?;
    }
    if f.media.family_count > 1 {
        writeln!(
            out,
            "  striped:          file {} of {} (every file is needed to restore)",
            f.media.family_sequence, f.media.family_count
        )?;
    }
    for s in &f.sets {
        let h = &s.header;
        writeln!(
            out,
            "  backup set {}:     {} of [{}] from {}",
            h.position, h.backup_type_description, h.database_name, h.server_name
        )?;
        writeln!(out, "    BackupStartDate  {}", opt(&h.backup_start_date))?;
        writeln!(out, "    BackupName       {}", h.backup_name)?;
        writeln!(
            out,
            "    UserName         {}    MachineName {}",
            h.user_name, h.machine_name
        )?;
        writeln!(out, "    FirstLSN         {}", opt(&h.first_lsn))?;
        writeln!(out, "    LastLSN          {}", opt(&h.last_lsn))?;
        writeln!(out, "    CheckpointLSN    {}", opt(&h.checkpoint_lsn))?;
        writeln!(out, "    DatabaseBackupLSN {}", opt(&h.database_backup_lsn))?;
        writeln!(
            out,
            "    SQL Server {} (database version {}, compatibility {}), checksums: {}, compressed: {}, complete: {}",
            h.software_version(),
            h.database_version,
            h.compatibility_level,
            if h.has_backup_checksums { "yes" } else { "no" },
            if h.compressed { "yes" } else { "no" },
            if s.complete { "yes" } else { "NO" }
        )?;
        for file in &s.files {
            writeln!(
                out,
                "    file {} {:<24} {}",
                file.file_type, file.logical_name, file.physical_name
            )?;
        }
    }
    for d in damage {
        writeln!(out, "  DAMAGED: {}", describe(d))?;
    }
    Ok(())
}

/// One line naming a damaged place.
pub fn describe(d: &Damage) -> String {
    let mut s = d.what.clone();
    if let Some(st) = &d.stream {
        s.push_str(&format!("; stream {st}"));
    }
    if let Some(p) = &d.page_id {
        s.push_str(&format!("; page {p}"));
    }
    match (d.offset, d.file_offset) {
        (Some(o), Some(fo)) => s.push_str(&format!(
            "; offset {o} in the decompressed stream (record at file offset {fo})"
        )),
        (Some(o), None) => s.push_str(&format!("; file offset {o}")),
        _ => {}
    }
    s
}

fn print_check(out: &mut impl Write, r: &CheckReport) -> std::io::Result<()> {
    writeln!(
        out,
        "  check:            {} streams, {} CSUM verified, {} page checksums verified, {} pages without checksum, {} bytes read",
        r.streams_checked, r.csums_verified, r.pages_verified, r.pages_without_checksum, r.bytes_read
    )?;
    writeln!(
        out,
        "  verdict:          {}",
        if r.ok {
            "OK: restorable as far as its checksums show"
        } else {
            "DAMAGED"
        }
    )?;
    writeln!(out, "  not covered by any checksum:")?;
    for b in &r.blind_spots {
        writeln!(out, "    - {b}")?;
    }
    writeln!(out)
}
