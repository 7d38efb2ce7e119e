//! The simulated SQL Server instance: databases with real files under the root
//! folder, the simulated clock and workload, the catalog, running requests and the
//! Agent. All of it sits behind one `std::sync::Mutex` that is never held across an
//! `.await`: handlers take it, change state, release it, then talk to the client.

pub mod catalog;
pub mod pages;
pub mod state;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use time::OffsetDateTime;

use self::catalog::Catalog;
use self::pages::{table, DataFile};
use self::state::{DbMeta, Faults, FileMeta, InstanceState, LogRecord};
use crate::{Error, ErrorKind};

/// A request shown in sys.dm_exec_requests.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// session_id.
    pub spid: u16,
    /// command, e.g. `BACKUP DATABASE`.
    pub command: String,
    /// database_id.
    pub database_id: i64,
    /// Start (simulated unix seconds, fractional).
    pub start: f64,
    /// 0..100.
    pub percent: f64,
    /// Estimated ms to completion.
    pub estimated_ms: i64,
}

/// A connected session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Login name.
    pub login: String,
    /// Current database.
    pub database: String,
    /// Host name the client sent.
    pub host: String,
    /// Program name the client sent.
    pub program: String,
}

/// The instance.
pub struct Instance {
    /// Root folder.
    pub root: PathBuf,
    /// Persistent state.
    pub state: InstanceState,
    /// msdb and the system views.
    pub catalog: Catalog,
    /// Loaded data files by lower-case database name.
    data: HashMap<String, DataFile>,
    /// Where the batches of each log file are, by lower-case database name.
    logs: HashMap<String, LogIndex>,
    /// Requests running now, by session.
    pub requests: HashMap<u16, RequestInfo>,
    /// Sessions connected now.
    pub sessions: HashMap<u16, SessionInfo>,
}

fn io_err(e: std::io::Error, path: &Path) -> Error {
    Error::new(ErrorKind::Io, format!("simulator state: {e}")).with("path", path.display())
}

/// A new random GUID in text form.
pub fn new_guid() -> String {
    let g: [u8; 16] = rand::thread_rng().gen();
    crate::simulator::tds::types::format_guid(&g)
}

impl Instance {
    /// Opens the instance under `root`, creating it (and the sample PACS database
    /// unless `empty`) when the folder holds none yet.
    pub fn open(root: &Path, empty: bool) -> Result<Instance, Error> {
        std::fs::create_dir_all(root.join("data")).map_err(|e| io_err(e, root))?;
        std::fs::create_dir_all(root.join("backup")).map_err(|e| io_err(e, root))?;
        let existing = InstanceState::load(root).map_err(|e| io_err(e, root))?;
        let fresh = existing.is_none();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let state = existing.unwrap_or(InstanceState {
            databases: Vec::new(),
            next_database_id: 5,
            clock_offset: 0,
            agent_running: true,
            started_at: now,
            faults: Faults::default(),
            workload_seed: 20_261_125,
        });
        let catalog = Catalog::open(root).map_err(|e| {
            Error::new(ErrorKind::Io, format!("simulator catalog: {e}"))
                .with("path", root.display())
        })?;
        let mut inst = Instance {
            root: root.to_path_buf(),
            state,
            catalog,
            data: HashMap::new(),
            logs: HashMap::new(),
            requests: HashMap::new(),
            sessions: HashMap::new(),
        };
        if fresh {
            inst.catalog
                .seed_agent(&root.join("backup"), inst.now_unix())
                .map_err(|e| Error::new(ErrorKind::Io, format!("simulator catalog: {e}")))?;
            if !empty {
                inst.create_database("PACS", true)?;
            }
            inst.save()?;
        }
        Ok(inst)
    }

    /// Simulated time now.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.state.clock_offset)
    }

    /// Simulated time now as unix seconds.
    pub fn now_unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Persists the instance state.
    pub fn save(&self) -> Result<(), Error> {
        self.state
            .save(&self.root)
            .map_err(|e| io_err(e, &self.root))
    }

    /// Creates a database with its files; with `sample`, fills it with PACS data.
    pub fn create_database(&mut self, name: &str, sample: bool) -> Result<(), Error> {
        let dir = self.root.join("data");
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let id = self.state.next_database_id;
        self.state.next_database_id += 1;
        let lsn = pages::join_lsn(37, 100, 1);
        let meta = DbMeta {
            name: name.to_string(),
            database_id: id,
            guid: new_guid(),
            fork_guid: new_guid(),
            create_date: self.now_unix(),
            state: "ONLINE".into(),
            recovery_model: "FULL".into(),
            files: vec![
                FileMeta {
                    file_id: 1,
                    logical: name.to_string(),
                    physical: dir.join(format!("{safe}.mdf")).display().to_string(),
                    is_log: false,
                    growth: 8192,
                    is_percent_growth: false,
                    max_size: -1,
                },
                FileMeta {
                    file_id: 2,
                    logical: format!("{name}_log"),
                    physical: dir.join(format!("{safe}_log.ldf")).display().to_string(),
                    is_log: true,
                    growth: 10,
                    is_percent_growth: true,
                    max_size: 268_435_456,
                },
            ],
            lsn,
            checkpoint_lsn: lsn,
            diff_base: None,
            log_chain_lsn: None,
            log_truncated_lsn: lsn,
            restore: None,
            next_ids: [1, 1, 1, 1],
        };
        let mut df = DataFile::new(name, lsn);
        self.write_files(&meta, &mut df, &[])?;
        self.data.insert(name.to_ascii_lowercase(), df);
        self.state.databases.push(meta);
        if sample {
            self.workload(name, 40, 400)?;
        }
        self.save()
    }

    /// Writes a database's data and log files.
    pub fn write_files(
        &mut self,
        meta: &DbMeta,
        df: &mut DataFile,
        log: &[LogRecord],
    ) -> Result<(), Error> {
        if let Some(f) = meta.data_file() {
            let p = Path::new(&f.physical);
            df.save(p).map_err(|e| io_err(e, p))?;
        }
        if let Some(f) = meta.log_file() {
            let p = Path::new(&f.physical);
            let mut out = Vec::new();
            let mut index = LogIndex {
                path: f.physical.clone(),
                ..LogIndex::default()
            };
            index.append(log, &mut out);
            std::fs::write(p, out).map_err(|e| io_err(e, p))?;
            self.logs.insert(meta.name.to_ascii_lowercase(), index);
        }
        Ok(())
    }

    /// The loaded data file of a database.
    pub fn data_file(&mut self, name: &str) -> Result<&mut DataFile, Error> {
        let key = name.to_ascii_lowercase();
        if !self.data.contains_key(&key) {
            let meta = self
                .state
                .db(name)
                .ok_or_else(|| Error::new(ErrorKind::SqlServer, format!("no database {name}")))?;
            let path = PathBuf::from(
                meta.data_file()
                    .map(|f| f.physical.clone())
                    .unwrap_or_default(),
            );
            let df = DataFile::load(&path).map_err(|e| io_err(e, &path))?;
            self.data.insert(key.clone(), df);
        }
        self.data
            .get_mut(&key)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "data file vanished"))
    }

    /// Replaces a database's data file in memory and on disk (the pages it changed,
    /// all of them for a file never written).
    pub fn set_data_file(&mut self, name: &str, mut df: DataFile) -> Result<(), Error> {
        if let Some(meta) = self.state.db(name) {
            if let Some(f) = meta.data_file() {
                let p = PathBuf::from(&f.physical);
                df.save_changes(&p).map_err(|e| io_err(e, &p))?;
            }
        }
        self.data.insert(name.to_ascii_lowercase(), df);
        Ok(())
    }

    /// Writes the pages of a database's loaded data file changed since the last write.
    fn save_data_changes(&mut self, name: &str) -> Result<(), Error> {
        let Some(path) = self
            .state
            .db(name)
            .and_then(|m| m.data_file())
            .map(|f| PathBuf::from(&f.physical))
        else {
            return Ok(());
        };
        let df = self.data_file(name)?;
        df.save_changes(&path).map_err(|e| io_err(e, &path))
    }

    /// Forgets a loaded data file and log index (after DROP DATABASE).
    pub fn unload(&mut self, name: &str) {
        self.data.remove(&name.to_ascii_lowercase());
        self.logs.remove(&name.to_ascii_lowercase());
    }

    /// The index of a database's log file, built by reading the file when there is
    /// none yet (or the file is not what the index describes).
    fn log_index(&mut self, name: &str) -> Option<&LogIndex> {
        let path = self.state.db(name)?.log_file()?.physical.clone();
        let key = name.to_ascii_lowercase();
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let fresh = self
            .logs
            .get(&key)
            .is_some_and(|x| x.path == path && x.file_len() == len);
        if !fresh {
            self.logs.insert(key.clone(), LogIndex::build(&path));
        }
        self.logs.get(&key)
    }

    /// The log records of a database with an LSN from `from` on (and possibly a few
    /// before it, from the same batch), read from the part of the log file holding
    /// them.
    pub fn read_log_from(&mut self, name: &str, from: i64) -> Vec<LogRecord> {
        let Some(index) = self.log_index(name) else {
            return Vec::new();
        };
        let Some(start) = index.batches.iter().position(|b| b.end > from) else {
            return Vec::new();
        };
        let offset = index.batches[start].offset;
        let path = index.path.clone();
        let Ok(mut f) = std::fs::File::open(&path) else {
            return Vec::new();
        };
        let mut text = String::new();
        if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_string(&mut text).is_err() {
            return Vec::new();
        }
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Bytes of the log file: its size (plus 8 MiB) and the bytes in use (the
    /// records from the truncation point on).
    pub fn log_bytes(&mut self, name: &str) -> (i64, i64) {
        let trunc = self
            .state
            .db(name)
            .map(|m| m.log_truncated_lsn)
            .unwrap_or(0);
        let used = match self.log_index(name) {
            Some(index) => index.used_from(trunc) as usize,
            None => 0,
        };
        let total = self
            .state
            .db(name)
            .and_then(|m| m.log_file())
            .and_then(|f| std::fs::metadata(&f.physical).ok())
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        let total = (total + 8 * 1024 * 1024).max(used as i64 + 1);
        (total, used as i64)
    }

    /// Appends log records and applies them to the data file.
    pub fn log_ops(&mut self, name: &str, ops: Vec<String>) -> Result<(), Error> {
        let now = self.now_unix();
        let meta = self
            .state
            .db_mut(name)
            .ok_or_else(|| Error::new(ErrorKind::SqlServer, format!("no database {name}")))?;
        // Each batch starts a new log block.
        meta.lsn = (meta.lsn / 100_000 + 1) * 100_000 + 1;
        let mut recs = Vec::with_capacity(ops.len());
        for op in ops {
            recs.push(LogRecord {
                lsn: meta.lsn,
                time: now,
                op,
            });
            meta.lsn += 1;
        }
        if meta.recovery_model == "SIMPLE" {
            meta.checkpoint_lsn = meta.lsn;
            meta.log_truncated_lsn = meta.lsn;
        }
        let log_path = meta
            .log_file()
            .map(|f| f.physical.clone())
            .unwrap_or_default();
        let df = self.data_file(name)?;
        for r in &recs {
            df.apply(&r.op, r.lsn);
        }
        // The index is brought up to date before the file grows, so it still
        // describes the file (or is rebuilt from it) when this batch is added.
        let key = name.to_ascii_lowercase();
        let indexed = self.log_index(name).is_some();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| io_err(e, Path::new(&log_path)))?;
        let mut out = Vec::new();
        match self.logs.get_mut(&key).filter(|_| indexed) {
            Some(index) => index.append(&recs, &mut out),
            None => LogIndex::default().append(&recs, &mut out),
        }
        f.write_all(&out)
            .map_err(|e| io_err(e, Path::new(&log_path)))?;
        // A checkpoint of sorts: the pages this batch changed go to the data file.
        self.save_data_changes(name)?;
        self.save()
    }

    /// Writes a checkpoint record; returns its LSN.
    pub fn checkpoint(&mut self, name: &str) -> Result<i64, Error> {
        self.log_ops(name, vec!["CKPT".into()])?;
        let meta = self
            .state
            .db_mut(name)
            .ok_or_else(|| Error::new(ErrorKind::SqlServer, format!("no database {name}")))?;
        let lsn = meta.lsn - 1;
        meta.checkpoint_lsn = lsn;
        Ok(lsn)
    }

    /// Runs a PACS workload on one database: new patients, studies, series and
    /// images, and status changes on older studies.
    pub fn workload(&mut self, name: &str, studies: usize, images: usize) -> Result<(), Error> {
        let seed = self.state.workload_seed;
        self.state.workload_seed = seed.wrapping_add(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let now = self.now();
        let meta = self
            .state
            .db_mut(name)
            .ok_or_else(|| Error::new(ErrorKind::SqlServer, format!("no database {name}")))?;
        let mut ops = Vec::new();
        let modalities = ["CT", "MR", "CR", "US", "MG", "DX"];
        let names = [
            "O'Brien", "Müller", "Nakamura", "Dubois", "Rossi", "Kowalski", "Smith",
        ];
        let ids = &mut meta.next_ids;
        let first_study = ids[1];
        for _ in 0..studies {
            let pid = if ids[0] > 1 && rng.gen_bool(0.6) {
                rng.gen_range(1..ids[0])
            } else {
                let pid = ids[0];
                ids[0] += 1;
                let n = names[rng.gen_range(0..names.len())];
                ops.push(format!(
                    "I\tPatient\t{pid}\tMRN{pid:08}\t{n}^Pat{pid}\t{}-{:02}-{:02} 00:00:00.000\t{}",
                    rng.gen_range(1930..2020),
                    rng.gen_range(1..13),
                    rng.gen_range(1..29),
                    if rng.gen_bool(0.5) { "F" } else { "M" }
                ));
                pid
            };
            let sid = ids[1];
            ids[1] += 1;
            let m = modalities[rng.gen_range(0..modalities.len())];
            ops.push(format!(
                "I\tStudy\t{sid}\t{pid}\t1.2.826.0.1.3680043.10.1.{sid}\t{}\t{m}\t{m} study\tSCHEDULED",
                now.date()
            ));
        }
        let new_studies: Vec<i64> = (first_study..ids[1]).collect();
        let mut series_of_new = Vec::new();
        for &sid in &new_studies {
            for _ in 0..rng.gen_range(1..4) {
                let ser = ids[2];
                ids[2] += 1;
                series_of_new.push(ser);
                ops.push(format!(
                    "I\tSeries\t{ser}\t{sid}\t1.2.826.0.1.3680043.10.2.{ser}\t{}\t0",
                    modalities[rng.gen_range(0..modalities.len())]
                ));
            }
        }
        for _ in 0..images {
            let ser = if series_of_new.is_empty() {
                if ids[2] <= 1 {
                    continue;
                }
                rng.gen_range(1..ids[2])
            } else {
                series_of_new[rng.gen_range(0..series_of_new.len())]
            };
            let img = ids[3];
            ids[3] += 1;
            ops.push(format!(
                "I\tImage\t{img}\t{ser}\t1.2.826.0.1.3680043.10.3.{img}\t\\\\pacs\\store\\{ser}\\{img}.dcm\t{}",
                rng.gen_range(100_000..30_000_000)
            ));
        }
        // Older studies move on: reported, archived.
        if first_study > 1 {
            for _ in 0..(studies / 4).max(1) {
                let sid = rng.gen_range(1..first_study);
                let status = if rng.gen_bool(0.5) {
                    "REPORTED"
                } else {
                    "ARCHIVED"
                };
                ops.push(format!(
                    "U\tStudy\t{sid}\t{}\t1.2.826.0.1.3680043.10.1.{sid}\t{}\tCT\tCT study\t{status}",
                    rng.gen_range(1..ids[0].max(2)),
                    now.date()
                ));
            }
        }
        self.log_ops(name, ops)
    }

    /// Advances simulated time by `minutes` with a workload on every online database.
    pub fn advance(&mut self, minutes: i64, images: Option<usize>) -> Result<(), Error> {
        self.state.clock_offset += minutes * 60;
        let images = images.unwrap_or((minutes.max(1) * 10) as usize);
        let names: Vec<String> = self
            .state
            .databases
            .iter()
            .filter(|d| d.state == "ONLINE")
            .map(|d| d.name.clone())
            .collect();
        for n in names {
            self.workload(&n, (images / 10).max(1), images)?;
        }
        self.save()
    }

    /// The rows of a user table, split into fields.
    pub fn table_rows(&mut self, db: &str, tname: &str) -> Result<Vec<Vec<String>>, Error> {
        let t = table(tname).ok_or_else(|| Error::new(ErrorKind::SqlServer, "no such table"))?;
        let df = self.data_file(db)?;
        Ok(df
            .rows(t.obj_id)
            .map(|r| r.split('\t').map(str::to_string).collect())
            .collect())
    }
}

/// One batch of log records (one `log_ops` call): consecutive lines of the log file.
#[derive(Debug, Clone, Copy)]
struct LogBatch {
    /// Lowest LSN in the batch.
    first: i64,
    /// Highest LSN in the batch, plus one.
    end: i64,
    /// Log space the batch's records use (`op` bytes + 40 per record).
    used: u64,
    /// Where its lines start in the log file.
    offset: u64,
    /// Bytes of its lines.
    len: u64,
}

/// Where the batches of a log file are: log space in use and log backups read only
/// the part of the file they need instead of parsing every record every time.
#[derive(Debug, Clone, Default)]
struct LogIndex {
    /// The log file.
    path: String,
    batches: Vec<LogBatch>,
}

fn record_use(r: &LogRecord) -> u64 {
    r.op.len() as u64 + 40
}

impl LogIndex {
    /// The file length the index accounts for.
    fn file_len(&self) -> u64 {
        self.batches.last().map(|b| b.offset + b.len).unwrap_or(0)
    }

    /// Serializes `recs` as JSON lines into `out` (appended to the file next) and
    /// records them as one batch.
    fn append(&mut self, recs: &[LogRecord], out: &mut Vec<u8>) {
        let before = out.len();
        for r in recs {
            out.extend_from_slice(&serde_json::to_vec(r).unwrap_or_default());
            out.push(b'\n');
        }
        if recs.is_empty() {
            return;
        }
        let offset = self.file_len();
        self.batches.push(LogBatch {
            first: recs.iter().map(|r| r.lsn).min().unwrap_or(0),
            end: recs.iter().map(|r| r.lsn).max().unwrap_or(0) + 1,
            used: recs.iter().map(record_use).sum(),
            offset,
            len: (out.len() - before) as u64,
        });
    }

    /// Reads a log file once: runs of consecutive LSNs become batches.
    fn build(path: &str) -> LogIndex {
        let mut index = LogIndex {
            path: path.to_string(),
            batches: Vec::new(),
        };
        let Ok(bytes) = std::fs::read(path) else {
            return index;
        };
        let mut offset = 0u64;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let len = line.len() as u64;
            let rec = serde_json::from_slice::<LogRecord>(line.trim_ascii_end()).ok();
            match (rec, index.batches.last_mut()) {
                (Some(r), Some(b)) if r.lsn == b.end => {
                    b.end += 1;
                    b.used += record_use(&r);
                    b.len += len;
                }
                (Some(r), _) => index.batches.push(LogBatch {
                    first: r.lsn,
                    end: r.lsn + 1,
                    used: record_use(&r),
                    offset,
                    len,
                }),
                // A line that is not a record (none are written) joins the batch
                // before it, so the batches still cover the whole file.
                (None, Some(b)) => b.len += len,
                (None, None) => index.batches.push(LogBatch {
                    first: i64::MAX,
                    end: i64::MIN,
                    used: 0,
                    offset,
                    len,
                }),
            }
            offset += len;
        }
        index
    }

    /// Log space used by the records with an LSN from `trunc` on.
    fn used_from(&self, trunc: i64) -> u64 {
        let mut used = 0;
        for b in &self.batches {
            if b.first >= trunc {
                used += b.used;
            } else if b.end > trunc {
                // The truncation point falls inside this batch: count its records.
                used += self
                    .batch_records(b)
                    .iter()
                    .filter(|r| r.lsn >= trunc)
                    .map(record_use)
                    .sum::<u64>();
            }
        }
        used
    }

    fn batch_records(&self, b: &LogBatch) -> Vec<LogRecord> {
        let mut buf = vec![0u8; b.len as usize];
        let read = std::fs::File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(b.offset))?;
            f.read_exact(&mut buf)
        });
        if read.is_err() {
            return Vec::new();
        }
        buf.split(|c| *c == b'\n')
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_records(inst: &Instance, name: &str) -> Vec<LogRecord> {
        let path = &inst.state.db(name).unwrap().log_file().unwrap().physical;
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn log_index_answers_as_a_full_read_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut inst = Instance::open(dir.path(), false).unwrap();
        for _ in 0..3 {
            inst.advance(10, Some(300)).unwrap();
        }
        inst.checkpoint("PACS").unwrap();
        let recs = all_records(&inst, "PACS");
        let lsns: Vec<i64> = recs.iter().map(|r| r.lsn).collect();
        // Truncation points before, at and inside batches, and past the end.
        let mut points = vec![i64::MIN, 0, lsns[0], lsns[1], *lsns.last().unwrap() + 1];
        points.extend(lsns.iter().step_by(97).copied());
        for &t in &points {
            inst.state.db_mut("PACS").unwrap().log_truncated_lsn = t;
            let want: usize = recs
                .iter()
                .filter(|r| r.lsn >= t)
                .map(|r| r.op.len() + 40)
                .sum();
            assert_eq!(inst.log_bytes("PACS").1, want as i64, "truncated at {t}");
            let from: Vec<LogRecord> = inst
                .read_log_from("PACS", t)
                .into_iter()
                .filter(|r| r.lsn >= t)
                .collect();
            let want: Vec<LogRecord> = recs.iter().filter(|r| r.lsn >= t).cloned().collect();
            assert_eq!(from, want, "read from {t}");
        }
        // A fresh instance on the same folder builds the same index from the file.
        let built = LogIndex::build(&inst.logs["pacs"].path);
        let kept = &inst.logs["pacs"];
        assert_eq!(built.file_len(), kept.file_len());
        let used = |x: &LogIndex| x.batches.iter().map(|b| b.used).sum::<u64>();
        assert_eq!(used(&built), used(kept));
        drop(inst);
        let mut again = Instance::open(dir.path(), false).unwrap();
        again.state.db_mut("PACS").unwrap().log_truncated_lsn = lsns[lsns.len() / 2];
        let want: usize = recs
            .iter()
            .filter(|r| r.lsn >= lsns[lsns.len() / 2])
            .map(|r| r.op.len() + 40)
            .sum();
        assert_eq!(again.log_bytes("PACS").1, want as i64);
    }
}
