//! RESTORE HEADERONLY, FILELISTONLY and VERIFYONLY: the backup sets on a device,
//! with the columns (names, order and T-SQL types) of sqlserver.md.

use std::path::Path;

use super::Opts;
use crate::bakfile::{Lsn, MtfDate};
use crate::simulator::backup_media::{read_headers, verify, MediaError, SetInfo};
use crate::simulator::handlers::{fail, media_error};
use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::sql::{fmt_unix, SqlError, StmtError};
use crate::simulator::tds::token::Column;
use crate::simulator::tds::types::{SqlType, Value};

fn dt(secs: i64) -> Value {
    Value::Str(fmt_unix(secs))
}

fn mtf_dt(d: Option<MtfDate>) -> Value {
    d.and_then(|d| d.to_datetime())
        .map(Value::DateTime)
        .unwrap_or(Value::Null)
}

/// numeric(25,0): LSNs of real servers pass i64 (12862000000019800061), so as text.
fn lsn(l: Option<Lsn>) -> Value {
    l.map(|l| Value::Str(l.to_string())).unwrap_or(Value::Null)
}

fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Str(s.to_string())
    }
}

fn opt_guid(s: &str) -> Value {
    opt_str(s)
}

pub(super) fn headeronly(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
    let path = o.disks.first().cloned().unwrap_or_default();
    let sets = match read_headers(Path::new(&path)) {
        Ok(s) => s,
        Err(e) => return Ok(fail(ctx, &[media_error(&e, &path)], "RESTORE HEADERONLY")),
    };
    use SqlType::*;
    let cols: Vec<Column> = [
        ("BackupName", NVarChar(128)),
        ("BackupDescription", NVarChar(255)),
        ("BackupType", SmallInt),
        ("ExpirationDate", DateTime),
        ("Compressed", Bit),
        ("Position", SmallInt),
        ("DeviceType", TinyInt),
        ("UserName", NVarChar(128)),
        ("ServerName", NVarChar(128)),
        ("DatabaseName", NVarChar(128)),
        ("DatabaseVersion", Int),
        ("DatabaseCreationDate", DateTime),
        ("BackupSize", Numeric(20, 0)),
        ("FirstLSN", Numeric(25, 0)),
        ("LastLSN", Numeric(25, 0)),
        ("CheckpointLSN", Numeric(25, 0)),
        ("DatabaseBackupLSN", Numeric(25, 0)),
        ("BackupStartDate", DateTime),
        ("BackupFinishDate", DateTime),
        ("SortOrder", SmallInt),
        ("CodePage", SmallInt),
        ("UnicodeLocaleId", Int),
        ("UnicodeComparisonStyle", Int),
        ("CompatibilityLevel", TinyInt),
        ("SoftwareVendorId", Int),
        ("SoftwareVersionMajor", Int),
        ("SoftwareVersionMinor", Int),
        ("SoftwareVersionBuild", Int),
        ("MachineName", NVarChar(128)),
        ("Flags", Int),
        ("BindingID", Guid),
        ("RecoveryForkID", Guid),
        ("Collation", NVarChar(128)),
        ("FamilyGUID", Guid),
        ("HasBulkLoggedData", Bit),
        ("IsSnapshot", Bit),
        ("IsReadOnly", Bit),
        ("IsSingleUser", Bit),
        ("HasBackupChecksums", Bit),
        ("IsDamaged", Bit),
        ("BeginsLogChain", Bit),
        ("HasIncompleteMetaData", Bit),
        ("IsForceOffline", Bit),
        ("IsCopyOnly", Bit),
        ("FirstRecoveryForkID", Guid),
        ("ForkPointLSN", Numeric(25, 0)),
        ("RecoveryModel", NVarChar(60)),
        ("DifferentialBaseLSN", Numeric(25, 0)),
        ("DifferentialBaseGUID", Guid),
        ("BackupTypeDescription", NVarChar(60)),
        ("BackupSetGUID", Guid),
        ("CompressedBackupSize", Numeric(20, 0)),
        ("Containment", TinyInt),
        ("KeyAlgorithm", NVarChar(32)),
        ("EncryptorThumbprint", VarBinary(20)),
        ("EncryptorType", NVarChar(32)),
    ]
    .into_iter()
    .map(|(n, t)| Column::new(n, t))
    .collect();
    // The values the MTF records hold come from the bakfile reader; the rest from
    // the simulator's own description inside its files, NULL for a real backup.
    let rows: Vec<Vec<Value>> = sets
        .iter()
        .map(|set| {
            let r = &set.header;
            let sim = set.sim.as_ref();
            let s_str = |f: fn(&crate::simulator::backup_media::SetHeader) -> &str| {
                sim.map(|h| opt_str(f(h))).unwrap_or(Value::Null)
            };
            let s_int = |f: fn(&crate::simulator::backup_media::SetHeader) -> i64| {
                sim.map(|h| Value::Int(f(h))).unwrap_or(Value::Null)
            };
            let compressed = r.compressed || sim.is_some_and(|h| h.compressed);
            let size = Value::Int(set.file_size as i64);
            vec![
                opt_str(&r.backup_name),
                opt_str(&r.backup_description),
                Value::Int(i64::from(r.backup_type)),
                Value::Null,
                Value::Int(i64::from(compressed)),
                Value::Int(i64::from(r.position)),
                Value::Int(i64::from(r.device_type)),
                Value::Str(r.user_name.clone()),
                Value::Str(r.server_name.clone()),
                Value::Str(r.database_name.clone()),
                Value::Int(i64::from(r.database_version)),
                mtf_dt(r.database_creation_date),
                // Uncompressed size of a compressed real backup: not in what is read.
                if r.compressed {
                    Value::Null
                } else {
                    size.clone()
                },
                lsn(r.first_lsn),
                lsn(r.last_lsn),
                lsn(r.checkpoint_lsn),
                lsn(r.database_backup_lsn),
                mtf_dt(r.backup_start_date),
                sim.map(|h| dt(h.finish)).unwrap_or(Value::Null),
                Value::Int(i64::from(r.sort_order)),
                Value::Int(0),
                Value::Int(i64::from(r.unicode_locale_id)),
                Value::Int(i64::from(r.unicode_comparison_style)),
                Value::Int(i64::from(r.compatibility_level)),
                Value::Int(i64::from(r.software_vendor_id)),
                Value::Int(i64::from(r.software_version_major)),
                Value::Int(i64::from(r.software_version_minor)),
                Value::Int(i64::from(r.software_version_build)),
                Value::Str(r.machine_name.clone()),
                Value::Int(i64::from(r.flags)),
                s_str(|h| &h.database_guid),
                s_str(|h| &h.fork_guid),
                sim.map(|_| Value::Str("SQL_Latin1_General_CP1_CI_AS".into()))
                    .unwrap_or(Value::Null),
                s_str(|h| &h.family_guid),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(i64::from(r.has_backup_checksums)),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                r.is_copy_only
                    .map(|c| Value::Int(i64::from(c)))
                    .unwrap_or_else(|| s_int(|h| i64::from(h.copy_only))),
                s_str(|h| &h.fork_guid),
                Value::Null,
                s_str(|h| &h.recovery_model),
                sim.and_then(|h| (h.diff_base_lsn != 0).then_some(Value::Int(h.diff_base_lsn)))
                    .unwrap_or(Value::Null),
                s_str(|h| &h.diff_base_guid),
                Value::Str(r.backup_type_description.clone()),
                s_str(|h| &h.backup_set_guid),
                size,
                Value::Int(0),
                Value::Null,
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    ctx.rows(&cols, &rows);
    Ok(Outcome {
        count: Some(rows.len() as u64),
        error: false,
    })
}

fn find_set(ctx: &mut Ctx<'_>, o: &Opts, what: &str) -> Result<SetInfo, Outcome> {
    let path = o.disks.first().cloned().unwrap_or_default();
    match read_headers(Path::new(&path)) {
        Err(e) => Err(fail(ctx, &[media_error(&e, &path)], what)),
        Ok(sets) => match sets
            .into_iter()
            .find(|s| i64::from(s.header.position) == o.file)
        {
            Some(s) => Ok(s),
            None => Err(fail(
                ctx,
                &[media_error(&MediaError::NoSet(o.file), &path)],
                what,
            )),
        },
    }
}

pub(super) fn filelistonly(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
    let h = match find_set(ctx, o, "RESTORE FILELIST") {
        Ok(h) => h,
        Err(out) => return Ok(out),
    };
    use SqlType::*;
    let cols: Vec<Column> = [
        ("LogicalName", NVarChar(128)),
        ("PhysicalName", NVarChar(260)),
        ("Type", Char(1)),
        ("FileGroupName", NVarChar(128)),
        ("Size", Numeric(20, 0)),
        ("MaxSize", Numeric(20, 0)),
        ("FileID", BigInt),
        ("CreateLSN", Numeric(25, 0)),
        ("DropLSN", Numeric(25, 0)),
        ("UniqueID", Guid),
        ("ReadOnlyLSN", Numeric(25, 0)),
        ("ReadWriteLSN", Numeric(25, 0)),
        ("BackupSizeInBytes", Numeric(20, 0)),
        ("SourceBlockSize", Int),
        ("FileGroupID", Int),
        ("LogGroupGUID", Guid),
        ("DifferentialBaseLSN", Numeric(25, 0)),
        ("DifferentialBaseGUID", Guid),
        ("IsReadOnly", Bit),
        ("IsPresent", Bit),
        ("TDEThumbprint", VarBinary(32)),
        ("SnapshotURL", NVarChar(360)),
    ]
    .into_iter()
    .map(|(n, t)| Column::new(n, t))
    .collect();
    let sim = h.sim.as_ref();
    let rows: Vec<Vec<Value>> = h
        .files
        .iter()
        .map(|f| {
            let data = f.file_type != 'L';
            let size = sim
                .and_then(|s| s.files.iter().find(|x| x.file_id == i64::from(f.file_id)))
                .map(|x| Value::Int(x.size))
                .unwrap_or(Value::Null);
            vec![
                Value::Str(f.logical_name.clone()),
                Value::Str(f.physical_name.clone()),
                Value::Str(f.file_type.to_string()),
                f.file_group_name
                    .clone()
                    .map(Value::Str)
                    .unwrap_or(Value::Null),
                size,
                Value::Int(35_184_372_080_640),
                Value::Int(i64::from(f.file_id)),
                Value::Int(0),
                Value::Int(0),
                sim.map(|s| opt_guid(&s.database_guid))
                    .unwrap_or(Value::Null),
                Value::Int(0),
                Value::Int(0),
                sim.map(|s| Value::Int(if data { s.backup_size } else { 0 }))
                    .unwrap_or(Value::Null),
                Value::Int(512),
                Value::Int(i64::from(f.file_group_id)),
                Value::Null,
                match sim {
                    Some(s) if data && s.diff_base_lsn != 0 => Value::Int(s.diff_base_lsn),
                    Some(_) => Value::Int(0),
                    None => Value::Null,
                },
                sim.map(|s| opt_guid(&s.diff_base_guid))
                    .unwrap_or(Value::Null),
                Value::Int(0),
                Value::Int(1),
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    ctx.rows(&cols, &rows);
    Ok(Outcome {
        count: Some(rows.len() as u64),
        error: false,
    })
}

pub(super) fn verifyonly(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
    for path in &o.disks {
        match verify(Path::new(path), o.file) {
            Ok(h) if o.checksum && !h.header.has_backup_checksums => {
                return Ok(fail(ctx, &[SqlError::new(3187, "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.")], "VERIFY DATABASE"))
            }
            Ok(_) => {}
            Err(e) => return Ok(fail(ctx, &[media_error(&e, path)], "VERIFY DATABASE")),
        }
    }
    ctx.info(
        3262,
        &format!("The backup set on file {} is valid.", o.file),
    );
    Ok(Outcome::default())
}
