//! `deflate` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `deflate` kernel `n` times (see `kernels::deflate`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::deflate::run(n)
}
