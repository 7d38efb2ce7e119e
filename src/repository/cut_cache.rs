//! The local cut cache: for each series of backups (one database's fulls, one set of
//! folders), where the chunks of its last version cut were, so the next version can
//! be cut along them (see `prediction`).
//!
//! It lives on the machine that runs pacsbak, not in the repository: it is an
//! accelerator, and losing it, or a stale or damaged file, costs one backup's
//! speed and nothing else (every predicted chunk is checked by hashing). A file per
//! repository and series: `<cache dir>/cuts/<repository id>/<name>`, where the name
//! and the key of each file's record are hashes keyed with the repository's id key
//! (of the series name and of the file's path), so no database, file or folder
//! name can be read or confirmed from the cache without the repository key. It
//! holds 8-byte prefixes of keyed chunk ids and chunk lengths, nothing of the data.
//! Format: `PACSBAK-CUTS 2\n`, then per file: 16-byte path key, u32 chunk count,
//! per chunk u64 id prefix and u32 length (little-endian); then the blake3 of
//! everything before it. Folders are created 0700 and files 0600 on Unix.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tracing::debug;

use super::id::Id;

const MAGIC: &[u8] = b"PACSBAK-CUTS 2\n";

/// Files larger than this keep no cuts (a 32 KiB-average chunking of 256 GiB):
/// loading them would cost more memory (32 bytes a chunk) than they save time.
const MAX_CHUNKS: u32 = 8 * 1024 * 1024;
/// A cache file larger than the largest it can be written is not read.
const MAX_FILE: u64 = 512 * 1024 * 1024;

/// The cuts of one version of a series: per file (by path key), (id prefix, length)
/// of each chunk in order.
pub type SeriesCuts = BTreeMap<[u8; 16], Vec<(u64, u32)>>;

/// Where the cut caches live: `PACSBAK_CACHE_DIR`, else the platform's cache
/// folder (`$XDG_CACHE_HOME` or `~/.cache` on Unix, `%LOCALAPPDATA%` on Windows),
/// under `pacsbak`. `None` when there is none: backups then cut every file.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("PACSBAK_CACHE_DIR") {
        return Some(d);
    }
    let base = if cfg!(windows) {
        env("LOCALAPPDATA")
    } else {
        env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("pacsbak"))
}

/// The cut cache file of one series in one repository.
#[derive(Debug, Clone)]
pub struct CutCache {
    path: PathBuf,
}

impl CutCache {
    /// The file of the series whose keyed name is `series_key` in the repository
    /// `repo_id`, if there is a cache folder.
    pub fn open(repo_id: &Id, series_key: &Id) -> Option<CutCache> {
        Some(CutCache {
            path: cache_dir()?
                .join("cuts")
                .join(repo_id.to_hex())
                .join(&series_key.to_hex()[..32]),
        })
    }

    /// The cuts last saved; empty when there are none or the file cannot be used.
    pub fn load(&self) -> SeriesCuts {
        let fits = std::fs::metadata(&self.path).is_ok_and(|m| m.len() <= MAX_FILE);
        match std::fs::read(&self.path) {
            Ok(bytes) if fits => decode(&bytes).unwrap_or_else(|| {
                debug!(path = %self.path.display(), "cut cache unreadable; cutting every file");
                SeriesCuts::new()
            }),
            _ => SeriesCuts::new(),
        }
    }

    /// Replaces the saved cuts (written aside and flushed, then renamed over the old
    /// file).
    pub fn save(&self, cuts: &SeriesCuts) -> std::io::Result<()> {
        use std::io::Write;
        let dir = self.path.parent().unwrap_or(&self.path);
        create_private_dir(dir)?;
        let tmp = self
            .path
            .with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
        let written = (|| {
            let mut f = create_private_file(&tmp)?;
            f.write_all(&encode(cuts))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn encode(cuts: &SeriesCuts) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (key, chunks) in cuts.iter().filter(|c| c.1.len() <= MAX_CHUNKS as usize) {
        out.extend_from_slice(key);
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for &(prefix, len) in chunks {
            out.extend_from_slice(&prefix.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<SeriesCuts> {
    let body = bytes.get(..bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != &bytes[body.len()..] {
        return None;
    }
    let mut rest = body.strip_prefix(MAGIC)?;
    let mut out = SeriesCuts::new();
    while !rest.is_empty() {
        let key: [u8; 16] = take(&mut rest, 16)?.try_into().ok()?;
        let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        if count > MAX_CHUNKS as usize || count > rest.len() / 12 {
            return None;
        }
        let chunks = take(&mut rest, count * 12)?
            .chunks_exact(12)
            .map(|c| {
                let (prefix, len) = c.split_at(8);
                let mut p = [0u8; 8];
                p.copy_from_slice(prefix);
                let mut l = [0u8; 4];
                l.copy_from_slice(len);
                (u64::from_le_bytes(p), u32::from_le_bytes(l))
            })
            .collect();
        out.insert(key, chunks);
    }
    Some(out)
}

/// The next `n` bytes of `rest`, if there are that many.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_round_trip_and_damage_is_ignored() {
        let mut cuts = SeriesCuts::new();
        cuts.insert([1; 16], vec![(1, 8192), (u64::MAX, 131072)]);
        cuts.insert([2; 16], vec![]);
        let bytes = encode(&cuts);
        assert_eq!(decode(&bytes), Some(cuts));
        for i in [0, MAGIC.len() + 3, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(decode(&bad), None, "byte {i}");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 5]), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn a_cache_file_is_saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CutCache {
            path: dir.path().join("r").join("s"),
        };
        assert!(cache.load().is_empty());
        let mut cuts = SeriesCuts::new();
        cuts.insert([3; 16], vec![(7, 9000)]);
        cache.save(&cuts).unwrap();
        assert_eq!(cache.load(), cuts);
        std::fs::write(dir.path().join("r").join("s"), b"junk").unwrap();
        assert!(cache.load().is_empty());
    }
}
