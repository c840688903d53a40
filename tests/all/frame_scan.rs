//! The frame scan that decides whether a thread may switch: it must never
//! read a stack as clean when it did not see all of it, whether a cache
//! mistook a reused code address for the code that was there before, or a
//! stack was deeper than any fixed bound on the walk.

use patch_format::{diff, CallbackKind, DiffOptions};
use std::time::Duration;
use wasm_patch_runtime::{
    ApplyOptions, Config, Engine, Func, FuncType, Instance, Linker, Module, RunState, Store,
    ThreadId, ThreadPatchState, Val,
};

/// A store with an instance of `wat`, which may import the thread ABI and
/// `env.park` (parks the calling thread).
fn setup(config: Config, wat: &str) -> (Store<()>, Instance) {
    let engine = Engine::new(config).unwrap();
    let module = Module::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.add_thread_abi();
    linker.func_new("env", "park", FuncType::new([], []), |c, _, _| c.park());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    (store, inst)
}

fn func(store: &Store<()>, inst: Instance, name: &str) -> Func {
    inst.get_func(store, name)
        .unwrap_or_else(|| panic!("no export {name}"))
}

/// The bundle taking `old` to `new` (both WAT).
fn bundle(old: &str, new: &str, opts: &DiffOptions) -> Vec<u8> {
    let old = wat::parse_str(old).unwrap();
    let new = wat::parse_str(new).unwrap();
    diff(&old, &new, opts).expect("diff").bundle.to_bytes()
}

/// Spawn `name(args)` and run until every thread is parked or done; the
/// new thread must be parked.
fn park(store: &mut Store<()>, inst: Instance, name: &str, args: &[Val]) -> ThreadId {
    let id = store.spawn(func(store, inst, name), args).unwrap();
    store.run().unwrap();
    assert_eq!(store.thread_state(id), Some(RunState::Parked), "{name}");
    id
}

/// `$low` calls `$h`, which parks; `$x` is what the first bundle changes
/// (its post-patch callback `$post` sleeps).
fn reuse_module(low: i32, h: i32, x: i32) -> String {
    format!(
        r#"(module
          (import "env" "park" (func $park))
          (import "wasm-patch" "sleep" (func $sleep (param i64)))
          (func $low (export "low") (result i32) call $h i32.const {low} i32.add)
          (func $h (result i32) call $park i32.const {h})
          (func $x (export "x") (result i32) i32.const {x})
          (func $post (result i32) i64.const 1000000 call $sleep i32.const 0))"#
    )
}

/// Issue 11, item 3. The post-patch callback of b1 sleeps, so the store's
/// frame-summary lookups last saw b1's entry trampoline, which is not wasm
/// code. Reverting b1 unmaps that trampoline unit, and b2's code is mapped
/// into the hole it left. A thread parked inside b2's `$h` must then be
/// summarised as having `$h` and `$low` on its stack: a lookup that still
/// took the reused address for the trampoline stopped at the first frame
/// and proved the thread clean, so b3 (changing `$low`, below `$h`)
/// started with nobody pending.
///
/// That b2's unit lands at the trampolines' address was checked with
/// `WASM_PATCH_PERF_MAP=1` (the perf map lists every unit's address), and
/// this test failed before the fix.
#[test]
fn a_reused_code_address_is_not_mistaken_for_the_old_code() {
    let v0 = reuse_module(0, 0, 0);
    let (mut store, inst) = setup(Config::default(), &v0);
    // A thread parked in v0 while b1 goes in and out: reverting b1 scans
    // its stack for b1's code, which moves the registry's own lookup cache
    // off b1's trampolines, so they are unmapped at once.
    let p = park(&mut store, inst, "low", &[]);
    let b1 = bundle(
        &v0,
        &reuse_module(0, 0, 1),
        &DiffOptions {
            callbacks: vec![(CallbackKind::PostPatch, "post".into())],
            ..Default::default()
        },
    );
    let p1 = store.apply(inst, &b1, &ApplyOptions::default()).unwrap();
    assert!(!store.wait_transition().unwrap().reversed);
    assert_eq!(
        crate::i32_of(func(&store, inst, "x").call(&mut store, &[])),
        1
    );
    store.revert(p1, None).unwrap();
    assert!(!store.wait_transition().unwrap().reversed);
    assert_eq!(store.reclaim_pending(), 0, "b1's code is not on any stack");
    store.unpark(p);
    assert_eq!(crate::i32_of(store.join(p)), 0);
    let b2 = bundle(&v0, &reuse_module(0, 2, 0), &DiffOptions::default());
    store.apply(inst, &b2, &ApplyOptions::default()).unwrap();
    assert!(!store.wait_transition().unwrap().reversed);
    let t = park(&mut store, inst, "low", &[]);
    let b3 = bundle(&v0, &reuse_module(3, 0, 0), &DiffOptions::default());
    store.apply(inst, &b3, &ApplyOptions::default()).unwrap();
    let status = store
        .transition_status()
        .expect("b3 waits for the thread with $low on its stack");
    assert_eq!(status.pending, 1);
    assert_eq!(
        store.thread_patch_state(t),
        Some(ThreadPatchState::Unpatched)
    );
    let blockers = store.blockers();
    assert_eq!(blockers.len(), 1);
    assert_eq!(blockers[0].frame.name, "low");
    // It returns through the old `$low` (b2's `$h` gives 2), then b3
    // completes.
    store.unpark(t);
    assert_eq!(crate::i32_of(store.join(t)), 2);
    assert!(!store.wait_transition().unwrap().reversed);
    let t = park(&mut store, inst, "low", &[]);
    store.unpark(t);
    assert_eq!(crate::i32_of(store.join(t)), 5, "b3's $low over b2's $h");
}

/// Deeper than the 2^20 frames a walk used to stop at.
const DEPTH: i32 = (1 << 20) + 64;

/// `$bottom` calls `$deep`, which recurses `n` times and parks at the top.
fn deep_module(bottom: i32) -> String {
    format!(
        r#"(module
          (import "env" "park" (func $park))
          (func $bottom (export "bottom") (param $n i32) (result i32)
            local.get $n call $deep i32.const {bottom} i32.add)
          (func $deep (param $n i32) (result i32)
            (if (result i32) (local.get $n)
              (then (i32.add (call $deep (i32.sub (local.get $n) (i32.const 1))) (i32.const 0)))
              (else (call $park) (i32.const 0)))))"#
    )
}

/// Issue 11, item 9. A thread parked more than 2^20 frames above a changed
/// function (`$bottom`) must stay pending: a walk cut off at a fixed depth
/// missed `$bottom` and switched the thread with it on its stack.
#[test]
fn a_changed_function_below_a_million_frames_keeps_its_thread_pending() {
    crate::with_timeout(Duration::from_secs(120), || {
        let config = Config {
            // Each `$deep` frame takes a few dozen bytes at most.
            stack_size: 256 << 20,
            ..Default::default()
        };
        let v0 = deep_module(0);
        let (mut store, inst) = setup(config, &v0);
        let t = park(&mut store, inst, "bottom", &[Val::I32(DEPTH)]);
        let b = bundle(&v0, &deep_module(1), &DiffOptions::default());
        store.apply(inst, &b, &ApplyOptions::default()).unwrap();
        assert_eq!(
            store.thread_patch_state(t),
            Some(ThreadPatchState::Unpatched),
            "the thread still has the old $bottom on its stack"
        );
        let blockers = store.blockers();
        assert_eq!(blockers.len(), 1);
        assert_eq!(blockers[0].thread, t);
        assert_eq!(blockers[0].frame.name, "bottom");
        assert_eq!(blockers[0].backtrace.len(), DEPTH as usize + 2);
        // It finishes in the old `$bottom` (adds 0); then the bundle is in.
        store.unpark(t);
        assert_eq!(crate::i32_of(store.join(t)), 0);
        assert!(!store.wait_transition().unwrap().reversed);
    });
}
