//! The embedding API: typed functions, bad calls, link errors, host
//! functions with memory access and store data, globals, start functions.

use crate::{i32_of, trap_of};
use wasm_patch_runtime::{
    Caller, Engine, Error, Extern, FuncType, Instance, Linker, Module, Store, TrapKind, Val,
    ValType,
};

const MATH: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "mul64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.mul)
  (func (export "hyp") (param f64 f64) (result f64)
    local.get 0 local.get 0 f64.mul local.get 1 local.get 1 f64.mul f64.add f64.sqrt)
  (func (export "half") (param f32) (result f32) local.get 0 f32.const 0.5 f32.mul)
  (func (export "swap") (param i32 i64 f64) (result f64 i64 i32) local.get 2 local.get 1 local.get 0)
  (func (export "nothing"))
)"#;

fn math() -> (Store<()>, Instance) {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &Module::new(&engine, MATH).unwrap())
        .unwrap();
    (store, inst)
}

#[test]
fn typed_functions_round_trip_every_value_type() {
    let (mut store, inst) = math();
    let add = inst
        .get_func(&store, "add")
        .unwrap()
        .typed::<(i32, i32), i32>(&store)
        .unwrap();
    assert_eq!(add.call(&mut store, (i32::MAX, 1)).unwrap(), i32::MIN);
    let mul = inst
        .get_func(&store, "mul64")
        .unwrap()
        .typed::<(i64, i64), i64>(&store)
        .unwrap();
    assert_eq!(mul.call(&mut store, (1 << 40, 3)).unwrap(), 3 << 40);
    let hyp = inst
        .get_func(&store, "hyp")
        .unwrap()
        .typed::<(f64, f64), f64>(&store)
        .unwrap();
    assert_eq!(hyp.call(&mut store, (3.0, 4.0)).unwrap(), 5.0);
    let half = inst
        .get_func(&store, "half")
        .unwrap()
        .typed::<f32, f32>(&store)
        .unwrap();
    assert_eq!(half.call(&mut store, 3.0).unwrap(), 1.5);
    let swap = inst
        .get_func(&store, "swap")
        .unwrap()
        .typed::<(i32, i64, f64), (f64, i64, i32)>(&store)
        .unwrap();
    assert_eq!(
        swap.call(&mut store, (-7, -8, 2.25)).unwrap(),
        (2.25, -8, -7)
    );
    let nothing = inst
        .get_func(&store, "nothing")
        .unwrap()
        .typed::<(), ()>(&store)
        .unwrap();
    nothing.call(&mut store, ()).unwrap();
    // Untyped: NaN payloads survive the boundary bit for bit.
    let half_f = inst.get_func(&store, "half").unwrap();
    let nan = 0x7fc0_1234u32;
    match half_f.call(&mut store, &[Val::F32(nan)]).unwrap()[..] {
        [Val::F32(bits)] => assert!(f32::from_bits(bits).is_nan(), "{bits:#x}"),
        ref other => panic!("{other:?}"),
    }
    assert_eq!(
        inst.get_func(&store, "swap").unwrap().ty(&store),
        FuncType::new(
            [ValType::I32, ValType::I64, ValType::F64],
            [ValType::F64, ValType::I64, ValType::I32]
        )
    );
}

#[test]
fn wrong_signatures_and_arguments_are_bad_calls() {
    let (mut store, inst) = math();
    let add = inst.get_func(&store, "add").unwrap();
    assert!(matches!(
        add.typed::<(i32, i64), i32>(&store),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.typed::<(i32, i32), i64>(&store),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.typed::<(i32, i32), ()>(&store),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.typed::<i32, i32>(&store),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.call(&mut store, &[Val::I32(1)]),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.call(&mut store, &[Val::I32(1), Val::I32(2), Val::I32(3)]),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.call(&mut store, &[Val::I32(1), Val::I64(2)]),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.call(&mut store, &[Val::I32(1), Val::F32(0)]),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        add.call(&mut store, &[Val::I32(1), Val::FuncRef(0)]),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(store.spawn(add, &[]), Err(Error::BadCall(_))));
    // A bad call leaves no thread behind, and good calls still work.
    assert!(store.threads().is_empty());
    assert_eq!(
        add.call(&mut store, &[Val::I32(1), Val::I32(2)]).unwrap(),
        vec![Val::I32(3)]
    );
    // Unknown exports are None, not functions of another kind.
    assert!(inst.get_func(&store, "missing").is_none());
    // A thread id that does not exist.
    assert!(matches!(
        store.take_result(wasm_patch_runtime::ThreadId(12345)),
        Err(Error::BadCall(_))
    ));
}

#[test]
fn handles_from_another_store_are_refused() {
    let (mut store_a, inst_a) = math();
    let (mut store_b, _inst_b) = math();
    let add_a = inst_a.get_func(&store_a, "add").unwrap();
    assert!(matches!(
        add_a.call(&mut store_b, &[Val::I32(1), Val::I32(2)]),
        Err(Error::WrongStore)
    ));
    assert!(matches!(
        store_b.spawn(add_a, &[Val::I32(1), Val::I32(2)]),
        Err(Error::WrongStore)
    ));
    assert_eq!(
        add_a
            .call(&mut store_a, &[Val::I32(1), Val::I32(2)])
            .unwrap(),
        vec![Val::I32(3)]
    );
}

#[test]
fn missing_and_mistyped_imports_are_link_errors() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "env" "present" (func (param i32)))
                   (import "env" "absent_fn" (func (result i32))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.func_new(
        "env",
        "present",
        FuncType::new([ValType::I32], []),
        |_, _, _| Ok(()),
    );
    match linker.instantiate(&mut store, &module) {
        Err(Error::Link(m)) => assert!(m.contains("env") && m.contains("absent_fn"), "{m}"),
        other => panic!("expected a link error, got {other:?}"),
    }
    // Mistyped host function.
    linker.func_new(
        "env",
        "absent_fn",
        FuncType::new([], [ValType::I64]),
        |_, _, _| Ok(()),
    );
    match linker.instantiate(&mut store, &module) {
        Err(Error::Link(m)) => assert!(m.contains("absent_fn"), "{m}"),
        other => panic!("expected a link error, got {other:?}"),
    }
    linker.func_new(
        "env",
        "absent_fn",
        FuncType::new([], [ValType::I32]),
        |_, _, r| {
            r[0] = Val::I32(1);
            Ok(())
        },
    );
    linker.instantiate(&mut store, &module).unwrap();

    // Mistyped wasm function, global and memory imports.
    let (mut s2, math_inst) = math();
    let engine = s2.engine().clone();
    let mut l2 = Linker::new(&engine);
    l2.instance(&s2, "m", math_inst);
    let wrong_fn = Module::new(
        &engine,
        r#"(module (import "m" "add" (func (param i64 i64) (result i64))))"#,
    )
    .unwrap();
    match l2.instantiate(&mut s2, &wrong_fn) {
        Err(Error::Link(m)) => assert!(m.contains("add"), "{m}"),
        other => panic!("expected a link error, got {other:?}"),
    }
    let wrong_kind = Module::new(&engine, r#"(module (import "m" "add" (global i32)))"#).unwrap();
    assert!(matches!(
        l2.instantiate(&mut s2, &wrong_kind),
        Err(Error::Link(_))
    ));
    let missing_mem = Module::new(&engine, r#"(module (import "m" "memory" (memory 1)))"#).unwrap();
    match l2.instantiate(&mut s2, &missing_mem) {
        Err(Error::Link(m)) => assert!(m.contains("memory"), "{m}"),
        other => panic!("expected a link error, got {other:?}"),
    }
    // Modules from another engine are refused.
    let other_engine = Engine::default();
    let foreign = Module::new(&other_engine, "(module)").unwrap();
    assert!(matches!(
        Linker::<()>::new(&engine).instantiate(&mut s2, &foreign),
        Err(Error::Link(_))
    ));
}

#[test]
fn invalid_modules_are_rejected() {
    let engine = Engine::default();
    assert!(matches!(
        Module::new(&engine, b"\0asm\x01\0\0\0\x99"),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        Module::new(&engine, "(module (func (result i32) i64.const 1))"),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn host_functions_read_and_write_guest_memory() {
    let engine = Engine::default();
    let mut linker = Linker::<Vec<String>>::new(&engine);
    // upcase(ptr, len) -> number of bytes changed; also records the string.
    linker.func_new(
        "env",
        "upcase",
        FuncType::new([ValType::I32, ValType::I32], [ValType::I32]),
        |c, a, r| {
            let (ptr, len) = (a[0].i32().unwrap() as usize, a[1].i32().unwrap() as usize);
            let mem = c.memory(0).ok_or_else(|| Error::Host("no memory".into()))?;
            let bytes = mem
                .get_mut(ptr..ptr + len)
                .ok_or_else(|| Error::Host("out of bounds".into()))?;
            let before = String::from_utf8_lossy(bytes).into_owned();
            let mut changed = 0;
            for b in bytes.iter_mut() {
                if b.is_ascii_lowercase() {
                    b.make_ascii_uppercase();
                    changed += 1;
                }
            }
            c.data_mut().push(before);
            r[0] = Val::I32(changed);
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "upcase" (func $up (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "hello, World!")
          (func (export "go") (result i32) i32.const 64 i32.const 13 call $up)
          (func (export "go_oob") (result i32) i32.const 65530 i32.const 13 call $up)
          (func (export "byte") (param i32) (result i32) local.get 0 i32.load8_u)
          (func (export "grow") (result i32) i32.const 1 memory.grow))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, Vec::<String>::new());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(
        i32_of(inst.get_func(&store, "go").unwrap().call(&mut store, &[])),
        9
    );
    assert_eq!(store.data(), &["hello, World!".to_string()]);
    let byte = inst.get_func(&store, "byte").unwrap();
    let text: Vec<u8> = (64..77)
        .map(|i| i32_of(byte.call(&mut store, &[Val::I32(i)])) as u8)
        .collect();
    assert_eq!(text, b"HELLO, WORLD!");
    // The host sees an out-of-range request as such and fails the call.
    let t = trap_of(
        inst.get_func(&store, "go_oob")
            .unwrap()
            .call(&mut store, &[]),
    );
    assert_eq!(t.kind, TrapKind::HostError);
    assert!(t.message.unwrap().contains("out of bounds"));
    // After memory.grow, the host sees the larger memory.
    assert_eq!(
        i32_of(inst.get_func(&store, "grow").unwrap().call(&mut store, &[])),
        1
    );
    assert_eq!(
        i32_of(
            inst.get_func(&store, "go_oob")
                .unwrap()
                .call(&mut store, &[])
        ),
        0
    );
}

#[test]
fn host_function_with_a_mistyped_result_traps() {
    let engine = Engine::default();
    let mut linker = Linker::new(&engine);
    linker.func_new(
        "env",
        "liar",
        FuncType::new([], [ValType::I32]),
        |_, _, r| {
            r[0] = Val::I64(5);
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "liar" (func $l (result i32))) (func (export "f") (result i32) call $l))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let t = trap_of(inst.get_func(&store, "f").unwrap().call(&mut store, &[]));
    assert_eq!(t.kind, TrapKind::HostError);
}

#[test]
fn globals_are_readable_from_the_host() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
          (global $c (export "const") i64 (i64.const -5))
          (global $m (export "mut") (mut i32) (i32.const 1))
          (global $f (export "float") (mut f64) (f64.const 1.5))
          (global $started (export "started") (mut i32) (i32.const 0))
          (func $start global.get $started i32.const 1 i32.add global.set $started)
          (start $start)
          (func (export "bump") (param i32)
            global.get $m local.get 0 i32.add global.set $m
            global.get $f f64.const 2 f64.mul global.set $f))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let g = |name: &str| match inst.get_export(&store, name) {
        Some(Extern::Global(g)) => g,
        other => panic!("{name}: {other:?}"),
    };
    let (c, m, f, started) = (g("const"), g("mut"), g("float"), g("started"));
    assert_eq!(Instance::global_value(&store, c), Val::I64(-5));
    assert_eq!(Instance::global_value(&store, m), Val::I32(1));
    assert_eq!(
        Instance::global_value(&store, started),
        Val::I32(1),
        "the start function ran once"
    );
    let bump = inst.get_func(&store, "bump").unwrap();
    bump.call(&mut store, &[Val::I32(41)]).unwrap();
    bump.call(&mut store, &[Val::I32(-2)]).unwrap();
    assert_eq!(Instance::global_value(&store, m), Val::I32(40));
    assert_eq!(
        Instance::global_value(&store, f),
        Val::F64(6.0f64.to_bits())
    );
    // A second instance of the same module has its own globals.
    let inst2 = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let Some(Extern::Global(m2)) = inst2.get_export(&store, "mut") else {
        panic!("mut")
    };
    assert_ne!(m2, m);
    assert_eq!(Instance::global_value(&store, m2), Val::I32(1));
    assert_eq!(Instance::global_value(&store, m), Val::I32(40));
    // Exports are listed in order.
    let names: Vec<String> = inst.exports(&store).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["const", "mut", "float", "started", "bump"]);
}

#[test]
fn start_function_trap_fails_instantiation() {
    let engine = Engine::default();
    let module = Module::new(&engine, r#"(module (func $s unreachable) (start $s))"#).unwrap();
    let mut store = Store::new(&engine, ());
    let t = trap_of(Linker::new(&engine).instantiate(&mut store, &module));
    assert_eq!(t.kind, TrapKind::Unreachable);
    assert_eq!(t.frames[0].name, "s");
}

#[test]
fn host_functions_see_store_data_and_the_calling_thread() {
    struct Counter {
        total: i64,
        callers: Vec<u32>,
    }
    let engine = Engine::default();
    let mut linker = Linker::<Counter>::new(&engine);
    linker.func_new(
        "env",
        "add",
        FuncType::new([ValType::I64], [ValType::I64]),
        |c, a, r| {
            let me = c.thread_id().0;
            let d = c.data_mut();
            d.total += a[0].i64().unwrap();
            d.callers.push(me);
            r[0] = Val::I64(d.total);
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module (import "env" "add" (func $add (param i64) (result i64)))
          (func (export "f") (param i64) (result i64) local.get 0 call $add drop local.get 0 call $add))"#,
    )
    .unwrap();
    let mut store = Store::new(
        &engine,
        Counter {
            total: 0,
            callers: vec![],
        },
    );
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let f = inst
        .get_func(&store, "f")
        .unwrap()
        .typed::<i64, i64>(&store)
        .unwrap();
    assert_eq!(f.call(&mut store, 5).unwrap(), 10);
    let id = store.spawn(f.func(), &[Val::I64(1)]).unwrap();
    assert_eq!(store.join(id).unwrap(), vec![Val::I64(12)]);
    store.data_mut().total = 100;
    assert_eq!(f.call(&mut store, 1).unwrap(), 102);
    let callers = &store.data().callers;
    assert_eq!(callers.len(), 6);
    assert_eq!(callers[2], id.0);
    assert_eq!(callers[3], id.0);
    assert_ne!(callers[0], callers[2], "each call has its own thread");
}

#[test]
fn host_functions_with_several_values_and_floats() {
    let engine = Engine::default();
    let mut linker = Linker::<()>::new(&engine);
    linker.func_new(
        "env",
        "divmod",
        FuncType::new([ValType::I32, ValType::I32], [ValType::I32, ValType::I32]),
        |_, a, r| {
            let (x, y) = (a[0].i32().unwrap(), a[1].i32().unwrap());
            if y == 0 {
                return Err(Error::Host("division by zero in the host".into()));
            }
            r[0] = Val::I32(x / y);
            r[1] = Val::I32(x % y);
            Ok(())
        },
    );
    linker.func_new(
        "env",
        "scale",
        FuncType::new([ValType::F32, ValType::F64, ValType::I64], [ValType::F64]),
        |_, a, r| {
            let (Val::F32(x), Val::F64(y), Val::I64(z)) = (a[0], a[1], a[2]) else {
                panic!("{a:?}")
            };
            r[0] = Val::F64((f32::from_bits(x) as f64 * f64::from_bits(y) + z as f64).to_bits());
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module
          (import "env" "divmod" (func $divmod (param i32 i32) (result i32 i32)))
          (import "env" "scale" (func $scale (param f32 f64 i64) (result f64)))
          (type $dm (func (param i32 i32) (result i32 i32)))
          (table 2 funcref) (elem (i32.const 0) $divmod $wasm_divmod)
          (func $wasm_divmod (param i32 i32) (result i32 i32)
            local.get 0 local.get 1 i32.div_s local.get 0 local.get 1 i32.rem_s)
          (func (export "combine") (param i32 i32 i32) (result i32)
            local.get 0 local.get 1 local.get 2 call_indirect (type $dm) i32.const 1000 i32.mul i32.add)
          (func (export "scale") (param f32 f64 i64) (result f64) local.get 0 local.get 1 local.get 2 call $scale))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let combine = inst
        .get_func(&store, "combine")
        .unwrap()
        .typed::<(i32, i32, i32), i32>(&store)
        .unwrap();
    // quotient + 1000 * remainder, through the host and through wasm.
    assert_eq!(combine.call(&mut store, (47, 5, 0)).unwrap(), 9 + 2000);
    assert_eq!(combine.call(&mut store, (47, 5, 1)).unwrap(), 9 + 2000);
    assert_eq!(combine.call(&mut store, (-47, 5, 0)).unwrap(), -9 - 2000);
    let t = trap_of(combine.call(&mut store, (1, 0, 0)));
    assert_eq!(t.kind, TrapKind::HostError);
    assert!(t.message.unwrap().contains("division by zero in the host"));
    assert_eq!(
        trap_of(combine.call(&mut store, (1, 0, 1))).kind,
        TrapKind::IntegerDivisionByZero
    );
    let scale = inst
        .get_func(&store, "scale")
        .unwrap()
        .typed::<(f32, f64, i64), f64>(&store)
        .unwrap();
    assert_eq!(
        scale.call(&mut store, (1.5, -4.0, 1 << 40)).unwrap(),
        (1u64 << 40) as f64 - 6.0
    );
}

#[test]
fn many_parameters_and_results_cross_every_boundary() {
    // 12 mixed parameters and 6 mixed results: host -> wasm, wasm -> wasm,
    // wasm -> host, and call_indirect.
    use ValType::*;
    let params = [I32, I64, F32, F64, I32, I64, F32, F64, I32, I64, F32, F64];
    let engine = Engine::default();
    let mut linker = Linker::<()>::new(&engine);
    linker.func_new(
        "env",
        "host_sum",
        FuncType::new(params, [F64, I32]),
        |_, a, r| {
            let mut sum = 0.0f64;
            for v in a {
                sum += match *v {
                    Val::I32(x) => x as f64,
                    Val::I64(x) => x as f64,
                    Val::F32(x) => f32::from_bits(x) as f64,
                    Val::F64(x) => f64::from_bits(x),
                    _ => panic!("{v:?}"),
                };
            }
            r[0] = Val::F64(sum.to_bits());
            r[1] = Val::I32(a.len() as i32);
            Ok(())
        },
    );
    let module = Module::new(
        &engine,
        r#"(module
          (type $big (func (param i32 i64 f32 f64 i32 i64 f32 f64 i32 i64 f32 f64) (result f64 i32)))
          (import "env" "host_sum" (func $host_sum (type $big)))
          (table 2 funcref) (elem (i32.const 0) $host_sum $wasm_sum)
          (func $wasm_sum (type $big)
            local.get 0 f64.convert_i32_s local.get 1 f64.convert_i64_s f64.add
            local.get 2 f64.promote_f32 f64.add local.get 3 f64.add
            local.get 4 f64.convert_i32_s f64.add local.get 5 f64.convert_i64_s f64.add
            local.get 6 f64.promote_f32 f64.add local.get 7 f64.add
            local.get 8 f64.convert_i32_s f64.add local.get 9 f64.convert_i64_s f64.add
            local.get 10 f64.promote_f32 f64.add local.get 11 f64.add
            i32.const 12)
          (func $spread (export "spread") (param i32) (result i32 i64 f32 f64 i32 i64)
            local.get 0 local.get 0 i64.extend_i32_s i64.const 2 i64.mul
            local.get 0 f32.convert_i32_s f32.const 3 f32.mul
            local.get 0 f64.convert_i32_s f64.const 4 f64.mul
            local.get 0 i32.const 5 i32.mul
            local.get 0 i64.extend_i32_s i64.const 6 i64.mul)
          (func (export "both") (param $x i32) (param $slot i32) (result f64 f64 i32)
            ;; wasm -> wasm multi-value, then the same values through the
            ;; host function directly and through call_indirect (slot 0 is
            ;; the host function, slot 1 the wasm one).
            (local $a i32) (local $b i64) (local $c f32) (local $d f64) (local $e i32) (local $f i64)
            (call $spread (local.get $x))
            local.set $f local.set $e local.set $d local.set $c local.set $b local.set $a
            (call $host_sum (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e) (local.get $f)
                            (local.get $c) (local.get $d) (local.get $a) (local.get $b) (local.get $c) (local.get $d))
            drop
            (call_indirect (type $big) (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e) (local.get $f)
                            (local.get $c) (local.get $d) (local.get $a) (local.get $b) (local.get $c) (local.get $d)
                            (local.get $slot))
            ))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let spread = inst.get_func(&store, "spread").unwrap();
    assert_eq!(
        spread.call(&mut store, &[Val::I32(7)]).unwrap(),
        vec![
            Val::I32(7),
            Val::I64(14),
            Val::F32(21f32.to_bits()),
            Val::F64(28f64.to_bits()),
            Val::I32(35),
            Val::I64(42)
        ]
    );
    // x, 2x, 3x, 4x, 5x, 6x, 3x, 4x, x, 2x, 3x, 4x = 38x
    let both = inst.get_func(&store, "both").unwrap();
    for (slot, x) in [(0, 7), (1, 7), (0, -3), (1, 1000)] {
        let r = both.call(&mut store, &[Val::I32(x), Val::I32(slot)]);
        let want = 38.0 * x as f64;
        match r.unwrap()[..] {
            [Val::F64(a), Val::F64(b), Val::I32(n)] => {
                assert_eq!(f64::from_bits(a), want, "host sum");
                assert_eq!(f64::from_bits(b), want, "sum through slot {slot}");
                assert_eq!(n, 12);
            }
            ref other => panic!("{other:?}"),
        }
    }
}

// A host function's `Caller` is the instance that calls it, also when the
// function reaches that instance as a re-export of another instance.
#[test]
fn reexported_host_function_sees_the_calling_instance() {
    let engine = Engine::default();
    let mut linker = Linker::<Vec<u8>>::new(&engine);
    linker.func_new("env", "first_byte", FuncType::new([], []), |c, _, _| {
        let b = c.memory(0).map(|m| m[0]).unwrap_or(0);
        c.data_mut().push(b);
        Ok(())
    });
    let a = Module::new(
        &engine,
        r#"(module (import "env" "first_byte" (func $fb)) (export "first_byte" (func $fb))
          (memory 1) (data (i32.const 0) "A") (func (export "call") call $fb))"#,
    )
    .unwrap();
    let b = Module::new(
        &engine,
        r#"(module (import "a" "first_byte" (func $fb))
          (memory 1) (data (i32.const 0) "B") (func (export "call") call $fb))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, Vec::new());
    let ia = linker.instantiate(&mut store, &a).unwrap();
    linker.instance(&store, "a", ia);
    let ib = linker.instantiate(&mut store, &b).unwrap();
    ia.get_func(&store, "call")
        .unwrap()
        .call(&mut store, &[])
        .unwrap();
    ib.get_func(&store, "call")
        .unwrap()
        .call(&mut store, &[])
        .unwrap();
    assert_eq!(store.data(), b"AB");
}

#[test]
fn reference_globals_and_externrefs_round_trip() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
          (func $f (export "f") (result i32) i32.const 3)
          (global (export "fref") funcref (ref.func $f))
          (global (export "null_ref") funcref (ref.null func))
          (global $ext (export "ext") (mut externref) (ref.null extern))
          (table $et 2 externref)
          (func (export "keep") (param externref) (global.set $ext (local.get 0)) (table.set $et (i32.const 1) (local.get 0)))
          (func (export "kept") (result externref externref) (global.get $ext) (table.get $et (i32.const 1)))
          (func (export "is_null") (param externref) (result i32) (ref.is_null (local.get 0))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let g = |store: &Store<()>, name: &str| match inst.get_export(store, name) {
        Some(Extern::Global(g)) => Instance::global_value(store, g),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        g(&store, "fref"),
        inst.get_func(&store, "f").unwrap().to_val(&store)
    );
    assert_eq!(g(&store, "null_ref"), Val::FuncRef(0));
    assert_eq!(g(&store, "ext"), Val::ExternRef(None));
    let keep = inst.get_func(&store, "keep").unwrap();
    let kept = inst.get_func(&store, "kept").unwrap();
    let is_null = inst.get_func(&store, "is_null").unwrap();
    for v in [Some(0u64), Some(41), Some(u64::MAX - 1), None] {
        keep.call(&mut store, &[Val::ExternRef(v)]).unwrap();
        assert_eq!(
            kept.call(&mut store, &[]).unwrap(),
            vec![Val::ExternRef(v), Val::ExternRef(v)]
        );
        assert_eq!(g(&store, "ext"), Val::ExternRef(v));
        assert_eq!(
            is_null.call(&mut store, &[Val::ExternRef(v)]).unwrap(),
            vec![Val::I32(v.is_none() as i32)]
        );
    }
}

// `Val::ExternRef(Some(v))` is encoded as `v + 1` (0 is null), so
// `Some(u64::MAX)` cannot be carried: it is refused, never turned into null.
#[test]
fn externref_u64_max_is_refused_not_turned_into_null() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (func (export "id") (param externref) (result externref) local.get 0))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let id = inst.get_func(&store, "id").unwrap();
    // u64::MAX is the one value an externref cannot carry (it encodes
    // null); it is refused rather than silently becoming null.
    let v = Val::ExternRef(Some(u64::MAX));
    assert!(matches!(id.call(&mut store, &[v]), Err(Error::BadCall(_))));
    let ok = Val::ExternRef(Some(u64::MAX - 1));
    assert_eq!(id.call(&mut store, &[ok]).unwrap(), vec![ok]);
}

/// `Linker::func_wrap`: typed host functions, their type taken from the
/// closure, called by the guest with every value type, and with the
/// caller's memory and store data.
#[test]
fn typed_host_functions_take_and_return_every_value_type() {
    let wat = r#"(module
      (import "env" "mix" (func $mix (param i32 i64 f32 f64) (result f64)))
      (import "env" "neg" (func $neg (param i64) (result i64 i32)))
      (import "env" "store" (func $store (param i32 i32)))
      (import "env" "count" (func $count))
      (import "env" "ten" (func $ten (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i64)))
      (memory (export "memory") 1)
      (func (export "mix") (result f64)
        (call $mix (i32.const -3) (i64.const 5000000000) (f32.const 0.5) (f64.const 0.25)))
      (func (export "neg") (param i64) (result i64 i32) (call $neg (local.get 0)))
      (func (export "store_then_load") (result i32)
        (call $store (i32.const 16) (i32.const 0x01020304))
        (call $count) (call $count)
        (i32.load (i32.const 16)))
      (func (export "ten") (result i64)
        (call $ten (i32.const 1) (i32.const 2) (i32.const 3) (i32.const 4) (i32.const 5)
                   (i32.const 6) (i32.const 7) (i32.const 8) (i32.const 9) (i64.const 10))))"#;
    let engine = Engine::default();
    let mut store = Store::new(&engine, 0u32);
    let mut linker: Linker<u32> = Linker::new(&engine);
    linker
        .func_wrap("env", "mix", |a: i32, b: i64, x: f32, y: f64| {
            f64::from(a) + b as f64 + f64::from(x) + y
        })
        .unwrap()
        .func_wrap("env", "neg", |v: i64| -> (i64, i32) {
            (v.wrapping_neg(), 7)
        })
        .unwrap()
        .func_wrap("env", "store", |mut c: Caller<'_, u32>, at: i32, v: i32| {
            let at = at as usize;
            c.memory(0).unwrap()[at..at + 4].copy_from_slice(&v.to_le_bytes());
        })
        .unwrap()
        .func_wrap("env", "count", |mut c: Caller<'_, u32>| {
            *c.data_mut() += 1;
        })
        .unwrap()
        .func_wrap(
            "env",
            "ten",
            |_c: Caller<'_, u32>,
             a: i32,
             b: i32,
             c: i32,
             d: i32,
             e: i32,
             f: i32,
             g: i32,
             h: i32,
             i: i32,
             j: i64| { i64::from(a + b + c + d + e + f + g + h + i) * 100 + j },
        )
        .unwrap();
    let inst = linker
        .instantiate(&mut store, &Module::new(&engine, wat).unwrap())
        .unwrap();
    let call = |store: &mut Store<u32>, name: &str, args: &[Val]| {
        inst.get_func(store, name)
            .unwrap()
            .call(store, args)
            .unwrap()
    };
    assert_eq!(
        call(&mut store, "mix", &[]),
        vec![Val::F64((5_000_000_000f64 - 3.0 + 0.75).to_bits())]
    );
    assert_eq!(
        call(&mut store, "neg", &[Val::I64(i64::MIN + 1)]),
        vec![Val::I64(i64::MAX), Val::I32(7)]
    );
    assert_eq!(
        call(&mut store, "store_then_load", &[]),
        vec![Val::I32(0x01020304)]
    );
    assert_eq!(*store.data(), 2);
    assert_eq!(call(&mut store, "ten", &[]), vec![Val::I64(4510)]);
}

/// A typed host function's `Err` and its panic both end the calling thread
/// with an error naming them; the store keeps working. An import whose type
/// differs from the closure's is a link error.
#[test]
fn typed_host_function_errors_panics_and_mistyped_imports() {
    let engine = Engine::default();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_wrap(
            "env",
            "fail",
            |_c: Caller<'_, ()>, v: i32| -> Result<i32, Error> {
                if v < 0 {
                    Err(Error::Host(format!("negative input {v}")))
                } else {
                    Ok(v * 2)
                }
            },
        )
        .unwrap()
        .func_wrap("env", "boom", || -> i32 { panic!("boom") })
        .unwrap();
    let wat = r#"(module
      (import "env" "fail" (func $fail (param i32) (result i32)))
      (import "env" "boom" (func $boom (result i32)))
      (func (export "fail") (param i32) (result i32) (call $fail (local.get 0)))
      (func (export "boom") (result i32) (call $boom)))"#;
    let mut store = Store::new(&engine, ());
    let inst = linker
        .instantiate(&mut store, &Module::new(&engine, wat).unwrap())
        .unwrap();
    let fail = inst.get_func(&store, "fail").unwrap();
    let boom = inst.get_func(&store, "boom").unwrap();
    assert_eq!(
        fail.call(&mut store, &[Val::I32(21)]).unwrap(),
        vec![Val::I32(42)]
    );
    let e = fail
        .call(&mut store, &[Val::I32(-1)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("negative input -1"), "{e}");
    let e = boom.call(&mut store, &[]).unwrap_err().to_string();
    assert!(e.contains("panicked"), "{e}");
    assert_eq!(
        fail.call(&mut store, &[Val::I32(1)]).unwrap(),
        vec![Val::I32(2)]
    );
    let mistyped = r#"(module (import "env" "fail" (func (param i64) (result i32))))"#;
    let e = linker
        .instantiate(&mut store, &Module::new(&engine, mistyped).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Link(_)), "{e}");
}

/// The host reaches guest memory and globals outside any host call:
/// fill an input buffer, call an export, read the output; read and set a
/// global (issue 16).
#[test]
fn memory_and_global_handles_outside_host_calls() {
    let wat = r#"(module
      (memory (export "memory") 1 2)
      (global $counter (export "counter") (mut i32) (i32.const 5))
      (global (export "fixed") i64 (i64.const 9))
      ;; Upper-cases the `len` ASCII bytes at `at` in place; counts calls.
      (func (export "upper") (param $at i32) (param $len i32) (result i32) (local $i i32)
        (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
        (block $d (loop $l
          (br_if $d (i32.ge_u (local.get $i) (local.get $len)))
          (i32.store8 (i32.add (local.get $at) (local.get $i))
            (i32.sub (i32.load8_u (i32.add (local.get $at) (local.get $i))) (i32.const 32)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (global.get $counter)))"#;
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &Module::new(&engine, wat).unwrap())
        .unwrap();
    let mem = inst.get_memory(&store, "memory").unwrap();
    mem.write(&mut store, 16, b"hello").unwrap();
    let upper = inst
        .get_typed_func::<(i32, i32), i32>(&store, "upper")
        .unwrap();
    assert_eq!(upper.call(&mut store, (16, 5)).unwrap(), 6);
    let mut buf = [0u8; 5];
    mem.read(&store, 16, &mut buf).unwrap();
    assert_eq!(&buf, b"HELLO");
    assert_eq!(&mem.data(&store)[16..21], b"HELLO");
    mem.data_mut(&mut store)[16] = b'J';
    mem.read(&store, 16, &mut buf).unwrap();
    assert_eq!(&buf, b"JELLO");
    // Out of bounds: an error, nothing written.
    let e = mem
        .write(&mut store, 65534, b"abc")
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of bounds"), "{e}");
    assert!(mem.read(&store, usize::MAX, &mut buf).is_err());
    assert_eq!((mem.size(&store), mem.data_size(&store)), (1, 65536));
    assert_eq!(mem.grow(&mut store, 1).unwrap(), 1);
    assert!(mem.grow(&mut store, 1).is_err(), "maximum 2 pages");
    mem.write(&mut store, 65534, b"abc").unwrap();

    let counter = inst.get_global(&store, "counter").unwrap();
    assert_eq!(counter.get(&store), Val::I32(6));
    counter.set(&mut store, Val::I32(100)).unwrap();
    assert_eq!(upper.call(&mut store, (16, 0)).unwrap(), 101);
    assert!(counter.set(&mut store, Val::I64(1)).is_err(), "wrong type");
    let fixed = inst.get_global(&store, "fixed").unwrap();
    assert!(!fixed.is_mutable(&store));
    assert!(fixed.set(&mut store, Val::I64(1)).is_err(), "immutable");
    assert_eq!(fixed.get(&store), Val::I64(9));
    assert!(inst.get_memory(&store, "counter").is_none());
    assert!(inst.get_typed_func::<(i32,), i32>(&store, "upper").is_err());

    // A handle used with another store is refused.
    let mut other = Store::new(&engine, ());
    Linker::new(&engine)
        .instantiate(&mut other, &Module::new(&engine, wat).unwrap())
        .unwrap();
    let e = mem.write(&mut other, 0, b"x").unwrap_err().to_string();
    assert!(e.contains("does not belong"), "{e}");
    assert!(counter.set(&mut other, Val::I32(1)).is_err());
    assert!(inst
        .get_typed_func::<(i32, i32), i32>(&other, "upper")
        .is_err());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mem.data(&other).len()));
    assert!(r.is_err(), "data() of another store's memory panics");
}

/// Epoch interruption (issue 16), as in wasmtime: a guest in an infinite
/// loop is stopped by a deadline that another OS thread's
/// `increment_epoch` reaches; the trap kind says so, and the store goes on.
#[test]
fn an_epoch_deadline_set_from_another_thread_interrupts_an_infinite_loop() {
    let wat = r#"(module
      (func (export "spin") (loop $l (br $l)))
      (func (export "one") (result i32) i32.const 1))"#;
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &Module::new(&engine, wat).unwrap())
        .unwrap();
    store.set_epoch_deadline(1);
    let ticker = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            engine.increment_epoch();
        })
    };
    let spin = inst.get_func(&store, "spin").unwrap();
    let err = spin.call(&mut store, &[]).unwrap_err();
    ticker.join().unwrap();
    match &err {
        Error::Trap(t) => {
            assert_eq!(t.kind, TrapKind::Interrupt, "{err}");
            assert!(!t.frames.is_empty(), "the backtrace shows where: {err}");
        }
        other => panic!("expected an interrupt, got {other}"),
    }
    // The deadline has passed: a new call is interrupted too (at its first
    // slice), until the deadline moves.
    store.set_epoch_deadline(u64::MAX);
    let one = inst.get_func(&store, "one").unwrap();
    assert_eq!(one.call(&mut store, &[]).unwrap(), vec![Val::I32(1)]);
    fn is_send_sync<X: Send + Sync>() {}
    is_send_sync::<Engine>();
}
