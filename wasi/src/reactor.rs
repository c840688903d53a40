//! The readiness reactor: guest threads that would block on a host fd (a
//! read of stdin, a pipe, a FIFO, a terminal or a socket; a write to a full
//! pipe) park themselves and wait here, so the other guest threads keep
//! running. Whoever drives the store (the CLI's run loop, or an embedder
//! through [`crate::WasiHandle::wait_ready`]) asks the reactor between time
//! slices which parked threads may run again, and unparks them.
//!
//! Readiness comes from epoll through the `polling` crate (one-shot
//! registrations, re-armed for each wait), and is checked again with a
//! zero-timeout `poll(2)` per waiter before a thread is woken. Fds epoll
//! refuses (regular files, `/dev/null`) never block and count as ready.

use std::collections::{HashMap, HashSet};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};
use wasm_patch_runtime::ThreadId;

/// What a waiter waits for on an fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Readable (or at end of file, or in error: a read returns at once).
    Read,
    /// Writable: at least `PIPE_BUF` bytes fit without blocking.
    Write,
}

/// A parked guest thread and what it waits for.
struct Waiter {
    thread: ThreadId,
    /// Any of these fds ready wakes it.
    fds: Vec<(RawFd, Interest)>,
    /// Wake at this time even if no fd is ready.
    deadline: Option<Instant>,
}

/// Parked guest threads and the poller that watches their fds.
pub(crate) struct Reactor {
    poller: polling::Poller,
    events: polling::Events,
    waiters: Vec<Waiter>,
    /// Fds added to the poller (re-armed with `modify`).
    added: HashSet<RawFd>,
    /// Fds closed while threads waited on them: those threads wake at the
    /// next wait and find the descriptor gone.
    closed: HashSet<RawFd>,
}

/// Whether `fd` is ready for `interest` now (errors and hang-ups count:
/// the operation returns at once).
pub(crate) fn ready_now(fd: RawFd, interest: Interest) -> bool {
    let events = match interest {
        Interest::Read => libc::POLLIN,
        Interest::Write => libc::POLLOUT,
    };
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n != 0
}

/// Whether reads and writes of `fd` can block: a pipe or FIFO, a socket or
/// a character device (a terminal). Regular files and directories never
/// wait for anyone.
pub(crate) fn may_block(fd: RawFd) -> bool {
    // SAFETY: `st` is a valid, writable stat buffer; fstat only fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; an invalid fd is an error, not undefined behaviour.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    matches!(
        st.st_mode & libc::S_IFMT,
        libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR
    )
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
            closed: HashSet::new(),
        })
    }

    /// Record that `thread` is about to park until one of `fds` is ready
    /// or `deadline` passes.
    pub(crate) fn wait_for(
        &mut self,
        thread: ThreadId,
        fds: Vec<(RawFd, Interest)>,
        deadline: Option<Instant>,
    ) {
        self.waiters.push(Waiter {
            thread,
            fds,
            deadline,
        });
    }

    /// Whether any guest thread waits here.
    pub(crate) fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// `fd` is about to be closed: stop watching it, and wake the threads
    /// waiting on it (they find it closed).
    pub(crate) fn forget(&mut self, fd: RawFd) {
        if self.added.remove(&fd) {
            // SAFETY: `fd` is still open (the caller closes it after this).
            let _ = self.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
        }
        if self
            .waiters
            .iter()
            .any(|w| w.fds.iter().any(|&(f, _)| f == fd))
        {
            self.closed.insert(fd);
        }
    }

    /// Arm `fd` for one event of `interest`; `false` when epoll refuses it
    /// (it never blocks, so it counts as ready).
    fn arm(&mut self, fd: RawFd, read: bool, write: bool) -> bool {
        let ev = match (read, write) {
            (true, true) => polling::Event::all(fd as usize),
            (false, true) => polling::Event::writable(fd as usize),
            _ => polling::Event::readable(fd as usize),
        };
        if self.added.contains(&fd) {
            // SAFETY: `fd` is open: entries are forgotten before they close.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            if self.poller.modify(b, ev).is_ok() {
                return true;
            }
            self.added.remove(&fd);
        }
        // SAFETY: `fd` stays open until it is forgotten (`forget`, before
        // its entry closes it) or the reactor is dropped, which deletes it.
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
        // The interests per fd, over all waiters.
        let mut wanted: HashMap<RawFd, (bool, bool)> = HashMap::new();
        for w in &self.waiters {
            for &(fd, i) in &w.fds {
                let e = wanted.entry(fd).or_default();
                match i {
                    Interest::Read => e.0 = true,
                    Interest::Write => e.1 = true,
                }
            }
        }
        let mut any_ready = !self.closed.is_empty();
        for (fd, (read, write)) in wanted {
            let now = (read && ready_now(fd, Interest::Read))
                || (write && ready_now(fd, Interest::Write));
            if now || !self.arm(fd, read, write) {
                any_ready = true;
            }
        }
        let now = Instant::now();
        let mut timeout = if any_ready { Duration::ZERO } else { timeout };
        if let Some(d) = self.waiters.iter().filter_map(|w| w.deadline).min() {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        self.events.clear();
        if !timeout.is_zero() {
            let _ = self.poller.wait(&mut self.events, Some(timeout));
        }
        let now = Instant::now();
        let closed = std::mem::take(&mut self.closed);
        let mut woken = Vec::new();
        self.waiters.retain(|w| {
            let go = w.deadline.is_some_and(|d| d <= now)
                || w.fds
                    .iter()
                    .any(|&(fd, i)| closed.contains(&fd) || ready_now(fd, i) || !may_block(fd));
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
            // SAFETY: fds in `added` are open: entries are forgotten before
            // they close, and stdio stays open for the life of the process.
            let _ = self.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
        }
    }
}
