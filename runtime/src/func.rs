//! Functions: `Func` handles, typed calls, host functions and `Caller`.

use crate::errors::Error;
use crate::store::{self, store_mut, store_ref, Store, StoreInner};
use crate::thread::fiber::{self, Resume, Yield};
use crate::thread::{ThreadId, ThreadState};
use crate::val::{Val, V128};
use crate::vm::vmctx::VMThread;
use std::marker::PhantomData;
use wasmparser::{FuncType, ValType};

/// A function of an instance in a store (defined or imported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Func {
    pub(crate) store_id: u64,
    pub(crate) instance: usize,
    pub(crate) index: u32,
}

impl Func {
    /// The function's type.
    pub fn ty<T>(&self, store: &Store<T>) -> FuncType {
        let inst = &store.inner.instances[self.instance];
        inst.module.info().func_type(self.index).clone()
    }

    /// The function's index in its instance.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Call the function on a new guest thread and run the scheduler until it
    /// returns (other threads run meanwhile when it yields).
    ///
    /// # Errors
    /// The trap with its backtrace, a bad argument list, or a deadlock.
    pub fn call<T: 'static>(&self, store: &mut Store<T>, args: &[Val]) -> Result<Vec<Val>, Error> {
        let id = store.spawn(*self, args)?;
        store.join(id)
    }

    /// A typed view of the function.
    ///
    /// # Errors
    /// [`Error::BadCall`] when the types differ.
    pub fn typed<P: WasmParams, R: WasmResults>(
        &self,
        store: &Store<impl Sized>,
    ) -> Result<TypedFunc<P, R>, Error> {
        let ty = self.ty(store);
        if ty.params() != P::types().as_slice() || ty.results() != R::types().as_slice() {
            return Err(Error::BadCall(format!("function type is {ty:?}")));
        }
        Ok(TypedFunc {
            func: *self,
            _m: PhantomData,
        })
    }

    /// The funcref value naming this function.
    pub fn to_val<T>(&self, store: &Store<T>) -> Val {
        Val::FuncRef(
            store.inner.instances[self.instance].funcref_ptrs[self.index as usize] as usize,
        )
    }
}

/// A function with static parameter and result types.
pub struct TypedFunc<P, R> {
    func: Func,
    _m: PhantomData<fn(P) -> R>,
}

impl<P: WasmParams, R: WasmResults> TypedFunc<P, R> {
    /// Call it (see [`Func::call`]).
    ///
    /// # Errors
    /// As [`Func::call`].
    pub fn call<T: 'static>(&self, store: &mut Store<T>, params: P) -> Result<R, Error> {
        let r = self.func.call(store, &params.into_vals())?;
        R::from_vals(&r)
    }

    /// The untyped function.
    pub fn func(&self) -> Func {
        self.func
    }
}

/// A Rust type that is a wasm value type.
pub trait WasmTy: Sized {
    /// The wasm type.
    fn ty() -> ValType;
    /// To a value.
    fn into_val(self) -> Val;
    /// From a value.
    fn from_val(v: &Val) -> Option<Self>;
    /// From the raw slot the trampolines pass (the value's bits).
    #[doc(hidden)]
    fn from_raw(raw: u128) -> Self;
    /// To a raw slot.
    #[doc(hidden)]
    fn to_raw(self) -> u128;
}

macro_rules! wasm_ty {
    ($t:ty, $vt:ident, $v:ident, $to:expr, $from:expr) => {
        impl WasmTy for $t {
            fn ty() -> ValType {
                ValType::$vt
            }
            fn into_val(self) -> Val {
                #[allow(clippy::redundant_closure_call)]
                Val::$v(($to)(self))
            }
            fn from_val(v: &Val) -> Option<Self> {
                match v {
                    #[allow(clippy::redundant_closure_call)]
                    Val::$v(x) => Some(($from)(*x)),
                    _ => None,
                }
            }
            #[inline(always)]
            fn from_raw(raw: u128) -> Self {
                match Val::from_raw(raw, ValType::$vt) {
                    #[allow(clippy::redundant_closure_call)]
                    Val::$v(x) => ($from)(x),
                    _ => unreachable!("Val::from_raw gives the type asked for"),
                }
            }
            #[inline(always)]
            fn to_raw(self) -> u128 {
                self.into_val().to_raw()
            }
        }
    };
}
wasm_ty!(i32, I32, I32, |x| x, |x| x);
wasm_ty!(i64, I64, I64, |x| x, |x| x);
wasm_ty!(f32, F32, F32, f32::to_bits, f32::from_bits);
wasm_ty!(f64, F64, F64, f64::to_bits, f64::from_bits);
wasm_ty!(V128, V128, V128, |x: V128| x.0, V128);

/// Parameter lists.
pub trait WasmParams {
    /// Types.
    fn types() -> Vec<ValType>;
    /// Values.
    fn into_vals(self) -> Vec<Val>;
}
/// Result lists.
pub trait WasmResults: Sized {
    /// Types.
    fn types() -> Vec<ValType>;
    /// From values.
    ///
    /// # Errors
    /// When the values do not match.
    fn from_vals(v: &[Val]) -> Result<Self, Error>;
}

macro_rules! tuples {
    ($($n:ident),*) => {
        #[allow(non_snake_case, unused_variables, unused_mut, clippy::unused_unit)]
        impl<$($n: WasmTy),*> WasmParams for ($($n,)*) {
            fn types() -> Vec<ValType> { vec![$($n::ty()),*] }
            fn into_vals(self) -> Vec<Val> { let ($($n,)*) = self; vec![$($n.into_val()),*] }
        }
        #[allow(non_snake_case, unused_variables, unused_mut, unused_assignments, clippy::unused_unit)]
        impl<$($n: WasmTy),*> WasmResults for ($($n,)*) {
            fn types() -> Vec<ValType> { vec![$($n::ty()),*] }
            fn from_vals(v: &[Val]) -> Result<Self, Error> {
                let mut i = 0;
                $(let $n = $n::from_val(v.get(i).ok_or_else(|| Error::BadCall("too few results".into()))?)
                    .ok_or_else(|| Error::BadCall("result type mismatch".into()))?; i += 1;)*
                Ok(($($n,)*))
            }
        }
    };
}
tuples!();
tuples!(A);
tuples!(A, B);
tuples!(A, B, C);
tuples!(A, B, C, D);

impl<A: WasmTy> WasmParams for A {
    fn types() -> Vec<ValType> {
        vec![A::ty()]
    }
    fn into_vals(self) -> Vec<Val> {
        vec![self.into_val()]
    }
}
impl<A: WasmTy> WasmResults for A {
    fn types() -> Vec<ValType> {
        vec![A::ty()]
    }
    fn from_vals(v: &[Val]) -> Result<Self, Error> {
        v.first()
            .and_then(A::from_val)
            .ok_or_else(|| Error::BadCall("result type mismatch".into()))
    }
}

/// The signature of a host function's body.
/// `Send + Sync`, as in wasmtime: a [`Linker`](crate::Linker) can be
/// shared, and a [`Store`] holding it can move to another OS thread.
pub type HostFn<T> =
    dyn Fn(&mut Caller<'_, T>, &[Val], &mut [Val]) -> Result<(), Error> + Send + Sync + 'static;

type ErasedCall = dyn Fn(*mut ThreadState, usize, &[Val], &mut [Val]) -> Result<(), Error>;

/// A host function body called by the host trampoline directly (no boxing
/// of values, no closure object in between): the guest thread ABI's
/// `yield` and `thread_id`, and typed host functions (`wrap.rs`). Same
/// contract as `host_dispatch`.
pub(crate) type RawDispatch =
    unsafe extern "C" fn(*mut HostFuncCtx, *mut VMThread, *mut u128) -> i32;

/// A native body and the data it reads through `HostFuncCtx::data` (a
/// typed host function's closure; 0 for the runtime's own bodies).
#[derive(Clone, Copy)]
pub(crate) struct Raw {
    pub(crate) dispatch: RawDispatch,
    pub(crate) data: usize,
}

/// What an imported host function's slot points to. `dispatch` must stay
/// first: host trampolines load it at `HOSTCTX_DISPATCH`.
#[repr(C)]
pub(crate) struct HostFuncCtx {
    dispatch: usize,
    ty: FuncType,
    call: std::sync::Arc<ErasedCall>,
    /// The importing instance: what `Caller` shows as the caller.
    pub(crate) instance: usize,
    /// The store (a `*mut StoreInner<T>` for the `T` of the definition).
    pub(crate) store: *mut u8,
    /// What the native body reads (see [`Raw`]); kept alive by `call`.
    pub(crate) data: usize,
}

impl HostFuncCtx {
    /// A context calling `f` for an import of instance `instance` of `store`.
    pub(crate) fn new<T: 'static>(
        store: *mut StoreInner<T>,
        instance: usize,
        ty: FuncType,
        f: std::sync::Arc<HostFn<T>>,
        raw: Option<Raw>,
    ) -> Box<HostFuncCtx> {
        let call =
            move |ts: *mut ThreadState, instance: usize, args: &[Val], results: &mut [Val]| {
                let mut caller = Caller {
                    store,
                    thread: ts,
                    instance,
                    _m: PhantomData,
                };
                f(&mut caller, args, results)
            };
        let dispatch: RawDispatch = raw.map_or(host_dispatch, |r| r.dispatch);
        Box::new(HostFuncCtx {
            dispatch: dispatch as usize,
            ty,
            call: std::sync::Arc::new(call),
            instance,
            store: store.cast(),
            data: raw.map_or(0, |r| r.data),
        })
    }

    /// The same host function, imported by another instance (a re-export):
    /// its callers there see that instance.
    pub(crate) fn rebind(&self, instance: usize) -> Box<HostFuncCtx> {
        Box::new(HostFuncCtx {
            dispatch: self.dispatch,
            ty: self.ty.clone(),
            call: self.call.clone(),
            instance,
            store: self.store,
            data: self.data,
        })
    }
}

/// Called by host trampolines: `values` holds the arguments and receives
/// the results. Returns 0, or 1 after storing the error in the thread.
unsafe extern "C" fn host_dispatch(
    ctx: *mut HostFuncCtx,
    vmthread: *mut VMThread,
    values: *mut u128,
) -> i32 {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the trampoline passes the context stored in the slot (kept
        // alive by the instance) and the running thread's VMThread, whose
        // `host` points at its ThreadState; `values` has room for
        // max(params, results) entries.
        unsafe {
            let ctx = &*ctx;
            let ts = (*vmthread).host as *mut ThreadState;
            let np = ctx.ty.params().len();
            let nr = ctx.ty.results().len();
            // Small signatures (the common case) use stack buffers: a host
            // call allocates nothing (and an empty one touches nothing).
            const INLINE: usize = 4;
            let mut arg_buf = [Val::I32(0); INLINE];
            let mut res_buf = [Val::I32(0); INLINE];
            let mut arg_vec = Vec::new();
            let mut res_vec = Vec::new();
            let args: &mut [Val] = if np == 0 {
                &mut []
            } else if np <= INLINE {
                &mut arg_buf[..np]
            } else {
                arg_vec.resize(np, Val::I32(0));
                &mut arg_vec
            };
            for (i, (a, t)) in args.iter_mut().zip(ctx.ty.params()).enumerate() {
                *a = Val::from_raw(*values.add(i), *t);
            }
            let results: &mut [Val] = if nr == 0 {
                &mut []
            } else if nr <= INLINE {
                &mut res_buf[..nr]
            } else {
                res_vec.resize(nr, Val::I32(0));
                &mut res_vec
            };
            for (r, t) in results.iter_mut().zip(ctx.ty.results()) {
                *r = Val::default_for(*t);
            }
            let r = (ctx.call)(ts, ctx.instance, args, results);
            match r {
                Ok(()) => {
                    for (i, (r, t)) in results.iter().zip(ctx.ty.results()).enumerate() {
                        if !r.matches(*t) {
                            (*ts).host_error = Some(Error::Host(
                                "host function returned a mistyped result".into(),
                            ));
                            return 1;
                        }
                        *values.add(i) = r.to_raw();
                    }
                    0
                }
                Err(e) => {
                    (*ts).host_error = Some(e);
                    1
                }
            }
        }
    }));
    outcome.unwrap_or(1)
}

/// `wasm-patch`.`yield`, natively: suspend to the scheduler, runnable at
/// once.
pub(crate) unsafe extern "C" fn yield_dispatch(
    _ctx: *mut HostFuncCtx,
    vmthread: *mut VMThread,
    _values: *mut u128,
) -> i32 {
    // SAFETY: the trampoline passes the running thread's VMThread, whose
    // `host` points at its live ThreadState; `suspend` is that fiber's
    // handle. Nothing here can panic across the `extern "C"` boundary.
    unsafe {
        let ts = (*vmthread).host as *mut ThreadState;
        if !(*ts).cancelled && fiber::suspend((*ts).suspend, Yield::Turn) == Resume::Go {
            return 0;
        }
        (*ts).host_error = Some(Error::Host("thread cancelled".into()));
        1
    }
}

/// `wasm-patch`.`thread_id`, natively.
pub(crate) unsafe extern "C" fn thread_id_dispatch(
    _ctx: *mut HostFuncCtx,
    vmthread: *mut VMThread,
    values: *mut u128,
) -> i32 {
    // SAFETY: as in `yield_dispatch`; `values` has room for the one result.
    unsafe {
        let ts = (*vmthread).host as *const ThreadState;
        *values = Val::I32((*ts).id.0 as i32).to_raw();
    }
    0
}

/// What a host function sees of its caller: the store's data, the calling
/// instance's exports, and the calling guest thread.
pub struct Caller<'a, T> {
    store: *mut StoreInner<T>,
    thread: *mut ThreadState,
    instance: usize,
    _m: PhantomData<&'a mut T>,
}

impl<T: 'static> Caller<'_, T> {
    /// The caller of a host function running on thread `thread` of `store`,
    /// called from instance `instance`.
    pub(crate) fn new(
        store: *mut StoreInner<T>,
        thread: *mut ThreadState,
        instance: usize,
    ) -> Self {
        Caller {
            store,
            thread,
            instance,
            _m: PhantomData,
        }
    }

    /// A second handle on the same call, for as long as this one is
    /// borrowed.
    pub(crate) fn reborrow(&mut self) -> Caller<'_, T> {
        Caller {
            store: self.store,
            thread: self.thread,
            instance: self.instance,
            _m: PhantomData,
        }
    }

    fn inner(&self) -> &StoreInner<T> {
        // SAFETY: the store outlives every host call; the scheduler holds
        // no reference to it while the fiber runs.
        unsafe { store_ref(self.store) }
    }

    fn inner_mut(&mut self) -> &mut StoreInner<T> {
        // SAFETY: see `inner`.
        unsafe { store_mut(self.store) }
    }

    fn thread(&mut self) -> &mut ThreadState {
        // SAFETY: the calling thread's state is live while it runs.
        unsafe { &mut *self.thread }
    }

    /// The export `name` of the calling instance (as in wasmtime's
    /// `Caller::get_export`), e.g. its `memory`.
    pub fn get_export(&self, name: &str) -> Option<crate::instance::Extern> {
        let s = self.inner();
        let inst = crate::instance::Instance {
            store_id: s.id,
            index: self.instance,
        };
        inst.export_of(s, name)
    }

    /// The store's data.
    pub fn data(&self) -> &T {
        &self.inner().data
    }

    /// The store's data, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.inner_mut().data
    }

    /// The calling guest thread.
    pub fn thread_id(&self) -> ThreadId {
        // SAFETY: see `thread`.
        unsafe { (*self.thread).id }
    }

    /// The calling instance's memory `index`, as bytes.
    pub fn memory(&mut self, index: u32) -> Option<&mut [u8]> {
        let inst = self.inner().instances.get(self.instance)?;
        let m = *inst.memories.get(index as usize)?;
        // SAFETY: the guest is suspended in this host call; the slice is
        // tied to `&mut self`, so no guest code runs while it lives.
        Some(unsafe { self.inner().memories[m].bytes_mut() })
    }

    /// Element `index` of the calling instance's table `table`, as a `Func`
    /// when it is a funcref.
    pub fn table_func(&self, table: u32, index: u32) -> Option<Func> {
        let inst = self.inner().instances.get(self.instance)?;
        let t = *inst.tables.get(table as usize)?;
        let raw = self.inner().tables[t].get(index)?;
        crate::store::func_from_ref(self.inner(), raw)
    }

    /// Give other threads a turn.
    ///
    /// # Errors
    /// [`Error::Host`] when the thread is being cancelled.
    pub fn yield_now(&mut self) -> Result<(), Error> {
        self.suspend(Yield::Turn)
    }

    /// Sleep for `d` (other threads run meanwhile).
    ///
    /// # Errors
    /// As [`Caller::yield_now`].
    pub fn sleep(&mut self, d: std::time::Duration) -> Result<(), Error> {
        self.suspend(Yield::Sleep(std::time::Instant::now() + d))
    }

    /// Park the calling thread until [`Store::unpark`] or
    /// [`Caller::unpark`] names it.
    ///
    /// # Errors
    /// As [`Caller::yield_now`].
    pub fn park(&mut self) -> Result<(), Error> {
        self.suspend(Yield::Park)
    }

    /// Wake a parked thread.
    pub fn unpark(&mut self, id: ThreadId) {
        self.inner_mut().unpark(id.0);
    }

    /// Spawn a thread running `func(args)`.
    ///
    /// # Errors
    /// A mistyped argument list.
    pub fn spawn(&mut self, func: Func, args: &[Val]) -> Result<ThreadId, Error> {
        // SAFETY: the store is live; spawning only adds to its maps.
        unsafe { store::spawn_raw(self.store, func.into(), args.to_vec()) }
    }

    /// Call `func` on the calling thread (nested host → wasm call).
    ///
    /// # Errors
    /// The callee's trap.
    pub fn call(&mut self, func: Func, args: &[Val]) -> Result<Vec<Val>, Error> {
        // SAFETY: we are on the calling thread's fiber.
        unsafe { store::call_on_fiber(self.store, self.thread, func.into(), args) }
    }

    fn suspend(&mut self, why: Yield) -> Result<(), Error> {
        let t = self.thread();
        if t.cancelled {
            return Err(Error::Host("thread cancelled".into()));
        }
        let s = t.suspend;
        // SAFETY: `s` is the running fiber's suspend handle (set when the
        // fiber started); we are on that fiber.
        match unsafe { fiber::suspend(s, why) } {
            Resume::Go => Ok(()),
            Resume::Cancel => Err(Error::Host("thread cancelled".into())),
        }
    }
}
