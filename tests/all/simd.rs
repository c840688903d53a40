//! Fixed-width SIMD (issue 19) through the embedding API and the patch
//! path: `v128` parameters and results from the host (typed and untyped
//! calls, host functions), bundles diffed from two WAT versions of SIMD
//! functions, and threads parked with live `v128` locals while a bundle is
//! applied. Every expected value is computed here, lane by lane, from the
//! inputs.

use crate::transitions::{bytes_with, func, host_linker, Host};
use patch_format::DiffOptions;
use wasm_patch_runtime::*;

/// The module; `kernel_op` is the lane operation of `kernel` and `scale`
/// the factor `work` applies before it parks.
fn simd_app(kernel_op: &str, scale: i32) -> String {
    format!(
        r#"(module
      (import "env" "park" (func $park))
      (import "env" "lanes" (func $lanes (param v128) (result i32)))
      (import "env" "reverse" (func $reverse (param v128) (result v128)))
      (func $kernel (export "kernel") (param v128 v128) (result v128)
        ({kernel_op} (local.get 0) (local.get 1)))
      ;; Keeps `acc` (computed before parking) live across the park, then
      ;; adds `kernel(x, x)` computed after it.
      (func $work (export "work") (param $x v128) (result v128) (local $acc v128)
        (local.set $acc (i32x4.mul (local.get $x) (i32x4.splat (i32.const {scale}))))
        (call $park)
        (i32x4.add (local.get $acc) (call $kernel (local.get $x) (local.get $x))))
      (func (export "host_lanes") (param v128) (result i32)
        (call $lanes (local.get 0)))
      (func (export "host_reverse") (param v128) (result v128)
        (i32x4.add (call $reverse (local.get 0)) (i32x4.splat (i32.const 1)))))"#
    )
}

/// A v128 from four i32 lanes (lane 0 first).
fn v(lanes: [i32; 4]) -> u128 {
    lanes.iter().enumerate().fold(0u128, |acc, (i, &l)| {
        acc | (u128::from(l as u32) << (32 * i))
    })
}

/// The four i32 lanes of a v128.
fn lanes(x: u128) -> [i32; 4] {
    std::array::from_fn(|i| (x >> (32 * i)) as u32 as i32)
}

/// Lane-wise `f`.
fn map2(a: [i32; 4], b: [i32; 4], f: impl Fn(i32, i32) -> i32) -> [i32; 4] {
    std::array::from_fn(|i| f(a[i], b[i]))
}

const X: [i32; 4] = [3, -7, 100_000, i32::MAX];

fn setup(src: &str) -> (Store<Host>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, src).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let mut linker = host_linker(&engine);
    // A host function with a v128 parameter: the sum of its i32 lanes.
    linker
        .func_wrap("env", "lanes", |x: V128| -> i32 {
            lanes(x.as_u128())
                .iter()
                .fold(0i32, |a, &l| a.wrapping_add(l))
        })
        .unwrap();
    // And one with a v128 result: the lanes in reverse order.
    linker
        .func_wrap("env", "reverse", |x: V128| -> V128 {
            let mut l = lanes(x.as_u128());
            l.reverse();
            V128(v(l))
        })
        .unwrap();
    let inst = linker.instantiate(&mut store, &module).unwrap();
    (store, inst)
}

/// Spawn `work(x)` and run until it parks.
fn park_work(store: &mut Store<Host>, inst: Instance, x: [i32; 4]) -> ThreadId {
    let f = func(store, inst, "work");
    let id = store.spawn(f, &[Val::V128(v(x))]).unwrap();
    store.run().unwrap();
    assert_eq!(store.thread_state(id), Some(RunState::Parked));
    id
}

/// Wake `id` and return its single v128 result.
fn finish(store: &mut Store<Host>, id: ThreadId) -> [i32; 4] {
    store.unpark(id);
    store.run().unwrap();
    match store.take_result(id).unwrap().as_slice() {
        [Val::V128(r)] => lanes(*r),
        other => panic!("expected one v128, got {other:?}"),
    }
}

#[test]
fn v128_crosses_typed_untyped_and_host_calls() {
    let (mut store, inst) = setup(&simd_app("i32x4.add", 3));
    let y = [1, 2, 3, 4];
    let typed = inst
        .get_typed_func::<(V128, V128), V128>(&store, "kernel")
        .unwrap();
    let r = typed.call(&mut store, (V128(v(X)), V128(v(y)))).unwrap();
    assert_eq!(lanes(r.as_u128()), map2(X, y, i32::wrapping_add));
    let untyped = func(&store, inst, "kernel");
    let r = untyped
        .call(&mut store, &[Val::V128(v(X)), Val::V128(v(y))])
        .unwrap();
    assert_eq!(r, vec![Val::V128(v(map2(X, y, i32::wrapping_add)))]);
    let host = func(&store, inst, "host_lanes");
    let r = crate::i32_of(host.call(&mut store, &[Val::V128(v(X))]));
    assert_eq!(r, X.iter().fold(0i32, |a, &l| a.wrapping_add(l)));
    let host = func(&store, inst, "host_reverse");
    let r = host.call(&mut store, &[Val::V128(v(X))]).unwrap();
    let want = [X[3], X[2], X[1], X[0]].map(|l| l.wrapping_add(1));
    assert_eq!(r, vec![Val::V128(v(want))]);
}

#[test]
fn a_simd_function_with_v128_params_is_live_patched() {
    let v1 = simd_app("i32x4.add", 3);
    let v2 = simd_app("i32x4.mul", 3);
    let (mut store, inst) = setup(&v1);
    let y = [5, 6, -7, 2];
    let kernel = inst
        .get_typed_func::<(V128, V128), V128>(&store, "kernel")
        .unwrap();
    let before = kernel.call(&mut store, (V128(v(X)), V128(v(y)))).unwrap();
    assert_eq!(lanes(before.as_u128()), map2(X, y, i32::wrapping_add));
    let bundle = bytes_with(&v1, &v2, &DiffOptions::default());
    store
        .apply(inst, &bundle, &ApplyOptions::default())
        .expect("apply");
    assert!(!store.wait_transition().unwrap().reversed);
    let after = kernel.call(&mut store, (V128(v(X)), V128(v(y)))).unwrap();
    assert_eq!(lanes(after.as_u128()), map2(X, y, i32::wrapping_mul));
}

#[test]
fn a_thread_parked_with_a_live_v128_local_keeps_it_across_a_patch() {
    // Only `kernel` changes: the thread parked in `work` is not blocked,
    // switches at once, and on waking adds its pre-park `acc` (3x, kept
    // in a v128 local across the park and the patch) to the new kernel's
    // x*x.
    let v1 = simd_app("i32x4.add", 3);
    let v2 = simd_app("i32x4.mul", 3);
    let (mut store, inst) = setup(&v1);
    let t = park_work(&mut store, inst, X);
    let bundle = bytes_with(&v1, &v2, &DiffOptions::default());
    store
        .apply(inst, &bundle, &ApplyOptions::default())
        .expect("apply");
    assert!(!store.wait_transition().unwrap().reversed);
    let acc = X.map(|l| l.wrapping_mul(3));
    let want = map2(acc, map2(X, X, i32::wrapping_mul), i32::wrapping_add);
    assert_eq!(finish(&mut store, t), want);
}

#[test]
fn a_thread_parked_inside_a_patched_simd_function_blocks_and_finishes_old() {
    // `work` itself changes (scale 3 → 5, kernel add → mul): the parked
    // thread blocks the transition, finishes entirely in the old version
    // with its live v128 local intact, and then the transition completes;
    // a new thread runs the new version.
    let v1 = simd_app("i32x4.add", 3);
    let v2 = simd_app("i32x4.mul", 5);
    let (mut store, inst) = setup(&v1);
    let t = park_work(&mut store, inst, X);
    let bundle = bytes_with(&v1, &v2, &DiffOptions::default());
    store
        .apply(inst, &bundle, &ApplyOptions::default())
        .expect("apply");
    store.run().unwrap();
    let status = store.transition_status().expect("blocked transition");
    assert_eq!(status.pending, 1);
    assert_eq!(
        store.thread_patch_state(t),
        Some(ThreadPatchState::Unpatched)
    );
    let old = map2(
        X.map(|l| l.wrapping_mul(3)),
        map2(X, X, i32::wrapping_add),
        i32::wrapping_add,
    );
    assert_eq!(finish(&mut store, t), old);
    assert!(!store.wait_transition().unwrap().reversed);
    let t2 = park_work(&mut store, inst, X);
    let new = map2(
        X.map(|l| l.wrapping_mul(5)),
        map2(X, X, i32::wrapping_mul),
        i32::wrapping_add,
    );
    assert_eq!(finish(&mut store, t2), new);
}

#[test]
fn invoke_parses_and_prints_v128_in_hex() {
    let dir = std::env::temp_dir().join(format!("wasm-patch-simd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wat = dir.join("k.wat");
    std::fs::write(
        &wat,
        r#"(module (func (export "k") (param v128 v128) (result v128)
             (i8x16.add (local.get 0) (local.get 1))))"#,
    )
    .unwrap();
    let a: u128 = 0x0102_0304_0506_0708_090a_0b0c_0d0e_0fff;
    let b: u128 = 1;
    let out = std::process::Command::new(crate::cli_control::BIN)
        .args(["run", "--invoke", "k"])
        .arg(&wat)
        .arg(format!("{a:#x}"))
        .arg(b.to_string())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{out:?}");
    // Lane 0 wraps (0xff + 1), no carry into lane 1.
    let want = (a & !0xff) | ((a as u8).wrapping_add(1) as u128);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{want:#034x}")
    );
}

/// `guests/built` (scalar builds, `EXPECTED.txt`) and its `simd/` builds.
fn guests_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/built")
}

/// Run a kernel module's `run(arg) -> i64`.
fn run_kernel(bytes: &[u8], arg: i32) -> i64 {
    let engine = Engine::default();
    let module = Module::new(&engine, bytes).unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let run = inst.get_typed_func::<(i32,), i64>(&store, "run").unwrap();
    run.call(&mut store, (arg,)).unwrap()
}

/// How many SIMD operators a module's code holds.
fn simd_operators(bytes: &[u8]) -> usize {
    let mut n = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() {
            for op in body.get_operators_reader().unwrap() {
                let name = format!("{:?}", op.unwrap());
                let simd = ["V128", "I8x16", "I16x8", "I32x4", "I64x2", "F32x4", "F64x2"];
                n += usize::from(simd.iter().any(|p| name.starts_with(p)));
            }
        }
    }
    n
}

#[test]
fn rustc_simd128_guests_give_the_scalar_builds_results() {
    // `guests/build.sh --simd`: the same kernels built with
    // `-C target-feature=+simd128`; rustc vectorises some of their loops.
    let dir = guests_dir();
    let expected = std::fs::read_to_string(dir.join("EXPECTED.txt")).unwrap();
    let mut vectorised = 0;
    let mut kernels = 0;
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, arg, want): (&str, i32, i64) =
            (f[0], f[1].parse().unwrap(), f[2].parse().unwrap());
        let scalar = std::fs::read(dir.join(format!("{name}.wasm"))).unwrap();
        let simd = std::fs::read(dir.join(format!("simd/{name}.wasm"))).unwrap();
        assert_eq!(simd_operators(&scalar), 0, "{name}: scalar build");
        vectorised += usize::from(simd_operators(&simd) > 0);
        assert_eq!(run_kernel(&scalar, arg), want, "{name}: scalar build");
        assert_eq!(run_kernel(&simd, arg), want, "{name}: simd128 build");
        kernels += 1;
    }
    assert_eq!(kernels, 8);
    // Every kernel's SIMD build really uses SIMD (at least its memory
    // copies and fills do).
    assert_eq!(vectorised, kernels);
}

/// A worker whose loop carries a v128 local (each turn adds `k` to every
/// lane) and yields, until `stop`.
fn v128_worker(k: i32) -> String {
    format!(
        r#"(module
      (import "wasm-patch" "yield" (func $yield))
      (global $stop (mut i32) (i32.const 0))
      (func $worker (export "worker") (result i32) (local $i i32) (local $v v128)
        (loop $l
          (local.set $v (i32x4.add (local.get $v) (i32x4.splat (i32.const {k}))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (call $yield)
          (br_if $l (i32.eqz (global.get $stop))))
        (i32.sub (i32x4.extract_lane 3 (local.get $v))
                 (i32.mul (local.get $i) (i32.const {k}))))
      (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

#[test]
fn a_loop_frame_with_a_v128_local_transfers_with_its_vector() {
    // Frame transfer spills 16 bytes a local in a function with a v128
    // local (docs/transfer.md): the diff maps the worker, and its frame
    // moves at its header with the vector intact.
    let (old, new) = (v128_worker(7), v128_worker(1000));
    let opts = DiffOptions {
        transfer: vec!["worker".into()],
        ..Default::default()
    };
    let d = patch_format::diff(
        &wat::parse_str(&old).unwrap(),
        &wat::parse_str(&new).unwrap(),
        &opts,
    )
    .expect("diff");
    let transfers = d.bundle.transfers();
    assert!(transfers.map(1).is_some(), "{:?}", transfers.refused);
    let engine = Engine::new(Config {
        frame_transfer: true,
        ..Default::default()
    })
    .unwrap();
    let module = Module::new(&engine, &old).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let inst = host_linker(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let t = store.spawn(func(&store, inst, "worker"), &[]).unwrap();
    store.run_steps(3);
    store
        .apply(inst, &d.bundle.to_bytes(), &ApplyOptions::default())
        .expect("apply");
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "the worker moved");
    func(&store, inst, "stop").call(&mut store, &[]).unwrap();
    // The new code returns lane 3 - 1000 per turn: lane 3 holds 7 per old
    // turn and 1000 per new one, so -993 per old turn, at least one.
    let r = crate::i32_of(store.join(t));
    assert!(r < 0 && r % 993 == 0, "{r}");
}

/// A module with a mutable v128 global that `bump` adds to; version 2
/// routes it through an added SIMD function `$twice`.
fn with_global(v2: bool) -> String {
    let (body, extra) = if v2 {
        (
            "(call $twice (local.get 0))",
            "(func $twice (param v128) (result v128) (i32x4.shl (local.get 0) (i32.const 1)))",
        )
    } else {
        ("(local.get 0)", "")
    };
    format!(
        r#"(module
      (global $g (export "g") (mut v128) (v128.const i32x4 1 2 3 4))
      (func $bump (export "bump") (param v128) (result v128)
        (global.set $g (i32x4.add (global.get $g) {body}))
        (global.get $g))
      {extra})"#
    )
}

#[test]
fn a_bundle_adding_a_simd_function_keeps_the_v128_global() {
    let (v1, v2) = (with_global(false), with_global(true));
    let (mut store, inst) = setup(&v1);
    let bump = inst
        .get_typed_func::<(V128,), V128>(&store, "bump")
        .unwrap();
    let one = V128(v([1, 1, 1, 1]));
    assert_eq!(
        lanes(bump.call(&mut store, (one,)).unwrap().0),
        [2, 3, 4, 5]
    );
    let bundle = bytes_with(&v1, &v2, &DiffOptions::default());
    store
        .apply(inst, &bundle, &ApplyOptions::default())
        .expect("apply");
    assert!(!store.wait_transition().unwrap().reversed);
    // The global kept its value; the new code adds twice the argument.
    assert_eq!(
        lanes(bump.call(&mut store, (one,)).unwrap().0),
        [4, 5, 6, 7]
    );
    match inst.get_export(&store, "g") {
        Some(Extern::Global(g)) => {
            assert_eq!(
                Instance::global_value(&store, g),
                Val::V128(v([4, 5, 6, 7]))
            )
        }
        other => panic!("expected the global, got {other:?}"),
    }
}
