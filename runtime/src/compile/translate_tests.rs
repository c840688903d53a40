//! Tests of the translator: a mock [`FuncEnvironment`] that emits valid CLIF
//! for every runtime operation, focused tests of tricky control flow, and a
//! sweep over the spec test suite that translates, verifies and compiles
//! every function of every valid module.

use super::{translate_function, TranslateError};
use crate::compile::environ::FuncEnvironment;
use crate::trap::TrapKind;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    self, types, AbiParam, InstBuilder, MemFlagsData, Signature, TrapCode, Type, UserFuncName,
    Value,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::path::PathBuf;
use wasmparser::{FuncType, Payload, ValType, Validator, WasmFeatures};

/// Offsets of the mock vmctx layout (arbitrary but fixed).
const MEMORIES: i32 = 0x100;
const LIBCALLS: i32 = 0x200;
const TABLES: i32 = 0x400;
const FUNCS: i32 = 0x800;
const GLOBALS: i32 = 0x1000;

/// Mock libcall slots.
#[derive(Clone, Copy)]
enum Libcall {
    Poll,
    MemorySize,
    MemoryGrow,
    MemoryCopy,
    MemoryFill,
    MemoryInit,
    DataDrop,
    TableGet,
    TableSet,
    TableSize,
    TableGrow,
    TableFill,
    TableCopy,
    TableInit,
    ElemDrop,
    RefFunc,
}

/// A layout-aware side that knows nothing real but produces CLIF of the
/// right shape: loads from a fake vmctx, calls through loaded pointers.
struct MockEnv {
    ptr: Type,
    config: TargetFrontendConfig,
    funcs: Vec<FuncType>,
    types: Vec<FuncType>,
    globals: Vec<ValType>,
    vmctx: Option<Value>,
    vmthread: Option<Value>,
    /// Number of `poll` calls (one per loop).
    polls: usize,
    /// How many of those were transfer polls (`transfer_poll`).
    transfer_polls: usize,
}

impl MockEnv {
    /// A mock for a validated module.
    fn new(isa: &OwnedTargetIsa, types: &wasmparser::types::Types) -> MockEnv {
        let func_of = |id: wasmparser::types::CoreTypeId| types[id].unwrap_func().clone();
        let r = types.as_ref();
        let empty = FuncType::new([], []);
        MockEnv {
            ptr: isa.pointer_type(),
            config: isa.frontend_config(),
            funcs: (0..r.function_count())
                .map(|i| func_of(r.core_function_at(i)))
                .collect(),
            types: (0..r.core_type_count_in_module())
                .map(|i| {
                    let id = r.core_type_at_in_module(i);
                    match &types[id].composite_type.inner {
                        wasmparser::CompositeInnerType::Func(f) => f.clone(),
                        _ => empty.clone(),
                    }
                })
                .collect(),
            globals: (0..r.global_count())
                .map(|i| r.global_at(i).content_type)
                .collect(),
            vmctx: None,
            vmthread: None,
            polls: 0,
            transfer_polls: 0,
        }
    }

    fn clif(&self, t: ValType) -> Type {
        match t {
            ValType::I32 => types::I32,
            ValType::I64 => types::I64,
            ValType::F32 => types::F32,
            ValType::F64 => types::F64,
            ValType::V128 => types::I8X16,
            ValType::Ref(_) => self.ptr,
        }
    }

    fn vmctx(&self) -> Value {
        self.vmctx.expect("prologue sets vmctx")
    }

    fn flags() -> MemFlagsData {
        MemFlagsData::trusted()
    }

    fn i32(b: &mut FunctionBuilder, v: u32) -> Value {
        b.ins().iconst(types::I32, i64::from(v))
    }

    /// Call through a pointer with `vmctx` prepended to the arguments.
    fn call_ptr(
        &self,
        b: &mut FunctionBuilder,
        fptr: Value,
        params: &[Type],
        returns: &[Type],
        args: &[Value],
    ) -> Vec<Value> {
        let mut sig = Signature::new(self.config.default_call_conv);
        sig.params.push(AbiParam::new(self.ptr));
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        sig.returns
            .extend(returns.iter().map(|&t| AbiParam::new(t)));
        let sig = b.import_signature(sig);
        let mut all = vec![self.vmctx()];
        all.extend_from_slice(args);
        let inst = b.ins().call_indirect(sig, fptr, &all);
        b.inst_results(inst).to_vec()
    }

    fn libcall(
        &self,
        b: &mut FunctionBuilder,
        which: Libcall,
        params: &[Type],
        returns: &[Type],
        args: &[Value],
    ) -> Vec<Value> {
        let fptr = b.ins().load(
            self.ptr,
            Self::flags(),
            self.vmctx(),
            LIBCALLS + 8 * which as i32,
        );
        self.call_ptr(b, fptr, params, returns, args)
    }

    fn libcall1(
        &self,
        b: &mut FunctionBuilder,
        which: Libcall,
        params: &[Type],
        ret: Type,
        args: &[Value],
    ) -> Value {
        self.libcall(b, which, params, &[ret], args)[0]
    }

    /// Test the thread's poll word and call the slow path if it is set.
    fn emit_poll(&mut self, b: &mut FunctionBuilder) {
        let thread = self.vmthread.expect("prologue");
        let word = b.ins().load(types::I32, Self::flags(), thread, 8);
        let slow = b.create_block();
        let cont = b.create_block();
        b.set_cold_block(slow);
        b.ins().brif(word, slow, &[], cont, &[]);
        b.switch_to_block(slow);
        b.seal_block(slow);
        self.libcall(b, Libcall::Poll, &[], &[], &[]);
        b.ins().jump(cont, &[]);
        b.switch_to_block(cont);
        b.seal_block(cont);
    }

    fn signature(&self, ty: &FuncType) -> Signature {
        let mut sig = Signature::new(self.config.default_call_conv);
        sig.params.push(AbiParam::new(self.ptr));
        sig.params.push(AbiParam::new(self.ptr));
        sig.params
            .extend(ty.params().iter().map(|&t| AbiParam::new(self.clif(t))));
        sig.returns
            .extend(ty.results().iter().map(|&t| AbiParam::new(self.clif(t))));
        sig
    }

    /// A wasm-level call through a function pointer.
    fn call_wasm(
        &self,
        b: &mut FunctionBuilder,
        ty: &FuncType,
        fptr: Value,
        args: &[Value],
    ) -> Vec<Value> {
        let sig = b.import_signature(self.signature(ty));
        let mut all = vec![self.vmctx(), self.vmthread.expect("prologue")];
        all.extend_from_slice(args);
        let inst = b.ins().call_indirect(sig, fptr, &all);
        b.inst_results(inst).to_vec()
    }
}

impl FuncEnvironment for MockEnv {
    fn pointer_type(&self) -> Type {
        self.ptr
    }

    fn target_config(&self) -> TargetFrontendConfig {
        self.config
    }

    fn func_type(&self, func: u32) -> &FuncType {
        &self.funcs[func as usize]
    }

    fn type_at(&self, type_index: u32) -> &FuncType {
        &self.types[type_index as usize]
    }

    fn prologue(
        &mut self,
        b: &mut FunctionBuilder,
        vmctx: Value,
        vmthread: Value,
        entry_poll: bool,
    ) {
        self.vmctx = Some(vmctx);
        self.vmthread = Some(vmthread);
        if entry_poll {
            self.emit_poll(b);
        }
    }

    fn poll(&mut self, b: &mut FunctionBuilder) {
        self.polls += 1;
        self.emit_poll(b);
    }

    fn transfer_poll(
        &mut self,
        b: &mut FunctionBuilder,
        _ordinal: u32,
        _locals: &[Option<Variable>],
        _wide: bool,
    ) {
        self.transfer_polls += 1;
        self.poll(b);
    }

    fn call(&mut self, b: &mut FunctionBuilder, func: u32, args: &[Value]) -> Vec<Value> {
        let table = b.ins().load(self.ptr, Self::flags(), self.vmctx(), FUNCS);
        let fptr = b
            .ins()
            .load(self.ptr, Self::flags(), table, 8 * func as i32);
        let ty = self.funcs[func as usize].clone();
        self.call_wasm(b, &ty, fptr, args)
    }

    fn call_indirect(
        &mut self,
        b: &mut FunctionBuilder,
        table: u32,
        type_index: u32,
        callee: Value,
        args: &[Value],
    ) -> Vec<Value> {
        let vmctx = self.vmctx();
        let base = b
            .ins()
            .load(self.ptr, Self::flags(), vmctx, TABLES + 16 * table as i32);
        let len = b.ins().load(
            types::I32,
            Self::flags(),
            vmctx,
            TABLES + 16 * table as i32 + 8,
        );
        let oob = b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, callee, len);
        b.ins().trapnz(oob, TrapKind::TableOutOfBounds.code());
        let idx = b.ins().uextend(self.ptr, callee);
        let off = b.ins().ishl_imm_u(idx, 4);
        let entry = b.ins().iadd(base, off);
        let fptr = b.ins().load(self.ptr, Self::flags(), entry, 0);
        b.ins().trapz(fptr, TrapKind::NullReference.code());
        let sig_id = b.ins().load(types::I32, Self::flags(), entry, 8);
        let bad = b
            .ins()
            .icmp_imm_u(IntCC::NotEqual, sig_id, i64::from(type_index));
        b.ins()
            .trapnz(bad, TrapKind::IndirectCallTypeMismatch.code());
        let ty = self.types[type_index as usize].clone();
        self.call_wasm(b, &ty, fptr, args)
    }

    fn memory_address(
        &mut self,
        b: &mut FunctionBuilder,
        memory: u32,
        index: Value,
        offset: u64,
        size: u32,
    ) -> (Value, MemFlagsData) {
        let vmctx = self.vmctx();
        let base = b.ins().load(
            self.ptr,
            Self::flags(),
            vmctx,
            MEMORIES + 16 * memory as i32,
        );
        let bound = b.ins().load(
            self.ptr,
            Self::flags(),
            vmctx,
            MEMORIES + 16 * memory as i32 + 8,
        );
        let idx = b.ins().uextend(self.ptr, index);
        let last = b.ins().iconst(self.ptr, (offset + u64::from(size)) as i64);
        let end = b.ins().iadd(idx, last);
        let oob = b.ins().icmp(IntCC::UnsignedGreaterThan, end, bound);
        b.ins().trapnz(oob, TrapCode::HEAP_OUT_OF_BOUNDS);
        let addr = b.ins().iadd(base, idx);
        let off = b.ins().iconst(self.ptr, offset as i64);
        let addr = b.ins().iadd(addr, off);
        let flags = MemFlagsData::new().with_trap_code(Some(TrapCode::HEAP_OUT_OF_BOUNDS));
        (addr, flags)
    }

    fn memory_size(&mut self, b: &mut FunctionBuilder, memory: u32) -> Value {
        let m = Self::i32(b, memory);
        self.libcall1(b, Libcall::MemorySize, &[types::I32], types::I32, &[m])
    }

    fn memory_grow(&mut self, b: &mut FunctionBuilder, memory: u32, delta: Value) -> Value {
        let m = Self::i32(b, memory);
        let i = types::I32;
        self.libcall1(b, Libcall::MemoryGrow, &[i, i], i, &[m, delta])
    }

    fn memory_copy(
        &mut self,
        b: &mut FunctionBuilder,
        dst_memory: u32,
        src_memory: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let d = Self::i32(b, dst_memory);
        let s = Self::i32(b, src_memory);
        let i = types::I32;
        let p = [i, i, i, i, i];
        self.libcall(b, Libcall::MemoryCopy, &p, &[], &[d, s, dst, src, len]);
    }

    fn memory_fill(
        &mut self,
        b: &mut FunctionBuilder,
        memory: u32,
        dst: Value,
        val: Value,
        len: Value,
    ) {
        let m = Self::i32(b, memory);
        let i = types::I32;
        self.libcall(
            b,
            Libcall::MemoryFill,
            &[i, i, i, i],
            &[],
            &[m, dst, val, len],
        );
    }

    fn memory_init(
        &mut self,
        b: &mut FunctionBuilder,
        memory: u32,
        data: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let m = Self::i32(b, memory);
        let d = Self::i32(b, data);
        let i = types::I32;
        let p = [i, i, i, i, i];
        self.libcall(b, Libcall::MemoryInit, &p, &[], &[m, d, dst, src, len]);
    }

    fn data_drop(&mut self, b: &mut FunctionBuilder, data: u32) {
        let d = Self::i32(b, data);
        self.libcall(b, Libcall::DataDrop, &[types::I32], &[], &[d]);
    }

    fn global_get(&mut self, b: &mut FunctionBuilder, global: u32) -> Value {
        let ty = self.clif(self.globals[global as usize]);
        b.ins().load(
            ty,
            Self::flags(),
            self.vmctx(),
            GLOBALS + 16 * global as i32,
        )
    }

    fn global_set(&mut self, b: &mut FunctionBuilder, global: u32, value: Value) {
        b.ins().store(
            Self::flags(),
            value,
            self.vmctx(),
            GLOBALS + 16 * global as i32,
        );
    }

    fn table_get(&mut self, b: &mut FunctionBuilder, table: u32, index: Value) -> Value {
        let t = Self::i32(b, table);
        let i = types::I32;
        self.libcall1(b, Libcall::TableGet, &[i, i], self.ptr, &[t, index])
    }

    fn table_set(&mut self, b: &mut FunctionBuilder, table: u32, index: Value, value: Value) {
        let t = Self::i32(b, table);
        let i = types::I32;
        let p = [i, i, self.ptr];
        self.libcall(b, Libcall::TableSet, &p, &[], &[t, index, value]);
    }

    fn table_size(&mut self, b: &mut FunctionBuilder, table: u32) -> Value {
        let t = Self::i32(b, table);
        self.libcall1(b, Libcall::TableSize, &[types::I32], types::I32, &[t])
    }

    fn table_grow(
        &mut self,
        b: &mut FunctionBuilder,
        table: u32,
        init: Value,
        delta: Value,
    ) -> Value {
        let t = Self::i32(b, table);
        let i = types::I32;
        let p = [i, self.ptr, i];
        self.libcall1(b, Libcall::TableGrow, &p, i, &[t, init, delta])
    }

    fn table_fill(
        &mut self,
        b: &mut FunctionBuilder,
        table: u32,
        dst: Value,
        value: Value,
        len: Value,
    ) {
        let t = Self::i32(b, table);
        let i = types::I32;
        let p = [i, i, self.ptr, i];
        self.libcall(b, Libcall::TableFill, &p, &[], &[t, dst, value, len]);
    }

    fn table_copy(
        &mut self,
        b: &mut FunctionBuilder,
        dst_table: u32,
        src_table: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let d = Self::i32(b, dst_table);
        let s = Self::i32(b, src_table);
        let i = types::I32;
        let p = [i, i, i, i, i];
        self.libcall(b, Libcall::TableCopy, &p, &[], &[d, s, dst, src, len]);
    }

    fn table_init(
        &mut self,
        b: &mut FunctionBuilder,
        table: u32,
        elem: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let t = Self::i32(b, table);
        let e = Self::i32(b, elem);
        let i = types::I32;
        let p = [i, i, i, i, i];
        self.libcall(b, Libcall::TableInit, &p, &[], &[t, e, dst, src, len]);
    }

    fn elem_drop(&mut self, b: &mut FunctionBuilder, elem: u32) {
        let e = Self::i32(b, elem);
        self.libcall(b, Libcall::ElemDrop, &[types::I32], &[], &[e]);
    }

    fn ref_func(&mut self, b: &mut FunctionBuilder, func: u32) -> Value {
        let f = Self::i32(b, func);
        self.libcall1(b, Libcall::RefFunc, &[types::I32], self.ptr, &[f])
    }
}

/// The host ISA with the flags the runtime uses.
fn host_isa() -> OwnedTargetIsa {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").unwrap();
    flags.set("preserve_frame_pointers", "true").unwrap();
    flags.set("enable_verifier", "true").unwrap();
    // Multi-value functions may return more values than there are return
    // registers; Cranelift then needs an implicit return area.
    flags.set("enable_multi_ret_implicit_sret", "true").unwrap();
    cranelift_native::builder()
        .expect("host ISA")
        .finish(settings::Flags::new(flags))
        .expect("ISA flags")
}

/// What happened to one function.
#[derive(Debug)]
enum Outcome {
    /// Translated, verified and compiled.
    Compiled(Box<ir::Function>),
    /// The translator refused it.
    Translate(TranslateError),
    /// Verification or compilation failed.
    Codegen(String),
}

/// Translate, verify and compile every function of a valid module. `None`
/// if the module does not validate with the wasm 2.0 feature set.
fn compile_module(isa: &OwnedTargetIsa, bytes: &[u8]) -> Option<(Vec<Outcome>, usize)> {
    compile_module_env(isa, bytes).map(|(o, env)| (o, env.polls))
}

/// [`compile_module`], returning the mock environment (what it was asked).
fn compile_module_env(isa: &OwnedTargetIsa, bytes: &[u8]) -> Option<(Vec<Outcome>, MockEnv)> {
    // Relaxed SIMD validates here so that a test can show it refused by the
    // translator (the runtime's validator refuses it first).
    let mut validator =
        Validator::new_with_features(WasmFeatures::WASM2 | WasmFeatures::RELAXED_SIMD);
    let types = validator.validate_all(bytes).ok()?;
    let mut env = MockEnv::new(isa, &types);
    let bodies: Vec<_> = wasmparser::Parser::new(0)
        .parse_all(bytes)
        .filter_map(|p| match p {
            Ok(Payload::CodeSectionEntry(body)) => Some(body),
            _ => None,
        })
        .collect();
    let first = env.funcs.len() - bodies.len();
    let mut fctx = FunctionBuilderContext::new();
    let mut outcomes = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let ty = env.funcs[first + i].clone();
        let mut func =
            ir::Function::with_name_signature(UserFuncName::user(0, i as u32), env.signature(&ty));
        if let Err(e) = translate_function(&mut env, &ty, body, &mut func, &mut fctx) {
            outcomes.push(Outcome::Translate(e));
            continue;
        }
        if let Err(e) = cranelift_codegen::verify_function(&func, &**isa) {
            let msg = cranelift_codegen::print_errors::pretty_verifier_error(&func, None, e);
            outcomes.push(Outcome::Codegen(msg));
            continue;
        }
        let mut ctx = Context::for_function(func);
        match ctx.compile(&**isa, &mut ControlPlane::default()) {
            Ok(_) => outcomes.push(Outcome::Compiled(Box::new(ctx.func))),
            Err(e) => outcomes.push(Outcome::Codegen(format!("{:?}", e.inner))),
        }
    }
    Some((outcomes, env))
}

/// Compile the functions of a text module, which must be valid.
fn compile_wat(wat: &str) -> (Vec<Outcome>, usize) {
    let bytes = wat::parse_str(wat).expect("wat");
    compile_module(&host_isa(), &bytes).expect("valid module")
}

/// The single compiled function of a text module.
fn compile_one(wat: &str) -> (ir::Function, usize) {
    let (mut outcomes, polls) = compile_wat(wat);
    assert_eq!(outcomes.len(), 1);
    match outcomes.pop() {
        Some(Outcome::Compiled(f)) => (*f, polls),
        other => panic!("not compiled: {other:?}"),
    }
}

/// How many instructions of `func` have `opcode`.
fn count_opcode(func: &ir::Function, opcode: ir::Opcode) -> usize {
    func.layout
        .blocks()
        .flat_map(|b| func.layout.block_insts(b))
        .filter(|&i| func.dfg.insts[i].opcode() == opcode)
        .count()
}

#[test]
fn br_table_with_multiple_values() {
    let (f, _) = compile_one(
        r#"(module (func (param i32) (result i32 i64)
             (block (result i32 i64)
               (block (result i32 i64)
                 (i32.const 1) (i64.const 2) (local.get 0)
                 (br_table 0 1 0 1 1))
               (drop) (drop) (i32.const 3) (i64.const 4))))"#,
    );
    assert_eq!(count_opcode(&f, ir::Opcode::BrTable), 1);
}

#[test]
fn br_table_without_values_targets_blocks_directly() {
    let (f, _) = compile_one(
        r#"(module (func (param i32) (result i32)
             (block (block (block (br_table 0 1 2 (local.get 0))))
               (return (i32.const 1)))
             (i32.const 2)))"#,
    );
    assert_eq!(count_opcode(&f, ir::Opcode::BrTable), 1);
}

#[test]
fn unreachable_code_after_branches_is_skipped() {
    let (f, _) = compile_one(
        r#"(module (func (result i32)
             (block (result i32)
               (br 0 (i32.const 7))
               (i32.add) (drop)
               (block (if (i32.const 0) (then (unreachable)) (else (nop))))
               (f64.sqrt) (drop))
             (return)
             (i64.add) (drop) (loop (br 0))))"#,
    );
    // The dead loop must not have produced a poll or a back edge.
    assert_eq!(count_opcode(&f, ir::Opcode::Iadd), 0);
    assert_eq!(count_opcode(&f, ir::Opcode::Sqrt), 0);
}

#[test]
fn if_without_else_passes_params_through() {
    let (f, _) = compile_one(
        r#"(module
             (type $t (func (param i32 i64) (result i32 i64)))
             (func (param i32) (result i32 i64)
               (i32.const 1) (i64.const 2) (local.get 0)
               (if (type $t) (param i32 i64) (result i32 i64)
                 (then (drop) (i64.const 5)))))"#,
    );
    // The `if` only: a function without calls or loops has no entry poll.
    assert_eq!(count_opcode(&f, ir::Opcode::Brif), 1);
}

#[test]
fn only_functions_with_calls_or_loops_poll_at_entry() {
    let leaf = r#"(module (func (param i32) (result i32)
        (i32.add (local.get 0) (i32.const 1))))"#;
    assert_eq!(count_opcode(&compile_one(leaf).0, ir::Opcode::Brif), 0);
    let caller = r#"(module
        (func (param i32) (result i32) (call 0 (local.get 0))))"#;
    assert_eq!(count_opcode(&compile_one(caller).0, ir::Opcode::Brif), 1);
    // A loop: the entry poll and the loop-header poll.
    let looping = r#"(module (func (param i32)
        (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#;
    assert_eq!(count_opcode(&compile_one(looping).0, ir::Opcode::Brif), 3);
}

#[test]
fn if_else_with_params_and_unreachable_then() {
    compile_one(
        r#"(module (func (param i32) (result i32)
             (i32.const 10) (local.get 0)
             (if (param i32) (result i32)
               (then (unreachable))
               (else (i32.const 1) (i32.add)))))"#,
    );
}

#[test]
fn loops_poll_and_carry_params() {
    let (f, polls) = compile_one(
        r#"(module (func (param i32) (result i32)
             (i32.const 0)
             (loop (param i32) (result i32)
               (i32.const 1) (i32.add)
               (local.get 0) (i32.const 1) (i32.sub) (local.tee 0)
               (br_if 0)
               (loop (nop)))))"#,
    );
    assert_eq!(polls, 2);
    assert_eq!(count_opcode(&f, ir::Opcode::Return), 1);
}

#[test]
fn blocks_without_branches_emit_no_jumps() {
    let (f, _) = compile_one(
        r#"(module (func (param i32) (result i32)
             (block (result i32)
               (block (result i32) (local.get 0))
               (block (param i32) (result i32) (i32.const 1) (i32.add)))
             (loop (param i32) (result i32) (i32.const 2) (i32.mul))))"#,
    );
    // Only the loop entry and the two poll slow paths (entry and loop)
    // jump; blocks: entry, header, and a slow path + continuation per poll.
    assert_eq!(count_opcode(&f, ir::Opcode::Jump), 3);
    assert_eq!(f.layout.blocks().count(), 6);
}

#[test]
fn div_rem_and_conversions_use_trapping_clif() {
    let (f, _) = compile_one(
        r#"(module (func (param i32 i32 f64) (result i32)
             (i32.rem_s (local.get 0) (local.get 1))
             (i32.div_s (local.get 0) (local.get 1))
             (i32.add)
             (i32.trunc_f64_s (local.get 2))
             (i32.add)
             (i32.trunc_sat_f64_u (local.get 2))
             (i32.add)))"#,
    );
    assert_eq!(count_opcode(&f, ir::Opcode::Srem), 1);
    assert_eq!(count_opcode(&f, ir::Opcode::Sdiv), 1);
    assert_eq!(count_opcode(&f, ir::Opcode::FcvtToSint), 1);
    assert_eq!(count_opcode(&f, ir::Opcode::FcvtToUintSat), 1);
}

#[test]
fn relaxed_simd_is_refused_and_context_is_reusable() {
    let (outcomes, _) = compile_wat(
        r#"(module
             (func (result i32) (i32.const 1)
               (i8x16.relaxed_swizzle (v128.const i64x2 0 0) (v128.const i64x2 0 0))
               (drop))
             (func (result i32) (i32.const 2)))"#,
    );
    // The first function fails with the operator's name (relaxed SIMD is
    // not wasm 2.0); the second, translated with the same builder context,
    // still compiles.
    match &outcomes[0] {
        Outcome::Translate(TranslateError::Unsupported { op, .. }) => {
            assert_eq!(op, "I8x16RelaxedSwizzle")
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
    assert!(matches!(outcomes[1], Outcome::Compiled(_)));
}

#[test]
fn a_loop_with_a_v128_local_gets_a_transfer_poll() {
    // The transfer spill area holds 16 bytes a local in a function with a
    // v128 local (docs/transfer.md): its loop headers spill too.
    let polls = |local: &str| {
        let wat = format!(
            r#"(module (func (param i32) (local {local})
                 (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#
        );
        let bytes = wat::parse_str(wat).unwrap();
        let (outcomes, env) = compile_module_env(&host_isa(), &bytes).unwrap();
        assert!(matches!(outcomes[0], Outcome::Compiled(_)), "{outcomes:?}");
        (env.polls, env.transfer_polls)
    };
    assert_eq!(polls("i64"), (1, 1));
    assert_eq!(polls("v128"), (1, 1));
}

#[test]
fn chained_lane_ops_bitcast_only_at_the_edges() {
    // Three i32x4 parameters in, one v128 result out: one bitcast each, and
    // none between the two adds (the canonical I8X16 round trip is looked
    // through).
    let (f, _) = compile_one(
        r#"(module (func (param v128 v128 v128) (result v128)
             (i32x4.add (i32x4.add (local.get 0) (local.get 1)) (local.get 2))))"#,
    );
    assert_eq!(count_opcode(&f, ir::Opcode::Bitcast), 4);
}

#[test]
fn v128_values_keep_one_type_across_blocks_locals_and_select() {
    // Each arm leaves a different lane type's result; the block parameter,
    // the local and `select` all see the canonical `I8X16`, so the function
    // verifies and compiles.
    let (f, _) = compile_one(
        r#"(module (func (param v128 i32) (result v128) (local v128)
             (local.set 2
               (if (result v128) (local.get 1)
                 (then (f32x4.add (local.get 0) (local.get 0)))
                 (else (i16x8.add (local.get 0) (local.get 0)))))
             (select (local.get 2) (i64x2.neg (local.get 0)) (local.get 1))))"#,
    );
    assert_eq!(
        f.dfg
            .value_type(f.dfg.block_params(f.layout.entry_block().unwrap())[2]),
        types::I8X16
    );
    assert_eq!(count_opcode(&f, ir::Opcode::Select), 1);
}

#[test]
fn invalid_bodies_are_errors_not_panics() {
    let isa = host_isa();
    for (wat, reason) in [
        ("(func (result i32) (i32.add))", "operand stack underflow"),
        ("(func (result i32) (br 5))", "branch depth out of range"),
        (
            "(func (result i32) (local.get 3))",
            "local index out of range",
        ),
        (
            "(func (result i32) (block (result i32) (drop)))",
            "operand stack underflow",
        ),
    ] {
        // Encoded without validation, as if the validator had been skipped.
        let bytes = wat::parse_str(format!("(module {wat})")).expect("wat");
        let body = wasmparser::Parser::new(0)
            .parse_all(&bytes)
            .find_map(|p| match p {
                Ok(Payload::CodeSectionEntry(body)) => Some(body),
                _ => None,
            })
            .expect("one body");
        let ty = FuncType::new([], [ValType::I32]);
        let mut env = MockEnv {
            ptr: isa.pointer_type(),
            config: isa.frontend_config(),
            funcs: vec![ty.clone()],
            types: vec![ty.clone()],
            globals: Vec::new(),
            vmctx: None,
            vmthread: None,
            polls: 0,
            transfer_polls: 0,
        };
        let mut func =
            ir::Function::with_name_signature(UserFuncName::user(0, 0), env.signature(&ty));
        let mut fctx = FunctionBuilderContext::new();
        match translate_function(&mut env, &ty, &body, &mut func, &mut fctx) {
            Err(TranslateError::Malformed { reason: r, .. }) => assert_eq!(r, reason, "{wat}"),
            other => panic!("{wat}: expected a malformed-body error, got {other:?}"),
        }
    }
}

/// Where the spec test suite lives, if present.
fn suite_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("WASM_TESTSUITE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/wasm-testsuite"),
    };
    dir.is_dir().then_some(dir)
}

/// Every module written in a `.wast` script, encoded, with whether the
/// script expects it to be valid (`assert_invalid` / `assert_malformed`
/// modules are swept too: those that do encode and validate still count).
fn script_modules(path: &std::path::Path) -> Vec<(bool, Vec<u8>)> {
    use wast::{WastDirective, WastExecute};
    let src = std::fs::read_to_string(path).expect("read script");
    let mut lexer = wast::lexer::Lexer::new(&src);
    lexer.allow_confusing_unicode(true);
    let buf = wast::parser::ParseBuffer::new_with_lexer(lexer).expect("lex script");
    let script: wast::Wast = wast::parser::parse(&buf).expect("parse script");
    let mut out = Vec::new();
    for directive in script.directives {
        let (valid, encoded) = match directive {
            WastDirective::Module(mut m) | WastDirective::ModuleDefinition(mut m) => {
                (true, m.encode())
            }
            WastDirective::AssertInvalid { mut module, .. }
            | WastDirective::AssertMalformed { mut module, .. } => (false, module.encode()),
            WastDirective::AssertUnlinkable { mut module, .. }
            | WastDirective::AssertTrap {
                exec: WastExecute::Wat(mut module),
                ..
            }
            | WastDirective::AssertReturn {
                exec: WastExecute::Wat(mut module),
                ..
            } => (true, module.encode()),
            _ => continue,
        };
        match encoded {
            Ok(bytes) => out.push((valid, bytes)),
            Err(e) if valid => panic!("{}: cannot encode a valid module: {e}", path.display()),
            Err(_) => {}
        }
    }
    out
}

/// Totals of the suite sweep.
#[derive(Default)]
struct Tally {
    scripts: usize,
    modules: usize,
    functions: usize,
    failures: Vec<String>,
}

#[test]
fn spec_suite_translates_verifies_and_compiles() {
    let Some(dir) = suite_dir() else {
        eprintln!(
            "SKIPPED: spec test suite not found (set WASM_TESTSUITE or provide \
             ../../shared/wasm-testsuite relative to the runtime crate)"
        );
        return;
    };
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read suite dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".wast")
        })
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no .wast scripts in {}", dir.display());

    let isa = host_isa();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (scripts, isa) = (&scripts, &isa);
                s.spawn(move || {
                    let mut t = Tally::default();
                    for path in scripts.iter().skip(w).step_by(workers) {
                        t.scripts += 1;
                        let name = path.file_name().unwrap().to_string_lossy().into_owned();
                        for (m, (valid, bytes)) in script_modules(path).iter().enumerate() {
                            let run =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    compile_module(isa, bytes)
                                }));
                            let outcomes = match run {
                                Ok(Some((outcomes, _))) => outcomes,
                                Ok(None) if *valid => {
                                    t.failures.push(format!("{name} module {m}: invalid"));
                                    continue;
                                }
                                Ok(None) => continue,
                                Err(_) => {
                                    t.failures.push(format!("{name} module {m}: panic"));
                                    continue;
                                }
                            };
                            t.modules += 1;
                            for (f, o) in outcomes.into_iter().enumerate() {
                                t.functions += 1;
                                match o {
                                    Outcome::Compiled(_) => {}
                                    Outcome::Translate(e) => {
                                        t.failures.push(format!("{name} module {m} func {f}: {e}"))
                                    }
                                    Outcome::Codegen(e) => {
                                        t.failures.push(format!("{name} module {m} func {f}: {e}"))
                                    }
                                }
                            }
                        }
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Tally::default();
    for t in tallies {
        total.scripts += t.scripts;
        total.modules += t.modules;
        total.functions += t.functions;
        total.failures.extend(t.failures);
    }
    eprintln!(
        "spec suite: {} scripts, {} valid modules, {} functions compiled, {} failures",
        total.scripts,
        total.modules,
        total.functions - total.failures.len(),
        total.failures.len()
    );
    for f in total.failures.iter().take(30) {
        eprintln!("  {f}");
    }
    assert!(
        total.failures.is_empty(),
        "{} failures",
        total.failures.len()
    );
}
