//! `Store<T>`: owns instances, memories, tables, globals, guest threads and
//! the scheduler that runs them, plus the embedder's data `T`.
//!
//! Everything in a store is used from one OS thread. Guest threads are
//! fibers scheduled cooperatively; a busy thread is preempted at its next
//! poll once the ticker marks its time slice over.

mod guest_stacks;
mod scheduler;

pub(crate) use guest_stacks::ThreadStack;
pub(crate) use scheduler::{
    call_on_fiber, cancel, next_wake, run_alone, run_until, spawn_raw, step,
};
use scheduler::{resume, ReadyThread};

use crate::engine::Engine;
use crate::errors::{Error, FrameInfo, Trap};
use crate::func::Func;
use crate::instance::InstanceData;
use crate::module::{Module, ModuleInfo};
use crate::thread::poll::{self, PreemptTarget};
use crate::thread::{RunState, ThreadId, ThreadState};
use crate::trap::TrapKind;
use crate::val::Val;
use crate::vm::memory::LinearMemory;
use crate::vm::offsets::POLL_CANCEL;
use crate::vm::stack_walk::RawFrame;
use crate::vm::table::Table;
use crate::vm::traps::{self, TrapRecord};
use crate::vm::vmctx::{VMGlobal, VMThread};
use std::cell::UnsafeCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use wasmparser::{RefType, ValType};

/// A global's storage.
pub(crate) struct GlobalCell {
    cell: Box<UnsafeCell<VMGlobal>>,
    pub(crate) ty: ValType,
    pub(crate) mutable: bool,
}

impl GlobalCell {
    pub(crate) fn vm_ptr(&self) -> *mut VMGlobal {
        self.cell.get()
    }
    pub(crate) fn set_raw(&self, v: u128) {
        // SAFETY: see `get_raw`.
        unsafe { (*self.cell.get()).bits = v }
    }
    pub(crate) fn get_raw(&self) -> u128 {
        // SAFETY: globals are used from the store's OS thread only, and no
        // JIT code runs while the host reads them.
        unsafe { (*self.cell.get()).bits }
    }
}

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

// Boxes give every object a stable address: JIT code and raw pointers in
// instances refer to them while the vectors grow.
#[allow(clippy::vec_box)]
pub(crate) struct StoreInner<T> {
    pub(crate) id: u64,
    pub(crate) engine: Engine,
    pub(crate) data: T,
    pub(crate) instances: Vec<Box<InstanceData>>,
    pub(crate) memories: Vec<Box<LinearMemory>>,
    pub(crate) tables: Vec<Box<Table>>,
    pub(crate) table_types: Vec<RefType>,
    pub(crate) globals: Vec<Box<GlobalCell>>,
    pub(crate) threads: crate::thread::ThreadMap,
    pub(crate) next_thread: u32,
    /// Runnable threads, in turn order. Invariant: a thread is here exactly
    /// when its state is `Ready`, and a `Ready` thread's box is in
    /// `threads` (boxes leave the map only when `Done`), so the pointers
    /// are live and the scheduler skips a map lookup per turn.
    ready: VecDeque<ReadyThread>,
    sleepers: BinaryHeap<Reverse<(Instant, u32)>>,
    stack_pool: Vec<wasmtime_fiber::FiberStack>,
    /// Code lookups shared by the frame summaries of parking threads.
    scan_cache: crate::vm::stack_walk::ScanCache,
    /// Where new stacks come from when the pool is empty.
    stacks: crate::thread::stacks::StackAllocator,
    vm_pool: Vec<Box<VMThread>>,
    preempt: Arc<PreemptTarget>,
    /// Module info per code unit, to name backtrace frames.
    pub(crate) units: HashMap<u32, Arc<ModuleInfo>>,
    /// The thread whose fiber is running now (0 = none).
    pub(crate) running: u32,
    /// Patch state: applied bundles, the transition, shadow data.
    pub(crate) patch: Box<crate::patch::Core>,
    /// Each guest thread's own linear-memory stack (`__stack_pointer`).
    pub(crate) guest_stacks: guest_stacks::GuestStacks,
    /// Arrays replaced when a bundle grew an instance (running code may
    /// still hold pointers into them).
    pub(crate) retired: Vec<Box<dyn std::any::Any>>,
}

/// The one way from a raw store pointer to a reference. The scheduler, the
/// patch driver and `Caller` hold raw pointers while fibers run, because a
/// guest thread re-enters the store through host calls.
///
/// # Safety
/// `inner` points to a live store (the box inside a `Store` not yet
/// dropped), the caller runs on the store's OS thread, and the reference is
/// not held across a fiber switch (a resume or a suspend), after which other
/// code holds its own: no two references taken through here are used at
/// once.
pub(crate) unsafe fn store_mut<'a, T>(inner: *mut StoreInner<T>) -> &'a mut StoreInner<T> {
    // SAFETY: the caller's contract above.
    unsafe { &mut *inner }
}

/// [`store_mut`], shared.
///
/// # Safety
/// As for [`store_mut`].
pub(crate) unsafe fn store_ref<'a, T>(inner: *const StoreInner<T>) -> &'a StoreInner<T> {
    // SAFETY: the caller's contract on `store_mut`.
    unsafe { &*inner }
}

/// A store: all guest state of one embedding.
///
/// `Send` when `T` is, as in wasmtime: a store can move to another OS
/// thread (or a tokio task) between calls, with its guest threads, parked
/// or not, and its applied bundles. A host function that parks its thread
/// ([`Caller::park`](crate::Caller::park)) must not hold values bound to
/// its OS thread (thread-local references, lock guards) across the park:
/// the thread may resume on another OS thread.
pub struct Store<T> {
    pub(crate) inner: Box<StoreInner<T>>,
}

// SAFETY: everything a store reaches is owned by it (boxes, the fibers'
// stacks, code units shared only through `Arc`s of `Sync` data) or shared
// with other OS threads only through atomics (the preemption target the
// ticker writes, the engine's epoch). Its raw pointers (the ready queue,
// thread boxes' `vm.host`/`safe_point`, host-function contexts' store
// pointer) point into its own heap allocations, which do not move when the
// `Store` does, and are used only by the OS thread that holds `&mut Store`
// (every entry is `&mut self`). Host closures are `Send + Sync`
// (`HostFn`, `func_wrap`), event listeners `Send`, and `T: Send`. What is
// per OS thread is re-established on the thread that runs the store: the
// signal stack (`traps::init` at every scheduler entry) and the current
// trap activation (saved and restored around every fiber switch, through
// calls that are never inlined, so no thread-local address is cached
// across a switch).
unsafe impl<T: Send> Send for Store<T> {}

impl<T: 'static> Store<T> {
    /// A new store with `data` for host functions.
    pub fn new(engine: &Engine, data: T) -> Store<T> {
        traps::init();
        Store {
            inner: Box::new(StoreInner {
                id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
                engine: engine.clone(),
                data,
                instances: Vec::new(),
                memories: Vec::new(),
                tables: Vec::new(),
                table_types: Vec::new(),
                globals: Vec::new(),
                threads: Default::default(),
                next_thread: 1,
                ready: VecDeque::new(),
                sleepers: BinaryHeap::new(),
                stack_pool: Vec::new(),
                scan_cache: Default::default(),
                stacks: crate::thread::stacks::StackAllocator::new(
                    engine.config().stack_size,
                    engine.config().guard_pages,
                ),
                vm_pool: Vec::new(),
                preempt: poll::register(engine.config().time_slice, engine.epoch().clone()),
                units: HashMap::new(),
                running: 0,
                patch: Box::default(),
                guest_stacks: Default::default(),
                retired: Vec::new(),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Interrupt this store's guests once the engine's epoch has advanced
    /// `ticks` times from now ([`Engine::increment_epoch`], from any OS
    /// thread): a guest still running then traps with
    /// [`TrapKind::Interrupt`] at its next poll after its time slice ends,
    /// and the store keeps working (other threads, later calls). A deadline
    /// already reached interrupts at the next slice; `u64::MAX` ticks means
    /// never (the default). As in wasmtime.
    pub fn set_epoch_deadline(&mut self, ticks: u64) {
        let now = self.inner.engine.epoch().load(Ordering::Acquire);
        self.inner
            .preempt
            .epoch_deadline
            .store(now.saturating_add(ticks), Ordering::Relaxed);
    }

    /// The embedder's data.
    pub fn data(&self) -> &T {
        &self.inner.data
    }

    /// The embedder's data, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.inner.data
    }

    /// Spawn a guest thread that calls `func` with `args`. It runs when the
    /// scheduler runs ([`Store::run`] or any call).
    ///
    /// # Errors
    /// [`Error::BadCall`] when the arguments do not match the type.
    pub fn spawn(&mut self, func: Func, args: &[Val]) -> Result<ThreadId, Error> {
        let inner: *mut StoreInner<T> = &mut *self.inner;
        // SAFETY: `inner` is the live boxed store.
        unsafe { spawn_raw(inner, func.into(), args.to_vec()) }
    }

    /// Run every thread until all have finished or are parked.
    ///
    /// # Errors
    /// Only scheduler failures; a thread's trap is its own result.
    pub fn run(&mut self) -> Result<(), Error> {
        let inner: *mut StoreInner<T> = &mut *self.inner;
        // SAFETY: `inner` is the live boxed store; we hold `&mut self`.
        unsafe { run_until(inner, None) }
    }

    /// Resume at most `n` thread time slices (each runs until the thread
    /// yields, sleeps, parks, is preempted or finishes), completing any
    /// transition that becomes due. Returns how many ran.
    pub fn run_steps(&mut self, n: usize) -> usize {
        let inner: *mut StoreInner<T> = &mut *self.inner;
        let mut ran = 0;
        while ran < n {
            crate::patch::verbs::drive_if_any(inner);
            // SAFETY: `inner` is the live boxed store; we hold `&mut self`.
            if !unsafe { step(inner) } {
                break;
            }
            ran += 1;
        }
        crate::patch::verbs::drive_if_any(inner);
        ran
    }

    /// Run until thread `id` finishes; returns its result.
    ///
    /// # Errors
    /// The thread's trap or error, or [`Error::Deadlock`].
    pub fn join(&mut self, id: ThreadId) -> Result<Vec<Val>, Error> {
        let inner: *mut StoreInner<T> = &mut *self.inner;
        // SAFETY: as in `run`.
        unsafe { run_until(inner, Some(id.0))? };
        self.take_result(id)
    }

    /// Take a finished thread's result (and forget the thread).
    ///
    /// # Errors
    /// The thread's own trap, or `BadCall` when it is unknown or unfinished.
    pub fn take_result(&mut self, id: ThreadId) -> Result<Vec<Val>, Error> {
        let t = self
            .inner
            .threads
            .get_mut(&id.0)
            .ok_or_else(|| Error::BadCall(format!("no {id}")))?;
        if t.state != RunState::Done {
            return Err(Error::BadCall(format!("{id} has not finished")));
        }
        let r = t
            .result
            .take()
            .unwrap_or_else(|| Err(Error::BadCall(format!("{id}: result already taken"))));
        let t = self.inner.threads.remove(&id.0).expect("present");
        self.inner.recycle(t);
        r
    }

    /// Wake a parked thread (or make its next park return at once).
    pub fn unpark(&mut self, id: ThreadId) {
        self.inner.unpark(id.0);
    }

    /// Ids of all live (unfinished) threads.
    pub fn threads(&self) -> Vec<ThreadId> {
        self.thread_ids(|s| s != RunState::Done)
    }

    /// Ids of the threads that have finished and whose result has not been
    /// taken yet ([`Store::take_result`]), in id order.
    pub fn finished_threads(&self) -> Vec<ThreadId> {
        self.thread_ids(|s| s == RunState::Done)
    }

    fn thread_ids(&self, keep: impl Fn(RunState) -> bool) -> Vec<ThreadId> {
        let mut v: Vec<ThreadId> = self
            .inner
            .threads
            .values()
            .filter(|t| keep(t.state))
            .map(|t| t.id)
            .collect();
        v.sort();
        v
    }

    /// A thread's run state.
    pub fn thread_state(&self, id: ThreadId) -> Option<RunState> {
        self.inner.threads.get(&id.0).map(|t| t.state)
    }

    /// The exact wasm backtrace of a thread that is not running, innermost
    /// frame first.
    pub fn backtrace(&self, id: ThreadId) -> Option<Vec<FrameInfo>> {
        let t = self.inner.threads.get(&id.0)?;
        Some(
            t.frames()
                .iter()
                .map(|f| self.inner.frame_info(f))
                .collect(),
        )
    }
}

impl<T> StoreInner<T> {
    pub(crate) fn new_memory(
        &mut self,
        minimum: u64,
        maximum: Option<u64>,
    ) -> Result<usize, Error> {
        let m =
            LinearMemory::new(minimum, maximum).map_err(|e| Error::Instantiate(e.to_string()))?;
        self.preempt.add_hint(m.poll_hint());
        self.memories.push(Box::new(m));
        Ok(self.memories.len() - 1)
    }

    pub(crate) fn new_table(
        &mut self,
        ty: RefType,
        minimum: u32,
        maximum: Option<u32>,
        init: usize,
    ) -> usize {
        self.tables
            .push(Box::new(Table::new(minimum, maximum, init)));
        self.table_types.push(ty);
        self.tables.len() - 1
    }

    pub(crate) fn new_global(&mut self, ty: ValType, mutable: bool, bits: u128) -> usize {
        let g = GlobalCell {
            cell: Box::new(UnsafeCell::new(VMGlobal { bits })),
            ty,
            mutable,
        };
        self.globals.push(Box::new(g));
        self.globals.len() - 1
    }

    /// Make the `__stack_pointer` global (index `global` in the module) of
    /// a new instance a per-thread register (`store/guest_stacks.rs`).
    ///
    /// # Errors
    /// [`Error::Instantiate`] when memory 0 cannot grow for the stacks of
    /// the store's existing threads.
    pub(crate) fn add_guest_stack_space(
        &mut self,
        instance: usize,
        global: u32,
    ) -> Result<(), Error> {
        let region = self.engine.config().guest_stack_size;
        let data = &self.instances[instance];
        let (Some(&memory), Some(&global)) =
            (data.memories.first(), data.globals.get(global as usize))
        else {
            return Ok(());
        };
        if region == 0 {
            return Ok(());
        }
        debug_assert_eq!(self.running, 0, "instantiation while a guest thread runs");
        let live = self
            .threads
            .values_mut()
            .filter(|t| t.state != RunState::Done)
            .map(|t| &mut **t);
        self.guest_stacks.add_space(
            instance,
            &self.globals[global],
            &self.memories[memory],
            region,
            live,
        )
    }

    pub(crate) fn register_unit(&mut self, module: &Module) {
        let info = module.inner.info.clone();
        self.units.insert(module.inner.compiled.unit.id(), info);
    }

    pub(crate) fn frame_info(&self, f: &RawFrame) -> FrameInfo {
        let name = match self.units.get(&f.unit) {
            Some(info) => info.func_name(f.func),
            None => format!("func[{}]", f.func),
        };
        FrameInfo {
            func_index: f.func,
            name,
            unit: f.unit,
            offset: f.offset,
            base: f.base,
        }
    }

    /// The error of a thread stopped by trap `rec`, with the error its host
    /// function raised, if any; `interrupted` when its poll found the epoch
    /// deadline passed (the stop is then an interrupt).
    pub(crate) fn trap_error_of(
        &self,
        mut rec: TrapRecord,
        host_error: Option<Error>,
        interrupted: bool,
    ) -> Error {
        if interrupted && rec.kind == TrapKind::HostError {
            rec.kind = TrapKind::Interrupt;
        }
        if let (TrapKind::HostError, Some(e)) = (rec.kind, &host_error) {
            if matches!(e, Error::Trap(_)) {
                return host_error.expect("checked");
            }
        }
        Error::Trap(Trap {
            kind: rec.kind,
            frames: rec.frames.iter().map(|f| self.frame_info(f)).collect(),
            depth: rec.depth,
            message: host_error.map(|e| e.to_string()),
        })
    }

    /// Threads that are runnable or running: they carry no frame summary.
    pub(crate) fn runnable(&self) -> usize {
        self.ready.len() + usize::from(self.running != 0)
    }

    pub(crate) fn unpark(&mut self, id: u32) {
        if let Some(t) = self.threads.get_mut(&id) {
            match t.state {
                RunState::Parked => {
                    t.state = RunState::Ready;
                    self.ready.push_back(ReadyThread::of(t));
                }
                RunState::Done => {}
                _ => t.unpark_pending = true,
            }
        }
    }

    fn recycle(&mut self, mut t: Box<ThreadState>) {
        if let Some(f) = t.fiber.take() {
            if f.done() {
                self.stack_pool.push(f.into_stack());
            }
        }
        let mut vm = std::mem::take(&mut t.vm);
        vm.poll.store(0, Ordering::Relaxed);
        vm.world = 0;
        vm.exit_fp = 0;
        self.vm_pool.push(vm);
    }
}

/// The entry trampoline and funcref pointer for calling `func`.
/// What a guest thread or nested call runs: an instance's function, or a
/// raw funcref with its entry trampoline (bundle callbacks).
#[derive(Clone)]
pub(crate) enum Callee {
    /// A function of an instance.
    Func(Func),
    /// A funcref record and the entry trampoline for its type.
    Raw {
        funcref: usize,
        tramp: *const u8,
        ty: wasmparser::FuncType,
    },
}

impl From<Func> for Callee {
    fn from(f: Func) -> Self {
        Callee::Func(f)
    }
}

pub(crate) fn call_target<T>(
    inner: &StoreInner<T>,
    callee: &Callee,
) -> Result<(usize, *const u8, wasmparser::FuncType), Error> {
    let func = match callee {
        Callee::Func(f) => *f,
        Callee::Raw { funcref, tramp, ty } => return Ok((*funcref, *tramp, ty.clone())),
    };
    if func.store_id != inner.id {
        return Err(Error::WrongStore);
    }
    let inst = &inner.instances[func.instance];
    let info = inst.module.info();
    let ty_index = info.func_types[func.index as usize];
    let funcref = inst.funcref_ptrs[func.index as usize] as usize;
    // The trampoline must be the one of the module that owns the funcref's
    // type; entry trampolines only depend on the signature, so this one is
    // right whatever instance the funcref belongs to.
    let tramp = inst.module.inner.compiled.entry_trampoline(ty_index);
    Ok((funcref, tramp, info.types[ty_index as usize].clone()))
}

/// Whether `raw` is null or a funcref record of one of this store's
/// instances: the only references the host may hand to guest code (a
/// forged or foreign pointer would be called as code).
pub(crate) fn is_own_funcref<T>(s: &StoreInner<T>, raw: usize) -> bool {
    raw == 0
        || s.instances
            .iter()
            .any(|i| i.funcref_ptrs.iter().any(|p| *p as usize == raw))
}

fn check_refs<T>(s: &StoreInner<T>, args: &[Val]) -> Result<(), Error> {
    for a in args {
        match a {
            Val::FuncRef(p) if !is_own_funcref(s, *p) => {
                return Err(Error::BadCall(format!(
                    "funcref {p:#x} does not name a function of this store"
                )))
            }
            Val::ExternRef(Some(u64::MAX)) => {
                return Err(Error::BadCall(
                    "externref value u64::MAX is reserved (it encodes null)".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_args(ty: &wasmparser::FuncType, args: &[Val]) -> Result<(), Error> {
    if args.len() != ty.params().len() || !args.iter().zip(ty.params()).all(|(a, t)| a.matches(*t))
    {
        return Err(Error::BadCall(format!(
            "arguments {args:?} do not match parameters {:?}",
            ty.params()
        )));
    }
    Ok(())
}

impl<T> Drop for Store<T> {
    fn drop(&mut self) {
        poll::unregister(&self.inner.preempt);
        // Dropped on another OS thread than the one that ran it (`Send`).
        traps::init();
        // Finish every unfinished fiber by cancelling it: its pending host
        // call or next poll fails, the guest traps, and the fiber completes
        // normally (dropping an unfinished fiber would skip destructors).
        let ids: Vec<u32> = self.inner.threads.keys().copied().collect();
        for id in ids {
            for _ in 0..1000 {
                let Some(t) = self.inner.threads.get_mut(&id) else {
                    break;
                };
                if t.state == RunState::Done || t.fiber.is_none() {
                    break;
                }
                t.cancelled = true;
                t.vm.poll.fetch_or(POLL_CANCEL, Ordering::Relaxed);
                let inner: *mut StoreInner<T> = &mut *self.inner;
                // SAFETY: the store is live until this function returns.
                unsafe { resume(inner, id) };
            }
        }
        let ids: Vec<u32> = self.inner.threads.keys().copied().collect();
        for id in ids {
            if let Some(mut t) = self.inner.threads.remove(&id) {
                if t.fiber.as_ref().is_some_and(|f| !f.done()) {
                    // A fiber that refused to finish: leak it rather than
                    // drop it unfinished (see ENGINEERING-NOTES, Fibers).
                    std::mem::forget(t.fiber.take());
                }
            }
        }
    }
}

/// The `Func` a raw funcref names, if it belongs to this store.
pub(crate) fn func_from_ref<T>(inner: &StoreInner<T>, raw: usize) -> Option<Func> {
    if raw == 0 {
        return None;
    }
    // SAFETY: nonzero funcref values are pointers to `VMFuncRef` records of
    // live instances of this store (tables only ever hold those).
    let r = unsafe { &*(raw as *const crate::vm::vmctx::VMFuncRef) };
    // SAFETY: `vmctx` of a record is its instance's live `VMContext`, whose
    // `instance` field points at the boxed `InstanceData`.
    let inst = unsafe { &*((*r.vmctx).instance as *const InstanceData) };
    (inst.store_id == inner.id).then_some(Func {
        store_id: inner.id,
        instance: inst.index,
        index: r.slot,
    })
}
