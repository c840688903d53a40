//! Operator-by-operator translation of wasm function bodies to CLIF.
//!
//! Owns the walk over one function body: locals become `FunctionBuilder`
//! variables, the wasm operand stack becomes SSA values
//! ([`super::stack::ValueStack`]), structured control becomes blocks
//! ([`super::stack::ControlFrame`]), and pure computation (arithmetic,
//! comparisons, conversions, `select`, loads and stores once an address is
//! known) is emitted directly. Everything that touches the runtime layout
//! (vmctx, memories, tables, globals, calls, polls) is delegated to
//! [`FuncEnvironment`]; this module imports nothing from `vm`.
//!
//! Entry point: [`translate_function`]. The body must already have passed
//! wasmparser's validator; malformed input is still reported as an error
//! rather than a panic.
//!
//! Unreachable code (after `br`, `br_table`, `return`, `unreachable`) is
//! skipped without emitting anything: only the nesting of `block` / `loop` /
//! `if` is counted so that the matching `else` / `end` can be found.

#[path = "translate_osr.rs"]
mod osr;
#[path = "simd.rs"]
mod simd;

use super::environ::{FuncEnvironment, HIDDEN_PARAMS};
use super::stack::{ControlFrame, FrameKind, ValueStack};
use crate::trap::TrapKind;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{
    self, types, Block, BlockArg, BlockCall, Endianness, InstBuilder, JumpTableData, MemFlagsData,
    Type, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;
use wasmparser::{
    BinaryReaderError, BlockType, FuncType, FunctionBody, MemArg, MemArgTarget, Operator, ValType,
};

/// Why a function body could not be translated.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TranslateError {
    /// The body could not be decoded.
    #[error("cannot decode function body: {0}")]
    Reader(#[from] BinaryReaderError),
    /// The body uses an operator (or value type) outside the supported set,
    /// e.g. SIMD.
    #[error("unsupported operator `{op}` at offset {offset:#x}")]
    Unsupported {
        /// Name of the operator or value type.
        op: String,
        /// Byte offset in the module.
        offset: usize,
    },
    /// The body is not valid wasm (it should have been rejected by the
    /// validator).
    #[error("invalid function body at offset {offset:#x}: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
        /// Byte offset in the module.
        offset: usize,
    },
}

impl TranslateError {
    /// A [`TranslateError::Malformed`] at `offset`.
    pub(crate) fn malformed(reason: &'static str, offset: usize) -> Self {
        TranslateError::Malformed { reason, offset }
    }
}

/// Translate one wasm function body into `func`.
///
/// `func.signature` must already be `env.signature(ty)`. On success the
/// function is complete (all blocks filled and sealed) and `fctx` is ready
/// for the next function; on error `func` is left half-built and must be
/// discarded.
pub(crate) fn translate_function<E: FuncEnvironment>(
    env: &mut E,
    ty: &FuncType,
    body: &FunctionBody<'_>,
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
) -> Result<(), TranslateError> {
    translate_with(env, ty, body, func, fctx, None)
}

pub(crate) use osr::translate_osr_entry;

fn translate_with<E: FuncEnvironment>(
    env: &mut E,
    ty: &FuncType,
    body: &FunctionBody<'_>,
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    osr: Option<(u32, usize)>,
) -> Result<(), TranslateError> {
    let ptr = env.pointer_type();
    let frontend_config = env.target_config();
    let mut t = FuncTranslator {
        env,
        b: FunctionBuilder::new(func, fctx),
        stack: ValueStack::default(),
        control: Vec::new(),
        locals: Vec::new(),
        reachable: true,
        unreachable_depth: 0,
        num_results: ty.results().len(),
        ptr,
        self_bounded_loops: Vec::new(),
        transfer_live: None,
        loops_seen: 0,
        osr: osr.map(|o| (o.0, None)),
        osr_below: osr.map_or(0, |o| o.1),
        v128_locals: false,
    };
    match t.translate(ty, body) {
        Ok(()) => {
            t.b.finalize(frontend_config);
            Ok(())
        }
        Err(e) => {
            drop(t);
            // The builder context still holds the abandoned function's
            // state; start the next function from a clean one.
            *fctx = FunctionBuilderContext::new();
            Err(e)
        }
    }
}

/// State of the translation of one function.
struct FuncTranslator<'e, 'f, E> {
    /// The layout-aware side.
    env: &'e mut E,
    /// The CLIF builder for the function.
    b: FunctionBuilder<'f>,
    /// The wasm operand stack.
    stack: ValueStack,
    /// Open control constructs, innermost last; the first one is the
    /// function body.
    control: Vec<ControlFrame>,
    /// Parameters, then declared locals.
    locals: Vec<Variable>,
    /// Whether the current position can be reached. When false the current
    /// block is already terminated and operators are skipped.
    reachable: bool,
    /// While unreachable: how many skipped constructs are open.
    unreachable_depth: u32,
    /// Number of results of the function (for `return`).
    num_results: usize,
    /// The pointer type, also used for references.
    ptr: Type,
    /// Offsets of the `loop`s whose header needs no poll (`loop_bounds.rs`).
    self_bounded_loops: Vec<usize>,
    /// With transfer polls: which locals are live at each loop header, by
    /// ordinal (`translate_osr.rs`); the others are not spilled.
    transfer_live: Option<Vec<Vec<bool>>>,
    /// `loop`s translated so far: the next one's ordinal.
    loops_seen: u32,
    /// OSR entry: the ordinal of the loop entered, and its header once
    /// created (by the entry block).
    osr: Option<(u32, Option<Block>)>,
    /// OSR entry: the operands below its loop the map carries.
    osr_below: usize,
    /// Whether a local is a `v128`: transfer polls then spill 16 bytes a
    /// local (`docs/transfer.md`).
    v128_locals: bool,
}

/// Loop headers of functions with more locals than this cannot transfer
/// their frame (the spill is in the header poll's cold path).
const MAX_TRANSFER_LOCALS: usize = patch_format::transfer::MAX_LOCALS;

/// The CLIF type of a wasm value type (references are pointer-sized).
fn clif_type(t: ValType, ptr: Type, offset: usize) -> Result<Type, TranslateError> {
    Ok(match t {
        ValType::I32 => types::I32,
        ValType::I64 => types::I64,
        ValType::F32 => types::F32,
        ValType::F64 => types::F64,
        ValType::Ref(_) => ptr,
        ValType::V128 => {
            let _ = offset;
            simd::V128
        }
    })
}

/// Block arguments for a jump carrying `vals`.
fn block_args(vals: &[Value]) -> Vec<BlockArg> {
    vals.iter().copied().map(BlockArg::Value).collect()
}

/// The name of an operator (its variant name) for error messages.
fn op_name(op: &Operator<'_>) -> String {
    let dbg = format!("{op:?}");
    dbg.split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `stack: a b -> a OP b` with a two-operand instruction.
macro_rules! binop {
    ($t:ident, $off:ident, $m:ident) => {{
        let (a, b) = $t.stack.pop2($off)?;
        let v = $t.b.ins().$m(a, b);
        $t.stack.push(v);
    }};
}

/// `stack: a -> OP a` with a one-operand instruction (optionally with a
/// controlling type as first argument).
macro_rules! unop {
    ($t:ident, $off:ident, $m:ident $(, $extra:expr)*) => {{
        let a = $t.stack.pop($off)?;
        let v = $t.b.ins().$m($($extra,)* a);
        $t.stack.push(v);
    }};
}

/// Integer comparison producing an i32 0/1.
macro_rules! icmp {
    ($t:ident, $off:ident, $cc:ident) => {{
        let (a, b) = $t.stack.pop2($off)?;
        let c = $t.b.ins().icmp(IntCC::$cc, a, b);
        let v = $t.b.ins().uextend(types::I32, c);
        $t.stack.push(v);
    }};
}

/// Float comparison producing an i32 0/1.
macro_rules! fcmp {
    ($t:ident, $off:ident, $cc:ident) => {{
        let (a, b) = $t.stack.pop2($off)?;
        let c = $t.b.ins().fcmp(FloatCC::$cc, a, b);
        let v = $t.b.ins().uextend(types::I32, c);
        $t.stack.push(v);
    }};
}

/// Narrow to `$narrow` then sign-extend back to `$ty` (`iNN.extendM_s`).
macro_rules! sext {
    ($t:ident, $off:ident, $narrow:expr, $ty:expr) => {{
        let a = $t.stack.pop($off)?;
        let n = $t.b.ins().ireduce($narrow, a);
        let v = $t.b.ins().sextend($ty, n);
        $t.stack.push(v);
    }};
}

/// A load of `$size` bytes with the given CLIF load instruction.
macro_rules! load {
    ($t:ident, $off:ident, $memarg:expr, $size:expr, $m:ident $(, $ty:expr)?) => {{
        let index = $t.stack.pop($off)?;
        let (addr, flags) = $t.mem_access(&$memarg, $size, index, $off)?;
        let v = $t.b.ins().$m($($ty,)? flags, addr, 0);
        $t.stack.push(v);
    }};
}

/// A store of `$size` bytes with the given CLIF store instruction.
macro_rules! store {
    ($t:ident, $off:ident, $memarg:expr, $size:expr, $m:ident) => {{
        let (index, val) = $t.stack.pop2($off)?;
        let (addr, flags) = $t.mem_access(&$memarg, $size, index, $off)?;
        $t.b.ins().$m(flags, val, addr, 0);
    }};
}

/// Whether a body has a loop or a call of any kind: only such a function
/// can run unboundedly (through its loops, or through recursion), so only
/// it may need a poll at entry (the environment decides, from the module's
/// call graph: `polls.rs`). An unreadable body answers yes (translation
/// reports the error).
fn calls_or_loops(body: &FunctionBody<'_>) -> bool {
    use wasmparser::Operator as Op;
    let Ok(reader) = body.get_operators_reader() else {
        return true;
    };
    reader.into_iter().any(|op| {
        matches!(
            op,
            Err(_)
                | Ok(Op::Loop { .. }
                    | Op::Call { .. }
                    | Op::CallIndirect { .. }
                    | Op::ReturnCall { .. }
                    | Op::ReturnCallIndirect { .. }
                    | Op::CallRef { .. }
                    | Op::ReturnCallRef { .. })
        )
    })
}

impl<E: FuncEnvironment> FuncTranslator<'_, '_, E> {
    /// Translate the whole body: entry block, locals, prologue, operators.
    fn translate(&mut self, ty: &FuncType, body: &FunctionBody<'_>) -> Result<(), TranslateError> {
        let start = body.range().start as usize;
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        self.b.seal_block(entry);
        let params = self.b.block_params(entry).to_vec();
        if let Some((ordinal, _)) = self.osr {
            return self.translate_osr(ty, body, &params, ordinal);
        }
        if params.len() != HIDDEN_PARAMS + ty.params().len() {
            return Err(TranslateError::malformed(
                "CLIF signature does not match the function type",
                start,
            ));
        }
        for (&vt, &val) in ty.params().iter().zip(&params[HIDDEN_PARAMS..]) {
            let var = self.b.declare_var(clif_type(vt, self.ptr, start)?);
            self.v128_locals |= vt == ValType::V128;
            self.b.def_var(var, val);
            self.locals.push(var);
        }
        self.declare_locals(body)?;
        let entry_poll = calls_or_loops(body);
        self.self_bounded_loops = super::loop_bounds::self_bounded_loops(body);
        self.transfer_live = self.header_liveness(body);
        self.env
            .prologue(&mut self.b, params[0], params[1], entry_poll);
        self.translate_body(ty, body)
    }

    /// The operators of the body, from the function's block on.
    pub(super) fn translate_body(
        &mut self,
        ty: &FuncType,
        body: &FunctionBody<'_>,
    ) -> Result<(), TranslateError> {
        let start = body.range().start as usize;
        let exit = self.b.create_block();
        for &vt in ty.results() {
            let t = clif_type(vt, self.ptr, start)?;
            self.b.append_block_param(exit, t);
        }
        self.control.push(ControlFrame {
            kind: FrameKind::Block { exit },
            num_params: 0,
            num_results: ty.results().len(),
            height: 0,
            exit_reached: false,
        });

        let mut reader = body.get_operators_reader()?;
        while !self.control.is_empty() {
            let (op, offset) = reader.read_with_offset()?;
            let offset = offset as usize;
            self.b.set_srcloc(ir::SourceLoc::new(offset as u32));
            if self.reachable {
                self.operator(&op, offset)?;
            } else {
                self.unreachable_operator(&op, offset)?;
            }
        }
        reader.finish()?;
        Ok(())
    }

    /// Declare the body's locals as variables initialised to zero.
    fn declare_locals(&mut self, body: &FunctionBody<'_>) -> Result<(), TranslateError> {
        let mut reader = body.get_locals_reader()?;
        let mut zeros: HashMap<Type, Value> = HashMap::new();
        for _ in 0..reader.get_count() {
            let offset = reader.original_position() as usize;
            let (count, vt) = reader.read()?;
            let t = clif_type(vt, self.ptr, offset)?;
            self.v128_locals |= vt == ValType::V128;
            let zero = match zeros.get(&t) {
                Some(&z) => z,
                None => {
                    let z = match t {
                        types::F32 => self.b.ins().f32const(0.0),
                        types::F64 => self.b.ins().f64const(0.0),
                        simd::V128 => self.v128_const(&[0; 16]),
                        _ => self.b.ins().iconst(t, 0),
                    };
                    zeros.insert(t, z);
                    z
                }
            };
            for _ in 0..count {
                let var = self.b.declare_var(t);
                self.b.def_var(var, zero);
                self.locals.push(var);
            }
        }
        Ok(())
    }

    /// Handle an operator in unreachable code: only track nesting and find
    /// the `else` / `end` that makes code reachable again.
    fn unreachable_operator(
        &mut self,
        op: &Operator<'_>,
        offset: usize,
    ) -> Result<(), TranslateError> {
        match op {
            Operator::Block { .. } | Operator::If { .. } => {
                self.unreachable_depth += 1;
            }
            Operator::Loop { .. } => {
                // Ordinals count every `loop`, reachable or not.
                self.loops_seen += 1;
                self.unreachable_depth += 1;
            }
            Operator::Else if self.unreachable_depth == 0 => self.else_(offset)?,
            Operator::End if self.unreachable_depth == 0 => self.end(offset)?,
            Operator::End => self.unreachable_depth -= 1,
            // Constructs we cannot translate would desynchronise the nesting
            // count; refuse them even in dead code.
            Operator::TryTable { .. } | Operator::Try { .. } => {
                return Err(TranslateError::Unsupported {
                    op: op_name(op),
                    offset,
                })
            }
            _ => {}
        }
        Ok(())
    }

    /// The variable of local `index`.
    fn local(&self, index: u32, offset: usize) -> Result<Variable, TranslateError> {
        self.locals
            .get(index as usize)
            .copied()
            .ok_or_else(|| TranslateError::malformed("local index out of range", offset))
    }

    /// Number of parameters and results of a block type.
    fn arity(&self, bt: BlockType) -> (usize, usize) {
        match bt {
            BlockType::Empty => (0, 0),
            BlockType::Type(_) => (0, 1),
            BlockType::FuncType(i) => {
                let ft = self.env.type_at(i);
                (ft.params().len(), ft.results().len())
            }
        }
    }

    /// A new block whose parameters have the types of `bt`'s results (or
    /// parameters when `params` is set).
    fn block_with_params(
        &mut self,
        bt: BlockType,
        params: bool,
        offset: usize,
    ) -> Result<Block, TranslateError> {
        let block = self.b.create_block();
        match bt {
            BlockType::Empty => {}
            BlockType::Type(vt) => {
                if !params {
                    let t = clif_type(vt, self.ptr, offset)?;
                    self.b.append_block_param(block, t);
                }
            }
            BlockType::FuncType(i) => {
                let ft = self.env.type_at(i);
                let tys = if params { ft.params() } else { ft.results() };
                for &vt in tys {
                    let t = clif_type(vt, self.ptr, offset)?;
                    self.b.append_block_param(block, t);
                }
            }
        }
        Ok(block)
    }

    /// The target block and arity of a branch to label `depth`, noting that
    /// the label's exit block now has a predecessor.
    fn br_target(&mut self, depth: u32, offset: usize) -> Result<(Block, usize), TranslateError> {
        let idx = self
            .control
            .len()
            .checked_sub(1 + depth as usize)
            .ok_or_else(|| TranslateError::malformed("branch depth out of range", offset))?;
        let frame = &mut self.control[idx];
        if frame.branches_to_exit() {
            frame.exit_reached = true;
        }
        Ok(frame.branch_target())
    }

    /// `jump block(top n values)`.
    fn jump_with_top(
        &mut self,
        block: Block,
        n: usize,
        offset: usize,
    ) -> Result<(), TranslateError> {
        let args = block_args(self.stack.peek_n(n, offset)?);
        self.b.ins().jump(block, &args);
        Ok(())
    }

    /// `block`: open a frame whose exit is created now and used only if
    /// something branches to it.
    fn block(&mut self, bt: BlockType, offset: usize) -> Result<(), TranslateError> {
        let (num_params, num_results) = self.arity(bt);
        let exit = self.block_with_params(bt, false, offset)?;
        let height = self.stack.height_below(num_params, offset)?;
        self.control.push(ControlFrame {
            kind: FrameKind::Block { exit },
            num_params,
            num_results,
            height,
            exit_reached: false,
        });
        Ok(())
    }

    /// `loop`: jump to a fresh header carrying the parameters, and poll at
    /// its head.
    fn loop_(&mut self, bt: BlockType, offset: usize) -> Result<(), TranslateError> {
        let (num_params, num_results) = self.arity(bt);
        let ordinal = self.loops_seen;
        self.loops_seen += 1;
        let height = self.stack.height_below(num_params, offset)?;
        let header = self.block_with_params(bt, true, offset)?;
        // A frame moves with its locals and its operand stack at the header
        // (the operands below the loop, its parameters), with at most one
        // result (no return area to forward in the tail call).
        let transferable = self.num_results <= 1 && self.header_fits(header, height);
        let osr = self.osr.filter(|&(o, _)| o == ordinal);
        let below = self.keep_below(osr.is_some(), header, height);
        self.jump_with_top(header, num_params, offset)?;
        self.stack.truncate(height);
        if let Some((o, Some(h))) = osr {
            if !transferable || height != self.osr_below {
                return Err(TranslateError::malformed(
                    "the OSR entry's loop cannot transfer (not the operands below its header the map carries, operands below an enclosing loop, too many locals and operands, or a v128 operand without v128 locals)",
                    offset,
                ));
            }
            self.osr = Some((o, None));
            self.osr_enter(h, header, &below);
        }
        self.b.switch_to_block(header);
        self.reload_below(&below);
        self.stack.extend(self.b.block_params(header));
        if self.self_bounded_loops.binary_search(&offset).is_err() {
            if transferable {
                let live = self.transfer_live.as_ref();
                let live = live.and_then(|l| l.get(ordinal as usize));
                let mut locals: Vec<_> = (self.locals.iter().enumerate())
                    .map(|(i, &v)| live.is_none_or(|l| l[i]).then_some(v))
                    .collect();
                locals.extend(self.header_stack_vars(header, height));
                let wide = self.v128_locals;
                self.env.transfer_poll(&mut self.b, ordinal, &locals, wide);
            } else {
                self.env.poll(&mut self.b);
            }
        }
        self.control.push(ControlFrame {
            kind: FrameKind::Loop { header },
            num_params,
            num_results,
            height,
            exit_reached: false,
        });
        Ok(())
    }

    /// `if`: branch on the condition to the `then` block or to the `else`
    /// block (or straight to the exit when there is nothing to carry; an
    /// `else` seen later retargets that branch).
    fn if_(&mut self, bt: BlockType, offset: usize) -> Result<(), TranslateError> {
        let cond = self.stack.pop(offset)?;
        let (num_params, num_results) = self.arity(bt);
        let exit = self.block_with_params(bt, false, offset)?;
        let then_block = self.b.create_block();
        let else_params = self.stack.peek_n(num_params, offset)?.to_vec();
        let height = self.stack.height_below(num_params, offset)?;
        let (else_block, branch) = if num_params == 0 && num_results == 0 {
            (None, self.b.ins().brif(cond, then_block, &[], exit, &[]))
        } else {
            let else_block = self.b.create_block();
            let branch = self.b.ins().brif(cond, then_block, &[], else_block, &[]);
            (Some(else_block), branch)
        };
        self.b.switch_to_block(then_block);
        self.b.seal_block(then_block);
        self.control.push(ControlFrame {
            kind: FrameKind::If {
                exit,
                else_block,
                branch,
                else_params,
                then_reachable: None,
            },
            num_params,
            num_results,
            height,
            exit_reached: false,
        });
        Ok(())
    }

    /// `else`: close the `then` arm and start the `else` arm with the
    /// parameters the `if` received.
    fn else_(&mut self, offset: usize) -> Result<(), TranslateError> {
        let outside = || TranslateError::malformed("`else` outside `if`", offset);
        let frame = self.control.last_mut().ok_or_else(outside)?;
        let FrameKind::If {
            exit,
            else_block,
            branch,
            else_params,
            then_reachable,
        } = &mut frame.kind
        else {
            return Err(outside());
        };
        if then_reachable.is_some() {
            return Err(TranslateError::malformed(
                "second `else` in one `if`",
                offset,
            ));
        }
        if self.reachable {
            let args = block_args(self.stack.peek_n(frame.num_results, offset)?);
            self.b.ins().jump(*exit, &args);
            frame.exit_reached = true;
        }
        *then_reachable = Some(self.reachable);
        let eb = match *else_block {
            Some(eb) => eb,
            None => {
                let eb = self.b.create_block();
                self.b.change_jump_destination(*branch, *exit, eb);
                *else_block = Some(eb);
                eb
            }
        };
        self.stack.truncate(frame.height);
        self.stack.extend(else_params);
        self.b.switch_to_block(eb);
        self.b.seal_block(eb);
        self.reachable = true;
        Ok(())
    }

    /// `end`: close the innermost frame; after the function frame, return.
    fn end(&mut self, offset: usize) -> Result<(), TranslateError> {
        let frame = self
            .control
            .pop()
            .ok_or_else(|| TranslateError::malformed("unbalanced `end`", offset))?;
        match frame.kind {
            FrameKind::Loop { header } => {
                // Every back edge is now known. A loop's end is reached only
                // by falling through, so the current block continues.
                self.b.seal_block(header);
                self.fall_through(&frame, offset)?;
            }
            FrameKind::Block { exit } => {
                if self.reachable && !frame.exit_reached {
                    // Nothing branches out: keep going in the current block
                    // instead of emitting a jump to an empty successor.
                    self.fall_through(&frame, offset)?;
                } else {
                    let mut reached = frame.exit_reached;
                    if self.reachable {
                        self.jump_with_top(exit, frame.num_results, offset)?;
                        reached = true;
                    }
                    self.enter_exit(exit, frame.height, reached);
                }
            }
            FrameKind::If {
                exit,
                else_block,
                else_params,
                then_reachable,
                ..
            } => {
                let mut reached = frame.exit_reached;
                if self.reachable {
                    self.jump_with_top(exit, frame.num_results, offset)?;
                    reached = true;
                }
                if then_reachable.is_none() {
                    // No `else`: the implicit one passes the parameters on
                    // (validation guarantees they match the results).
                    if let Some(eb) = else_block {
                        self.b.switch_to_block(eb);
                        self.b.seal_block(eb);
                        self.b.ins().jump(exit, &block_args(&else_params));
                    }
                    reached = true;
                }
                self.enter_exit(exit, frame.height, reached);
            }
        }
        if self.control.is_empty() && self.reachable {
            let rets = self.stack.peek_n(self.num_results, offset)?;
            self.b.ins().return_(rets);
            self.reachable = false;
        }
        Ok(())
    }

    /// Leave `frame` by falling through in the current block (if reachable).
    fn fall_through(&mut self, frame: &ControlFrame, offset: usize) -> Result<(), TranslateError> {
        if self.reachable {
            self.stack.collapse(frame.height, frame.num_results, offset)
        } else {
            self.stack.truncate(frame.height);
            Ok(())
        }
    }

    /// Continue after a frame in its exit block, if anything reaches it.
    fn enter_exit(&mut self, exit: Block, height: usize, reached: bool) {
        self.stack.truncate(height);
        if reached {
            self.b.switch_to_block(exit);
            self.b.seal_block(exit);
            self.stack.extend(self.b.block_params(exit));
        }
        self.reachable = reached;
    }

    /// `br_table`: a jump table; targets that take arguments are reached
    /// through one edge block per distinct label (jump-table entries carry
    /// no arguments).
    fn br_table(
        &mut self,
        targets: &wasmparser::BrTable<'_>,
        offset: usize,
    ) -> Result<(), TranslateError> {
        let index = self.stack.pop(offset)?;
        let default = targets.default();
        let depths = targets.targets().collect::<Result<Vec<u32>, _>>()?;
        let (_, n) = self.br_target(default, offset)?;
        let mut entries = Vec::with_capacity(depths.len());
        let default_block;
        if n == 0 {
            default_block = self.br_target(default, offset)?.0;
            for &d in &depths {
                entries.push(self.br_target(d, offset)?.0);
            }
        } else {
            // Distinct labels in first-use order, for deterministic output.
            let mut edges: Vec<(u32, Block)> = Vec::new();
            let mut by_depth: HashMap<u32, Block> = HashMap::new();
            let mut edge = |b: &mut FunctionBuilder<'_>, d: u32| {
                *by_depth.entry(d).or_insert_with(|| {
                    let e = b.create_block();
                    edges.push((d, e));
                    e
                })
            };
            default_block = edge(&mut self.b, default);
            for &d in &depths {
                entries.push(edge(&mut self.b, d));
            }
            self.emit_br_table(index, default_block, &entries);
            let args = block_args(self.stack.peek_n(n, offset)?);
            for (d, e) in edges {
                let (target, arity) = self.br_target(d, offset)?;
                if arity != n {
                    return Err(TranslateError::malformed(
                        "br_table targets differ in arity",
                        offset,
                    ));
                }
                self.b.switch_to_block(e);
                self.b.seal_block(e);
                self.b.ins().jump(target, &args);
            }
            self.reachable = false;
            return Ok(());
        }
        self.emit_br_table(index, default_block, &entries);
        self.reachable = false;
        Ok(())
    }

    /// Emit `br_table index, default, [entries]` with argument-less calls.
    fn emit_br_table(&mut self, index: Value, default: Block, entries: &[Block]) {
        let pool = &mut self.b.func.dfg.value_lists;
        let def = BlockCall::new(default, [], pool);
        let calls: Vec<BlockCall> = entries
            .iter()
            .map(|&blk| BlockCall::new(blk, [], pool))
            .collect();
        let jt = self.b.create_jump_table(JumpTableData::new(def, &calls));
        self.b.ins().br_table(index, jt);
    }

    /// Address and flags of a memory access (index taken from the caller).
    fn mem_access(
        &mut self,
        memarg: &MemArg,
        size: u32,
        index: Value,
        offset: usize,
    ) -> Result<(Value, MemFlagsData), TranslateError> {
        let MemArgTarget::Memory(memory) = memarg.target else {
            return Err(TranslateError::Unsupported {
                op: "GC array access".into(),
                offset,
            });
        };
        let (addr, flags) =
            self.env
                .memory_address(&mut self.b, memory, index, memarg.offset, size);
        Ok((addr, flags.with_endianness(Endianness::Little)))
    }

    /// Translate one operator in reachable code.
    fn operator(&mut self, op: &Operator<'_>, off: usize) -> Result<(), TranslateError> {
        use Operator as O;
        match *op {
            // ---- control ----
            O::Unreachable => {
                self.b.ins().trap(TrapKind::Unreachable.code());
                self.reachable = false;
            }
            O::Nop => {}
            O::Block { blockty } => self.block(blockty, off)?,
            O::Loop { blockty } => self.loop_(blockty, off)?,
            O::If { blockty } => self.if_(blockty, off)?,
            O::Else => self.else_(off)?,
            O::End => self.end(off)?,
            O::Br { relative_depth } => {
                let (target, n) = self.br_target(relative_depth, off)?;
                self.jump_with_top(target, n, off)?;
                self.reachable = false;
            }
            O::BrIf { relative_depth } => {
                let cond = self.stack.pop(off)?;
                let (target, n) = self.br_target(relative_depth, off)?;
                let args = block_args(self.stack.peek_n(n, off)?);
                let next = self.b.create_block();
                self.b.ins().brif(cond, target, &args, next, &[]);
                self.b.switch_to_block(next);
                self.b.seal_block(next);
            }
            O::BrTable { ref targets } => self.br_table(targets, off)?,
            O::Return => {
                let rets = self.stack.peek_n(self.num_results, off)?;
                self.b.ins().return_(rets);
                self.reachable = false;
            }
            O::Call { function_index } => {
                let n = self.env.func_type(function_index).params().len();
                let args = self.stack.pop_n(n, off)?;
                let results = self.env.call(&mut self.b, function_index, &args);
                self.stack.extend(&results);
            }
            O::CallIndirect {
                type_index,
                table_index,
            } => {
                let callee = self.stack.pop(off)?;
                let n = self.env.type_at(type_index).params().len();
                let args = self.stack.pop_n(n, off)?;
                let results =
                    self.env
                        .call_indirect(&mut self.b, table_index, type_index, callee, &args);
                self.stack.extend(&results);
            }

            // ---- parametric ----
            O::Drop => {
                self.stack.pop(off)?;
            }
            O::Select | O::TypedSelect { .. } => {
                let (a, b, c) = self.stack.pop3(off)?;
                let v = self.b.ins().select(c, a, b);
                self.stack.push(v);
            }

            // ---- variables ----
            O::LocalGet { local_index } => {
                let var = self.local(local_index, off)?;
                let v = self.b.use_var(var);
                self.stack.push(v);
            }
            O::LocalSet { local_index } => {
                let var = self.local(local_index, off)?;
                let v = self.stack.pop(off)?;
                self.b.def_var(var, v);
            }
            O::LocalTee { local_index } => {
                let var = self.local(local_index, off)?;
                let v = self.stack.peek(off)?;
                self.b.def_var(var, v);
            }
            O::GlobalGet { global_index } => {
                let v = self.env.global_get(&mut self.b, global_index);
                self.stack.push(v);
            }
            O::GlobalSet { global_index } => {
                let v = self.stack.pop(off)?;
                self.env.global_set(&mut self.b, global_index, v);
            }

            // ---- memory ----
            O::I32Load { memarg } => load!(self, off, memarg, 4, load, types::I32),
            O::I64Load { memarg } => load!(self, off, memarg, 8, load, types::I64),
            O::F32Load { memarg } => load!(self, off, memarg, 4, load, types::F32),
            O::F64Load { memarg } => load!(self, off, memarg, 8, load, types::F64),
            O::I32Load8S { memarg } => load!(self, off, memarg, 1, sload8, types::I32),
            O::I32Load8U { memarg } => load!(self, off, memarg, 1, uload8, types::I32),
            O::I32Load16S { memarg } => load!(self, off, memarg, 2, sload16, types::I32),
            O::I32Load16U { memarg } => load!(self, off, memarg, 2, uload16, types::I32),
            O::I64Load8S { memarg } => load!(self, off, memarg, 1, sload8, types::I64),
            O::I64Load8U { memarg } => load!(self, off, memarg, 1, uload8, types::I64),
            O::I64Load16S { memarg } => load!(self, off, memarg, 2, sload16, types::I64),
            O::I64Load16U { memarg } => load!(self, off, memarg, 2, uload16, types::I64),
            O::I64Load32S { memarg } => load!(self, off, memarg, 4, sload32),
            O::I64Load32U { memarg } => load!(self, off, memarg, 4, uload32),
            O::I32Store { memarg } | O::F32Store { memarg } => {
                store!(self, off, memarg, 4, store)
            }
            O::I64Store { memarg } | O::F64Store { memarg } => {
                store!(self, off, memarg, 8, store)
            }
            O::I32Store8 { memarg } | O::I64Store8 { memarg } => {
                store!(self, off, memarg, 1, istore8)
            }
            O::I32Store16 { memarg } | O::I64Store16 { memarg } => {
                store!(self, off, memarg, 2, istore16)
            }
            O::I64Store32 { memarg } => store!(self, off, memarg, 4, istore32),
            O::MemorySize { mem } => {
                let v = self.env.memory_size(&mut self.b, mem);
                self.stack.push(v);
            }
            O::MemoryGrow { mem } => {
                let delta = self.stack.pop(off)?;
                let v = self.env.memory_grow(&mut self.b, mem, delta);
                self.stack.push(v);
            }
            O::MemoryCopy { dst_mem, src_mem } => {
                let (dst, src, len) = self.stack.pop3(off)?;
                self.env
                    .memory_copy(&mut self.b, dst_mem, src_mem, dst, src, len);
            }
            O::MemoryFill { mem } => {
                let (dst, val, len) = self.stack.pop3(off)?;
                self.env.memory_fill(&mut self.b, mem, dst, val, len);
            }
            O::MemoryInit { data_index, mem } => {
                let (dst, src, len) = self.stack.pop3(off)?;
                self.env
                    .memory_init(&mut self.b, mem, data_index, dst, src, len);
            }
            O::DataDrop { data_index } => self.env.data_drop(&mut self.b, data_index),

            // ---- references and tables ----
            O::RefNull { .. } => {
                let v = self.b.ins().iconst(self.ptr, 0);
                self.stack.push(v);
            }
            O::RefIsNull => {
                let r = self.stack.pop(off)?;
                let c = self.b.ins().icmp_imm_u(IntCC::Equal, r, 0);
                let v = self.b.ins().uextend(types::I32, c);
                self.stack.push(v);
            }
            O::RefFunc { function_index } => {
                let v = self.env.ref_func(&mut self.b, function_index);
                self.stack.push(v);
            }
            O::TableGet { table } => {
                let index = self.stack.pop(off)?;
                let v = self.env.table_get(&mut self.b, table, index);
                self.stack.push(v);
            }
            O::TableSet { table } => {
                let (index, val) = self.stack.pop2(off)?;
                self.env.table_set(&mut self.b, table, index, val);
            }
            O::TableSize { table } => {
                let v = self.env.table_size(&mut self.b, table);
                self.stack.push(v);
            }
            O::TableGrow { table } => {
                let (init, delta) = self.stack.pop2(off)?;
                let v = self.env.table_grow(&mut self.b, table, init, delta);
                self.stack.push(v);
            }
            O::TableFill { table } => {
                let (dst, val, len) = self.stack.pop3(off)?;
                self.env.table_fill(&mut self.b, table, dst, val, len);
            }
            O::TableCopy {
                dst_table,
                src_table,
            } => {
                let (dst, src, len) = self.stack.pop3(off)?;
                self.env
                    .table_copy(&mut self.b, dst_table, src_table, dst, src, len);
            }
            O::TableInit { elem_index, table } => {
                let (dst, src, len) = self.stack.pop3(off)?;
                self.env
                    .table_init(&mut self.b, table, elem_index, dst, src, len);
            }
            O::ElemDrop { elem_index } => self.env.elem_drop(&mut self.b, elem_index),

            // ---- constants ----
            O::I32Const { value } => {
                // Narrow `iconst` immediates are zero-extended.
                let v = self.b.ins().iconst(types::I32, i64::from(value as u32));
                self.stack.push(v);
            }
            O::I64Const { value } => {
                let v = self.b.ins().iconst(types::I64, value);
                self.stack.push(v);
            }
            O::F32Const { value } => {
                let v = self.b.ins().f32const(Ieee32::with_bits(value.bits()));
                self.stack.push(v);
            }
            O::F64Const { value } => {
                let v = self.b.ins().f64const(Ieee64::with_bits(value.bits()));
                self.stack.push(v);
            }

            // ---- integer comparisons ----
            O::I32Eqz | O::I64Eqz => {
                let a = self.stack.pop(off)?;
                let c = self.b.ins().icmp_imm_u(IntCC::Equal, a, 0);
                let v = self.b.ins().uextend(types::I32, c);
                self.stack.push(v);
            }
            O::I32Eq | O::I64Eq => icmp!(self, off, Equal),
            O::I32Ne | O::I64Ne => icmp!(self, off, NotEqual),
            O::I32LtS | O::I64LtS => icmp!(self, off, SignedLessThan),
            O::I32LtU | O::I64LtU => icmp!(self, off, UnsignedLessThan),
            O::I32GtS | O::I64GtS => icmp!(self, off, SignedGreaterThan),
            O::I32GtU | O::I64GtU => icmp!(self, off, UnsignedGreaterThan),
            O::I32LeS | O::I64LeS => icmp!(self, off, SignedLessThanOrEqual),
            O::I32LeU | O::I64LeU => icmp!(self, off, UnsignedLessThanOrEqual),
            O::I32GeS | O::I64GeS => icmp!(self, off, SignedGreaterThanOrEqual),
            O::I32GeU | O::I64GeU => icmp!(self, off, UnsignedGreaterThanOrEqual),

            // ---- float comparisons ----
            O::F32Eq | O::F64Eq => fcmp!(self, off, Equal),
            O::F32Ne | O::F64Ne => fcmp!(self, off, NotEqual),
            O::F32Lt | O::F64Lt => fcmp!(self, off, LessThan),
            O::F32Gt | O::F64Gt => fcmp!(self, off, GreaterThan),
            O::F32Le | O::F64Le => fcmp!(self, off, LessThanOrEqual),
            O::F32Ge | O::F64Ge => fcmp!(self, off, GreaterThanOrEqual),

            // ---- integer arithmetic ----
            O::I32Clz | O::I64Clz => unop!(self, off, clz),
            O::I32Ctz | O::I64Ctz => unop!(self, off, ctz),
            O::I32Popcnt | O::I64Popcnt => unop!(self, off, popcnt),
            O::I32Add | O::I64Add => binop!(self, off, iadd),
            O::I32Sub | O::I64Sub => binop!(self, off, isub),
            O::I32Mul | O::I64Mul => binop!(self, off, imul),
            // Cranelift's division and remainder trap on a zero divisor
            // (and `sdiv` on INT_MIN / -1) with the wasm trap codes; x64
            // `srem` special-cases a -1 divisor to yield 0 as wasm requires.
            O::I32DivS | O::I64DivS => binop!(self, off, sdiv),
            O::I32DivU | O::I64DivU => binop!(self, off, udiv),
            O::I32RemS | O::I64RemS => binop!(self, off, srem),
            O::I32RemU | O::I64RemU => binop!(self, off, urem),
            O::I32And | O::I64And => binop!(self, off, band),
            O::I32Or | O::I64Or => binop!(self, off, bor),
            O::I32Xor | O::I64Xor => binop!(self, off, bxor),
            // CLIF shifts and rotates take the amount modulo the width, as
            // wasm does.
            O::I32Shl | O::I64Shl => binop!(self, off, ishl),
            O::I32ShrS | O::I64ShrS => binop!(self, off, sshr),
            O::I32ShrU | O::I64ShrU => binop!(self, off, ushr),
            O::I32Rotl | O::I64Rotl => binop!(self, off, rotl),
            O::I32Rotr | O::I64Rotr => binop!(self, off, rotr),

            // ---- float arithmetic ----
            O::F32Abs | O::F64Abs => unop!(self, off, fabs),
            O::F32Neg | O::F64Neg => unop!(self, off, fneg),
            O::F32Ceil | O::F64Ceil => unop!(self, off, ceil),
            O::F32Floor | O::F64Floor => unop!(self, off, floor),
            O::F32Trunc | O::F64Trunc => unop!(self, off, trunc),
            O::F32Nearest | O::F64Nearest => unop!(self, off, nearest),
            O::F32Sqrt | O::F64Sqrt => unop!(self, off, sqrt),
            O::F32Add | O::F64Add => binop!(self, off, fadd),
            O::F32Sub | O::F64Sub => binop!(self, off, fsub),
            O::F32Mul | O::F64Mul => binop!(self, off, fmul),
            O::F32Div | O::F64Div => binop!(self, off, fdiv),
            // CLIF `fmin`/`fmax` propagate NaN and order -0 < +0, as wasm.
            O::F32Min | O::F64Min => binop!(self, off, fmin),
            O::F32Max | O::F64Max => binop!(self, off, fmax),
            O::F32Copysign | O::F64Copysign => binop!(self, off, fcopysign),

            // ---- conversions ----
            O::I32WrapI64 => unop!(self, off, ireduce, types::I32),
            O::I64ExtendI32S => unop!(self, off, sextend, types::I64),
            O::I64ExtendI32U => unop!(self, off, uextend, types::I64),
            // Trapping conversions: NaN traps BAD_CONVERSION_TO_INTEGER,
            // out of range INTEGER_OVERFLOW, matching wasm's two messages.
            O::I32TruncF32S | O::I32TruncF64S => unop!(self, off, fcvt_to_sint, types::I32),
            O::I32TruncF32U | O::I32TruncF64U => unop!(self, off, fcvt_to_uint, types::I32),
            O::I64TruncF32S | O::I64TruncF64S => unop!(self, off, fcvt_to_sint, types::I64),
            O::I64TruncF32U | O::I64TruncF64U => unop!(self, off, fcvt_to_uint, types::I64),
            O::I32TruncSatF32S | O::I32TruncSatF64S => {
                unop!(self, off, fcvt_to_sint_sat, types::I32)
            }
            O::I32TruncSatF32U | O::I32TruncSatF64U => {
                unop!(self, off, fcvt_to_uint_sat, types::I32)
            }
            O::I64TruncSatF32S | O::I64TruncSatF64S => {
                unop!(self, off, fcvt_to_sint_sat, types::I64)
            }
            O::I64TruncSatF32U | O::I64TruncSatF64U => {
                unop!(self, off, fcvt_to_uint_sat, types::I64)
            }
            O::F32ConvertI32S | O::F32ConvertI64S => {
                unop!(self, off, fcvt_from_sint, types::F32)
            }
            O::F32ConvertI32U | O::F32ConvertI64U => {
                unop!(self, off, fcvt_from_uint, types::F32)
            }
            O::F64ConvertI32S | O::F64ConvertI64S => {
                unop!(self, off, fcvt_from_sint, types::F64)
            }
            O::F64ConvertI32U | O::F64ConvertI64U => {
                unop!(self, off, fcvt_from_uint, types::F64)
            }
            O::F32DemoteF64 => unop!(self, off, fdemote, types::F32),
            O::F64PromoteF32 => unop!(self, off, fpromote, types::F64),
            O::I32ReinterpretF32 => unop!(self, off, bitcast, types::I32, MemFlagsData::new()),
            O::I64ReinterpretF64 => unop!(self, off, bitcast, types::I64, MemFlagsData::new()),
            O::F32ReinterpretI32 => unop!(self, off, bitcast, types::F32, MemFlagsData::new()),
            O::F64ReinterpretI64 => unop!(self, off, bitcast, types::F64, MemFlagsData::new()),
            O::I32Extend8S => sext!(self, off, types::I8, types::I32),
            O::I32Extend16S => sext!(self, off, types::I16, types::I32),
            O::I64Extend8S => sext!(self, off, types::I8, types::I64),
            O::I64Extend16S => sext!(self, off, types::I16, types::I64),
            O::I64Extend32S => sext!(self, off, types::I32, types::I64),

            // ---- SIMD (`simd.rs`) ----
            _ => {
                if !self.simd_operator(op, off)? {
                    return Err(TranslateError::Unsupported {
                        op: op_name(op),
                        offset: off,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
