//! wasm-patch runtime: a Cranelift JIT for WebAssembly whose guest code can be
//! patched while it runs.
//!
//! ```
//! use wasm_patch_runtime::{Engine, Linker, Module, Store};
//! let engine = Engine::default();
//! let module = Module::new(&engine, r#"(module (func (export "add") (param i32 i32) (result i32)
//!     local.get 0 local.get 1 i32.add))"#).unwrap();
//! let mut store = Store::new(&engine, ());
//! let instance = Linker::new().instantiate(&mut store, &module).unwrap();
//! let add = instance.get_func(&store, "add").unwrap().typed::<(i32, i32), i32, _>(&store).unwrap();
//! assert_eq!(add.call(&mut store, (2, 3)).unwrap(), 5);
//! ```
#![deny(missing_docs)]
#![deny(unnameable_types)]

pub(crate) mod compile;
mod engine;
mod errors;
mod func;
mod handles;
mod instance;
mod linker;
mod module;
mod patch;
mod store;
mod thread;
mod trap;
mod val;
mod vm;
mod wrap;

pub use engine::{Config, Engine};
pub use errors::{Error, FrameInfo, Trap};
pub use func::{Caller, Func, TypedFunc, WasmParams, WasmResults, WasmTy};
pub use handles::{Global, Memory};
pub use instance::{Extern, Instance};
pub use linker::{Linker, THREAD_ABI_MODULE};
pub use module::Module;
pub use patch::transfer::LoopBlock;
pub use patch::{
    AppliedInfo, ApplyOptions, Blocker, DataPlacement, Direction, Event, FunctionVersions,
    PatchError, PatchId, Shadow, ThreadPatchState, TimedEvent, TransitionOutcome, TransitionPhase,
    TransitionStatus, VersionInfo,
};
pub use store::Store;
pub use thread::{RunState, ThreadId};
pub use trap::TrapKind;
pub use val::{Val, V128};
pub use wasmparser::{FuncType, RefType, ValType};
pub use wrap::{HostResult, IntoHostFunc};
