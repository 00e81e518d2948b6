#!/bin/sh
# Pack this checkout's release test binaries and the superres binary (stripped, xz) with a runner,
# to check the kernels on another x86-64 Linux machine that has no Rust toolchain, such as one
# with AVX-512 when this one has only AVX2. The test binaries keep the paths they were built with
# (the checkout, for tests/fixtures and weights/, and the superres binary the CLI tests start); the
# runner recreates both on the other machine.
#
#   tools/bundle-tests.sh                 # writes target/test-bundle.tar.xz (about 7 MB)
#   # on the other machine, in a copy of the same checkout (same commit):
#   tar xJf test-bundle.tar.xz && sh test-bundle/run-tests.sh
#
# The runner runs every suite at the machine's best level (SUPERRES_CPU lowers it, as usual) and
# exits non-zero if any fails.
set -eu
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
out=$target/test-bundle
rm -rf "$out" && mkdir -p "$out/tests"
cargo build --release
cargo test --release --no-run --message-format=json 2>/dev/null \
    | grep '"profile":{[^}]*"test":true' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 \
    | while read -r t; do cp "$t" "$out/tests/"; done
cp "$target/release/superres" "$out/"
strip "$out/superres" "$out"/tests/*
cat >"$out/run-tests.sh" <<EOF
#!/bin/sh
# Made by tools/bundle-tests.sh at commit $(git rev-parse --short HEAD): run from the checkout's root.
set -u
here=\$(cd "\$(dirname "\$0")" && pwd)
repo=\$PWD
src='$PWD'
exe='$target/release/superres'
if [ "\$(cd "\$src" 2>/dev/null && pwd -P)" != "\$(pwd -P)" ]; then
    [ -e "\$src" ] && { echo "\$src exists and is not this checkout: run from it or move it" >&2; exit 2; }
    mkdir -p "\$(dirname "\$src")" && ln -s "\$repo" "\$src"
fi
# Never over a binary already there (on the build machine, the unstripped build output).
if [ -e "\$exe" ]; then
    echo "using the superres already at \$exe"
else
    mkdir -p "\$(dirname "\$exe")" && cp "\$here/superres" "\$exe"
fi
grep -m1 'model name' /proc/cpuinfo
fail=0
for t in "\$here"/tests/*; do
    echo "== \$(basename "\$t")"
    r=\$("\$t" -q 2>&1) || fail=1
    echo "\$r" | grep -E '^test result|FAILED|panicked'
done
[ \$fail = 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
exit \$fail
EOF
chmod +x "$out/run-tests.sh"
tar -C "$target" -cJf "$target/test-bundle.tar.xz" test-bundle
echo "wrote $target/test-bundle.tar.xz ($(du -h "$target/test-bundle.tar.xz" | cut -f1))"
