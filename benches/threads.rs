//! Many guest threads on one OS thread.
//!
//! For N in {10 000, 100 000}: spawn N guest threads from the host
//! (`Store::spawn`), each running a guest loop that calls `wasm-patch`.`yield`
//! K times, then run the scheduler until all finish (`Store::run`). Reports
//! spawn time (total and per thread), run time, per switch (a run makes
//! N * (K + 1) fiber resumes), the number of memory mappings with all threads
//! alive, and the peak RSS (`VmHWM`). A second round in the same store shows
//! the cost with warm stack / thread-state pools.
//!
//! Every N runs twice: with guarded stacks (the default `Config`, one
//! mapping plus a guard page per stack) and with `Config::guard_pages =
//! false` (stacks packed into shared mappings).
//!
//! Each run is a child process (this binary re-executed with `--child`) so
//! that its `VmHWM` is its own and a failure (e.g. running out of mappings:
//! `vm.max_map_count`, each fiber stack takes 2) is reported, not fatal.
//! Prints a table and writes `benches/results/threads.json`.
//!
//! Run: `cargo bench --bench threads` (optional env: `THREADS_K`, default 10;
//! `THREADS_N`, comma-separated list, default `10000,100000`).

mod common;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasm_patch_runtime::{Config, Engine, Linker, Module, Store, Val};

const WAT: &str = r#"
(module
  (import "wasm-patch" "yield" (func $yield))
  (func (export "worker") (param $k i32) (result i64) (local $i i32)
    block
      loop
        local.get $i local.get $k i32.ge_u br_if 1
        call $yield
        local.get $i i32.const 1 i32.add local.set $i
        br 0
      end
    end
    local.get $i i64.extend_i32_u)
)
"#;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Lines of /proc/self/maps; `None` when it cannot be read (at the mapping
/// limit even the read buffer's allocation can fail).
fn map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .map(|s| s.lines().count())
}

fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// One round: spawn `n` threads yielding `k` times, run them, check results.
fn round(store: &mut Store<()>, worker: wasm_patch_runtime::Func, n: usize, k: i32) -> Value {
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut spawn_error = None;
    for _ in 0..n {
        match store.spawn(worker, &[Val::I32(k)]) {
            Ok(id) => ids.push(id),
            Err(e) => {
                spawn_error = Some(e.to_string());
                break;
            }
        }
    }
    let spawn = t0.elapsed();
    let maps_alive = map_count();
    let spawned = ids.len();
    let t1 = Instant::now();
    store.run().expect("scheduler");
    let run = t1.elapsed();
    for id in ids {
        let r = store.take_result(id).expect("thread result");
        assert_eq!(r, vec![Val::I64(k as i64)]);
    }
    let switches = spawned as u64 * (k as u64 + 1);
    let ns = |d: Duration, per: u64| d.as_secs_f64() * 1e9 / per.max(1) as f64;
    json!({
        "requested": n,
        "spawned": spawned,
        "spawn_error": spawn_error,
        "spawn_ms": spawn.as_secs_f64() * 1e3,
        "ns_per_spawn": ns(spawn, spawned as u64),
        "run_ms": run.as_secs_f64() * 1e3,
        "switches": switches,
        "ns_per_switch": ns(run, switches),
        "total_ms": (spawn + run).as_secs_f64() * 1e3,
        "maps_with_all_alive": maps_alive,
    })
}

fn child(n: usize, k: i32, guard_pages: bool) {
    let engine = Engine::new(Config {
        guard_pages,
        ..Config::default()
    })
    .expect("engine");
    let module = Module::new(&engine, WAT).expect("compile");
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    let inst = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    let worker = inst.get_func(&store, "worker").expect("worker");
    let rss_before_kib = status_kib("VmRSS:");
    let first = round(&mut store, worker, n, k);
    let hwm_kib = status_kib("VmHWM:");
    let second = round(&mut store, worker, n, k);
    let out = json!({
        "n": n,
        "k": k,
        "guard_pages": guard_pages,
        "stack_size": engine.config().stack_size,
        "rss_before_kib": rss_before_kib,
        "peak_rss_kib": hwm_kib,
        "peak_rss_per_thread_bytes":
            (hwm_kib.saturating_sub(rss_before_kib) * 1024) as f64 / n as f64,
        "cold": first,
        "warm": second,
        "final_rss_kib": status_kib("VmRSS:"),
    });
    println!("{out}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let n = args[i + 1].parse().expect("n");
        let k = args[i + 2].parse().expect("k");
        let guard = args[i + 3] == "guarded";
        child(n, k, guard);
        return;
    }
    let k: i32 = common::env_or("THREADS_K", 10);
    let ns: Vec<usize> = std::env::var("THREADS_N")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("THREADS_N"))
        .collect();
    let exe = std::env::current_exe().expect("exe");
    println!(
        "threads: one OS thread, N guest threads x K={k} yields; vm.max_map_count = {:?}",
        max_map_count()
    );
    println!(
        "{:>7} {:>9} {:>5} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "N",
        "stacks",
        "round",
        "spawned",
        "spawn ms",
        "ns/spawn",
        "run ms",
        "ns/switch",
        "total ms",
        "maps",
        "peak RSS MiB"
    );
    let mut results = Vec::new();
    let runs = ns.iter().flat_map(|&n| [(n, "guarded"), (n, "unguarded")]);
    for (n, mode) in runs {
        let out = std::process::Command::new(&exe)
            .args(["--child", &n.to_string(), &k.to_string(), mode])
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<Value> = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok());
        match (out.status.success(), parsed) {
            (true, Some(v)) => {
                for round in ["cold", "warm"] {
                    let r = &v[round];
                    println!(
                        "{:>7} {:>9} {:>5} {:>8} {:>9.1} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>10.1}",
                        n,
                        mode,
                        round,
                        r["spawned"],
                        r["spawn_ms"].as_f64().unwrap_or(0.0),
                        r["ns_per_spawn"].as_f64().unwrap_or(0.0),
                        r["run_ms"].as_f64().unwrap_or(0.0),
                        r["ns_per_switch"].as_f64().unwrap_or(0.0),
                        r["total_ms"].as_f64().unwrap_or(0.0),
                        r["maps_with_all_alive"]
                            .as_u64()
                            .map_or("n/a".to_string(), |m| m.to_string()),
                        v["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                    );
                    if let Some(e) = r["spawn_error"].as_str() {
                        println!("        spawn failed after {} threads: {e}", r["spawned"]);
                    }
                }
                results.push(v);
            }
            (_, _) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = err.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                println!(
                    "{n:>7} {mode:>9} FAILED ({}): {}",
                    out.status,
                    tail.join(" | ")
                );
                results.push(json!({
                    "n": n,
                    "k": k,
                    "guard_pages": mode == "guarded",
                    "failed": out.status.to_string(),
                    "stderr_tail": tail,
                }));
            }
        }
    }
    let out = json!({
        "bench": "threads",
        "k": k,
        "max_map_count": max_map_count(),
        "runs": results,
    });
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results/threads.json");
    common::write_json(&path, &out);
}
