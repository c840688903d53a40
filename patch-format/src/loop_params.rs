//! Loop parameters at a mapped header (issue 14, `docs/transfer.md`, "Loop
//! parameters"): which parameter of the old loop each parameter of the new
//! loop takes, shown by dataflow evidence, never by position alone.
//!
//! A loop parameter is a value on the operand stack at the header. Its
//! life, on each side, is followed through the stack over straight-line
//! code of known stack effect:
//! - its *consumer*: the operator of the loop body that pops it. When that
//!   is a `local.set` or `local.tee` (the value is kept in a local), the
//!   evidence is the web of that local's value from there on
//!   ([`Flow::web`]: the reads it reaches and the other writes that reach
//!   them), not the copy itself, whose place says nothing; otherwise the
//!   consumer itself;
//! - its *producers on the back edges*: the operator that computes the
//!   value each `br` / `br_if` to the loop passes for it, counted only
//!   when the whole expression is computed by aligned, equal operators;
//!   when the value passed is a local's (`local.get`, `local.tee`), the
//!   web of that local's value there instead of the read.
//!
//! A new parameter takes an old one when, under both alignments, its
//! evidence lines up with the evidence of that old parameter only (and
//! with no old local's other code), and that old parameter's evidence
//! lines up with no other new parameter's. Swapping two parameters also
//! needs the code before the loop to pass them equal constants: the first
//! arrival at the header must build corresponding states.

use super::{same_value, Alignment, Decoded, Sides, MAX_LOCALS};
use crate::dataflow::{Def, Flow};
use std::collections::BTreeSet;
use wasmparser::{Operator, ValType};

/// The operand stack effect (pops, pushes) used to follow loop parameters:
/// the plain value operators' ([`super::stack_effect`]), writes of locals
/// and globals, drops and stores. `None` for anything else (control,
/// calls): the walk stops there.
pub(super) fn sim_effect(op: &Operator<'_>) -> Option<(u8, u8)> {
    if let Some(e) = super::stack_effect(op) {
        return Some(e);
    }
    match op {
        Operator::LocalSet { .. } | Operator::GlobalSet { .. } | Operator::Drop => Some((1, 0)),
        Operator::Nop => Some((0, 0)),
        _ => {
            let name = format!("{op:?}");
            let name = name.split([' ', '{', '(']).next().unwrap_or_default();
            let store = ["I32", "I64", "F32", "F64"]
                .iter()
                .any(|t| name.strip_prefix(t).is_some_and(|r| r.starts_with("Store")));
            store.then_some((2, 0))
        }
    }
}

/// One side's view of the parameters of one loop.
struct ParamFlow {
    /// Per parameter: the operator positions that show its role.
    evidence: Vec<BTreeSet<usize>>,
    /// Positions in `evidence` that are back-edge producers (they count
    /// only when their expression is the same on both sides).
    producers: BTreeSet<usize>,
    /// Per parameter: the operator that pushes its value before the loop.
    entry: Vec<Option<usize>>,
}

/// The position of the operator that pushed the value `depth` places
/// below the top of the stack just before position `at`, walking back to
/// (not past) position `stop`.
fn producer(d: &Decoded, at: usize, stop: usize, mut depth: usize) -> Option<usize> {
    let mut a = at;
    while a > stop {
        a -= 1;
        let (pops, pushes) = d.sim[a]?;
        if depth < pushes as usize {
            return Some(a);
        }
        depth = depth + pops as usize - pushes as usize;
    }
    None
}

fn param_flow(d: &Decoded, f: &Flow, k: usize, n: usize) -> ParamFlow {
    let h = d.loops[k].0;
    let mut evidence = vec![BTreeSet::new(); n];
    let mut producers = BTreeSet::new();
    // Consumers: follow the stack from the header.
    let mut stack: Vec<Option<usize>> = (0..n).map(Some).collect();
    let mut q = h + 1;
    while stack.iter().any(Option::is_some) && q < d.sim.len() {
        let Some((pops, pushes)) = d.sim[q] else {
            break;
        };
        for _ in 0..pops {
            match stack.pop() {
                Some(Some(p)) => match f.def_at(q) {
                    // Kept in a local: the life of that value is the role.
                    Some(x) => {
                        let (defs, uses) = f.web(q + 1, x);
                        let at = defs.into_iter().filter_map(|d| match d {
                            Def::At(w) if w != q => Some(w),
                            _ => None,
                        });
                        evidence[p].extend(at.chain(uses));
                    }
                    None => {
                        evidence[p].insert(q);
                    }
                },
                Some(None) => {}
                // Below the parameters: nothing the loop can reach.
                None => break,
            }
        }
        stack.extend(std::iter::repeat_n(None, pushes as usize));
        q += 1;
    }
    // Back-edge producers: a computed value's operator; a local's value
    // (`local.get`, `local.tee`) passed on is shown by its web there, not
    // by the read, whose place among the values passed says nothing.
    for (b, to) in d.br_to.iter().enumerate() {
        let Some((target, above)) = *to else { continue };
        if target != k {
            continue;
        }
        for (p, ev) in evidence.iter_mut().enumerate() {
            let Some(a) = producer(d, b, h, n - 1 - p + above) else {
                continue;
            };
            let local = match (f.use_at(a), f.def_at(a)) {
                (Some(x), _) => Some((a, x)),
                (None, Some(x)) => Some((a + 1, x)),
                (None, None) => None,
            };
            match local {
                Some((at, x)) => {
                    let (defs, uses) = f.web(at, x);
                    let defs = defs.into_iter().filter_map(|d| match d {
                        Def::At(w) => Some(w),
                        Def::Entry => None,
                    });
                    ev.extend(defs.chain(uses).filter(|&w| w != a));
                }
                None => {
                    ev.insert(a);
                    producers.insert(a);
                }
            }
        }
    }
    let entry = (0..n).map(|p| producer(d, h, 0, n - 1 - p)).collect();
    ParamFlow {
        evidence,
        producers,
        entry,
    }
}

/// What an aligned operator of the other side belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Param(u32),
    Local(u32),
}

/// The owners, on the other side, of the operators that `mine` (one
/// parameter's evidence; `my_producers`: this side's back-edge producers)
/// lines up with under both alignments. `other`/`other_flow`: the other
/// side's parameters and flow; `pairs(a, pos)`: alignment `a`'s partner
/// of a position of this side; `same(a, mine, theirs)`: whether a
/// producer's expression is computed by aligned, equal operators.
fn owners(
    mine: &BTreeSet<usize>,
    my_producers: &BTreeSet<usize>,
    other: &ParamFlow,
    other_flow: &Flow,
    pairs: impl Fn(&Alignment, usize) -> Option<usize>,
    same: impl Fn(&Alignment, usize, usize) -> bool,
    aligns: &[Alignment; 2],
) -> BTreeSet<Owner> {
    let mut out = BTreeSet::new();
    for a in aligns {
        for &q in mine {
            let Some(p) = pairs(a, q) else { continue };
            let producer = my_producers.contains(&q) || other.producers.contains(&p);
            if producer && !same(a, q, p) {
                continue;
            }
            // Every parameter of the other side whose evidence holds it
            // (two are ambiguous), else the local it reads or writes.
            let mut hit = false;
            for (r, e) in other.evidence.iter().enumerate() {
                if e.contains(&p) {
                    out.insert(Owner::Param(r as u32));
                    hit = true;
                }
            }
            if hit {
                continue;
            }
            if let Some(l) = other_flow.def_at(p).or(other_flow.use_at(p)) {
                out.insert(Owner::Local(l));
            }
        }
    }
    out
}

/// The pairing of the operand stack at the header of loop `k` (from
/// validation of the new build: the operands `below` the loop, bottom
/// first, and the parameter `types`): for each value, the old one it
/// takes. The operands below the loop take their own places: the code
/// before the header, which pushed them, must be the same (`same_prefix`,
/// which the caller checks), and the loop cannot reach them. Empty for a
/// loop with neither.
pub(super) fn pair(
    s: &Sides<'_>,
    k: usize,
    (below, types, around): (&[ValType], &[ValType], bool),
    aligns: &[Alignment; 2],
) -> Result<Vec<u32>, String> {
    if around {
        // The OSR entry would need them on the enclosing loop's back edge,
        // which the unreachable code before the header does not reach.
        return Err("operands below an enclosing loop too: a transfer carries operands below a header only when no enclosing loop has any below it".into());
    }
    let mut out: Vec<u32> = (0..below.len() as u32).collect();
    if s.n.locals.len() + below.len() + types.len() > MAX_LOCALS {
        return Err(format!(
            "{} locals and {} value(s) on the operand stack at the header (a frame with more than {MAX_LOCALS} does not move)",
            s.n.locals.len(),
            below.len() + types.len()
        ));
    }
    let wide = s.n.locals.contains(&ValType::V128) && s.o.locals.contains(&ValType::V128);
    if !wide && below.contains(&ValType::V128) {
        return Err(
            "a v128 operand below the header in a function without v128 locals (its spill slot would be too small)"
                .into(),
        );
    }
    let params = params_pairing(s, k, types, aligns)?;
    out.extend(params.into_iter().map(|q| below.len() as u32 + q));
    Ok(out)
}

/// The pairing of the parameters (`types`) of loop `k`: for each new
/// parameter, the old one it takes.
fn params_pairing(
    s: &Sides<'_>,
    k: usize,
    types: &[ValType],
    aligns: &[Alignment; 2],
) -> Result<Vec<u32>, String> {
    let (ho, hn) = (s.o.loops[k].0, s.n.loops[k].0);
    let n = types.len();
    // The block type (in the target's index space) must be the same: the
    // same parameter types in the same order, the same count.
    if s.o.ops[ho].0 != s.n.ops[hn].0 && (n > 0 || s.o.typed_loops[k]) {
        return Err(format!(
            "its block type changes ({n} loop parameter(s) now): a transfer carries loop parameters only between loops of the same type"
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let wide = s.n.locals.contains(&ValType::V128) && s.o.locals.contains(&ValType::V128);
    if let Some(p) = types.iter().position(|&t| t == ValType::V128) {
        if !wide {
            return Err(format!(
                "loop parameter {p} is a v128 in a function without v128 locals (its spill slot would be too small)"
            ));
        }
    }
    let po = param_flow(s.o, s.of, k, n);
    let pn = param_flow(s.n, s.nf, k, n);
    let same_n = |a: &Alignment, q: usize, p: usize| same_value(s.o, &a.pairs, p + 1, q + 1);
    let same_o = |a: &Alignment, p: usize, q: usize| same_value(s.o, &a.pairs, p + 1, q + 1);
    let mut out: Vec<u32> = Vec::with_capacity(n);
    for p in 0..n {
        let cands = owners(
            &pn.evidence[p],
            &pn.producers,
            &po,
            s.of,
            |a, q| a.n2o[q],
            same_n,
            aligns,
        );
        let q = match cands.iter().next() {
            None => {
                return Err(format!(
                    "no aligned code consumes new loop parameter {p} or passes its value on a back edge: its role cannot be shown"
                ))
            }
            Some(_) if cands.len() > 1 => {
                let c: Vec<String> = cands
                    .iter()
                    .map(|c| match c {
                        Owner::Param(r) => format!("old loop parameter {r}"),
                        Owner::Local(l) => format!("old local {l}"),
                    })
                    .collect();
                return Err(format!(
                    "the roles of loop parameters are ambiguous: new loop parameter {p} lines up with {}",
                    c.join(" and ")
                ));
            }
            Some(Owner::Local(l)) => {
                return Err(format!(
                    "new loop parameter {p} lines up with old local {l}, not with a loop parameter"
                ))
            }
            Some(&Owner::Param(q)) => q,
        };
        // The other way: old parameter q lines up with new parameter p only.
        let back = owners(
            &po.evidence[q as usize],
            &po.producers,
            &pn,
            s.nf,
            |a, x| a.o2n[x],
            same_o,
            aligns,
        );
        if back.iter().any(|&o| o != Owner::Param(p as u32)) {
            return Err(format!(
                "the roles of loop parameters are ambiguous: old loop parameter {q} lines up with new loop parameter {p} and other code"
            ));
        }
        if out.contains(&q) {
            return Err(format!(
                "the roles of loop parameters are ambiguous: old loop parameter {q} lines up with two new ones"
            ));
        }
        if q as usize != p {
            // The first arrival: the code before the loop (the same on both
            // sides) must pass equal constants for the two.
            let equal = match (pn.entry[p], po.entry[q as usize]) {
                (Some(a), Some(b)) => {
                    s.n.consts[a] && s.o.consts[b] && s.n.ops[a].0 == s.o.ops[b].0
                }
                _ => false,
            };
            if !equal {
                return Err(format!(
                    "new loop parameter {p} takes old loop parameter {q}, but the code before the loop may pass them different values"
                ));
            }
        }
        out.push(q);
    }
    Ok(out)
}

/// The operand stack at a loop header: the types of the operands below the
/// loop (bottom first) and of its parameters, and whether some of those
/// operands lie below an enclosing loop too.
pub(crate) type HeaderStack = (Vec<ValType>, Vec<ValType>, bool);

/// The types of the operands below each `loop` (in pre-order; bottom
/// first) and of its parameters, in defined function `defined` of
/// `module`, from validation.
///
/// # Errors
/// The module does not validate, or has no such function.
pub(crate) fn loop_heights(module: &[u8], defined: usize) -> Result<Vec<HeaderStack>, String> {
    use wasmparser::{Parser, ValidPayload, Validator, WasmModuleResources};
    let mut v = Validator::new();
    let mut seen = 0;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let ValidPayload::Func(f, body) = v.payload(&payload).map_err(|e| e.to_string())? {
            if seen == defined {
                let mut fv = f.into_validator(Default::default());
                let mut out = Vec::new();
                // Open constructs: for a loop, whether operands lie below it.
                let mut open: Vec<Option<bool>> = Vec::new();
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
                                .map(|s| s.unwrap_func().params().to_vec())
                                .ok_or_else(|| format!("a loop of unknown type {i}"))?,
                            _ => Vec::new(),
                        };
                        // Below the parameters: the operands under the
                        // loop, bottom first.
                        let below = (fv.operand_stack_height() as usize)
                            .checked_sub(params.len())
                            .ok_or("a loop's parameters are not on the stack")?;
                        let below = (0..below)
                            .rev()
                            .map(|d| fv.get_operand_type(d + params.len()).flatten())
                            .collect::<Option<Vec<ValType>>>()
                            .ok_or("an operand of unknown type below a loop")?;
                        let around = open.contains(&Some(true));
                        open.push(Some(!below.is_empty()));
                        out.push((below, params, around));
                    } else if matches!(
                        op,
                        Operator::Block { .. } | Operator::If { .. } | Operator::TryTable { .. }
                    ) {
                        open.push(None);
                    } else if matches!(op, Operator::End) {
                        open.pop();
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
    use super::super::{analyze, loop_heights};

    /// The map (or refusal) of the only function of two modules.
    fn map_of(old: &str, new: &str) -> Result<super::super::TransferMap, String> {
        let body = |wat: &str| {
            let bytes = wat::parse_str(wat).unwrap();
            let b = wasmparser::Parser::new(0)
                .parse_all(&bytes)
                .find_map(|p| match p.unwrap() {
                    wasmparser::Payload::CodeSectionEntry(b) => Some(b.range()),
                    _ => None,
                })
                .unwrap();
            (bytes[b.start as usize..b.end as usize].to_vec(), bytes)
        };
        let (o, _) = body(old);
        let (n, module) = body(new);
        let heights = loop_heights(&module, 0)?;
        analyze(0, &[], 0, &o, &n, &heights)
    }

    /// A never-ending loop carrying (counter, accumulator) as its two
    /// parameters, kept in locals at the header; `swap` puts them the other
    /// way round (the accumulator first), `k` is what each turn adds.
    fn worker(swap: bool, k: i32) -> String {
        let (first, second) = if swap { ("$acc", "$i") } else { ("$i", "$acc") };
        let next = |l: &str| {
            if l == "$i" {
                "(i32.add (local.get $i) (i32.const 1))".to_string()
            } else {
                format!("(i32.add (local.get $acc) (i32.const {k}))")
            }
        };
        format!(
            "(module (type $p (func (param i32 i32)))
               (global $g (mut i32) (i32.const 0))
               (func (local $i i32) (local $acc i32)
                 (i32.const 0) (i32.const 0)
                 (loop $l (type $p)
                   (local.set {second}) (local.set {first})
                   (global.set $g (i32.add (local.get $acc) (local.get $i)))
                   {} {} (br $l))))",
            next(first),
            next(second)
        )
    }

    #[test]
    fn loop_parameters_in_place_are_paired() {
        let m = map_of(&worker(false, 7), &worker(false, 9)).unwrap();
        assert_eq!(m.params, vec![vec![0, 1]]);
    }

    /// The parameters trade places: paired by their roles (the lives of
    /// the locals they are kept in), never by position.
    #[test]
    fn loop_parameters_that_trade_places_are_never_crossed() {
        match map_of(&worker(false, 7), &worker(true, 7)) {
            Ok(m) => assert_eq!(m.params, vec![vec![1, 0]], "crossed: {m:?}"),
            Err(e) => assert!(e.contains("loop parameter"), "{e}"),
        }
    }

    #[test]
    fn a_loop_parameter_whose_type_changes_is_refused() {
        let old = worker(false, 7);
        // In a diff both bodies use the bundle's type space, where equal
        // indices are equal signatures: the new type gets its own index.
        let new = old
            .replace(
                "(type $p (func (param i32 i32)))",
                "(type (func)) (type $p (func (param i32 i64)))",
            )
            .replace("(local $acc i32)", "(local $acc i64)")
            .replace("(i32.const 0) (i32.const 0)", "(i32.const 0) (i64.const 0)")
            .replace(
                "(i32.add (local.get $acc) (i32.const 7))",
                "(i64.add (local.get $acc) (i64.const 7))",
            )
            .replace(
                "(i32.add (local.get $acc) (local.get $i))",
                "(i32.add (i32.wrap_i64 (local.get $acc)) (local.get $i))",
            );
        let e = map_of(&old, &new).unwrap_err();
        assert!(e.contains("loop 0: its block type changes"), "{e}");
    }

    /// Operands below a header keep their places (the code before the
    /// header that pushed them is the same, and the loop cannot reach
    /// them); one pushed by different code is refused.
    #[test]
    fn operands_below_a_header_keep_their_places() {
        let wat = |k: i32| {
            format!(
                "(module (global $g (mut i32) (i32.const 0))
                   (func (local $x i32) (i32.const {k}) (local.get $x)
                     (loop $l (param i32) (result i32)
                       (local.set $x) (local.get $x) (br_if $l (global.get $g)))
                     (drop) (global.set $g)))"
            )
        };
        let m = map_of(&wat(7), &wat(7)).unwrap();
        assert_eq!(m.params, vec![vec![0, 1]]);
        let e = map_of(&wat(7), &wat(8)).unwrap_err();
        assert!(
            e.contains("the code from the function entry to it differs"),
            "{e}"
        );
    }
}
