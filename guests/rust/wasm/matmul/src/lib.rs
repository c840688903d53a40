//! `matmul` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `matmul` kernel `n` times (see `kernels::matmul`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::matmul::run(n)
}
