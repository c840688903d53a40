//! The unsafe core: structures JIT code reads, code memory, traps, runtime
//! functions, memories and tables. Every `unsafe` block here carries a
//! `// SAFETY:` comment.

pub mod code_memory;
pub mod libcalls;
pub mod memory;
pub mod offsets;
pub(crate) mod perf_map;
pub mod reservation;
pub mod stack_walk;
pub mod table;
pub mod traps;
pub mod vmctx;
pub mod vmctx_block;

/// Hint the CPU to load the cache line at `addr` (a no-op where there is no
/// such hint). Scans of many threads are bound by memory latency: each
/// thread's state, `VMThread` and stack top are separate cold lines, so
/// loading the next threads' lines while checking this one pays off.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and changes no
    // architectural state, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
