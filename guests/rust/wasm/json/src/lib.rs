//! `json` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `json` kernel `n` times (see `kernels::json`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::json::run(n)
}
