//! Compilation of wasm functions to machine code: one [`CodeUnit`] per
//! module (version 0 of every function) or per bundle, plus a unit of
//! trampolines per module.
//!
//! Each function is translated (`translate.rs`) with a [`FuncEnv`]
//! (`func_env.rs`), compiled by Cranelift with `opt_level=speed` and frame
//! pointers kept, then placed into executable memory (`vm/code_memory.rs`).

pub(crate) mod environ;
pub(crate) mod func_env;
pub(crate) mod inline;
pub(crate) mod loop_bounds;
pub(crate) mod osr;
pub(crate) mod polls;
pub(crate) mod stack;
pub(crate) mod trampolines;
pub(crate) mod translate;

use crate::engine::Engine;
use crate::errors::Error;
use crate::module::ModuleInfo;
use crate::trap::TrapKind;
use crate::vm::code_memory::{self, CodeUnit, FuncArtifact, UnitKind};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{self, ExternalName, LibCall, UserFuncName};
use cranelift_codegen::{Context, FinalizedRelocTarget};
use cranelift_frontend::FunctionBuilderContext;
use func_env::FuncEnv;
use std::sync::Arc;
use wasmparser::FunctionBody;

/// A module's compiled code.
pub(crate) struct CompiledModule {
    /// Defined functions, in order (placed index `i` = function
    /// `num_imported_funcs + i`).
    pub(crate) unit: Arc<CodeUnit>,
    /// Entry and host trampolines, two per type index.
    pub(crate) trampolines: Arc<CodeUnit>,
    /// For each defined function (placed index), the functions whose
    /// bodies it contains (`inline.rs`), sorted; empty without inlining.
    pub(crate) inlined: Vec<Vec<u32>>,
}

impl CompiledModule {
    /// Entry address of defined function `func` (index space of the module).
    pub(crate) fn func_entry(&self, info: &ModuleInfo, func: u32) -> *const u8 {
        self.unit.entry((func - info.num_imported_funcs) as usize)
    }

    /// Host→wasm entry trampoline for type `ty`.
    pub(crate) fn entry_trampoline(&self, ty: u32) -> *const u8 {
        self.trampolines.entry(3 * ty as usize)
    }

    /// wasm→host trampoline for type `ty`.
    pub(crate) fn host_trampoline(&self, ty: u32) -> *const u8 {
        self.trampolines.entry(3 * ty as usize + 1)
    }
}

/// Compile every defined function of `info` and its trampolines.
pub(crate) fn compile_module(engine: &Engine, info: &ModuleInfo) -> Result<CompiledModule, Error> {
    let unit_id = code_memory::next_unit_id();
    check_function_count(info.func_types.len(), "module")?;
    let defined: Vec<u32> = (info.num_imported_funcs..info.func_types.len() as u32).collect();
    let polls = polls::entry_polls(info)?;
    let mut job = UnitJob {
        engine,
        info,
        own_funcs: info.func_types.len() as u32,
        inline: None,
    };
    let body = |f: u32| {
        let range = info.bodies[(f - info.num_imported_funcs) as usize].clone();
        FunctionBody::new(wasmparser::BinaryReader::new(
            &info.bytes[range.clone()],
            range.start as u64,
        ))
    };
    let config = engine.config();
    let callees = if config.inline && config.patchable && !config.frame_transfer {
        inline::Inlinables::prepare(&job, &defined, body)?
    } else {
        inline::Inlinables::default()
    };
    if !callees.is_empty() {
        job.inline = Some(&callees);
    }
    let compiled = compile_functions(&job, &defined, body, |f| {
        polls[(f - info.num_imported_funcs) as usize]
    })?;
    let (artifacts, inlined): (Vec<FuncArtifact>, Vec<Vec<u32>>) = compiled.into_iter().unzip();
    let unit = CodeUnit::publish(unit_id, UnitKind::Wasm, artifacts)
        .map_err(|e| Error::Compile(e.to_string()))?;
    let trampolines = trampolines::compile_for_types(engine, &info.types)?;
    Ok(CompiledModule {
        unit,
        trampolines,
        inlined,
    })
}

/// Refuse more functions than an instance's slot tables hold (their slot
/// offsets would not fit the 32-bit displacements of compiled calls).
fn check_function_count(n: usize, what: &str) -> Result<(), Error> {
    let max = crate::vm::vmctx_block::MAX_SLOTS;
    if n > max {
        return Err(Error::Compile(format!(
            "{what} has {n} functions (imports included): an instance holds at most {max}"
        )));
    }
    Ok(())
}

/// A compiled function and the functions whose bodies it inlined.
pub(crate) type Compiled = (FuncArtifact, Vec<u32>);

/// What the functions of one code unit are compiled against.
pub(crate) struct UnitJob<'a> {
    /// The engine (ISA and `Config::patchable`).
    pub engine: &'a Engine,
    /// The module view: a module's own info, or a bundle's extension of
    /// its target's.
    pub info: &'a ModuleInfo,
    /// The target module's function count (imports included): the slots of
    /// its defined functions always hold the instance's own vmctx.
    pub own_funcs: u32,
    /// Callees to inline into the functions compiled (`inline.rs`); `None`
    /// for bundles, whose code calls everything through slots.
    pub inline: Option<&'a inline::Inlinables>,
}

/// Compile functions `funcs` of `job.info`, their bodies given by `body`,
/// into artifacts for one code unit, each with the functions it inlined.
/// `entry_poll(f)` false means that `f` need not poll at entry even if it
/// calls or loops (`polls.rs`). Uses up to two OS threads.
pub(crate) fn compile_functions<'b>(
    job: &UnitJob<'_>,
    funcs: &[u32],
    body: impl Fn(u32) -> FunctionBody<'b> + Sync,
    entry_poll: impl Fn(u32) -> bool + Sync,
) -> Result<Vec<Compiled>, Error> {
    let workers = if funcs.len() >= 16 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4)
    } else {
        1
    };
    let compile_part = |part: &[u32]| -> Result<Vec<Compiled>, Error> {
        let mut ctx = Context::new();
        let mut fctx = FunctionBuilderContext::new();
        part.iter()
            .map(|&f| compile_one(job, f, body(f), entry_poll(f), &mut ctx, &mut fctx))
            .collect()
    };
    if workers <= 1 {
        return compile_part(funcs);
    }
    let chunk = funcs.len().div_ceil(workers);
    let results: Vec<Result<Vec<Compiled>, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = funcs
            .chunks(chunk)
            .map(|part| {
                let compile_part = &compile_part;
                s.spawn(move || compile_part(part))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Compile("compiler thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(funcs.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn compile_one(
    job: &UnitJob<'_>,
    func_index: u32,
    body: FunctionBody<'_>,
    entry_poll: bool,
    ctx: &mut Context,
    fctx: &mut FunctionBuilderContext,
) -> Result<Compiled, Error> {
    let (engine, info) = (job.engine, job.info);
    let isa = engine.isa();
    let ty = info.func_type(func_index).clone();
    let mut env = FuncEnv::new(
        info,
        engine,
        isa.frontend_config(),
        engine.config().patchable,
        entry_poll,
        job.own_funcs,
    );
    if engine.config().frame_transfer {
        env.set_transfer_stub(job.engine.transfer_stub());
    }
    if let Some(callees) = job.inline {
        env.set_inline(callees.set());
    }
    ctx.clear();
    ctx.func.signature = func_env::wasm_signature(&ty, isa.default_call_conv());
    ctx.func.name = UserFuncName::user(0, func_index);
    let name = || info.func_name(func_index);
    translate::translate_function(&mut env, &ty, &body, &mut ctx.func, fctx)
        .map_err(|e| Error::Compile(format!("function {} (index {func_index}): {e}", name())))?;
    let inlined = match job.inline {
        Some(callees) => inline::run(ctx, callees).map_err(|e| {
            Error::Compile(format!("function {} (index {func_index}): {e}", name()))
        })?,
        None => Vec::new(),
    };
    let artifact = finish(isa, ctx, func_index)
        .map_err(|e| Error::Compile(format!("function {} (index {func_index}): {e}", name())))?;
    Ok((artifact, inlined))
}

/// Run Cranelift on `ctx.func` and turn the result into an artifact.
pub(crate) fn finish(
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    ctx: &mut Context,
    func_index: u32,
) -> Result<FuncArtifact, String> {
    let user_funcs: Vec<u32> = ctx
        .func
        .params
        .user_named_funcs()
        .values()
        .map(|n| n.index)
        .collect();
    let dump = dump_dir();
    ctx.set_disasm(dump.is_some());
    ctx.compile(isa, &mut ControlPlane::default())
        .map_err(|e| format!("{:?}", e.inner))?;
    if let Some(dir) = dump {
        write_dump(dir, ctx);
    }
    let code = ctx.compiled_code().expect("compiled above");
    let buffer = &code.buffer;
    let traps = buffer
        .traps()
        .iter()
        .filter_map(|t| TrapKind::from_code(t.code).map(|k| (t.offset, k)))
        .collect();
    let srclocs = buffer
        .get_srclocs_sorted()
        .iter()
        .filter(|s| !s.loc.is_default())
        .map(|s| (s.start, s.end, s.loc.bits()))
        .collect();
    let mut abs8_relocs = Vec::new();
    let mut call_relocs = Vec::new();
    for r in buffer.relocs() {
        if let (
            FinalizedRelocTarget::ExternalName(ExternalName::User(name)),
            Reloc::X86CallPCRel4,
        ) = (&r.target, r.kind)
        {
            let callee = user_funcs[name.as_u32() as usize];
            call_relocs.push((r.offset, callee, r.addend));
            continue;
        }
        let target = match (&r.target, r.kind) {
            (FinalizedRelocTarget::ExternalName(ExternalName::LibCall(lc)), Reloc::Abs8) => {
                libcall_address(*lc)
                    .ok_or_else(|| format!("unsupported runtime library call {lc:?}"))?
            }
            (t, k) => return Err(format!("unsupported relocation {k:?} to {t:?}")),
        };
        abs8_relocs.push((r.offset, (target as i64 + r.addend) as usize));
    }
    Ok(FuncArtifact {
        func_index,
        code: buffer.data().to_vec(),
        alignment: code.buffer.alignment,
        traps,
        srclocs,
        abs8_relocs,
        call_relocs,
        base: false,
    })
}

/// The directory named by `WASM_PATCH_DUMP_DIR`, if any: `finish` writes
/// each function's optimised CLIF (`f0_<index>.clif`) and disassembly
/// (`f0_<index>.s`, and the machine code: `objdump -D -b binary -m
/// i386:x86-64 f0_<index>.bin`) there, for comparing code with wasmtime's
/// (`benches/README.md`, "Against wasmtime"). Read once per process.
fn dump_dir() -> Option<&'static std::path::Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("WASM_PATCH_DUMP_DIR").filter(|d| !d.is_empty())?;
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).ok()?;
        Some(dir)
    })
    .as_deref()
}

/// Write `ctx`'s optimised CLIF, disassembly and machine code into `dir`,
/// named by namespace (0 wasm, 1 trampolines, 2 transfer stubs) and index:
/// `f0_12.clif` is wasm function 12. Best effort: a dump that cannot be
/// written is not a compile error.
fn write_dump(dir: &std::path::Path, ctx: &Context) {
    let stem = match &ctx.func.name {
        UserFuncName::User(n) => format!("f{}_{}", n.namespace, n.index),
        other => format!("f_{other}"),
    };
    let _ = std::fs::write(
        dir.join(format!("{stem}.clif")),
        ctx.func.display().to_string(),
    );
    if let Some(code) = ctx.compiled_code() {
        let asm = code.vcode.as_deref().unwrap_or_default();
        let _ = std::fs::write(dir.join(format!("{stem}.s")), asm);
        let _ = std::fs::write(dir.join(format!("{stem}.bin")), code.buffer.data());
    }
}

extern "C" fn floor_f32(x: f32) -> f32 {
    x.floor()
}
extern "C" fn floor_f64(x: f64) -> f64 {
    x.floor()
}
extern "C" fn ceil_f32(x: f32) -> f32 {
    x.ceil()
}
extern "C" fn ceil_f64(x: f64) -> f64 {
    x.ceil()
}
extern "C" fn trunc_f32(x: f32) -> f32 {
    x.trunc()
}
extern "C" fn trunc_f64(x: f64) -> f64 {
    x.trunc()
}
extern "C" fn nearest_f32(x: f32) -> f32 {
    x.round_ties_even()
}
extern "C" fn nearest_f64(x: f64) -> f64 {
    x.round_ties_even()
}

/// Addresses of the library calls Cranelift may emit on hosts without
/// SSE4.1; anything else is refused.
fn libcall_address(lc: LibCall) -> Option<usize> {
    Some(match lc {
        LibCall::FloorF32 => floor_f32 as *const () as usize,
        LibCall::FloorF64 => floor_f64 as *const () as usize,
        LibCall::CeilF32 => ceil_f32 as *const () as usize,
        LibCall::CeilF64 => ceil_f64 as *const () as usize,
        LibCall::TruncF32 => trunc_f32 as *const () as usize,
        LibCall::TruncF64 => trunc_f64 as *const () as usize,
        LibCall::NearestF32 => nearest_f32 as *const () as usize,
        LibCall::NearestF64 => nearest_f64 as *const () as usize,
        _ => return None,
    })
}

#[allow(dead_code)]
fn _assert_ir_used(_: ir::Type) {}

/// A bundle's compiled code and the module view it was compiled against.
pub(crate) struct CompiledBundle {
    /// Entries then callbacks, placed in this order (placed index `i` is
    /// the `i`-th entry, then callbacks).
    pub(crate) unit: Arc<CodeUnit>,
    /// The target's info extended with the bundle's extra types and added
    /// functions (and hidden callback functions after them).
    pub(crate) info: Arc<ModuleInfo>,
    /// Trampolines for every type of `info`.
    pub(crate) trampolines: Arc<CodeUnit>,
    /// Function index (patched index space) of each callback, by kind code.
    pub(crate) callbacks: Vec<(patch_format::CallbackKind, u32)>,
    /// Frame transfers by function (`docs/transfer.md`); their OSR entries
    /// are placed after the callbacks.
    pub(crate) transfer: std::collections::HashMap<u32, osr::FuncTransfer>,
    /// Functions of the target recompiled because they inlined a function
    /// the bundle changes (docs/consistency.md rule 18): (function, placed
    /// index), placed after the OSR entries.
    pub(crate) dependents: Vec<(u32, usize)>,
}

impl CompiledBundle {
    /// Entry trampoline for type `ty` of the bundle's type space.
    pub(crate) fn entry_trampoline(&self, ty: u32) -> *const u8 {
        self.trampolines.entry(3 * ty as usize)
    }

    /// Stub that traps "removed function", for type `ty`.
    pub(crate) fn removed_stub(&self, ty: u32) -> *const u8 {
        self.trampolines.entry(3 * ty as usize + 2)
    }
}

/// Compile every entry and callback of `bundle` against `target`, and the
/// `dependents`: defined functions of `target` that inlined a function the
/// bundle changes, recompiled from their original bodies with every call
/// through a slot (`inline.rs`).
pub(crate) fn compile_bundle(
    engine: &Engine,
    target: &ModuleInfo,
    bundle: &patch_format::Bundle,
    dependents: &[u32],
) -> Result<CompiledBundle, Error> {
    let mut info = ModuleInfo {
        types: target.types.clone(),
        func_types: target.func_types.clone(),
        num_imported_funcs: target.num_imported_funcs,
        globals: target.globals.clone(),
        num_imported_globals: target.num_imported_globals,
        memories: target.memories.clone(),
        num_imported_memories: target.num_imported_memories,
        tables: target.tables.clone(),
        num_imported_tables: target.num_imported_tables,
        imports: target.imports.clone(),
        exports: target.exports.clone(),
        start: None,
        // Segments stay with the instance's own module: bundle code reaches
        // them through the instance at run time, never through this view.
        elems: Vec::new(),
        datas: Vec::new(),
        func_names: target.func_names.clone(),
        stack_pointer: target.stack_pointer,
        bodies: Vec::new(),
        bytes: Vec::new(),
    };
    if bundle.target_type_count() as usize != info.types.len() {
        return Err(Error::Compile(format!(
            "bundle expects {} types in the target, the target has {}",
            bundle.target_type_count(),
            info.types.len()
        )));
    }
    info.types.extend(bundle.extra_types().into_iter().cloned());
    let mut bodies: Vec<(u32, Vec<u8>)> = Vec::new();
    for e in bundle.entries() {
        let f = e.kind.func_index();
        if e.type_index as usize >= info.types.len() {
            return Err(Error::Compile(format!(
                "entry {}: type {} out of range",
                e.name, e.type_index
            )));
        }
        match e.kind {
            patch_format::EntryKind::Replace { target_index } => {
                if target_index < target.num_imported_funcs
                    || target_index as usize >= target.func_types.len()
                {
                    return Err(Error::Compile(format!(
                        "entry {} replaces function {target_index}, which is not a defined function of the target",
                        e.name
                    )));
                }
                info.func_types[f as usize] = e.type_index;
            }
            patch_format::EntryKind::Add { new_index } => {
                if new_index as usize != info.func_types.len() {
                    return Err(Error::Compile(format!(
                        "entry {} adds function {new_index}, expected index {}",
                        e.name,
                        info.func_types.len()
                    )));
                }
                info.func_types.push(e.type_index);
            }
        }
        info.func_names.insert(f, e.name.clone());
        bodies.push((f, e.body.clone()));
    }
    let mut callbacks = Vec::new();
    for cb in bundle.callbacks() {
        let f = info.func_types.len() as u32;
        info.func_types.push(cb.type_index);
        info.func_names
            .insert(f, format!("{} ({})", cb.name, cb.kind.name()));
        bodies.push((f, cb.body.clone()));
        callbacks.push((cb.kind, f));
    }
    check_function_count(info.func_types.len(), "the patched module")?;
    // The bodies were validated when the bundle was parsed, against the
    // interface it declares; the caller checked that this interface is the
    // target's own (patch/mod.rs), so they are valid in the target's space.
    let unit_id = code_memory::next_unit_id();
    let funcs: Vec<u32> = bodies.iter().map(|b| b.0).collect();
    let by_index: std::collections::HashMap<u32, &Vec<u8>> =
        bodies.iter().map(|(f, b)| (*f, b)).collect();
    // Bundle functions poll at entry whenever they call or loop: that keeps
    // the module's entry-poll analysis true for the code they patch
    // (`polls.rs`).
    let job = UnitJob {
        engine,
        info: &info,
        own_funcs: target.func_types.len() as u32,
        inline: None,
    };
    let mut artifacts: Vec<FuncArtifact> = compile_functions(
        &job,
        &funcs,
        |f| FunctionBody::new(wasmparser::BinaryReader::new(by_index[&f], 0)),
        |_| true,
    )?
    .into_iter()
    .map(|(a, _)| a)
    .collect();
    let (osr_entries, transfer) = osr::compile_transfers(&job, target, bundle, artifacts.len())?;
    artifacts.extend(osr_entries);
    // Dependents (rule 18): functions of the target that inlined a function
    // this bundle changes, recompiled from their original bodies without
    // inlining, so that they call it through the slot of their world.
    // They poll at entry whenever they call or loop, as bundle code does.
    let first_dependent = artifacts.len();
    let dependent_artifacts = compile_functions(
        &job,
        dependents,
        |g| {
            let range = target.bodies[(g - target.num_imported_funcs) as usize].clone();
            FunctionBody::new(wasmparser::BinaryReader::new(
                &target.bytes[range.clone()],
                range.start as u64,
            ))
        },
        |_| true,
    )?;
    artifacts.extend(dependent_artifacts.into_iter().map(|(a, _)| a));
    let dependents = dependents
        .iter()
        .enumerate()
        .map(|(i, &g)| (g, first_dependent + i))
        .collect();
    let unit = CodeUnit::publish(unit_id, UnitKind::Wasm, artifacts)
        .map_err(|e| Error::Compile(e.to_string()))?;
    let trampolines = trampolines::compile_for_types(engine, &info.types)?;
    Ok(CompiledBundle {
        unit,
        info: Arc::new(info),
        trampolines,
        callbacks,
        transfer,
        dependents,
    })
}
