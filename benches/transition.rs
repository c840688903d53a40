//! Transition latency of hot patching.
//!
//! For N guest threads in {1, 100, 10 000, 100 000}, parked or busy, at stack
//! depth 1 or 64, apply a bundle that changes a function none of them has on
//! its stack, and measure:
//! - `apply`: the whole `Store::apply` call (parse, checks, compile, publish,
//!   and the first check of every thread);
//! - `apply0`: the same bundle applied to a store with no threads (parse,
//!   checks, compile: the part that does not depend on N);
//! - `wait`: `Store::wait_transition` after it;
//! - `transition`: `TransitionOutcome::elapsed`, from the moment the
//!   transition starts (after compile and pre-patch) to the moment its
//!   last pending thread switched (the completion's callbacks and
//!   bookkeeping, run by the scheduler afterwards, are in `wait`);
//! - `switch ≈ apply − apply0 + wait`.
//!
//! Each is the median (by `transition`) of 3 transitions (7 below 10 000
//! threads), after one warm-up transition.
//!
//! Thread kinds:
//! - `parked`: blocked in a host function that parks (never unparked);
//! - `busy`: spinning in a loop that calls a non-patched function and yields
//!   every 1024 calls (always runnable; stopped in `yield` when the host
//!   applies, since one OS thread runs the store);
//! - `preempted`: spinning in a loop without any host call, stopped by the
//!   1 ms preemption ticker at a poll (setup takes a time slice per thread,
//!   so only N <= 100 runs).
//!
//! Plus the immediate-switch latency (all-immediate bundle) at 10 000 and
//! 100 000 parked threads, and bundle compile time per function (bundles of 1, 16 and 128
//! changed functions applied to an idle store).
//!
//! Stacks are packed without guard pages (`Config::guard_pages = false`):
//! with a guard page each stack takes 2 of the process's 65 530 mappings.
//! Each case runs in a child process (this binary re-executed with `--child`)
//! so that a failure is reported, not fatal, and the store teardown does not
//! count. Prints a table and writes
//! `benches/results/transition.json`.
//!
//! Run: `cargo bench --bench transition` (optional env `TRANSITION_N`:
//! comma-separated thread counts, default `1,100,10000,100000`).

mod common;

use patch_format::{diff, DiffOptions};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasm_patch_runtime::{
    ApplyOptions, Config, Engine, FuncType, Instance, Linker, Module, Store, Val,
};

/// The benchmark guest. `$target` is what bundles change; `$work` is the
/// non-patched function the busy loops call; `extra` adds `$e0..` functions
/// for the compile-time bundles.
fn guest(v: i32, extra: usize, extra_v: i32) -> String {
    let mut extras = String::new();
    for i in 0..extra {
        extras.push_str(&format!(
            "(func $e{i} (export \"e{i}\") (param i32) (result i32)
               local.get 0 i32.const {extra_v} i32.add i32.const {i} i32.mul
               local.get 0 i32.const 3 i32.shl i32.xor)\n"
        ));
    }
    format!(
        r#"(module
      (import "env" "park" (func $park))
      (import "wasm-patch" "yield" (func $yield))
      (func $target (result i32) i32.const {v})
      (func $work (param i32) (result i32) local.get 0 i32.const 1 i32.add)
      (func $parked (export "parked") (param $d i32)
        (if (i32.gt_u (local.get $d) (i32.const 1))
          (then (call $parked (i32.sub (local.get $d) (i32.const 1))) (return)))
        (loop $l (call $park) (br $l)))
      (func $busy (export "busy") (param $d i32) (local $i i32)
        (if (i32.gt_u (local.get $d) (i32.const 1))
          (then (call $busy (i32.sub (local.get $d) (i32.const 1))) (return)))
        (loop $l
          (local.set $i (call $work (local.get $i)))
          (if (i32.eqz (i32.and (local.get $i) (i32.const 1023)))
            (then (call $yield)))
          (br $l)))
      (func $spin (export "preempted") (param $d i32) (local $i i32)
        (if (i32.gt_u (local.get $d) (i32.const 1))
          (then (call $spin (i32.sub (local.get $d) (i32.const 1))) (return)))
        (loop $l
          (local.set $i (call $work (local.get $i)))
          (br $l)))
      (func (export "call_target") (result i32) call $target)
      {extras})"#
    )
}

fn bundle(old: &str, new: &str, all_immediate: bool) -> Vec<u8> {
    let old = wat::parse_str(old).expect("old wat");
    let new = wat::parse_str(new).expect("new wat");
    let opts = DiffOptions {
        all_immediate,
        ..Default::default()
    };
    diff(&old, &new, &opts).expect("diff").bundle.to_bytes()
}

/// 256 KiB stacks packed without guard pages (`Config::guard_pages`), so
/// that 100 000 threads fit in the process's memory-mapping limit.
fn engine() -> Engine {
    Engine::new(Config {
        stack_size: 256 << 10,
        guard_pages: false,
        ..Config::default()
    })
    .expect("engine")
}

fn setup(engine: &Engine, src: &str) -> (Store<()>, Instance) {
    let module = Module::new(engine, src).expect("module");
    let mut store = Store::new(engine, ());
    let mut linker: Linker<()> = Linker::new(engine);
    linker.add_thread_abi();
    linker.func_new("env", "park", FuncType::new([], []), |c, _, _| c.park());
    let inst = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    (store, inst)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median of `apply` on an idle store (no threads), with a revert between
/// repetitions: the part of `apply` that does not depend on threads.
fn idle_apply_us(engine: &Engine, old: &str, bytes: &[u8], reps: usize) -> f64 {
    let (mut store, inst) = setup(engine, old);
    let mut v = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let p = store
            .apply(inst, bytes, &ApplyOptions::default())
            .expect("apply");
        v.push(us(t.elapsed()));
        store.wait_transition().expect("wait");
        store.revert(p, None).expect("revert");
        store.wait_transition().expect("wait");
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One latency case in this process: N threads of `kind` at `depth`.
fn run_case(n: usize, kind: &str, depth: i32, immediate: bool) -> Value {
    let engine = engine();
    let old = guest(0, 0, 0);
    let new = guest(1, 0, 0);
    let bytes = bundle(&old, &new, immediate);
    let apply0 = idle_apply_us(&engine, &old, &bytes, 5);
    let (mut store, inst) = setup(&engine, &old);
    let entry = inst.get_func(&store, kind).expect("entry");
    let t = Instant::now();
    for _ in 0..n {
        if let Err(e) = store.spawn(entry, &[Val::I32(depth)]) {
            return json!({"error": format!("spawn after {} threads: {e}", store.threads().len())});
        }
    }
    // Every thread runs once: into its park, its first yield, or its first
    // preemption at a poll.
    let ran = store.run_steps(n);
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    if ran != n {
        return json!({"error": format!("only {ran} of {n} threads ran")});
    }
    // A warm-up transition (first-touch effects), then the measured one.
    let p = store
        .apply(inst, &bytes, &ApplyOptions::default())
        .expect("apply");
    store.wait_transition().expect("wait");
    store.revert(p, None).expect("revert");
    store.wait_transition().expect("wait");

    // The measured transitions: the median (by `transition`) of a few.
    let reps = if n >= 10_000 { 3 } else { 7 };
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let p = store
            .apply(inst, &bytes, &ApplyOptions::default())
            .expect("apply");
        let t1 = Instant::now();
        let out = store.wait_transition().expect("wait");
        let t2 = Instant::now();
        assert_eq!(out.patch, p);
        assert!(!out.reversed);
        let switched = store
            .events()
            .iter()
            .filter(|e| matches!(e, wasm_patch_runtime::Event::ThreadSwitched(q, _) if *q == p))
            .count();
        samples.push((us(t1 - t0), us(t2 - t1), us(out.elapsed), switched));
        store.revert(p, None).expect("revert");
        store.wait_transition().expect("wait");
    }
    samples.sort_by(|a, b| a.2.total_cmp(&b.2));
    let (apply, wait, transition, switched) = samples[samples.len() / 2];
    json!({
        "threads": n,
        "kind": kind,
        "depth": depth,
        "immediate": immediate,
        "setup_ms": setup_ms,
        "apply_us": apply,
        "apply0_us": apply0,
        "wait_us": wait,
        "transition_us": transition,
        "samples": reps,
        "switch_us": (apply - apply0).max(0.0) + wait,
        "switched": switched,
    })
}

/// Compile time per function: bundles of `k` changed functions applied to an
/// idle store.
fn run_compile() -> Value {
    let engine = engine();
    let mut rows = Vec::new();
    for k in [1usize, 16, 128] {
        let old = guest(0, k, 0);
        let new = guest(0, k, 1);
        let t = Instant::now();
        let bytes = bundle(&old, &new, false);
        let diff_us = us(t.elapsed());
        let apply = idle_apply_us(&engine, &old, &bytes, 5);
        rows.push(json!({
            "functions": k,
            "bundle_bytes": bytes.len(),
            "diff_us": diff_us,
            "apply_us": apply,
            "apply_per_function_us": apply / k as f64,
        }));
    }
    Value::Array(rows)
}

fn child(args: &[String]) {
    let v = match args[0].as_str() {
        "compile" => run_compile(),
        _ => {
            let n: usize = args[1].parse().expect("n");
            let depth: i32 = args[2].parse().expect("depth");
            let immediate = args.get(3).is_some_and(|s| s == "immediate");
            run_case(n, &args[0], depth, immediate)
        }
    };
    println!("RESULT {v}");
    // Skip tearing down thousands of fibers: the measurement is done.
    std::process::exit(0);
}

fn spawn_child(args: &[String], limit: Duration) -> Value {
    let exe = std::env::current_exe().expect("exe");
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--child").args(args);
    cmd.stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    let mut c = cmd.spawn().expect("spawn child");
    let t = Instant::now();
    loop {
        match c.try_wait().expect("wait child") {
            Some(_) => break,
            None if t.elapsed() > limit => {
                let _ = c.kill();
                let _ = c.wait();
                return json!({"error": format!("timed out after {limit:?}")});
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let out = c.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) {
        return serde_json::from_str(line).expect("child json");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    json!({"error": format!("child exited with {}: {}", out.status, last.trim())})
}

fn fmt_us(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_f64) {
        Some(x) if x >= 10_000.0 => format!("{:.1} ms", x / 1000.0),
        Some(x) => format!("{x:.1} µs"),
        None => "-".into(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1..]);
    }
    // `cargo bench` passes `--bench`; ignore other flags.
    let ns: Vec<usize> = std::env::var("TRANSITION_N")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100, 10_000, 100_000]);
    let started = Instant::now();
    let mut cases: Vec<(Vec<String>, Duration)> = Vec::new();
    for &n in &ns {
        for kind in ["parked", "busy", "preempted"] {
            if kind == "preempted" && n > 100 {
                continue;
            }
            for depth in [1, 64] {
                let limit = Duration::from_secs(if n >= 100_000 { 60 } else { 30 });
                cases.push((vec![kind.into(), n.to_string(), depth.to_string()], limit));
            }
        }
    }
    for &n in ns.iter().filter(|&&n| n >= 10_000) {
        cases.push((
            vec![n.to_string(), "1".into(), "immediate".into()],
            Duration::from_secs(60),
        ));
        let c = cases.last_mut().expect("pushed");
        c.0.insert(0, "parked".into());
    }
    let mut results = Vec::new();
    println!(
        "{:>7} {:>9} {:>5} {:>4} | {:>10} {:>10} {:>10} {:>12} {:>10} | {:>9}",
        "threads",
        "kind",
        "depth",
        "imm",
        "apply",
        "apply0",
        "wait",
        "transition",
        "switch",
        "setup"
    );
    for (args, limit) in &cases {
        let mut r = spawn_child(args, *limit);
        if let Value::Object(m) = &mut r {
            m.entry("threads")
                .or_insert_with(|| json!(args[1].parse::<u64>().unwrap_or(0)));
            m.entry("kind").or_insert_with(|| json!(args[0]));
            m.entry("depth")
                .or_insert_with(|| json!(args[2].parse::<u64>().unwrap_or(0)));
            m.entry("immediate")
                .or_insert_with(|| json!(args.get(3).is_some()));
        }
        match r.get("error") {
            Some(e) => println!(
                "{:>7} {:>9} {:>5} {:>4} | FAILED: {}",
                args[1],
                args[0],
                args[2],
                if args.get(3).is_some() { "yes" } else { "no" },
                e.as_str().unwrap_or("")
            ),
            None => println!(
                "{:>7} {:>9} {:>5} {:>4} | {:>10} {:>10} {:>10} {:>12} {:>10} | {:>6.0} ms",
                args[1],
                args[0],
                args[2],
                if args.get(3).is_some() { "yes" } else { "no" },
                fmt_us(&r, "apply_us"),
                fmt_us(&r, "apply0_us"),
                fmt_us(&r, "wait_us"),
                fmt_us(&r, "transition_us"),
                fmt_us(&r, "switch_us"),
                r["setup_ms"].as_f64().unwrap_or(0.0)
            ),
        }
        results.push(r);
    }
    let compile = spawn_child(&["compile".into()], Duration::from_secs(60));
    println!("\nbundle compile (apply on an idle store, median of 5):");
    println!(
        "{:>9} {:>8} {:>10} {:>10} {:>14}",
        "functions", "bytes", "diff", "apply", "per function"
    );
    if let Value::Array(rows) = &compile {
        for r in rows {
            println!(
                "{:>9} {:>8} {:>10} {:>10} {:>14}",
                r["functions"],
                r["bundle_bytes"],
                fmt_us(r, "diff_us"),
                fmt_us(r, "apply_us"),
                fmt_us(r, "apply_per_function_us")
            );
        }
    } else {
        println!("FAILED: {compile}");
    }
    let find = |n: u64, kind: &str, imm: bool| {
        results.iter().find(|r| {
            r["threads"] == json!(n)
                && r["kind"] == json!(kind)
                && r["depth"] == json!(1)
                && r["immediate"] == json!(imm)
        })
    };
    let target = |r: Option<&Value>, key: &str, limit_us: f64| {
        r.and_then(|r| r.get(key))
            .and_then(Value::as_f64)
            .map(|x| json!({"measured_us": x, "target_us": limit_us, "met": x <= limit_us}))
    };
    let targets = json!({
        "parked_10000_transition_under_1ms": target(find(10_000, "parked", false), "transition_us", 1000.0),
        "busy_10000_transition_under_10ms": target(find(10_000, "busy", false), "transition_us", 10_000.0),
        "immediate_10000_transition_under_10us": target(find(10_000, "parked", true), "transition_us", 10.0),
    });
    println!(
        "\ntargets: {}",
        serde_json::to_string_pretty(&targets).unwrap()
    );
    let machine = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string())),
        "max_map_count": std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().map(|s| s.trim().to_string()),
    });
    let out = json!({
        "benchmark": "transition",
        "machine": machine,
        "cases": results,
        "compile": compile,
        "targets": targets,
        "total_s": started.elapsed().as_secs_f64(),
    });
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results/transition.json");
    common::write_json(&path, &out);
    println!("in {:.1} s", started.elapsed().as_secs_f64());
}
