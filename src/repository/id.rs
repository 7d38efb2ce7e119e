//! Content and object identifiers: 32-byte hashes shown as hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte identifier: a chunk's keyed hash, a pack's hash, a snapshot's name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// A fresh random identifier, for objects named by chance rather than content.
    pub fn random() -> Self {
        Id(rand::random())
    }

    /// The plain blake3 hash of `data`.
    pub fn hash(data: &[u8]) -> Self {
        Id(*blake3::hash(data).as_bytes())
    }

    /// The first 16 bytes: what the in-memory index keeps.
    pub fn prefix(&self) -> [u8; 16] {
        let mut p = [0u8; 16];
        p.copy_from_slice(&self.0[..16]);
        p
    }

    /// Full lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits: how ids are shown to people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a string is not an id.
#[derive(Debug, thiserror::Error)]
#[error("not a 64-digit hex id: {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_string()))?;
        Ok(Id(out))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
