//! A bundle's frame transfer maps at apply (`docs/transfer.md`): each map
//! is checked against the live code (the target's body of the function and
//! the bundle's), and one OSR entry is compiled per mapped loop header.
//! Each map is also inverted into a map back ([`BackTransfer`]), checked
//! the same way, with OSR entries into the target's own body (placed in
//! the bundle's unit, marked `base`). What the transition needs at run
//! time is a [`FuncTransfer`] per function.

use super::func_env::{osr_signature, wasm_signature, FuncEnv};
use super::UnitJob;
use crate::errors::Error;
use crate::module::ModuleInfo;
use crate::vm::code_memory::FuncArtifact;
use cranelift_codegen::ir::UserFuncName;
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use patch_format::dataflow::Flow;
use patch_format::transfer::{body_locals, loop_offsets, TransferMap, FRESH};
use std::collections::HashMap;
use wasmparser::{BinaryReader, FunctionBody, ValType};

/// How frames of one function move to the bundle's version.
#[derive(Debug, Clone)]
pub(crate) struct FuncTransfer {
    /// For each local `j` of the new version, the old local it takes.
    pub(crate) locals: Vec<u32>,
    /// Mapped headers: old loop ordinal and the placed index of the OSR
    /// entry (in the bundle's unit) for its new header.
    pub(crate) headers: Vec<(u32, usize)>,
    /// Per mapped header (the order of `headers`): for each operand on the
    /// stack at the new header (the operands below the loop, then its
    /// parameters), the old header's operand it takes, numbered the same
    /// way (checked at apply: the operands below in place, a permutation
    /// of parameters of equal types).
    pub(crate) params: Vec<Vec<u32>>,
    /// Module byte offset of each `loop` of the old version, by ordinal:
    /// the offset a frame stopped at that header reports.
    pub(crate) old_loop_offsets: Vec<usize>,
    /// The old version's local count (its loop parameters' spill slots
    /// follow its locals).
    pub(crate) old_nlocals: usize,
    /// 8-byte words a local takes in a transfer poll's spill area and an
    /// OSR entry's buffer, in the target's version and the bundle's: 2 in
    /// a function with a `v128` local, else 1.
    pub(crate) old_words: usize,
    pub(crate) new_words: usize,
    /// The map back, toward the target's own code (a revert, or a reverse
    /// after a transfer), or why there is none.
    pub(crate) back: Result<BackTransfer, String>,
}

/// How frames of the bundle's version of one function move back into the
/// target's own code (docs/transfer.md, "Maps back"): the forward map
/// inverted at apply and checked like it.
#[derive(Debug, Clone)]
pub(crate) struct BackTransfer {
    /// For each local `i` of the target's version, the bundle's local it
    /// takes, or [`FRESH`] (it starts at zero).
    pub(crate) locals: Vec<u32>,
    /// Mapped headers: the bundle's loop ordinal and the placed index (in
    /// the bundle's unit) of the OSR entry into the target's body at the
    /// matching header (its code is marked `base`: version 0).
    pub(crate) headers: Vec<(u32, usize)>,
    /// Per mapped header: for each operand on the stack at the target's
    /// header, the bundle header's operand it takes (the forward pairing
    /// inverted).
    pub(crate) params: Vec<Vec<u32>>,
    /// Byte offset (in the bundle's body) of each `loop` of the bundle's
    /// version, by ordinal.
    pub(crate) new_loop_offsets: Vec<usize>,
}

/// Check every map of `bundle` against `target` and the bundle's own
/// bodies, then compile its OSR entries. Returns the artifacts (to be
/// placed after `first_placed` others) and the transfers by function.
pub(crate) fn compile_transfers(
    job: &UnitJob<'_>,
    target: &ModuleInfo,
    bundle: &patch_format::Bundle,
    first_placed: usize,
) -> Result<(Vec<FuncArtifact>, HashMap<u32, FuncTransfer>), Error> {
    let mut artifacts = Vec::new();
    let mut out = HashMap::new();
    if !job.engine.config().patchable {
        // The baseline build has no polls (nothing can reach a transfer),
        // and its unit resolves direct calls by function index, which an
        // OSR entry (same index) must not capture.
        return Ok((artifacts, out));
    }
    let mut ctx = Context::new();
    let mut fctx = FunctionBuilderContext::new();
    for map in &bundle.transfers().maps {
        let name = target.func_name(map.func);
        let bad = |why: String| {
            Error::Compile(format!(
                "transfer map of function {name} (index {}): {why}",
                map.func
            ))
        };
        let entry = bundle
            .entries()
            .iter()
            .find(|e| {
                matches!(e.kind, patch_format::EntryKind::Replace { target_index } if target_index == map.func)
            })
            .ok_or_else(|| bad("the bundle does not replace this function".into()))?;
        if out.contains_key(&map.func) {
            return Err(bad("a second map".into()));
        }
        let old_ty = target.func_type(map.func);
        if job.info.func_type(map.func) != old_ty {
            return Err(bad("the replacement changes the function's type".into()));
        }
        if old_ty.results().len() > 1 {
            return Err(bad("the function returns more than one value".into()));
        }
        let range = target.bodies[(map.func - target.num_imported_funcs) as usize].clone();
        let old_body = FunctionBody::new(BinaryReader::new(
            &target.bytes[range.clone()],
            range.start as u64,
        ));
        let new_body = FunctionBody::new(BinaryReader::new(&entry.body, 0));
        let old_locals = body_locals(old_ty.params(), &old_body).map_err(bad)?;
        let new_locals = body_locals(old_ty.params(), &new_body).map_err(bad)?;
        if old_locals != map.old_locals {
            return Err(bad("its old local types are not the live code's".into()));
        }
        if new_locals != map.new_locals {
            return Err(bad("its new local types are not the bundle's code".into()));
        }
        let old_loops = loop_offsets(&old_body).map_err(bad)?;
        let new_loop_offsets = loop_offsets(&new_body).map_err(bad)?;
        let new_loops = new_loop_offsets.len();
        let nparams = old_ty.params().len();
        check_locals(map, nparams, &old_body, &new_body).map_err(bad)?;
        let operands =
            check_params(map, nparams, (target, &old_body), (job.info, &new_body)).map_err(bad)?;
        let below = |k: usize| operands.get(k).map_or(0, |o| o.0);
        let mut headers = Vec::new();
        for (k, &(old, new)) in map.headers.iter().enumerate() {
            if old as usize >= old_loops.len() || new as usize >= new_loops {
                return Err(bad(format!(
                    "header {old} → {new} names a loop that does not exist ({} loops before, {new_loops} after)",
                    old_loops.len()
                )));
            }
            let a = compile_entry(
                job,
                map.func,
                &new_body,
                (new, below(k)),
                &mut ctx,
                &mut fctx,
            )
            .map_err(|e| bad(format!("loop {new}: {e}")))?;
            headers.push((old, first_placed + artifacts.len()));
            artifacts.push(a);
        }
        // The map back: its OSR entries translate the target's own body
        // in the target's view (version 0, placed in this unit).
        let base_job = UnitJob {
            engine: job.engine,
            info: target,
            own_funcs: job.own_funcs,
            // Inlining is off wherever frame transfer is on (`inline.rs`).
            inline: None,
        };
        let mut back_artifacts = Vec::new();
        let back = back_locals(map, nparams, &old_body, &new_body).and_then(|locals| {
            let mut back_headers = Vec::new();
            for (k, &(old, new)) in map.headers.iter().enumerate() {
                let at = (old, below(k));
                let mut a = compile_entry(&base_job, map.func, &old_body, at, &mut ctx, &mut fctx)
                    .map_err(|e| format!("the target's loop {old} has no OSR entry: {e}"))?;
                a.base = true;
                let placed = first_placed + artifacts.len() + back_artifacts.len();
                back_headers.push((new, placed));
                back_artifacts.push(a);
            }
            Ok(BackTransfer {
                locals,
                headers: back_headers,
                params: operands.iter().map(|o| o.1.clone()).collect(),
                new_loop_offsets,
            })
        });
        if back.is_ok() {
            artifacts.append(&mut back_artifacts);
        }
        out.insert(
            map.func,
            FuncTransfer {
                locals: map.locals.clone(),
                headers,
                params: map.params.clone(),
                old_loop_offsets: old_loops,
                old_nlocals: map.old_locals.len(),
                old_words: words(&map.old_locals),
                new_words: words(&map.new_locals),
                back,
            },
        );
    }
    Ok((artifacts, out))
}

/// The map's locals: each new local takes an old one of its type (each
/// old local at most once), or starts fresh where that is exact at every
/// mapped header of `new` (the new version's body; `nparams` parameters):
/// it is dead there, or only the entry's zero reaches it
/// ([`Flow::fresh_ok`]). A new local live at a mapped header must take an
/// old local live at the old header (`old`): transfer polls spill only
/// the locals live at their header, the others' slots hold zero.
fn check_locals(
    map: &TransferMap,
    nparams: usize,
    old: &FunctionBody<'_>,
    new: &FunctionBody<'_>,
) -> Result<(), String> {
    if map.locals.len() != map.new_locals.len() {
        return Err(format!(
            "{} locals mapped, the new version has {}",
            map.locals.len(),
            map.new_locals.len()
        ));
    }
    let nf = Flow::new(new, map.new_locals.len())?;
    let new_live = nf.live_at_loops()?;
    let old_live = Flow::new(old, map.old_locals.len())?.live_at_loops()?;
    let mut seen = vec![false; map.old_locals.len()];
    for (j, &i) in map.locals.iter().enumerate() {
        if i == FRESH {
            for &(_, h) in &map.headers {
                let at = new_live.get(h as usize).map(Vec::as_slice).unwrap_or(&[]);
                if !nf.fresh_ok(h, j as u32, nparams, at) {
                    return Err(format!(
                        "new local {j} starts fresh but may be read before it is written from loop {h}"
                    ));
                }
            }
            continue;
        }
        let Some(s) = seen.get_mut(i as usize) else {
            return Err(format!(
                "new local {j} takes old local {i}, which does not exist"
            ));
        };
        if std::mem::replace(s, true) {
            return Err(format!("old local {i} is carried twice"));
        }
        if map.old_locals[i as usize] != map.new_locals[j] {
            return Err(format!(
                "new local {j} ({}) takes old local {i} ({})",
                map.new_locals[j], map.old_locals[i as usize]
            ));
        }
        for &(ho, hn) in &map.headers {
            let read = new_live.get(hn as usize).is_some_and(|l| l[j]);
            let kept = old_live.get(ho as usize).is_none_or(|l| l[i as usize]);
            if read && !kept {
                return Err(format!(
                    "new local {j} is read from loop {hn} on, but takes old local {i}, which is dead at loop {ho} (the old code keeps no value for it there)"
                ));
            }
        }
    }
    Ok(())
}

/// The parameter types of each `loop` of `body` (in `info`'s type space),
/// by ordinal.
fn loop_params(info: &ModuleInfo, body: &FunctionBody<'_>) -> Result<Vec<Vec<ValType>>, String> {
    let mut out = Vec::new();
    let mut r = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !r.eof() {
        if let wasmparser::Operator::Loop { blockty } = r.read().map_err(|e| e.to_string())? {
            out.push(match blockty {
                wasmparser::BlockType::FuncType(i) => info
                    .types
                    .get(i as usize)
                    .ok_or_else(|| format!("loop {} has unknown type {i}", out.len()))?
                    .params()
                    .to_vec(),
                _ => Vec::new(),
            });
        }
    }
    Ok(out)
}

/// The map's operand pairing at each mapped header, checked against the
/// live code. Each list covers the operand stack at the new header: first
/// the operands below the loop (its length less the new loop's parameter
/// count), which must keep their places, then one entry per parameter of
/// the new loop (a value has no "fresh" option: every one is fed), each
/// naming a parameter of the old loop (which takes as many) of the same
/// type, none twice; a `v128` only in functions with `v128` locals (their
/// 16-byte slots). A header with a non-empty list must be reached by the
/// same code in both bodies (from the function entry, up to a one-to-one
/// renaming of locals of equal types, parameters in place), so that both
/// headers have operand stacks of the same types, and the OSR entries
/// check that the operands below are the header's own (their count).
/// Returns, per header, the number of operands
/// below and the pairing inverted (for each old value, the new one it
/// takes back).
fn check_params(
    map: &TransferMap,
    nparams: usize,
    (old_info, old): (&ModuleInfo, &FunctionBody<'_>),
    (new_info, new): (&ModuleInfo, &FunctionBody<'_>),
) -> Result<Vec<(usize, Vec<u32>)>, String> {
    if map.params.len() != map.headers.len() {
        return Err(format!(
            "{} operand pairings for {} headers",
            map.params.len(),
            map.headers.len()
        ));
    }
    let (old_loops, new_loops) = (loop_params(old_info, old)?, loop_params(new_info, new)?);
    let wide = words(&map.old_locals) == 2 && words(&map.new_locals) == 2;
    let mut back = Vec::new();
    for (&(ho, hn), pairing) in map.headers.iter().zip(&map.params) {
        let (Some(ot), Some(nt)) = (old_loops.get(ho as usize), new_loops.get(hn as usize)) else {
            // `compile_transfers` names the missing loop.
            back.push((0, Vec::new()));
            continue;
        };
        let below = pairing.len().checked_sub(nt.len());
        let Some(below) = below.filter(|_| ot.len() == nt.len()) else {
            return Err(format!(
                "loop {hn}: {} operand(s) paired, but the new loop takes {} parameter(s) and the old loop {ho} takes {} (every parameter must be fed, one to one)",
                pairing.len(),
                nt.len(),
                ot.len()
            ));
        };
        if let Some(i) = (0..below).find(|&i| pairing[i] as usize != i) {
            return Err(format!(
                "loop {hn}: operand {i} below the header takes old operand {} (operands below a header keep their places)",
                pairing[i]
            ));
        }
        let mut inv = vec![u32::MAX; pairing.len()];
        for (i, slot) in inv.iter_mut().enumerate().take(below) {
            *slot = i as u32;
        }
        for (p, &q) in pairing[below..].iter().enumerate() {
            let Some(&t) = (q as usize).checked_sub(below).and_then(|x| ot.get(x)) else {
                return Err(format!(
                    "loop {hn}: new loop parameter {p} takes old loop parameter {}, which does not exist (old loop {ho} takes {})",
                    q as i64 - below as i64,
                    ot.len()
                ));
            };
            if t != nt[p] {
                return Err(format!(
                    "loop {hn}: new loop parameter {p} ({}) takes old loop parameter {} ({t})",
                    nt[p],
                    q as usize - below
                ));
            }
            if t == ValType::V128 && !wide {
                return Err(format!(
                    "loop {hn}: loop parameter {p} is a v128 in a function without v128 locals"
                ));
            }
            if std::mem::replace(&mut inv[q as usize], (below + p) as u32) != u32::MAX {
                return Err(format!(
                    "loop {hn}: old loop parameter {} is carried twice",
                    q as usize - below
                ));
            }
        }
        // The same code before both headers pushes operands of the same
        // types: the OSR entry's check of its own count then holds for the
        // old header too, so the old spill area holds these operands where
        // the copy reads them.
        if !pairing.is_empty() {
            same_code_before(map, nparams, (old, ho), (new, hn)).map_err(|e| {
                format!(
                    "loop {hn}: {} operand(s) on the stack at the header, but {e}",
                    pairing.len()
                )
            })?;
        }
        back.push((below, inv));
    }
    Ok(back)
}

/// Whether the code from the function entry to the header of loop `ho` of
/// `old` and of loop `hn` of `new` is the same, operator for operator, up
/// to a one-to-one renaming of locals of equal types (`map`'s) that keeps
/// the `nparams` parameters in place. `Err` says how it differs.
fn same_code_before(
    map: &TransferMap,
    nparams: usize,
    (old, ho): (&FunctionBody<'_>, u32),
    (new, hn): (&FunctionBody<'_>, u32),
) -> Result<(), String> {
    use wasmparser::Operator as Op;
    let differs = || "the code before it differs from the target's".to_string();
    let mut ro = old.get_operators_reader().map_err(|e| e.to_string())?;
    let mut rn = new.get_operators_reader().map_err(|e| e.to_string())?;
    let (mut o2n, mut n2o) = (HashMap::new(), HashMap::new());
    let local = |op: &Op<'_>| match *op {
        Op::LocalGet { local_index } => Some((0, local_index)),
        Op::LocalSet { local_index } => Some((1, local_index)),
        Op::LocalTee { local_index } => Some((2, local_index)),
        _ => None,
    };
    let mut loops = 0u32;
    loop {
        let (Ok(a), Ok(b)) = (ro.read(), rn.read()) else {
            return Err(differs());
        };
        match (local(&a), local(&b)) {
            (Some((ka, x)), Some((kb, y))) => {
                let types = (
                    map.old_locals.get(x as usize),
                    map.new_locals.get(y as usize),
                );
                let same_type = matches!(types, (Some(s), Some(t)) if s == t);
                let in_place = (x as usize >= nparams && y as usize >= nparams) || x == y;
                if ka != kb
                    || !same_type
                    || !in_place
                    || *o2n.entry(x).or_insert(y) != y
                    || *n2o.entry(y).or_insert(x) != x
                {
                    return Err(
                        "the code before it differs from the target's (its locals do not rename one to one)"
                            .into(),
                    );
                }
            }
            (None, None) if format!("{a:?}") == format!("{b:?}") => {}
            _ => return Err(differs()),
        }
        if matches!(a, Op::Loop { .. }) {
            if loops == ho || loops == hn {
                return if ho == hn { Ok(()) } else { Err(differs()) };
            }
            loops += 1;
        }
    }
}

/// The words a local takes in a spill area or buffer (`thread/poll.rs`),
/// in a function whose locals have `types`.
fn words(types: &[wasmparser::ValType]) -> usize {
    if types.contains(&wasmparser::ValType::V128) {
        2
    } else {
        1
    }
}

/// The map back of `map` (checked forward already): each old local takes
/// the new local that took it, or starts fresh. Checked like the forward
/// map, the liveness argument reversed (docs/transfer.md, "Maps back"): an
/// old local that no new local feeds must be, at every mapped old header,
/// dead or reached only by the entry's zero; an old local live at an old
/// header must take a new local live at the new header (the bundle's
/// transfer polls spill only those), unless zero is its value there.
/// `Err` says why there is no map back.
fn back_locals(
    map: &TransferMap,
    nparams: usize,
    old: &FunctionBody<'_>,
    new: &FunctionBody<'_>,
) -> Result<Vec<u32>, String> {
    let of = Flow::new(old, map.old_locals.len())?;
    let old_live = of.live_at_loops()?;
    let new_live = Flow::new(new, map.new_locals.len())?.live_at_loops()?;
    let mut back = vec![FRESH; map.old_locals.len()];
    for (j, &i) in map.locals.iter().enumerate() {
        if let Some(b) = back.get_mut(i as usize) {
            *b = j as u32;
        }
    }
    for (i, &j) in back.iter().enumerate() {
        for &(ho, hn) in &map.headers {
            let at = old_live.get(ho as usize).map(Vec::as_slice).unwrap_or(&[]);
            if of.fresh_ok(ho, i as u32, nparams, at) {
                continue;
            }
            if j == FRESH {
                return Err(format!(
                    "old local {i} has no counterpart in the new version but may be read before it is written from loop {ho}"
                ));
            }
            if !new_live.get(hn as usize).is_some_and(|l| l[j as usize]) {
                return Err(format!(
                    "old local {i} is read from loop {ho} on, but takes new local {j}, which is dead at loop {hn} (the new code keeps no value for it there)"
                ));
            }
        }
    }
    Ok(back)
}

/// Compile the OSR entry of function `func` (body `body`) at its loop
/// `ordinal`, below which the map carries `below` operands (the
/// translation checks that the loop has as many).
fn compile_entry(
    job: &UnitJob<'_>,
    func: u32,
    body: &FunctionBody<'_>,
    (ordinal, below): (u32, usize),
    ctx: &mut Context,
    fctx: &mut FunctionBuilderContext,
) -> Result<FuncArtifact, String> {
    let isa = job.engine.isa();
    let ty = job.info.func_type(func).clone();
    let mut env = FuncEnv::new(
        job.info,
        job.engine,
        isa.frontend_config(),
        job.engine.config().patchable,
        false,
        job.own_funcs,
    );
    if job.engine.config().frame_transfer {
        env.set_transfer_stub(job.engine.transfer_stub());
    }
    ctx.clear();
    let sig = wasm_signature(&ty, isa.default_call_conv());
    ctx.func.signature = osr_signature(&sig.returns);
    ctx.func.name = UserFuncName::user(0, func);
    super::translate::translate_osr_entry(&mut env, &ty, body, &mut ctx.func, fctx, ordinal, below)
        .map_err(|e| {
            *fctx = FunctionBuilderContext::new();
            e.to_string()
        })?;
    super::finish(isa, ctx, func)
}
