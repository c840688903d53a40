//! An instance's `VMContext` and the slot tables of its two worlds, in one
//! reserved mapping at fixed distances:
//!
//! ```text
//! vmctx + 0                               VMContext
//! vmctx + VMCTX_SLOTS                     world 0 slot table (MAX_SLOTS slots)
//! vmctx + VMCTX_SLOTS + WORLD_STRIDE      world 1 slot table
//! ```
//!
//! `VMThread.world` is 0 or [`WORLD_STRIDE`], so a call finds its slot with
//! one load, `[vmctx + world + VMCTX_SLOTS + 16*slot]`, instead of loading a
//! table pointer first. The tables never move: a bundle that adds functions
//! just uses more of the reservation, whose untouched pages cost no memory
//! (`MAP_NORESERVE`).

use super::offsets::{SLOT_SIZE, VMCTX_SLOTS, WORLD_STRIDE};
use super::reservation::Reservation;
use super::vmctx::{VMContext, VMSlot};

/// The most functions (imports included) an instance can hold.
pub const MAX_SLOTS: usize = WORLD_STRIDE as usize / SLOT_SIZE as usize;

/// The mapping: a `VMContext` followed by two slot tables.
#[derive(Debug)]
pub struct VmctxBlock {
    mapping: Reservation,
    /// Slots in use in each table.
    slots: usize,
}

impl VmctxBlock {
    /// Map a block holding `vmctx` and `slots` null slots per world.
    ///
    /// # Errors
    /// `slots` over [`MAX_SLOTS`], or the mapping failed.
    pub fn new(vmctx: VMContext, slots: usize) -> std::io::Result<VmctxBlock> {
        check_slots(slots)?;
        let mapping = Reservation::new(VMCTX_SLOTS as usize + 2 * WORLD_STRIDE as usize)?;
        // SAFETY: the fresh mapping is page-aligned and large enough; zeroed
        // pages are null slots, so only the context needs writing.
        unsafe { std::ptr::write(mapping.base() as *mut VMContext, vmctx) };
        Ok(VmctxBlock { mapping, slots })
    }

    /// The context's address, as JIT code and funcrefs see it.
    pub fn as_ptr(&self) -> *mut VMContext {
        self.mapping.base() as *mut VMContext
    }

    /// The slot table of world `w` (0 or 1).
    pub fn table(&self, w: usize) -> &[VMSlot] {
        // SAFETY: the table lies inside the mapping (`slots <= MAX_SLOTS`),
        // is suitably aligned (page + 128 + k * 16 MiB) and only ever
        // accessed through this block.
        unsafe { std::slice::from_raw_parts(self.table_ptr(w), self.slots) }
    }

    /// The slot table of world `w` (0 or 1), to write.
    pub fn table_mut(&mut self, w: usize) -> &mut [VMSlot] {
        // SAFETY: as in `table`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.table_ptr(w), self.slots) }
    }

    fn table_ptr(&self, w: usize) -> *mut VMSlot {
        assert!(w < 2, "world index {w}");
        let off = VMCTX_SLOTS as usize + w * WORLD_STRIDE as usize;
        // SAFETY: `off` is inside the mapping.
        unsafe { self.mapping.base().add(off) as *mut VMSlot }
    }

    /// Use `slots` slots per world (more than before: new ones are null).
    ///
    /// # Errors
    /// `slots` over [`MAX_SLOTS`]; nothing changes then.
    pub fn grow(&mut self, slots: usize) -> std::io::Result<()> {
        check_slots(slots)?;
        self.slots = self.slots.max(slots);
        Ok(())
    }
}

/// The table index (0 or 1) of a `VMThread.world` value.
pub fn world_index(world: u64) -> usize {
    (world / WORLD_STRIDE) as usize
}

/// The world other than `world` (a `VMThread.world` value).
pub fn other_world(world: u64) -> u64 {
    WORLD_STRIDE - world
}

fn check_slots(slots: usize) -> std::io::Result<()> {
    if slots > MAX_SLOTS {
        return Err(std::io::Error::other(format!(
            "{slots} functions: an instance holds at most {MAX_SLOTS}"
        )));
    }
    Ok(())
}

impl std::ops::Deref for VmctxBlock {
    type Target = VMContext;
    fn deref(&self) -> &VMContext {
        // SAFETY: written in `new`, at the start of the live mapping.
        unsafe { &*(self.mapping.base() as *const VMContext) }
    }
}

impl std::ops::DerefMut for VmctxBlock {
    fn deref_mut(&mut self) -> &mut VMContext {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *(self.mapping.base() as *mut VMContext) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> VMContext {
        VMContext::new(std::ptr::null())
    }

    #[test]
    fn tables_sit_at_fixed_distances_from_the_context() {
        let mut b = VmctxBlock::new(empty(), 3).unwrap();
        let base = b.as_ptr() as usize;
        assert_eq!(b.table(0).as_ptr() as usize, base + VMCTX_SLOTS as usize);
        assert_eq!(
            b.table(1).as_ptr() as usize,
            base + VMCTX_SLOTS as usize + WORLD_STRIDE as usize
        );
        assert!(b.table(0).iter().all(|s| *s == VMSlot::NULL));
        let s = VMSlot {
            code: 0x1000 as *const u8,
            vmctx: b.as_ptr() as *mut u8,
        };
        b.table_mut(1)[2] = s;
        b.grow(5).unwrap();
        assert_eq!(b.table(1).len(), 5);
        assert_eq!(b.table(1)[2], s, "growing keeps slots in place");
        assert_eq!(b.table(1)[4], VMSlot::NULL);
    }

    #[test]
    fn too_many_functions_are_refused() {
        assert!(VmctxBlock::new(empty(), MAX_SLOTS + 1).is_err());
        let mut b = VmctxBlock::new(empty(), MAX_SLOTS).unwrap();
        let e = b.grow(MAX_SLOTS + 1).unwrap_err();
        assert!(e.to_string().contains("at most 1048576"), "{e}");
        assert_eq!(b.table(0).len(), MAX_SLOTS);
    }
}
