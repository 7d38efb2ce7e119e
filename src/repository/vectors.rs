//! Test vectors for docs/repository-format.md: if one of these changes, the format
//! changed and every existing repository would be misread.

use super::chunker::chunk_lengths;
use super::crypto::{open_with, MasterKey};
use super::format::ChunkerParams;
use super::pack::{group_chunks, GroupBuilder};

/// The documented test input: xorshift64 from seed 1, little-endian words.
fn vector_input(n: usize) -> Vec<u8> {
    let mut s: u64 = 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn key_from_json() -> MasterKey {
    // data_key = 00..1f, id_key = 20..3f, chunker_seed = 42
    let data: Vec<u8> = (0u8..32).collect();
    let id: Vec<u8> = (32u8..64).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let json = format!(
        r#"{{"data_key":"{}","id_key":"{}","chunker_seed":42}}"#,
        b64.encode(&data),
        b64.encode(&id)
    );
    serde_json::from_str(&json).unwrap()
}

#[test]
fn chunker_cut_points_are_pinned() {
    let data = vector_input(1 << 20);
    let p = ChunkerParams::default();
    let cuts = chunk_lengths(&data, &p, 42);
    assert_eq!(cuts.len(), CHUNKS_SEED_42.len(), "{cuts:?}");
    assert_eq!(cuts, CHUNKS_SEED_42);
    assert_eq!(chunk_lengths(&data, &p, 0)[..4], CHUNKS_SEED_0_FIRST4);
}

#[test]
fn chunk_ids_are_keyed_blake3() {
    let k = key_from_json();
    assert_eq!(k.chunk_id(b"PACS").to_hex(), CHUNK_ID_PACS);
}

#[test]
fn sealed_objects_open_with_the_documented_layout() {
    let data_key: [u8; 32] = core::array::from_fn(|i| i as u8);
    let sealed = hex::decode(SEALED_HELLO).unwrap();
    assert_eq!(open_with(&data_key, &sealed).unwrap(), b"hello");
}

#[test]
fn group_layout_is_data_then_table_then_count() {
    let k = key_from_json();
    let mut g = GroupBuilder::default();
    g.push(k.chunk_id(b"ab"), b"ab");
    g.push(k.chunk_id(b"c"), b"c");
    let (plain, _) = g.finish();
    assert_eq!(plain.len(), 3 + 2 * 36 + 4);
    assert_eq!(&plain[..3], b"abc");
    assert_eq!(&plain[plain.len() - 4..], &2u32.to_le_bytes());
    assert_eq!(group_chunks(&plain).unwrap()[1].1, 2..3);
}

const CHUNKS_SEED_42: &[usize] = &[
    37299, 64449, 58676, 34690, 29582, 13986, 58108, 53108, 48931, 16471, 34736, 43405, 60525,
    32872, 34587, 17704, 33020, 33874, 33414, 66394, 60743, 10010, 43140, 48471, 80381,
];
const CHUNKS_SEED_0_FIRST4: [usize; 4] = [37372, 33478, 37046, 54539];
const CHUNK_ID_PACS: &str = "742123f6b8d936a08711d729c18c8874651610d4d53c9842b562271ce1aa5f8c";
const SEALED_HELLO: &str =
    "6e539f5ea16d207815698de0848acbf5bf2044d9cd698f5b02cfcb02905d586d137a8f237a3e4f7e8f4c6f2333";
