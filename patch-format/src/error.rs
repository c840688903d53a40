//! Every error this crate returns, in one place.
//!
//! - [`FormatError`]: reading, building, signing or verifying a bundle. Each
//!   variant that comes from bytes names the byte offset (from the start of
//!   the bundle) and, for the manifest, the field being read.
//! - [`DiffError`]: building a bundle from two builds of a module; the
//!   [`Unpatchable`] reasons each name the thing a function-level patch
//!   cannot carry.

use std::fmt;

/// An error while reading, building, signing or verifying a bundle.
///
/// Reading is total: any input yields a bundle or one of these, never a
/// panic. Offsets are byte offsets from the start of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes are not a WebAssembly module (or not a well-formed one).
    #[error("not a well-formed wasm module at offset {offset:#x}: {message}")]
    Malformed {
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The module is well-formed but does not validate.
    #[error("bundle module does not validate at offset {offset:#x}: {message}")]
    Invalid {
        /// Byte offset of the problem.
        offset: u64,
        /// The validator's message.
        message: String,
    },
    /// The module has no `wasm-patch.manifest` custom section.
    #[error("not a patch bundle: no `wasm-patch.manifest` custom section")]
    MissingManifest,
    /// The manifest declares a format version this reader does not know.
    #[error("unsupported bundle format version {found} at offset {offset:#x} (this reader knows version {supported})")]
    UnsupportedVersion {
        /// Byte offset of the version field.
        offset: u64,
        /// The version found.
        found: u32,
        /// The version this crate reads and writes.
        supported: u32,
    },
    /// A manifest field could not be read or has a value the format forbids.
    #[error("manifest field `{field}` at offset {offset:#x}: {reason}")]
    Manifest {
        /// Byte offset of the field.
        offset: u64,
        /// The field, as a path (`entries[2].name`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The module's structure does not follow the bundle layout of FORMAT.md.
    #[error("bundle layout at offset {offset:#x}: {reason}")]
    Layout {
        /// Byte offset of the section or item.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The bytes decode to a valid bundle, but are not its canonical
    /// encoding (so two different byte strings would carry one bundle).
    #[error("bundle is not in canonical form: first difference at offset {offset:#x}")]
    NotCanonical {
        /// First offset where the input differs from the canonical encoding.
        offset: u64,
    },
    /// A bundle being built breaks a rule of the format.
    #[error("cannot build bundle: {0}")]
    Build(String),
    /// The signature section is malformed.
    #[error("signature section at offset {offset:#x}: {reason}")]
    MalformedSignature {
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A signature was required but the bundle carries none.
    #[error("bundle is not signed")]
    Unsigned,
    /// The bundle is signed by a key that is not trusted.
    #[error("bundle is signed by key {key}, which is not trusted")]
    UntrustedKey {
        /// Hex of the signing public key.
        key: String,
    },
    /// The signature does not match the bundle's content.
    #[error("bad signature: the bundle was modified after signing, or the signature was not made by key {key}")]
    BadSignature {
        /// Hex of the public key named in the signature section.
        key: String,
    },
    /// A key file could not be read.
    #[error("key file: {0}")]
    KeyFile(String),
}

impl FormatError {
    pub(crate) fn manifest(
        offset: u64,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        FormatError::Manifest {
            offset,
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn layout(offset: u64, reason: impl Into<String>) -> Self {
        FormatError::Layout {
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(e: &wasmparser::BinaryReaderError) -> Self {
        FormatError::Malformed {
            offset: e.offset(),
            message: e.message().to_string(),
        }
    }
}

/// Which of the two builds given to [`diff`](crate::diff()) a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The build currently running (the target of the bundle).
    Old,
    /// The fixed build.
    New,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Old => "old",
            Side::New => "new",
        })
    }
}

/// An error while building a bundle from two builds of a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// One of the two modules is not valid WebAssembly.
    #[error("{side} module is not valid wasm (offset {offset:#x}): {message}")]
    Module {
        /// Which module.
        side: Side,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The two modules differ in no function.
    #[error("no function changed: the two modules are identical as far as a patch is concerned")]
    NoChange,
    /// No function changed except some whose only difference is a panic
    /// location's line or column (their raw names).
    #[error("no function changed except {} whose only difference is a panic location's line or column (left out; --include-line-only takes them in)", .0.len())]
    OnlyLineChanges(Vec<String>),
    /// The changes cannot be carried by a function-level patch.
    #[error("cannot build a patch:{}", list(.0))]
    Unpatchable(Vec<Unpatchable>),
    /// A command-line option names something that does not fit.
    #[error("{0}")]
    Option(String),
    /// The resulting bundle broke a format rule (a bug in `diff` if it happens).
    #[error(transparent)]
    Format(#[from] FormatError),
}

fn list(reasons: &[Unpatchable]) -> String {
    let mut s = String::new();
    for r in reasons {
        s.push_str("\n  - ");
        s.push_str(&r.to_string());
    }
    s
}

/// One reason why two builds cannot be turned into a function-level patch.
/// Each names the item concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unpatchable {
    /// The import list differs.
    #[error("imports changed: {0}")]
    Imports(String),
    /// The type section changed in a way that cannot be mapped (GC types).
    #[error("type section changed: {0}")]
    Types(String),
    /// A data segment was changed, added or removed.
    #[error("data segment {index}{} changed: {what}; a function-level patch cannot change data", name_suffix(.name))]
    Data {
        /// Index of the data segment.
        index: u32,
        /// Its name from the name section, if any.
        name: Option<String>,
        /// What changed.
        what: String,
    },
    /// A function (new or changed) references data the running instance
    /// does not have: a new static, a new or changed constant, a new table
    /// entry. Needs bundle-owned data (`FORMAT.md`, "Bundle-owned data").
    #[error("function `{function}` needs {what}; bundles cannot carry new data yet")]
    NeedsData {
        /// The function (readable name).
        function: String,
        /// The object it needs.
        what: String,
    },
    /// A global's type or initial value changed, or a global was added or removed.
    #[error("global {index}{} changed: {what}", name_suffix(.name))]
    Global {
        /// Index of the global.
        index: u32,
        /// Its name from the name section, if any.
        name: Option<String>,
        /// What changed.
        what: String,
    },
    /// A memory's limits changed, or a memory was added or removed.
    #[error("memory {index} changed: {what}")]
    Memory {
        /// Index of the memory.
        index: u32,
        /// What changed.
        what: String,
    },
    /// A table's type changed, or a table was added or removed.
    #[error("table {index} changed: {what}")]
    Table {
        /// Index of the table.
        index: u32,
        /// What changed.
        what: String,
    },
    /// A tag changed, or a tag was added or removed.
    #[error("tag {index} changed: {what}")]
    Tag {
        /// Index of the tag.
        index: u32,
        /// What changed.
        what: String,
    },
    /// An element segment changed, or one was added or removed.
    #[error("element segment {index}{} changed: {what}", name_suffix(.name))]
    Element {
        /// Index of the element segment.
        index: u32,
        /// Its name from the name section, if any.
        name: Option<String>,
        /// What changed.
        what: String,
    },
    /// An export was added, removed or now names something else.
    #[error("export `{name}` changed: {what}")]
    Export {
        /// The export's name.
        name: String,
        /// What changed.
        what: String,
    },
    /// The start function was added, removed or changed.
    #[error("start function changed: {0}")]
    Start(String),
    /// A function cannot be matched between the two builds.
    #[error("cannot match function: {0}")]
    Unmatched(String),
    /// A function of the old build is gone but something still uses it.
    #[error("function `{name}` was removed but {referrer} still uses it; a patch cannot remove a function that unpatched code reaches")]
    Removed {
        /// The removed function.
        name: String,
        /// What still refers to it.
        referrer: String,
    },
    /// A function's signature changes in a way the bundle cannot carry.
    #[error("function `{name}` changes type from {old} to {new}, but {reason}")]
    Signature {
        /// The function.
        name: String,
        /// Old signature.
        old: String,
        /// New signature.
        new: String,
        /// Why this is refused.
        reason: String,
    },
}

fn name_suffix(name: &Option<String>) -> String {
    match name {
        Some(n) => format!(" (`{n}`)"),
        None => String::new(),
    }
}
