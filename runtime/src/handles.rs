//! Handles on an instance's memories and globals, for the host outside any
//! host call (wasmtime's `Memory` and `Global`): fill an input buffer before
//! calling an export, read the output after, read and set globals.
//!
//! A handle names its store: used with another store it is refused (an
//! error, or a panic where wasmtime's signature leaves no error to return),
//! never a wrong object. Access needs the `Store`, so no guest code runs
//! meanwhile: `data` borrows the store, and running a guest needs it
//! mutably.

use crate::errors::Error;
use crate::instance::{Extern, Instance};
use crate::store::Store;
use crate::val::Val;
use wasmparser::ValType;

/// A linear memory of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    store_id: u64,
    index: usize,
}

/// A global of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Global {
    store_id: u64,
    index: usize,
}

/// The error for a handle used with a store it does not belong to.
fn wrong_store(what: &str) -> Error {
    Error::BadCall(format!("{what} used with a store it does not belong to"))
}

impl Instance {
    /// The memory exported as `name`.
    ///
    /// # Panics
    /// When the instance belongs to another store.
    pub fn get_memory<T>(&self, store: &Store<T>, name: &str) -> Option<Memory> {
        assert_eq!(self.store_id, store.inner.id, "{}", wrong_store("instance"));
        match self.get_export(store, name)? {
            Extern::Memory(index) => Some(Memory {
                store_id: self.store_id,
                index,
            }),
            _ => None,
        }
    }

    /// The exported function `name`, typed.
    ///
    /// # Errors
    /// [`Error::BadCall`] when there is no such function or its type is not
    /// `P -> R`.
    pub fn get_typed_func<P: crate::WasmParams, R: crate::WasmResults>(
        &self,
        store: &Store<impl Sized>,
        name: &str,
    ) -> Result<crate::TypedFunc<P, R>, Error> {
        if self.store_id != store.inner.id {
            return Err(wrong_store("instance"));
        }
        self.get_func(store, name)
            .ok_or_else(|| Error::BadCall(format!("no exported function `{name}`")))?
            .typed(store)
    }

    /// The global exported as `name`.
    ///
    /// # Panics
    /// When the instance belongs to another store.
    pub fn get_global<T>(&self, store: &Store<T>, name: &str) -> Option<Global> {
        assert_eq!(self.store_id, store.inner.id, "{}", wrong_store("instance"));
        match self.get_export(store, name)? {
            Extern::Global(index) => Some(Global {
                store_id: self.store_id,
                index,
            }),
            _ => None,
        }
    }
}

impl Memory {
    fn check<T>(&self, store: &Store<T>) -> Result<(), Error> {
        if self.store_id == store.inner.id {
            Ok(())
        } else {
            Err(wrong_store("memory"))
        }
    }

    /// The memory's bytes.
    ///
    /// # Panics
    /// When the memory belongs to another store.
    pub fn data<'a, T>(&self, store: &'a Store<T>) -> &'a [u8] {
        self.check(store).unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: the store is borrowed for 'a, so no guest code runs and
        // nothing grows or writes the memory while the slice lives (running
        // a guest or growing needs the store mutably).
        unsafe { store.inner.memories[self.index].bytes_mut() }
    }

    /// The memory's bytes, writable.
    ///
    /// # Panics
    /// When the memory belongs to another store.
    pub fn data_mut<'a, T>(&self, store: &'a mut Store<T>) -> &'a mut [u8] {
        self.check(store).unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: the store is borrowed mutably for 'a: no other reference
        // to the memory's bytes and no guest code exists while it lives.
        unsafe { store.inner.memories[self.index].bytes_mut() }
    }

    /// Copy `buf.len()` bytes at `offset` into `buf`.
    ///
    /// # Errors
    /// [`Error::BadCall`] when the range is out of bounds or the memory
    /// belongs to another store.
    pub fn read<T>(&self, store: &Store<T>, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.check(store)?;
        let data = self.data(store);
        let src = offset
            .checked_add(buf.len())
            .and_then(|end| data.get(offset..end))
            .ok_or_else(|| out_of_bounds(offset, buf.len(), data.len()))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    /// Copy `bytes` into the memory at `offset`.
    ///
    /// # Errors
    /// [`Error::BadCall`] when the range is out of bounds or the memory
    /// belongs to another store.
    pub fn write<T>(&self, store: &mut Store<T>, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        self.check(store)?;
        let data = self.data_mut(store);
        let len = data.len();
        let dst = offset
            .checked_add(bytes.len())
            .and_then(|end| data.get_mut(offset..end))
            .ok_or_else(|| out_of_bounds(offset, bytes.len(), len))?;
        dst.copy_from_slice(bytes);
        Ok(())
    }

    /// The size in 64 KiB pages.
    ///
    /// # Panics
    /// When the memory belongs to another store.
    pub fn size<T>(&self, store: &Store<T>) -> u64 {
        self.check(store).unwrap_or_else(|e| panic!("{e}"));
        store.inner.memories[self.index].pages()
    }

    /// The size in bytes.
    ///
    /// # Panics
    /// When the memory belongs to another store.
    pub fn data_size<T>(&self, store: &Store<T>) -> usize {
        self.check(store).unwrap_or_else(|e| panic!("{e}"));
        store.inner.memories[self.index].byte_len() as usize
    }

    /// Grow by `delta` pages, as `memory.grow` does; the old size in pages.
    ///
    /// # Errors
    /// [`Error::BadCall`] when the memory cannot grow that much (its
    /// maximum, or 4 GiB) or belongs to another store.
    pub fn grow<T>(&self, store: &mut Store<T>, delta: u64) -> Result<u64, Error> {
        self.check(store)?;
        let m = &store.inner.memories[self.index];
        m.grow(delta).ok_or_else(|| {
            Error::BadCall(format!(
                "memory cannot grow by {delta} page(s): {} pages now, maximum {:?}",
                m.pages(),
                m.maximum()
            ))
        })
    }
}

fn out_of_bounds(offset: usize, len: usize, size: usize) -> Error {
    Error::BadCall(format!(
        "memory access out of bounds: {len} byte(s) at offset {offset}, memory is {size} bytes"
    ))
}

impl Global {
    fn check<T>(&self, store: &Store<T>) -> Result<(), Error> {
        if self.store_id == store.inner.id {
            Ok(())
        } else {
            Err(wrong_store("global"))
        }
    }

    /// The global's value.
    ///
    /// # Panics
    /// When the global belongs to another store.
    pub fn get<T>(&self, store: &Store<T>) -> Val {
        self.check(store).unwrap_or_else(|e| panic!("{e}"));
        let cell = &store.inner.globals[self.index];
        Val::from_raw(cell.get_raw(), cell.ty)
    }

    /// The global's value type.
    ///
    /// # Panics
    /// When the global belongs to another store.
    pub fn ty<T>(&self, store: &Store<T>) -> ValType {
        self.check(store).unwrap_or_else(|e| panic!("{e}"));
        store.inner.globals[self.index].ty
    }

    /// Whether the guest (and [`Global::set`]) may change it.
    ///
    /// # Panics
    /// When the global belongs to another store.
    pub fn is_mutable<T>(&self, store: &Store<T>) -> bool {
        self.check(store).unwrap_or_else(|e| panic!("{e}"));
        store.inner.globals[self.index].mutable
    }

    /// Set the global to `v`.
    ///
    /// # Errors
    /// [`Error::BadCall`] when the global is immutable, `v` has another
    /// type, or the global belongs to another store.
    pub fn set<T>(&self, store: &mut Store<T>, v: Val) -> Result<(), Error> {
        self.check(store)?;
        let cell = &store.inner.globals[self.index];
        if !cell.mutable {
            return Err(Error::BadCall("the global is immutable".into()));
        }
        if !v.matches(cell.ty) {
            return Err(Error::BadCall(format!(
                "the global holds {:?}, not {v:?}",
                cell.ty
            )));
        }
        if let Val::FuncRef(p) = v {
            if p != 0 && !crate::store::is_own_funcref(&store.inner, p) {
                return Err(wrong_store("function reference"));
            }
        }
        cell.set_raw(v.to_raw());
        Ok(())
    }
}
