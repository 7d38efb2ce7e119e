//! The local cut cache: for each series of backups (one database's fulls, one set of
//! folders), where the chunks of its newest stored version were cut, so the next
//! version can be cut along them (see `prediction`).
//!
//! It lives on the machine that runs pacsbak, not in the repository: it is an
//! accelerator, and losing it, or a stale or damaged file, costs one backup's
//! speed and nothing else (every predicted chunk is checked by hashing). A file per
//! repository and series, named by hashes so no database or path name appears:
//! `<cache dir>/cuts/<repository id>/<blake3 of the series name, 32 hex>`.
//! It holds 8-byte prefixes of keyed chunk ids and chunk lengths, nothing of the
//! data. Format: `PACSBAK-CUTS 1\n`, then per file: u32 path length, path (UTF-8),
//! u32 chunk count, per chunk u64 id prefix and u32 length (little-endian); then
//! the blake3 of everything before it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tracing::debug;

use super::id::Id;

const MAGIC: &[u8] = b"PACSBAK-CUTS 1\n";

/// Files larger than this keep no cuts (a 32 KiB-average chunking of 256 GiB):
/// loading them would cost more memory (24 bytes a chunk) than they save time.
const MAX_CHUNKS: u32 = 8 * 1024 * 1024;

/// The cuts of one version of a series: per file path, (id prefix, length) of each
/// chunk in order.
pub type SeriesCuts = BTreeMap<String, Vec<(u64, u32)>>;

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
    /// The file for `series` in the repository `repo_id`, if there is a cache folder.
    pub fn open(repo_id: &Id, series: &str) -> Option<CutCache> {
        let name = blake3::hash(series.as_bytes()).to_hex();
        Some(CutCache {
            path: cache_dir()?
                .join("cuts")
                .join(repo_id.to_hex())
                .join(&name.as_str()[..32]),
        })
    }

    /// The cuts last saved; empty when there are none or the file cannot be used.
    pub fn load(&self) -> SeriesCuts {
        match std::fs::read(&self.path) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|| {
                debug!(path = %self.path.display(), "cut cache unreadable; cutting every file");
                SeriesCuts::new()
            }),
            Err(_) => SeriesCuts::new(),
        }
    }

    /// Replaces the saved cuts (written aside, then renamed over the old file).
    pub fn save(&self, cuts: &SeriesCuts) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(&self.path);
        std::fs::create_dir_all(dir)?;
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, encode(cuts))?;
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

fn encode(cuts: &SeriesCuts) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (path, chunks) in cuts.iter().filter(|c| c.1.len() <= MAX_CHUNKS as usize) {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
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
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        rest = tail;
        Some(head)
    };
    let mut out = SeriesCuts::new();
    while let Some(len) = take(4) {
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let path = String::from_utf8(take(len)?.to_vec()).ok()?;
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
        if count > MAX_CHUNKS {
            return None;
        }
        let mut chunks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let c = take(12)?;
            chunks.push((
                u64::from_le_bytes(c[..8].try_into().ok()?),
                u32::from_le_bytes(c[8..].try_into().ok()?),
            ));
        }
        out.insert(path, chunks);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_round_trip_and_damage_is_ignored() {
        let mut cuts = SeriesCuts::new();
        cuts.insert("a/b.bak".into(), vec![(1, 8192), (u64::MAX, 131072)]);
        cuts.insert("c".into(), vec![]);
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
        cuts.insert("x".into(), vec![(7, 9000)]);
        cache.save(&cuts).unwrap();
        assert_eq!(cache.load(), cuts);
        std::fs::write(dir.path().join("r").join("s"), b"junk").unwrap();
        assert!(cache.load().is_empty());
    }
}
