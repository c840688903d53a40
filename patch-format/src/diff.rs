//! `diff`: two builds of one module → a bundle, like kpatch-build.
//!
//! Owns [`diff`], [`DiffOptions`], [`DiffOutcome`] and the rules of what a
//! function-level patch can carry:
//!
//! 1. Functions are matched by key (see `module_view`): name-section name,
//!    else export name; then a function left unmatched on each side whose
//!    names differ only by rustc's symbol hash, when no other unmatched
//!    function bears that name (`pair_renamed`). Unkeyed functions are
//!    matched by index only when the number of defined functions is
//!    unchanged.
//! 2. Every new body is rewritten into the target's index spaces (matched
//!    functions → their old index, new functions → `target_func_count + k`,
//!    types → the first old type with the same signature, or an extra type),
//!    and compared with the old body normalized the same way. So a function
//!    added in the middle, which shifts every index, changes nothing else.
//! 3. Changed bodies are replacements, new functions additions; nothing
//!    unchanged is included. Callback-only new functions become callbacks.
//! 4. With `--emit-relocs` sections in both builds, new bodies are first
//!    put into the target's data layout (`relocs`): moved addresses are not
//!    changes, line-only panic locations are left out and counted, layout
//!    globals' initial values, data segments, table 0's size and its
//!    function segment are live state, and new data and function pointers
//!    a body needs are carried as bundle data (`carry.rs`).
//! 5. Refused, naming the item: changes to imports, data, globals, memories,
//!    tables, tags, element segments (declarative ones aside), exports, the
//!    start function; removed functions still used by unpatched code; type
//!    changes whose callers are not all in the bundle, that are reachable
//!    indirectly, or that are asked to be immediate.

use std::collections::{BTreeSet, HashMap};

use wasm_encoder::reencode::Reencode;
use wasmparser::{BinaryReader, ExternalKind, FuncType, FunctionBody, ValType};

use crate::bundle::{
    BundleBuilder, BundleId, Callback, CallbackKind, Entry, EntryKind, Metadata, ModuleHash,
    StateVersion, TargetInterface,
};
use crate::carry::{pad_sites, Carry, Placed};
use crate::error::{DiffError, Side, Unpatchable};
use crate::module_view::ModuleView;
use crate::names;
use crate::relocs::{is_layout_global, relocate_body, table_only_grew, Linked, NeedsData, Site};
use crate::remap::{encoded, remap_body, Remap, TypeMap};
use crate::Bundle;

/// What `diff` should put in the bundle besides the functions.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Bundle name.
    pub name: String,
    /// Bundle description.
    pub description: String,
    /// Tool that makes the bundle (defaults to this crate and version).
    pub created_by: String,
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// Functions (by name in the new build) to mark immediate.
    pub immediate: Vec<String>,
    /// Mark the whole bundle immediate.
    pub all_immediate: bool,
    /// Cumulative bundle (replaces all earlier ones).
    pub replace: bool,
    /// States the bundle declares.
    pub states: Vec<StateVersion>,
    /// States the bundle requires.
    pub requires: Vec<StateVersion>,
    /// Bundles this one sits on.
    pub sits_on: Vec<BundleId>,
    /// Callbacks: kind and the name of a function of the new build.
    pub callbacks: Vec<(CallbackKind, String)>,
    /// Take in functions whose only change is a panic location's line or
    /// column (left out by default; they then need new data).
    pub include_line_only: bool,
    /// Functions (by name in the new build) whose frames may be transferred
    /// at loop headers (`--transfer`, docs/transfer.md).
    pub transfer: Vec<String>,
    /// Compute transfer maps for every replaced function (`--transfer-all`).
    pub transfer_all: bool,
}

/// A bundle made by [`diff`], with remarks for the operator.
#[derive(Debug, Clone)]
pub struct DiffOutcome {
    /// The bundle (unsigned).
    pub bundle: Bundle,
    /// Things worth saying that are not errors (removed functions left in place).
    pub notes: Vec<String>,
    /// Functions left out because only a panic location's line or column
    /// changed (raw names).
    pub line_only: Vec<String>,
    /// Whether both builds had relocation sections (`--emit-relocs`).
    pub relocations: bool,
}

/// `(i32, i32) -> i64` for a function type.
pub(crate) fn signature(ty: &FuncType) -> String {
    let list = |v: &[ValType]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let results = match ty.results() {
        [] => "()".to_string(),
        [one] => one.to_string(),
        many => format!("({})", list(many)),
    };
    format!("({}) -> {results}", list(ty.params()))
}

/// Builds a bundle that turns `old` (the target, binary wasm) into `new`.
///
/// # Errors
/// [`DiffError::Module`] if either is not valid wasm,
/// [`DiffError::Unpatchable`] listing every change a function-level patch
/// cannot carry, [`DiffError::NoChange`] if no function changed,
/// [`DiffError::Option`] if an option names a function that does not fit.
pub fn diff(old: &[u8], new: &[u8], opts: &DiffOptions) -> Result<DiffOutcome, DiffError> {
    let o = ModuleView::parse(old, Side::Old)?;
    let n = ModuleView::parse(new, Side::New)?;
    let linked = |bytes, side| {
        Linked::parse(bytes).map_err(|message| DiffError::Module {
            side,
            offset: 0,
            message: format!("malformed linking or relocation section: {message}"),
        })
    };
    let (lo, mut ln) = (linked(old, Side::Old)?, linked(new, Side::New)?);
    let mut refused = Vec::new();
    let mut line_only = Vec::new();

    let types = match TypeMap::new(&o, &n) {
        Ok(t) => t,
        Err(u) => return Err(DiffError::Unpatchable(vec![u])),
    };
    compare_imports(&o, &n, &types, &mut refused);
    if o.imported_funcs != n.imported_funcs || o.imports.len() != n.imports.len() {
        // Function indices cannot be related; stop at the imports.
        return Err(DiffError::Unpatchable(refused));
    }
    let new_to_old = match_functions(&o, &n, &mut refused);
    if !refused.is_empty() {
        return Err(DiffError::Unpatchable(refused));
    }
    // A function paired under another symbol name (its hash changed) keys
    // the objects that point at it (vtables) by its old name.
    if let (Some(lo), Some(ln)) = (&lo, &mut ln) {
        for (j, m) in new_to_old.iter().enumerate() {
            if let (Some(i), Some(new_name)) = (m, ln.func_symbol(j as u32)) {
                if let Some(old_name) = lo.func_symbol(*i).filter(|&on| on != new_name) {
                    ln.alias_func(j as u32, old_name);
                }
            }
        }
    }
    let relocs = lo.as_ref().zip(ln.as_ref());

    // Callback functions of the new build.
    let mut callbacks = Vec::new();
    for (kind, name) in &opts.callbacks {
        let idx = n
            .find_defined(name)
            .map_err(|e| DiffError::Option(format!("--{kind} {e}")))?
            .ok_or_else(|| {
                DiffError::Option(format!(
                    "--{kind} `{name}`: the new module has no function of that name"
                ))
            })?;
        let ty = n.func_type(n.func_types[idx as usize]);
        if !ty.is_some_and(|t| t.params().is_empty() && t.results() == [ValType::I32]) {
            return Err(DiffError::Option(format!(
                "--{kind} `{name}`: a callback must have type () -> i32, not {}",
                n.signature(idx)
            )));
        }
        callbacks.push((*kind, idx));
    }
    let referenced = referenced_funcs(&n);

    // New → target function indices.
    let target_funcs = o.func_types.len() as u32;
    let mut new_to_target = vec![u32::MAX; n.func_types.len()];
    let mut added = Vec::new();
    for (j, m) in new_to_old.iter().enumerate() {
        let j32 = j as u32;
        match m {
            Some(old_index) => new_to_target[j] = *old_index,
            None => {
                let callback_only =
                    callbacks.iter().any(|&(_, c)| c == j32) && !referenced.contains(&j32);
                if !callback_only {
                    new_to_target[j] = target_funcs + added.len() as u32;
                    added.push(j32);
                }
            }
        }
    }

    // Bodies, with the sites of each that point at bundle data.
    let mut carry = Carry::default();
    let mut entries = Vec::new();
    let mut entry_sites: Vec<Vec<Placed>> = Vec::new();
    let mut replaced_new = BTreeSet::new();
    let mut sig_changes = Vec::new();
    let mut transfers = crate::transfer::Transfers::default();
    let mut transfer_named = BTreeSet::new();
    let body_err = |name: String, e: String| {
        DiffError::Option(format!(
            "function `{}` cannot be rewritten for the target: {e}",
            names::readable(&name)
        ))
    };
    for j in n.imported_funcs..n.func_types.len() as u32 {
        let new_body = &n.bodies[(j - n.imported_funcs) as usize];
        let new_ty = types.new_to_target[n.func_types[j as usize] as usize];
        let name = n.display_name(j);
        // With relocations: the new body in the target's data layout.
        let old_range = new_to_old[j as usize]
            .filter(|&oi| oi >= o.imported_funcs)
            .map(|oi| body_range(&o.bodies[(oi - o.imported_funcs) as usize]));
        let mut moved_lines = false;
        let mut sites: Vec<Site> = Vec::new();
        let mut relocated = Vec::new();
        let new_body = match relocs {
            Some((lo, ln)) if new_to_target[j as usize] != u32::MAX => {
                let range = body_range(new_body);
                match relocate_body(
                    lo,
                    ln,
                    range.clone(),
                    old_range,
                    &new_to_target,
                    opts.include_line_only,
                    Some(&mut carry),
                ) {
                    Ok(r) => {
                        moved_lines = r.line_only;
                        sites = r.sites;
                        relocated = r.bytes;
                        &FunctionBody::new(BinaryReader::new(&relocated, range.start as u64))
                    }
                    Err(NeedsData(what)) => {
                        refused.push(Unpatchable::NeedsData {
                            function: n.readable_name(j),
                            what,
                        });
                        continue;
                    }
                }
            }
            _ => new_body,
        };
        match new_to_old[j as usize] {
            Some(oi) => {
                let mut remap = Remap::new(&new_to_target, &types.new_to_target);
                let body =
                    remap_body(new_body, &mut remap).map_err(|e| body_err(name.clone(), e))?;
                let old_body = &o.bodies[(oi - o.imported_funcs) as usize];
                let mut canon = Remap::identity(&types.old_canon);
                let old_norm =
                    remap_body(old_body, &mut canon).map_err(|e| body_err(name.clone(), e))?;
                let old_ty = types.old_canon[o.func_types[oi as usize] as usize];
                if new_ty != old_ty {
                    sig_changes.push((oi, j));
                }
                if new_ty == old_ty && body == old_norm && moved_lines {
                    line_only.push(name.clone());
                }
                if new_ty != old_ty || body != old_norm || !sites.is_empty() {
                    let (body, placed) = pad_sites(&relocated, &body, &sites)
                        .map_err(|e| body_err(name.clone(), e))?;
                    entry_sites.push(placed);
                    replaced_new.insert(j);
                    // Same signature: the target's own type index, not the
                    // canonical one (the bundle imports the target function
                    // with its own index, and identical types can repeat).
                    let type_index = if new_ty == old_ty {
                        o.func_types[oi as usize]
                    } else {
                        new_ty
                    };
                    let asked = opts.transfer.iter().filter(|q| names::matches(&name, q));
                    transfer_named.extend(asked.cloned());
                    if opts.transfer_all || opts.transfer.iter().any(|q| names::matches(&name, q)) {
                        let ty = n
                            .func_type(n.func_types[j as usize])
                            .filter(|_| new_ty == old_ty);
                        transfers.add(oi, ty, (&old_norm, &body), (new, j - n.imported_funcs));
                    }
                    entries.push(Entry {
                        kind: EntryKind::Replace { target_index: oi },
                        immediate: opts.all_immediate
                            || opts.immediate.iter().any(|q| names::matches(&name, q)),
                        name,
                        type_index,
                        ty: FuncType::new([], []),
                        body,
                    });
                }
            }
            None if new_to_target[j as usize] != u32::MAX => {
                let mut remap = Remap::new(&new_to_target, &types.new_to_target);
                let body =
                    remap_body(new_body, &mut remap).map_err(|e| body_err(name.clone(), e))?;
                let (body, placed) =
                    pad_sites(&relocated, &body, &sites).map_err(|e| body_err(name.clone(), e))?;
                entry_sites.push(placed);
                entries.push(Entry {
                    kind: EntryKind::Add {
                        new_index: new_to_target[j as usize],
                    },
                    name,
                    type_index: new_ty,
                    ty: FuncType::new([], []),
                    immediate: false,
                    body,
                });
            }
            None => {}
        }
    }
    let mut callback_entries = Vec::new();
    let mut callback_sites = Vec::new();
    for &(kind, j) in &callbacks {
        let mut new_body = n.bodies[(j - n.imported_funcs) as usize].clone();
        let mut remap = Remap::new(&new_to_target, &types.new_to_target);
        let name = n.display_name(j);
        let mut relocated = Vec::new();
        let mut sites = Vec::new();
        if let Some((lo, ln)) = relocs {
            // A callback runs in the target too: the target's data layout.
            let range = body_range(&new_body);
            let c = Some(&mut carry);
            match relocate_body(lo, ln, range.clone(), None, &new_to_target, true, c) {
                Ok(r) => {
                    sites = r.sites;
                    relocated = r.bytes;
                    new_body = FunctionBody::new(BinaryReader::new(&relocated, range.start as u64));
                }
                Err(NeedsData(what)) => {
                    refused.push(Unpatchable::NeedsData {
                        function: n.readable_name(j),
                        what,
                    });
                    continue;
                }
            }
        }
        let body = remap_body(&new_body, &mut remap).map_err(|e| body_err(name.clone(), e))?;
        let (body, placed) =
            pad_sites(&relocated, &body, &sites).map_err(|e| body_err(name.clone(), e))?;
        callback_sites.push((kind, placed));
        callback_entries.push(Callback {
            kind,
            name,
            type_index: types.new_to_target[n.func_types[j as usize] as usize],
            body,
        });
    }

    let mut check = Checker {
        o: &o,
        n: &n,
        types: &types,
        new_to_target: &new_to_target,
        refused: &mut refused,
        relocs: relocs.is_some(),
    };
    check.globals(relocs.map(|(lo, _)| lo));
    check.memories();
    check.tables();
    check.tags();
    if relocs.is_none() {
        // With relocations, data is followed per object from the code that
        // uses it (relocs.rs); segments themselves are live state.
        let before = check.refused.len();
        check.data();
        if let Some(Unpatchable::Data { what, .. }) = check.refused.get_mut(before) {
            what.push_str(NO_RELOCS_HINT);
        }
    }
    let notes = check.removed(&new_to_old, &replaced_new);
    check.elements();
    check.exports();
    check.start();
    let in_bundle = |j: u32| {
        replaced_new.contains(&j) || added.contains(&j) || callbacks.iter().any(|&(_, c)| c == j)
    };
    for &(oi, j) in &sig_changes {
        check.signature_change(oi, j, opts, &in_bundle);
    }
    if !refused.is_empty() {
        return Err(DiffError::Unpatchable(refused));
    }
    if entries.is_empty() {
        if !line_only.is_empty() {
            return Err(DiffError::OnlyLineChanges(line_only));
        }
        return Err(DiffError::NoChange);
    }
    for name in &opts.immediate {
        let found = n
            .find_defined(name)
            .map_err(|e| DiffError::Option(format!("--immediate {e}")))?;
        let raw = found.map(|j| n.display_name(j));
        let is = |e: &Entry| raw.as_deref() == Some(e.name.as_str());
        if entries
            .iter()
            .any(|e| is(e) && matches!(e.kind, EntryKind::Replace { .. }))
        {
            continue;
        }
        let why = if entries.iter().any(is) {
            "it is added by the bundle; only replacements can be immediate"
        } else if found.is_some() {
            "it did not change, so it is not in the bundle"
        } else {
            "the new module has no function of that name"
        };
        return Err(DiffError::Option(format!("--immediate `{name}`: {why}")));
    }

    // Assemble.
    let interface = TargetInterface::from_module(old)?;
    let mut b = BundleBuilder::new(ModuleHash::of(old), interface);
    for ty in &types.extra {
        b.add_type(ty)?;
    }
    for &(oi, j) in &sig_changes {
        b.set_func_type(oi, types.new_to_target[n.func_types[j as usize] as usize])?;
    }
    b.metadata(Metadata {
        name: opts.name.clone(),
        description: opts.description.clone(),
        created_by: if opts.created_by.is_empty() {
            concat!("patch-format ", env!("CARGO_PKG_VERSION")).to_string()
        } else {
            opts.created_by.clone()
        },
        created_at: opts.created_at,
        new_module: Some(ModuleHash::of(new)),
    });
    b.immediate(opts.all_immediate).replace(opts.replace);
    for s in &opts.states {
        b.state(*s);
    }
    for s in &opts.requires {
        b.requires_state(*s);
    }
    for id in &opts.sits_on {
        b.sits_on(*id);
    }
    let kinds: Vec<EntryKind> = entries.iter().map(|e| e.kind).collect();
    b.data(carry.into_data(&kinds, &entry_sites, callback_sites));
    for e in entries {
        b.entry(e);
    }
    for c in callback_entries {
        b.callback(c);
    }
    if let Some(q) = opts.transfer.iter().find(|q| !transfer_named.contains(*q)) {
        return Err(DiffError::Option(format!(
            "--transfer `{q}`: no function of that name is replaced by the bundle"
        )));
    }
    b.transfer(transfers);
    let bundle = b.build()?;
    Ok(DiffOutcome {
        bundle,
        notes,
        line_only,
        relocations: relocs.is_some(),
    })
}

/// Added to the first data refusal when the builds have no relocations.
pub(crate) const NO_RELOCS_HINT: &str = " (the builds have no relocation sections, so data \
    cannot be followed by symbol: rebuild both with --emit-relocs, rustc: \
    RUSTFLAGS=\"-C link-arg=--emit-relocs\", clang: -Wl,--emit-relocs, and diff again)";

/// The file range of a body's content (after its size).
fn body_range(b: &FunctionBody<'_>) -> std::ops::Range<usize> {
    let r = b.range();
    r.start as usize..r.end as usize
}

/// Functions of `v` referenced by some body (call or ref.func), an export,
/// an element segment, a global or the start function.
fn referenced_funcs(v: &ModuleView<'_>) -> BTreeSet<u32> {
    let mut out: BTreeSet<u32> = v
        .calls
        .iter()
        .chain(v.refs.iter())
        .flatten()
        .copied()
        .collect();
    for e in &v.exports {
        if matches!(e.kind, ExternalKind::Func | ExternalKind::FuncExact) {
            out.insert(e.index);
        }
    }
    for i in 0..v.elements.len() {
        out.extend(v.element_funcs(i));
    }
    out.extend(v.global_refs().into_iter().map(|(_, f)| f));
    out.extend(v.start);
    out
}

/// Pairs functions of the two builds (see the module docs). Returns, per new
/// function, its old index.
fn match_functions(
    o: &ModuleView<'_>,
    n: &ModuleView<'_>,
    refused: &mut Vec<Unpatchable>,
) -> Vec<Option<u32>> {
    let mut old_by_key = HashMap::new();
    for i in o.imported_funcs..o.func_types.len() as u32 {
        if let Some(k) = &o.keys[i as usize] {
            old_by_key.insert(k.as_str(), i);
        }
    }
    let same_count = o.defined_count() == n.defined_count();
    let mut out = vec![None; n.func_types.len()];
    for (i, slot) in out.iter_mut().enumerate().take(n.imported_funcs as usize) {
        *slot = Some(i as u32);
    }
    for j in n.imported_funcs..n.func_types.len() as u32 {
        match &n.keys[j as usize] {
            Some(k) => out[j as usize] = old_by_key.get(k.as_str()).copied(),
            None if same_count => {
                if o.keys[j as usize].is_none() {
                    out[j as usize] = Some(j);
                } else {
                    refused.push(Unpatchable::Unmatched(format!(
                        "function #{j} of the new module has no name, but function #{j} of the \
                         old module is `{}`",
                        o.readable_name(j)
                    )));
                }
            }
            None => refused.push(Unpatchable::Unmatched(format!(
                "function #{j} of the new module has no name (name section or export) and the \
                 number of functions changed, so it cannot be matched by index"
            ))),
        }
    }
    pair_renamed(o, n, &mut out);
    if !same_count {
        for i in o.imported_funcs..o.func_types.len() as u32 {
            if o.keys[i as usize].is_none() {
                refused.push(Unpatchable::Unmatched(format!(
                    "function #{i} of the old module has no name (name section or export) and \
                     the number of functions changed, so it cannot be matched by index"
                )));
            }
        }
    }
    out
}

/// Pairs the functions whose only difference is rustc's symbol hash: a new
/// function left unmatched by key and an old one that no new function
/// matched, whose readable names (the Rust path without the hash,
/// `names::readable`) are equal and belong to no other unmatched function
/// on either side. rustc's legacy hash covers the item's definition path,
/// whose disambiguators shift when an `impl` is declared above another: a
/// new impl written first renames `<bank::Waived as bank::Fee>::charge`,
/// and the old one would otherwise read as removed while the table still
/// holds it. A name shared by several unmatched functions (instances of
/// one generic function differ only by the hash) pairs nothing, nor does
/// a compiler-generated item (`{{closure}}`, `{{constant}}`, v0's
/// `{closure#0}`, shims): one function's closures share a path, so a
/// closure removed and another added would read as one, and a live boxed
/// `dyn Fn` of the old closure would run the new one on the old one's
/// captures.
fn pair_renamed(o: &ModuleView<'_>, n: &ModuleView<'_>, new_to_old: &mut [Option<u32>]) {
    let mut taken = vec![false; o.func_types.len()];
    for m in new_to_old.iter().flatten() {
        taken[*m as usize] = true;
    }
    // Readable name → the unmatched functions bearing it (at most two kept:
    // more than one means ambiguous).
    fn bucket(map: &mut HashMap<String, Vec<u32>>, key: &str, i: u32) {
        let name = names::readable(key);
        if name.contains('{') {
            return;
        }
        let v = map.entry(name).or_default();
        if v.len() < 2 {
            v.push(i);
        }
    }
    let mut olds: HashMap<String, Vec<u32>> = HashMap::new();
    for i in o.imported_funcs..o.func_types.len() as u32 {
        if let (Some(k), false) = (&o.keys[i as usize], taken[i as usize]) {
            bucket(&mut olds, k, i);
        }
    }
    let mut news: HashMap<String, Vec<u32>> = HashMap::new();
    for j in n.imported_funcs..n.func_types.len() as u32 {
        if let (Some(k), None) = (&n.keys[j as usize], new_to_old[j as usize]) {
            bucket(&mut news, k, j);
        }
    }
    for (name, js) in &news {
        if let ([j], Some([i])) = (js.as_slice(), olds.get(name).map(Vec::as_slice)) {
            new_to_old[*j as usize] = Some(*i);
        }
    }
}

fn compare_imports(
    o: &ModuleView<'_>,
    n: &ModuleView<'_>,
    types: &TypeMap,
    refused: &mut Vec<Unpatchable>,
) {
    use wasmparser::TypeRef;
    let describe = |i: &wasmparser::Import<'_>| format!("`{}`.`{}`", i.module, i.name);
    for k in 0..o.imports.len().max(n.imports.len()) {
        match (o.imports.get(k), n.imports.get(k)) {
            (Some(a), Some(b)) => {
                let same_ty = match (a.ty, b.ty) {
                    (TypeRef::Func(x), TypeRef::Func(y))
                    | (TypeRef::FuncExact(x), TypeRef::FuncExact(y)) => {
                        types.old_canon[x as usize] == types.new_to_target[y as usize]
                    }
                    (TypeRef::Tag(x), TypeRef::Tag(y)) => {
                        x.kind == y.kind
                            && types.old_canon[x.func_type_idx as usize]
                                == types.new_to_target[y.func_type_idx as usize]
                    }
                    (x, y) => x == y,
                };
                if a.module != b.module || a.name != b.name {
                    refused.push(Unpatchable::Imports(format!(
                        "import #{k} was {} and is now {}",
                        describe(a),
                        describe(b)
                    )));
                } else if !same_ty {
                    refused.push(Unpatchable::Imports(format!(
                        "import {} changed its type",
                        describe(a)
                    )));
                }
            }
            (Some(a), None) => refused.push(Unpatchable::Imports(format!(
                "import {} was removed",
                describe(a)
            ))),
            (None, Some(b)) => refused.push(Unpatchable::Imports(format!(
                "import {} was added",
                describe(b)
            ))),
            (None, None) => {}
        }
    }
}

/// The checks on everything but function bodies.
struct Checker<'c, 'a> {
    o: &'c ModuleView<'a>,
    n: &'c ModuleView<'a>,
    types: &'c TypeMap,
    new_to_target: &'c [u32],
    refused: &'c mut Vec<Unpatchable>,
    /// Both builds have relocations: table 0's size and segment are live.
    relocs: bool,
}

impl Checker<'_, '_> {
    fn new_remap(&self) -> Remap<'_> {
        Remap::new(self.new_to_target, &self.types.new_to_target)
    }
    fn old_remap(&self) -> Remap<'_> {
        Remap::identity(&self.types.old_canon)
    }

    /// Globals; with relocations, the layout globals' initial values are
    /// live state and not compared.
    fn globals(&mut self, linked: Option<&Linked<'_>>) {
        let (o, n) = (self.o, self.n);
        for i in 0..o.globals.len().max(n.globals.len()) {
            let index = o.imported_globals + i as u32;
            let name = o
                .global_names
                .get(&index)
                .or(n.global_names.get(&index))
                .cloned();
            // By symbol, name-section name or export name (wasm-ld exports
            // `__heap_base` and `__data_end` without a symbol).
            let exported = o.exports.iter().find(|e| {
                e.kind == ExternalKind::Global
                    && e.index == index
                    && crate::relocs::LAYOUT_GLOBALS.contains(&e.name)
            });
            let layout =
                is_layout_global(linked, name.as_deref().or(exported.map(|e| e.name)), index);
            let what = match (o.globals.get(i), n.globals.get(i)) {
                (Some(a), Some(b)) => {
                    let ea = encoded::<wasm_encoder::GlobalSection>(|s| {
                        self.old_remap().parse_global(s, a.clone())
                    });
                    let eb = encoded::<wasm_encoder::GlobalSection>(|s| {
                        self.new_remap().parse_global(s, b.clone())
                    });
                    if a.ty != b.ty {
                        Some(format!(
                            "its type changed from {}{} to {}{}",
                            if a.ty.mutable { "mut " } else { "" },
                            a.ty.content_type,
                            if b.ty.mutable { "mut " } else { "" },
                            b.ty.content_type
                        ))
                    } else if (ea.is_none() || ea != eb) && !layout {
                        Some("its initial value changed".to_string())
                    } else {
                        None
                    }
                }
                (Some(_), None) => Some("it was removed".into()),
                (None, Some(_)) => Some("it was added".into()),
                (None, None) => None,
            };
            if let Some(what) = what {
                self.refused.push(Unpatchable::Global { index, name, what });
            }
        }
    }

    fn memories(&mut self) {
        let (o, n) = (self.o, self.n);
        let limits = |m: &wasmparser::MemoryType| {
            let max = m.maximum.map_or("none".to_string(), |x| x.to_string());
            format!(
                "min {} max {max}{}{}",
                m.initial,
                if m.memory64 { " (64-bit)" } else { "" },
                if m.shared { " shared" } else { "" }
            )
        };
        for i in 0..o.memories.len().max(n.memories.len()) {
            let index = o.imported_memories + i as u32;
            let what = match (o.memories.get(i), n.memories.get(i)) {
                (Some(a), Some(b)) if a != b => Some(format!(
                    "limits changed from {} to {} (pages)",
                    limits(a),
                    limits(b)
                )),
                (Some(_), None) => Some("it was removed".into()),
                (None, Some(_)) => Some("it was added".into()),
                _ => None,
            };
            if let Some(what) = what {
                self.refused.push(Unpatchable::Memory { index, what });
            }
        }
    }

    fn tables(&mut self) {
        let (o, n) = (self.o, self.n);
        for i in 0..o.tables.len().max(n.tables.len()) {
            let index = o.imported_tables + i as u32;
            let what = match (o.tables.get(i), n.tables.get(i)) {
                (Some(a), Some(b)) => {
                    let ea = encoded::<wasm_encoder::TableSection>(|s| {
                        self.old_remap().parse_table(s, a.clone())
                    });
                    let eb = encoded::<wasm_encoder::TableSection>(|s| {
                        self.new_remap().parse_table(s, b.clone())
                    });
                    let grown = self.relocs && index == 0 && table_only_grew(&a.ty, &b.ty);
                    if a.ty != b.ty && !grown {
                        Some(format!(
                            "type or limits changed from {} [{}, {:?}] to {} [{}, {:?}]",
                            a.ty.element_type,
                            a.ty.initial,
                            a.ty.maximum,
                            b.ty.element_type,
                            b.ty.initial,
                            b.ty.maximum
                        ))
                    } else if a.ty == b.ty && (ea.is_none() || ea != eb) {
                        Some("its initializer changed".into())
                    } else {
                        None
                    }
                }
                (Some(_), None) => Some("it was removed".into()),
                (None, Some(_)) => Some("it was added".into()),
                (None, None) => None,
            };
            if let Some(what) = what {
                self.refused.push(Unpatchable::Table { index, what });
            }
        }
    }

    fn tags(&mut self) {
        let (o, n) = (self.o, self.n);
        for i in 0..o.tags.len().max(n.tags.len()) {
            let index = o.imported_tags + i as u32;
            let what = match (o.tags.get(i), n.tags.get(i)) {
                (Some(a), Some(b)) => {
                    let same = a.kind == b.kind
                        && self.types.old_canon.get(a.func_type_idx as usize)
                            == self.types.new_to_target.get(b.func_type_idx as usize);
                    (!same).then(|| "its type changed".to_string())
                }
                (Some(_), None) => Some("it was removed".into()),
                (None, Some(_)) => Some("it was added".into()),
                (None, None) => None,
            };
            if let Some(what) = what {
                self.refused.push(Unpatchable::Tag { index, what });
            }
        }
    }

    fn data(&mut self) {
        let (o, n) = (self.o, self.n);
        for i in 0..o.data.len().max(n.data.len()) {
            let index = i as u32;
            let name = o
                .data_names
                .get(&index)
                .or(n.data_names.get(&index))
                .cloned();
            let what = match (o.data.get(i), n.data.get(i)) {
                (Some(a), Some(b)) => {
                    if a.data != b.data {
                        Some(if a.data.len() == b.data.len() {
                            format!("its bytes differ ({} bytes)", a.data.len())
                        } else {
                            format!(
                                "its length changed from {} to {} bytes",
                                a.data.len(),
                                b.data.len()
                            )
                        })
                    } else {
                        let ea = encoded::<wasm_encoder::DataSection>(|s| {
                            self.old_remap().parse_data(s, a.clone())
                        });
                        let eb = encoded::<wasm_encoder::DataSection>(|s| {
                            self.new_remap().parse_data(s, b.clone())
                        });
                        (ea.is_none() || ea != eb)
                            .then(|| "its memory or offset changed".to_string())
                    }
                }
                (Some(_), None) => Some("it was removed".into()),
                (None, Some(_)) => Some("it was added".into()),
                (None, None) => None,
            };
            if let Some(what) = what {
                self.refused.push(Unpatchable::Data { index, name, what });
            }
        }
    }

    fn elements(&mut self) {
        let (o, n) = (self.o, self.n);
        for i in 0..o.elements.len().max(n.elements.len()) {
            let index = i as u32;
            let name = o
                .elem_names
                .get(&index)
                .or(n.elem_names.get(&index))
                .cloned();
            // Declarative segments only declare `ref.func` targets: they have
            // no effect at run time and new code may need new ones, so they
            // may come, go or change. Every other segment keeps its index.
            let live_o = o.elements.get(i).filter(|_| !o.element_is_declared(i));
            let live_n = n.elements.get(i).filter(|_| !n.element_is_declared(i));
            let what = match (live_o, live_n) {
                // With relocations table 0's function segment is live state
                // (new function pointers become bundle table entries).
                (Some(_), Some(_)) if self.relocs && o.same_table0_segment(n, i) => None,
                (Some(a), Some(b)) => {
                    let ea = encoded::<wasm_encoder::ElementSection>(|s| {
                        self.old_remap().parse_element(s, a.clone())
                    });
                    let eb = encoded::<wasm_encoder::ElementSection>(|s| {
                        self.new_remap().parse_element(s, b.clone())
                    });
                    (ea.is_none() || ea != eb)
                        .then(|| "its contents, mode or offset changed".to_string())
                }
                (Some(_), None) => Some("it was removed".into()),
                (None, Some(_)) => Some("it was added".into()),
                (None, None) => None,
            };
            if let Some(what) = what {
                self.refused
                    .push(Unpatchable::Element { index, name, what });
            }
        }
    }

    fn exports(&mut self) {
        let (o, n) = (self.o, self.n);
        let target = |kind: ExternalKind, index: u32, side: Side| -> (u8, u32) {
            let k = match kind {
                ExternalKind::Func | ExternalKind::FuncExact => 0,
                ExternalKind::Table => 1,
                ExternalKind::Memory => 2,
                ExternalKind::Global => 3,
                ExternalKind::Tag => 4,
            };
            let index = if k == 0 && side == Side::New {
                self.new_to_target
                    .get(index as usize)
                    .copied()
                    .unwrap_or(u32::MAX)
            } else {
                index
            };
            (k, index)
        };
        let old: HashMap<&str, (u8, u32)> = o
            .exports
            .iter()
            .map(|e| (e.name, target(e.kind, e.index, Side::Old)))
            .collect();
        let new: HashMap<&str, (u8, u32)> = n
            .exports
            .iter()
            .map(|e| (e.name, target(e.kind, e.index, Side::New)))
            .collect();
        let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let what = match (old.get(name), new.get(name)) {
                (Some(a), Some(b)) if a != b => {
                    let new_idx = n
                        .exports
                        .iter()
                        .find(|e| e.name == name)
                        .map_or(0, |e| e.index);
                    Some(if a.0 == 0 && b.0 == 0 {
                        format!(
                            "it exported `{}` and now exports `{}`",
                            o.readable_name(a.1),
                            n.readable_name(new_idx)
                        )
                    } else {
                        "it now names a different item".to_string()
                    })
                }
                (Some(_), None) => Some("it was removed".into()),
                (None, Some(_)) => Some("it was added".into()),
                _ => None,
            };
            if let Some(what) = what {
                self.refused.push(Unpatchable::Export {
                    name: name.to_string(),
                    what,
                });
            }
        }
    }

    fn start(&mut self) {
        let (o, n) = (self.o, self.n);
        let new = n.start.map(|s| {
            self.new_to_target
                .get(s as usize)
                .copied()
                .unwrap_or(u32::MAX)
        });
        let what = match (o.start, new) {
            (Some(a), Some(b)) if a != b => Some(format!(
                "it was `{}` and is now `{}`",
                o.readable_name(a),
                n.readable_name(n.start.unwrap_or(0))
            )),
            (Some(a), None) => Some(format!(
                "`{}` is no longer the start function",
                o.readable_name(a)
            )),
            (None, Some(_)) => Some(format!(
                "`{}` became the start function",
                n.readable_name(n.start.unwrap_or(0))
            )),
            _ => None,
        };
        if let Some(what) = what {
            self.refused.push(Unpatchable::Start(what));
        }
    }

    /// Old functions with no counterpart: refused while something that stays
    /// unpatched uses them; otherwise left in place, with a note.
    fn removed(&mut self, new_to_old: &[Option<u32>], replaced_new: &BTreeSet<u32>) -> Vec<String> {
        let (o, n) = (self.o, self.n);
        let mut matched = vec![false; o.func_types.len()];
        let mut replaced_old = vec![false; o.func_types.len()];
        for (j, m) in new_to_old.iter().enumerate() {
            if let Some(oi) = m {
                matched[*oi as usize] = true;
                if replaced_new.contains(&(j as u32)) {
                    replaced_old[*oi as usize] = true;
                }
            }
        }
        let mut notes = Vec::new();
        for r in o.imported_funcs..o.func_types.len() as u32 {
            if matched[r as usize] {
                continue;
            }
            let name = o.readable_name(r);
            let mut referrer = None;
            for p in o.imported_funcs..o.func_types.len() as u32 {
                let d = (p - o.imported_funcs) as usize;
                let uses = o.calls[d].contains(&r) || o.refs[d].contains(&r);
                if uses && matched[p as usize] && !replaced_old[p as usize] {
                    referrer = Some(format!("function `{}` (unchanged)", o.readable_name(p)));
                    break;
                }
            }
            if referrer.is_none() {
                referrer = o.func_exports(r).first().map(|e| format!("export `{e}`"));
            }
            if referrer.is_none() {
                referrer = (0..o.elements.len())
                    .find(|&i| !o.element_is_declared(i) && o.element_funcs(i).contains(&r))
                    .map(|i| format!("element segment {i}"));
            }
            if referrer.is_none() && o.start == Some(r) {
                referrer = Some("the start function declaration".into());
            }
            if referrer.is_none() {
                referrer = o
                    .global_refs()
                    .into_iter()
                    .find(|&(_, f)| f == r)
                    .map(|(g, _)| format!("global {g}"));
            }
            match referrer {
                Some(referrer) => self.refused.push(Unpatchable::Removed { name, referrer }),
                None => notes.push(format!(
                    "function `{name}` is gone from the new build; it stays in the target, unused by patched code"
                )),
            }
        }
        let _ = n;
        notes
    }

    /// Old function `oi` becomes new function `j` with another type.
    fn signature_change(
        &mut self,
        oi: u32,
        j: u32,
        opts: &DiffOptions,
        in_bundle: &dyn Fn(u32) -> bool,
    ) {
        let (o, n) = (self.o, self.n);
        let raw = n.display_name(j);
        let name = n.readable_name(j);
        let refuse = |reason: String| Unpatchable::Signature {
            name: name.clone(),
            old: o.signature(oi),
            new: n.signature(j),
            reason,
        };
        if opts.all_immediate || opts.immediate.iter().any(|q| names::matches(&raw, q)) {
            self.refused.push(refuse(
                "a function whose type changes can never be immediate (drop --immediate for it)"
                    .into(),
            ));
        }
        // Reached indirectly: callers cannot be checked.
        let mut indirect = None;
        for (v, idx, side) in [(o, oi, Side::Old), (n, j, Side::New)] {
            if indirect.is_some() {
                break;
            }
            if let Some(e) = v.func_exports(idx).first() {
                indirect = Some(format!("it is exported as `{e}` by the {side} module"));
            } else if let Some(i) = (0..v.elements.len())
                .find(|&i| !v.element_is_declared(i) && v.element_funcs(i).contains(&idx))
            {
                indirect = Some(format!("it is in element segment {i} of the {side} module"));
            } else if let Some(d) = v.refs.iter().position(|r| r.contains(&idx)) {
                indirect = Some(format!(
                    "`{}` takes a reference to it (ref.func) in the {side} module",
                    v.readable_name(v.imported_funcs + d as u32)
                ));
            } else if v.global_refs().iter().any(|&(_, f)| f == idx) {
                indirect = Some(format!(
                    "a global of the {side} module holds a reference to it"
                ));
            }
        }
        if let Some(why) = indirect {
            self.refused.push(refuse(format!(
                "{why}, so its callers cannot all be checked"
            )));
        }
        for (d, calls) in n.calls.iter().enumerate() {
            let caller = n.imported_funcs + d as u32;
            if calls.contains(&j) && !in_bundle(caller) {
                self.refused.push(refuse(format!(
                    "its caller `{}` is not in the bundle (unchanged), so it would call the new \
                     version with the old arguments",
                    n.readable_name(caller)
                )));
            }
        }
        // A caller the new build removed stays in the target, as it was.
        for (d, calls) in o.calls.iter().enumerate() {
            let caller = o.imported_funcs + d as u32;
            if calls.contains(&oi) && !self.new_to_target.contains(&caller) {
                self.refused.push(refuse(format!(
                    "its caller `{}` is gone from the new build but stays in the target, where \
                     it would call the new version with the old arguments",
                    o.readable_name(caller)
                )));
            }
        }
    }
}
