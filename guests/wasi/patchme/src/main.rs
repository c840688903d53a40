//! A small WASI service to patch live: every 5 ms it prints
//! `order N: total T` where T = `total(N)`. The shipped build has a bug
//! (the discount is applied twice); building with `WASI_PATCH_FIXED=1` in
//! the environment gives the fix, which changes only the code of `total`
//! (no data moves), so `wasm-patch diff` makes a bundle of one function.
//!
//! Runs until killed or until stdout closes.

use std::io::Write;

#[link(wasm_import_module = "wasm-patch")]
extern "C" {
    /// Parks the calling guest thread for `nanos` nanoseconds.
    fn sleep(nanos: i64);
}

/// Price of order `n` after a 10-unit discount: `100 + n - 10`.
#[inline(never)]
#[no_mangle]
pub extern "C" fn total(n: u32) -> u32 {
    let price = 100 + n;
    if option_env!("WASI_PATCH_FIXED").is_some() {
        price - 10
    } else {
        // The bug: the discount is taken twice.
        price - 20
    }
}

fn main() {
    let out = std::io::stdout();
    for n in 0u32.. {
        let t = total(std::hint::black_box(n));
        if writeln!(out.lock(), "order {n}: total {t}").is_err() {
            std::process::exit(1);
        }
        // SAFETY: the thread ABI's `sleep` only parks this guest thread.
        unsafe { sleep(5_000_000) };
    }
}
