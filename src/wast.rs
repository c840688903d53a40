//! The spec-script (`.wast`) driver shared by `wasm-patch wast` and
//! `tests/wast.rs`.
//!
//! Every assertion directive of a script counts once: it passes or fails,
//! and one that cannot be run (its module failed, an unsupported directive)
//! counts as failed, so that the totals always match an independent count.

use std::collections::HashMap;
use wasm_patch_runtime::{
    Engine, Error, Extern, FuncType, Instance, Linker, Module, RefType, Store, TrapKind, Val,
    ValType,
};
use wast::core::{NanPattern, V128Pattern, WastArgCore, WastRetCore};
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastRet};

/// One failed assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Script file name (no directory).
    pub script: String,
    /// 1-based line of the directive.
    pub line: usize,
    /// What went wrong.
    pub reason: String,
}

/// Result of one script.
#[derive(Debug, Default)]
pub struct ScriptReport {
    /// Assertions that passed.
    pub passed: usize,
    /// Assertions that failed (with reasons).
    pub failures: Vec<Failure>,
}

struct Runner<'e> {
    engine: &'e Engine,
    store: Store<()>,
    linker: Linker<()>,
    named: HashMap<String, Instance>,
    current: Option<Instance>,
    script: String,
}

fn spectest(store: &mut Store<()>, linker: &mut Linker<()>, engine: &Engine) -> Result<(), Error> {
    use ValType::*;
    for (name, params) in [
        ("print", vec![]),
        ("print_i32", vec![I32]),
        ("print_i64", vec![I64]),
        ("print_f32", vec![F32]),
        ("print_f64", vec![F64]),
        ("print_i32_f32", vec![I32, F32]),
        ("print_f64_f64", vec![F64, F64]),
    ] {
        linker.func_new(
            "spectest",
            name,
            FuncType::new(params, []),
            |_, _, _| Ok(()),
        );
    }
    // Memories, tables and globals come from a tiny module, so that they are
    // ordinary store objects.
    let m = Module::new(
        engine,
        r#"(module
            (memory (export "memory") 1 2)
            (table (export "table") 10 20 funcref)
            (table (export "table64") 10 20 funcref)
            (global (export "global_i32") i32 (i32.const 666))
            (global (export "global_i64") i64 (i64.const 666))
            (global (export "global_f32") f32 (f32.const 666.6))
            (global (export "global_f64") f64 (f64.const 666.6)))"#,
    )?;
    let inst = Linker::new(engine).instantiate(store, &m)?;
    linker.instance(store, "spectest", inst);
    Ok(())
}

fn line_of(text: &str, span: wast::token::Span) -> usize {
    span.linecol_in(text).0 + 1
}

impl Runner<'_> {
    fn module(&mut self, mut wat: QuoteWat<'_>) -> Result<Instance, String> {
        let id = match &wat {
            QuoteWat::Wat(wast::Wat::Module(m)) => m.id.map(|i| i.name().to_string()),
            _ => None,
        };
        let bytes = wat.encode().map_err(|e| format!("encode: {e}"))?;
        let module = Module::new(self.engine, bytes).map_err(|e| e.to_string())?;
        let inst = self
            .linker
            .instantiate(&mut self.store, &module)
            .map_err(|e| e.to_string())?;
        if let Some(id) = id {
            self.named.insert(id, inst);
        }
        self.current = Some(inst);
        Ok(inst)
    }

    fn instance(&self, id: Option<wast::token::Id<'_>>) -> Result<Instance, String> {
        match id {
            Some(id) => self
                .named
                .get(id.name())
                .copied()
                .ok_or_else(|| format!("unknown module ${}", id.name())),
            None => self.current.ok_or_else(|| "no module".to_string()),
        }
    }

    fn arg(&self, a: &WastArg<'_>) -> Result<Val, String> {
        let WastArg::Core(a) = a else {
            return Err("component argument".into());
        };
        Ok(match a {
            WastArgCore::I32(v) => Val::I32(*v),
            WastArgCore::I64(v) => Val::I64(*v),
            WastArgCore::F32(v) => Val::F32(v.bits),
            WastArgCore::F64(v) => Val::F64(v.bits),
            WastArgCore::RefNull(wast::core::HeapType::Abstract {
                ty: wast::core::AbstractHeapType::Func,
                ..
            }) => Val::FuncRef(0),
            WastArgCore::RefNull(_) => Val::ExternRef(None),
            WastArgCore::RefExtern(n) => Val::ExternRef(Some(*n as u64)),
            WastArgCore::V128(c) => Val::V128(u128::from_le_bytes(c.to_le_bytes())),
            other => return Err(format!("unsupported argument {other:?}")),
        })
    }

    fn execute(&mut self, exec: WastExecute<'_>) -> Result<Result<Vec<Val>, Error>, String> {
        match exec {
            WastExecute::Invoke(inv) => {
                let inst = self.instance(inv.module)?;
                let func = inst
                    .get_func(&self.store, inv.name)
                    .ok_or_else(|| format!("no export {}", inv.name))?;
                let args = inv
                    .args
                    .iter()
                    .map(|a| self.arg(a))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(func.call(&mut self.store, &args))
            }
            WastExecute::Get { module, global, .. } => {
                let inst = self.instance(module)?;
                match inst.get_export(&self.store, global) {
                    Some(Extern::Global(g)) => Ok(Ok(vec![Instance::global_value(&self.store, g)])),
                    _ => Err(format!("no global {global}")),
                }
            }
            WastExecute::Wat(mut wat) => {
                let bytes = wat.encode().map_err(|e| format!("encode: {e}"))?;
                let module = match Module::new(self.engine, bytes) {
                    Ok(m) => m,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(self
                    .linker
                    .instantiate(&mut self.store, &module)
                    .map(|_| vec![]))
            }
        }
    }
}

fn f32_matches(p: &NanPattern<wast::token::F32>, v: &Val) -> bool {
    let Val::F32(bits) = *v else { return false };
    match p {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => bits & 0x7fc0_0000 == 0x7fc0_0000,
        NanPattern::Value(x) => x.bits == bits,
    }
}

fn f64_matches(p: &NanPattern<wast::token::F64>, v: &Val) -> bool {
    let Val::F64(bits) = *v else { return false };
    match p {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => bits & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        NanPattern::Value(x) => x.bits == bits,
    }
}

/// Whether a v128 result matches a lane pattern (float lanes may be NaN
/// patterns).
fn v128_matches(p: &V128Pattern, v: &Val) -> bool {
    let Val::V128(bits) = *v else { return false };
    let lanes = |n: u32| -> Vec<u128> {
        let w = 128 / n;
        let mask = (1u128 << w) - 1;
        (0..n).map(|i| (bits >> (i * w)) & mask).collect()
    };
    match p {
        V128Pattern::I8x16(x) => x.iter().zip(lanes(16)).all(|(a, b)| *a as u8 as u128 == b),
        V128Pattern::I16x8(x) => x.iter().zip(lanes(8)).all(|(a, b)| *a as u16 as u128 == b),
        V128Pattern::I32x4(x) => x.iter().zip(lanes(4)).all(|(a, b)| *a as u32 as u128 == b),
        V128Pattern::I64x2(x) => x.iter().zip(lanes(2)).all(|(a, b)| *a as u64 as u128 == b),
        V128Pattern::F32x4(x) => x
            .iter()
            .zip(lanes(4))
            .all(|(a, b)| f32_matches(a, &Val::F32(b as u32))),
        V128Pattern::F64x2(x) => x
            .iter()
            .zip(lanes(2))
            .all(|(a, b)| f64_matches(a, &Val::F64(b as u64))),
    }
}

fn ret_matches(r: &WastRetCore<'_>, v: &Val) -> bool {
    match r {
        WastRetCore::I32(x) => *v == Val::I32(*x),
        WastRetCore::I64(x) => *v == Val::I64(*x),
        WastRetCore::F32(p) => f32_matches(p, v),
        WastRetCore::F64(p) => f64_matches(p, v),
        WastRetCore::RefNull(_) => matches!(v, Val::FuncRef(0) | Val::ExternRef(None)),
        WastRetCore::RefExtern(None) => matches!(v, Val::ExternRef(Some(_))),
        WastRetCore::RefExtern(Some(n)) => *v == Val::ExternRef(Some(*n as u64)),
        WastRetCore::RefFunc(_) => matches!(v, Val::FuncRef(p) if *p != 0),
        WastRetCore::Either(alts) => alts.iter().any(|a| ret_matches(a, v)),
        WastRetCore::V128(p) => v128_matches(p, v),
        _ => false,
    }
}

/// Run one script's text. `name` labels failures.
pub fn run_script(engine: &Engine, name: &str, text: &str) -> ScriptReport {
    let mut report = ScriptReport::default();
    let mut lexer = Lexer::new(text);
    lexer.allow_confusing_unicode(true);
    let buf = match ParseBuffer::new_with_lexer(lexer) {
        Ok(b) => b,
        Err(e) => {
            report.failures.push(Failure {
                script: name.into(),
                line: 0,
                reason: format!("lex: {e}"),
            });
            return report;
        }
    };
    let wast: Wast<'_> = match parser::parse(&buf) {
        Ok(w) => w,
        Err(e) => {
            report.failures.push(Failure {
                script: name.into(),
                line: 0,
                reason: format!("parse: {e}"),
            });
            return report;
        }
    };
    let mut store = Store::new(engine, ());
    let mut linker = Linker::new(engine);
    if let Err(e) = spectest(&mut store, &mut linker, engine) {
        report.failures.push(Failure {
            script: name.into(),
            line: 0,
            reason: format!("spectest: {e}"),
        });
        return report;
    }
    let mut r = Runner {
        engine,
        store,
        linker,
        named: HashMap::new(),
        current: None,
        script: name.into(),
    };
    for d in wast.directives {
        let line = line_of(text, d.span());
        let outcome: Option<Result<(), String>> = run_directive(&mut r, d);
        match outcome {
            None => {}
            Some(Ok(())) => report.passed += 1,
            Some(Err(reason)) => report.failures.push(Failure {
                script: r.script.clone(),
                line,
                reason,
            }),
        }
    }
    report
}

/// Run one directive: `None` for non-assertions (modules, registers,
/// invokes), else the assertion's outcome.
fn run_directive(r: &mut Runner<'_>, d: WastDirective<'_>) -> Option<Result<(), String>> {
    match d {
        WastDirective::Module(m) => {
            if let Err(e) = r.module(m) {
                // The module is not an assertion, but what follows depends on
                // it: forget the current instance so they fail visibly.
                r.current = None;
                eprintln!("{}: module failed: {e}", r.script);
            }
            None
        }
        WastDirective::ModuleDefinition(_) | WastDirective::ModuleInstance { .. } => None,
        WastDirective::Register { name, module, .. } => {
            if let Ok(inst) = r.instance(module) {
                r.linker.instance(&r.store, name, inst);
            }
            None
        }
        WastDirective::Invoke(inv) => {
            if let Err(e) = r.execute(WastExecute::Invoke(inv)) {
                eprintln!("{}: invoke failed: {e}", r.script);
            }
            None
        }
        WastDirective::AssertReturn { exec, results, .. } => Some(match r.execute(exec) {
            Err(e) => Err(e),
            Ok(Err(e)) => Err(format!("expected return, got error: {e}")),
            Ok(Ok(vals)) => {
                let ok = vals.len() == results.len()
                    && vals
                        .iter()
                        .zip(&results)
                        .all(|(v, want)| matches!(want, WastRet::Core(w) if ret_matches(w, v)));
                if ok {
                    Ok(())
                } else {
                    Err(format!("expected {results:?}, got {vals:?}"))
                }
            }
        }),
        WastDirective::AssertTrap { exec, message, .. } => Some(match r.execute(exec) {
            Err(e) => Err(e),
            Ok(Ok(v)) => Err(format!("expected trap `{message}`, got {v:?}")),
            Ok(Err(Error::Trap(t))) if trap_message_matches(message, t.kind.message()) => Ok(()),
            Ok(Err(Error::Instantiate(m))) if trap_message_matches(message, &m) => Ok(()),
            Ok(Err(e)) => Err(format!("expected trap `{message}`, got {e}")),
        }),
        WastDirective::AssertExhaustion { call, message, .. } => {
            Some(match r.execute(WastExecute::Invoke(call)) {
                Err(e) => Err(e),
                Ok(Err(Error::Trap(t))) if t.kind == TrapKind::StackOverflow => Ok(()),
                Ok(other) => Err(format!("expected `{message}`, got {other:?}")),
            })
        }
        WastDirective::AssertInvalid {
            module, message, ..
        }
        | WastDirective::AssertMalformed {
            module, message, ..
        } => Some(expect_invalid(r, module, message)),
        WastDirective::AssertUnlinkable {
            module, message, ..
        } => Some(match r.execute(WastExecute::Wat(module)) {
            Err(e) => Err(e),
            Ok(Ok(_)) => Err(format!("expected unlinkable `{message}`, but it linked")),
            Ok(Err(Error::Link(_))) => Ok(()),
            Ok(Err(e)) => Err(format!("expected link error `{message}`, got {e}")),
        }),
        other => Some(Err(format!("unsupported directive {other:?}")
            .chars()
            .take(200)
            .collect())),
    }
}

/// The spec's trap messages are prefixes of ours or the other way round
/// (`uninitialized element 2` vs `uninitialized element`).
fn trap_message_matches(expected: &str, actual: &str) -> bool {
    expected.starts_with(actual) || actual.starts_with(expected)
}

fn expect_invalid(
    r: &mut Runner<'_>,
    mut module: QuoteWat<'_>,
    message: &str,
) -> Result<(), String> {
    let bytes = match module.encode() {
        Ok(b) => b,
        Err(_) => return Ok(()), // malformed text
    };
    match Module::new(r.engine, bytes) {
        Ok(_) => Err(format!(
            "expected invalid/malformed `{message}`, but it compiled"
        )),
        Err(Error::Invalid(_)) => Ok(()),
        Err(e) => Err(format!("expected invalid `{message}`, got {e}")),
    }
}

/// Helper for tests: whether a table type is funcref.
pub fn is_funcref(t: RefType) -> bool {
    t.is_func_ref()
}
