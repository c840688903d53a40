//! Run one kernel of `guests/built` a given number of times, in the
//! patchable or the baseline build, and print its result and the time per
//! run. Made for instruction counting, which is exact where wall time on a
//! shared machine is not:
//!
//! ```sh
//! cargo build --release --example kernel
//! valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file=/dev/null \
//!     target/release/examples/kernel guests/built/json.wasm patchable 1
//! ```
//!
//! The difference between the totals for 2 runs and for 1 run is the
//! instruction count of one `run(1)`, compile and start-up excluded
//! (`benches/README.md`). With `WASM_PATCH_PERF_MAP=1`, `perf report` names
//! the JIT functions.

use anyhow::{bail, Context, Result};
use std::time::Instant;
use wasm_patch_runtime::{Config, Engine, Linker, Module, Store, Val};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, build, runs] = args.as_slice() else {
        bail!("usage: kernel FILE.wasm patchable|inline|baseline RUNS");
    };
    // `inline`: the patchable build with `Config::inline`.
    let (patchable, inline) = match build.as_str() {
        "patchable" => (true, false),
        "inline" => (true, true),
        "baseline" => (false, false),
        other => bail!("build must be `patchable`, `inline` or `baseline`, not `{other}`"),
    };
    let runs: u32 = match runs.parse() {
        Ok(n) if n > 0 => n,
        _ => bail!("RUNS must be a positive integer, not `{runs}`"),
    };
    let engine = Engine::new(Config {
        patchable,
        inline,
        ..Config::default()
    })?;
    let module = Module::from_file(&engine, path)?;
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine).instantiate(&mut store, &module)?;
    let run = inst
        .get_func(&store, "run")
        .context("the kernel exports no `run`")?;
    let start = Instant::now();
    let mut result = Vec::new();
    for _ in 0..runs {
        result = run.call(&mut store, &[Val::I32(1)])?;
    }
    println!("{result:?} in {:?} per run", start.elapsed() / runs);
    Ok(())
}
