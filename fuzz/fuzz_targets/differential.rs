//! Fuzz target: wasm-patch and a reference interpreter (wasmi) agree on
//! random modules.
//!
//! The bytes drive wasm-smith; the comparison (results, traps, host calls,
//! final memories, globals and tables) is `src/differential.rs`, the same
//! code the fixed-seed test `tests/all/differential.rs` runs. A divergence
//! panics with what differs; the WAT of the input is printed first.
//! Replay a crash file with `DIFF_FUZZ_FILE` and that test.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

// The fixed-seed test reads what the target does not (step counts).
#[allow(dead_code)]
#[path = "../src/differential.rs"]
mod differential;

fuzz_target!(|data: &[u8]| {
    static SETUP: OnceLock<(differential::Runner, wasm_smith::Config)> = OnceLock::new();
    let (runner, config) =
        SETUP.get_or_init(|| (differential::Runner::new(), differential::smith_config()));
    let Some(wasm) = differential::generate(config, data) else {
        return;
    };
    if let differential::Verdict::Diverged(why) = runner.run(&wasm) {
        eprintln!("{}", differential::wat(&wasm));
        panic!("wasm-patch and wasmi diverge: {why}");
    }
});
