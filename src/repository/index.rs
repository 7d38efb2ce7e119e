//! The in-memory index: which group holds a chunk, and where that group is.
//!
//! Built to keep a 1 TiB repository under 1 GiB of memory: per chunk only a 16-byte
//! prefix of its keyed id and a 4-byte group number are kept, in one sorted array
//! (20 bytes a chunk; 1 TiB of unique data at 32 KiB average chunks is about 34
//! million chunks, 640 MiB). Groups (about 4 MiB of chunks each) carry the pack and
//! byte range. The full 32-byte ids live in the groups' own chunk tables, which a
//! restore checks, so a prefix collision could never return wrong bytes silently.

use std::collections::HashMap;

use super::id::Id;
use super::pack::IndexedPack;

/// Where a group is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLoc {
    /// Position of the pack in [`Index::packs`].
    pub pack: u32,
    /// Offset in the pack.
    pub offset: u32,
    /// Sealed length.
    pub stored_len: u32,
    /// Plaintext length.
    pub raw_len: u32,
}

/// A pack known to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    /// Pack id.
    pub id: Id,
    /// Size in bytes.
    pub size: u64,
}

/// Chunk → group → pack lookups for a whole repository.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_pos: HashMap<Id, u32>,
    groups: Vec<GroupLoc>,
    sorted: Vec<([u8; 16], u32)>,
    recent: HashMap<[u8; 16], u32>,
}

impl Index {
    /// The index of `packs` (as index files list them; duplicates are ignored).
    pub fn of_packs<'a>(packs: impl IntoIterator<Item = &'a IndexedPack>) -> Index {
        let mut index = Index::default();
        for p in packs {
            index.add_pack(p);
        }
        index.compact();
        index
    }

    /// Adds a pack's groups and chunks; a pack already known is ignored.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        if self.pack_pos.contains_key(&pack.id) {
            return;
        }
        let pack_no = self.packs.len() as u32;
        self.packs.push(PackInfo {
            id: pack.id,
            size: pack.size,
        });
        self.pack_pos.insert(pack.id, pack_no);
        for g in &pack.groups {
            let group_no = self.groups.len() as u32;
            self.groups.push(GroupLoc {
                pack: pack_no,
                offset: g.offset,
                stored_len: g.stored_len,
                raw_len: g.raw_len,
            });
            for id in &g.chunks {
                self.recent.entry(id.prefix()).or_insert(group_no);
            }
        }
    }

    /// Moves recently added chunks into the sorted array (call after bulk loads).
    pub fn compact(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        self.sorted.extend(self.recent.drain());
        self.sorted.sort_unstable_by_key(|e| e.0);
        self.sorted.dedup_by(|a, b| a.0 == b.0);
        self.sorted.shrink_to_fit();
    }

    /// The group holding chunk `id`.
    pub fn lookup(&self, id: &Id) -> Option<GroupLoc> {
        let p = id.prefix();
        let group = match self.sorted.binary_search_by(|e| e.0.cmp(&p)) {
            Ok(i) => self.sorted[i].1,
            Err(_) => *self.recent.get(&p)?,
        };
        self.groups.get(group as usize).copied()
    }

    /// Whether chunk `id` is stored.
    pub fn contains(&self, id: &Id) -> bool {
        self.lookup(id).is_some()
    }

    /// Whether pack `id` is indexed.
    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// All packs.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// Position of pack `id` in [`Index::packs`].
    pub fn pack_position(&self, id: &Id) -> Option<u32> {
        self.pack_pos.get(id).copied()
    }

    /// Pack at position `n`.
    pub fn pack(&self, n: u32) -> Option<&PackInfo> {
        self.packs.get(n as usize)
    }

    /// Number of chunks indexed.
    pub fn chunk_count(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Approximate heap bytes held, for the memory figures in the docs.
    pub fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * 20
            + self.recent.capacity() * 24
            + self.groups.capacity() * std::mem::size_of::<GroupLoc>()
            + self.packs.capacity() * std::mem::size_of::<PackInfo>()
            + self.pack_pos.capacity() * 40
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::pack::GroupEntry;

    #[test]
    fn lookup_before_and_after_compact() {
        let mut idx = Index::default();
        let ids: Vec<Id> = (0..100u8).map(|i| Id::hash(&[i])).collect();
        idx.add_pack(&IndexedPack {
            id: Id::hash(b"p"),
            size: 10,
            groups: vec![GroupEntry {
                offset: 5,
                stored_len: 6,
                raw_len: 7,
                chunks: ids.clone(),
            }],
        });
        assert!(idx.contains(&ids[3]));
        idx.compact();
        assert_eq!(idx.lookup(&ids[99]).map(|g| g.offset), Some(5));
        assert!(!idx.contains(&Id::hash(b"absent")));
        assert_eq!(idx.chunk_count(), 100);
    }
}
