//! The readiness reactor: guest threads that would block on a host fd
//! (stdin) park themselves and wait here, so the other guest threads keep
//! running. Whoever drives the store (the CLI's run loop, or an embedder
//! through [`crate::WasiHandle::wait_ready`]) asks the reactor between time
//! slices which parked threads may run again, and unparks them.
//!
//! Readiness comes from epoll through the `polling` crate (one-shot
//! registrations, re-armed for each wait). Fds epoll refuses (regular files,
//! `/dev/null`) never block and are reported ready at once.

use std::collections::HashSet;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};
use wasm_patch_runtime::ThreadId;

/// A parked guest thread and what it waits for.
struct Waiter {
    thread: ThreadId,
    /// Readable readiness of this fd, if any.
    fd: Option<RawFd>,
    /// Wake at this time even if the fd is not ready.
    deadline: Option<Instant>,
}

/// Parked guest threads and the poller that watches their fds.
pub(crate) struct Reactor {
    poller: polling::Poller,
    events: polling::Events,
    waiters: Vec<Waiter>,
    /// Fds added to the poller (re-armed with `modify`).
    added: HashSet<RawFd>,
}

/// Whether `fd` is readable now (or at end of file / in error, where a read
/// returns at once as well).
pub(crate) fn readable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n != 0
}

impl Reactor {
    /// A reactor, or `None` when the host has no poller (the caller then
    /// blocks in the read instead).
    pub(crate) fn new() -> Option<Reactor> {
        Some(Reactor {
            poller: polling::Poller::new().ok()?,
            events: polling::Events::new(),
            waiters: Vec::new(),
            added: HashSet::new(),
        })
    }

    /// Record that `thread` is about to park until `fd` is readable or
    /// `deadline` passes.
    pub(crate) fn wait_for(
        &mut self,
        thread: ThreadId,
        fd: Option<RawFd>,
        deadline: Option<Instant>,
    ) {
        self.waiters.push(Waiter {
            thread,
            fd,
            deadline,
        });
    }

    /// Whether any guest thread waits here.
    pub(crate) fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Arm `fd` for one readable event; `false` when epoll refuses it (it
    /// never blocks, so it counts as ready).
    fn arm(&mut self, fd: RawFd) -> bool {
        let ev = polling::Event::readable(fd as usize);
        if self.added.contains(&fd) {
            // SAFETY: `fd` is a stdio fd, open for the life of the process.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            return self.poller.modify(b, ev).is_ok();
        }
        // SAFETY: `fd` stays open until the reactor is dropped, which
        // deletes it first (see `Drop`).
        if unsafe { self.poller.add(fd, ev) }.is_ok() {
            self.added.insert(fd);
            true
        } else {
            false
        }
    }

    /// Wait up to `timeout` for a waiter's fd or deadline; returns the
    /// threads that may run again (and forgets them).
    pub(crate) fn wait(&mut self, timeout: Duration) -> Vec<ThreadId> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        let mut ready: HashSet<RawFd> = HashSet::new();
        let fds: HashSet<RawFd> = self.waiters.iter().filter_map(|w| w.fd).collect();
        for fd in fds {
            if readable_now(fd) || !self.arm(fd) {
                ready.insert(fd);
            }
        }
        let now = Instant::now();
        let mut timeout = timeout;
        if !ready.is_empty() {
            timeout = Duration::ZERO;
        }
        if let Some(d) = self.waiters.iter().filter_map(|w| w.deadline).min() {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        self.events.clear();
        if !timeout.is_zero() && self.poller.wait(&mut self.events, Some(timeout)).is_ok() {
            ready.extend(self.events.iter().map(|e| e.key as RawFd));
        }
        let now = Instant::now();
        let mut woken = Vec::new();
        self.waiters.retain(|w| {
            let go =
                w.fd.is_some_and(|fd| ready.contains(&fd)) || w.deadline.is_some_and(|d| d <= now);
            if go {
                woken.push(w.thread);
            }
            !go
        });
        woken
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        for fd in self.added.drain() {
            // SAFETY: stdio fds stay open for the life of the process.
            let _ = self.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
        }
    }
}
