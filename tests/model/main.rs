//! Model-based test of the consistency rules (issue 11): random operation
//! sequences run against the real runtime and against an executable model
//! of `CONSISTENCY.md`, compared after every operation. See
//! `docs/model-testing.md`.
//!
//! `cargo test --test model` runs a fixed-seed budget; `MODEL_CASES`,
//! `MODEL_SEED`, `MODEL_LEN` and `MODEL_SKIP` change it.

mod guest;
mod model;
mod ops;
mod regressions;
mod runner;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::cell::RefCell;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Random sequences against the model. Each counterexample is shrunk and
/// printed as a `replay(&[...])` call; after one, the search goes on with
/// the next seed until the budget of sequences is spent.
#[test]
fn random_sequences_follow_the_model() {
    let budget = env_u64("MODEL_CASES", 600);
    let max_len = env_u64("MODEL_LEN", 30) as usize;
    let mut seed = env_u64("MODEL_SEED", 11);
    // Each sequence runs in a forked child (MODEL_FORK=0: in this
    // process, faster), so that a crash (SIGSEGV) is a counterexample that
    // shrinks like any other instead of the end of the run.
    let fork = std::env::var("MODEL_FORK").map_or(true, |v| v != "0");
    let counts = RefCell::new(runner::Counts::default());
    let mut found = Vec::new();
    let mut explored = 0u64;
    while explored < budget {
        let cases = (budget - explored) as u32;
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2_000,
            ..Config::default()
        };
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let before = counts.borrow().sequences;
        let result = runner.run(&ops::sequence(max_len), |seq| {
            let mut c = counts.borrow_mut();
            if fork {
                runner::check_forked(&seq, &mut c).map_err(TestCaseError::fail)
            } else {
                runner::check(&seq, &mut c).map_err(TestCaseError::fail)
            }
        });
        match result {
            Ok(()) => explored = budget,
            Err(TestError::Fail(why, seq)) => {
                // Shrinking runs count as sequences too; the budget counts
                // the generated ones only (roughly: one per seed's cases).
                explored += (counts.borrow().sequences - before).min(cases as u64);
                if !found.iter().any(|(w, _)| *w == why.to_string()) {
                    eprintln!(
                        "counterexample {} (seed {seed}): {why}\nreplay({});\n",
                        found.len() + 1,
                        ops::listing(&seq)
                    );
                }
                found.push((why.to_string(), seq));
            }
            Err(TestError::Abort(why)) => panic!("proptest aborted: {why}"),
        }
        seed += 1;
    }
    let c = *counts.borrow();
    let mut distinct: Vec<&String> = found.iter().map(|(w, _)| w).collect();
    distinct.sort();
    distinct.dedup();
    eprintln!(
        "model: {} sequences, {} operations, {} counterexamples ({} distinct)",
        c.sequences,
        c.operations,
        found.len(),
        distinct.len()
    );
    assert!(
        found.is_empty(),
        "{} counterexamples (printed above)",
        found.len()
    );
}
