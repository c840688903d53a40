//! Frame transfer under random operation sequences: workers that never
//! leave their loop while a bundle with a transfer map is applied,
//! reverted, reversed and timed out in random orders, with random
//! scheduler slices between them. Checked after every operation:
//!
//! - no turn mixes versions: each turn records its version when it begins
//!   and again when it ends, and the two agree (frames move only at loop
//!   headers, docs/transfer.md);
//! - outside a transition, every turn begun runs the version the store
//!   has applied (both maps exist, so no worker is ever left behind);
//! - at the end, each worker's carried sum equals what its own turns
//!   added: the state crossed every move intact, forward and back.
//!
//! Half the cases carry the sum and the count as loop parameters, in the
//! other order in the new version ([`with_loop_params`]).

use crate::transitions::{func, setup_host_with};
use patch_format::{diff, DiffOptions};
use proptest::prelude::*;
use std::time::Duration;
use wasm_patch_runtime::*;

/// Version `k`'s worker: each turn records `k` as it begins, adds `k` to
/// `$acc`, counts in `$i`, yields twice inside `$helper` and records `-k`
/// as it ends. `decl` orders the two locals (the versions differ in it,
/// so the map renumbers them).
pub(crate) fn worker(k: i32, decl: &str) -> String {
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (import "env" "record" (func $record (param i32)))
          (global $stop (mut i32) (i32.const 0))
          (func $helper (local $j i32)
            (loop $h
              (call $yield)
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $h (i32.lt_u (local.get $j) (i32.const 2)))))
          (func $worker (export "worker") (result i32) {decl}
            (loop $l
              (call $record (i32.const {k}))
              (local.set $acc (i32.add (local.get $acc) (i32.const {k})))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (call $helper)
              (call $record (i32.const -{k}))
              (br_if $l (i32.eqz (global.get $stop))))
            (call $record (i32.mul (local.get $i) (i32.const 0)))
            (local.get $acc))
          (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

/// `src` ([`worker`]) whose loop carries `$acc` and `$i` as loop
/// parameters, in the order `first`, `second`: kept in the locals at the
/// header, passed back by the `br_if`.
fn with_loop_params(src: &str, first: &str, second: &str) -> String {
    let head = format!(
        "(i32.const 0) (i32.const 0) (loop $l (param i32 i32) (local.set {second}) (local.set {first})"
    );
    let tail = format!(
        "(local.get {first}) (local.get {second}) (br_if $l (i32.eqz (global.get $stop))) (drop) (drop))"
    );
    let out = src.replacen("(loop $l", &head, 1).replacen(
        "(br_if $l (i32.eqz (global.get $stop))))",
        &tail,
        1,
    );
    assert!(out.contains("(param i32 i32)") && out.contains("(drop) (drop))"));
    out
}

const OLD: i32 = 1;
const NEW: i32 = 1000;

#[derive(Clone, Debug)]
enum Op {
    /// Run this many scheduler steps.
    Steps(u8),
    /// Start another worker.
    Spawn,
    /// Apply the bundle (when nothing is applied and no transition runs);
    /// with a zero timeout it is reversed at the first pass that finds a
    /// thread pending.
    Apply { timeout0: bool },
    /// Revert it (when applied and no transition runs), maybe with a zero
    /// timeout.
    Revert { timeout0: bool },
    /// Reverse the transition in progress.
    Reverse,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..24).prop_map(Op::Steps),
        1 => Just(Op::Spawn),
        2 => any::<bool>().prop_map(|timeout0| Op::Apply { timeout0 }),
        2 => any::<bool>().prop_map(|timeout0| Op::Revert { timeout0 }),
        1 => Just(Op::Reverse),
    ]
}

/// Each thread's records: begin and end of every turn agree, and every
/// value is a version's (`±OLD`, `±NEW`) or the final 0.
fn check_turns(rec: &[(ThreadId, i32)]) -> Result<(), String> {
    let mut open: std::collections::HashMap<ThreadId, i32> = Default::default();
    for &(t, v) in rec {
        match v {
            OLD | NEW => {
                if let Some(b) = open.insert(t, v) {
                    return Err(format!("{t}: turn of {b} never ended before a turn of {v}"));
                }
            }
            v if v == -OLD || v == -NEW => match open.remove(&t) {
                Some(b) if b == -v => {}
                b => return Err(format!("{t}: a turn begun as {b:?} ended as {}", -v)),
            },
            0 => {}
            v => return Err(format!("{t}: recorded {v}")),
        }
    }
    Ok(())
}

/// Run `ops`; with `memory`, the module has a memory, so its polls read
/// the memory's poll hint instead of the thread's poll word; with
/// `params`, the loop carries its state as loop parameters (swapped in the
/// new version).
fn run(ops: &[Op], memory: bool, params: bool) -> Result<(), String> {
    let with = |src: String, order: [&str; 2]| {
        let src = if memory {
            src.replacen("(global $stop", "(memory 1) (global $stop", 1)
        } else {
            src
        };
        if params {
            with_loop_params(&src, order[0], order[1])
        } else {
            src
        }
    };
    let old = with(
        worker(OLD, "(local $i i32) (local $acc i32)"),
        ["$acc", "$i"],
    );
    let new = with(
        worker(NEW, "(local $acc i32) (local $i i32)"),
        ["$i", "$acc"],
    );
    let opts = DiffOptions {
        transfer: vec!["worker".into()],
        ..Default::default()
    };
    let (o, n) = (wat::parse_str(&old).unwrap(), wat::parse_str(&new).unwrap());
    let d = diff(&o, &n, &opts).expect("diff");
    let b = d.bundle;
    assert!(
        b.transfers().refused.is_empty(),
        "the worker maps: {:?}",
        b.transfers()
    );
    let bytes = b.to_bytes();
    let engine = Engine::new(Config {
        frame_transfer: true,
        ..Default::default()
    })
    .unwrap();
    let (mut store, inst) = setup_host_with(engine, &old);
    let mut workers = vec![store.spawn(func(&store, inst, "worker"), &[]).unwrap()];
    let mut applied: Option<PatchId> = None;
    let timeout = |zero: bool| zero.then_some(Duration::ZERO);
    for (at, op) in ops.iter().enumerate() {
        let quiet_before = store.transition_status().is_none();
        let seen = store.data().rec_by.len();
        match *op {
            Op::Steps(n) => {
                store.run_steps(n as usize);
            }
            Op::Spawn => workers.push(store.spawn(func(&store, inst, "worker"), &[]).unwrap()),
            Op::Apply { timeout0 } => {
                if applied.is_none() && quiet_before {
                    let opts = ApplyOptions {
                        timeout: timeout(timeout0),
                        ..ApplyOptions::default()
                    };
                    applied = Some(
                        store
                            .apply(inst, &bytes, &opts)
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
            Op::Revert { timeout0 } => {
                if let (Some(p), true) = (applied, quiet_before) {
                    store
                        .revert(p, timeout(timeout0))
                        .map_err(|e| e.to_string())?;
                }
            }
            Op::Reverse => {
                if !quiet_before {
                    store.reverse().map_err(|e| e.to_string())?;
                }
            }
        }
        // The cheap query agrees with the full one.
        let status = store.transition_status().map(|t| t.patch);
        if store.transition_patch() != status {
            return Err(format!(
                "after op {at} ({op:?}): transition_patch {:?}, status {status:?}",
                store.transition_patch()
            ));
        }
        // Which bundle is applied now: the store's answer, once no
        // transition runs (a reversed apply or revert changes it).
        if store.transition_status().is_none() {
            applied = store.applied().first().map(|a| a.id);
        }
        let rec = &store.data().rec_by;
        check_turns(rec).map_err(|e| format!("after op {at} ({op:?}): {e}"))?;
        if let Op::Steps(_) = op {
            if quiet_before && store.transition_status().is_none() {
                let want = if applied.is_some() { NEW } else { OLD };
                if let Some((t, v)) = rec[seen..]
                    .iter()
                    .find(|(_, v)| (*v == OLD || *v == NEW) && *v != want)
                {
                    return Err(format!(
                        "after op {at} ({op:?}): {t} began a turn of {v} with {want} the only world"
                    ));
                }
            }
        }
    }
    // Stop the workers: every transition can end (maps lead both ways and
    // the workers leave their loops), then each one's sum must be exactly
    // what its own turns added.
    func(&store, inst, "stop")
        .call(&mut store, &[])
        .map_err(|e| e.to_string())?;
    for &t in &workers {
        let acc = match store.join(t) {
            Ok(v) => v[0].i32().unwrap(),
            Err(e) => return Err(format!("{t}: {e}")),
        };
        let rec = &store.data().rec_by;
        let added: i32 = rec
            .iter()
            .filter(|(id, v)| *id == t && (*v == OLD || *v == NEW))
            .map(|(_, v)| v)
            .sum();
        if acc != added {
            return Err(format!("{t}: carried {acc}, but its turns added {added}"));
        }
    }
    check_turns(&store.data().rec_by)?;
    // What each worker's turns ran, in order, versions only.
    let runs = workers
        .iter()
        .map(|&t| {
            let mut v: Vec<i32> = Vec::new();
            for &(id, x) in &store.data().rec_by {
                if id == t && (x == OLD || x == NEW) && v.last() != Some(&x) {
                    v.push(x);
                }
            }
            v
        })
        .collect();
    LAST_RUNS.with(|r| *r.borrow_mut() = runs);
    Ok(())
}

thread_local! {
    /// The version sequence of each worker of the last `run` on this
    /// thread (`[OLD, NEW, OLD]`: moved forward, then back).
    static LAST_RUNS: std::cell::RefCell<Vec<Vec<i32>>> = Default::default();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_applies_reverts_and_reverses_keep_turns_whole_and_state_intact(
        ops in proptest::collection::vec(op(), 1..40),
        memory in any::<bool>(),
        params in any::<bool>(),
    ) {
        run(&ops, memory, params).map_err(TestCaseError::fail)?;
    }
}

/// The harness exercises what it claims: on a fixed sequence, one worker's
/// turns run the old version, then the new one (moved forward), then the
/// old one again (moved back), all on one frame with its sum intact.
#[test]
fn a_fixed_sequence_moves_a_worker_forward_and_back() {
    let ops = [
        Op::Steps(6),
        Op::Apply { timeout0: false },
        Op::Steps(12),
        Op::Revert { timeout0: false },
        Op::Steps(12),
    ];
    for (memory, params) in [(false, false), (true, false), (false, true)] {
        run(&ops, memory, params).unwrap();
        let runs = LAST_RUNS.with(|r| r.borrow().clone());
        assert_eq!(
            runs,
            vec![vec![OLD, NEW, OLD]],
            "memory: {memory}, params: {params}"
        );
    }
}
