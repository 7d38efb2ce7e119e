//! SQL Server's own records inside the MQCI stream: SCIN (the backup set), SFGI
//! (filegroups) and SFIN (database files).
//!
//! They hold everything RESTORE HEADERONLY and FILELISTONLY add to the MTF blocks:
//! database and server names, LSNs, the backup type, versions and the file list.
//! Offsets are those of bak-format.md; the record chain is walked with a bound on
//! every size, so a damaged MQCI yields an error, never a panic.

use super::header::{BackupType, FileListEntry, Lsn};
use super::mtf::{le, MtfDate, StrRef};

/// Most bytes of MQCI accepted; real ones are a few KiB.
pub const MAX_MQCI: u64 = 1 << 20;
/// Most records accepted in MQCI.
const MAX_RECORDS: usize = 65_536;

/// SCIN flag: the backup was taken WITH CHECKSUM.
pub const SCIN_FLAG_CHECKSUM: u32 = 0x10;
/// SCIN flag seen on every real backup.
pub const SCIN_FLAG_ALWAYS: u32 = 0x200;
/// SCIN flag seen on differentials.
pub const SCIN_FLAG_DIFFERENTIAL: u32 = 0x800;

/// The SCIN record: one backup set as SQL Server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scin {
    /// Flag word, u32 at 0x08 (`SCIN_FLAG_*`); HEADERONLY's Flags.
    pub flags: u32,
    /// SQL Server build, u16 at 0x18.
    pub build: u16,
    /// SQL Server minor version, byte 0x1A.
    pub minor: u8,
    /// SQL Server major version, byte 0x1B.
    pub major: u8,
    /// FirstLSN, 10 bytes at 0x20; `None` when zero.
    pub first_lsn: Option<Lsn>,
    /// LastLSN, 10 bytes at 0x2A; `None` when zero.
    pub last_lsn: Option<Lsn>,
    /// CheckpointLSN, 10 bytes at 0x34; `None` when zero.
    pub checkpoint_lsn: Option<Lsn>,
    /// DatabaseBackupLSN, 10 bytes at 0x3E; `None` when zero.
    pub database_backup_lsn: Option<Lsn>,
    /// Database creation date, MTF_DATE_TIME at 0x48.
    pub database_creation_date: Option<MtfDate>,
    /// Backup start date, MTF_DATE_TIME at 0x4D.
    pub backup_start_date: Option<MtfDate>,
    /// The msdb letter at 0x57 ('D', 'I', 'L'...); `None` when the byte is 0.
    pub backup_type: Option<BackupType>,
    /// Sort order, byte 0x58.
    pub sort_order: u8,
    /// Compatibility level, byte 0x5B.
    pub compatibility_level: u8,
    /// Database version, u16 at 0x5E.
    pub database_version: u16,
    /// Database name, UTF-16 string referenced at 0x68.
    pub database_name: String,
    /// Server\instance name, UTF-16 string referenced at 0x6C.
    pub server_name: String,
    /// UnicodeLocaleId, u32 at 0x74.
    pub unicode_locale_id: u32,
    /// UnicodeComparisonStyle, u32 at 0x78.
    pub unicode_comparison_style: u32,
}

/// What MQCI holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    /// The SCIN record (`parse_mqci` fails without one).
    pub scin: Option<Scin>,
    /// One FILELISTONLY row per SFIN, group names filled in from SFGI.
    pub files: Vec<FileListEntry>,
}

/// Why an MQCI stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Offset in the MQCI data of the record at fault (0 when SCIN is missing).
    pub offset: usize,
    /// What is wrong, in words.
    pub message: String,
}

/// Parses the MQCI stream's data.
pub fn parse_mqci(data: &[u8]) -> Result<Catalog, RecordError> {
    let mut cat = Catalog::default();
    let mut groups: Vec<(u32, String)> = Vec::new();
    let mut p = 0usize;
    let mut count = 0;
    while p + 8 <= data.len() {
        let tag = &data[p..p + 4];
        let size = le::u32(data, p + 4) as usize;
        if tag.iter().all(|&b| b == 0) && size == 0 {
            break;
        }
        if size < 8 || p + size > data.len() {
            return Err(RecordError {
                offset: p,
                message: format!(
                    "MQCI record {} has size {size}, outside the {} bytes left",
                    String::from_utf8_lossy(tag),
                    data.len() - p
                ),
            });
        }
        count += 1;
        if count > MAX_RECORDS {
            return Err(RecordError {
                offset: p,
                message: "too many MQCI records".into(),
            });
        }
        let rec = &data[p..p + size];
        match tag {
            b"SCIN" => cat.scin = Some(parse_scin(rec)),
            b"SFGI" => groups.push((le::u32(rec, 0x0C), StrRef::at(rec, 0x10).read(rec, true))),
            b"SFIN" => {
                let group = le::u32(rec, 0x24);
                cat.files.push(FileListEntry {
                    logical_name: StrRef::at(rec, 0x30).read(rec, true),
                    physical_name: StrRef::at(rec, 0x34).read(rec, true),
                    file_type: if group == 0 { 'L' } else { 'D' },
                    file_group_name: None,
                    file_id: le::u32(rec, 0x14),
                    file_group_id: group,
                })
            }
            _ => {}
        }
        p += size;
    }
    for f in &mut cat.files {
        f.file_group_name = groups
            .iter()
            .find(|(id, _)| *id == f.file_group_id && f.file_group_id != 0)
            .map(|(_, n)| n.clone());
    }
    if cat.scin.is_none() {
        return Err(RecordError {
            offset: 0,
            message: "MQCI holds no SCIN record".into(),
        });
    }
    Ok(cat)
}

fn parse_scin(r: &[u8]) -> Scin {
    let t = le::u8(r, 0x57);
    Scin {
        flags: le::u32(r, 0x08),
        build: le::u16(r, 0x18),
        minor: le::u8(r, 0x1A),
        major: le::u8(r, 0x1B),
        first_lsn: Lsn::parse(r, 0x20),
        last_lsn: Lsn::parse(r, 0x2A),
        checkpoint_lsn: Lsn::parse(r, 0x34),
        database_backup_lsn: Lsn::parse(r, 0x3E),
        database_creation_date: MtfDate::parse(r, 0x48),
        backup_start_date: MtfDate::parse(r, 0x4D),
        backup_type: (t != 0).then(|| BackupType::from_letter(t)),
        sort_order: le::u8(r, 0x58),
        compatibility_level: le::u8(r, 0x5B),
        database_version: le::u16(r, 0x5E),
        database_name: StrRef::at(r, 0x68).read(r, true),
        server_name: StrRef::at(r, 0x6C).read(r, true),
        unicode_locale_id: le::u32(r, 0x74),
        unicode_comparison_style: le::u32(r, 0x78),
    }
}
