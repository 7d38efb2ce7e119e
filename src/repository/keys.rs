//! Key slots: the master key wrapped by a key derived from each passphrase.
//!
//! A key file `keys/<id>` is plain JSON holding Argon2id parameters, a salt and the
//! sealed master key. Opening tries every slot; a wrong passphrase fails all of
//! them before anything is written. Several slots let a second engineer hold their
//! own passphrase, or a passphrase be changed, without re-encrypting data.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::crypto::{open_with, seal_with, MasterKey};
use crate::error::{Error, ErrorKind, Result};

/// Argon2id cost: 64 MiB, 3 passes (about a quarter of a second on one server core,
/// a tenth on two with four lanes).
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_PASSES: u32 = 3;
/// Argon2 lanes of new key slots: RFC 9106's second recommended setting (64 MiB, 3
/// passes, 4 lanes), computed on as many cores as there are (slots made with 1 lane
/// by earlier versions open as before).
const KDF_LANES: u32 = 4;

/// One passphrase's slot, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// When the slot was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Host that added it, for `repo key list`.
    pub hostname: String,
    /// Free-text label given when adding, such as the engineer's name.
    #[serde(default)]
    pub label: String,
    /// Always "argon2id".
    pub kdf: String,
    /// Argon2 memory in KiB.
    pub memory_kib: u32,
    /// Argon2 passes.
    pub passes: u32,
    /// Argon2 lanes.
    pub lanes: u32,
    /// Base64 salt.
    pub salt: String,
    /// Base64 sealed master key (JSON inside).
    pub sealed_master: String,
}

impl KeyFile {
    /// Wraps `master` under `passphrase` in a new slot.
    pub fn create(master: &MasterKey, passphrase: &str, label: &str) -> Result<Self> {
        let salt: [u8; 16] = rand::random();
        let kek = derive(passphrase, &salt, KDF_MEMORY_KIB, KDF_PASSES, KDF_LANES)?;
        let plain = Zeroizing::new(serde_json::to_vec(master).map_err(internal)?);
        Ok(KeyFile {
            created: OffsetDateTime::now_utc(),
            hostname: crate::repository::hostname(),
            label: label.to_string(),
            kdf: "argon2id".into(),
            memory_kib: KDF_MEMORY_KIB,
            passes: KDF_PASSES,
            lanes: KDF_LANES,
            salt: STANDARD.encode(salt),
            sealed_master: STANDARD.encode(seal_with(&kek, &plain)),
        })
    }

    /// The master key, if `passphrase` is this slot's; `Ok(None)` when it is not.
    pub fn unwrap_master(&self, passphrase: &str) -> Result<Option<MasterKey>> {
        if self.kdf != "argon2id" {
            return Err(Error::new(
                ErrorKind::Format,
                format!("key slot uses unknown KDF {:?}", self.kdf),
            ));
        }
        let salt = STANDARD.decode(&self.salt).map_err(format_err)?;
        let sealed = STANDARD.decode(&self.sealed_master).map_err(format_err)?;
        let kek = derive(passphrase, &salt, self.memory_kib, self.passes, self.lanes)?;
        match open_with(&kek, &sealed) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain);
                let master = serde_json::from_slice(&plain).map_err(format_err)?;
                Ok(Some(master))
            }
            Err(_) => Ok(None),
        }
    }
}

fn derive(
    passphrase: &str,
    salt: &[u8],
    memory_kib: u32,
    passes: u32,
    lanes: u32,
) -> Result<Zeroizing<[u8; 32]>> {
    // Bound the parameters a (possibly hostile) key file may ask for.
    if memory_kib > 4 * 1024 * 1024 || passes > 100 || lanes > 64 {
        return Err(Error::new(
            ErrorKind::Format,
            "key slot asks for an unreasonable KDF cost",
        ));
    }
    // The daemon opens the same repository for every job: the key derived once per
    // process, under a hash keyed with a random per-process key (the passphrase
    // itself is not kept, and the entry is useless outside this process).
    let cache_key = {
        static PROCESS_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let k = PROCESS_KEY.get_or_init(rand::random);
        let mut h = blake3::Hasher::new_keyed(k);
        h.update(&(passphrase.len() as u64).to_le_bytes());
        h.update(passphrase.as_bytes());
        h.update(salt);
        h.update(&[memory_kib, passes, lanes].map(u32::to_le_bytes).concat());
        *h.finalize().as_bytes()
    };
    type Derived = std::collections::HashMap<[u8; 32], Zeroizing<[u8; 32]>>;
    static DERIVED: std::sync::Mutex<Option<Derived>> = std::sync::Mutex::new(None);
    if let Some(k) = DERIVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(&cache_key))
    {
        return Ok(k.clone());
    }
    let params = Params::new(memory_kib, passes, lanes, Some(32))
        .map_err(|e| Error::new(ErrorKind::Format, format!("bad KDF parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("key derivation failed: {e}")))?;
    let mut derived = DERIVED.lock().unwrap_or_else(|p| p.into_inner());
    let m = derived.get_or_insert_with(Default::default);
    // A handful of repositories and passphrases at most; bounded all the same.
    if m.len() >= 64 {
        m.clear();
    }
    m.insert(cache_key, out.clone());
    Ok(out)
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, e.to_string())
}

fn format_err(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Format, format!("damaged key slot: {e}"))
}
