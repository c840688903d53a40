//! Parsing and validation: bytes → [`Bundle`], total on every input.
//!
//! Owns [`parse`] and the manifest decoder. The steps, in order:
//! 1. split off the trailing signature section (header walk only);
//! 2. validate the whole unsigned module with `wasmparser` (bounded work,
//!    its own limits on counts and sizes);
//! 3. walk the sections, checking the bundle layout of FORMAT.md and
//!    collecting the target interface, function types and bodies;
//! 4. decode the manifest, never allocating more than the bytes present;
//! 5. cross-check manifest and module (roles, indices, types);
//! 6. re-encode and demand byte equality (canonical form).
//!
//! Every error names a byte offset from the start of the bundle.

use sha2::{Digest, Sha256};
use wasmparser::{
    CompositeInnerType, ElementItems, ElementKind, Encoding, ExternalKind, Parser, Payload,
    RefType, TypeRef, ValType,
};

use crate::bundle::{
    read_type_groups, Bundle, BundleId, BundleParts, Callback, CallbackKind, Entry, EntryKind,
    Metadata, ModuleHash, StateVersion, TargetInterface, TypeGroup, FORMAT_VERSION,
    MANIFEST_SECTION, SIGNATURE_SECTION, TARGET_MODULE,
};
use crate::error::FormatError;
use crate::sign::split_signature;
use crate::write::{
    self, ENTRY_IMMEDIATE, FLAG_IMMEDIATE, FLAG_REPLACE, MANIFEST_MAGIC, ROLE_ADD, ROLE_CALLBACK,
    ROLE_REPLACE,
};

/// Longest string the manifest may hold (names, description, tool).
pub const MAX_MANIFEST_STRING: usize = 1 << 20;

/// Parses a bundle (see the module docs for the steps).
pub(crate) fn parse(bytes: &[u8]) -> Result<Bundle, FormatError> {
    let (unsigned, signature) = split_signature(bytes)?;
    let parts = decode(unsigned)?;
    let canonical = write::encode(&parts)?;
    if canonical != unsigned {
        let offset = canonical
            .iter()
            .zip(unsigned)
            .position(|(a, b)| a != b)
            .unwrap_or(canonical.len().min(unsigned.len()));
        return Err(FormatError::NotCanonical {
            offset: offset as u64,
        });
    }
    Ok(Bundle {
        id: BundleId(Sha256::digest(unsigned).into()),
        parts,
        unsigned: canonical,
        signature,
    })
}

/// What the section walk collects.
struct Collected<'a> {
    groups: Vec<TypeGroup>,
    interface: TargetInterface,
    defined: Vec<u32>,
    bodies: Vec<Vec<u8>>,
    manifest: Option<(&'a [u8], u64)>,
    /// The transfer section (FORMAT.md §10), which follows the manifest.
    transfer: Option<(&'a [u8], u64)>,
    /// Offset of the function section, for messages.
    funcs_offset: u64,
}

fn decode(unsigned: &[u8]) -> Result<BundleParts, FormatError> {
    wasmparser::Validator::new()
        .validate_all(unsigned)
        .map_err(|e| FormatError::Invalid {
            offset: e.offset(),
            message: e.message().to_string(),
        })?;
    let c = collect(unsigned)?;
    let (manifest, manifest_offset) = c.manifest.ok_or(FormatError::MissingManifest)?;
    let m = Manifest::decode(manifest, manifest_offset)?;
    let transfer = c
        .transfer
        .map(|(data, off)| crate::transfer::decode(data, off))
        .transpose()?
        .unwrap_or_default();
    let mut parts = assemble(c, m)?;
    parts.transfer = transfer;
    Ok(parts)
}

fn collect(unsigned: &[u8]) -> Result<Collected<'_>, FormatError> {
    let mut c = Collected {
        groups: Vec::new(),
        interface: TargetInterface {
            type_groups: Vec::new(),
            funcs: Vec::new(),
            tables: Vec::new(),
            memories: Vec::new(),
            globals: Vec::new(),
            tags: Vec::new(),
            data_count: 0,
            elem_types: Vec::new(),
        },
        defined: Vec::new(),
        bodies: Vec::new(),
        manifest: None,
        transfer: None,
        funcs_offset: 0,
    };
    let malformed = |e: wasmparser::BinaryReaderError| FormatError::malformed(&e);
    let mut declared_seen = false;
    for payload in Parser::new(0).parse_all(unsigned) {
        let payload = payload.map_err(malformed)?;
        match payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Err(FormatError::layout(0, "a component, not a core module")),
            Payload::Version { .. } | Payload::End(_) | Payload::CodeSectionStart { .. } => {}
            Payload::TypeSection(r) => c.groups = read_type_groups(unsigned, r)?,
            Payload::ImportSection(r) => {
                // Imports come grouped by kind, in this order.
                let mut phase = 0;
                for item in r.into_imports_with_offsets() {
                    let (offset, import) = item.map_err(malformed)?;
                    if import.module != TARGET_MODULE {
                        return Err(FormatError::layout(
                            offset,
                            format!(
                                "import from `{}`: a bundle imports only from `{TARGET_MODULE}`",
                                clip(import.module)
                            ),
                        ));
                    }
                    let (kind, name) = match import.ty {
                        TypeRef::Func(t) => {
                            c.interface.funcs.push(t);
                            (0, "func")
                        }
                        TypeRef::Table(t) => {
                            c.interface.tables.push(t);
                            (1, "table")
                        }
                        TypeRef::Memory(m) => {
                            c.interface.memories.push(m);
                            (2, "memory")
                        }
                        TypeRef::Global(g) => {
                            c.interface.globals.push(g);
                            (3, "global")
                        }
                        TypeRef::Tag(t) => {
                            c.interface.tags.push(t);
                            (4, "tag")
                        }
                        TypeRef::FuncExact(_) => {
                            return Err(FormatError::layout(
                                offset,
                                "exact function imports are not part of the bundle layout",
                            ))
                        }
                    };
                    if kind < phase || import.name != name {
                        return Err(FormatError::layout(
                            offset,
                            format!(
                                "import `{}`: target imports must be named func, table, memory, \
                                 global, tag, grouped in that order",
                                clip(import.name)
                            ),
                        ));
                    }
                    phase = kind;
                }
            }
            Payload::FunctionSection(r) => {
                c.funcs_offset = r.range().start;
                for t in r {
                    c.defined.push(t.map_err(malformed)?);
                }
            }
            Payload::TableSection(r) => return Err(defines(r.range().start, "tables")),
            Payload::MemorySection(r) => return Err(defines(r.range().start, "memories")),
            Payload::GlobalSection(r) => return Err(defines(r.range().start, "globals")),
            Payload::TagSection(r) => return Err(defines(r.range().start, "tags")),
            Payload::StartSection { range, .. } => {
                return Err(defines(range.start, "a start function"))
            }
            Payload::ExportSection(r) => {
                // Checked through canonical re-encoding; only their shape here.
                for e in r.into_iter_with_offsets() {
                    let (offset, e) = e.map_err(malformed)?;
                    if e.kind != ExternalKind::Func {
                        return Err(FormatError::layout(
                            offset,
                            "a bundle exports only callback functions",
                        ));
                    }
                }
            }
            Payload::ElementSection(r) => {
                for e in r.into_iter_with_offsets() {
                    let (offset, e) = e.map_err(malformed)?;
                    if declared_seen {
                        return Err(FormatError::layout(
                            offset,
                            "the declarative element segment must be the last one",
                        ));
                    }
                    match (e.kind, e.items) {
                        (ElementKind::Passive, ElementItems::Functions(f)) if f.count() == 0 => {
                            c.interface.elem_types.push(RefType::FUNC)
                        }
                        (ElementKind::Passive, ElementItems::Expressions(ty, x))
                            if x.count() == 0 =>
                        {
                            c.interface.elem_types.push(ty)
                        }
                        (ElementKind::Declared, ElementItems::Functions(_)) => declared_seen = true,
                        _ => {
                            return Err(FormatError::layout(
                                offset,
                                "element segments of a bundle are empty passive mirrors of the \
                                 target's, then one declarative segment",
                            ))
                        }
                    }
                }
            }
            Payload::DataCountSection { count, .. } => c.interface.data_count = count,
            Payload::DataSection(r) => {
                for d in r.into_iter_with_offsets() {
                    let (offset, d) = d.map_err(malformed)?;
                    if !matches!(d.kind, wasmparser::DataKind::Passive) || !d.data.is_empty() {
                        return Err(FormatError::layout(
                            offset,
                            "data segments of a bundle are empty passive mirrors of the target's",
                        ));
                    }
                }
            }
            Payload::CodeSectionEntry(body) => c.bodies.push(body.as_bytes().to_vec()),
            Payload::CustomSection(s) => {
                let offset = s.range().start;
                if s.name() == MANIFEST_SECTION {
                    if c.manifest.is_some() {
                        return Err(FormatError::layout(offset, "a second manifest section"));
                    }
                    c.manifest = Some((s.data(), s.data_offset()));
                } else if s.name() == crate::transfer::TRANSFER_SECTION {
                    if c.manifest.is_none() || c.transfer.is_some() {
                        return Err(FormatError::layout(
                            offset,
                            "the transfer section comes once, after the manifest",
                        ));
                    }
                    c.transfer = Some((s.data(), s.data_offset()));
                } else if s.name() == SIGNATURE_SECTION {
                    return Err(FormatError::MalformedSignature {
                        offset,
                        reason: "the signature section must be the last section".into(),
                    });
                } else {
                    return Err(FormatError::layout(
                        offset,
                        format!(
                            "unexpected custom section `{}` (a bundle holds only its manifest and signature)",
                            clip(s.name())
                        ),
                    ));
                }
            }
            other => {
                let offset = other.as_section().map_or(0, |(_, r)| r.start);
                return Err(FormatError::layout(
                    offset,
                    "a section that does not belong in a bundle",
                ));
            }
        }
    }
    Ok(c)
}

fn defines(offset: u64, what: &str) -> FormatError {
    FormatError::layout(
        offset,
        format!("a bundle must not define {what} (it imports the target's)"),
    )
}

/// Shortens hostile strings before they go into messages.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

/// The decoded manifest, with the offset of each function record.
struct Manifest {
    /// Offset of the manifest, for messages.
    base: u64,
    data: crate::data::BundleData,
    site_offsets: Vec<u64>,
    target_hash: ModuleHash,
    target_func_count: u32,
    target_type_count: u32,
    flags: u8,
    metadata: Metadata,
    sits_on: Vec<BundleId>,
    states: Vec<StateVersion>,
    requires: Vec<StateVersion>,
    functions: Vec<FunctionRecord>,
}

struct FunctionRecord {
    offset: u64,
    role: u8,
    index: u32,
    flags: u8,
    name: String,
}

/// A bounds-checked reader over the manifest; offsets are absolute.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn err(&self, field: &str, reason: impl Into<String>) -> FormatError {
        FormatError::manifest(self.offset(), field, reason)
    }

    fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], FormatError> {
        let left = self.data.len() - self.pos;
        if n > left {
            return Err(self.err(
                field,
                format!("needs {n} bytes but only {left} are left (truncated)"),
            ));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, field: &str) -> Result<u8, FormatError> {
        Ok(self.bytes(1, field)?[0])
    }

    fn leb(&mut self, field: &str, max_bits: u32) -> Result<u64, FormatError> {
        let start = self.pos;
        let max_bytes = (max_bits as usize).div_ceil(7);
        let mut result: u128 = 0;
        for i in 0..max_bytes {
            let Some(&b) = self.data.get(self.pos) else {
                self.pos = start;
                return Err(self.err(field, "truncated integer"));
            };
            self.pos += 1;
            result |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if result >> max_bits != 0 {
                    self.pos = start;
                    return Err(self.err(field, format!("integer does not fit in {max_bits} bits")));
                }
                return Ok(result as u64);
            }
        }
        self.pos = start;
        Err(self.err(field, format!("integer longer than {max_bytes} bytes")))
    }

    fn u32(&mut self, field: &str) -> Result<u32, FormatError> {
        Ok(self.leb(field, 32)? as u32)
    }

    fn hash(&mut self, field: &str) -> Result<[u8; 32], FormatError> {
        let b = self.bytes(32, field)?;
        let mut out = [0; 32];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn string(&mut self, field: &str) -> Result<String, FormatError> {
        let at = self.pos;
        let len = self.u32(field)? as usize;
        if len > MAX_MANIFEST_STRING {
            self.pos = at;
            return Err(self.err(
                field,
                format!("string of {len} bytes is longer than the limit of {MAX_MANIFEST_STRING}"),
            ));
        }
        let bytes = self.bytes(len, field)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
            FormatError::manifest(self.base + at as u64, field, format!("not UTF-8 ({e})"))
        })
    }

    /// A count of items each at least `min_size` bytes long: capped by the
    /// bytes left, so no count can make us allocate more than the input.
    fn count(&mut self, field: &str, min_size: usize) -> Result<usize, FormatError> {
        let at = self.pos;
        let n = self.u32(field)? as usize;
        let left = self.data.len() - self.pos;
        if n.saturating_mul(min_size) > left {
            self.pos = at;
            return Err(self.err(
                field,
                format!(
                    "count {n} needs at least {} bytes, only {left} left",
                    n.saturating_mul(min_size)
                ),
            ));
        }
        Ok(n)
    }
}

impl crate::data::Fields for Cursor<'_> {
    fn at(&self) -> u64 {
        self.offset()
    }
    fn u8(&mut self, field: &str) -> Result<u8, FormatError> {
        Cursor::u8(self, field)
    }
    fn u32(&mut self, field: &str) -> Result<u32, FormatError> {
        Cursor::u32(self, field)
    }
    fn string(&mut self, field: &str) -> Result<String, FormatError> {
        Cursor::string(self, field)
    }
    fn bytes(&mut self, n: usize, field: &str) -> Result<Vec<u8>, FormatError> {
        Cursor::bytes(self, n, field).map(<[u8]>::to_vec)
    }
    fn count(&mut self, field: &str, min_size: usize) -> Result<usize, FormatError> {
        Cursor::count(self, field, min_size)
    }
}

impl Manifest {
    fn decode(data: &[u8], base: u64) -> Result<Manifest, FormatError> {
        let mut c = Cursor { data, pos: 0, base };
        if c.bytes(4, "magic")? != MANIFEST_MAGIC {
            return Err(FormatError::manifest(base, "magic", "expected `WPMF`"));
        }
        let at = c.offset();
        let version = c.u32("version")?;
        if version != 1 && version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                offset: at,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let target_hash = ModuleHash(c.hash("target_hash")?);
        let target_func_count = c.u32("target_func_count")?;
        let target_type_count = c.u32("target_type_count")?;
        let flags = c.u8("flags")?;
        if flags & !(FLAG_IMMEDIATE | FLAG_REPLACE) != 0 {
            return Err(FormatError::manifest(
                c.offset() - 1,
                "flags",
                format!("unknown flag bits {flags:#04x}"),
            ));
        }
        let name = c.string("name")?;
        let description = c.string("description")?;
        let created_by = c.string("created_by")?;
        let created_at = c.leb("created_at", 64)?;
        let new_module = match c.u8("new_module")? {
            0 => None,
            1 => Some(ModuleHash(c.hash("new_module")?)),
            b => {
                return Err(FormatError::manifest(
                    c.offset() - 1,
                    "new_module",
                    format!("presence byte must be 0 or 1, found {b}"),
                ))
            }
        };
        let n = c.count("sits_on", 32)?;
        let mut sits_on = Vec::with_capacity(n);
        for i in 0..n {
            let id = BundleId(c.hash(&format!("sits_on[{i}]"))?);
            if sits_on.last().is_some_and(|last| *last >= id) {
                return Err(c.err(&format!("sits_on[{i}]"), "ids must be sorted and unique"));
            }
            sits_on.push(id);
        }
        let states = Self::states(&mut c, "states")?;
        let requires = Self::states(&mut c, "requires")?;
        let n = c.count("functions", 4)?;
        let mut functions = Vec::with_capacity(n);
        for i in 0..n {
            let offset = c.offset();
            let role = c.u8(&format!("functions[{i}].role"))?;
            let index = c.u32(&format!("functions[{i}].index"))?;
            let at = c.offset();
            let flags = c.u8(&format!("functions[{i}].flags"))?;
            if flags & !ENTRY_IMMEDIATE != 0 {
                return Err(FormatError::manifest(
                    at,
                    format!("functions[{i}].flags"),
                    format!("unknown flag bits {flags:#04x}"),
                ));
            }
            let name = c.string(&format!("functions[{i}].name"))?;
            functions.push(FunctionRecord {
                offset,
                role,
                index,
                flags,
                name,
            });
        }
        let (data_part, site_offsets) = if version >= 2 {
            crate::data::decode(&mut c)?
        } else {
            Default::default()
        };
        if c.pos != data.len() {
            return Err(c.err("end", format!("{} trailing bytes", data.len() - c.pos)));
        }
        Ok(Manifest {
            base,
            data: data_part,
            site_offsets,
            target_hash,
            target_func_count,
            target_type_count,
            flags,
            metadata: Metadata {
                name,
                description,
                created_by,
                created_at,
                new_module,
            },
            sits_on,
            states,
            requires,
            functions,
        })
    }

    fn states(c: &mut Cursor<'_>, field: &str) -> Result<Vec<StateVersion>, FormatError> {
        let n = c.count(field, 2)?;
        let mut out: Vec<StateVersion> = Vec::with_capacity(n);
        for i in 0..n {
            let f = format!("{field}[{i}]");
            let id = c.u32(&f)?;
            let version = c.u32(&f)?;
            if out.last().is_some_and(|last| last.id >= id) {
                return Err(c.err(&f, "state ids must be sorted and unique"));
            }
            out.push(StateVersion { id, version });
        }
        Ok(out)
    }
}

/// Cross-checks manifest and module, and builds the parts.
fn assemble(c: Collected<'_>, m: Manifest) -> Result<BundleParts, FormatError> {
    let Collected {
        groups,
        mut interface,
        defined,
        bodies,
        funcs_offset,
        ..
    } = c;
    let n = interface.funcs.len() as u32;
    if m.target_func_count != n {
        return Err(FormatError::layout(
            0,
            format!(
                "manifest says the target has {} functions but the bundle imports {n}",
                m.target_func_count
            ),
        ));
    }
    // Split the type section at the target's type count.
    let mut seen = 0u32;
    let mut split = None;
    for (i, g) in groups.iter().enumerate() {
        if seen == m.target_type_count {
            split = Some(i);
            break;
        }
        seen += g.types.len() as u32;
    }
    let split = match split {
        Some(i) => i,
        None if seen == m.target_type_count => groups.len(),
        None => {
            return Err(FormatError::layout(
                0,
                format!(
                    "manifest says the target has {} types, which is not a recursion-group \
                     boundary of the bundle's {seen} types",
                    m.target_type_count
                ),
            ))
        }
    };
    let mut groups = groups;
    let extra_types = groups.split_off(split);
    interface.type_groups = groups;
    for g in &extra_types {
        let simple = g.types.len() == 1
            && g.types[0].is_final
            && g.types[0].supertype_idxs.is_empty()
            && matches!(g.types[0].composite_type.inner, CompositeInnerType::Func(_));
        if !simple {
            return Err(FormatError::layout(
                0,
                "types added by a bundle must be plain function types",
            ));
        }
    }
    if m.functions.len() != defined.len() || defined.len() != bodies.len() {
        return Err(FormatError::layout(
            funcs_offset,
            format!(
                "manifest lists {} functions but the bundle defines {}",
                m.functions.len(),
                defined.len()
            ),
        ));
    }

    let mut parts = BundleParts {
        target_hash: m.target_hash,
        interface,
        extra_types,
        metadata: m.metadata,
        immediate: m.flags & FLAG_IMMEDIATE != 0,
        replace: m.flags & FLAG_REPLACE != 0,
        sits_on: m.sits_on,
        states: m.states,
        requires: m.requires,
        entries: Vec::new(),
        callbacks: Vec::new(),
        data: m.data,
        transfer: Default::default(),
    };
    // Roles must come in order: adds, replaces, callbacks.
    let mut last: Option<(u8, u32)> = None;
    for (j, (rec, (type_index, body))) in m
        .functions
        .into_iter()
        .zip(defined.into_iter().zip(bodies))
        .enumerate()
    {
        let field = format!("functions[{j}]");
        let bad = |reason: String| FormatError::manifest(rec.offset, field.clone(), reason);
        if rec.name.is_empty() {
            return Err(bad("empty name".into()));
        }
        if last.is_some_and(|l| (rec.role, rec.index) <= l) {
            return Err(bad(
                "functions must be ordered adds, replaces, callbacks, each by index, without \
                 duplicates"
                    .into(),
            ));
        }
        last = Some((rec.role, rec.index));
        if rec.flags & ENTRY_IMMEDIATE != 0 && rec.role != ROLE_REPLACE {
            return Err(bad("only replacements may be immediate".into()));
        }
        let ty = parts
            .func_type(type_index)
            .cloned()
            .ok_or_else(|| bad(format!("type {type_index} is not a function type")))?;
        match rec.role {
            ROLE_ADD => {
                if rec.index != n + j as u32 {
                    return Err(bad(format!(
                        "added function has index {}, expected {} (target function count + position)",
                        rec.index,
                        u64::from(n) + j as u64
                    )));
                }
                parts.entries.push(Entry {
                    kind: EntryKind::Add {
                        new_index: rec.index,
                    },
                    name: rec.name,
                    type_index,
                    ty,
                    immediate: false,
                    body,
                });
            }
            ROLE_REPLACE => {
                let imported = parts.interface.funcs.get(rec.index as usize).copied();
                let Some(imported) = imported else {
                    return Err(bad(format!(
                        "replaces function {} but the target has {n}",
                        rec.index
                    )));
                };
                if imported != type_index {
                    return Err(bad(format!(
                        "replacement has type {type_index} but the bundle imports target function \
                         {} with type {imported} (imports carry the patched type)",
                        rec.index
                    )));
                }
                parts.entries.push(Entry {
                    kind: EntryKind::Replace {
                        target_index: rec.index,
                    },
                    name: rec.name,
                    type_index,
                    ty,
                    immediate: rec.flags & ENTRY_IMMEDIATE != 0,
                    body,
                });
            }
            ROLE_CALLBACK => {
                let kind = CallbackKind::from_code(rec.index)
                    .ok_or_else(|| bad(format!("unknown callback kind {}", rec.index)))?;
                if !(ty.params().is_empty() && ty.results() == [ValType::I32]) {
                    return Err(bad(format!(
                        "callback `{kind}` has type {ty}, expected () -> i32"
                    )));
                }
                parts.callbacks.push(Callback {
                    kind,
                    name: rec.name,
                    type_index,
                    body,
                });
            }
            role => return Err(bad(format!("unknown role {role}"))),
        }
    }
    if parts.entries.is_empty() {
        return Err(FormatError::layout(
            funcs_offset,
            "a bundle needs at least one entry",
        ));
    }
    crate::data::check(&parts, m.base, &m.site_offsets)?;
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(data: &[u8]) -> Cursor<'_> {
        Cursor {
            data,
            pos: 0,
            base: 100,
        }
    }

    #[test]
    fn leb_limits() {
        assert_eq!(cursor(&[0x7f]).u32("x").unwrap(), 127);
        assert_eq!(
            cursor(&[0xff, 0xff, 0xff, 0xff, 0x0f]).u32("x").unwrap(),
            u32::MAX
        );
        // Value too large for 32 bits, too long, truncated.
        for bad in [&[0xff, 0xff, 0xff, 0xff, 0x1f][..], &[0x80; 6], &[0x80]] {
            let e = cursor(bad).u32("field").unwrap_err();
            assert!(
                matches!(e, FormatError::Manifest { offset: 100, ref field, .. } if field == "field"),
                "{e}"
            );
        }
        assert_eq!(
            cursor(&[0xff; 9].iter().chain(&[0x01]).copied().collect::<Vec<_>>())
                .leb("t", 64)
                .unwrap(),
            u64::MAX
        );
    }

    #[test]
    fn counts_are_capped_by_the_bytes_left() {
        let mut c = cursor(&[0x05, 1, 2, 3]);
        let e = c.count("items", 1).unwrap_err().to_string();
        assert!(e.contains("count 5") && e.contains("only 3 left"), "{e}");
        assert_eq!(cursor(&[0x03, 1, 2, 3]).count("items", 1).unwrap(), 3);
    }

    #[test]
    fn strings_are_checked_before_allocation() {
        let e = cursor(&[0xff, 0xff, 0xff, 0xff, 0x0f])
            .string("name")
            .unwrap_err();
        assert!(e.to_string().contains("longer than the limit"), "{e}");
        let e = cursor(&[0x05, b'a']).string("name").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
