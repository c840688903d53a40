//! The in-memory model of a patch bundle: what it targets, its entries (in
//! the target's index spaces), callbacks, states, flags and metadata.
//!
//! Owns: [`Bundle`] (immutable once built or parsed, except for its
//! signature), [`BundleBuilder`] (the only way to make one besides
//! [`Bundle::parse`]), [`TargetInterface`] (the part of the target module the
//! entries' code may refer to), and the small value types around them.
//!
//! Invariant: a `Bundle` always holds the canonical unsigned encoding of its
//! content, and that encoding parses back to the same bundle. The builder
//! guarantees it by encoding and then parsing (one validation path for both).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use wasmparser::{
    CompositeInnerType, FuncType, GlobalType, MemoryType, Parser, Payload, RefType, SubType,
    TableType, TagType, TypeRef, ValType,
};

use crate::error::FormatError;
use crate::sign::Signature;

/// The newest bundle format version this crate reads and writes. A bundle
/// of code only is written as version 1 (readable by older readers); one
/// that carries data objects, table entries or code sites as version 2.
pub const FORMAT_VERSION: u32 = 2;
/// Name of the custom section that holds the manifest.
pub const MANIFEST_SECTION: &str = "wasm-patch.manifest";
/// Name of the custom section that holds the signature (always last).
pub const SIGNATURE_SECTION: &str = "wasm-patch.signature";
/// Module name of every import of a bundle: they mirror the target module.
pub const TARGET_MODULE: &str = "wasm-patch:target";

macro_rules! sha256_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// SHA-256 of `bytes`.
            pub fn of(bytes: &[u8]) -> Self {
                $name(Sha256::digest(bytes).into())
            }
            /// The 32 bytes of the digest.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex(&self.0))
            }
        }

        impl FromStr for $name {
            type Err = String;
            /// Parses 64 hex digits, optionally prefixed by `sha256:`.
            fn from_str(s: &str) -> Result<Self, String> {
                let s = s.trim();
                let s = s.strip_prefix("sha256:").unwrap_or(s);
                let bytes = unhex(s).ok_or_else(|| format!("`{s}` is not a hex string"))?;
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| format!("`{s}` is not 64 hex digits (a SHA-256)"))?;
                Ok($name(arr))
            }
        }
    };
}

sha256_newtype!(
    /// Identity of a module: the SHA-256 of its exact bytes (binary form).
    ModuleHash
);
sha256_newtype!(
    /// Identity of a bundle: the SHA-256 of its canonical unsigned bytes
    /// (everything but the signature section), so signing does not change it.
    BundleId
);

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes lowercase or uppercase hex; `None` if not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The four callbacks of a bundle, as in the kernel's `klp_callbacks`.
///
/// They come in pairs: pre-patch ↔ post-unpatch, post-patch ↔ pre-unpatch.
/// Each is a function of type `() -> i32`; a nonzero result from
/// pre-patch vetoes the apply, and from the others is reported as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallbackKind {
    /// Runs before anything is published; nonzero vetoes the apply.
    PrePatch,
    /// Runs after the transition to the patched world completes.
    PostPatch,
    /// Runs before a revert starts (cannot veto).
    PreUnpatch,
    /// Runs after a revert (or a reversed apply) completes.
    PostUnpatch,
}

impl CallbackKind {
    /// All kinds, in manifest order.
    pub const ALL: [CallbackKind; 4] = [
        CallbackKind::PrePatch,
        CallbackKind::PostPatch,
        CallbackKind::PreUnpatch,
        CallbackKind::PostUnpatch,
    ];

    /// Its code in the manifest (0..=3).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The kind with manifest code `code`.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }

    /// `pre-patch`, `post-patch`, `pre-unpatch` or `post-unpatch`.
    pub fn name(self) -> &'static str {
        match self {
            CallbackKind::PrePatch => "pre-patch",
            CallbackKind::PostPatch => "post-patch",
            CallbackKind::PreUnpatch => "pre-unpatch",
            CallbackKind::PostUnpatch => "post-unpatch",
        }
    }

    /// The name under which the bundle module exports the callback.
    pub fn export_name(self) -> &'static str {
        match self {
            CallbackKind::PrePatch => "wasm-patch:pre-patch",
            CallbackKind::PostPatch => "wasm-patch:post-patch",
            CallbackKind::PreUnpatch => "wasm-patch:pre-unpatch",
            CallbackKind::PostUnpatch => "wasm-patch:post-unpatch",
        }
    }
}

impl fmt::Display for CallbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A state id and version, as the kernel's `klp_state`: a bundle declares
/// the states it leaves behind and may require states left by others.
///
/// A requirement `id:v` is met when an applied bundle declares `id` with a
/// version `>= v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateVersion {
    /// Which state (chosen by the patch authors).
    pub id: u32,
    /// Its version.
    pub version: u32,
}

impl fmt::Display for StateVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id, self.version)
    }
}

impl FromStr for StateVersion {
    type Err = String;
    /// Parses `ID:VERSION`, both decimal `u32`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, version) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not ID:VERSION"))?;
        let id = id
            .trim()
            .parse()
            .map_err(|_| format!("state id `{id}` is not a u32"))?;
        let version = version
            .trim()
            .parse()
            .map_err(|_| format!("state version `{version}` is not a u32"))?;
        Ok(StateVersion { id, version })
    }
}

/// Descriptive fields of a bundle. Covered by the signature like the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Short name of the bundle.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The tool that made it (`wasm-patch diff 0.1.0`).
    pub created_by: String,
    /// Creation time, seconds since the Unix epoch (0 if unknown).
    pub created_at: u64,
    /// SHA-256 of the new build the bundle was made from, if known.
    pub new_module: Option<ModuleHash>,
}

/// What an entry does to the target's function index space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Replaces the target's function `target_index`.
    Replace {
        /// Index in the target's function index space (imports included).
        target_index: u32,
    },
    /// Adds a function; it gets index `new_index`, which is
    /// `target_func_count + k` for the `k`-th added function.
    Add {
        /// Index of the new function in the patched function index space.
        new_index: u32,
    },
}

impl EntryKind {
    /// The function index the entry defines in the patched index space.
    pub fn func_index(&self) -> u32 {
        match *self {
            EntryKind::Replace { target_index } => target_index,
            EntryKind::Add { new_index } => new_index,
        }
    }

    /// `replace` or `add`.
    pub fn verb(&self) -> &'static str {
        match self {
            EntryKind::Replace { .. } => "replace",
            EntryKind::Add { .. } => "add",
        }
    }
}

/// One function of a bundle: a replacement or an addition.
///
/// `body` is a complete wasm function body (locals, then the expression up
/// to and including its final `end`, without the size prefix) whose indices
/// all refer to the **target module's index spaces**: functions (added ones
/// are `target_func_count + k`), types (indices from
/// [`Bundle::target_type_count`] on are [`Bundle::extra_types`]), globals,
/// memories, tables, tags, data and element segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Replace or add, with the index.
    pub kind: EntryKind,
    /// The function's name (from the new build's name section or exports).
    pub name: String,
    /// Index of its type in the bundle's type space (target types, then extra types).
    pub type_index: u32,
    /// Its signature (derived from `type_index` when the bundle is built).
    pub ty: FuncType,
    /// Switch this function for every thread at once, without stack checks.
    /// Only replacements may be immediate.
    pub immediate: bool,
    /// The code, in the target's index spaces.
    pub body: Vec<u8>,
}

/// A callback of a bundle: a function of type `() -> i32` run at one point
/// of the bundle's life. Its body is in the target's index spaces like an
/// entry's; it gets no slot and no index in the patched module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// When it runs.
    pub kind: CallbackKind,
    /// Name of the function of the new build it was made from.
    pub name: String,
    /// Index of its type (`() -> i32`) in the bundle's type space.
    pub type_index: u32,
    /// The code, in the target's index spaces.
    pub body: Vec<u8>,
}

/// One recursion group of a type section, raw and decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeGroup {
    /// Its exact encoding inside a type section.
    pub(crate) bytes: Vec<u8>,
    /// The types it defines, in order.
    pub(crate) types: Vec<SubType>,
}

/// What the bundle knows of its target: the index spaces the entries' code
/// may refer to. A bundle module imports all of it from
/// [`TARGET_MODULE`], so that its own index spaces coincide with the
/// target's (see FORMAT.md).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInterface {
    pub(crate) type_groups: Vec<TypeGroup>,
    pub(crate) funcs: Vec<u32>,
    pub(crate) tables: Vec<TableType>,
    pub(crate) memories: Vec<MemoryType>,
    pub(crate) globals: Vec<GlobalType>,
    pub(crate) tags: Vec<TagType>,
    pub(crate) data_count: u32,
    pub(crate) elem_types: Vec<RefType>,
}

impl TargetInterface {
    /// Reads the interface of a target module (imports and definitions
    /// alike: a bundle sees the whole index space).
    ///
    /// # Errors
    /// [`FormatError::Invalid`] if `module` is not a valid core module.
    pub fn from_module(module: &[u8]) -> Result<Self, FormatError> {
        let invalid = |e: wasmparser::BinaryReaderError| FormatError::Invalid {
            offset: e.offset(),
            message: e.message().to_string(),
        };
        wasmparser::Validator::new()
            .validate_all(module)
            .map_err(invalid)?;
        let mut it = TargetInterface {
            type_groups: Vec::new(),
            funcs: Vec::new(),
            tables: Vec::new(),
            memories: Vec::new(),
            globals: Vec::new(),
            tags: Vec::new(),
            data_count: 0,
            elem_types: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(module) {
            match payload.map_err(invalid)? {
                Payload::Version {
                    encoding: wasmparser::Encoding::Component,
                    ..
                } => {
                    return Err(FormatError::Invalid {
                        offset: 0,
                        message: "a component, not a core module".into(),
                    })
                }
                Payload::TypeSection(r) => {
                    it.type_groups = read_type_groups(module, r)?;
                }
                Payload::ImportSection(r) => {
                    for import in r.into_imports() {
                        match import.map_err(invalid)?.ty {
                            TypeRef::Func(t) | TypeRef::FuncExact(t) => it.funcs.push(t),
                            TypeRef::Table(t) => it.tables.push(t),
                            TypeRef::Memory(m) => it.memories.push(m),
                            TypeRef::Global(g) => it.globals.push(g),
                            TypeRef::Tag(t) => it.tags.push(t),
                        }
                    }
                }
                Payload::FunctionSection(r) => {
                    for t in r {
                        it.funcs.push(t.map_err(invalid)?);
                    }
                }
                Payload::TableSection(r) => {
                    for t in r {
                        it.tables.push(t.map_err(invalid)?.ty);
                    }
                }
                Payload::MemorySection(r) => {
                    for m in r {
                        it.memories.push(m.map_err(invalid)?);
                    }
                }
                Payload::GlobalSection(r) => {
                    for g in r {
                        it.globals.push(g.map_err(invalid)?.ty);
                    }
                }
                Payload::TagSection(r) => {
                    for t in r {
                        it.tags.push(t.map_err(invalid)?);
                    }
                }
                Payload::ElementSection(r) => {
                    for e in r {
                        it.elem_types.push(match e.map_err(invalid)?.items {
                            // Index lists have type `(ref func)` (as the validator sees them).
                            wasmparser::ElementItems::Functions(_) => RefType::FUNC,
                            wasmparser::ElementItems::Expressions(ty, _) => ty,
                        });
                    }
                }
                Payload::DataSection(r) => it.data_count = r.count(),
                _ => {}
            }
        }
        Ok(it)
    }

    /// Number of functions of the target (imported and defined).
    pub fn func_count(&self) -> u32 {
        self.funcs.len() as u32
    }

    /// Number of types of the target's type section.
    pub fn type_count(&self) -> u32 {
        self.type_groups.iter().map(|g| g.types.len() as u32).sum()
    }

    /// Type index of every function, as the bundle sees it (for a
    /// replacement whose signature changes, the new type).
    pub fn func_type_indices(&self) -> &[u32] {
        &self.funcs
    }

    /// Tables (imported and defined).
    pub fn tables(&self) -> &[TableType] {
        &self.tables
    }

    /// Memories (imported and defined).
    pub fn memories(&self) -> &[MemoryType] {
        &self.memories
    }

    /// Globals (imported and defined).
    pub fn globals(&self) -> &[GlobalType] {
        &self.globals
    }

    /// Tags (imported and defined).
    pub fn tags(&self) -> &[TagType] {
        &self.tags
    }

    /// Number of data segments.
    pub fn data_count(&self) -> u32 {
        self.data_count
    }

    /// Element type of each element segment.
    pub fn elem_types(&self) -> &[RefType] {
        &self.elem_types
    }
}

/// Splits a type section into its recursion groups, raw and decoded.
pub(crate) fn read_type_groups(
    module: &[u8],
    reader: wasmparser::TypeSectionReader<'_>,
) -> Result<Vec<TypeGroup>, FormatError> {
    let end = reader.range().end;
    let items: Vec<(u64, wasmparser::RecGroup)> = reader
        .into_iter_with_offsets()
        .collect::<Result<_, _>>()
        .map_err(|e| FormatError::malformed(&e))?;
    let mut groups = Vec::with_capacity(items.len());
    for (i, (start, group)) in items.iter().enumerate() {
        let stop = items.get(i + 1).map_or(end, |(s, _)| *s);
        let bytes = module
            .get(*start as usize..stop as usize)
            .ok_or_else(|| FormatError::layout(*start, "type group out of bounds"))?;
        groups.push(TypeGroup {
            bytes: bytes.to_vec(),
            types: group.types().cloned().collect(),
        });
    }
    Ok(groups)
}

/// Everything a bundle says, before encoding. Shared by the builder, the
/// writer and the reader.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BundleParts {
    pub(crate) target_hash: ModuleHash,
    pub(crate) interface: TargetInterface,
    pub(crate) extra_types: Vec<TypeGroup>,
    pub(crate) metadata: Metadata,
    pub(crate) immediate: bool,
    pub(crate) replace: bool,
    pub(crate) sits_on: Vec<BundleId>,
    pub(crate) states: Vec<StateVersion>,
    pub(crate) requires: Vec<StateVersion>,
    pub(crate) entries: Vec<Entry>,
    pub(crate) callbacks: Vec<Callback>,
    /// Data objects, table entries and code sites (FORMAT.md §9).
    pub(crate) data: crate::data::BundleData,
    /// Frame transfer maps and refusals (`transfer.rs`).
    pub(crate) transfer: crate::transfer::Transfers,
}

impl BundleParts {
    /// The type at `index` in the bundle's type space.
    pub(crate) fn sub_type(&self, index: u32) -> Option<&SubType> {
        let mut i = index as usize;
        for g in self
            .interface
            .type_groups
            .iter()
            .chain(self.extra_types.iter())
        {
            if i < g.types.len() {
                return Some(&g.types[i]);
            }
            i -= g.types.len();
        }
        None
    }

    pub(crate) fn func_type(&self, index: u32) -> Option<&FuncType> {
        match &self.sub_type(index)?.composite_type.inner {
            CompositeInnerType::Func(f) => Some(f),
            _ => None,
        }
    }
}

/// A patch bundle: replacement and added functions for one target module,
/// in that module's index spaces, with flags, callbacks, states, metadata
/// and an optional signature.
///
/// Made by [`Bundle::parse`] or [`BundleBuilder::build`]; see FORMAT.md for
/// the encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub(crate) parts: BundleParts,
    pub(crate) unsigned: Vec<u8>,
    pub(crate) id: BundleId,
    pub(crate) signature: Option<Signature>,
}

impl Bundle {
    /// Reads a bundle. Total: any input gives a bundle or an error naming
    /// the offset and field, never a panic. The signature, if present, is
    /// read but **not verified**; use [`TrustedKeys::verify`](crate::TrustedKeys::verify)
    /// to demand one from trusted keys before parsing.
    ///
    /// # Errors
    /// Any [`FormatError`] about bytes or layout.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, FormatError> {
        crate::read::parse(bytes)
    }

    /// The bundle's bytes: the canonical unsigned encoding, followed by the
    /// signature section if the bundle is signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.unsigned.clone();
        if let Some(sig) = &self.signature {
            sig.append_section(&mut out);
        }
        out
    }

    /// The canonical unsigned encoding (what the signature covers).
    pub fn unsigned_bytes(&self) -> &[u8] {
        &self.unsigned
    }

    /// SHA-256 of the unsigned bytes; the id other bundles use in `sits_on`.
    pub fn bundle_id(&self) -> BundleId {
        self.id
    }

    /// SHA-256 of the module this bundle patches.
    pub fn target_hash(&self) -> ModuleHash {
        self.parts.target_hash
    }

    /// Number of functions of the target (imported and defined); added
    /// functions are numbered from here.
    pub fn target_func_count(&self) -> u32 {
        self.parts.interface.func_count()
    }

    /// Number of types of the target; type indices from here on in entry
    /// bodies refer to [`Bundle::extra_types`].
    pub fn target_type_count(&self) -> u32 {
        self.parts.interface.type_count()
    }

    /// Function types the bundle adds to the target's type space, in order:
    /// the first has index [`Bundle::target_type_count`].
    pub fn extra_types(&self) -> Vec<&FuncType> {
        self.parts
            .extra_types
            .iter()
            .flat_map(|g| g.types.iter())
            .filter_map(|t| match &t.composite_type.inner {
                CompositeInnerType::Func(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// The function type at `type_index` of the bundle's type space
    /// (target types, then extra types); `None` if out of range or not a
    /// function type.
    pub fn func_type(&self, type_index: u32) -> Option<&FuncType> {
        self.parts.func_type(type_index)
    }

    /// The target interface the bundle was built against.
    pub fn interface(&self) -> &TargetInterface {
        &self.parts.interface
    }

    /// Name, description and creation data.
    pub fn metadata(&self) -> &Metadata {
        &self.parts.metadata
    }

    /// Bundle-wide immediate flag: every entry switches at once.
    pub fn immediate(&self) -> bool {
        self.parts.immediate
    }

    /// Whether `entry` switches immediately: its own flag or the bundle's.
    pub fn is_immediate(&self, entry: &Entry) -> bool {
        self.parts.immediate || entry.immediate
    }

    /// Cumulative bundle: replaces every bundle applied before it.
    pub fn replace(&self) -> bool {
        self.parts.replace
    }

    /// Bundles that must be applied (and stay applied) under this one.
    pub fn sits_on(&self) -> &[BundleId] {
        &self.parts.sits_on
    }

    /// States this bundle declares (leaves behind once applied).
    pub fn states(&self) -> &[StateVersion] {
        &self.parts.states
    }

    /// States this bundle requires: for each `id:v`, an applied bundle must
    /// declare `id` with version `>= v`.
    pub fn requires_states(&self) -> &[StateVersion] {
        &self.parts.requires
    }

    /// Replacements and additions: additions first (in `new_index` order),
    /// then replacements (in `target_index` order).
    pub fn entries(&self) -> &[Entry] {
        &self.parts.entries
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.parts.entries.iter().find(|e| e.name == name)
    }

    /// Callbacks, in [`CallbackKind::ALL`] order.
    pub fn callbacks(&self) -> &[Callback] {
        &self.parts.callbacks
    }

    /// The callback of that kind, if any.
    pub fn callback(&self, kind: CallbackKind) -> Option<&Callback> {
        self.parts.callbacks.iter().find(|c| c.kind == kind)
    }

    /// Frame transfer maps and refusals (FORMAT.md §10; empty when the
    /// bundle has none).
    pub fn transfers(&self) -> &crate::transfer::Transfers {
        &self.parts.transfer
    }

    /// The signature section, if the bundle is signed (not verified).
    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    /// Drops the signature (the bundle id does not change).
    pub fn clear_signature(&mut self) {
        self.signature = None;
    }
}

/// Builds a [`Bundle`]. `build` sorts entries and callbacks into canonical
/// order, encodes, and parses the result back, so a built bundle has passed
/// exactly the checks a read one passes (including wasm validation of every
/// entry against the target interface).
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    parts: BundleParts,
}

impl BundleBuilder {
    /// A builder for a bundle against the module with hash `target_hash`
    /// and interface `interface`.
    pub fn new(target_hash: ModuleHash, interface: TargetInterface) -> Self {
        BundleBuilder {
            parts: BundleParts {
                target_hash,
                interface,
                extra_types: Vec::new(),
                metadata: Metadata::default(),
                immediate: false,
                replace: false,
                sits_on: Vec::new(),
                states: Vec::new(),
                requires: Vec::new(),
                entries: Vec::new(),
                callbacks: Vec::new(),
                data: crate::data::BundleData::default(),
                transfer: Default::default(),
            },
        }
    }

    /// Sets the bundle's data objects, table entries and code sites.
    pub fn data(&mut self, data: crate::data::BundleData) -> &mut Self {
        self.parts.data = data;
        self
    }

    /// Sets the frame transfer maps and refusals (FORMAT.md §10).
    pub fn transfer(&mut self, transfer: crate::transfer::Transfers) -> &mut Self {
        self.parts.transfer = transfer;
        self
    }

    /// Appends a function type to the bundle's type space; returns its index.
    pub fn add_type(&mut self, ty: &FuncType) -> Result<u32, FormatError> {
        let params = encoder_val_types(ty, ty.params())?;
        let results = encoder_val_types(ty, ty.results())?;
        let mut section = wasm_encoder::TypeSection::new();
        section.ty().function(params, results);
        // The raw section is `count` (1, one byte) followed by the group.
        let mut raw = Vec::new();
        wasm_encoder::Encode::encode(&section, &mut raw);
        // `encode` writes the section payload with a length prefix: skip
        // the length and the count, both one byte for one small group.
        let group = strip_vec_prefix(&raw)
            .ok_or_else(|| FormatError::Build(format!("type {ty} is too large to encode")))?;
        let index = self.parts.interface.type_count()
            + self
                .parts
                .extra_types
                .iter()
                .map(|g| g.types.len() as u32)
                .sum::<u32>();
        self.parts.extra_types.push(TypeGroup {
            bytes: group,
            types: vec![SubType {
                is_final: true,
                supertype_idxs: Vec::new(),
                composite_type: wasmparser::CompositeType {
                    inner: CompositeInnerType::Func(ty.clone()),
                    shared: false,
                    descriptor_idx: None,
                    describes_idx: None,
                },
            }],
        });
        Ok(index)
    }

    /// Sets the type under which the bundle imports target function `index`
    /// (needed when a replacement changes that function's signature, so that
    /// callers in the bundle validate).
    ///
    /// # Errors
    /// [`FormatError::Build`] if `index` is not a target function.
    pub fn set_func_type(&mut self, index: u32, type_index: u32) -> Result<(), FormatError> {
        let slot = self
            .parts
            .interface
            .funcs
            .get_mut(index as usize)
            .ok_or_else(|| FormatError::Build(format!("no target function {index}")))?;
        *slot = type_index;
        Ok(())
    }

    /// Sets name, description and creation data.
    pub fn metadata(&mut self, metadata: Metadata) -> &mut Self {
        self.parts.metadata = metadata;
        self
    }

    /// Sets the bundle-wide immediate flag.
    pub fn immediate(&mut self, yes: bool) -> &mut Self {
        self.parts.immediate = yes;
        self
    }

    /// Sets the cumulative `replace` flag.
    pub fn replace(&mut self, yes: bool) -> &mut Self {
        self.parts.replace = yes;
        self
    }

    /// Adds a bundle this one sits on.
    pub fn sits_on(&mut self, id: BundleId) -> &mut Self {
        self.parts.sits_on.push(id);
        self
    }

    /// Declares a state.
    pub fn state(&mut self, state: StateVersion) -> &mut Self {
        self.parts.states.push(state);
        self
    }

    /// Requires a state.
    pub fn requires_state(&mut self, state: StateVersion) -> &mut Self {
        self.parts.requires.push(state);
        self
    }

    /// Adds an entry (its `ty` is recomputed from `type_index` on build).
    pub fn entry(&mut self, entry: Entry) -> &mut Self {
        self.parts.entries.push(entry);
        self
    }

    /// Adds a callback.
    pub fn callback(&mut self, callback: Callback) -> &mut Self {
        self.parts.callbacks.push(callback);
        self
    }

    /// Encodes and re-reads the bundle.
    ///
    /// # Errors
    /// [`FormatError::Build`] for a broken format rule (no entry, duplicate
    /// entry, additions not numbered `target_func_count + k`, ...), or any
    /// reading error if an entry's code does not validate against the
    /// target interface.
    pub fn build(&self) -> Result<Bundle, FormatError> {
        let mut parts = self.parts.clone();
        parts.entries.sort_by_key(|e| match e.kind {
            EntryKind::Add { new_index } => (0, new_index),
            EntryKind::Replace { target_index } => (1, target_index),
        });
        parts.callbacks.sort_by_key(|c| c.kind);
        parts.sits_on.sort();
        parts.states.sort();
        parts.requires.sort();
        if parts.entries.is_empty() {
            return Err(FormatError::Build(
                "a bundle needs at least one entry".into(),
            ));
        }
        for o in &parts.data.objects {
            if o.init.as_ref().is_some_and(|b| b.len() != o.size as usize) {
                return Err(FormatError::Build(format!(
                    "data object `{}` has {} initial bytes for a size of {}",
                    o.name,
                    o.init.as_ref().map_or(0, Vec::len),
                    o.size
                )));
            }
        }
        let bytes = crate::write::encode(&parts)?;
        crate::read::parse(&bytes)
    }
}

fn encoder_val_types(
    ty: &FuncType,
    types: &[ValType],
) -> Result<Vec<wasm_encoder::ValType>, FormatError> {
    use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
    types
        .iter()
        .map(|v| {
            RoundtripReencoder
                .val_type(*v)
                .map_err(|e| FormatError::Build(format!("type {ty}: {e}")))
        })
        .collect()
}

/// Drops a section's length prefix and vector count (both LEB128) from the
/// output of `Encode` on a one-item section, returning the item's bytes.
fn strip_vec_prefix(raw: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 0;
    for _ in 0..2 {
        loop {
            let b = *raw.get(pos)?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    Some(raw[pos..].to_vec())
}
