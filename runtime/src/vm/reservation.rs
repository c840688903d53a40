//! An anonymous read-write mapping whose pages are committed only when
//! touched (`MAP_NORESERVE`), unmapped on drop: the backing of fiber stack
//! slabs and of instance contexts with their slot tables.

use std::io;

/// One reserved mapping.
#[derive(Debug)]
pub struct Reservation {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; who may access
// it, and when, is up to the owner (each owner documents it).
unsafe impl Send for Reservation {}
// SAFETY: as for `Send`; `&self` methods only return the address.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// Reserve `len` bytes of zeroed, page-aligned memory.
    ///
    /// # Errors
    /// The `mmap` failure.
    pub fn new(len: usize) -> io::Result<Reservation> {
        // SAFETY: a fresh anonymous private mapping with no address hint;
        // no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Reservation {
            base: p as *mut u8,
            len,
        })
    }

    /// The first byte.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`; the owner drops the
        // reservation only once nothing uses the memory any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}
