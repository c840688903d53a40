//! wasm-patch runtime: a Cranelift JIT for WebAssembly whose guest code can be
//! patched while it runs.
#![deny(missing_docs)]

pub(crate) mod compile;
pub mod trap;
