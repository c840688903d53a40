//! Transition latency of hot patching: the fixed cases of the project's own
//! synthetic guest, measured by the same engine as `wasm-patch bench
//! transition` (`wasm_patch_cli::bench::run_case`, the one measuring code
//! path; this file only builds the guests and bundles and picks cases).
//!
//! For N guest threads in {1, 100, 10 000, 100 000}, parked or busy, at
//! stack depth 1 or 64, a bundle changes a function none of them has on its
//! stack (the best case; `guests/bench/transition.wat` with the CLI
//! measures threads that hold the changed function). Per case, the p50
//! over its runs of:
//! - `apply`: the `Store::apply` call;
//! - `compile`: from the call until the transition starts (parse, checks,
//!   compile);
//! - `transition`: from the start until every thread switched (and its
//!   p99);
//! - `switch p99`: the 99th percentile of every thread's own switch delay.
//!
//! Thread kinds:
//! - `parked`: blocked in `env.park` (never unparked);
//! - `busy`: spinning in a loop that calls a non-patched function and yields
//!   every 1024 calls (always runnable; stopped in `yield` when the host
//!   applies, since one OS thread runs the store);
//! - `preempted`: spinning in a loop without any host call, stopped by the
//!   1 ms preemption ticker at a poll (N <= 100 only: setup takes a time
//!   slice per thread).
//!
//! Plus all-immediate bundles at 10 000 and 100 000 parked threads, and
//! bundle compile time for bundles of 1, 16 and 128 changed functions on a
//! store without threads.
//!
//! Each case runs in a child process (this binary re-executed with
//! `--child`), so that a failure is reported, not fatal, and the store
//! teardown does not count. Prints a table; writes JSON only where the
//! environment variable `TRANSITION_JSON` says.
//!
//! Run: `cargo bench --bench transition` (optional env `TRANSITION_N`:
//! comma-separated thread counts, default `1,100,10000,100000`).

use patch_format::{diff, DiffOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wasm_patch_cli::bench::{report, run_case, stats::fmt_us, Settings};

/// The benchmark guest. `$target` is what bundles change; `$work` is the
/// non-patched function the busy loops call; `extra` adds `$e0..` functions
/// for the compile-time bundles. Entries `<kind>_<depth>` take the thread
/// index, as the harness calls them.
fn guest(v: i32, extra: usize, extra_v: i32) -> String {
    let mut extras = String::new();
    for i in 0..extra {
        extras.push_str(&format!(
            "(func $e{i} (export \"e{i}\") (param i32) (result i32)
               local.get 0 i32.const {extra_v} i32.add i32.const {i} i32.mul
               local.get 0 i32.const 3 i32.shl i32.xor)\n"
        ));
    }
    let mut entries = String::new();
    for kind in ["parked", "busy", "preempted"] {
        for depth in [1, 64] {
            entries.push_str(&format!(
                "(func (export \"{kind}_{depth}\") (param i32) (call ${kind} (i32.const {depth})))\n"
            ));
        }
    }
    format!(
        r#"(module
      (import "env" "park" (func $park))
      (import "wasm-patch" "yield" (func $yield))
      (func $target (result i32) i32.const {v})
      (func $work (param i32) (result i32) local.get 0 i32.const 1 i32.add)
      (func $parked (param $d i32)
        (if (i32.gt_u (local.get $d) (i32.const 1))
          (then (call $parked (i32.sub (local.get $d) (i32.const 1))) (return)))
        (loop $l (call $park) (br $l)))
      (func $busy (param $d i32) (local $i i32)
        (if (i32.gt_u (local.get $d) (i32.const 1))
          (then (call $busy (i32.sub (local.get $d) (i32.const 1))) (return)))
        (loop $l
          (local.set $i (call $work (local.get $i)))
          (if (i32.eqz (i32.and (local.get $i) (i32.const 1023)))
            (then (call $yield)))
          (br $l)))
      (func $preempted (param $d i32) (local $i i32)
        (if (i32.gt_u (local.get $d) (i32.const 1))
          (then (call $preempted (i32.sub (local.get $d) (i32.const 1))) (return)))
        (loop $l
          (local.set $i (call $work (local.get $i)))
          (br $l)))
      (func (export "call_target") (result i32) call $target)
      {entries}
      {extras})"#
    )
}

fn bundle(old: &str, new: &str, all_immediate: bool) -> (Vec<u8>, Vec<u8>) {
    let old = wat::parse_str(old).expect("old wat");
    let new = wat::parse_str(new).expect("new wat");
    let opts = DiffOptions {
        all_immediate,
        ..Default::default()
    };
    let b = diff(&old, &new, &opts).expect("diff").bundle.to_bytes();
    (old, b)
}

fn settings(entry: &str, runs: usize) -> Settings {
    Settings {
        entry: entry.into(),
        runs,
        warmup: Duration::from_millis(2),
        ..Settings::default()
    }
}

/// One latency case in this process: N threads of `kind` at `depth`.
fn run_latency(n: usize, kind: &str, depth: i32, immediate: bool) -> Value {
    let (module, bytes) = bundle(&guest(0, 0, 0), &guest(1, 0, 0), immediate);
    let runs = if n >= 10_000 { 3 } else { 7 };
    let entry = format!("{kind}_{depth}");
    match run_case(&module, &bytes, n, &settings(&entry, runs), &mut |_| {}) {
        Ok(case) => {
            let mut v = report::case_json(&case);
            // The per-thread delays stay in the child: 100 000 per run.
            v.as_object_mut().expect("object").remove("samples");
            v
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// Compile time: bundles of `k` changed functions applied to a store
/// without threads.
fn run_compile() -> Value {
    let mut rows = Vec::new();
    for k in [1usize, 16, 128] {
        let t = Instant::now();
        let (module, bytes) = bundle(&guest(0, k, 0), &guest(0, k, 1), false);
        let diff_us = t.elapsed().as_secs_f64() * 1e6;
        let row = match run_case(&module, &bytes, 0, &settings("parked_1", 5), &mut |_| {}) {
            Ok(case) => {
                let c = case.summary(false, |p| p.compile_us).p50;
                json!({
                    "functions": k,
                    "bundle_bytes": bytes.len(),
                    "diff_us": diff_us,
                    "compile_us": c,
                    "compile_per_function_us": c / k as f64,
                })
            }
            Err(e) => json!({"functions": k, "error": e.to_string()}),
        };
        rows.push(row);
    }
    Value::Array(rows)
}

fn child(args: &[String]) {
    let v = match args[0].as_str() {
        "compile" => run_compile(),
        kind => {
            let n: usize = args[1].parse().expect("n");
            let depth: i32 = args[2].parse().expect("depth");
            let immediate = args.get(3).is_some_and(|s| s == "immediate");
            run_latency(n, kind, depth, immediate)
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

fn apply_q(v: &Value, metric: &str, q: &str) -> String {
    v["apply"][metric][q]
        .as_f64()
        .map_or_else(|| "-".into(), fmt_us)
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
    let mut cases: Vec<Vec<String>> = Vec::new();
    for &n in &ns {
        for kind in ["parked", "busy", "preempted"] {
            if kind == "preempted" && n > 100 {
                continue;
            }
            for depth in [1, 64] {
                cases.push(vec![kind.into(), n.to_string(), depth.to_string()]);
            }
        }
    }
    for &n in ns.iter().filter(|&&n| n >= 10_000) {
        cases.push(vec![
            "parked".into(),
            n.to_string(),
            "1".into(),
            "immediate".into(),
        ]);
    }
    println!(
        "{:>7} {:>9} {:>5} {:>4} | {:>10} {:>10} {:>12} {:>12} {:>11} {:>7} | {:>9}",
        "threads",
        "kind",
        "depth",
        "imm",
        "apply",
        "compile",
        "transition",
        "trans. p99",
        "switch p99",
        "blocked",
        "setup"
    );
    let mut results = Vec::new();
    for args in &cases {
        let n: usize = args[1].parse().unwrap_or(0);
        let limit = Duration::from_secs(if n >= 100_000 { 120 } else { 60 });
        let mut r = spawn_child(args, limit);
        let imm = args.get(3).is_some();
        if let Value::Object(m) = &mut r {
            m.insert("threads".into(), json!(n));
            m.insert("kind".into(), json!(args[0]));
            m.insert("depth".into(), json!(args[2].parse::<u64>().unwrap_or(0)));
            m.insert("immediate".into(), json!(imm));
        }
        let lead = format!(
            "{:>7} {:>9} {:>5} {:>4}",
            args[1],
            args[0],
            args[2],
            if imm { "yes" } else { "no" }
        );
        match r.get("error") {
            Some(e) => println!("{lead} | FAILED: {}", e.as_str().unwrap_or("")),
            None => println!(
                "{lead} | {:>10} {:>10} {:>12} {:>12} {:>11} {:>7} | {:>6.0} ms",
                apply_q(&r, "call", "p50_us"),
                apply_q(&r, "compile", "p50_us"),
                apply_q(&r, "transition", "p50_us"),
                apply_q(&r, "transition", "p99_us"),
                apply_q(&r, "switch_delay", "p99_us"),
                r["apply"]["blocked_at_start"]["max"]
                    .as_f64()
                    .unwrap_or(0.0),
                r["setup_ms"].as_f64().unwrap_or(0.0)
            ),
        }
        results.push(r);
    }
    let compile = spawn_child(&["compile".into()], Duration::from_secs(60));
    println!("\nbundle compile (call → transition start on a store without threads, p50 of 5):");
    println!(
        "{:>9} {:>8} {:>10} {:>10} {:>14}",
        "functions", "bytes", "diff", "compile", "per function"
    );
    match &compile {
        Value::Array(rows) => {
            for r in rows {
                let f = |k: &str| r[k].as_f64().map_or_else(|| "-".into(), fmt_us);
                println!(
                    "{:>9} {:>8} {:>10} {:>10} {:>14}",
                    r["functions"].as_u64().unwrap_or(0),
                    r["bundle_bytes"].as_u64().unwrap_or(0),
                    f("diff_us"),
                    f("compile_us"),
                    f("compile_per_function_us")
                );
            }
        }
        other => println!("FAILED: {other}"),
    }
    let out = json!({
        "benchmark": "transition",
        "machine": report::machine(),
        "commit": report::commit(),
        "date": report::utc_now(),
        "cases": results,
        "compile": compile,
        "total_s": started.elapsed().as_secs_f64(),
    });
    if let Ok(path) = std::env::var("TRANSITION_JSON") {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&out).expect("json") + "\n",
        )
        .expect("write TRANSITION_JSON");
        println!("wrote {path}");
    }
    println!("in {:.1} s", started.elapsed().as_secs_f64());
}
