//! Run one kernel of `guests/built` a given number of times in wasmtime or
//! in wasm-patch (patchable or baseline build), for instruction counting
//! with callgrind, and optionally dump what wasmtime compiled. The
//! wasm-patch side is `examples/kernel.rs` again, here so that one binary
//! (whose build recompiles only the runtime) counts all three engines:
//!
//! ```sh
//! cargo build --release --bin wt_kernel
//! valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file=/dev/null \
//!     target/release/wt_kernel ../../guests/built/json.wasm wasmtime 1
//! target/release/wt_kernel ../../guests/built/json.wasm wasmtime 1 --clif /tmp/clif --obj /tmp/json.cwasm
//! objdump -d /tmp/json.cwasm
//! ```
//!
//! `--clif DIR` writes wasmtime's optimised CLIF of every function
//! (`Config::emit_clif`), `--obj FILE` the serialized module (an ELF
//! object that `objdump -d` disassembles), `--map FILE` a perf map of
//! the loaded functions (as `WASM_PATCH_PERF_MAP` gives for wasm-patch),
//! to attribute callgrind's `--dump-instr=yes` counts. For wasm-patch,
//! `WASM_PATCH_DUMP_DIR` does the same (`compile/mod.rs`).

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: wt_kernel FILE.wasm wasmtime|patchable|baseline RUNS [--clif DIR] [--obj FILE] [--map FILE]";
    let path = args.first().expect(usage);
    let engine = args.get(1).expect(usage).as_str();
    let runs: u32 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .expect(usage);
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| PathBuf::from(args.get(i + 1).expect(usage)))
    };
    let bytes = std::fs::read(path).expect("read the kernel");
    let mut call: Box<dyn FnMut() -> i64> = match engine {
        "wasmtime" => {
            let mut config = wasmtime::Config::new();
            if let Some(dir) = opt("--clif") {
                std::fs::create_dir_all(&dir).expect("create the CLIF directory");
                config.emit_clif(&dir);
            }
            let engine = wasmtime::Engine::new(&config).expect("wasmtime engine");
            let module = wasmtime::Module::new(&engine, &bytes).expect("wasmtime compile");
            if let Some(out) = opt("--obj") {
                let obj = module.serialize().expect("serialize");
                std::fs::write(&out, obj).expect("write the object");
            }
            if let Some(out) = opt("--map") {
                // perf-map lines (`addr len name`) of the functions as
                // loaded, for per-function callgrind counts.
                let text = module.text().as_ptr() as usize;
                let map: String = module
                    .functions()
                    .map(|f| {
                        let index = f.index.as_u32();
                        format!("{:x} {:x} wasmtime::f{index}\n", text + f.offset, f.len)
                    })
                    .collect();
                std::fs::write(&out, map).expect("write the map");
            }
            let mut store = wasmtime::Store::new(&engine, ());
            let inst = wasmtime::Instance::new(&mut store, &module, &[]).expect("instantiate");
            let run = inst
                .get_typed_func::<i32, i64>(&mut store, "run")
                .expect("export run: i32 -> i64");
            Box::new(move || run.call(&mut store, 1).expect("run"))
        }
        "patchable" | "baseline" => {
            use wasm_patch_runtime as wp;
            let engine = wp::Engine::new(wp::Config {
                patchable: engine == "patchable",
                ..wp::Config::default()
            })
            .expect("engine");
            let module = wp::Module::new(&engine, &bytes).expect("compile");
            let mut store = wp::Store::new(&engine, ());
            let inst = wp::Linker::new(&engine)
                .instantiate(&mut store, &module)
                .expect("instantiate");
            let run = inst
                .get_func(&store, "run")
                .expect("export run")
                .typed::<i32, i64>(&store)
                .expect("run: i32 -> i64");
            Box::new(move || run.call(&mut store, 1).expect("run"))
        }
        _ => panic!("{usage}"),
    };
    let start = Instant::now();
    let mut result = 0;
    for _ in 0..runs {
        result = call();
    }
    println!("{result} in {:?} per run", start.elapsed() / runs);
}
