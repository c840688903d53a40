//! `poll_oneoff`. Clock subscriptions sleep the calling guest thread only
//! (other guest threads run meanwhile); fd subscriptions are reported ready
//! at once (regular files always are; stdin and pipes are not yet waited
//! on through a reactor).

use crate::errno::{Errno, Fail};
use crate::mem;
use crate::{clock_now, def_caller, u32a, Shared};
use std::time::Duration;
use wasm_patch_runtime::Linker;

const EVENT_CLOCK: u8 = 0;
const EVENT_FD_READ: u8 = 1;
const EVENT_FD_WRITE: u8 = 2;
const ABSTIME: u16 = 1;

enum Sub {
    /// Userdata and the nanoseconds left until the deadline.
    Clock(u64, u64),
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

/// Define `poll_oneoff`.
pub(crate) fn add<T: 'static>(l: &mut Linker<T>, st: &Shared) {
    def_caller(l, st, "poll_oneoff", "iiii", |c, st, a| {
        let (input, out, n, nev_ptr) = (u32a(a, 0), u32a(a, 1), u32a(a, 2), u32a(a, 3));
        if n == 0 {
            return Err(Errno::Inval.into());
        }
        let mut subs = Vec::with_capacity(n as usize);
        {
            let m = c.memory(0).ok_or(Errno::Fault)?;
            for i in 0..n {
                let p = input + 48 * i;
                let userdata = mem::read_u64(m, p)?;
                let tag = mem::slice(m, p + 8, 1)?[0];
                match tag {
                    EVENT_CLOCK => {
                        let id = mem::read_u32(m, p + 16)?;
                        let timeout = mem::read_u64(m, p + 24)?;
                        let flags = mem::read_u16(m, p + 40)?;
                        let left = if flags & ABSTIME != 0 {
                            timeout.saturating_sub(clock_now(id)?)
                        } else {
                            clock_now(id)?;
                            timeout
                        };
                        subs.push(Sub::Clock(userdata, left));
                    }
                    EVENT_FD_READ | EVENT_FD_WRITE => {
                        subs.push(Sub::Fd(userdata, tag, mem::read_u32(m, p + 16)?));
                    }
                    _ => return Err(Errno::Inval.into()),
                }
            }
        }
        let has_fd = subs.iter().any(|s| matches!(s, Sub::Fd(..)));
        let first = subs
            .iter()
            .filter_map(|s| match s {
                Sub::Clock(_, left) => Some(*left),
                Sub::Fd(..) => None,
            })
            .min();
        if !has_fd {
            if let Some(left) = first {
                // Only this guest thread sleeps; the shared state is not
                // borrowed across the suspension.
                c.sleep(Duration::from_nanos(left)).map_err(Fail::Fatal)?;
            }
        }
        let s = st.borrow();
        let m = c.memory(0).ok_or(Errno::Fault)?;
        let mut count = 0u32;
        for sub in &subs {
            let at = out + 32 * count;
            match *sub {
                Sub::Clock(ud, left) if !has_fd && Some(left) == first => {
                    write_event(m, at, ud, Errno::Success, EVENT_CLOCK, 0)?;
                }
                Sub::Clock(ud, 0) => write_event(m, at, ud, Errno::Success, EVENT_CLOCK, 0)?,
                Sub::Clock(..) => continue,
                Sub::Fd(ud, ty, fd) => {
                    let err = match s.entry(fd) {
                        Ok(_) => Errno::Success,
                        Err(_) => Errno::Badf,
                    };
                    write_event(m, at, ud, err, ty, 0)?;
                }
            }
            count += 1;
        }
        mem::write_u32(m, nev_ptr, count)
    });
}
