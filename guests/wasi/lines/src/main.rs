//! Prints `line N` for N in 0..COUNT (first argument, default 1,000,000),
//! one `fd_write` per line (Rust's stdout is line buffered): the
//! benchmark `benches/wasi.rs` times it under `wasm-patch run` and wasmtime.

use std::io::Write;

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let out = std::io::stdout();
    let mut out = out.lock();
    for n in 0..count {
        if writeln!(out, "line {n}").is_err() {
            std::process::exit(1);
        }
    }
}
