//! Guest threads: many fibers on one OS thread, the guest thread ABI,
//! sleeping, parking, preemption and deadlock detection.

use crate::{i32_of, with_timeout};
use std::time::{Duration, Instant};
use wasm_patch_runtime::{
    Engine, Error, Func, FuncType, Instance, Linker, Module, RunState, Store, ThreadId, Val,
    ValType,
};

const WORKERS: &str = r#"(module
  (import "wasm-patch" "yield" (func $yield))
  (import "wasm-patch" "thread_id" (func $tid (result i32)))
  (import "wasm-patch" "sleep" (func $sleep (param i64)))
  (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
  (memory 1)
  (global $log_len (mut i32) (i32.const 0))
  (global $flag (mut i32) (i32.const 0))
  (table 3 funcref)
  (elem (i32.const 0) $child $setter)
  ;; Yield `n` times; the result mixes the argument, the count and the id.
  (func (export "work") (param $x i32) (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (local.set $acc (local.get $x))
    (block $done (loop $l
      (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
      (call $yield)
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 3)) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.add (i32.mul (local.get $acc) (i32.const 1000)) (call $tid)))
  (func (export "tid") (result i32) call $tid)
  ;; Append a tag to the log at 0x1000.
  (func $log (param i32)
    (i32.store (i32.add (i32.const 0x1000) (i32.mul (global.get $log_len) (i32.const 4))) (local.get 0))
    (global.set $log_len (i32.add (global.get $log_len) (i32.const 1))))
  (func (export "log_len") (result i32) global.get $log_len)
  (func (export "log_at") (param i32) (result i32) (i32.load (i32.add (i32.const 0x1000) (i32.mul (local.get 0) (i32.const 4)))))
  (func (export "sleeper") (param $ns i64) (param $tag i32) (local.get $ns) (call $sleep) (call $log (local.get $tag)))
  (func (export "yielder") (param $tag i32) (param $n i32)
    (loop $l (call $log (local.get $tag)) (call $yield)
      (local.tee $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l)))
  ;; Entry for guest-spawned threads: record (arg, own id) at 0x100 + 8*arg.
  (func $child (param $arg i32)
    (i32.store (i32.add (i32.const 0x100) (i32.mul (local.get $arg) (i32.const 8))) (local.get $arg))
    (call $yield)
    (i32.store (i32.add (i32.const 0x104) (i32.mul (local.get $arg) (i32.const 8))) (call $tid)))
  (func $setter (param i32) (global.set $flag (local.get 0)))
  ;; Spawn `n` children; store the ids spawn returned at 0x800 + 4*i.
  (func (export "spawner") (param $n i32) (result i32) (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
      (i32.store (i32.add (i32.const 0x800) (i32.mul (local.get $i) (i32.const 4)))
        (call $spawn (i32.const 0) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func (export "spawn_entry") (param i32) (result i32) (call $spawn (local.get 0) (i32.const 0)))
  (func (export "load") (param i32) (result i32) local.get 0 i32.load)
  ;; Spin until the flag is set, with no calls in the loop: only the poll at
  ;; the back-edge can give the other thread a turn.
  (func (export "spin") (result i32) (local $n i32)
    (loop $l
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $l (i32.eqz (global.get $flag))))
    (local.get $n))
  (func (export "spawn_setter_then_spin") (result i32) (local $n i32)
    (drop (call $spawn (i32.const 1) (i32.const 1)))
    (loop $l
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $l (i32.eqz (global.get $flag))))
    (local.get $n))
  (func (export "set_flag") (param i32) (global.set $flag (local.get 0)))
)"#;

fn workers<T: 'static>(data: T, setup: impl FnOnce(&mut Linker<T>)) -> (Store<T>, Instance) {
    workers_in(Engine::default(), data, setup)
}

fn workers_in<T: 'static>(
    engine: Engine,
    data: T,
    setup: impl FnOnce(&mut Linker<T>),
) -> (Store<T>, Instance) {
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    setup(&mut linker);
    let mut store = Store::new(&engine, data);
    let inst = linker
        .instantiate(&mut store, &Module::new(&engine, WORKERS).unwrap())
        .unwrap();
    (store, inst)
}

fn func<T: 'static>(store: &Store<T>, inst: Instance, name: &str) -> Func {
    inst.get_func(store, name)
        .unwrap_or_else(|| panic!("no export {name}"))
}

fn expected_work(x: i32, n: i32, tid: u32) -> i32 {
    let mut acc = x;
    for i in 0..n {
        acc = acc.wrapping_mul(3).wrapping_add(i);
    }
    acc.wrapping_mul(1000).wrapping_add(tid as i32)
}

/// Lines of `/proc/self/maps`: the process's memory mappings.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .count()
}

#[test]
fn unguarded_stacks_share_mappings() {
    // Guarded stacks take two mappings each (the limit is
    // vm.max_map_count, 65,530 by default); unguarded ones are packed.
    // Counted in a child process of its own: other tests map memory too.
    const CHILD: &str = "WASM_PATCH_TEST_MAPPINGS_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "threads::unguarded_stacks_share_mappings",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "child ran no test:\n{text}");
        return;
    }
    const N: usize = 3000;
    let engine = Engine::new(wasm_patch_runtime::Config {
        guard_pages: false,
        ..Default::default()
    })
    .unwrap();
    let (mut store, inst) = workers_in(engine, (), |_| {});
    let work = func(&store, inst, "work");
    let before = mappings();
    let ids: Vec<ThreadId> = (0..N)
        .map(|i| {
            store
                .spawn(work, &[Val::I32(i as i32), Val::I32(3)])
                .unwrap()
        })
        .collect();
    let added = mappings().saturating_sub(before);
    // 3000 stacks fill 12 slabs of 256; allow for allocator growth.
    assert!(added < 40, "{N} unguarded stacks added {added} mappings");
    store.run().unwrap();
    for (i, id) in ids.into_iter().enumerate() {
        assert_eq!(
            i32_of(store.take_result(id)),
            expected_work(i as i32, 3, id.0)
        );
    }
}

#[test]
fn ten_thousand_host_spawned_threads_finish_on_one_os_thread() {
    let (mut store, inst) = workers((), |_| {});
    let work = func(&store, inst, "work");
    let start = Instant::now();
    let ids: Vec<ThreadId> = (0..10_000)
        .map(|i| {
            store
                .spawn(work, &[Val::I32(i % 7), Val::I32(3 + i % 3)])
                .unwrap()
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    assert!(
        ids.iter().all(|id| id.0 > 0 && seen.insert(*id)),
        "ids are positive and distinct"
    );
    assert_eq!(store.threads().len(), 10_000);
    store.run().unwrap();
    assert!(store.threads().is_empty(), "all finished");
    for (i, id) in ids.iter().enumerate() {
        let i = i as i32;
        let r = store.take_result(*id).unwrap();
        assert_eq!(
            r,
            vec![Val::I32(expected_work(i % 7, 3 + i % 3, id.0))],
            "thread {i}"
        );
    }
    // Generous bound: this is about not doing something quadratic.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn yielding_threads_interleave() {
    let (mut store, inst) = workers((), |_| {});
    let y = func(&store, inst, "yielder");
    store.spawn(y, &[Val::I32(1), Val::I32(3)]).unwrap();
    store.spawn(y, &[Val::I32(2), Val::I32(3)]).unwrap();
    store.run().unwrap();
    let len = i32_of(func(&store, inst, "log_len").call(&mut store, &[]));
    let log: Vec<i32> = (0..len)
        .map(|i| i32_of(func(&store, inst, "log_at").call(&mut store, &[Val::I32(i)])))
        .collect();
    // Round robin gives 1 2 1 2 1 2; a preemption at a poll may shift one
    // turn, but neither thread may run to its end before the other starts.
    assert_eq!(log.iter().filter(|&&t| t == 1).count(), 3, "{log:?}");
    assert_eq!(log.iter().filter(|&&t| t == 2).count(), 3, "{log:?}");
    let first_2 = log.iter().position(|&t| t == 2).unwrap();
    let last_1 = log.iter().rposition(|&t| t == 1).unwrap();
    assert!(first_2 < last_1, "{log:?}");
}

#[test]
fn thread_id_matches_the_spawned_id() {
    let (mut store, inst) = workers((), |_| {});
    let tid = func(&store, inst, "tid");
    let ids: Vec<ThreadId> = (0..5).map(|_| store.spawn(tid, &[]).unwrap()).collect();
    // Joined out of order.
    for id in ids.iter().rev() {
        assert_eq!(store.join(*id).unwrap(), vec![Val::I32(id.0 as i32)]);
    }
    // `Func::call` runs on a fresh thread too.
    let r = i32_of(tid.call(&mut store, &[]));
    assert!(r > ids.last().unwrap().0 as i32, "{r}");
}

#[test]
fn guest_spawned_threads_run_and_report_their_ids() {
    let (mut store, inst) = workers((), |_| {});
    assert_eq!(
        i32_of(func(&store, inst, "spawner").call(&mut store, &[Val::I32(6)])),
        6
    );
    // The children may still be running: run them to the end.
    store.run().unwrap();
    assert!(store.threads().is_empty());
    let load = func(&store, inst, "load");
    let mut ids = Vec::new();
    for i in 0..6 {
        let spawned = i32_of(load.call(&mut store, &[Val::I32(0x800 + 4 * i)]));
        assert!(spawned > 0, "spawn returned {spawned}");
        assert_eq!(
            i32_of(load.call(&mut store, &[Val::I32(0x100 + 8 * i)])),
            i,
            "child {i} ran with its argument"
        );
        assert_eq!(
            i32_of(load.call(&mut store, &[Val::I32(0x104 + 8 * i)])),
            spawned,
            "child {i}'s thread_id"
        );
        ids.push(spawned);
    }
    ids.dedup();
    assert_eq!(ids.len(), 6, "distinct ids");
    // Entry 2 is null, entry 3 is outside the table: both negative.
    let spawn_entry = func(&store, inst, "spawn_entry");
    assert!(i32_of(spawn_entry.call(&mut store, &[Val::I32(2)])) < 0);
    assert!(i32_of(spawn_entry.call(&mut store, &[Val::I32(3)])) < 0);
    assert!(i32_of(spawn_entry.call(&mut store, &[Val::I32(-1)])) < 0);
    assert!(
        store.threads().is_empty(),
        "failed spawns leave no thread behind"
    );
}

#[test]
fn sleep_orders_wake_ups() {
    let (mut store, inst) = workers((), |_| {});
    let sleeper = func(&store, inst, "sleeper");
    let start = Instant::now();
    let long = store
        .spawn(sleeper, &[Val::I64(40_000_000), Val::I32(3)])
        .unwrap();
    store
        .spawn(sleeper, &[Val::I64(20_000_000), Val::I32(2)])
        .unwrap();
    store
        .spawn(sleeper, &[Val::I64(8_000_000), Val::I32(1)])
        .unwrap();
    store.spawn(sleeper, &[Val::I64(0), Val::I32(0)]).unwrap();
    // A sleeping thread is `Sleeping`, not busy.
    let probe = store.spawn(func(&store, inst, "tid"), &[]).unwrap();
    store.join(probe).unwrap();
    assert_eq!(store.thread_state(long), Some(RunState::Sleeping));
    store.run().unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(40),
        "woke too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "slept too long: {elapsed:?}"
    );
    let log: Vec<i32> = (0..4)
        .map(|i| i32_of(func(&store, inst, "log_at").call(&mut store, &[Val::I32(i)])))
        .collect();
    assert_eq!(log, [0, 1, 2, 3]);
}

#[derive(Default)]
struct Parking {
    parked: Vec<ThreadId>,
    wake_value: i32,
}

#[test]
fn host_park_and_store_unpark() {
    let engine = Engine::default();
    let mut linker = Linker::<Parking>::new(&engine);
    linker.func_new(
        "env",
        "wait",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let me = c.thread_id();
            c.data_mut().parked.push(me);
            c.park()?;
            r[0] = Val::I32(a[0].i32().unwrap() + c.data().wake_value);
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "wait" (func $wait (param i32) (result i32)))
          (func (export "f") (param i32) (result i32) local.get 0 call $wait i32.const 1 i32.add))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, Parking::default());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let f = inst.get_func(&store, "f").unwrap();
    let a = store.spawn(f, &[Val::I32(10)]).unwrap();
    let b = store.spawn(f, &[Val::I32(20)]).unwrap();
    store.run().unwrap();
    assert_eq!(store.data().parked, [a, b]);
    assert_eq!(store.thread_state(a), Some(RunState::Parked));
    assert_eq!(store.thread_state(b), Some(RunState::Parked));
    assert_eq!(store.threads(), [a, b]);
    // Running again does nothing: both stay parked.
    store.run().unwrap();
    assert_eq!(store.thread_state(a), Some(RunState::Parked));
    store.data_mut().wake_value = 100;
    store.unpark(b);
    assert_eq!(store.join(b).unwrap(), vec![Val::I32(121)]);
    assert_eq!(
        store.thread_state(a),
        Some(RunState::Parked),
        "unpark names one thread"
    );
    store.data_mut().wake_value = 1000;
    store.unpark(a);
    store.run().unwrap();
    assert_eq!(store.take_result(a).unwrap(), vec![Val::I32(1011)]);
    // Unpark before the park: the park returns at once.
    store.data_mut().wake_value = 0;
    let c = store.spawn(f, &[Val::I32(5)]).unwrap();
    store.unpark(c);
    assert_eq!(store.join(c).unwrap(), vec![Val::I32(6)]);
}

#[test]
fn join_of_a_thread_parked_forever_is_a_deadlock() {
    let engine = Engine::default();
    let mut linker = Linker::new(&engine);
    linker.func_new("env", "park", FuncType::new([], []), |c, _, _| c.park());
    let module = Module::new(
        &engine,
        r#"(module (import "env" "park" (func $park)) (func (export "f") (result i32) call $park i32.const 7))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let f = inst.get_func(&store, "f").unwrap();
    let id = store.spawn(f, &[]).unwrap();
    match store.join(id) {
        Err(Error::Deadlock(n)) => assert_eq!(n, id.0),
        other => panic!("expected a deadlock, got {other:?}"),
    }
    // Still parked, and still able to finish once woken.
    assert_eq!(store.thread_state(id), Some(RunState::Parked));
    store.unpark(id);
    assert_eq!(store.join(id).unwrap(), vec![Val::I32(7)]);
    // `Func::call` of a function that parks forever reports it too.
    assert!(matches!(f.call(&mut store, &[]), Err(Error::Deadlock(_))));
    // Dropping a store with a parked thread is clean.
    drop(store);
}

#[test]
fn busy_loop_is_preempted_for_another_host_spawned_thread() {
    let n = with_timeout(Duration::from_secs(20), || {
        let (mut store, inst) = workers((), |_| {});
        let spin = store.spawn(func(&store, inst, "spin"), &[]).unwrap();
        let setter = store
            .spawn(func(&store, inst, "set_flag"), &[Val::I32(1)])
            .unwrap();
        store.run().unwrap();
        store.take_result(setter).unwrap();
        i32_of(store.take_result(spin))
    });
    assert!(n >= 1, "{n}");
}

#[test]
fn busy_loop_is_preempted_for_a_guest_spawned_thread() {
    let n = with_timeout(Duration::from_secs(20), || {
        let (mut store, inst) = workers((), |_| {});
        i32_of(func(&store, inst, "spawn_setter_then_spin").call(&mut store, &[]))
    });
    assert!(n > 1, "the spinner ran until preempted: {n} iterations");
}

#[test]
fn two_busy_threads_share_the_cpu() {
    // Two spinners wait for a flag a third thread sets only after sleeping:
    // the sleeper must wake on time even though the CPU is never idle.
    let elapsed = with_timeout(Duration::from_secs(20), || {
        let engine = Engine::default();
        let mut linker = Linker::new(&engine);
        linker.add_thread_abi();
        let mut store = Store::new(&engine, ());
        let inst = linker
            .instantiate(&mut store, &Module::new(&engine, WORKERS).unwrap())
            .unwrap();
        let module = Module::new(
            &engine,
            r#"(module (import "wasm-patch" "sleep" (func $sleep (param i64)))
              (import "w" "set_flag" (func $set (param i32)))
              (func (export "late_set") (call $sleep (i64.const 20000000)) (call $set (i32.const 1))))"#,
        )
        .unwrap();
        let mut l2 = Linker::new(&engine);
        l2.add_thread_abi();
        l2.instance(&store, "w", inst);
        let late = l2.instantiate(&mut store, &module).unwrap();
        let start = Instant::now();
        let s1 = store.spawn(func(&store, inst, "spin"), &[]).unwrap();
        let s2 = store.spawn(func(&store, inst, "spin"), &[]).unwrap();
        store.spawn(func(&store, late, "late_set"), &[]).unwrap();
        store.run().unwrap();
        assert!(i32_of(store.take_result(s1)) > 0);
        assert!(i32_of(store.take_result(s2)) > 0);
        start.elapsed()
    });
    assert!(elapsed >= Duration::from_millis(20), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(2),
        "the sleeper woke late: {elapsed:?}"
    );
}

#[test]
fn host_spawn_from_a_host_function() {
    // `Caller::spawn` starts a thread that runs after the caller yields.
    let (mut store, inst) = workers(None::<Func>, |_| {});
    let engine = store.engine().clone();
    let work = func(&store, inst, "work");
    *store.data_mut() = Some(work);
    let mut linker = Linker::<Option<Func>>::new(&engine);
    linker.func_new(
        "env",
        "spawn_work",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let f = c.data().expect("set");
            let id = c.spawn(f, &[a[0], Val::I32(2)])?;
            r[0] = Val::I32(id.0 as i32);
            Ok(())
        },
    );
    let m = Module::new(
        &engine,
        r#"(module (import "env" "spawn_work" (func $s (param i32) (result i32)))
          (func (export "go") (param i32) (result i32) local.get 0 call $s))"#,
    )
    .unwrap();
    let i2 = linker.instantiate(&mut store, &m).unwrap();
    let id = ThreadId(i32_of(
        i2.get_func(&store, "go")
            .unwrap()
            .call(&mut store, &[Val::I32(4)]),
    ) as u32);
    assert_eq!(
        store.join(id).unwrap(),
        vec![Val::I32(expected_work(4, 2, id.0))]
    );
}

#[test]
fn dropping_a_store_with_unfinished_threads_is_clean() {
    with_timeout(Duration::from_secs(20), || {
        for _ in 0..3 {
            let (mut store, inst) = workers(Vec::<ThreadId>::new(), |l| {
                l.func_new("env", "never", FuncType::new([], []), |c, _, _| c.park());
            });
            let engine = store.engine().clone();
            let mut linker = Linker::<Vec<ThreadId>>::new(&engine);
            linker.func_new("env", "park", FuncType::new([], []), |c, _, _| {
                let me = c.thread_id();
                c.data_mut().push(me);
                c.park()
            });
            let m = Module::new(
                &engine,
                r#"(module (import "env" "park" (func $park)) (func (export "p") (param i32) (result i32)
                  local.get 0 if (result i32) local.get 0 i32.const 1 i32.sub call 1 else call $park i32.const 0 end))"#,
            )
            .unwrap();
            let pi = linker.instantiate(&mut store, &m).unwrap();
            for d in 0..5 {
                store.spawn(func(&store, pi, "p"), &[Val::I32(d)]).unwrap();
            }
            store.spawn(func(&store, inst, "spin"), &[]).unwrap();
            store
                .spawn(
                    func(&store, inst, "sleeper"),
                    &[Val::I64(10_000_000_000), Val::I32(1)],
                )
                .unwrap();
            store
                .spawn(
                    func(&store, inst, "work"),
                    &[Val::I32(1), Val::I32(1_000_000)],
                )
                .unwrap();
            let napper = store
                .spawn(
                    func(&store, inst, "sleeper"),
                    &[Val::I64(10_000_000), Val::I32(2)],
                )
                .unwrap();
            store.join(napper).unwrap();
            assert_eq!(store.data().len(), 5);
            drop(store);
        }
    });
}

#[test]
fn many_parked_threads_are_all_woken() {
    let engine = Engine::default();
    let mut linker = Linker::<Vec<ThreadId>>::new(&engine);
    linker.func_new(
        "env",
        "park",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let me = c.thread_id();
            c.data_mut().push(me);
            c.park()?;
            r[0] = Val::I32(a[0].i32().unwrap() * 2);
            Ok(())
        },
    );
    let m = Module::new(
        &engine,
        r#"(module (import "env" "park" (func $park (param i32) (result i32)))
          (func (export "f") (param i32) (result i32) local.get 0 call $park))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, Vec::new());
    let inst = linker.instantiate(&mut store, &m).unwrap();
    let f = inst.get_func(&store, "f").unwrap();
    let ids: Vec<ThreadId> = (0..2000)
        .map(|i| store.spawn(f, &[Val::I32(i)]).unwrap())
        .collect();
    store.run().unwrap();
    // Every thread parked once (not necessarily in spawn order: a thread
    // can be preempted at its function entry).
    let mut parked = store.data().clone();
    parked.sort();
    assert!(
        parked == ids,
        "{} parks for {} threads",
        parked.len(),
        ids.len()
    );
    assert!(ids
        .iter()
        .all(|id| store.thread_state(*id) == Some(RunState::Parked)));
    // Unpark the even ones, then the odd ones.
    for id in ids.iter().step_by(2) {
        store.unpark(*id);
    }
    store.run().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 2 == 0 {
            RunState::Done
        } else {
            RunState::Parked
        };
        assert_eq!(store.thread_state(*id), Some(want), "thread {i}");
    }
    for id in ids.iter().skip(1).step_by(2) {
        store.unpark(*id);
    }
    store.run().unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            store.take_result(*id).unwrap(),
            vec![Val::I32(2 * i as i32)]
        );
    }
}

#[test]
fn host_channel_parks_consumers_and_producers_unpark_them() {
    // An actor-style mailbox built from host functions: `recv` parks until
    // a message is queued for the caller; `send` queues one and unparks the
    // receiver.
    #[derive(Default)]
    struct Mailboxes {
        queues: std::collections::HashMap<i32, std::collections::VecDeque<i32>>,
        waiting: std::collections::HashMap<i32, ThreadId>,
    }
    let engine = Engine::default();
    let mut linker = Linker::<Mailboxes>::new(&engine);
    linker.add_thread_abi();
    linker.func_new(
        "env",
        "recv",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let me = a[0].i32().unwrap();
            loop {
                if let Some(v) = c.data_mut().queues.entry(me).or_default().pop_front() {
                    r[0] = Val::I32(v);
                    return Ok(());
                }
                let tid = c.thread_id();
                c.data_mut().waiting.insert(me, tid);
                c.park()?;
            }
        },
    );
    linker.func_new(
        "env",
        "send",
        FuncType::new([ValType::I32, ValType::I32], []),
        |c, a, _| {
            let (to, v) = (a[0].i32().unwrap(), a[1].i32().unwrap());
            c.data_mut().queues.entry(to).or_default().push_back(v);
            if let Some(t) = c.data_mut().waiting.remove(&to) {
                c.unpark(t);
            }
            Ok(())
        },
    );
    // A ring of `n` actors passes a token around `laps` times; each adds 1.
    let module = Module::new(
        &engine,
        r#"(module
          (import "env" "recv" (func $recv (param i32) (result i32)))
          (import "env" "send" (func $send (param i32 i32)))
          (func (export "actor") (param $me i32) (param $n i32) (param $laps i32) (result i32) (local $v i32)
            (loop $l
              (local.set $v (call $recv (local.get $me)))
              (call $send (i32.rem_u (i32.add (local.get $me) (i32.const 1)) (local.get $n))
                          (i32.add (local.get $v) (i32.const 1)))
              (local.tee $laps (i32.sub (local.get $laps) (i32.const 1)))
              (br_if $l))
            (local.get $v))
          (func (export "kick") (param i32) (call $send (local.get 0) (i32.const 0))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, Mailboxes::default());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let actor = inst.get_func(&store, "actor").unwrap();
    let (n, laps) = (50, 20);
    let ids: Vec<ThreadId> = (0..n)
        .map(|me| {
            store
                .spawn(actor, &[Val::I32(me), Val::I32(n), Val::I32(laps)])
                .unwrap()
        })
        .collect();
    store.run().unwrap();
    assert!(ids
        .iter()
        .all(|id| store.thread_state(*id) == Some(RunState::Parked)));
    inst.get_func(&store, "kick")
        .unwrap()
        .call(&mut store, &[Val::I32(0)])
        .unwrap();
    store.run().unwrap();
    // Actor k receives the token for the last time with value (laps-1)*n + k.
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(
            store.take_result(*id).unwrap(),
            vec![Val::I32((laps - 1) * n + k as i32)],
            "actor {k}"
        );
    }
    // The last send (to actor 0) is still queued.
    assert_eq!(
        store.data().queues[&0].iter().copied().collect::<Vec<_>>(),
        [laps * n]
    );
}

#[test]
fn deep_recursions_overflowing_in_interleaved_threads() {
    deep_recursions(true);
}

#[test]
fn deep_recursions_overflowing_on_unguarded_stacks_spare_their_neighbours() {
    // Without guard pages the stacks lie side by side in one mapping: only
    // the JIT code's stack-limit check keeps an overflow off the next
    // thread's stack, which the bounded threads would notice.
    deep_recursions(false);
}

fn deep_recursions(guard_pages: bool) {
    // Several threads recurse without bound, yielding every 64 levels, so
    // that all of them are deep at once; each overflows its own stack.
    let engine = Engine::new(wasm_patch_runtime::Config {
        guard_pages,
        ..Default::default()
    })
    .unwrap();
    let mut linker = Linker::<()>::new(&engine);
    linker.add_thread_abi();
    let module = Module::new(
        &engine,
        r#"(module (import "wasm-patch" "yield" (func $yield))
          (func $rec (export "rec") (param i32) (result i32)
            (if (i32.eqz (i32.and (local.get 0) (i32.const 63))) (then (call $yield)))
            (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
          (func $bounded (export "bounded") (param i32) (result i32)
            (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
              (else
                (if (i32.eqz (i32.and (local.get 0) (i32.const 63))) (then (call $yield)))
                (i32.add (call $bounded (i32.sub (local.get 0) (i32.const 1))) (i32.const 1))))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let rec = inst.get_func(&store, "rec").unwrap();
    let bounded = inst.get_func(&store, "bounded").unwrap();
    for _round in 0..2 {
        let overflowing: Vec<ThreadId> = (0..6)
            .map(|_| store.spawn(rec, &[Val::I32(1)]).unwrap())
            .collect();
        let fine: Vec<ThreadId> = (0..3)
            .map(|_| store.spawn(bounded, &[Val::I32(5000)]).unwrap())
            .collect();
        store.run().unwrap();
        for id in overflowing {
            match store.take_result(id) {
                Err(Error::Trap(t)) => {
                    assert_eq!(t.kind, wasm_patch_runtime::TrapKind::StackOverflow)
                }
                other => panic!("expected a stack overflow, got {other:?}"),
            }
        }
        for id in fine {
            assert_eq!(store.take_result(id).unwrap(), vec![Val::I32(5000)]);
        }
    }
}

#[test]
fn a_thread_whose_entry_is_a_host_function() {
    let engine = Engine::default();
    let mut linker = Linker::<u32>::new(&engine);
    linker.func_new(
        "env",
        "wait",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            *c.data_mut() += 1;
            c.park()?;
            r[0] = Val::I32(a[0].i32().unwrap() * 3);
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "wait" (func $w (param i32) (result i32))) (export "wait" (func $w)))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, 0u32);
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let id = store
        .spawn(inst.get_func(&store, "wait").unwrap(), &[Val::I32(14)])
        .unwrap();
    store.run().unwrap();
    assert_eq!(*store.data(), 1);
    assert_eq!(store.thread_state(id), Some(RunState::Parked));
    assert_eq!(
        store.backtrace(id),
        Some(vec![]),
        "no wasm frames: only the host function"
    );
    store.unpark(id);
    assert_eq!(store.join(id).unwrap(), vec![Val::I32(42)]);
    assert!(
        matches!(store.join(id), Err(Error::BadCall(_))),
        "a joined thread is gone"
    );
}

// Each engine's time slice is honoured, also when another engine with a
// different slice registered with the process-wide ticker first.
#[test]
fn engine_time_slice_is_honoured() {
    // Make sure some default (5 ms) engine has registered with the ticker.
    let _first = workers((), |_| {});
    let elapsed = with_timeout(Duration::from_secs(20), || {
        let engine = Engine::new(wasm_patch_runtime::Config {
            time_slice: Duration::from_millis(200),
            ..Default::default()
        })
        .unwrap();
        let mut linker = Linker::<()>::new(&engine);
        linker.add_thread_abi();
        let mut store = Store::new(&engine, ());
        let inst = linker
            .instantiate(&mut store, &Module::new(&engine, WORKERS).unwrap())
            .unwrap();
        let start = Instant::now();
        let spin = store.spawn(func(&store, inst, "spin"), &[]).unwrap();
        store
            .spawn(func(&store, inst, "set_flag"), &[Val::I32(1)])
            .unwrap();
        store.run().unwrap();
        store.take_result(spin).unwrap();
        start.elapsed()
    });
    assert!(
        elapsed >= Duration::from_millis(150),
        "preempted after {elapsed:?} with a 200 ms slice"
    );
}

/// The export counting turns until memory word 4 is set: each of its turns
/// after the first is one preemption of the thread it shares the CPU with.
const TURN_COUNTER: &str = r#"
          (func (export "count_turns") (result i32)
            (loop $l
              (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
              (call $yield)
              (br_if $l (i32.eqz (i32.load (i32.const 4)))))
            (i32.load (i32.const 0)))"#;

/// A store of an engine with `config` and an instance of `wat`, which may
/// import the thread ABI.
fn with_thread_abi(config: wasm_patch_runtime::Config, wat: &str) -> (Store<()>, Instance) {
    let engine = Engine::new(config).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    let inst = linker
        .instantiate(&mut store, &Module::new(&engine, wat).unwrap())
        .unwrap();
    (store, inst)
}

/// Run export `name(args)` of `wat` (which includes [`TURN_COUNTER`] and
/// sets memory word 4 when done) beside the turn counter, with a 200 µs
/// time slice; its result and the counter's turns.
fn run_beside_turn_counter(wat: String, name: &'static str, args: Vec<Val>) -> (Vec<Val>, i32) {
    with_timeout(Duration::from_secs(60), move || {
        let (mut store, inst) = with_thread_abi(
            wasm_patch_runtime::Config {
                time_slice: Duration::from_micros(200),
                ..Default::default()
            },
            &wat,
        );
        let work = store.spawn(func(&store, inst, name), &args).unwrap();
        let counter = store.spawn(func(&store, inst, "count_turns"), &[]).unwrap();
        store.run().unwrap();
        (
            store.take_result(work).unwrap(),
            i32_of(store.take_result(counter)),
        )
    })
}

/// `name(args)` of `wat` in the baseline build, which has no polls: the
/// reference for the same call preempted in the patchable build.
fn baseline_result(wat: &str, name: &str, args: &[Val]) -> Vec<Val> {
    let (mut store, inst) = with_thread_abi(
        wasm_patch_runtime::Config {
            patchable: false,
            ..Default::default()
        },
        wat,
    );
    func(&store, inst, name).call(&mut store, args).unwrap()
}

/// A loop keeping 12 integers and 12 floats live across its poll, and a
/// counter of its turns in memory.
fn register_heavy_module() -> String {
    let n = 12;
    let mut locals = String::new();
    let mut body = String::new();
    let mut fold = String::from("(local.get $a0)");
    for i in 0..n {
        let j = (i + 1) % n;
        locals.push_str(&format!("(local $a{i} i64) (local $f{i} f64) "));
        body.push_str(&format!(
            "(local.set $a{i} (i64.add (i64.mul (local.get $a{i}) (i64.const 6364136223846793005)) (i64.xor (local.get $a{j}) (i64.const {}))))
             (local.set $f{i} (f64.add (f64.mul (local.get $f{i}) (f64.const 0.999)) (f64.convert_i64_u (i64.and (local.get $a{i}) (i64.const 255)))))\n",
            2 * i + 1
        ));
        if i > 0 {
            fold = format!("(i64.xor (i64.rotl {fold} (i64.const 7)) (local.get $a{i}))");
        }
        fold = format!("(i64.xor {fold} (i64.reinterpret_f64 (local.get $f{i})))");
    }
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (memory 1)
          (func (export "heavy") (param $n i32) (result i64) (local $i i32) {locals}
            (loop $l
              {body}
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
            (i32.store (i32.const 4) (i32.const 1))
            {fold})
          {TURN_COUNTER})"#
    )
}

#[test]
fn values_live_across_a_preempting_poll_survive() {
    let wat = register_heavy_module();
    let iterations = 2_000_000;
    let want = baseline_result(&wat, "heavy", &[Val::I32(iterations)]);
    let (got, turns) = run_beside_turn_counter(wat, "heavy", vec![Val::I32(iterations)]);
    assert!(
        turns >= 3,
        "the loop was preempted only {} times: the test did not exercise the poll path",
        turns - 1
    );
    assert_eq!(got, want, "after {turns} preemptions");
}

#[test]
fn a_call_tree_without_loops_or_recursion_is_still_preempted() {
    // $f0 calls $f1 twice, $f1 calls $f2 twice, ...: 2^22 calls, no loop,
    // no cycle. Polls only at the entries the call-graph analysis chose.
    let depth = 24;
    let mut funcs = String::new();
    for i in 0..depth {
        let j = i + 1;
        if j == depth {
            funcs.push_str(&format!(
                "(func $f{i} (global.set $n (i64.add (global.get $n) (i64.const 1))))\n"
            ));
        } else {
            funcs.push_str(&format!("(func $f{i} (call $f{j}) (call $f{j}))\n"));
        }
    }
    let wat = format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (memory 1)
          (global $n (mut i64) (i64.const 0))
          {funcs}
          (func (export "tree") (result i64)
            (call $f0) (i32.store (i32.const 4) (i32.const 1)) (global.get $n))
          {TURN_COUNTER})"#
    );
    let (leaves, turns) = run_beside_turn_counter(wat, "tree", Vec::new());
    assert_eq!(leaves, vec![Val::I64(1 << (depth - 1))]);
    assert!(
        turns >= 3,
        "2^{} calls ran with only {} preemptions",
        depth - 1,
        turns - 1
    );
}

#[test]
fn a_counted_loop_too_long_to_run_without_polls_is_still_preempted() {
    // A counted loop from a known start (compile/loop_bounds.rs) whose
    // trip count is far above what may run without a header poll.
    let wat = format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (memory 1)
          (func (export "count") (result i32) (local $i i32) (local $acc i32)
            (i32.const 0) (local.set $i)
            (loop $l
              (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $i)))
              (br_if $l (i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                (i32.const 0x4000000))))
            (i32.store (i32.const 4) (i32.const 1))
            (local.get $acc))
          {TURN_COUNTER})"#
    );
    let (got, turns) = run_beside_turn_counter(wat, "count", Vec::new());
    let want = (0..0x400_0000u32).fold(0u32, |acc, i| acc.wrapping_mul(31).wrapping_add(i));
    assert_eq!(got, vec![Val::I32(want as i32)]);
    assert!(
        turns >= 3,
        "2^26 iterations ran with only {} preemptions",
        turns - 1
    );
}

#[test]
fn a_loop_of_loads_after_heap_and_global_stores_is_preempted_at_its_own_header() {
    // The compiler tags heap, global and table accesses with alias regions
    // (compile/func_env.rs, `Region`), so a heap store or `global.set` no
    // longer acts as a store to everything: nothing but the poll's own
    // slow-path call may tell Cranelift that the poll hint changed. The
    // inner loop only loads (it walks a cyclic list for `$n` steps) after
    // a heap store and a `global.set` in the outer loop, which runs twice:
    // if its header poll were merged with an earlier read of the hint or
    // hoisted, the thread would be preempted at most at the outer header.
    let wat = format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (memory 1)
          (global $g (mut i32) (i32.const 0))
          (func (export "walk") (param $n i32) (result i32)
            (local $p i32) (local $k i32) (local $o i32) (local $acc i32)
            (local.set $p (i32.const 64))
            (loop $build
              (i32.store (local.get $p) (i32.add (local.get $p) (i32.const 4)))
              (br_if $build (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 4)))
                                      (i32.const 4064))))
            (i32.store (i32.const 4064) (i32.const 64))
            (loop $outer
              (i32.store (i32.const 8) (local.get $o))
              (global.set $g (i32.add (global.get $g) (local.get $o)))
              (local.set $p (i32.const 64))
              (local.set $k (local.get $n))
              (loop $inner
                (local.set $acc (i32.add (local.get $acc) (i32.load (local.get $p))))
                (local.set $p (i32.load (local.get $p)))
                (br_if $inner (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))
              (br_if $outer (i32.lt_u (local.tee $o (i32.add (local.get $o) (i32.const 1)))
                                      (i32.const 2))))
            (i32.store (i32.const 4) (i32.const 1))
            (i32.add (local.get $acc) (global.get $g)))
          {TURN_COUNTER})"#
    );
    let n = 20_000_000;
    let want = baseline_result(&wat, "walk", &[Val::I32(n)]);
    let (got, turns) = run_beside_turn_counter(wat, "walk", vec![Val::I32(n)]);
    assert_eq!(got, want);
    assert!(
        turns >= 10,
        "40 million iterations of two inner-loop runs gave only {} preemptions",
        turns - 1
    );
}

#[test]
fn short_counted_loops_inside_a_long_loop_are_preempted_through_it() {
    // The inner 64-round loop has no header poll; the outer loop's header
    // polls once per 64 rounds, and the results match the baseline build.
    let wat = format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (memory 1)
          (func (export "rounds") (param $n i32) (result i32)
            (local $i i32) (local $j i32) (local $h i32)
            (local.set $h (i32.const 0x6a09e667))
            (loop $outer
              (i32.const 0) (local.set $j)
              (loop $inner
                (local.set $h (i32.xor (i32.rotl (local.get $h) (i32.const 7))
                                       (i32.add (local.get $j) (local.get $i))))
                (br_if $inner (i32.ne (local.tee $j (i32.add (local.get $j) (i32.const 1)))
                                      (i32.const 64))))
              (br_if $outer (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                      (local.get $n))))
            (i32.store (i32.const 4) (i32.const 1))
            (local.get $h))
          {TURN_COUNTER})"#
    );
    let n = 1_000_000;
    let want = baseline_result(&wat, "rounds", &[Val::I32(n)]);
    let (got, turns) = run_beside_turn_counter(wat, "rounds", vec![Val::I32(n)]);
    assert_eq!(got, want);
    assert!(
        turns >= 3,
        "64 million rounds ran with only {} preemptions",
        turns - 1
    );
}
