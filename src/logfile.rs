//! The daemon's log file: appended to, rotated at a size cap (`pacsbak.log.1` ...
//! `.N`, the oldest removed), so that an unattended service never fills its disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// A log file rotated at `max_bytes`, keeping `keep` old files.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    state: Mutex<(File, u64)>,
}

impl RotatingFile {
    /// Opens (creating its folder) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(4096),
            keep,
            state: Mutex::new((file, size)),
        })
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Shifts `.1`..`.N-1` up one, the current file to `.1`, and starts a new one.
    fn rotate(&self, state: &mut (File, u64)) -> std::io::Result<()> {
        state.0.flush()?;
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.numbered(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.numbered(n);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.numbered(1))?;
        }
        *state = (
            append(&self.path).map_err(|e| std::io::Error::other(e.to_string()))?,
            0,
        );
        Ok(())
    }
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

impl Write for &RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 > 0 && state.1 + buf.len() as u64 > self.max_bytes {
            if let Err(e) = self.rotate(&mut state) {
                // A log shipper holding the file open (Windows) must not silence the
                // log: keep appending, and try again after another `max_bytes`.
                eprintln!("pacsbak: cannot rotate {}: {e}", self.path.display());
                state.1 = 0;
            }
        }
        state.0.write_all(buf)?;
        state.1 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_only_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/pacsbak.log");
        let f = RotatingFile::open(&path, 4096, 2).unwrap();
        let line = [b'x'; 1000];
        for _ in 0..20 {
            (&f).write_all(&line).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 4096 && size(&path) > 0);
        assert_eq!(size(&f.numbered(1)), 4000);
        assert_eq!(size(&f.numbered(2)), 4000);
        assert!(!f.numbered(3).exists(), "only two old files are kept");
    }
}
