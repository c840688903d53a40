//! Runs every kernel of `guests/built` side by side in one process in
//! wasmtime, wasm-patch (patchable build) and wasm-patch (baseline build:
//! `Config::patchable = false`), checks each result against
//! `guests/built/EXPECTED.txt`, and prints per-kernel compile times, median
//! run times, the ratios ours/wasmtime and patchable/baseline, and their
//! geometric means. Writes `benches/results/compare-wasmtime.json`.
//!
//! Run (from this directory):
//! `cargo run --release -- [REPS] [--simd]` (default 11 runs per engine and
//! kernel, interleaved so that machine noise hits all three alike). With
//! `--simd` the kernels are the `+simd128` builds of `guests/built/simd`
//! (`guests/build.sh --simd`; same `EXPECTED.txt`), and the results go to
//! `benches/results/compare-wasmtime-simd.json`.

#[path = "../../common/mod.rs"]
mod common;

use common::{expected, geomean, median, ms};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const COMPILES: usize = 3;

/// One engine's instance of a kernel, callable as `run(i32) -> i64`.
trait Runner {
    fn call(&mut self, arg: i32) -> Result<i64, String>;
}

struct Wasmtime {
    store: wasmtime::Store<()>,
    run: wasmtime::TypedFunc<i32, i64>,
}

impl Runner for Wasmtime {
    fn call(&mut self, arg: i32) -> Result<i64, String> {
        self.run
            .call(&mut self.store, arg)
            .map_err(|e| format!("{e:?}"))
    }
}

struct Ours {
    store: wasm_patch_runtime::Store<()>,
    run: wasm_patch_runtime::TypedFunc<i32, i64>,
}

impl Runner for Ours {
    fn call(&mut self, arg: i32) -> Result<i64, String> {
        self.run
            .call(&mut self.store, arg)
            .map_err(|e| e.to_string())
    }
}

fn timed<T>(f: impl Fn() -> T) -> (T, Duration) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..COMPILES {
        let t = Instant::now();
        let v = f();
        times.push(t.elapsed());
        last = Some(v);
    }
    (last.expect("compiled"), median(&mut times))
}

fn wasmtime_runner(engine: &wasmtime::Engine, bytes: &[u8]) -> (Wasmtime, Duration) {
    let (module, ct) = timed(|| wasmtime::Module::new(engine, bytes).expect("wasmtime compile"));
    let mut store = wasmtime::Store::new(engine, ());
    let inst = wasmtime::Instance::new(&mut store, &module, &[]).expect("wasmtime instantiate");
    let run = inst
        .get_typed_func::<i32, i64>(&mut store, "run")
        .expect("wasmtime export run");
    (Wasmtime { store, run }, ct)
}

fn ours_runner(engine: &wasm_patch_runtime::Engine, bytes: &[u8]) -> (Ours, Duration) {
    let (module, ct) = timed(|| wasm_patch_runtime::Module::new(engine, bytes).expect("compile"));
    let mut store = wasm_patch_runtime::Store::new(engine, ());
    let inst = wasm_patch_runtime::Linker::new(&engine)
        .instantiate(&mut store, &module)
        .expect("instantiate");
    let run = inst
        .get_func(&store, "run")
        .expect("export run")
        .typed::<i32, i64>(&store)
        .expect("run: i32 -> i64");
    (Ours { store, run }, ct)
}

const ENGINES: [&str; 3] = ["wasmtime", "patchable", "baseline"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let simd = args.iter().any(|a| a == "--simd");
    let reps: usize = args
        .iter()
        .find_map(|s| s.parse().ok())
        .unwrap_or(11);
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = here.join("../../guests/built");
    let kernels = expected(&dir);
    let modules = if simd { dir.join("simd") } else { dir.clone() };

    // wasmtime: default configuration (Cranelift, opt_level speed, signal
    // based bounds checks), single-threaded compilation (the
    // `parallel-compilation` feature is off, as our compiler is serial).
    let wt_engine = wasmtime::Engine::new(&wasmtime::Config::new()).expect("wasmtime engine");
    let p_engine =
        wasm_patch_runtime::Engine::new(wasm_patch_runtime::Config::default()).expect("engine");
    let b_engine = wasm_patch_runtime::Engine::new(wasm_patch_runtime::Config {
        patchable: false,
        ..wasm_patch_runtime::Config::default()
    })
    .expect("engine");

    println!(
        "compare-wasmtime: {} kernels{}, run(arg) x{reps} per engine (interleaved), medians; compile = median of {COMPILES}",
        kernels.len(),
        if simd { " (+simd128 builds)" } else { "" }
    );
    println!(
        "{:<8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8}",
        "", "compile", "ms", "", "run", "ms", "", "P/wt", "B/wt", "P/B"
    );
    println!(
        "{:<8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8}",
        "kernel", "wasmtime", "P", "B", "wasmtime", "P", "B", "", "", ""
    );
    let mut rows = Vec::new();
    let (mut r_pw, mut r_bw, mut r_pb) = (Vec::new(), Vec::new(), Vec::new());
    let (mut c_pw, mut c_bw) = (Vec::new(), Vec::new());
    for (name, arg, want) in &kernels {
        let bytes = std::fs::read(modules.join(format!("{name}.wasm"))).expect("kernel file");
        let (wt, cw) = wasmtime_runner(&wt_engine, &bytes);
        let (p, cp) = ours_runner(&p_engine, &bytes);
        let (b, cb) = ours_runner(&b_engine, &bytes);
        let mut runners: [Box<dyn Runner>; 3] = [Box::new(wt), Box::new(p), Box::new(b)];
        let mut times: [Vec<Duration>; 3] = Default::default();
        for rep in 0..=reps {
            for j in 0..3 {
                // Rotate the order each repetition.
                let e = (rep + j) % 3;
                let t = Instant::now();
                let got = runners[e].call(*arg);
                let d = t.elapsed();
                match got {
                    Ok(v) if v == *want => {}
                    other => panic!(
                        "{name}: run({arg}) in {} returned {other:?}, expected {want}",
                        ENGINES[e]
                    ),
                }
                // Repetition 0 is the warm-up.
                if rep > 0 {
                    times[e].push(d);
                }
            }
        }
        let [tw, tp, tb] = times.map(|mut t| median(&mut t));
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let (pw, bw, pb) = (ratio(tp, tw), ratio(tb, tw), ratio(tp, tb));
        r_pw.push(pw);
        r_bw.push(bw);
        r_pb.push(pb);
        c_pw.push(ratio(cp, cw));
        c_bw.push(ratio(cb, cw));
        println!(
            "{:<8} | {:>8.1} {:>8.1} {:>8.1} | {:>8.1} {:>8.1} {:>8.1} | {:>8.3} {:>8.3} {:>8.3}",
            name,
            ms(cw),
            ms(cp),
            ms(cb),
            ms(tw),
            ms(tp),
            ms(tb),
            pw,
            bw,
            pb
        );
        rows.push(json!({
            "kernel": name,
            "arg": arg,
            "result": want,
            "compile_ms": {"wasmtime": ms(cw), "patchable": ms(cp), "baseline": ms(cb)},
            "run_median_ms": {"wasmtime": ms(tw), "patchable": ms(tp), "baseline": ms(tb)},
            "ratio_patchable_over_wasmtime": pw,
            "ratio_baseline_over_wasmtime": bw,
            "ratio_patchable_over_baseline": pb,
        }));
    }
    let g = |v: &[f64]| geomean(v);
    println!(
        "{:<8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8.3} {:>8.3} {:>8.3}",
        "geomean",
        "",
        "",
        "",
        "",
        "",
        "",
        g(&r_pw),
        g(&r_bw),
        g(&r_pb)
    );
    println!(
        "compile-time geomeans: patchable/wasmtime {:.3}, baseline/wasmtime {:.3}",
        g(&c_pw),
        g(&c_bw)
    );
    let out = json!({
        "bench": if simd { "compare-wasmtime-simd" } else { "compare-wasmtime" },
        "guests": if simd { "guests/built/simd (+simd128)" } else { "guests/built" },
        "wasmtime_version": "48.0.8",
        "wasmtime_config": "default Config (Cranelift, opt_level speed), no parallel compilation",
        "reps": reps,
        "compiles": COMPILES,
        "statistic": "median",
        "kernels": rows,
        "geomean": {
            "patchable_over_wasmtime": g(&r_pw),
            "baseline_over_wasmtime": g(&r_bw),
            "patchable_over_baseline": g(&r_pb),
            "compile_patchable_over_wasmtime": g(&c_pw),
            "compile_baseline_over_wasmtime": g(&c_bw),
        },
    });
    let path = here.join(if simd {
        "../results/compare-wasmtime-simd.json"
    } else {
        "../results/compare-wasmtime.json"
    });
    common::write_json(&path, &out);
}
