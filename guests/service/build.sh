#!/usr/bin/env bash
# Builds every revision of the `bank` service (revisions/rN.rs) in place:
# each is copied to bank/src/lib.rs and built at that same path, so symbol
# hashes match as in a real rebuild, with `--emit-relocs` so that
# `wasm-patch diff` can follow data by symbol. Output:
# guests/built/service/rN.wasm (committed: tests need no toolchain).
#
#   guests/service/build.sh              # every rN
#   guests/service/build.sh l0 l1        # only the named revisions
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../built/service"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
mkdir -p "$out"
# Only the relocation flag: nothing meant for the host project.
unset CARGO_ENCODED_RUSTFLAGS
# A growable table, so that a bundle can add function pointers
# (`table.grow` at apply; wasm-ld otherwise fixes the table at its size).
export RUSTFLAGS="-C link-arg=--emit-relocs -C link-arg=--growable-table"
revs=("$here"/revisions/r*.rs)
if [ "$#" -gt 0 ]; then
    revs=()
    for name in "$@"; do revs+=("$here/revisions/$name.rs"); done
fi
for rev in "${revs[@]}"; do
    name="$(basename "$rev" .rs)"
    cp "$rev" "$here/bank/src/lib.rs"
    cargo build --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
        --release --target wasm32-unknown-unknown -p bank
    cp "$target_dir/wasm32-unknown-unknown/release/bank.wasm" "$out/$name.wasm"
    printf '%-4s %6d bytes\n' "$name" "$(stat -c %s "$out/$name.wasm")"
done
# Leave revision 0 in place, as the deployed source.
cp "$here/revisions/r0.rs" "$here/bank/src/lib.rs"
