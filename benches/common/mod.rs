//! Helpers shared by the benchmarks (each bench binary includes this module
//! and uses a subset of it; `benches/compare-wasmtime` includes it by path).

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

/// The median of `v` (sorts it).
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Geometric mean.
pub fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// (kernel, argument, expected result) from `dir/EXPECTED.txt`.
pub fn expected(dir: &Path) -> Vec<(String, i32, i64)> {
    let text = std::fs::read_to_string(dir.join("EXPECTED.txt")).expect("EXPECTED.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "bad EXPECTED.txt line: {l}");
            (
                f[0].to_string(),
                f[1].parse().expect("arg"),
                f[2].parse().expect("expected"),
            )
        })
        .collect()
}

/// Write `value` as pretty JSON to `path` (creating its directory) and say
/// so.
pub fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("results dir");
    std::fs::write(
        path,
        serde_json::to_string_pretty(value).expect("json") + "\n",
    )
    .expect("write json");
    println!("wrote {}", path.display());
}
