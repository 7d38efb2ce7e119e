//! RESTORE HEADERONLY, FILELISTONLY and VERIFYONLY: the backup sets on a device,
//! with the columns (names, order and T-SQL types) of sqlserver.md.

use std::path::Path;

use super::Opts;
use crate::simulator::backup_media::{read_headers, verify, MediaError, SetHeader};
use crate::simulator::handlers::{fail, media_error};
use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::sql::{fmt_unix, SqlError, StmtError};
use crate::simulator::tds::token::Column;
use crate::simulator::tds::types::{SqlType, Value};

fn dt(secs: i64) -> Value {
    Value::Str(fmt_unix(secs))
}

fn opt_guid(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Str(s.to_string())
    }
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
    let rows: Vec<Vec<Value>> = sets
        .iter()
        .map(|h| {
            let flags =
                512 | if h.has_checksums { 16 } else { 0 } | if h.copy_only { 1024 } else { 0 };
            let desc = match h.backup_type {
                2 => "Transaction Log",
                5 => "Database Differential",
                _ => "Database",
            };
            vec![
                if h.name.is_empty() {
                    Value::Null
                } else {
                    Value::Str(h.name.clone())
                },
                if h.description.is_empty() {
                    Value::Null
                } else {
                    Value::Str(h.description.clone())
                },
                Value::Int(h.backup_type),
                Value::Null,
                Value::Int(h.compressed as i64),
                Value::Int(h.position),
                Value::Int(2),
                Value::Str(h.user_name.clone()),
                Value::Str(h.server_name.clone()),
                Value::Str(h.database_name.clone()),
                Value::Int(904),
                dt(h.creation_date),
                Value::Int(h.backup_size),
                Value::Int(h.first_lsn),
                Value::Int(h.last_lsn),
                Value::Int(h.checkpoint_lsn),
                Value::Int(h.database_backup_lsn),
                dt(h.start),
                dt(h.finish),
                Value::Int(52),
                Value::Int(0),
                Value::Int(1033),
                Value::Int(196609),
                Value::Int(150),
                Value::Int(4608),
                Value::Int(15),
                Value::Int(0),
                Value::Int(4355),
                Value::Str(h.machine_name.clone()),
                Value::Int(flags),
                Value::Str(h.database_guid.clone()),
                Value::Str(h.fork_guid.clone()),
                Value::Str("SQL_Latin1_General_CP1_CI_AS".into()),
                Value::Str(h.family_guid.clone()),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(h.has_checksums as i64),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(h.copy_only as i64),
                Value::Str(h.fork_guid.clone()),
                Value::Null,
                Value::Str(h.recovery_model.clone()),
                if h.diff_base_lsn == 0 {
                    Value::Null
                } else {
                    Value::Int(h.diff_base_lsn)
                },
                opt_guid(&h.diff_base_guid),
                Value::Str(desc.into()),
                Value::Str(h.backup_set_guid.clone()),
                Value::Int(h.compressed_size),
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

fn find_set(ctx: &mut Ctx<'_>, o: &Opts, what: &str) -> Result<SetHeader, Outcome> {
    let path = o.disks.first().cloned().unwrap_or_default();
    match read_headers(Path::new(&path)) {
        Err(e) => Err(fail(ctx, &[media_error(&e, &path)], what)),
        Ok(sets) => match sets.into_iter().find(|s| s.position == o.file) {
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
    let rows: Vec<Vec<Value>> = h
        .files
        .iter()
        .map(|f| {
            let data = f.kind == "D";
            vec![
                Value::Str(f.logical.clone()),
                Value::Str(f.physical.clone()),
                Value::Str(f.kind.clone()),
                if data {
                    Value::Str("PRIMARY".into())
                } else {
                    Value::Null
                },
                Value::Int(f.size),
                Value::Int(35_184_372_080_640),
                Value::Int(f.file_id),
                Value::Int(0),
                Value::Int(0),
                Value::Str(h.database_guid.clone()),
                Value::Int(0),
                Value::Int(0),
                Value::Int(if data { h.backup_size } else { 0 }),
                Value::Int(512),
                Value::Int(if data { 1 } else { 0 }),
                Value::Null,
                if data && h.diff_base_lsn != 0 {
                    Value::Int(h.diff_base_lsn)
                } else {
                    Value::Int(0)
                },
                opt_guid(&h.diff_base_guid),
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
            Ok(h) if o.checksum && !h.has_checksums => {
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
