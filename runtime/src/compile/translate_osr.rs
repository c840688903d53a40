//! OSR entries (`docs/transfer.md`): the variant translation of a body
//! that starts at one of its loop headers with the locals of a transferred
//! frame. A child of `translate.rs`, whose translator it extends.

use super::{clif_type, translate_with, FuncTranslator, TranslateError};
use crate::compile::environ::{FuncEnvironment, HIDDEN_PARAMS};
use cranelift_codegen::ir::{self, Block, BlockArg, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::{FunctionBuilderContext, Variable};
use wasmparser::{FuncType, FunctionBody};

/// Translate the OSR entry of `body` for its loop number `ordinal`
/// (`docs/transfer.md`): `func.signature` must be
/// `func_env::osr_signature`; the entry block loads every local from the
/// buffer (third parameter, 8 bytes a local, 16 in a function with a
/// `v128` local), then the `below` operands below the loop and its
/// parameters after them (same stride; `below` must be the loop's), and
/// jumps to that loop's header. The code before it is unreachable and
/// dropped by Cranelift.
pub(crate) fn translate_osr_entry<E: FuncEnvironment>(
    env: &mut E,
    ty: &FuncType,
    body: &FunctionBody<'_>,
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    ordinal: u32,
    below: usize,
) -> Result<(), TranslateError> {
    translate_with(env, ty, body, func, fctx, Some((ordinal, below)))
}

impl<E: FuncEnvironment> FuncTranslator<'_, '_, E> {
    /// With transfer polls compiled in: which locals are live at each loop
    /// header of `body` (read on some path from it before a write;
    /// `patch_format::dataflow`), so that a header's poll spills only
    /// those (`docs/transfer.md`, "Spilling only live locals"). `None`
    /// (every local spilled) without transfer polls, or when the body is
    /// beyond the analysis.
    pub(super) fn header_liveness(&self, body: &FunctionBody<'_>) -> Option<Vec<Vec<bool>>> {
        if !self.env.transfer_polls() {
            return None;
        }
        let flow = patch_format::dataflow::Flow::new(body, self.locals.len()).ok()?;
        flow.live_at_loops().ok()
    }

    /// The OSR entry (see [`translate_osr_entry`]): locals from the buffer,
    /// a jump to the header of loop `ordinal`, then the body as usual from
    /// an unreachable block.
    pub(super) fn translate_osr(
        &mut self,
        ty: &FuncType,
        body: &FunctionBody<'_>,
        params: &[Value],
        ordinal: u32,
    ) -> Result<(), TranslateError> {
        let start = body.range().start as usize;
        if params.len() != HIDDEN_PARAMS + 1 {
            return Err(TranslateError::malformed(
                "CLIF signature is not an OSR entry's",
                start,
            ));
        }
        let types = patch_format::transfer::body_locals(ty.params(), body)
            .map_err(|_| TranslateError::malformed("unreadable locals", start))?;
        // 8 bytes a local, 16 in a function with a `v128` local (the
        // buffer is 8-byte aligned: the loads do not claim more).
        self.v128_locals = types.contains(&wasmparser::ValType::V128);
        let stride = if self.v128_locals { 16 } else { 8 };
        for (i, &vt) in types.iter().enumerate() {
            let t = clif_type(vt, self.ptr, start)?;
            let var = self.b.declare_var(t);
            let v = self.b.ins().load(
                t,
                MemFlagsData::new().with_notrap(),
                params[HIDDEN_PARAMS],
                stride * i as i32,
            );
            self.b.def_var(var, v);
            self.locals.push(var);
        }
        self.self_bounded_loops = crate::compile::loop_bounds::self_bounded_loops(body);
        self.transfer_live = self.header_liveness(body);
        self.env.prologue(&mut self.b, params[0], params[1], false);
        let header = self.b.create_block();
        self.osr = Some((ordinal, Some(header)));
        self.b.ins().jump(header, &[]);
        let dead = self.b.create_block();
        self.b.switch_to_block(dead);
        self.b.seal_block(dead);
        self.translate_body(ty, body)?;
        if matches!(self.osr, Some((_, Some(_)))) {
            return Err(TranslateError::malformed(
                "the OSR entry's loop does not exist",
                start,
            ));
        }
        Ok(())
    }

    /// Whether the operand stack at the header `header` (the `height`
    /// operands below the loop, then its parameters, all on the stack
    /// now) can be spilled with the locals: at most `MAX_TRANSFER_LOCALS`
    /// slots in all, and a `v128` only in a function with a `v128` local
    /// (whose slots are 16 bytes).
    pub(super) fn header_fits(&self, header: Block, height: usize) -> bool {
        let n = height + self.b.block_params(header).len();
        let Ok(values) = self.stack.peek_n(n, 0) else {
            return false;
        };
        // Operands below an enclosing loop too would have to reach the OSR
        // entry's header around that loop's back edge: not carried.
        let around = (self.control.iter())
            .any(|c| matches!(c.kind, super::FrameKind::Loop { .. }) && c.height > 0);
        let dfg = &self.b.func.dfg;
        !(around && height > 0)
            && self.locals.len() + n <= super::MAX_TRANSFER_LOCALS
            && (self.v128_locals || !values.iter().any(|&v| dfg.value_type(v).is_vector()))
    }

    /// In the OSR entry's loop (`osr`): keep the `height` operands below
    /// it in variables, defined here (the unreachable code before the
    /// header) and by the entry (from the buffer), so that the code after
    /// the loop reads them through the header. Call before the jump to
    /// the header, with the operands on the stack.
    pub(super) fn keep_below(
        &mut self,
        osr: bool,
        header: Block,
        height: usize,
    ) -> Vec<(Variable, ir::Type)> {
        let n = height + self.b.block_params(header).len();
        let values = match self.stack.peek_n(n, 0) {
            Ok(values) if osr => values[..height].to_vec(),
            _ => return Vec::new(),
        };
        values
            .into_iter()
            .map(|v| {
                let t = self.b.func.dfg.value_type(v);
                let var = self.b.declare_var(t);
                self.b.def_var(var, v);
                (var, t)
            })
            .collect()
    }

    /// At the OSR entry's header: the operands below the loop are the
    /// variables of [`Self::keep_below`].
    pub(super) fn reload_below(&mut self, below: &[(Variable, ir::Type)]) {
        if below.is_empty() {
            return;
        }
        let values: Vec<Value> = below.iter().map(|&(v, _)| self.b.use_var(v)).collect();
        self.stack.truncate(0);
        self.stack.extend(&values);
    }

    /// The operand stack at the header `header` (the `height` operands
    /// below the loop, then its parameters), as variables for its transfer
    /// poll to spill after the locals (always: the code after the loop or
    /// every turn reads them).
    pub(super) fn header_stack_vars(
        &mut self,
        header: Block,
        height: usize,
    ) -> Vec<Option<Variable>> {
        if !self.env.transfer_polls() {
            return Vec::new();
        }
        let n = height + self.b.block_params(header).len();
        let values = self
            .stack
            .peek_n(n, 0)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        values
            .into_iter()
            .map(|v| {
                let var = self.b.declare_var(self.b.func.dfg.value_type(v));
                self.b.def_var(var, v);
                Some(var)
            })
            .collect()
    }

    /// Fill `h`, the block the OSR entry jumped to: load the operands
    /// below the loop (into their variables, `below`) and the loop's
    /// parameters from the buffer (after the locals, same stride), and
    /// enter its header `header` with the parameters.
    pub(super) fn osr_enter(&mut self, h: Block, header: Block, below: &[(Variable, ir::Type)]) {
        let entry = self.b.func.layout.entry_block();
        let Some(buf) = entry.map(|e| self.b.func.dfg.block_params(e)[HIDDEN_PARAMS]) else {
            return;
        };
        let stride = if self.v128_locals { 16 } else { 8 };
        let at = |i: usize| stride * (self.locals.len() + i) as i32;
        self.b.switch_to_block(h);
        self.b.seal_block(h);
        let flags = MemFlagsData::new().with_notrap();
        for (i, &(var, t)) in below.iter().enumerate() {
            let v = self.b.ins().load(t, flags, buf, at(i));
            self.b.def_var(var, v);
        }
        let types: Vec<ir::Type> = (self.b.block_params(header).iter())
            .map(|&v| self.b.func.dfg.value_type(v))
            .collect();
        let mut args = Vec::with_capacity(types.len());
        for (p, t) in types.into_iter().enumerate() {
            let v = self.b.ins().load(t, flags, buf, at(below.len() + p));
            args.push(BlockArg::Value(v));
        }
        self.b.ins().jump(header, &args);
    }
}
