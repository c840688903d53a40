//! Fuzz target: a bundle made by `diff M M'` and applied to an instance of
//! M, before it runs, live under worker threads and live as an immediate
//! bundle, makes it answer every export as a fresh instance of M' does;
//! reverted, as M; a cumulative bundle M → M'' over it, as M''.
//!
//! The bytes drive the case generator (`src/eqgen.rs`) and the number of
//! scheduler slices the workers run before the live apply; the check is
//! `src/patch_equivalence.rs`, the same code the fixed-seed test
//! `tests/all/patch_equivalence.rs` runs. A mismatch panics with what
//! differs, after printing M and M' as WAT.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

// The fixed-seed test reads what the target does not (the tally).
#[allow(dead_code)]
#[path = "../src/patch_equivalence.rs"]
mod eq;

fuzz_target!(|data: &[u8]| {
    static RUNNER: OnceLock<eq::Runner> = OnceLock::new();
    let runner = RUNNER.get_or_init(eq::Runner::new);
    let Some((&steps, rest)) = data.split_first() else {
        return;
    };
    let Some(case) = eq::generate(rest) else {
        return;
    };
    if let eq::Verdict::Mismatch(why) = runner.check(&case, steps as usize % 16) {
        eprintln!(";; M\n{}\n;; M' ({:?})\n{}", case.m.wat(), case.what, case.m2.wat());
        if let Some(m3) = &case.m3 {
            eprintln!(";; M''\n{}", m3.wat());
        }
        panic!("patched M and fresh M' differ: {why}");
    }
});
