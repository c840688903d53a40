//! Frame transfer at loop headers (issue 14, `docs/transfer.md`,
//! docs/consistency.md rule 17): the decision, at a transfer poll of a
//! pending thread, that its innermost frame moves to the version of the
//! world the thread moves to: forward through the bundle's map, or back
//! through the map back derived from it at apply (`compile/osr.rs`).
//!
//! A frame moves only when every one of these holds:
//! - forward (toward the patched side), the frame runs the target module's
//!   own code (version 0, the code the map was made against: the module's
//!   unit, or an OSR entry of a map back, marked `base`); back (toward the
//!   unpatched side), it runs the bundle's own code and the bundle has a
//!   map back;
//! - the function's code in the world the thread moves to is the version
//!   the map leads to (stacked bundles: maps do not chain);
//! - the innermost frame is of a function in `C` that the bundle maps, of
//!   the instance being patched (its vmctx), stopped at the poll of a loop
//!   header that the map names (the ordinal the code passed and the
//!   frame's wasm offset agree);
//! - no other frame of the thread blocks (one exact scan against `C`).
//!
//! The thread then switches to `to` (as in rule 1) before the old code
//! tail-calls the entry of the other version: from the switch on it runs
//! only that version's code, and the frame it left is gone before its
//! next call or poll.

use super::transition::Transition;
use super::transition::{self, Side};
use super::versions::PatchedInstance;
use super::{Core, PatchId};
use crate::thread::poll::Transfer;
use crate::thread::{RunState, ThreadState};
use crate::vm::stack_walk::ScanCache;

/// The bundle whose version of `func` the world a transition leads to
/// runs (the latest of that world's bundles that replaces it), `None` for
/// the target's own code.
fn to_version(t: &Transition, pi: &PatchedInstance, func: u32) -> Option<PatchId> {
    let kept = match t.phase.toward() {
        Side::Patched => &t.keep_patched,
        Side::Unpatched => &t.keep_unpatched,
    };
    pi.applied
        .iter()
        .rev()
        .filter(|b| kept.contains(&b.id))
        .find(|b| b.slots.iter().any(|&(f, _)| f == func))
        .map(|b| b.id)
}

/// The version a map of the transition's bundle leads to: the bundle's
/// own toward the patched side, the target's toward the other.
fn expected(t: &Transition) -> Option<PatchId> {
    (t.phase.toward() == Side::Patched).then_some(t.patch)
}

/// Decide (and make) the transfer of `ts`'s innermost frame at loop
/// `ordinal`, whose vmctx is `vmctx`; `None` leaves the thread pending.
pub(crate) fn try_transfer(
    core: &mut Core,
    ts: &mut ThreadState,
    ordinal: u32,
    vmctx: usize,
) -> Option<Transfer> {
    let t = core.transition.as_ref()?;
    if !t.pending.contains(ts.id.0) {
        return None;
    }
    let pi = core.instances.get(&t.instance)?;
    let bundle = pi.applied.iter().find(|b| b.id == t.patch)?;
    let frames = ts.frames_any();
    let top = frames.first()?;
    if !t.check.contains(&top.func) {
        return None;
    }
    let plan = bundle.compiled.transfer.get(&top.func)?;
    // The target's own code of the function (version 0): its slot in the
    // instance's base table points into the module's unit.
    let base = pi.base.get(top.func as usize)?;
    // Instances of one module share its code: only a frame of the instance
    // being patched moves (its own functions run with its vmctx).
    if base.vmctx as usize != vmctx {
        // Status says so (`loop_block_of`): the stack scan cannot tell.
        ts.transfer_declined = Some(t.patch.0);
        return None;
    }
    // The function's code in the world the thread moves to must be the
    // version the map leads to: this bundle's (forward) or the target's
    // own (back). Otherwise (stacked bundles) the frame stays.
    if to_version(t, pi, top.func) != expected(t) {
        return None;
    }
    let base = base.code as usize;
    let module_unit = t
        .check_code
        .iter()
        .find(|r| r.func == Some(top.func) && r.range.contains(&base))?
        .unit;
    // Exactly one frame blocks, exactly located: this one (it is in `C`).
    let (mut hits, mut exact, mut pc) = (0, true, None);
    ts.scan(&t.check_code, &mut ScanCache::default(), &mut |_, at| {
        hits += 1;
        exact &= at.is_some();
        pc = pc.or(at);
        true
    });
    if hits != 1 || !exact {
        return None;
    }
    // Which code the frame runs: the target's own (the module's unit, or
    // an OSR entry of a map back, marked `base`) or this bundle's.
    let unit = crate::vm::code_memory::lookup(pc?)?;
    let code = unit.func_at(pc?)?;
    if code.func_index != top.func || unit.id() != top.unit {
        return None;
    }
    let version0 = top.unit == module_unit || code.base;
    let this_bundle = top.unit == bundle.compiled.unit.id() && !code.base;
    let (entry, locals, old_words, new_words) = match t.phase.toward() {
        Side::Patched if version0 => {
            if plan.old_loop_offsets.get(ordinal as usize).copied() != Some(top.offset as usize) {
                return None;
            }
            let k = plan.headers.iter().position(|h| h.0 == ordinal)?;
            // The header's operands (those below the loop, then its
            // parameters) follow the locals in the spill area and the
            // buffer.
            let params = plan.params.get(k)?.iter();
            let locals = (plan.locals.iter().copied())
                .chain(params.map(|&q| (plan.old_nlocals + q as usize) as u32));
            (
                plan.headers[k].1,
                locals.collect(),
                plan.old_words,
                plan.new_words,
            )
        }
        Side::Unpatched if this_bundle => {
            let back = plan.back.as_ref().ok()?;
            if back.new_loop_offsets.get(ordinal as usize).copied() != Some(top.offset as usize) {
                return None;
            }
            let k = back.headers.iter().position(|h| h.0 == ordinal)?;
            let params = back.params.get(k)?.iter();
            let locals = (back.locals.iter().copied())
                .chain(params.map(|&p| (plan.locals.len() + p as usize) as u32));
            (
                back.headers[k].1,
                locals.collect(),
                plan.new_words,
                plan.old_words,
            )
        }
        _ => return None,
    };
    let granted = Transfer {
        entry: bundle.compiled.unit.entry(entry) as usize,
        locals,
        old_words,
        new_words,
    };
    transition::switch(core, ts);
    Some(granted)
}

/// Why a blocked thread waits in a loop (issue 14, item 5): its blocking
/// frame lives in a loop of `function`, whether the transition's bundle
/// maps that function for transfer, and if it does, why this frame still
/// cannot move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopBlock {
    /// The blocking function's name.
    pub function: String,
    /// Whether the bundle carries a transfer map for it (the frame then
    /// moves at its next loop header, docs/transfer.md).
    pub mapped: bool,
    /// Why the frame cannot move although the function is mapped: no map
    /// back (and why), or a version of the function that the map does not
    /// lead from or to (stacked bundles: maps do not chain). `None` when
    /// it moves at its next loop header, or when nothing is mapped.
    pub stuck: Option<String>,
    /// Whether the thread is parked or asleep in a call its loop made (a
    /// server waiting for input): a mapped frame moves only once that call
    /// returns and the loop reaches its header.
    pub parked: bool,
}

impl std::fmt::Display for LoopBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blocked by a loop it lives in ({})", self.function)?;
        match (&self.stuck, self.mapped) {
            (Some(why), _) => write!(f, "; the bundle maps it, but this frame cannot move: {why}"),
            (None, true) if self.parked => write!(
                f,
                "; the bundle maps it, and a frame of the patched instance moves at its next loop \
                 header, but the thread is parked in a call the loop made: it moves once that call \
                 returns (a thread waiting for input moves when input comes)"
            ),
            (None, true) => write!(
                f,
                "; the bundle maps it: a frame of the patched instance moves at its next loop header"
            ),
            (None, false) => write!(
                f,
                "; a transfer map would help (diff --transfer {})",
                self.function
            ),
        }
    }
}

/// Whether module offset `offset` lies inside a `loop` of `body`.
fn in_loop(body: &wasmparser::FunctionBody<'_>, offset: usize) -> bool {
    let Ok(mut r) = body.get_operators_reader() else {
        return false;
    };
    // Open constructs: whether each is a loop, and where it began.
    let mut open: Vec<(bool, usize)> = Vec::new();
    while !r.eof() {
        let Ok((op, at)) = r.read_with_offset().map(|(op, at)| (op, at as usize)) else {
            return false;
        };
        use wasmparser::Operator as Op;
        match op {
            Op::Loop { .. } => open.push((true, at)),
            Op::Block { .. } | Op::If { .. } | Op::TryTable { .. } => open.push((false, at)),
            Op::End => {
                if let Some((true, start)) = open.pop() {
                    if (start..=at).contains(&offset) {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

impl<T: 'static> crate::Store<T> {
    /// Whether blocker `b` waits in a loop of its blocking function (a
    /// frame of the target module's own code, or of an applied bundle's
    /// version of it), whether the transition's bundle maps that function
    /// for transfer, and why the frame cannot move if it is mapped
    /// (docs/transfer.md). `None` for other blockers, and when no
    /// transition is in progress (a blocker of one that ended carries the
    /// answer of its time in [`super::Blocker::in_loop`]).
    pub fn loop_block(&self, b: &super::Blocker) -> Option<LoopBlock> {
        let s = &*self.inner;
        let t = s.patch.transition.as_ref()?;
        let inst = s.instances.get(t.instance)?;
        let ts = s.threads.get(&b.thread.0).map(|ts| &**ts);
        loop_block_of(&s.patch, inst, b, ts, &mut InLoopMemo::default())
    }
}

/// Whether a (unit, function index, offset) lies in a loop of the body the
/// unit holds for that function: blockers mostly share a few frames.
pub(crate) type InLoopMemo = std::collections::HashMap<(u32, u32, u32), bool>;

/// [`crate::Store::loop_block`] for the transition of `core`, whose
/// instance is `inst`; `ts` is the blocker's thread (its state and its
/// `transfer_declined` note), if it still exists.
pub(crate) fn loop_block_of(
    core: &Core,
    inst: &crate::instance::InstanceData,
    b: &super::Blocker,
    ts: Option<&ThreadState>,
    memo: &mut InLoopMemo,
) -> Option<LoopBlock> {
    let declined = ts.and_then(|ts| ts.transfer_declined);
    let parked = ts.is_some_and(|ts| matches!(ts.state, RunState::Parked | RunState::Sleeping));
    let t = core.transition.as_ref()?;
    let pi = core.instances.get(&t.instance)?;
    let moving = pi.applied.iter().find(|a| a.id == t.patch)?;
    let f = b.frame.func_index;
    let info = inst.module.info();
    // The body the frame runs: the target's own (in the module's unit,
    // or an OSR entry of a map back in a bundle's), or a bundle's.
    let target_code = b.frame.base || b.frame.unit == inst.module.inner.compiled.unit.id();
    let owner = pi
        .applied
        .iter()
        .find(|a| !target_code && a.compiled.unit.id() == b.frame.unit);
    let key = (b.frame.unit, f, b.frame.offset);
    let looped = match memo.get(&key) {
        Some(&v) => v,
        None => {
            let body = if target_code {
                let range = info
                    .bodies
                    .get(f.checked_sub(info.num_imported_funcs)? as usize)?
                    .clone();
                wasmparser::FunctionBody::new(wasmparser::BinaryReader::new(
                    &info.bytes[range.clone()],
                    range.start as u64,
                ))
            } else {
                let entry = owner?.bundle.entries().iter().find(|e| {
                matches!(e.kind, patch_format::EntryKind::Replace { target_index } if target_index == f)
            })?;
                wasmparser::FunctionBody::new(wasmparser::BinaryReader::new(&entry.body, 0))
            };
            let v = in_loop(&body, b.frame.offset as usize);
            memo.insert(key, v);
            v
        }
    };
    if !looped {
        return None;
    }
    let plan = moving.compiled.transfer.get(&f);
    let to = to_version(t, pi, f);
    let polls = inst.module.inner.engine.config().frame_transfer;
    let stuck = match (plan, owner) {
            (None, _) => None,
            (Some(_), _) if !polls => Some(super::NO_TRANSFER_POLLS.to_string()),
            (Some(_), _) if declined == Some(t.patch.0) => Some(
                "the frame runs another instance of the same module (instances share code, so it \
                 delays the switch while it lives in the loop; only the patched instance's frames move)"
                    .into(),
            ),
            (Some(_), Some(o)) if o.id != t.patch => Some(format!(
                "it runs {}'s version of the function, not the target's own code that the map was made against (maps do not chain)",
                o.id
            )),
            (Some(_), _) if to != expected(t) => Some(match to {
                Some(o) => format!(
                    "in the world it moves to, the function is {o}'s version, which the map does not lead to (maps do not chain)"
                ),
                None => "in the world it moves to, the function is the target's own code, which the map does not lead to".into(),
            }),
            (Some(p), Some(_)) if t.phase.toward() == Side::Unpatched => {
                p.back.as_ref().err().map(|e| format!("no map back: {e}"))
            }
            (Some(_), _) => None,
        };
    // Only the innermost blocking frame moves (docs/transfer.md,
    // "Several frames on one stack"): a blocking frame below it keeps
    // the thread pending whatever the maps.
    let below = b
        .backtrace
        .iter()
        .filter(|fr| t.check.contains(&fr.func_index) && t.check_code.has_unit(fr.unit))
        .nth(1);
    let stuck = stuck.or_else(|| {
            let g = below?;
            plan.map(|_| {
                format!(
                    "blocked by {} too (a loop frame below a transferable frame; only the innermost frame transfers)",
                    g.name
                )
            })
        });
    Some(LoopBlock {
        function: b.frame.name.clone(),
        mapped: plan.is_some(),
        stuck,
        parked,
    })
}
