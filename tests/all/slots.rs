//! Calls through indirection slots: direct calls, `call_indirect` over
//! several tables, funcref identity through tables and globals, calls
//! between instances and from the host.

use crate::{i32_of, trap_of};
use wasm_patch_runtime::{
    Engine, Error, Extern, FuncType, Instance, Linker, Module, Store, TrapKind, Val, ValType,
};

const TABLES: &str = r#"(module
  (type $ii (func (param i32) (result i32)))
  (type $iii (func (param i32 i32) (result i32)))
  (table $t0 3 funcref)
  (table $t1 2 funcref)
  (global $g (mut funcref) (ref.null func))
  (func $inc (export "inc") (param i32) (result i32) local.get 0 i32.const 1 i32.add)
  (func $dec (export "dec") (param i32) (result i32) local.get 0 i32.const 1 i32.sub)
  (func $neg (export "neg") (param i32) (result i32) i32.const 0 local.get 0 i32.sub)
  (func $sq (export "sq") (param i32) (result i32) local.get 0 local.get 0 i32.mul)
  (elem (table $t0) (i32.const 0) func $inc $dec)
  (elem (table $t1) (i32.const 0) func $neg $sq)
  (func (export "via0") (param i32 i32) (result i32) local.get 1 local.get 0 call_indirect $t0 (type $ii))
  (func (export "via1") (param i32 i32) (result i32) local.get 1 local.get 0 call_indirect $t1 (type $ii))
  (func (export "via0_wrong_type") (param i32) (result i32)
    i32.const 1 i32.const 2 local.get 0 call_indirect $t0 (type $iii))
  (func (export "copy") (table.copy $t1 $t0 (i32.const 0) (i32.const 0) (i32.const 2)))
  (func (export "stash") (param i32) local.get 0 table.get $t0 global.set $g)
  (func (export "unstash") (param i32) local.get 0 global.get $g table.set $t1)
  (func (export "get0") (param i32) (result funcref) local.get 0 table.get $t0)
  (func (export "get1") (param i32) (result funcref) local.get 0 table.get $t1)
  (func (export "global") (result funcref) global.get $g)
  (func (export "set0") (param i32 funcref) local.get 0 local.get 1 table.set $t0)
  (func (export "via_global") (param i32) (result i32) local.get 0 i32.const 0 global.get $g table.set $t0 i32.const 0 call_indirect $t0 (type $ii))
  (func (export "sq_ref") (result funcref) ref.func $sq)
  (func (export "is_null0") (param i32) (result i32) local.get 0 table.get $t0 ref.is_null)
)"#;

fn tables_instance() -> (Store<()>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, TABLES).unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    (store, inst)
}

fn call<T: 'static>(store: &mut Store<T>, inst: Instance, name: &str, args: &[Val]) -> Vec<Val> {
    let f = inst
        .get_func(store, name)
        .unwrap_or_else(|| panic!("no export {name}"));
    f.call(store, args)
        .unwrap_or_else(|e| panic!("{name}{args:?}: {e}"))
}

#[test]
fn direct_calls_pass_arguments_and_results() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
          (func $add3 (param i64 i32 f64) (result f64)
            local.get 0 f64.convert_i64_s local.get 1 f64.convert_i32_s f64.add local.get 2 f64.add)
          (func $pair (param i32) (result i32 i64) local.get 0 local.get 0 i64.extend_i32_s i64.const 1000 i64.mul)
          (func $fib (export "fib") (param i32) (result i32)
            local.get 0 i32.const 2 i32.lt_s if (result i32) local.get 0 else
              local.get 0 i32.const 1 i32.sub call $fib local.get 0 i32.const 2 i32.sub call $fib i32.add end)
          (func (export "mix") (param i32) (result f64) (local i64)
            (call $pair (local.get 0)) local.set 1 drop
            (call $add3 (local.get 1) (local.get 0) (f64.const 0.5)))
        )"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let fib = inst
        .get_func(&store, "fib")
        .unwrap()
        .typed::<i32, i32>(&store)
        .unwrap();
    assert_eq!(fib.call(&mut store, 20).unwrap(), 6765);
    let mix = inst
        .get_func(&store, "mix")
        .unwrap()
        .typed::<i32, f64>(&store)
        .unwrap();
    // pair(7) = (7, 7000); add3(7000, 7, 0.5)
    assert_eq!(mix.call(&mut store, 7).unwrap(), 7007.5);
}

#[test]
fn call_indirect_picks_the_named_table() {
    let (mut store, inst) = tables_instance();
    let v = |s: &mut Store<()>, name: &str, slot: i32, x: i32| {
        i32_of(Ok(call(s, inst, name, &[Val::I32(slot), Val::I32(x)])))
    };
    assert_eq!(v(&mut store, "via0", 0, 10), 11);
    assert_eq!(v(&mut store, "via0", 1, 10), 9);
    assert_eq!(v(&mut store, "via1", 0, 10), -10);
    assert_eq!(v(&mut store, "via1", 1, 10), 100);
    call(&mut store, inst, "copy", &[]);
    assert_eq!(v(&mut store, "via1", 0, 10), 11);
    assert_eq!(v(&mut store, "via1", 1, 10), 9);
    // The source table is unchanged.
    assert_eq!(v(&mut store, "via0", 1, 10), 9);
}

#[test]
fn funcrefs_keep_naming_the_same_function() {
    let (mut store, inst) = tables_instance();
    let dec = inst.get_func(&store, "dec").unwrap().to_val(&store);
    let inc = inst.get_func(&store, "inc").unwrap().to_val(&store);
    let sq = inst.get_func(&store, "sq").unwrap().to_val(&store);
    assert_ne!(dec, Val::FuncRef(0));
    assert_ne!(dec, inc);
    // table -> host: the element is the exported function's identity.
    assert_eq!(call(&mut store, inst, "get0", &[Val::I32(1)]), vec![dec]);
    assert_eq!(call(&mut store, inst, "get0", &[Val::I32(0)]), vec![inc]);
    // ref.func gives the same identity as the export.
    assert_eq!(call(&mut store, inst, "sq_ref", &[]), vec![sq]);
    // table -> global -> other table keeps it.
    call(&mut store, inst, "stash", &[Val::I32(1)]);
    assert_eq!(call(&mut store, inst, "global", &[]), vec![dec]);
    call(&mut store, inst, "unstash", &[Val::I32(0)]);
    assert_eq!(call(&mut store, inst, "get1", &[Val::I32(0)]), vec![dec]);
    assert_eq!(
        i32_of(Ok(call(
            &mut store,
            inst,
            "via1",
            &[Val::I32(0), Val::I32(50)]
        ))),
        49
    );
    assert_eq!(
        i32_of(Ok(call(&mut store, inst, "via_global", &[Val::I32(50)]))),
        49
    );
    // host -> table: a funcref made by the host is callable and reads back equal.
    call(&mut store, inst, "set0", &[Val::I32(2), sq]);
    assert_eq!(call(&mut store, inst, "get0", &[Val::I32(2)]), vec![sq]);
    assert_eq!(
        i32_of(Ok(call(
            &mut store,
            inst,
            "via0",
            &[Val::I32(2), Val::I32(9)]
        ))),
        81
    );
}

#[test]
fn call_indirect_type_mismatch_null_and_out_of_range_trap() {
    let (mut store, inst) = tables_instance();
    let via0 = inst.get_func(&store, "via0").unwrap();
    let t = trap_of(
        inst.get_func(&store, "via0_wrong_type")
            .unwrap()
            .call(&mut store, &[Val::I32(0)]),
    );
    assert_eq!(t.kind, TrapKind::IndirectCallTypeMismatch);
    // Slot 2 was never written: null.
    assert_eq!(
        call(&mut store, inst, "is_null0", &[Val::I32(2)]),
        vec![Val::I32(1)]
    );
    let t = trap_of(via0.call(&mut store, &[Val::I32(2), Val::I32(1)]));
    assert_eq!(t.kind, TrapKind::NullReference);
    let t = trap_of(via0.call(&mut store, &[Val::I32(3), Val::I32(1)]));
    assert_eq!(t.kind, TrapKind::TableOutOfBounds);
    let t = trap_of(via0.call(&mut store, &[Val::I32(-1), Val::I32(1)]));
    assert_eq!(t.kind, TrapKind::TableOutOfBounds);
    // A mismatch against a function of the right arity but another type.
    let engine = store.engine().clone();
    let m = Module::new(
        &engine,
        r#"(module (type $fi (func (param f32) (result i32))) (type $ii (func (param i32) (result i32)))
          (table 1 funcref) (elem (i32.const 0) $id)
          (func $id (param i32) (result i32) local.get 0)
          (func (export "ok") (result i32) i32.const 5 i32.const 0 call_indirect (type $ii))
          (func (export "bad") (result i32) f32.const 5 i32.const 0 call_indirect (type $fi)))"#,
    )
    .unwrap();
    let i2 = Linker::new(&engine).instantiate(&mut store, &m).unwrap();
    assert_eq!(
        i32_of(i2.get_func(&store, "ok").unwrap().call(&mut store, &[])),
        5
    );
    assert_eq!(
        trap_of(i2.get_func(&store, "bad").unwrap().call(&mut store, &[])).kind,
        TrapKind::IndirectCallTypeMismatch
    );
    // The store keeps working afterwards.
    assert_eq!(
        i32_of(via0.call(&mut store, &[Val::I32(0), Val::I32(1)])),
        2
    );
}

const PROVIDER: &str = r#"(module
  (global $calls (export "calls") (mut i32) (i32.const 0))
  (table $t (export "table") 4 funcref)
  (type $ii (func (param i32) (result i32)))
  (func $double (export "double") (param i32) (result i32)
    global.get $calls i32.const 1 i32.add global.set $calls
    local.get 0 i32.const 2 i32.mul)
  (func (export "call_slot") (param i32 i32) (result i32) local.get 1 local.get 0 call_indirect $t (type $ii))
  (func (export "double_ref") (result funcref) ref.func $double)
  (elem declare func $double)
)"#;

const CONSUMER: &str = r#"(module
  (type (func (param f64)))
  (type (func (param i64) (result i64)))
  (import "a" "double" (func $double (param i32) (result i32)))
  (import "a" "table" (table $t 4 funcref))
  (import "a" "calls" (global $calls (mut i32)))
  (global $mine (mut i32) (i32.const 100))
  (func $triple (param i32) (result i32)
    global.get $mine i32.const 1 i32.add global.set $mine local.get 0 i32.const 3 i32.mul)
  (elem (table $t) (i32.const 0) func $double $triple)
  (func (export "quad") (param i32) (result i32) local.get 0 call $double call $double)
  (func (export "double_ref") (result funcref) ref.func $double)
  (func (export "mine") (result i32) global.get $mine)
  (func (export "their_calls") (result i32) global.get $calls)
  (func (export "bump_their_calls") global.get $calls i32.const 1000 i32.add global.set $calls)
)"#;

#[test]
fn calls_between_instances_run_in_the_callee_instance() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let a = Linker::new(&engine)
        .instantiate(&mut store, &Module::new(&engine, PROVIDER).unwrap())
        .unwrap();
    let mut linker = Linker::new(&engine);
    linker.instance(&store, "a", a);
    let b = linker
        .instantiate(&mut store, &Module::new(&engine, CONSUMER).unwrap())
        .unwrap();
    let calls = match a.get_export(&store, "calls") {
        Some(Extern::Global(g)) => g,
        other => panic!("calls: {other:?}"),
    };

    // Direct call of an imported wasm function: runs with A's globals.
    assert_eq!(
        call(&mut store, b, "quad", &[Val::I32(5)]),
        vec![Val::I32(20)]
    );
    assert_eq!(Instance::global_value(&store, calls), Val::I32(2));
    // B's element segment wrote into A's table: A calls B's function, which
    // runs with B's globals, and A's own function through the same table.
    assert_eq!(
        call(&mut store, a, "call_slot", &[Val::I32(1), Val::I32(7)]),
        vec![Val::I32(21)]
    );
    assert_eq!(call(&mut store, b, "mine", &[]), vec![Val::I32(101)]);
    assert_eq!(
        call(&mut store, a, "call_slot", &[Val::I32(0), Val::I32(7)]),
        vec![Val::I32(14)]
    );
    assert_eq!(Instance::global_value(&store, calls), Val::I32(3));
    // An imported mutable global is the same cell in both instances.
    call(&mut store, b, "bump_their_calls", &[]);
    assert_eq!(Instance::global_value(&store, calls), Val::I32(1003));
    assert_eq!(
        call(&mut store, b, "their_calls", &[]),
        vec![Val::I32(1003)]
    );
    // An imported function keeps its identity as a funcref.
    let double = a.get_func(&store, "double").unwrap().to_val(&store);
    assert_eq!(call(&mut store, a, "double_ref", &[]), vec![double]);
    assert_eq!(call(&mut store, b, "double_ref", &[]), vec![double]);
    // Host -> export of either instance.
    let d = a
        .get_func(&store, "double")
        .unwrap()
        .typed::<i32, i32>(&store)
        .unwrap();
    assert_eq!(d.call(&mut store, -21).unwrap(), -42);
    assert_eq!(Instance::global_value(&store, calls), Val::I32(1004));
}

#[test]
fn host_functions_are_reachable_through_tables_and_reexports() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, Vec::<i32>::new());
    let mut linker = Linker::<Vec<i32>>::new(&engine);
    linker.func_new(
        "env",
        "record",
        FuncType::new([ValType::I32], [ValType::I32]),
        |c, a, r| {
            let x = a[0].i32().unwrap();
            c.data_mut().push(x);
            r[0] = Val::I32(x * 10);
            Ok(())
        },
    );
    let a = linker
        .instantiate(
            &mut store,
            &Module::new(
                &engine,
                r#"(module
                  (import "env" "record" (func $record (param i32) (result i32)))
                  (export "record" (func $record))
                  (table 1 funcref) (elem (i32.const 0) $record)
                  (func (export "indirect") (param i32) (result i32)
                    local.get 0 i32.const 0 call_indirect (param i32) (result i32)))"#,
            )
            .unwrap(),
        )
        .unwrap();
    linker.instance(&store, "a", a);
    let b = linker
        .instantiate(
            &mut store,
            &Module::new(
                &engine,
                r#"(module (import "a" "record" (func $r (param i32) (result i32)))
                  (func (export "twice") (param i32) (result i32) local.get 0 call $r call $r))"#,
            )
            .unwrap(),
        )
        .unwrap();
    assert_eq!(
        call(&mut store, a, "indirect", &[Val::I32(3)]),
        vec![Val::I32(30)]
    );
    assert_eq!(
        call(&mut store, b, "twice", &[Val::I32(4)]),
        vec![Val::I32(400)]
    );
    // The host function itself, called from the host through the export.
    assert_eq!(
        call(&mut store, a, "record", &[Val::I32(9)]),
        vec![Val::I32(90)]
    );
    assert_eq!(store.data(), &vec![3, 4, 40, 9]);
}

const GROWER: &str = r#"(module
  (import "wasm-patch" "yield" (func $yield))
  (type $ii (func (param i32) (result i32)))
  (table $t 2 funcref)
  (memory 1)
  (elem (i32.const 0) $inc)
  (elem declare func $dbl)
  (func $inc (param i32) (result i32) local.get 0 i32.const 1 i32.add)
  (func $dbl (param i32) (result i32) local.get 0 i32.const 2 i32.mul)
  ;; Grow the table by `n` (moving its storage) and put $dbl at the new end.
  (func $grow (export "grow") (param $n i32) (result i32) (local $old i32)
    (local.set $old (table.grow $t (ref.null func) (local.get $n)))
    (table.set $t (i32.sub (table.size $t) (i32.const 1)) (ref.func $dbl))
    (local.get $old))
  ;; Call slot 0 and the last slot `rounds` times, yielding in between;
  ;; the table may grow meanwhile.
  (func (export "caller") (param $rounds i32) (result i32) (local $acc i32)
    (loop $l
      (local.set $acc (call_indirect $t (type $ii) (local.get $acc) (i32.const 0)))
      (if (i32.gt_u (table.size $t) (i32.const 2))
        (then (local.set $acc
          (call_indirect $t (type $ii) (local.get $acc) (i32.sub (table.size $t) (i32.const 1))))))
      (call $yield)
      (local.tee $rounds (i32.sub (local.get $rounds) (i32.const 1)))
      (br_if $l))
    (local.get $acc))
  ;; The same in one thread: grow inside the loop, between two indirect calls.
  (func (export "grow_in_loop") (result i32) (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (call_indirect $t (type $ii) (local.get $acc) (i32.const 0)))
      (drop (call $grow (i32.const 1000)))
      (local.set $acc (call_indirect $t (type $ii) (local.get $acc) (i32.sub (table.size $t) (i32.const 1))))
      (local.set $acc (call_indirect $t (type $ii) (local.get $acc) (i32.const 0)))
      (local.tee $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (i32.const 5))))
    (local.get $acc))
)"#;

#[test]
fn table_growth_is_seen_by_callers_in_the_same_and_other_threads() {
    let engine = Engine::default();
    let mut linker = Linker::<()>::new(&engine);
    linker.add_thread_abi();
    let module = Module::new(&engine, GROWER).unwrap();

    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    // acc -> ((acc + 1) * 2 + 1), five times from 0.
    let want = (0..5).fold(0, |a: i32, _| (a + 1) * 2 + 1);
    assert_eq!(
        call(&mut store, inst, "grow_in_loop", &[]),
        vec![Val::I32(want)]
    );

    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let caller = inst.get_func(&store, "caller").unwrap();
    let grow = inst.get_func(&store, "grow").unwrap();
    let c = store.spawn(caller, &[Val::I32(4)]).unwrap();
    // The caller runs one round (table of 2: just +1), yields, then the
    // grower moves the table; the caller's next rounds see the new end.
    let g = store.spawn(grow, &[Val::I32(100_000)]).unwrap();
    store.run().unwrap();
    assert_eq!(store.take_result(g).unwrap(), vec![Val::I32(2)]);
    let want = (0..3).fold(1, |a: i32, _| (a + 1) * 2);
    assert_eq!(store.take_result(c).unwrap(), vec![Val::I32(want)]);
}

// `Val::FuncRef` is a raw pointer the host could forge, or take from another
// store: only null or this store's own funcrefs are accepted as arguments.
#[test]
fn funcref_arguments_from_elsewhere_are_refused() {
    let (mut store, inst) = tables_instance();
    let (other_store, other_inst) = tables_instance();
    let foreign = other_inst
        .get_func(&other_store, "sq")
        .unwrap()
        .to_val(&other_store);
    let set0 = inst.get_func(&store, "set0").unwrap();
    for bad in [foreign, Val::FuncRef(0x1000)] {
        match set0.call(&mut store, &[Val::I32(2), bad]) {
            Err(Error::WrongStore) | Err(Error::BadCall(_)) => {}
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    // Only a null or own funcref may be stored.
    set0.call(&mut store, &[Val::I32(2), Val::FuncRef(0)])
        .unwrap();
}
