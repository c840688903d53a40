//! Issue 16: the embedding API in wasmtime's names and shapes. The first
//! test is the issue's example, as an embedder would write it; the others
//! attack what it promises: a store that moves between OS threads with a
//! parked guest thread and a transition, `Func::wrap`, and a linker that
//! refuses what wasmtime refuses.

use crate::transitions::{app, app_with, bytes_with, call, park, setup_host, wake};
use patch_format::DiffOptions;
use wasm_patch_runtime::*;

const EXAMPLE: &str = r#"(module
  (import "host" "add" (func $add (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $counter (export "counter") (mut i32) (i32.const 0))
  (func (export "f") (param i32 i32) (result i32)
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (call $add (local.get 0) (local.get 1))))"#;

/// The issue's example, line for line (with the values checked). A
/// wasmtime user passes `&mut store` where a shared borrow is enough; that
/// must compile too.
#[test]
#[allow(clippy::unnecessary_mut_passed)]
fn the_wasmtime_shaped_example_compiles_and_works() -> Result<(), Error> {
    let wat_or_wasm_bytes = EXAMPLE;
    let engine = Engine::default();
    let module = Module::new(&engine, wat_or_wasm_bytes)?;
    let mut linker: Linker<u32> = Linker::new(&engine);
    linker.func_wrap(
        "host",
        "add",
        |mut caller: Caller<'_, u32>, a: i32, b: i32| -> i32 {
            *caller.data_mut() += 1;
            a + b
        },
    )?;
    let mut store = Store::new(&engine, 0u32);
    let instance = linker.instantiate(&mut store, &module)?;
    let f = instance.get_typed_func::<(i32, i32), i32>(&mut store, "f")?;
    let r: i32 = f.call(&mut store, (1, 2))?;
    assert_eq!(r, 3);
    assert_eq!(*store.data(), 1, "the host function saw the store's data");
    let mem = instance.get_memory(&mut store, "memory").unwrap();
    mem.write(&mut store, 16, b"hello")?;
    let mut buf = [0u8; 5];
    mem.read(&store, 16, &mut buf)?;
    assert_eq!(&buf, b"hello");
    let data: &[u8] = mem.data(&store);
    assert_eq!(&data[16..21], b"hello");
    let g = instance.get_global(&mut store, "counter").unwrap();
    let v: Val = g.get(&mut store);
    assert_eq!(v.i32(), Some(1));
    g.set(&mut store, Val::I32(7))?;
    f.call(&mut store, (0, 0))?;
    assert_eq!(g.get(&store).i32(), Some(8));
    fn is_send<T: Send>() {}
    fn is_send_sync<T: Send + Sync>() {}
    is_send::<Store<u32>>();
    is_send_sync::<Engine>();
    is_send_sync::<Linker<u32>>();
    is_send_sync::<Module>();
    is_send_sync::<Instance>();
    is_send_sync::<Func>();
    Ok(())
}

/// A store moved to another OS thread, with a guest thread parked inside
/// the function a bundle replaces: there it applies the bundle, wakes the
/// thread, completes the transition, traps cleanly (out of bounds, stack
/// overflow), and comes back; then it moves once more and is dropped there
/// with a parked thread.
#[test]
fn a_store_moved_to_another_os_thread_runs_and_patches_there() {
    let extra = r#"(func $deep (export "deep") (param i32) (result i32)
        (i32.add (i32.const 1) (call $deep (local.get 0))))
      (func (export "oob") (result i32) (i32.load (i32.const 70000)))"#;
    let v0 = app_with("i32.const 0", "i32.const 0", extra);
    let v1 = app_with("i32.const 1", "i32.const 0", extra);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let bundle = bytes_with(&v0, &v1, &DiffOptions::default());
    let here = std::thread::current().id();
    let mut store = std::thread::spawn(move || {
        assert_ne!(std::thread::current().id(), here);
        let p = store
            .apply(inst, &bundle, &ApplyOptions::default())
            .expect("apply on the new OS thread");
        assert_eq!(
            store.transition_status().map(|s| s.patch),
            Some(p),
            "the parked thread blocks it"
        );
        wake(&mut store, t);
        store.wait_transition().unwrap();
        assert_eq!(call(&mut store, inst, "call_f"), 1);
        let oob = inst.get_func(&store, "oob").unwrap();
        let e = oob.call(&mut store, &[]).unwrap_err();
        assert!(
            matches!(
                e.as_trap().map(|t| t.kind),
                Some(TrapKind::MemoryOutOfBounds)
            ),
            "{e}"
        );
        let deep = inst.get_func(&store, "deep").unwrap();
        let e = deep.call(&mut store, &[Val::I32(0)]).unwrap_err();
        assert!(
            matches!(e.as_trap().map(|t| t.kind), Some(TrapKind::StackOverflow)),
            "{e}"
        );
        store
    })
    .join()
    .expect("the other OS thread");
    // Back here: the parked thread's record and the new version both hold.
    assert!(store.data().rec.contains(&0), "{:?}", store.data().rec);
    assert_eq!(call(&mut store, inst, "call_f"), 1);
    let t2 = park(&mut store, inst, "idle", &[]);
    std::thread::spawn(move || {
        assert_eq!(store.thread_state(t2), Some(RunState::Parked));
        drop(store);
    })
    .join()
    .expect("dropped on a third OS thread");
}

/// `Func::wrap`: a host function without a linker, called from the host
/// and imported by a module through `Linker::define`; its caller sees the
/// store's data and the calling instance's exports.
#[test]
fn func_wrap_makes_a_host_function_of_the_store() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, 0u32);
    let add = Func::wrap(
        &mut store,
        |mut c: Caller<'_, u32>, a: i32, b: i32| -> i32 {
            *c.data_mut() += 1;
            let has_memory = matches!(c.get_export("memory"), Some(Extern::Memory(_)));
            a + b + if has_memory { 1000 } else { 0 }
        },
    );
    let twice = Func::wrap(&mut store, |x: i64| (x * 2, x * 3));
    assert_eq!(
        add.call(&mut store, &[Val::I32(2), Val::I32(3)]).unwrap(),
        vec![Val::I32(5)]
    );
    assert_eq!(
        twice.call(&mut store, &[Val::I64(7)]).unwrap(),
        vec![Val::I64(14), Val::I64(21)]
    );
    let module = Module::new(&engine, EXAMPLE).unwrap();
    let mut linker: Linker<u32> = Linker::new(&engine);
    linker.define("host", "add", Extern::Func(add));
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let f = inst.get_typed_func::<(i32, i32), i32>(&store, "f").unwrap();
    assert_eq!(
        f.call(&mut store, (1, 2)).unwrap(),
        1003,
        "the guest's caller has a memory"
    );
    assert_eq!(*store.data(), 2);
    // Mistyped: an i64 function for an (i32, i32) -> i32 import.
    let mut bad: Linker<u32> = Linker::new(&engine);
    bad.define("host", "add", Extern::Func(twice));
    assert!(matches!(
        bad.instantiate(&mut store, &module),
        Err(Error::Link(_))
    ));
}

/// A linker refuses to shadow a definition (as wasmtime does by default),
/// `add_wasi` adds nothing when one of its names is taken, and a linker of
/// one engine does not instantiate into a store of another.
#[test]
fn a_linker_refuses_duplicates_and_other_engines() {
    let engine = Engine::default();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_wrap("host", "add", |a: i32, b: i32| a + b)
        .unwrap();
    match linker.func_wrap("host", "add", |a: i32, b: i32| a - b) {
        Err(Error::Link(m)) => assert!(m.contains("`host`.`add`"), "{m}"),
        other => panic!("expected a link error, got {:?}", other.map(|_| ())),
    }
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "fd_write",
            |_: i32, _: i32, _: i32, _: i32| 0,
        )
        .unwrap();
    match wasm_patch_wasi::add_wasi(&mut linker, wasm_patch_wasi::WasiCtx::default()) {
        Err(Error::Link(m)) => assert!(m.contains("already defined"), "{m}"),
        other => panic!("expected a link error, got {:?}", other.map(|_| ())),
    }
    // Nothing of WASI was added: a module importing another of its
    // functions does not link.
    let m = Module::new(
        &engine,
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    assert!(matches!(
        linker.instantiate(&mut store, &m),
        Err(Error::Link(_))
    ));
    // The surviving `add` is the first one.
    let m = Module::new(
        &engine,
        r#"(module (import "host" "add" (func $a (param i32 i32) (result i32)))
             (func (export "f") (result i32) (call $a (i32.const 5) (i32.const 3))))"#,
    )
    .unwrap();
    let i = linker.instantiate(&mut store, &m).unwrap();
    let f = i.get_typed_func::<(), i32>(&store, "f").unwrap();
    assert_eq!(f.call(&mut store, ()).unwrap(), 8);
    // Another engine's store.
    let other = Engine::default();
    let mut foreign = Store::new(&other, ());
    let m2 = Module::new(&other, "(module)").unwrap();
    match linker.instantiate(&mut foreign, &m2) {
        Err(Error::Link(m)) => assert!(m.contains("different engines"), "{m}"),
        other => panic!("expected a link error, got {other:?}"),
    }
}

/// A bundle applied on one
/// OS thread and reverted on another.
#[test]
fn a_bundle_applied_on_one_os_thread_reverts_on_another() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let p = store
        .apply(
            inst,
            &bytes_with(&v0, &app(1, 1), &DiffOptions::default()),
            &ApplyOptions::default(),
        )
        .unwrap();
    store.wait_transition().unwrap();
    let mut store = std::thread::spawn(move || {
        assert_eq!(call(&mut store, inst, "call_g"), 1);
        store.revert(p, None).unwrap();
        store.wait_transition().unwrap();
        store
    })
    .join()
    .unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 0);
}
