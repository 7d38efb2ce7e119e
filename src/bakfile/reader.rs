//! Turns the blocks of a backup file into backup sets: HEADERONLY and FILELISTONLY
//! values, the media's properties, and where each data and log stream lies.
//!
//! This is the whole of `inspect`: it reads block headers, the MQCI records and the
//! 4-byte CSUM values, and seeks over everything else. A structural problem stops
//! the walk and is recorded as [`Damage`] beside whatever was read before it, so an
//! engineer still sees which database a damaged file claims to hold.

use std::path::Path;

use serde::Serialize;

use super::container::{Container, MAGIC};
use super::header::{BackupHeader, BackupType, FileListEntry};
use super::mtf::{le, Block, StrRef, Tag, Walker};
use super::records::{parse_mqci, MAX_MQCI, SCIN_FLAG_CHECKSUM};
use super::source::{read_full, FileSource, ReadAt};
use crate::error::Result;
use crate::{Error, ErrorKind};

/// How the file stores its MTF stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerKind {
    /// Plain MTF, starts with `TAPE`.
    Mtf,
    /// `WITH COMPRESSION`: the `MSSQLBAK` container.
    MssqlbakCompressed,
}

impl ContainerKind {
    /// The name expected.json and the JSON output use.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mtf => "mtf",
            Self::MssqlbakCompressed => "mssqlbak-compressed",
        }
    }
}

/// Properties of the media (the file) rather than of a backup set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MediaInfo {
    /// A media password was set (`BACKUP ... WITH MEDIAPASSWORD`): SQL Server asks
    /// for it before restoring. The data is not encrypted by it.
    pub media_password: bool,
    /// The TAPE block's password algorithm field (non-zero with a password).
    pub password_algorithm: u16,
    /// From the RAID stream of the TAPE block: the media set's GUID.
    pub media_set_id: Option<String>,
    /// Number of files (media families) the set is striped over; read from the RAID
    /// stream (unverified on a real striped set: every file here says 1).
    pub family_count: u16,
    /// This file's place among them, 1-based (unverified, as above).
    pub family_sequence: u16,
    /// SoftwareVendorId of the TAPE block (4608 for SQL Server).
    pub software_vendor_id: u16,
    /// The software name in the TAPE block ("Microsoft SQL Server").
    pub software_name: String,
}

/// Where a data (MQDA) or log (MQTL) stream's bytes lie, for `--check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataStream {
    /// `MQDA` or `MQTL`.
    pub kind: String,
    /// Offset of the stream header (in the decompressed stream for compressed files).
    pub header_offset: u64,
    /// Offset of the stream data, its 2-byte pad first (same coordinates as
    /// `header_offset`).
    pub data_offset: u64,
    /// Data length from the stream header, pad included.
    pub length: u64,
    /// The stream's media-format attributes say a CSUM follows.
    pub expects_csum: bool,
    /// The CSUM value that followed, if any.
    pub csum: Option<u32>,
}

/// One backup set in a file: a HEADERONLY row and its FILELISTONLY rows.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSet {
    /// The set's HEADERONLY row.
    pub header: BackupHeader,
    /// The set's FILELISTONLY rows.
    pub files: Vec<FileListEntry>,
    /// ESET was reached: the set is complete up to its end.
    pub complete: bool,
    /// Its non-empty MQDA/MQTL streams in file order, for `--check`.
    #[serde(skip)]
    pub streams: Vec<DataStream>,
    /// The type SCIN gives; `None` when no SCIN was read (reported as damage).
    #[serde(skip)]
    pub kind: Option<BackupType>,
}

/// A damaged place, named as precisely as the reader can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// What is wrong, in words.
    pub what: String,
    /// The stream it is in (`MQDA #1 of set 1`...), when known.
    pub stream: Option<String>,
    /// The page id (file:page) for page checksum failures.
    pub page_id: Option<String>,
    /// Offset in the file (for compressed files: in the decompressed MTF stream, with
    /// the container record's file offset in `file_offset`).
    pub offset: Option<u64>,
    /// For compressed files: the file offset of the record holding `offset`.
    pub file_offset: Option<u64>,
}

impl Damage {
    /// A damage at `offset` with only a description.
    pub fn at(what: impl Into<String>, offset: Option<u64>) -> Self {
        Self {
            what: what.into(),
            stream: None,
            page_id: None,
            offset,
            file_offset: None,
        }
    }
}

/// Everything `inspect` learns about one file.
#[derive(Debug, Clone, Serialize)]
pub struct BackupFile {
    /// The path as given.
    pub path: String,
    /// File size in bytes (on disk, compressed or not).
    pub size: u64,
    /// Plain MTF or the compressed container.
    pub container: ContainerKind,
    /// What the TAPE block says about the media.
    pub media: MediaInfo,
    /// Backup sets in file order, an incomplete last one included.
    pub sets: Vec<BackupSet>,
    /// Structural problems: a non-empty list means the file is damaged.
    pub damage: Vec<Damage>,
}

impl BackupFile {
    /// Whether no damage was found and every set is complete.
    pub fn is_sound(&self) -> bool {
        self.damage.is_empty() && !self.sets.is_empty() && self.sets.iter().all(|s| s.complete)
    }
}

/// An opened backup: the file and the MTF view over it.
pub enum Opened {
    /// Plain MTF, read as is.
    Mtf(FileSource),
    /// The `MSSQLBAK` container, read through its decompressing view.
    Compressed(Box<Container<FileSource>>),
}

impl Opened {
    /// The MTF byte stream.
    pub fn source(&mut self) -> &mut dyn ReadAt {
        match self {
            Self::Mtf(s) => s,
            Self::Compressed(c) => c.as_mut(),
        }
    }

    /// The container kind.
    pub fn kind(&self) -> ContainerKind {
        match self {
            Self::Mtf(_) => ContainerKind::Mtf,
            Self::Compressed(_) => ContainerKind::MssqlbakCompressed,
        }
    }

    /// File offset for a logical offset (identity for plain MTF).
    pub fn file_offset_of(&self, off: u64) -> Option<u64> {
        match self {
            Self::Mtf(_) => None,
            Self::Compressed(c) => c.file_offset_of(off),
        }
    }
}

/// Opens a backup file and recognises its container from the first bytes.
pub fn open(path: &Path) -> Result<(Opened, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut src = FileSource::new(file).map_err(|e| Error::io(path, e))?;
    let size = src.size_hint().unwrap_or(0);
    let mut magic = [0u8; 8];
    let n = read_full(&mut src, 0, &mut magic).map_err(|e| Error::io(path, e))?;
    if n >= 4 && &magic[..4] == b"TAPE" {
        Ok((Opened::Mtf(src), size))
    } else if n == 8 && &magic == MAGIC {
        Ok((Opened::Compressed(Box::new(Container::new(src))), size))
    } else {
        let what = if n == 0 {
            "empty file (0 bytes): not a SQL Server backup".to_string()
        } else {
            "not a SQL Server backup: starts with neither TAPE nor MSSQLBAK".to_string()
        };
        Err(Error::new(ErrorKind::Format, what).with("file", path.display()))
    }
}

/// Reads the headers of the backup at `path` without reading its data streams.
pub fn inspect(path: &Path) -> Result<BackupFile> {
    let (mut opened, size) = open(path)?;
    let kind = opened.kind();
    let mut file = read_sets(opened.source(), path.display().to_string(), size, kind);
    for d in &mut file.damage {
        if let Some(off) = d.offset {
            d.file_offset = opened.file_offset_of(off);
        }
    }
    Ok(file)
}

struct SetBuilder {
    set: BackupSet,
}

/// Walks an MTF stream and collects its sets; never fails, damage is recorded.
pub fn read_sets(
    src: &mut dyn ReadAt,
    path: String,
    size: u64,
    container: ContainerKind,
) -> BackupFile {
    let mut out = BackupFile {
        path,
        size,
        container,
        media: MediaInfo::default(),
        sets: Vec::new(),
        damage: Vec::new(),
    };
    let mut cur: Option<SetBuilder> = None;
    let mut walker = Walker::new(src, 0);
    let mut seen_tape = false;
    loop {
        let block = match walker.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                let off = e.context("offset").and_then(|o| o.parse().ok());
                out.damage.push(Damage::at(e.message().to_string(), off));
                break;
            }
        };
        let utf16 = block.header.string_type == 2;
        match block.header.kind {
            Tag::TAPE => {
                seen_tape = true;
                read_tape(&block, walker.source(), &mut out.media, utf16);
            }
            Tag::SSET => {
                if let Some(b) = cur.take() {
                    out.sets.push(b.set);
                }
                cur = Some(SetBuilder {
                    set: sset(&block, container, utf16),
                });
            }
            Tag::VOLB => {
                if let Some(b) = cur.as_mut() {
                    b.set.header.machine_name =
                        StrRef::at(&block.fixed, 64).read(&block.fixed, utf16);
                }
            }
            Tag::MSCI => {
                if let Some(b) = cur.as_mut() {
                    if let Err(d) = read_catalog(&block, walker.source(), &mut b.set) {
                        out.damage.push(d);
                    }
                }
            }
            Tag::MSDA | Tag::MSTL => {
                if let Some(b) = cur.as_mut() {
                    if let Err(d) = collect_streams(&block, walker.source(), &mut b.set) {
                        out.damage.push(d);
                    }
                }
            }
            Tag::ESET => {
                if let Some(mut b) = cur.take() {
                    b.set.complete = true;
                    out.sets.push(b.set);
                }
            }
            _ => {}
        }
    }
    if let Some(b) = cur.take() {
        out.damage.push(Damage::at(
            format!(
                "backup set {} ends before its ESET block: the file is truncated or damaged",
                b.set.header.position
            ),
            Some(walker.position()),
        ));
        out.sets.push(b.set);
    }
    if !seen_tape && out.damage.is_empty() {
        out.damage
            .push(Damage::at("no TAPE block: not an MTF backup", Some(0)));
    }
    if out.sets.is_empty() && out.damage.is_empty() {
        out.damage
            .push(Damage::at("no backup set (SSET) in the file", None));
    }
    for s in &out.sets {
        if s.kind.is_none() {
            out.damage.push(Damage::at(
                format!(
                    "backup set {} has no readable SCIN record",
                    s.header.position
                ),
                None,
            ));
        }
    }
    out
}

fn read_tape(block: &Block, src: &mut dyn ReadAt, media: &mut MediaInfo, utf16: bool) {
    let f = &block.fixed;
    media.password_algorithm = le::u16(f, 62);
    media.media_password = media.password_algorithm != 0 || StrRef::at(f, 76).size != 0;
    media.software_name = StrRef::at(f, 80).read(f, utf16);
    media.software_vendor_id = le::u16(f, 86);
    if let Some(raid) = block.streams.iter().find(|s| s.header.id == Tag::RAID) {
        let mut d = [0u8; 32];
        let n = read_full(src, raid.data_offset, &mut d).unwrap_or(0);
        if n >= 26 && raid.header.length >= 26 {
            media.media_set_id = Some(guid(&d[..16]));
            media.family_count = le::u16(&d, 22);
            media.family_sequence = le::u16(&d, 24);
        }
    }
}

/// A GUID in the usual text form from its 16 mixed-endian bytes.
pub fn guid(b: &[u8]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{}-{}",
        le::u32(b, 0),
        le::u16(b, 4),
        le::u16(b, 6),
        hex::encode_upper(&b[8..10]),
        hex::encode_upper(&b[10..16])
    )
}

fn sset(block: &Block, container: ContainerKind, utf16: bool) -> BackupSet {
    let f = &block.fixed;
    BackupSet {
        header: BackupHeader {
            backup_name: StrRef::at(f, 64).read(f, utf16),
            backup_description: StrRef::at(f, 68).read(f, utf16),
            backup_type: 0,
            backup_type_description: String::new(),
            compressed: container == ContainerKind::MssqlbakCompressed,
            position: le::u16(f, 62),
            device_type: 2,
            user_name: StrRef::at(f, 76).read(f, utf16),
            server_name: String::new(),
            database_name: String::new(),
            database_version: 0,
            database_creation_date: None,
            first_lsn: None,
            last_lsn: None,
            checkpoint_lsn: None,
            database_backup_lsn: None,
            backup_start_date: None,
            sort_order: 0,
            unicode_locale_id: 0,
            unicode_comparison_style: 0,
            compatibility_level: 0,
            software_vendor_id: le::u16(f, 60),
            software_version_major: le::u8(f, 93),
            software_version_minor: le::u8(f, 94),
            software_version_build: 0,
            machine_name: String::new(),
            flags: 0,
            has_backup_checksums: false,
            is_copy_only: None,
        },
        files: Vec::new(),
        complete: false,
        streams: Vec::new(),
        kind: None,
    }
}

fn read_catalog(
    block: &Block,
    src: &mut dyn ReadAt,
    set: &mut BackupSet,
) -> std::result::Result<(), Damage> {
    let Some(s) = block.streams.iter().find(|s| s.header.id == Tag::MQCI) else {
        return Err(Damage::at(
            "MSCI block without an MQCI stream",
            Some(block.offset),
        ));
    };
    if s.header.length > MAX_MQCI {
        return Err(Damage::at(
            format!(
                "MQCI stream claims {} bytes (more than {MAX_MQCI})",
                s.header.length
            ),
            Some(s.offset),
        ));
    }
    let mut data = vec![0u8; s.header.length as usize];
    let n = read_full(src, s.data_offset, &mut data)
        .map_err(|e| Damage::at(format!("MQCI unreadable: {e}"), Some(s.offset)))?;
    if n < data.len() {
        return Err(Damage::at(
            "file ends inside the MQCI stream",
            Some(s.data_offset + n as u64),
        ));
    }
    let cat = parse_mqci(&data)
        .map_err(|e| Damage::at(e.message, Some(s.data_offset + e.offset as u64)))?;
    if let Some(sc) = cat.scin {
        let h = &mut set.header;
        let kind = sc.backup_type.unwrap_or(BackupType::Other(b'?'));
        set.kind = Some(kind);
        h.backup_type = kind.code();
        h.backup_type_description = kind.description().to_string();
        h.flags = sc.flags;
        h.has_backup_checksums = sc.flags & SCIN_FLAG_CHECKSUM != 0;
        h.software_version_build = sc.build;
        h.software_version_minor = sc.minor;
        h.software_version_major = sc.major;
        h.first_lsn = sc.first_lsn;
        h.last_lsn = sc.last_lsn;
        h.checkpoint_lsn = sc.checkpoint_lsn;
        h.database_backup_lsn = sc.database_backup_lsn;
        h.database_creation_date = sc.database_creation_date;
        h.backup_start_date = sc.backup_start_date;
        h.sort_order = sc.sort_order;
        h.compatibility_level = sc.compatibility_level;
        h.database_version = sc.database_version;
        h.database_name = sc.database_name;
        h.server_name = sc.server_name;
        h.unicode_locale_id = sc.unicode_locale_id;
        h.unicode_comparison_style = sc.unicode_comparison_style;
    }
    set.files = cat.files;
    Ok(())
}

fn collect_streams(
    block: &Block,
    src: &mut dyn ReadAt,
    set: &mut BackupSet,
) -> std::result::Result<(), Damage> {
    for s in &block.streams {
        match s.header.id {
            Tag::MQDA | Tag::MQTL if s.header.length > 0 => set.streams.push(DataStream {
                kind: s.header.id.to_string(),
                header_offset: s.offset,
                data_offset: s.data_offset,
                length: s.header.length,
                expects_csum: s.header.media_attributes & super::mtf::StreamHeader::HAS_CSUM != 0,
                csum: None,
            }),
            Tag::CSUM => {
                let mut v = [0u8; 4];
                let n = read_full(src, s.data_offset, &mut v)
                    .map_err(|e| Damage::at(format!("CSUM unreadable: {e}"), Some(s.offset)))?;
                if n < 4 || s.header.length != 4 {
                    return Err(Damage::at(
                        format!("CSUM stream of {} bytes (expected 4)", s.header.length),
                        Some(s.offset),
                    ));
                }
                match set.streams.last_mut() {
                    Some(last) if last.csum.is_none() && last.header_offset > block.offset => {
                        last.csum = Some(u32::from_le_bytes(v))
                    }
                    _ => {
                        return Err(Damage::at(
                            "CSUM stream with no data stream before it",
                            Some(s.offset),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
