//! Cutting a later version of a file along the cuts of the version before it.
//!
//! Last week's full backup of a database is mostly this week's, page for page, and
//! finding FastCDC's cut points costs more than hashing the bytes (on the benchmark
//! machine, cutting a 1 GiB file took 0.46 s of CPU and hashing it 0.19 s). So the
//! chunks of the previous version (id prefixes and lengths, from the local cut cache)
//! are tried first: when the next bytes hash to the id the previous version's next
//! chunk had, and FastCDC would cut there too ([`Gear::cuts_at`]), they are that chunk
//! without being cut. Anything else is cut as usual, and its id looked up among the
//! previous chunks to pick the thread up again after an insertion or a change.
//!
//! The chunks are exactly the ones plain cutting gives (the tests compare them on
//! changed, shifted and unrelated data); a wrong prediction costs one hash. Even a
//! mistaken cut could not lose data, only deduplication: every chunk is still named
//! by the hash of its own bytes.

use std::io::Read;

use super::chunker::{cut_in_background, Cut, Gear};
use super::format::ChunkerParams;
use super::id::Id;

/// After this many chunks in a row that match nothing of the previous version, the
/// cutter stops hashing every chunk to look for the thread (the consumer hashes them
/// anyway) and only probes every [`PROBE_EVERY`]th: a file that has nothing in
/// common with its predecessor then costs about what plain cutting costs.
const GIVE_UP_AFTER: u32 = 64;
/// Once given up, one chunk in this many cut is still hashed to look for the thread.
const PROBE_EVERY: u64 = 16;

/// The first 8 bytes of a chunk id: what the cut cache keeps of it. A prediction is
/// only a guess to check, so a collision of prefixes cannot store wrong data.
pub fn id_prefix(id: &Id) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

/// The chunks of a file's previous version, in order.
#[derive(Debug, Clone, Default)]
pub struct PreviousCuts {
    /// (id prefix, length) of each chunk.
    chunks: Vec<(u64, u32)>,
    /// (id prefix, position in `chunks`), sorted: to find where a chunk was. With
    /// `chunks`, 32 bytes a chunk.
    by_prefix: Vec<(u64, u32)>,
    /// How many leading chunks were cut with at least `max_size` bytes following;
    /// the last few were cut by the end of the file and predict nothing.
    clean: usize,
}

impl PreviousCuts {
    /// `chunks` as (id prefix, length) in file order, cut with `max_size`.
    pub fn new(chunks: Vec<(u64, u32)>, max_size: u32) -> PreviousCuts {
        let total: u64 = chunks.iter().map(|c| u64::from(c.1)).sum();
        let mut offset = 0u64;
        let mut clean = 0;
        for c in &chunks {
            // A length no cut can have (a damaged cache) ends the predictions too.
            if offset + u64::from(max_size) > total || c.1 == 0 || c.1 > max_size {
                break;
            }
            clean += 1;
            offset += u64::from(c.1);
        }
        let mut by_prefix: Vec<(u64, u32)> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.0, i as u32))
            .collect();
        by_prefix.sort_unstable();
        PreviousCuts {
            chunks,
            by_prefix,
            clean,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Where the chunk with this id prefix first was.
    fn position(&self, prefix: u64) -> Option<usize> {
        let i = self.by_prefix.partition_point(|e| e.0 < prefix);
        match self.by_prefix.get(i) {
            Some(&(p, pos)) if p == prefix => Some(pos as usize),
            _ => None,
        }
    }

    /// The chunk at `i`, if it may predict a cut.
    fn predicts(&self, i: usize) -> Option<(u64, usize)> {
        (i < self.clean).then(|| (self.chunks[i].0, self.chunks[i].1 as usize))
    }
}

/// How the chunks of a file were found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PredictionStats {
    /// Chunks taken from the previous version without cutting.
    pub predicted: u64,
    /// Chunks cut.
    pub cut: u64,
}

/// Cuts what `reader` yields like [`super::chunker::chunk_stream`] with
/// `Cutting::Background`, taking the chunks of `previous` where they still fit.
/// `on_chunk` gets each chunk's id when the cutting thread had to compute it (with
/// `chunk_id`) and `None` otherwise.
pub fn chunk_stream_predicted<R: Read + Send, E: From<std::io::Error>>(
    reader: R,
    params: &ChunkerParams,
    seed: u64,
    previous: &PreviousCuts,
    chunk_id: impl Fn(&[u8]) -> Id + Send,
    mut on_chunk: impl FnMut(&[u8], Option<Id>) -> Result<(), E>,
) -> Result<PredictionStats, E> {
    let gear = Gear::new(params, seed);
    let mut stats = PredictionStats::default();
    let mut next = Some(0usize);
    let mut misses = 0u32;
    let stats_out = &mut stats;
    let cut = move |c: &mut Cut,
                    r: &mut R,
                    buf: &mut [u8],
                    cuts: &mut Vec<(usize, usize, Option<Id>)>| {
        c.fill(r, buf)?;
        let mut at = 0;
        while c.decidable(&gear, at) {
            let rest = &buf[at..c.filled];
            let mut hashed = None;
            // A previous chunk predicts only with `max_size` bytes to decide on, as
            // it had.
            if let Some((prefix, len)) = next
                .and_then(|i| previous.predicts(i))
                .filter(|_| rest.len() >= gear.max)
            {
                let id = chunk_id(&rest[..len]);
                if id_prefix(&id) == prefix && gear.cuts_at(rest, len) {
                    cuts.push((at, len, Some(id)));
                    at += len;
                    next = next.map(|i| i + 1);
                    stats_out.predicted += 1;
                    misses = 0;
                    continue;
                }
                hashed = Some((len, id));
            }
            let len = gear.cut(rest);
            stats_out.cut += 1;
            let id = match hashed {
                Some((l, id)) if l == len => Some(id),
                _ if misses < GIVE_UP_AFTER || stats_out.cut % PROBE_EVERY == 0 => {
                    Some(chunk_id(&rest[..len]))
                }
                _ => None,
            };
            next = id
                .and_then(|id| previous.position(id_prefix(&id)))
                .map(|p| p + 1);
            misses = if next.is_some() { 0 } else { misses + 1 };
            cuts.push((at, len, id));
            at += len;
        }
        Ok(at)
    };
    let consume = |data: &[u8], cuts: &[(usize, usize, Option<Id>)]| {
        for &(at, len, id) in cuts {
            on_chunk(&data[at..at + len], id)?;
        }
        Ok::<(), E>(())
    };
    cut_in_background(reader, params, cut, consume)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::super::chunker::{chunk_lengths, pseudo_random};
    use super::*;

    fn id_of(data: &[u8]) -> Id {
        Id::hash(data)
    }

    fn cuts_of(data: &[u8], p: &ChunkerParams, seed: u64) -> PreviousCuts {
        let mut at = 0;
        let chunks = chunk_lengths(data, p, seed)
            .into_iter()
            .map(|len| {
                let c = (id_prefix(&id_of(&data[at..at + len])), len as u32);
                at += len;
                c
            })
            .collect();
        PreviousCuts::new(chunks, p.max_size)
    }

    fn predicted(
        data: &[u8],
        p: &ChunkerParams,
        seed: u64,
        prev: &PreviousCuts,
    ) -> (Vec<usize>, PredictionStats) {
        let mut lens = Vec::new();
        let mut bytes = Vec::new();
        let stats =
            chunk_stream_predicted::<_, std::io::Error>(data, p, seed, prev, id_of, |c, id| {
                if let Some(id) = id {
                    assert_eq!(id, id_of(c), "an id handed on is the chunk's");
                }
                lens.push(c.len());
                bytes.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
        assert!(bytes == data, "the chunks are not the stream");
        (lens, stats)
    }

    #[test]
    fn predicted_cuts_are_the_plain_cuts() {
        let p = ChunkerParams::default();
        let seed = 11;
        let old = pseudo_random(24 * 1024 * 1024 + 777, 3);
        let prev = cuts_of(&old, &p, seed);

        // Unchanged: every chunk but the last few (cut by the end) is predicted.
        let (lens, stats) = predicted(&old, &p, seed, &prev);
        assert_eq!(lens, chunk_lengths(&old, &p, seed));
        assert!(stats.cut <= 8, "{stats:?}");

        // Pages overwritten, a stretch inserted, one deleted, a run of zeros, a
        // byte changed right after a cut (the byte that decided it), and growth.
        let mut new = old.clone();
        for page in [100usize, 1000, 1001, 2000] {
            new[page * 8192..page * 8192 + 8192].copy_from_slice(&pseudo_random(8192, page as u64));
        }
        new.splice(5_000_000..5_000_000, pseudo_random(65_536, 9));
        new.drain(9_000_000..9_100_000);
        new[12_000_000..12_400_000].fill(0);
        let first_cut = chunk_lengths(&old, &p, seed)[..40].iter().sum::<usize>();
        new[first_cut] ^= 0x5a;
        new.extend_from_slice(&pseudo_random(3 * 1024 * 1024, 5));
        let (lens, stats) = predicted(&new, &p, seed, &prev);
        assert_eq!(lens, chunk_lengths(&new, &p, seed));
        // The 3 MiB appended are about 100 chunks that must be cut; the changes
        // inside only a few each.
        assert!(
            stats.predicted > 4 * stats.cut,
            "most chunks are predicted: {stats:?}"
        );

        // Unrelated data: still the plain cuts, nothing predicted.
        let other = pseudo_random(6 * 1024 * 1024, 77);
        let (lens, stats) = predicted(&other, &p, seed, &prev);
        assert_eq!(lens, chunk_lengths(&other, &p, seed));
        assert_eq!(stats.predicted, 0);

        // A shorter version, and an empty one.
        let short = &old[..old.len() / 3];
        assert_eq!(
            predicted(short, &p, seed, &prev).0,
            chunk_lengths(short, &p, seed)
        );
        assert!(predicted(&[], &p, seed, &prev).0.is_empty());
    }

    #[test]
    fn a_changed_byte_after_a_cut_moves_the_cut() {
        // The byte after a chunk decides its cut: the same chunk bytes followed by
        // another byte must not be taken as the same chunk when FastCDC would not
        // cut there.
        let p = ChunkerParams::default();
        let seed = 5;
        let old = pseudo_random(4 * 1024 * 1024, 21);
        let prev = cuts_of(&old, &p, seed);
        let plain = chunk_lengths(&old, &p, seed);
        let mut moved = 0;
        for k in 0..plain.len().min(60) {
            let at = plain[..=k].iter().sum::<usize>();
            let mut new = old.clone();
            for v in 0..=255u8 {
                new[at] = v;
                let want = chunk_lengths(&new, &p, seed);
                if want[k] != plain[k] {
                    assert_eq!(predicted(&new, &p, seed, &prev).0, want);
                    moved += 1;
                    break;
                }
            }
        }
        assert!(
            moved > 0,
            "no byte after a cut ever moved it: the test tests nothing"
        );
    }

    #[test]
    fn impossible_lengths_from_a_damaged_cache_end_the_predictions() {
        let p = ChunkerParams::default();
        let seed = 4;
        let data = pseudo_random(6 * 1024 * 1024, 12);
        let mut at = 0;
        let mut chunks: Vec<(u64, u32)> = chunk_lengths(&data, &p, seed)
            .into_iter()
            .map(|len| {
                let c = (id_prefix(&id_of(&data[at..at + len])), len as u32);
                at += len;
                c
            })
            .collect();
        chunks[30].1 = u32::MAX;
        chunks[10].1 = 0;
        let prev = PreviousCuts::new(chunks, p.max_size);
        let (lens, stats) = predicted(&data, &p, seed, &prev);
        assert_eq!(lens, chunk_lengths(&data, &p, seed));
        assert!(stats.predicted <= 10, "{stats:?}");
    }

    #[test]
    fn zero_runs_and_max_size_chunks_predict() {
        let p = ChunkerParams::default();
        let seed = 2;
        let mut old = pseudo_random(2 * 1024 * 1024, 8);
        old.extend(std::iter::repeat_n(0u8, 3 * 1024 * 1024));
        old.extend(pseudo_random(2 * 1024 * 1024, 9));
        let prev = cuts_of(&old, &p, seed);
        let (lens, stats) = predicted(&old, &p, seed, &prev);
        assert_eq!(lens, chunk_lengths(&old, &p, seed));
        assert!(lens.contains(&(p.max_size as usize)));
        assert!(stats.cut <= 8, "{stats:?}");
    }
}
