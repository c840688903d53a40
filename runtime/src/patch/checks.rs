//! The checks `apply` makes before it publishes anything (docs/consistency.md
//! rule 14): the bundle's target and its view of the target's interface,
//! stacking and states, the signature rule, the indices of added
//! functions, and what callbacks may reach. Each returns the first
//! problem as a [`PatchError`] naming the function; none changes anything.

use super::state;
use super::versions::PatchedInstance;
use super::PatchError;
use crate::engine::Engine;
use crate::module::{ConstExpr, ElemItem, ExportKind, ModuleInfo};
use patch_format::{Bundle, CallbackKind, EntryKind, ModuleHash, TargetInterface};
use std::collections::{HashMap, HashSet};

/// Check `bundle` against the instance running `info`, whose patch
/// bookkeeping is `pi` (none before the first apply) and whose function
/// index space has `published` entries now. `immediate` is the apply
/// option that makes every function immediate.
pub(crate) fn check(
    engine: &Engine,
    info: &ModuleInfo,
    pi: Option<&PatchedInstance>,
    published: usize,
    bundle: &Bundle,
    immediate: bool,
) -> Result<(), PatchError> {
    let actual = ModuleHash::of(&info.bytes);
    if bundle.target_hash() != actual {
        return Err(PatchError::WrongTarget {
            expected: patch_format::hex(bundle.target_hash().as_bytes()),
            actual: patch_format::hex(actual.as_bytes()),
        });
    }
    let iface = TargetInterface::from_module(&info.bytes)?;
    interface_fits(&iface, bundle, info).map_err(PatchError::Incompatible)?;
    stacking(pi, bundle)?;
    signatures(info, pi, bundle, immediate)?;
    added_indices(engine, pi, bundle)?;
    callbacks(info, bundle, published)
}

/// Whether the interface the bundle was validated against is the target's:
/// the same index spaces and types, except that a replaced function may
/// carry its new type (a signature change, checked separately).
fn interface_fits(
    target: &TargetInterface,
    bundle: &Bundle,
    info: &ModuleInfo,
) -> Result<(), String> {
    let b = bundle.interface();
    let differ = |what: &str| {
        Err(format!(
            "the bundle's view of the target's {what} differs from the target"
        ))
    };
    if b.tables() != target.tables() {
        return differ("tables");
    }
    if b.memories() != target.memories() {
        return differ("memories");
    }
    if b.globals() != target.globals() {
        return differ("globals");
    }
    if b.tags() != target.tags()
        || b.data_count() != target.data_count()
        || b.elem_types() != target.elem_types()
    {
        return differ("segments");
    }
    if b.type_count() != target.type_count()
        || (0..target.type_count()).any(|i| bundle.func_type(i) != info.types.get(i as usize))
    {
        return differ("types");
    }
    let replaced: HashMap<u32, u32> = bundle
        .entries()
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Replace { target_index } => Some((target_index, e.type_index)),
            EntryKind::Add { .. } => None,
        })
        .collect();
    let (bt, tt) = (b.func_type_indices(), target.func_type_indices());
    if bt.len() != tt.len() {
        return differ("functions");
    }
    for (f, (have, want)) in bt.iter().zip(tt).enumerate() {
        if have != want && replaced.get(&(f as u32)) != Some(have) {
            return differ(&format!("type of function {}", info.func_name(f as u32)));
        }
    }
    Ok(())
}

/// The bundle is not applied already, `sits_on` names applied bundles,
/// and the states it requires are provided by applied bundles.
fn stacking(pi: Option<&PatchedInstance>, bundle: &Bundle) -> Result<(), PatchError> {
    let applied = pi.map(|p| p.applied.as_slice()).unwrap_or_default();
    if let Some(b) = applied
        .iter()
        .find(|b| b.bundle.bundle_id() == bundle.bundle_id())
    {
        return Err(PatchError::AlreadyApplied {
            patch: b.id,
            bundle_id: patch_format::hex(&bundle.bundle_id().0),
        });
    }
    for need in bundle.sits_on() {
        if !applied.iter().any(|b| b.bundle.bundle_id() == *need) {
            return Err(PatchError::Incompatible(format!(
                "bundle sits on {}, which is not applied",
                patch_format::hex(&need.0)
            )));
        }
    }
    let provided: Vec<_> = applied
        .iter()
        .flat_map(|b| b.bundle.states().iter().copied())
        .collect();
    match state::first_unmet(bundle.requires_states(), &provided) {
        Some(missing) => Err(PatchError::MissingState(missing)),
        None => Ok(()),
    }
}

/// How one piece of code refers to a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// `call` or `return_call`: the caller passes arguments of the type it
    /// was compiled against.
    Call,
    /// `ref.func`: a reference that can reach any `call_indirect`.
    Ref,
}

/// Every function reference of a function body (`bytes` from its locals on).
fn uses(bytes: &[u8]) -> Result<Vec<(Use, u32)>, String> {
    let body = wasmparser::FunctionBody::new(wasmparser::BinaryReader::new(bytes, 0));
    let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while !ops.eof() {
        match ops.read().map_err(|e| e.to_string())? {
            wasmparser::Operator::Call { function_index }
            | wasmparser::Operator::ReturnCall { function_index } => {
                out.push((Use::Call, function_index))
            }
            wasmparser::Operator::RefFunc { function_index } => {
                out.push((Use::Ref, function_index))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The signature rule, enforced here whatever the bundle claims: a
/// replacement may change its function's type only when no code outside
/// the bundle can still call it with the old type. So the function must
/// not be immediate, exported, in an element segment or a table's
/// initialiser, the target of any `ref.func` (in the module or in an
/// applied bundle), or called directly by a function that the bundle does
/// not replace (in the module or in an applied bundle). A cumulative bundle
/// (`replace`) takes every applied bundle's functions out of the new world
/// (rule 12: they go back to their own versions, and they are in the check
/// set, so no thread runs them there), so their direct calls do not count;
/// their references still do (a reference taken may sit in a table or in
/// memory and be called after).
fn signatures(
    info: &ModuleInfo,
    pi: Option<&PatchedInstance>,
    bundle: &Bundle,
    immediate: bool,
) -> Result<(), PatchError> {
    let mut changed = HashSet::new();
    for e in bundle.entries() {
        if let EntryKind::Replace { target_index } = e.kind {
            if (target_index as usize) < info.func_types.len()
                && info.func_type(target_index) != &e.ty
            {
                if immediate || bundle.is_immediate(e) {
                    return Err(PatchError::Incompatible(format!(
                        "function {} changes its signature and cannot be immediate",
                        e.name
                    )));
                }
                changed.insert(target_index);
            }
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let refused = |f: u32, why: String| {
        Err(PatchError::Incompatible(format!(
            "function {} cannot change its signature: {why}",
            info.func_name(f)
        )))
    };
    for (name, kind, idx) in &info.exports {
        if *kind == ExportKind::Func && changed.contains(idx) {
            return refused(*idx, format!("it is exported as `{name}`"));
        }
    }
    let const_ref = |e: &ConstExpr| match e {
        ConstExpr::RefFunc(f) => Some(*f),
        _ => None,
    };
    for (i, seg) in info.elems.iter().enumerate() {
        for item in &seg.items {
            let f = match item {
                ElemItem::Func(f) => Some(*f),
                ElemItem::Expr(e) => const_ref(e),
            };
            if let Some(f) = f.filter(|f| changed.contains(f)) {
                return refused(f, format!("element segment {i} holds it"));
            }
        }
    }
    let inits = info.tables.iter().filter_map(|t| t.init.as_ref());
    let globals = info.globals.iter().filter_map(|g| g.init.as_ref());
    for f in inits.chain(globals).filter_map(const_ref) {
        if changed.contains(&f) {
            return refused(f, "a table or global initialiser refers to it".into());
        }
    }
    let in_bundle: HashSet<u32> = bundle
        .entries()
        .iter()
        .map(|e| e.kind.func_index())
        .collect();
    // Every body that may run: the module's own, and every applied
    // bundle's; each with its function (u32::MAX for a callback), its name,
    // and whether a cumulative bundle supersedes it.
    let mut bodies: Vec<(u32, &[u8], String, bool)> = info
        .bodies
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = info.num_imported_funcs + i as u32;
            (f, &info.bytes[r.clone()], info.func_name(f), false)
        })
        .collect();
    for b in pi.map(|p| p.applied.as_slice()).unwrap_or_default() {
        for e in b.bundle.entries() {
            let who = format!("{} (its version from {})", e.name, b.id);
            bodies.push((e.kind.func_index(), &e.body, who, bundle.replace()));
        }
        for c in b.bundle.callbacks() {
            // A callback of an applied bundle runs at its revert.
            bodies.push((
                u32::MAX,
                &c.body,
                format!("{} callback of {}", c.kind.name(), b.id),
                false,
            ));
        }
    }
    for (caller, bytes, who, superseded) in bodies {
        let found = uses(bytes).map_err(|e| PatchError::Incompatible(e.to_string()))?;
        for (how, f) in found {
            if !changed.contains(&f) {
                continue;
            }
            match how {
                Use::Ref => return refused(f, format!("{who} takes a reference to it")),
                Use::Call if superseded => {}
                Use::Call if caller == u32::MAX || !in_bundle.contains(&caller) => {
                    return refused(f, format!("its caller {who} is not in the bundle"))
                }
                Use::Call => {}
            }
        }
    }
    Ok(())
}

/// An index that a bundle adds keeps its function and type for the life of
/// the instance: stale references to it may sit in tables or memory after a
/// revert, and other bundles' code calls it by index. A bundle may add a
/// function at an index that one already holds only if it is the same
/// function (name) with the same type.
fn added_indices(
    engine: &Engine,
    pi: Option<&PatchedInstance>,
    bundle: &Bundle,
) -> Result<(), PatchError> {
    let Some(pi) = pi else { return Ok(()) };
    for e in bundle.entries() {
        let EntryKind::Add { new_index } = e.kind else {
            continue;
        };
        let Some(have) = pi.added.get(&new_index) else {
            continue;
        };
        let sig = engine.signature_id(&e.ty);
        if have.name != e.name || have.signature != sig {
            return Err(PatchError::Incompatible(format!(
                "bundle adds function {} at index {new_index}, which already holds function {} \
                 (added by {}{}); an added index keeps its function and type for the life of \
                 the instance: build the bundle from the same new build as {}, or make it a \
                 cumulative replacement of it",
                e.name,
                have.name,
                have.patch,
                if have.signature != sig {
                    ", with another type"
                } else {
                    ""
                },
                have.patch
            )));
        }
    }
    Ok(())
}

/// What callbacks may reach. A callback has no slot: no code may call or
/// reference one (its index is another function's in the running
/// instance, or nobody's). A pre-patch callback runs before anything is
/// published, so it may not reach a function the bundle adds either.
fn callbacks(info: &ModuleInfo, bundle: &Bundle, published: usize) -> Result<(), PatchError> {
    let added: HashSet<u32> = bundle
        .entries()
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Add { new_index } if new_index as usize >= published => Some(new_index),
            _ => None,
        })
        .collect();
    let first_callback = info.func_types.len() as u32
        + bundle
            .entries()
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Add { .. }))
            .count() as u32;
    let names: HashMap<u32, &str> = bundle
        .entries()
        .iter()
        .map(|e| (e.kind.func_index(), e.name.as_str()))
        .collect();
    let code = bundle
        .entries()
        .iter()
        .map(|e| (e.name.as_str(), None, &e.body))
        .chain(
            bundle
                .callbacks()
                .iter()
                .map(|c| (c.name.as_str(), Some(c.kind), &c.body)),
        );
    for (who, kind, body) in code {
        for (_, f) in uses(body).map_err(PatchError::Incompatible)? {
            if f >= first_callback {
                return Err(PatchError::Incompatible(format!(
                    "{who} calls or references a callback (function {f}); callbacks have no slot"
                )));
            }
            if kind == Some(CallbackKind::PrePatch) && added.contains(&f) {
                return Err(PatchError::Incompatible(format!(
                    "pre-patch callback {who} reaches function {}, which this bundle adds: \
                     pre-patch runs before anything is published",
                    names.get(&f).copied().unwrap_or("?")
                )));
            }
        }
    }
    Ok(())
}
