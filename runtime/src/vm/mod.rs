//! The unsafe core: structures JIT code reads, code memory, traps, runtime
//! functions, memories and tables. Every `unsafe` block here carries a
//! `// SAFETY:` comment.

pub mod code_memory;
pub mod libcalls;
pub mod memory;
pub mod offsets;
pub(crate) mod perf_map;
pub mod reservation;
pub mod table;
pub mod traps;
pub mod vmctx;
pub mod vmctx_block;
