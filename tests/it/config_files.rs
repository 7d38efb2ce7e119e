//! The example configuration shipped at the top of the project must load.

use std::path::PathBuf;

use pacsbak::config::{ConfigDir, ServiceKind};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_example_configuration_loads() {
    let cfg =
        ConfigDir::load(&project()).expect("the shipped pacsbak.toml and storage-targets/ load");
    assert!(cfg.main.repository.password_file.is_some());
    let nas = cfg.target(None).expect("default target");
    assert_eq!(nas.name, "nas");
    assert_eq!(nas.service, ServiceKind::Fs);
    assert_eq!(
        nas.root.as_deref(),
        Some(std::path::Path::new(r"\\nas-b\pacs-backup\repository"))
    );
    let local = cfg.target(Some("local")).unwrap();
    assert_eq!(
        local.root.as_deref(),
        Some(std::path::Path::new("/var/backups/pacsbak"))
    );
    let sister = cfg.target(Some("sister-sftp")).unwrap();
    assert_eq!(sister.retention.as_ref().map(|r| r.keep_yearly), Some(7));
    assert!(cfg
        .target(Some("nope"))
        .unwrap_err()
        .to_string()
        .contains("local, nas"));
}
