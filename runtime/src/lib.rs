//! wasm-patch runtime: a Cranelift JIT for WebAssembly whose guest code can be
//! patched while it runs, one function at a time, with per-thread
//! consistency (`docs/consistency.md`).
//!
//! The API keeps wasmtime's names and shapes ([`Engine`], [`Module`],
//! [`Linker`], [`Store`], [`Caller`], [`Func`], [`TypedFunc`], [`Memory`],
//! [`Global`]) and adds patching: [`Store::apply`], [`Store::revert`], the
//! transition queries and events.
//!
//! # Embedding, step by step
//!
//! An engine, a module, a linker with a host function, a store, a call;
//! then a fix applied as a patch bundle while the instance lives, its
//! status, and its revert.
//!
//! ```
//! use wasm_patch_runtime::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. The engine: compiler settings, shared by every store. Cheap to
//! //    clone, `Send + Sync`.
//! let engine = Engine::default();
//!
//! // 2. A module, validated and compiled once (WAT text or wasm bytes).
//! let v1 = r#"(module
//!   (import "host" "log" (func $log (param i32)))
//!   (func $fee (param i32) (result i32) (i32.div_u (local.get 0) (i32.const 10)))
//!   (func (export "charge") (param i32) (result i32)
//!     (call $log (local.get 0))
//!     (call $fee (local.get 0))))"#;
//! let module = Module::new(&engine, v1)?;
//!
//! // 3. A linker: the host functions imports resolve to, by name.
//! let mut linker: Linker<Vec<i32>> = Linker::new(&engine);
//! linker.func_wrap("host", "log", |mut caller: Caller<'_, Vec<i32>>, v: i32| {
//!     caller.data_mut().push(v)
//! })?;
//!
//! // 4. A store: every instance, memory and guest thread, and the host's
//! //    data (`Send` when the data is: it can move to a worker thread).
//! let mut store = Store::new(&engine, Vec::new());
//! let instance = linker.instantiate(&mut store, &module)?;
//!
//! // 5. A call from the host, typed.
//! let charge = instance.get_typed_func::<i32, i32>(&store, "charge")?;
//! assert_eq!(charge.call(&mut store, 1000)?, 100);
//! assert_eq!(store.data(), &[1000]);
//!
//! // 6. A fix, as a patch bundle (the CLI's `wasm-patch diff` makes the
//! //    same from two builds), applied to the live instance. Guest threads
//! //    switch to the new code when `fee` is not on their stacks.
//! let v2 = v1.replace("(i32.const 10)", "(i32.const 20)");
//! let old = wat::parse_str(v1)?;
//! let new = wat::parse_str(&v2)?;
//! let bundle = patch_format::diff(&old, &new, &Default::default())?.bundle;
//! let patch = store.apply(instance, &bundle.to_bytes(), &ApplyOptions::default())?;
//! store.wait_transition()?;
//!
//! // 7. Status: no transition in progress, one bundle applied, new code.
//! assert!(store.transition_status().is_none());
//! assert_eq!(store.applied().len(), 1);
//! assert_eq!(charge.call(&mut store, 1000)?, 50);
//!
//! // 8. Revert: the same consistency rules, back to the original code.
//! store.revert(patch, None)?;
//! store.wait_transition()?;
//! assert!(store.applied().is_empty());
//! assert_eq!(charge.call(&mut store, 1000)?, 100);
//! # Ok(())
//! # }
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
    PatchError, PatchId, Shadow, ThreadPatchState, TimedEvent, TransferInfo, TransitionOutcome,
    TransitionPhase, TransitionStatus, VersionInfo,
};
pub use store::Store;
pub use thread::{RunState, ThreadId};
pub use trap::TrapKind;
pub use val::{Val, V128};
pub use wasmparser::{FuncType, RefType, ValType};
pub use wrap::{HostResult, IntoHostFunc};
