#!/usr/bin/env bash
# Rebuilds every benchmark guest kernel for wasm32-unknown-unknown and copies
# the modules to guests/built/NAME.wasm.
#
#   guests/build.sh             build the .wasm files
#   guests/build.sh --expected  also rerun the kernels natively and rewrite
#                               guests/built/EXPECTED.txt (NAME ARG EXPECTED_I64)
#   guests/build.sh --check     also run the built modules under node (if present)
#                               and compare with EXPECTED.txt
#   guests/build.sh --simd      also build every kernel with
#                               `-C target-feature=+simd128` (rustc
#                               auto-vectorises) into guests/built/simd/NAME.wasm;
#                               the results must match the same EXPECTED.txt
#
# Release profile (guests/rust/Cargo.toml): opt-level=3, lto, panic=abort,
# codegen-units=1, no debug info, name section kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ws="$here/rust"
out="$here/built"
target_dir="${CARGO_TARGET_DIR:-$ws/target}"
kernels=(json deflate regex hash nbody sort interp matmul)

expected=0
check=0
simd=0
for a in "$@"; do
    case "$a" in
        --expected) expected=1 ;;
        --check) check=1 ;;
        --simd) simd=1 ;;
        *) echo "usage: $0 [--expected] [--check] [--simd]" >&2; exit 2 ;;
    esac
done

pkgs=()
for k in "${kernels[@]}"; do pkgs+=(-p "wasm-$k"); done

# Keep the build independent of any RUSTFLAGS meant for the host project.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
cargo build --manifest-path "$ws/Cargo.toml" --target-dir "$target_dir" \
    --release --target wasm32-unknown-unknown "${pkgs[@]}"

mkdir -p "$out"
for k in "${kernels[@]}"; do
    cp "$target_dir/wasm32-unknown-unknown/release/wasm_$k.wasm" "$out/$k.wasm"
    printf '%-8s %7d bytes\n' "$k" "$(stat -c %s "$out/$k.wasm")"
done

if [ "$simd" = 1 ]; then
    # Its own target directory: the flags differ, and the scalar build's
    # artifacts stay as they are.
    RUSTFLAGS="-C target-feature=+simd128" \
        cargo build --manifest-path "$ws/Cargo.toml" --target-dir "$target_dir/simd128" \
        --release --target wasm32-unknown-unknown "${pkgs[@]}"
    mkdir -p "$out/simd"
    for k in "${kernels[@]}"; do
        cp "$target_dir/simd128/wasm32-unknown-unknown/release/wasm_$k.wasm" "$out/simd/$k.wasm"
        printf 'simd/%-8s %7d bytes\n' "$k" "$(stat -c %s "$out/simd/$k.wasm")"
    done
fi

if [ "$expected" = 1 ]; then
    cargo build --manifest-path "$ws/Cargo.toml" --target-dir "$target_dir" --release -p native
    "$target_dir/release/native" > "$out/EXPECTED.txt.tmp"
    mv "$out/EXPECTED.txt.tmp" "$out/EXPECTED.txt"
    cat "$out/EXPECTED.txt"
fi

if [ "$check" = 1 ]; then
    if command -v node >/dev/null 2>&1; then
        node "$ws/check-wasm.mjs" "$out"
    else
        echo "node not found: skipping the wasm check" >&2
    fi
fi
