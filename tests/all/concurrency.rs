//! The parts of the runtime that run on more than one OS thread at once
//! (`docs/concurrency.md`): the preemption ticker writing poll words and
//! memory poll hints while guest threads poll, finish and their stores are
//! dropped, and the check pass of a transition split across OS threads.
//! Each test is bounded in count and in time: a lost preemption makes a
//! busy thread spin forever, which `with_timeout` turns into a failure.

use crate::{i32_of, with_timeout};
use patch_format::{diff, DiffOptions};
use std::collections::HashSet;
use std::time::Duration;
use wasm_patch_runtime::{
    ApplyOptions, Config, Engine, Func, Instance, Linker, Module, Store, ThreadId,
    ThreadPatchState, Val,
};

/// A store of `engine` with an instance of `module` (thread ABI linked).
fn instantiate(engine: &Engine, module: &Module) -> (Store<()>, Instance) {
    let mut store = Store::new(engine, ());
    let mut linker: Linker<()> = Linker::new(engine);
    linker.add_thread_abi();
    let inst = linker.instantiate(&mut store, module).unwrap();
    (store, inst)
}

fn func(store: &Store<()>, inst: Instance, name: &str) -> Func {
    inst.get_func(store, name)
        .unwrap_or_else(|| panic!("no export {name}"))
}

/// Issue 11, item 8. `i += 1 << 20; br_if (i <u -1)` never ends: the
/// counter steps over the bound and wraps round below it. The loop must
/// keep its header poll, so that a thread running it is preempted and the
/// other thread, which lets it out after a few turns, gets them.
#[test]
fn a_counted_loop_that_wraps_round_is_still_preempted() {
    let wat = r#"(module
      (import "wasm-patch" "yield" (func $yield))
      (memory 1)
      ;; Leaves only when word 8 is set: the counter alone never ends it.
      (func (export "wrap") (result i32) (local $i i32)
        (block $out
          (loop $l
            (br_if $out (i32.load (i32.const 8)))
            (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 0x100000)))
                                (i32.const -1)))))
        (local.get $i))
      ;; Count `n` turns (each one comes after the other thread's slice),
      ;; then let `wrap` out.
      (func (export "turns") (param $n i32) (result i32)
        (loop $l
          (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
          (call $yield)
          (br_if $l (i32.lt_u (i32.load (i32.const 0)) (local.get $n))))
        (i32.store (i32.const 8) (i32.const 1))
        (i32.load (i32.const 0))))"#;
    let turns = with_timeout(Duration::from_secs(30), move || {
        let engine = Engine::new(Config {
            time_slice: Duration::from_millis(1),
            ..Default::default()
        })
        .unwrap();
        let module = Module::new(&engine, wat).unwrap();
        let (mut store, inst) = instantiate(&engine, &module);
        let spin = store.spawn(func(&store, inst, "wrap"), &[]).unwrap();
        let counter = store
            .spawn(func(&store, inst, "turns"), &[Val::I32(5)])
            .unwrap();
        store.run().unwrap();
        let i = i32_of(store.take_result(spin));
        assert_eq!(i as u32 % (1 << 20), 0, "the counter steps by 2^20");
        i32_of(store.take_result(counter))
    });
    assert_eq!(turns, 5);
}

/// Busy threads and a turn counter. With a memory, polls read the memory's
/// poll hint; without one, the thread's poll word. `busy` calls `$step`
/// (what the bundle changes) in a loop with no other call, so only its
/// header poll lets anything else run; `turns` counts `n` turns of its
/// own, each of which needs every busy thread to have been preempted once,
/// then stops them all.
fn stress_module(memory: bool, step: i32) -> String {
    let (mem, get_stop, set_stop, get_turns, set_turns) = if memory {
        (
            "(memory 1)",
            "(i32.load (i32.const 8))",
            "(i32.store (i32.const 8) (i32.const 1))",
            "(i32.load (i32.const 0))",
            "(i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))",
        )
    } else {
        (
            "",
            "(global.get $stop)",
            "(global.set $stop (i32.const 1))",
            "(global.get $turns)",
            "(global.set $turns (i32.add (global.get $turns) (i32.const 1)))",
        )
    };
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          {mem}
          (global $stop (mut i32) (i32.const 0))
          (global $turns (mut i32) (i32.const 0))
          (func $step (param $n i32) (result i32) (i32.add (local.get $n) (i32.const {step})))
          (func (export "busy") (result i32) (local $n i32)
            (loop $l
              (local.set $n (call $step (local.get $n)))
              (br_if $l (i32.eqz {get_stop})))
            (local.get $n))
          (func (export "turns") (param $n i32) (result i32)
            (loop $l
              {set_turns}
              (call $yield)
              (br_if $l (i32.lt_u {get_turns} (local.get $n))))
            {set_stop}
            {get_turns}))"#
    )
}

/// One store's life, picked by `round`: busy threads preempted every tick
/// until the counter lets them out, with a transition started while they
/// are being preempted (every third round), or the store dropped while
/// its threads are still busy and the ticker runs (every third round).
fn stress_round(engine: &Engine, modules: &[(String, Module, Vec<u8>)], round: usize) {
    const BUSY: usize = 3;
    const TURNS: i32 = 12;
    let (_, module, bundle) = &modules[round % modules.len()];
    let (mut store, inst) = instantiate(engine, module);
    let busy: Vec<ThreadId> = (0..BUSY)
        .map(|_| store.spawn(func(&store, inst, "busy"), &[]).unwrap())
        .collect();
    let counter = store
        .spawn(func(&store, inst, "turns"), &[Val::I32(TURNS)])
        .unwrap();
    match round % 3 {
        0 => {
            // Every thread has run (the busy ones were preempted inside
            // `busy`): the check finds them at their next poll.
            store.run_steps(2 * (BUSY + 1));
            store
                .apply(inst, bundle, &ApplyOptions::default())
                .expect("apply");
            store.run().unwrap();
            assert!(store.transition_status().is_none(), "round {round}");
            assert_eq!(store.applied().len(), 1);
        }
        1 => {
            // Dropped with busy threads: they are cancelled at their next
            // poll while the ticker may be writing their words.
            store.run_steps(BUSY + 2);
            return;
        }
        _ => store.run().unwrap(),
    }
    for id in busy {
        let n = i32_of(store.take_result(id));
        assert_ne!(n, 0, "round {round}: a busy thread ran");
    }
    assert_eq!(i32_of(store.take_result(counter)), TURNS, "round {round}");
}

/// Several OS threads, each driving stores with one-tick time slices: the
/// ticker writes poll words and memory hints of many stores at once while
/// threads poll, finish, switch worlds, and stores come and go. Every busy
/// thread must still be preempted (or the round never ends), and nothing
/// may crash.
#[test]
fn preemption_is_never_lost_across_stores_threads_and_transitions() {
    const OS_THREADS: usize = 3;
    const ROUNDS: usize = 24;
    with_timeout(Duration::from_secs(60), || {
        let workers: Vec<_> = (0..OS_THREADS)
            .map(|w| {
                std::thread::spawn(move || {
                    let engine = Engine::new(Config {
                        time_slice: Duration::from_micros(1),
                        ..Default::default()
                    })
                    .unwrap();
                    let modules: Vec<(String, Module, Vec<u8>)> = [true, false]
                        .iter()
                        .map(|&memory| {
                            let v0 = stress_module(memory, 1);
                            let v1 = stress_module(memory, 2);
                            let module = Module::new(&engine, &v0).unwrap();
                            let b = diff(
                                &wat::parse_str(&v0).unwrap(),
                                &wat::parse_str(&v1).unwrap(),
                                &DiffOptions::default(),
                            )
                            .expect("diff")
                            .bundle
                            .to_bytes();
                            (v0, module, b)
                        })
                        .collect();
                    for round in 0..ROUNDS {
                        stress_round(&engine, &modules, w + round);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
}

/// Thousands of runnable threads make a transition's check pass split the
/// threads across OS threads (`thread::visit_suspended`), each worker with
/// a disjoint chunk; meanwhile a busy thread of the same store is being
/// preempted. The pass must find exactly the threads inside the changed
/// function (by their backtraces), every time.
#[test]
fn the_parallel_check_pass_is_exact_beside_preempted_threads() {
    const EACH: usize = 2100; // 4200 runnable threads: above the threshold
    const ROUNDS: usize = 4;
    let app = |v: i32| {
        format!(
            r#"(module
              (import "wasm-patch" "yield" (func $yield))
              (memory 1)
              ;; The changed function yields inside itself.
              (func $f (result i32) (call $yield) (i32.const {v}))
              (func $g (result i32) (call $yield) (i32.const 0))
              (func (export "in_f") (result i32) (local $n i32)
                (loop $l
                  (local.set $n (i32.add (local.get $n) (call $f)))
                  (br_if $l (i32.eqz (i32.load (i32.const 8)))))
                (local.get $n))
              (func (export "in_g") (result i32) (local $n i32)
                (loop $l
                  (local.set $n (i32.add (local.get $n) (call $g)))
                  (br_if $l (i32.eqz (i32.load (i32.const 8)))))
                (local.get $n))
              (func (export "busy") (result i32) (local $n i32)
                (loop $l
                  (local.set $n (i32.add (local.get $n) (i32.const 1)))
                  (br_if $l (i32.eqz (i32.load (i32.const 8)))))
                (local.get $n))
              (func (export "stop") (i32.store (i32.const 8) (i32.const 1))))"#
        )
    };
    with_timeout(Duration::from_secs(120), move || {
        let engine = Engine::new(Config {
            time_slice: Duration::from_micros(1),
            // 256 stacks per mapping: the process's map count stays low.
            guard_pages: false,
            ..Default::default()
        })
        .unwrap();
        let (v0, v1) = (app(0), app(1));
        let module = Module::new(&engine, &v0).unwrap();
        let b = diff(
            &wat::parse_str(&v0).unwrap(),
            &wat::parse_str(&v1).unwrap(),
            &DiffOptions::default(),
        )
        .expect("diff")
        .bundle
        .to_bytes();
        for round in 0..ROUNDS {
            let (mut store, inst) = instantiate(&engine, &module);
            let busy = store.spawn(func(&store, inst, "busy"), &[]).unwrap();
            let mut ids = Vec::new();
            for _ in 0..EACH {
                ids.push(store.spawn(func(&store, inst, "in_f"), &[]).unwrap());
                ids.push(store.spawn(func(&store, inst, "in_g"), &[]).unwrap());
            }
            // One turn each: every thread is now inside `$f` or `$g`,
            // unless a tick preempted it on the way (at its loop header),
            // and the busy one is preempted in its loop.
            assert_eq!(store.run_steps(ids.len() + 1), ids.len() + 1);
            let in_f: HashSet<ThreadId> = ids
                .iter()
                .copied()
                .filter(|&id| {
                    let frames = store.backtrace(id).expect("live thread");
                    frames.iter().any(|f| f.name == "f")
                })
                .collect();
            assert!(!in_f.is_empty());
            store.apply(inst, &b, &ApplyOptions::default()).unwrap();
            let status = store.transition_status().expect("threads inside $f");
            assert_eq!(status.pending, in_f.len(), "round {round}");
            assert_eq!(status.switched, ids.len() + 1 - in_f.len(), "round {round}");
            for &id in &ids {
                let want = if in_f.contains(&id) {
                    ThreadPatchState::Unpatched
                } else {
                    ThreadPatchState::Patched
                };
                assert_eq!(store.thread_patch_state(id), Some(want), "{id}");
            }
            func(&store, inst, "stop").call(&mut store, &[]).unwrap();
            store.run().unwrap();
            assert!(store.transition_status().is_none(), "round {round}");
            assert_ne!(i32_of(store.take_result(busy)), 0);
            for id in ids {
                store.take_result(id).unwrap();
            }
        }
    });
}

/// The trap handler looks the faulting pc up in the code registry while
/// other OS threads register and unregister code units (compiling and
/// dropping modules). A lookup that gave up while a writer held the lock
/// turned the guest's trap into a host crash; every trap must come back as
/// a trap, however busy the registry is.
#[test]
fn traps_are_reported_while_other_threads_map_and_unmap_code() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine = Engine::default();
    let churn: Vec<_> = (0..2)
        .map(|i| {
            let (stop, engine) = (stop.clone(), engine.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                    let src = format!("(module (func (export \"f\") (result i32) i32.const {i}))");
                    drop(Module::new(&engine, src).unwrap());
                    n += 1;
                }
                n
            })
        })
        .collect();
    let module = Module::new(
        &engine,
        r#"(module (func (export "boom") (param i32) (result i32)
             local.get 0 i32.const 0 i32.div_s))"#,
    )
    .unwrap();
    let (mut store, inst) = instantiate(&engine, &module);
    let boom = func(&store, inst, "boom");
    let t0 = std::time::Instant::now();
    let mut traps = 0;
    while t0.elapsed() < Duration::from_millis(1500) && traps < 20_000 {
        let r = boom.call(&mut store, &[Val::I32(7)]);
        assert!(
            matches!(r, Err(wasm_patch_runtime::Error::Trap(_))),
            "{r:?}"
        );
        traps += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let churned: u32 = churn.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(traps > 0 && churned > 0);
}
