//! The layout-aware half of the compiler: slot calls, polls, memory bases,
//! tables, globals and runtime calls, for one function being compiled.
//!
//! Every sequence here follows `vm/offsets.rs`. The two that matter most:
//!
//! ```text
//! slot call:  world = load [vmthread + WORLD]          ; 0 or WORLD_STRIDE
//!             code  = load [callee_vmctx + world + VMCTX_SLOTS + 16*slot]
//!             ctx   = load [... + 8]     ; imports and added functions only
//!             call_indirect code(ctx, vmthread, args...)
//! poll:       w = load [vmthread + POLL]; brif w, slow, cont
//!             slow: call_indirect [vmthread + POLL_STUB](vmthread)
//!                   (preserve_all: the stub writes the exit record, runs
//!                   the poll, traps on cancellation; no register clobbered)
//! ```
//!
//! None of these loads is `readonly`: the world selector and the slot tables
//! change under a running thread, and Cranelift must not reuse a stale value
//! across a call or hoist it out of a loop (ENGINEERING-NOTES, "Slot calls").
//! Memory bases never move (each memory reserves its whole range), so those
//! loads are `readonly` and may be hoisted.

use super::environ::FuncEnvironment;
use crate::module::ModuleInfo;
use crate::trap::TrapKind;
use crate::vm::libcalls::Builtin;
use crate::vm::offsets::*;
use cranelift_codegen::ir::{self, types, InstBuilder, MemFlagsData, Value};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::FunctionBuilder;
use std::collections::HashMap;
use wasmparser::{FuncType, ValType};

/// Cranelift type of a wasm value type (references are pointer-sized).
pub(crate) fn clif_type(ty: ValType) -> ir::Type {
    match ty {
        ValType::I32 => types::I32,
        ValType::I64 => types::I64,
        ValType::F32 => types::F32,
        ValType::F64 => types::F64,
        ValType::V128 => types::I8X16,
        ValType::Ref(_) => types::I64,
    }
}

/// CLIF signature of a wasm function type with the two hidden parameters.
///
/// Wasm functions use Cranelift's `tail` convention whatever the host's:
/// it returns up to 8 integer and 8 float results in registers, where
/// System V returns 2 of each. Results beyond those go through a return
/// area: with the engine's `enable_multi_ret_implicit_sret` flag, Cranelift
/// gives such a signature a hidden first parameter pointing at a stack area
/// the caller reserves, the callee stores the overflow results there and the
/// caller loads them after the call (issue 11). Caller and callee derive it
/// from the same signature, so it holds for slot calls, `call_indirect` and
/// both trampolines alike; signatures whose results fit are unchanged.
pub(crate) fn wasm_signature(ty: &FuncType, _host: CallConv) -> ir::Signature {
    let mut sig = ir::Signature::new(CallConv::Tail);
    sig.params.push(ir::AbiParam::new(types::I64));
    // The thread block is Cranelift's "vmctx" global-value base: the stack
    // limit is loaded from it.
    sig.params.push(ir::AbiParam::special(
        types::I64,
        ir::ArgumentPurpose::VMContext,
    ));
    for p in ty.params() {
        sig.params.push(ir::AbiParam::new(clif_type(*p)));
    }
    for r in ty.results() {
        sig.returns.push(ir::AbiParam::new(clif_type(*r)));
    }
    sig
}

/// Signature of an OSR entry (`docs/transfer.md`): `(vmctx, vmthread,
/// buffer)` with the function's results, in the wasm functions' `tail`
/// convention so that old code can tail-call it.
pub(crate) fn osr_signature(returns: &[ir::AbiParam]) -> ir::Signature {
    let mut sig = ir::Signature::new(CallConv::Tail);
    sig.params.push(ir::AbiParam::new(types::I64));
    sig.params.push(ir::AbiParam::special(
        types::I64,
        ir::ArgumentPurpose::VMContext,
    ));
    sig.params.push(ir::AbiParam::new(types::I64));
    sig.returns = returns.to_vec();
    sig
}

fn mutable() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// The alias regions of the memory wasm code names (`ir::AliasRegion`):
/// Cranelift's alias analysis treats a store without a region as a store
/// to everything, so a heap store would otherwise make it reload a global
/// it had just read, and a `global.set` every heap value (wasmtime tags
/// the same way). Each location is reached through one region only: the
/// heap by wasm loads and stores, a global's cell by `global.get/set`, a
/// table's elements by `table.get/set` and `call_indirect`. Everything
/// else the runtime changes under running code (slots, the world
/// selector, the poll word and hints, and these three too: guest-stack
/// switching writes the `__stack_pointer` cell, bundles write table 0 and
/// memory 0) changes only during a call, which Cranelift treats as a
/// fence for every region. The ids are fixed so that regions of inlined
/// functions merge by meaning (`AliasRegionData::user_id`).
#[derive(Clone, Copy)]
enum Region {
    /// Linear memories.
    Heap = 1,
    /// Global cells.
    Globals = 2,
    /// Table elements.
    Tables = 3,
    /// Fields of the vmctx that never change while code runs (memory 0's
    /// base, global cell addresses, the builtin table): loads of them in
    /// this region are merged only between calls, so that no value of
    /// them lives across a call (`FuncEnv::base_var`).
    Vmctx = 4,
}

impl Region {
    fn get(self, builder: &mut FunctionBuilder) -> ir::AliasRegion {
        let description = match self {
            Region::Heap => "heap",
            Region::Globals => "globals",
            Region::Tables => "table elements",
            Region::Vmctx => "vmctx",
        };
        builder.func.dfg.alias_regions.insert(ir::AliasRegionData {
            user_id: self as u32,
            description: description.into(),
        })
    }

    /// `flags` in this region.
    fn tag(self, builder: &mut FunctionBuilder, flags: MemFlagsData) -> MemFlagsData {
        flags.with_alias_region(Some(self.get(builder)))
    }
}

fn readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

/// Environment for one function of one module.
pub(crate) struct FuncEnv<'a> {
    info: &'a ModuleInfo,
    /// The engine the code is for: its signature ids are the type ids
    /// `call_indirect` checks, constants for the engine's life.
    engine: &'a crate::engine::Engine,
    call_conv: CallConv,
    frontend: cranelift_codegen::isa::TargetFrontendConfig,
    /// False only for the baseline build: direct calls, no polls.
    patchable: bool,
    /// False when the module's call graph shows that this function need
    /// not poll at entry even if it calls or loops (`polls.rs`).
    entry_poll: bool,
    /// Functions below this index that are not imports are the target
    /// module's own: their slots always hold this instance's vmctx.
    own_funcs: u32,
    vmctx: Option<Value>,
    vmthread: Option<Value>,
    /// Memory 0's base, which never moves, as a frontend variable defined
    /// in the prologue and again after every call, so that no value of it
    /// lives across a call. One `readonly can_move` load for the whole
    /// function (as wasmtime does) lives across all of them: in a function
    /// that calls, it needs one of the five callee-saved registers, and when
    /// it loses that contest, every use in a hot loop reloads it from the
    /// stack (matmul's i-k-j loop, inlined by rustc into a function that
    /// allocates, did three times an iteration: `benches/README.md`,
    /// "Against wasmtime"). A reload after a call costs one load.
    base_var: Option<cranelift_frontend::Variable>,
    sigs: HashMap<u32, ir::SigRef>,
    builtin_sigs: HashMap<Builtin, ir::SigRef>,
    poll_sig: Option<ir::SigRef>,
    /// The spill area of transfer polls (shared by the function's loop
    /// headers) and how many locals it holds.
    transfer_slot: Option<(ir::StackSlot, usize)>,
    /// The engine's transfer stub (0: none, plain polls only).
    transfer_stub: usize,
    /// Callees to inline (`inline.rs`): calls to them are direct, and
    /// Cranelift's inliner replaces each with the callee's body.
    inline: Option<&'a std::collections::HashSet<u32>>,
}

impl<'a> FuncEnv<'a> {
    /// Environment for compiling a function of `info`.
    pub(crate) fn new(
        info: &'a ModuleInfo,
        engine: &'a crate::engine::Engine,
        frontend: cranelift_codegen::isa::TargetFrontendConfig,
        patchable: bool,
        entry_poll: bool,
        own_funcs: u32,
    ) -> Self {
        FuncEnv {
            info,
            engine,
            call_conv: frontend.default_call_conv,
            frontend,
            patchable,
            entry_poll,
            own_funcs,
            vmctx: None,
            vmthread: None,
            base_var: None,
            sigs: HashMap::new(),
            builtin_sigs: HashMap::new(),
            poll_sig: None,
            transfer_slot: None,
            transfer_stub: 0,
            inline: None,
        }
    }

    /// Inline calls to the functions of `set` (`inline.rs`): they are
    /// emitted as direct calls, which the inliner then replaces.
    pub(crate) fn set_inline(&mut self, set: &'a std::collections::HashSet<u32>) {
        self.inline = Some(set);
    }

    fn vmctx(&self) -> Value {
        self.vmctx.expect("prologue sets vmctx")
    }

    fn vmthread(&self) -> Value {
        self.vmthread.expect("prologue sets vmthread")
    }

    /// Define memory 0's base anew: in the prologue and after every call
    /// (see `base_var`). The load is in the `vmctx` region, which only
    /// calls change, so alias analysis merges it with nothing from before
    /// the last call; its address never changes, so what the code computes
    /// is the same whichever definition a use sees.
    fn define_base(&mut self, builder: &mut FunctionBuilder) {
        let Some(var) = self.base_var else {
            return;
        };
        let flags = Region::Vmctx.tag(builder, mutable());
        let base = builder
            .ins()
            .load(types::I64, flags, self.vmctx(), VMCTX_MEMORY0_BASE);
        builder.def_var(var, base);
    }

    fn sig_for_type(&mut self, builder: &mut FunctionBuilder, type_index: u32) -> ir::SigRef {
        if let Some(s) = self.sigs.get(&type_index) {
            return *s;
        }
        let sig = wasm_signature(&self.info.types[type_index as usize], self.call_conv);
        let r = builder.import_signature(sig);
        self.sigs.insert(type_index, r);
        r
    }

    /// Call a runtime builtin through the vmctx builtin table.
    fn call_builtin(
        &mut self,
        builder: &mut FunctionBuilder,
        b: Builtin,
        args: &[Value],
    ) -> Option<Value> {
        let sig = match self.builtin_sigs.get(&b) {
            Some(s) => *s,
            None => {
                let mut sig = ir::Signature::new(self.call_conv);
                sig.params.push(ir::AbiParam::new(types::I64));
                sig.params.push(ir::AbiParam::new(types::I64));
                for t in b.params() {
                    sig.params.push(ir::AbiParam::new(*t));
                }
                if let Some(r) = b.result() {
                    sig.returns.push(ir::AbiParam::new(r));
                }
                let s = builder.import_signature(sig);
                self.builtin_sigs.insert(b, s);
                s
            }
        };
        let vmctx = self.vmctx();
        let vmthread = self.vmthread();
        // Reloaded at each call (merged only between calls): a builtin's
        // address kept from the function's entry would take a callee-saved
        // register, or a stack slot, for the whole function.
        let flags = Region::Vmctx.tag(builder, mutable());
        let table = builder.ins().load(types::I64, flags, vmctx, VMCTX_BUILTINS);
        let f = builder.ins().load(types::I64, flags, table, (b as i32) * 8);
        let mut all = vec![vmctx, vmthread];
        all.extend_from_slice(args);
        let call = builder.ins().call_indirect(sig, f, &all);
        let result = builder.inst_results(call).first().copied();
        self.define_base(builder);
        result
    }

    /// Trap with `kind` when `status` is nonzero.
    fn trap_if_nonzero(&mut self, builder: &mut FunctionBuilder, status: Value, kind: TrapKind) {
        builder.ins().trapnz(status, kind.code());
    }

    /// Load (code, ctx) of the slot at `world0 + off` in this thread's
    /// world: `world0 + off` is the slot's address in world 0 (a vmctx
    /// plus `VMCTX_SLOTS` and the slot's offset, or a funcref record's
    /// `entry`), and world 1's table lies `WORLD_STRIDE` further
    /// (`vm/vmctx_block.rs`). With `ctx`, the slot's context is known and
    /// not loaded. The baseline build does not patch (`Config::patchable`):
    /// its calls use world 0's slots, as its direct calls use version 0.
    fn slot_lookup(
        &mut self,
        builder: &mut FunctionBuilder,
        world0: Value,
        off: i32,
        ctx: Option<Value>,
    ) -> (Value, Value) {
        let at = if self.patchable {
            let world = self.world(builder);
            builder.ins().iadd(world0, world)
        } else {
            world0
        };
        let code = builder
            .ins()
            .load(types::I64, mutable(), at, off + SLOT_CODE);
        let ctx = ctx.unwrap_or_else(|| {
            builder
                .ins()
                .load(types::I64, mutable(), at, off + SLOT_VMCTX)
        });
        (code, ctx)
    }

    /// The running thread's world (`VMThread.world`: 0 or `WORLD_STRIDE`,
    /// the distance of its slot table from world 0's).
    fn world(&mut self, builder: &mut FunctionBuilder) -> Value {
        builder
            .ins()
            .load(types::I64, mutable(), self.vmthread(), THREAD_WORLD)
    }

    /// `brif poll_word, slow, cont`, leaving the builder in the (cold,
    /// sealed) `slow` block. Returns (slow, cont).
    fn poll_branch(&mut self, builder: &mut FunctionBuilder) -> (ir::Block, ir::Block) {
        let vmthread = self.vmthread();
        // Plain loads: the slow path re-reads the poll word with SeqCst.
        // With a memory, the word is memory 0's poll hint, below the base
        // that memory accesses keep in a register (thread/poll.rs, "Hints"):
        // a hot loop then needs no register, and no reload, for `vmthread`.
        let word = if self.info.memories.is_empty() {
            builder
                .ins()
                .load(types::I64, mutable(), vmthread, THREAD_POLL)
        } else {
            let base = self.memory_base(builder, 0);
            builder
                .ins()
                .load(types::I64, mutable(), base, MEMORY_POLL_HINT)
        };
        let slow = builder.create_block();
        let cont = builder.create_block();
        builder.ins().brif(word, slow, &[], cont, &[]);
        builder.set_cold_block(slow);
        builder.switch_to_block(slow);
        builder.seal_block(slow);
        (slow, cont)
    }

    /// Call the poll stub (`preserve_all`: clobbers nothing), which writes
    /// the exit record, runs the poll and traps on cancellation. Its
    /// address is loaded here, in the cold block: a value computed for the
    /// slow path must not be hoisted into the hot code, where it would take
    /// a register across the whole loop or function.
    fn call_poll_stub(&mut self, builder: &mut FunctionBuilder) {
        let vmthread = self.vmthread();
        let stub = builder
            .ins()
            .load(types::I64, mutable(), vmthread, THREAD_POLL_STUB);
        let sig = match self.poll_sig {
            Some(s) => s,
            None => {
                let s = builder.import_signature(super::trampolines::poll_stub_signature(false));
                self.poll_sig = Some(s);
                s
            }
        };
        builder.ins().call_indirect(sig, stub, &[vmthread]);
    }

    /// Set the address of the engine's transfer stub; without it, loop
    /// headers get plain polls.
    pub(crate) fn set_transfer_stub(&mut self, addr: usize) {
        self.transfer_stub = addr;
    }

    fn global_cell(&mut self, builder: &mut FunctionBuilder, global: u32) -> Value {
        if global < VMCTX_INLINE_GLOBALS {
            let off = VMCTX_GLOBAL_CELLS + 8 * global as i32;
            // The cell's address never changes, but a `readonly can_move`
            // load of it would be one value for the whole function, alive
            // across every call (`__stack_pointer`'s, read in rustc's
            // prologues and epilogues, took a callee-saved register in
            // SHA-256's round function): reloaded after calls instead.
            let flags = Region::Vmctx.tag(builder, mutable());
            return builder.ins().load(types::I64, flags, self.vmctx(), off);
        }
        let arr = builder
            .ins()
            .load(types::I64, readonly(), self.vmctx(), VMCTX_GLOBALS);
        builder
            .ins()
            .load(types::I64, readonly(), arr, (global as i32) * 8)
    }

    fn memory_def(&mut self, builder: &mut FunctionBuilder, memory: u32) -> Value {
        let arr = builder
            .ins()
            .load(types::I64, readonly(), self.vmctx(), VMCTX_MEMORIES);
        builder
            .ins()
            .load(types::I64, readonly(), arr, (memory as i32) * 8)
    }

    /// The base of `memory`, which never moves; memory 0's is held inline
    /// in the vmctx.
    fn memory_base(&mut self, builder: &mut FunctionBuilder, memory: u32) -> Value {
        if memory == 0 {
            let var = self
                .base_var
                .expect("a module with a memory defines its base");
            return builder.use_var(var);
        }
        let def = self.memory_def(builder, memory);
        builder.ins().load(types::I64, readonly(), def, MEMORY_BASE)
    }

    fn table_def(&mut self, builder: &mut FunctionBuilder, table: u32) -> Value {
        let arr = builder
            .ins()
            .load(types::I64, readonly(), self.vmctx(), VMCTX_TABLES);
        builder
            .ins()
            .load(types::I64, readonly(), arr, (table as i32) * 8)
    }

    /// Address of element `index` of `table`, trapping when out of bounds.
    fn table_elem_addr(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        index: Value,
        kind: TrapKind,
    ) -> Value {
        let ge = ir::condcodes::IntCC::UnsignedGreaterThanOrEqual;
        // A table whose limits are equal never grows (`Table::grow` keeps to
        // the maximum; an import of it has the same length, as the link
        // check demands `len >= min` and `max <= declared max`), so its
        // length is a constant and its element array never moves: the
        // base may then be hoisted out of loops (wasmtime does the same).
        let fixed = {
            let t = &self.info.tables[table as usize];
            (Some(t.minimum) == t.maximum).then_some(t.minimum)
        };
        // Table 0's array, when it never moves, is held inline in the vmctx.
        let (oob, base) = match fixed {
            Some(len) => {
                let oob = builder.ins().icmp_imm_u(ge, index, i64::from(len));
                let base = if table == 0 {
                    let vmctx = self.vmctx();
                    builder
                        .ins()
                        .load(types::I64, readonly(), vmctx, VMCTX_TABLE0_ELEMS)
                } else {
                    let def = self.table_def(builder, table);
                    builder.ins().load(types::I64, readonly(), def, TABLE_BASE)
                };
                (oob, base)
            }
            None => {
                let def = self.table_def(builder, table);
                let len = builder.ins().load(types::I32, mutable(), def, TABLE_LENGTH);
                let base = builder.ins().load(types::I64, mutable(), def, TABLE_BASE);
                (builder.ins().icmp(ge, index, len), base)
            }
        };
        builder.ins().trapnz(oob, kind.code());
        let idx = builder.ins().uextend(types::I64, index);
        let scaled = builder.ins().ishl_imm_u(idx, 3);
        builder.ins().iadd(base, scaled)
    }

    fn call_through(
        &mut self,
        builder: &mut FunctionBuilder,
        sig: ir::SigRef,
        code: Value,
        ctx: Value,
        args: &[Value],
    ) -> Vec<Value> {
        let mut all = Vec::with_capacity(args.len() + 2);
        all.push(ctx);
        all.push(self.vmthread());
        all.extend_from_slice(args);
        let call = builder.ins().call_indirect(sig, code, &all);
        let results = builder.inst_results(call).to_vec();
        self.define_base(builder);
        results
    }
}

impl FuncEnvironment for FuncEnv<'_> {
    fn pointer_type(&self) -> ir::Type {
        types::I64
    }

    fn target_config(&self) -> cranelift_codegen::isa::TargetFrontendConfig {
        self.frontend
    }

    fn func_type(&self, func: u32) -> &FuncType {
        &self.info.types[self.info.func_types[func as usize] as usize]
    }

    fn type_at(&self, type_index: u32) -> &FuncType {
        &self.info.types[type_index as usize]
    }

    fn prologue(
        &mut self,
        builder: &mut FunctionBuilder,
        vmctx: Value,
        vmthread: Value,
        entry_poll: bool,
    ) {
        self.vmctx = Some(vmctx);
        self.vmthread = Some(vmthread);
        if !self.info.memories.is_empty() {
            self.base_var = Some(builder.declare_var(types::I64));
            self.define_base(builder);
        }
        // Stack limit: Cranelift adds the frame size and traps with
        // STACK_OVERFLOW before the frame is used.
        let thread_gv = builder.create_global_value(ir::GlobalValueData::VMContext);
        let flags = builder
            .func
            .dfg
            .mem_flags
            .insert_unchecked(MemFlagsData::trusted());
        let limit = builder.create_global_value(ir::GlobalValueData::Load {
            base: thread_gv,
            offset: THREAD_STACK_LIMIT.into(),
            global_type: types::I64,
            flags,
        });
        builder.func.stack_limit = Some(limit);
        if entry_poll && self.entry_poll {
            self.poll(builder);
        }
    }

    fn poll(&mut self, builder: &mut FunctionBuilder) {
        if !self.patchable {
            return;
        }
        let (_, cont) = self.poll_branch(builder);
        self.call_poll_stub(builder);
        builder.ins().jump(cont, &[]);
        builder.switch_to_block(cont);
        builder.seal_block(cont);
    }

    fn transfer_polls(&self) -> bool {
        self.transfer_stub != 0 && self.patchable
    }

    fn transfer_poll(
        &mut self,
        builder: &mut FunctionBuilder,
        ordinal: u32,
        locals: &[Option<cranelift_frontend::Variable>],
        wide: bool,
    ) {
        if self.transfer_stub == 0 {
            return self.poll(builder);
        }
        if !self.patchable {
            return;
        }
        let (_, cont) = self.poll_branch(builder);
        // The spill area (`docs/transfer.md`): [0] the entry to tail-call
        // (0: none), [1] the frame's vmctx in and the buffer the entry
        // reads out, then the locals from byte 16 on, 8 bytes each (16 in
        // a function with a `v128` local: `wide`). Written
        // only in this cold block: the hot path is the plain poll.
        let stride = if wide { 16 } else { 8 };
        let slot = match self.transfer_slot {
            Some((s, n)) if n >= locals.len() => s,
            _ => {
                let s = builder.create_sized_stack_slot(ir::StackSlotData::new(
                    ir::StackSlotKind::ExplicitSlot,
                    16 + stride * locals.len() as u32,
                    4,
                ));
                self.transfer_slot = Some((s, locals.len()));
                s
            }
        };
        for (i, &var) in locals.iter().enumerate() {
            // A local dead at the header is not read (its value stays out
            // of the loop's registers); its slot gets zero.
            let v = match var {
                Some(var) => builder.use_var(var),
                None => builder.ins().iconst(types::I64, 0),
            };
            builder
                .ins()
                .stack_store(types::I64, v, slot, 16 + stride as i32 * i as i32);
        }
        // [1] holds the frame's vmctx on the way in: a frame moves only
        // in the instance being patched.
        let (vmctx, vmthread) = (self.vmctx(), self.vmthread());
        builder.ins().stack_store(types::I64, vmctx, slot, 8);
        let spill = builder.ins().stack_addr(types::I64, slot, 0);
        let ord = builder.ins().iconst(types::I64, ordinal as i64);
        // The transfer stub's address is the engine's, which outlives the
        // code (modules hold their engine); a constant in the cold block.
        let stub = builder.ins().iconst(types::I64, self.transfer_stub as i64);
        let sig = builder.import_signature(super::trampolines::poll_stub_signature(true));
        builder
            .ins()
            .call_indirect(sig, stub, &[vmthread, spill, ord]);
        let entry = builder.ins().stack_load(types::I64, types::I64, slot, 0);
        let go = builder.create_block();
        builder.ins().brif(entry, go, &[], cont, &[]);
        builder.set_cold_block(go);
        builder.switch_to_block(go);
        builder.seal_block(go);
        let buf = builder.ins().stack_load(types::I64, types::I64, slot, 8);
        let sig = osr_signature(&builder.func.signature.returns);
        let sig = builder.import_signature(sig);
        builder
            .ins()
            .return_call_indirect(sig, entry, &[vmctx, vmthread, buf]);
        builder.switch_to_block(cont);
        builder.seal_block(cont);
    }

    fn call(&mut self, builder: &mut FunctionBuilder, func: u32, args: &[Value]) -> Vec<Value> {
        let type_index = self.info.func_types[func as usize];
        let sig = self.sig_for_type(builder, type_index);
        let vmctx = self.vmctx();
        let inlined = self.inline.is_some_and(|set| set.contains(&func));
        if (!self.patchable || inlined) && func >= self.info.num_imported_funcs {
            // Baseline build: a direct `call rel32` to the callee in the same
            // code unit, resolved when the unit is placed. Patchable build,
            // a callee to inline: the same direct call, which the inliner
            // replaces with the callee's body (`inline.rs`) before code is
            // emitted.
            let name = builder
                .func
                .declare_imported_user_function(ir::UserExternalName::new(0, func));
            let fref = builder.import_function(ir::ExtFuncData {
                name: ir::ExternalName::user(name),
                signature: sig,
                colocated: true,
                patchable: false,
            });
            let mut all = Vec::with_capacity(args.len() + 2);
            all.push(vmctx);
            all.push(self.vmthread());
            all.extend_from_slice(args);
            let call = builder.ins().call(fref, &all);
            let results = builder.inst_results(call).to_vec();
            self.define_base(builder);
            return results;
        }
        // The module's own functions always run with this instance's vmctx
        // (a bundle's replacement too); only imports and functions added by
        // a bundle (whose slot holds a "removed" stub and its context once
        // the bundle is reverted) need the slot's context.
        let own = func >= self.info.num_imported_funcs && func < self.own_funcs;
        // Slot indices are below MAX_SLOTS: the offset fits in 32 bits.
        let off = VMCTX_SLOTS + (func as i64 * SLOT_SIZE) as i32;
        let (code, ctx) = self.slot_lookup(builder, vmctx, off, own.then_some(vmctx));
        self.call_through(builder, sig, code, ctx, args)
    }

    fn call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        type_index: u32,
        callee: Value,
        args: &[Value],
    ) -> Vec<Value> {
        let addr = self.table_elem_addr(builder, table, callee, TrapKind::TableOutOfBounds);
        let flags = Region::Tables.tag(builder, mutable());
        let funcref = builder.ins().load(types::I64, flags, addr, 0);
        // A null element has no record: the type-id load then reads
        // address 4, in the unmapped page 0, and the fault at this load is
        // a null-reference trap (its trap code; `vm/traps.rs` names a fault
        // at any PC of the trap table by its code). No compare and branch.
        let null_traps = MemFlagsData::new()
            .with_aligned()
            .with_trap_code(Some(TrapKind::NullReference.code()));
        let actual = builder
            .ins()
            .load(types::I32, null_traps, funcref, FUNCREF_TYPE_ID);
        // The expected id is the engine's for this type (what an
        // instance's `type_ids` holds and every record carries): code runs
        // only in instances of its own engine (`instance.rs` refuses
        // another's), so it is a constant here.
        let expected = self
            .engine
            .signature_id(&self.info.types[type_index as usize]);
        let bad =
            builder
                .ins()
                .icmp_imm_u(ir::condcodes::IntCC::NotEqual, actual, i64::from(expected));
        builder
            .ins()
            .trapnz(bad, TrapKind::IndirectCallTypeMismatch.code());
        // The record holds world 0's slot address.
        let entry0 = builder
            .ins()
            .load(types::I64, mutable(), funcref, FUNCREF_ENTRY);
        let (code, ctx) = self.slot_lookup(builder, entry0, 0, None);
        let sig = self.sig_for_type(builder, type_index);
        self.call_through(builder, sig, code, ctx, args)
    }

    fn memory_address(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        index: Value,
        offset: u64,
        _size: u32,
    ) -> (Value, MemFlagsData) {
        // Guard-page mode: the memory reserves 8 GiB, more than any i32 index
        // plus u32 offset plus access size, so no explicit check is needed;
        // a fault is attributed to this access by its trap code.
        let base = self.memory_base(builder, memory);
        let idx = builder.ins().uextend(types::I64, index);
        let mut addr = builder.ins().iadd(base, idx);
        if offset != 0 {
            addr = builder.ins().iadd_imm_s(addr, offset as i64);
        }
        let flags = MemFlagsData::new().with_trap_code(Some(TrapKind::MemoryOutOfBounds.code()));
        (addr, Region::Heap.tag(builder, flags))
    }

    fn memory_size(&mut self, builder: &mut FunctionBuilder, memory: u32) -> Value {
        let def = self.memory_def(builder, memory);
        let len = builder
            .ins()
            .load(types::I64, mutable(), def, MEMORY_LENGTH);
        let pages = builder.ins().ushr_imm_u(len, 16);
        builder.ins().ireduce(types::I32, pages)
    }

    fn memory_grow(&mut self, builder: &mut FunctionBuilder, memory: u32, delta: Value) -> Value {
        let m = builder.ins().iconst(types::I32, memory as i64);
        self.call_builtin(builder, Builtin::MemoryGrow, &[m, delta])
            .expect("result")
    }

    fn memory_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_memory: u32,
        src_memory: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let dm = builder.ins().iconst(types::I32, dst_memory as i64);
        let sm = builder.ins().iconst(types::I32, src_memory as i64);
        let s = self
            .call_builtin(builder, Builtin::MemoryCopy, &[dm, sm, dst, src, len])
            .expect("status");
        self.trap_if_nonzero(builder, s, TrapKind::MemoryOutOfBounds);
    }

    fn memory_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        dst: Value,
        val: Value,
        len: Value,
    ) {
        let m = builder.ins().iconst(types::I32, memory as i64);
        let s = self
            .call_builtin(builder, Builtin::MemoryFill, &[m, dst, val, len])
            .expect("status");
        self.trap_if_nonzero(builder, s, TrapKind::MemoryOutOfBounds);
    }

    fn memory_init(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        data: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let m = builder.ins().iconst(types::I32, memory as i64);
        let d = builder.ins().iconst(types::I32, data as i64);
        let s = self
            .call_builtin(builder, Builtin::MemoryInit, &[m, d, dst, src, len])
            .expect("status");
        self.trap_if_nonzero(builder, s, TrapKind::MemoryOutOfBounds);
    }

    fn data_drop(&mut self, builder: &mut FunctionBuilder, data: u32) {
        let d = builder.ins().iconst(types::I32, data as i64);
        self.call_builtin(builder, Builtin::DataDrop, &[d]);
    }

    fn global_get(&mut self, builder: &mut FunctionBuilder, global: u32) -> Value {
        let g = &self.info.globals[global as usize];
        let (ty, is_mut) = (clif_type(g.ty), g.mutable);
        let cell = self.global_cell(builder, global);
        let flags = if is_mut { mutable() } else { readonly() };
        let flags = Region::Globals.tag(builder, flags);
        builder.ins().load(ty, flags, cell, 0)
    }

    fn global_set(&mut self, builder: &mut FunctionBuilder, global: u32, value: Value) {
        let cell = self.global_cell(builder, global);
        let flags = Region::Globals.tag(builder, mutable());
        builder.ins().store(flags, value, cell, 0);
    }

    fn table_get(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value) -> Value {
        let addr = self.table_elem_addr(builder, table, index, TrapKind::TableAccessOutOfBounds);
        let flags = Region::Tables.tag(builder, mutable());
        builder.ins().load(types::I64, flags, addr, 0)
    }

    fn table_set(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value, value: Value) {
        let addr = self.table_elem_addr(builder, table, index, TrapKind::TableAccessOutOfBounds);
        let flags = Region::Tables.tag(builder, mutable());
        builder.ins().store(flags, value, addr, 0);
    }

    fn table_size(&mut self, builder: &mut FunctionBuilder, table: u32) -> Value {
        let def = self.table_def(builder, table);
        builder.ins().load(types::I32, mutable(), def, TABLE_LENGTH)
    }

    fn table_grow(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        init: Value,
        delta: Value,
    ) -> Value {
        let t = builder.ins().iconst(types::I32, table as i64);
        self.call_builtin(builder, Builtin::TableGrow, &[t, init, delta])
            .expect("result")
    }

    fn table_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        dst: Value,
        value: Value,
        len: Value,
    ) {
        let t = builder.ins().iconst(types::I32, table as i64);
        let s = self
            .call_builtin(builder, Builtin::TableFill, &[t, dst, value, len])
            .expect("status");
        self.trap_if_nonzero(builder, s, TrapKind::TableAccessOutOfBounds);
    }

    fn table_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_table: u32,
        src_table: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let dt = builder.ins().iconst(types::I32, dst_table as i64);
        let st = builder.ins().iconst(types::I32, src_table as i64);
        let s = self
            .call_builtin(builder, Builtin::TableCopy, &[dt, st, dst, src, len])
            .expect("status");
        self.trap_if_nonzero(builder, s, TrapKind::TableAccessOutOfBounds);
    }

    fn table_init(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        elem: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let t = builder.ins().iconst(types::I32, table as i64);
        let e = builder.ins().iconst(types::I32, elem as i64);
        let s = self
            .call_builtin(builder, Builtin::TableInit, &[t, e, dst, src, len])
            .expect("status");
        self.trap_if_nonzero(builder, s, TrapKind::TableAccessOutOfBounds);
    }

    fn elem_drop(&mut self, builder: &mut FunctionBuilder, elem: u32) {
        let e = builder.ins().iconst(types::I32, elem as i64);
        self.call_builtin(builder, Builtin::ElemDrop, &[e]);
    }

    fn ref_func(&mut self, builder: &mut FunctionBuilder, func: u32) -> Value {
        let arr = builder
            .ins()
            .load(types::I64, readonly(), self.vmctx(), VMCTX_FUNCREFS);
        builder
            .ins()
            .load(types::I64, readonly(), arr, (func as i32) * 8)
    }
}
