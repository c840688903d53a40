//! Execution benchmark: every rustc-compiled kernel of `guests/built`, in the
//! patchable build (slot calls + polls) and the baseline build
//! (`Config::patchable = false`: direct calls, no polls).
//!
//! For each kernel: compile time (median of `COMPILES` compiles) and the
//! median wall time of `run(1)` over `REPS` calls per build, the two builds
//! interleaved call by call so that machine noise hits both alike. Every
//! result is checked against `guests/built/EXPECTED.txt` (panic on mismatch).
//! `P/B` is the ratio of the medians; `pairs P/B` the median of the ratios
//! of back-to-back runs, the steadier of the two on a shared machine.
//! Prints a table and writes `benches/results/exec.json`.
//!
//! Run: `cargo bench --bench exec` (optional env: `EXEC_REPS`, default 15).

mod common;

use common::{expected, geomean, median, ms};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasm_patch_runtime::{Config, Engine, Func, Linker, Module, Store, Val};

const COMPILES: usize = 3;
const DEFAULT_REPS: usize = 15;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Build {
    store: Store<()>,
    run: Func,
    compile: Duration,
    times: Vec<Duration>,
}

fn build(patchable: bool, bytes: &[u8]) -> Build {
    let engine = Engine::new(Config {
        patchable,
        ..Config::default()
    })
    .expect("engine");
    let mut compiles = Vec::new();
    let mut module = None;
    for _ in 0..COMPILES {
        let t = Instant::now();
        let m = Module::new(&engine, bytes).expect("compile");
        compiles.push(t.elapsed());
        module = Some(m);
    }
    let module = module.expect("compiled");
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .expect("instantiate");
    let run = inst.get_func(&store, "run").expect("export run");
    Build {
        store,
        run,
        compile: median(&mut compiles),
        times: Vec::new(),
    }
}

fn call(b: &mut Build, name: &str, arg: i32, want: i64) -> Duration {
    let t = Instant::now();
    let r = b.run.call(&mut b.store, &[Val::I32(arg)]);
    let d = t.elapsed();
    match r.as_deref() {
        Ok([Val::I64(got)]) if *got == want => d,
        other => panic!("{name}: run({arg}) returned {other:?}, expected {want}"),
    }
}

fn main() {
    let reps: usize = common::env_or("EXEC_REPS", DEFAULT_REPS);
    let dir = root().join("guests/built");
    let kernels = expected(&dir);
    println!(
        "exec: {} kernels, run(arg) x{reps} per build (interleaved), median; compile = median of {COMPILES}",
        kernels.len()
    );
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>8} {:>10}",
        "kernel",
        "compile-P ms",
        "compile-B ms",
        "run-P ms",
        "run-B ms",
        "min-P ms",
        "min-B ms",
        "P/B",
        "pairs P/B"
    );
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let mut pair_ratios = Vec::new();
    let mut compile_ratios = Vec::new();
    for (name, arg, want) in &kernels {
        let bytes = std::fs::read(dir.join(format!("{name}.wasm"))).expect("kernel file");
        let mut p = build(true, &bytes);
        let mut b = build(false, &bytes);
        // Warm-up (page faults in linear memory, caches), checked too.
        call(&mut p, name, *arg, *want);
        call(&mut b, name, *arg, *want);
        for i in 0..reps {
            // Alternate which build goes first to cancel ordering effects.
            if i % 2 == 0 {
                let d = call(&mut p, name, *arg, *want);
                p.times.push(d);
                let d = call(&mut b, name, *arg, *want);
                b.times.push(d);
            } else {
                let d = call(&mut b, name, *arg, *want);
                b.times.push(d);
                let d = call(&mut p, name, *arg, *want);
                p.times.push(d);
            }
        }
        // Each rep ran the two builds back to back: the median of those
        // per-pair ratios resists noise that lasts longer than one pair
        // (other jobs on a shared machine) better than a ratio of medians.
        let mut pairs: Vec<f64> = p
            .times
            .iter()
            .zip(&b.times)
            .map(|(p, b)| p.as_secs_f64() / b.as_secs_f64())
            .collect();
        pairs.sort_by(f64::total_cmp);
        let pair = pairs[pairs.len() / 2];
        pair_ratios.push(pair);
        let (pmin, bmin) = (
            *p.times.iter().min().expect("reps"),
            *b.times.iter().min().expect("reps"),
        );
        let pm = median(&mut p.times);
        let bm = median(&mut b.times);
        let ratio = pm.as_secs_f64() / bm.as_secs_f64();
        ratios.push(ratio);
        compile_ratios.push(p.compile.as_secs_f64() / b.compile.as_secs_f64());
        println!(
            "{:<8} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>10.2} {:>10.2} {:>8.3} {:>10.3}",
            name,
            ms(p.compile),
            ms(b.compile),
            ms(pm),
            ms(bm),
            ms(pmin),
            ms(bmin),
            ratio,
            pair
        );
        rows.push(json!({
            "kernel": name,
            "arg": arg,
            "result": want,
            "compile_ms": {"patchable": ms(p.compile), "baseline": ms(b.compile)},
            "run_median_ms": {"patchable": ms(pm), "baseline": ms(bm)},
            "run_min_ms": {"patchable": ms(pmin), "baseline": ms(bmin)},
            "ratio_patchable_over_baseline": ratio,
            "paired_ratio_patchable_over_baseline": pair,
        }));
    }
    let gm = geomean(&ratios);
    let gmp = geomean(&pair_ratios);
    let gmc = geomean(&compile_ratios);
    println!("geomean run-time ratio patchable/baseline: {gm:.3} (of medians), {gmp:.3} (of paired medians)");
    println!("geomean compile-time ratio patchable/baseline: {gmc:.3}");
    let out = json!({
        "bench": "exec",
        "reps": reps,
        "compiles": COMPILES,
        "statistic": "median",
        "kernels": rows,
        "geomean_ratio_patchable_over_baseline": gm,
        "geomean_paired_ratio_patchable_over_baseline": gmp,
        "geomean_compile_ratio_patchable_over_baseline": gmc,
    });
    let path = root().join("benches/results/exec.json");
    common::write_json(&path, &out);
}
