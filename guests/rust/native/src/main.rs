//! Runs every kernel natively: prints `NAME ARG EXPECTED` lines (the format of
//! `guests/built/EXPECTED.txt`) and, with `--time`, the best of a few timings.
//!
//! Usage: native [--time] [NAME=ARG ...]

use std::time::Instant;

type Run = fn(i32) -> i64;

/// Kernel name, its `run`, and the recommended argument.
pub const KERNELS: [(&str, Run, i32); 8] = [
    ("json", kernels::json::run, 1),
    ("deflate", kernels::deflate::run, 1),
    ("regex", kernels::regex::run, 1),
    ("hash", kernels::hash::run, 1),
    ("nbody", kernels::nbody::run, 1),
    ("sort", kernels::sort::run, 1),
    ("interp", kernels::interp::run, 1),
    ("matmul", kernels::matmul::run, 1),
];

fn main() {
    let mut time = false;
    let mut args: Vec<(String, i32)> = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "--time" {
            time = true;
        } else if let Some((k, v)) = a.split_once('=') {
            args.push((k.to_string(), v.parse().expect("ARG must be an i32")));
        } else {
            eprintln!("usage: native [--time] [NAME=ARG ...]");
            std::process::exit(2);
        }
    }
    for (name, run, default_arg) in KERNELS {
        let arg = args.iter().find(|(k, _)| k == name).map_or(default_arg, |(_, v)| *v);
        if !args.is_empty() && !args.iter().any(|(k, _)| k == name) {
            continue;
        }
        let t = Instant::now();
        let v = run(arg);
        let first = t.elapsed();
        if time {
            let mut best = first;
            for _ in 0..2 {
                let t = Instant::now();
                let again = run(arg);
                best = best.min(t.elapsed());
                assert_eq!(again, v, "{name} is not deterministic");
            }
            eprintln!("{name:8} run({arg}) best {:8.1} ms", best.as_secs_f64() * 1e3);
        }
        println!("{name} {arg} {v}");
    }
}
