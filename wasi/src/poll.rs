//! `poll_oneoff`. Clock subscriptions sleep only the calling guest thread
//! (other guest threads run meanwhile). When blocked threads park
//! (`WasiCtx::park_blocked_threads`), fd subscriptions on streams that may
//! block (stdin, pipes, FIFOs, sockets, terminals) that are not ready park
//! the caller in the reactor until one of them is ready or the earliest
//! clock is due. Fds that never block (regular files) are ready at once.

use crate::errno::{Errno, Fail};
use crate::mem;
use crate::reactor::Interest;
use crate::{clock_now, def_caller, u32a, Shared};
use std::time::{Duration, Instant};
use wasm_patch_runtime::Linker;

const EVENT_CLOCK: u8 = 0;
const EVENT_FD_READ: u8 = 1;
const EVENT_FD_WRITE: u8 = 2;
const ABSTIME: u16 = 1;

enum Sub {
    /// Userdata and the deadline.
    Clock(u64, Instant),
    /// Userdata, event type and fd.
    Fd(u64, u8, u32),
}

fn write_event(
    m: &mut [u8],
    at: u32,
    userdata: u64,
    err: Errno,
    ty: u8,
    nbytes: u64,
) -> Result<(), Fail> {
    mem::slice(m, at, 32)?.fill(0);
    mem::write_u64(m, at, userdata)?;
    mem::write_u16(m, at + 8, err as u16)?;
    mem::write_u8(m, at + 10, ty)?;
    mem::write_u64(m, at + 16, nbytes)
}

/// Read the `n` subscriptions at `input`, turning clock timeouts into
/// deadlines measured now.
fn read_subs(m: &mut [u8], input: u32, n: u32) -> Result<Vec<Sub>, Fail> {
    let now = Instant::now();
    let mut subs = Vec::with_capacity(n as usize);
    for i in 0..n {
        let p = input.checked_add(48 * i).ok_or(Errno::Fault)?;
        let userdata = mem::read_u64(m, p)?;
        let tag = mem::slice(m, p + 8, 1)?[0];
        match tag {
            EVENT_CLOCK => {
                let id = mem::read_u32(m, p + 16)?;
                let timeout = mem::read_u64(m, p + 24)?;
                let flags = mem::read_u16(m, p + 40)?;
                let clock = clock_now(id)?;
                let left = if flags & ABSTIME != 0 {
                    timeout.saturating_sub(clock)
                } else {
                    timeout
                };
                // A timeout too far to represent never comes.
                let at = now
                    .checked_add(Duration::from_nanos(left))
                    .unwrap_or(now + Duration::from_secs(1 << 40));
                subs.push(Sub::Clock(userdata, at));
            }
            EVENT_FD_READ | EVENT_FD_WRITE => {
                subs.push(Sub::Fd(userdata, tag, mem::read_u32(m, p + 16)?));
            }
            _ => return Err(Errno::Inval.into()),
        }
    }
    Ok(subs)
}

/// Define `poll_oneoff`.
pub(crate) fn add<T: 'static>(l: &mut Linker<T>, st: &Shared) {
    def_caller(l, st, "poll_oneoff", "iiii", |c, st, a| {
        let (input, out, n, nev_ptr) = (u32a(a, 0), u32a(a, 1), u32a(a, 2), u32a(a, 3));
        if n == 0 {
            return Err(Errno::Inval.into());
        }
        let subs = read_subs(c.memory(0).ok_or(Errno::Fault)?, input, n)?;
        let first = subs
            .iter()
            .filter_map(|s| match s {
                Sub::Clock(_, at) => Some(*at),
                Sub::Fd(..) => None,
            })
            .min();
        loop {
            // Which subscriptions are ready now? (No borrow is held across
            // the suspensions below.)
            let mut ready = Vec::new();
            let mut waits = Vec::new();
            {
                let s = crate::lock(st);
                let now = Instant::now();
                for (i, sub) in subs.iter().enumerate() {
                    match *sub {
                        Sub::Clock(_, at) if at <= now => ready.push((i, Errno::Success, 0)),
                        Sub::Clock(..) => {}
                        Sub::Fd(_, ty, fd) => {
                            let what = if ty == EVENT_FD_WRITE {
                                Interest::Write
                            } else {
                                Interest::Read
                            };
                            match s.entry(fd) {
                                Err(_) => ready.push((i, Errno::Badf, 0)),
                                Ok(_) => match s.would_park(fd, what) {
                                    Some(raw) => waits.push((raw, what)),
                                    None if what == Interest::Read => {
                                        ready.push((i, Errno::Success, s.readable_bytes(fd)))
                                    }
                                    None => ready.push((i, Errno::Success, 0)),
                                },
                            }
                        }
                    }
                }
            }
            if !ready.is_empty() {
                let m = c.memory(0).ok_or(Errno::Fault)?;
                for (k, (i, err, nbytes)) in ready.iter().enumerate() {
                    let at = out + 32 * k as u32;
                    match subs[*i] {
                        Sub::Clock(ud, _) => write_event(m, at, ud, *err, EVENT_CLOCK, 0)?,
                        Sub::Fd(ud, ty, _) => write_event(m, at, ud, *err, ty, *nbytes)?,
                    }
                }
                return mem::write_u32(m, nev_ptr, ready.len() as u32);
            }
            if !waits.is_empty() {
                let me = c.thread_id();
                if let Some(r) = crate::lock(st).reactor.as_mut() {
                    r.wait_for(me, waits, first);
                }
                c.park().map_err(Fail::Fatal)?;
            } else if let Some(at) = first {
                c.sleep(at.saturating_duration_since(Instant::now()))
                    .map_err(Fail::Fatal)?;
            }
        }
    });
}
