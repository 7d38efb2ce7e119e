//! Turning manifest paths into local paths that can never leave the restore folder.
//!
//! A manifest is data from storage: it may be damaged or forged. Every component is
//! checked (no empty, `.`, `..`, absolute, drive or NUL parts), and no folder on the
//! way may be a symlink, so even a restored link cannot redirect later writes.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Resolves `rel` (a `/`-separated manifest path) under `root`.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf> {
    let refuse = |why: &str| {
        Error::new(
            ErrorKind::Refused,
            format!("refusing a manifest path that {why}"),
        )
        .with("path", rel)
    };
    if rel.is_empty() {
        return Err(refuse("is empty"));
    }
    let mut out = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(refuse("is absolute or climbs out of the restore folder"));
        }
        if part.contains('\0') {
            return Err(refuse("contains a NUL byte"));
        }
        if cfg!(windows) && (part.contains('\\') || part.contains(':')) {
            return Err(refuse(
                "contains a character Windows does not allow in names",
            ));
        }
        // Belt and braces: the component must parse as exactly one normal component.
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(_)), None) => {}
            _ => return Err(refuse("is not a plain name")),
        }
        out.push(part);
    }
    Ok(out)
}

/// Fails if any folder between `root` (exclusive) and `path` (exclusive) is a symlink.
pub fn check_no_symlink_parents(root: &Path, path: &Path) -> Result<()> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Err(
            Error::new(ErrorKind::Refused, "path is outside the restore folder")
                .with("path", path.display()),
        );
    };
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for comp in parts.iter().take(parts.len().saturating_sub(1)) {
        cur.push(comp);
        if let Ok(m) = std::fs::symlink_metadata(&cur) {
            if m.file_type().is_symlink() {
                return Err(Error::new(
                    ErrorKind::Refused,
                    "refusing to write through a symlink inside the restore folder",
                )
                .with("path", cur.display()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        let root = Path::new("/restore");
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\0b",
        ] {
            assert!(resolve(root, bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            resolve(root, "PACS/影像/a b.txt").unwrap(),
            Path::new("/restore/PACS/影像/a b.txt")
        );
    }
}
