//! The interface between the operator translator and everything that knows
//! the runtime layout.
//!
//! `translate.rs` walks wasm operators and builds CLIF for pure computation
//! (arithmetic, locals, control flow, loads and stores once an address is
//! known). Anything that touches the vmctx, the per-thread slot table, the poll
//! word, linear memory bases, tables, globals or runtime functions goes through
//! [`FuncEnvironment`], implemented by `func_env.rs`. This keeps the translator
//! free of layout knowledge (wasmtime's `code_translator.rs` ↔
//! `func_environ.rs` split).
//!
//! Conventions shared by both sides:
//! - every compiled wasm function has the CLIF signature returned by
//!   [`FuncEnvironment::signature`]: two hidden pointer parameters (`vmctx`,
//!   `vmthread`) followed by the wasm parameters; results are the wasm results;
//! - reference values (`funcref`, `externref`) are pointer-sized integers
//!   (`I64` on x86-64) where 0 is null;
//! - traps use the codes of [`crate::trap::TrapKind::code`].

use cranelift_codegen::ir::{self, MemFlagsData, Value};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::FunctionBuilder;
use wasmparser::FuncType;

/// The hidden parameters every compiled function receives, in this order,
/// before its wasm parameters.
pub(crate) const HIDDEN_PARAMS: usize = 2;

/// What the translator asks of the layout-aware side. One instance per
/// function being compiled.
pub(crate) trait FuncEnvironment {
    /// Pointer type of the target (I64 on x86-64); also the type of references.
    fn pointer_type(&self) -> ir::Type;

    /// The target's frontend configuration (default calling convention,
    /// pointer width), which `FunctionBuilder::finalize` needs. Taken from
    /// the ISA (`TargetIsa::frontend_config`); the translator cannot name
    /// the pointer-width type itself without depending on `target-lexicon`.
    fn target_config(&self) -> TargetFrontendConfig;

    /// The type of defined-or-imported function `func`.
    fn func_type(&self, func: u32) -> &FuncType;

    /// The function type at index `type_index` of the type section.
    fn type_at(&self, type_index: u32) -> &FuncType;

    /// Called once, in the entry block, after the block parameters are
    /// appended and before any operator is translated. `vmctx` and
    /// `vmthread` are the hidden entry-block parameters. Emits the stack
    /// limit set-up and the function-entry poll, which `entry_poll` false
    /// rules out: the translator passes false for functions with neither
    /// calls nor loops (they run a bounded number of instructions); when
    /// true, the environment may still leave the poll out (`polls.rs`).
    fn prologue(
        &mut self,
        builder: &mut FunctionBuilder,
        vmctx: Value,
        vmthread: Value,
        entry_poll: bool,
    );

    /// Emit a poll of the thread's poll word; called at the head of every
    /// `loop` body (back-edge target). The builder is positioned in a block
    /// that may be split.
    fn poll(&mut self, builder: &mut FunctionBuilder);

    /// Whether [`Self::transfer_poll`] spills (frame transfer is compiled
    /// in): only then does the translator compute which locals are live
    /// at each loop header.
    fn transfer_polls(&self) -> bool {
        false
    }

    /// Emit the poll of a loop header from which a frame can be
    /// transferred (`docs/transfer.md`): like [`Self::poll`], but its slow
    /// path first spills `locals` (every wasm local, parameters first;
    /// `None` for a local dead at the header, whose slot gets zero; 8
    /// bytes a local, 16 when the function has a `v128` local: `wide`) and
    /// names the loop by its `ordinal`; when the runtime answers with a
    /// transfer, it tail-calls the new version's entry for that header.
    /// Called only where the operand stack is empty and the loop has no
    /// parameters.
    fn transfer_poll(
        &mut self,
        builder: &mut FunctionBuilder,
        ordinal: u32,
        locals: &[Option<cranelift_frontend::Variable>],
        wide: bool,
    ) {
        let _ = (ordinal, locals, wide);
        self.poll(builder);
    }

    /// `call func` through the caller's world slot table. Returns the results.
    fn call(&mut self, builder: &mut FunctionBuilder, func: u32, args: &[Value]) -> Vec<Value>;

    /// `call_indirect type_index table`: `callee` is the i32 table index.
    /// Emits the bounds, null and signature checks. Returns the results.
    fn call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        type_index: u32,
        callee: Value,
        args: &[Value],
    ) -> Vec<Value>;

    /// The native address of a `size`-byte access of memory `memory` at wasm
    /// address `index + offset` (`index` is an i32 value, `offset` the static
    /// memarg offset), with bounds checked; and the flags to use for the
    /// load/store (they carry the out-of-bounds trap code).
    fn memory_address(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        index: Value,
        offset: u64,
        size: u32,
    ) -> (Value, MemFlagsData);

    /// `memory.size`, in pages (i32).
    fn memory_size(&mut self, builder: &mut FunctionBuilder, memory: u32) -> Value;
    /// `memory.grow`: old size in pages, or -1 (i32).
    fn memory_grow(&mut self, builder: &mut FunctionBuilder, memory: u32, delta: Value) -> Value;
    /// `memory.copy dst src` with i32 operands.
    fn memory_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_memory: u32,
        src_memory: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    /// `memory.fill` with i32 operands.
    fn memory_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        dst: Value,
        val: Value,
        len: Value,
    );
    /// `memory.init data memory` with i32 operands.
    fn memory_init(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        data: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    /// `data.drop`.
    fn data_drop(&mut self, builder: &mut FunctionBuilder, data: u32);

    /// `global.get`.
    fn global_get(&mut self, builder: &mut FunctionBuilder, global: u32) -> Value;
    /// `global.set`.
    fn global_set(&mut self, builder: &mut FunctionBuilder, global: u32, value: Value);

    /// `table.get` (i32 index) → reference.
    fn table_get(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value) -> Value;
    /// `table.set`.
    fn table_set(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value, value: Value);
    /// `table.size` → i32.
    fn table_size(&mut self, builder: &mut FunctionBuilder, table: u32) -> Value;
    /// `table.grow` → old size or -1 (i32).
    fn table_grow(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        init: Value,
        delta: Value,
    ) -> Value;
    /// `table.fill`.
    fn table_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        dst: Value,
        value: Value,
        len: Value,
    );
    /// `table.copy dst src`.
    fn table_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_table: u32,
        src_table: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    /// `table.init elem table`.
    fn table_init(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        elem: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    /// `elem.drop`.
    fn elem_drop(&mut self, builder: &mut FunctionBuilder, elem: u32);
    /// `ref.func` → a non-null funcref naming `func` of this instance.
    fn ref_func(&mut self, builder: &mut FunctionBuilder, func: u32) -> Value;
}
