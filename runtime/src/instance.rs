//! Instances: the host-side data behind a `VMContext`, and instantiation
//! (imports, memories, tables, globals, segments, slot tables).

use crate::errors::Error;
use crate::module::{ConstExpr, ElemItem, ExportKind, ImportKind, Module, SegmentMode};
use crate::store::{GlobalCell, StoreInner};
use crate::val::Val;
use crate::vm::libcalls;
use crate::vm::vmctx::{VMContext, VMFuncRef, VMGlobal, VMMemory, VMSlot, VMTable};
use crate::vm::vmctx_block::VmctxBlock;

/// Something an import can be satisfied with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extern {
    /// A function: (instance, function index).
    Func(crate::func::Func),
    /// A memory of the store.
    Memory(usize),
    /// A table of the store.
    Table(usize),
    /// A global of the store.
    Global(usize),
}

/// Host-side data of one instance. Boxed in the store; never moves.
#[allow(clippy::vec_box)] // stable addresses: slots point into these boxes
pub(crate) struct InstanceData {
    pub(crate) module: Module,
    /// The `VMContext` and, at fixed distances from it, the slot tables of
    /// world 0 and world 1.
    pub(crate) vmctx: VmctxBlock,
    pub(crate) funcref_records: Box<[VMFuncRef]>,
    pub(crate) funcref_ptrs: Box<[*const VMFuncRef]>,
    /// Funcref records of functions added by bundles (never moved).
    pub(crate) extra_funcrefs: Vec<Box<[VMFuncRef]>>,
    pub(crate) memory_ptrs: Box<[*mut VMMemory]>,
    pub(crate) memories: Vec<usize>,
    pub(crate) table_ptrs: Box<[*mut VMTable]>,
    pub(crate) tables: Vec<usize>,
    pub(crate) global_ptrs: Box<[*mut VMGlobal]>,
    pub(crate) globals: Vec<usize>,
    /// The memory and table objects (boxed in the store), for runtime calls.
    pub(crate) memory_objs: Vec<*const crate::vm::memory::LinearMemory>,
    pub(crate) table_objs: Vec<*const crate::vm::table::Table>,
    pub(crate) type_ids: Box<[u32]>,
    /// Passive element segments (evaluated); `None` once dropped.
    pub(crate) elems: Vec<Option<Vec<usize>>>,
    /// Passive data segments dropped?
    pub(crate) data_dropped: Vec<bool>,
    /// Host function contexts of imported host functions (kept alive).
    pub(crate) host_ctxs: Vec<Box<crate::func::HostFuncCtx>>,
    pub(crate) store_id: u64,
    pub(crate) index: usize,
}

impl InstanceData {
    /// Make room for `func_types.len()` functions (slots in both worlds and
    /// funcref records) and `type_ids.len()` types, for a bundle that adds
    /// functions or types. Old arrays go to `retired`: running code may
    /// still hold pointers to them, so they live as long as the store.
    pub(crate) fn grow(
        &mut self,
        type_ids: &[u32],
        func_types: &[u32],
        retired: &mut Vec<Box<dyn std::any::Any>>,
    ) {
        let vmctx: *mut VMContext = &mut *self.vmctx;
        if type_ids.len() > self.type_ids.len() {
            self.type_ids = type_ids.into();
        }
        let n = func_types.len();
        if n > self.vmctx.table(0).len() {
            // In place: the tables never move. The bundle compiler refused
            // more than MAX_SLOTS functions.
            self.vmctx
                .grow(n)
                .expect("bundle function count checked at compile time");
            let start = self.funcref_ptrs.len() as u32;
            let records: Box<[VMFuncRef]> = (start..n as u32)
                .map(|f| VMFuncRef::new(f, self.type_ids[func_types[f as usize] as usize], vmctx))
                .collect();
            let mut ptrs = self.funcref_ptrs.to_vec();
            ptrs.extend(records.iter().map(|r| r as *const VMFuncRef));
            self.extra_funcrefs.push(records);
            let old = std::mem::replace(&mut self.funcref_ptrs, ptrs.into_boxed_slice());
            retired.push(Box::new(old));
            self.vmctx.funcrefs = self.funcref_ptrs.as_ptr();
        }
    }

    /// The store-level memory index of memory `m`.
    pub(crate) fn memory(&self, m: u32) -> usize {
        self.memories[m as usize]
    }
    /// The store-level table index of table `t`.
    pub(crate) fn table(&self, t: u32) -> usize {
        self.tables[t as usize]
    }
}

/// A handle to an instance in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance {
    pub(crate) store_id: u64,
    pub(crate) index: usize,
}

fn eval(
    expr: &ConstExpr,
    globals: &[usize],
    store_globals: &[Box<GlobalCell>],
    funcrefs: &[*const VMFuncRef],
) -> u128 {
    match expr {
        ConstExpr::I32(v) => *v as u32 as u128,
        ConstExpr::I64(v) => *v as u64 as u128,
        ConstExpr::F32(v) => *v as u128,
        ConstExpr::F64(v) => *v as u128,
        ConstExpr::V128(v) => *v,
        ConstExpr::RefNull => 0,
        ConstExpr::RefFunc(f) => funcrefs[*f as usize] as usize as u128,
        ConstExpr::GlobalGet(g) => store_globals[globals[*g as usize]].get_raw(),
    }
}

/// A host function bound to import number `.0` (of type index `.1`).
pub(crate) type HostImport<T> = (
    usize,
    u32,
    wasmparser::FuncType,
    std::sync::Arc<crate::func::HostFn<T>>,
    Option<crate::func::Raw>,
);

/// Instantiate `module` with `imports` (one per module import, in order).
/// Runs no code: the caller runs the start function.
pub(crate) fn instantiate_with_host<T: 'static>(
    store: &mut crate::store::Store<T>,
    module: &Module,
    imports: &[Extern],
    host: Vec<HostImport<T>>,
) -> Result<Instance, Error> {
    let store_ptr: *mut StoreInner<T> = &mut *store.inner;
    let store = &mut *store.inner;
    let mut host_ctxs: std::collections::HashMap<usize, Box<crate::func::HostFuncCtx>> = host
        .into_iter()
        .map(|(i, _t, ty, f, raw)| {
            (
                i,
                crate::func::HostFuncCtx::new(store_ptr, store.instances.len(), ty, f, raw),
            )
        })
        .collect();
    let info = module.inner.info.clone();
    let engine = &module.inner.engine;
    if !crate::engine::Engine::same(engine, &store.engine) {
        return Err(Error::Link(
            "module and store come from different engines".into(),
        ));
    }
    if imports.len() != info.imports.len() {
        return Err(Error::Link(format!(
            "expected {} imports, got {}",
            info.imports.len(),
            imports.len()
        )));
    }
    let nfuncs = info.func_types.len();
    let type_ids: Box<[u32]> = info.types.iter().map(|t| engine.signature_id(t)).collect();
    let index = store.instances.len();
    let mut data = Box::new(InstanceData {
        module: module.clone(),
        vmctx: VmctxBlock::new(VMContext::new(libcalls::builtins_ptr()), nfuncs)
            .map_err(|e| Error::Link(format!("instance context: {e}")))?,
        funcref_records: Vec::new().into_boxed_slice(),
        funcref_ptrs: vec![std::ptr::null(); nfuncs].into_boxed_slice(),
        extra_funcrefs: Vec::new(),
        memory_ptrs: Box::new([]),
        memories: Vec::new(),
        table_ptrs: Box::new([]),
        tables: Vec::new(),
        global_ptrs: Box::new([]),
        globals: Vec::new(),
        memory_objs: Vec::new(),
        table_objs: Vec::new(),
        type_ids,
        elems: Vec::new(),
        data_dropped: vec![false; info.datas.len()],
        host_ctxs: Vec::new(),
        store_id: store.id,
        index,
    });
    let vmctx_ptr: *mut VMContext = data.vmctx.as_ptr();
    data.vmctx.instance = &mut *data as *mut InstanceData as *mut u8;

    // Own funcref records, one per function (imports included: an imported
    // function is called through this instance's slot, which forwards).
    data.funcref_records = (0..nfuncs as u32)
        .map(|f| {
            VMFuncRef::new(
                f,
                data.type_ids[info.func_types[f as usize] as usize],
                vmctx_ptr,
            )
        })
        .collect();
    let mut funcref_ptrs: Vec<*const VMFuncRef> = data
        .funcref_records
        .iter()
        .map(|r| r as *const VMFuncRef)
        .collect();

    // Imports.
    let mut fi = 0u32;
    let mut memories = Vec::new();
    let mut tables = Vec::new();
    let mut globals = Vec::new();
    for (ii, (imp, ext)) in info.imports.iter().zip(imports).enumerate() {
        let what = || format!("import `{}`.`{}`", imp.module, imp.name);
        match (&imp.kind, ext) {
            (ImportKind::Func(t), Extern::Func(_)) if host_ctxs.contains_key(&ii) => {
                let mut ctx = host_ctxs.remove(&ii).expect("checked");
                let slot = VMSlot {
                    code: module.inner.compiled.host_trampoline(*t),
                    vmctx: &mut *ctx as *mut crate::func::HostFuncCtx as *mut u8,
                };
                data.vmctx.table_mut(0)[fi as usize] = slot;
                data.vmctx.table_mut(1)[fi as usize] = slot;
                data.host_ctxs.push(ctx);
                fi += 1;
            }
            (ImportKind::Func(t), Extern::Func(func)) => {
                let want = &info.types[*t as usize];
                if func.store_id != store.id {
                    return Err(Error::WrongStore);
                }
                let src = &store.instances[func.instance];
                let ty = src.module.info().func_type(func.index).clone();
                let mut slot = src.vmctx.table(0)[func.index as usize];
                // A re-exported host function: bind a context of its own so
                // that its callers here see this instance.
                if let Some(ctx) = src
                    .host_ctxs
                    .iter()
                    .find(|c| std::ptr::eq(&***c as *const _ as *const u8, slot.vmctx))
                {
                    let mut rebound = ctx.rebind(index);
                    slot.vmctx = &mut *rebound as *mut crate::func::HostFuncCtx as *mut u8;
                    data.host_ctxs.push(rebound);
                }
                let funcref = Some(src.funcref_ptrs[func.index as usize]);
                if &ty != want {
                    return Err(Error::Link(format!(
                        "{}: incompatible import type: expected {want:?}, found {ty:?}",
                        what()
                    )));
                }
                data.vmctx.table_mut(0)[fi as usize] = slot;
                data.vmctx.table_mut(1)[fi as usize] = slot;
                if let Some(r) = funcref {
                    funcref_ptrs[fi as usize] = r;
                }
                fi += 1;
            }
            (ImportKind::Memory(d), Extern::Memory(m)) => {
                let mem = &store.memories[*m];
                let ok = mem.pages() >= d.minimum
                    && match d.maximum {
                        None => true,
                        Some(max) => mem.maximum().is_some_and(|have| have <= max),
                    };
                if !ok {
                    return Err(Error::Link(format!(
                        "{}: incompatible import type (memory limits)",
                        what()
                    )));
                }
                memories.push(*m);
            }
            (ImportKind::Table(d), Extern::Table(t)) => {
                let (tab, ty) = (&store.tables[*t], store.table_types[*t]);
                let ok = ty == d.ty
                    && tab.len() >= d.minimum
                    && match d.maximum {
                        None => true,
                        Some(max) => tab.maximum().is_some_and(|have| have <= max),
                    };
                if !ok {
                    return Err(Error::Link(format!(
                        "{}: incompatible import type (table)",
                        what()
                    )));
                }
                tables.push(*t);
            }
            (ImportKind::Global(d), Extern::Global(g)) => {
                let cell = &store.globals[*g];
                if cell.ty != d.ty || cell.mutable != d.mutable {
                    return Err(Error::Link(format!(
                        "{}: incompatible import type (global)",
                        what()
                    )));
                }
                globals.push(*g);
            }
            _ => {
                return Err(Error::Link(format!(
                    "{}: incompatible import type (wrong kind)",
                    what()
                )))
            }
        }
    }

    // Defined functions: both worlds start at version 0.
    let compiled = &module.inner.compiled;
    for f in info.num_imported_funcs..nfuncs as u32 {
        let s = VMSlot {
            code: compiled.func_entry(&info, f),
            vmctx: vmctx_ptr as *mut u8,
        };
        data.vmctx.table_mut(0)[f as usize] = s;
        data.vmctx.table_mut(1)[f as usize] = s;
    }
    data.funcref_ptrs = funcref_ptrs.into_boxed_slice();

    // Globals.
    for g in &info.globals[info.num_imported_globals as usize..] {
        let init = g.init.as_ref().expect("defined global has an initialiser");
        let v = eval(init, &globals, &store.globals, &data.funcref_ptrs);
        globals.push(store.new_global(g.ty, g.mutable, v));
    }
    // Memories.
    for m in &info.memories[info.num_imported_memories as usize..] {
        memories.push(store.new_memory(m.minimum, m.maximum)?);
    }
    // Tables.
    for t in &info.tables[info.num_imported_tables as usize..] {
        let init = t
            .init
            .as_ref()
            .map(|e| eval(e, &globals, &store.globals, &data.funcref_ptrs))
            .unwrap_or(0);
        tables.push(store.new_table(t.ty, t.minimum, t.maximum, init as usize));
    }
    data.memory_ptrs = memories
        .iter()
        .map(|&m| store.memories[m].vm_ptr())
        .collect();
    data.table_ptrs = tables.iter().map(|&t| store.tables[t].vm_ptr()).collect();
    data.global_ptrs = globals.iter().map(|&g| store.globals[g].vm_ptr()).collect();
    data.memory_objs = memories
        .iter()
        .map(|&m| &*store.memories[m] as *const _)
        .collect();
    data.table_objs = tables
        .iter()
        .map(|&t| &*store.tables[t] as *const _)
        .collect();
    data.memories = memories;
    data.tables = tables;
    data.globals = globals;

    // SAFETY: the memories are the store's, alive as long as the instance.
    unsafe { data.vmctx.set_arrays(&data.memory_ptrs, &data.global_ptrs) };
    data.vmctx.tables = data.table_ptrs.as_ptr();
    data.vmctx.table0_elems = match data.table_ptrs.first() {
        // SAFETY: the tables are the store's, alive as long as the
        // instance; JIT code reads the copy only for a table that never
        // grows (`VMContext::table0_elems`).
        Some(&t) => unsafe { (*t).base },
        None => std::ptr::null_mut(),
    };
    data.vmctx.funcrefs = data.funcref_ptrs.as_ptr();

    // Element segments, in order; an out-of-bounds active segment stops
    // instantiation (earlier segments stay written, as the spec says).
    let mut failure = None;
    for seg in &info.elems {
        let items: Vec<usize> = seg
            .items
            .iter()
            .map(|it| match it {
                ElemItem::Func(f) => data.funcref_ptrs[*f as usize] as usize,
                ElemItem::Expr(e) => {
                    eval(e, &data.globals, &store.globals, &data.funcref_ptrs) as usize
                }
            })
            .collect();
        match &seg.mode {
            SegmentMode::Passive => data.elems.push(Some(items)),
            SegmentMode::Declared => data.elems.push(None),
            SegmentMode::Active { index: t, offset } => {
                data.elems.push(None);
                if failure.is_some() {
                    continue;
                }
                let off = eval(offset, &data.globals, &store.globals, &data.funcref_ptrs) as u32;
                if !store.tables[data.tables[*t as usize]].init(off, &items) {
                    failure = Some(Error::Instantiate("out of bounds table access".into()));
                }
            }
        }
    }
    if failure.is_none() {
        for (i, seg) in info.datas.iter().enumerate() {
            if let SegmentMode::Active { index: m, offset } = &seg.mode {
                data.data_dropped[i] = true;
                let off =
                    eval(offset, &data.globals, &store.globals, &data.funcref_ptrs) as u32 as usize;
                let mem = &store.memories[data.memories[*m as usize]];
                // SAFETY: no JIT code runs during instantiation.
                let bytes = unsafe { mem.bytes_mut() };
                match off
                    .checked_add(seg.bytes.len())
                    .filter(|&end| end <= bytes.len())
                {
                    Some(end) => bytes[off..end].copy_from_slice(&seg.bytes),
                    None => {
                        failure = Some(Error::Instantiate("out of bounds memory access".into()));
                        break;
                    }
                }
            }
        }
    }
    store.instances.push(data);
    store.register_unit(module);
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(g) = module.inner.info.stack_pointer {
        store.add_guest_stack_space(index, g)?;
    }
    Ok(Instance {
        store_id: store.id,
        index,
    })
}

impl Instance {
    /// The export named `name`.
    pub fn get_export<T>(&self, store: &crate::store::Store<T>, name: &str) -> Option<Extern> {
        self.export_of(&store.inner, name)
    }

    pub(crate) fn export_of<T>(&self, store: &StoreInner<T>, name: &str) -> Option<Extern> {
        let inst = store.instances.get(self.index)?;
        let (kind, idx) = inst.module.info().export(name)?;
        Some(match kind {
            ExportKind::Func => Extern::Func(crate::func::Func {
                store_id: self.store_id,
                instance: self.index,
                index: idx,
            }),
            ExportKind::Memory => Extern::Memory(inst.memory(idx)),
            ExportKind::Table => Extern::Table(inst.table(idx)),
            ExportKind::Global => Extern::Global(inst.globals[idx as usize]),
        })
    }

    /// The exported function `name`.
    pub fn get_func<T>(
        &self,
        store: &crate::store::Store<T>,
        name: &str,
    ) -> Option<crate::func::Func> {
        match self.get_export(store, name)? {
            Extern::Func(f) => Some(f),
            _ => None,
        }
    }

    /// All exports, in order.
    pub fn exports<T>(&self, store: &crate::store::Store<T>) -> Vec<(String, Extern)> {
        let inst = &store.inner.instances[self.index];
        inst.module
            .info()
            .exports
            .iter()
            .filter_map(|(n, _, _)| Some((n.clone(), self.get_export(store, n)?)))
            .collect()
    }

    /// The module this instance was made from.
    pub fn module<'s, T>(&self, store: &'s crate::store::Store<T>) -> &'s Module {
        &store.inner.instances[self.index].module
    }

    /// Read the value of a global.
    pub fn global_value<T>(store: &crate::store::Store<T>, g: usize) -> Val {
        let cell = &store.inner.globals[g];
        Val::from_raw(cell.get_raw(), cell.ty)
    }
}
