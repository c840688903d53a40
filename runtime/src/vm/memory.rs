//! Linear memories: each reserves 8 GiB of address space (more than any
//! 32-bit index plus 32-bit offset can reach) with no access, and commits
//! pages read+write as the memory grows. Out-of-bounds accesses hit the
//! reservation and fault; the trap handler reports them. The base never
//! moves, so JIT code may hoist its load.
//!
//! One read+write page precedes the base; its last word is the memory's poll
//! hint (`offsets::MEMORY_POLL_HINT`, `thread/poll.rs`). Guest addresses are
//! unsigned offsets from the base, so no guest access can reach it.

use super::code_memory::page_size;
use super::vmctx::VMMemory;
use std::cell::UnsafeCell;
use std::sync::atomic::AtomicU64;

/// Wasm page size.
pub const WASM_PAGE: u64 = 65536;
/// Bytes reserved per memory.
const RESERVATION: usize = 8 << 30;
/// Largest number of pages of a 32-bit memory.
pub const MAX_PAGES: u64 = 65536;

/// A linear memory.
#[derive(Debug)]
pub struct LinearMemory {
    def: Box<UnsafeCell<VMMemory>>,
    maximum: Option<u64>,
}

/// Memory errors.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The address space could not be reserved.
    #[error("cannot reserve linear memory: {0}")]
    Reserve(std::io::Error),
}

impl LinearMemory {
    /// A memory of `minimum` pages, growable to `maximum` pages.
    pub fn new(minimum: u64, maximum: Option<u64>) -> Result<LinearMemory, MemoryError> {
        let page = page_size();
        // SAFETY: an anonymous PROT_NONE reservation with no address hint.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + RESERVATION,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(MemoryError::Reserve(std::io::Error::last_os_error()));
        }
        // SAFETY: the first page of the reservation just made; it holds the
        // poll hint (zero-filled: no request).
        let rc = unsafe { libc::mprotect(start, page, libc::PROT_READ | libc::PROT_WRITE) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // SAFETY: unmapping the reservation made above, never shared.
            unsafe { libc::munmap(start, page + RESERVATION) };
            return Err(MemoryError::Reserve(err));
        }
        // SAFETY: `page` is inside the reservation.
        let base = unsafe { (start as *mut u8).add(page) };
        let mem = LinearMemory {
            def: Box::new(UnsafeCell::new(VMMemory { base, length: 0 })),
            maximum,
        };
        if minimum > 0 && mem.grow(minimum).is_none() {
            return Err(MemoryError::Reserve(std::io::Error::other(
                "initial size too large",
            )));
        }
        Ok(mem)
    }

    /// Pointer handed to JIT code.
    pub fn vm_ptr(&self) -> *mut VMMemory {
        self.def.get()
    }

    /// The poll hint in the page before the base (module docs).
    pub fn poll_hint(&self) -> &AtomicU64 {
        // SAFETY: the word lies in the read+write page before the base,
        // 8-aligned, alive as long as the memory; it is only accessed
        // atomically (JIT code reads it with a plain aligned load).
        unsafe {
            &*(self
                .def()
                .base
                .offset(crate::vm::offsets::MEMORY_POLL_HINT as isize)
                as *const AtomicU64)
        }
    }

    fn def(&self) -> &VMMemory {
        // SAFETY: JIT code writes the definition only through `grow`, which
        // runs on this OS thread; no `&mut` to it exists concurrently.
        unsafe { &*self.def.get() }
    }

    /// Current size in bytes.
    pub fn byte_len(&self) -> u64 {
        self.def().length
    }

    /// Current size in pages.
    pub fn pages(&self) -> u64 {
        self.byte_len() / WASM_PAGE
    }

    /// The maximum in pages, if declared.
    pub fn maximum(&self) -> Option<u64> {
        self.maximum
    }

    /// Grow by `delta` pages; the old size in pages, or `None` if refused.
    pub fn grow(&self, delta: u64) -> Option<u64> {
        let old = self.pages();
        let new = old.checked_add(delta)?;
        if new > self.maximum.unwrap_or(MAX_PAGES).min(MAX_PAGES) {
            return None;
        }
        if delta == 0 {
            return Some(old);
        }
        let start = (old * WASM_PAGE) as usize;
        let len = (delta * WASM_PAGE) as usize;
        let base = self.def().base;
        debug_assert!(start.is_multiple_of(page_size()));
        // SAFETY: `[start, start + len)` lies in our reservation (new size is
        // at most 4 GiB < 8 GiB); making it accessible affects nothing else.
        let rc = unsafe {
            libc::mprotect(
                base.add(start) as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: see `def`; no reference to the definition is live.
        unsafe { (*self.def.get()).length = new * WASM_PAGE };
        Some(old)
    }

    /// Shrink back to `pages` (only to undo a vetoed callback's growth):
    /// the pages above become inaccessible again.
    pub fn shrink_to(&self, pages: u64) {
        let old = self.pages();
        if pages >= old {
            return;
        }
        let base = self.def().base;
        // SAFETY: the range lies in our reservation and above the new size;
        // no JIT code runs while the host restores a snapshot.
        unsafe {
            let start = base.add((pages * WASM_PAGE) as usize) as *mut libc::c_void;
            libc::mprotect(start, ((old - pages) * WASM_PAGE) as usize, libc::PROT_NONE);
            (*self.def.get()).length = pages * WASM_PAGE;
        }
    }

    /// Copies `data` to guest address `offset` (the host writing a
    /// bundle's data at apply); false, writing nothing, when it does not
    /// fit in the current size.
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        let d = self.def();
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return false;
        };
        if end > d.length {
            return false;
        }
        // SAFETY: `[offset, end)` is within the committed read+write range;
        // memories are used from one OS thread and the host runs here, so no
        // JIT code and no other borrow of the bytes is active.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), d.base.add(offset as usize), data.len())
        };
        true
    }

    /// The memory's bytes.
    ///
    /// # Safety
    /// No JIT code may run while the slice is alive (it may write or grow
    /// the memory).
    #[allow(clippy::mut_from_ref)] // interior mutability through the raw mapping
    pub unsafe fn bytes_mut(&self) -> &mut [u8] {
        let d = self.def();
        // SAFETY: `[base, base + length)` is committed read+write; the caller
        // excludes concurrent access.
        unsafe { std::slice::from_raw_parts_mut(d.base, d.length as usize) }
    }
}

impl Drop for LinearMemory {
    fn drop(&mut self) {
        let page = page_size();
        // SAFETY: the reservation (hint page, then the memory) is ours and no
        // instance uses it any more.
        unsafe {
            let start = self.def().base.sub(page);
            libc::munmap(start as *mut libc::c_void, page + RESERVATION)
        };
    }
}
