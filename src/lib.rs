//! Library side of the `wasm-patch` CLI, so that integration tests can reach
//! the command implementations and the wast driver.

pub use wasm_patch_control::audit;
pub mod bench;
pub mod commands;
pub mod control;
pub mod signals;
pub mod wast;
