//! A small safe wrapper of the wasm-patch thread ABI (module `wasm-patch`):
//! `spawn(entry, arg) -> i32`, `yield()`, `sleep(nanos)`, `thread_id() -> i32`.
//!
//! Guest threads are fibers sharing one linear memory; each has its own
//! linear-memory stack (the runtime switches `__stack_pointer` with the
//! thread), so a function may hold stack frames across a yield or sleep.
#![no_std]

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "wasm-patch")]
    extern "C" {
        pub fn spawn(entry: i32, arg: i32) -> i32;
        #[link_name = "yield"]
        pub fn yield_now();
        pub fn sleep(nanos: i64);
        pub fn thread_id() -> i32;
    }
}

/// A guest thread's id, as the runtime numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadId(pub i32);

/// Starts a guest thread running `entry(arg)`; returns its id, or `None`
/// if the runtime refused.
pub fn spawn(entry: extern "C" fn(i32), arg: i32) -> Option<ThreadId> {
    // On wasm32 a function pointer is its index in table 0, which is what
    // `spawn` takes.
    let index = entry as usize as i32;
    #[cfg(target_arch = "wasm32")]
    // SAFETY: `spawn` only reads its two integer arguments; `index` is the
    // table index of a function of type (i32) -> ().
    let id = unsafe { sys::spawn(index, arg) };
    #[cfg(not(target_arch = "wasm32"))]
    let id = {
        let _ = (index, arg);
        -1
    };
    (id >= 0).then_some(ThreadId(id))
}

/// Lets the other guest threads run.
pub fn yield_now() {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: no arguments, no memory access.
    unsafe {
        sys::yield_now()
    }
}

/// Sleeps for `nanos` nanoseconds of guest time.
pub fn sleep(nanos: i64) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: takes an integer, no memory access.
    unsafe {
        sys::sleep(nanos)
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = nanos;
}

/// The calling guest thread's id.
pub fn thread_id() -> ThreadId {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: no arguments, no memory access.
    let id = unsafe { sys::thread_id() };
    #[cfg(not(target_arch = "wasm32"))]
    let id = 0;
    ThreadId(id)
}
