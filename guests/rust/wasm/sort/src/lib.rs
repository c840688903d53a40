//! `sort` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `sort` kernel `n` times (see `kernels::sort`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::sort::run(n)
}
