//! Frame transfer with two stacked bundles under random operation
//! sequences (docs/transfer.md, "Maps never chain"): bundles A and B both
//! replace `worker` (made against the target, each with a map from the
//! target's own code), applied in either order, reverted in any order,
//! reversed and timed out at random, while workers never leave their
//! loop. A frame moves only between the target's code and the version its
//! function has in the world the thread moves to, so a worker living in
//! A's loop waits when B comes on top, and the transition waits with it
//! until it is reversed or the workers stop. Checked after every
//! operation:
//!
//! - no turn mixes versions (each turn records its version as it begins
//!   and as it ends, and the two agree);
//! - outside a transition, every turn begun runs the version of the newest
//!   applied bundle (or the target's own);
//! - at the end, each worker's carried sum is exactly what its own turns
//!   added.

use crate::random_ops::{patch_op, PatchOp};
use crate::transfer_random::worker;
use crate::transitions::{func, setup_host_with};
use patch_format::{diff, DiffOptions};
use proptest::prelude::*;
use wasm_patch_runtime::*;

/// The versions: the target's and the two bundles'.
const V0: i32 = 1;
const VERSIONS: [i32; 2] = [1000, 20000];

#[derive(Clone, Debug)]
enum Op {
    /// Apply, revert or reverse (`random_ops.rs`).
    Patch(PatchOp),
    Steps(u8),
    Spawn,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..24).prop_map(Op::Steps),
        1 => Just(Op::Spawn),
        3 => (0u8..2, any::<bool>()).prop_map(|(k, t)| Op::Patch(PatchOp::Apply(k, t))),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(k, t)| Op::Patch(PatchOp::Revert(k, t))),
        1 => Just(Op::Patch(PatchOp::Reverse)),
    ]
}

fn is_version(v: i32) -> bool {
    v == V0 || VERSIONS.contains(&v)
}

/// Begin and end of every turn agree; every value is a version's.
fn check_turns(rec: &[(ThreadId, i32)]) -> Result<(), String> {
    let mut open: std::collections::HashMap<ThreadId, i32> = Default::default();
    for &(t, v) in rec {
        if is_version(v) {
            if let Some(b) = open.insert(t, v) {
                return Err(format!("{t}: turn of {b} never ended before a turn of {v}"));
            }
        } else if is_version(-v) {
            match open.remove(&t) {
                Some(b) if b == -v => {}
                b => return Err(format!("{t}: a turn begun as {b:?} ended as {}", -v)),
            }
        } else if v != 0 {
            return Err(format!("{t}: recorded {v}"));
        }
    }
    Ok(())
}

/// Run `ops`, stop the workers and check; returns the versions each
/// worker's turns ran, in order.
fn run(ops: &[Op]) -> Result<Vec<Vec<i32>>, String> {
    // The two bundles renumber the locals differently from each other.
    let old = worker(V0, "(local $i i32) (local $acc i32)");
    let news = [
        worker(VERSIONS[0], "(local $acc i32) (local $i i32)"),
        worker(
            VERSIONS[1],
            "(local $i i32) (local $pad i64) (local $acc i32)",
        ),
    ];
    let opts = DiffOptions {
        transfer: vec!["worker".into()],
        ..Default::default()
    };
    let o = wat::parse_str(&old).unwrap();
    let bytes: Vec<Vec<u8>> = news
        .iter()
        .map(|n| {
            let b = diff(&o, &wat::parse_str(n).unwrap(), &opts)
                .expect("diff")
                .bundle;
            assert!(
                b.transfers().refused.is_empty(),
                "maps: {:?}",
                b.transfers()
            );
            b.to_bytes()
        })
        .collect();
    let engine = Engine::new(Config {
        frame_transfer: true,
        ..Default::default()
    })
    .unwrap();
    let (mut store, inst) = setup_host_with(engine, &old);
    let mut workers = vec![store.spawn(func(&store, inst, "worker"), &[]).unwrap()];
    let mut kinds: std::collections::HashMap<PatchId, usize> = Default::default();
    for (at, op) in ops.iter().enumerate() {
        let quiet_before = store.transition_patch().is_none();
        let seen = store.data().rec_by.len();
        let ctx = |e: String| format!("after op {at} ({op:?}): {e}");
        match *op {
            Op::Steps(n) => {
                store.run_steps(n as usize);
            }
            Op::Spawn => workers.push(store.spawn(func(&store, inst, "worker"), &[]).unwrap()),
            Op::Patch(p) => patch_op(&mut store, inst, &bytes, &mut kinds, p).map_err(ctx)?,
        }
        let rec = &store.data().rec_by;
        check_turns(rec).map_err(ctx)?;
        if let Op::Steps(_) = op {
            if quiet_before && store.transition_patch().is_none() {
                let want = store
                    .applied()
                    .last()
                    .map_or(V0, |a| VERSIONS[kinds[&a.id]]);
                if let Some((t, v)) = rec[seen..]
                    .iter()
                    .find(|(_, v)| is_version(*v) && *v != want)
                {
                    return Err(ctx(format!(
                        "{t} began a turn of {v} with {want} the world's"
                    )));
                }
            }
        }
    }
    // Stop the workers: they leave their loops, so any transition ends.
    func(&store, inst, "stop")
        .call(&mut store, &[])
        .map_err(|e| e.to_string())?;
    for &t in &workers {
        let acc = match store.join(t) {
            Ok(v) => v[0].i32().unwrap(),
            Err(e) => return Err(format!("{t}: {e}")),
        };
        let added: i32 = (store.data().rec_by.iter())
            .filter(|(id, v)| *id == t && is_version(*v))
            .map(|(_, v)| v)
            .sum();
        if acc != added {
            return Err(format!("{t}: carried {acc}, but its turns added {added}"));
        }
    }
    check_turns(&store.data().rec_by)?;
    Ok(workers
        .iter()
        .map(|&t| {
            let mut v: Vec<i32> = Vec::new();
            for &(id, x) in &store.data().rec_by {
                if id == t && is_version(x) && v.last() != Some(&x) {
                    v.push(x);
                }
            }
            v
        })
        .collect())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // STACKED_CASES=N explores more.
        cases: std::env::var("STACKED_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn stacked_transfer_bundles_keep_turns_whole_and_state_intact(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(&ops).map_err(TestCaseError::fail)?;
    }
}

/// The harness reaches the stacked case: with A applied and its worker in
/// A's loop, B's transition waits (no map leads from A's code), is
/// reversed, and once A is reverted (the worker moves back) B moves the
/// worker from the target's code.
#[test]
fn a_worker_in_one_bundles_loop_waits_for_the_next_until_it_is_back_home() {
    let ops = [
        Op::Steps(6),
        Op::Patch(PatchOp::Apply(0, false)),
        Op::Steps(12),
        Op::Patch(PatchOp::Apply(1, false)),
        Op::Steps(40),
        Op::Patch(PatchOp::Reverse),
        Op::Steps(12),
        Op::Patch(PatchOp::Revert(0, false)),
        Op::Steps(12),
        Op::Patch(PatchOp::Apply(1, false)),
        Op::Steps(12),
    ];
    let runs = run(&ops).unwrap();
    assert_eq!(runs, vec![vec![V0, VERSIONS[0], V0, VERSIONS[1]]]);
}
