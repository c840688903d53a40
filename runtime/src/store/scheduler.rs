//! The scheduler: guest threads are fibers run cooperatively on the
//! store's OS thread. It owns the entry of a thread (`spawn_raw`,
//! `call_on_fiber`), the ready queue and the sleepers, and the loop that
//! resumes threads (`step`, `run_until`), driving patch completion between
//! turns (`patch::verbs::drive`). A busy thread is preempted at its next
//! poll once the ticker (`thread/poll.rs`) marks its time slice over.
//!
//! Invariant: a thread is in the ready queue exactly when its state is
//! `Ready`, and a `Ready` thread's box is in the store's thread map (boxes
//! leave the map only when `Done`), so the queue holds live pointers.

use super::*;
use crate::errors::Error;
use crate::thread::fiber::{self, Resume, Yield};
use crate::thread::{RunState, ThreadId, ThreadState};
use crate::val::Val;
use crate::vm::offsets::{POLL_CANCEL, POLL_PREEMPT};
use crate::vm::traps;
use crate::vm::vmctx::VMThread;
use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Call into wasm on the current fiber, for thread `ts`.
///
/// # Safety
/// Must run on `ts`'s fiber; `inner` is the live store.
pub(crate) unsafe fn call_on_fiber<T>(
    inner: *mut StoreInner<T>,
    ts: *mut ThreadState,
    func: Callee,
    args: &[Val],
) -> Result<Vec<Val>, Error> {
    // SAFETY: the caller guarantees `inner` is live; no other reference is
    // used across this call except through raw pointers.
    let (funcref, tramp, ty) = call_target(unsafe { store_ref(inner) }, &func)?;
    check_args(&ty, args)?;
    // SAFETY: as above.
    check_refs(unsafe { store_ref(inner) }, args)?;
    let n = ty.params().len().max(ty.results().len()).max(1);
    let mut values: Vec<u128> = vec![0; n];
    for (v, a) in values.iter_mut().zip(args) {
        *v = a.to_raw();
    }
    // SAFETY: `ts` is the running thread; we save its exit record for the
    // outer segment (if any) and restore it afterwards.
    let r = unsafe {
        let t = &mut *ts;
        let nested = t.in_wasm;
        if nested {
            t.outer_exits.push(t.vm.exit_fp);
        }
        t.in_wasm = true;
        let vmthread: *mut VMThread = &mut *t.vm;
        let r = traps::enter(
            tramp,
            [funcref, vmthread as usize, values.as_mut_ptr() as usize, 0],
            vmthread,
        );
        let t = &mut *ts;
        if nested {
            t.vm.exit_fp = t.outer_exits.pop().expect("pushed above");
        } else {
            t.in_wasm = false;
        }
        r
    };
    match r {
        Ok(()) => Ok(ty
            .results()
            .iter()
            .zip(&values)
            .map(|(t, v)| Val::from_raw(*v, *t))
            .collect()),
        Err(rec) => {
            // SAFETY: as above.
            let host_error = unsafe { (*ts).host_error.take() };
            // SAFETY: as above.
            let interrupted = unsafe { std::mem::take(&mut (*ts).interrupted) };
            let removed = (rec.kind == crate::trap::TrapKind::RemovedFunction).then(|| {
                // SAFETY: the removed-function stub stored its slot context,
                // an `AddedFunction` kept alive by the patched instance.
                unsafe {
                    let info =
                        &*((*ts).vm.trap_arg as *const crate::patch::versions::AddedFunction);
                    format!(
                        "function `{}` was removed by reverting {}",
                        info.name, info.patch
                    )
                }
            });
            // SAFETY: as above.
            let mut err = unsafe { store_ref(inner) }.trap_error_of(rec, host_error, interrupted);
            if let (Error::Trap(t), Some(m)) = (&mut err, removed) {
                t.message = Some(m);
            }
            Err(err)
        }
    }
}

/// Create a thread that will call `func(args)`.
///
/// # Safety
/// `inner` is the live store, not borrowed elsewhere.
pub(crate) unsafe fn spawn_raw<T: 'static>(
    inner: *mut StoreInner<T>,
    func: Callee,
    args: Vec<Val>,
) -> Result<ThreadId, Error> {
    // SAFETY: forwarded from the caller.
    let s = unsafe { store_mut(inner) };
    let (_, _, ty) = call_target(s, &func)?;
    check_args(&ty, &args)?;
    check_refs(s, &args)?;
    let stack = match s.stack_pool.pop() {
        Some(st) => st,
        None => s
            .stacks
            .alloc()
            .map_err(|e| Error::Host(format!("fiber stack: {e}")))?,
    };
    let range =
        fiber::stack_range(&stack).ok_or_else(|| Error::Host("fiber stack has no range".into()))?;
    let id = s.next_thread;
    s.next_thread += 1;
    let mut vm = s.vm_pool.pop().unwrap_or_default();
    // Leave room below the limit for host functions and the signal frame.
    vm.stack_limit = range.start + STACK_SLACK.min((range.end - range.start) / 2);
    vm.poll.store(0, Ordering::Relaxed);
    vm.poll_stub = s.engine.poll_stub();
    let mut ts = Box::new(ThreadState {
        id: ThreadId(id),
        vm,
        fiber: None,
        suspend: std::ptr::null_mut(),
        state: RunState::Ready,
        result: None,
        host_error: None,
        guest_stacks: Vec::new(),
        interrupted: false,
        outer_exits: Vec::new(),
        unpark_pending: false,
        cancelled: false,
        in_wasm: false,
        summary_valid: false,
        world_stale: false,
        switch_requested: false,
        summary: 0,
        world: 0,
        transfer_declined: None,
        safe_point: &mut *s.patch as &mut dyn crate::thread::SafePoint,
        preempt: Arc::as_ptr(&s.preempt),
    });
    if !s.guest_stacks.is_empty() {
        let region = s.engine.config().guest_stack_size;
        if let Err(e) = s.guest_stacks.give(&mut ts, region) {
            s.vm_pool.push(std::mem::take(&mut ts.vm));
            s.stack_pool.push(stack);
            return Err(e);
        }
    }
    ts.world = crate::patch::transition::world_for_new_thread(&s.patch);
    ts.vm.world = ts.world;
    let ts_ptr: *mut ThreadState = &mut *ts;
    ts.vm.host = ts_ptr as *mut u8;
    let body = move |first: Resume, suspend: &mut fiber::ThreadSuspend| {
        // SAFETY: the thread box outlives its fiber (the fiber is stored in
        // it and finished before it is dropped); the store outlives both.
        unsafe {
            (*ts_ptr).suspend = suspend;
            let r = if first == Resume::Cancel {
                Err(Error::Host("thread cancelled before it started".into()))
            } else {
                call_on_fiber(inner, ts_ptr, func, &args)
            };
            (*ts_ptr).result = Some(r);
        }
    };
    ts.fiber = Some(fiber::new_fiber(stack, body).map_err(|e| Error::Host(format!("fiber: {e}")))?);
    let ts = s.threads.entry(id).insert_entry(ts).into_mut();
    s.ready.push_back(ReadyThread::of(ts));
    Ok(ThreadId(id))
}

/// Stack kept free below the JIT code's limit for host functions and
/// signal frames (see `thread::stacks`).
pub(crate) const STACK_SLACK: usize = 128 * 1024;

/// A ready thread: a pointer to its boxed state (see `StoreInner::ready`).
#[derive(Clone, Copy)]
pub(super) struct ReadyThread(*mut ThreadState);

impl ReadyThread {
    pub(super) fn of(t: &mut ThreadState) -> Self {
        ReadyThread(t)
    }
}

/// Resume thread `id` once; update its state from why it stopped.
///
/// # Safety
/// `inner` is the live store, no fiber of it is running, and `id` is a
/// thread in its map (see `store_mut`).
pub(super) unsafe fn resume<T>(inner: *mut StoreInner<T>, id: u32) {
    // SAFETY: the caller guarantees `inner` is live.
    let s = unsafe { store_mut(inner) };
    let Some(t) = s.threads.get_mut(&id) else {
        return;
    };
    let tp: *mut ThreadState = &mut **t;
    // SAFETY: forwarded; `tp` is in the map.
    unsafe { resume_ready(inner, ReadyThread(tp)) }
}

/// Resume a thread once; update its state from why it stopped.
///
/// Inlined into the scheduler loops: after a fiber switch every return
/// up the call chain is mispredicted, so each level costs several ns.
///
/// # Safety
/// `inner` is live and `r` points at a thread box in its map.
#[inline(always)]
unsafe fn resume_ready<T>(inner: *mut StoreInner<T>, me: ReadyThread) {
    // SAFETY: the caller guarantees `inner` is live.
    let s = unsafe { store_mut(inner) };
    let tp = me.0;
    // SAFETY: the caller guarantees `tp` is a live box of `s.threads`, and
    // no other reference to it is held while the scheduler runs.
    let t = unsafe { &mut *tp };
    let id = t.id.0;
    let how = if t.cancelled {
        Resume::Cancel
    } else {
        Resume::Go
    };
    t.state = RunState::Running;
    t.summary_valid = false;
    if t.world_stale {
        t.world_stale = false;
        t.vm.world = t.world;
    }
    // Only a late tick from this thread's previous run can still write the
    // word meanwhile; it sets POLL_PREEMPT and arms the hints itself.
    // SeqCst: pairs with the ticker's and the switch setters' SeqCst
    // `fetch_or` (thread/poll.rs, transition.rs): a bit set before this load
    // is seen here and re-arms the hints below (docs/concurrency.md).
    let bits = t.vm.poll.load(Ordering::SeqCst);
    if bits & POLL_PREEMPT != 0 {
        t.vm.poll.fetch_and(!POLL_PREEMPT, Ordering::Relaxed);
    }
    // A switch request or cancellation waits in the word: the hints must
    // say so (thread/poll.rs, "Hints").
    if bits & !POLL_PREEMPT != 0 {
        s.preempt.arm_hints();
    }
    s.preempt.set(&t.vm.poll);
    let prev_running = s.running;
    s.running = id;
    let stacks = !s.guest_stacks.is_empty();
    if stacks {
        super::guest_stacks::enter(&s.guest_stacks, t);
    }
    // SAFETY: the fiber lives in the boxed thread state; nothing else touches
    // it while it runs, and the store is only reached through `inner`.
    let r = unsafe {
        (*tp)
            .fiber
            .as_ref()
            .expect("unfinished thread has a fiber")
            .resume(how)
    };
    // SAFETY: as above.
    let s = unsafe { store_mut(inner) };
    s.running = prev_running;
    s.preempt.set(std::ptr::null());
    // SAFETY: the thread box is still in the map (only removed when Done).
    let t = unsafe { &mut *tp };
    if stacks {
        super::guest_stacks::leave(&s.guest_stacks, t);
    }
    let was_pending = s
        .patch
        .transition
        .as_ref()
        .is_some_and(|tr| tr.pending.contains(id));
    match r {
        Ok(()) => {
            t.state = RunState::Done;
            s.guest_stacks.give_back(t);
            crate::patch::transition::thread_done(&mut s.patch, id);
            return;
        }
        Err(Yield::Turn) => {
            t.state = RunState::Ready;
            s.ready.push_back(me);
        }
        Err(Yield::Sleep(at)) => {
            t.state = RunState::Sleeping;
            s.sleepers.push(Reverse((at, id)));
            summarize_stopped(s, t);
        }
        Err(Yield::Park) => {
            if t.unpark_pending || t.cancelled {
                t.unpark_pending = false;
                t.state = RunState::Ready;
                s.ready.push_back(me);
            } else {
                t.state = RunState::Parked;
                summarize_stopped(s, t);
            }
        }
    }
    if was_pending {
        // Parked threads are checked each time they park (rule 2).
        crate::patch::transition::try_switch(&mut s.patch, t);
    }
}

/// A parked or sleeping thread's stack is hot now and frozen until it runs
/// again: summarise it for a transition that may start meanwhile (runnable
/// threads are not: yields stay cheap).
#[inline(always)]
fn summarize_stopped<T>(s: &mut StoreInner<T>, t: &mut ThreadState) {
    if s.engine.config().patchable {
        t.summarize(&mut s.scan_cache);
    }
}

/// When the next sleeper wakes.
pub(crate) fn next_wake<T>(s: &StoreInner<T>) -> Option<Instant> {
    s.sleepers.peek().map(|Reverse((at, _))| *at)
}

/// Move the sleepers whose time has come to the ready queue (no clock read
/// when nobody sleeps).
fn wake_sleepers<T>(s: &mut StoreInner<T>) {
    if s.sleepers.is_empty() {
        return;
    }
    let now = Instant::now();
    while let Some(Reverse((at, id))) = s.sleepers.peek().copied() {
        if at > now {
            break;
        }
        s.sleepers.pop();
        if let Some(t) = s.threads.get_mut(&id) {
            if t.state == RunState::Sleeping {
                t.state = RunState::Ready;
                s.ready.push_back(ReadyThread::of(t));
            }
        }
    }
}

/// One scheduling step: wake due sleepers, then resume one ready thread.
/// Returns false when no thread could run.
///
/// # Safety
/// `inner` is the live store, and no fiber is running.
pub(crate) unsafe fn step<T>(inner: *mut StoreInner<T>) -> bool {
    traps::init();
    // SAFETY: forwarded.
    let s = unsafe { store_mut(inner) };
    wake_sleepers(s);
    match s.ready.pop_front() {
        Some(r) => {
            // SAFETY: forwarded; ready threads are in the map.
            unsafe { resume_ready(inner, r) };
            true
        }
        None => false,
    }
}

/// Run the scheduler until `target` is done (or, with `None`, until nothing
/// can run).
///
/// # Safety
/// `inner` is the live store and must not be running a fiber already
/// (nested schedulers are refused).
pub(crate) unsafe fn run_until<T: 'static>(
    inner: *mut StoreInner<T>,
    target: Option<u32>,
) -> Result<(), Error> {
    // SAFETY: forwarded.
    if unsafe { store_ref(inner) }.running != 0 {
        return Err(Error::BadCall(
            "the scheduler cannot be entered from a guest thread".into(),
        ));
    }
    // This OS thread's signal stack: the store may have moved here.
    traps::init();
    // Whether `target` has finished (or does not exist).
    let target_done = |s: &StoreInner<T>| -> Option<Result<(), Error>> {
        let t = target?;
        match s.threads.get(&t) {
            None => Some(Err(Error::BadCall(format!("no thread {t}")))),
            Some(ts) if ts.state == RunState::Done => Some(Ok(())),
            _ => None,
        }
    };
    // SAFETY: forwarded.
    if let Some(r) = target_done(unsafe { store_ref(inner) }) {
        return r;
    }
    loop {
        crate::patch::verbs::drive_if_any(inner);
        // SAFETY: forwarded; re-borrowed each iteration, never held across
        // resume; `drive` may have run callbacks on new threads.
        let s = unsafe { store_mut(inner) };
        wake_sleepers(s);
        if let Some(r) = s.ready.pop_front() {
            // SAFETY: the thread box stays in the map until it is taken
            // after finishing, which cannot happen during its own turn.
            let id = unsafe { (*r.0).id.0 };
            // SAFETY: forwarded; ready threads are in the map.
            unsafe { resume_ready(inner, r) };
            // Only a resumed thread finishes, so the target is checked
            // after its own turns (and before any wait below).
            // SAFETY: the box stays in the map until taken after this
            // loop returns (see above); only a finished target ends it.
            if target == Some(id) && unsafe { (*r.0).state } == RunState::Done {
                // SAFETY: forwarded.
                if let Some(r) = target_done(unsafe { store_ref(inner) }) {
                    return r;
                }
            }
            continue;
        }
        if let Some(r) = target_done(s) {
            return r;
        }
        let mut wake = s.sleepers.peek().map(|Reverse((at, _))| *at);
        if let Some(deadline) = crate::patch::verbs::timeout_deadline(&s.patch) {
            wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
        }
        if let Some(at) = wake {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            continue;
        }
        return match target {
            Some(t) => Err(Error::Deadlock(t)),
            None => Ok(()),
        };
    }
}

/// Take `id`'s entry out of the ready queue, if it has one.
fn take_ready<T>(s: &mut StoreInner<T>, id: u32) -> Option<ReadyThread> {
    let at = s.ready.iter().position(|r| {
        // SAFETY: queue entries point at live boxes (module invariant).
        unsafe { (*r.0).id.0 == id }
    })?;
    s.ready.remove(at)
}

/// Run thread `target` until it is done, with no other thread getting a
/// turn but those spawned after it (ids above `target`: the threads it
/// started, which are part of its work). Threads that existed before stay
/// ready, sleeping or parked as they were, and no transition is driven.
/// This is how patch callbacks run, so that what a callback sees and
/// writes is not interleaved with other threads' work, and a vetoing
/// pre-patch callback's writes (its helpers' included) can be undone
/// without undoing theirs.
///
/// # Errors
/// [`Error::CallbackBlocked`] when `target` is parked and none of its
/// helpers can run or wake up: nothing could wake it. The thread is left
/// parked (see [`cancel`]).
///
/// # Safety
/// `inner` is the live store, not running a fiber.
pub(crate) unsafe fn run_alone<T>(inner: *mut StoreInner<T>, target: u32) -> Result<(), Error> {
    traps::init();
    loop {
        // SAFETY: forwarded; re-borrowed each iteration, never held across resume.
        let s = unsafe { store_mut(inner) };
        match s.threads.get(&target).map(|t| t.state) {
            None => return Err(Error::BadCall(format!("no thread {target}"))),
            Some(RunState::Done) => return Ok(()),
            Some(_) => {}
        }
        wake_sleepers(s);
        let next = s.ready.iter().position(|r| {
            // SAFETY: queue entries point at live boxes (module invariant).
            unsafe { (*r.0).id.0 >= target }
        });
        if let Some(at) = next {
            let r = s.ready.remove(at).expect("the position is in the queue");
            // SAFETY: forwarded; the entry is a live box of the map.
            unsafe { resume_ready(inner, r) };
            continue;
        }
        // Nothing of the callback's can run now: wait for the first of its
        // sleepers, or give up when none sleeps.
        let wake = s
            .sleepers
            .iter()
            .filter(|Reverse((_, id))| *id >= target)
            .filter(|Reverse((_, id))| {
                s.threads
                    .get(id)
                    .is_some_and(|t| t.state == RunState::Sleeping)
            })
            .map(|Reverse((at, _))| *at)
            .min();
        match wake {
            Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
            None => return Err(Error::CallbackBlocked(target)),
        }
    }
}

/// Finish thread `id` by cancelling it (its pending park or next poll
/// fails, the guest traps, the fiber completes) and remove it from the
/// store. For threads that must not go on: a callback that blocked, threads
/// a vetoed pre-patch callback spawned.
///
/// # Safety
/// `inner` is the live store, not running a fiber.
pub(crate) unsafe fn cancel<T>(inner: *mut StoreInner<T>, id: u32) {
    traps::init();
    for _ in 0..1000 {
        // SAFETY: forwarded.
        let s = unsafe { store_mut(inner) };
        let Some(t) = s.threads.get_mut(&id) else {
            return;
        };
        if t.state == RunState::Done {
            break;
        }
        t.cancelled = true;
        t.vm.poll.fetch_or(POLL_CANCEL, Ordering::Relaxed);
        t.state = RunState::Ready;
        let tp: *mut ThreadState = &mut **t;
        let r = take_ready(s, id).unwrap_or(ReadyThread(tp));
        // SAFETY: forwarded; `tp` is a live box of the map, no longer queued.
        unsafe { resume_ready(inner, r) };
    }
    // SAFETY: forwarded.
    let s = unsafe { store_mut(inner) };
    if s.threads
        .get(&id)
        .is_some_and(|t| t.state == RunState::Done)
    {
        // A finished thread is never queued; a queued entry would dangle.
        debug_assert!(take_ready(s, id).is_none());
        if let Some(t) = s.threads.remove(&id) {
            s.recycle(t);
        }
    }
}
