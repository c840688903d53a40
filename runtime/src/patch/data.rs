//! Bundle-owned data at apply (FORMAT.md §9): where a bundle's data objects
//! go in memory 0 and its new function pointers in table 0, putting them
//! there before the pre-patch callback runs, and taking them back out when
//! the apply fails after that.
//!
//! Memory: the objects go into pages obtained with `memory.grow` semantics
//! past the memory's current end, which the guest's allocator never hands
//! out (dlmalloc and wasi-libc's malloc take what `memory.grow` returns, so
//! their later growth starts after these pages). The unused tail of those
//! pages is kept per instance and filled by later bundles first, so small
//! bundles share a page. Existing data is never moved or written.
//!
//! Undo: until the bundle is published no guest code but its own pre-patch
//! callback ran (the store is idle, rule 10), and a veto restores what the
//! callback wrote; so a failed apply shrinks memory and table 0 back to
//! their sizes before it, and nothing of the attempt stays visible.
//!
//! After a revert the data stays, like the code, for as long as the
//! instance lives: pointers to it may sit in the guest's own data (a
//! `&'static str` stored in a static), which no runtime can find. The
//! pages of a reverted bundle are not reused (documented waste, FORMAT.md
//! §9); table entries stay, and those of added functions reach the
//! function's removed stub, which traps cleanly.

use super::PatchError;
use crate::instance::InstanceData;
use crate::vm::memory::{LinearMemory, MAX_PAGES, WASM_PAGE};
use crate::vm::table::Table;
use patch_format::Bundle;

/// Where an applied bundle's data and table entries are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataPlacement {
    /// Address of the bundle's range in memory 0 (0 when it has no objects).
    pub base: u32,
    /// Size of the range in bytes.
    pub size: u32,
    /// Each object's raw name and address.
    pub objects: Vec<(String, u32)>,
    /// Pages memory 0 grew by for this bundle (0 when it fit in the
    /// spare tail of an earlier bundle's pages).
    pub pages_grown: u64,
    /// Index in table 0 of the first new entry.
    pub table_base: u32,
    /// Number of new table entries.
    pub table_entries: u32,
}

/// A placement decided before compiling, applied after.
pub(crate) struct Plan {
    pub(crate) placement: DataPlacement,
    /// Store indices of memory 0 and table 0 (if used).
    memory: Option<usize>,
    table: Option<usize>,
    /// Sizes before the apply, to undo.
    old_pages: u64,
    old_table_len: u32,
    /// The spare tail this placement takes from (index in the list), and
    /// the tail left after it.
    from_spare: Option<usize>,
    spare_after: Option<(u64, u64)>,
}

/// Decides where `bundle`'s data goes in instance `inst` (no change yet).
/// `None` for a bundle of code only.
///
/// # Errors
/// [`PatchError::Incompatible`] when memory 0 cannot grow by the bundle's
/// data (its maximum, or 4 GiB) or table 0 cannot take its entries.
pub(crate) fn plan(
    inst: &InstanceData,
    memories: &[Box<LinearMemory>],
    tables: &[Box<Table>],
    spare: &[(u64, u64)],
    bundle: &Bundle,
) -> Result<Option<Plan>, PatchError> {
    let d = bundle.data();
    if d.is_empty() {
        return Ok(None);
    }
    let (offsets, size) = d.layout().ok_or_else(|| {
        PatchError::Incompatible("the bundle's data objects do not fit in 4 GiB".into())
    })?;
    let mut p = Plan {
        placement: DataPlacement {
            base: 0,
            size,
            objects: Vec::new(),
            pages_grown: 0,
            table_base: 0,
            table_entries: d.table_entries.len() as u32,
        },
        memory: None,
        table: None,
        old_pages: 0,
        old_table_len: 0,
        from_spare: None,
        spare_after: None,
    };
    if !d.objects.is_empty() {
        let m = *inst.memories.first().ok_or_else(|| {
            PatchError::Incompatible(
                "the bundle carries data but the instance has no memory".into(),
            )
        })?;
        let mem = &memories[m];
        p.memory = Some(m);
        p.old_pages = mem.pages();
        // First fit in a spare tail (ranges start 16-aligned; objects ask
        // for at most 16 unless they are page-aligned themselves).
        let needs_page = d.objects.iter().any(|o| o.align_log2 > 4);
        let fit = spare
            .iter()
            .position(|&(a, e)| !needs_page && e - a >= u64::from(size));
        match fit {
            Some(i) => {
                let (a, e) = spare[i];
                p.placement.base = a as u32;
                p.from_spare = Some(i);
                p.spare_after = Some((a + u64::from(size), e));
            }
            None => {
                let pages = u64::from(size).div_ceil(WASM_PAGE);
                let max = mem.maximum().unwrap_or(MAX_PAGES).min(MAX_PAGES);
                if p.old_pages + pages > max {
                    return Err(PatchError::Incompatible(format!(
                        "the bundle's data ({size} bytes, {pages} page(s)) does not fit in \
                         memory 0: it has {} page(s) and may grow to {max}",
                        p.old_pages
                    )));
                }
                p.placement.base = (p.old_pages * WASM_PAGE) as u32;
                p.placement.pages_grown = pages;
                let end = (p.old_pages + pages) * WASM_PAGE;
                let used = u64::from(p.placement.base) + u64::from(size);
                p.spare_after = (end > used).then_some((used, end));
            }
        }
        p.placement.objects = d
            .objects
            .iter()
            .zip(&offsets)
            .map(|(o, off)| (o.name.clone(), p.placement.base + off))
            .collect();
    }
    if !d.table_entries.is_empty() {
        let t = *inst.tables.first().ok_or_else(|| {
            PatchError::Incompatible(
                "the bundle carries function pointers but the instance has no table".into(),
            )
        })?;
        let table = &tables[t];
        p.table = Some(t);
        p.old_table_len = table.len();
        let n = d.table_entries.len() as u32;
        let fits = table
            .len()
            .checked_add(n)
            .is_some_and(|end| end <= table.maximum().unwrap_or(u32::MAX) && end <= 10_000_000);
        if !fits {
            return Err(PatchError::Incompatible(format!(
                "table 0 cannot take the bundle's {n} new entries: it has {} of at most {}",
                table.len(),
                table
                    .maximum()
                    .map_or_else(|| "10000000".to_string(), |m| m.to_string())
            )));
        }
        p.placement.table_base = table.len();
    }
    Ok(Some(p))
}

impl Plan {
    /// Grows memory 0 and table 0 and writes the bundle's initial bytes
    /// (relocations resolved); table entries stay null until [`Plan::fill`].
    ///
    /// # Errors
    /// [`PatchError::Incompatible`] if the memory refuses to grow (then
    /// nothing changed).
    pub(crate) fn put(
        &self,
        memories: &[Box<LinearMemory>],
        tables: &[Box<Table>],
        bundle: &Bundle,
    ) -> Result<(), PatchError> {
        let pl = &self.placement;
        if let Some(m) = self.memory {
            let mem = &memories[m];
            if pl.pages_grown > 0 && mem.grow(pl.pages_grown).is_none() {
                return Err(PatchError::Incompatible(format!(
                    "memory 0 refused to grow by {} page(s) for the bundle's data",
                    pl.pages_grown
                )));
            }
            let image = bundle.data().image(pl.base, pl.table_base)?;
            if !mem.write(u64::from(pl.base), &image) {
                mem.shrink_to(self.old_pages);
                return Err(PatchError::Incompatible(
                    "the bundle's data does not fit where it was placed".into(),
                ));
            }
        }
        if let Some(t) = self.table {
            if tables[t].grow(pl.table_entries, 0).is_none() {
                self.undo(memories, tables);
                return Err(PatchError::Incompatible(format!(
                    "table 0 refused to grow by {} entries",
                    pl.table_entries
                )));
            }
        }
        Ok(())
    }

    /// Writes the new table entries (once the bundle's added functions have
    /// funcref records).
    pub(crate) fn fill(&self, inst: &InstanceData, tables: &[Box<Table>], bundle: &Bundle) {
        let Some(t) = self.table else {
            return;
        };
        let refs: Vec<usize> = bundle
            .data()
            .table_entries
            .iter()
            .map(|&f| inst.funcref_ptrs.get(f as usize).map_or(0, |p| *p as usize))
            .collect();
        tables[t].init(self.placement.table_base, &refs);
    }

    /// Takes back what [`Plan::put`] did (a failed or vetoed apply).
    pub(crate) fn undo(&self, memories: &[Box<LinearMemory>], tables: &[Box<Table>]) {
        if let Some(m) = self.memory {
            let mem = &memories[m];
            // Shrink back only when nothing grew the memory after `put`:
            // the pre-patch callback runs on a thread of its own, which
            // may have grown a linear-memory stack past the bundle's pages
            // (store/guest_stacks.rs), and that region must stay. Otherwise
            // the bundle's bytes are zeroed and its pages stay unused.
            let ours_last = mem.pages() == self.old_pages + self.placement.pages_grown;
            if self.placement.pages_grown == 0 || !ours_last {
                let zeros = vec![0; self.placement.size as usize];
                mem.write(u64::from(self.placement.base), &zeros);
            }
            if ours_last {
                mem.shrink_to(self.old_pages);
            }
        }
        if let Some(t) = self.table {
            let elems = tables[t].snapshot();
            tables[t].restore(&elems[..self.old_table_len as usize]);
        }
    }

    /// The spare tails of the instance once this placement is kept.
    pub(crate) fn commit_spare(&self, spare: &mut Vec<(u64, u64)>) {
        if let Some(i) = self.from_spare {
            spare.remove(i);
        }
        if let Some(tail) = self.spare_after {
            spare.push(tail);
        }
    }
}
