//! The simulated database's data file: 8 KiB pages laid out like SQL Server's (a
//! 96-byte header with the page id at 0x20, the page LSN at 0x28 and the page checksum
//! at 0x3C, flag 0x200 at 0x04), whose payload holds rows of the PACS tables as
//! tab-separated text lines. The page LSN is what a differential backup selects on,
//! the checksum is SQL Server's algorithm, so the backup-file writer can carry these
//! pages as they are.
//!
//! Page 0 is a file header page; data pages follow, each owned by one table. Inserts
//! fill the table's last page and then allocate a new one at the end of the file, so
//! a workload changes some pages and leaves others alone, as a real database does.

use std::path::Path;

/// Bytes per page.
pub const PAGE_SIZE: usize = 8192;
/// Bytes of the page header.
pub const HEADER: usize = 96;
/// Page flag: the page carries a checksum.
const FLAG_CHECKSUM: u16 = 0x200;

/// A table of the PACS schema: name, object id, and columns with their T-SQL types.
pub struct TableDef {
    /// Table name (dbo schema).
    pub name: &'static str,
    /// Object id stored in the page header.
    pub obj_id: u32,
    /// Columns: name and declared type.
    pub columns: &'static [(&'static str, &'static str)],
}

/// The PACS schema.
pub const TABLES: &[TableDef] = &[
    TableDef {
        name: "Patient",
        obj_id: 101,
        columns: &[
            ("PatientID", "int"),
            ("MRN", "varchar(16)"),
            ("PatientName", "nvarchar(100)"),
            ("BirthDate", "datetime"),
            ("Sex", "char(1)"),
        ],
    },
    TableDef {
        name: "Study",
        obj_id: 102,
        columns: &[
            ("StudyID", "int"),
            ("PatientID", "int"),
            ("StudyInstanceUID", "varchar(64)"),
            ("StudyDate", "datetime"),
            ("Modality", "varchar(8)"),
            ("Description", "nvarchar(200)"),
            ("Status", "varchar(16)"),
        ],
    },
    TableDef {
        name: "Series",
        obj_id: 103,
        columns: &[
            ("SeriesID", "int"),
            ("StudyID", "int"),
            ("SeriesInstanceUID", "varchar(64)"),
            ("Modality", "varchar(8)"),
            ("ImageCount", "int"),
        ],
    },
    TableDef {
        name: "Image",
        obj_id: 104,
        columns: &[
            ("ImageID", "int"),
            ("SeriesID", "int"),
            ("SOPInstanceUID", "varchar(64)"),
            ("FilePath", "nvarchar(260)"),
            ("SizeBytes", "bigint"),
        ],
    },
];

/// Finds a table by name, case-insensitively.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}

/// One data page in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Owning table's object id (0 for the file header page).
    pub obj_id: u32,
    /// LSN of the last change.
    pub lsn: i64,
    /// Rows, each a tab-separated line.
    pub rows: Vec<String>,
}

impl Page {
    fn payload_len(&self) -> usize {
        self.rows.iter().map(|r| r.len() + 1).sum()
    }

    /// Whether a row of `len` bytes still fits.
    pub fn fits(&self, len: usize) -> bool {
        HEADER + self.payload_len() + len < PAGE_SIZE
    }

    /// Serializes the page with its header and checksum.
    pub fn encode(&self, page_id: u32) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_SIZE];
        p[0] = 1; // header version
        p[1] = if self.obj_id == 0 { 15 } else { 1 }; // file header / data page
        p[0x04..0x06].copy_from_slice(&FLAG_CHECKSUM.to_le_bytes());
        p[0x16..0x18].copy_from_slice(&(self.rows.len() as u16).to_le_bytes());
        p[0x18..0x1C].copy_from_slice(&self.obj_id.to_le_bytes());
        let mut payload = Vec::with_capacity(self.payload_len());
        for r in &self.rows {
            payload.extend_from_slice(r.as_bytes());
            payload.push(b'\n');
        }
        let n = payload.len().min(PAGE_SIZE - HEADER);
        p[0x1E..0x20].copy_from_slice(&((HEADER + n) as u16).to_le_bytes());
        p[0x20..0x24].copy_from_slice(&page_id.to_le_bytes());
        p[0x24..0x26].copy_from_slice(&1u16.to_le_bytes()); // file id
        let (vlf, block, slot) = split_lsn(self.lsn);
        p[0x28..0x2C].copy_from_slice(&vlf.to_le_bytes());
        p[0x2C..0x30].copy_from_slice(&block.to_le_bytes());
        p[0x30..0x32].copy_from_slice(&slot.to_le_bytes());
        p[HEADER..HEADER + n].copy_from_slice(&payload[..n]);
        let sum = page_checksum(&p);
        p[0x3C..0x40].copy_from_slice(&sum.to_le_bytes());
        p
    }

    /// Parses a page; `Err` with the reason when its checksum or layout is wrong.
    pub fn decode(p: &[u8]) -> Result<Page, String> {
        if p.len() != PAGE_SIZE || p[0] != 1 {
            return Err("not a page".into());
        }
        let stored = u32::from_le_bytes([p[0x3C], p[0x3D], p[0x3E], p[0x3F]]);
        if page_checksum(p) != stored {
            return Err(format!(
                "incorrect checksum (expected: 0x{:08x}; actual: 0x{stored:08x})",
                page_checksum(p)
            ));
        }
        let obj_id = u32::from_le_bytes([p[0x18], p[0x19], p[0x1A], p[0x1B]]);
        let free = u16::from_le_bytes([p[0x1E], p[0x1F]]) as usize;
        let vlf = u32::from_le_bytes([p[0x28], p[0x29], p[0x2A], p[0x2B]]);
        let block = u32::from_le_bytes([p[0x2C], p[0x2D], p[0x2E], p[0x2F]]);
        let slot = u16::from_le_bytes([p[0x30], p[0x31]]);
        let body = &p[HEADER..free.clamp(HEADER, PAGE_SIZE)];
        let text = String::from_utf8_lossy(body);
        Ok(Page {
            obj_id,
            lsn: join_lsn(vlf, block, slot),
            rows: text.lines().map(str::to_string).collect(),
        })
    }
}

/// SQL Server's page checksum (the u32 at 0x3C taken as zero): the bakfile checker's
/// own function, so DBCC CHECKDB, VERIFYONLY and `pacsbak inspect --check` agree.
pub fn page_checksum(p: &[u8]) -> u32 {
    crate::bakfile::checksum::page_checksum(p)
}

/// Splits a numeric LSN into {VLF, block, slot}.
pub fn split_lsn(lsn: i64) -> (u32, u32, u16) {
    let l = lsn.max(0);
    (
        (l / 1_000_000_000_000_000) as u32,
        (l / 100_000 % 10_000_000_000) as u32,
        (l % 100_000) as u16,
    )
}

/// Joins {VLF, block, slot} into the numeric LSN form.
pub fn join_lsn(vlf: u32, block: u32, slot: u16) -> i64 {
    vlf as i64 * 1_000_000_000_000_000 + block as i64 * 100_000 + slot as i64
}

/// The pages of one database's data file.
#[derive(Debug, Clone, Default)]
pub struct DataFile {
    /// Page 0 is the file header page.
    pub pages: Vec<Page>,
}

impl DataFile {
    /// A new file with only its header page.
    pub fn new(db_name: &str, lsn: i64) -> Self {
        DataFile {
            pages: vec![Page {
                obj_id: 0,
                lsn,
                rows: vec![format!("PACSSIM data file\t{db_name}")],
            }],
        }
    }

    /// Reads and checks a data file.
    pub fn load(path: &Path) -> std::io::Result<DataFile> {
        let bytes = std::fs::read(path)?;
        Self::from_bytes(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Parses the pages of a data file image.
    pub fn from_bytes(bytes: &[u8]) -> Result<DataFile, String> {
        let mut pages = Vec::new();
        for (i, p) in bytes.chunks(PAGE_SIZE).enumerate() {
            pages.push(Page::decode(p).map_err(|e| format!("page (1:{i}): {e}"))?);
        }
        if pages.is_empty() {
            return Err("empty data file".into());
        }
        Ok(DataFile { pages })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pages.len() * PAGE_SIZE);
        for (i, p) in self.pages.iter().enumerate() {
            out.extend_from_slice(&p.encode(i as u32));
        }
        out
    }

    /// Writes the file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_bytes())?;
        std::fs::rename(&tmp, path)
    }

    /// Rows of a table, in page order.
    pub fn rows(&self, obj_id: u32) -> impl Iterator<Item = &String> {
        self.pages
            .iter()
            .filter(move |p| p.obj_id == obj_id)
            .flat_map(|p| p.rows.iter())
    }

    /// Appends a row to the table's last page or a new page.
    pub fn insert(&mut self, obj_id: u32, row: String, lsn: i64) {
        if let Some(p) = self.pages.iter_mut().rev().find(|p| p.obj_id == obj_id) {
            if p.fits(row.len()) {
                p.rows.push(row);
                p.lsn = lsn;
                return;
            }
        }
        self.pages.push(Page {
            obj_id,
            lsn,
            rows: vec![row],
        });
    }

    /// Replaces the row whose first field is `key`.
    pub fn update(&mut self, obj_id: u32, row: String, lsn: i64) -> bool {
        let key = row.split('\t').next().unwrap_or("").to_string();
        for p in self.pages.iter_mut().filter(|p| p.obj_id == obj_id) {
            let used = p.payload_len();
            if let Some(r) = p
                .rows
                .iter_mut()
                .find(|r| r.split('\t').next() == Some(key.as_str()))
            {
                if used - r.len() + row.len() + HEADER < PAGE_SIZE {
                    *r = row;
                    p.lsn = lsn;
                    return true;
                }
            }
        }
        false
    }

    /// Applies one logged operation (`I` insert or `U` update of a table's row).
    pub fn apply(&mut self, op: &str, lsn: i64) {
        let mut parts = op.splitn(3, '\t');
        let (kind, tname, row) = (parts.next(), parts.next(), parts.next());
        if let (Some(kind), Some(t), Some(row)) = (kind, tname.and_then(table), row) {
            match kind {
                "I" => self.insert(t.obj_id, row.to_string(), lsn),
                "U" => {
                    self.update(t.obj_id, row.to_string(), lsn);
                }
                _ => {}
            }
        }
        if let Some(h) = self.pages.first_mut() {
            h.lsn = h.lsn.max(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_roundtrip_and_checksum() {
        let mut f = DataFile::new("PACS", 37_000_000_000_100_001);
        for i in 0..500 {
            f.insert(
                104,
                format!("{i}\t1\t1.2.3.{i}\t/img/{i}.dcm\t524288"),
                37_000_000_000_200_000 + i,
            );
        }
        assert!(f.pages.len() > 2);
        let bytes = f.to_bytes();
        let back = DataFile::from_bytes(&bytes).unwrap();
        assert_eq!(back.pages, f.pages);
        let mut bad = bytes.clone();
        bad[PAGE_SIZE + 200] ^= 0x10;
        assert!(DataFile::from_bytes(&bad).is_err());
        assert_eq!(split_lsn(37_000_000_012_345_601), (37, 123, 45601));
    }
}
