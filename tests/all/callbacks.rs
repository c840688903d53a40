//! Patch callbacks run alone (docs/consistency.md rule 13): no other guest
//! thread gets a turn while a callback runs. Attacks on what used to go
//! wrong when they did: a vetoing pre-patch callback that yielded let other
//! threads work, and the veto's memory restore then wiped that work out
//! from under threads that had already moved on; a callback that parked
//! was left in the store with its code freed; threads a vetoed callback
//! spawned ran against the restored memory.

use crate::transitions::{app_with, bytes_with, func, setup_host, snapshot, Host};
use patch_format::{CallbackKind, DiffOptions};
use wasm_patch_runtime::{ApplyOptions, PatchError, Store};

/// `writer` stores 7 at address 200 and records 5; `v0` with `pre` added
/// as the pre-patch callback of a bundle that also changes `f`.
fn versions(pre_body: &str) -> (String, String, DiffOptions) {
    let writer = "(func (export \"writer\")
        (i32.store8 (i32.const 200) (i32.const 7))
        (call $record (i32.const 5)))";
    let v0 = app_with("i32.const 0", "i32.const 0", writer);
    let new = app_with(
        "i32.const 1",
        "i32.const 0",
        &format!("{writer}\n(func $pre (result i32) {pre_body})"),
    );
    let opts = DiffOptions {
        callbacks: vec![(CallbackKind::PrePatch, "pre".into())],
        ..Default::default()
    };
    (v0, new, opts)
}

fn apply_err(store: &mut Store<Host>, inst: wasm_patch_runtime::Instance, bytes: &[u8]) -> String {
    match store.apply(inst, bytes, &ApplyOptions::default()) {
        Err(PatchError::Vetoed(why)) => why,
        other => panic!("expected a veto, got {other:?}"),
    }
}

/// A vetoing callback that yields: the writer, ready before the apply,
/// must not run during the callback, so the veto's restore cannot undo
/// its store; it runs afterwards and its byte stays.
#[test]
fn a_vetoing_callback_that_yields_does_not_undo_another_threads_work() {
    let (v0, new, opts) = versions("call $yield i32.const 1");
    let (mut store, inst) = setup_host(&v0);
    let writer = func(&store, inst, "writer");
    let w = store.spawn(writer, &[]).unwrap();
    apply_err(&mut store, inst, &bytes_with(&v0, &new, &opts));
    assert_eq!(store.data().rec, Vec::<i32>::new(), "the writer ran");
    store.join(w).unwrap();
    assert_eq!(store.data().rec, vec![5]);
    let mem = snapshot(&mut store, inst);
    assert_eq!(mem[200], 7, "the writer's store was undone");
}

/// An accepting callback that yields sees no other thread's work between
/// its own steps: the records come out 81, 82 and only then the writer's 5.
#[test]
fn a_callback_that_yields_runs_alone_to_its_end() {
    let (v0, new, opts) = versions(
        "(call $record (i32.const 81)) call $yield (call $record (i32.const 82)) i32.const 0",
    );
    let (mut store, inst) = setup_host(&v0);
    let writer = func(&store, inst, "writer");
    let w = store.spawn(writer, &[]).unwrap();
    store
        .apply(
            inst,
            &bytes_with(&v0, &new, &opts),
            &ApplyOptions::default(),
        )
        .unwrap();
    store.join(w).unwrap();
    assert_eq!(store.data().rec, vec![81, 82, 5]);
}

/// A callback that parks can never be woken (it runs alone): the apply is
/// vetoed with a message that says so, and no thread is left behind with
/// the refused bundle's code, which is freed.
#[test]
fn a_callback_that_parks_is_a_veto_and_leaves_no_thread_behind() {
    let (v0, new, opts) = versions("call $park i32.const 0");
    let (mut store, inst) = setup_host(&v0);
    let writer = func(&store, inst, "writer");
    let w = store.spawn(writer, &[]).unwrap();
    let before = store.threads();
    let why = apply_err(&mut store, inst, &bytes_with(&v0, &new, &opts));
    assert!(why.contains("parked") && why.contains("alone"), "{why}");
    assert_eq!(store.threads(), before, "a thread was left behind");
    // Waking every thread the host can name runs nothing of the bundle.
    for t in store.threads() {
        store.unpark(t);
    }
    store.join(w).unwrap();
    store.run().unwrap();
    assert_eq!(store.data().rec, vec![5]);
    assert_eq!(crate::transitions::call(&mut store, inst, "call_f"), 0);
    // The store still patches.
    let (_, plain, _) = versions("i32.const 0");
    let ok = bytes_with(&v0, &plain, &DiffOptions::default());
    store.apply(inst, &ok, &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(crate::transitions::call(&mut store, inst, "call_f"), 1);
}

/// Threads a vetoed callback spawned go with the veto: they never run
/// (`$child` would record `f()`), and the store has no more threads than
/// before.
#[test]
fn threads_a_vetoed_callback_spawned_never_run() {
    let (v0, new, opts) = versions("i32.const 0 i32.const 0 call $spawn drop i32.const 1");
    let (mut store, inst) = setup_host(&v0);
    let before = store.threads();
    apply_err(&mut store, inst, &bytes_with(&v0, &new, &opts));
    assert_eq!(store.threads(), before);
    store.run().unwrap();
    assert_eq!(store.data().rec, Vec::<i32>::new(), "the child ran");
}

/// The threads an accepting callback spawned are the guest's: they run
/// after the apply, in the new world.
#[test]
fn threads_an_accepting_callback_spawned_run_after_it() {
    let (v0, new, opts) = versions("i32.const 0 i32.const 0 call $spawn drop i32.const 0");
    let (mut store, inst) = setup_host(&v0);
    store
        .apply(
            inst,
            &bytes_with(&v0, &new, &opts),
            &ApplyOptions::default(),
        )
        .unwrap();
    store.run().unwrap();
    store.wait_transition().unwrap();
    assert_eq!(store.data().rec, vec![1], "the child records the new f()");
}

/// A pre-unpatch callback that parks cannot veto a revert (rule 13): it is
/// cancelled, the failure is in the transcript, the revert completes, and
/// the writer that was ready throughout runs only afterwards.
#[test]
fn a_pre_unpatch_callback_that_parks_fails_and_the_revert_goes_on() {
    let (v0, _, _) = versions("i32.const 0");
    let writer = "(func (export \"writer\")
        (i32.store8 (i32.const 200) (i32.const 7))
        (call $record (i32.const 5)))";
    let new = app_with(
        "i32.const 1",
        "i32.const 0",
        &format!("{writer}\n(func $pre_un (result i32) call $park i32.const 0)"),
    );
    let opts = DiffOptions {
        callbacks: vec![(CallbackKind::PreUnpatch, "pre_un".into())],
        ..Default::default()
    };
    let (mut store, inst) = setup_host(&v0);
    let p = store
        .apply(
            inst,
            &bytes_with(&v0, &new, &opts),
            &ApplyOptions::default(),
        )
        .unwrap();
    store.wait_transition().unwrap();
    assert_eq!(crate::transitions::call(&mut store, inst, "call_f"), 1);
    let before = store.threads();
    let w = store.spawn(func(&store, inst, "writer"), &[]).unwrap();
    store.revert(p, None).unwrap();
    assert_eq!(store.data().rec, Vec::<i32>::new(), "the writer ran");
    store.wait_transition().unwrap();
    let failed = crate::transitions::transcript(&store)
        .into_iter()
        .any(|e| e.contains("pre-unpatch callback failed") && e.contains("parked"));
    assert!(failed, "{:?}", crate::transitions::transcript(&store));
    store.join(w).unwrap();
    assert_eq!(store.data().rec, vec![5]);
    assert_eq!(store.threads(), before, "the callback's thread is gone");
    assert!(store.applied().is_empty());
    assert_eq!(crate::transitions::call(&mut store, inst, "call_f"), 0);
}

/// A callback may spawn a helper thread and wait for it (yielding until the
/// helper sets a flag): the helper is part of the callback's work and runs,
/// while the writer that was ready before the apply still does not. On the
/// veto the helper's write goes with the callback's. (Running the callback
/// strictly alone made this apply spin for ever.)
#[test]
fn a_callback_waits_for_a_helper_it_spawned() {
    let helper = "(global $flag (mut i32) (i32.const 0))
        (elem (i32.const 1) func $helper)
        (func $helper (param i32) (global.set $flag (i32.const 1)))
        (func (export \"flag\") (result i32) global.get $flag)";
    let waits = |ret: i32| {
        format!(
            "(drop (call $spawn (i32.const 1) (i32.const 0)))
             (block $done (loop $l
               (br_if $done (global.get $flag)) call $yield br $l))
             (call $record (i32.const 81)) i32.const {ret}"
        )
    };
    for veto in [1, 0] {
        let writer = "(func (export \"writer\")
            (i32.store8 (i32.const 200) (i32.const 7))
            (call $record (i32.const 5)))";
        let extra = format!("{writer}\n{helper}");
        let v0 = app_with("i32.const 0", "i32.const 0", &extra);
        let new = app_with(
            "i32.const 1",
            "i32.const 0",
            &format!("{extra}\n(func $pre (result i32) {})", waits(veto)),
        );
        let opts = DiffOptions {
            callbacks: vec![(CallbackKind::PrePatch, "pre".into())],
            ..Default::default()
        };
        let (mut store, inst) = setup_host(&v0);
        let w = store.spawn(func(&store, inst, "writer"), &[]).unwrap();
        let r = store.apply(
            inst,
            &bytes_with(&v0, &new, &opts),
            &ApplyOptions::default(),
        );
        assert_eq!(
            store.data().rec,
            vec![81],
            "veto {veto}: only the callback ran"
        );
        let flag = crate::transitions::call(&mut store, inst, "flag");
        if veto == 1 {
            assert!(matches!(r, Err(PatchError::Vetoed(_))), "{r:?}");
            assert_eq!(flag, 0, "the helper's write went with the veto");
        } else {
            r.unwrap();
            assert_eq!(flag, 1);
        }
        store.join(w).unwrap();
        store.run().unwrap();
        assert_eq!(store.data().rec, vec![81, 5]);
    }
}
