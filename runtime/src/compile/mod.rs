//! Compilation of wasm functions to machine code.

pub(crate) mod environ;
pub(crate) mod stack;
pub(crate) mod translate;
