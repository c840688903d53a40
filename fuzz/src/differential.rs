//! Differential execution of random modules: wasm-patch against a reference
//! interpreter (wasmi).
//!
//! One place for the whole comparison, used by the cargo-fuzz target
//! `fuzz_targets/differential.rs` and by the fixed-seed test
//! `tests/all/differential.rs` (both include this file with `#[path]`).
//!
//! A case is a module that wasm-smith builds from arbitrary bytes, limited
//! to what wasm-patch validates (WebAssembly 2.0 without SIMD: no threads,
//! exceptions, GC, tail calls, memory64 or multi-memory) and made to
//! terminate by wasm-smith's fuel pass ([`FUEL`] units for the whole run,
//! in a global of the module, so both engines stop at the same point). It
//! may import the host functions of [`IMPORTS`]. Each engine then
//! instantiates it, calls every exported function in export order with
//! fixed arguments, and snapshots every exported memory, global and table.
//! The two traces must agree step by step: results (bit for bit; the NaNs
//! that arithmetic makes are canonicalised by wasm-smith, since their bits
//! are not deterministic), traps and their kinds, the host calls each step
//! made with their arguments, and the final contents. A stack overflow in
//! either engine ends the comparison at that step: the engines' stack
//! limits differ, and everything before it still has to agree.

use arbitrary::Unstructured;
use std::fmt::Write as _;
use wasm_patch_runtime as wp;

/// Fuel of the whole run: wasm-smith's termination pass decrements it at
/// every function entry and loop header and traps (`unreachable`) at zero.
pub const FUEL: u32 = 10_000;

/// A value type of the host imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// i32.
    I32,
    /// i64.
    I64,
    /// f32.
    F32,
    /// f64.
    F64,
    /// funcref.
    FuncRef,
    /// externref.
    ExternRef,
}

impl Ty {
    fn wat(self) -> &'static str {
        match self {
            Ty::I32 => "i32",
            Ty::I64 => "i64",
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::FuncRef => "funcref",
            Ty::ExternRef => "externref",
        }
    }
}

use Ty::*;

/// Host functions a module may import (`"host" NAME`), with their types.
/// They cover the wasm→host path for every value type, several results,
/// and more results than registers hold (issue 11).
pub const IMPORTS: &[(&str, &[Ty], &[Ty])] = &[
    ("nop", &[], &[]),
    ("i32", &[I32], &[I32]),
    ("i64", &[I64, I64], &[I64]),
    ("f32", &[F32], &[F32]),
    ("f64", &[F64, F64], &[F64]),
    ("mix", &[I32, I64, F32, F64], &[F64, F32, I64, I32]),
    (
        "many",
        &[I32],
        &[I64, F64, F32, F32, F64, F32, F32, F64, F32, F32, I64],
    ),
    (
        "ints",
        &[I64],
        &[I32, I64, I32, I64, I32, I64, I32, I64, I32, I64],
    ),
    ("refs", &[FuncRef, ExternRef], &[ExternRef, FuncRef]),
];

/// The module whose imports wasm-smith may pick from.
pub fn imports_module() -> Vec<u8> {
    let mut s = String::from("(module\n");
    for (name, params, results) in IMPORTS {
        let p: Vec<&str> = params.iter().map(|t| t.wat()).collect();
        let r: Vec<&str> = results.iter().map(|t| t.wat()).collect();
        let _ = writeln!(
            s,
            "  (import \"host\" \"{name}\" (func (param {}) (result {})))",
            p.join(" "),
            r.join(" ")
        );
    }
    s.push(')');
    wat::parse_str(&s).expect("the imports module is valid")
}

/// wasm-smith's configuration: what wasm-patch validates, small memories
/// and tables with a declared maximum (so `memory.grow` fails alike in both
/// engines), everything exported.
pub fn smith_config() -> wasm_smith::Config {
    wasm_smith::Config {
        simd_enabled: false,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        tail_call_enabled: false,
        memory64_enabled: false,
        wide_arithmetic_enabled: false,
        extended_const_enabled: false,
        custom_page_sizes_enabled: false,
        compact_imports_enabled: false,
        custom_descriptors_enabled: false,
        multi_value_enabled: true,
        bulk_memory_enabled: true,
        reference_types_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        max_memories: 1,
        max_tables: 3,
        max_memory32_bytes: 16 << 16,
        memory_max_size_required: true,
        max_table_elements: 1_000,
        table_max_size_required: true,
        export_everything: true,
        // The payload and sign of a NaN that arithmetic produces are not
        // deterministic (the spec allows any arithmetic NaN): wasm-smith then
        // canonicalises float results, so bits stored or reinterpreted compare.
        canonicalize_nans: true,
        max_funcs: 40,
        available_imports: Some(imports_module()),
        ..Default::default()
    }
}

/// A module from arbitrary bytes, or `None` when wasm-smith cannot build
/// one from them.
pub fn generate(config: &wasm_smith::Config, data: &[u8]) -> Option<Vec<u8>> {
    let mut u = Unstructured::new(data);
    let mut m = wasm_smith::Module::new(config.clone(), &mut u).ok()?;
    m.ensure_termination(FUEL).ok()?;
    Some(m.to_bytes())
}

/// `len` deterministic bytes for case `seed` (splitmix64).
pub fn case_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A value as both engines report it. Floats are bits, compared exactly
/// (wasm-smith canonicalises the NaNs of arithmetic); references only say whether they are null (their
/// identities are engine-private).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V {
    /// i32.
    I32(i32),
    /// i64.
    I64(i64),
    /// f32 bits.
    F32(u32),
    /// f64 bits.
    F64(u64),
    /// A null reference.
    Null,
    /// A non-null reference.
    Ref,
}

/// Why a step failed, in terms both engines can report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `unreachable` (also: the module's fuel ran out).
    Unreachable,
    /// Linear memory access out of bounds.
    MemoryOutOfBounds,
    /// Table index out of bounds (`call_indirect` or table instructions).
    TableOutOfBounds,
    /// `call_indirect` through a null entry.
    NullCall,
    /// Integer division by zero.
    DivisionByZero,
    /// Integer overflow.
    IntegerOverflow,
    /// Float to integer conversion of NaN or out of range.
    BadConversion,
    /// `call_indirect` signature mismatch.
    BadSignature,
    /// Stack exhausted: ends the comparison (the engines' limits differ).
    StackOverflow,
    /// Instantiation failed without a trap (segment out of bounds): only
    /// "failed" is compared, the engines word it differently.
    Instantiation,
    /// Anything else, with the engine's message.
    Other(String),
}

/// What one step produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Returned these values (instantiation: none).
    Returned(Vec<V>),
    /// Failed.
    Failed(Failure),
    /// Contents of an exported memory.
    Memory(Vec<u8>),
    /// Value of an exported global.
    Global(V),
    /// Null-ness of each element of an exported table.
    Table(Vec<bool>),
}

/// A call of a host import made during a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCall {
    /// The import's name.
    pub name: &'static str,
    /// Its arguments.
    pub args: Vec<V>,
}

/// One step of a run: instantiation, a call of an export, or a snapshot.
#[derive(Clone, Debug)]
pub struct Step {
    /// "instantiate", "call NAME", "memory NAME", "global NAME", "table NAME".
    pub what: String,
    /// Host calls made during the step, in order.
    pub host: Vec<HostCall>,
    /// Its outcome.
    pub outcome: Outcome,
}

/// Host state of a run: the call log and a counter that makes every host
/// result depend on the whole sequence of host calls before it.
#[derive(Default)]
pub struct HostLog {
    calls: Vec<HostCall>,
    counter: u64,
}

impl HostLog {
    /// Log a call of import `index` and compute its results.
    fn call(&mut self, index: usize, args: Vec<V>) -> Vec<V> {
        let (name, _, results) = IMPORTS[index];
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ (index as u64) ^ (self.counter << 8);
        for a in &args {
            let bits = match *a {
                V::I32(x) => x as u32 as u64,
                V::I64(x) => x as u64,
                V::F32(x) => x as u64,
                V::F64(x) => x,
                V::Null => 0,
                V::Ref => 1,
            };
            h = (h ^ bits).wrapping_mul(0x100_0000_01b3).rotate_left(17);
        }
        self.counter += 1;
        self.calls.push(HostCall { name, args });
        results
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let x = case_bytes(h ^ k as u64, 8);
                let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
                match t {
                    I32 => V::I32(x as i32),
                    I64 => V::I64(x as i64),
                    F32 => V::F32(x as u32),
                    F64 => V::F64(x),
                    FuncRef | ExternRef => V::Null,
                }
            })
            .collect()
    }
}

/// The exports of a module, in order, read from its bytes (the same list
/// for both engines).
fn exports(wasm: &[u8]) -> Result<Vec<(String, wasmparser::ExternalKind)>, String> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::ExportSection(r) = payload.map_err(|e| e.to_string())? {
            for e in r {
                let e = e.map_err(|e| e.to_string())?;
                out.push((e.name.to_string(), e.kind));
            }
        }
    }
    Ok(out)
}

/// The fixed argument `i` of type `t` (a few edge values, by position).
fn fixed_arg(i: usize, t: Ty) -> V {
    const I32S: [i32; 6] = [0, 1, -1, 0x1234_5678, i32::MIN, 65_535];
    const I64S: [i64; 6] = [0, 1, -1, 0x1234_5678_9abc_def0, i64::MIN, 1 << 32];
    const F32S: [f32; 6] = [0.0, 1.5, -2.25, f32::INFINITY, 1e30, -0.0];
    const F64S: [f64; 6] = [0.0, 1.5, -2.25, f64::NEG_INFINITY, 1e300, 3.0e-310];
    match t {
        I32 => V::I32(I32S[i % 6]),
        I64 => V::I64(I64S[i % 6]),
        F32 => V::F32(F32S[i % 6].to_bits()),
        F64 => V::F64(F64S[i % 6].to_bits()),
        FuncRef | ExternRef => V::Null,
    }
}

/// What a case came to.
#[derive(Debug)]
pub enum Verdict {
    /// The traces agree over `steps` steps; `cut` when a stack overflow
    /// ended the comparison early.
    Agree {
        /// Steps compared.
        steps: usize,
        /// Ended early at a stack overflow.
        cut: bool,
    },
    /// Both engines refused the module (e.g. a limit both enforce).
    BothRefused,
    /// The engines disagree: what differs, first difference first.
    Diverged(String),
}

/// The two engines, set up once and used for many cases.
pub struct Runner {
    wp: wp::Engine,
    wi: wasmi::Engine,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    /// Both engines: wasm-patch with a larger stack than the default (deep
    /// recursion ends the comparison), wasmi with WebAssembly 2.0's
    /// features (no multi-memory, tail calls or extended constants).
    pub fn new() -> Runner {
        let wp = wp::Engine::new(wp::Config {
            stack_size: 16 << 20,
            ..Default::default()
        })
        .expect("wasm-patch engine");
        let mut c = wasmi::Config::default();
        c.wasm_multi_memory(false)
            .wasm_tail_call(false)
            .wasm_extended_const(false)
            .wasm_custom_page_sizes(false)
            .wasm_wide_arithmetic(false)
            .set_max_recursion_depth(1 << 20)
            .set_max_stack_height(64 << 20);
        Runner {
            wp,
            wi: wasmi::Engine::new(&c),
        }
    }

    /// Both traces of `wasm`, one line per step (memories by length and
    /// checksum), for replaying a divergence.
    pub fn dump(&self, wasm: &[u8]) -> String {
        let exports = exports(wasm).unwrap_or_default();
        let mut out = String::new();
        for (engine, trace) in [
            ("wasm-patch", wp_run(&self.wp, wasm, &exports)),
            ("wasmi", wi_run(&self.wi, wasm, &exports)),
        ] {
            let _ = writeln!(out, "== {engine}");
            match trace {
                Err(e) => {
                    let _ = writeln!(out, "refused: {e}");
                }
                Ok(steps) => {
                    for s in steps {
                        let o = match &s.outcome {
                            Outcome::Memory(m) => format!(
                                "Memory({} bytes, sum {:#x})",
                                m.len(),
                                m.iter().fold(0u64, |h, b| h.rotate_left(5) ^ *b as u64)
                            ),
                            o => format!("{o:?}"),
                        };
                        let _ = writeln!(out, "{}: {o} ({} host calls)", s.what, s.host.len());
                    }
                }
            }
        }
        out
    }

    /// Run `wasm` in both engines and compare.
    pub fn run(&self, wasm: &[u8]) -> Verdict {
        let exports = match exports(wasm) {
            Ok(e) => e,
            Err(e) => return Verdict::Diverged(format!("unreadable module: {e}")),
        };
        let a = wp_run(&self.wp, wasm, &exports);
        let b = wi_run(&self.wi, wasm, &exports);
        match (a, b) {
            (Err(_), Err(_)) => Verdict::BothRefused,
            (Err(e), Ok(_)) => {
                Verdict::Diverged(format!("wasm-patch refuses the module, wasmi runs it: {e}"))
            }
            (Ok(_), Err(e)) => {
                Verdict::Diverged(format!("wasmi refuses the module, wasm-patch runs it: {e}"))
            }
            (Ok(a), Ok(b)) => compare(&a, &b),
        }
    }
}

/// Compare two traces step by step.
fn compare(a: &[Step], b: &[Step]) -> Verdict {
    let overflow = |s: &Step| s.outcome == Outcome::Failed(Failure::StackOverflow);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.what != y.what {
            return Verdict::Diverged(format!(
                "step {i}: wasm-patch did `{}`, wasmi `{}`",
                x.what, y.what
            ));
        }
        if overflow(x) || overflow(y) {
            return Verdict::Agree {
                steps: i,
                cut: true,
            };
        }
        if x.host != y.host {
            let k = x
                .host
                .iter()
                .zip(&y.host)
                .position(|(p, q)| p != q)
                .unwrap_or(x.host.len().min(y.host.len()));
            return Verdict::Diverged(format!(
                "step {i} `{}`: host calls differ at call {k} of {} / {}: wasm-patch {:?}, wasmi {:?}",
                x.what,
                x.host.len(),
                y.host.len(),
                x.host.get(k),
                y.host.get(k)
            ));
        }
        if x.outcome != y.outcome && !same_instantiation_failure(x, y) {
            return Verdict::Diverged(format!(
                "step {i} `{}`: wasm-patch {}, wasmi {}",
                x.what,
                describe(&x.outcome, &y.outcome),
                describe(&y.outcome, &x.outcome)
            ));
        }
    }
    if a.len() != b.len() {
        return Verdict::Diverged(format!(
            "wasm-patch took {} steps, wasmi {}",
            a.len(),
            b.len()
        ));
    }
    Verdict::Agree {
        steps: a.len(),
        cut: false,
    }
}

/// A segment out of bounds fails instantiation in wasm-patch with an
/// error and in wasmi with a trap: the same outcome.
fn same_instantiation_failure(x: &Step, y: &Step) -> bool {
    use Failure as F;
    let segment = |o: &Outcome| {
        matches!(
            o,
            Outcome::Failed(F::Instantiation | F::MemoryOutOfBounds | F::TableOutOfBounds)
        )
    };
    x.what == "instantiate" && segment(&x.outcome) && segment(&y.outcome)
}

/// `o` for a message, memory shown around its first difference from `other`.
fn describe(o: &Outcome, other: &Outcome) -> String {
    match (o, other) {
        (Outcome::Memory(m), Outcome::Memory(n)) => {
            let at = m.iter().zip(n).position(|(p, q)| p != q);
            match at {
                Some(k) => {
                    let end = (k + 16).min(m.len());
                    format!(
                        "memory of {} bytes, at {k:#x}: {:02x?}",
                        m.len(),
                        &m[k..end]
                    )
                }
                None => format!("memory of {} bytes", m.len()),
            }
        }
        _ => format!("{o:?}"),
    }
}

/// A WAT rendering of `wasm`, or why there is none.
pub fn wat(wasm: &[u8]) -> String {
    wasmprinter::print_bytes(wasm).unwrap_or_else(|e| format!(";; cannot print: {e}"))
}

fn ty_of(t: wp::ValType) -> Ty {
    match t {
        wp::ValType::I32 => I32,
        wp::ValType::I64 => I64,
        wp::ValType::F32 => F32,
        wp::ValType::F64 => F64,
        wp::ValType::Ref(r) if r.is_func_ref() => FuncRef,
        _ => ExternRef,
    }
}

// ---- wasm-patch ----

fn wp_val(v: &wp::Val) -> V {
    match *v {
        wp::Val::I32(x) => V::I32(x),
        wp::Val::I64(x) => V::I64(x),
        wp::Val::F32(x) => V::F32(x),
        wp::Val::F64(x) => V::F64(x),
        wp::Val::FuncRef(0) | wp::Val::ExternRef(None) => V::Null,
        wp::Val::FuncRef(_) | wp::Val::ExternRef(Some(_)) => V::Ref,
        // The generator declares no v128 params, results or globals.
        wp::Val::V128(_) => unreachable!("the differential generator emits no v128"),
    }
}

fn wp_arg(v: V, t: Ty) -> wp::Val {
    match (v, t) {
        (V::I32(x), _) => wp::Val::I32(x),
        (V::I64(x), _) => wp::Val::I64(x),
        (V::F32(x), _) => wp::Val::F32(x),
        (V::F64(x), _) => wp::Val::F64(x),
        (_, FuncRef) => wp::Val::FuncRef(0),
        _ => wp::Val::ExternRef(None),
    }
}

fn wp_failure(e: &wp::Error) -> Failure {
    use wp::TrapKind as K;
    match e {
        wp::Error::Trap(t) => match t.kind {
            K::StackOverflow => Failure::StackOverflow,
            K::MemoryOutOfBounds => Failure::MemoryOutOfBounds,
            K::TableOutOfBounds | K::TableAccessOutOfBounds => Failure::TableOutOfBounds,
            K::IntegerDivisionByZero => Failure::DivisionByZero,
            K::IntegerOverflow => Failure::IntegerOverflow,
            K::BadConversionToInteger => Failure::BadConversion,
            K::Unreachable => Failure::Unreachable,
            K::IndirectCallTypeMismatch => Failure::BadSignature,
            K::NullReference => Failure::NullCall,
            other => Failure::Other(format!("{other:?}")),
        },
        wp::Error::Instantiate(_) => Failure::Instantiation,
        other => Failure::Other(other.to_string()),
    }
}

fn wp_run(
    engine: &wp::Engine,
    wasm: &[u8],
    exports: &[(String, wasmparser::ExternalKind)],
) -> Result<Vec<Step>, String> {
    use wasmparser::ExternalKind as X;
    let module = wp::Module::new(engine, wasm).map_err(|e| e.to_string())?;
    let mut store = wp::Store::new(engine, HostLog::default());
    let mut linker: wp::Linker<HostLog> = wp::Linker::new(store.engine());
    for (index, (name, params, results)) in IMPORTS.iter().enumerate() {
        let ty = wp::FuncType::new(
            params.iter().map(|t| wp_type(*t)),
            results.iter().map(|t| wp_type(*t)),
        );
        linker.func_new("host", name, ty, move |c, args, out| {
            let vals = c.data_mut().call(index, args.iter().map(wp_val).collect());
            for ((o, v), t) in out.iter_mut().zip(vals).zip(results.iter()) {
                *o = wp_arg(v, *t);
            }
            Ok(())
        });
    }
    let mut steps = Vec::new();
    let take = |store: &mut wp::Store<HostLog>| std::mem::take(&mut store.data_mut().calls);
    let inst = match linker.instantiate(&mut store, &module) {
        Ok(i) => i,
        Err(e) if matches!(e, wp::Error::Link(_)) => return Err(e.to_string()),
        Err(e) => {
            let f = wp_failure(&e);
            steps.push(Step {
                what: "instantiate".into(),
                host: take(&mut store),
                outcome: Outcome::Failed(f),
            });
            return Ok(steps);
        }
    };
    steps.push(Step {
        what: "instantiate".into(),
        host: take(&mut store),
        outcome: Outcome::Returned(Vec::new()),
    });
    for (name, kind) in exports {
        if *kind != X::Func {
            continue;
        }
        let f = inst
            .get_func(&store, name)
            .ok_or_else(|| format!("no exported function {name}"))?;
        let args: Vec<wp::Val> = f
            .ty(&store)
            .params()
            .iter()
            .enumerate()
            .map(|(i, t)| wp_arg(fixed_arg(i, ty_of(*t)), ty_of(*t)))
            .collect();
        let outcome = match f.call(&mut store, &args) {
            Ok(r) => Outcome::Returned(r.iter().map(wp_val).collect()),
            Err(e) => Outcome::Failed(wp_failure(&e)),
        };
        let stop = outcome == Outcome::Failed(Failure::StackOverflow);
        steps.push(Step {
            what: format!("call {name}"),
            host: take(&mut store),
            outcome,
        });
        if stop {
            return Ok(steps);
        }
    }
    for (name, kind) in exports {
        let (what, outcome) = match kind {
            X::Memory => (
                "memory",
                Outcome::Memory(wp_memory(&mut store, inst, name)?),
            ),
            X::Global => {
                let Some(wp::Extern::Global(g)) = inst.get_export(&store, name) else {
                    return Err(format!("no exported global {name}"));
                };
                (
                    "global",
                    Outcome::Global(wp_val(&wp::Instance::global_value(&store, g))),
                )
            }
            X::Table => ("table", Outcome::Table(wp_table(&mut store, inst, name)?)),
            _ => continue,
        };
        steps.push(Step {
            what: format!("{what} {name}"),
            host: Vec::new(),
            outcome,
        });
    }
    Ok(steps)
}

fn wp_type(t: Ty) -> wp::ValType {
    match t {
        I32 => wp::ValType::I32,
        I64 => wp::ValType::I64,
        F32 => wp::ValType::F32,
        F64 => wp::ValType::F64,
        FuncRef => wp::ValType::FUNCREF,
        ExternRef => wp::ValType::EXTERNREF,
    }
}

/// The bytes of exported memory `name`: the embedding API reads memory only
/// inside a host call, so a second instance imports the memory and calls a
/// host function that copies it.
fn wp_memory(
    store: &mut wp::Store<HostLog>,
    inst: wp::Instance,
    name: &str,
) -> Result<Vec<u8>, String> {
    let mem = inst
        .get_export(store, name)
        .ok_or_else(|| format!("no exported memory {name}"))?;
    let reader = r#"(module
      (import "m" "mem" (memory 0))
      (import "h" "dump" (func $dump))
      (func (export "run") call $dump))"#;
    let module = wp::Module::new(store.engine(), reader).map_err(|e| e.to_string())?;
    let mut linker: wp::Linker<HostLog> = wp::Linker::new(store.engine());
    linker.define("m", "mem", mem);
    let copy = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = copy.clone();
    linker.func_new("h", "dump", wp::FuncType::new([], []), move |c, _, _| {
        let bytes = c.memory(0).map(|m| m.to_vec()).unwrap_or_default();
        *sink.lock().expect("unpoisoned") = bytes;
        Ok(())
    });
    let r = linker
        .instantiate(store, &module)
        .map_err(|e| format!("memory reader: {e}"))?;
    let run = r.get_func(store, "run").expect("reader exports run");
    run.call(store, &[])
        .map_err(|e| format!("memory reader: {e}"))?;
    let bytes = std::mem::take(&mut *copy.lock().expect("unpoisoned"));
    Ok(bytes)
}

/// Null-ness of each element of exported table `name`, read by a second
/// instance that imports the table.
fn wp_table(
    store: &mut wp::Store<HostLog>,
    inst: wp::Instance,
    name: &str,
) -> Result<Vec<bool>, String> {
    let table = inst
        .get_export(store, name)
        .ok_or_else(|| format!("no exported table {name}"))?;
    let elem = match inst.module(store).export_table_type(name) {
        Some(r) if r.is_func_ref() => "funcref",
        _ => "externref",
    };
    let reader = format!(
        r#"(module
      (import "m" "t" (table 0 {elem}))
      (func (export "size") (result i32) table.size 0)
      (func (export "null") (param i32) (result i32) local.get 0 table.get 0 ref.is_null))"#
    );
    let module = wp::Module::new(store.engine(), reader).map_err(|e| e.to_string())?;
    let mut linker: wp::Linker<HostLog> = wp::Linker::new(store.engine());
    linker.define("m", "t", table);
    let r = linker
        .instantiate(store, &module)
        .map_err(|e| format!("table reader: {e}"))?;
    let size = r.get_func(store, "size").expect("reader exports size");
    let null = r.get_func(store, "null").expect("reader exports null");
    let n = match size.call(store, &[]).map_err(|e| e.to_string())?[..] {
        [wp::Val::I32(n)] => n as u32,
        ref other => return Err(format!("table reader returned {other:?}")),
    };
    (0..n)
        .map(|i| match null.call(store, &[wp::Val::I32(i as i32)]) {
            Ok(v) => Ok(v.first() == Some(&wp::Val::I32(1))),
            Err(e) => Err(format!("table reader: {e}")),
        })
        .collect()
}

// ---- wasmi ----

fn wi_val(v: &wasmi::Val) -> V {
    match v {
        wasmi::Val::I32(x) => V::I32(*x),
        wasmi::Val::I64(x) => V::I64(*x),
        wasmi::Val::F32(x) => V::F32(x.to_bits()),
        wasmi::Val::F64(x) => V::F64(x.to_bits()),
        wasmi::Val::FuncRef(r) if r.is_null() => V::Null,
        wasmi::Val::ExternRef(r) if r.is_null() => V::Null,
        _ => V::Ref,
    }
}

fn wi_arg(v: V, t: Ty) -> wasmi::Val {
    match (v, t) {
        (V::I32(x), _) => wasmi::Val::I32(x),
        (V::I64(x), _) => wasmi::Val::I64(x),
        (V::F32(x), _) => wasmi::Val::F32(wasmi::F32::from_bits(x)),
        (V::F64(x), _) => wasmi::Val::F64(wasmi::F64::from_bits(x)),
        (_, FuncRef) => wasmi::Val::default_for_ty(wasmi::ValType::FuncRef),
        _ => wasmi::Val::default_for_ty(wasmi::ValType::ExternRef),
    }
}

fn wi_ty(t: Ty) -> wasmi::ValType {
    match t {
        I32 => wasmi::ValType::I32,
        I64 => wasmi::ValType::I64,
        F32 => wasmi::ValType::F32,
        F64 => wasmi::ValType::F64,
        FuncRef => wasmi::ValType::FuncRef,
        ExternRef => wasmi::ValType::ExternRef,
    }
}

fn ty_of_wi(t: wasmi::ValType) -> Ty {
    match t {
        wasmi::ValType::I32 => I32,
        wasmi::ValType::I64 => I64,
        wasmi::ValType::F32 => F32,
        wasmi::ValType::F64 => F64,
        wasmi::ValType::FuncRef => FuncRef,
        _ => ExternRef,
    }
}

fn wi_failure(e: &wasmi::Error) -> Failure {
    use wasmi::TrapCode as C;
    match e.as_trap_code() {
        Some(C::StackOverflow) => Failure::StackOverflow,
        Some(C::MemoryOutOfBounds) => Failure::MemoryOutOfBounds,
        Some(C::TableOutOfBounds) => Failure::TableOutOfBounds,
        Some(C::IndirectCallToNull) => Failure::NullCall,
        Some(C::IntegerDivisionByZero) => Failure::DivisionByZero,
        Some(C::IntegerOverflow) => Failure::IntegerOverflow,
        Some(C::BadConversionToInteger) => Failure::BadConversion,
        Some(C::UnreachableCodeReached) => Failure::Unreachable,
        Some(C::BadSignature) => Failure::BadSignature,
        _ => Failure::Other(e.to_string()),
    }
}

fn wi_run(
    engine: &wasmi::Engine,
    wasm: &[u8],
    exports: &[(String, wasmparser::ExternalKind)],
) -> Result<Vec<Step>, String> {
    use wasmparser::ExternalKind as X;
    let module = wasmi::Module::new(engine, wasm).map_err(|e| e.to_string())?;
    let mut store = wasmi::Store::new(engine, HostLog::default());
    let mut linker: wasmi::Linker<HostLog> = wasmi::Linker::new(engine);
    for (index, (name, params, results)) in IMPORTS.iter().enumerate() {
        let ty = wasmi::FuncType::new(
            params.iter().map(|t| wi_ty(*t)),
            results.iter().map(|t| wi_ty(*t)),
        );
        linker
            .func_new("host", name, ty, move |mut c, args, out| {
                let vals = c.data_mut().call(index, args.iter().map(wi_val).collect());
                for ((o, v), t) in out.iter_mut().zip(vals).zip(results.iter()) {
                    *o = wi_arg(v, *t);
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
    }
    let mut steps = Vec::new();
    let take = |store: &mut wasmi::Store<HostLog>| std::mem::take(&mut store.data_mut().calls);
    let inst = match linker.instantiate_and_start(&mut store, &module) {
        Ok(i) => i,
        Err(e) => {
            let f = match wi_failure(&e) {
                Failure::Other(_) if e.as_trap_code().is_none() => match e.kind() {
                    wasmi::errors::ErrorKind::Linker(_) => return Err(e.to_string()),
                    _ => Failure::Instantiation,
                },
                f => f,
            };
            steps.push(Step {
                what: "instantiate".into(),
                host: take(&mut store),
                outcome: Outcome::Failed(f),
            });
            return Ok(steps);
        }
    };
    steps.push(Step {
        what: "instantiate".into(),
        host: take(&mut store),
        outcome: Outcome::Returned(Vec::new()),
    });
    for (name, kind) in exports {
        if *kind != X::Func {
            continue;
        }
        let f = inst
            .get_func(&store, name)
            .ok_or_else(|| format!("no exported function {name}"))?;
        let ty = f.ty(&store);
        let args: Vec<wasmi::Val> = ty
            .params()
            .iter()
            .enumerate()
            .map(|(i, t)| wi_arg(fixed_arg(i, ty_of_wi(*t)), ty_of_wi(*t)))
            .collect();
        let mut out: Vec<wasmi::Val> = ty
            .results()
            .iter()
            .map(|t| wasmi::Val::default_for_ty(*t))
            .collect();
        let outcome = match f.call(&mut store, &args, &mut out) {
            Ok(()) => Outcome::Returned(out.iter().map(wi_val).collect()),
            Err(e) => Outcome::Failed(wi_failure(&e)),
        };
        let stop = outcome == Outcome::Failed(Failure::StackOverflow);
        steps.push(Step {
            what: format!("call {name}"),
            host: take(&mut store),
            outcome,
        });
        if stop {
            return Ok(steps);
        }
    }
    for (name, kind) in exports {
        let (what, outcome) = match kind {
            X::Memory => {
                let m = inst
                    .get_memory(&store, name)
                    .ok_or_else(|| format!("no exported memory {name}"))?;
                ("memory", Outcome::Memory(m.data(&store).to_vec()))
            }
            X::Global => {
                let g = inst
                    .get_global(&store, name)
                    .ok_or_else(|| format!("no exported global {name}"))?;
                ("global", Outcome::Global(wi_val(&g.get(&store))))
            }
            X::Table => {
                let t = inst
                    .get_table(&store, name)
                    .ok_or_else(|| format!("no exported table {name}"))?;
                let nulls = (0..t.size(&store))
                    .map(|i| t.get(&store, i).is_none_or(|r| r.is_null()))
                    .collect();
                ("table", Outcome::Table(nulls))
            }
            _ => continue,
        };
        steps.push(Step {
            what: format!("{what} {name}"),
            host: Vec::new(),
            outcome,
        });
    }
    Ok(steps)
}
