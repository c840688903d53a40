//! Callbacks: running a bundle's pre-/post-patch and pre-/post-unpatch
//! functions (docs/consistency.md rule 13) on a guest thread of their own,
//! through a private call path, and undoing what a vetoing pre-patch
//! callback wrote.

use crate::compile::CompiledBundle;
use crate::errors::Error;
use crate::instance::InstanceData;
use crate::store::{self, store_mut, Callee, StoreInner};
use crate::thread::ThreadId;
use crate::val::Val;
use crate::vm::vmctx::{VMFuncRef, VMSlot};
use crate::vm::vmctx_block::VmctxBlock;
use patch_format::CallbackKind;

/// A private call path to a bundle function that has no published slot
/// (callbacks): a copy of the instance's vmctx whose slot tables hold only
/// that function, so that nothing the guest can reach changes.
struct PrivateCall {
    _vmctx: VmctxBlock,
    record: Box<VMFuncRef>,
}

fn private_call(
    inst: &InstanceData,
    compiled: &CompiledBundle,
    func: u32,
    placed: usize,
) -> Result<PrivateCall, Error> {
    let real = inst.vmctx.as_ptr();
    // The copy is only read by the entry trampoline (for its slot tables);
    // the callee gets the real vmctx from the slot.
    let mut vmctx = VmctxBlock::new((*inst.vmctx).clone(), func as usize + 1)
        .map_err(|e| Error::Host(format!("callback context: {e}")))?;
    let slot = VMSlot {
        code: compiled.unit.entry(placed),
        vmctx: real as *mut u8,
    };
    for w in 0..2 {
        vmctx.table_mut(w)[func as usize] = slot;
    }
    let record = Box::new(VMFuncRef::new(func, 0, vmctx.as_ptr()));
    Ok(PrivateCall {
        _vmctx: vmctx,
        record,
    })
}

/// Run callback `kind` of `compiled` (if the bundle has one) on a new guest
/// thread to completion, alone: no other guest thread gets a turn until it
/// returns. `Ok(None)` when there is no such callback.
///
/// # Errors
/// The callback's trap, or [`Error::CallbackBlocked`] when it parks (its
/// thread is cancelled and gone before this returns).
pub(crate) fn run_callback<T: 'static>(
    inner: *mut StoreInner<T>,
    instance: usize,
    compiled: &CompiledBundle,
    kind: CallbackKind,
) -> Result<Option<i32>, Error> {
    let Some(&(_, func)) = compiled.callbacks.iter().find(|(k, _)| *k == kind) else {
        return Ok(None);
    };
    let placed = compiled
        .unit
        .funcs()
        .iter()
        .position(|f| f.func_index == func)
        .expect("callback compiled");
    // SAFETY: `inner` is the live store; no fiber runs (checked by callers).
    let s = unsafe { store_mut(inner) };
    let call = private_call(&s.instances[instance], compiled, func, placed)?;
    let ty_index = compiled.info.func_types[func as usize];
    let callee = Callee::Raw {
        funcref: &*call.record as *const VMFuncRef as usize,
        tramp: compiled.entry_trampoline(ty_index),
        ty: compiled.info.types[ty_index as usize].clone(),
    };
    // SAFETY: as above; the private call path outlives the thread (joined
    // below before `call` is dropped).
    let id = unsafe { store::spawn_raw(inner, callee, Vec::new())? };
    // Alone: no other thread runs while a callback does, so a vetoing
    // pre-patch callback's writes can be undone without undoing theirs.
    // SAFETY: as above.
    if let Err(e) = unsafe { store::run_alone(inner, id.0) } {
        // Blocked: finish it now, while its code and call path live. A
        // cancelled thread cannot suspend again (`Caller` refuses), so its
        // first resumed turn ends it.
        // SAFETY: as above.
        unsafe { store::cancel(inner, id.0) };
        return Err(e);
    }
    // SAFETY: as above.
    let r = unsafe { store_mut(inner) }.take_result_raw(id);
    drop(call);
    match r?.first() {
        Some(Val::I32(v)) => Ok(Some(*v)),
        _ => Ok(Some(0)),
    }
}

impl<T> StoreInner<T> {
    fn take_result_raw(&mut self, id: ThreadId) -> Result<Vec<Val>, Error> {
        let t = self
            .threads
            .remove(&id.0)
            .ok_or_else(|| Error::BadCall(format!("no {id}")))?;
        let mut t = t;
        t.result
            .take()
            .unwrap_or_else(|| Err(Error::BadCall(format!("{id} has no result"))))
    }
}

/// The guest-visible state of one instance: memories, globals, tables.
pub(crate) struct Snapshot {
    memories: Vec<(usize, u64, Vec<u8>)>,
    globals: Vec<(usize, u128)>,
    tables: Vec<(usize, Vec<usize>)>,
}

impl Snapshot {
    pub(crate) fn take<T>(s: &StoreInner<T>, instance: usize) -> Snapshot {
        let inst = &s.instances[instance];
        Snapshot {
            memories: inst
                .memories
                .iter()
                .map(|&m| {
                    let mem = &s.memories[m];
                    // SAFETY: no guest code runs while the host copies.
                    (m, mem.pages(), unsafe { mem.bytes_mut() }.to_vec())
                })
                .collect(),
            globals: inst
                .globals
                .iter()
                .map(|&g| (g, s.globals[g].get_raw()))
                .collect(),
            tables: inst
                .tables
                .iter()
                .map(|&t| (t, s.tables[t].snapshot()))
                .collect(),
        }
    }

    pub(crate) fn restore<T>(self, s: &StoreInner<T>) {
        for (m, pages, bytes) in self.memories {
            let mem = &s.memories[m];
            mem.shrink_to(pages);
            // SAFETY: as in `take`.
            unsafe { mem.bytes_mut() }.copy_from_slice(&bytes);
        }
        for (g, v) in self.globals {
            s.globals[g].set_raw(v);
        }
        for (t, elems) in self.tables {
            s.tables[t].restore(&elems);
        }
    }
}
