//! What `diff` carries besides functions (FORMAT.md §9): copies of data
//! objects the running instance does not have (new strings and statics,
//! constants whose content changed, moved panic locations that were asked
//! for), new table entries for function pointers, and the code sites that
//! point at them.
//!
//! Owns [`Carry`] (objects and table entries collected while bodies are
//! relocated, each made once however many functions use it) and
//! [`pad_sites`] (a body's sites after its indices were rewritten: the
//! rewriting re-encodes every immediate in its shortest form, so each site
//! is widened back to a 5-byte padded LEB and its offset recorded).

use std::collections::HashMap;

use wasmparser::{BinaryReader, FunctionBody, RelocationType};

use crate::bundle::{CallbackKind, EntryKind};
use crate::data::{
    padded, BundleData, CodeSite, DataObject, DataReloc, RelocTarget, SiteKind, MAX_ALIGN_LOG2,
};
use crate::relocs::{is_mem_addr, is_table_index, old_address, Linked, NeedsData, Site, SymKind};

/// Objects and table entries a bundle carries, in the order first needed.
#[derive(Default)]
pub(crate) struct Carry {
    /// The objects (bundle index = position).
    pub(crate) objects: Vec<DataObject>,
    /// New data symbol → object index.
    by_sym: HashMap<u32, u32>,
    /// Target function of each new table entry.
    pub(crate) table_entries: Vec<u32>,
    by_func: HashMap<u32, u32>,
}

impl Carry {
    /// The bundle's data: the objects and table entries, and the sites of
    /// each function, which name it by its position in the code section
    /// (entries in canonical order: adds, then replacements, by index;
    /// then callbacks by kind). `entry_sites[i]` belongs to `kinds[i]`.
    pub(crate) fn into_data(
        self,
        kinds: &[EntryKind],
        entry_sites: &[Vec<Placed>],
        mut callback_sites: Vec<(CallbackKind, Vec<Placed>)>,
    ) -> BundleData {
        let mut order: Vec<usize> = (0..kinds.len()).collect();
        order.sort_by_key(|&i| match kinds[i] {
            EntryKind::Add { new_index } => (0, new_index),
            EntryKind::Replace { target_index } => (1, target_index),
        });
        callback_sites.sort_by_key(|(k, _)| *k);
        let ordered = order
            .iter()
            .map(|&i| &entry_sites[i])
            .chain(callback_sites.iter().map(|(_, s)| s));
        let mut sites = Vec::new();
        for (function, placed) in ordered.enumerate() {
            for &(offset, kind, target) in placed {
                sites.push(CodeSite {
                    function: function as u32,
                    offset,
                    kind,
                    target,
                });
            }
        }
        BundleData {
            objects: self.objects,
            table_entries: self.table_entries,
            sites,
        }
    }

    /// The new table entry for target function `f` (made once).
    pub(crate) fn table_entry(&mut self, f: u32) -> u32 {
        *self.by_func.entry(f).or_insert_with(|| {
            self.table_entries.push(f);
            self.table_entries.len() as u32 - 1
        })
    }

    /// `addend` as an offset into object `index`: refused unless it lies in
    /// the object (one past its end included).
    pub(crate) fn addend(&self, index: u32, addend: i64) -> Result<u32, String> {
        let o = &self.objects[index as usize];
        u32::try_from(addend)
            .ok()
            .filter(|a| *a <= o.size)
            .ok_or_else(|| {
                format!(
                    "an address {addend} bytes from `{}` ({} bytes), outside the object",
                    crate::names::readable(&o.name),
                    o.size
                )
            })
    }

    /// The bundle object for new data symbol `i` (made once, with the
    /// objects it points at that the old build does not have).
    ///
    /// # Errors
    /// [`NeedsData`] when something inside it cannot be carried.
    pub(crate) fn object(
        &mut self,
        old: &Linked<'_>,
        new: &Linked<'_>,
        new_to_target: &[u32],
        i: u32,
    ) -> Result<u32, NeedsData> {
        if let Some(&k) = self.by_sym.get(&i) {
            return Ok(k);
        }
        let name = new
            .syms
            .get(i as usize)
            .and_then(|s| s.name)
            .unwrap_or("")
            .to_string();
        let Some((bytes, range, seg)) = new.object(i) else {
            return Err(NeedsData(format!(
                "`{}`, a data symbol with no bytes in the new build",
                new.shown(i)
            )));
        };
        // As aligned as the new build placed it, within its segment's
        // alignment.
        let addr_align = new.addr(i).map_or(0, |a| a.trailing_zeros());
        let align_log2 = new
            .segment_align(i)
            .min(addr_align)
            .min(u32::from(MAX_ALIGN_LOG2)) as u8;
        let relocs_in = new.data_relocs(&range);
        let zeros =
            relocs_in.is_empty() && (seg.starts_with(".bss") || bytes.iter().all(|b| *b == 0));
        let index = self.objects.len() as u32;
        self.by_sym.insert(i, index);
        self.objects.push(DataObject {
            name: if name.is_empty() {
                format!("data symbol {i}")
            } else {
                name
            },
            align_log2,
            size: bytes.len() as u32,
            init: (!zeros).then(|| bytes.to_vec()),
            relocs: Vec::new(),
        });
        let mut init = bytes.to_vec();
        let mut relocs = Vec::new();
        for (off, r) in relocs_in {
            let at = off - range.start;
            if at + 4 > init.len() {
                return Err(NeedsData(format!(
                    "`{}`, whose relocation at offset {at} lies out of it",
                    new.shown(i)
                )));
            }
            let baked: Option<i64> = if r.ty == RelocationType::MemoryAddrI32 {
                match old_address(old, new, r.index) {
                    Ok(a) => Some(i64::from(a) + r.addend),
                    Err(m) if m.carryable => {
                        let k = self.object(old, new, new_to_target, r.index)?;
                        let addend = self.addend(k, r.addend).map_err(NeedsData)?;
                        relocs.push(DataReloc {
                            offset: at as u32,
                            target: RelocTarget::Object { index: k, addend },
                        });
                        None
                    }
                    Err(m) => return Err(NeedsData(m.what)),
                }
            } else if r.ty == RelocationType::TableIndexI32 {
                let Some(SymKind::Func(f)) = new.syms.get(r.index as usize).map(|s| s.kind) else {
                    return Err(NeedsData(format!(
                        "`{}`, which holds a function pointer to a symbol that is not a function",
                        new.shown(i)
                    )));
                };
                let target = new_to_target.get(f as usize).copied().unwrap_or(u32::MAX);
                match old.table_slot(target) {
                    Some(slot) => Some(i64::from(slot)),
                    None if target != u32::MAX => {
                        let e = self.table_entry(target);
                        relocs.push(DataReloc {
                            offset: at as u32,
                            target: RelocTarget::TableEntry(e),
                        });
                        None
                    }
                    None => {
                        return Err(NeedsData(format!(
                            "a function pointer to `{}`, which has no index in the patched module",
                            new.shown(r.index)
                        )))
                    }
                }
            } else {
                return Err(NeedsData(format!(
                    "`{}`, which holds a {:?} relocation (not carried)",
                    new.shown(i),
                    r.ty
                )));
            };
            let v = baked.unwrap_or(0) as u32;
            init[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        let o = &mut self.objects[index as usize];
        if o.init.is_some() {
            o.init = Some(init);
        }
        o.relocs = relocs;
        Ok(index)
    }
}

/// A site in a rewritten body: its offset, kind and target.
pub(crate) type Placed = (u32, SiteKind, RelocTarget);

/// How a code relocation's field is read.
fn site_kind(ty: RelocationType) -> Option<SiteKind> {
    match ty {
        RelocationType::MemoryAddrLeb => Some(SiteKind::MemArgOffset),
        RelocationType::MemoryAddrSleb | RelocationType::TableIndexSleb => Some(SiteKind::I32Const),
        _ => None,
    }
}

/// Start and end of every operator of `body` (offsets in `body`).
fn operator_ranges(body: &[u8]) -> Result<Vec<(usize, usize)>, String> {
    let fb = FunctionBody::new(BinaryReader::new(body, 0));
    let mut ops = fb
        .get_operators_reader()
        .map_err(|e| e.message().to_string())?;
    let mut out = Vec::new();
    while !ops.eof() {
        let s = ops.original_position() as usize;
        ops.read().map_err(|e| e.message().to_string())?;
        out.push((s, ops.original_position() as usize));
    }
    Ok(out)
}

/// `remapped` (the relocated body after index rewriting) with each of
/// `sites` (offsets in `relocated`, the body before rewriting) widened to a
/// 5-byte padded LEB holding zero; returns the body and each site's kind,
/// target and offset in it.
///
/// # Errors
/// A message when a site is not the trailing immediate of an instruction.
pub(crate) fn pad_sites(
    relocated: &[u8],
    remapped: &[u8],
    sites: &[Site],
) -> Result<(Vec<u8>, Vec<Placed>), String> {
    if sites.is_empty() {
        return Ok((remapped.to_vec(), Vec::new()));
    }
    let before = operator_ranges(relocated)?;
    let after = operator_ranges(remapped)?;
    if before.len() != after.len() {
        return Err("index rewriting changed the number of instructions".into());
    }
    // (operator ordinal, kind, target), in body order.
    let mut wanted = Vec::new();
    for s in sites {
        let kind = site_kind(s.ty)
            .filter(|_| is_mem_addr(s.ty) || is_table_index(s.ty))
            .ok_or_else(|| format!("a {:?} relocation in code is not carried", s.ty))?;
        let k = before
            .iter()
            .position(|&(a, b)| a < s.at && s.at + s.ty.extent() == b)
            .ok_or_else(|| format!("relocation at offset {} is not an immediate", s.at))?;
        wanted.push((k, kind, s.target));
    }
    wanted.sort_by_key(|w| w.0);
    let mut out = Vec::with_capacity(remapped.len() + 4 * wanted.len());
    let mut copied = 0;
    let mut placed = Vec::new();
    for (k, kind, target) in wanted {
        let (_, end) = after[k];
        // The immediate is the operator's last LEB: back from its last byte
        // while the byte before continues a LEB.
        let mut start = end - 1;
        while start > 0 && remapped[start - 1] & 0x80 != 0 {
            start -= 1;
        }
        out.extend_from_slice(&remapped[copied..start]);
        placed.push((out.len() as u32, kind, target));
        out.extend_from_slice(&padded(kind, 0));
        copied = end;
    }
    out.extend_from_slice(&remapped[copied..]);
    Ok((out, placed))
}
