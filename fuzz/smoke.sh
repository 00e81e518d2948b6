#!/usr/bin/env bash
# A short run of every fuzz target (default 10 s each, or $1 seconds), one after the other on one
# core, from the seed corpora. Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Not part of .ci/run: building the instrumented targets alone takes minutes.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-10}
[ -d corpus ] || ./seed.sh
cargo +nightly fuzz build
for t in safetensors pth image_decode upscale ncnn y4m cli_paths; do
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
done
