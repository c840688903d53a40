//! Trampolines between the host and JIT code, two per function type:
//!
//! - **entry** `(funcref, vmthread, values, _)` — called (through
//!   `vm::traps::enter`) by the host to run a wasm function: reads the
//!   arguments from `values` (16 bytes each), calls the function through the
//!   funcref's slot in the *calling thread's world* (so host calls into
//!   exports follow the thread's world, docs/consistency.md rule 5), and writes
//!   the results back to `values`.
//! - **host** `(hostctx, vmthread, args...)` — has the wasm signature and
//!   sits in the slot of an imported host function: records its own frame
//!   pointer as the thread's exit record (so the stack of a thread parked in
//!   a host call can be walked), spills the arguments, calls the dispatcher
//!   stored in the host context, traps if it reports failure, and returns the
//!   results.
//!
//! And one per engine: the **poll stub** `(vmthread)`, which a poll calls
//! when the thread's poll word is set. It has Cranelift's `preserve_all`
//! convention: it saves every register it uses, so the call site clobbers
//! none and the code around a poll keeps its values in caller-saved
//! registers, exactly as in a build without polls. A plain call there would
//! force every value live across a poll (in a loop: every loop-carried
//! value) into callee-saved registers or onto the stack. The stub records
//! its own frame as the exit record, calls the `poll` runtime function, and
//! traps if that reports cancellation. Beside it, the **transfer stub**
//! `(vmthread, spill, ordinal)`, the same for the loop headers from which a
//! frame can be transferred (`docs/transfer.md`).

use super::func_env::{clif_type, wasm_signature};
use crate::engine::Engine;
use crate::errors::Error;
use crate::trap::TrapKind;
use crate::vm::code_memory::{self, CodeUnit, UnitKind};
use crate::vm::offsets::*;
use cranelift_codegen::ir::{
    self, types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, UserFuncName,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig, TargetIsa};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::sync::Arc;
use wasmparser::FuncType;

fn flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Compile the trampolines of every type, in one unit: placed index `3*t`
/// is the entry trampoline of type `t`, `3*t + 1` its host trampoline, and
/// `3*t + 2` the stub that traps "removed function" (the slot of a function
/// added by a bundle, once that bundle is reverted: docs/consistency.md rule 6).
pub(crate) fn compile_for_types(
    engine: &Engine,
    types_: &[FuncType],
) -> Result<Arc<CodeUnit>, Error> {
    let isa = engine.isa();
    let mut ctx = Context::new();
    let mut fctx = FunctionBuilderContext::new();
    let mut artifacts = Vec::with_capacity(types_.len() * 2);
    for (i, ty) in types_.iter().enumerate() {
        for kind in 0..3 {
            ctx.clear();
            ctx.func.name = UserFuncName::user(1, i as u32);
            match kind {
                0 => build_entry(&mut ctx.func, &mut fctx, ty, isa.frontend_config()),
                1 => build_host(&mut ctx.func, &mut fctx, ty, isa.frontend_config()),
                _ => build_removed(&mut ctx.func, &mut fctx, ty, isa.frontend_config()),
            }
            let a = super::finish(isa, &mut ctx, i as u32)
                .map_err(|e| Error::Compile(format!("trampoline: {e}")))?;
            artifacts.push(a);
        }
    }
    CodeUnit::publish(
        code_memory::next_unit_id(),
        UnitKind::Trampolines,
        artifacts,
    )
    .map_err(|e| Error::Compile(e.to_string()))
}

/// Compile the engine's poll stubs (see the module doc) into a unit of
/// their own: placed index 0 is the poll stub `(vmthread)` of every poll,
/// index 1 the transfer stub `(vmthread, spill, ordinal)` of the loop
/// headers a frame can be transferred from (`docs/transfer.md`). Both call
/// the runtime's poll slow path at address `slow_path`.
pub(crate) fn compile_poll_stub(
    isa: &dyn TargetIsa,
    slow_path: usize,
) -> Result<Arc<CodeUnit>, Error> {
    let mut ctx = Context::new();
    let mut fctx = FunctionBuilderContext::new();
    let mut artifacts = Vec::new();
    for transfer in [false, true] {
        ctx.clear();
        ctx.func.name = UserFuncName::user(2, transfer as u32);
        build_poll_stub(
            &mut ctx.func,
            &mut fctx,
            isa.frontend_config(),
            slow_path,
            transfer,
        );
        artifacts.push(
            super::finish(isa, &mut ctx, transfer as u32)
                .map_err(|e| Error::Compile(format!("poll stub: {e}")))?,
        );
    }
    CodeUnit::publish(
        code_memory::next_unit_id(),
        UnitKind::Trampolines,
        artifacts,
    )
    .map_err(|e| Error::Compile(e.to_string()))
}

/// Signature of the poll stub, as polls call it: `(vmthread)`; with
/// `transfer`, the transfer stub's `(vmthread, spill, ordinal)`, where
/// `spill` points at the spilled locals of a loop header that can transfer
/// its frame and `ordinal` names the loop (`docs/transfer.md`).
pub(crate) fn poll_stub_signature(transfer: bool) -> ir::Signature {
    let mut sig = ir::Signature::new(CallConv::PreserveAll);
    for _ in 0..if transfer { 3 } else { 1 } {
        sig.params.push(ir::AbiParam::new(types::I64));
    }
    sig
}

fn build_poll_stub(
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    fc: TargetFrontendConfig,
    slow_path: usize,
    transfer: bool,
) {
    func.signature = poll_stub_signature(transfer);
    let mut b = FunctionBuilder::new(func, fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let p = b.block_params(block).to_vec();
    let vmthread = p[0];
    let (spill, ordinal) = if transfer {
        (p[1], p[2])
    } else {
        let zero = b.ins().iconst(types::I64, 0);
        (zero, zero)
    };
    // Exit record: this frame, whose return address is the poll site.
    let fp = b.ins().get_frame_pointer(types::I64);
    b.ins().store(flags(), fp, vmthread, THREAD_EXIT_FP);
    let mut psig = ir::Signature::new(fc.default_call_conv);
    for _ in 0..4 {
        psig.params.push(ir::AbiParam::new(types::I64));
    }
    psig.returns.push(ir::AbiParam::new(types::I32));
    let psig = b.import_signature(psig);
    let poll = b.ins().iconst(types::I64, slow_path as i64);
    let no_vmctx = b.ins().iconst(types::I64, 0);
    let call = b
        .ins()
        .call_indirect(psig, poll, &[no_vmctx, vmthread, spill, ordinal]);
    let status = b.inst_results(call)[0];
    b.ins().trapnz(status, TrapKind::HostError.code());
    b.ins().return_(&[]);
    b.finalize(fc);
}

fn build_entry(
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    ty: &FuncType,
    fc: TargetFrontendConfig,
) {
    let cc = fc.default_call_conv;
    let mut sig = ir::Signature::new(cc);
    for _ in 0..4 {
        sig.params.push(ir::AbiParam::new(types::I64));
    }
    func.signature = sig;
    let mut b = FunctionBuilder::new(func, fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let p = b.block_params(block).to_vec();
    let (funcref, vmthread, values) = (p[0], p[1], p[2]);
    // World 0's slot of the function, plus the thread's world.
    let entry0 = b.ins().load(types::I64, flags(), funcref, FUNCREF_ENTRY);
    let world = b.ins().load(types::I64, flags(), vmthread, THREAD_WORLD);
    let entry = b.ins().iadd(entry0, world);
    let code = b.ins().load(types::I64, flags(), entry, SLOT_CODE);
    let ctx = b.ins().load(types::I64, flags(), entry, SLOT_VMCTX);
    let mut args = vec![ctx, vmthread];
    for (i, t) in ty.params().iter().enumerate() {
        args.push(
            b.ins()
                .load(clif_type(*t), flags(), values, i as i32 * VALUE_SIZE),
        );
    }
    let wsig = b.import_signature(wasm_signature(ty, cc));
    let call = b.ins().call_indirect(wsig, code, &args);
    let results = b.inst_results(call).to_vec();
    for (i, r) in results.into_iter().enumerate() {
        b.ins().store(flags(), r, values, i as i32 * VALUE_SIZE);
    }
    b.ins().return_(&[]);
    b.finalize(fc);
}

fn build_host(
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    ty: &FuncType,
    fc: TargetFrontendConfig,
) {
    let cc = fc.default_call_conv;
    func.signature = wasm_signature(ty, cc);
    let n = ty.params().len().max(ty.results().len()).max(1) as u32;
    let mut b = FunctionBuilder::new(func, fctx);
    let slot = b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        n * VALUE_SIZE as u32,
        4,
    ));
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let p = b.block_params(block).to_vec();
    let (hostctx, vmthread) = (p[0], p[1]);
    let fp = b.ins().get_frame_pointer(types::I64);
    b.ins().store(flags(), fp, vmthread, THREAD_EXIT_FP);
    for (i, v) in p[2..].iter().enumerate() {
        b.ins()
            .stack_store(types::I64, *v, slot, i as i32 * VALUE_SIZE);
    }
    let values = b.ins().stack_addr(types::I64, slot, 0);
    let dispatch = b.ins().load(types::I64, flags(), hostctx, HOSTCTX_DISPATCH);
    let mut dsig = ir::Signature::new(cc);
    for _ in 0..3 {
        dsig.params.push(ir::AbiParam::new(types::I64));
    }
    dsig.returns.push(ir::AbiParam::new(types::I32));
    let dsig = b.import_signature(dsig);
    let call = b
        .ins()
        .call_indirect(dsig, dispatch, &[hostctx, vmthread, values]);
    let status = b.inst_results(call)[0];
    b.ins().trapnz(status, TrapKind::HostError.code());
    let mut results = Vec::new();
    for (i, t) in ty.results().iter().enumerate() {
        results.push(
            b.ins()
                .stack_load(types::I64, clif_type(*t), slot, i as i32 * VALUE_SIZE),
        );
    }
    b.ins().return_(&results);
    b.finalize(fc);
}

fn build_removed(
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    ty: &FuncType,
    fc: TargetFrontendConfig,
) {
    func.signature = wasm_signature(ty, fc.default_call_conv);
    let mut b = FunctionBuilder::new(func, fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let p = b.block_params(block).to_vec();
    // The slot's context names the removed function (patch::versions::AddedFunction).
    b.ins().store(flags(), p[0], p[1], THREAD_TRAP_ARG);
    b.ins().trap(TrapKind::RemovedFunction.code());
    b.finalize(fc);
}
