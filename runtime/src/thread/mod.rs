//! Guest threads: each one a fiber with its own `VMThread` (poll word, world
//! selector, stack limit, exit record) and its exact stack of wasm frames.

pub mod fiber;
pub mod poll;
pub mod set;
pub mod stacks;

use crate::errors::Error;
use crate::val::Val;
use crate::vm::prefetch;
use crate::vm::stack_walk::{self, RawFrame};
use crate::vm::vmctx::VMThread;
use fiber::{ThreadFiber, ThreadSuspend};

/// Hasher for maps keyed by small integer ids (thread ids): one multiply,
/// instead of SipHash on the scheduler's hot path. Ids are not attacker
/// chosen (the store hands them out in order).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Guest threads of a store, by id.
pub(crate) type ThreadMap =
    std::collections::HashMap<u32, Box<ThreadState>, std::hash::BuildHasherDefault<IdHasher>>;

/// Lists shorter than this are visited on the calling OS thread alone.
pub(crate) const PARALLEL_MIN: usize = 4096;

/// Visit every thread of `list` with `f` and hand each result to `sink`, in
/// list order: the transition pass over thousands of suspended threads.
/// Each visit is bound by memory latency (the thread's state, `VMThread`
/// and stack top are cold lines), so the lines of the next threads are
/// prefetched while one is visited, and a long list is split across up to
/// `workers` OS threads, the calling one included.
///
/// `f` may read and write the thread's plain fields and `VMThread`, and
/// scan its stack (reading the bounds of the fiber's stack, plain data set
/// when the fiber was made); it must not resume, drop or otherwise use the
/// fiber or the raw pointers (`suspend`, `core`): it may run on another OS
/// thread. `docs/concurrency.md` has the whole argument.
/// `prefetch_bloom` is passed to [`ThreadState::prefetch_stack`].
pub(crate) fn visit_suspended<R, F, S>(
    list: &mut [&mut ThreadState],
    workers: usize,
    prefetch_bloom: u64,
    f: &F,
    mut sink: S,
) where
    R: Send,
    F: Fn(&mut ThreadState, &mut stack_walk::ScanCache) -> R + Sync,
    S: FnMut(R),
{
    if workers <= 1 || list.len() < PARALLEL_MIN {
        return visit_chunk(list, prefetch_bloom, f, &mut sink);
    }
    /// A chunk of the list, moved to a worker.
    struct Chunk<'a, 'b>(&'a mut [&'b mut ThreadState]);
    // SAFETY: `ThreadState` is not `Send` because of its fiber and raw
    // pointers, which `f` must not use (see above). Everything else it
    // reaches is plain data, the `VMThread` (atomics and plain words) and
    // a stack frozen while its fiber is suspended. The chunks are disjoint
    // (`chunks_mut`), and the owning OS thread waits in `scope` until
    // every worker is done, so no thread state is touched by two OS
    // threads at once and none outlives the borrow.
    unsafe impl Send for Chunk<'_, '_> {}
    let per = list.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let mut chunks = list.chunks_mut(per);
        let first = chunks.next().unwrap_or_default();
        let handles: Vec<_> = chunks
            .map(|c| {
                let c = Chunk(c);
                scope.spawn(move || {
                    let c = c;
                    let mut out = Vec::with_capacity(c.0.len());
                    visit_chunk(c.0, prefetch_bloom, f, &mut |r| out.push(r));
                    out
                })
            })
            .collect();
        visit_chunk(first, prefetch_bloom, f, &mut sink);
        for h in handles {
            match h.join() {
                Ok(rs) => rs.into_iter().for_each(&mut sink),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
    })
}

#[inline(always)]
fn visit_chunk<R, F, S>(list: &mut [&mut ThreadState], prefetch_bloom: u64, f: &F, sink: &mut S)
where
    F: Fn(&mut ThreadState, &mut stack_walk::ScanCache) -> R + Sync,
    S: FnMut(R),
{
    // Load the lines in the order their addresses become known: state,
    // then `VMThread` (its address is in the state), then stack (its
    // address is in the `VMThread`).
    const AHEAD_STATE: usize = 16;
    const AHEAD_VM: usize = 8;
    const AHEAD_STACK: usize = 4;
    for ts in list.iter().take(AHEAD_STATE) {
        ts.prefetch_state();
    }
    let mut cache = stack_walk::ScanCache::default();
    for i in 0..list.len() {
        let (head, tail) = list.split_at_mut(i + 1);
        if let Some(next) = tail.get(AHEAD_STATE - 1) {
            next.prefetch_state();
        }
        if let Some(next) = tail.get(AHEAD_VM - 1) {
            next.prefetch_vm(prefetch_bloom);
        }
        if let Some(next) = tail.get(AHEAD_STACK - 1) {
            next.prefetch_stack(prefetch_bloom);
        }
        sink(f(&mut *head[i], &mut cache));
    }
}

/// A guest thread id (> 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(pub u32);

impl std::fmt::Display for ThreadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "thread {}", self.0)
    }
}

/// Where a thread is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Runnable, waiting for its turn.
    Ready,
    /// Running on the fiber now.
    Running,
    /// Sleeping until a deadline.
    Sleeping,
    /// Parked by a host function until unparked.
    Parked,
    /// Finished (returned or trapped).
    Done,
}

/// Host-side state of one guest thread. Boxed; `vm.host` points back here.
///
/// `repr(C)` with the fields a scheduler turn or a stack check reads first,
/// so that they share the first cache line (transitions touch 10,000s of
/// threads and are bound by memory latency).
#[repr(C)]
pub(crate) struct ThreadState {
    pub(crate) id: ThreadId,
    pub(crate) state: RunState,
    /// Whether the thread is inside wasm (exit record meaningful when parked).
    pub(crate) in_wasm: bool,
    /// Wake-up requested while not yet parked.
    pub(crate) unpark_pending: bool,
    /// Cancellation requested.
    pub(crate) cancelled: bool,
    /// Whether `summary` describes the current (frozen) stack.
    pub(crate) summary_valid: bool,
    /// `world` changed while the thread was suspended and `vm.world` still
    /// holds the old value: the scheduler copies it before resuming.
    pub(crate) world_stale: bool,
    /// `POLL_SWITCH` may be set in `vm.poll` (set by transitions).
    pub(crate) switch_requested: bool,
    /// Bloom summary of the functions on the stack, taken when the thread
    /// last parked or went to sleep (`stack_walk::summarize`); cleared
    /// when it runs again.
    pub(crate) summary: u64,
    /// The thread's world (`VMThread.world` value). JIT code reads the copy
    /// in `vm.world`, equal to this whenever the thread runs; transitions
    /// read and write this one, so that switching a suspended thread whose
    /// summary proves it clean touches no line but this one.
    pub(crate) world: u64,
    pub(crate) vm: Box<VMThread>,
    /// Exit records of outer wasm segments (host → wasm → host → wasm).
    pub(crate) outer_exits: Vec<usize>,
    pub(crate) suspend: *mut ThreadSuspend,
    /// The store's preemption target, whose memory poll hints this
    /// thread's polls read (`thread/poll.rs`); the store outlives it.
    pub(crate) preempt: *const poll::PreemptTarget,
    /// What the poll slow path asks at a safe point: the store's patch
    /// state, seen through the narrow [`SafePoint`] interface.
    pub(crate) safe_point: *mut dyn SafePoint,
    pub(crate) fiber: Option<ThreadFiber>,
    pub(crate) result: Option<Result<Vec<Val>, Error>>,
    /// Error raised by the host function the thread is returning from.
    pub(crate) host_error: Option<Error>,
    /// Set by the poll slow path when it stops the thread because the
    /// store's epoch deadline passed (its trap is then an interrupt).
    pub(crate) interrupted: bool,
    /// The thread's linear-memory stacks, one per instance with a
    /// `__stack_pointer` (`store/guest_stacks.rs`).
    pub(crate) guest_stacks: Vec<crate::store::ThreadStack>,
    /// Set by the layer above at a transfer poll whose frame it declined
    /// because it runs another instance of the same module: a token of
    /// that transition (its patch id), so that status can say why the
    /// frame never moves (`patch/transfer.rs`).
    pub(crate) transfer_declined: Option<u32>,
}

/// The one thing the thread layer asks of the layer above it: at a running
/// thread's safe point (a poll with its switch bit set), check the thread
/// against the transition in progress (docs/consistency.md rules 1 and 2).
/// Implemented by the store's patch state.
pub(crate) trait SafePoint {
    /// Check `ts`, switching it when its stack allows; true when it is
    /// still pending and must check again at its next poll.
    fn check(&mut self, ts: &mut ThreadState) -> bool;

    /// At a transfer poll (loop `ordinal` of the innermost frame, whose
    /// vmctx is `vmctx`) of a thread that [`Self::check`] left pending:
    /// whether that frame moves to the new version (`docs/transfer.md`).
    /// On `Some`, the thread has switched worlds and must tail-call the
    /// entry at once.
    fn transfer(
        &mut self,
        ts: &mut ThreadState,
        ordinal: u32,
        vmctx: usize,
    ) -> Option<poll::Transfer> {
        let _ = (ts, ordinal, vmctx);
        None
    }
}

impl ThreadState {
    /// Arm the store's memory poll hints (`thread/poll.rs`, "Hints"), after
    /// setting a bit in this running thread's poll word.
    pub(crate) fn arm_poll_hints(&self) {
        // SAFETY: the store, which owns the target, outlives its threads.
        unsafe { (*self.preempt).arm_hints() };
    }

    /// The exact wasm frames of this thread, innermost first. Only
    /// meaningful while the thread is not running.
    pub(crate) fn frames(&self) -> Vec<RawFrame> {
        if self.state == RunState::Running {
            return Vec::new();
        }
        self.frames_any()
    }

    /// The exit records of the thread's wasm segments, innermost first
    /// (none when it is not inside wasm).
    fn segments(&self) -> impl Iterator<Item = usize> + '_ {
        let n = if self.in_wasm { usize::MAX } else { 0 };
        std::iter::once(self.vm.exit_fp)
            .chain(self.outer_exits.iter().rev().copied())
            .take(n)
    }

    /// The addresses of the thread's machine stack, which bound every walk
    /// of its frames (`vm::stack_walk`, "Complete or not clean"). Every
    /// thread that can be inside wasm has its fiber; without one nothing
    /// bounds the walk but its rising frame pointers.
    fn stack_bounds(&self) -> stack_walk::StackBounds {
        self.fiber
            .as_ref()
            .and_then(|f| f.stack().range())
            .unwrap_or(0..usize::MAX)
    }

    /// Scan the thread's wasm frames for code in `ranges` (see
    /// [`stack_walk::scan`]: a chain that cannot be followed to its end
    /// reports every range); same conditions as [`Self::frames_any`].
    pub(crate) fn scan(
        &self,
        ranges: &stack_walk::CodeRanges,
        cache: &mut stack_walk::ScanCache,
        hit: &mut dyn FnMut(&stack_walk::CodeRange, Option<usize>) -> bool,
    ) -> bool {
        let stack = self.stack_bounds();
        // SAFETY: as in `frames_any`: the thread is suspended (or inside a
        // host call or poll), so its stack is frozen and its exit records
        // are the ones written at its latest exits from JIT code.
        unsafe { stack_walk::scan(self.segments(), &stack, ranges, cache, hit) }
    }

    /// Take the frame summary of this (just suspended) thread.
    pub(crate) fn summarize(&mut self, cache: &mut stack_walk::ScanCache) {
        /// Deeper stacks are left to a full scan: the summary is taken on
        /// every park, so its cost stays bounded. (A deeper stack has no
        /// summary at all: a summary never stands for part of a stack.)
        const MAX_FRAMES: usize = 256;
        let stack = self.stack_bounds();
        // SAFETY: as in `scan`: the thread has just suspended, its stack is
        // frozen and its exit records are current.
        let s = unsafe { stack_walk::summarize(self.segments(), &stack, cache, MAX_FRAMES) };
        self.summary = s.unwrap_or(0);
        self.summary_valid = s.is_some();
    }

    /// Whether the thread's summary proves that no function with a bit in
    /// `bloom` is on its stack.
    pub(crate) fn surely_clean(&self, bloom: u64) -> bool {
        self.summary_valid && self.summary & bloom == 0
    }

    /// Ask the CPU to start loading this thread's state (its first lines).
    pub(crate) fn prefetch_state(&self) {
        let this = self as *const ThreadState as usize;
        prefetch(this);
        prefetch(this + 64);
    }

    /// Ask the CPU to start loading this thread's `VMThread`, unless the
    /// summary already proves it clean against `bloom` (a check then needs
    /// only the state's first line: `world` and the summary are there).
    pub(crate) fn prefetch_vm(&self, bloom: u64) {
        if !self.surely_clean(bloom) {
            prefetch(&*self.vm as *const VMThread as usize);
        }
    }

    /// Ask the CPU to start loading the top of this thread's stack (where
    /// a scan starts); its `VMThread` should be in cache already.
    /// Nothing is loaded when the summary already proves it clean against
    /// `bloom`.
    pub(crate) fn prefetch_stack(&self, bloom: u64) {
        // The summary first: reading `vm.exit_fp` of a thread it clears
        // would load the line `prefetch_vm` skipped.
        if self.in_wasm && !self.surely_clean(bloom) && self.vm.exit_fp != 0 {
            prefetch(self.vm.exit_fp);
            prefetch(self.vm.exit_fp + 64);
        }
    }

    /// The exact wasm frames, also for the running thread when it is inside
    /// a host call or a poll (its exit record is then current); all of
    /// them, however deep the stack (a chain that breaks ends the list
    /// there).
    pub(crate) fn frames_any(&self) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        let stack = self.stack_bounds();
        for fp in self.segments() {
            // SAFETY: the thread is suspended, so its stack is frozen and
            // its exit records were written at its latest exits from JIT
            // code.
            if !unsafe { stack_walk::walk_exit(fp, &stack, &mut frames) } {
                break;
            }
        }
        frames
    }
}
