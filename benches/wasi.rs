//! WASI preview 1 costs (issue 13, item 7).
//!
//! - Call cost: N calls from guest code of a WASI function beside N calls of
//!   a host import of the same arity that does nothing, in one module:
//!   `clock_time_get (i32 i64 i32) -> i32` (monotonic clock, the time
//!   written to memory) against `env.nop3 (i32 i64 i32) -> i32`, and
//!   `args_sizes_get (i32 i32) -> i32` (two sizes written to memory)
//!   against `env.nop2 (i32 i32) -> i32`; and `clock_time_get` against
//!   `env.clock3`, a host function of its arity doing the same work (read
//!   the monotonic clock, store it in guest memory): ns per call, median of `REPS`
//!   runs, the cases interleaved within each repetition. The `env`
//!   functions are `func_new` (`Val` lists) host functions; `env.wclock3`
//!   and `env.wnop3` are the same as typed ones (`func_wrap`, the path the
//!   WASI functions themselves take).
//! - Lines: `wasm-patch run guests/built/wasi-lines.wasm` printing 1,000,000
//!   lines (one `fd_write` each) to a pipe that the bench drains, as a
//!   child process (compile included); median of `LINES_REPS` runs. When
//!   `python3` has the `wasmtime` package (`pip install wasmtime`), the
//!   same module runs under it (`benches/wasi_wasmtime.py`, stdout
//!   inherited, i.e. the same pipe), interleaved with ours, and the ratio
//!   ours / wasmtime is printed. Python's start-up is inside wasmtime's time
//!   (measured separately as `python_startup` and reported).
//!
//! Prints a table, writes `benches/results/wasi.json`.
//!
//! Run: `cargo bench --bench wasi` (optional env: `WASI_REPS`, default 11;
//! `LINES_REPS`, default 5; `LINES`, default 1000000).

mod common;

use common::median;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wasm_patch_runtime::{
    Caller, Config, Engine, FuncType, Instance, Linker, Module, Store, Val, ValType,
};
use wasm_patch_wasi::{add_wasi, WasiCtx};

const WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $sizes (param i32 i32) (result i32)))
  (import "env" "nop3" (func $nop3 (param i32 i64 i32) (result i32)))
  (import "env" "nop2" (func $nop2 (param i32 i32) (result i32)))
  (import "env" "clock3" (func $clock3 (param i32 i64 i32) (result i32)))
  (import "env" "wclock3" (func $wclock3 (param i32 i64 i32) (result i32)))
  (import "env" "wnop3" (func $wnop3 (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Each loop sums the errnos (0 when all went well).
  (func (export "clock") (param $n i32) (result i32) (local $acc i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call $clock (i32.const 1) (i64.const 1) (i32.const 64))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  (func (export "nop3") (param $n i32) (result i32) (local $acc i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call $nop3 (i32.const 1) (i64.const 1) (i32.const 64))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  (func (export "hclock") (param $n i32) (result i32) (local $acc i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call $clock3 (i32.const 1) (i64.const 1) (i32.const 64))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  (func (export "wclock") (param $n i32) (result i32) (local $acc i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call $wclock3 (i32.const 1) (i64.const 1) (i32.const 64))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  (func (export "wnop3") (param $n i32) (result i32) (local $acc i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call $wnop3 (i32.const 1) (i64.const 1) (i32.const 64))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  (func (export "sizes") (param $n i32) (result i32) (local $acc i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call $sizes (i32.const 64) (i32.const 72))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  (func (export "nop2") (param $n i32) (result i32) (local $acc i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call $nop2 (i32.const 64) (i32.const 72))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc))
)
"#;

fn build() -> (Store<()>, Instance) {
    let engine = Engine::new(Config::default()).expect("engine");
    let module = Module::new(&engine, WAT).expect("compile");
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let mut ctx = WasiCtx::new();
    ctx.arg("bench").expect("argument");
    add_wasi(&mut linker, ctx).unwrap();
    linker.func_new(
        "env",
        "nop3",
        FuncType::new([ValType::I32, ValType::I64, ValType::I32], [ValType::I32]),
        |_, _, r| {
            r[0] = Val::I32(0);
            Ok(())
        },
    );
    linker.func_new(
        "env",
        "nop2",
        FuncType::new([ValType::I32, ValType::I32], [ValType::I32]),
        |_, _, r| {
            r[0] = Val::I32(0);
            Ok(())
        },
    );
    // The same work as `clock_time_get` in a plain host function: read the
    // monotonic clock, write it to guest memory (bounds-checked).
    let base = Instant::now();
    linker.func_new(
        "env",
        "clock3",
        FuncType::new([ValType::I32, ValType::I64, ValType::I32], [ValType::I32]),
        move |c, a, r| {
            let at = a[2].i32().unwrap_or(0) as u32 as usize;
            let now = base.elapsed().as_nanos() as u64;
            let ok = c
                .memory(0)
                .and_then(|m| m.get_mut(at..at + 8))
                .map(|b| b.copy_from_slice(&now.to_le_bytes()))
                .is_some();
            r[0] = Val::I32(if ok { 0 } else { 21 });
            Ok(())
        },
    );
    // The same two as typed host functions (`func_wrap`, the path WASI's
    // own functions take).
    linker
        .func_wrap(
            "env",
            "wclock3",
            move |mut c: Caller<'_, ()>, _id: i32, _precision: i64, at: i32| -> i32 {
                let at = at as u32 as usize;
                let now = base.elapsed().as_nanos() as u64;
                let ok = c
                    .memory(0)
                    .and_then(|m| m.get_mut(at..at + 8))
                    .map(|b| b.copy_from_slice(&now.to_le_bytes()))
                    .is_some();
                if ok {
                    0
                } else {
                    21
                }
            },
        )
        .unwrap();
    linker
        .func_wrap("env", "wnop3", |_: i32, _: i64, _: i32| -> i32 { 0 })
        .unwrap();
    let inst = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    (store, inst)
}

/// One run of export `name` with `n` calls; every call must succeed.
fn calls(store: &mut Store<()>, inst: &Instance, name: &str, n: i32) -> Duration {
    let f = inst.get_func(store, name).expect("export");
    let t = Instant::now();
    let r = f.call(store, &[Val::I32(n)]);
    let d = t.elapsed();
    assert_eq!(r.expect(name), vec![Val::I32(0)], "{name}: an errno");
    d
}

/// Runs `cmd` with stdout drained from a pipe: (wall time, bytes read).
fn timed_run(mut cmd: Command) -> (Duration, usize) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let t = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().expect("piped");
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0;
    loop {
        let k = out.read(&mut buf).expect("read stdout");
        if k == 0 {
            break;
        }
        bytes += k;
    }
    let status = child.wait().expect("wait");
    let d = t.elapsed();
    assert!(status.success(), "{cmd:?}: {status}");
    (d, bytes)
}

/// Bytes of `line N\n` for N in 0..count.
fn expected_bytes(count: usize) -> usize {
    (0..count).map(|n| 6 + n.to_string().len()).sum()
}

fn python_has_wasmtime() -> bool {
    Command::new("python3")
        .args(["-c", "import wasmtime"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let reps: usize = common::env_or("WASI_REPS", 11);
    let lines_reps: usize = common::env_or("LINES_REPS", 5);
    let lines: usize = common::env_or("LINES", 1_000_000);
    const N: i32 = 2_000_000;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    // Call cost.
    let (mut store, inst) = build();
    let names = [
        "clock", "nop3", "hclock", "sizes", "nop2", "wclock", "wnop3",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for name in names {
        calls(&mut store, &inst, name, N / 10); // warm-up
    }
    for _ in 0..reps {
        for (i, name) in names.iter().enumerate() {
            times[i].push(calls(&mut store, &inst, name, N));
        }
    }
    let ns: Vec<f64> = times
        .iter_mut()
        .map(|t| median(t).as_secs_f64() * 1e9 / N as f64)
        .collect();
    println!("wasi: call cost, median of {reps} runs of {N} calls, ns per call");
    println!(
        "  clock_time_get {:>7.1}   host nop (i32 i64 i32)->i32 {:>7.1}   ratio {:.2}",
        ns[0],
        ns[1],
        ns[0] / ns[1]
    );
    println!(
        "  clock_time_get {:>7.1}   host clock+store, same arity {:>6.1}   ratio {:.2}",
        ns[0],
        ns[2],
        ns[0] / ns[2]
    );
    println!(
        "  args_sizes_get {:>7.1}   host nop (i32 i32)->i32     {:>7.1}   ratio {:.2}",
        ns[3],
        ns[4],
        ns[3] / ns[4]
    );
    println!(
        "  clock_time_get {:>7.1}   typed host clock+store      {:>7.1}   ratio {:.2}",
        ns[0],
        ns[5],
        ns[0] / ns[5]
    );
    println!(
        "  typed host nop (i32 i64 i32)->i32 {:>7.1}   (func_new nop {:.1})",
        ns[6], ns[1]
    );

    // Lines to a pipe.
    let wasm = root.join("guests/built/wasi-lines.wasm");
    let ours = |w: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wasm-patch"));
        c.arg("run").arg(w).arg(lines.to_string());
        c
    };
    let script = root.join("benches/wasi_wasmtime.py");
    let theirs = |w: &Path| {
        let mut c = Command::new("python3");
        c.arg(&script).arg(w).arg(lines.to_string());
        c
    };
    let wasmtime = python_has_wasmtime();
    let want = expected_bytes(lines);
    let (mut t_ours, mut t_theirs, mut t_py) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..lines_reps {
        let (d, bytes) = timed_run(ours(&wasm));
        assert_eq!(bytes, want, "wasm-patch run: bytes printed");
        t_ours.push(d);
        if wasmtime {
            let (d, bytes) = timed_run(theirs(&wasm));
            assert_eq!(bytes, want, "wasmtime: bytes printed");
            t_theirs.push(d);
            let mut c = Command::new("python3");
            c.args(["-c", "import wasmtime"]);
            t_py.push(timed_run(c).0);
        }
    }
    let ours_ms = common::ms(median(&mut t_ours));
    println!("wasi: {lines} lines to a pipe, median of {lines_reps} runs");
    println!("  wasm-patch run        {ours_ms:>9.1} ms");
    let cmp = if wasmtime {
        let theirs_ms = common::ms(median(&mut t_theirs));
        let py_ms = common::ms(median(&mut t_py));
        println!("  wasmtime (python)     {theirs_ms:>9.1} ms (python3 + import wasmtime alone: {py_ms:.1} ms)");
        println!(
            "  ratio ours/wasmtime   {:>9.2} (without python's start-up: {:.2})",
            ours_ms / theirs_ms,
            ours_ms / (theirs_ms - py_ms)
        );
        json!({
            "wasmtime_python_ms": theirs_ms,
            "python_startup_ms": py_ms,
            "ratio_ours_over_wasmtime": ours_ms / theirs_ms,
            "ratio_without_python_startup": ours_ms / (theirs_ms - py_ms),
        })
    } else {
        println!("  wasmtime: python3 without the `wasmtime` package, not compared");
        serde_json::Value::Null
    };
    let out = json!({
        "bench": "wasi",
        "statistic": "median",
        "calls": {
            "reps": reps,
            "calls_per_run": N,
            "ns_per_call": {
                "clock_time_get": ns[0],
                "host_nop_i32_i64_i32": ns[1],
                "host_clock_store_i32_i64_i32": ns[2],
                "args_sizes_get": ns[3],
                "host_nop_i32_i32": ns[4],
                "typed_host_clock_store_i32_i64_i32": ns[5],
                "typed_host_nop_i32_i64_i32": ns[6],
            },
            "ratio_clock_time_get_over_typed_host_same_work": ns[0] / ns[5],
            "ratio_clock_time_get_over_host_nop": ns[0] / ns[1],
            "ratio_clock_time_get_over_host_same_work": ns[0] / ns[2],
            "ratio_args_sizes_get_over_host_nop": ns[3] / ns[4],
        },
        "lines": {
            "reps": lines_reps,
            "lines": lines,
            "wasm_patch_run_ms": ours_ms,
            "wasmtime": cmp,
        },
    });
    common::write_json(&root.join("benches/results/wasi.json"), &out);
}
