//! Slot and poll cost microbenchmarks (WAT), patchable vs baseline build.
//!
//! Call-heavy kernels (recursive fib, a loop calling a tiny function, a loop
//! doing `call_indirect` through a table, alternating between two targets
//! or always the same one) measure the cost of a slot call
//! (patchable: `load table; load slot; call reg` plus a poll at the callee's
//! entry) against a direct `call` (baseline). Loop kernels without calls
//! (an empty counting loop, an ALU loop, a memory-reading loop) measure the
//! cost of the poll at each loop header.
//!
//! Each kernel runs `REPS` times per build, interleaved; the median wall time
//! is divided by the number of calls / iterations. Results are checked
//! against values computed in Rust. Prints a table and writes
//! `benches/results/slot_cost.json`.
//!
//! Run: `cargo bench --bench slot_cost` (optional env: `SLOT_REPS`, default 11).

mod common;

use common::median;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasm_patch_runtime::{Config, Engine, Instance, Linker, Module, Store, Val};

const DEFAULT_REPS: usize = 11;

const WAT: &str = r#"
(module
  (type $t (func (param i64) (result i64)))
  (table 2 funcref)
  (elem (i32.const 0) $inc $add3)
  (memory 1)

  (func $fib (param i32) (result i32)
    local.get 0
    i32.const 2
    i32.lt_u
    if (result i32)
      local.get 0
    else
      local.get 0 i32.const 1 i32.sub call $fib
      local.get 0 i32.const 2 i32.sub call $fib
      i32.add
    end)
  (func (export "fib") (param i32) (result i64)
    local.get 0 call $fib i64.extend_i32_u)

  (func $inc (param i64) (result i64) local.get 0 i64.const 1 i64.add)
  (func $add3 (param i64) (result i64) local.get 0 i64.const 3 i64.add)

  ;; n calls of $inc
  (func (export "call_loop") (param $n i32) (result i64) (local $acc i64)
    block
      loop
        local.get $n i32.eqz br_if 1
        local.get $acc call $inc local.set $acc
        local.get $n i32.const 1 i32.sub local.set $n
        br 0
      end
    end
    local.get $acc)

  ;; n call_indirects, alternating between table[0] and table[1]
  (func (export "indirect_loop") (param $n i32) (result i64) (local $acc i64)
    block
      loop
        local.get $n i32.eqz br_if 1
        local.get $acc
        local.get $n i32.const 1 i32.and
        call_indirect (type $t)
        local.set $acc
        local.get $n i32.const 1 i32.sub local.set $n
        br 0
      end
    end
    local.get $acc)

  ;; n call_indirects, always through table[0] (predictable target)
  (func (export "indirect_same") (param $n i32) (result i64) (local $acc i64)
    block
      loop
        local.get $n i32.eqz br_if 1
        local.get $acc
        i32.const 0
        call_indirect (type $t)
        local.set $acc
        local.get $n i32.const 1 i32.sub local.set $n
        br 0
      end
    end
    local.get $acc)

  ;; n iterations of a bare counting loop
  (func (export "empty_loop") (param $n i32) (result i64) (local $i i32)
    block
      loop
        local.get $i local.get $n i32.ge_u br_if 1
        local.get $i i32.const 1 i32.add local.set $i
        br 0
      end
    end
    local.get $i i64.extend_i32_u)

  ;; n iterations of an LCG step (a dependent multiply-add chain)
  (func (export "alu_loop") (param $n i32) (result i64) (local $x i64) (local $acc i64)
    block
      loop
        local.get $n i32.eqz br_if 1
        local.get $x i64.const 6364136223846793005 i64.mul
        i64.const 1442695040888963407 i64.add
        local.tee $x
        i64.const 33 i64.shr_u
        local.get $acc i64.xor local.set $acc
        local.get $n i32.const 1 i32.sub local.set $n
        br 0
      end
    end
    local.get $acc)

  ;; fill the first 64 KiB with words i * 2654435761
  (func (export "init") (local $i i32)
    block
      loop
        local.get $i i32.const 16384 i32.ge_u br_if 1
        local.get $i i32.const 4 i32.mul
        local.get $i i32.const -1640531535 i32.mul
        i32.store
        local.get $i i32.const 1 i32.add local.set $i
        br 0
      end
    end)

  ;; n loads: sum of word (i mod 16384)
  (func (export "mem_loop") (param $n i32) (result i64) (local $i i32) (local $acc i64)
    block
      loop
        local.get $i local.get $n i32.ge_u br_if 1
        local.get $i i32.const 2 i32.shl i32.const 0xfffc i32.and
        i64.load32_u
        local.get $acc i64.add local.set $acc
        local.get $i i32.const 1 i32.add local.set $i
        br 0
      end
    end
    local.get $acc)
)
"#;

struct Kernel {
    name: &'static str,
    arg: i32,
    /// Calls or loop iterations per run.
    units: u64,
    unit: &'static str,
    expected: i64,
}

fn fib(n: u32) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

fn kernels() -> Vec<Kernel> {
    let fib_n = 32;
    let calls_n = 20_000_000;
    let loop_n = 100_000_000;
    let alu_n = 50_000_000;
    let mem_n = 50_000_000;
    let indirect_expected: i64 = (1..=calls_n as i64)
        .map(|k| if k & 1 == 1 { 3 } else { 1 })
        .sum();
    let mut x = 0u64;
    let mut alu = 0u64;
    for _ in 0..alu_n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        alu ^= x >> 33;
    }
    let mem: i64 = (0..mem_n as u64)
        .map(|i| ((i % 16384) as u32).wrapping_mul(2654435761) as i64)
        .sum();
    vec![
        Kernel {
            name: "fib",
            arg: fib_n,
            // fib(n) makes 2*fib(n+1)-1 calls of $fib.
            units: 2 * fib(fib_n as u32 + 1) - 1,
            unit: "call",
            expected: fib(fib_n as u32) as i64,
        },
        Kernel {
            name: "call_loop",
            arg: calls_n,
            units: calls_n as u64,
            unit: "call",
            expected: calls_n as i64,
        },
        Kernel {
            name: "indirect_loop",
            arg: calls_n,
            units: calls_n as u64,
            unit: "call",
            expected: indirect_expected,
        },
        Kernel {
            name: "indirect_same",
            arg: calls_n,
            units: calls_n as u64,
            unit: "call",
            expected: calls_n as i64,
        },
        Kernel {
            name: "empty_loop",
            arg: loop_n,
            units: loop_n as u64,
            unit: "iter",
            expected: loop_n as i64,
        },
        Kernel {
            name: "alu_loop",
            arg: alu_n,
            units: alu_n as u64,
            unit: "iter",
            expected: alu as i64,
        },
        Kernel {
            name: "mem_loop",
            arg: mem_n,
            units: mem_n as u64,
            unit: "iter",
            expected: mem,
        },
    ]
}

struct Build {
    store: Store<()>,
    inst: Instance,
}

fn build(patchable: bool) -> Build {
    let engine = Engine::new(Config {
        patchable,
        ..Config::default()
    })
    .expect("engine");
    let module = Module::new(&engine, WAT).expect("compile");
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .expect("instantiate");
    let init = inst.get_func(&store, "init").expect("init");
    init.call(&mut store, &[]).expect("init");
    Build { store, inst }
}

fn run(b: &mut Build, k: &Kernel) -> Duration {
    let f = b.inst.get_func(&b.store, k.name).expect("export");
    let t = Instant::now();
    let r = f.call(&mut b.store, &[Val::I32(k.arg)]);
    let d = t.elapsed();
    match r.as_deref() {
        Ok([Val::I64(got)]) if *got == k.expected => d,
        other => panic!(
            "{}({}) returned {other:?}, expected {}",
            k.name, k.arg, k.expected
        ),
    }
}

fn main() {
    let reps: usize = common::env_or("SLOT_REPS", DEFAULT_REPS);
    let mut p = build(true);
    let mut b = build(false);
    println!("slot_cost: median of {reps} runs per build (interleaved), ns per call / iteration");
    println!(
        "{:<14} {:>6} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "kernel", "unit", "units/run", "P ns", "B ns", "P-B ns", "P/B"
    );
    let mut rows = Vec::new();
    for k in kernels() {
        run(&mut p, &k);
        run(&mut b, &k);
        let (mut tp, mut tb) = (Vec::new(), Vec::new());
        for i in 0..reps {
            if i % 2 == 0 {
                tp.push(run(&mut p, &k));
                tb.push(run(&mut b, &k));
            } else {
                tb.push(run(&mut b, &k));
                tp.push(run(&mut p, &k));
            }
        }
        let np = median(&mut tp).as_secs_f64() * 1e9 / k.units as f64;
        let nb = median(&mut tb).as_secs_f64() * 1e9 / k.units as f64;
        println!(
            "{:<14} {:>6} {:>12} {:>10.3} {:>10.3} {:>10.3} {:>8.3}",
            k.name,
            k.unit,
            k.units,
            np,
            nb,
            np - nb,
            np / nb
        );
        rows.push(json!({
            "kernel": k.name,
            "arg": k.arg,
            "unit": k.unit,
            "units_per_run": k.units,
            "ns_per_unit": {"patchable": np, "baseline": nb},
            "delta_ns": np - nb,
            "ratio_patchable_over_baseline": np / nb,
        }));
    }
    let out = json!({
        "bench": "slot_cost",
        "reps": reps,
        "statistic": "median",
        "kernels": rows,
    });
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results/slot_cost.json");
    common::write_json(&path, &out);
}
