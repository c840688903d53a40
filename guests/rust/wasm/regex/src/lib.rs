//! `regex` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `regex` kernel `n` times (see `kernels::regex`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::regex::run(n)
}
