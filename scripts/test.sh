#!/usr/bin/env bash
# The one test command (README.md, and .ci/run calls it): installs what the tests
# need on a fresh Debian machine, then runs formatting, lint, all tests and the
# Windows cross-build. Set PACSBAK_SKIP_WINDOWS=1 to skip the cross-build locally.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_needed=()
command -v tsql >/dev/null 2>&1 || apt_needed+=(freetds-bin)
# The SQL Server client's TLS (native-tls) builds against the system OpenSSL.
pkg-config --exists openssl 2>/dev/null || apt_needed+=(libssl-dev pkg-config)
# Offsite target tests: a private sshd (openssh-server), WebDAV via rclone.
[ -x /usr/sbin/sshd ] || apt_needed+=(openssh-server)
command -v rclone >/dev/null 2>&1 || apt_needed+=(rclone)
# A process whose clock is wrong (issue 14, fault 1): libfaketime.
command -v faketime >/dev/null 2>&1 || apt_needed+=(faketime)
if [ -z "${PACSBAK_SKIP_WINDOWS:-}" ]; then
  command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || apt_needed+=(gcc-mingw-w64-x86-64)
  # The Windows binary's test suite runs under Wine (Debian's wine64 8.0).
  command -v wine >/dev/null 2>&1 || apt_needed+=(wine64)
fi
if [ ${#apt_needed[@]} -gt 0 ]; then
  echo "installing: ${apt_needed[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
fi
python3 -c 'import pytds' 2>/dev/null || python3 -m pip install -q python-tds
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install -q aiosmtpd
# sshd started as root needs its privilege-separation folder.
[ -d /run/sshd ] || as_root mkdir -p /run/sshd 2>/dev/null || true
# S3 tests run against moto_server on a loopback port.
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]'

# Cut caches of the tests' repositories go to a folder of this run, not ~/.cache.
PACSBAK_CACHE_DIR="$(mktemp -d)"
export PACSBAK_CACHE_DIR
trap 'rm -rf "$PACSBAK_CACHE_DIR"' EXIT

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets

if [ -z "${PACSBAK_SKIP_WINDOWS:-}" ]; then
  rustup target list --installed | grep -q '^x86_64-pc-windows-gnu$' || rustup target add x86_64-pc-windows-gnu
  # Unoptimised (the sandbox profile): the Windows build compiles and links ...
  cargo build --bins --target x86_64-pc-windows-gnu --profile sandbox
  win_dir=target/x86_64-pc-windows-gnu/sandbox
  echo "windows build: $win_dir/pacsbak.exe"
  # ... and runs: the Wine suite (tests/it/wine.rs) in a fresh Wine prefix, with
  # the ProcessPrng DLL Wine 8 lacks and a program that holds a file open.
  x86_64-w64-mingw32-gcc -shared -O2 -o "$win_dir/bcryptprimitives.dll" scripts/windows/bcryptprimitives.c
  x86_64-w64-mingw32-gcc -municode -O2 -o "$win_dir/holdfile.exe" scripts/windows/holdfile.c
  PACSBAK_WINEPREFIX="$(mktemp -d)"
  export PACSBAK_WINEPREFIX
  trap 'rm -rf "$PACSBAK_CACHE_DIR" "$PACSBAK_WINEPREFIX"' EXIT
  WINEPREFIX="$PACSBAK_WINEPREFIX" WINEDEBUG=-all wineboot -i >/dev/null 2>&1 || true
  PACSBAK_WINE_EXE="$PWD/$win_dir/pacsbak.exe" cargo test --test it wine::
  WINEPREFIX="$PACSBAK_WINEPREFIX" wineserver -k 2>/dev/null || true
fi
