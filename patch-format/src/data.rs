//! Bundle-owned data (FORMAT.md §9): the data objects a bundle brings
//! (new strings, new statics, copies of constants whose content changed),
//! the table entries its code needs (new function pointers), and the
//! per-site code relocations that point the bundle's code at both.
//!
//! Owns [`BundleData`] and its value types, their manifest encoding
//! (format version 2), the checks a reader makes on them, the layout of the
//! objects in the bundle's memory range, and [`Bundle::resolved`]: the
//! bundle with every site's final address written in, which is what a
//! runtime compiles.
//!
//! References to data the running instance already has are not sites:
//! `diff` wrote those addresses into the bodies (FORMAT.md §8).

use wasmparser::{BinaryReader, FunctionBody, Operator};

use crate::bundle::{Bundle, BundleParts, EntryKind};
use crate::error::FormatError;
use crate::write::leb;

/// Largest alignment an object may ask for (log2): one wasm page, the
/// alignment of the range a runtime places the objects in.
pub const MAX_ALIGN_LOG2: u8 = 16;

/// Width of a code site: a 5-byte padded LEB128.
pub const SITE_WIDTH: usize = 5;

/// What a relocated field points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelocTarget {
    /// The address of bundle object `index`, plus `addend` (at most the
    /// object's size: one past its end is a valid pointer).
    Object {
        /// Index in [`BundleData::objects`].
        index: u32,
        /// Bytes from the object's start.
        addend: u32,
    },
    /// The table-0 index of new table entry `index`.
    TableEntry(u32),
}

/// A 32-bit little-endian field inside a data object that holds an address
/// or a table index (a pointer in a new vtable, a string's address in a
/// new panic location).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataReloc {
    /// Byte offset of the field in its object (the field is 4 bytes).
    pub offset: u32,
    /// What the field points at.
    pub target: RelocTarget,
}

/// A data object the bundle owns: placed in memory the runtime obtains at
/// apply, initialised before the pre-patch callback runs, never shared
/// with the running instance's own data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataObject {
    /// The symbol it was made from (raw; `.L…` for anonymous objects).
    pub name: String,
    /// Alignment, log2 (at most [`MAX_ALIGN_LOG2`]).
    pub align_log2: u8,
    /// Size in bytes.
    pub size: u32,
    /// Initial bytes (`size` of them), or `None` for zeros (`.bss`).
    pub init: Option<Vec<u8>>,
    /// Relocated fields, by offset, not overlapping (none in a zero object).
    pub relocs: Vec<DataReloc>,
}

/// How a code site's padded LEB is read by its instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// The offset of a load or store on memory 0 (unsigned LEB).
    MemArgOffset,
    /// The operand of an `i32.const` (signed LEB).
    I32Const,
}

/// A place in a bundle function's body where the final address of a bundle
/// object or a new table entry's index is written at apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSite {
    /// The function: its position among the bundle's functions (entries,
    /// then callbacks, as in the code section).
    pub function: u32,
    /// Byte offset of the 5-byte padded LEB in that body.
    pub offset: u32,
    /// Which instruction reads it.
    pub kind: SiteKind,
    /// What it points at.
    pub target: RelocTarget,
}

/// Everything of a bundle that lives outside its functions: data objects,
/// new table entries and the code sites that point at them. Empty for a
/// bundle of code only (format version 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleData {
    /// The objects, in layout order.
    pub objects: Vec<DataObject>,
    /// New entries of table 0, each a function of the patched index space
    /// (a target function or one the bundle adds), appended at apply.
    pub table_entries: Vec<u32>,
    /// Code sites, ordered by function then offset, not overlapping.
    pub sites: Vec<CodeSite>,
}

impl BundleData {
    /// Whether the bundle carries nothing but code.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.table_entries.is_empty() && self.sites.is_empty()
    }

    /// Offset of each object from the start of the bundle's range, and the
    /// range's size (a multiple of 16), laying the objects out in order,
    /// each at its alignment. `None` if it does not fit in 32 bits.
    pub fn layout(&self) -> Option<(Vec<u32>, u32)> {
        let mut at: u64 = 0;
        let mut offsets = Vec::with_capacity(self.objects.len());
        for o in &self.objects {
            let align = 1u64 << o.align_log2.min(MAX_ALIGN_LOG2);
            at = at.div_ceil(align) * align;
            offsets.push(u32::try_from(at).ok()?);
            at += u64::from(o.size);
        }
        let total = u32::try_from(at.div_ceil(16) * 16).ok()?;
        Some((offsets, total))
    }

    /// The bytes of the bundle's range placed at address `base` with its
    /// first new table entry at `table_base`: initial bytes, zeros, and
    /// every relocated field resolved.
    ///
    /// # Errors
    /// [`FormatError::Build`] if the range does not fit below 4 GiB.
    pub fn image(&self, base: u32, table_base: u32) -> Result<Vec<u8>, FormatError> {
        let (offsets, total) = self.placed(base)?;
        let mut out = vec![0u8; total as usize];
        for (o, &off) in self.objects.iter().zip(&offsets) {
            let at = off as usize;
            if let Some(init) = &o.init {
                out[at..at + init.len()].copy_from_slice(init);
            }
            for r in &o.relocs {
                let v = self.value(r.target, base, &offsets, table_base);
                let f = at + r.offset as usize;
                out[f..f + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Layout with every address checked to fit below 4 GiB at `base`.
    fn placed(&self, base: u32) -> Result<(Vec<u32>, u32), FormatError> {
        let (offsets, total) = self.layout().ok_or_else(|| {
            FormatError::Build("the bundle's data objects do not fit in 4 GiB".into())
        })?;
        if u64::from(base) + u64::from(total) > 1 << 32 {
            return Err(FormatError::Build(format!(
                "the bundle's data ({total} bytes) does not fit in a 32-bit memory at {base:#x}"
            )));
        }
        Ok((offsets, total))
    }

    fn value(&self, t: RelocTarget, base: u32, offsets: &[u32], table_base: u32) -> u32 {
        match t {
            RelocTarget::Object { index, addend } => base
                .wrapping_add(offsets[index as usize])
                .wrapping_add(addend),
            RelocTarget::TableEntry(i) => table_base.wrapping_add(i),
        }
    }
}

impl Bundle {
    /// The bundle's data objects, new table entries and code sites.
    pub fn data(&self) -> &BundleData {
        &self.parts.data
    }

    /// This bundle with its data placed at `base` (in memory 0) and its
    /// new table entries from `table_base` (in table 0): every code site's
    /// padded LEB rewritten to the final address or index. Same entries,
    /// callbacks and data; a different id (use the original's for
    /// stacking). What a runtime compiles.
    ///
    /// # Errors
    /// [`FormatError::Build`] if the data does not fit below 4 GiB at
    /// `base` or the table index overflows.
    pub fn resolved(&self, base: u32, table_base: u32) -> Result<Bundle, FormatError> {
        let d = &self.parts.data;
        if d.sites.is_empty() {
            return Ok(self.clone());
        }
        let (offsets, _) = d.placed(base)?;
        if table_base
            .checked_add(d.table_entries.len() as u32)
            .is_none()
        {
            return Err(FormatError::Build(
                "new table entries overflow table 0's index space".into(),
            ));
        }
        let mut parts = self.parts.clone();
        let n = parts.entries.len();
        for s in &d.sites {
            let v = d.value(s.target, base, &offsets, table_base);
            let f = s.function as usize;
            let body = if f < n {
                &mut parts.entries[f].body
            } else {
                &mut parts.callbacks[f - n].body
            };
            let slot = &mut body[s.offset as usize..s.offset as usize + SITE_WIDTH];
            slot.copy_from_slice(&padded(s.kind, v));
        }
        let bytes = crate::write::encode(&parts)?;
        crate::read::parse(&bytes)
    }
}

/// `v` as a 5-byte padded LEB128 read by `kind`.
pub(crate) fn padded(kind: SiteKind, v: u32) -> [u8; SITE_WIDTH] {
    let mut wide: i64 = match kind {
        SiteKind::MemArgOffset => i64::from(v),
        SiteKind::I32Const => i64::from(v as i32),
    };
    let mut out = [0u8; SITE_WIDTH];
    for (k, b) in out.iter_mut().enumerate() {
        let byte = (wide & 0x7f) as u8;
        wide >>= 7;
        *b = if k + 1 < SITE_WIDTH {
            byte | 0x80
        } else {
            byte & 0x7f
        };
    }
    out
}

// ---- manifest encoding (version 2) ----

const TARGET_OBJECT: u8 = 0;
const TARGET_TABLE: u8 = 1;
const INIT_ZEROS: u8 = 0;
const INIT_BYTES: u8 = 1;
const SITE_MEMARG: u8 = 0;
const SITE_I32_CONST: u8 = 1;

fn target(t: RelocTarget, m: &mut Vec<u8>) {
    match t {
        RelocTarget::Object { index, addend } => {
            m.push(TARGET_OBJECT);
            leb(u64::from(index), m);
            leb(u64::from(addend), m);
        }
        RelocTarget::TableEntry(i) => {
            m.push(TARGET_TABLE);
            leb(u64::from(i), m);
        }
    }
}

/// Appends the version-2 fields of the manifest (FORMAT.md §4).
pub(crate) fn encode(d: &BundleData, m: &mut Vec<u8>) {
    leb(d.objects.len() as u64, m);
    for o in &d.objects {
        leb(o.name.len() as u64, m);
        m.extend_from_slice(o.name.as_bytes());
        m.push(o.align_log2);
        leb(u64::from(o.size), m);
        match &o.init {
            None => m.push(INIT_ZEROS),
            Some(b) => {
                m.push(INIT_BYTES);
                m.extend_from_slice(b);
            }
        }
        leb(o.relocs.len() as u64, m);
        for r in &o.relocs {
            leb(u64::from(r.offset), m);
            target(r.target, m);
        }
    }
    leb(d.table_entries.len() as u64, m);
    for &f in &d.table_entries {
        leb(u64::from(f), m);
    }
    leb(d.sites.len() as u64, m);
    for s in &d.sites {
        leb(u64::from(s.function), m);
        leb(u64::from(s.offset), m);
        m.push(match s.kind {
            SiteKind::MemArgOffset => SITE_MEMARG,
            SiteKind::I32Const => SITE_I32_CONST,
        });
        target(s.target, m);
    }
}

/// What the data decoder needs of the manifest reader.
pub(crate) trait Fields {
    /// Absolute offset of the next byte.
    fn at(&self) -> u64;
    fn u8(&mut self, field: &str) -> Result<u8, FormatError>;
    fn u32(&mut self, field: &str) -> Result<u32, FormatError>;
    fn string(&mut self, field: &str) -> Result<String, FormatError>;
    fn bytes(&mut self, n: usize, field: &str) -> Result<Vec<u8>, FormatError>;
    fn count(&mut self, field: &str, min_size: usize) -> Result<usize, FormatError>;
}

fn read_target(c: &mut dyn Fields, field: &str) -> Result<RelocTarget, FormatError> {
    let at = c.at();
    match c.u8(field)? {
        TARGET_OBJECT => Ok(RelocTarget::Object {
            index: c.u32(field)?,
            addend: c.u32(field)?,
        }),
        TARGET_TABLE => Ok(RelocTarget::TableEntry(c.u32(field)?)),
        k => Err(FormatError::manifest(
            at,
            field,
            format!("unknown target kind {k}"),
        )),
    }
}

/// Reads the version-2 fields (shape only; [`check`] checks meaning).
pub(crate) fn decode(c: &mut dyn Fields) -> Result<(BundleData, Vec<u64>), FormatError> {
    let mut d = BundleData::default();
    let mut site_offsets = Vec::new();
    let n = c.count("objects", 5)?;
    for i in 0..n {
        let f = format!("objects[{i}]");
        let name = c.string(&format!("{f}.name"))?;
        let at = c.at();
        let align_log2 = c.u8(&format!("{f}.align"))?;
        if align_log2 > MAX_ALIGN_LOG2 {
            return Err(FormatError::manifest(
                at,
                format!("{f}.align"),
                format!("alignment 2^{align_log2} is above the limit 2^{MAX_ALIGN_LOG2}"),
            ));
        }
        let size = c.u32(&format!("{f}.size"))?;
        let at = c.at();
        let init = match c.u8(&format!("{f}.init"))? {
            INIT_ZEROS => None,
            INIT_BYTES => Some(c.bytes(size as usize, &format!("{f}.bytes"))?),
            k => {
                return Err(FormatError::manifest(
                    at,
                    format!("{f}.init"),
                    format!("must be 0 (zeros) or 1 (bytes), found {k}"),
                ))
            }
        };
        let m = c.count(&format!("{f}.relocs"), 3)?;
        let mut relocs = Vec::with_capacity(m);
        for k in 0..m {
            let rf = format!("{f}.relocs[{k}]");
            let offset = c.u32(&rf)?;
            let target = read_target(c, &rf)?;
            relocs.push(DataReloc { offset, target });
        }
        d.objects.push(DataObject {
            name,
            align_log2,
            size,
            init,
            relocs,
        });
    }
    let n = c.count("table_entries", 1)?;
    for i in 0..n {
        d.table_entries.push(c.u32(&format!("table_entries[{i}]"))?);
    }
    let n = c.count("sites", 4)?;
    for i in 0..n {
        let f = format!("sites[{i}]");
        site_offsets.push(c.at());
        let function = c.u32(&f)?;
        let offset = c.u32(&f)?;
        let at = c.at();
        let kind = match c.u8(&f)? {
            SITE_MEMARG => SiteKind::MemArgOffset,
            SITE_I32_CONST => SiteKind::I32Const,
            k => {
                return Err(FormatError::manifest(
                    at,
                    f,
                    format!("unknown site kind {k}"),
                ))
            }
        };
        let target = read_target(c, &f)?;
        d.sites.push(CodeSite {
            function,
            offset,
            kind,
            target,
        });
    }
    Ok((d, site_offsets))
}

/// The reader's checks on a bundle's data, against its parts (entries and
/// callbacks already read). `base` is the manifest's offset, for messages;
/// `site_offsets` each site record's.
pub(crate) fn check(p: &BundleParts, base: u64, site_offsets: &[u64]) -> Result<(), FormatError> {
    let d = &p.data;
    let bad = |field: String, reason: String| FormatError::manifest(base, field, reason);
    let nobj = d.objects.len() as u32;
    let target_ok = |t: RelocTarget| -> Result<(), String> {
        match t {
            RelocTarget::Object { index, addend } => {
                let Some(o) = d.objects.get(index as usize) else {
                    return Err(format!(
                        "points at object {index}, but the bundle has {nobj}"
                    ));
                };
                if addend > o.size {
                    return Err(format!(
                        "points {addend} bytes into object {index} (`{}`), which has {} \
                         (out of its object)",
                        o.name, o.size
                    ));
                }
                Ok(())
            }
            RelocTarget::TableEntry(i) if (i as usize) < d.table_entries.len() => Ok(()),
            RelocTarget::TableEntry(i) => Err(format!(
                "names table entry {i}, but the bundle has {}",
                d.table_entries.len()
            )),
        }
    };
    for (i, o) in d.objects.iter().enumerate() {
        let f = format!("objects[{i}]");
        if o.name.is_empty() {
            return Err(bad(f, "empty name".into()));
        }
        if o.init.is_none() && !o.relocs.is_empty() {
            return Err(bad(f, "a zero-initialised object has relocations".into()));
        }
        let mut end = 0u64;
        for (k, r) in o.relocs.iter().enumerate() {
            let rf = format!("{f}.relocs[{k}]");
            if u64::from(r.offset) < end {
                return Err(bad(
                    rf,
                    "relocations must be sorted by offset and not overlap".into(),
                ));
            }
            end = u64::from(r.offset) + 4;
            if end > u64::from(o.size) {
                return Err(bad(
                    rf,
                    format!(
                        "a 4-byte field at offset {} lies out of its object ({} bytes)",
                        r.offset, o.size
                    ),
                ));
            }
            target_ok(r.target).map_err(|e| bad(rf, e))?;
        }
    }
    if d.layout().is_none() {
        return Err(bad(
            "objects".into(),
            "the objects do not fit in a 32-bit memory".into(),
        ));
    }
    if !d.objects.is_empty() {
        match p.interface.memories.first() {
            Some(m) if !m.memory64 => {}
            Some(_) => return Err(bad("objects".into(), "memory 0 is 64-bit".into())),
            None => {
                return Err(bad(
                    "objects".into(),
                    "the target has no memory to hold them".into(),
                ))
            }
        }
    }
    let adds = p
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Add { .. }))
        .count() as u32;
    let funcs = p.interface.func_count() + adds;
    for (i, &f) in d.table_entries.iter().enumerate() {
        if f >= funcs {
            return Err(bad(
                format!("table_entries[{i}]"),
                format!("function {f}, but the patched module has {funcs}"),
            ));
        }
    }
    if !d.table_entries.is_empty()
        && p.interface.tables.first().map(|t| t.element_type) != Some(wasmparser::RefType::FUNCREF)
    {
        return Err(bad(
            "table_entries".into(),
            "the target has no funcref table 0".into(),
        ));
    }
    let bodies: Vec<&[u8]> = p
        .entries
        .iter()
        .map(|e| e.body.as_slice())
        .chain(p.callbacks.iter().map(|c| c.body.as_slice()))
        .collect();
    let mut last: Option<(u32, u64)> = None;
    for (i, s) in d.sites.iter().enumerate() {
        let at = site_offsets.get(i).copied().unwrap_or(base);
        let bad = |reason: String| FormatError::manifest(at, format!("sites[{i}]"), reason);
        if last.is_some_and(|(f, end)| {
            s.function < f || (s.function == f && u64::from(s.offset) < end)
        }) {
            return Err(bad(
                "sites must be ordered by function and offset, without overlap".into(),
            ));
        }
        last = Some((s.function, u64::from(s.offset) + SITE_WIDTH as u64));
        let Some(body) = bodies.get(s.function as usize) else {
            return Err(bad(format!(
                "names function {}, but the bundle has {}",
                s.function,
                bodies.len()
            )));
        };
        target_ok(s.target).map_err(bad)?;
        site_fits(body, s).map_err(bad)?;
    }
    Ok(())
}

/// Whether `s` is the last five bytes of an instruction of its kind, as a
/// padded LEB: the runtime then rewrites exactly an immediate, nothing else.
fn site_fits(body: &[u8], s: &CodeSite) -> Result<(), String> {
    let start = s.offset as usize;
    let end = start + SITE_WIDTH;
    let Some(b) = body.get(start..end) else {
        return Err(format!(
            "offset {} lies out of the function's body ({} bytes)",
            s.offset,
            body.len()
        ));
    };
    if b[..4].iter().any(|x| x & 0x80 == 0) || b[4] & 0x80 != 0 {
        return Err(format!("offset {} does not hold a 5-byte LEB", s.offset));
    }
    let fb = FunctionBody::new(BinaryReader::new(body, 0));
    let mut ops = fb
        .get_operators_reader()
        .map_err(|e| e.message().to_string())?;
    while !ops.eof() {
        let op_start = ops.original_position() as usize;
        let op = ops.read().map_err(|e| e.message().to_string())?;
        let op_end = ops.original_position() as usize;
        if op_end < end {
            continue;
        }
        if op_end > end || op_start >= start {
            break;
        }
        let ok = match (s.kind, &op) {
            (SiteKind::I32Const, Operator::I32Const { .. }) => op_start + 1 == start,
            (SiteKind::MemArgOffset, op) => memarg_memory(op) == Some(0),
            _ => false,
        };
        if ok {
            return Ok(());
        }
        break;
    }
    Err(format!(
        "offset {} is not the immediate of {} instruction",
        s.offset,
        match s.kind {
            SiteKind::I32Const => "an i32.const",
            SiteKind::MemArgOffset => "a load or store's offset of a memory-0",
        }
    ))
}

/// The memory a load or store instruction addresses.
fn memarg_memory(op: &Operator<'_>) -> Option<u32> {
    use Operator::*;
    match op {
        I32Load { memarg }
        | I64Load { memarg }
        | F32Load { memarg }
        | F64Load { memarg }
        | I32Load8S { memarg }
        | I32Load8U { memarg }
        | I32Load16S { memarg }
        | I32Load16U { memarg }
        | I64Load8S { memarg }
        | I64Load8U { memarg }
        | I64Load16S { memarg }
        | I64Load16U { memarg }
        | I64Load32S { memarg }
        | I64Load32U { memarg }
        | I32Store { memarg }
        | I64Store { memarg }
        | F32Store { memarg }
        | F64Store { memarg }
        | I32Store8 { memarg }
        | I32Store16 { memarg }
        | I64Store8 { memarg }
        | I64Store16 { memarg }
        | I64Store32 { memarg } => match memarg.target {
            wasmparser::MemArgTarget::Memory(m) => Some(m),
            wasmparser::MemArgTarget::Array(_) => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_lebs_read_back() {
        for v in [0u32, 1, 0x7f, 0x80, 0x10_0000, u32::MAX, 0x8000_0000] {
            let b = padded(SiteKind::MemArgOffset, v);
            let mut r = BinaryReader::new(&b, 0);
            assert_eq!(r.read_var_u32().unwrap(), v);
            let b = padded(SiteKind::I32Const, v);
            let mut r = BinaryReader::new(&b, 0);
            assert_eq!(r.read_var_i32().unwrap(), v as i32);
        }
    }

    #[test]
    fn layout_aligns_each_object_and_refuses_more_than_4_gib() {
        let obj = |align_log2, size| DataObject {
            name: "x".into(),
            align_log2,
            size,
            init: None,
            relocs: Vec::new(),
        };
        let d = BundleData {
            objects: vec![obj(0, 3), obj(3, 8), obj(0, 1)],
            ..BundleData::default()
        };
        assert_eq!(d.layout(), Some((vec![0, 8, 16], 32)));
        let big = BundleData {
            objects: vec![obj(0, u32::MAX), obj(4, 16)],
            ..BundleData::default()
        };
        assert_eq!(big.layout(), None);
        assert!(d.image(u32::MAX - 8, 0).is_err());
    }
}
