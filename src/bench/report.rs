//! What a benchmark run prints and writes: the table (min, p50, p99, max
//! per thread count, one unit for the whole table) and the JSON document
//! with the raw samples and what was measured where.

use super::engine::{Case, Phase};
use super::stats::{round, Summary};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What the JSON records about the run besides its cases.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// SHA-256 of the module's binary bytes (hex).
    pub module_sha256: String,
    /// The bundle id (hex).
    pub bundle_id: String,
    /// The entry each thread ran.
    pub entry: String,
    /// Warm-up before each apply and revert, ms.
    pub warmup_ms: f64,
    /// The rollback timeout, s (`None`: none).
    pub timeout_s: Option<f64>,
    /// Fiber stack size, bytes.
    pub stack_size: usize,
}

/// The metrics of a phase the table and the JSON show, with their JSON
/// names.
const METRICS: [(&str, &str); 6] = [
    ("call", "apply call"),
    ("prepare", "prepare"),
    ("compile", "compile"),
    ("transition", "transition"),
    ("wait", "wait"),
    ("switch_delay", "switch delay"),
];

fn metric(case: &Case, revert: bool, name: &str) -> Summary {
    match name {
        "call" => case.summary(revert, |p| p.call_us),
        "prepare" => case.summary(revert, |p| p.prepare_us),
        "compile" => case.summary(revert, |p| p.compile_us),
        "transition" => case.summary(revert, |p| p.transition_us),
        "wait" => case.summary(revert, |p| p.wait_us),
        _ => case.switch_summary(revert),
    }
}

fn phase_json(p: &Phase) -> Value {
    json!({
        "call_us": round(p.call_us),
        "prepare_us": round(p.prepare_us),
        "compile_us": round(p.compile_us),
        "transition_us": round(p.transition_us),
        "wait_us": round(p.wait_us),
        "blocked_at_start": p.blocked_at_start,
        "threads": p.threads,
        "reversed": p.reversed,
        "switch_us": p.switch_us.iter().map(|&x| round(x)).collect::<Vec<_>>(),
    })
}

fn phase_summary_json(case: &Case, revert: bool) -> Value {
    let mut v = json!({
        "count": case.phases(revert).count(),
        "reversed": case.phases(revert).filter(|p| p.reversed).count(),
        "blocked_at_start": Summary::of(case.phases(revert).map(|p| p.blocked_at_start as f64)).to_json(""),
    });
    for (key, _) in METRICS {
        v[key] = metric(case, revert, key).to_json("_us");
    }
    v
}

/// One case as JSON: the headline `p50_us`, `p99_us`, `max_us` (and
/// `min_us`) are the apply transition (start → every thread switched);
/// `apply` and `revert` summarise every metric; `samples` holds each run's
/// raw figures, every thread's switch delay included.
pub fn case_json(case: &Case) -> Value {
    let t = case.summary(false, |p| p.transition_us);
    json!({
        "threads": case.threads,
        "runs": case.runs.len(),
        "setup_ms": round(case.setup_ms),
        "min_us": round(t.min),
        "p50_us": round(t.p50),
        "p99_us": round(t.p99),
        "max_us": round(t.max),
        "apply": phase_summary_json(case, false),
        "revert": phase_summary_json(case, true),
        "samples": case.runs.iter().map(|r| json!({
            "apply": phase_json(&r.apply),
            "revert": r.revert.as_ref().map(phase_json),
        })).collect::<Vec<_>>(),
    })
}

/// The whole JSON document.
pub fn document(cases: &[Case], meta: &Meta) -> Value {
    json!({
        "benchmark": "transition",
        "cases": cases.iter().map(case_json).collect::<Vec<_>>(),
        "machine": machine(),
        "version": env!("CARGO_PKG_VERSION"),
        "module_sha256": meta.module_sha256,
        "bundle_id": meta.bundle_id,
        "entry": meta.entry,
        "warmup_ms": meta.warmup_ms,
        "timeout_s": meta.timeout_s,
        "stack_size": meta.stack_size,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "commit": commit(),
        "date": utc_now(),
    })
}

/// The CPU model and core count, and the memory-mapping limit that bounds
/// thread counts.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown", str::trim)
        .to_string();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "max_map_count": std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok().and_then(|s| s.trim().parse::<u64>().ok()),
    })
}

/// The commit: `WASM_PATCH_COMMIT` if set, else `git rev-parse HEAD` in the
/// source tree this binary was built from, else `unknown`.
pub fn commit() -> String {
    if let Ok(c) = std::env::var("WASM_PATCH_COMMIT") {
        return c;
    }
    std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Now, in RFC 3339 UTC (the audit log's format, with milliseconds).
pub fn utc_now() -> String {
    crate::audit::rfc3339(std::time::SystemTime::now())
}

/// The unit of a table whose largest time is `max_us`: µs up to 10 ms,
/// ms beyond; (name, divisor from µs).
fn unit(max_us: f64) -> (&'static str, f64) {
    if max_us < 10_000.0 {
        ("µs", 1.0)
    } else {
        ("ms", 1000.0)
    }
}

/// The table: for the applies then the reverts, per thread count, min,
/// p50, p99 and max of each metric, every time in one unit.
pub fn table(cases: &[Case]) -> String {
    let max = cases
        .iter()
        .flat_map(|c| {
            [false, true].into_iter().flat_map(move |rev| {
                METRICS
                    .iter()
                    .map(move |(k, _)| metric(c, rev, k).max)
                    .collect::<Vec<_>>()
            })
        })
        .fold(0.0, f64::max);
    let (name, div) = unit(max);
    let mut s = String::new();
    for (revert, title) in [(false, "apply"), (true, "revert")] {
        let runs: usize = cases.iter().map(|c| c.phases(revert).count()).sum();
        if runs == 0 {
            continue;
        }
        let _ = writeln!(
            s,
            "{title} (times in {name}; per thread count, over its runs)"
        );
        let _ = writeln!(
            s,
            "{:>8} {:>4} {:<16} {:>10} {:>10} {:>10} {:>10}",
            "threads", "runs", "metric", "min", "p50", "p99", "max"
        );
        for c in cases {
            let n = c.phases(revert).count();
            let mut first = true;
            let mut row = |label: &str, m: Summary, div: f64, prec: usize| {
                let lead = if first {
                    format!("{:>8} {:>4}", c.threads, n)
                } else {
                    format!("{:>8} {:>4}", "", "")
                };
                first = false;
                let _ = writeln!(
                    s,
                    "{lead} {label:<16} {:>10.prec$} {:>10.prec$} {:>10.prec$} {:>10.prec$}",
                    m.min / div,
                    m.p50 / div,
                    m.p99 / div,
                    m.max / div
                );
            };
            let prec = if div > 1.0 { 2 } else { 1 };
            for (k, label) in METRICS {
                let label = if revert && k == "call" {
                    "revert call"
                } else {
                    label
                };
                row(label, metric(c, revert, k), div, prec);
            }
            let blocked = Summary::of(c.phases(revert).map(|p| p.blocked_at_start as f64));
            row("blocked (thr.)", blocked, 1.0, 0);
            let reversed = c.phases(revert).filter(|p| p.reversed).count();
            if reversed > 0 {
                let _ = writeln!(
                    s,
                    "{:>8} {:>4} ({reversed} of {n} reversed by --timeout)",
                    "", ""
                );
            }
        }
        s.push('\n');
    }
    s.push_str(
        "apply call: the Store::apply (revert) call; prepare: call → transition start (parse, \
         checks, compile, data, callbacks);\ncompile: the bundle's code generation, as the \
         runtime measured it (0 for a revert);\ntransition: start → every thread switched; wait: \
         wait_transition after the call; switch delay: each thread's\nswitch after the start \
         (all threads, all runs); blocked: threads whose stacks held a changed function at the \
         start.\n",
    );
    s
}
