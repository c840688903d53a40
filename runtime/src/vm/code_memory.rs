//! Executable memory for compiled code, and the process-wide code registry
//! that maps a machine address back to (unit, function, wasm offset, trap).
//!
//! One [`CodeUnit`] holds every function compiled together: a module's
//! functions (version 0), one bundle's functions, or a set of trampolines.
//! A unit is mapped read+write, filled, relocated, then made read+execute and
//! registered; it is unregistered and unmapped when the last `Arc` to it
//! goes, which is how old versions are reclaimed.
//!
//! The registry is read by the trap signal handler: it is a `RwLock` that the
//! handler only ever `try_read`s, and no JIT code runs while a writer holds it.
//!
//! **Reused addresses.** Once a unit is unmapped, the kernel may hand its
//! addresses to the next unit mapped, wasm code where there were
//! trampolines or the other way round. A cache of lookups must therefore
//! either hold the `Arc` of every unit it remembers (an address is never
//! reused while its unit lives) or check the registry's [`generation`],
//! which every unregistration bumps before the addresses are unmapped.

use crate::trap::TrapKind;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// What a unit holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// Guest functions: walkable wasm frames.
    Wasm,
    /// Trampolines: not wasm frames; a stack walk stops or skips there.
    Trampolines,
}

/// One compiled function inside a unit.
#[derive(Debug)]
pub struct FuncCode {
    /// Function index in the module's index space (or trampoline index).
    pub func_index: u32,
    /// Offset of the function's first byte in the unit.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
    /// (offset in unit, trap kind), sorted by offset.
    pub traps: Vec<(u32, TrapKind)>,
    /// (start, end, wasm byte offset) code ranges, relative to the unit, sorted.
    pub srclocs: Vec<(u32, u32, u32)>,
    /// A translation of the module's own body of the function (its version
    /// 0) placed in a bundle's unit: an OSR entry of a map back
    /// (docs/transfer.md, "Maps back").
    pub base: bool,
}

/// A function's machine code and metadata, ready to be placed in a unit.
pub struct FuncArtifact {
    /// Function index.
    pub func_index: u32,
    /// Machine code bytes.
    pub code: Vec<u8>,
    /// Required alignment of the code.
    pub alignment: u32,
    /// Traps: (offset in function, kind).
    pub traps: Vec<(u32, TrapKind)>,
    /// Source ranges (start, end, wasm offset) relative to the function.
    pub srclocs: Vec<(u32, u32, u32)>,
    /// Absolute 8-byte relocations: (offset in function, target address).
    pub abs8_relocs: Vec<(u32, usize)>,
    /// Direct calls to functions of the same unit (baseline build only):
    /// (offset of the rel32 in function, callee function index, addend).
    pub call_relocs: Vec<(u32, u32, i64)>,
    /// See [`FuncCode::base`].
    pub base: bool,
}

/// Errors from mapping code memory.
#[derive(Debug, thiserror::Error)]
pub enum CodeMemoryError {
    /// `mmap` or `mprotect` failed.
    #[error("code memory: {0}")]
    Os(std::io::Error),
}

static NEXT_UNIT_ID: AtomicU32 = AtomicU32::new(1);

/// Allocate a fresh unit id (ids are never reused while the process lives).
pub fn next_unit_id() -> u32 {
    // Relaxed: a unique counter, no data published through it.
    NEXT_UNIT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Bumped by every unregistration (module docs, "Reused addresses").
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The registry's generation: it changes whenever a unit is unregistered,
/// before its addresses can be mapped again. What a cache learned about an
/// address of a unit it does not keep alive holds only while this value
/// stays the one it read when it learned it.
pub fn generation() -> u64 {
    // Acquire pairs with the Release increment in `CodeUnit::drop`. The
    // increment happens before the unmapping, and any mapping of the same
    // addresses happens after it; whoever has seen code at a reused address
    // (a return address on a stack) got that address from a unit published
    // later under the registry's write lock, which the dropping thread
    // released after the increment. So a reader that can hold a reused
    // address reads the increased value.
    GENERATION.load(Ordering::Acquire)
}

/// A mapped, executable unit of code.
#[derive(Debug)]
pub struct CodeUnit {
    id: u32,
    kind: UnitKind,
    base: *mut u8,
    mapped_len: usize,
    funcs: Vec<FuncCode>,
}

// SAFETY: the mapping is immutable (read+execute) after construction and is
// only unmapped in `Drop`, when no other reference exists.
unsafe impl Send for CodeUnit {}
// SAFETY: see `Send`; all accessors take `&self` and read immutable data.
unsafe impl Sync for CodeUnit {}

impl CodeUnit {
    /// Map `funcs` into fresh executable memory and register the unit.
    pub fn publish(
        id: u32,
        kind: UnitKind,
        artifacts: Vec<FuncArtifact>,
    ) -> Result<Arc<CodeUnit>, CodeMemoryError> {
        let mut layout = Vec::with_capacity(artifacts.len());
        let mut offset = 0usize;
        for a in &artifacts {
            let align = (a.alignment.max(16)) as usize;
            offset = offset.next_multiple_of(align);
            layout.push(offset);
            offset += a.code.len();
        }
        let page = page_size();
        let mapped_len = offset.max(1).next_multiple_of(page);
        // SAFETY: an anonymous private mapping with no address hint has no
        // effect on existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(CodeMemoryError::Os(std::io::Error::last_os_error()));
        }
        let base = base as *mut u8;
        let placed: std::collections::HashMap<u32, usize> = artifacts
            .iter()
            .zip(&layout)
            .map(|(a, &off)| (a.func_index, off))
            .collect();
        let mut funcs = Vec::with_capacity(artifacts.len());
        for (a, &start) in artifacts.into_iter().zip(&layout) {
            // SAFETY: `start + len <= offset <= mapped_len`, inside the fresh
            // writable mapping, which nothing else references yet.
            unsafe {
                std::ptr::copy_nonoverlapping(a.code.as_ptr(), base.add(start), a.code.len());
                for &(at, target) in &a.abs8_relocs {
                    let p = base.add(start + at as usize) as *mut u64;
                    p.write_unaligned(target as u64);
                }
                for &(at, callee, addend) in &a.call_relocs {
                    let site = start + at as usize;
                    let target = placed.get(&callee).copied().unwrap_or(start);
                    let rel = target as i64 + addend - site as i64;
                    (base.add(site) as *mut i32).write_unaligned(rel as i32);
                }
            }
            let s = start as u32;
            funcs.push(FuncCode {
                func_index: a.func_index,
                start: s,
                len: a.code.len() as u32,
                traps: a.traps.iter().map(|&(o, k)| (o + s, k)).collect(),
                srclocs: a
                    .srclocs
                    .iter()
                    .map(|&(b, e, l)| (b + s, e + s, l))
                    .collect(),
                base: a.base,
            });
        }
        // SAFETY: the range is exactly our mapping; x86-64 needs no
        // instruction-cache flush after writing code.
        let rc = unsafe {
            libc::mprotect(
                base as *mut libc::c_void,
                mapped_len,
                libc::PROT_READ | libc::PROT_EXEC,
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // SAFETY: unmapping the mapping created above, never published.
            unsafe { libc::munmap(base as *mut libc::c_void, mapped_len) };
            return Err(CodeMemoryError::Os(err));
        }
        let unit = Arc::new(CodeUnit {
            id,
            kind,
            base,
            mapped_len,
            funcs,
        });
        {
            let _holding = Holding::new();
            registry()
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(base as usize, Arc::downgrade(&unit));
        }
        super::perf_map::record(&unit);
        Ok(unit)
    }

    /// The unit id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What the unit holds.
    pub fn kind(&self) -> UnitKind {
        self.kind
    }

    /// Functions in the unit, in placement order.
    pub fn funcs(&self) -> &[FuncCode] {
        &self.funcs
    }

    /// Entry address of the `i`-th placed function.
    pub fn entry(&self, i: usize) -> *const u8 {
        // SAFETY: `start` is inside the mapping by construction.
        unsafe { self.base.add(self.funcs[i].start as usize) }
    }

    /// The unit's mapped addresses.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.base as usize..self.base as usize + self.mapped_len
    }

    /// The address range of its `i`-th placed function.
    pub fn func_range(&self, i: usize) -> std::ops::Range<usize> {
        let f = &self.funcs[i];
        let start = self.base as usize + f.start as usize;
        start..start + f.len as usize
    }

    /// Whether `pc` lies inside this unit's mapping.
    pub fn contains(&self, pc: usize) -> bool {
        pc >= self.base as usize && pc < self.base as usize + self.mapped_len
    }

    /// The function containing `pc`, if any.
    pub fn func_at(&self, pc: usize) -> Option<&FuncCode> {
        if !self.contains(pc) {
            return None;
        }
        let off = (pc - self.base as usize) as u32;
        let i = self.funcs.partition_point(|f| f.start <= off);
        let f = self.funcs.get(i.checked_sub(1)?)?;
        (off < f.start + f.len).then_some(f)
    }

    /// The trap recorded at exactly `pc`.
    pub fn trap_at(&self, pc: usize) -> Option<TrapKind> {
        let f = self.func_at(pc)?;
        let off = (pc - self.base as usize) as u32;
        f.traps
            .binary_search_by_key(&off, |t| t.0)
            .ok()
            .map(|i| f.traps[i].1)
    }

    /// The wasm byte offset of the instruction at `pc` (a return address is
    /// looked up at `pc - 1` so that it lands inside the call).
    pub fn wasm_offset(&self, pc: usize) -> Option<u32> {
        let f = self.func_at(pc)?;
        let off = (pc - self.base as usize) as u32;
        let i = f.srclocs.partition_point(|s| s.0 <= off);
        let s = f.srclocs.get(i.checked_sub(1)?)?;
        (off < s.1).then_some(s.2)
    }
}

impl Drop for CodeUnit {
    fn drop(&mut self) {
        let holding = Holding::new();
        let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
        reg.remove(&(self.base as usize));
        // Release pairs with the Acquire load in `generation`: caches that
        // read the new value see the unregistration. Bumped under the
        // write lock and before `munmap`, so before any unit can be mapped
        // at these addresses.
        GENERATION.fetch_add(1, Ordering::Release);
        drop(reg);
        drop(holding);
        // SAFETY: the last reference is gone, the unit is unregistered, and
        // no frame executes it (the owners keep an `Arc` while any might).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.mapped_len) };
    }
}

type Registry = RwLock<BTreeMap<usize, std::sync::Weak<CodeUnit>>>;

thread_local! {
    /// How many registry locks this OS thread holds now (see `try_lookup`).
    static HOLDING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Marks this OS thread as holding a registry lock while it lives.
struct Holding;

impl Holding {
    fn new() -> Holding {
        HOLDING.with(|h| h.set(h.get() + 1));
        Holding
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(h.get() - 1));
    }
}

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Look up the unit containing `pc`. Used by stack walks on parked threads.
pub fn lookup(pc: usize) -> Option<Arc<CodeUnit>> {
    // Stack walks of many threads hit the same few units: remember the last
    // one found on this OS thread (it keeps that one unit mapped a little
    // longer, never anything else).
    thread_local! {
        static LAST: std::cell::RefCell<Option<Arc<CodeUnit>>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(u) = LAST.with(|l| l.borrow().as_ref().filter(|u| u.contains(pc)).cloned()) {
        return Some(u);
    }
    let holding = Holding::new();
    let reg = registry().read().unwrap_or_else(|e| e.into_inner());
    let found = lookup_in(&reg, pc);
    drop(reg);
    drop(holding);
    if let Some(u) = &found {
        LAST.with(|l| *l.borrow_mut() = Some(u.clone()));
    }
    found
}

fn lookup_in(reg: &BTreeMap<usize, std::sync::Weak<CodeUnit>>, pc: usize) -> Option<Arc<CodeUnit>> {
    let (_, weak) = reg.range(..=pc).next_back()?;
    let unit = weak.upgrade()?;
    unit.contains(pc).then_some(unit)
}

/// Signal-handler variant of [`lookup`]: never sleeps on the lock.
///
/// When this OS thread holds a registry lock itself, the fault happened in
/// host code (wasm code never runs while a lock is held), so the answer is
/// `None` at once. Otherwise the lock is held by another OS thread, whose
/// short critical section (a map insert or remove) ends without waiting for
/// this one: spin until it does. Giving up after a bounded spin would turn
/// a guest trap into a host crash whenever the writer was descheduled.
pub fn try_lookup(pc: usize) -> Option<Arc<CodeUnit>> {
    if HOLDING.with(|h| h.get()) != 0 {
        return None;
    }
    loop {
        match registry().try_read() {
            Ok(reg) => return lookup_in(&reg, pc),
            Err(std::sync::TryLockError::Poisoned(p)) => return lookup_in(&p.into_inner(), pc),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
}

/// The host page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}
