#!/usr/bin/env bash
# Rebuilds the WASI guests (workspace guests/wasi, target wasm32-wasip1) and
# copies them to guests/built/:
#   wasi-threads.wasm      reader blocked on stdin beside printing threads
#   wasi-lines.wasm        prints N lines (benchmark)
#   wasi-patch-old.wasm    the patchable service, shipped build (bug)
#   wasi-patch-new.wasm    the same with the fix (WASI_PATCH_FIXED=1)
# The two patch builds use separate target directories so that each is a
# full build of the same crate (same symbol names) differing only in code.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ws="$here/wasi"
out="$here/built"
target_dir="${CARGO_TARGET_DIR:-$ws/target}"
triple=wasm32-wasip1

# Keep the build independent of any RUSTFLAGS meant for the host project.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS WASI_PATCH_FIXED
build() { # TARGET_DIR PACKAGE...
    local dir="$1"; shift
    local pkgs=()
    for p in "$@"; do pkgs+=(-p "$p"); done
    cargo build --manifest-path "$ws/Cargo.toml" --target-dir "$dir" \
        --release --target "$triple" "${pkgs[@]}"
}

build "$target_dir" wasi-threads wasi-lines wasi-patchme
WASI_PATCH_FIXED=1 build "$target_dir/fixed" wasi-patchme

mkdir -p "$out"
cp "$target_dir/$triple/release/wasi-threads.wasm" "$out/wasi-threads.wasm"
cp "$target_dir/$triple/release/wasi-lines.wasm" "$out/wasi-lines.wasm"
cp "$target_dir/$triple/release/wasi-patchme.wasm" "$out/wasi-patch-old.wasm"
cp "$target_dir/fixed/$triple/release/wasi-patchme.wasm" "$out/wasi-patch-new.wasm"
for f in wasi-threads wasi-lines wasi-patch-old wasi-patch-new; do
    printf '%-16s %7d bytes\n' "$f" "$(stat -c %s "$out/$f.wasm")"
done
