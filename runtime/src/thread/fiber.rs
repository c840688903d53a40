//! Thin wrapper over `wasmtime-fiber`: one fiber per guest thread.
//!
//! A guest thread suspends only from inside a runtime or host call (poll
//! slow path, yield, sleep, park). Around every suspend the trap module's
//! current-activation pointer is saved and restored, since it is per OS
//! thread and other fibers run in between.

use crate::vm::traps;
use wasmtime_fiber::{Fiber, FiberStack, Suspend};

/// What a thread is resumed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Carry on.
    Go,
    /// Unwind: the pending host call fails, the guest traps, the fiber ends.
    Cancel,
}

/// Why a thread suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Yield {
    /// Give others a turn (yield or preemption); runnable at once.
    Turn,
    /// Sleep until the instant.
    Sleep(std::time::Instant),
    /// Parked until someone unparks it.
    Park,
}

/// A guest thread's fiber.
pub type ThreadFiber = Fiber<'static, Resume, Yield, ()>;
/// The handle a running fiber suspends through.
pub type ThreadSuspend = Suspend<Resume, Yield, ()>;

/// Create a fiber on `stack` running `body`.
pub fn new_fiber(
    stack: FiberStack,
    body: impl FnOnce(Resume, &mut ThreadSuspend) + 'static,
) -> std::io::Result<ThreadFiber> {
    Fiber::new(stack, body).map_err(std::io::Error::other)
}

/// Suspend the running fiber through `suspend`, keeping the trap
/// activation chain of this fiber intact across the switch.
///
/// # Safety
/// `suspend` must be the suspend handle of the fiber currently running on
/// this OS thread.
#[inline(always)]
pub unsafe fn suspend(suspend: *mut ThreadSuspend, why: Yield) -> Resume {
    let saved = traps::current_activation();
    // SAFETY: the caller guarantees `suspend` belongs to the running fiber,
    // and no other reference to it is live while the fiber runs.
    let r = unsafe { (*suspend).suspend(why) };
    traps::set_current_activation(saved);
    r
}

/// The usable range of a fiber stack.
pub fn stack_range(stack: &FiberStack) -> Option<std::ops::Range<usize>> {
    stack.range()
}
