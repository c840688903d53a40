//! Inlining across patchable calls (`Config::inline`,
//! docs/consistency.md rule 18): small leaf functions are inlined into
//! their callers, and a bundle that changes one also replaces every
//! function that inlined it, so that each rule holds exactly as if nothing
//! had been inlined.
//!
//! Every test here fails when the dependent recompilation is switched off
//! (the bundle then replaces only the callee, and its inlined copies keep
//! running the old body).

use crate::transitions::{bytes_with, host_linker, imm, transcript, wake, Host};
use patch_format::DiffOptions;
use wasm_patch_runtime::*;

/// `f(x) = x + F` and `h(x) = x + H` are inlinable (no loop, no call); `g`
/// inlines both, `k` and `step` inline `f`. `step` reads `f` before and
/// after it parks, so one activation that saw two versions would show:
/// it returns `100 * before + after`. `w` parks, then calls `g` and records
/// it plus `W`. `div` inlines `q`, which divides.
fn app(f: i32, h: i32, w: i32) -> String {
    app_with(f, h, w, "")
}

/// [`app`] with `extra` functions.
fn app_with(f: i32, h: i32, w: i32, extra: &str) -> String {
    format!(
        r#"(module
      (import "env" "park" (func $park))
      (import "env" "record" (func $record (param i32)))
      (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
      (import "wasm-patch" "yield" (func $yield))
      (table 1 funcref)
      (elem (i32.const 0) func $child)
      (func $child (param i32) call $step drop)
      (func $f (param i32) (result i32) local.get 0 i32.const {f} i32.add)
      (func $h (param i32) (result i32) local.get 0 i32.const {h} i32.add)
      (func $q (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
      (func $g (param i32) (result i32) local.get 0 call $f call $h)
      (func $k (param i32) (result i32) local.get 0 call $f i32.const 1000 i32.add)
      (func $step (export "step") (result i32)
        (local $a i32)
        i32.const 0 call $f local.set $a
        call $park
        local.get $a i32.const 100 i32.mul
        i32.const 0 call $f i32.add)
      (func $w (export "w") (result i32)
        call $park
        i32.const 0 call $g i32.const {w} i32.add call $record
        i32.const 0)
      (func (export "call_g") (result i32) i32.const 0 call $g)
      (func (export "call_k") (result i32) i32.const 0 call $k)
      (func $div (export "div") (param i32) (result i32) i32.const 100 local.get 0 call $q)
      {extra})"#
    )
}

fn engine(inline: bool) -> Engine {
    // The verifier checks every function after inlining.
    Engine::new(Config {
        inline,
        verify: true,
        ..Config::default()
    })
    .unwrap()
}

fn setup(inline: bool) -> (Store<Host>, Instance, Module) {
    let engine = engine(inline);
    let module = Module::new(&engine, app(1, 10, 0)).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let inst = host_linker(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    (store, inst, module)
}

fn call(store: &mut Store<Host>, inst: Instance, name: &str) -> i32 {
    let f = inst.get_func(store, name).unwrap();
    crate::i32_of(f.call(store, &[]))
}

/// Spawn `name` and run until everything is parked.
fn park(store: &mut Store<Host>, inst: Instance, name: &str) -> ThreadId {
    let f = inst.get_func(store, name).unwrap();
    let id = store.spawn(f, &[]).unwrap();
    store.run().unwrap();
    assert_eq!(store.thread_state(id), Some(RunState::Parked), "{name}");
    id
}

fn index(store: &Store<Host>, inst: Instance, name: &str) -> u32 {
    store.func_index(inst, name).unwrap()
}

/// The bundle changing `f` to `x + 2`.
fn f2() -> Vec<u8> {
    bytes_with(&app(1, 10, 0), &app(2, 10, 0), &DiffOptions::default())
}

/// The bundle changing `h` to `x + 20`.
fn h20() -> Vec<u8> {
    bytes_with(&app(1, 10, 0), &app(1, 20, 0), &DiffOptions::default())
}

#[test]
fn the_dependency_record_names_the_inlined_callees() {
    let (store, inst, module) = setup(true);
    let [f, h, q, g, k, step, w] =
        ["f", "h", "q", "g", "k", "step", "w"].map(|n| index(&store, inst, n));
    assert_eq!(module.inlined_callees(g), vec![f, h]);
    assert_eq!(module.inlined_callees(k), vec![f]);
    assert_eq!(module.inlined_callees(step), vec![f]);
    // `w` calls `g`, which calls: not inlinable. Leaves inline nothing.
    assert!(module.inlined_callees(w).is_empty());
    assert!(module.inlined_callees(f).is_empty());
    assert!(module.inlined_callees(q).is_empty());
    let div = index(&store, inst, "div");
    assert_eq!(module.inlined_callees(div), vec![q]);
    // Off: nothing is inlined.
    let (store, inst, module) = setup(false);
    assert!(module.inlined_callees(index(&store, inst, "g")).is_empty());
}

/// A patched inlined callee takes effect in every caller that inlined it,
/// and the bundle lists them as recompiled.
#[test]
fn a_patched_inlined_callee_takes_effect_in_every_caller() {
    let (mut store, inst, _) = setup(true);
    assert_eq!(call(&mut store, inst, "call_g"), 11);
    assert_eq!(call(&mut store, inst, "call_k"), 1001);
    let p = store.apply(inst, &f2(), &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 12);
    assert_eq!(call(&mut store, inst, "call_k"), 1002);
    let t = store
        .spawn(inst.get_func(&store, "step").unwrap(), &[])
        .unwrap();
    store.run().unwrap();
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 202);
    let info = store.applied().into_iter().find(|a| a.id == p).unwrap();
    let mut expect: Vec<u32> = ["g", "k", "step"].map(|n| index(&store, inst, n)).to_vec();
    expect.sort();
    assert_eq!(info.recompiled, expect);
}

/// Rule 1 with inlining: a thread parked inside `step` (which inlined `f`)
/// blocks the transition by `step`, and its activation finishes on the old
/// `f` (both reads agree); new threads see the new `f` at once. The revert
/// mirrors it. (Without inlining the thread would not be blocked: `f` is
/// not on its stack. Inlined code is changed code, rule 18.)
#[test]
fn a_thread_parked_in_a_caller_switches_only_after_it_leaves_it() {
    let (mut store, inst, _) = setup(true);
    let t = park(&mut store, inst, "step");
    let p = store.apply(inst, &f2(), &ApplyOptions::default()).unwrap();
    let st = store.transition_status().expect("in transition");
    assert_eq!(st.pending, 1, "the thread in step is pending");
    assert_eq!(st.blockers.len(), 1);
    assert_eq!(st.blockers[0].frame.name, "step");
    let mut out = vec![
        call(&mut store, inst, "call_g"),
        call(&mut store, inst, "call_k"),
    ];
    wake(&mut store, t);
    out.push(crate::i32_of(store.join(t)));
    store.wait_transition().unwrap();
    let t = park(&mut store, inst, "step");
    wake(&mut store, t);
    out.push(crate::i32_of(store.join(t)));
    // Revert, with a thread parked inside the recompiled `step`.
    let t = park(&mut store, inst, "step");
    store.revert(p, None).unwrap();
    let st = store.transition_status().expect("in transition");
    assert_eq!(st.blockers.len(), 1);
    assert_eq!(st.blockers[0].frame.name, "step");
    out.push(call(&mut store, inst, "call_g"));
    wake(&mut store, t);
    out.push(crate::i32_of(store.join(t)));
    store.wait_transition().unwrap();
    out.push(call(&mut store, inst, "call_g"));
    out.push(call(&mut store, inst, "call_k"));
    let events = transcript(&store);
    // During the apply: new threads get the new f in g and k; the parked
    // step read the old f before and after parking (101, not 102); the
    // next step is all new. The revert mirrors it.
    assert_eq!(out, vec![12, 1002, 101, 202, 11, 202, 11, 1001]);
    assert!(
        events.contains(&"patch 1: thread 1 blocked by step".to_string()),
        "{events:?}"
    );
}

/// Rule 8: a reverse mid-transition brings the inlined callers back with
/// the callee.
#[test]
fn reverse_mid_transition_restores_the_inlined_callers() {
    let (mut store, inst, _) = setup(true);
    let t = park(&mut store, inst, "step");
    store.apply(inst, &f2(), &ApplyOptions::default()).unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 12, "to world");
    store.reverse().unwrap();
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 101);
    let outcome = store.wait_transition().unwrap();
    assert!(outcome.reversed);
    assert!(store.applied().is_empty());
    assert_eq!(call(&mut store, inst, "call_g"), 11);
    assert_eq!(call(&mut store, inst, "call_k"), 1001);
}

/// Rule 11: bundle 1 changes `f`, bundle 2 changes `h`, both inlined into
/// `g`; each revert order leaves `g` built from the remaining versions.
#[test]
fn stacked_bundles_on_two_inlined_callees_revert_in_both_orders() {
    for newest_first in [true, false] {
        let (mut store, inst, _) = setup(true);
        let go = |store: &mut Store<Host>, b: &[u8]| {
            let p = store.apply(inst, b, &ApplyOptions::default()).unwrap();
            store.wait_transition().unwrap();
            p
        };
        let revert = |store: &mut Store<Host>, p| {
            store.revert(p, None).unwrap();
            store.wait_transition().unwrap();
        };
        let b1 = go(&mut store, &f2());
        assert_eq!(call(&mut store, inst, "call_g"), 12);
        let b2 = go(&mut store, &h20());
        assert_eq!(call(&mut store, inst, "call_g"), 22);
        assert_eq!(call(&mut store, inst, "call_k"), 1002);
        if newest_first {
            revert(&mut store, b2);
            assert_eq!(call(&mut store, inst, "call_g"), 12);
            revert(&mut store, b1);
        } else {
            revert(&mut store, b1);
            // Only bundle 2 is left: g must inline neither old h nor new f.
            assert_eq!(call(&mut store, inst, "call_g"), 21);
            assert_eq!(call(&mut store, inst, "call_k"), 1001);
            revert(&mut store, b2);
        }
        assert_eq!(call(&mut store, inst, "call_g"), 11);
        assert!(store.applied().is_empty());
    }
}

/// Rule 4 with inlining, refused: an immediate `f` while a thread has an
/// activation of `step` (which inlined `f`) on its stack. Nothing changes;
/// once the thread has left `step` the same bundle applies.
#[test]
fn an_immediate_callee_inlined_into_a_running_caller_is_refused() {
    let (mut store, inst, _) = setup(true);
    let t = park(&mut store, inst, "step");
    let b = bytes_with(&app(1, 10, 0), &app(2, 10, 0), &imm(&["f"]));
    match store.apply(inst, &b, &ApplyOptions::default()) {
        Err(PatchError::InlinedOnStack {
            func,
            caller,
            thread,
        }) => {
            assert_eq!((func.as_str(), caller.as_str(), thread), ("f", "step", t));
        }
        other => panic!("expected InlinedOnStack, got {other:?}"),
    }
    assert!(store.applied().is_empty());
    assert!(store.transition_status().is_none());
    assert_eq!(call(&mut store, inst, "call_g"), 11);
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 101);
    store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 12);
}

/// Rule 4 with inlining, accepted: `f` immediate, `w` not. A thread parked
/// in `w` is pending (blocked by `w`); when it wakes, its old `w` calls
/// `g`, whose recompiled copy changed in both worlds with `f`: it gets the
/// new `f`, as every call made after the start must.
#[test]
fn an_immediate_inlined_callee_reaches_pending_threads_through_their_callers() {
    let (mut store, inst, _) = setup(true);
    let t = park(&mut store, inst, "w");
    let b = bytes_with(&app(1, 10, 0), &app(2, 10, 5000), &imm(&["f"]));
    store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    let st = store.transition_status().expect("in transition");
    assert_eq!(st.blockers.len(), 1);
    assert_eq!(st.blockers[0].frame.name, "w");
    wake(&mut store, t);
    // Old w (no 5000), new f through the recompiled g.
    assert_eq!(store.data().rec, vec![12]);
    store.wait_transition().unwrap();
    let t = park(&mut store, inst, "w");
    wake(&mut store, t);
    assert_eq!(store.data().rec, vec![12, 5012]);
}

/// Rule 7: the recompiled callers live in the bundle's code unit; after a
/// revert it stays while a thread still runs a recompiled caller, and is
/// freed once none does.
#[test]
fn reclaim_frees_the_recompiled_callers_once_unused() {
    let (mut store, inst, _) = setup(true);
    let b = bytes_with(&app(1, 10, 0), &app(2, 10, 0), &imm(&["f"]));
    let p = store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    // Parked inside the recompiled step (bundle code).
    let t = park(&mut store, inst, "step");
    // Immediate both ways: the revert completes at once.
    store.revert(p, None).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 11);
    assert_eq!(store.reclaim_pending(), 1, "step's frame keeps the unit");
    // The frame calls f through its slot: the immediate revert reached it.
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 201);
    // The next completion reclaims.
    store.apply(inst, &f2(), &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(store.reclaim_pending(), 0);
}

/// A trap inside an inlined body traps cleanly, in the caller's frame.
#[test]
fn a_trap_in_an_inlined_body_names_the_caller() {
    let (mut store, inst, _) = setup(true);
    let div = inst.get_func(&store, "div").unwrap();
    assert_eq!(crate::i32_of(div.call(&mut store, &[Val::I32(7)])), 14);
    let t = crate::trap_of(div.call(&mut store, &[Val::I32(0)]));
    assert_eq!(t.kind, TrapKind::IntegerDivisionByZero);
    assert_eq!(crate::names(&t.frames)[0], "div");
    // And the store goes on.
    assert_eq!(crate::i32_of(div.call(&mut store, &[Val::I32(5)])), 20);
}

/// Signature changes: `f`'s type changes, so its callers `g` and `k` are
/// in the bundle already (with new bodies, compiled without inlining);
/// they are not recompiled a second time as dependents.
#[test]
fn a_signature_change_keeps_its_callers_once() {
    let src = |new: bool| {
        let (ty, arg, body) = if new {
            ("i64", "i64", "local.get 0 i32.wrap_i64 i32.const 2 i32.add")
        } else {
            ("i32", "i32", "local.get 0 i32.const 1 i32.add")
        };
        format!(
            r#"(module
          (func $f (param {ty}) (result i32) {body})
          (func $g (export "g") (result i32) {arg}.const 0 call $f)
          (func $k (export "k") (result i32) {arg}.const 5 call $f))"#
        )
    };
    let engine = engine(true);
    let module = Module::new(&engine, src(false)).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let inst = host_linker(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let f = index(&store, inst, "f");
    assert_eq!(module.inlined_callees(index(&store, inst, "g")), vec![f]);
    assert_eq!(call(&mut store, inst, "g"), 1);
    let b = bytes_with(&src(false), &src(true), &DiffOptions::default());
    let p = store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(
        (call(&mut store, inst, "g"), call(&mut store, inst, "k")),
        (2, 7)
    );
    let info = store.applied().into_iter().find(|a| a.id == p).unwrap();
    assert_eq!(info.functions.len(), 3, "f, g and k: {:?}", info.functions);
    assert!(info.recompiled.is_empty(), "{:?}", info.recompiled);
    store.revert(p, None).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(
        (call(&mut store, inst, "g"), call(&mut store, inst, "k")),
        (1, 6)
    );
}

/// Rule 4 with inlining, when the caller is itself in the bundle: `step`
/// changes (not immediate) and `f` is immediate. The thread's old `step`
/// frame would run the old inlined `f` after the start: refused too.
#[test]
fn an_immediate_callee_inlined_into_a_replaced_running_caller_is_refused() {
    let (mut store, inst, _) = setup(true);
    let t = park(&mut store, inst, "step");
    let new = app(2, 10, 0).replace("i32.const 100 i32.mul", "i32.const 10 i32.mul");
    let b = bytes_with(&app(1, 10, 0), &new, &imm(&["f"]));
    match store.apply(inst, &b, &ApplyOptions::default()) {
        Err(PatchError::InlinedOnStack { func, caller, .. }) => {
            assert_eq!((func.as_str(), caller.as_str()), ("f", "step"));
        }
        other => panic!("expected InlinedOnStack, got {other:?}"),
    }
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 101);
    store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    let t = park(&mut store, inst, "step");
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 22);
}

/// Rule 12: a cumulative replace drops the earlier bundle's `f` and brings
/// its own `h`; `g` inlined both and is rebuilt from the replace alone.
#[test]
fn a_cumulative_replace_rebuilds_the_inlined_callers() {
    let (mut store, inst, _) = setup(true);
    store.apply(inst, &f2(), &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 12);
    let opts = DiffOptions {
        replace: true,
        ..Default::default()
    };
    let r = bytes_with(&app(1, 10, 0), &app(1, 20, 0), &opts);
    let t = park(&mut store, inst, "step");
    let p = store.apply(inst, &r, &ApplyOptions::default()).unwrap();
    // `step` goes back to its original code (f is v0 again): it changes,
    // so the thread in its recompiled copy is blocked by it.
    let st = store.transition_status().expect("in transition");
    assert_eq!(st.blockers.len(), 1);
    assert_eq!(st.blockers[0].frame.name, "step");
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 202);
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 21);
    assert_eq!(call(&mut store, inst, "call_k"), 1001);
    let t = park(&mut store, inst, "step");
    wake(&mut store, t);
    assert_eq!(crate::i32_of(store.join(t)), 101);
    assert_eq!(store.applied().len(), 1);
    let g = index(&store, inst, "g");
    let info = store.applied().into_iter().find(|a| a.id == p).unwrap();
    assert_eq!(info.recompiled, vec![g]);
}

/// Rule 4 with inlining and rule 13: a pre-patch callback's helper thread
/// parks inside `step`, which inlined the immediate `f`. The apply is
/// refused like a veto: the helper is cancelled, nothing is published.
#[test]
fn a_pre_patch_helper_inside_an_inlined_caller_refuses_the_apply() {
    let (mut store, inst, _) = setup(true);
    let pre =
        "(func $pre (result i32) i32.const 0 i32.const 0 call $spawn drop call $yield i32.const 0)";
    let opts = DiffOptions {
        immediate: vec!["f".into()],
        callbacks: vec![(patch_format::CallbackKind::PrePatch, "pre".into())],
        ..Default::default()
    };
    let b = bytes_with(&app(1, 10, 0), &app_with(2, 10, 0, pre), &opts);
    match store.apply(inst, &b, &ApplyOptions::default()) {
        Err(PatchError::InlinedOnStack { func, caller, .. }) => {
            assert_eq!((func.as_str(), caller.as_str()), ("f", "step"));
        }
        other => panic!("expected InlinedOnStack, got {other:?}"),
    }
    assert!(store.applied().is_empty());
    assert!(store.transition_status().is_none());
    assert_eq!(call(&mut store, inst, "call_g"), 11);
}
