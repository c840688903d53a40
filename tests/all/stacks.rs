//! Exact stacks: `Store::backtrace` of a thread that is parked, sleeping,
//! preempted or inside a nested host → wasm → host call lists exactly its
//! wasm frames, innermost first, with names and code units.

use crate::{i32_of, names, with_timeout};
use std::time::Duration;
use wasm_patch_runtime::{
    Engine, FrameInfo, Func, FuncType, Instance, Linker, Module, RunState, Store, ThreadId, Val,
    ValType,
};

const STACKS: &str = r#"(module
  (import "env" "park" (func $park (result i32)))
  (import "env" "reenter" (func $reenter (param i32) (result i32)))
  (import "wasm-patch" "sleep" (func $sleep (param i64)))
  (import "wasm-patch" "yield" (func $yield))
  (global $flag (mut i32) (i32.const 0))
  (func $entry (export "entry") (param $n i32) (result i32)
    local.get 0 call $down i32.const 1 i32.add)
  ;; `n` frames of $down, the innermost one calling the host to park.
  (func $down (param $n i32) (result i32)
    local.get 0 i32.const 1 i32.le_s
    if (result i32) call $park
    else local.get 0 i32.const 1 i32.sub call $down i32.const 0 i32.add end)
  (func $outer (export "outer") (param i32) (result i32) local.get 0 call $reenter i32.const 1 i32.add)
  (func $inner (export "inner") (param i32) (result i32) local.get 0 call $inner2 i32.const 1 i32.add)
  (func $inner2 (param i32) (result i32) local.get 0 call $down i32.const 1 i32.add)
  (func $spin_outer (export "spin_outer") (result i32) call $spin i32.const 1 i32.add)
  (func $spin (result i32) (local $n i32)
    (loop $l
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $l (i32.eqz (global.get $flag))))
    (local.get $n))
  (func (export "set_flag") (global.set $flag (i32.const 1)))
  (func $nap (export "nap") (param i64) local.get 0 call $sleep)
  (func $napper (export "napper") (param i64) local.get 0 call $nap)
  (func $yielder (export "yielder") call $yield)
)"#;

/// Store data: the export `reenter` calls back into, and how many host
/// parks happened.
#[derive(Default)]
struct Data {
    inner: Option<Func>,
    parks: u32,
}

fn setup() -> (Store<Data>, Instance) {
    let engine = Engine::default();
    let mut linker = Linker::<Data>::new(&engine);
    linker.add_thread_abi();
    linker.func_new(
        "env",
        "park",
        FuncType::new([], [ValType::I32]),
        |c, _, r| {
            c.data_mut().parks += 1;
            c.park()?;
            r[0] = Val::I32(100);
            Ok(())
        },
    );
    linker.func_new(
        "env",
        "reenter",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let f = c.data().inner.expect("inner set");
            let v = c.call(f, &[a[0]])?;
            r[0] = Val::I32(v[0].i32().unwrap() + 1000);
            Ok(())
        },
    );
    let mut store = Store::new(&engine, Data::default());
    let inst = linker
        .instantiate(&mut store, &Module::new(&engine, STACKS).unwrap())
        .unwrap();
    store.data_mut().inner = Some(inst.get_func(&store, "inner").unwrap());
    (store, inst)
}

fn func<T>(store: &Store<T>, inst: Instance, name: &str) -> Func {
    inst.get_func(store, name)
        .unwrap_or_else(|| panic!("no export {name}"))
}

fn bt<T: 'static>(store: &Store<T>, id: ThreadId) -> Vec<FrameInfo> {
    store.backtrace(id).expect("a known thread")
}

#[test]
fn parked_thread_shows_exactly_its_frames_at_any_depth() {
    let (mut store, inst) = setup();
    let entry = func(&store, inst, "entry");
    for depth in [1usize, 10, 64, 500] {
        let id = store.spawn(entry, &[Val::I32(depth as i32)]).unwrap();
        store.run().unwrap();
        assert_eq!(store.thread_state(id), Some(RunState::Parked));
        let frames = bt(&store, id);
        let mut want = vec!["down"; depth];
        want.push("entry");
        assert_eq!(names(&frames), want, "depth {depth}");
        assert_eq!(frames.last().unwrap().func_index, entry.index());
        assert!(frames[..depth]
            .iter()
            .all(|f| f.func_index == entry.index() + 1));
        assert!(
            frames.iter().all(|f| f.unit == frames[0].unit),
            "one module, one unit"
        );
        // Reading it again gives the same answer: the walk is pure.
        assert_eq!(bt(&store, id), frames);
        store.unpark(id);
        assert_eq!(store.join(id).unwrap(), vec![Val::I32(101)]);
    }
    assert_eq!(store.data().parks, 4);
}

#[test]
fn many_parked_threads_each_show_their_own_stack() {
    let (mut store, inst) = setup();
    let entry = func(&store, inst, "entry");
    let ids: Vec<(ThreadId, usize)> = (1..=20)
        .map(|d| (store.spawn(entry, &[Val::I32(d as i32)]).unwrap(), d))
        .collect();
    store.run().unwrap();
    for &(id, d) in &ids {
        let frames = bt(&store, id);
        assert_eq!(frames.len(), d + 1, "{id}");
        assert_eq!(frames[0].name, "down");
        assert_eq!(frames[d].name, "entry");
    }
    // Wake them in reverse; each one's stack stays exact until it runs.
    for &(id, _) in ids.iter().rev() {
        store.unpark(id);
        assert_eq!(store.join(id).unwrap(), vec![Val::I32(101)]);
        assert!(
            store.backtrace(id).is_none(),
            "a joined thread is forgotten"
        );
    }
}

#[test]
fn nested_host_wasm_host_call_shows_both_wasm_segments() {
    let (mut store, inst) = setup();
    let outer = func(&store, inst, "outer");
    let id = store.spawn(outer, &[Val::I32(3)]).unwrap();
    store.run().unwrap();
    assert_eq!(store.thread_state(id), Some(RunState::Parked));
    let frames = bt(&store, id);
    assert_eq!(
        names(&frames),
        ["down", "down", "down", "inner2", "inner", "outer"]
    );
    store.unpark(id);
    // park 100 -> inner2 +1 -> inner +1 -> reenter +1000 -> outer +1
    assert_eq!(store.join(id).unwrap(), vec![Val::I32(1103)]);
}

#[test]
fn sleeping_and_yielding_threads_show_their_frames() {
    let (mut store, inst) = setup();
    let napper = store
        .spawn(func(&store, inst, "napper"), &[Val::I64(30_000_000)])
        .unwrap();
    let yielder = store.spawn(func(&store, inst, "yielder"), &[]).unwrap();
    let fresh = store
        .spawn(func(&store, inst, "entry"), &[Val::I32(2)])
        .unwrap();
    // Not started yet: no frames.
    assert_eq!(bt(&store, fresh), vec![]);
    // Run the yielder up to its yield: join something that runs after it.
    let probe = store.spawn(func(&store, inst, "set_flag"), &[]).unwrap();
    store.join(probe).unwrap();
    assert_eq!(store.thread_state(napper), Some(RunState::Sleeping));
    assert_eq!(names(&bt(&store, napper)), ["nap", "napper"]);
    assert_eq!(store.thread_state(yielder), Some(RunState::Ready));
    assert_eq!(names(&bt(&store, yielder)), ["yielder"]);
    store.run().unwrap();
    assert_eq!(store.thread_state(napper), Some(RunState::Done));
    assert_eq!(
        bt(&store, napper),
        vec![],
        "a finished thread has no frames"
    );
    store.take_result(napper).unwrap();
    store.take_result(yielder).unwrap();
    assert!(store.backtrace(napper).is_none());
    assert!(store.backtrace(ThreadId(999_999)).is_none());
    store.unpark(fresh);
    store.join(fresh).unwrap();
}

#[test]
fn preempted_thread_shows_its_frames_at_the_poll() {
    with_timeout(Duration::from_secs(20), || {
        let (mut store, inst) = setup();
        let spinner = store.spawn(func(&store, inst, "spin_outer"), &[]).unwrap();
        // The napper sleeps 20 ms while the spinner runs (and is preempted
        // every slice); joining it stops the scheduler with the spinner
        // preempted in its loop.
        let napper = store
            .spawn(func(&store, inst, "nap"), &[Val::I64(20_000_000)])
            .unwrap();
        store.join(napper).unwrap();
        assert_eq!(store.thread_state(spinner), Some(RunState::Ready));
        let frames = bt(&store, spinner);
        assert_eq!(names(&frames), ["spin", "spin_outer"]);
        assert_eq!(
            frames[1].func_index,
            func(&store, inst, "spin_outer").index()
        );
        assert_eq!(frames[0].func_index, frames[1].func_index + 1);
        // Let it finish.
        func(&store, inst, "set_flag")
            .call(&mut store, &[])
            .unwrap();
        store.run().unwrap();
        assert_eq!(bt(&store, spinner), vec![]);
        assert!(i32_of(store.take_result(spinner)) > 1);
        assert!(store.backtrace(spinner).is_none());
    });
}

#[test]
fn frames_report_one_unit_per_module() {
    let (mut store, inst) = setup();
    let engine = store.engine().clone();
    let mut linker = Linker::new(&engine);
    linker.instance(&store, "s", inst);
    let other = Module::new(
        &engine,
        r#"(module (import "s" "entry" (func $entry (param i32) (result i32)))
          (func $caller (export "caller") (param i32) (result i32) local.get 0 call $helper)
          (func $helper (param i32) (result i32) local.get 0 call $entry))"#,
    )
    .unwrap();
    let o = linker.instantiate(&mut store, &other).unwrap();
    let id = store
        .spawn(func(&store, o, "caller"), &[Val::I32(2)])
        .unwrap();
    store.run().unwrap();
    let frames = bt(&store, id);
    assert_eq!(
        names(&frames),
        ["down", "down", "entry", "helper", "caller"]
    );
    let (u_s, u_o) = (frames[0].unit, frames[4].unit);
    assert_ne!(u_s, u_o, "two modules, two units");
    assert_eq!(frames[1].unit, u_s);
    assert_eq!(frames[2].unit, u_s);
    assert_eq!(frames[3].unit, u_o);
    // Indices are per module: `caller` is index 1 in its module (after the import).
    assert_eq!(frames[4].func_index, 1);
    assert_eq!(frames[3].func_index, 2);
    store.unpark(id);
    assert_eq!(store.join(id).unwrap(), vec![Val::I32(101)]);

    // The same unit ids show up in a trap's backtrace.
    let trapper = Module::new(
        &engine,
        r#"(module (import "s" "entry" (func $entry (param i32) (result i32)))
          (func $t (export "t") unreachable))"#,
    )
    .unwrap();
    let t = linker.instantiate(&mut store, &trapper).unwrap();
    let trap = crate::trap_of(func(&store, t, "t").call(&mut store, &[]));
    assert_eq!(names(&trap.frames), ["t"]);
    assert_ne!(trap.frames[0].unit, u_s);
    assert_ne!(trap.frames[0].unit, u_o);
}

#[test]
fn thread_preempted_in_deep_recursion_shows_every_frame_and_finishes_right() {
    // fib(27) makes ~600k calls: long enough to be preempted at a function
    // entry poll, with a recursion of up to 27 frames on the stack.
    let (frames, r) = with_timeout(Duration::from_secs(20), || {
        let engine = Engine::default();
        let mut linker = Linker::<()>::new(&engine);
        linker.add_thread_abi();
        let module = Module::new(
            &engine,
            r#"(module (import "wasm-patch" "sleep" (func $sleep (param i64)))
              (func $fib (export "fib") (param i32) (result i32)
                local.get 0 i32.const 2 i32.lt_s if (result i32) local.get 0 else
                  local.get 0 i32.const 1 i32.sub call $fib local.get 0 i32.const 2 i32.sub call $fib i32.add end)
              (func $fibs (export "fibs") (param i32) (result i32) (local $acc i32)
                (loop $l
                  (local.set $acc (i32.add (local.get $acc) (call $fib (i32.const 27))))
                  (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))
                  (br_if $l))
                (local.get $acc))
              (func (export "nap") (param i64) local.get 0 call $sleep))"#,
        )
        .unwrap();
        let mut store = Store::new(&engine, ());
        let inst = linker.instantiate(&mut store, &module).unwrap();
        let busy = store
            .spawn(func(&store, inst, "fibs"), &[Val::I32(30)])
            .unwrap();
        let napper = store
            .spawn(func(&store, inst, "nap"), &[Val::I64(10_000_000)])
            .unwrap();
        store.join(napper).unwrap();
        let frames = bt(&store, busy);
        let r = store.join(busy);
        (frames, r)
    });
    assert_eq!(r.unwrap(), vec![Val::I32(196_418 * 30)]);
    assert!(!frames.is_empty(), "it was preempted inside wasm");
    assert_eq!(frames.last().unwrap().name, "fibs", "{:?}", names(&frames));
    assert!(frames.len() <= 28, "{} frames", frames.len());
    assert!(
        frames[..frames.len() - 1].iter().all(|f| f.name == "fib"),
        "{:?}",
        names(&frames)
    );
}

#[test]
fn a_trap_caught_by_the_host_in_a_nested_call_leaves_the_outer_stack_exact() {
    #[derive(Default)]
    struct D {
        inner: Option<Func>,
        caught: Vec<String>,
    }
    let engine = Engine::default();
    let mut linker = Linker::<D>::new(&engine);
    linker.func_new(
        "env",
        "try_inner",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let f = c.data().inner.expect("set");
            r[0] = match c.call(f, &[a[0]]) {
                Ok(v) => v[0],
                Err(e) => {
                    c.data_mut().caught.push(e.to_string());
                    Val::I32(-1)
                }
            };
            Ok(())
        },
    );
    linker.func_new("env", "park", FuncType::new([], []), |c, _, _| c.park());
    let module = Module::new(
        &engine,
        r#"(module
          (import "env" "try_inner" (func $try (param i32) (result i32)))
          (import "env" "park" (func $park))
          (func $inner (export "inner") (param i32) (result i32)
            local.get 0 i32.eqz if unreachable end local.get 0 call $inner2)
          (func $inner2 (param i32) (result i32) local.get 0 i32.const 10 i32.mul)
          (func $outer (export "outer") (param i32) (result i32) (local i32)
            local.get 0 call $try local.set 1 call $park local.get 1)
          (func $top (export "top") (param i32) (result i32) local.get 0 call $outer))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, D::default());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    store.data_mut().inner = Some(func(&store, inst, "inner"));
    let top = func(&store, inst, "top");
    for (arg, want) in [(0, -1), (4, 40)] {
        let id = store.spawn(top, &[Val::I32(arg)]).unwrap();
        store.run().unwrap();
        assert_eq!(names(&bt(&store, id)), ["outer", "top"], "arg {arg}");
        store.unpark(id);
        assert_eq!(store.join(id).unwrap(), vec![Val::I32(want)]);
    }
    assert_eq!(store.data().caught.len(), 1);
    assert!(
        store.data().caught[0].contains("unreachable"),
        "{}",
        store.data().caught[0]
    );
}

#[test]
fn alternating_host_and_wasm_segments_are_all_on_the_stack() {
    // wasm $level(n) -> host `down`(n) -> wasm $level(n - 1) -> ... -> park:
    // 30 wasm segments separated by host frames.
    #[derive(Default)]
    struct D {
        level: Option<Func>,
    }
    let engine = Engine::default();
    let mut linker = Linker::<D>::new(&engine);
    linker.func_new(
        "env",
        "down",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let n = a[0].i32().unwrap();
            if n == 0 {
                c.park()?;
                r[0] = Val::I32(0);
            } else {
                let f = c.data().level.expect("set");
                r[0] = Val::I32(c.call(f, &[Val::I32(n - 1)])?[0].i32().unwrap() + 1);
            }
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "down" (func $down (param i32) (result i32)))
          (func $level (export "level") (param i32) (result i32) local.get 0 call $helper)
          (func $helper (param i32) (result i32) local.get 0 call $down))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, D::default());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let level = func(&store, inst, "level");
    store.data_mut().level = Some(level);
    let id = store.spawn(level, &[Val::I32(29)]).unwrap();
    store.run().unwrap();
    let frames = bt(&store, id);
    let want: Vec<&str> = (0..30).flat_map(|_| ["helper", "level"]).collect();
    assert_eq!(names(&frames), want);
    store.unpark(id);
    assert_eq!(store.join(id).unwrap(), vec![Val::I32(29)]);
    // Again, to check the exit records were restored on the way out.
    let id = store.spawn(level, &[Val::I32(3)]).unwrap();
    store.run().unwrap();
    assert_eq!(bt(&store, id).len(), 8);
    store.unpark(id);
    assert_eq!(store.join(id).unwrap(), vec![Val::I32(3)]);
}

#[test]
fn thread_preempted_inside_a_nested_wasm_segment_shows_both_segments() {
    with_timeout(Duration::from_secs(20), || {
        #[derive(Default)]
        struct D {
            spin: Option<Func>,
        }
        let engine = Engine::default();
        let mut linker = Linker::<D>::new(&engine);
        linker.add_thread_abi();
        linker.func_new(
            "env",
            "nested_spin",
            FuncType::new([], [ValType::I32]),
            |c, _, r| {
                let f = c.data().spin.expect("set");
                r[0] = c.call(f, &[])?[0];
                Ok(())
            },
        );
        let module = Module::new(
            &engine,
            r#"(module
              (import "env" "nested_spin" (func $nested (result i32)))
              (import "wasm-patch" "sleep" (func $sleep (param i64)))
              (global $flag (mut i32) (i32.const 0))
              (func $outer (export "outer") (result i32) call $nested)
              (func $spin (export "spin") (result i32) (local $n i32)
                (loop $l
                  (local.set $n (i32.add (local.get $n) (i32.const 1)))
                  (br_if $l (i32.eqz (global.get $flag))))
                (local.get $n))
              (func (export "nap") (i64.const 20000000) (call $sleep))
              (func (export "set_flag") (global.set $flag (i32.const 1))))"#,
        )
        .unwrap();
        let mut store = Store::new(&engine, D::default());
        let inst = linker.instantiate(&mut store, &module).unwrap();
        store.data_mut().spin = Some(func(&store, inst, "spin"));
        let spinner = store.spawn(func(&store, inst, "outer"), &[]).unwrap();
        let napper = store.spawn(func(&store, inst, "nap"), &[]).unwrap();
        store.join(napper).unwrap();
        assert_eq!(store.thread_state(spinner), Some(RunState::Ready));
        assert_eq!(names(&bt(&store, spinner)), ["spin", "outer"]);
        func(&store, inst, "set_flag")
            .call(&mut store, &[])
            .unwrap();
        assert!(i32_of(store.join(spinner)) > 1);
    });
}

#[test]
fn dropping_a_store_with_threads_inside_nested_segments_is_clean() {
    with_timeout(Duration::from_secs(20), || {
        for _ in 0..3 {
            let (mut store, inst) = setup();
            // Parked inside host -> wasm -> host, and parked at depth 64.
            let nested = store
                .spawn(func(&store, inst, "outer"), &[Val::I32(5)])
                .unwrap();
            let deep = store
                .spawn(func(&store, inst, "entry"), &[Val::I32(64)])
                .unwrap();
            // Preempted in a loop, and sleeping.
            let spinner = store.spawn(func(&store, inst, "spin_outer"), &[]).unwrap();
            let napper = store
                .spawn(func(&store, inst, "napper"), &[Val::I64(10_000_000_000)])
                .unwrap();
            let probe = store
                .spawn(func(&store, inst, "nap"), &[Val::I64(12_000_000)])
                .unwrap();
            store.join(probe).unwrap();
            assert_eq!(bt(&store, nested).len(), 8);
            assert_eq!(bt(&store, deep).len(), 65);
            assert_eq!(store.thread_state(spinner), Some(RunState::Ready));
            assert_eq!(store.thread_state(napper), Some(RunState::Sleeping));
            drop(store);
        }
    });
}
