//! `Linker<T>`: names → definitions, used to satisfy a module's imports.
//! It also provides the guest thread ABI under the module name `wasm-patch`:
//! `spawn(entry: i32, arg: i32) -> i32`, `yield()`, `sleep(nanos: i64)`,
//! `thread_id() -> i32`.

use crate::engine::Engine;
use crate::errors::Error;
use crate::func::{self, Caller, Func, HostFn, Raw, RawDispatch};
use crate::instance::{self, Extern, Instance};
use crate::module::{ImportKind, Module};
use crate::store::Store;
use crate::val::Val;
use std::collections::HashMap;
use std::sync::Arc;
use wasmparser::{FuncType, ValType};

/// The module name of the guest thread ABI.
pub const THREAD_ABI_MODULE: &str = "wasm-patch";

enum Definition<T> {
    Extern(Extern),
    /// A host function; the runtime's own ones also have a native body.
    Host(FuncType, Arc<HostFn<T>>, Option<Raw>),
}

impl<T> Clone for Definition<T> {
    fn clone(&self) -> Self {
        match self {
            Definition::Extern(e) => Definition::Extern(*e),
            Definition::Host(t, f, r) => Definition::Host(t.clone(), f.clone(), *r),
        }
    }
}

/// Definitions by (module, name), for the stores of one engine.
///
/// `Send + Sync` (its host functions are), so one linker can serve stores
/// on several OS threads, as in wasmtime.
pub struct Linker<T> {
    engine: Engine,
    defs: HashMap<(String, String), Definition<T>>,
}

impl<T: 'static> Linker<T> {
    /// An empty linker for the stores of `engine`.
    pub fn new(engine: &Engine) -> Self {
        Linker {
            engine: engine.clone(),
            defs: HashMap::new(),
        }
    }

    /// The engine this linker serves.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Define a host function.
    pub fn func_new(
        &mut self,
        module: &str,
        name: &str,
        ty: FuncType,
        f: impl Fn(&mut Caller<'_, T>, &[Val], &mut [Val]) -> Result<(), Error> + Send + Sync + 'static,
    ) -> &mut Self {
        self.defs.insert(
            (module.into(), name.into()),
            Definition::Host(ty, Arc::new(f), None),
        );
        self
    }

    /// Define a typed host function: `f` takes the caller (optional, by
    /// value, as in wasmtime: `|caller: Caller<'_, T>, a: i32| ...`) and the
    /// wasm parameters as Rust values (`i32`, `i64`, `f32`, `f64`, up to
    /// ten), and returns `()`, one such value, a tuple of up to four, or a
    /// `Result` of any of these (an `Err` ends the calling thread with that
    /// error). The function type comes
    /// from `f`'s signature. Guest calls reach `f` directly, without
    /// building `Val` lists: cheaper than [`Linker::func_new`].
    ///
    /// # Errors
    /// [`Error::Link`] when `module`.`name` is already defined: as in
    /// wasmtime, a linker does not silently shadow a definition.
    pub fn func_wrap<P, R>(
        &mut self,
        module: &str,
        name: &str,
        f: impl crate::wrap::IntoHostFunc<T, P, R>,
    ) -> Result<&mut Self, Error> {
        let key = (module.to_string(), name.to_string());
        if self.defs.contains_key(&key) {
            return Err(Error::Link(format!(
                "`{module}`.`{name}` is already defined in this linker"
            )));
        }
        let (ty, slow, raw) = f.into_host();
        self.defs.insert(key, Definition::Host(ty, slow, Some(raw)));
        Ok(self)
    }

    /// Define a host function from its parts (`Func::wrap`).
    pub(crate) fn define_host(
        &mut self,
        module: &str,
        name: &str,
        ty: FuncType,
        f: Arc<HostFn<T>>,
        raw: Option<Raw>,
    ) {
        self.defs
            .insert((module.into(), name.into()), Definition::Host(ty, f, raw));
    }

    /// Give the definition (module, name) a native body as well.
    fn set_raw(&mut self, module: &str, name: &str, raw: RawDispatch) {
        if let Some(Definition::Host(_, _, r)) = self.defs.get_mut(&(module.into(), name.into())) {
            *r = Some(Raw {
                dispatch: raw,
                data: 0,
            });
        }
    }

    /// Define an item.
    pub fn define(&mut self, module: &str, name: &str, item: Extern) -> &mut Self {
        self.defs
            .insert((module.into(), name.into()), Definition::Extern(item));
        self
    }

    /// Define every export of `instance` under `module`.
    pub fn instance(&mut self, store: &Store<T>, module: &str, instance: Instance) -> &mut Self {
        for (name, e) in instance.exports(store) {
            self.define(module, &name, e);
        }
        self
    }

    /// Add the guest thread ABI (`wasm-patch` module).
    pub fn add_thread_abi(&mut self) -> &mut Self {
        use ValType::*;
        self.func_new(
            THREAD_ABI_MODULE,
            "spawn",
            FuncType::new([I32, I32], [I32]),
            |c, a, r| {
                let (entry, arg) = (a[0].i32().unwrap_or(0), a[1].i32().unwrap_or(0));
                r[0] = Val::I32(match c.table_func(0, entry as u32) {
                    None => -1,
                    Some(f) => match c.spawn(f, &[Val::I32(arg)]) {
                        Ok(id) => id.0 as i32,
                        Err(_) => -2,
                    },
                });
                Ok(())
            },
        );
        self.func_new(
            THREAD_ABI_MODULE,
            "yield",
            FuncType::new([], []),
            |c, _, _| c.yield_now(),
        );
        self.func_new(
            THREAD_ABI_MODULE,
            "sleep",
            FuncType::new([I64], []),
            |c, a, _| {
                let ns = a[0].i64().unwrap_or(0).max(0) as u64;
                c.sleep(std::time::Duration::from_nanos(ns))
            },
        );
        self.func_new(
            THREAD_ABI_MODULE,
            "thread_id",
            FuncType::new([], [I32]),
            |c, _, r| {
                r[0] = Val::I32(c.thread_id().0 as i32);
                Ok(())
            },
        );
        // `yield` and `thread_id` are hot: their slots call native bodies
        // (same behaviour as the closures above, which remain for reference
        // by any other caller).
        self.set_raw(THREAD_ABI_MODULE, "yield", func::yield_dispatch);
        self.set_raw(THREAD_ABI_MODULE, "thread_id", func::thread_id_dispatch);
        self
    }

    /// Move every definition of `other` into this linker, all or nothing.
    ///
    /// # Errors
    /// [`Error::Link`] naming the first of `other`'s definitions that this
    /// linker already has (nothing is moved then), or when the two linkers
    /// serve different engines.
    pub fn merge(&mut self, other: Linker<T>) -> Result<&mut Self, Error> {
        if !Engine::same(&self.engine, &other.engine) {
            return Err(Error::Link("linkers of different engines".into()));
        }
        if let Some((m, n)) = other.defs.keys().find(|k| self.defs.contains_key(*k)) {
            return Err(Error::Link(format!(
                "`{m}`.`{n}` is already defined in this linker"
            )));
        }
        self.defs.extend(other.defs);
        Ok(self)
    }

    /// Look up a definition as an `Extern` (host functions are not externs
    /// until instantiated).
    pub fn get(&self, module: &str, name: &str) -> Option<Extern> {
        match self.defs.get(&(module.to_string(), name.to_string()))? {
            Definition::Extern(e) => Some(*e),
            Definition::Host(..) => None,
        }
    }

    /// Instantiate `module`, run its start function, and return the instance.
    ///
    /// # Errors
    /// [`Error::Link`] for unknown or mistyped imports or a store of another
    /// engine,
    /// [`Error::Instantiate`] for out-of-bounds segments, or the start
    /// function's trap.
    pub fn instantiate(&self, store: &mut Store<T>, module: &Module) -> Result<Instance, Error> {
        if !Engine::same(&self.engine, store.engine()) {
            return Err(Error::Link(
                "linker and store come from different engines".into(),
            ));
        }
        let info = module.info();
        let mut externs = Vec::with_capacity(info.imports.len());
        let mut host = Vec::new();
        for (i, imp) in info.imports.iter().enumerate() {
            let def = self
                .defs
                .get(&(imp.module.clone(), imp.name.clone()))
                .ok_or_else(|| {
                    Error::Link(format!(
                        "unknown import: `{}`.`{}` has not been defined",
                        imp.module, imp.name
                    ))
                })?;
            match def {
                Definition::Extern(e) => externs.push(*e),
                Definition::Host(ty, f, raw) => {
                    let ImportKind::Func(t) = imp.kind else {
                        return Err(Error::Link(format!(
                            "incompatible import type: `{}`.`{}` is a function",
                            imp.module, imp.name
                        )));
                    };
                    if &info.types[t as usize] != ty {
                        return Err(Error::Link(format!(
                            "incompatible import type for `{}`.`{}`: expected {:?}, host defines {ty:?}",
                            imp.module, imp.name, info.types[t as usize]
                        )));
                    }
                    // Placeholder; replaced by the host slot below.
                    externs.push(Extern::Func(Func {
                        store_id: u64::MAX,
                        instance: 0,
                        index: i as u32,
                    }));
                    host.push((i, t, ty.clone(), f.clone(), *raw));
                }
            }
        }
        let inst = instance::instantiate_with_host(store, module, &externs, host)?;
        if let Some(start) = info.start {
            let f = Func {
                store_id: inst.store_id,
                instance: inst.index,
                index: start,
            };
            f.call(store, &[])?;
        }
        Ok(inst)
    }
}
