//! The translator's value and control stacks.
//!
//! Owns the two stacks `translate.rs` keeps while it walks a function body:
//! - [`ValueStack`]: the SSA values standing for the wasm operand stack;
//! - [`ControlFrame`]s: one per open `block` / `loop` / `if` (plus the
//!   implicit frame of the function body), recording where branches to the
//!   label go and how many values they carry.
//!
//! Invariants: a frame's `height` is the value-stack height below its
//! parameters; when the frame ends, the stack is cut back to `height` and the
//! frame's results are pushed. Every pop is checked and reports
//! [`TranslateError::Malformed`] instead of panicking, so that a body that
//! slipped past validation cannot crash the runtime.

use super::translate::TranslateError;
use cranelift_codegen::ir::{Block, Inst, Value};

/// The operand stack of the function being translated.
#[derive(Default)]
pub(crate) struct ValueStack {
    values: Vec<Value>,
}

impl ValueStack {
    /// Push one value.
    pub(crate) fn push(&mut self, v: Value) {
        self.values.push(v);
    }

    /// Push several values in order (the last one ends on top).
    pub(crate) fn extend(&mut self, vs: &[Value]) {
        self.values.extend_from_slice(vs);
    }

    /// The stack height below the top `n` values.
    pub(crate) fn height_below(&self, n: usize, offset: usize) -> Result<usize, TranslateError> {
        self.values
            .len()
            .checked_sub(n)
            .ok_or_else(|| underflow(offset))
    }

    /// Pop the top value.
    pub(crate) fn pop(&mut self, offset: usize) -> Result<Value, TranslateError> {
        self.values.pop().ok_or_else(|| underflow(offset))
    }

    /// The top value, without popping it.
    pub(crate) fn peek(&self, offset: usize) -> Result<Value, TranslateError> {
        self.values.last().copied().ok_or_else(|| underflow(offset))
    }

    /// Pop two values, returned in push order (`(a, b)` for `a b` with `b` on
    /// top).
    pub(crate) fn pop2(&mut self, offset: usize) -> Result<(Value, Value), TranslateError> {
        let b = self.pop(offset)?;
        let a = self.pop(offset)?;
        Ok((a, b))
    }

    /// Pop three values, returned in push order.
    pub(crate) fn pop3(&mut self, offset: usize) -> Result<(Value, Value, Value), TranslateError> {
        let c = self.pop(offset)?;
        let (a, b) = self.pop2(offset)?;
        Ok((a, b, c))
    }

    /// The top `n` values, in push order, without popping them.
    pub(crate) fn peek_n(&self, n: usize, offset: usize) -> Result<&[Value], TranslateError> {
        let start = self.height_below(n, offset)?;
        Ok(&self.values[start..])
    }

    /// Pop the top `n` values, returned in push order.
    pub(crate) fn pop_n(&mut self, n: usize, offset: usize) -> Result<Vec<Value>, TranslateError> {
        let start = self.height_below(n, offset)?;
        Ok(self.values.split_off(start))
    }

    /// Cut the stack back to `height` values (no-op if it is already lower,
    /// which happens after unreachable code).
    pub(crate) fn truncate(&mut self, height: usize) {
        self.values.truncate(height);
    }

    /// Keep the top `keep` values but drop everything between `height` and
    /// them: the stack effect of leaving a frame by falling through.
    pub(crate) fn collapse(
        &mut self,
        height: usize,
        keep: usize,
        offset: usize,
    ) -> Result<(), TranslateError> {
        let start = self.height_below(keep, offset)?;
        if start < height {
            return Err(underflow(offset));
        }
        self.values.drain(height..start);
        Ok(())
    }
}

/// The error for popping more values than the stack holds.
fn underflow(offset: usize) -> TranslateError {
    TranslateError::malformed("operand stack underflow", offset)
}

/// What kind of construct a control frame stands for, with the blocks that
/// belong to it.
pub(crate) enum FrameKind {
    /// A `block`, or the implicit frame of the function body. Branches go to
    /// `exit`, whose parameters are the results.
    Block {
        /// The continuation after `end`.
        exit: Block,
    },
    /// A `loop`. Branches go back to `header`, whose parameters are the loop
    /// parameters. Falling off the end continues in the current block, so a
    /// loop needs no exit block.
    Loop {
        /// The loop header (back-edge target, sealed at `end`).
        header: Block,
    },
    /// An `if`, with or without `else`.
    If {
        /// The continuation after `end`.
        exit: Block,
        /// The block of the `else` arm. `None` while the `brif` of the head
        /// still targets `exit` directly (possible when the `if` has no
        /// parameters and no results); created when `else` is seen.
        else_block: Option<Block>,
        /// The `brif` of the head, retargeted when a lazily created
        /// `else_block` appears.
        branch: Inst,
        /// The parameter values at the head, which the `else` arm starts
        /// with (the head dominates both arms, so they can be reused).
        else_params: Vec<Value>,
        /// `None` before `else`; then whether the `then` arm fell through.
        then_reachable: Option<bool>,
    },
}

/// One open structured-control construct.
pub(crate) struct ControlFrame {
    /// The construct and its blocks.
    pub(crate) kind: FrameKind,
    /// Number of parameters (values taken from the stack on entry).
    pub(crate) num_params: usize,
    /// Number of results (values left on the stack at `end`).
    pub(crate) num_results: usize,
    /// Value-stack height below the parameters.
    pub(crate) height: usize,
    /// Whether some branch already targets the exit block.
    pub(crate) exit_reached: bool,
}

impl ControlFrame {
    /// Where a branch to this frame's label goes and how many values it
    /// carries: the header and parameters of a loop, the exit and results
    /// otherwise.
    pub(crate) fn branch_target(&self) -> (Block, usize) {
        match self.kind {
            FrameKind::Loop { header } => (header, self.num_params),
            FrameKind::Block { exit } | FrameKind::If { exit, .. } => (exit, self.num_results),
        }
    }

    /// Whether branches to this frame's label go to its exit block (not to a
    /// loop header).
    pub(crate) fn branches_to_exit(&self) -> bool {
        !matches!(self.kind, FrameKind::Loop { .. })
    }
}
