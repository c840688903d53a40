//! Frame transfer maps (issue 14, `docs/transfer.md`): how a frame of a
//! function's old version, stopped at a loop header, is rebuilt as a frame
//! of the new version at the corresponding header.
//!
//! `diff --transfer NAME` computes a [`TransferMap`] for each named
//! function it replaces, or a [`TransferRefusal`] saying why it cannot show
//! that a map keeps the meaning. Both travel in the custom section
//! `wasm-patch.transfer` (FORMAT.md §10). Loop headers are numbered by
//! *ordinal*: the pre-order index of the `loop` operator in the body.

use crate::dataflow::{Def, Flow};
#[path = "loop_params.rs"]
mod loop_params;
use crate::error::FormatError;
pub(crate) use loop_params::loop_heights;
use std::collections::HashMap;
use wasmparser::{BinaryReader, FunctionBody, Operator, RefType, ValType};

/// Name of the custom section that holds the transfer maps.
pub const TRANSFER_SECTION: &str = "wasm-patch.transfer";

const MAGIC: &[u8; 4] = b"WPTR";
/// Version 1: no loop parameters. Version 2 adds, after each map's
/// headers, the loop parameter pairing of each header (FORMAT.md §10);
/// written only when some header has loop parameters, so a bundle without
/// them is byte for byte what it was.
const VERSION: u32 = 1;
const VERSION_PARAMS: u32 = 2;

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
    /// For each mapped header (in the order of `headers`), for each value
    /// on the operand stack at the new header (the operands below the
    /// loop, bottom first, then the loop's parameters), the old header's
    /// value it takes: an operand below takes its own place (the code
    /// before the header is the same), a parameter the old parameter of
    /// its role. Every value is fed, none twice. Empty for a header with
    /// an empty operand stack.
    pub params: Vec<Vec<u32>>,
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
        ValType::V128 => 0x7b,
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
        0x7b => ValType::V128,
        0x70 => ValType::Ref(RefType::FUNCREF),
        0x6f => ValType::Ref(RefType::EXTERNREF),
        _ => return None,
    })
}

/// The section's payload (FORMAT.md §10).
pub(crate) fn encode(t: &Transfers) -> Vec<u8> {
    use crate::write::leb;
    let mut out = MAGIC.to_vec();
    let with_params = t
        .maps
        .iter()
        .any(|m| m.params.iter().any(|p| !p.is_empty()));
    let version = if with_params { VERSION_PARAMS } else { VERSION };
    leb(version as u64, &mut out);
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
        if with_params {
            for k in 0..m.headers.len() {
                let p = m.params.get(k).map(Vec::as_slice).unwrap_or(&[]);
                leb(p.len() as u64, &mut out);
                for &q in p {
                    leb(q as u64, &mut out);
                }
            }
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
    if version != VERSION && version != VERSION_PARAMS {
        return Err(err(
            &r,
            &format!("unknown version {version} (this reader knows 1 and 2)"),
        ));
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
        let headers: Vec<(u32, u32)> = (0..n)
            .map(|_| Ok((u32_(&mut r)?, u32_(&mut r)?)))
            .collect::<Result<_, FormatError>>()?;
        let mut params = vec![Vec::new(); headers.len()];
        if version == VERSION_PARAMS {
            for p in &mut params {
                let n = count(&mut r)?;
                *p = (0..n).map(|_| u32_(&mut r)).collect::<Result<_, _>>()?;
            }
        }
        let new_locals = lists.pop().unwrap_or_default();
        let old_locals = lists.pop().unwrap_or_default();
        t.maps.push(TransferMap {
            func,
            old_locals,
            new_locals,
            locals,
            headers,
            params,
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
    /// Per operator: whether it writes a local (`local.set`, `local.tee`),
    /// and its operand stack effect (pops, pushes) when it is a plain
    /// value operator ([`stack_effect`]).
    defs: Vec<bool>,
    effects: Vec<Option<(u8, u8)>>,
    /// Per operator: its operand stack effect for following loop
    /// parameters ([`loop_params`]): `effects`, plus writes and drops.
    sim: Vec<Option<(u8, u8)>>,
    /// Per operator: whether it is a numeric constant.
    consts: Vec<bool>,
    /// Per operator: the loop ordinal a `br` or `br_if` branches to, and
    /// how many operands (the condition) lie above the values it passes.
    br_to: Vec<Option<(usize, usize)>>,
    /// Per loop ordinal: whether its block type is a type index (it may
    /// take parameters).
    typed_loops: Vec<bool>,
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
    let (mut defs, mut effects) = (Vec::new(), Vec::new());
    let mut loops = Vec::new();
    let mut path: Vec<u64> = Vec::new();
    let (mut sim, mut consts, mut br_to) = (Vec::new(), Vec::new(), Vec::new());
    let mut typed_loops = Vec::new();
    // The open constructs: the loop ordinal of each that is a loop.
    let mut open: Vec<Option<usize>> = Vec::new();
    let mut r = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !r.eof() {
        let op = r.read().map_err(|e| e.to_string())?;
        let (key, local) = split_local(&op);
        let n = ids.len() as u64;
        let id = *ids.entry(key).or_insert(n);
        match op {
            Operator::Loop { blockty } => {
                typed_loops.push(matches!(blockty, wasmparser::BlockType::FuncType(_)));
                open.push(Some(loops.len()));
                loops.push((ops.len(), path.clone()));
                path.push(id);
            }
            Operator::Block { .. } | Operator::If { .. } => {
                open.push(None);
                path.push(id)
            }
            Operator::End => {
                open.pop();
                path.pop();
            }
            _ => {}
        }
        let branch = |d: u32| {
            let at = open.len().checked_sub(1 + d as usize)?;
            open.get(at).copied().flatten()
        };
        br_to.push(match op {
            Operator::Br { relative_depth } => branch(relative_depth).map(|k| (k, 0)),
            Operator::BrIf { relative_depth } => branch(relative_depth).map(|k| (k, 1)),
            _ => None,
        });
        consts.push(matches!(
            op,
            Operator::I32Const { .. }
                | Operator::I64Const { .. }
                | Operator::F32Const { .. }
                | Operator::F64Const { .. }
        ));
        sim.push(loop_params::sim_effect(&op));
        defs.push(matches!(
            op,
            Operator::LocalSet { .. } | Operator::LocalTee { .. }
        ));
        effects.push(stack_effect(&op));
        ops.push((id, local));
    }
    Ok(Decoded {
        locals,
        ops,
        defs,
        effects,
        sim,
        consts,
        br_to,
        typed_loops,
        loops,
    })
}

/// Compute the transfer map of one function from its old and new bodies
/// (both in the target's index spaces, so that equal code is equal bytes),
/// its parameter types, and the types of the operands below and the
/// parameters of each `loop` of the new body (from validation). Returns the map's locals
/// and headers, or why no map can be shown to keep the meaning.
pub(crate) fn analyze(
    func: u32,
    params: &[ValType],
    results: usize,
    old: &[u8],
    new: &[u8],
    new_loop_heights: &[loop_params::HeaderStack],
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
    let of = Flow::from_bytes(old, o.locals.len())?;
    let nf = Flow::from_bytes(new, n.locals.len())?;
    let live = nf.live_at_loops()?;
    let live_old = of.live_at_loops()?;
    let aligns = alignments(&o, &n)?;
    let sides = Sides {
        o: &o,
        n: &n,
        of: &of,
        nf: &nf,
        nparams: params.len(),
    };
    // New local → what it takes, merged over the mapped headers.
    let mut merged: Vec<Option<Slot>> = vec![None; n.locals.len()];
    let mut headers = Vec::new();
    let mut header_params = Vec::new();
    let mut why = Vec::new();
    for (k, live) in live.iter().enumerate() {
        // The header's shape first (its reasons name what a transfer
        // cannot carry), then the locals and the code before it.
        let pairs = match new_loop_heights.get(k) {
            Some((below, ptypes, around)) => {
                loop_params::pair(&sides, k, (below, ptypes, *around), &aligns)
            }
            None => Err("its operand stack is unknown".to_string()),
        };
        let pairs = pairs.and_then(|pp| {
            let p = header_slots(&sides, k, (&live_old[k], live), &aligns)?;
            same_prefix(&sides, k, &p)?;
            Ok((p, pp))
        });
        let (pairs, pp) = match pairs {
            Ok(p) => p,
            Err(e) => {
                why.push(format!("loop {k}: {e}"));
                continue;
            }
        };
        let clash = pairs.iter().find_map(|&(j, slot)| {
            let other = merged
                .iter()
                .position(|m| *m == Some(slot) && slot != Slot::Zero);
            match merged[j as usize] {
                Some(m) if m != slot => Some(format!(
                    "new local {j} takes {} here, {} at an earlier header",
                    slot.describe(),
                    m.describe()
                )),
                _ => other.filter(|&x| x != j as usize).map(|x| {
                    format!(
                        "{} goes to new local {j} here, to new local {x} at an earlier header",
                        slot.describe()
                    )
                }),
            }
        });
        if let Some(c) = clash {
            why.push(format!("loop {k}: {c}"));
            continue;
        }
        for (j, slot) in pairs {
            merged[j as usize] = Some(slot);
        }
        headers.push((k as u32, k as u32));
        header_params.push(pp);
    }
    if headers.is_empty() {
        if why.is_empty() {
            why.push("the function has no loop".into());
        }
        return Err(why.join("; "));
    }
    // New locals live at no mapped header (and those that are only ever
    // the entry's zero there) start fresh.
    let locals = merged
        .iter()
        .map(|m| match m {
            Some(Slot::Old(i)) => *i,
            _ => FRESH,
        })
        .collect();
    Ok(TransferMap {
        func,
        old_locals: o.locals,
        new_locals: n.locals,
        locals,
        headers,
        params: header_params,
    })
}

/// What a new local live at a header takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The value of this old local.
    Old(u32),
    /// Zero: the only definition that reaches the header is the entry's.
    Zero,
}

impl Slot {
    fn describe(self) -> String {
        match self {
            Slot::Old(i) => format!("old local {i}"),
            Slot::Zero => "zero".into(),
        }
    }
}

/// The two bodies being compared, decoded and analysed.
struct Sides<'a> {
    o: &'a Decoded,
    n: &'a Decoded,
    of: &'a Flow,
    nf: &'a Flow,
    nparams: usize,
}

/// An alignment of the two operator streams, both ways: old position →
/// new position and new → old.
struct Alignment {
    o2n: Vec<Option<usize>>,
    n2o: Vec<Option<usize>>,
    /// Every aligned pair (old, new), in runs or not.
    pairs: std::collections::HashSet<(usize, usize)>,
}

/// Two alignments that break ties in opposite directions (the second
/// aligns the reversed streams, with no greedy matching of a common
/// prefix and suffix): evidence that depends on a tie is no evidence, so
/// the pairing must come out the same from both.
fn alignments(o: &Decoded, n: &Decoded) -> Result<[Alignment; 2], String> {
    let build = |pairs: Vec<(usize, usize)>| {
        let mut a = Alignment {
            o2n: vec![None; o.ops.len()],
            n2o: vec![None; n.ops.len()],
            pairs: pairs.iter().copied().collect(),
        };
        let set = a.pairs.clone();
        for (i, j) in pairs {
            // Only a pair inside a run of aligned code counts as evidence:
            // an isolated match in changed code is what the alignment
            // happened to pair, not a role.
            let before = i == 0 || j == 0 || set.contains(&(i - 1, j - 1));
            let after =
                set.contains(&(i + 1, j + 1)) || i + 1 == o.ops.len() || j + 1 == n.ops.len();
            // A write counts only when the value it writes is computed
            // by the same operators (constants included) on both sides.
            if before && after && (!o.defs[i] || same_value(o, &set, i, j)) {
                a.o2n[i] = Some(j);
                a.n2o[j] = Some(i);
            }
        }
        a
    };
    let fwd = build(align_with(&o.ops, &n.ops, true)?);
    let rev = |d: &Decoded| d.ops.iter().rev().copied().collect::<Vec<_>>();
    let (lo, ln) = (o.ops.len().saturating_sub(1), n.ops.len().saturating_sub(1));
    let back = align_with(&rev(o), &rev(n), false)?
        .into_iter()
        .map(|(i, j)| (lo - i, ln - j))
        .collect();
    Ok([fwd, build(back)])
}

/// Whether the value written by old operator `i` and new operator `j` is
/// computed by aligned, equal operators (`pairs`): walking back from the
/// write over the operators of its value expression, as far as their
/// stack effects are known; an operator of unknown effect (a call, a
/// block) ends the walk and what was seen stands.
fn same_value(
    o: &Decoded,
    pairs: &std::collections::HashSet<(usize, usize)>,
    i: usize,
    j: usize,
) -> bool {
    let mut need: i64 = 1;
    let (mut a, mut b) = (i, j);
    while need > 0 {
        if a == 0 || b == 0 {
            return true;
        }
        a -= 1;
        b -= 1;
        if !pairs.contains(&(a, b)) {
            return false;
        }
        match o.effects[a] {
            Some((pops, pushes)) => need += pops as i64 - pushes as i64,
            None => return true,
        }
    }
    true
}

/// The operand stack effect (pops, pushes) of a plain value operator:
/// constants, local and global reads, `local.tee`, loads, numeric unary
/// and binary operators, `select`. `None` for anything else.
fn stack_effect(op: &Operator<'_>) -> Option<(u8, u8)> {
    match op {
        Operator::LocalGet { .. }
        | Operator::GlobalGet { .. }
        | Operator::I32Const { .. }
        | Operator::I64Const { .. }
        | Operator::F32Const { .. }
        | Operator::F64Const { .. } => return Some((0, 1)),
        Operator::LocalTee { .. } => return Some((1, 1)),
        Operator::Select | Operator::TypedSelect { .. } => return Some((3, 1)),
        _ => {}
    }
    let name = format!("{op:?}");
    let name = name.split([' ', '{', '(']).next().unwrap_or_default();
    let rest = ["I32", "I64", "F32", "F64"]
        .iter()
        .find_map(|t| name.strip_prefix(t))?;
    const BINARY: &[&str] = &[
        "Add", "Sub", "Mul", "Div", "DivS", "DivU", "RemS", "RemU", "And", "Or", "Xor", "Shl",
        "ShrS", "ShrU", "Rotl", "Rotr", "Eq", "Ne", "Lt", "LtS", "LtU", "Gt", "GtS", "GtU", "Le",
        "LeS", "LeU", "Ge", "GeS", "GeU", "Min", "Max", "Copysign",
    ];
    const UNARY: &[&str] = &[
        "Eqz",
        "Clz",
        "Ctz",
        "Popcnt",
        "Abs",
        "Neg",
        "Sqrt",
        "Ceil",
        "Floor",
        "Trunc",
        "Nearest",
        "Extend",
        "Wrap",
        "Convert",
        "Demote",
        "Promote",
        "Reinterpret",
    ];
    if rest.starts_with("Load") {
        Some((1, 1))
    } else if BINARY.contains(&rest) {
        Some((2, 1))
    } else if UNARY.iter().any(|u| rest.starts_with(u)) {
        Some((1, 1))
    } else {
        None
    }
}

/// Pair the new locals live at the header of loop `k` with what they take,
/// by dataflow evidence (docs/transfer.md). The *web* of a local's value at
/// the header is the definitions that reach it and the reads it reaches,
/// closed under def-use ([`Flow::web`]): the value's whole life, from the
/// code before the loop to the reads after it. Carried across by both
/// alignments, the web of a new local must line up only with operators of
/// one old local (and with at least one), and the web of that old local
/// must line up with no operator of another new local's web at the header.
/// The old local must be live at its header (`live_old`: transfer polls
/// spill only those). A parameter stays in place; a declared local that
/// only the entry's zero reaches takes zero.
fn header_slots(
    s: &Sides<'_>,
    k: usize,
    (live_old, live): (&[bool], &[bool]),
    aligns: &[Alignment; 2],
) -> Result<Vec<(u32, Slot)>, String> {
    let (ho, hn) = (s.of.loops[k], s.nf.loops[k]);
    let live_n: Vec<u32> = (0..live.len() as u32)
        .filter(|&j| live[j as usize])
        .collect();
    // The webs of the new locals live at the header, and which local's web
    // each of their operators belongs to.
    let webs_n: Vec<_> = live_n.iter().map(|&j| s.nf.web(hn, j)).collect();
    let mut owner: HashMap<usize, u32> = HashMap::new();
    for (&j, (defs, uses)) in live_n.iter().zip(&webs_n) {
        let at = defs.iter().filter_map(|d| match d {
            Def::At(q) => Some(*q),
            Def::Entry => None,
        });
        for q in at.chain(uses.iter().copied()) {
            owner.insert(q, j);
        }
    }
    let positions = |(defs, uses): &(
        std::collections::BTreeSet<Def>,
        std::collections::BTreeSet<usize>,
    )| {
        let at: Vec<usize> = defs
            .iter()
            .filter_map(|d| match d {
                Def::At(q) => Some(*q),
                Def::Entry => None,
            })
            .chain(uses.iter().copied())
            .collect();
        at
    };
    let mut out: Vec<(u32, Slot)> = Vec::new();
    for (&j, web_n) in live_n.iter().zip(&webs_n) {
        let rd_n = s.nf.reaching_defs(hn, j);
        let param = (j as usize) < s.nparams;
        if !param && rd_n.iter().eq([&Def::Entry]) {
            out.push((j, Slot::Zero));
            continue;
        }
        // Old locals the new local's web lines up with.
        let mut cands = std::collections::BTreeSet::new();
        for a in aligns {
            for q in positions(web_n) {
                if let Some(p) = a.n2o[q] {
                    cands.extend(s.of.def_at(p).or(s.of.use_at(p)));
                }
            }
        }
        let i = match (cands.len(), param) {
            (0, true) => j,
            (0, false) => {
                return Err(format!(
                    "new local {j} is live at the header, but no aligned code defines or reads its value there: its role cannot be shown"
                ))
            }
            (1, _) => *cands.first().unwrap_or(&j),
            _ => {
                let c: Vec<String> = cands.iter().map(|c| c.to_string()).collect();
                return Err(format!(
                    "the roles of locals are ambiguous: the value of new local {j} at the header lines up with old locals {}",
                    c.join(" and ")
                ));
            }
        };
        if param && i != j {
            return Err(format!("parameter {j} plays the role of old local {i}"));
        }
        if (i as usize) < s.nparams && i != j {
            return Err(format!("new local {j} plays the role of old parameter {i}"));
        }
        let (ot, nt) = (s.o.locals[i as usize], s.n.locals[j as usize]);
        if ot != nt {
            return Err(format!(
                "new local {j} ({nt}) lines up with old local {i} ({ot})"
            ));
        }
        if !live_old[i as usize] {
            return Err(format!(
                "new local {j} takes old local {i}, which is dead at the old header (its value is not kept there)"
            ));
        }
        if s.of.reaching_defs(ho, i).contains(&Def::Entry) != rd_n.contains(&Def::Entry) {
            return Err(format!(
                "new local {j} and old local {i}: only one may still hold its value from the function entry at the header"
            ));
        }
        // The other way: old local i's web must not line up with the web
        // of another new local.
        let web_o = s.of.web(ho, i);
        for a in aligns {
            for p in positions(&web_o) {
                let other = a.o2n[p].and_then(|q| owner.get(&q)).filter(|&&x| x != j);
                if let Some(x) = other {
                    return Err(format!(
                        "the roles of locals are ambiguous: the value of old local {i} at the header lines up with new locals {j} and {x}"
                    ));
                }
            }
        }
        if let Some(&(other, _)) = out.iter().find(|(_, sl)| *sl == Slot::Old(i)) {
            return Err(format!(
                "the roles of locals are ambiguous: old local {i} lines up with new locals {other} and {j}"
            ));
        }
        out.push((j, Slot::Old(i)));
    }
    Ok(out)
}

/// The code from the function entry to the header of loop `k` must be the
/// same on both sides, operator for operator, up to a renaming of locals
/// that keeps parameters in place and agrees with `pairs` (so the state at
/// the first arrival at the header is the one the new version builds).
fn same_prefix(s: &Sides<'_>, k: usize, pairs: &[(u32, Slot)]) -> Result<(), String> {
    let differs = || Err("the code from the function entry to it differs".to_string());
    let (po, pn) = (s.o.loops[k].0, s.n.loops[k].0);
    if po != pn {
        return differs();
    }
    let mut o2n: HashMap<u32, u32> = HashMap::new();
    let mut n2o: HashMap<u32, u32> = HashMap::new();
    for (a, b) in s.o.ops[..po].iter().zip(&s.n.ops[..pn]) {
        if a.0 != b.0 {
            return differs();
        }
        if let (Some(x), Some(y)) = (a.1, b.1) {
            let keeps_params = (x as usize >= s.nparams && y as usize >= s.nparams) || x == y;
            if *o2n.entry(x).or_insert(y) != y || *n2o.entry(y).or_insert(x) != x || !keeps_params {
                return Err(
                    "the code from the function entry to it differs (its locals do not rename one to one)"
                        .into(),
                );
            }
        }
    }
    for &(j, slot) in pairs {
        let Slot::Old(i) = slot else { continue };
        if n2o.get(&j).copied() != o2n.get(&i).map(|_| i)
            || o2n.get(&i).copied() != n2o.get(&j).map(|_| j)
        {
            return Err(format!(
                "new local {j} takes old local {i}, but the code before the header treats them differently"
            ));
        }
    }
    Ok(())
}

/// Straight-line operators: no control flow (arithmetic, constants,
/// comparisons, conversions, loads and stores, memory and table
/// operators). Anything this does not know counts as control.
pub(crate) fn is_plain(op: &Operator<'_>) -> bool {
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
                params: vec![vec![], vec![1, 0]],
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
        assert_eq!(bytes[4], VERSION_PARAMS as u8, "a header has parameters");
        // Without loop parameters the section is version 1, as before.
        let mut plain = t.clone();
        plain.maps[0].params = vec![vec![]; 2];
        let bytes = plain.encode();
        assert_eq!(bytes[4], VERSION as u8);
        assert_eq!(decode(&bytes, 0).unwrap(), plain);
        let mut future = bytes.clone();
        future[4] = 3;
        let e = decode(&future, 0).unwrap_err().to_string();
        assert!(e.contains("unknown version 3"), "{e}");
    }

    /// Evidence that hangs on how a tie is broken is refused. Old loop:
    /// `$0 += 1`; new loop: `$0 += 1; $1 += 1`: the old update lines up
    /// with either new one, depending on the alignment.
    #[test]
    fn a_pairing_that_depends_on_a_tie_is_refused() {
        // Two i32 locals; `loop`, code, `br 0`, `end`, `end`.
        let body = |code: &[u8]| {
            let mut b = vec![1, 2, 0x7f, 0x03, 0x40];
            b.extend_from_slice(code);
            b.extend_from_slice(&[0x0c, 0, 0x0b, 0x0b]);
            b
        };
        let inc = |l: u8| [0x20, l, 0x41, 1, 0x6a, 0x21, l];
        let old = body(&inc(0));
        let new = body(&[inc(0), inc(1)].concat());
        let e = analyze(0, &[], 0, &old, &new, &[(vec![], vec![], false)]).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
        // The same code on both sides pairs every local with itself.
        let m = analyze(0, &[], 0, &new, &new, &[(vec![], vec![], false)]).unwrap();
        assert_eq!(m.locals, vec![0, 1]);
        assert_eq!(m.headers, vec![(0, 0)]);
    }

    /// The body (locals and code) of the first defined function of `wat`,
    /// and its parameter types.
    fn first_body(wat: &str) -> (Vec<u8>, Vec<ValType>) {
        let bytes = wat::parse_str(wat).unwrap();
        let mut types = Vec::new();
        let mut funcs = Vec::new();
        for p in wasmparser::Parser::new(0).parse_all(&bytes) {
            match p.unwrap() {
                wasmparser::Payload::TypeSection(r) => {
                    for t in r.into_iter_err_on_gc_types() {
                        types.push(t.unwrap().params().to_vec());
                    }
                }
                wasmparser::Payload::FunctionSection(r) => {
                    funcs.extend(r.into_iter().map(|f| f.unwrap()));
                }
                wasmparser::Payload::CodeSectionEntry(b) => {
                    let params = types[funcs[0] as usize].clone();
                    let r = b.range();
                    return (bytes[r.start as usize..r.end as usize].to_vec(), params);
                }
                _ => {}
            }
        }
        panic!("no function")
    }

    /// The map (or refusal) of two versions of a function with no
    /// operand below its loops.
    fn map_of(old: &str, new: &str) -> Result<TransferMap, String> {
        let (o, params) = first_body(old);
        let (n, _) = first_body(new);
        analyze(0, &params, 0, &o, &n, &vec![(vec![], vec![], false); 4])
    }

    fn func(locals: &str, code: &str) -> String {
        format!(
            "(module (global $g (mut i32) (i32.const 0)) (func (param $p i32) {locals} {code}))"
        )
    }

    /// Two loops carrying the same locals, the change in the second: both
    /// headers map (the code before the second includes the first, the
    /// same on both sides), merged into one map.
    #[test]
    fn two_loops_merge_into_one_map() {
        let code = |k: i32| {
            format!(
                "(loop $a (local.set $x (i32.add (local.get $x) (i32.const 1))) (br_if $a (global.get $g)))
                 (loop $b (local.set $x (i32.mul (local.get $x) (local.get $p)))
                   (local.set $x (i32.add (local.get $x) (i32.const {k}))) (br_if $b (global.get $g)))
                 (global.set $g (local.get $x))"
            )
        };
        let m = map_of(
            &func("(local $x i32)", &code(1)),
            &func("(local $x i32)", &code(2)),
        );
        let m = m.unwrap();
        assert_eq!(m.headers, vec![(0, 0), (1, 1)]);
        assert_eq!(m.locals, vec![0, 1]);
    }

    /// A local the new code reads at the header whose value's life lines
    /// up with nothing in the old code (its code changed all around): no
    /// evidence, no map.
    #[test]
    fn a_live_local_without_evidence_is_refused() {
        let old = func(
            "(local $x i32)",
            "(loop $a (local.set $x (i32.add (local.get $x) (i32.const 1))) (br_if $a (global.get $g))) (global.set $g (local.get $x))",
        );
        let new = func(
            "(local $x i32)",
            "(loop $a (local.set $x (i32.xor (i32.rotl (local.get $x) (i32.const 3)) (i32.const 9))) (br_if $a (global.get $g))) (nop) (global.set $g (i32.clz (local.get $x)))",
        );
        let e = map_of(&old, &new).unwrap_err();
        assert!(e.contains("its role cannot be shown"), "{e}");
    }

    /// The old code overwrites `$t` first thing in each turn (dead at its
    /// header: not spilled); the new code reads it before it writes it.
    /// The evidence pairs them, but the old value is not kept: refused.
    #[test]
    fn a_pair_whose_old_local_is_dead_at_the_header_is_refused() {
        let acc = "(local.set $acc (i32.add (local.get $acc) (local.get $t)))";
        let t = "(local.set $t (i32.const 0))";
        let tail = "(br_if $a (global.get $g))) (global.set $g (local.get $acc))";
        let locals = "(local $acc i32) (local $t i32)";
        let old = func(locals, &format!("(loop $a {t} {acc} {tail}"));
        let new = func(locals, &format!("(loop $a {acc} {t} {tail}"));
        let e = map_of(&old, &new).unwrap_err();
        assert!(e.contains("dead at the old header"), "{e}");
    }

    /// A worker that never leaves its loop (no read after it to tell the
    /// locals apart) whose two updates trade places: the aligned loop
    /// bodies pair the new counter's write with the old accumulator's, but
    /// the values written differ (`+ 7` against `+ 1`), so that is no
    /// evidence; the locals are never carried crosswise.
    #[test]
    fn updates_that_trade_places_in_a_never_ending_loop_are_not_crossed() {
        let inc =
            |l: &str, k: i32| format!("(local.set {l} (i32.add (local.get {l}) (i32.const {k})))");
        let body = |a: String, b: String| format!("(loop $a {a} {b} (br $a))");
        let locals = "(local $i i32) (local $acc i32)";
        let m = |code: String| {
            format!("(module (func $f (param i32)) (func (param $p i32) {locals} {code}))")
        };
        let old = m(body(inc("$acc", 7), inc("$i", 1)));
        let new = m(body(inc("$i", 1), inc("$acc", 1000)));
        let second = |wat: &str| {
            let bytes = wat::parse_str(wat).unwrap();
            let mut bodies = wasmparser::Parser::new(0)
                .parse_all(&bytes)
                .filter_map(|p| match p.unwrap() {
                    wasmparser::Payload::CodeSectionEntry(b) => {
                        let r = b.range();
                        Some(bytes[r.start as usize..r.end as usize].to_vec())
                    }
                    _ => None,
                });
            bodies.nth(1).unwrap()
        };
        let r = analyze(
            1,
            &[ValType::I32],
            0,
            &second(&old),
            &second(&new),
            &[(vec![], vec![], false)],
        );
        match r {
            Ok(map) => assert_eq!(&map.locals[1..], &[1, 2], "crossed: {map:?}"),
            Err(e) => assert!(e.contains("role"), "{e}"),
        }
    }
}
