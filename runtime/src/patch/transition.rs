//! The per-thread transition state machine, in reading order:
//! `start` → (`try_switch` at every safe point) → `finish`; and `reverse`,
//! `force`, `check_timeout` acting on the current transition.
//!
//! Invariants:
//! - outside a transition every live thread's `VMThread.world` is
//!   `Core.world`, and the instance's two slot tables agree on every slot
//!   that any thread can reach;
//! - during a transition a thread is either pending (world `from`) or
//!   switched (world `to`), never anything else; new threads start in `to`;
//! - a pending thread switches only at a safe point where its exact frame
//!   set holds no function of the check set `C`, in any version (frames are
//!   matched by function index within every code unit that ever held this
//!   instance's functions — the Linux 4.16 lesson).

use super::{Blocker, Core, Direction, Event, PatchId, TransitionOutcome};
use crate::errors::FrameInfo;
use crate::instance::InstanceData;
use crate::module::ModuleInfo;
use crate::thread::set::ThreadSet;
use crate::thread::{RunState, ThreadId, ThreadState};
use crate::vm::code_memory::CodeUnit;
use crate::vm::offsets::POLL_SWITCH;
use crate::vm::stack_walk::{func_bit, CodeRange, CodeRanges, RawFrame, ScanCache};
use crate::vm::vmctx::VMSlot;
use crate::vm::vmctx_block::world_index;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which side of its bundle a transition moves threads to. The patched
/// side is the world in which the transition's bundle is applied (for a
/// revert: the world it came from); it is the one answer to "is this
/// thread patched", used by completion, callbacks, events and
/// `thread_patch_state` alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The bundle is applied in the `to` world.
    Patched,
    /// The bundle is not applied in the `to` world.
    Unpatched,
}

impl Side {
    /// The other side.
    pub(crate) fn flip(self) -> Side {
        match self {
            Side::Patched => Side::Unpatched,
            Side::Unpatched => Side::Patched,
        }
    }
}

/// The lifecycle of a transition, one value. Edges (anything else is
/// refused by the operation that would take it):
///
/// | from               | operation                  | to                   |
/// |--------------------|----------------------------|----------------------|
/// | (none)             | `start`, threads pending   | `Switching(s)`       |
/// | (none)             | `start`, none pending      | `Switched(s)`        |
/// | `Switching(s)`     | last pending thread switches or ends | `Switched(s)` |
/// | `Switching(s)`     | `reverse`                  | `Switching(!s)` or `Switched(!s)` |
/// | `Switched(s)`      | `reverse`                  | `Switching(!s)` or `Switched(!s)` |
/// | `Switching(s)`, `Switched(s)` | `force`         | `Forced(s)`          |
/// | `Forced(s)`        | `force`                    | `Forced(s)` (no-op)  |
/// | `Forced(s)`        | `reverse`                  | refused: permanent   |
/// | `Switched(s)`, `Forced(s)` | `complete`         | (none)               |
/// | `Switching(s)`     | `complete`                 | refused: pending threads |
///
/// `s` is the side of `to`. Completion is due exactly in `Switched` and
/// `Forced`, where no thread is pending: a reverse that makes a thread
/// pending again leaves the due state, whatever the order of requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Some threads are pending; they switch toward `toward` at safe points.
    Switching {
        /// Side of the `to` world.
        toward: Side,
    },
    /// No thread is pending since `at`; completion is due.
    Switched {
        /// Side of the `to` world.
        toward: Side,
        /// When the last pending thread switched.
        at: Instant,
    },
    /// Every pending thread was switched by `force` at `at`, ignoring the
    /// stack rule: permanent, completion is due.
    Forced {
        /// Side of the `to` world.
        toward: Side,
        /// When it was forced (or when the last thread switched before).
        at: Instant,
    },
}

impl Phase {
    /// The side of the `to` world.
    pub(crate) fn toward(self) -> Side {
        match self {
            Phase::Switching { toward }
            | Phase::Switched { toward, .. }
            | Phase::Forced { toward, .. } => toward,
        }
    }

    /// Whether completion is due (no thread pending).
    pub(crate) fn completion_due(self) -> bool {
        !matches!(self, Phase::Switching { .. })
    }
}

/// The one transition in progress (docs/consistency.md rule 10).
pub(crate) struct Transition {
    pub(crate) patch: PatchId,
    pub(crate) direction: Direction,
    pub(crate) instance: usize,
    /// The lifecycle (see [`Phase`]).
    pub(crate) phase: Phase,
    /// Worlds (`VMThread.world` values: 0 or `WORLD_STRIDE`): pending
    /// threads run `from`, switched ones `to`.
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// The check set `C`.
    pub(crate) check: HashSet<u32>,
    /// The code of `C`'s functions in every live version (filled by
    /// `start`): what a stack check looks for.
    pub(crate) check_code: CodeRanges,
    /// The check set's bits in a frame summary (`stack_walk::func_bit`).
    pub(crate) check_bloom: u64,
    /// Slots changed in both worlds at once: (function, before, after).
    pub(crate) immediate: Vec<(u32, VMSlot, VMSlot)>,
    pub(crate) pending: ThreadSet,
    pub(crate) switched: usize,
    pub(crate) started: Instant,
    pub(crate) timeout: Option<Duration>,
    /// Applied bundles kept when the transition completes on the patched
    /// side, and when it completes on the unpatched side.
    pub(crate) keep_patched: Vec<PatchId>,
    pub(crate) keep_unpatched: Vec<PatchId>,
    /// Names for blockers and events (the patched module view).
    pub(crate) names: Arc<ModuleInfo>,
    /// Threads already reported as blocked (one event each).
    pub(crate) reported: HashSet<u32>,
    pub(crate) timeout_blockers: Vec<Blocker>,
}

/// The side a transition in `direction` starts toward.
pub(crate) fn initial_side(direction: Direction) -> Side {
    match direction {
        Direction::Patch | Direction::Replace => Side::Patched,
        Direction::Unpatch => Side::Unpatched,
    }
}

impl Transition {
    /// Whether the transition now leads away from where it started.
    pub(crate) fn reversed(&self) -> bool {
        self.phase.toward() != initial_side(self.direction)
    }

    /// Whether it was forced.
    pub(crate) fn forced(&self) -> bool {
        matches!(self.phase, Phase::Forced { .. })
    }

    /// The side a thread in world `world` is on.
    pub(crate) fn side_of(&self, world: u64) -> Side {
        if world == self.to {
            self.phase.toward()
        } else {
            self.phase.toward().flip()
        }
    }

    /// The innermost frame of `ts` that blocks it, if any (its offset is
    /// not resolved: 0).
    fn blocking_frame(&self, ts: &ThreadState, cache: &mut ScanCache) -> Option<RawFrame> {
        blocking_frame(&self.check_code, self.check_bloom, ts, cache)
    }
}

/// The innermost frame of `ts` in `code`, unless its frame summary proves
/// there is none (`bloom`: the summary bits of `code`'s functions).
fn blocking_frame(
    code: &CodeRanges,
    bloom: u64,
    ts: &ThreadState,
    cache: &mut ScanCache,
) -> Option<RawFrame> {
    if ts.surely_clean(bloom) {
        return None;
    }
    let mut found = None;
    ts.scan(code, cache, &mut |r, _| {
        found = Some(RawFrame {
            unit: r.unit,
            func: r.func.unwrap_or(0),
            offset: 0,
            base: false,
        });
        false
    });
    found
}

/// The code of the functions in `check`, in every unit of `instance` that
/// is still mapped: its module's, its applied bundles', and the zombies
/// (replaced code some stack may still run). Units that were reclaimed are
/// on no stack.
fn check_code(
    core: &Core,
    inst: &InstanceData,
    instance: usize,
    check: &HashSet<u32>,
) -> CodeRanges {
    let mut units: Vec<Arc<CodeUnit>> = vec![inst.module.inner.compiled.unit.clone()];
    if let Some(pi) = core.instances.get(&instance) {
        units.extend(pi.applied.iter().map(|b| b.compiled.unit.clone()));
        units.extend(
            core.zombies
                .iter()
                .filter(|u| pi.units.contains(&u.id()))
                .cloned(),
        );
    }
    let mut seen = HashSet::new();
    units.retain(|u| seen.insert(u.id()));
    CodeRanges::new(units, |u| {
        u.funcs()
            .iter()
            .enumerate()
            .filter(|(_, f)| check.contains(&f.func_index))
            .map(|(i, f)| CodeRange {
                range: u.func_range(i),
                unit: u.id(),
                func: Some(f.func_index),
            })
            .collect()
    })
}

fn frame_info(names: &ModuleInfo, f: &crate::vm::stack_walk::RawFrame) -> FrameInfo {
    FrameInfo {
        func_index: f.func,
        name: names.func_name(f.func),
        unit: f.unit,
        offset: f.offset,
        base: f.base,
    }
}

/// The transcript's bound: past it, the oldest half goes.
const MAX_EVENTS: usize = 200_000;

/// Record an event (the transcript is bounded: the oldest go first).
pub(crate) fn emit(core: &mut Core, e: Event) {
    trim_events(core);
    core.events.push(e);
}

fn trim_events(core: &mut Core) {
    if core.events.len() >= MAX_EVENTS {
        let excess = core.events.len() - MAX_EVENTS / 2;
        core.events.drain(..excess);
    }
}

impl crate::thread::SafePoint for Core {
    fn check(&mut self, ts: &mut ThreadState) -> bool {
        !try_switch(self, ts) && self.is_pending(ts.id.0)
    }

    fn transfer(
        &mut self,
        ts: &mut ThreadState,
        ordinal: u32,
        vmctx: usize,
    ) -> Option<crate::thread::poll::Transfer> {
        super::transfer::try_transfer(self, ts, ordinal, vmctx)
    }
}

/// Try to switch a pending thread at a safe point. Returns true when it
/// switched. The thread must not be executing JIT code (parked, at a poll,
/// or in a host call).
pub(crate) fn try_switch(core: &mut Core, ts: &mut ThreadState) -> bool {
    try_switch_cached(core, ts, &mut ScanCache::default())
}

/// [`try_switch`] with a scan cache shared across threads.
fn try_switch_cached(core: &mut Core, ts: &mut ThreadState, cache: &mut ScanCache) -> bool {
    let Some(t) = core.transition.as_mut() else {
        return false;
    };
    if !t.pending.contains(ts.id.0) {
        return false;
    }
    if let Some(f) = t.blocking_frame(ts, cache) {
        if t.reported.insert(ts.id.0) {
            let name = t.names.func_name(f.func);
            let (p, id) = (t.patch, ts.id);
            emit(core, Event::BlockedBy(p, id, name));
        }
        return false;
    }
    switch(core, ts);
    true
}

pub(super) fn switch(core: &mut Core, ts: &mut ThreadState) {
    let t = core.transition.as_mut().expect("in transition");
    set_world(ts, t.to);
    t.pending.remove(ts.id.0);
    t.switched += 1;
    let (p, id, done) = (t.patch, ts.id, t.pending.is_empty());
    emit(core, Event::ThreadSwitched(p, id));
    if done {
        all_switched(core);
    }
}

/// Move `ts` to world `to`. A suspended thread gets the new world in its
/// `VMThread` when it next resumes; the running one (inside a host call or
/// a poll) at once.
fn set_world(ts: &mut ThreadState, to: u64) {
    ts.world = to;
    if ts.state == RunState::Running {
        ts.vm.world = to;
    } else {
        ts.world_stale = true;
    }
    if ts.switch_requested {
        ts.switch_requested = false;
        // Relaxed: the bit is advisory; the world is read by this thread
        // itself, on this OS thread.
        ts.vm.poll.fetch_and(!POLL_SWITCH, Ordering::Relaxed);
    }
}

/// No thread is pending any more: `Switching` becomes `Switched` (the
/// completion is due). Other phases stay as they are.
fn all_switched(core: &mut Core) {
    if let Some(t) = core.transition.as_mut() {
        debug_assert!(t.pending.is_empty());
        if let Phase::Switching { toward } = t.phase {
            t.phase = Phase::Switched {
                toward,
                at: Instant::now(),
            };
        }
    }
}

/// A thread finished: it no longer holds the transition back.
pub(crate) fn thread_done(core: &mut Core, id: u32) {
    if let Some(t) = core.transition.as_mut() {
        if t.pending.remove(id) && t.pending.is_empty() {
            all_switched(core);
        }
    }
}

/// The world a new thread starts in (rule 3).
pub(crate) fn world_for_new_thread(core: &Core) -> u64 {
    core.transition.as_ref().map(|t| t.to).unwrap_or(core.world)
}

/// Start `t`: write the `to` world into the spare slot table, make the
/// immediate changes in both worlds, then check every thread that is not
/// executing JIT code and ask the others to check at their next poll.
pub(crate) fn start(
    core: &mut Core,
    inst: &mut InstanceData,
    threads: &mut crate::thread::ThreadMap,
    runnable: usize,
    mut t: Transition,
    to_slots: &[VMSlot],
) {
    let to_idx = world_index(t.to);
    let from_idx = world_index(t.from);
    inst.vmctx.table_mut(to_idx)[..to_slots.len()].copy_from_slice(to_slots);
    for &(f, _, new) in &t.immediate {
        inst.vmctx.table_mut(from_idx)[f as usize] = new;
    }
    if t.check.is_empty() {
        // Only immediate (and added) functions change, and they are already
        // in both worlds: no thread has anything to check or switch, so
        // every thread stays where it is and the transition completes at
        // once, whatever the number of threads.
        t.to = t.from;
    } else {
        t.check_code = check_code(core, inst, t.instance, &t.check);
        t.check_bloom = t.check.iter().fold(0, |b, &f| b | func_bit(f));
    }
    let (p, d) = (t.patch, t.direction);
    core.transition = Some(t);
    emit(core, Event::Started(p, d));
    settle_all(core, threads, runnable);
}

/// One pass over all threads at the start (or reversal) of a transition:
/// every thread not yet in the `to` world is checked, and switches at once
/// when its stack is clean; the others become the pending set and are
/// flagged to check again at their next poll. Threads are not executing
/// JIT code here (the running one, if any, is inside a host call: its exit
/// record is current, so its stack reads like a parked one's).
fn settle_all(core: &mut Core, threads: &mut crate::thread::ThreadMap, runnable: usize) {
    let Some(t) = core.transition.as_mut() else {
        return;
    };
    if t.to == t.from {
        // Immediate changes only: no thread has anything to switch (and
        // none is looked at: O(1) whatever the number of threads).
        t.pending = ThreadSet::default();
        all_switched(core);
        return;
    }
    let mut list: Vec<&mut ThreadState> = threads.values_mut().map(|b| &mut **b).collect();
    /// What the pass did with one thread.
    enum Seen {
        Done,
        Unchanged,
        Switched(ThreadId),
        Blocked(ThreadId, u32),
    }
    let (to, code, bloom) = (t.to, &t.check_code, t.check_bloom);
    let visit = |ts: &mut ThreadState, cache: &mut ScanCache| -> Seen {
        if ts.state == RunState::Done {
            return Seen::Done;
        }
        if ts.world == to {
            return Seen::Unchanged;
        }
        match blocking_frame(code, bloom, ts, cache) {
            None => {
                set_world(ts, to);
                Seen::Switched(ts.id)
            }
            Some(f) => {
                ts.switch_requested = true;
                // SeqCst: the bit before any hint (thread/poll.rs, "Hints");
                // it also pairs with the slow path's fetch.
                ts.vm.poll.fetch_or(POLL_SWITCH, Ordering::SeqCst);
                if ts.state == RunState::Running {
                    // The thread that called into the host: its next poll
                    // may read a memory hint.
                    ts.arm_poll_hints();
                }
                Seen::Blocked(ts.id, f.func)
            }
        }
    };
    // Runnable threads carry no frame summary: each costs a scan of its cold
    // stack, worth spreading over cores when there are thousands. (Parked
    // and sleeping ones are summarised and cheap: a second OS thread would
    // cost more than it saves.)
    let workers = if runnable >= crate::thread::PARALLEL_MIN {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    } else {
        1
    };
    let mut blocked = Vec::new();
    let mut live = 0;
    let (events, reported, names, patch) = (&mut core.events, &mut t.reported, &t.names, t.patch);
    crate::thread::visit_suspended(&mut list, workers, bloom, &visit, |s| match s {
        Seen::Done => {}
        Seen::Unchanged => live += 1,
        Seen::Switched(id) => {
            live += 1;
            events.push(Event::ThreadSwitched(patch, id));
        }
        Seen::Blocked(id, func) => {
            live += 1;
            blocked.push(id.0);
            if reported.insert(id.0) {
                events.push(Event::BlockedBy(patch, id, names.func_name(func)));
            }
        }
    });
    t.switched = live - blocked.len();
    t.pending = ThreadSet::from_ids(blocked);
    if t.pending.is_empty() {
        all_switched(core);
    }
    trim_events(core);
}

/// Reverse the transition: the two worlds swap roles, switched threads
/// become pending again and return under the same rule, immediate changes
/// are undone at once (rule 8).
pub(crate) fn reverse(
    core: &mut Core,
    inst: &mut InstanceData,
    threads: &mut crate::thread::ThreadMap,
    runnable: usize,
) -> Result<(), super::PatchError> {
    let t = core
        .transition
        .as_mut()
        .ok_or(super::PatchError::NoTransition)?;
    if t.forced() {
        return Err(super::PatchError::Forced(t.patch));
    }
    std::mem::swap(&mut t.from, &mut t.to);
    t.phase = Phase::Switching {
        toward: t.phase.toward().flip(),
    };
    for e in t.immediate.iter_mut() {
        std::mem::swap(&mut e.1, &mut e.2);
    }
    for idx in 0..2 {
        for &(f, _, new) in &t.immediate {
            inst.vmctx.table_mut(idx)[f as usize] = new;
        }
    }
    t.reported.clear();
    let p = t.patch;
    emit(core, Event::Reversed(p));
    settle_all(core, threads, runnable);
    Ok(())
}

/// Switch every pending thread now, ignoring the stack rule (rule 9).
pub(crate) fn force(
    core: &mut Core,
    threads: &mut crate::thread::ThreadMap,
) -> Result<PatchId, super::PatchError> {
    let t = core
        .transition
        .as_mut()
        .ok_or(super::PatchError::NoTransition)?;
    let p = t.patch;
    if t.forced() {
        return Ok(p);
    }
    let pending: Vec<u32> = t.pending.iter().collect();
    emit(core, Event::Forced(p));
    for id in pending {
        match threads.get_mut(&id) {
            Some(ts) => switch(core, ts),
            None => thread_done(core, id),
        }
    }
    let t = core.transition.as_mut().expect("in transition");
    debug_assert!(t.pending.is_empty());
    let toward = t.phase.toward();
    let at = match t.phase {
        Phase::Switched { at, .. } => at,
        _ => Instant::now(),
    };
    t.phase = Phase::Forced { toward, at };
    Ok(p)
}

/// The blockers of the current transition.
pub(crate) fn blockers(
    core: &Core,
    inst: &InstanceData,
    threads: &crate::thread::ThreadMap,
    describe: &dyn Fn(&crate::vm::stack_walk::RawFrame) -> FrameInfo,
) -> Vec<Blocker> {
    let Some(t) = core.transition.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut memo = super::transfer::InLoopMemo::default();
    for id in t.pending.iter() {
        let Some(ts) = threads.get(&id) else { continue };
        if t.blocking_frame(ts, &mut ScanCache::default()).is_none() {
            continue;
        }
        let frames = ts.frames_any();
        if let Some(f) = frames
            .iter()
            .find(|f| t.check.contains(&f.func) && t.check_code.has_unit(f.unit))
        {
            let mut b = Blocker {
                thread: ThreadId(id),
                backtrace: frames.iter().map(describe).collect(),
                frame: frame_info(&t.names, f),
                in_loop: None,
            };
            b.in_loop = super::transfer::loop_block_of(core, inst, &b, Some(ts), &mut memo);
            out.push(b);
        }
    }
    out
}

/// Apply the timeout policy: reverse a transition that has run too long,
/// remembering who blocked it. Returns true when it reversed.
pub(crate) fn check_timeout(
    core: &mut Core,
    inst: &mut InstanceData,
    threads: &mut crate::thread::ThreadMap,
    runnable: usize,
    describe: &dyn Fn(&crate::vm::stack_walk::RawFrame) -> FrameInfo,
) -> bool {
    let Some(t) = core.transition.as_ref() else {
        return false;
    };
    let Some(limit) = t.timeout else { return false };
    if t.reversed() || t.phase.completion_due() || t.started.elapsed() < limit {
        return false;
    }
    let b = blockers(core, inst, threads, describe);
    if let Some(t) = core.transition.as_mut() {
        t.timeout_blockers = b;
    }
    reverse(core, inst, threads, runnable).is_ok()
}

/// Complete a transition whose completion is due (`Switched` or `Forced`:
/// no thread is pending): the `to` world becomes the only one and is
/// copied over the `from` table, so that the instance's two tables agree
/// again (a later transition of another instance flips every thread's
/// world); bundles leave or stay per the side reached, and the code of
/// those that left goes to the reclaim list. Refused (`None`) while a
/// thread is pending.
pub(crate) fn complete(core: &mut Core, inst: &mut InstanceData) -> Option<TransitionOutcome> {
    let t = core.transition.as_ref()?;
    if !t.phase.completion_due() || !t.pending.is_empty() {
        debug_assert!(!t.phase.completion_due(), "due with pending threads");
        return None;
    }
    let t = core.transition.take()?;
    core.world = t.to;
    let (to_idx, from_idx) = (world_index(t.to), world_index(t.from));
    if to_idx != from_idx {
        let len = inst.vmctx.table(to_idx).len();
        let to_slots: Vec<VMSlot> = inst.vmctx.table(to_idx)[..len].to_vec();
        inst.vmctx.table_mut(from_idx)[..len].copy_from_slice(&to_slots);
    }
    let pi = core
        .instances
        .get_mut(&t.instance)
        .expect("patched instance");
    let toward = t.phase.toward();
    let keep: HashSet<PatchId> = match toward {
        Side::Patched => t.keep_patched.iter().copied().collect(),
        Side::Unpatched => t.keep_unpatched.iter().copied().collect(),
    };
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for b in pi.applied.drain(..) {
        if keep.contains(&b.id) {
            kept.push(b);
        } else {
            removed.push(b);
        }
    }
    pi.applied = kept;
    let (forced, at) = match t.phase {
        Phase::Forced { at, .. } => (true, at),
        Phase::Switched { at, .. } => (false, at),
        Phase::Switching { .. } => unreachable!("checked above"),
    };
    if forced {
        if let Some(b) = pi.applied.iter_mut().find(|b| b.id == t.patch) {
            b.forced = true;
        }
    }
    for b in removed {
        core.zombies.push(b.compiled.unit.clone());
    }
    let reversed = t.reversed();
    let outcome = TransitionOutcome {
        patch: t.patch,
        direction: t.direction,
        reversed,
        forced,
        elapsed: at - t.started,
        blockers: t.timeout_blockers,
    };
    // The words name the side reached: a reversed revert completes as a
    // patch (its bundle stays applied), a reversed apply as an unpatch.
    let reached = match (toward, t.direction) {
        (Side::Unpatched, _) => Direction::Unpatch,
        (Side::Patched, Direction::Unpatch) => Direction::Patch,
        (Side::Patched, d) => d,
    };
    emit(core, Event::Completed(t.patch, reached));
    core.last_outcome = Some(outcome.clone());
    Some(outcome)
}

/// Drop reclaimable code: units no world maps whose code no frame executes.
pub(crate) fn reclaim(core: &mut Core, threads: &mut crate::thread::ThreadMap) {
    if core.zombies.is_empty() {
        return;
    }
    // Whole zombie units: any frame in one keeps it.
    let zombies = CodeRanges::new(core.zombies.clone(), |u| {
        vec![CodeRange {
            range: u.range(),
            unit: u.id(),
            func: None,
        }]
    });
    let mut list: Vec<&mut ThreadState> = threads.values_mut().map(|b| &mut **b).collect();
    let scan = |ts: &mut ThreadState, cache: &mut ScanCache| -> Vec<u32> {
        let mut units = Vec::new();
        if ts.state != RunState::Done {
            ts.scan(&zombies, cache, &mut |r, _| {
                units.push(r.unit);
                true
            });
        }
        units
    };
    let mut live: HashSet<u32> = HashSet::new();
    // Summaries say nothing of units: every stack is looked at.
    crate::thread::visit_suspended(&mut list, 1, u64::MAX, &scan, |units| live.extend(units));
    core.zombies.retain(|u| live.contains(&u.id()));
}
