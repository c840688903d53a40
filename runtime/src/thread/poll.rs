//! The per-thread poll word and the process-wide preemption ticker.
//!
//! JIT code polls at loop headers and at the entries `compile/polls.rs`
//! picks, and takes the slow path (`vm::libcalls::poll`) when the word it
//! loads is nonzero. Bits of `VMThread.poll`: `POLL_PREEMPT` (time slice
//! over), `POLL_SWITCH` (a transition wants this thread to check its
//! stack), `POLL_CANCEL`.
//!
//! **Hints.** In a module with a memory, polls load memory 0's *poll hint*
//! instead (`LinearMemory::poll_hint`, just below the base that memory
//! accesses keep in a register), so that hot loops need no register for
//! `vmthread`. The hints of a store's memories follow one rule: while the
//! thread running on the store has a bit in its poll word, every hint is
//! non-zero. Whoever sets a bit of the running thread arms the hints after
//! it ([`PreemptTarget::arm_hints`]: the ticker, a blocked switch check);
//! the scheduler arms them when it resumes a thread with a bit set; the
//! slow path disarms them *before* it clears the bits it handles, so a bit
//! set meanwhile re-arms them after (all `SeqCst`). A hint left armed with
//! no bit set costs one slow path that finds nothing and disarms it.
//!
//! The ticker is one OS thread for the whole process. Each store registers a
//! [`PreemptTarget`] whose `current` points at the poll word of the thread it
//! is running (null between threads); every tick sets `POLL_PREEMPT` there.
//! Poll words live in `VMThread` boxes that a store frees only after it has
//! unregistered its target under the registry lock that the ticker holds
//! while it writes, so the ticker never writes freed memory.
//!
//! `docs/concurrency.md` lists every party, shared word and ordering here,
//! and why each interleaving is safe.

use super::fiber::{self, Resume, Yield};
use super::ThreadState;
use crate::vm::offsets::{POLL_CANCEL, POLL_PREEMPT, POLL_SWITCH};
use crate::vm::vmctx::{VMContext, VMThread};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The word a store's scheduler is currently running, for the ticker.
#[derive(Debug, Default)]
pub struct PreemptTarget {
    current: AtomicPtr<AtomicU64>,
    /// Ticks (of [`TICK`]) a thread may run before it is preempted.
    slice_ticks: u64,
    /// Ticks since the current thread was resumed.
    elapsed: AtomicU64,
    /// Addresses of the poll hints of the store's memories (module docs);
    /// the memories outlive the target's registration.
    hints: Mutex<Vec<usize>>,
    /// The engine's epoch and the store's deadline in it
    /// (`Store::set_epoch_deadline`; `u64::MAX` when none): the slow path
    /// of a preempted thread traps once the epoch reaches the deadline.
    pub(crate) epoch: Arc<AtomicU64>,
    pub(crate) epoch_deadline: AtomicU64,
}

/// The ticker's period: time slices are whole multiples of it.
pub const TICK: Duration = Duration::from_millis(1);

impl PreemptTarget {
    /// Add a memory's poll hint (it must stay alive until the store
    /// unregisters this target).
    pub fn add_hint(&self, hint: &AtomicU64) {
        self.lock_hints().push(hint as *const AtomicU64 as usize);
    }

    /// Arm every hint: the running thread may have a bit in its poll word.
    pub fn arm_hints(&self) {
        self.store_hints(1);
    }

    /// Disarm every hint, before the slow path clears the bits it handles.
    pub fn disarm_hints(&self) {
        self.store_hints(0);
    }

    fn store_hints(&self, v: u64) {
        for &h in self.lock_hints().iter() {
            // SeqCst pairs with the SeqCst read-modify-writes of the poll
            // word: arming (v = 1) comes after a setter's `fetch_or` (the
            // ticker's in `tick`, `transition::settle_all`'s, the slow
            // path's re-request) or the scheduler's load in
            // `store::resume_ready`; disarming (v = 0) comes before the
            // slow path's `fetch_and` (`vm::libcalls::poll`). One total
            // order over the four makes "bit set, hint 0, nobody left to
            // see the bit" impossible (docs/concurrency.md, "Hints").
            // SAFETY: `add_hint`'s contract: the word is alive.
            unsafe { (*(h as *const AtomicU64)).store(v, Ordering::SeqCst) };
        }
    }

    fn lock_hints(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.hints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Point the ticker at `word` (or null).
    pub fn set(&self, word: *const AtomicU64) {
        // Release pairs with the Acquire load in `tick`: the word is fully
        // initialised before the ticker may touch it.
        self.current
            .store(word as *mut AtomicU64, Ordering::Release);
        // Relaxed: a tick counted against the wrong thread only shortens or
        // lengthens one slice by a tick.
        self.elapsed.store(0, Ordering::Relaxed);
    }
}

struct Registry {
    targets: Mutex<Vec<Weak<PreemptTarget>>>,
}

fn registry() -> &'static Registry {
    static REG: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REG.get_or_init(|| {
        std::thread::Builder::new()
            .name("wasm-patch-ticker".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                tick();
            })
            .expect("spawn the preemption ticker");
        Registry {
            targets: Mutex::new(Vec::new()),
        }
    })
}

fn tick() {
    let Some(reg) = REGISTRY_REF.get() else {
        return;
    };
    let mut targets = reg.targets.lock().unwrap_or_else(|e| e.into_inner());
    targets.retain(|w| w.strong_count() > 0);
    for t in targets.iter().filter_map(|w| w.upgrade()) {
        // Acquire pairs with the Release store in `PreemptTarget::set`.
        let p = t.current.load(Ordering::Acquire);
        // Relaxed: see `set`.
        let ticks = t.elapsed.fetch_add(1, Ordering::Relaxed) + 1;
        if !p.is_null() && ticks >= t.slice_ticks {
            // SAFETY: the store keeps the word alive until it unregisters,
            // which needs this lock (see `unregister`); a `VMThread` that
            // was ever `current` is never freed before that (recycled into
            // the store's pool), so a word loaded just before the store
            // moved on is still a live word (docs/concurrency.md).
            // SeqCst: the bit, then the hints (module docs, "Hints"); pairs
            // with the slow path's SeqCst disarm-then-`fetch_and`
            // (`vm::libcalls::poll`) and the scheduler's SeqCst load in
            // `store::resume_ready`.
            unsafe { (*p).fetch_or(POLL_PREEMPT, Ordering::SeqCst) };
            t.arm_hints();
        }
    }
}

static REGISTRY_REF: std::sync::OnceLock<&'static Registry> = std::sync::OnceLock::new();

/// Register a store's target with the ticker.
pub fn register(slice: Duration, epoch: Arc<AtomicU64>) -> Arc<PreemptTarget> {
    let reg = *REGISTRY_REF.get_or_init(registry);
    let ticks = (slice.as_micros() / TICK.as_micros()).max(1) as u64;
    let t = Arc::new(PreemptTarget {
        slice_ticks: ticks,
        epoch,
        epoch_deadline: AtomicU64::new(u64::MAX),
        ..PreemptTarget::default()
    });
    reg.targets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(&t));
    t
}

/// Unregister: after this returns the ticker will never touch the target's
/// words again.
pub fn unregister(t: &Arc<PreemptTarget>) {
    t.set(std::ptr::null());
    if let Some(reg) = REGISTRY_REF.get() {
        let mut targets = reg.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(t)));
    }
}

/// A frame transfer granted at a loop header (`docs/transfer.md`): the new
/// version's entry for that header, and for each slot of its buffer (its
/// locals, then the header's operands: those below the loop, then the
/// loop's parameters) the slot of the old code's spill area it takes.
pub(crate) struct Transfer {
    /// Address of the OSR entry, `(vmctx, vmthread, buffer)`.
    pub(crate) entry: usize,
    /// For each new slot, the old slot's index, or `u32::MAX`: a local
    /// that starts at zero (it is dead at the header). Operands are always
    /// fed.
    pub(crate) locals: Vec<u32>,
    /// 8-byte words a local takes in the spill area (the old code's) and in
    /// the buffer (the new code's): 1, or 2 in a function with a `v128`
    /// local.
    pub(crate) old_words: usize,
    pub(crate) new_words: usize,
}

thread_local! {
    /// The locals of the frame being transferred on this OS thread, in the
    /// new version's order. Filled by [`slow_path`] and read by the OSR
    /// entry that the old code tail-calls right after it returns: no other
    /// code of this OS thread runs in between (no poll, call or fiber
    /// switch), so one buffer per OS thread is enough.
    static TRANSFER_BUFFER: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The poll slow path, which the engine's poll and transfer stubs call
/// (its address is [`slow_path_address`]) when the running thread's poll word or a poll hint
/// is set. A preempt request gives the other threads a turn; a switch
/// request checks the thread at this safe point through its [`SafePoint`](super::SafePoint);
/// a cancellation (or a cancelled resume) returns nonzero, on which the stub
/// traps.
///
/// At a transfer poll (`spill` non-null: loop `ordinal`'s header, the
/// frame's vmctx at `spill[1]`, its locals at `spill[2..]`), a pending thread may instead
/// have its frame transferred: the slow path then fills this OS thread's
/// transfer buffer and writes the OSR entry to `spill[0]` and the buffer to
/// `spill[1]` (otherwise `spill[0]` is 0), and does not yield: the old code
/// tail-calls the entry before anything else runs.
///
/// # Safety
/// Called only by the poll stub, on the running thread's fiber, with that
/// thread's live `VMThread` (whose `host` is its `ThreadState`); `spill` is
/// null or the spill area of the poll site's frame, holding every local of
/// that frame's function.
pub(crate) unsafe extern "C" fn slow_path(
    _vmctx: *mut VMContext,
    vmthread: *mut VMThread,
    spill: *mut u64,
    ordinal: u64,
) -> i32 {
    // SAFETY: JIT code passes its own live VMThread, whose `host` is the
    // running ThreadState.
    let (vm, ts) = unsafe { (&*vmthread, (*vmthread).host as *mut ThreadState) };
    // SAFETY: the store, which owns the target, outlives its threads.
    let preempt = unsafe { &*(*ts).preempt };
    if !spill.is_null() {
        // SAFETY: the caller's contract: the spill area is live.
        unsafe { *spill = 0 };
    }
    // Hints off, then the bits (thread/poll.rs, "Hints"). SeqCst also
    // pairs with the setters' Release/SeqCst: what they published before
    // setting a bit is visible.
    preempt.disarm_hints();
    let bits = vm
        .poll
        .fetch_and(!(POLL_PREEMPT | POLL_SWITCH), Ordering::SeqCst);
    if bits & POLL_CANCEL != 0 {
        // The bit stays: keep the hints armed with it.
        preempt.arm_hints();
        return 1;
    }
    let mut transferred = false;
    if bits & POLL_SWITCH != 0 {
        // A safe point of a running thread (docs/consistency.md): the exit
        // record written just before this call makes its stack readable.
        // SAFETY: `safe_point` is the store's boxed patch state, alive while
        // any of its threads runs, and a different object from `ts`, this
        // running thread.
        let pending = unsafe { (*(*ts).safe_point).check(&mut *ts) };
        if pending && !spill.is_null() {
            // SAFETY: the caller's contract: the spill area is live; [1]
            // holds the frame's vmctx.
            let frame_vmctx = unsafe { *spill.add(1) } as usize;
            // SAFETY: as above.
            let granted =
                unsafe { (*(*ts).safe_point).transfer(&mut *ts, ordinal as u32, frame_vmctx) };
            if let Some(t) = granted {
                // SAFETY: the caller's contract: `spill` holds every local
                // of the frame, and the map's indices are locals of that
                // very code (checked at apply: `compile/osr.rs`).
                unsafe { fill_transfer(spill, &t) };
                transferred = true;
            }
        }
        if pending && !transferred {
            // Still blocked: check again at the next poll (no retry period,
            // docs/consistency.md rule 2). SeqCst: the bit, then the hints.
            vm.poll.fetch_or(POLL_SWITCH, Ordering::SeqCst);
            preempt.arm_hints();
            // SAFETY: as above.
            unsafe { (*ts).switch_requested = true };
        }
    }
    if bits & POLL_PREEMPT != 0 {
        // The end of a time slice: the one place the epoch deadline is
        // checked, so that polls cost nothing more for it.
        if preempt.epoch.load(Ordering::Acquire) >= preempt.epoch_deadline.load(Ordering::Relaxed)
            && !transferred
        {
            // SAFETY: `ts` is the running thread's state.
            unsafe { (*ts).interrupted = true };
            return 1;
        }
        if transferred {
            // No fiber switch between the transfer and the tail call: the
            // turn is given up at the new code's first poll.
            vm.poll.fetch_or(POLL_PREEMPT, Ordering::SeqCst);
            preempt.arm_hints();
            return 0;
        }
        // SAFETY: we run on `ts`'s fiber; its suspend handle is set.
        let r = unsafe { fiber::suspend((*ts).suspend, Yield::Turn) };
        if r == Resume::Cancel {
            return 1;
        }
    }
    0
}

/// Copy the spilled locals into this OS thread's transfer buffer in the
/// new order, and tell the old code where to go.
///
/// # Safety
/// `spill` is a live spill area of `t.old_words` words a local whose
/// locals include every index of `t.locals`.
unsafe fn fill_transfer(spill: *mut u64, t: &Transfer) {
    let buf = TRANSFER_BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        // Each new local's words: the old local's (a `v128` takes two, and
        // then both sides have 16-byte slots: the map pairs equal types),
        // zero past them and for a fresh local.
        for &i in &t.locals {
            for w in 0..t.new_words {
                b.push(match i {
                    // A fresh local (dead at the header): zero.
                    u32::MAX => 0,
                    _ if w >= t.old_words => 0,
                    // SAFETY: the caller's contract: `i` is a local of the
                    // frame, whose slot holds `old_words` words.
                    i => unsafe { *spill.add(2 + i as usize * t.old_words + w) },
                });
            }
        }
        // Never empty: the pointer is to a live allocation.
        b.push(0);
        b.as_ptr() as u64
    });
    // SAFETY: the caller's contract: the spill area is live.
    unsafe {
        *spill = t.entry as u64;
        *spill.add(1) = buf;
    }
}

/// Address of [`slow_path`], `(vmctx, vmthread, spill, ordinal) -> status`
/// (`vmctx` unused), for the engine's poll stub.
pub(crate) fn slow_path_address() -> usize {
    slow_path as *const () as usize
}
