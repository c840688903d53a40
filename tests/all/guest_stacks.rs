//! Each guest thread's own linear-memory stack (`runtime/src/store/
//! guest_stacks.rs`): code from rustc and clang keeps frames in linear
//! memory below the `__stack_pointer` global, and guest threads share the
//! instance, so the runtime switches that global with the thread.

use wasm_patch_runtime::{Config, Engine, Instance, Linker, Module, Store, Val};

/// A guest shaped like rustc output: page 0 is the module's stack
/// (`__stack_pointer` starts at its top), `frame` pushes a frame in linear
/// memory the way a Rust prologue does, fills it with the thread's id,
/// yields, checks every word and pops it.
const STACK_GUEST: &str = r#"(module
  (import "wasm-patch" "yield" (func $yield))
  (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
  (memory 2 MAX)
  (global $__stack_pointer (mut i32) (i32.const 65536))
  (global $other (mut i32) (i32.const 0))
  (table 1 funcref)
  (elem (i32.const 0) $child)
  (func $frame (param $id i32) (param $words i32) (result i32)
    (local $fp i32) (local $i i32) (local $ok i32)
    (local.set $fp (i32.sub (global.get $__stack_pointer)
                            (i32.shl (local.get $words) (i32.const 2))))
    (global.set $__stack_pointer (local.get $fp))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $words)))
      (i32.store (i32.add (local.get $fp) (i32.shl (local.get $i) (i32.const 2)))
                 (local.get $id))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $yield)
    (local.set $ok (i32.const 1))
    (local.set $i (i32.const 0))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $words)))
      (if (i32.ne (i32.load (i32.add (local.get $fp) (i32.shl (local.get $i) (i32.const 2))))
                  (local.get $id))
        (then (local.set $ok (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (global.set $__stack_pointer
      (i32.add (local.get $fp) (i32.shl (local.get $words) (i32.const 2))))
    (local.get $ok))
  ;; `rounds` frames of 4, 8 or 12 words (in turn, shifted by the id so
  ;; that threads differ); how many kept their contents.
  (func $worker (export "worker") (param $id i32) (param $rounds i32) (result i32)
    (local $n i32) (local $r i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $r) (local.get $rounds)))
      (local.set $n (i32.add (local.get $n)
        (call $frame (local.get $id)
          (i32.add (i32.const 4)
            (i32.mul (i32.const 4)
              (i32.rem_u (i32.add (local.get $r) (local.get $id)) (i32.const 3)))))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $l)))
    (local.get $n))
  ;; A thread spawned by the guest: records its stack pointer at word
  ;; 0x10000 + 4 * id (page 1), then runs 30 rounds and records the count
  ;; at word 0x10100 + 4 * id.
  (func $child (param $id i32)
    (i32.store (i32.add (i32.const 0x10000) (i32.shl (local.get $id) (i32.const 2)))
               (global.get $__stack_pointer))
    (i32.store (i32.add (i32.const 0x10100) (i32.shl (local.get $id) (i32.const 2)))
               (call $worker (local.get $id) (i32.const 30))))
  (func (export "spawn_child") (param $id i32) (result i32)
    (call $spawn (i32.const 0) (local.get $id)))
  (func (export "sp") (result i32) (global.get $__stack_pointer))
  (func (export "pages") (result i32) (memory.size))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  ;; A global not named `__stack_pointer` is ordinary shared state.
  (func (export "bump") (param $n i32) (result i32)
    (block $d (loop $l
      (br_if $d (i32.eqz (local.get $n)))
      (global.set $other (i32.add (global.get $other) (i32.const 1)))
      (call $yield)
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (global.get $other)))"#;

fn guest(max_pages: &str) -> String {
    STACK_GUEST.replace("MAX", max_pages)
}

fn setup(config: Config, wat: &str) -> (Store<()>, Instance) {
    let engine = Engine::new(config).unwrap();
    let module = Module::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.add_thread_abi();
    let inst = linker.instantiate(&mut store, &module).unwrap();
    (store, inst)
}

fn i32_result(r: Vec<Val>) -> i32 {
    match r.as_slice() {
        [Val::I32(v)] => *v,
        other => panic!("expected one i32, got {other:?}"),
    }
}

/// Run `threads` workers of `rounds` frames each, interleaved by their
/// yields; how many frames each found intact.
fn run_workers(store: &mut Store<()>, inst: Instance, threads: i32, rounds: i32) -> Vec<i32> {
    let worker = inst.get_func(store, "worker").unwrap();
    let ids: Vec<_> = (1..=threads)
        .map(|id| {
            store
                .spawn(worker, &[Val::I32(id), Val::I32(rounds)])
                .unwrap()
        })
        .collect();
    store.run().unwrap();
    ids.into_iter()
        .map(|id| i32_result(store.join(id).unwrap()))
        .collect()
}

fn call_i32(store: &mut Store<()>, inst: Instance, name: &str, args: &[Val]) -> i32 {
    let f = inst.get_func(store, name).unwrap();
    i32_result(f.call(store, args).unwrap())
}

#[test]
fn threads_that_yield_with_frames_in_linear_memory_keep_them() {
    let (mut store, inst) = setup(Config::default(), &guest("100"));
    assert_eq!(run_workers(&mut store, inst, 4, 50), vec![50; 4]);
    // Every frame was popped: a new thread finds its stack empty, at the
    // top of a region (page-aligned).
    assert_eq!(call_i32(&mut store, inst, "sp", &[]) % 65536, 0);
}

/// What the switching prevents: with one shared stack (switching off), the
/// same workers overwrite each other's frames.
#[test]
fn a_shared_stack_is_what_corrupts_frames() {
    let config = Config {
        guest_stack_size: 0,
        ..Config::default()
    };
    let (mut store, inst) = setup(config, &guest("100"));
    let kept = run_workers(&mut store, inst, 4, 50);
    assert!(
        kept.iter().any(|&k| k < 50),
        "the shared stack was expected to lose frames: {kept:?}"
    );
}

#[test]
fn each_live_thread_has_its_own_region_and_regions_are_reused() {
    let (mut store, inst) = setup(Config::default(), &guest("100"));
    for id in 1..=3 {
        assert!(call_i32(&mut store, inst, "spawn_child", &[Val::I32(id)]) > 0);
    }
    store.run().unwrap();
    let mut word = |addr: i32| call_i32(&mut store, inst, "load", &[Val::I32(addr)]);
    let sps: Vec<i32> = (1..=3).map(|id| word(0x10000 + 4 * id)).collect();
    let kept: Vec<i32> = (1..=3).map(|id| word(0x10100 + 4 * id)).collect();
    assert_eq!(kept, vec![30; 3]);
    // Three distinct stacks, none of them the module's (page 0, which the
    // host call that spawned them held), all in pages grown past the two
    // the module declared.
    let mut distinct = sps.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{sps:?}");
    assert!(sps.iter().all(|&sp| sp > 2 * 65536), "{sps:?}");
    let pages = call_i32(&mut store, inst, "pages", &[]);
    // The same again: the regions of the finished threads are reused, so
    // memory does not grow.
    for id in 1..=3 {
        call_i32(&mut store, inst, "spawn_child", &[Val::I32(id)]);
    }
    store.run().unwrap();
    assert_eq!(call_i32(&mut store, inst, "pages", &[]), pages);
    // Host calls run on threads too: a thousand of them reuse one region.
    for _ in 0..1000 {
        call_i32(&mut store, inst, "sp", &[]);
    }
    assert_eq!(call_i32(&mut store, inst, "pages", &[]), pages);
}

#[test]
fn a_thread_whose_stack_cannot_be_grown_is_refused_and_the_others_run() {
    // Two pages and no room to grow: the first thread takes the module's
    // stack, the second cannot get one.
    let (mut store, inst) = setup(Config::default(), &guest("2"));
    let worker = inst.get_func(&store, "worker").unwrap();
    let first = store.spawn(worker, &[Val::I32(1), Val::I32(5)]).unwrap();
    let err = store
        .spawn(worker, &[Val::I32(2), Val::I32(5)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory 0 cannot grow"), "{err}");
    assert!(err.contains("linear-memory stack"), "{err}");
    store.run().unwrap();
    assert_eq!(i32_result(store.join(first).unwrap()), 5);
    // Once the first thread's stack is free again, a thread can have it.
    let again = store.spawn(worker, &[Val::I32(2), Val::I32(5)]).unwrap();
    store.run().unwrap();
    assert_eq!(i32_result(store.join(again).unwrap()), 5);
    assert_eq!(call_i32(&mut store, inst, "pages", &[]), 2);
}

#[test]
fn other_globals_stay_shared_between_threads() {
    let (mut store, inst) = setup(Config::default(), &guest("100"));
    let bump = inst.get_func(&store, "bump").unwrap();
    let ids: Vec<_> = (0..3)
        .map(|_| store.spawn(bump, &[Val::I32(10)]).unwrap())
        .collect();
    store.run().unwrap();
    let last = ids
        .into_iter()
        .map(|id| i32_result(store.join(id).unwrap()))
        .max()
        .unwrap();
    assert_eq!(last, 30);
}

/// Only a defined, mutable i32 global named `__stack_pointer` is switched:
/// an imported or immutable one, or one of another type, is left alone.
#[test]
fn only_a_defined_mutable_i32_stack_pointer_is_switched() {
    let wat = r#"(module
      (import "wasm-patch" "yield" (func $yield))
      (memory 1)
      (global $__stack_pointer (mut i64) (i64.const 0))
      (func (export "bump") (param $n i32) (result i64)
        (block $d (loop $l
          (br_if $d (i32.eqz (local.get $n)))
          (global.set $__stack_pointer (i64.add (global.get $__stack_pointer) (i64.const 1)))
          (call $yield)
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $l)))
        (global.get $__stack_pointer)))"#;
    let (mut store, inst) = setup(Config::default(), wat);
    let bump = inst.get_func(&store, "bump").unwrap();
    let ids: Vec<_> = (0..2)
        .map(|_| store.spawn(bump, &[Val::I32(5)]).unwrap())
        .collect();
    store.run().unwrap();
    let results: Vec<_> = ids.into_iter().map(|id| store.join(id).unwrap()).collect();
    assert!(results.contains(&vec![Val::I64(10)]), "{results:?}");
}
