//! Termination signals for `run --control`: SIGTERM, SIGINT and SIGHUP
//! remove the control socket before the process dies of the signal, so a
//! stopped run leaves no socket file behind (a server that exits normally
//! removes it in `control::Server`'s `Drop`).
//!
//! The handler does only async-signal-safe work: `unlink` of a path
//! prepared beforehand, then the default action re-raised.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The socket path the handler removes (null: none).
static SOCKET: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn on_termination(sig: libc::c_int) {
    // Acquire: pairs with the Release store in `remove_socket_on_termination`
    // (the path's bytes are written before the pointer is published).
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

/// While the returned guard lives, a termination signal removes `path`
/// before the process ends.
pub struct RemoveOnTermination(());

impl Drop for RemoveOnTermination {
    fn drop(&mut self) {
        // The server removes its socket itself from here on. The string
        // stays leaked: a handler running now may still read it.
        SOCKET.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// Arrange for `path` to be removed when a termination signal ends the run.
///
/// # Errors
/// A path with a NUL byte, or `sigaction` failing.
pub fn remove_socket_on_termination(path: &Path) -> anyhow::Result<RemoveOnTermination> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // Release: pairs with the handler's Acquire swap.
    SOCKET.store(c.into_raw(), Ordering::Release);
    for sig in SIGNALS {
        // SAFETY: a zeroed `sigaction` is a valid starting value; the
        // handler is an `extern "C" fn(c_int)` that only makes
        // async-signal-safe calls.
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
    Ok(RemoveOnTermination(()))
}
