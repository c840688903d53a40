//! `nbody` benchmark guest: exports `memory` and `run(n: i32) -> i64`, imports nothing.

/// Runs the `nbody` kernel `n` times (see `kernels::nbody`) and returns its checksum.
#[no_mangle]
pub extern "C" fn run(n: i32) -> i64 {
    kernels::nbody::run(n)
}
