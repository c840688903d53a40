//! Frame transfer maps (issue 14, `docs/transfer.md`): how a frame of a
//! function's old version, stopped at a loop header, is rebuilt as a frame
//! of the new version at the corresponding header.
//!
//! `diff --transfer NAME` computes a [`TransferMap`] for each named
//! function it replaces, or a [`TransferRefusal`] saying why it cannot show
//! that a map keeps the meaning. Both travel in the custom section
//! `wasm-patch.transfer` (FORMAT.md §10). Loop headers are numbered by
//! *ordinal*: the pre-order index of the `loop` operator in the body.

use crate::error::FormatError;
use std::collections::HashMap;
use wasmparser::{BinaryReader, FunctionBody, Operator, RefType, ValType};

/// Name of the custom section that holds the transfer maps.
pub const TRANSFER_SECTION: &str = "wasm-patch.transfer";

const MAGIC: &[u8; 4] = b"WPTR";
const VERSION: u32 = 1;

/// In [`TransferMap::locals`]: the new local takes no old value and starts
/// at zero; only for a local that is dead at every mapped header
/// ([`dead_at_header`]).
pub const FRESH: u32 = u32::MAX;

/// Frames of functions with more locals than this do not move (the
/// runtime's transfer polls spill at most this many: `compile/translate.rs`).
pub const MAX_LOCALS: usize = 1024;

/// Bodies are aligned only up to this many operator pairs (the alignment
/// is quadratic); a larger function is refused.
const MAX_ALIGN_CELLS: usize = 1 << 24;

/// How one replaced function's frames move from the target's version to the
/// bundle's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferMap {
    /// The function (target index space; the bundle replaces it).
    pub func: u32,
    /// Types of the old version's locals, parameters first.
    pub old_locals: Vec<ValType>,
    /// Types of the new version's locals, parameters first.
    pub new_locals: Vec<ValType>,
    /// For each local `j` of the new version, the old local whose value it
    /// takes (each old local at most once; old locals the new version has
    /// no counterpart for are dropped), or [`FRESH`].
    pub locals: Vec<u32>,
    /// Mapped loop headers: (old ordinal, new ordinal).
    pub headers: Vec<(u32, u32)>,
}

/// A function named for transfer for which diff could not show that a map
/// keeps the meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRefusal {
    /// The function (target index space).
    pub func: u32,
    /// Why.
    pub reason: String,
}

/// Everything a bundle says about frame transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Maps, by function index ascending.
    pub maps: Vec<TransferMap>,
    /// Refusals, by function index ascending.
    pub refused: Vec<TransferRefusal>,
}

impl Transfers {
    /// Whether there is nothing to say (no section is written).
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty() && self.refused.is_empty()
    }

    /// Compute the map of replaced function `func` (or its refusal), from
    /// its type (`None` when it changes or is not a plain function type),
    /// its old and new bodies in
    /// the target's index spaces, and the new module with the new body's
    /// defined-function index (for validation).
    pub(crate) fn add(
        &mut self,
        func: u32,
        ty: Option<&wasmparser::FuncType>,
        bodies: (&[u8], &[u8]),
        new_module: (&[u8], u32),
    ) {
        let ty = ty.ok_or_else(|| "its type changes (or is not a plain function type)".to_string());
        let result = ty.and_then(|ty| {
            let heights = loop_heights(new_module.0, new_module.1 as usize)?;
            let (old, new) = bodies;
            analyze(func, ty.params(), ty.results().len(), old, new, &heights)
        });
        match result {
            Ok(m) => self.maps.push(m),
            Err(reason) => self.refused.push(TransferRefusal { func, reason }),
        }
    }

    /// The payload of the `wasm-patch.transfer` section (FORMAT.md §10).
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// The map of function `func`, if any.
    pub fn map(&self, func: u32) -> Option<&TransferMap> {
        self.maps.iter().find(|m| m.func == func)
    }
}

fn type_code(t: ValType) -> Option<u8> {
    Some(match t {
        ValType::I32 => 0x7f,
        ValType::I64 => 0x7e,
        ValType::F32 => 0x7d,
        ValType::F64 => 0x7c,
        ValType::Ref(RefType::FUNCREF) => 0x70,
        ValType::Ref(RefType::EXTERNREF) => 0x6f,
        _ => return None,
    })
}

fn code_type(c: u8) -> Option<ValType> {
    Some(match c {
        0x7f => ValType::I32,
        0x7e => ValType::I64,
        0x7d => ValType::F32,
        0x7c => ValType::F64,
        0x70 => ValType::Ref(RefType::FUNCREF),
        0x6f => ValType::Ref(RefType::EXTERNREF),
        _ => return None,
    })
}

/// The section's payload (FORMAT.md §10).
pub(crate) fn encode(t: &Transfers) -> Vec<u8> {
    use crate::write::leb;
    let mut out = MAGIC.to_vec();
    leb(VERSION as u64, &mut out);
    leb(t.maps.len() as u64, &mut out);
    for m in &t.maps {
        leb(m.func as u64, &mut out);
        for list in [&m.old_locals, &m.new_locals] {
            leb(list.len() as u64, &mut out);
            // Only types `type_code` knows are ever put in a map (analyze).
            out.extend(list.iter().map(|&v| type_code(v).unwrap_or(0)));
        }
        leb(m.locals.len() as u64, &mut out);
        for &l in &m.locals {
            leb(l as u64, &mut out);
        }
        leb(m.headers.len() as u64, &mut out);
        for &(a, b) in &m.headers {
            leb(a as u64, &mut out);
            leb(b as u64, &mut out);
        }
    }
    leb(t.refused.len() as u64, &mut out);
    for r in &t.refused {
        leb(r.func as u64, &mut out);
        leb(r.reason.len() as u64, &mut out);
        out.extend_from_slice(r.reason.as_bytes());
    }
    out
}

/// Read the section's payload (`base`: its offset in the bundle).
pub(crate) fn decode(data: &[u8], base: u64) -> Result<Transfers, FormatError> {
    let mut r = BinaryReader::new(data, base);
    let err = |r: &BinaryReader<'_>, what: &str| {
        FormatError::layout(r.original_position(), format!("transfer section: {what}"))
    };
    let bytes = r.read_bytes(4).map_err(|_| err(&r, "truncated magic"))?;
    if bytes != MAGIC {
        return Err(err(&r, "bad magic"));
    }
    let version = r.read_var_u32().map_err(|_| err(&r, "bad version"))?;
    if version != VERSION {
        return Err(err(&r, &format!("unknown version {version}")));
    }
    // Every count is bounded by the bytes left (each item takes a byte).
    let count = |r: &mut BinaryReader<'_>| -> Result<usize, FormatError> {
        let n = r.read_var_u32().map_err(|_| err(r, "bad count"))? as usize;
        if n > r.bytes_remaining() {
            return Err(err(r, "count larger than the bytes left"));
        }
        Ok(n)
    };
    let u32_ = |r: &mut BinaryReader<'_>| r.read_var_u32().map_err(|_| err(r, "bad integer"));
    let mut t = Transfers::default();
    for _ in 0..count(&mut r)? {
        let func = u32_(&mut r)?;
        let mut lists = Vec::new();
        for _ in 0..2 {
            let n = count(&mut r)?;
            let mut list = Vec::with_capacity(n);
            for _ in 0..n {
                let c = r.read_u8().map_err(|_| err(&r, "truncated types"))?;
                list.push(code_type(c).ok_or_else(|| err(&r, "unknown local type"))?);
            }
            lists.push(list);
        }
        let n = count(&mut r)?;
        let locals = (0..n).map(|_| u32_(&mut r)).collect::<Result<_, _>>()?;
        let n = count(&mut r)?;
        let headers = (0..n)
            .map(|_| Ok((u32_(&mut r)?, u32_(&mut r)?)))
            .collect::<Result<_, FormatError>>()?;
        let new_locals = lists.pop().unwrap_or_default();
        let old_locals = lists.pop().unwrap_or_default();
        t.maps.push(TransferMap {
            func,
            old_locals,
            new_locals,
            locals,
            headers,
        });
    }
    for _ in 0..count(&mut r)? {
        let func = u32_(&mut r)?;
        let n = count(&mut r)?;
        let b = r.read_bytes(n).map_err(|_| err(&r, "truncated reason"))?;
        let reason = String::from_utf8(b.to_vec()).map_err(|_| err(&r, "reason is not UTF-8"))?;
        t.refused.push(TransferRefusal { func, reason });
    }
    if !r.eof() {
        return Err(err(&r, "bytes after the last record"));
    }
    Ok(t)
}

/// The locals of a function body, parameters (`params`) first.
///
/// # Errors
/// The body's locals cannot be read, or there are more than 50,000.
pub fn body_locals(params: &[ValType], body: &FunctionBody<'_>) -> Result<Vec<ValType>, String> {
    let mut out = params.to_vec();
    let mut r = body.get_locals_reader().map_err(|e| e.to_string())?;
    for _ in 0..r.get_count() {
        let (n, t) = r.read().map_err(|e| e.to_string())?;
        if out.len() + n as usize > 50_000 {
            return Err("more than 50,000 locals".into());
        }
        out.extend(std::iter::repeat_n(t, n as usize));
    }
    Ok(out)
}

/// The byte offsets (as the body's reader reports them) of the body's
/// `loop` operators, in pre-order: index = loop ordinal.
///
/// # Errors
/// The body cannot be decoded.
pub fn loop_offsets(body: &FunctionBody<'_>) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    let mut r = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !r.eof() {
        let (op, off) = r.read_with_offset().map_err(|e| e.to_string())?;
        if matches!(op, Operator::Loop { .. }) {
            out.push(off as usize);
        }
    }
    Ok(out)
}

/// An operator with its local index taken out (`None` for other operators).
fn split_local(op: &Operator<'_>) -> (String, Option<u32>) {
    match op {
        Operator::LocalGet { local_index } => ("local.get".into(), Some(*local_index)),
        Operator::LocalSet { local_index } => ("local.set".into(), Some(*local_index)),
        Operator::LocalTee { local_index } => ("local.tee".into(), Some(*local_index)),
        other => (format!("{other:?}"), None),
    }
}

/// A decoded body: its locals and its operators, locals abstracted.
struct Decoded {
    locals: Vec<ValType>,
    ops: Vec<(u64, Option<u32>)>,
    /// Per loop ordinal: the operator position of the `loop`, and the
    /// control path to it (the enclosing constructs' keys, outermost first).
    loops: Vec<(usize, Vec<u64>)>,
}

/// Decode a body; `ids` numbers the abstract operators (shared by the two
/// bodies compared, so that equal numbers are equal operators).
fn decode_body(
    params: &[ValType],
    bytes: &[u8],
    ids: &mut HashMap<String, u64>,
) -> Result<Decoded, String> {
    let body = FunctionBody::new(BinaryReader::new(bytes, 0));
    let locals = body_locals(params, &body)?;
    let mut ops = Vec::new();
    let mut loops = Vec::new();
    let mut path: Vec<u64> = Vec::new();
    let mut r = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !r.eof() {
        let op = r.read().map_err(|e| e.to_string())?;
        let (key, local) = split_local(&op);
        let n = ids.len() as u64;
        let id = *ids.entry(key).or_insert(n);
        match op {
            Operator::Loop { .. } => {
                loops.push((ops.len(), path.clone()));
                path.push(id);
            }
            Operator::Block { .. } | Operator::If { .. } => path.push(id),
            Operator::End => {
                path.pop();
            }
            _ => {}
        }
        ops.push((id, local));
    }
    Ok(Decoded { locals, ops, loops })
}

/// Compute the transfer map of one function from its old and new bodies
/// (both in the target's index spaces, so that equal code is equal bytes),
/// its parameter types, and the operand stack height and parameter count of
/// each `loop` of the new body (from validation). Returns the map's locals
/// and headers, or why no map can be shown to keep the meaning.
pub(crate) fn analyze(
    func: u32,
    params: &[ValType],
    results: usize,
    old: &[u8],
    new: &[u8],
    new_loop_heights: &[(u32, u32)],
) -> Result<TransferMap, String> {
    // Offsets of the two sides differ; only the operators matter. The type
    // names in the operators' `Debug` forms are the same index spaces.
    let mut ids = HashMap::new();
    let o = decode_body(params, old, &mut ids)?;
    let n = decode_body(params, new, &mut ids)?;
    if results > 1 {
        return Err(format!(
            "the function returns {results} values (transfer supports at most one)"
        ));
    }
    if let Some(t) = o
        .locals
        .iter()
        .chain(&n.locals)
        .find(|t| type_code(**t).is_none())
    {
        return Err(format!("a local of type {t} cannot be carried"));
    }
    if n.locals.len() > MAX_LOCALS {
        return Err(format!(
            "{} locals (a frame with more than {MAX_LOCALS} does not move)",
            n.locals.len()
        ));
    }
    if o.loops.len() != n.loops.len() {
        return Err(format!(
            "loop nesting differs: {} loops before, {} after",
            o.loops.len(),
            n.loops.len()
        ));
    }
    if o.loops.iter().zip(&n.loops).any(|(a, b)| a.1 != b.1) {
        return Err("loop nesting differs: a loop sits in other constructs".into());
    }
    let locals = match_locals(params.len(), &o, &n)?;
    let mut headers = Vec::new();
    let mut why = Vec::new();
    for (k, ((op, _), (np, _))) in o.loops.iter().zip(&n.loops).enumerate() {
        let same_prefix = op == np
            && o.ops[..*op].iter().zip(&n.ops[..*np]).all(|(a, b)| {
                a.0 == b.0 && a.1.map(|l| locals_new_of(&locals, l)) == b.1.map(Some)
            });
        let (height, lparams) = new_loop_heights.get(k).copied().unwrap_or((1, 0));
        let new_body = FunctionBody::new(BinaryReader::new(new, 0));
        let live_fresh = (0..locals.len() as u32)
            .filter(|&j| locals[j as usize] == FRESH)
            .find(|&j| !dead_at_header(&new_body, k as u32, j).unwrap_or(false));
        if let Some(j) = live_fresh {
            why.push(format!(
                "loop {k}: new local {j} has no counterpart and may be read before it is written from the header"
            ));
        } else if !same_prefix {
            why.push(format!(
                "loop {k}: the code from the function entry to it differs"
            ));
        } else if height != 0 || lparams != 0 {
            why.push(format!(
                "loop {k}: values on the operand stack at its header"
            ));
        } else {
            headers.push((k as u32, k as u32));
        }
    }
    if headers.is_empty() {
        if why.is_empty() {
            why.push("the function has no loop".into());
        }
        return Err(why.join("; "));
    }
    Ok(TransferMap {
        func,
        old_locals: o.locals,
        new_locals: n.locals,
        locals,
        headers,
    })
}

/// The new local that takes old local `old` (`locals` maps new → old).
fn locals_new_of(locals: &[u32], old: u32) -> Option<u32> {
    locals.iter().position(|&l| l == old).map(|j| j as u32)
}

/// Match locals by role: align the operator streams (locals abstracted)
/// and pair the locals of aligned `local.*` operators. The pairing must be
/// a bijection of equal types that keeps every parameter in place; locals
/// that no code of either side touches pair among themselves by type.
fn match_locals(nparams: usize, o: &Decoded, n: &Decoded) -> Result<Vec<u32>, String> {
    // Two alignments that break ties in opposite directions (the second
    // aligns the reversed streams, with no greedy matching of a common
    // prefix and suffix): evidence that depends on a tie is no evidence,
    // so both must pair the locals alike.
    let (mut old_to_new, mut new_to_old) = pair_locals(o, n, align_with(&o.ops, &n.ops, true)?)?;
    let rev = |d: &Decoded| d.ops.iter().rev().copied().collect::<Vec<_>>();
    let (lo, ln) = (o.ops.len().saturating_sub(1), n.ops.len().saturating_sub(1));
    let back = align_with(&rev(o), &rev(n), false)?
        .into_iter()
        .map(|(i, j)| (lo - i, ln - j))
        .collect();
    let (other, _) = pair_locals(o, n, back)?;
    if let Some((a, b)) = other.iter().find(|(a, b)| old_to_new.get(a) != Some(b)) {
        return Err(format!(
            "the roles of locals are ambiguous: old local {a} lines up with new local {b} or {} depending on how the code is aligned",
            old_to_new.get(a).map_or("none".to_string(), |x| x.to_string())
        ));
    }
    for p in 0..nparams as u32 {
        match (old_to_new.get(&p), new_to_old.get(&p)) {
            (Some(&q), _) if q != p => {
                return Err(format!("parameter {p} plays the role of local {q} after"))
            }
            (_, Some(&q)) if q != p => {
                return Err(format!("parameter {p} plays the role of local {q} before"))
            }
            _ => {
                old_to_new.insert(p, p);
                new_to_old.insert(p, p);
            }
        }
    }
    let used = |d: &Decoded| -> Vec<bool> {
        let mut u = vec![false; d.locals.len()];
        for l in d.ops.iter().filter_map(|o| o.1) {
            if let Some(x) = u.get_mut(l as usize) {
                *x = true;
            }
        }
        u
    };
    let (used_o, used_n) = (used(o), used(n));
    let mut free_new: Vec<u32> = (0..n.locals.len() as u32)
        .filter(|j| !new_to_old.contains_key(j))
        .collect();
    let mut out = vec![u32::MAX; n.locals.len()];
    for (&a, &b) in &old_to_new {
        if o.locals[a as usize] != n.locals[b as usize] {
            return Err(format!(
                "old local {a} ({}) lines up with new local {b} ({})",
                o.locals[a as usize], n.locals[b as usize]
            ));
        }
        out[b as usize] = a;
    }
    for a in 0..o.locals.len() as u32 {
        if old_to_new.contains_key(&a) {
            continue;
        }
        // Locals no code of either side touches pair among themselves by
        // type; any other old local without a counterpart is dropped, and
        // a new one without a counterpart is fresh (`analyze` then checks
        // that it is dead at the header).
        let pick = free_new
            .iter()
            .position(|&b| !used_n[b as usize] && n.locals[b as usize] == o.locals[a as usize]);
        if let (Some(p), false) = (pick, used_o[a as usize]) {
            out[free_new.remove(p) as usize] = a;
        }
    }
    Ok(out)
}

/// Whether local `local` is written before it can be read on every path
/// from the header of loop `ordinal` of `body` (then its value at the
/// header does not matter). Conservative: from the header on, at the
/// loop's top level, a `local.set`/`local.tee` of it must come before any
/// read of it, any branch, and any other control operator.
///
/// # Errors
/// The body cannot be decoded.
pub fn dead_at_header(body: &FunctionBody<'_>, ordinal: u32, local: u32) -> Result<bool, String> {
    let mut r = body.get_operators_reader().map_err(|e| e.to_string())?;
    let mut seen = 0;
    let mut inside = false;
    while !r.eof() {
        let op = r.read().map_err(|e| e.to_string())?;
        if !inside {
            if matches!(op, Operator::Loop { .. }) {
                inside = seen == ordinal;
                seen += 1;
            }
            continue;
        }
        match op {
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index }
                if local_index == local =>
            {
                return Ok(true)
            }
            Operator::LocalGet { local_index } if local_index == local => return Ok(false),
            Operator::LocalGet { .. }
            | Operator::LocalSet { .. }
            | Operator::LocalTee { .. }
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::Drop
            | Operator::Select
            | Operator::TypedSelect { .. }
            | Operator::GlobalGet { .. }
            | Operator::GlobalSet { .. } => {}
            // Anything that can branch, open or close a construct, or is
            // not known here: not shown dead.
            ref other if is_plain(other) => {}
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Straight-line operators: no control flow (arithmetic, constants,
/// comparisons, conversions, loads and stores, memory and table
/// operators). Anything this does not know counts as control.
fn is_plain(op: &Operator<'_>) -> bool {
    let name = format!("{op:?}");
    let name = name.split([' ', '{', '(']).next().unwrap_or_default();
    const CONTROL: &[&str] = &[
        "Unreachable",
        "Nop",
        "Block",
        "Loop",
        "If",
        "Else",
        "End",
        "Br",
        "BrIf",
        "BrTable",
        "Return",
        "ReturnCall",
        "ReturnCallIndirect",
        "ReturnCallRef",
        "CallRef",
        "Try",
        "TryTable",
        "Catch",
        "CatchAll",
        "Throw",
        "ThrowRef",
        "Rethrow",
        "Delegate",
        "BrOnNull",
        "BrOnNonNull",
        "BrOnCast",
        "BrOnCastFail",
    ];
    !CONTROL.contains(&name)
}

/// Pair the locals of aligned `local.*` operators: (old → new, new → old),
/// or why the pairing is not a bijection.
#[allow(clippy::type_complexity)]
fn pair_locals(
    o: &Decoded,
    n: &Decoded,
    pairs: Vec<(usize, usize)>,
) -> Result<(HashMap<u32, u32>, HashMap<u32, u32>), String> {
    let mut old_to_new: HashMap<u32, u32> = HashMap::new();
    let mut new_to_old: HashMap<u32, u32> = HashMap::new();
    for (i, j) in pairs {
        let (Some(a), Some(b)) = (o.ops[i].1, n.ops[j].1) else {
            continue;
        };
        let b2 = *old_to_new.entry(a).or_insert(b);
        let a2 = *new_to_old.entry(b).or_insert(a);
        if b2 != b {
            return Err(format!(
                "the roles of locals are ambiguous: old local {a} lines up with new locals {b2} and {b}"
            ));
        }
        if a2 != a {
            return Err(format!(
                "the roles of locals are ambiguous: new local {b} lines up with old locals {a2} and {a}"
            ));
        }
    }
    Ok((old_to_new, new_to_old))
}

/// Longest common subsequence of two operator streams (by abstract key),
/// as aligned position pairs. With `trim`, a common prefix and suffix are
/// matched first (cheap; ties inside them go to the nearest candidate).
fn align_with(
    a: &[(u64, Option<u32>)],
    b: &[(u64, Option<u32>)],
    trim: bool,
) -> Result<Vec<(usize, usize)>, String> {
    let mut pre = 0;
    while trim && pre < a.len() && pre < b.len() && a[pre].0 == b[pre].0 {
        pre += 1;
    }
    let mut suf = 0;
    while trim
        && suf < a.len() - pre
        && suf < b.len() - pre
        && a[a.len() - 1 - suf].0 == b[b.len() - 1 - suf].0
    {
        suf += 1;
    }
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    if (ma.len() + 1) * (mb.len() + 1) > MAX_ALIGN_CELLS {
        return Err(format!(
            "the change is too large to align ({} × {} operators)",
            ma.len(),
            mb.len()
        ));
    }
    let w = mb.len() + 1;
    let mut t = vec![0u32; (ma.len() + 1) * w];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            t[i * w + j] = if ma[i].0 == mb[j].0 {
                t[(i + 1) * w + j + 1] + 1
            } else {
                t[(i + 1) * w + j].max(t[i * w + j + 1])
            };
        }
    }
    let mut out: Vec<(usize, usize)> = (0..pre).map(|i| (i, i)).collect();
    let (mut i, mut j) = (0, 0);
    while i < ma.len() && j < mb.len() {
        if ma[i].0 == mb[j].0 {
            out.push((pre + i, pre + j));
            i += 1;
            j += 1;
        } else if t[(i + 1) * w + j] >= t[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out.extend((0..suf).map(|k| (a.len() - suf + k, b.len() - suf + k)));
    Ok(out)
}

/// The operand stack height and parameter count at each `loop` (in
/// pre-order) of defined function `defined` of `module`, from validation.
///
/// # Errors
/// The module does not validate, or has no such function.
pub(crate) fn loop_heights(module: &[u8], defined: usize) -> Result<Vec<(u32, u32)>, String> {
    use wasmparser::{Parser, ValidPayload, Validator, WasmModuleResources};
    let mut v = Validator::new();
    let mut seen = 0;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let ValidPayload::Func(f, body) = v.payload(&payload).map_err(|e| e.to_string())? {
            if seen == defined {
                let mut fv = f.into_validator(Default::default());
                let mut out = Vec::new();
                let mut r = body.get_operators_reader().map_err(|e| e.to_string())?;
                let mut locals = body.get_locals_reader().map_err(|e| e.to_string())?;
                for _ in 0..locals.get_count() {
                    let off = locals.original_position();
                    let (n, t) = locals.read().map_err(|e| e.to_string())?;
                    fv.define_locals(off, n, t).map_err(|e| e.to_string())?;
                }
                while !r.eof() {
                    let (op, off) = r.read_with_offset().map_err(|e| e.to_string())?;
                    if let Operator::Loop { blockty } = op {
                        let params = match blockty {
                            wasmparser::BlockType::FuncType(i) => fv
                                .resources()
                                .sub_type_at(i)
                                .map(|s| s.unwrap_func().params().len() as u32)
                                .unwrap_or(u32::MAX),
                            _ => 0,
                        };
                        out.push((fv.operand_stack_height(), params));
                    }
                    fv.op(off, &op).map_err(|e| e.to_string())?;
                }
                return Ok(out);
            }
            seen += 1;
        }
    }
    Err(format!("no defined function {defined}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_round_trips_and_rejects_damage() {
        let t = Transfers {
            maps: vec![TransferMap {
                func: 3,
                old_locals: vec![ValType::I32, ValType::F64],
                new_locals: vec![ValType::F64, ValType::I32],
                locals: vec![1, 0],
                headers: vec![(0, 0), (2, 1)],
            }],
            refused: vec![TransferRefusal {
                func: 4,
                reason: "loop nesting differs".into(),
            }],
        };
        let bytes = t.encode();
        assert_eq!(decode(&bytes, 0).unwrap(), t);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 0).is_err(), "truncated at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra, 0).is_err());
    }

    /// A local is dead at a header only when a write of it comes first, at
    /// the loop's top level, before any read, branch or construct.
    #[test]
    fn dead_at_header_is_conservative() {
        // One i32 local; `loop` (0x03 0x40), then `code`, then `end end`.
        let dead = |code: &[u8]| {
            let mut b = vec![1, 1, 0x7f, 0x03, 0x40];
            b.extend_from_slice(code);
            b.extend_from_slice(&[0x0b, 0x0b]);
            dead_at_header(&FunctionBody::new(BinaryReader::new(&b, 0)), 0, 0).unwrap()
        };
        let set = [0x41, 5, 0x21, 0]; // i32.const 5; local.set 0
        assert!(dead(&set));
        assert!(!dead(&[0x20, 0, 0x1a])); // local.get 0; drop
        let mut after_br_if = vec![0x41, 1, 0x0d, 0]; // br_if 0 first
        after_br_if.extend_from_slice(&set);
        assert!(!dead(&after_br_if));
        let mut in_block = vec![0x02, 0x40]; // block ... end
        in_block.extend_from_slice(&set);
        in_block.push(0x0b);
        assert!(!dead(&in_block));
        assert!(!dead(&[])); // never written
    }

    /// Evidence that hangs on how a tie is broken is refused: `local.get 0`
    /// lines up with either of two new `local.get`s.
    #[test]
    fn a_pairing_that_depends_on_a_tie_is_refused() {
        let mut ids = HashMap::new();
        // Two i32 locals; old: get 0, drop; new: get 0, get 1, drop, drop.
        let old = [1, 2, 0x7f, 0x20, 0, 0x1a, 0x0b];
        let new = [1, 2, 0x7f, 0x20, 0, 0x20, 1, 0x1a, 0x1a, 0x0b];
        let o = decode_body(&[], &old, &mut ids).unwrap();
        let n = decode_body(&[], &new, &mut ids).unwrap();
        let e = match_locals(0, &o, &n).unwrap_err();
        assert!(e.contains("depending on how the code is aligned"), "{e}");
        // The same code on both sides pairs every local with itself.
        let same = decode_body(&[], &new, &mut ids).unwrap();
        assert_eq!(match_locals(0, &n, &same).unwrap(), vec![0, 1]);
    }
}
