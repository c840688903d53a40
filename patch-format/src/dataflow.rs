//! Dataflow over one wasm function body (issue 14, `docs/transfer.md`):
//! the control-flow graph of its operators, the locals live at each loop
//! header, the definitions of a local that reach a header and the reads
//! of it that a header reaches. Frame transfer uses these to pair the
//! locals of two builds by what they do at the header, and to carry only
//! the locals whose value the new version can observe there.
//!
//! Positions are operator indices in the body's operator stream. The state
//! "at a loop header" is the state on entry to its `loop` operator, which
//! is where both the first arrival (fall-through) and every `br` to the
//! loop's label lead.

use std::collections::BTreeSet;
use wasmparser::{BinaryReader, FunctionBody, Operator};

/// Functions are analysed only up to this many operator × local-word
/// cells (the liveness bitsets); a larger one is refused.
const MAX_CELLS: usize = 1 << 24;

/// Where a value of a local comes from at a point of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Def {
    /// The function entry: a parameter's argument, or a declared local's
    /// zero.
    Entry,
    /// The `local.set` or `local.tee` at this operator position.
    At(usize),
}

/// The control-flow graph of one body, with the local each operator
/// reads or writes.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Number of locals, parameters included.
    pub nlocals: usize,
    /// Per operator: the local it reads (`local.get`).
    uses: Vec<Option<u32>>,
    /// Per operator: the local it writes (`local.set`, `local.tee`).
    defs: Vec<Option<u32>>,
    succ: Vec<Vec<usize>>,
    pred: Vec<Vec<usize>>,
    /// Operator position of each `loop`, by ordinal (pre-order).
    pub loops: Vec<usize>,
}

/// The kind of an open construct while the graph is built.
#[derive(Clone, Copy)]
struct Open {
    start: usize,
    end: usize,
    is_loop: bool,
}

impl Flow {
    /// Build the graph of `body` (`nlocals`: its local count, parameters
    /// included).
    ///
    /// # Errors
    /// The body cannot be decoded, is not well nested, or uses a control
    /// operator this analysis does not model (exceptions, typed
    /// references' branches).
    pub fn new(body: &FunctionBody<'_>, nlocals: usize) -> Result<Flow, String> {
        let mut ops = Vec::new();
        let mut r = body.get_operators_reader().map_err(|e| e.to_string())?;
        while !r.eof() {
            ops.push(r.read().map_err(|e| e.to_string())?);
        }
        Flow::from_ops(&ops, nlocals)
    }

    /// Build the graph from a body's raw bytes (locals declarations first).
    ///
    /// # Errors
    /// As [`Flow::new`].
    pub fn from_bytes(bytes: &[u8], nlocals: usize) -> Result<Flow, String> {
        Flow::new(&FunctionBody::new(BinaryReader::new(bytes, 0)), nlocals)
    }

    fn from_ops(ops: &[Operator<'_>], nlocals: usize) -> Result<Flow, String> {
        let n = ops.len();
        // Matching `else` and `end` of every construct.
        let mut end_of = vec![usize::MAX; n];
        let mut else_of = vec![usize::MAX; n];
        let mut stack = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                    stack.push(i)
                }
                Operator::Else => {
                    let &s = stack.last().ok_or("`else` outside a construct")?;
                    else_of[s] = i;
                }
                Operator::End => {
                    if let Some(s) = stack.pop() {
                        end_of[s] = i;
                    }
                }
                _ => {}
            }
        }
        if !stack.is_empty() || n == 0 {
            return Err("the body is not well nested".into());
        }
        let mut uses = vec![None; n];
        let mut defs = vec![None; n];
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut loops = Vec::new();
        // The function's own block: a branch to it leaves the function.
        let mut open = vec![Open {
            start: 0,
            end: n - 1,
            is_loop: false,
        }];
        let target = |open: &[Open], depth: u32| -> Result<Option<usize>, String> {
            let k = open
                .len()
                .checked_sub(1 + depth as usize)
                .ok_or("a branch deeper than its constructs")?;
            let o = open[k];
            Ok(if o.is_loop {
                Some(o.start)
            } else if k == 0 {
                None
            } else {
                Some(o.end)
            })
        };
        for (i, op) in ops.iter().enumerate() {
            let next = (i + 1 < n).then_some(i + 1);
            let s = &mut succ[i];
            match op {
                Operator::LocalGet { local_index } => {
                    uses[i] = Some(*local_index);
                    s.extend(next);
                }
                Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                    defs[i] = Some(*local_index);
                    s.extend(next);
                }
                Operator::Block { .. } | Operator::Loop { .. } => {
                    let is_loop = matches!(op, Operator::Loop { .. });
                    if is_loop {
                        loops.push(i);
                    }
                    open.push(Open {
                        start: i,
                        end: end_of[i],
                        is_loop,
                    });
                    s.extend(next);
                }
                Operator::If { .. } => {
                    open.push(Open {
                        start: i,
                        end: end_of[i],
                        is_loop: false,
                    });
                    s.extend(next);
                    s.push(if else_of[i] != usize::MAX {
                        else_of[i] + 1
                    } else {
                        end_of[i]
                    });
                }
                // Reached only by falling off the `then` arm.
                Operator::Else => {
                    let o = open.last().ok_or("`else` outside a construct")?;
                    s.push(o.end);
                }
                Operator::End => {
                    if open.len() > 1 {
                        open.pop();
                    }
                    s.extend(next);
                }
                Operator::Br { relative_depth } => s.extend(target(&open, *relative_depth)?),
                Operator::BrIf { relative_depth } => {
                    s.extend(target(&open, *relative_depth)?);
                    s.extend(next);
                }
                Operator::BrTable { targets } => {
                    for t in targets.targets() {
                        s.extend(target(&open, t.map_err(|e| e.to_string())?)?);
                    }
                    s.extend(target(&open, targets.default())?);
                }
                Operator::Return
                | Operator::Unreachable
                | Operator::ReturnCall { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::ReturnCallRef { .. } => {}
                other if crate::transfer::is_plain(other) || matches!(other, Operator::Nop) => {
                    s.extend(next)
                }
                other => {
                    return Err(format!(
                        "control operator {other:?} is not modelled by the dataflow analysis"
                    ))
                }
            }
            s.sort_unstable();
            s.dedup();
        }
        let mut pred = vec![Vec::new(); n];
        for (i, s) in succ.iter().enumerate() {
            for &t in s {
                pred[t].push(i);
            }
        }
        Ok(Flow {
            nlocals,
            uses,
            defs,
            succ,
            pred,
            loops,
        })
    }

    /// The local operator `pos` reads, if any.
    pub fn use_at(&self, pos: usize) -> Option<u32> {
        self.uses.get(pos).copied().flatten()
    }

    /// The local operator `pos` writes, if any.
    pub fn def_at(&self, pos: usize) -> Option<u32> {
        self.defs.get(pos).copied().flatten()
    }

    /// For each loop ordinal, which locals are live at its header: read
    /// on some path from the header before any write of them.
    ///
    /// # Errors
    /// The function is too large to analyse.
    pub fn live_at_loops(&self) -> Result<Vec<Vec<bool>>, String> {
        let n = self.succ.len();
        let words = self.nlocals.div_ceil(64).max(1);
        if n.saturating_mul(words) > MAX_CELLS {
            return Err(format!(
                "too large for the liveness analysis ({n} operators × {} locals)",
                self.nlocals
            ));
        }
        let mut live = vec![0u64; n * words];
        let mut changed = true;
        let mut row = vec![0u64; words];
        while changed {
            changed = false;
            for i in (0..n).rev() {
                row.iter_mut().for_each(|w| *w = 0);
                for &s in &self.succ[i] {
                    for (w, l) in row.iter_mut().zip(&live[s * words..(s + 1) * words]) {
                        *w |= l;
                    }
                }
                if let Some(d) = self.defs[i] {
                    row[d as usize / 64] &= !(1 << (d % 64));
                }
                if let Some(u) = self.uses[i] {
                    row[u as usize / 64] |= 1 << (u % 64);
                }
                let cur = &mut live[i * words..(i + 1) * words];
                if cur != row.as_slice() {
                    cur.copy_from_slice(&row);
                    changed = true;
                }
            }
        }
        Ok(self
            .loops
            .iter()
            .map(|&h| {
                (0..self.nlocals)
                    .map(|l| live[h * words + l / 64] & (1 << (l % 64)) != 0)
                    .collect()
            })
            .collect())
    }

    /// The definitions of `local` that reach the point before operator
    /// `at` (on some path, with no other write of it in between).
    pub fn reaching_defs(&self, at: usize, local: u32) -> BTreeSet<Def> {
        let mut out = BTreeSet::new();
        let mut seen = vec![false; self.succ.len()];
        let mut work: Vec<usize> = self.pred[at].clone();
        if at == 0 {
            out.insert(Def::Entry);
        }
        while let Some(p) = work.pop() {
            if std::mem::replace(&mut seen[p], true) {
                continue;
            }
            if self.defs[p] == Some(local) {
                out.insert(Def::At(p));
                continue;
            }
            if p == 0 {
                out.insert(Def::Entry);
            }
            work.extend(&self.pred[p]);
        }
        out
    }

    /// The reads of `local` that the point before operator `at` reaches
    /// with its value there (on some path, before any write of it).
    pub fn exposed_uses(&self, at: usize, local: u32) -> BTreeSet<usize> {
        self.uses_from(vec![at], local)
    }

    /// The reads of `local` reached from the points before `starts`.
    fn uses_from(&self, starts: Vec<usize>, local: u32) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let mut seen = vec![false; self.succ.len()];
        let mut work = starts;
        while let Some(p) = work.pop() {
            if std::mem::replace(&mut seen[p], true) {
                continue;
            }
            if self.uses[p] == Some(local) {
                out.insert(p);
            }
            if self.defs[p] == Some(local) {
                continue;
            }
            work.extend(&self.succ[p]);
        }
        out
    }

    /// The *web* of `local`'s value at the point before operator `at`:
    /// the definitions that reach it and the reads it reaches, closed
    /// under "a definition reaches a read" (every read of a definition in
    /// the web, every definition of a read in the web). This is the whole
    /// life of the value a frame carries at that point, before and after
    /// it, including reads after the loop of the values the loop builds.
    pub fn web(&self, at: usize, local: u32) -> (BTreeSet<Def>, BTreeSet<usize>) {
        let mut defs = self.reaching_defs(at, local);
        let mut uses = self.exposed_uses(at, local);
        let (mut done_defs, mut done_uses) = (BTreeSet::new(), BTreeSet::new());
        loop {
            let new_defs: Vec<Def> = defs.difference(&done_defs).copied().collect();
            let new_uses: Vec<usize> = uses.difference(&done_uses).copied().collect();
            if new_defs.is_empty() && new_uses.is_empty() {
                return (defs, uses);
            }
            for d in new_defs {
                let starts = match d {
                    Def::Entry => vec![0],
                    Def::At(p) => self.succ[p].clone(),
                };
                uses.extend(self.uses_from(starts, local));
                done_defs.insert(d);
            }
            for u in new_uses {
                defs.extend(self.reaching_defs(u, local));
                done_uses.insert(u);
            }
        }
    }

    /// Whether a frame may enter the header of loop `ordinal` with `local`
    /// at zero, whatever its value was: it is dead there (never read
    /// before it is written), or it is a declared local (not one of the
    /// `nparams` parameters) whose only definition reaching the header is
    /// the function entry's zero.
    pub fn fresh_ok(&self, ordinal: u32, local: u32, nparams: usize, live: &[bool]) -> bool {
        let Some(&h) = self.loops.get(ordinal as usize) else {
            return false;
        };
        !live.get(local as usize).copied().unwrap_or(true)
            || (local as usize >= nparams
                && self.reaching_defs(h, local).into_iter().eq([Def::Entry]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One i32 local, no parameters; `loop` (0x03 0x40), then `code`, then
    /// `end end`.
    fn flow(code: &[u8]) -> Flow {
        let mut b = vec![1, 1, 0x7f, 0x03, 0x40];
        b.extend_from_slice(code);
        b.extend_from_slice(&[0x0b, 0x0b]);
        Flow::from_bytes(&b, 1).unwrap()
    }

    fn live(code: &[u8]) -> bool {
        flow(code).live_at_loops().unwrap()[0][0]
    }

    #[test]
    fn liveness_at_a_header_follows_every_path() {
        let set = [0x41, 5, 0x21, 0]; // i32.const 5; local.set 0
        assert!(!live(&set));
        assert!(live(&[0x20, 0, 0x1a])); // local.get 0; drop
        assert!(!live(&[])); // never read
                             // A branch back to the header before the write: still dead.
        let mut back = vec![0x41, 1, 0x0d, 0];
        back.extend_from_slice(&set);
        assert!(!live(&back));
        // A write inside a block that always runs: dead.
        let mut in_block = vec![0x02, 0x40];
        in_block.extend_from_slice(&set);
        in_block.push(0x0b);
        assert!(!live(&in_block));
        // A branch out of the block past the write, then a read: live.
        let mut skip = vec![0x02, 0x40, 0x41, 1, 0x0d, 0];
        skip.extend_from_slice(&set);
        skip.extend_from_slice(&[0x0b, 0x20, 0, 0x1a]);
        assert!(live(&skip));
        // A write in one arm of an `if` only, then a read: live.
        let mut one_arm = vec![0x41, 1, 0x04, 0x40];
        one_arm.extend_from_slice(&set);
        one_arm.extend_from_slice(&[0x0b, 0x20, 0, 0x1a]);
        assert!(live(&one_arm));
        // A write in both arms: dead.
        let mut both = vec![0x41, 1, 0x04, 0x40];
        both.extend_from_slice(&set);
        both.push(0x05);
        both.extend_from_slice(&set);
        both.extend_from_slice(&[0x0b, 0x20, 0, 0x1a]);
        assert!(!live(&both));
    }

    #[test]
    fn reaching_definitions_and_exposed_uses() {
        // loop: get 0; const 1; add; set 0; const 1; br_if 0; end; get 0
        let mut b = vec![1, 1, 0x7f, 0x03, 0x40];
        b.extend_from_slice(&[0x20, 0, 0x41, 1, 0x6a, 0x21, 0, 0x41, 1, 0x0d, 0]);
        b.extend_from_slice(&[0x0b, 0x20, 0, 0x1a, 0x0b]);
        let f = Flow::from_bytes(&b, 1).unwrap();
        // Positions: 0 loop, 1 get, 2 const, 3 add, 4 set, 5 const,
        // 6 br_if, 7 end, 8 get, 9 drop, 10 end.
        let rd: Vec<Def> = f.reaching_defs(0, 0).into_iter().collect();
        assert_eq!(rd, [Def::Entry, Def::At(4)]);
        let uses: Vec<usize> = f.exposed_uses(0, 0).into_iter().collect();
        assert_eq!(uses, [1]);
        let after: Vec<usize> = f.exposed_uses(5, 0).into_iter().collect();
        assert_eq!(after, [1, 8]);
        // The web of the header's value: the loop's update feeds the read
        // after the loop too.
        let (defs, uses) = f.web(0, 0);
        assert_eq!(
            defs.into_iter().collect::<Vec<_>>(),
            [Def::Entry, Def::At(4)]
        );
        assert_eq!(uses.into_iter().collect::<Vec<_>>(), [1, 8]);
        // Only the entry's zero and the loop's own update reach: the local
        // is live, so not fresh.
        let live = f.live_at_loops().unwrap();
        assert!(!f.fresh_ok(0, 0, 0, &live[0]));
    }
}
