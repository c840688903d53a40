//! Typed host functions ([`Linker::func_wrap`]).
//!
//! A closure `Fn(Caller<T>, A, B, ...) -> R` or `Fn(A, B, ...) -> R` over
//! wasm value types becomes a host function whose type comes from its
//! signature, as in wasmtime. Guest
//! calls reach it through a native body generated per closure type
//! ([`dispatch`]): the trampoline's raw argument slots are read as the
//! closure's parameter types and its result written back, with no `Val`
//! list, no type check at run time (the type is checked once, at
//! instantiation, against the import) and no second indirect call. The
//! same closure also gets a `Val`-based body ([`HostFn`]) for the paths
//! that call host functions that way.
//!
//! [`Linker::func_wrap`]: crate::Linker::func_wrap

use crate::errors::Error;
use crate::func::{Caller, HostFn, HostFuncCtx, Raw, WasmTy};
use crate::store::StoreInner;
use crate::thread::ThreadState;
use crate::val::Val;
use crate::vm::vmctx::VMThread;
use std::sync::Arc;
use wasmparser::{FuncType, ValType};

/// What a typed host function returns: `()`, one wasm value, a tuple of
/// them, or a `Result` of any of these whose `Err` ends the calling thread.
pub trait HostResult {
    /// The wasm result types.
    fn types() -> Vec<ValType>;
    /// Into `Val` results (the `Val`-based path).
    ///
    /// # Errors
    /// The function's own error.
    #[doc(hidden)]
    fn into_vals(self, out: &mut [Val]) -> Result<(), Error>;
    /// Into the trampoline's raw slots.
    ///
    /// # Errors
    /// The function's own error.
    ///
    /// # Safety
    /// `out` has room for one slot per result.
    #[doc(hidden)]
    unsafe fn into_raw(self, out: *mut u128) -> Result<(), Error>;
}

impl HostResult for () {
    fn types() -> Vec<ValType> {
        Vec::new()
    }
    fn into_vals(self, _: &mut [Val]) -> Result<(), Error> {
        Ok(())
    }
    #[inline(always)]
    unsafe fn into_raw(self, _: *mut u128) -> Result<(), Error> {
        Ok(())
    }
}

macro_rules! host_result {
    ($($t:ty),*) => {$(
        impl HostResult for $t {
            fn types() -> Vec<ValType> {
                vec![<$t as WasmTy>::ty()]
            }
            fn into_vals(self, out: &mut [Val]) -> Result<(), Error> {
                out[0] = self.into_val();
                Ok(())
            }
            #[inline(always)]
            unsafe fn into_raw(self, out: *mut u128) -> Result<(), Error> {
                // SAFETY: the caller gives room for the one result.
                unsafe { *out = WasmTy::to_raw(self) };
                Ok(())
            }
        }
    )*};
}
host_result!(i32, i64, f32, f64, crate::val::V128);

macro_rules! host_tuple {
    ($($n:tt $r:ident),+) => {
        impl<$($r: WasmTy),+> HostResult for ($($r,)+) {
            fn types() -> Vec<ValType> {
                vec![$($r::ty()),+]
            }
            fn into_vals(self, out: &mut [Val]) -> Result<(), Error> {
                $(out[$n] = self.$n.into_val();)+
                Ok(())
            }
            #[inline(always)]
            unsafe fn into_raw(self, out: *mut u128) -> Result<(), Error> {
                // SAFETY: the caller gives room for every result.
                unsafe { $(*out.add($n) = self.$n.to_raw();)+ }
                Ok(())
            }
        }
    };
}
host_tuple!(0 R0);
host_tuple!(0 R0, 1 R1);
host_tuple!(0 R0, 1 R1, 2 R2);
host_tuple!(0 R0, 1 R1, 2 R2, 3 R3);

impl<R: HostResult> HostResult for Result<R, Error> {
    fn types() -> Vec<ValType> {
        R::types()
    }
    fn into_vals(self, out: &mut [Val]) -> Result<(), Error> {
        self?.into_vals(out)
    }
    #[inline(always)]
    unsafe fn into_raw(self, out: *mut u128) -> Result<(), Error> {
        // SAFETY: forwarded.
        unsafe { self?.into_raw(out) }
    }
}

/// A closure usable as a typed host function of store data `T`, with
/// parameters `P` (a tuple of wasm value types) and result `R`.
pub trait IntoHostFunc<T, P, R>: 'static {
    /// The function type, its `Val`-based body, and its native body.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn into_host(self) -> (FuncType, Arc<HostFn<T>>, Raw);
}

/// The error for a `Val` argument of the wrong type (only the `Val`-based
/// path can see one: guest calls are type-checked at instantiation).
fn mistyped() -> Error {
    Error::BadCall("host function argument of the wrong type".into())
}

macro_rules! into_host {
    ($($a:ident),*) => {
        // With the caller as first parameter.
        #[allow(non_snake_case)]
        impl<T: 'static, F, R, $($a: WasmTy + 'static),*>
            IntoHostFunc<T, (Caller<'_, T>, $($a,)*), R> for F
        where
            F: Fn(Caller<'_, T>, $($a),*) -> R + Send + Sync + 'static,
            R: HostResult + 'static,
        {
            #[allow(private_interfaces)]
            fn into_host(self) -> (FuncType, Arc<HostFn<T>>, Raw) {
                build::<T, F, R>(self, vec![$($a::ty()),*], |f, c, args| {
                    #[allow(unused_mut, unused_variables)]
                    let mut it = args.iter();
                    $(let $a = it.next().and_then($a::from_val).ok_or_else(mistyped)?;)*
                    Ok(f(c, $($a),*))
                }, with_caller::<T, F, R, $($a),*>)
            }
        }

        // Without it.
        #[allow(non_snake_case)]
        impl<T: 'static, F, R, $($a: WasmTy + 'static),*> IntoHostFunc<T, ($($a,)*), R> for F
        where
            F: Fn($($a),*) -> R + Send + Sync + 'static,
            R: HostResult + 'static,
        {
            #[allow(private_interfaces)]
            fn into_host(self) -> (FuncType, Arc<HostFn<T>>, Raw) {
                build::<T, F, R>(self, vec![$($a::ty()),*], |f, _c, args| {
                    #[allow(unused_mut, unused_variables)]
                    let mut it = args.iter();
                    $(let $a = it.next().and_then($a::from_val).ok_or_else(mistyped)?;)*
                    Ok(f($($a),*))
                }, without_caller::<T, F, R, $($a),*>)
            }
        }

        /// The native body of a typed host function `F` that takes the
        /// caller: same contract as `func::host_dispatch` (0, or 1 after
        /// storing the error in the thread).
        ///
        /// # Safety
        /// See [`run`].
        #[allow(non_snake_case, unused_mut, unused_assignments, unused_variables)]
        unsafe extern "C" fn with_caller<T: 'static, F, R, $($a: WasmTy),*>(
            ctx: *mut HostFuncCtx,
            vmthread: *mut VMThread,
            values: *mut u128,
        ) -> i32
        where
            F: Fn(Caller<'_, T>, $($a),*) -> R + Send + Sync + 'static,
            R: HostResult,
        {
            // SAFETY: forwarded; the arguments are read as the closure's
            // parameter types, which the import's type (checked at
            // instantiation) lays out in `values`.
            unsafe {
                run::<T, F, R>(ctx, vmthread, values, |f, caller| {
                    let mut i = 0;
                    $(let $a = $a::from_raw(*values.add(i)); i += 1;)*
                    f(caller, $($a),*)
                })
            }
        }

        /// As [`with_caller`], for a closure without the caller.
        ///
        /// # Safety
        /// See [`run`].
        #[allow(non_snake_case, unused_mut, unused_assignments, unused_variables)]
        unsafe extern "C" fn without_caller<T: 'static, F, R, $($a: WasmTy),*>(
            ctx: *mut HostFuncCtx,
            vmthread: *mut VMThread,
            values: *mut u128,
        ) -> i32
        where
            F: Fn($($a),*) -> R + Send + Sync + 'static,
            R: HostResult,
        {
            // SAFETY: as in `with_caller`.
            unsafe {
                run::<T, F, R>(ctx, vmthread, values, |f, _caller| {
                    let mut i = 0;
                    $(let $a = $a::from_raw(*values.add(i)); i += 1;)*
                    f($($a),*)
                })
            }
        }
    };
}

/// Calls a closure with `Val` arguments (the `Val`-based path).
type ValCall<T, F, R> = fn(&F, Caller<'_, T>, &[Val]) -> Result<R, Error>;

/// The definition of closure `f` with parameter types `params`: its type,
/// its `Val`-based body (through `call`), and its native body `dispatch`.
fn build<T: 'static, F: Send + Sync + 'static, R: HostResult + 'static>(
    f: F,
    params: Vec<ValType>,
    call: ValCall<T, F, R>,
    dispatch: crate::func::RawDispatch,
) -> (FuncType, Arc<HostFn<T>>, Raw) {
    let f = Arc::new(f);
    let data = Arc::as_ptr(&f) as usize;
    let ty = FuncType::new(params, R::types());
    // Owns the closure for as long as any context using `data` lives
    // (contexts hold this body).
    let slow: Arc<HostFn<T>> = Arc::new(move |c: &mut Caller<'_, T>, args, out| {
        call(&f, c.reborrow(), args)?.into_vals(out)
    });
    (ty, slow, Raw { dispatch, data })
}

/// Run the closure of a typed host function with the caller, and store its
/// results: 0, or 1 after storing its error (or panic) in the thread.
///
/// # Safety
/// Called from a host trampoline's native body with the context of a
/// function defined by `build` for this `F` (so `ctx.data` points at its
/// live `F` and `ctx.store` at a `StoreInner<T>`), the running thread's
/// `VMThread`, and `values` holding the arguments with room for the
/// results.
#[inline(always)]
unsafe fn run<T: 'static, F, R: HostResult>(
    ctx: *mut HostFuncCtx,
    vmthread: *mut VMThread,
    values: *mut u128,
    call: impl FnOnce(&F, Caller<'_, T>) -> R,
) -> i32 {
    // SAFETY: see the function's contract; the calling thread's state is
    // what its `VMThread.host` points at while it runs.
    unsafe {
        let ctx = &*ctx;
        let f = &*(ctx.data as *const F);
        let ts = (*vmthread).host as *mut ThreadState;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let caller = Caller::new(ctx.store as *mut StoreInner<T>, ts, ctx.instance);
            call(f, caller).into_raw(values)
        }));
        match out {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                (*ts).host_error = Some(e);
                1
            }
            Err(_) => {
                (*ts).host_error = Some(Error::Host("host function panicked".into()));
                1
            }
        }
    }
}

/// One `impl` per arity, each in a module of its own (the native bodies
/// share a name).
macro_rules! arities {
    ($($m:ident: ($($a:ident),*);)*) => {$(
        mod $m {
            use super::*;
            into_host!($($a),*);
        }
    )*};
}
arities! {
    a0: ();
    a1: (A1);
    a2: (A1, A2);
    a3: (A1, A2, A3);
    a4: (A1, A2, A3, A4);
    a5: (A1, A2, A3, A4, A5);
    a6: (A1, A2, A3, A4, A5, A6);
    a7: (A1, A2, A3, A4, A5, A6, A7);
    a8: (A1, A2, A3, A4, A5, A6, A7, A8);
    a9: (A1, A2, A3, A4, A5, A6, A7, A8, A9);
    a10: (A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
}

/// A value type's binary encoding.
fn type_byte(t: ValType) -> u8 {
    match t {
        ValType::I32 => 0x7f,
        ValType::I64 => 0x7e,
        ValType::F32 => 0x7d,
        ValType::F64 => 0x7c,
        ValType::V128 => 0x7b,
        ValType::Ref(r) if r.is_func_ref() => 0x70,
        ValType::Ref(_) => 0x6f,
    }
}

/// The binary of `(module (import "host" "f" (func (type ty))) (export "f"
/// (func 0)))`: encoded by hand, so that `Func::wrap` needs no text parser
/// (the runtime's `wat` feature is optional).
fn one_import_module(ty: &FuncType) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    let section = |m: &mut Vec<u8>, id: u8, body: Vec<u8>| {
        m.push(id);
        patch_format::leb(body.len() as u64, m);
        m.extend(body);
    };
    let mut types = vec![1, 0x60];
    patch_format::leb(ty.params().len() as u64, &mut types);
    types.extend(ty.params().iter().map(|t| type_byte(*t)));
    patch_format::leb(ty.results().len() as u64, &mut types);
    types.extend(ty.results().iter().map(|t| type_byte(*t)));
    section(&mut m, 1, types);
    section(
        &mut m,
        2,
        [&[1, 4][..], b"host", &[1], b"f", &[0, 0]].concat(),
    );
    section(&mut m, 7, [&[1, 1][..], b"f", &[0, 0]].concat());
    m
}

impl crate::func::Func {
    /// A host function of `store` made from closure `f`, as in wasmtime:
    /// the same closures as [`Linker::func_wrap`](crate::Linker::func_wrap)
    /// (with or without a leading [`Caller`]). The handle can be called from
    /// the host, stored in a table, or given to another module's import
    /// through [`Linker::define`](crate::Linker::define).
    ///
    /// # Panics
    /// When the store cannot hold one more instance (memory exhausted).
    pub fn wrap<T: 'static, P, R>(
        store: &mut crate::Store<T>,
        f: impl IntoHostFunc<T, P, R>,
    ) -> crate::func::Func {
        let (ty, slow, raw) = f.into_host();
        // A module of one import, exported again: the function lives in an
        // instance of its own, like every function of a store.
        let module = crate::Module::new(store.engine(), one_import_module(&ty))
            .expect("a module of one function import compiles");
        let mut linker = crate::Linker::new(store.engine());
        linker.define_host("host", "f", ty, slow, Some(raw));
        let inst = linker
            .instantiate(store, &module)
            .expect("a module of one import of the right type instantiates");
        inst.get_func(store, "f").expect("the module exports `f`")
    }
}
