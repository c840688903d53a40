//! Fiber stacks: where a guest thread's machine stack lives.
//!
//! By default every stack is its own mapping with a guard page below it
//! (wasmtime-fiber's `FiberStack::new`). That is two entries in the
//! process's memory map per stack, and Linux caps a process at
//! `vm.max_map_count` entries (65,530 by default): about 32,000 threads.
//!
//! With `Config::guard_pages = false` stacks are carved out of shared
//! slabs instead, [`STACKS_PER_SLAB`] to one mapping, so 100,000 threads
//! take a few hundred mappings. JIT code never needs the guard page: it
//! checks `VMThread::stack_limit` on entry to every function and traps
//! with a stack overflow well above the stack's end. What the guard page
//! still protects is host code: a host function running on a guest thread
//! must then stay within the slack left below the limit
//! (`store::STACK_SLACK`, 128 KiB), or it writes into the next stack.

use crate::vm::reservation::Reservation;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use wasmtime_fiber::{FiberStack, RuntimeFiberStack};

/// Stacks per slab mapping when guard pages are off.
pub const STACKS_PER_SLAB: usize = 256;

/// Hands out fiber stacks of one size.
pub struct StackAllocator {
    size: usize,
    guard_pages: bool,
    /// The slab being carved (unguarded mode) and how many stacks it has
    /// given out.
    slab: Option<(Arc<Reservation>, usize)>,
    /// Stacks handed out so far (for error messages).
    made: usize,
}

impl StackAllocator {
    /// An allocator of `size`-byte stacks (rounded up to whole pages).
    pub fn new(size: usize, guard_pages: bool) -> StackAllocator {
        let page = page_size();
        StackAllocator {
            size: size.max(page).div_ceil(page) * page,
            guard_pages,
            slab: None,
            made: 0,
        }
    }

    /// A new stack.
    ///
    /// # Errors
    /// The mapping failed; the message names the mapping limit when that is
    /// the likely cause.
    pub fn alloc(&mut self) -> io::Result<FiberStack> {
        let r = if self.guard_pages {
            FiberStack::new(self.size, false).map_err(io::Error::other)
        } else {
            self.carve()
        };
        match r {
            Ok(s) => {
                self.made += 1;
                Ok(s)
            }
            Err(e) => Err(io::Error::new(e.kind(), self.explain(e))),
        }
    }

    fn carve(&mut self) -> io::Result<FiberStack> {
        let (slab, used) = match self.slab.take() {
            Some((slab, used)) if used < STACKS_PER_SLAB => (slab, used),
            _ => (Arc::new(Reservation::new(self.size * STACKS_PER_SLAB)?), 0),
        };
        let start = slab.base() as usize + used * self.size;
        let stack = SlabStack {
            slab: slab.clone(),
            range: start..start + self.size,
        };
        self.slab = Some((slab, used + 1));
        FiberStack::from_custom(Box::new(stack)).map_err(io::Error::other)
    }

    fn explain(&self, e: io::Error) -> String {
        let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        match limit {
            Some(limit) if self.guard_pages && 2 * self.made + 1000 >= limit => format!(
                "{e} after {} stacks: each guarded stack takes 2 of the process's \
                 {limit} memory mappings (vm.max_map_count); Config::guard_pages = false \
                 packs {STACKS_PER_SLAB} stacks into one mapping",
                self.made
            ),
            _ => format!("{e} after {} stacks of {} bytes", self.made, self.size),
        }
    }
}

/// A stack inside a slab.
struct SlabStack {
    slab: Arc<Reservation>,
    range: Range<usize>,
}

// SAFETY: `range` lies inside `slab`'s mapping (see `carve`), is page
// aligned (slab bases are, and `size` is whole pages), is handed to exactly
// one stack, and stays mapped while this value (holding the `Arc`) lives.
// There is no guard region: an empty range at the stack's base says so.
unsafe impl RuntimeFiberStack for SlabStack {
    fn top(&self) -> *mut u8 {
        debug_assert!(self.range.end <= self.slab.base() as usize + self.slab.len());
        self.range.end as *mut u8
    }

    fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.range.start as *mut u8..self.range.start as *mut u8
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_stacks_are_disjoint_page_aligned_and_writable() {
        let mut a = StackAllocator::new(64 * 1024 + 1, false);
        let stacks: Vec<FiberStack> = (0..STACKS_PER_SLAB + 3)
            .map(|_| a.alloc().expect("stack"))
            .collect();
        let mut ranges: Vec<Range<usize>> = stacks.iter().map(|s| s.range().unwrap()).collect();
        ranges.sort_by_key(|r| r.start);
        for r in &ranges {
            assert_eq!(r.len(), 68 * 1024, "rounded up to whole pages");
            assert_eq!(r.start % page_size(), 0);
            // SAFETY: the range is this test's own stack memory, unused.
            unsafe { std::ptr::write_bytes((r.end - 16) as *mut u8, 0xAB, 16) };
        }
        for w in ranges.windows(2) {
            assert!(w[0].end <= w[1].start, "stacks overlap: {w:?}");
        }
    }
}
