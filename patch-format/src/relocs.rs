//! The `linking` and `reloc.CODE` / `reloc.DATA` custom sections that
//! `wasm-ld --emit-relocs` keeps (tool-conventions `Linking.md`), and what
//! `diff` does with them: every memory address and table index in a new
//! body is put back into the *target's* layout, by symbol, before bodies are
//! compared. So a function whose bytes differ only because data moved is
//! unchanged, and a carried function points at the running instance's data.
//!
//! Owns [`Linked`] (one build's symbols and relocations), [`relocate_body`]
//! (a new body in the old layout) and the rules for following a data object
//! from the new build to the old one:
//!
//! 1. A named object (a static: `_ZN4bank8BALANCES17h…E`) is the old object
//!    of the same name; a read-only one (segment `.rodata…`) must also have
//!    the same content, a writable one only the same size (its content is
//!    live state: the initializer is not compared).
//! 2. An anonymous object (`.L…`, string literals, panic locations, vtables)
//!    is an old anonymous object with the same content, relocations inside it
//!    compared by what they point at.
//! 3. A panic `Location` {file, line, column} whose line or column moved is
//!    the old function's location at the same position: the function is
//!    *line-only* changed (left out unless asked for).
//! 4. Anything else is new data: with a [`Carry`] it becomes bundle data
//!    (`carry.rs`, FORMAT.md §9), except a writable static whose size
//!    changed, which is refused.

use std::collections::HashMap;
use std::ops::Range;

use crate::carry::Carry;
use crate::data::RelocTarget;
use wasmparser::{
    ElementItems, ElementKind, KnownCustom, Linking, Operator, Parser, Payload, RelocationEntry,
    RelocationType, SymbolFlags, SymbolInfo,
};

/// What a symbol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SymKind {
    /// A function index.
    Func(u32),
    /// A defined data object: segment, offset in it, size.
    Data { seg: u32, offset: u32, size: u32 },
    /// A global index.
    Global(u32),
    /// Undefined data, sections, tags, tables.
    Other,
}

/// One entry of the symbol table.
#[derive(Debug, Clone)]
pub(crate) struct Sym<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) kind: SymKind,
}

/// One data segment: where it is loaded and its bytes.
#[derive(Debug, Clone)]
struct Segment<'a> {
    /// Load address (active segments with a constant offset).
    addr: Option<u32>,
    bytes: &'a [u8],
    /// Absolute file offset of `bytes[0]`.
    file_offset: usize,
    /// Name from the linking section's segment info.
    name: &'a str,
    /// Alignment (log2) from the segment info.
    align: u32,
}

/// One build's symbols and relocations.
pub(crate) struct Linked<'a> {
    bytes: &'a [u8],
    pub(crate) syms: Vec<Sym<'a>>,
    /// Code relocations with absolute file offsets, sorted.
    code: Vec<(usize, RelocationEntry)>,
    /// Data relocations with absolute file offsets, sorted.
    data: Vec<(usize, RelocationEntry)>,
    segments: Vec<Segment<'a>>,
    /// Function index → its slot in table 0 (active segments only).
    table_slots: HashMap<u32, u32>,
    /// Content key → address of the first anonymous object with it.
    anon_by_key: HashMap<String, u32>,
    /// Named data symbol → symbol index.
    data_by_name: HashMap<&'a str, u32>,
    /// Function index → the name of its symbol (the first, if several).
    func_names: HashMap<u32, &'a str>,
    /// New build only: function index → the old build's symbol name of the
    /// function it was paired with when the names differ (rustc's hash
    /// alone changed: `diff::pair_renamed`), so that objects pointing at
    /// it (vtables) key as the old ones do.
    func_alias: HashMap<u32, &'a str>,
}

/// Names the linker gives the layout globals: live state, whose initial
/// values differ whenever data grows.
pub(crate) const LAYOUT_GLOBALS: &[&str] = &[
    "__stack_pointer",
    "__heap_base",
    "__heap_end",
    "__data_end",
    "__global_base",
    "__memory_base",
    "__table_base",
    "__stack_low",
    "__stack_high",
    "__tls_base",
    "__tls_size",
    "__tls_align",
    "__dso_handle",
];

fn is_anon(name: &str) -> bool {
    name.starts_with(".L") || name.starts_with("anon.") || name.starts_with("alloc_")
}

pub(crate) fn is_mem_addr(ty: RelocationType) -> bool {
    use RelocationType::*;
    matches!(
        ty,
        MemoryAddrLeb | MemoryAddrSleb | MemoryAddrI32 | MemoryAddrLeb64 | MemoryAddrSleb64
    )
}

pub(crate) fn is_table_index(ty: RelocationType) -> bool {
    matches!(
        ty,
        RelocationType::TableIndexSleb | RelocationType::TableIndexI32
    )
}

impl<'a> Linked<'a> {
    /// Reads the linking and relocation sections of `bytes`; `None` when
    /// the module has no `linking` or no `reloc.CODE` section.
    ///
    /// # Errors
    /// A message when the sections are malformed.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Option<Linked<'a>>, String> {
        let mut syms = Vec::new();
        let mut seg_names = Vec::new();
        let mut code_start = None;
        let mut data_start = None;
        let mut raw_code = None;
        let mut raw_data = None;
        let mut segments = Vec::new();
        let mut table_slots = HashMap::new();
        let mut has_linking = false;
        let e = |e: wasmparser::BinaryReaderError| e.message().to_string();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(e)? {
                Payload::CodeSectionStart {
                    unchecked_range, ..
                } => code_start = Some(unchecked_range.start as usize),
                Payload::DataSection(r) => {
                    data_start = Some(r.range().start as usize);
                    for d in r {
                        let d = d.map_err(e)?;
                        let addr = match d.kind {
                            wasmparser::DataKind::Active { offset_expr, .. } => {
                                match offset_expr.get_operators_reader().read().map_err(e)? {
                                    Operator::I32Const { value } => Some(value as u32),
                                    _ => None,
                                }
                            }
                            wasmparser::DataKind::Passive => None,
                        };
                        let file_offset = d.data.as_ptr() as usize - bytes.as_ptr() as usize;
                        segments.push(Segment {
                            addr,
                            bytes: d.data,
                            file_offset,
                            name: "",
                            align: 0,
                        });
                    }
                }
                Payload::ElementSection(r) => {
                    for el in r {
                        let el = el.map_err(e)?;
                        let ElementKind::Active {
                            table_index,
                            offset_expr,
                        } = el.kind
                        else {
                            continue;
                        };
                        if table_index.unwrap_or(0) != 0 {
                            continue;
                        }
                        let Operator::I32Const { value } =
                            offset_expr.get_operators_reader().read().map_err(e)?
                        else {
                            continue;
                        };
                        if let ElementItems::Functions(fs) = el.items {
                            for (k, f) in fs.into_iter().enumerate() {
                                table_slots
                                    .entry(f.map_err(e)?)
                                    .or_insert((value as u32).wrapping_add(k as u32));
                            }
                        }
                    }
                }
                Payload::CustomSection(s) => match s.as_known() {
                    KnownCustom::Linking(l) => {
                        has_linking = true;
                        for sub in l.subsections() {
                            match sub.map_err(e)? {
                                Linking::SymbolTable(t) => {
                                    for s in t {
                                        syms.push(sym(s.map_err(e)?));
                                    }
                                }
                                Linking::SegmentInfo(m) => {
                                    for s in m {
                                        let s = s.map_err(e)?;
                                        seg_names.push((s.name, s.alignment));
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    KnownCustom::Reloc(r) if s.name() == "reloc.CODE" => {
                        raw_code = Some(r.entries().into_iter().collect::<Result<Vec<_>, _>>());
                    }
                    KnownCustom::Reloc(r) if s.name() == "reloc.DATA" => {
                        raw_data = Some(r.entries().into_iter().collect::<Result<Vec<_>, _>>());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let (Some(raw_code), Some(code_start), true) = (raw_code, code_start, has_linking) else {
            return Ok(None);
        };
        let absolute = |list: Vec<RelocationEntry>, start: usize| {
            let mut v: Vec<(usize, RelocationEntry)> = list
                .into_iter()
                .map(|r| (start + r.offset as usize, r))
                .collect();
            v.sort_by_key(|(o, _)| *o);
            v
        };
        let code = absolute(raw_code.map_err(e)?, code_start);
        let data = match (raw_data, data_start) {
            (Some(d), Some(s)) => absolute(d.map_err(e)?, s),
            _ => Vec::new(),
        };
        for (seg, (name, align)) in segments.iter_mut().zip(&seg_names) {
            seg.name = name;
            seg.align = *align;
        }
        let mut l = Linked {
            bytes,
            syms,
            code,
            data,
            segments,
            table_slots,
            anon_by_key: HashMap::new(),
            data_by_name: HashMap::new(),
            func_names: HashMap::new(),
            func_alias: HashMap::new(),
        };
        for i in 0..l.syms.len() as u32 {
            let s = &l.syms[i as usize];
            if let (Some(name), SymKind::Func(f)) = (s.name, s.kind) {
                l.func_names.entry(f).or_insert(name);
            }
            if let (Some(name), SymKind::Data { .. }) = (s.name, s.kind) {
                if is_anon(name) {
                    if let (Some(key), Some(addr)) = (l.content_key(i, 0), l.addr(i)) {
                        l.anon_by_key.entry(key).or_insert(addr);
                    }
                } else {
                    l.data_by_name.entry(name).or_insert(i);
                }
            }
        }
        Ok(Some(l))
    }

    /// The name of the symbol of function `f`, if it has one.
    pub(crate) fn func_symbol(&self, f: u32) -> Option<&'a str> {
        self.func_names.get(&f).copied()
    }

    /// Key the new build's function `f` by `old_name` (see `func_alias`).
    pub(crate) fn alias_func(&mut self, f: u32, old_name: &'a str) {
        self.func_alias.insert(f, old_name);
    }

    /// Load address of data symbol `i`.
    pub(crate) fn addr(&self, i: u32) -> Option<u32> {
        match self.syms.get(i as usize)?.kind {
            SymKind::Data { seg, offset, .. } => {
                self.segments.get(seg as usize)?.addr?.checked_add(offset)
            }
            _ => None,
        }
    }

    /// Slot of target function `f` in the old build's table 0.
    pub(crate) fn table_slot(&self, f: u32) -> Option<u32> {
        self.table_slots.get(&f).copied()
    }

    /// Alignment (log2) of the segment that holds data symbol `i`.
    pub(crate) fn segment_align(&self, i: u32) -> u32 {
        match self.syms.get(i as usize).map(|s| s.kind) {
            Some(SymKind::Data { seg, .. }) => {
                self.segments.get(seg as usize).map_or(0, |s| s.align)
            }
            _ => 0,
        }
    }

    /// Bytes and absolute file range of data symbol `i`.
    pub(crate) fn object(&self, i: u32) -> Option<(&'a [u8], Range<usize>, &'a str)> {
        let SymKind::Data { seg, offset, size } = self.syms.get(i as usize)?.kind else {
            return None;
        };
        let s = self.segments.get(seg as usize)?;
        let r = offset as usize..offset as usize + size as usize;
        let b = s.bytes.get(r.clone())?;
        Some((b, s.file_offset + r.start..s.file_offset + r.end, s.name))
    }

    /// Data relocations inside file range `r`.
    pub(crate) fn data_relocs(&self, r: &Range<usize>) -> &[(usize, RelocationEntry)] {
        let lo = self.data.partition_point(|(o, _)| *o < r.start);
        let hi = self.data.partition_point(|(o, _)| *o < r.end);
        &self.data[lo..hi]
    }

    /// Code relocations inside file range `r` (a function body).
    pub(crate) fn code_relocs(&self, r: &Range<usize>) -> &[(usize, RelocationEntry)] {
        let lo = self.code.partition_point(|(o, _)| *o < r.start);
        let hi = self.code.partition_point(|(o, _)| *o < r.end);
        &self.code[lo..hi]
    }

    /// What a relocation target is, independent of layout: a function,
    /// global or named object by name, an anonymous object by content.
    fn target_key(&self, i: u32, depth: u32) -> String {
        let Some(s) = self.syms.get(i as usize) else {
            return format!("?{i}");
        };
        if let Some(alias) = match s.kind {
            SymKind::Func(f) => self.func_alias.get(&f),
            _ => None,
        } {
            return alias.to_string();
        }
        match (s.kind, s.name) {
            (SymKind::Data { .. }, Some(n)) if is_anon(n) => self
                .content_key(i, depth + 1)
                .unwrap_or_else(|| format!("?{n}")),
            (_, Some(n)) => n.to_string(),
            (k, None) => format!("{k:?}"),
        }
    }

    /// An object's content with every relocated field replaced by what it
    /// points at (depth-limited: data cycles end in a placeholder).
    fn content_key(&self, i: u32, depth: u32) -> Option<String> {
        let (b, range, _) = self.object(i)?;
        if depth > 3 {
            return Some(format!("deep:{}", b.len()));
        }
        let mut key = String::new();
        let mut pos = 0;
        for (off, r) in self.data_relocs(&range) {
            let at = off - range.start;
            let end = (at + r.ty.extent()).min(b.len());
            if at < pos {
                continue;
            }
            key.push_str(&hex(&b[pos..at]));
            key.push_str(&format!(
                "[{:?} {}+{}]",
                r.ty,
                self.target_key(r.index, depth),
                r.addend
            ));
            pos = end;
        }
        key.push_str(&hex(&b[pos..]));
        Some(key)
    }

    /// Whether data symbol `i` looks like a `core::panic::Location` on
    /// wasm32: 16 bytes, one 32-bit address at offset 0 (the file name)
    /// and nothing else relocated. Returns (file key, bytes 4..8).
    pub(crate) fn location(&self, i: u32) -> Option<(String, [u8; 4])> {
        let (b, range, _) = self.object(i)?;
        let rs = self.data_relocs(&range);
        match (b.len(), rs) {
            (16, [(off, r)]) if *off == range.start && r.ty == RelocationType::MemoryAddrI32 => {
                Some((self.target_key(r.index, 0), b[4..8].try_into().ok()?))
            }
            _ => None,
        }
    }

    /// Readable name of symbol `i`, for messages.
    pub(crate) fn shown(&self, i: u32) -> String {
        match self.syms.get(i as usize).and_then(|s| s.name) {
            Some(n) => crate::names::readable(n),
            None => format!("symbol {i}"),
        }
    }
}

fn sym<'a>(s: SymbolInfo<'a>) -> Sym<'a> {
    let undefined = |f: SymbolFlags| f.contains(SymbolFlags::UNDEFINED);
    match s {
        SymbolInfo::Func { index, name, .. } => Sym {
            name,
            kind: SymKind::Func(index),
        },
        SymbolInfo::Data {
            flags,
            name,
            symbol: Some(d),
        } if !undefined(flags) => Sym {
            name: Some(name),
            kind: SymKind::Data {
                seg: d.index,
                offset: d.offset,
                size: d.size,
            },
        },
        SymbolInfo::Data { name, .. } => Sym {
            name: Some(name),
            kind: SymKind::Other,
        },
        SymbolInfo::Global { index, name, .. } => Sym {
            name,
            kind: SymKind::Global(index),
        },
        _ => Sym {
            name: None,
            kind: SymKind::Other,
        },
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new body rewritten into the old layout.
pub(crate) struct Relocated {
    /// The body bytes (same length as the new body).
    pub(crate) bytes: Vec<u8>,
    /// Some panic location was pointed at the old function's location at
    /// the same position (its line or column moved).
    pub(crate) line_only: bool,
    /// Places that point at bundle data or new table entries (only with a
    /// [`Carry`]); their bytes hold a placeholder.
    pub(crate) sites: Vec<Site>,
}

/// A relocation of a new body that bundle data resolves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site {
    /// Offset in the body.
    pub(crate) at: usize,
    /// The relocation's type (its encoding).
    pub(crate) ty: RelocationType,
    /// What it points at.
    pub(crate) target: RelocTarget,
}

/// Why a new body cannot be put into the old layout.
pub(crate) struct NeedsData(pub(crate) String);

/// A data symbol of the new build the old build does not have.
pub(crate) struct Missing {
    /// What it is, for messages.
    pub(crate) what: String,
    /// Whether a bundle may carry its own copy (new or changed-constant
    /// data; not a writable static whose size changed).
    pub(crate) carryable: bool,
}

/// Rewrites the memory addresses and table indices of a new body (`range`
/// in the new file) into the old build's layout. `old_body` is the matched
/// old function's body range, for panic locations; `new_to_target` maps new
/// function indices to the target's. With `take_line_only`, moved locations
/// count as new data. With `carry`, new data and function pointers the old
/// build lacks become bundle objects and table entries, and the places
/// that use them [`Site`]s.
///
/// # Errors
/// [`NeedsData`] naming the first object the old build does not have (and
/// `carry` cannot take).
pub(crate) fn relocate_body(
    old: &Linked<'_>,
    new: &Linked<'_>,
    range: Range<usize>,
    old_body: Option<Range<usize>>,
    new_to_target: &[u32],
    take_line_only: bool,
    mut carry: Option<&mut Carry>,
) -> Result<Relocated, NeedsData> {
    let mut bytes = new.bytes[range.clone()].to_vec();
    let mut line_only = false;
    let mut sites = Vec::new();
    // Panic locations of the old function, in order.
    let old_locs: Vec<(u32, u32)> = old_body
        .map(|r| {
            old.code_relocs(&r)
                .iter()
                .filter(|(_, e)| is_mem_addr(e.ty))
                .filter(|(_, e)| old.location(e.index).is_some())
                .filter_map(|(_, e)| Some((e.index, old.addr(e.index)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut loc_pos = 0;
    for (off, r) in new.code_relocs(&range) {
        let at = off - range.start;
        let value: i64 = if is_mem_addr(r.ty) {
            let is_loc = new.location(r.index);
            if is_loc.is_some() {
                loc_pos += 1;
            }
            let base = match old_address(old, new, r.index) {
                Ok(a) => a,
                Err(miss) => {
                    let paired = old_locs.get(loc_pos.max(1) - 1).filter(|(oi, _)| {
                        !take_line_only
                            && is_loc.is_some()
                            && old.location(*oi).map(|l| l.0)
                                == is_loc.as_ref().map(|l| l.0.clone())
                    });
                    match (paired, carry.as_deref_mut()) {
                        (Some((_, a)), _) => {
                            line_only = true;
                            *a
                        }
                        (None, Some(c)) if miss.carryable => {
                            let index = c.object(old, new, new_to_target, r.index)?;
                            let addend = c.addend(index, r.addend).map_err(NeedsData)?;
                            sites.push(Site {
                                at,
                                ty: r.ty,
                                target: RelocTarget::Object { index, addend },
                            });
                            write_value(&mut bytes, at, r.ty, 0);
                            continue;
                        }
                        _ => return Err(NeedsData(miss.what)),
                    }
                }
            };
            i64::from(base).wrapping_add(r.addend)
        } else if is_table_index(r.ty) {
            let Some(SymKind::Func(f)) = new.syms.get(r.index as usize).map(|s| s.kind) else {
                continue;
            };
            let target = new_to_target.get(f as usize).copied().unwrap_or(u32::MAX);
            match (old.table_slots.get(&target), carry.as_deref_mut()) {
                (Some(&slot), _) => i64::from(slot),
                (None, Some(c)) if target != u32::MAX => {
                    let entry = c.table_entry(target);
                    sites.push(Site {
                        at,
                        ty: r.ty,
                        target: RelocTarget::TableEntry(entry),
                    });
                    write_value(&mut bytes, at, r.ty, 0);
                    continue;
                }
                _ => {
                    return Err(NeedsData(format!(
                        "a table entry for `{}` (a function pointer the running instance's \
                         table does not hold)",
                        new.shown(r.index)
                    )))
                }
            }
        } else {
            continue;
        };
        write_value(&mut bytes, at, r.ty, value);
    }
    Ok(Relocated {
        bytes,
        line_only,
        sites,
    })
}

/// Address in the old build of new data symbol `i` (rules 1 and 2 of the
/// module docs).
pub(crate) fn old_address(old: &Linked<'_>, new: &Linked<'_>, i: u32) -> Result<u32, Missing> {
    let refuse = |what: String| Missing {
        what,
        carryable: false,
    };
    let carry = |what: String| Missing {
        what,
        carryable: true,
    };
    let Some(s) = new.syms.get(i as usize) else {
        return Err(refuse(format!(
            "symbol {i}, which the symbol table does not have"
        )));
    };
    let name = s.name.unwrap_or("");
    let SymKind::Data { size, .. } = s.kind else {
        return Err(refuse(format!(
            "data symbol `{}` that is not defined",
            new.shown(i)
        )));
    };
    if !is_anon(name) {
        let Some(&oi) = old.data_by_name.get(name) else {
            return Err(carry(format!(
                "the new static `{}` ({size} bytes)",
                new.shown(i)
            )));
        };
        let (ob, _, seg) = old
            .object(oi)
            .ok_or_else(|| refuse(format!("`{name}`: bad object")))?;
        let rodata = seg.starts_with(".rodata");
        if ob.len() != size as usize {
            let what = format!(
                "`{}`, whose size changed from {} to {size} bytes",
                new.shown(i),
                ob.len()
            );
            // A constant's new value is a new object; a writable static's
            // new size is live state the bundle cannot migrate.
            return Err(if rodata { carry(what) } else { refuse(what) });
        }
        if rodata && old.content_key(oi, 0) != new.content_key(i, 0) {
            return Err(carry(format!(
                "the constant `{}`, whose content changed",
                new.shown(i)
            )));
        }
        return old
            .addr(oi)
            .ok_or_else(|| refuse(format!("`{name}`: not loaded at a fixed address")));
    }
    let key = new.content_key(i, 0).unwrap_or_default();
    old.anon_by_key.get(&key).copied().ok_or_else(|| {
        let what = match new.object(i) {
            Some((b, _, _)) if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => {
                format!("the new string {:?}", String::from_utf8_lossy(b))
            }
            Some((b, _, _)) if new.location(i).is_some() => {
                format!(
                    "a panic location ({} bytes) whose line or column moved",
                    b.len()
                )
            }
            Some((b, _, _)) => format!("a new or changed constant of {} bytes", b.len()),
            None => "an unknown object".to_string(),
        };
        carry(format!("{what} (`{name}`)"))
    })
}

/// Writes `value` at `at` in the relocation's own encoding (padded LEBs
/// keep their width).
pub(crate) fn write_value(bytes: &mut [u8], at: usize, ty: RelocationType, value: i64) {
    let width = ty.extent();
    let Some(slot) = bytes.get_mut(at..at + width) else {
        return;
    };
    use RelocationType::*;
    match ty {
        MemoryAddrI32 | TableIndexI32 => slot.copy_from_slice(&(value as u32).to_le_bytes()),
        MemoryAddrSleb | TableIndexSleb | MemoryAddrSleb64 => {
            let mut v = value;
            for (k, b) in slot.iter_mut().enumerate() {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                *b = if k + 1 < width {
                    byte | 0x80
                } else {
                    byte & 0x7f
                };
            }
        }
        _ => {
            let mut v = value as u64;
            for (k, b) in slot.iter_mut().enumerate() {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                *b = if k + 1 < width { byte | 0x80 } else { byte };
            }
        }
    }
}

/// Whether global `index` of a build is a layout global, by its symbol
/// name (or its name-section name when `names` is given).
pub(crate) fn is_layout_global(l: Option<&Linked<'_>>, name: Option<&str>, index: u32) -> bool {
    let by_sym = l.is_some_and(|l| {
        l.syms.iter().any(|s| {
            s.kind == SymKind::Global(index) && s.name.is_some_and(|n| LAYOUT_GLOBALS.contains(&n))
        })
    });
    by_sym || (l.is_some() && name.is_some_and(|n| LAYOUT_GLOBALS.contains(&n)))
}

/// Table type `b` is `a` with a larger (or equal) initial size: with
/// relocations, table 0's size is live state (new function pointers become
/// bundle table entries, FORMAT.md §9).
pub(crate) fn table_only_grew(a: &wasmparser::TableType, b: &wasmparser::TableType) -> bool {
    let same = wasmparser::TableType {
        initial: a.initial,
        ..*b
    };
    same == *a && b.initial >= a.initial
}
