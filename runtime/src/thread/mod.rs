//! Guest threads: each one a fiber with its own `VMThread` (poll word, world
//! selector, stack limit, exit record) and its exact stack of wasm frames.

pub mod fiber;
pub mod poll;
pub mod shadow_stack;
pub mod stacks;

use crate::errors::Error;
use crate::val::Val;
use crate::vm::vmctx::VMThread;
use fiber::{ThreadFiber, ThreadSuspend};
use shadow_stack::RawFrame;

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
pub(crate) struct ThreadState {
    pub(crate) id: ThreadId,
    pub(crate) vm: Box<VMThread>,
    pub(crate) fiber: Option<ThreadFiber>,
    pub(crate) suspend: *mut ThreadSuspend,
    pub(crate) state: RunState,
    pub(crate) result: Option<Result<Vec<Val>, Error>>,
    /// Error raised by the host function the thread is returning from.
    pub(crate) host_error: Option<Error>,
    /// Exit records of outer wasm segments (host → wasm → host → wasm).
    pub(crate) outer_exits: Vec<(usize, u64)>,
    /// Wake-up requested while not yet parked.
    pub(crate) unpark_pending: bool,
    /// Cancellation requested.
    pub(crate) cancelled: bool,
    /// Whether the thread is inside wasm (exit record meaningful when parked).
    pub(crate) in_wasm: bool,
    /// The store's patch state, for the poll slow path.
    pub(crate) core: *mut crate::patch::Core,
}

impl ThreadState {
    /// The exact wasm frames of this thread, innermost first. Only
    /// meaningful while the thread is not running.
    pub(crate) fn frames(&self) -> Vec<RawFrame> {
        if self.state == RunState::Running {
            return Vec::new();
        }
        self.frames_any()
    }

    /// The exact wasm frames, also for the running thread when it is inside
    /// a host call or a poll (its exit record is then current).
    pub(crate) fn frames_any(&self) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        if !self.in_wasm {
            return frames;
        }
        // SAFETY: the thread is suspended, so its stack is frozen and its
        // exit records were written at its latest exits from JIT code.
        unsafe {
            shadow_stack::walk_exit(self.vm.exit_fp, self.vm.exit_func, &mut frames);
            for &(fp, func) in self.outer_exits.iter().rev() {
                shadow_stack::walk_exit(fp, func, &mut frames);
            }
        }
        frames
    }
}
