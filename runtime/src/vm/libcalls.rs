//! Runtime functions called from JIT code: the memory and table operations
//! too large to inline, through `VMContext.builtins` (the poll slow path
//! lives with the thread code, `thread/poll.rs`). Each takes `(vmctx,
//! vmthread, ...)` and returns 0 for success or a nonzero status on which
//! the JIT code traps.

use super::vmctx::{VMContext, VMThread};
use crate::instance::InstanceData;
use cranelift_codegen::ir::{types, Type};

/// The builtins, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Builtin {
    /// `(mem, delta) -> old pages or -1`
    MemoryGrow = 0,
    /// `(dst mem, src mem, dst, src, len) -> status`
    MemoryCopy,
    /// `(mem, dst, val, len) -> status`
    MemoryFill,
    /// `(mem, data, dst, src, len) -> status`
    MemoryInit,
    /// `(data)`
    DataDrop,
    /// `(table, init, delta) -> old size or -1`
    TableGrow,
    /// `(table, dst, val, len) -> status`
    TableFill,
    /// `(dst table, src table, dst, src, len) -> status`
    TableCopy,
    /// `(table, elem, dst, src, len) -> status`
    TableInit,
    /// `(elem)`
    ElemDrop,
}

impl Builtin {
    /// Parameter types after `(vmctx, vmthread)`.
    pub fn params(self) -> &'static [Type] {
        use types::{I32, I64};
        match self {
            Builtin::MemoryGrow => &[I32, I32],
            Builtin::MemoryCopy | Builtin::MemoryInit | Builtin::TableCopy | Builtin::TableInit => {
                &[I32, I32, I32, I32, I32]
            }
            Builtin::MemoryFill => &[I32, I32, I32, I32],
            Builtin::DataDrop | Builtin::ElemDrop => &[I32],
            Builtin::TableGrow => &[I32, I64, I32],
            Builtin::TableFill => &[I32, I32, I64, I32],
        }
    }

    /// Result type, if any.
    pub fn result(self) -> Option<Type> {
        match self {
            Builtin::DataDrop | Builtin::ElemDrop => None,
            _ => Some(types::I32),
        }
    }
}

struct Builtins([*const (); 10]);

// SAFETY: function pointers, immutable.
unsafe impl Sync for Builtins {}

static BUILTINS: Builtins = Builtins([
    memory_grow as *const (),
    memory_copy as *const (),
    memory_fill as *const (),
    memory_init as *const (),
    data_drop as *const (),
    table_grow as *const (),
    table_fill as *const (),
    table_copy as *const (),
    table_init as *const (),
    elem_drop as *const (),
]);

/// The table stored in every `VMContext.builtins`.
pub fn builtins_ptr() -> *const usize {
    BUILTINS.0.as_ptr() as *const usize
}

/// # Safety
/// `vmctx` is a live instance context.
unsafe fn instance<'a>(vmctx: *mut VMContext) -> &'a mut InstanceData {
    // SAFETY: `instance` points at the boxed InstanceData owning `vmctx`.
    unsafe { &mut *((*vmctx).instance as *mut InstanceData) }
}

unsafe extern "C" fn memory_grow(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    mem: u32,
    delta: u32,
) -> i32 {
    // SAFETY: live instance; memory objects are boxed in the store.
    let m = unsafe { &*instance(vmctx).memory_objs[mem as usize] };
    m.grow(delta as u64).map(|old| old as i32).unwrap_or(-1)
}

unsafe extern "C" fn memory_copy(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    dm: u32,
    sm: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> i32 {
    // SAFETY: live instance; the guest is inside this call, so no other
    // access to the memories happens meanwhile.
    unsafe {
        let inst = instance(vmctx);
        let (d, s) = (
            &*inst.memory_objs[dm as usize],
            &*inst.memory_objs[sm as usize],
        );
        let (dl, sl) = (d.byte_len(), s.byte_len());
        if dst as u64 + len as u64 > dl || src as u64 + len as u64 > sl {
            return 1;
        }
        let dp = (*d.vm_ptr()).base.add(dst as usize);
        let sp = (*s.vm_ptr()).base.add(src as usize);
        std::ptr::copy(sp, dp, len as usize);
    }
    0
}

unsafe extern "C" fn memory_fill(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    mem: u32,
    dst: u32,
    val: u32,
    len: u32,
) -> i32 {
    // SAFETY: as in `memory_copy`.
    unsafe {
        let m = &*instance(vmctx).memory_objs[mem as usize];
        if dst as u64 + len as u64 > m.byte_len() {
            return 1;
        }
        std::ptr::write_bytes(
            (*m.vm_ptr()).base.add(dst as usize),
            val as u8,
            len as usize,
        );
    }
    0
}

unsafe extern "C" fn memory_init(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    mem: u32,
    data: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> i32 {
    // SAFETY: as in `memory_copy`.
    unsafe {
        let inst = instance(vmctx);
        let m = &*inst.memory_objs[mem as usize];
        let seg: &[u8] = if inst.data_dropped[data as usize] {
            &[]
        } else {
            &inst.module.info().datas[data as usize].bytes
        };
        if src as u64 + len as u64 > seg.len() as u64 || dst as u64 + len as u64 > m.byte_len() {
            return 1;
        }
        std::ptr::copy_nonoverlapping(
            seg.as_ptr().add(src as usize),
            (*m.vm_ptr()).base.add(dst as usize),
            len as usize,
        );
    }
    0
}

unsafe extern "C" fn data_drop(vmctx: *mut VMContext, _t: *mut VMThread, data: u32) {
    // SAFETY: live instance.
    unsafe { instance(vmctx).data_dropped[data as usize] = true };
}

unsafe extern "C" fn table_grow(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    table: u32,
    init: u64,
    delta: u32,
) -> i32 {
    // SAFETY: live instance; table objects are boxed in the store.
    let t = unsafe { &*instance(vmctx).table_objs[table as usize] };
    t.grow(delta, init as usize)
        .map(|old| old as i32)
        .unwrap_or(-1)
}

unsafe extern "C" fn table_fill(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    table: u32,
    dst: u32,
    val: u64,
    len: u32,
) -> i32 {
    // SAFETY: as in `table_grow`.
    let t = unsafe { &*instance(vmctx).table_objs[table as usize] };
    i32::from(!t.fill(dst, val as usize, len))
}

unsafe extern "C" fn table_copy(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    dt: u32,
    st: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> i32 {
    // SAFETY: as in `table_grow`.
    let (d, s) = unsafe {
        let inst = instance(vmctx);
        (
            &*inst.table_objs[dt as usize],
            &*inst.table_objs[st as usize],
        )
    };
    i32::from(!crate::vm::table::Table::copy(d, s, dst, src, len))
}

unsafe extern "C" fn table_init(
    vmctx: *mut VMContext,
    _t: *mut VMThread,
    table: u32,
    elem: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> i32 {
    // SAFETY: as in `table_grow`.
    let inst = unsafe { instance(vmctx) };
    // SAFETY: as in `table_grow`.
    let t = unsafe { &*inst.table_objs[table as usize] };
    let seg: &[usize] = inst.elems[elem as usize].as_deref().unwrap_or(&[]);
    let Some(items) = (src as usize)
        .checked_add(len as usize)
        .and_then(|end| seg.get(src as usize..end))
    else {
        return 1;
    };
    i32::from(!t.init(dst, items))
}

unsafe extern "C" fn elem_drop(vmctx: *mut VMContext, _t: *mut VMThread, elem: u32) {
    // SAFETY: live instance.
    unsafe { instance(vmctx).elems[elem as usize] = None };
}
