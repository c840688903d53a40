//! Transitions: per-thread consistency, immediate functions, blockers,
//! reverse, force, timeout rollback, revert order, atomic rejection, spawn
//! during a transition, reclaim. Each test follows one rule of
//! `../shared/CONSISTENCY.md`.

use patch_format::{diff, DiffOptions};
use wasm_patch_runtime::*;

/// Version 1: `step` calls `encode`, yields, calls `decode`; each version
/// tags its results so that a mixed step is visible: a consistent step
/// returns tag*1000 + tag*100 + tag*10 (all three from one version).
fn service(v: i32) -> String {
    format!(
        r#"(module
      (import "wasm-patch" "yield" (func $yield))
      (import "env" "record" (func $record (param i32)))
      (global $stop (mut i32) (i32.const 0))
      (func $encode (param i32) (result i32) i32.const {v} i32.const 100 i32.mul)
      (func $decode (param i32) (result i32) i32.const {v} i32.const 10 i32.mul local.get 0 i32.add)
      (func $step (result i32)
        (local $x i32)
        i32.const {v} i32.const 1000 i32.mul
        i32.const 0 call $encode
        i32.add
        local.set $x
        call $yield
        local.get $x call $decode)
      (func $worker (export "worker") (param $n i32)
        (loop $l
          call $step call $record
          local.get $n i32.const 1 i32.sub local.tee $n
          br_if $l))
      (func (export "stop") i32.const 1 global.set $stop))"#
    )
}

fn bundle(old: &str, new: &str, immediate: &[&str]) -> Vec<u8> {
    let old = wat::parse_str(old).unwrap();
    let new = wat::parse_str(new).unwrap();
    let opts = DiffOptions {
        immediate: immediate.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    diff(&old, &new, &opts).expect("diff").bundle.to_bytes()
}

struct Recorded(Vec<i32>);

fn setup(src: &str) -> (Store<Recorded>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, src).unwrap();
    let mut store = Store::new(&engine, Recorded(Vec::new()));
    let mut linker: Linker<Recorded> = Linker::new();
    linker.add_thread_abi();
    linker.func_new(
        "env",
        "record",
        FuncType::new([ValType::I32], []),
        |c, a, _| {
            c.data_mut().0.push(a[0].i32().unwrap());
            Ok(())
        },
    );
    let inst = linker.instantiate(&mut store, &module).unwrap();
    (store, inst)
}

fn mixed(steps: &[i32]) -> usize {
    steps
        .iter()
        .filter(|&&s| {
            let (a, b, c) = (s / 1000, (s / 100) % 10, (s / 10) % 10);
            !(a == b && b == c)
        })
        .count()
}

fn run_scenario(immediate: bool) -> (usize, usize) {
    let (mut store, inst) = setup(&service(1));
    let worker = inst.get_func(&store, "worker").unwrap();
    for _ in 0..50 {
        store.spawn(worker, &[Val::I32(40)]).unwrap();
    }
    // Every thread runs into the middle of its first step (in `yield`).
    assert_eq!(store.run_steps(50), 50);
    let names: Vec<&str> = if immediate {
        vec!["step", "encode", "decode"]
    } else {
        vec![]
    };
    let b = bundle(&service(1), &service(2), &names);
    store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    if !immediate {
        let st = store.transition_status().expect("in transition");
        assert_eq!(st.pending, 50, "every thread is inside `step`");
        assert_eq!(st.blockers.len(), 50);
        assert_eq!(st.blockers[0].frame.name, "step");
    }
    store.run().unwrap();
    assert!(store.transition_status().is_none(), "transition completed");
    let steps = store.data().0.clone();
    if std::env::var("DEBUG_T").is_ok() {
        for e in store.events().iter().take(8) {
            eprintln!("{e}");
        }
        eprintln!(
            "{} events; last {:?}; steps {:?}",
            store.events().len(),
            store.events().last(),
            &steps[..20]
        );
    }
    let new = steps.iter().filter(|&&s| s / 1000 == 2).count();
    (mixed(&steps), new)
}

#[test]
fn per_thread_consistency_gives_no_mixed_steps() {
    let (mixed, new) = run_scenario(false);
    assert_eq!(mixed, 0, "consistent bundle produced mixed steps");
    assert!(new > 0, "new code never ran");
}

#[test]
fn the_same_bundle_marked_immediate_mixes_versions() {
    let (mixed, new) = run_scenario(true);
    assert!(mixed > 0, "immediate bundle should visibly mix versions");
    assert!(new > 0);
}
