//! Inlining of small leaf functions into their callers, in the patchable
//! build (`Config::inline`, docs/consistency.md rule 18).
//!
//! A call to a module function normally goes through its caller's world
//! (`func_env.rs`, slot call). A call to an *inlinable* function is instead
//! emitted as a direct `call` to a `FuncRef` naming it, and Cranelift's
//! inliner (`Context::inline`) replaces it with the callee's CLIF, translated
//! once per module ([`Inlinables::prepare`]).
//!
//! A function is inlinable when its body is small ([`MAX_OPERATORS`]) and
//! it has **no safe point**: no loop (so no loop-header poll), no call of any
//! kind (so no entry poll, no host call, no recursion) and no runtime
//! builtin (memory and table bulk operations, `memory.grow`). A thread is
//! therefore never stopped inside an inlined body: its frame set, read from
//! its stack, holds the caller, which stands for both (rule 1 holds with
//! the caller in the check set, `patch/versions.rs`).
//!
//! Each compiled function records the functions it inlined
//! (`CompiledModule::inlined`); a bundle that changes one of them also
//! replaces every function that inlined it (`compile_bundle`'s dependents,
//! compiled from their original bodies with no inlining, so that they call
//! the changed function through the slot of their world).

use super::func_env::{self, FuncEnv};
use super::UnitJob;
use crate::errors::Error;
use cranelift_codegen::inline::{Inline, InlineCommand};
use cranelift_codegen::ir;
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use wasmparser::{FunctionBody, Operator};

/// The most wasm operators (the final `end` included) an inlinable body
/// may have. Measured on `benches/compare-wasmtime` (benches/README.md,
/// "Inlining"): the accessors and arithmetic helpers rustc leaves
/// un-inlined are well under it, and larger bodies gain nothing.
pub(crate) const MAX_OPERATORS: usize = 40;

/// Whether `body` may be inlined: small, with no loop, call or builtin.
pub(crate) fn inlinable(body: &FunctionBody<'_>) -> bool {
    use Operator as O;
    let Ok(reader) = body.get_operators_reader() else {
        return false;
    };
    let mut n = 0;
    for op in reader {
        n += 1;
        if n > MAX_OPERATORS {
            return false;
        }
        match op {
            Err(_)
            | Ok(
                O::Loop { .. }
                | O::Call { .. }
                | O::CallIndirect { .. }
                | O::ReturnCall { .. }
                | O::ReturnCallIndirect { .. }
                | O::CallRef { .. }
                | O::ReturnCallRef { .. }
                | O::MemoryGrow { .. }
                | O::MemoryCopy { .. }
                | O::MemoryFill { .. }
                | O::MemoryInit { .. }
                | O::DataDrop { .. }
                | O::TableGrow { .. }
                | O::TableFill { .. }
                | O::TableCopy { .. }
                | O::TableInit { .. }
                | O::ElemDrop { .. }
                | O::Try { .. }
                | O::TryTable { .. }
                | O::Throw { .. }
                | O::ThrowRef
                | O::Rethrow { .. },
            ) => return false,
            Ok(_) => {}
        }
    }
    true
}

/// The inlinable functions of a module, translated once.
#[derive(Default)]
pub(crate) struct Inlinables {
    /// Callee index → its translated, verified CLIF.
    bodies: HashMap<u32, ir::Function>,
    /// The same indices, for `FuncEnv::call`.
    set: HashSet<u32>,
}

impl Inlinables {
    /// Translate every inlinable defined function of `job.info` (whose
    /// bodies are given by `body`).
    pub(crate) fn prepare<'b>(
        job: &UnitJob<'_>,
        funcs: &[u32],
        body: impl Fn(u32) -> FunctionBody<'b>,
    ) -> Result<Inlinables, Error> {
        let mut out = Inlinables::default();
        let isa = job.engine.isa();
        let mut ctx = Context::new();
        let mut fctx = FunctionBuilderContext::new();
        for &f in funcs {
            let b = body(f);
            if !inlinable(&b) {
                continue;
            }
            let ty = job.info.func_type(f).clone();
            // No safe point in the body: the entry poll is never emitted.
            let mut env = FuncEnv::new(
                job.info,
                job.engine,
                isa.frontend_config(),
                true,
                false,
                job.own_funcs,
            );
            ctx.clear();
            ctx.func.signature = func_env::wasm_signature(&ty, isa.default_call_conv());
            ctx.func.name = ir::UserFuncName::user(0, f);
            let what = || format!("inlinable function {} (index {f})", job.info.func_name(f));
            super::translate::translate_function(&mut env, &ty, &b, &mut ctx.func, &mut fctx)
                .map_err(|e| Error::Compile(format!("{}: {e}", what())))?;
            ctx.func.dfg.resolve_all_aliases();
            ctx.verify(isa)
                .map_err(|e| Error::Compile(format!("{}: {e}", what())))?;
            out.bodies.insert(f, ctx.func.clone());
            out.set.insert(f);
        }
        Ok(out)
    }

    /// The inlinable function indices.
    pub(crate) fn set(&self) -> &HashSet<u32> {
        &self.set
    }

    /// Whether there is nothing to inline.
    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Cranelift's inlining hook for one caller: inlines every direct call to
/// an inlinable function (`FuncEnv::call` emits direct calls for nothing
/// else in the patchable build) and records which.
pub(crate) struct Inliner<'a> {
    pub(crate) callees: &'a Inlinables,
    /// Functions inlined so far, in order, without repeats.
    pub(crate) inlined: Vec<u32>,
}

impl Inline for Inliner<'_> {
    fn inline(
        &mut self,
        caller: &ir::Function,
        _call_inst: ir::Inst,
        _call_opcode: ir::Opcode,
        callee: ir::FuncRef,
        _call_args: &[ir::Value],
    ) -> InlineCommand<'_> {
        let ir::ExternalName::User(name) = &caller.dfg.ext_funcs[callee].name else {
            return InlineCommand::KeepCall;
        };
        let index = caller.params.user_named_funcs()[*name].index;
        match self.callees.bodies.get(&index) {
            Some(body) => {
                if !self.inlined.contains(&index) {
                    self.inlined.push(index);
                }
                InlineCommand::Inline {
                    callee: Cow::Borrowed(body),
                    // The body has no call.
                    visit_callee: false,
                }
            }
            None => InlineCommand::KeepCall,
        }
    }
}

/// Inline what `ctx.func` calls directly; returns the inlined functions.
///
/// # Errors
/// A message when Cranelift fails or a direct call is left (only inlinable
/// functions are called directly, and every such call must be inlined: a
/// direct call would bypass the slot table).
pub(crate) fn run(ctx: &mut Context, callees: &Inlinables) -> Result<Vec<u32>, String> {
    let mut inliner = Inliner {
        callees,
        inlined: Vec::new(),
    };
    ctx.inline(&mut inliner)
        .map_err(|e| format!("inlining: {e:?}"))?;
    let left = ctx.func.layout.blocks().any(|b| {
        ctx.func
            .layout
            .block_insts(b)
            .any(|i| matches!(ctx.func.dfg.insts[i], ir::InstructionData::Call { .. }))
    });
    if left {
        return Err("a direct call to an inlinable function was not inlined".into());
    }
    let mut inlined = inliner.inlined;
    inlined.sort_unstable();
    Ok(inlined)
}
