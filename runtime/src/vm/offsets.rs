//! Offsets of every field the JIT reads: the instance vmctx, the slot table,
//! funcrefs, tables, memories and the per-thread `VMThread` word block.
//!
//! Pure arithmetic, defined once. `compile/func_env.rs` and
//! `compile/trampolines.rs` are the only users on the compiler side;
//! `vm/vmctx.rs` holds the `#[repr(C)]` structs, and the test at the bottom of
//! that file checks each constant here against `offset_of!`.
//!
//! ```text
//! VMContext (one per instance)         VMThread (one per guest thread)
//! +0  memories  → [*VMMemory]           +0  poll      (u64, atomic)
//! +8  globals   → [*VMGlobal]           +8  world     (0 or WORLD_STRIDE)
//! +16 tables    → [*VMTable]            +16 stack_limit
//! +24 funcrefs  → [*VMFuncRef]          +24 exit_fp   (trampoline or poll stub frame)
//! +32 table0_elems (copy)               +32 host      (ThreadState)
//! +40 builtins  → [fn ptr]              +40 trap_arg
//! +48 instance  (host InstanceData)     +48 poll_stub (code address)
//! +56 memory0_base (copy)
//! +64 global_cells[7] (copies)
//! +128                 world 0 slot table ─┐ vm/vmctx_block.rs: one mapping,
//! +128 + WORLD_STRIDE  world 1 slot table ─┘ MAX_SLOTS slots each
//!
//! VMSlot (16 bytes): code, vmctx        VMFuncRef (24 bytes): slot u32, type_id u32,
//!                                       vmctx, entry (world 0's slot)
//! ```
//!
//! A call reads `world` from the thread, then `code` (and, for imports and
//! bundle-added functions, `vmctx`) from `[callee_vmctx + world +
//! VMCTX_SLOTS + 16*slot]`: the per-thread world selector is what lets two
//! worlds coexist.

/// `VMContext.memories`.
pub const VMCTX_MEMORIES: i32 = 0;
/// `VMContext.globals`.
pub const VMCTX_GLOBALS: i32 = 8;
/// `VMContext.tables`.
pub const VMCTX_TABLES: i32 = 16;
/// `VMContext.funcrefs`.
pub const VMCTX_FUNCREFS: i32 = 24;
/// `VMContext.table0_elems`: table 0's element array, inline (read only
/// for a table whose limits are equal, whose array never moves).
pub const VMCTX_TABLE0_ELEMS: i32 = 32;
/// `VMContext.builtins`.
pub const VMCTX_BUILTINS: i32 = 40;
/// `VMContext.memory0_base`: memory 0's base, inline.
pub const VMCTX_MEMORY0_BASE: i32 = 56;
/// `VMContext.global_cells`: the cells of the first
/// [`VMCTX_INLINE_GLOBALS`] globals, inline.
pub const VMCTX_GLOBAL_CELLS: i32 = 64;
/// Globals whose cells the `VMContext` holds inline.
pub const VMCTX_INLINE_GLOBALS: u32 = 7;
/// Size of `VMContext`.
#[cfg_attr(not(test), allow(dead_code))] // checked by the layout test
pub const VMCTX_SIZE: usize = 120;
/// Distance from a `VMContext` to its world-0 slot table.
pub const VMCTX_SLOTS: i32 = 128;
/// Distance between the world-0 and world-1 slot tables, and the value of
/// `VMThread.world` in world 1 (0 in world 0).
pub const WORLD_STRIDE: u64 = 16 << 20;

/// `VMThread.poll`: nonzero means "take the slow path".
pub const THREAD_POLL: i32 = 0;
/// `VMThread.world`: 0 in world 0, [`WORLD_STRIDE`] in world 1 (the offset
/// of its slot table from the world-0 table).
pub const THREAD_WORLD: i32 = 8;
/// `VMThread.stack_limit`: lowest stack address JIT code may use.
pub const THREAD_STACK_LIMIT: i32 = 16;
/// `VMThread.exit_fp`: the frame pointer of the host trampoline or poll stub
/// through which the thread last left JIT code (the frame's return address
/// is the wasm call or poll site).
pub const THREAD_EXIT_FP: i32 = 24;
/// `VMThread.host`: the host-side thread state.
#[cfg_attr(not(test), allow(dead_code))] // checked by the layout test
pub const THREAD_HOST: i32 = 32;
/// `VMThread.trap_arg`: a pointer a stub stores before it traps (the
/// removed-function stub stores its slot context, naming the function).
pub const THREAD_TRAP_ARG: i32 = 40;
/// `VMThread.poll_stub`: entry of the engine's poll stub
/// (`compile/trampolines.rs`), which a poll calls when its word is set. The
/// stub has Cranelift's `preserve_all` convention, so the call clobbers no
/// register and a poll costs the code around it nothing but its load and
/// branch.
pub const THREAD_POLL_STUB: i32 = 48;

/// Size of one slot.
pub const SLOT_SIZE: i64 = 16;
/// `VMSlot.code`.
pub const SLOT_CODE: i32 = 0;
/// `VMSlot.vmctx`.
pub const SLOT_VMCTX: i32 = 8;

/// `VMFuncRef.type_id` (u32).
pub const FUNCREF_TYPE_ID: i32 = 4;
/// `VMFuncRef.entry` (world 0's slot of the function).
pub const FUNCREF_ENTRY: i32 = 16;

/// `VMMemory.base`.
pub const MEMORY_BASE: i32 = 0;
/// `VMMemory.length` (bytes, u64).
pub const MEMORY_LENGTH: i32 = 8;
/// The memory's poll hint, relative to its base (`LinearMemory::poll_hint`):
/// non-zero when the thread running on the memory's store may have a
/// request in its poll word. Polls in functions of a module with a memory
/// read it here, through the base that memory accesses keep in a register,
/// instead of through `vmthread`.
pub const MEMORY_POLL_HINT: i32 = -8;

/// `VMTable.base`: pointer to the element array (pointer-sized refs).
pub const TABLE_BASE: i32 = 0;
/// `VMTable.length` (elements, u32).
pub const TABLE_LENGTH: i32 = 8;

/// Pointer size on the host.
#[cfg_attr(not(test), allow(dead_code))] // checked by the layout test
pub const POINTER_SIZE: i64 = 8;

/// Poll word bit: the scheduler asks the thread to yield (time slice over).
pub const POLL_PREEMPT: u64 = 1;
/// Poll word bit: a transition asks the thread to check its stack and switch.
pub const POLL_SWITCH: u64 = 2;
/// Poll word bit: the thread is being cancelled.
pub const POLL_CANCEL: u64 = 4;

/// `HostFuncCtx.dispatch`: the `extern "C"` function a host trampoline calls
/// with `(hostctx, vmthread, values)`; it returns 0 or a failure status.
pub const HOSTCTX_DISPATCH: i32 = 0;
/// Bytes per value in the arrays trampolines exchange with the host.
pub const VALUE_SIZE: i32 = 16;
