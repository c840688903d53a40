//! Preemption that must not be lost. Each test is bounded in count and in
//! time: a lost preemption makes a busy thread spin forever, which
//! `with_timeout` turns into a failure.

use crate::{i32_of, with_timeout};
use std::time::Duration;
use wasm_patch_runtime::{Config, Engine, Func, Instance, Linker, Module, Store, Val};

/// A store of `engine` with an instance of `module` (thread ABI linked).
fn instantiate(engine: &Engine, module: &Module) -> (Store<()>, Instance) {
    let mut store = Store::new(engine, ());
    let mut linker: Linker<()> = Linker::new();
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
