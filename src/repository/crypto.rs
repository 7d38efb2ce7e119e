//! Encryption of everything the repository stores, and the keyed chunk hash.
//!
//! Every object (pack group, pack header, index, snapshot, config) is sealed with
//! XChaCha20-Poly1305 under the repository's data key: `nonce (24) || ciphertext ||
//! tag (16)`. Random 192-bit nonces make nonce reuse a non-issue without counters
//! shared between concurrent writers. Chunk ids are blake3 keyed with a second,
//! independent key, so the ids stored offsite do not reveal which known files
//! (an installer, a DICOM sample) the repository holds.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::id::Id;

/// Bytes added to every sealed object.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;
/// Room [`MasterKey::seal_in_place`] needs at the front of its buffer.
pub const NONCE_LEN: usize = 24;

/// Why a sealed object could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Too short to hold a nonce and a tag.
    #[error("sealed object is truncated ({0} bytes)")]
    Truncated(usize),
    /// The authentication tag does not match: wrong key, corruption or tampering.
    #[error("authentication failed (wrong key, or the object was altered)")]
    Authentication,
}

/// The repository's secret keys; wrapped by each passphrase's key slot.
#[derive(Clone, Serialize, Deserialize)]
pub struct MasterKey {
    #[serde(with = "b64")]
    data_key: [u8; 32],
    #[serde(with = "b64")]
    id_key: [u8; 32],
    /// Seed of the chunker's gear table, so cut points are keyed too.
    chunker_seed: u64,
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.data_key.zeroize();
        self.id_key.zeroize();
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// New random keys for a new repository.
    pub fn generate() -> Self {
        MasterKey {
            data_key: rand::random(),
            id_key: rand::random(),
            chunker_seed: rand::random(),
        }
    }

    /// The chunker seed derived from the key material.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// The keyed id of a chunk's plaintext.
    pub fn chunk_id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// Encrypts `plain` under the data key.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        seal_with(&self.data_key, plain)
    }

    /// Seals `buf[NONCE_LEN..]` without copying: the first [`NONCE_LEN`] bytes are
    /// overwritten with the nonce and the tag is appended. Same layout as [`seal`].
    ///
    /// [`seal`]: MasterKey::seal
    pub fn seal_in_place(&self, mut buf: Vec<u8>) -> Vec<u8> {
        if buf.len() < NONCE_LEN {
            return self.seal(&[]);
        }
        let cipher = XChaCha20Poly1305::new((&self.data_key).into());
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        buf[..NONCE_LEN].copy_from_slice(&nonce_bytes);
        match cipher.encrypt_in_place_detached(
            XNonce::from_slice(&nonce_bytes),
            b"",
            &mut buf[NONCE_LEN..],
        ) {
            Ok(tag) => buf.extend_from_slice(&tag),
            Err(_) => buf.clear(),
        }
        buf
    }

    /// Decrypts an object sealed by [`MasterKey::seal`].
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.data_key, sealed)
    }
}

/// Seals `plain` under an arbitrary 32-byte key (used for key slots too).
pub fn seal_with(key: &[u8; 32], plain: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = XNonce::from_slice(&nonce_bytes);
    let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce_bytes);
    // Encryption into a Vec cannot fail for in-range lengths; treat failure as empty.
    match cipher.encrypt(nonce, plain) {
        Ok(ct) => out.extend_from_slice(&ct),
        Err(_) => out.clear(),
    }
    out
}

/// Opens an object sealed by [`seal_with`].
pub fn open_with(key: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Truncated(sealed.len()));
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(XNonce::from_slice(nonce), ct)
        .map_err(|_| CryptoError::Authentication)
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = STANDARD.decode(s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("key must be 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"patient data");
        assert_eq!(k.open(&sealed).unwrap(), b"patient data");
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(matches!(k.open(&bad), Err(CryptoError::Authentication)));
        let other = MasterKey::generate();
        assert!(other.open(&sealed).is_err());
        assert!(matches!(
            k.open(&sealed[..10]),
            Err(CryptoError::Truncated(10))
        ));
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), Id::hash(b"x"));
    }
}
