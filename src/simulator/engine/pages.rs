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

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

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
///
/// Pages are shared (`Arc`): cloning the file, as BACKUP does to take its
/// point-in-time copy, copies no page; a later change copies only the page it
/// changes. The file remembers which pages changed since it was last written, so
/// [`DataFile::save_changes`] writes those pages in place, as SQL Server's checkpoint
/// writes dirty pages, instead of rewriting the whole file.
#[derive(Debug, Clone, Default)]
pub struct DataFile {
    /// Page 0 is the file header page.
    pages: Vec<Arc<Page>>,
    /// Pages changed since the file was last written (page ids, unsorted, may repeat).
    dirty: Vec<u32>,
    /// Every page changed (or the file never written): the next save writes it all.
    all_dirty: bool,
    /// The last page of each table (by object id): where inserts go.
    last_page: HashMap<u32, usize>,
    /// Per table, the first page holding each key (a row's first field), built on
    /// the first update of that table and kept up to date by inserts.
    keys: HashMap<u32, KeyIndex>,
}

/// Where a table's keys are.
#[derive(Debug, Clone, Default)]
struct KeyIndex {
    /// The first page holding each key.
    first: HashMap<Box<str>, usize>,
    /// Some key is held by more than one row: an update whose row does not fit on
    /// the first page may go to a later one, which needs a scan.
    dupes: bool,
}

impl KeyIndex {
    fn add(&mut self, key: &str, page: usize) {
        match self.first.get(key) {
            Some(_) => self.dupes = true,
            None => {
                self.first.insert(key.into(), page);
            }
        }
    }
}

fn row_key(row: &str) -> &str {
    row.split('\t').next().unwrap_or("")
}

impl DataFile {
    /// A new file with only its header page.
    pub fn new(db_name: &str, lsn: i64) -> Self {
        Self::from_pages(vec![Page {
            obj_id: 0,
            lsn,
            rows: vec![format!("PACSSIM data file\t{db_name}")],
        }])
    }

    /// A file made of these pages (page id = position); never written yet.
    pub fn from_pages(pages: Vec<Page>) -> Self {
        let mut f = DataFile {
            pages: pages.into_iter().map(Arc::new).collect(),
            ..DataFile::default()
        };
        f.reindex();
        f.all_dirty = true;
        f
    }

    fn reindex(&mut self) {
        self.last_page.clear();
        self.keys.clear();
        for (i, p) in self.pages.iter().enumerate() {
            self.last_page.insert(p.obj_id, i);
        }
    }

    /// Reads and checks a data file.
    pub fn load(path: &Path) -> std::io::Result<DataFile> {
        let bytes = std::fs::read(path)?;
        let mut f = Self::from_bytes(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        f.all_dirty = false;
        Ok(f)
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
        Ok(Self::from_pages(pages))
    }

    /// Every page of a data file image that does not decode: (page id, the object
    /// id its header names, what is wrong). What DBCC CHECKDB reports.
    pub fn damaged_pages(bytes: &[u8]) -> Vec<(usize, u32, String)> {
        bytes
            .chunks(PAGE_SIZE)
            .enumerate()
            .filter_map(|(i, p)| {
                Page::decode(p).err().map(|e| {
                    let obj = p
                        .get(0x18..0x1C)
                        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    (i, obj, e)
                })
            })
            .collect()
    }

    /// The pages, page 0 first.
    pub fn pages(&self) -> &[Arc<Page>] {
        &self.pages
    }

    /// Restore: the file gets `total` pages (new ones empty), then these pages at
    /// their ids (ids past `total` are ignored).
    pub fn replace_pages(&mut self, total: usize, pages: &[(u32, Arc<Page>)]) {
        let empty = Arc::new(Page {
            obj_id: 0,
            lsn: 0,
            rows: Vec::new(),
        });
        self.pages.resize(total, empty);
        for (id, p) in pages {
            if let Some(slot) = self.pages.get_mut(*id as usize) {
                *slot = p.clone();
            }
        }
        self.all_dirty = true;
        self.dirty.clear();
        self.reindex();
    }

    /// The file's bytes.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pages.len() * PAGE_SIZE);
        for (i, p) in self.pages.iter().enumerate() {
            out.extend_from_slice(&p.encode(i as u32));
        }
        out
    }

    /// Writes the whole file (to a temporary file renamed over it).
    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            for (i, p) in self.pages.iter().enumerate() {
                w.write_all(&p.encode(i as u32))?;
            }
            w.flush()?;
        }
        std::fs::rename(&tmp, path)?;
        self.dirty.clear();
        self.all_dirty = false;
        Ok(())
    }

    /// Writes the pages changed since the last write, each at its place in the file
    /// (the whole file when it was never written or was replaced).
    pub fn save_changes(&mut self, path: &Path) -> std::io::Result<()> {
        if self.all_dirty || !path.exists() {
            return self.save(path);
        }
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut ids = std::mem::take(&mut self.dirty);
        ids.sort_unstable();
        ids.dedup();
        let written = self.write_pages(path, &ids);
        if written.is_err() {
            // Which pages reached the file is unknown: the next save rewrites it all.
            self.all_dirty = true;
        }
        written
    }

    fn write_pages(&self, path: &Path, ids: &[u32]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let mut buf = Vec::new();
        let mut k = 0;
        while k < ids.len() {
            // A run of consecutive pages goes out in one write.
            let first = ids[k];
            buf.clear();
            while k < ids.len() && ids[k] == first + (buf.len() / PAGE_SIZE) as u32 {
                let id = ids[k];
                buf.extend_from_slice(&self.pages[id as usize].encode(id));
                k += 1;
            }
            f.seek(SeekFrom::Start(first as u64 * PAGE_SIZE as u64))?;
            f.write_all(&buf)?;
        }
        Ok(())
    }

    fn touch(&mut self, i: usize) {
        if !self.all_dirty {
            self.dirty.push(i as u32);
        }
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
        let key = self
            .keys
            .contains_key(&obj_id)
            .then(|| row_key(&row).to_string());
        let at = match self.last_page.get(&obj_id) {
            Some(&i) if self.pages[i].fits(row.len()) => {
                let p = Arc::make_mut(&mut self.pages[i]);
                p.rows.push(row);
                p.lsn = lsn;
                i
            }
            _ => {
                self.pages.push(Arc::new(Page {
                    obj_id,
                    lsn,
                    rows: vec![row],
                }));
                let i = self.pages.len() - 1;
                self.last_page.insert(obj_id, i);
                i
            }
        };
        self.touch(at);
        if let (Some(k), Some(index)) = (key, self.keys.get_mut(&obj_id)) {
            index.add(&k, at);
        }
    }

    /// Replaces the first row (in page order) whose first field is `key`, when the
    /// page still has room for the new row; otherwise the next one that fits.
    pub fn update(&mut self, obj_id: u32, row: String, lsn: i64) -> bool {
        let key = row_key(&row).to_string();
        if !self.keys.contains_key(&obj_id) {
            let mut index = KeyIndex::default();
            for (i, p) in self.pages.iter().enumerate() {
                if p.obj_id == obj_id {
                    for r in &p.rows {
                        index.add(row_key(r), i);
                    }
                }
            }
            self.keys.insert(obj_id, index);
        }
        let Some(index) = self.keys.get(&obj_id) else {
            return false;
        };
        let Some(&first) = index.first.get(key.as_str()) else {
            return false;
        };
        // With unique keys no later page holds the key: only the first is looked at.
        let last = if index.dupes {
            self.pages.len()
        } else {
            first + 1
        };
        for i in first..last {
            let p = &self.pages[i];
            if p.obj_id != obj_id {
                continue;
            }
            let used = p.payload_len();
            let Some(j) = p.rows.iter().position(|r| row_key(r) == key) else {
                continue;
            };
            if used - p.rows[j].len() + row.len() + HEADER < PAGE_SIZE {
                let p = Arc::make_mut(&mut self.pages[i]);
                p.rows[j] = row;
                p.lsn = lsn;
                self.touch(i);
                return true;
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
        assert!(f.pages().len() > 2);
        let bytes = f.to_bytes();
        let back = DataFile::from_bytes(&bytes).unwrap();
        assert_eq!(back.pages(), f.pages());
        let mut bad = bytes.clone();
        bad[PAGE_SIZE + 200] ^= 0x10;
        assert!(DataFile::from_bytes(&bad).is_err());
        assert_eq!(split_lsn(37_000_000_012_345_601), (37, 123, 45601));
    }

    /// The update the indexes replace: the first page of the table holding the key
    /// whose row can take the new one.
    fn naive_update(pages: &mut [Page], obj_id: u32, row: &str, lsn: i64) -> bool {
        let key = row.split('\t').next().unwrap_or("");
        for p in pages.iter_mut().filter(|p| p.obj_id == obj_id) {
            let used = p.payload_len();
            if let Some(r) = p
                .rows
                .iter_mut()
                .find(|r| r.split('\t').next() == Some(key))
            {
                if used - r.len() + row.len() + HEADER < PAGE_SIZE {
                    *r = row.to_string();
                    p.lsn = lsn;
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn indexed_inserts_and_updates_match_a_scan_and_only_changed_pages_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mdf");
        let mut f = DataFile::new("PACS", 1);
        let mut naive: Vec<Page> = f.pages().iter().map(|p| (**p).clone()).collect();
        let mut lsn = 10;
        let mut step = |f: &mut DataFile, naive: &mut Vec<Page>, op: &str| {
            lsn += 1;
            f.apply(op, lsn);
            // The reference: a reverse scan for the table's last page, a forward
            // scan for the updated row.
            let mut parts = op.splitn(3, '\t');
            let (kind, t, row) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let obj = table(t).unwrap().obj_id;
            if kind == "I" {
                match naive.iter_mut().rev().find(|p| p.obj_id == obj) {
                    Some(p) if p.fits(row.len()) => {
                        p.rows.push(row.to_string());
                        p.lsn = lsn;
                    }
                    _ => naive.push(Page {
                        obj_id: obj,
                        lsn,
                        rows: vec![row.to_string()],
                    }),
                }
            } else {
                naive_update(naive, obj, row, lsn);
            }
        };
        for i in 0..3000 {
            step(
                &mut f,
                &mut naive,
                &format!("I\tStudy\t{i}\t1\tuid.{i}\t2026-01-01\tCT\tCT study\tSCHEDULED"),
            );
            step(
                &mut f,
                &mut naive,
                &format!("I\tImage\t{i}\t1\tuid.{i}\t\\\\pacs\\{i}.dcm\t524288"),
            );
            if i == 1500 {
                f.save(&path).unwrap();
            }
            if i % 7 == 0 {
                // Longer rows: some no longer fit on their page and are left alone.
                let pad = "x".repeat(i % 400);
                step(
                    &mut f,
                    &mut naive,
                    &format!(
                        "U\tStudy\t{}\t2\tuid\t2026-01-02\tCT\t{pad}\tREPORTED",
                        i / 2
                    ),
                );
            }
        }
        // A duplicate key: updates may then go past the first page holding it.
        step(
            &mut f,
            &mut naive,
            "I\tStudy\t5\t1\tdupe\t2026-01-01\tCT\tCT study\tSCHEDULED",
        );
        step(
            &mut f,
            &mut naive,
            &format!(
                "U\tStudy\t5\t2\tuid\t2026-01-02\tCT\t{}\tREPORTED",
                "y".repeat(3000)
            ),
        );
        let got: Vec<Page> = f.pages().iter().map(|p| (**p).clone()).collect();
        assert_eq!(got, naive);
        f.save_changes(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), f.to_bytes());
        // A clone shares its pages; changing one copies only that page.
        let snap = f.clone();
        step(
            &mut f,
            &mut naive,
            "U\tStudy\t3\t9\tuid\t2026-01-03\tCT\tCT\tARCHIVED",
        );
        let changed = (0..f.pages().len())
            .filter(|&i| !Arc::ptr_eq(&f.pages()[i], &snap.pages()[i]))
            .count();
        assert_eq!(changed, 1);
        f.save_changes(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), f.to_bytes());
    }
}
