//! Entering JIT code, and catching its traps.
//!
//! Every entry from the host into compiled code goes through
//! [`enter`], which runs a small assembly routine (`wasm_patch_enter`) that
//! saves the callee-saved registers and the stack pointer in an
//! [`Activation`] before calling the trampoline. A trap in JIT code raises a
//! signal (SIGSEGV/SIGBUS for guard pages, SIGILL for `ud2` trap
//! instructions, SIGFPE for `idiv` overflow); the handler, running on an
//! alternate signal stack, looks the faulting pc up in the code registry,
//! records the trap kind and the wasm frames, and rewrites the saved
//! registers so that execution resumes at the routine's landing pad with the
//! saved stack pointer: `enter` then returns the trap as an error.
//!
//! Invariant: no Rust frame with a destructor lies between the routine and a
//! trap site. Host functions are called through `extern "C"` shims that catch
//! panics and report errors by return value; JIT code then traps itself.
//!
//! Rejected alternative: `setjmp`/`longjmp` from the handler (what wasmtime
//! used before 2023) — unwinding through a signal frame with `longjmp` is
//! undefined; rewriting the context and returning from the handler is not.

use super::code_memory;
use crate::trap::TrapKind;
use crate::vm::stack_walk::{self, RawFrame};
use std::cell::Cell;

/// Frames kept in a trap record: innermost first.
pub const MAX_TRAP_FRAMES: usize = 64;

/// What a trap left behind.
#[derive(Clone, Debug)]
pub struct TrapRecord {
    /// The trap kind.
    pub kind: TrapKind,
    /// Innermost frames (at most [`MAX_TRAP_FRAMES`]).
    pub frames: Vec<RawFrame>,
    /// Total number of wasm frames that were on the stack.
    pub depth: usize,
}

/// One host→wasm activation: where a trap lands, and what it recorded.
#[repr(C)]
pub struct Activation {
    /// Stack pointer saved by `wasm_patch_enter` (offset 0: read by the asm).
    saved_sp: usize,
    vmthread: *mut super::vmctx::VMThread,
    trap_kind: Option<TrapKind>,
    frames: [RawFrame; MAX_TRAP_FRAMES],
    nframes: usize,
    depth: usize,
    prev: *mut Activation,
}

thread_local! {
    /// The innermost activation of the fiber running on this OS thread.
    /// Saved and restored by `thread::fiber` around every suspend.
    static CURRENT: Cell<*mut Activation> = const { Cell::new(std::ptr::null_mut()) };
    static ALT_STACK_READY: Cell<bool> = const { Cell::new(false) };
}

/// The current activation pointer (to save across a fiber switch).
///
/// Never inlined: a fiber may resume on another OS thread (a `Store` is
/// `Send`), so the thread-local's address must be computed afresh on each
/// side of a switch, never cached across it by the caller.
#[inline(never)]
pub fn current_activation() -> *mut Activation {
    CURRENT.with(|c| c.get())
}

/// Restore the current activation pointer after a fiber switch (never
/// inlined, for the reason above).
#[inline(never)]
pub fn set_current_activation(a: *mut Activation) {
    CURRENT.with(|c| c.set(a));
}

std::arch::global_asm!(
    ".text",
    ".globl wasm_patch_enter",
    ".type wasm_patch_enter,@function",
    "wasm_patch_enter:",
    // rdi = trampoline, rsi/rdx/rcx/r8 = its four arguments, r9 = activation.
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "mov [r9], rsp",
    "mov rax, rdi",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "mov rdx, rcx",
    "mov rcx, r8",
    "call rax",
    "xor eax, eax",
    "2:",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".globl wasm_patch_trap_landing",
    "wasm_patch_trap_landing:",
    // The signal handler set rsp to the saved value; callee-saved registers
    // are still on the stack above it.
    "mov eax, 1",
    "jmp 2b",
    ".size wasm_patch_enter, .-wasm_patch_enter",
);

unsafe extern "C" {
    fn wasm_patch_enter(
        tramp: usize,
        a0: usize,
        a1: usize,
        a2: usize,
        a3: usize,
        act: *mut u8,
    ) -> u32;
    fn wasm_patch_trap_landing();
}

/// Call the compiled trampoline `tramp(a0, a1, a2, a3)` for the thread whose
/// `VMThread` is `vmthread`, catching traps.
///
/// # Safety
/// `tramp` must be the entry of compiled code with the C calling convention
/// taking four pointer-sized arguments, registered in the code registry, and
/// the arguments must be valid for it. Must run on a fiber whose stack limit is
/// recorded in `vmthread`.
pub unsafe fn enter(
    tramp: *const u8,
    args: [usize; 4],
    vmthread: *mut super::vmctx::VMThread,
) -> Result<(), TrapRecord> {
    init();
    let mut act = Activation {
        saved_sp: 0,
        vmthread,
        trap_kind: None,
        frames: [RawFrame::EMPTY; MAX_TRAP_FRAMES],
        nframes: 0,
        depth: 0,
        prev: current_activation(),
    };
    set_current_activation(&mut act);
    // SAFETY: the caller guarantees `tramp` and its arguments; `act` outlives
    // the call and the routine only writes `saved_sp` through the pointer.
    let trapped = unsafe {
        wasm_patch_enter(
            tramp as usize,
            args[0],
            args[1],
            args[2],
            args[3],
            &mut act as *mut Activation as *mut u8,
        )
    };
    set_current_activation(act.prev);
    if trapped == 0 {
        return Ok(());
    }
    Err(TrapRecord {
        kind: act.trap_kind.unwrap_or(TrapKind::HostError),
        frames: act.frames[..act.nframes].to_vec(),
        depth: act.depth,
    })
}

/// Install the signal handlers (once per process) and an alternate signal
/// stack (once per OS thread).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_handlers);
    if !ALT_STACK_READY.with(|c| c.get()) {
        install_alt_stack();
        ALT_STACK_READY.with(|c| c.set(true));
    }
}

const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

struct PrevHandlers([libc::sigaction; 4]);
// SAFETY: written once before any handler can run, then only read.
unsafe impl Sync for PrevHandlers {}
static PREV: std::sync::OnceLock<PrevHandlers> = std::sync::OnceLock::new();

fn install_handlers() {
    // SAFETY: zeroed `sigaction` is a valid "default" value.
    let mut prev: [libc::sigaction; 4] = unsafe { std::mem::zeroed() };
    for (i, &sig) in SIGNALS.iter().enumerate() {
        // SAFETY: we fill a valid sigaction for a handler with the
        // `SA_SIGINFO` signature, and keep the previous one to chain to.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = trap_handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, &mut prev[i]);
        }
    }
    let _ = PREV.set(PrevHandlers(prev));
}

const ALT_STACK_SIZE: usize = 256 * 1024;

fn install_alt_stack() {
    // SAFETY: query the current alternate stack.
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only reads the old one.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
    if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= ALT_STACK_SIZE {
        return;
    }
    // SAFETY: fresh anonymous mapping; it lives as long as the OS thread
    // (deliberately leaked: the kernel may use it until the thread exits).
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return;
    }
    let st = libc::stack_t {
        ss_sp: ptr,
        ss_flags: 0,
        ss_size: ALT_STACK_SIZE,
    };
    // SAFETY: `st` describes the mapping above.
    unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
}

unsafe extern "C" fn trap_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let gregs = &mut uc.uc_mcontext.gregs;
    let pc = gregs[libc::REG_RIP as usize] as usize;
    let fp = gregs[libc::REG_RBP as usize] as usize;
    let act = current_activation();
    let unit = if act.is_null() {
        None
    } else {
        code_memory::try_lookup(pc)
    };
    let Some(unit) = unit.filter(|u| u.kind() == code_memory::UnitKind::Wasm || u.contains(pc))
    else {
        // Not a fault of JIT code: hand it to whoever was there before us.
        // SAFETY: chaining with the kernel-provided arguments.
        unsafe { chain(sig, info, ctx) };
        return;
    };
    let kind = unit.trap_at(pc).unwrap_or(match sig {
        libc::SIGSEGV | libc::SIGBUS => {
            // SAFETY: si_addr is valid for SIGSEGV/SIGBUS.
            let addr = unsafe { (*info).si_addr() } as usize;
            // SAFETY: `act` is the live innermost activation of this thread.
            let limit = unsafe { (*(*act).vmthread).stack_limit };
            if addr < limit && limit - addr < 1 << 20 {
                TrapKind::StackOverflow
            } else {
                TrapKind::MemoryOutOfBounds
            }
        }
        libc::SIGFPE => TrapKind::IntegerOverflow,
        _ => TrapKind::Unreachable,
    });
    drop(unit);
    // SAFETY: `act` is the live innermost activation on this OS thread; the
    // frames of the trapping code are intact (we have not returned yet).
    unsafe {
        let a = &mut *act;
        a.trap_kind = Some(kind);
        let mut n = 0;
        let mut depth = 0;
        stack_walk::walk_raw(Some(pc), fp, true, &mut |f| {
            if n < MAX_TRAP_FRAMES {
                a.frames[n] = f;
                n += 1;
            }
            depth += 1;
            true
        });
        a.nframes = n;
        a.depth = depth;
        gregs[libc::REG_RIP as usize] = wasm_patch_trap_landing as *const () as usize as i64;
        gregs[libc::REG_RSP as usize] = a.saved_sp as i64;
    }
}

unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let idx = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
    let prev = PREV.get().map(|p| &p.0[idx]);
    match prev {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with this signature.
                let f: unsafe extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                // SAFETY: forwarding the kernel's arguments.
                unsafe { f(sig, info, ctx) };
            } else {
                // SAFETY: the previous handler was installed with this signature.
                let f: unsafe extern "C" fn(libc::c_int) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                // SAFETY: forwarding the signal number.
                unsafe { f(sig) };
            }
        }
        _ => {
            // Restore the default action; returning re-executes the faulting
            // instruction, which then kills the process as it would have.
            // SAFETY: resetting a signal to its default disposition.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}
