//! Backup-file reader, checker, planner and writer against the real SQL Server
//! backups in ../shared/baks/ and damaged copies generated from them.

use std::path::{Path, PathBuf};

use pacsbak::bakfile::{self, BackupFile};
use serde_json::Value;

use crate::common::require_shared_baks;

fn expected(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["backups"].as_array().expect("backups").clone()
}

fn lsn(v: Option<pacsbak::bakfile::Lsn>) -> Value {
    v.map_or(Value::Null, |l| Value::String(l.to_string()))
}

fn check_fields(file: &BackupFile, e: &Value) {
    let name = e["file"].as_str().unwrap_or("?");
    assert!(file.is_sound(), "{name}: {:?}", file.damage);
    assert_eq!(file.sets.len(), 1, "{name}");
    let s = &file.sets[0];
    let h = &s.header;
    let kind = s.kind.expect("type").letter().to_string();
    let got: Vec<(&str, Value)> = vec![
        ("size", file.size.into()),
        ("container", file.container.name().into()),
        ("database_name", h.database_name.clone().into()),
        ("server_name", h.server_name.clone().into()),
        ("backup_type", kind.into()),
        ("software_version", h.software_version().into()),
        ("database_version", h.database_version.into()),
        ("compatibility_level", h.compatibility_level.into()),
        ("has_backup_checksums", h.has_backup_checksums.into()),
        ("first_lsn", lsn(h.first_lsn)),
        ("last_lsn", lsn(h.last_lsn)),
        ("checkpoint_lsn", lsn(h.checkpoint_lsn)),
        ("database_backup_lsn", lsn(h.database_backup_lsn)),
        ("backup_start_date", h.backup_start_date.map(|d| d.to_string()).into()),
        ("database_creation_date", h.database_creation_date.map(|d| d.to_string()).into()),
        ("unicode_locale_id", h.unicode_locale_id.into()),
        ("backup_set_name", h.backup_name.clone().into()),
        ("user_name", h.user_name.clone().into()),
        ("machine_name", h.machine_name.clone().into()),
        ("files", s.files.iter().map(|f| f.logical_name.clone()).collect::<Vec<_>>().into()),
        ("physical_names", s.files.iter().map(|f| f.physical_name.clone()).collect::<Vec<_>>().into()),
    ];
    let keys: Vec<&str> = got.iter().map(|(k, _)| *k).collect();
    for k in e.as_object().expect("object").keys() {
        assert!(
            ["file", "sha256", "source"].contains(&k.as_str()) || keys.contains(&k.as_str()),
            "{name}: field {k} of expected.json is not compared"
        );
    }
    for (k, v) in got {
        assert_eq!(&e[k], &v, "{name}: {k}");
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    expected(dir)
        .iter()
        .map(|e| dir.join(e["file"].as_str().expect("file")))
        .collect()
}

#[test]
fn bakfile_every_expected_field_is_reproduced() {
    let Some(dir) = require_shared_baks("bakfile_every_expected_field_is_reproduced") else {
        return;
    };
    let list = expected(&dir);
    assert_eq!(list.len(), 14);
    for e in &list {
        let path = dir.join(e["file"].as_str().expect("file"));
        let file = bakfile::inspect(&path).expect("inspect");
        check_fields(&file, e);
    }
    let _ = all_files(&dir);
}
