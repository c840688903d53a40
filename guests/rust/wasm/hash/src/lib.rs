//! `hash` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `hash` kernel `n` times (see `kernels::hash`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::hash::run(n)
}
