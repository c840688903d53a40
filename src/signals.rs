//! Termination signals for `wasm-patch run`: SIGTERM, SIGINT and SIGHUP ask
//! the run loop to stop. The loop checks [`stop_requested`] between guest
//! time slices, answers waiting control clients, removes the control socket
//! (`control::Server`'s `Drop`) and exits with status 128 + the signal's
//! number (143 for SIGTERM, 130 for SIGINT, 129 for SIGHUP), as a shell
//! reports a process killed by it.
//!
//! A second signal while the first is being handled (a loop that does not
//! come back to check) ends the process at once: the handler removes the
//! socket itself (`unlink` of a path prepared beforehand) and re-raises the
//! signal with its default action. The handler does only
//! async-signal-safe work.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// The socket path the handler removes on a second signal (null: none).
static SOCKET: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// The first termination signal received (0: none).
static STOP: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn on_termination(sig: libc::c_int) {
    // Relaxed: the flag carries no data; the run loop only reads its value.
    if STOP
        .compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        return;
    }
    // Acquire: pairs with the Release store in `install` (the path's bytes
    // are written before the pointer is published).
    let p = SOCKET.swap(std::ptr::null_mut(), Ordering::Acquire);
    // SAFETY: `unlink`, `signal` and `raise` are async-signal-safe; `p` is
    // null or a leaked, NUL-terminated `CString` that is never freed.
    unsafe {
        if !p.is_null() {
            libc::unlink(p);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// The termination signal received so far, if any: the run loop stops.
pub fn stop_requested() -> Option<i32> {
    // Relaxed: see `on_termination`.
    match STOP.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// The signal's name, for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// While the returned guard lives, termination signals are caught.
pub struct StopOnTermination(());

impl Drop for StopOnTermination {
    fn drop(&mut self) {
        // The server removes its socket itself from here on. The string
        // stays leaked: a handler running now may still read it.
        SOCKET.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// Catch SIGTERM, SIGINT and SIGHUP: the first asks the run loop to stop
/// ([`stop_requested`]); a second removes `socket` (if any) and ends the
/// process.
///
/// # Errors
/// A path with a NUL byte, or `sigaction` failing.
pub fn install(socket: Option<&Path>) -> anyhow::Result<StopOnTermination> {
    if let Some(path) = socket {
        let c = CString::new(path.as_os_str().as_bytes())?;
        // Release: pairs with the handler's Acquire swap.
        SOCKET.store(c.into_raw(), Ordering::Release);
    }
    for sig in SIGNALS {
        // SAFETY: a zeroed `sigaction` is a valid starting value; the
        // handler is an `extern "C" fn(c_int)` that only makes
        // async-signal-safe calls (atomics, unlink, signal, raise).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_termination as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                anyhow::bail!(
                    "installing the handler of signal {sig}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    Ok(StopOnTermination(()))
}
