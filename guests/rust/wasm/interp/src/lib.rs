//! `interp` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `interp` kernel `n` times (see `kernels::interp`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::interp::run(n)
}
