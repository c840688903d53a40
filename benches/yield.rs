//! Yield and host-call round trips.
//!
//! - `yield_1thread`: one guest thread calling `wasm-patch`.`yield` N times;
//!   each yield suspends the fiber to the scheduler, which resumes the same
//!   (only ready) thread: ns per yield round trip (target < 100 ns).
//! - `yield_2threads`: two guest threads yielding N times each, so every
//!   yield switches to the other thread: ns per switch.
//! - `host_nop`: N calls of a no-op host import `() -> ()`: ns per host call
//!   round trip (JIT → trampoline → Rust closure → back).
//! - `host_i64`: N calls of a host import `(i64) -> i64` returning its
//!   argument + 1 (boxing of arguments/results included).
//! - `park_depth1`, `park_depth64`: two threads at that stack depth handing
//!   over to each other (unpark the other, park self): ns per park/unpark
//!   round; each park summarises the parker's frames (up to 16).
//! - `call_empty`: host → guest `Func::call` of a function that returns at
//!   once; every call creates a guest thread (fiber on a pooled stack) and runs
//!   the scheduler until it finishes: ns per call.
//!
//! Medians of `REPS` runs, patchable and baseline build (the thread ABI is
//! the same in both). Prints a table, writes `benches/results/yield.json`.
//!
//! Run: `cargo bench --bench yield` (optional env: `YIELD_REPS`, default 11;
//! `YIELD_CASES`, a comma-separated subset of the cases).

mod common;

use common::median;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasm_patch_runtime::{Config, Engine, FuncType, Instance, Linker, Module, Store, Val, ValType};

const DEFAULT_REPS: usize = 11;

const WAT: &str = r#"
(module
  (import "wasm-patch" "yield" (func $yield))
  (import "env" "nop" (func $nop))
  (import "env" "id" (func $id (param i64) (result i64)))
  (import "env" "handover" (func $handover))
  (func (export "yields") (param $n i32) (result i64) (local $i i32)
    block
      loop
        local.get $i local.get $n i32.ge_u br_if 1
        call $yield
        local.get $i i32.const 1 i32.add local.set $i
        br 0
      end
    end
    local.get $i i64.extend_i32_u)
  (func (export "host_nop") (param $n i32) (result i64) (local $i i32)
    block
      loop
        local.get $i local.get $n i32.ge_u br_if 1
        call $nop
        local.get $i i32.const 1 i32.add local.set $i
        br 0
      end
    end
    local.get $i i64.extend_i32_u)
  (func (export "host_i64") (param $n i32) (result i64) (local $acc i64)
    block
      loop
        local.get $n i32.eqz br_if 1
        local.get $acc call $id local.set $acc
        local.get $n i32.const 1 i32.sub local.set $n
        br 0
      end
    end
    local.get $acc)
  (func (export "empty") (param i32) (result i64) i64.const 0)
  ;; Recurse to depth $d, then hand over to the partner thread $n times.
  (func $pingpong (export "pingpong") (param $n i32) (param $d i32) (result i64)
    (if (i32.gt_u (local.get $d) (i32.const 1))
      (then (return (call $pingpong (local.get $n) (i32.sub (local.get $d) (i32.const 1))))))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (call $handover)
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (i64.const 0))
)
"#;

struct Build {
    /// Data: the two ping-pong threads' ids.
    store: Store<[u32; 2]>,
    inst: Instance,
}

fn build(patchable: bool) -> Build {
    let engine = Engine::new(Config {
        patchable,
        ..Config::default()
    })
    .expect("engine");
    let module = Module::new(&engine, WAT).expect("compile");
    let mut store = Store::new(&engine, [0u32; 2]);
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    linker.func_new("env", "nop", FuncType::new([], []), |_, _, _| Ok(()));
    linker.func_new(
        "env",
        "id",
        FuncType::new([ValType::I64], [ValType::I64]),
        |_, a, r| {
            r[0] = Val::I64(a[0].i64().unwrap_or(0) + 1);
            Ok(())
        },
    );
    // Wake the partner, then park until it hands back.
    linker.func_new("env", "handover", FuncType::new([], []), |c, _, _| {
        let me = c.thread_id().0;
        let [a, b] = *c.data();
        c.unpark(wasm_patch_runtime::ThreadId(if me == a { b } else { a }));
        c.park()
    });
    let inst = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    Build { store, inst }
}

fn call1(b: &mut Build, name: &str, n: i32, want: i64) -> Duration {
    let f = b.inst.get_func(&b.store, name).expect("export");
    let t = Instant::now();
    let r = f.call(&mut b.store, &[Val::I32(n)]);
    let d = t.elapsed();
    assert_eq!(r.expect(name), vec![Val::I64(want)], "{name}({n})");
    d
}

/// Two threads yielding `n` times each, run together.
fn two_threads(b: &mut Build, n: i32) -> Duration {
    let f = b.inst.get_func(&b.store, "yields").expect("export");
    let t = Instant::now();
    let a = b.store.spawn(f, &[Val::I32(n)]).expect("spawn");
    let c = b.store.spawn(f, &[Val::I32(n)]).expect("spawn");
    b.store.run().expect("run");
    let d = t.elapsed();
    for id in [a, c] {
        assert_eq!(
            b.store.take_result(id).expect("result"),
            vec![Val::I64(n as i64)]
        );
    }
    d
}

/// Two threads parking and unparking each other `n` times each, at
/// stack depth `d` (each park takes a frame summary of the parker's stack).
fn pingpong(b: &mut Build, n: i32, d: i32) -> Duration {
    let f = b.inst.get_func(&b.store, "pingpong").expect("export");
    let t = Instant::now();
    let x = b
        .store
        .spawn(f, &[Val::I32(n), Val::I32(d)])
        .expect("spawn");
    let y = b
        .store
        .spawn(f, &[Val::I32(n), Val::I32(d)])
        .expect("spawn");
    *b.store.data_mut() = [x.0, y.0];
    b.store.run_steps(usize::MAX);
    // The last handover parks one thread for good: release it.
    for id in [x, y] {
        b.store.unpark(id);
    }
    b.store.run().expect("run");
    let d = t.elapsed();
    for id in [x, y] {
        assert_eq!(b.store.take_result(id).expect("result"), vec![Val::I64(0)]);
    }
    d
}

/// `n` host → guest calls of `empty`.
fn call_empty(b: &mut Build, n: usize) -> Duration {
    let f = b.inst.get_func(&b.store, "empty").expect("export");
    let t = Instant::now();
    for _ in 0..n {
        let r = f.call(&mut b.store, &[Val::I32(0)]).expect("empty");
        debug_assert_eq!(r, vec![Val::I64(0)]);
    }
    t.elapsed()
}

fn main() {
    let reps: usize = common::env_or("YIELD_REPS", DEFAULT_REPS);
    const N_YIELD: i32 = 1_000_000;
    const N_HOST: i32 = 5_000_000;
    const N_CALL: usize = 100_000;
    let mut builds = [build(true), build(false)];
    type Case = (&'static str, u64, fn(&mut Build) -> Duration);
    const N_PARK: i32 = 200_000;
    let cases: [Case; 7] = [
        ("yield_1thread", N_YIELD as u64, |b| {
            call1(b, "yields", N_YIELD, N_YIELD as i64)
        }),
        ("yield_2threads", 2 * N_YIELD as u64, |b| {
            two_threads(b, N_YIELD)
        }),
        ("host_nop", N_HOST as u64, |b| {
            call1(b, "host_nop", N_HOST, N_HOST as i64)
        }),
        ("host_i64", N_HOST as u64, |b| {
            call1(b, "host_i64", N_HOST, N_HOST as i64)
        }),
        ("call_empty", N_CALL as u64, |b| call_empty(b, N_CALL)),
        ("park_depth1", 2 * N_PARK as u64, |b| pingpong(b, N_PARK, 1)),
        ("park_depth64", 2 * N_PARK as u64, |b| {
            pingpong(b, N_PARK, 64)
        }),
    ];
    println!("yield: median of {reps} runs, ns per operation");
    println!(
        "{:<16} {:>10} {:>12} {:>12}",
        "case", "ops/run", "patchable", "baseline"
    );
    let mut rows = Vec::new();
    // `YIELD_CASES=yield_2threads,host_nop` runs a subset (for profiling).
    let only = std::env::var("YIELD_CASES").ok();
    for (name, ops, f) in cases {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|c| c == name))
        {
            continue;
        }
        let mut ns = [0.0f64; 2];
        for (i, b) in builds.iter_mut().enumerate() {
            f(b); // warm-up
            let mut t: Vec<Duration> = (0..reps).map(|_| f(b)).collect();
            ns[i] = median(&mut t).as_secs_f64() * 1e9 / ops as f64;
        }
        println!("{:<16} {:>10} {:>12.1} {:>12.1}", name, ops, ns[0], ns[1]);
        rows.push(json!({
            "case": name,
            "ops_per_run": ops,
            "ns_per_op": {"patchable": ns[0], "baseline": ns[1]},
        }));
    }
    let out = json!({
        "bench": "yield",
        "reps": reps,
        "statistic": "median",
        "cases": rows,
    });
    if only.is_some() {
        // A subset (profiling) does not replace the recorded results.
        println!("YIELD_CASES set: results not written");
        return;
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results/yield.json");
    common::write_json(&path, &out);
}
