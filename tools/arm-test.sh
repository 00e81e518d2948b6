#!/usr/bin/env bash
# Cross-build superres for aarch64 and run its tests under qemu-user, in a Debian chroot that
# holds Debian's rustc with the arm64 standard library (libstd-rust-dev:arm64), the cross linker
# and qemu. The host only gains the `debootstrap` package; everything else lives in the chroot.
#
# Usage (as root, from anywhere in the checkout):
#   tools/arm-test.sh [--chroot DIR] [--all] [--setup-only]
#     --chroot DIR   where the chroot lives (default $SUPERRES_ARM_CHROOT or
#                    /var/cache/superres/arm-sid); created on first use (a few minutes: debootstrap
#                    and about 400 MB of packages), reused and topped up afterwards.
#     --all          the whole test suite; by default the suites that exercise the kernels and
#                    models on small inputs: the unit tests, cross_arch, model_parity, pipeline,
#                    pth_reader and cli (the CLI binary runs under qemu too).
#     --setup-only   create or update the chroot and stop.
#   Env: MIRROR (Debian archive; default: the host's first apt source, else deb.debian.org),
#        SUITE (default sid), CARGO_BUILD_JOBS (passed to the chroot's cargo).
#
# Exit status: 0 all tests passed; 1 a build or test failure; 77 skipped because the environment
# cannot do it (not root, or the chroot or crates could not be downloaded), with a line starting
# `SKIP` saying why. The chroot's cargo keeps its own registry and target directory
# (/var/tmp/superres-target inside the chroot), so reruns only rebuild what changed.
#
# To remove the chroot: `tools/arm-test.sh --chroot DIR --umount`, then `rm -rf DIR`. Never delete
# it while something is mounted in it (it bind-mounts /dev).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
R=${SUPERRES_ARM_CHROOT:-/var/cache/superres/arm-sid}
ALL=0 SETUP_ONLY=0 UMOUNT_ONLY=0
while [ $# -gt 0 ]; do
  case $1 in
    --chroot) R=$2; shift 2 ;;
    --all) ALL=1; shift ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    --umount) UMOUNT_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "arm-test: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
R=${R%/}
TARGET=aarch64-unknown-linux-gnu
SUITE=${SUITE:-sid}
# Packages of the chroot: sid's rustc is recent enough for the crate's rust-version, and its
# qemu-user ships static binaries.
PKGS="rustc cargo libstd-rust-dev:arm64 qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
      binutils-aarch64-linux-gnu ca-certificates file"

log() { echo "[arm-test] $*" >&2; }
skip() { echo "SKIP aarch64 tests: $*"; exit 77; }
now() { date +%s; }
T0=$(now)

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot and mounts); run it with sudo"

MOUNTED=()
mount_once() { # mount_once [opts...] SRC DST
  local dst=${*: -1}
  mkdir -p "$dst"
  mountpoint -q "$dst" && return 0
  mount "$@"
  MOUNTED=("$dst" "${MOUNTED[@]}")
}
umount_ours() {
  local m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
  MOUNTED=()
}
umount_all() { # everything mounted under the chroot, deepest first
  local m
  for m in $(awk -v r="$R/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
trap umount_ours EXIT
trap 'exit 130' INT TERM # so that the EXIT trap unmounts on Ctrl-C or `timeout`
if [ "$UMOUNT_ONLY" = 1 ]; then umount_all; exit 0; fi

in_chroot() { # a clean environment: nothing from the host's cargo or rustup setup leaks in
  chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    ${CARGO_BUILD_JOBS:+CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS} CARGO_TARGET_DIR=/var/tmp/superres-target \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$1"
}

host_mirror() { # the archive this host already uses (deb822 or one-line sources)
  { awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1 == "deb" {print $2}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | grep -v -e security -e ubuntu | head -n 1 || true
}

setup() {
  if ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || skip "debootstrap is missing and this host has no apt-get"
    log "installing debootstrap on the host"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } ||
      skip "cannot install debootstrap (no network to the package archive?)"
  fi
  local mirror=${MIRROR:-$(host_mirror)}
  mirror=${mirror:-http://deb.debian.org/debian}
  if [ -d "$R/debootstrap" ]; then # left behind by an interrupted debootstrap
    umount_all
    log "removing the incomplete chroot $R"
    rm -rf --one-file-system "$R"
  fi
  if [ ! -x "$R/usr/bin/apt-get" ]; then
    log "debootstrap $SUITE from $mirror into $R"
    mkdir -p "$(dirname "$R")"
    debootstrap --variant=minbase "$SUITE" "$R" "$mirror" >"$R.debootstrap.log" 2>&1 ||
      skip "debootstrap $SUITE from $mirror failed (no network to the Debian archive?); see $R.debootstrap.log"
  fi
  # The archive may be a snapshot whose Release file is past its Valid-Until date.
  echo 'Acquire::Check-Valid-Until "false";' >"$R/etc/apt/apt.conf.d/99no-check-valid-until"
  cp -L /etc/resolv.conf "$R/etc/resolv.conf"
  # TLS may go through a proxy whose CA only the host trusts: give it to the chroot.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$R/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
  fi
  mount_base
  in_chroot "set -e; export DEBIAN_FRONTEND=noninteractive
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    missing=\$(for p in $(echo $PKGS); do dpkg -s \$p >/dev/null 2>&1 || echo \$p; done)
    if [ -n \"\$missing\" ]; then
      apt-get update -qq
      apt-get install -y -q --no-install-recommends \$missing
      apt-get clean
    fi
    update-ca-certificates >/dev/null" >"$R.apt.log" 2>&1 ||
    skip "installing the toolchain in the chroot failed (no network?); see $R.apt.log"
  # The cross linker and the qemu runner for the target (same as CARGO_TARGET_AARCH64_* vars).
  # No `-L /usr/aarch64-linux-gnu`: the loader and libc come from the multiarch libc6:arm64.
  mkdir -p "$R/root/.cargo"
  cat >"$R/root/.cargo/config.toml" <<'EOF'
[target.aarch64-unknown-linux-gnu]
linker = "aarch64-linux-gnu-gcc"
runner = ["qemu-aarch64"]
EOF
}

mount_base() {
  mount_once -t proc proc "$R/proc"
  mount_once --bind /dev "$R/dev"
  mount_once --bind /dev/pts "$R/dev/pts"
}

T_SETUP=$(now)
setup
in_chroot 'rustc -V; cargo -V; qemu-aarch64 --version | head -1' | sed 's/^/[arm-test] /' >&2
T_SETUP=$(($(now) - T_SETUP))
[ "$SETUP_ONLY" = 1 ] && { log "chroot ready in $R (${T_SETUP}s)"; exit 0; }

# The checkout, read-only: the build writes only to the chroot's target directory.
mount_once --bind -o ro "$REPO" "$R/src"
mountpoint -q "$R/src" && mount -o remount,bind,ro "$R/src" 2>/dev/null || true

if [ "$ALL" = 1 ]; then
  SEL=""
else
  SEL="--lib --test cross_arch --test model_parity --test pipeline --test pth_reader --test cli"
fi
CARGO="cargo test --locked --target $TARGET"

in_chroot "cd /src && cargo fetch --locked --target $TARGET" >"$R.fetch.log" 2>&1 ||
  skip "cargo could not download the crates in the chroot (no network to crates.io?); see $R.fetch.log"

T_BUILD=$(now)
in_chroot "cd /src && $CARGO $SEL --no-run" 2>&1 | tail -n 3 >&2 || { echo "FAIL: the aarch64 build failed"; exit 1; }
T_BUILD=$(($(now) - T_BUILD))

# Evidence from the binaries themselves: aarch64 code with NEON by-element FMAs (the lane-indexed
# GEMM kernel), and the CPU level the CLI selects under qemu, with and without the override.
BIN=/var/tmp/superres-target/$TARGET/debug/superres
in_chroot "cd /src && $CARGO --lib --no-run --message-format=json 2>/dev/null" |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | head -n 1 >"$R/tmp/libtest-path"
LIBTEST=$(cat "$R/tmp/libtest-path")
ARCH=$(in_chroot "file -b $LIBTEST" | cut -d, -f1-2)
FMLA_LANE=$(in_chroot "aarch64-linux-gnu-objdump -d --no-show-raw-insn $LIBTEST" |
  grep -cE 'fmla\s+v[0-9]+\.4s, v[0-9]+\.4s, v[0-9]+\.s\[[0-3]\]' || true)
info_level() { in_chroot "cd /src && $1 qemu-aarch64 $BIN info weights/realesr-animevideov3.safetensors" |
  sed -n 's/^cpu level: *//p'; }
LEVEL=-; LEVEL_PORTABLE=-
if in_chroot "test -x $BIN"; then
  LEVEL=$(info_level "")
  LEVEL_PORTABLE=$(info_level "SUPERRES_CPU=portable")
fi

T_TEST=$(now)
set +e
in_chroot "cd /src && SUPERRES_TEST_RUNNER=qemu-aarch64 $CARGO $SEL --no-fail-fast 2>&1" | tee "$R.test.log"
STATUS=${PIPESTATUS[0]}
set -e
T_TEST=$(($(now) - T_TEST))

sum() { grep -E '^test result:' "$R.test.log" | sed -n "s/.* \([0-9]*\) $1.*/\1/p" | awk '{s += $1} END {print s + 0}'; }
PASSED=$(sum passed); FAILED=$(sum failed); IGNORED=$(sum ignored)
SUITES=$(grep -cE '^test result:' "$R.test.log" || true)
OK=1
[ "$STATUS" = 0 ] && [ "${FAILED:-0}" = 0 ] || OK=0
[ "$LEVEL" = neon ] || OK=0
[ "$LEVEL_PORTABLE" = portable ] || OK=0
[ "$FMLA_LANE" -gt 0 ] || OK=0
cat <<EOF

== superres on $TARGET under qemu ==
toolchain:   $(in_chroot 'rustc -V'), $(in_chroot 'qemu-aarch64 --version | head -1')
test binary: $ARCH, $FMLA_LANE NEON by-element FMAs (fmla v.4s, v.4s, v.s[i])
cpu level:   superres info -> $LEVEL; with SUPERRES_CPU=portable -> $LEVEL_PORTABLE
tests:       ${PASSED:-0} passed, ${FAILED:-0} failed, ${IGNORED:-0} ignored in $SUITES suites (${SEL:-all suites})
wall time:   setup ${T_SETUP}s, build ${T_BUILD}s, tests ${T_TEST}s, total $(($(now) - T0))s
EOF
if [ "$OK" = 1 ]; then
  echo "RESULT: PASS"
else
  echo "RESULT: FAIL (cargo test exit $STATUS)"
  exit 1
fi
