#!/usr/bin/env bash
# The main job end to end: `pacsbak sandbox` in target/sandbox (the bundled SQL Server
# simulator, nightly plan, manual backup, restore plan from the repository; a second
# run continues from the first), then a program-folder round trip: a local-folder repository under
# target/demo/, the sample PACS program folder in examples/ backed up, verified
# (reading every byte back) and restored, then compared with the original.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/pacsbak
$bin sandbox --dir target/sandbox
demo=target/demo
rm -rf "$demo"
mkdir -p "$demo/config/storage-targets"
cat > "$demo/config/pacsbak.toml" <<'TOML'
[repository]
# The passphrase comes from PACSBAK_PASSWORD or this file (mode 600), never from TOML.
password_file = "repo.pass"
TOML
cat > "$demo/config/storage-targets/local.toml" <<'TOML'
service = "fs"
root = "../repository"
TOML
( umask 077; echo "demo passphrase, change me" > "$demo/config/repo.pass" )
export PACSBAK_CONFIG="$demo/config"
unset PACSBAK_PASSWORD
set -x
$bin repo init
$bin backup files --tag demo examples/pacs-server examples
$bin snapshots
$bin verify --read-data
$bin restore files latest --to "$demo/restored"
{ set +x; } 2>/dev/null
diff -r examples/pacs-server "$demo/restored/pacs-server"
echo
echo "OK: backed up, verified and restored byte for byte."
echo "Try: PACSBAK_CONFIG=$demo/config $bin snapshots --json"
