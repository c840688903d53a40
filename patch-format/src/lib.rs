//! Patch bundles for wasm-patch: the format (read, write, sign, verify)
//! and `diff`, which builds a bundle from two builds of one module.
//!
//! A bundle is itself a valid wasm module whose imports mirror the target
//! module's index spaces, whose functions are the entries' code, and whose
//! `wasm-patch.manifest` custom section says what each function is for.
//! See `FORMAT.md` beside this crate for the byte-level specification.
//!
//! # Example: diff, sign, verify, and read the entries
//!
//! ```
//! use patch_format::{diff, Bundle, DiffOptions, EntryKind, SecretKey, TrustedKeys};
//!
//! let old = wat::parse_str(r#"(module
//!     (func $double (export "double") (param i32) (result i32)
//!         local.get 0 i32.const 2 i32.mul))"#).unwrap();
//! let new = wat::parse_str(r#"(module
//!     (func $double (export "double") (param i32) (result i32)
//!         local.get 0 local.get 0 i32.add))"#).unwrap();
//!
//! let mut bundle = diff(&old, &new, &DiffOptions::default()).unwrap().bundle;
//! let key = SecretKey::from_bytes(&[7; 32]);
//! bundle.sign(&key);
//! let bytes = bundle.to_bytes();
//!
//! // A host trusts some keys and checks the signature before parsing.
//! let mut trusted = TrustedKeys::new();
//! trusted.add(key.public_key());
//! let verified = trusted.verify(&bytes).unwrap();
//! let entry = &verified.entries()[0];
//! assert_eq!(entry.name, "double");
//! assert_eq!(entry.kind, EntryKind::Replace { target_index: 0 });
//! // `entry.body` is a function body in the target's index spaces.
//! assert_eq!(Bundle::parse(&bytes).unwrap().bundle_id(), bundle.bundle_id());
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bundle;
mod carry;
mod data;
pub mod dataflow;
mod diff;
mod error;
mod module_view;
pub mod names;
mod read;
mod relocs;
mod remap;
mod sign;
pub mod transfer;
mod write;
pub use write::leb;

pub use bundle::{
    hex, unhex, Bundle, BundleBuilder, BundleId, Callback, CallbackKind, Entry, EntryKind,
    Metadata, ModuleHash, StateVersion, TargetInterface, FORMAT_VERSION, MANIFEST_SECTION,
    SIGNATURE_SECTION, TARGET_MODULE,
};
pub use data::{
    BundleData, CodeSite, DataObject, DataReloc, RelocTarget, SiteKind, MAX_ALIGN_LOG2, SITE_WIDTH,
};
pub use diff::{diff, DiffOptions, DiffOutcome};
pub use error::{DiffError, FormatError, Side, Unpatchable};
pub use read::MAX_MANIFEST_STRING;
pub use sign::{
    split_signature, PublicKey, SecretKey, Signature, TrustedKeys, VerifiedBundle, SIGNATURE_DOMAIN,
};
pub use wasmparser::{FuncType, ValType};
