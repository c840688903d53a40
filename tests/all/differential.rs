//! Differential testing against a reference interpreter, and the bug it
//! found first.
//!
//! - A fixed-seed run of the differential fuzzer (`fuzz/src/differential.rs`,
//!   shared with the cargo-fuzz target `differential`): random modules run
//!   in wasm-patch and in wasmi must agree. `DIFF_FUZZ_CASES=N` runs N cases
//!   instead of the default, `DIFF_FUZZ_SEED=S` starts from another seed.
//! - Functions with more results than fit in registers (issue 11, item 11),
//!   on every call path: direct, `call_indirect`, host → wasm, wasm → host,
//!   and through a patched bundle.

use patch_format::{diff, DiffOptions};
use wasm_patch_runtime::{
    ApplyOptions, Engine, FuncType, Instance, Linker, Module, Store, Val, ValType,
};

/// The result list of issue 11: nine floats, one more than the `tail`
/// convention returns in registers.
const ISSUE: &[ValType] = &[
    ValType::I64,
    ValType::F64,
    ValType::F32,
    ValType::F32,
    ValType::F64,
    ValType::F32,
    ValType::F32,
    ValType::F64,
    ValType::F32,
    ValType::F32,
    ValType::I64,
];

/// Twelve integers and twelve floats, interleaved: both register files
/// overflow.
fn wide() -> Vec<ValType> {
    (0..24)
        .map(|i| match i % 4 {
            0 => ValType::I32,
            1 => ValType::F64,
            2 => ValType::I64,
            _ => ValType::F32,
        })
        .collect()
}

fn wat_ty(t: ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        other => panic!("no test values of type {other:?}"),
    }
}

/// Result `k` of the generated functions for argument `x`, tagged by
/// `version`: `x * 1000 + version * 100 + k` in the result's type (floats
/// add one half, so that a float never looks like an integer by accident).
fn expected(types: &[ValType], x: i32, version: i32) -> Vec<Val> {
    types
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let n = x as i64 * 1000 + version as i64 * 100 + k as i64;
            match t {
                ValType::I32 => Val::I32(n as i32),
                ValType::I64 => Val::I64(n),
                ValType::F32 => Val::F32((n as f32 + 0.5).to_bits()),
                ValType::F64 => Val::F64((n as f64 + 0.5).to_bits()),
                other => panic!("no test values of type {other:?}"),
            }
        })
        .collect()
}

/// Instructions pushing [`expected`]`(types, local 0, version)`.
fn push_results(types: &[ValType], version: i32) -> String {
    let mut s = String::new();
    for (k, t) in types.iter().enumerate() {
        let n = version * 100 + k as i32;
        let base = format!("local.get 0 i32.const 1000 i32.mul i32.const {n} i32.add");
        s.push_str(&match t {
            ValType::I32 => base,
            ValType::I64 => {
                format!("local.get 0 i64.extend_i32_s i64.const 1000 i64.mul i64.const {n} i64.add")
            }
            ValType::F32 => format!("{base} f32.convert_i32_s f32.const 0.5 f32.add"),
            ValType::F64 => format!("{base} f64.convert_i32_s f64.const 0.5 f64.add"),
            other => panic!("no test values of type {other:?}"),
        });
        s.push('\n');
    }
    s
}

/// A module whose `many` returns `types`, with callers on every path.
/// `version` tags the results of `many`; the host import tags its own with
/// [`HOST_VERSION`]. `caller_extra` is appended to the `direct` caller's
/// body before its call (a no-op that makes a bundle change it).
fn module(types: &[ValType], version: i32, caller_extra: &str) -> String {
    let results: Vec<&str> = types.iter().map(|t| wat_ty(*t)).collect();
    let results = results.join(" ");
    let body = push_results(types, version);
    format!(
        r#"(module
  (type $many (func (param i32) (result {results})))
  (import "env" "many" (func $host_many (type $many)))
  (table 2 funcref)
  (elem (i32.const 0) $many $host_many)
  (func $many (export "many") (type $many)
{body})
  (func (export "direct") (type $many)
    {caller_extra}
    local.get 0 call $many)
  (func (export "indirect") (param i32 i32) (result {results})
    local.get 0 local.get 1 call_indirect (type $many))
  (func (export "via_host") (type $many)
    local.get 0 call $host_many))"#
    )
}

/// The tag of the host import's results.
const HOST_VERSION: i32 = 7;

fn instantiate(types: &[ValType], src: &str) -> (Store<()>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, src).expect("module with many results compiles");
    let mut store = Store::new(&engine, ());
    let mut linker: Linker<()> = Linker::new(&engine);
    let tys = types.to_vec();
    linker.func_new(
        "env",
        "many",
        FuncType::new([ValType::I32], types.iter().copied()),
        move |_, args, results| {
            let x = args[0].i32().expect("i32 argument");
            results.copy_from_slice(&expected(&tys, x, HOST_VERSION));
            Ok(())
        },
    );
    let inst = linker.instantiate(&mut store, &module).unwrap();
    (store, inst)
}

fn call(store: &mut Store<()>, inst: Instance, name: &str, args: &[Val]) -> Vec<Val> {
    let f = inst.get_func(store, name).unwrap();
    f.call(store, args)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every call path returns every result, in order, for `types`.
fn check_all_paths(types: &[ValType]) {
    let (mut store, inst) = instantiate(types, &module(types, 1, ""));
    for x in [0, 3, -41] {
        let want = expected(types, x, 1);
        assert_eq!(
            call(&mut store, inst, "many", &[Val::I32(x)]),
            want,
            "host → wasm"
        );
        assert_eq!(
            call(&mut store, inst, "direct", &[Val::I32(x)]),
            want,
            "direct call"
        );
        assert_eq!(
            call(&mut store, inst, "indirect", &[Val::I32(x), Val::I32(0)]),
            want,
            "call_indirect to a wasm function"
        );
        let host = expected(types, x, HOST_VERSION);
        assert_eq!(
            call(&mut store, inst, "via_host", &[Val::I32(x)]),
            host,
            "call of a host import"
        );
        assert_eq!(
            call(&mut store, inst, "indirect", &[Val::I32(x), Val::I32(1)]),
            host,
            "call_indirect to a host function"
        );
    }
}

#[test]
fn many_float_results_on_every_call_path() {
    check_all_paths(ISSUE);
}

#[test]
fn many_integer_and_float_results_on_every_call_path() {
    check_all_paths(&wide());
}

/// A bundle replaces `many` (new tag) and `direct`, and adds a function
/// with many results that the new `direct` calls: the patched code returns
/// the new values on every path.
#[test]
fn many_results_through_a_patched_bundle() {
    let types = wide();
    let results: Vec<&str> = types.iter().map(|t| wat_ty(*t)).collect();
    let results = results.join(" ");
    let old = module(&types, 1, "");
    // `direct` v2 calls an added function (its slot carries a context) and
    // drops its results, then calls `many` as before.
    let added_body = push_results(&types, 3);
    let drops = "drop ".repeat(types.len());
    let new = module(&types, 2, &format!("local.get 0 call $added {drops}")).replacen(
        "(func (export \"direct\")",
        &format!(
            "(func $added (param i32) (result {results})\n{added_body})\n  (func (export \"direct\")"
        ),
        1,
    );
    let (mut store, inst) = instantiate(&types, &old);
    let x = 5;
    assert_eq!(
        call(&mut store, inst, "direct", &[Val::I32(x)]),
        expected(&types, x, 1)
    );
    let bundle = diff(
        &wat::parse_str(&old).unwrap(),
        &wat::parse_str(&new).unwrap(),
        &DiffOptions::default(),
    )
    .expect("diff")
    .bundle
    .to_bytes();
    store
        .apply(inst, &bundle, &ApplyOptions::default())
        .expect("bundle with many-result functions applies");
    store.run().unwrap();
    assert!(store.transition_status().is_none(), "transition completed");
    let want = expected(&types, x, 2);
    assert_eq!(
        call(&mut store, inst, "many", &[Val::I32(x)]),
        want,
        "host → patched"
    );
    assert_eq!(
        call(&mut store, inst, "direct", &[Val::I32(x)]),
        want,
        "patched caller"
    );
    assert_eq!(
        call(&mut store, inst, "indirect", &[Val::I32(x), Val::I32(0)]),
        want,
        "call_indirect to the patched function"
    );
}

/// Many parameters (some passed on the stack) and many results together:
/// `rev` returns its 24 arguments in reverse order, called from the host,
/// directly, through `call_indirect`, and as a host import.
#[test]
fn many_parameters_and_many_results_together() {
    let params = wide();
    let results: Vec<ValType> = params.iter().rev().copied().collect();
    let list = |ts: &[ValType]| ts.iter().map(|t| wat_ty(*t)).collect::<Vec<_>>().join(" ");
    let (p, r) = (list(&params), list(&results));
    let n = params.len();
    let rev: String = (0..n).rev().map(|i| format!("local.get {i} ")).collect();
    let fwd: String = (0..n).map(|i| format!("local.get {i} ")).collect();
    let src = format!(
        r#"(module
  (type $rev (func (param {p}) (result {r})))
  (import "env" "rev" (func $host_rev (type $rev)))
  (table 2 funcref)
  (elem (i32.const 0) $rev $host_rev)
  (func $rev (export "rev") (type $rev) {rev})
  (func (export "direct") (type $rev) {fwd} call $rev)
  (func (export "indirect0") (type $rev) {fwd} i32.const 0 call_indirect (type $rev))
  (func (export "indirect1") (type $rev) {fwd} i32.const 1 call_indirect (type $rev))
  (func (export "via_host") (type $rev) {fwd} call $host_rev))"#
    );
    let engine = Engine::default();
    let module = Module::new(&engine, &src).expect("module compiles");
    let mut store = Store::new(&engine, ());
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.func_new(
        "env",
        "rev",
        FuncType::new(params.iter().copied(), results.iter().copied()),
        |_, args, out| {
            for (o, a) in out.iter_mut().zip(args.iter().rev()) {
                *o = *a;
            }
            Ok(())
        },
    );
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let args = expected(&params, 9, 4);
    let want: Vec<Val> = args.iter().rev().copied().collect();
    for name in ["rev", "direct", "indirect0", "indirect1", "via_host"] {
        assert_eq!(call(&mut store, inst, name, &args), want, "{name}");
    }
}

#[path = "../../fuzz/src/differential.rs"]
mod oracle;

/// Seeds whose divergence is a bug of the reference interpreter, with the
/// reason: their divergences are counted, not failed. (Not "must still
/// diverge": the wasmi bug below reads a stale value, which could be right
/// by chance.)
const KNOWN_REFERENCE_BUGS: &[(u64, &str)] = &[(
    0x5eed_0089,
    "wasmi 2.0.0 computes a wrong value after an `if (param i64) (result ...x10)` \
     taken on its `else` arm inside nested loops (reduced: fuzz/known/wasmi-if-params.wat)",
)];

/// Cases of the default run: about 4 s in a debug build on 2 cores.
const DEFAULT_CASES: u64 = 500;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// Random modules (wasm-smith, from a fixed seed) behave the same in
/// wasm-patch and in wasmi: results, traps, host calls, and the final
/// contents of exported memories, globals and tables. Each divergence is
/// written to `target/tmp/differential/` (binary and WAT) and named with
/// its seed; the run fails if there is any.
#[test]
fn random_modules_agree_with_the_reference_interpreter() {
    if let Ok(file) = std::env::var("DIFF_FUZZ_FILE") {
        // Replay one module (a written divergence, or a hand-reduced WAT).
        let wasm = wat::parse_file(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let runner = oracle::Runner::new();
        eprintln!("{}", runner.dump(&wasm));
        let verdict = runner.run(&wasm);
        assert!(
            !matches!(verdict, oracle::Verdict::Diverged(_)),
            "{file}: {verdict:?}"
        );
        return;
    }
    let cases = env_u64("DIFF_FUZZ_CASES", DEFAULT_CASES);
    let first = env_u64("DIFF_FUZZ_SEED", 0x5eed_0000);
    let verbose = std::env::var("DIFF_FUZZ_VERBOSE").is_ok();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential");
    let runner = oracle::Runner::new();
    let config = oracle::smith_config();
    let (mut agreed, mut cut, mut refused, mut ungenerated, mut steps) =
        (0u64, 0u64, 0u64, 0u64, 0usize);
    let mut divergences = Vec::new();
    let mut known = 0u64;
    for seed in first..first + cases {
        // Sizes from 1 KiB to 16 KiB: wasm-smith makes bigger modules from
        // more bytes.
        let data = oracle::case_bytes(seed, 1024 << (seed % 5));
        let Some(wasm) = oracle::generate(&config, &data) else {
            ungenerated += 1;
            continue;
        };
        if verbose {
            eprintln!("seed {seed}: {} bytes", wasm.len());
        }
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(&wasm)))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                oracle::Verdict::Diverged(format!("panicked: {msg}"))
            });
        let is_known = KNOWN_REFERENCE_BUGS.iter().any(|(s, _)| *s == seed);
        match verdict {
            oracle::Verdict::Agree { steps: n, cut: c } => {
                agreed += 1;
                cut += c as u64;
                steps += n;
            }
            oracle::Verdict::BothRefused => refused += 1,
            oracle::Verdict::Diverged(why) if is_known => {
                known += 1;
                if verbose {
                    eprintln!("seed {seed}: known reference bug: {why}");
                }
            }
            oracle::Verdict::Diverged(why) => {
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("seed-{seed}.wasm"));
                std::fs::write(&path, &wasm).unwrap();
                let text = oracle::wat(&wasm);
                std::fs::write(path.with_extension("wat"), &text).unwrap();
                eprintln!("seed {seed} diverges: {why}\n  module: {}", path.display());
                if text.len() < 4_000 {
                    eprintln!("{text}");
                }
                divergences.push(format!("seed {seed}: {why}"));
            }
        }
    }
    eprintln!(
        "differential: {cases} seeds from {first}: {agreed} agreed ({cut} cut short by a stack \
         overflow, {steps} steps compared), {refused} refused by both, {ungenerated} not \
         generated, {known} known reference bugs, {} diverged",
        divergences.len()
    );
    assert!(
        divergences.is_empty(),
        "{} of {cases} cases diverge:\n{}",
        divergences.len(),
        divergences.join("\n")
    );
}
