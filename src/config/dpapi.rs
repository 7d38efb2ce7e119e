//! Secrets kept the way Windows services keep them: encrypted with DPAPI for the
//! account pacsbak runs as (or for the machine), in `secrets/NAME.dpapi` in the
//! configuration folder. `pacsbak secret set NAME` writes one; the configuration
//! names it (`password_dpapi`, `connection_string_dpapi`). The file is useless on
//! another machine or to another account. Elsewhere than Windows there is no
//! DPAPI: the environment or a secrets file serves.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// Where secret `name` is kept.
pub fn secret_path(config_dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!("secret name {name:?}: use letters, digits, - and _"),
        ));
    }
    Ok(config_dir.join("secrets").join(format!("{name}.dpapi")))
}

/// Encrypts `secret` for this account (or, with `machine`, for any account of
/// this machine) and writes it as secret `name`.
pub fn store(config_dir: &Path, name: &str, secret: &str, machine: bool) -> Result<PathBuf> {
    let path = secret_path(config_dir, name)?;
    let blob = protect(secret.as_bytes(), machine)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // Written beside and renamed: a crash leaves the old secret whole.
    let tmp = path.with_extension("dpapi.tmp");
    std::fs::write(&tmp, blob).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// Reads and decrypts secret `name`.
pub fn load(config_dir: &Path, name: &str) -> Result<Zeroizing<String>> {
    let path = secret_path(config_dir, name)?;
    let blob = std::fs::read(&path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!(
                "cannot read DPAPI secret {name:?}: {e}; write it with `pacsbak secret set {name}`"
            ),
        )
        .with("file", path.display())
    })?;
    let plain = unprotect(&blob).map_err(|e| e.with("file", path.display()))?;
    let text = String::from_utf8(plain.to_vec()).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("DPAPI secret {name:?} is not text"),
        )
        .with("file", path.display())
    })?;
    Ok(Zeroizing::new(
        text.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

#[cfg(windows)]
fn protect(data: &[u8], machine: bool) -> Result<Vec<u8>> {
    win::call(data, true, machine)
}

#[cfg(windows)]
fn unprotect(blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    win::call(blob, false, false).map(Zeroizing::new)
}

#[cfg(not(windows))]
fn protect(_data: &[u8], _machine: bool) -> Result<Vec<u8>> {
    Err(not_here())
}

#[cfg(not(windows))]
fn unprotect(_blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    Err(not_here())
}

#[cfg(not(windows))]
fn not_here() -> Error {
    Error::new(
        ErrorKind::Config,
        "DPAPI secrets exist only on Windows: here, use an environment variable or a secrets file",
    )
}

#[cfg(windows)]
mod win {
    use windows_sys::Win32::Foundation::LocalFree;
    use windows_sys::Win32::Security::Cryptography::{
        CryptProtectData, CryptUnprotectData, CRYPTPROTECT_LOCAL_MACHINE,
        CRYPTPROTECT_UI_FORBIDDEN, CRYPT_INTEGER_BLOB,
    };

    use crate::error::{Error, ErrorKind, Result};

    pub fn call(data: &[u8], encrypt: bool, machine: bool) -> Result<Vec<u8>> {
        let input = CRYPT_INTEGER_BLOB {
            cbData: data.len() as u32,
            pbData: data.as_ptr() as *mut u8,
        };
        let mut output = CRYPT_INTEGER_BLOB {
            cbData: 0,
            pbData: std::ptr::null_mut(),
        };
        let mut flags = CRYPTPROTECT_UI_FORBIDDEN;
        if machine {
            flags |= CRYPTPROTECT_LOCAL_MACHINE;
        }
        // SAFETY: the blobs point at live buffers; the output is freed with LocalFree.
        let ok = unsafe {
            if encrypt {
                CryptProtectData(
                    &input,
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    flags,
                    &mut output,
                )
            } else {
                CryptUnprotectData(
                    &input,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    flags,
                    &mut output,
                )
            }
        };
        if ok == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "DPAPI could not {} the secret ({}): a secret protected for another account or machine cannot be read here; write it again with `pacsbak secret set` as the service account",
                    if encrypt { "protect" } else { "unprotect" },
                    std::io::Error::last_os_error()
                ),
            ));
        }
        // SAFETY: DPAPI returned `cbData` bytes at `pbData`; a decrypted secret is
        // wiped before the buffer goes back.
        let out = unsafe {
            let v = std::slice::from_raw_parts(output.pbData, output.cbData as usize).to_vec();
            if !encrypt {
                std::ptr::write_bytes(output.pbData, 0, output.cbData as usize);
            }
            LocalFree(output.pbData as _);
            v
        };
        Ok(out)
    }
}
