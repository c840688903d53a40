//! Each guest thread's own linear-memory stack.
//!
//! Code from rustc and clang keeps a second stack in linear memory, for the
//! locals whose address is taken and the values too large for wasm locals.
//! Its top is a mutable `i32` global, `__stack_pointer`: a function that
//! needs a frame there moves it down at entry and back up before it
//! returns. One instance has one such global, and guest threads are fibers
//! that share the instance, so without help they share one stack: thread A
//! yields with its frames at `[sp, top)`, thread B pushes frames below A's,
//! A returns and moves the pointer up past B's live frames, and A's next
//! call overwrites them.
//!
//! The store switches the global with the thread, like a CPU's stack
//! register: each thread owns a region of linear memory per *space* (an
//! instance whose module names a `__stack_pointer`), and keeps the
//! global's value while it is suspended. The scheduler writes that value
//! into the global before it resumes the thread ([`enter`]) and reads it
//! back when the thread stops ([`leave`]), restoring the value that was
//! there before, so a resume nested in another thread's host call leaves
//! the outer thread's pointer as it was.
//!
//! Regions: the first thread created after the instance takes the module's
//! own stack (the global's initial value, 1 MiB for rustc output); every
//! other thread gets [`Config::guest_stack_size`] bytes grown at the end of
//! memory 0, as the guest's own allocator would (`memory.grow`, which
//! dlmalloc and wasi-libc's malloc use, taking what it returns, so they
//! never hand out these pages). A region goes back to its space's free
//! list when its thread ends, and is reused by the next new thread.
//!
//! A region overflowing into the memory below it is the guest's bug, as it
//! is for the module's own stack: it corrupts guest memory only.
//!
//! [`Config::guest_stack_size`]: crate::Config::guest_stack_size

use crate::errors::Error;
use crate::store::GlobalCell;
use crate::thread::ThreadState;
use crate::vm::memory::LinearMemory;

/// A wasm page.
const PAGE: u32 = 65536;

/// The spaces of a store and their free regions.
#[derive(Default)]
pub(crate) struct GuestStacks {
    spaces: Vec<Space>,
}

/// One instance's stack pointer and the regions made for it.
struct Space {
    /// The instance (index in the store), for error messages.
    instance: usize,
    /// The `__stack_pointer` global; boxed in the store, so stable.
    global: *const GlobalCell,
    /// The instance's memory 0; boxed in the store, so stable.
    memory: *const LinearMemory,
    /// Tops of the regions no thread owns (the module's own stack among
    /// them until a thread takes it).
    free: Vec<u32>,
}

/// What a thread holds in one space.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadStack {
    /// Top of the region the thread owns.
    top: u32,
    /// The global's value while the thread is suspended.
    sp: u32,
    /// The global's value before the thread was resumed (put back when it
    /// stops).
    outer: u32,
}

impl GuestStacks {
    /// Whether no instance of the store has a stack pointer (the scheduler
    /// then skips [`enter`] and [`leave`]).
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.spaces.is_empty()
    }

    /// Add the space of a new instance whose module names a stack pointer.
    /// `live` are the store's unfinished threads, all suspended
    /// (instantiation needs the store, which a running guest cannot
    /// reach): each gets a region in it, the first the module's own stack.
    ///
    /// # Errors
    /// [`Error::Instantiate`] when memory 0 cannot grow for a thread's
    /// region.
    pub(crate) fn add_space<'a>(
        &mut self,
        instance: usize,
        global: &GlobalCell,
        memory: &LinearMemory,
        region: u32,
        live: impl Iterator<Item = &'a mut ThreadState>,
    ) -> Result<(), Error> {
        self.spaces.push(Space {
            instance,
            global,
            memory,
            free: vec![global.get_raw() as u32],
        });
        let space = self.spaces.len() - 1;
        for t in live {
            let s = self.take(space, region).map_err(Error::Instantiate)?;
            t.guest_stacks.push(s);
        }
        Ok(())
    }

    /// Give a new thread a region in every space.
    ///
    /// # Errors
    /// [`Error::Host`] naming the instance when memory 0 cannot grow; the
    /// regions taken so far are returned.
    pub(crate) fn give(&mut self, t: &mut ThreadState, region: u32) -> Result<(), Error> {
        for space in 0..self.spaces.len() {
            match self.take(space, region) {
                Ok(s) => t.guest_stacks.push(s),
                Err(e) => {
                    self.give_back(t);
                    return Err(Error::Host(e));
                }
            }
        }
        Ok(())
    }

    /// Return a finished thread's regions to their free lists.
    pub(crate) fn give_back(&mut self, t: &mut ThreadState) {
        for (space, s) in self.spaces.iter_mut().zip(t.guest_stacks.drain(..)) {
            space.free.push(s.top);
        }
    }

    /// A region of `space` for a new thread: a free one, or `region` bytes
    /// grown at the end of memory 0.
    fn take(&mut self, space: usize, region: u32) -> Result<ThreadStack, String> {
        let sp = &mut self.spaces[space];
        // SAFETY: the memory is boxed in the store, which outlives its
        // spaces; no JIT code runs while the scheduler is here.
        let len = unsafe { &*sp.memory }.byte_len();
        // A free region past the end was cut off by a shrink (a vetoed
        // callback's snapshot, a failed bundle-data apply): drop it.
        sp.free.retain(|&top| u64::from(top) <= len);
        let top = match sp.free.pop() {
            Some(top) => top,
            None => {
                let pages = region.div_ceil(PAGE).max(1);
                // SAFETY: the memory is boxed in the store, which outlives
                // its spaces; no JIT code runs while the scheduler is here.
                let memory = unsafe { &*sp.memory };
                let old = memory.grow(u64::from(pages)).ok_or_else(|| {
                    format!(
                        "instance {}: memory 0 cannot grow by {pages} page(s) for a guest \
                         thread's linear-memory stack ({} pages now, maximum {:?})",
                        sp.instance,
                        memory.pages(),
                        memory.maximum()
                    )
                })?;
                // The new pages end at most at 4 GiB; their top is 4 GiB
                // exactly when memory is full, which an i32 cannot hold.
                let end = (old + u64::from(pages)) * u64::from(PAGE);
                u32::try_from(end).map_err(|_| {
                    memory.shrink_to(old);
                    format!(
                        "instance {}: no room below 4 GiB for a guest thread's \
                         linear-memory stack",
                        sp.instance
                    )
                })?
            }
        };
        Ok(ThreadStack {
            top,
            sp: top,
            outer: 0,
        })
    }
}

/// Before resuming `t`: put its stack pointers in the globals, keeping the
/// values they replace.
#[inline]
pub(crate) fn enter(stacks: &GuestStacks, t: &mut ThreadState) {
    for (space, s) in stacks.spaces.iter().zip(t.guest_stacks.iter_mut()) {
        // SAFETY: the global is boxed in the store, which outlives its
        // spaces; no JIT code runs while the scheduler is here.
        let g = unsafe { &*space.global };
        s.outer = g.get_raw() as u32;
        g.set_raw(u128::from(s.sp));
    }
}

/// After `t` stopped: keep its stack pointers, and put back the values
/// [`enter`] replaced.
#[inline]
pub(crate) fn leave(stacks: &GuestStacks, t: &mut ThreadState) {
    for (space, s) in stacks.spaces.iter().zip(t.guest_stacks.iter_mut()) {
        // SAFETY: as in `enter`.
        let g = unsafe { &*space.global };
        s.sp = g.get_raw() as u32;
        g.set_raw(u128::from(s.outer));
    }
}
