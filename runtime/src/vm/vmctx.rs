//! The `#[repr(C)]` structures that JIT code reads and writes. Their offsets
//! are mirrored in `offsets.rs`; the test at the bottom keeps the two equal.

use std::sync::atomic::AtomicU64;

/// One patchable call slot: where a call to a function goes in one world.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VMSlot {
    /// Entry address of the code version this slot selects.
    pub code: *const u8,
    /// The callee's context: its instance's `VMContext`, or a host
    /// function's context for imported host functions. For the instance's
    /// own module functions it is always the instance's `VMContext`, in
    /// every world and every version (compiled calls to them rely on it and
    /// do not load it); only imports and functions added by bundles (whose
    /// slot holds a "removed" stub and its context once the bundle is
    /// reverted) have other contexts.
    pub vmctx: *mut u8,
}

impl VMSlot {
    /// A slot that calls nothing (never published to JIT code).
    pub const NULL: VMSlot = VMSlot {
        code: std::ptr::null(),
        vmctx: std::ptr::null_mut(),
    };
}

/// What a `funcref` points to: the identity of one function of one instance.
/// A funcref names a function, not a code address, so calls through it
/// resolve in the caller's world (docs/consistency.md rule 5).
#[repr(C)]
#[derive(Debug)]
pub struct VMFuncRef {
    /// Slot index in the owning instance's slot tables.
    pub slot: u32,
    /// Engine-wide signature id.
    pub type_id: u32,
    /// The owning instance's `VMContext`.
    pub vmctx: *mut VMContext,
    /// The address of the function's slot in world 0's table
    /// (`vmctx + VMCTX_SLOTS + 16*slot`, `vm/vmctx_block.rs`): a call
    /// through the funcref adds the caller's world to it and loads the
    /// slot, with no index arithmetic.
    pub entry: *const VMSlot,
}

impl VMFuncRef {
    /// The record of function `slot` of the instance whose context is at
    /// `vmctx`.
    pub fn new(slot: u32, type_id: u32, vmctx: *mut VMContext) -> VMFuncRef {
        // Plain arithmetic: the slot tables sit at fixed distances from the
        // context and never move (`vm/vmctx_block.rs`).
        let entry = (vmctx as usize)
            .wrapping_add(super::offsets::VMCTX_SLOTS as usize)
            .wrapping_add(slot as usize * super::offsets::SLOT_SIZE as usize);
        VMFuncRef {
            slot,
            type_id,
            vmctx,
            entry: entry as *const VMSlot,
        }
    }
}

/// A linear memory as JIT code sees it. The base never moves: each 32-bit
/// memory reserves its whole addressable range plus a guard up front.
#[repr(C)]
#[derive(Debug)]
pub struct VMMemory {
    /// Start of the memory.
    pub base: *mut u8,
    /// Current accessible length in bytes.
    pub length: u64,
}

/// A table as JIT code sees it.
#[repr(C)]
#[derive(Debug)]
pub struct VMTable {
    /// Element array: pointer-sized references, 0 = null.
    pub base: *mut usize,
    /// Number of elements.
    pub length: u32,
}

/// A global's storage cell; the value sits in the low bytes.
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct VMGlobal {
    /// Raw bits of the value (i32/f32 in the low 4 bytes).
    pub bits: u128,
}

/// The per-instance context passed as the first hidden argument of every
/// compiled function.
#[repr(C)]
#[derive(Clone, Debug)]
pub struct VMContext {
    /// One pointer per memory index.
    pub memories: *const *mut VMMemory,
    /// One pointer per global index.
    pub globals: *const *mut VMGlobal,
    /// One pointer per table index.
    pub tables: *const *mut VMTable,
    /// One funcref record pointer per function index.
    pub funcrefs: *const *const VMFuncRef,
    /// Table 0's element array (null without a table), copied from
    /// `tables`. JIT code reads it only when table 0's limits are equal:
    /// such a table never grows, so its array never moves, and one load
    /// from here replaces three in every `call_indirect`.
    pub table0_elems: *mut usize,
    /// Runtime functions callable from JIT code (see `libcalls.rs`).
    pub builtins: *const usize,
    /// Back pointer to the host-side instance data.
    pub instance: *mut u8,
    /// Memory 0's base (null without a memory), copied from `memories`:
    /// a base never moves, and one load from here replaces three in every
    /// function that touches memory (`compile/func_env.rs`).
    pub memory0_base: *mut u8,
    /// The cells of the first [`INLINE_GLOBALS`] globals (null past the
    /// module's count), copied from `globals`: one load less per
    /// `global.get`/`global.set` of them (rustc's `__stack_pointer` is
    /// global 0).
    pub global_cells: [*mut VMGlobal; INLINE_GLOBALS],
}

/// How many global cells a `VMContext` holds inline.
pub const INLINE_GLOBALS: usize = 7;

impl VMContext {
    /// A context whose arrays are all still null, with `builtins` set.
    pub fn new(builtins: *const usize) -> VMContext {
        VMContext {
            memories: std::ptr::null(),
            globals: std::ptr::null(),
            tables: std::ptr::null(),
            funcrefs: std::ptr::null(),
            table0_elems: std::ptr::null_mut(),
            builtins,
            instance: std::ptr::null_mut(),
            memory0_base: std::ptr::null_mut(),
            global_cells: [std::ptr::null_mut(); INLINE_GLOBALS],
        }
    }

    /// Point `memories` and `globals` at the instance's arrays (final for
    /// the instance's life) and fill the inline copies from them.
    ///
    /// # Safety
    /// Every pointer in `memories` points to a live `VMMemory`.
    pub unsafe fn set_arrays(&mut self, memories: &[*mut VMMemory], globals: &[*mut VMGlobal]) {
        self.memories = memories.as_ptr();
        self.globals = globals.as_ptr();
        self.memory0_base = match memories.first() {
            // SAFETY: the caller's contract.
            Some(&m) => unsafe { (*m).base },
            None => std::ptr::null_mut(),
        };
        for (cell, &g) in self.global_cells.iter_mut().zip(globals) {
            *cell = g;
        }
    }
}

/// The per-thread block passed as the second hidden argument of every
/// compiled function.
#[repr(C)]
#[derive(Debug)]
pub struct VMThread {
    /// Poll word: bits `POLL_*` of `offsets.rs`.
    pub poll: AtomicU64,
    /// 0 in world 0, `WORLD_STRIDE` in world 1 (`vm/vmctx_block.rs`).
    pub world: u64,
    /// Lowest stack address JIT code may use (Cranelift `stack_limit`).
    pub stack_limit: usize,
    /// Frame pointer of the host trampoline or poll stub through which the
    /// thread last left JIT code; its return address is the wasm call site.
    pub exit_fp: usize,
    /// Host-side thread state (`thread::ThreadState`).
    pub host: *mut u8,
    /// Set by a stub just before it traps (see `THREAD_TRAP_ARG`).
    pub trap_arg: usize,
    /// Entry of the engine's poll stub, called by a poll whose word is set
    /// (see `THREAD_POLL_STUB`).
    pub poll_stub: usize,
}

impl VMThread {
    /// A fresh block in world 0 with no stack limit yet.
    pub fn new() -> VMThread {
        VMThread {
            poll: AtomicU64::new(0),
            world: 0,
            stack_limit: 0,
            exit_fp: 0,
            host: std::ptr::null_mut(),
            trap_arg: 0,
            poll_stub: 0,
        }
    }
}

impl Default for VMThread {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::offsets::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_offsets() {
        assert_eq!(offset_of!(VMContext, memories) as i32, VMCTX_MEMORIES);
        assert_eq!(offset_of!(VMContext, globals) as i32, VMCTX_GLOBALS);
        assert_eq!(offset_of!(VMContext, tables) as i32, VMCTX_TABLES);
        assert_eq!(offset_of!(VMContext, funcrefs) as i32, VMCTX_FUNCREFS);
        assert_eq!(offset_of!(VMContext, builtins) as i32, VMCTX_BUILTINS);
        assert_eq!(
            offset_of!(VMContext, memory0_base) as i32,
            VMCTX_MEMORY0_BASE
        );
        assert_eq!(
            offset_of!(VMContext, global_cells) as i32,
            VMCTX_GLOBAL_CELLS
        );
        assert_eq!(
            offset_of!(VMContext, table0_elems) as i32,
            VMCTX_TABLE0_ELEMS
        );
        assert_eq!(INLINE_GLOBALS, VMCTX_INLINE_GLOBALS as usize);
        assert_eq!(size_of::<VMContext>(), VMCTX_SIZE);
        assert!(
            VMCTX_SIZE <= VMCTX_SLOTS as usize,
            "the context overlaps the slots"
        );

        assert_eq!(offset_of!(VMThread, poll) as i32, THREAD_POLL);
        assert_eq!(offset_of!(VMThread, world) as i32, THREAD_WORLD);
        assert_eq!(offset_of!(VMThread, stack_limit) as i32, THREAD_STACK_LIMIT);
        assert_eq!(offset_of!(VMThread, exit_fp) as i32, THREAD_EXIT_FP);
        assert_eq!(offset_of!(VMThread, host) as i32, THREAD_HOST);
        assert_eq!(offset_of!(VMThread, trap_arg) as i32, THREAD_TRAP_ARG);
        assert_eq!(offset_of!(VMThread, poll_stub) as i32, THREAD_POLL_STUB);

        assert_eq!(size_of::<VMSlot>() as i64, SLOT_SIZE);
        assert_eq!(offset_of!(VMSlot, code) as i32, SLOT_CODE);
        assert_eq!(offset_of!(VMSlot, vmctx) as i32, SLOT_VMCTX);
        assert_eq!(offset_of!(VMFuncRef, type_id) as i32, FUNCREF_TYPE_ID);
        assert_eq!(offset_of!(VMFuncRef, entry) as i32, FUNCREF_ENTRY);
        assert_eq!(offset_of!(VMMemory, base) as i32, MEMORY_BASE);
        assert_eq!(offset_of!(VMMemory, length) as i32, MEMORY_LENGTH);
        assert_eq!(offset_of!(VMTable, base) as i32, TABLE_BASE);
        assert_eq!(offset_of!(VMTable, length) as i32, TABLE_LENGTH);
        assert_eq!(size_of::<usize>() as i64, POINTER_SIZE);
    }
}
