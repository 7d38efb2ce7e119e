//! Where secrets come from: the environment or a file only its owner can read.

use std::path::Path;

use zeroize::Zeroizing;

use super::MainConfig;
use crate::error::{Error, ErrorKind, Result};

/// A passphrase, wiped from memory when dropped.
pub type Passphrase = Zeroizing<String>;

/// Environment variable holding the repository passphrase.
pub const PASSWORD_ENV: &str = "PACSBAK_PASSWORD";

/// The repository passphrase: the password file when pacsbak.toml names one, else
/// `PACSBAK_PASSWORD`. The config folder is the more specific choice: with the
/// variable exported for production, a sandbox or drill folder with a file of its
/// own still opens its own repository.
pub fn repository_passphrase(main: &MainConfig, config_dir: &Path) -> Result<Passphrase> {
    if let Some(f) = &main.repository.password_file {
        return read_secret_file(&config_dir.join(f));
    }
    if let Some(name) = &main.repository.password_dpapi {
        return super::dpapi::load(config_dir, name);
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(p) if !p.is_empty() => Ok(Zeroizing::new(p)),
        _ => Err(Error::new(
            ErrorKind::Config,
            format!(
                "no repository passphrase: set {PASSWORD_ENV}, or password_file under [repository] in pacsbak.toml"
            ),
        )),
    }
}

/// Reads a secret file (first line), refusing one that group or others can read.
pub fn read_secret_file(path: &Path) -> Result<Passphrase> {
    let text = read_private_text(path)?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        return Err(
            Error::new(ErrorKind::Config, "secrets file is empty").with("file", path.display())
        );
    }
    Ok(Zeroizing::new(first.to_string()))
}

/// The text of a secrets file, refused when group or others can read it.
fn read_private_text(path: &Path) -> Result<Zeroizing<String>> {
    let unreadable = |e: std::io::Error| {
        Error::new(ErrorKind::Config, format!("cannot read secrets file: {e}"))
            .with("file", path.display())
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    check_private(path, &meta)?;
    Ok(Zeroizing::new(
        std::fs::read_to_string(path).map_err(unreadable)?,
    ))
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "secrets file is readable by group or others (mode {:o}): run `chmod 600 {}`",
                mode & 0o777,
                path.display()
            ),
        )
        .with("file", path.display()));
    }
    Ok(())
}

/// On Windows the file's DACL: readable by its owner, the account pacsbak runs as,
/// SYSTEM and Administrators, nobody else.
#[cfg(windows)]
fn check_private(path: &Path, _meta: &std::fs::Metadata) -> Result<()> {
    let (dacl, me, my_name) = super::acl::read_dacl(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read the secrets file's permissions: {e}"),
        )
        .with("file", path.display())
    })?;
    let wide = super::acl::wide_readers(dacl.as_deref(), &me);
    if wide.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "secrets file can be read by {}: allow only the account pacsbak runs as, SYSTEM and Administrators: run `{}` (naming the service account if it is not the one running this)",
            wide.join(", "),
            super::acl::fix_command(path, &my_name)
        ),
    )
    .with("file", path.display()))
}

#[cfg(not(any(unix, windows)))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<()> {
    Ok(())
}

/// Reads a `key=value` secrets file (blank lines and `#` comments ignored), refusing
/// one that group or others can read. Values never appear in errors.
pub fn read_secret_map(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, Zeroizing<String>>> {
    let text = read_private_text(path)?;
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(Error::new(
                ErrorKind::Config,
                format!("secrets file line {} is not key=value", i + 1),
            )
            .with("file", path.display())
            .with("line", i + 1));
        };
        out.insert(k.trim().to_string(), Zeroizing::new(v.trim().to_string()));
    }
    Ok(out)
}
