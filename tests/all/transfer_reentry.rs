//! Frame transfer, attacked through the code a frame lands in when it is
//! moved back (docs/transfer.md, "Maps back"): after a revert, a worker
//! that lives in its loop runs the target's own function from an OSR entry
//! compiled into the reverted bundle's code unit. That code must still
//! count as the target's function everywhere: for later bundles' stack
//! checks (else a thread inside it would switch while running the old
//! loop), for a later transfer, and for reclaim (the unit it runs in must
//! stay mapped).

use crate::transitions::{apply, func, setup_host_with, Host};
use patch_format::{diff, DiffOptions};
use wasm_patch_runtime::*;

/// A worker that lives in its loop until `stop`: each turn adds `k` to
/// `$acc` and counts in `$i`, yielding inside `$helper`; it returns `$acc`.
fn worker(k: i32) -> String {
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (global $stop (mut i32) (i32.const 0))
          (func $helper (call $yield))
          (func $worker (export "worker") (result i32) (local $acc i32) (local $i i32)
            (loop $l
              (local.set $acc (i32.add (local.get $acc) (i32.const {k})))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (call $helper)
              (br_if $l (i32.eqz (global.get $stop))))
            (local.get $acc))
          (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

fn bundle(old: &str, new: &str, transfer: bool) -> Vec<u8> {
    let opts = DiffOptions {
        transfer: if transfer {
            vec!["worker".to_string()]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let (o, n) = (wat::parse_str(old).unwrap(), wat::parse_str(new).unwrap());
    diff(&o, &n, &opts).expect("diff").bundle.to_bytes()
}

/// A worker running, a bundle with a map applied (the frame moved), then
/// reverted (the frame moved back into the target's function, from code in
/// the bundle's unit). Returns the store, the instance and the worker.
fn moved_back() -> (Store<Host>, Instance, ThreadId) {
    let engine = Engine::new(Config {
        frame_transfer: true,
        ..Default::default()
    })
    .unwrap();
    let (mut store, inst) = setup_host_with(engine, &worker(1));
    let t = store.spawn(func(&store, inst, "worker"), &[]).unwrap();
    store.run_steps(3);
    let p = apply(&mut store, inst, &bundle(&worker(1), &worker(1000), true));
    store.run_steps(4);
    assert!(store.transition_status().is_none(), "moved forward");
    store.revert(p, None).expect("revert starts");
    store.run_steps(4);
    assert!(store.transition_status().is_none(), "moved back");
    assert!(store.applied().is_empty());
    (store, inst, t)
}

/// Stop the worker and return its `$acc`.
fn finish(store: &mut Store<Host>, inst: Instance, t: ThreadId) -> i32 {
    func(store, inst, "stop").call(store, &[]).unwrap();
    crate::i32_of(store.join(t))
}

/// A later bundle that changes `worker` without a map must find the worker
/// (running the target's function from the moved-back code) on the stack
/// and wait for it; it must not switch the thread while its old loop runs.
#[test]
fn moved_back_code_still_blocks_a_later_bundle_without_a_map() {
    let (mut store, inst, t) = moved_back();
    let p2 = store
        .apply(
            inst,
            &bundle(&worker(1), &worker(100_000), false),
            &ApplyOptions::default(),
        )
        .expect("apply");
    store.run_steps(8);
    let st = store
        .transition_status()
        .expect("the worker lives in `worker`: the transition cannot complete");
    assert_eq!(st.pending, 1);
    assert_eq!(st.blockers[0].frame.name, "worker");
    // And status says it lives in that loop, with the advice a thread in
    // the module's own code would get.
    let lb = st.blockers[0].in_loop.as_ref().expect("blocked in a loop");
    assert!(!lb.mapped && lb.stuck.is_none(), "{lb}");
    assert!(lb.to_string().contains("diff --transfer worker"), "{lb}");
    // Reversed: the worker never ran the third version.
    store.reverse().expect("reverse");
    store.run_steps(4);
    assert!(store.transition_status().is_none());
    assert!(store.applied().iter().all(|a| a.id != p2));
    let acc = finish(&mut store, inst, t);
    assert!(
        acc < 100_000,
        "acc {acc}: a turn of the unapplied version ran"
    );
}

/// A later bundle with a map moves the worker forward again from the
/// moved-back code, and every turn's version shows in `$acc`.
#[test]
fn moved_back_code_transfers_forward_to_a_later_bundle() {
    let (mut store, inst, t) = moved_back();
    apply(
        &mut store,
        inst,
        &bundle(&worker(1), &worker(100_000), true),
    );
    store.run_steps(6);
    assert!(
        store.transition_status().is_none(),
        "the worker moved to the later bundle: {:?}",
        store.transition_status().map(|s| s.blockers)
    );
    let acc = finish(&mut store, inst, t);
    // Turns of all three versions ran, in that order, on one frame.
    assert!(acc > 100_000 + 1000, "acc {acc}");
    assert!(acc % 100_000 % 1000 >= 1, "acc {acc}: no turn of v0");
}

/// The unit holding the moved-back code stays mapped while the worker runs
/// in it, and goes at the next completed transition once the worker has
/// left it (reclaim runs at completions).
#[test]
fn moved_back_code_keeps_its_unit_until_the_worker_leaves() {
    let (mut store, inst, t) = moved_back();
    // Other work drives reclaim passes; the worker keeps running its loop.
    for _ in 0..3 {
        store.run_steps(4);
        assert!(
            store.reclaim_pending() >= 1,
            "the reverted bundle's unit was dropped while a frame runs in it"
        );
    }
    let acc = finish(&mut store, inst, t);
    assert!(acc > 1000, "acc {acc}");
    apply(&mut store, inst, &bundle(&worker(1), &worker(5), false));
    store.run_steps(1);
    assert!(store.transition_status().is_none());
    assert_eq!(
        store.reclaim_pending(),
        0,
        "the unit outlived its last frame"
    );
}
