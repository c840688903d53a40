//! Tables of references. Elements are pointer-sized: 0 is null, a funcref
//! points to a `VMFuncRef`, an externref is an opaque host value + 1.

use super::vmctx::VMTable;
use std::cell::UnsafeCell;

/// A table.
#[derive(Debug)]
pub struct Table {
    def: Box<UnsafeCell<VMTable>>,
    elems: UnsafeCell<Vec<usize>>,
    maximum: Option<u32>,
}

impl Table {
    /// A table of `minimum` elements set to `init`.
    pub fn new(minimum: u32, maximum: Option<u32>, init: usize) -> Table {
        let mut elems = vec![init; minimum as usize];
        let def = VMTable {
            base: elems.as_mut_ptr(),
            length: minimum,
        };
        Table {
            def: Box::new(UnsafeCell::new(def)),
            elems: UnsafeCell::new(elems),
            maximum,
        }
    }

    /// Pointer handed to JIT code.
    pub fn vm_ptr(&self) -> *mut VMTable {
        self.def.get()
    }

    #[allow(clippy::mut_from_ref)]
    fn elems(&self) -> &mut Vec<usize> {
        // SAFETY: tables are used from one OS thread; JIT code reads and
        // writes elements only through `def.base`, which `sync` keeps equal
        // to the vector's buffer, and never while this borrow is alive.
        unsafe { &mut *self.elems.get() }
    }

    fn sync(&self) {
        let e = self.elems();
        // SAFETY: see `elems`.
        unsafe {
            (*self.def.get()).base = e.as_mut_ptr();
            (*self.def.get()).length = e.len() as u32;
        }
    }

    /// Number of elements.
    pub fn len(&self) -> u32 {
        self.elems().len() as u32
    }

    /// Maximum, if declared.
    pub fn maximum(&self) -> Option<u32> {
        self.maximum
    }

    /// Element `i`.
    pub fn get(&self, i: u32) -> Option<usize> {
        self.elems().get(i as usize).copied()
    }

    /// Grow by `delta`; the old length or `None`.
    pub fn grow(&self, delta: u32, init: usize) -> Option<u32> {
        let old = self.len();
        let new = old.checked_add(delta)?;
        if new > self.maximum.unwrap_or(u32::MAX) || new > 10_000_000 {
            return None;
        }
        self.elems().resize(new as usize, init);
        self.sync();
        Some(old)
    }

    /// Fill `[dst, dst + len)` with `v`; false when out of bounds.
    pub fn fill(&self, dst: u32, v: usize, len: u32) -> bool {
        let e = self.elems();
        let Some(end) = dst.checked_add(len).filter(|&end| end as usize <= e.len()) else {
            return false;
        };
        e[dst as usize..end as usize].fill(v);
        true
    }

    /// Copy `len` elements within or between tables.
    pub fn copy(dst_t: &Table, src_t: &Table, dst: u32, src: u32, len: u32) -> bool {
        let in_bounds = |t: &Table, at: u32| at.checked_add(len).is_some_and(|end| end <= t.len());
        if !in_bounds(dst_t, dst) || !in_bounds(src_t, src) {
            return false;
        }
        let tmp: Vec<usize> = src_t.elems()[src as usize..(src + len) as usize].to_vec();
        dst_t.elems()[dst as usize..(dst + len) as usize].copy_from_slice(&tmp);
        true
    }

    /// All elements (for snapshots).
    pub fn snapshot(&self) -> Vec<usize> {
        self.elems().clone()
    }

    /// Restore a snapshot taken by [`Table::snapshot`].
    pub fn restore(&self, elems: &[usize]) {
        let e = self.elems();
        e.clear();
        e.extend_from_slice(elems);
        self.sync();
    }

    /// Write `items` at `dst`; false when out of bounds.
    pub fn init(&self, dst: u32, items: &[usize]) -> bool {
        let e = self.elems();
        let Some(end) = (dst as usize)
            .checked_add(items.len())
            .filter(|&end| end <= e.len())
        else {
            return false;
        };
        e[dst as usize..end].copy_from_slice(items);
        true
    }
}
