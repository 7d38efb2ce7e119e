//! Groups and packs: how chunks are laid out inside stored objects.
//!
//! New chunks are gathered into *groups* of about `group_size` bytes which are
//! compressed as one zstd frame (small chunks compressed one by one lose ratio) and
//! sealed. Groups are appended to a *pack* of about `pack_size` bytes; the pack ends
//! with its own sealed header listing every group and chunk, so a lost index can be
//! rebuilt from the packs alone. Byte layouts are in docs/repository-format.md.

use super::crypto::{CryptoError, MasterKey, NONCE_LEN};
use super::id::Id;

/// Last 4 bytes of every pack.
pub const PACK_MAGIC: &[u8; 4] = b"PBK1";
const HEADER_MAGIC: &[u8; 4] = b"PBPH";
const INDEX_MAGIC: &[u8; 4] = b"PBIX";
const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;
/// Bound on any decompressed group, far above the configured group size.
pub const MAX_GROUP_RAW: usize = 64 * 1024 * 1024;

/// Why stored bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Sealed part failed authentication.
    #[error("{what}: {source}")]
    Crypto {
        /// Which part.
        what: &'static str,
        /// Cause.
        source: CryptoError,
    },
    /// Layout is wrong (truncated, bad magic, counts beyond the data).
    #[error("{0}")]
    Malformed(String),
    /// A chunk's bytes do not hash to its id.
    #[error("chunk {0} does not match its id")]
    ChunkMismatch(String),
}

/// Where a group sits in its pack and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Offset in the pack.
    pub offset: u32,
    /// Sealed length in the pack.
    pub stored_len: u32,
    /// Length of the group's plaintext.
    pub raw_len: u32,
    /// Chunk ids in the group, in order.
    pub chunks: Vec<Id>,
}

/// Builds a group's plaintext in one buffer: the chunk bytes, then a table of
/// `(id, length)` per chunk, then the chunk count (u32). The table goes last so
/// chunks are written once, straight into the buffer that gets compressed.
#[derive(Debug, Default)]
pub struct GroupBuilder {
    ids: Vec<Id>,
    lens: Vec<u32>,
    data: Vec<u8>,
}

impl GroupBuilder {
    /// A builder whose buffer is `buf` (cleared), so buffers can be reused.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        GroupBuilder {
            ids: Vec::new(),
            lens: Vec::new(),
            data: buf,
        }
    }

    /// Appends a chunk.
    pub fn push(&mut self, id: Id, data: &[u8]) {
        self.ids.push(id);
        self.lens.push(data.len() as u32);
        self.data.extend_from_slice(data);
    }

    /// Bytes of chunk data so far.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Finishes into the plaintext layout and the chunk ids.
    pub fn finish(self) -> (Vec<u8>, Vec<Id>) {
        let mut out = self.data;
        out.reserve(self.ids.len() * 36 + 4);
        for (id, len) in self.ids.iter().zip(&self.lens) {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&(self.ids.len() as u32).to_le_bytes());
        (out, self.ids)
    }
}

/// The compressor for groups at `level`. At level 3 its match search is tuned for
/// database pages: a 2^12 chain and 6-byte minimum matches cost about 15% less CPU
/// than zstd's level-3 defaults and compress gen_bak pages 0.7% better (real backups
/// in ../shared/baks 0.5% worse). A 2^16 hash table would save another 10% of CPU but
/// costs 1.2% of ratio (docs/benchmarks.md).
/// Readers need nothing of this: any zstd frame decodes.
pub fn group_compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    if level == 3 {
        compressor.set_parameter(CParameter::ChainLog(12))?;
        compressor.set_parameter(CParameter::MinMatch(6))?;
    }
    Ok(compressor)
}

/// Compresses (when it helps) and seals a group's plaintext, reusing `compressor`
/// and the allocation of `buf` (a spent sealed group), so large buffers are not
/// mapped and faulted in anew for every group.
pub fn seal_group(
    key: &MasterKey,
    plain: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
    mut buf: Vec<u8>,
) -> Vec<u8> {
    let head = NONCE_LEN + 1;
    buf.clear();
    // Compressing into the spare capacity spares zeroing a group-sized buffer every
    // time; the header is then put in front with one move of the (smaller) output.
    buf.reserve(head + zstd::zstd_safe::compress_bound(plain.len()));
    match compressor.compress_to_buffer(plain, &mut buf) {
        Ok(n) if n < plain.len() => {
            buf.resize(head + n, 0);
            buf.copy_within(0..n, head);
            buf[NONCE_LEN] = COMPRESSION_ZSTD;
        }
        _ => {
            buf.clear();
            buf.resize(head, 0);
            buf[NONCE_LEN] = COMPRESSION_NONE;
            buf.extend_from_slice(plain);
        }
    }
    key.seal_in_place(buf)
}

/// Opens a sealed group and returns its plaintext (chunks, table, count).
pub fn open_group(key: &MasterKey, sealed: &[u8], raw_len: usize) -> Result<Vec<u8>, PackError> {
    let framed = key.open(sealed).map_err(|source| PackError::Crypto {
        what: "group",
        source,
    })?;
    let (&kind, body) = framed
        .split_first()
        .ok_or_else(|| PackError::Malformed("empty group".into()))?;
    let bound = raw_len.min(MAX_GROUP_RAW);
    match kind {
        COMPRESSION_NONE => Ok(body.to_vec()),
        COMPRESSION_ZSTD => DECOMPRESSOR
            .with(|d| match d.borrow_mut().as_mut() {
                Some(d) => d.decompress(body, bound),
                None => zstd::bulk::decompress(body, bound),
            })
            .map_err(|e| PackError::Malformed(format!("group does not decompress: {e}"))),
        other => Err(PackError::Malformed(format!("unknown compression {other}"))),
    }
}

thread_local! {
    /// One decompression context per thread, instead of one per group.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// The chunks of an opened group: `(id, byte range in the plaintext)`.
pub fn group_chunks(plain: &[u8]) -> Result<Vec<(Id, std::ops::Range<usize>)>, PackError> {
    let bad = |m: &str| PackError::Malformed(m.to_string());
    let count_at = plain
        .len()
        .checked_sub(4)
        .ok_or_else(|| bad("group too short"))?;
    let mut r = Cursor::new(&plain[count_at..]);
    let n = r.u32()? as usize;
    let table_len = n
        .checked_mul(36)
        .filter(|&t| t <= count_at)
        .ok_or_else(|| bad("group chunk table exceeds the group"))?;
    let table_at = count_at - table_len;
    let mut r = Cursor::new(&plain[table_at..count_at]);
    let mut out = Vec::with_capacity(n);
    let mut pos = 0usize;
    for _ in 0..n {
        let id = r.id()?;
        let len = r.u32()? as usize;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= table_at)
            .ok_or_else(|| bad("chunk runs past the group"))?;
        out.push((id, pos..end));
        pos = end;
    }
    if pos != table_at {
        return Err(bad("group holds bytes its table does not account for"));
    }
    Ok(out)
}

/// Checks that every chunk of an opened group hashes to its id.
pub fn verify_group(key: &MasterKey, plain: &[u8]) -> Result<usize, PackError> {
    let chunks = group_chunks(plain)?;
    for (id, range) in &chunks {
        if key.chunk_id(&plain[range.clone()]) != *id {
            return Err(PackError::ChunkMismatch(id.short()));
        }
    }
    Ok(chunks.len())
}

/// Encodes a list of groups (used by both pack headers and index files).
fn encode_groups(out: &mut Vec<u8>, groups: &[GroupEntry]) {
    out.extend_from_slice(&(groups.len() as u32).to_le_bytes());
    for g in groups {
        out.extend_from_slice(&g.offset.to_le_bytes());
        out.extend_from_slice(&g.stored_len.to_le_bytes());
        out.extend_from_slice(&g.raw_len.to_le_bytes());
        out.extend_from_slice(&(g.chunks.len() as u32).to_le_bytes());
        for id in &g.chunks {
            out.extend_from_slice(&id.0);
        }
    }
}

fn decode_groups(r: &mut Cursor<'_>) -> Result<Vec<GroupEntry>, PackError> {
    let n = r.u32()? as usize;
    if n.saturating_mul(16) > r.remaining() {
        return Err(PackError::Malformed("group count exceeds the data".into()));
    }
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        let offset = r.u32()?;
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        let count = r.u32()? as usize;
        if count.saturating_mul(32) > r.remaining() {
            return Err(PackError::Malformed("chunk count exceeds the data".into()));
        }
        let mut chunks = Vec::with_capacity(count);
        for _ in 0..count {
            chunks.push(r.id()?);
        }
        groups.push(GroupEntry {
            offset,
            stored_len,
            raw_len,
            chunks,
        });
    }
    Ok(groups)
}

/// Appends the sealed header and trailer that close a pack.
pub fn finish_pack(key: &MasterKey, pack: &mut Vec<u8>, groups: &[GroupEntry]) {
    let mut header = Vec::new();
    header.extend_from_slice(HEADER_MAGIC);
    encode_groups(&mut header, groups);
    let sealed = key.seal(&header);
    pack.extend_from_slice(&sealed);
    pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    pack.extend_from_slice(PACK_MAGIC);
}

/// Length of the trailer: header length (u32) and magic.
pub const TRAILER_LEN: usize = 8;

/// The sealed header's length, read from a pack's last [`TRAILER_LEN`] bytes.
pub fn header_len_from_trailer(trailer: &[u8]) -> Result<usize, PackError> {
    if trailer.len() != TRAILER_LEN || &trailer[4..] != PACK_MAGIC {
        return Err(PackError::Malformed(
            "pack trailer missing (truncated pack?)".into(),
        ));
    }
    let mut b = [0u8; 4];
    b.copy_from_slice(&trailer[..4]);
    Ok(u32::from_le_bytes(b) as usize)
}

/// Decodes a pack's sealed header.
pub fn open_pack_header(key: &MasterKey, sealed: &[u8]) -> Result<Vec<GroupEntry>, PackError> {
    let plain = key.open(sealed).map_err(|source| PackError::Crypto {
        what: "pack header",
        source,
    })?;
    let mut r = Cursor::new(&plain);
    if r.take(4)? != HEADER_MAGIC {
        return Err(PackError::Malformed("pack header magic".into()));
    }
    decode_groups(&mut r)
}

/// Reads every group listed in a whole pack's own header.
pub fn read_pack_header(key: &MasterKey, pack: &[u8]) -> Result<Vec<GroupEntry>, PackError> {
    if pack.len() < TRAILER_LEN {
        return Err(PackError::Malformed(
            "pack is shorter than its trailer".into(),
        ));
    }
    let hlen = header_len_from_trailer(&pack[pack.len() - TRAILER_LEN..])?;
    let start = pack
        .len()
        .checked_sub(TRAILER_LEN + hlen)
        .ok_or_else(|| PackError::Malformed("pack header length exceeds the pack".into()))?;
    let groups = open_pack_header(key, &pack[start..pack.len() - TRAILER_LEN])?;
    for g in &groups {
        let end = g.offset as usize + g.stored_len as usize;
        if end > start {
            return Err(PackError::Malformed("group lies outside the pack".into()));
        }
    }
    Ok(groups)
}

/// One pack's entry in an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// Pack id (blake3 of its bytes).
    pub id: Id,
    /// Pack size in bytes.
    pub size: u64,
    /// Its groups.
    pub groups: Vec<GroupEntry>,
}

/// Encodes, compresses and seals an index file.
pub fn seal_index(key: &MasterKey, packs: &[IndexedPack]) -> Vec<u8> {
    let mut plain = Vec::new();
    plain.extend_from_slice(INDEX_MAGIC);
    plain.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        plain.extend_from_slice(&p.id.0);
        plain.extend_from_slice(&p.size.to_le_bytes());
        encode_groups(&mut plain, &p.groups);
    }
    let compressed = zstd::bulk::compress(&plain, 3).unwrap_or(plain);
    key.seal(&compressed)
}

/// Opens an index file.
pub fn open_index(key: &MasterKey, sealed: &[u8]) -> Result<Vec<IndexedPack>, PackError> {
    let compressed = key.open(sealed).map_err(|source| PackError::Crypto {
        what: "index",
        source,
    })?;
    let plain = zstd::stream::decode_all(compressed.as_slice())
        .map_err(|e| PackError::Malformed(format!("index does not decompress: {e}")))?;
    let mut r = Cursor::new(&plain);
    if r.take(4)? != INDEX_MAGIC {
        return Err(PackError::Malformed("index magic".into()));
    }
    let n = r.u32()? as usize;
    if n.saturating_mul(44) > r.remaining() {
        return Err(PackError::Malformed("pack count exceeds the index".into()));
    }
    let mut packs = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.id()?;
        let size = r.u64()?;
        let groups = decode_groups(&mut r)?;
        packs.push(IndexedPack { id, size, groups });
    }
    Ok(packs)
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PackError> {
        if n > self.remaining() {
            return Err(PackError::Malformed("truncated".into()));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, PackError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, PackError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn id(&mut self) -> Result<Id, PackError> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(Id(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip() {
        let key = MasterKey::generate();
        let mut g = GroupBuilder::default();
        let a = vec![7u8; 5000];
        let b = b"hello".to_vec();
        g.push(key.chunk_id(&a), &a);
        g.push(key.chunk_id(&b), &b);
        let (plain, ids) = g.finish();
        let sealed = seal_group(&key, &plain, &mut group_compressor(3).unwrap(), Vec::new());
        let mut pack = sealed.clone();
        let groups = vec![GroupEntry {
            offset: 0,
            stored_len: sealed.len() as u32,
            raw_len: plain.len() as u32,
            chunks: ids.clone(),
        }];
        finish_pack(&key, &mut pack, &groups);
        let back = read_pack_header(&key, &pack).unwrap();
        assert_eq!(back, groups);
        let opened = open_group(&key, &pack[..sealed.len()], plain.len()).unwrap();
        assert_eq!(verify_group(&key, &opened).unwrap(), 2);
        let chunks = group_chunks(&opened).unwrap();
        assert_eq!(&opened[chunks[1].1.clone()], b"hello");
        let idx = seal_index(
            &key,
            &[IndexedPack {
                id: Id::hash(&pack),
                size: pack.len() as u64,
                groups: groups.clone(),
            }],
        );
        assert_eq!(open_index(&key, &idx).unwrap()[0].groups, groups);
        // Truncation is an error, not a panic.
        for cut in [0, 3, 8, pack.len() / 2, pack.len() - 1] {
            assert!(read_pack_header(&key, &pack[..cut]).is_err());
        }
    }
}
