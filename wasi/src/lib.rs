//! WASI preview 1 (`wasi_snapshot_preview1`) for the wasm-patch runtime.
//!
//! [`add_wasi`] defines every function of the module on a [`Linker`]; the
//! state they share (arguments, environment, the descriptor table) lives in
//! one [`WasiCtx`] that all guest threads of the program use. Files are
//! reached only through preopened directories, with `cap-std`, so `..`,
//! absolute paths and symlinks that lead outside a preopen are refused.
//!
//! Blocking: with [`WasiCtx::park_blocked_threads`], a guest thread whose
//! read of stdin (or `poll_oneoff` on stdin) would block parks only itself
//! and waits in a readiness reactor (`reactor.rs`); whoever drives the store
//! unparks it through [`WasiHandle::wait_ready`]. Without it (the default
//! for embedders that only call `Func::call`), such a read blocks the store.
//! Clock waits (`poll_oneoff`) always sleep only the calling guest thread.

mod errno;
mod fs;
mod fs_path;
mod mem;
mod poll;
mod reactor;

pub use errno::Errno;

use errno::Fail;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use wasm_patch_runtime::{Caller, Error, FuncType, Linker, ThreadId, Val, ValType, WasmTy};

/// The import module name of WASI preview 1.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Errors of setting up a [`WasiCtx`].
#[derive(Debug, thiserror::Error)]
pub enum WasiError {
    /// A preopened directory could not be opened.
    #[error("cannot preopen `{path}` as `{guest}`: {source}")]
    Preopen {
        /// The host directory.
        path: PathBuf,
        /// The name the guest sees.
        guest: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// An argument or environment entry holds a NUL byte.
    #[error("`{0}` contains a NUL byte, which WASI strings cannot hold")]
    Nul(String),
}

/// What a WASI program sees: arguments, environment and preopened
/// directories. Standard input, output and error are the host's.
#[derive(Default)]
pub struct WasiCtx {
    args: Vec<String>,
    env: Vec<(String, String)>,
    preopens: Vec<(cap_std::fs::Dir, String)>,
    park: bool,
}

impl WasiCtx {
    /// An empty context: no arguments, no environment, no directories.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a program argument (the first is the program name).
    ///
    /// # Errors
    /// [`WasiError::Nul`] when it holds a NUL byte.
    pub fn arg(&mut self, arg: &str) -> Result<&mut Self, WasiError> {
        if arg.contains('\0') {
            return Err(WasiError::Nul(arg.into()));
        }
        self.args.push(arg.into());
        Ok(self)
    }

    /// Add an environment variable.
    ///
    /// # Errors
    /// [`WasiError::Nul`] when the name or value holds a NUL byte.
    pub fn env(&mut self, name: &str, value: &str) -> Result<&mut Self, WasiError> {
        if name.contains('\0') || value.contains('\0') {
            return Err(WasiError::Nul(format!("{name}={value}")));
        }
        self.env.push((name.into(), value.into()));
        Ok(self)
    }

    /// Park a guest thread whose stdin read would block, instead of blocking
    /// the store. The embedder must then call [`WasiHandle::wait_ready`]
    /// while it runs the store (between time slices and when idle) and
    /// unpark the threads it returns.
    pub fn park_blocked_threads(&mut self, on: bool) -> &mut Self {
        self.park = on;
        self
    }

    /// Preopen host directory `host` under the guest name `guest`.
    ///
    /// # Errors
    /// [`WasiError::Preopen`] when it cannot be opened as a directory.
    pub fn preopen_dir(&mut self, host: &Path, guest: &str) -> Result<&mut Self, WasiError> {
        let dir = cap_std::fs::Dir::open_ambient_dir(host, cap_std::ambient_authority()).map_err(
            |source| WasiError::Preopen {
                path: host.into(),
                guest: guest.into(),
                source,
            },
        )?;
        self.preopens.push((dir, guest.into()));
        Ok(self)
    }
}

/// The embedder's view of a linked WASI instance: whether the program
/// called `proc_exit`, and with which status.
#[derive(Clone)]
pub struct WasiHandle {
    state: Shared,
}

impl WasiHandle {
    /// The status passed to `proc_exit`, once a guest thread called it.
    pub fn exit_code(&self) -> Option<i32> {
        lock(&self.state).exit_code
    }

    /// Whether a guest thread is parked waiting for an fd or a deadline
    /// (see [`WasiCtx::park_blocked_threads`]): such a store is not
    /// deadlocked while all its threads are parked.
    pub fn has_waiters(&self) -> bool {
        lock(&self.state)
            .reactor
            .as_ref()
            .is_some_and(reactor::Reactor::has_waiters)
    }

    /// Wait at most `timeout` for the fds and deadlines parked guest
    /// threads wait for; returns the threads to unpark (with
    /// `Store::unpark`). Returns at once when no thread waits.
    pub fn wait_ready(&self, timeout: std::time::Duration) -> Vec<ThreadId> {
        match lock(&self.state).reactor.as_mut() {
            Some(r) => r.wait(timeout),
            None => Vec::new(),
        }
    }
}

/// The host error message a guest thread ends with after `proc_exit`.
pub const PROC_EXIT_MESSAGE: &str = "proc_exit";

/// The WASI state shared by a store's host functions. A mutex, not a
/// `RefCell`, so that the store stays `Send`; guest threads of one store
/// run on one OS thread at a time, so it is never contended, and no host
/// function holds it across a park.
type Shared = Arc<Mutex<fs::State>>;

/// Lock the shared state. A host function that panicked while holding it
/// left it consistent (every update is a single step), so poison is
/// ignored.
pub(crate) fn lock(st: &Mutex<fs::State>) -> MutexGuard<'_, fs::State> {
    st.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parse a signature like `"iIi"` (`i` = i32, `I` = i64); results are one
/// i32 errno.
fn sig(params: &str) -> FuncType {
    let p: Vec<ValType> = params
        .chars()
        .map(|c| if c == 'I' { ValType::I64 } else { ValType::I32 })
        .collect();
    FuncType::new(p, [ValType::I32])
}

/// Define `name`: `f` runs with the caller's memory 0 and the shared state
/// borrowed; an `Errno` becomes the result, a fatal error ends the thread.
fn def<T: 'static>(
    l: &mut Linker<T>,
    st: &Shared,
    name: &str,
    params: &str,
    f: impl Fn(&mut [u8], &mut fs::State, &[Val]) -> Result<(), Fail> + Send + Sync + 'static,
) {
    let st = st.clone();
    wrap(l, name, params, move |c, a| {
        let Some(mem) = c.memory(0) else {
            return Ok(Errno::Fault as i32);
        };
        let out = f(mem, &mut lock(&st), a);
        errno(out)
    });
}

/// Define `name` whose body may suspend the calling guest thread: it gets
/// the caller and the shared state unborrowed (it must not hold a borrow
/// across a suspension).
fn def_caller<T: 'static>(
    l: &mut Linker<T>,
    st: &Shared,
    name: &str,
    params: &str,
    f: impl Fn(&mut Caller<'_, T>, &Shared, &[Val]) -> Result<(), Fail> + Send + Sync + 'static,
) {
    let st = st.clone();
    wrap(l, name, params, move |c, a| errno(f(c, &st, a)));
}

/// The errno result of a body, or the fatal error that ends the thread.
fn errno(out: Result<(), Fail>) -> Result<i32, Error> {
    match out {
        Ok(()) => Ok(0),
        Err(Fail::Errno(e)) => Ok(e as i32),
        Err(Fail::Fatal(e)) => Err(e),
    }
}

/// Define `name` of parameters `params` (see [`sig`]) as a typed host
/// function (`Linker::func_wrap`, the runtime's fast path: no `Val` lists
/// built by the runtime, no result check) whose closure hands `body` its
/// arguments as a stack array. Each shape preview 1 uses has its arm; any
/// other takes the generic path.
fn wrap<T: 'static>(
    l: &mut Linker<T>,
    name: &str,
    params: &str,
    body: impl Fn(&mut Caller<'_, T>, &[Val]) -> Result<i32, Error> + Send + Sync + 'static,
) {
    macro_rules! typed {
        ($($a:ident: $t:ty),*) => {{
            l.func_wrap(WASI_MODULE, name, move |mut c: Caller<'_, T>, $($a: $t),*| {
                body(&mut c, &[$($a.into_val()),*])
            })
            .expect("a fresh linker defines each WASI name once");
        }};
    }
    match params {
        "" => typed!(),
        "i" => typed!(a: i32),
        "ii" => typed!(a: i32, b: i32),
        "iI" => typed!(a: i32, b: i64),
        "iii" => typed!(a: i32, b: i32, c: i32),
        "iIi" => typed!(a: i32, b: i64, c: i32),
        "iII" => typed!(a: i32, b: i64, c: i64),
        "iiii" => typed!(a: i32, b: i32, c: i32, d: i32),
        "iIii" => typed!(a: i32, b: i64, c: i32, d: i32),
        "iIIi" => typed!(a: i32, b: i64, c: i64, d: i32),
        "iiiii" => typed!(a: i32, b: i32, c: i32, d: i32, e: i32),
        "iiiIi" => typed!(a: i32, b: i32, c: i32, d: i64, e: i32),
        "iiiiii" => typed!(a: i32, b: i32, c: i32, d: i32, e: i32, f: i32),
        "iiiiiii" => typed!(a: i32, b: i32, c: i32, d: i32, e: i32, f: i32, g: i32),
        "iiiiIIi" => typed!(a: i32, b: i32, c: i32, d: i32, e: i64, f: i64, g: i32),
        "iiiiiIIii" => {
            typed!(a: i32, b: i32, c: i32, d: i32, e: i32, f: i64, g: i64, h: i32, i: i32)
        }
        _ => {
            debug_assert!(false, "WASI shape {params:?} of `{name}` has no typed arm");
            l.func_new(WASI_MODULE, name, sig(params), move |c, a, r| {
                r[0] = Val::I32(body(c, a)?);
                Ok(())
            });
        }
    }
}

/// Argument `i` as an unsigned 32-bit value.
pub(crate) fn u32a(a: &[Val], i: usize) -> u32 {
    a[i].i32().unwrap_or(0) as u32
}

/// Argument `i` as a 64-bit value.
pub(crate) fn u64a(a: &[Val], i: usize) -> u64 {
    a[i].i64().unwrap_or(0) as u64
}

/// Define every `wasi_snapshot_preview1` function on `linker`, sharing
/// `ctx` among all the guest threads of the stores that use it.
///
/// # Errors
/// [`Error::Link`] when `linker` already defines one of them (nothing is
/// added then).
pub fn add_wasi<T: 'static>(linker: &mut Linker<T>, ctx: WasiCtx) -> Result<WasiHandle, Error> {
    let st: Shared = Arc::new(Mutex::new(fs::State::new(ctx)));
    let mut own = Linker::new(linker.engine());
    add_process(&mut own, &st);
    fs::add(&mut own, &st);
    poll::add(&mut own, &st);
    linker.merge(own)?;
    Ok(WasiHandle { state: st })
}

/// Write `list` as a WASI string array: pointers at `ptrs`, NUL-terminated
/// bytes at `buf`.
fn write_strings(mem: &mut [u8], list: &[String], ptrs: u32, buf: u32) -> Result<(), Fail> {
    let mut at = buf;
    for (i, s) in list.iter().enumerate() {
        mem::write_u32(mem, ptrs + 4 * i as u32, at)?;
        let dst = mem::slice(mem, at, s.len() as u32 + 1)?;
        dst[..s.len()].copy_from_slice(s.as_bytes());
        dst[s.len()] = 0;
        at += s.len() as u32 + 1;
    }
    Ok(())
}

fn sizes(mem: &mut [u8], list: &[String], count: u32, size: u32) -> Result<(), Fail> {
    mem::write_u32(mem, count, list.len() as u32)?;
    let total: usize = list.iter().map(|s| s.len() + 1).sum();
    mem::write_u32(mem, size, total as u32)?;
    Ok(())
}

fn clock_id(id: u32) -> Result<libc::clockid_t, Fail> {
    Ok(match id {
        0 => libc::CLOCK_REALTIME,
        1 => libc::CLOCK_MONOTONIC,
        2 => libc::CLOCK_PROCESS_CPUTIME_ID,
        3 => libc::CLOCK_THREAD_CPUTIME_ID,
        _ => return Err(Errno::Inval.into()),
    })
}

/// The time of WASI clock `id` in nanoseconds.
pub(crate) fn clock_now(id: u32) -> Result<u64, Fail> {
    let clk = clock_id(id)?;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(clk, &mut ts) } != 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()).into());
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Arguments, environment, clocks, randomness, exit, yield and sockets.
fn add_process<T: 'static>(l: &mut Linker<T>, st: &Shared) {
    def(l, st, "args_sizes_get", "ii", |m, s, a| {
        sizes(m, &s.args, u32a(a, 0), u32a(a, 1))
    });
    def(l, st, "args_get", "ii", |m, s, a| {
        write_strings(m, &s.args, u32a(a, 0), u32a(a, 1))
    });
    def(l, st, "environ_sizes_get", "ii", |m, s, a| {
        sizes(m, &s.env, u32a(a, 0), u32a(a, 1))
    });
    def(l, st, "environ_get", "ii", |m, s, a| {
        write_strings(m, &s.env, u32a(a, 0), u32a(a, 1))
    });
    def(l, st, "clock_res_get", "ii", |m, _, a| {
        let clk = clock_id(u32a(a, 0))?;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        if unsafe { libc::clock_getres(clk, &mut ts) } != 0 {
            return Err(Errno::from_io(&std::io::Error::last_os_error()).into());
        }
        let ns = (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64).max(1);
        mem::write_u64(m, u32a(a, 1), ns)
    });
    // The hottest call of most programs (`Instant::now`): typed directly,
    // without the shared state or an argument array.
    l.func_wrap(
        WASI_MODULE,
        "clock_time_get",
        |mut c: Caller<'_, T>, id: i32, _precision: i64, at: i32| -> i32 {
            let Ok(clk) = clock_id(id as u32) else {
                return Errno::Inval as i32;
            };
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid, writable timespec.
            if unsafe { libc::clock_gettime(clk, &mut ts) } != 0 {
                return Errno::from_io(&std::io::Error::last_os_error()) as i32;
            }
            let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            let at = at as u32 as usize;
            match c.memory(0).and_then(|m| m.get_mut(at..at.checked_add(8)?)) {
                Some(b) => {
                    b.copy_from_slice(&now.to_le_bytes());
                    0
                }
                None => Errno::Fault as i32,
            }
        },
    )
    .expect("a fresh linker defines each WASI name once");
    def(l, st, "random_get", "ii", |m, _, a| {
        let buf = mem::slice(m, u32a(a, 0), u32a(a, 1))?;
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Errno::from_io(&e).into());
            }
            done += n as usize;
        }
        Ok(())
    });
    // proc_raise is in the preview 1 interface but signals are not: the
    // spec's answer for an unsupported operation.
    def(
        l,
        st,
        "proc_raise",
        "i",
        |_, _, _| Err(Errno::Notsup.into()),
    );
    let s2 = st.clone();
    l.func_new(
        WASI_MODULE,
        "proc_exit",
        FuncType::new([ValType::I32], []),
        move |_, a, _| {
            let code = a[0].i32().unwrap_or(0);
            let mut s = lock(&s2);
            if s.exit_code.is_none() {
                s.exit_code = Some(code);
            }
            Err(Error::Host(format!("{PROC_EXIT_MESSAGE}({code})")))
        },
    );
    def_caller(l, st, "sched_yield", "", |c, _, _| {
        c.yield_now().map_err(Fail::Fatal)
    });
    // Sockets: no socket can be opened through preview 1 here (no
    // preopened sockets), so every descriptor is either not a socket or not
    // open at all.
    for (name, params) in [
        ("sock_accept", "iii"),
        ("sock_recv", "iiiiii"),
        ("sock_send", "iiiii"),
        ("sock_shutdown", "ii"),
    ] {
        def(l, st, name, params, |_, s, a| {
            s.entry(u32a(a, 0))?;
            Err(Errno::Notsock.into())
        });
    }
}
