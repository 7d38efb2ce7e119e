//! RESTORE HEADERONLY and FILELISTONLY answer with the columns of sqlserver.md, all of
//! them, in order, with the documented types: read by tiberius and by python-tds.
//! The lists below are checked against ../shared/spec/sqlserver.md when it is there.

use std::path::Path;

use tiberius::ColumnType;

use crate::simulator_support::{connect, exec, rows, start, PW};

const HEADERONLY: [&str; 56] = [
    "BackupName",
    "BackupDescription",
    "BackupType",
    "ExpirationDate",
    "Compressed",
    "Position",
    "DeviceType",
    "UserName",
    "ServerName",
    "DatabaseName",
    "DatabaseVersion",
    "DatabaseCreationDate",
    "BackupSize",
    "FirstLSN",
    "LastLSN",
    "CheckpointLSN",
    "DatabaseBackupLSN",
    "BackupStartDate",
    "BackupFinishDate",
    "SortOrder",
    "CodePage",
    "UnicodeLocaleId",
    "UnicodeComparisonStyle",
    "CompatibilityLevel",
    "SoftwareVendorId",
    "SoftwareVersionMajor",
    "SoftwareVersionMinor",
    "SoftwareVersionBuild",
    "MachineName",
    "Flags",
    "BindingID",
    "RecoveryForkID",
    "Collation",
    "FamilyGUID",
    "HasBulkLoggedData",
    "IsSnapshot",
    "IsReadOnly",
    "IsSingleUser",
    "HasBackupChecksums",
    "IsDamaged",
    "BeginsLogChain",
    "HasIncompleteMetaData",
    "IsForceOffline",
    "IsCopyOnly",
    "FirstRecoveryForkID",
    "ForkPointLSN",
    "RecoveryModel",
    "DifferentialBaseLSN",
    "DifferentialBaseGUID",
    "BackupTypeDescription",
    "BackupSetGUID",
    "CompressedBackupSize",
    "Containment",
    "KeyAlgorithm",
    "EncryptorThumbprint",
    "EncryptorType",
];

const FILELISTONLY: [&str; 22] = [
    "LogicalName",
    "PhysicalName",
    "Type",
    "FileGroupName",
    "Size",
    "MaxSize",
    "FileID",
    "CreateLSN",
    "DropLSN",
    "UniqueID",
    "ReadOnlyLSN",
    "ReadWriteLSN",
    "BackupSizeInBytes",
    "SourceBlockSize",
    "FileGroupID",
    "LogGroupGUID",
    "DifferentialBaseLSN",
    "DifferentialBaseGUID",
    "IsReadOnly",
    "IsPresent",
    "TDEThumbprint",
    "SnapshotURL",
];

/// Columns whose T-SQL type sqlserver.md fixes, with (precision, scale) for numerics.
const HEADERONLY_NUMERIC: [(&str, u8); 7] = [
    ("BackupSize", 20),
    ("FirstLSN", 25),
    ("LastLSN", 25),
    ("CheckpointLSN", 25),
    ("DatabaseBackupLSN", 25),
    ("DifferentialBaseLSN", 25),
    ("CompressedBackupSize", 20),
];
const FILELISTONLY_NUMERIC: [(&str, u8); 3] =
    [("Size", 20), ("MaxSize", 20), ("BackupSizeInBytes", 20)];

/// The column list that follows `lead` in sqlserver.md, up to the closing period,
/// without the parenthesised remarks.
fn spec_list(spec: &str, lead: &str) -> Vec<String> {
    let start = spec
        .find(lead)
        .unwrap_or_else(|| panic!("{lead} not in sqlserver.md"))
        + lead.len();
    let mut text = String::new();
    let mut depth = 0;
    for ch in spec[start..].chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' if depth == 0 => break,
            _ if depth == 0 => text.push(ch),
            _ => {}
        }
    }
    text.split(',')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn column_lists_match_sqlserver_md() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/sqlserver.md");
    let Ok(spec) = std::fs::read_to_string(&path) else {
        println!(
            "skipped: column_lists_match_sqlserver_md: ../shared/spec/sqlserver.md is not present"
        );
        return;
    };
    assert_eq!(
        spec_list(&spec, "HEADERONLY columns (in order, the ones used):"),
        HEADERONLY
    );
    assert_eq!(spec_list(&spec, "FILELISTONLY columns:"), FILELISTONLY);
}

fn names(cols: &[tiberius::Column]) -> Vec<&str> {
    cols.iter().map(|c| c.name()).collect()
}

fn type_of(cols: &[tiberius::Column], name: &str) -> ColumnType {
    cols.iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .column_type()
}

#[tokio::test]
async fn headeronly_and_filelistonly_columns_from_tiberius() {
    let sim = start(false).await;
    let mut c = connect(sim.addr).await;
    let bak = sim.dir.path().join("cols.bak");
    let trn = sim.dir.path().join("cols.trn");
    exec(
        &mut c,
        &format!(
            "BACKUP DATABASE [PACS] TO DISK = N'{}' WITH CHECKSUM, INIT",
            bak.display()
        ),
    )
    .await;
    exec(&mut c, "SIMCTL ADVANCE MINUTES = 15").await;
    exec(
        &mut c,
        &format!(
            "BACKUP LOG [PACS] TO DISK = N'{}' WITH CHECKSUM",
            trn.display()
        ),
    )
    .await;
    for (file, ty, desc) in [(&bak, 1i16, "Database"), (&trn, 2, "Transaction Log")] {
        let r = rows(
            &mut c,
            &format!("RESTORE HEADERONLY FROM DISK = N'{}'", file.display()),
        )
        .await;
        assert_eq!(r.len(), 1);
        let cols = r[0].columns();
        assert_eq!(names(cols), HEADERONLY);
        assert_eq!(type_of(cols, "BackupType"), ColumnType::Int2);
        for n in ["BackupStartDate", "BackupFinishDate"] {
            assert!(
                matches!(
                    type_of(cols, n),
                    ColumnType::Datetimen | ColumnType::Datetime
                ),
                "{n}"
            );
        }
        for n in ["DatabaseName", "ServerName"] {
            assert_eq!(type_of(cols, n), ColumnType::NVarchar, "{n}");
        }
        for (n, _) in HEADERONLY_NUMERIC {
            assert_eq!(type_of(cols, n), ColumnType::Numericn, "{n}");
        }
        assert_eq!(r[0].get::<i16, _>("BackupType"), Some(ty));
        assert_eq!(r[0].get::<&str, _>("BackupTypeDescription"), Some(desc));
        assert_eq!(r[0].get::<&str, _>("DatabaseName"), Some("PACS"));
    }
    let r = rows(
        &mut c,
        &format!("RESTORE FILELISTONLY FROM DISK = N'{}'", bak.display()),
    )
    .await;
    assert_eq!(r.len(), 2);
    let cols = r[0].columns();
    assert_eq!(names(cols), FILELISTONLY);
    for (n, _) in FILELISTONLY_NUMERIC {
        assert_eq!(type_of(cols, n), ColumnType::Numericn, "{n}");
    }
    assert_eq!(r[0].get::<&str, _>("Type"), Some("D"));
    assert_eq!(r[1].get::<&str, _>("Type"), Some("L"));
}

#[tokio::test]
async fn headeronly_and_filelistonly_columns_from_python_tds() {
    let has = std::process::Command::new("python3")
        .args(["-c", "import pytds"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has {
        println!("skipped: headeronly_and_filelistonly_columns_from_python_tds: python3 with pytds (PyPI python-tds) is not installed");
        return;
    }
    let sim = start(false).await;
    let bak = sim.dir.path().join("py-cols.bak");
    // One line per statement: the column names, then name:precision:scale of each.
    let script = format!(
        r#"
import pytds
c = pytds.connect(server='127.0.0.1', port={port}, user='sa', password='{pw}', autocommit=True)
cur = c.cursor()
cur.execute("BACKUP DATABASE [PACS] TO DISK = N'{bak}' WITH CHECKSUM, INIT")
for stmt in ('HEADERONLY', 'FILELISTONLY'):
    cur.execute("RESTORE " + stmt + " FROM DISK = N'{bak}'")
    cur.fetchall()
    print(stmt, ','.join(d[0] for d in cur.description))
    print(stmt + '_TYPES', ','.join('%s:%s:%s' % (d[0], d[4], d[5]) for d in cur.description))
"#,
        port = sim.addr.port(),
        pw = PW,
        bak = bak.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    let line = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line: {all}"))
            .split(',')
            .map(str::to_string)
            .collect()
    };
    assert_eq!(line("HEADERONLY"), HEADERONLY);
    assert_eq!(line("FILELISTONLY"), FILELISTONLY);
    for (key, numeric) in [
        ("HEADERONLY_TYPES", &HEADERONLY_NUMERIC[..]),
        ("FILELISTONLY_TYPES", &FILELISTONLY_NUMERIC[..]),
    ] {
        let types = line(key);
        for (n, precision) in numeric {
            let want = format!("{n}:{precision}:0");
            assert!(types.contains(&want), "{want} not in {types:?}");
        }
    }
}
