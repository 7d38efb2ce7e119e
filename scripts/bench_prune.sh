#!/usr/bin/env bash
# Retention + prune against `restic forget --prune` (issue 16): installs restic
# (Debian), builds the release binary, prints the table (docs/benchmarks.md).
# About 40 minutes on 2 cores for the default year of 256 MiB backups; BENCH_DAYS
# and BENCH_SIZE_MIB make it shorter.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v restic >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null
fi
cargo build --release --quiet --bin pacsbak
exec python3 scripts/bench_prune.py
