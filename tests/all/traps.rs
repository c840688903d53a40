//! Traps: every kind comes back as `Error::Trap` with the right kind and a
//! named wasm backtrace; the store, its instances and other threads keep
//! working afterwards.

use crate::{i32_of, names, trap_of};
use wasm_patch_runtime::{
    Engine, Error, FuncType, Instance, Linker, Module, Store, TrapKind, Val, ValType,
};

const KINDS: &str = r#"(module
  (import "env" "fail" (func $fail (param i32)))
  (import "env" "panic" (func $panic))
  (memory 1)
  (table $t 2 funcref)
  (elem (i32.const 0) $load)
  (func $load (export "load") (param i32) (result i32) local.get 0 i32.load)
  (func (export "store") (param i32 i32) local.get 0 local.get 1 i32.store)
  (func (export "load_offset") (param i32) (result i64) local.get 0 i64.load offset=65530)
  (func (export "fill") (param i32 i32) local.get 0 i32.const 7 local.get 1 memory.fill)
  (func (export "div_s") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
  (func (export "rem_u64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.rem_u)
  (func (export "trunc32") (param f32) (result i32) local.get 0 i32.trunc_f32_s)
  (func (export "trunc64") (param f64) (result i64) local.get 0 i64.trunc_f64_u)
  (func (export "unreachable") unreachable)
  (func $rec (export "recurse") (param i32) (result i32)
    local.get 0 i32.const 1 i32.add call $rec i32.const 1 i32.add)
  (func (export "wrong_type") (result i32) i32.const 0 call_indirect (result i32))
  (func (export "null") (result i32) i32.const 0 i32.const 1 call_indirect (param i32) (result i32))
  (func (export "undefined") (result i32) i32.const 0 i32.const 2 call_indirect (param i32) (result i32))
  (func (export "table_get") (param i32) (result funcref) local.get 0 table.get $t)
  (func (export "table_fill") (param i32 i32) local.get 0 ref.null func local.get 1 table.fill $t)
  (func $host_fail (export "host_fail") (param i32) local.get 0 call $fail)
  (func (export "host_panic") call $panic)
)"#;

fn kinds() -> (Store<()>, Instance) {
    let engine = Engine::default();
    let mut linker = Linker::new(&engine);
    linker.func_new(
        "env",
        "fail",
        FuncType::new([ValType::I32], []),
        |_, a, _| {
            let code = a[0].i32().unwrap();
            if code == 0 {
                Ok(())
            } else {
                Err(Error::Host(format!("disk on fire (code {code})")))
            }
        },
    );
    linker.func_new("env", "panic", FuncType::new([], []), |_, _, _| {
        panic!("a host function panicked on purpose")
    });
    let mut store = Store::new(&engine, ());
    let inst = linker
        .instantiate(&mut store, &Module::new(&engine, KINDS).unwrap())
        .unwrap();
    (store, inst)
}

fn kind_of(store: &mut Store<()>, inst: Instance, name: &str, args: &[Val]) -> TrapKind {
    trap_of(inst.get_func(store, name).unwrap().call(store, args)).kind
}

#[test]
fn every_trap_kind_is_reported() {
    use TrapKind::*;
    let (mut store, inst) = kinds();
    let s = &mut store;
    assert_eq!(
        kind_of(s, inst, "load", &[Val::I32(65536)]),
        MemoryOutOfBounds
    );
    assert_eq!(
        kind_of(s, inst, "load", &[Val::I32(65533)]),
        MemoryOutOfBounds
    );
    assert_eq!(kind_of(s, inst, "load", &[Val::I32(-1)]), MemoryOutOfBounds);
    assert_eq!(
        kind_of(s, inst, "store", &[Val::I32(65534), Val::I32(1)]),
        MemoryOutOfBounds
    );
    assert_eq!(
        kind_of(s, inst, "load_offset", &[Val::I32(0)]),
        MemoryOutOfBounds
    );
    assert_eq!(
        kind_of(s, inst, "fill", &[Val::I32(65000), Val::I32(1000)]),
        MemoryOutOfBounds
    );
    assert_eq!(
        kind_of(s, inst, "div_s", &[Val::I32(1), Val::I32(0)]),
        IntegerDivisionByZero
    );
    assert_eq!(
        kind_of(s, inst, "rem_u64", &[Val::I64(1), Val::I64(0)]),
        IntegerDivisionByZero
    );
    assert_eq!(
        kind_of(s, inst, "div_s", &[Val::I32(i32::MIN), Val::I32(-1)]),
        IntegerOverflow
    );
    assert_eq!(
        kind_of(s, inst, "trunc32", &[Val::F32(f32::NAN.to_bits())]),
        BadConversionToInteger
    );
    assert_eq!(
        kind_of(s, inst, "trunc32", &[Val::F32(3e9f32.to_bits())]),
        IntegerOverflow
    );
    assert_eq!(
        kind_of(s, inst, "trunc64", &[Val::F64((-1.0f64).to_bits())]),
        IntegerOverflow
    );
    assert_eq!(kind_of(s, inst, "unreachable", &[]), Unreachable);
    assert_eq!(kind_of(s, inst, "recurse", &[Val::I32(0)]), StackOverflow);
    assert_eq!(
        kind_of(s, inst, "wrong_type", &[]),
        IndirectCallTypeMismatch
    );
    assert_eq!(kind_of(s, inst, "null", &[]), NullReference);
    assert_eq!(kind_of(s, inst, "undefined", &[]), TableOutOfBounds);
    assert_eq!(
        kind_of(s, inst, "table_get", &[Val::I32(2)]),
        TableAccessOutOfBounds
    );
    assert_eq!(
        kind_of(s, inst, "table_fill", &[Val::I32(1), Val::I32(2)]),
        TableAccessOutOfBounds
    );
    assert_eq!(kind_of(s, inst, "host_fail", &[Val::I32(3)]), HostError);

    // The edges that must not trap.
    assert_eq!(
        inst.get_func(s, "load")
            .unwrap()
            .call(s, &[Val::I32(65532)])
            .unwrap(),
        vec![Val::I32(0)]
    );
    assert_eq!(
        inst.get_func(s, "div_s")
            .unwrap()
            .call(s, &[Val::I32(i32::MIN), Val::I32(1)])
            .unwrap(),
        vec![Val::I32(i32::MIN)]
    );
    assert_eq!(
        inst.get_func(s, "trunc64")
            .unwrap()
            .call(s, &[Val::F64((-0.9f64).to_bits())])
            .unwrap(),
        vec![Val::I64(0)]
    );
    assert_eq!(
        inst.get_func(s, "host_fail")
            .unwrap()
            .call(s, &[Val::I32(0)])
            .unwrap(),
        vec![]
    );
    inst.get_func(s, "fill")
        .unwrap()
        .call(s, &[Val::I32(65000), Val::I32(536)])
        .unwrap();
    assert_eq!(
        inst.get_func(s, "load")
            .unwrap()
            .call(s, &[Val::I32(65532)])
            .unwrap(),
        vec![Val::I32(0x0707_0707)]
    );
}

#[test]
fn host_error_keeps_its_message_and_the_calling_frame() {
    let (mut store, inst) = kinds();
    let f = inst.get_func(&store, "host_fail").unwrap();
    let t = trap_of(f.call(&mut store, &[Val::I32(42)]));
    assert_eq!(t.kind, TrapKind::HostError);
    let msg = t.message.clone().expect("a host error carries its message");
    assert!(msg.contains("disk on fire (code 42)"), "message: {msg}");
    assert_eq!(names(&t.frames), ["host_fail"]);
    assert!(Error::Trap(t)
        .to_string()
        .contains("disk on fire (code 42)"));
}

#[test]
fn host_panic_becomes_an_error_and_the_store_survives() {
    let (mut store, inst) = kinds();
    let t = trap_of(
        inst.get_func(&store, "host_panic")
            .unwrap()
            .call(&mut store, &[]),
    );
    assert_eq!(t.kind, TrapKind::HostError);
    inst.get_func(&store, "store")
        .unwrap()
        .call(&mut store, &[Val::I32(8), Val::I32(77)])
        .unwrap();
    assert_eq!(
        i32_of(
            inst.get_func(&store, "load")
                .unwrap()
                .call(&mut store, &[Val::I32(8)])
        ),
        77
    );
    // And again: a second panic is caught the same way.
    let t = trap_of(
        inst.get_func(&store, "host_panic")
            .unwrap()
            .call(&mut store, &[]),
    );
    assert_eq!(t.kind, TrapKind::HostError);
}

#[test]
fn backtrace_names_frames_innermost_first() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
          (memory 1)
          (func $a (export "run") (param i32) (result i32) local.get 0 call $b i32.const 1 i32.add)
          (func $b (param i32) (result i32) local.get 0 call $c i32.const 1 i32.add)
          (func $c (param i32) (result i32) local.get 0 i32.load)
          (func $deep (export "deep") (param i32) (result i32)
            local.get 0 i32.eqz if (result i32) unreachable else
              local.get 0 i32.const 1 i32.sub call $deep i32.const 1 i32.add end)
          (func $loop_then_trap (export "lt") (param i32) (result i32) (local i32)
            loop local.get 1 i32.const 1 i32.add local.tee 1 local.get 0 i32.lt_s br_if 0 end
            local.get 1 i32.const 0 i32.div_s)
        )"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let run = inst.get_func(&store, "run").unwrap();
    let t = trap_of(run.call(&mut store, &[Val::I32(1 << 20)]));
    assert_eq!(t.kind, TrapKind::MemoryOutOfBounds);
    assert_eq!(names(&t.frames), ["c", "b", "a"]);
    assert_eq!(t.depth, 3);
    assert_eq!(
        t.frames.iter().map(|f| f.func_index).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    // Every frame of one module is in the same code unit.
    assert!(t.frames.iter().all(|f| f.unit == t.frames[0].unit));
    // The display lists them too.
    let text = Error::Trap(t).to_string();
    let (ic, ib, ia) = (
        text.find(" - c").unwrap(),
        text.find(" - b").unwrap(),
        text.find(" - a").unwrap(),
    );
    assert!(ic < ib && ib < ia, "{text}");

    // Deep: 10 frames kept exactly; 200 frames capped at 64 with the depth kept.
    let deep = inst.get_func(&store, "deep").unwrap();
    let t = trap_of(deep.call(&mut store, &[Val::I32(9)]));
    assert_eq!(t.kind, TrapKind::Unreachable);
    assert_eq!(t.depth, 10);
    assert_eq!(names(&t.frames), vec!["deep"; 10]);
    let t = trap_of(deep.call(&mut store, &[Val::I32(199)]));
    assert_eq!(t.depth, 200);
    assert_eq!(t.frames.len(), 64);
    assert!(t.frames.iter().all(|f| f.name == "deep"));
    assert!(Error::Trap(t).to_string().contains("136 more frames"));

    // A trap after a long (preempted) loop still has the right frame.
    let t = trap_of(
        inst.get_func(&store, "lt")
            .unwrap()
            .call(&mut store, &[Val::I32(5_000_000)]),
    );
    assert_eq!(t.kind, TrapKind::IntegerDivisionByZero);
    assert_eq!(names(&t.frames), ["loop_then_trap"]);
}

#[test]
fn stack_overflow_is_a_trap_and_the_instance_keeps_working() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
          (memory 1)
          (func $rec (export "rec") (param i32) (result i32)
            local.get 0 i32.const 1 i32.add call $rec i32.const 1 i32.add)
          (func $wide (export "wide") (param i64) (result i64) (local f64 f64 f64 f64 i64 i64 i64 i64)
            local.get 0 i64.const 1 i64.add call $wide local.get 5 i64.add)
          (func $mutual_a (export "mutual") (param i32) (result i32) local.get 0 call $mutual_b)
          (func $mutual_b (param i32) (result i32) local.get 0 i32.const 1 i32.add call $mutual_a i32.const 0 i32.add)
          (func (export "set") (param i32 i32) local.get 0 local.get 1 i32.store)
          (func (export "get") (param i32) (result i32) local.get 0 i32.load)
          (func $fac (export "fac") (param i64) (result i64)
            local.get 0 i64.eqz if (result i64) i64.const 1 else
              local.get 0 local.get 0 i64.const 1 i64.sub call $fac i64.mul end)
        )"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    inst.get_func(&store, "set")
        .unwrap()
        .call(&mut store, &[Val::I32(100), Val::I32(1234)])
        .unwrap();
    for name in ["rec", "mutual"] {
        let t = trap_of(
            inst.get_func(&store, name)
                .unwrap()
                .call(&mut store, &[Val::I32(0)]),
        );
        assert_eq!(t.kind, TrapKind::StackOverflow, "{name}");
        assert!(t.depth > 1000, "{name}: depth {}", t.depth);
        assert_eq!(t.frames.len(), 64);
    }
    let t = trap_of(
        inst.get_func(&store, "wide")
            .unwrap()
            .call(&mut store, &[Val::I64(0)]),
    );
    assert_eq!(t.kind, TrapKind::StackOverflow);
    assert_eq!(t.frames[0].name, "wide");
    // Memory survived, and deep-but-bounded recursion still works.
    assert_eq!(
        i32_of(
            inst.get_func(&store, "get")
                .unwrap()
                .call(&mut store, &[Val::I32(100)])
        ),
        1234
    );
    let fac = inst
        .get_func(&store, "fac")
        .unwrap()
        .typed::<i64, i64>(&store)
        .unwrap();
    assert_eq!(fac.call(&mut store, 20).unwrap(), 2_432_902_008_176_640_000);
    // Overflow again, then work again: nothing leaks between calls.
    for _ in 0..3 {
        assert_eq!(
            trap_of(
                inst.get_func(&store, "rec")
                    .unwrap()
                    .call(&mut store, &[Val::I32(0)])
            )
            .kind,
            TrapKind::StackOverflow
        );
        assert_eq!(fac.call(&mut store, 5).unwrap(), 120);
    }
}

#[test]
fn trap_keeps_memory_and_globals_written_before_it() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
          (memory (export "mem") 1)
          (global $count (export "count") (mut i32) (i32.const 0))
          (func (export "write_then_trap") (param i32)
            i32.const 16 local.get 0 i32.store
            global.get $count i32.const 1 i32.add global.set $count
            unreachable)
          (func (export "read") (result i32) i32.const 16 i32.load))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let wtt = inst.get_func(&store, "write_then_trap").unwrap();
    let read = inst.get_func(&store, "read").unwrap();
    for i in 1..=3 {
        assert_eq!(
            trap_of(wtt.call(&mut store, &[Val::I32(i * 11)])).kind,
            TrapKind::Unreachable
        );
        assert_eq!(i32_of(read.call(&mut store, &[])), i * 11);
    }
    let Some(wasm_patch_runtime::Extern::Global(g)) = inst.get_export(&store, "count") else {
        panic!("count")
    };
    assert_eq!(Instance::global_value(&store, g), Val::I32(3));
}

#[test]
fn a_trapping_thread_does_not_disturb_the_others() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (import "wasm-patch" "thread_id" (func $tid (result i32)))
          (memory 1)
          (func $work (export "work") (param $n i32) (param $fail i32) (result i32) (local $i i32) (local $acc i32)
            (loop $l
              (local.set $acc (i32.add (local.get $acc) (local.get $i)))
              (i32.store (i32.mul (call $tid) (i32.const 4)) (local.get $acc))
              (call $yield)
              (if (i32.and (local.get $fail) (i32.eq (local.get $i) (i32.const 2))) (then (call $boom)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_s (local.get $i) (local.get $n))))
            (local.get $acc))
          (func $boom i32.const 1 i32.const 0 i32.div_u drop)
          (func (export "slot") (param i32) (result i32) local.get 0 i32.const 4 i32.mul i32.load))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let work = inst.get_func(&store, "work").unwrap();
    let a = store.spawn(work, &[Val::I32(10), Val::I32(0)]).unwrap();
    let b = store.spawn(work, &[Val::I32(10), Val::I32(1)]).unwrap();
    let c = store.spawn(work, &[Val::I32(20), Val::I32(0)]).unwrap();
    store.run().unwrap();
    let tb = trap_of(store.take_result(b));
    assert_eq!(tb.kind, TrapKind::IntegerDivisionByZero);
    assert_eq!(names(&tb.frames), ["boom", "work"]);
    assert_eq!(store.take_result(a).unwrap(), vec![Val::I32(45)]);
    assert_eq!(store.take_result(c).unwrap(), vec![Val::I32(190)]);
    // Each thread's last store is visible; the trapped one stopped at i = 2.
    let slot = inst.get_func(&store, "slot").unwrap();
    assert_eq!(i32_of(slot.call(&mut store, &[Val::I32(a.0 as i32)])), 45);
    assert_eq!(i32_of(slot.call(&mut store, &[Val::I32(b.0 as i32)])), 3);
    assert_eq!(i32_of(slot.call(&mut store, &[Val::I32(c.0 as i32)])), 190);
    assert!(store.threads().is_empty());
}

#[test]
fn a_trap_in_a_nested_call_propagates_through_the_host() {
    struct D(Option<wasm_patch_runtime::Func>);
    let engine = Engine::default();
    let mut linker = Linker::<D>::new(&engine);
    linker.func_new(
        "env",
        "call_back",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let f = c.data().0.expect("set");
            r[0] = c.call(f, &[a[0]])?[0];
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "call_back" (func $cb (param i32) (result i32)))
          (memory 1)
          (func $inner (export "inner") (param i32) (result i32) local.get 0 i32.load)
          (func $outer (export "outer") (param i32) (result i32) local.get 0 call $cb i32.const 1 i32.add))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, D(None));
    let inst = linker.instantiate(&mut store, &module).unwrap();
    store.data_mut().0 = Some(inst.get_func(&store, "inner").unwrap());
    let outer = inst.get_func(&store, "outer").unwrap();
    let t = trap_of(outer.call(&mut store, &[Val::I32(1 << 30)]));
    assert_eq!(
        t.kind,
        TrapKind::MemoryOutOfBounds,
        "the inner trap's kind survives"
    );
    assert_eq!(t.frames[0].name, "inner");
    assert_eq!(i32_of(outer.call(&mut store, &[Val::I32(0)])), 1);
}

#[test]
fn stack_overflow_in_a_nested_host_to_wasm_call() {
    struct D(Option<wasm_patch_runtime::Func>);
    let engine = Engine::default();
    let mut linker = Linker::<D>::new(&engine);
    linker.func_new(
        "env",
        "nested",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let f = c.data().0.expect("set");
            r[0] = match c.call(f, &[a[0]]) {
                Ok(v) => v[0],
                Err(Error::Trap(t)) if t.kind == TrapKind::StackOverflow => Val::I32(-1),
                Err(e) => return Err(e),
            };
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "nested" (func $nested (param i32) (result i32)))
          (func $rec (export "rec") (param i32) (result i32)
            local.get 0 i32.eqz if (result i32) i32.const 0 else
            local.get 0 i32.const 1 i32.sub call $rec i32.const 1 i32.add end)
          (func $outer (export "outer") (param i32) (result i32)
            local.get 0 call $deep)
          (func $deep (param i32) (result i32)
            ;; 200 wasm frames before the host call.
            local.get 0 i32.const 200 i32.lt_u if (result i32)
              local.get 0 i32.const 1 i32.add call $deep
            else i32.const -1 call $nested end))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, D(None));
    let inst = linker.instantiate(&mut store, &module).unwrap();
    store.data_mut().0 = Some(inst.get_func(&store, "rec").unwrap());
    let outer = inst.get_func(&store, "outer").unwrap();
    // rec(-1 as u32 ...) recurses ~4 billion deep: overflows in the nested
    // segment; the host catches it and the outer segment returns normally.
    assert_eq!(i32_of(outer.call(&mut store, &[Val::I32(0)])), -1);
    assert_eq!(i32_of(outer.call(&mut store, &[Val::I32(0)])), -1);
    let rec = inst.get_func(&store, "rec").unwrap();
    assert_eq!(i32_of(rec.call(&mut store, &[Val::I32(1000)])), 1000);
}
