//! Exact wasm frames of a thread, read from its machine stack.
//!
//! Every compiled function keeps a frame pointer (`preserve_frame_pointers`),
//! so the frames form a chain `[fp] = caller's fp`, `[fp + 8] = return
//! address`. A thread leaves JIT code only through a host trampoline or the
//! poll stub, and both record their own frame in `VMThread.exit_fp` (its
//! return address is the wasm call or poll site); a trap records the
//! faulting pc and fp. From there the walk
//! follows the chain while return addresses fall in wasm code units, and
//! stops at the first one that does not (the entry trampoline). Each frame is
//! resolved through the code registry to (unit, function, wasm offset): the
//! unit says which compiled version of the function the frame executes.
//!
//! This is the "reliable stack trace" of the consistency model: exact, never
//! guessed, and read without the thread's cooperation while it is parked.
//!
//! **Complete or not clean.** A walk of a suspended thread has no depth
//! limit: it is bounded by the thread's stack instead. Every frame record
//! lies inside the stack, 16 bytes or more above the one before, so a valid
//! chain ends at its entry trampoline after at most `stack size / 16`
//! frames, however deep the recursion. A chain that leaves the stack, is
//! misaligned or does not rise is not followed further, and the scan
//! reports every range it looks for as possibly present ([`scan`]); a frame
//! summary of such a stack, or of one deeper than its limit, is no summary
//! ([`summarize`]). Caches of code lookups ([`ScanCache`]) keep alive the
//! units whose addresses they remember, or drop what they learned when the
//! code registry's generation changes: a reused address is never taken for
//! the code that was there before.

use crate::vm::code_memory::{self, CodeUnit, UnitKind};
use std::sync::Arc;

/// One wasm frame: which function, which compiled version (unit), where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawFrame {
    /// Code unit (compiled version) the frame executes.
    pub unit: u32,
    /// Function index in the module's index space.
    pub func: u32,
    /// Wasm byte offset of the current instruction or call.
    pub offset: u32,
    /// The code is the target module's own function compiled into a
    /// bundle's unit (an OSR entry of a map back, docs/transfer.md): the
    /// frame runs version 0 although its unit is the bundle's.
    pub base: bool,
}

impl RawFrame {
    /// Placeholder for fixed-size buffers.
    pub const EMPTY: RawFrame = RawFrame {
        unit: 0,
        func: 0,
        offset: 0,
        base: false,
    };
}

/// Frames beyond this depth are not walked by [`walk_raw`], which has no
/// stack bounds (trap backtraces, in a signal handler). Walks of suspended
/// threads are bounded by their stack instead (module docs).
const MAX_WALK: usize = 1 << 20;

/// The addresses a frame record may occupy: a thread's machine stack.
pub type StackBounds = std::ops::Range<usize>;

/// The frame record (saved fp, return address) at `fp`, if `fp` can head
/// one inside `stack`; `None` for a broken chain.
///
/// # Safety
/// `stack` must be readable memory (a live thread stack), or `fp` must head
/// an intact chain of frames.
#[inline(always)]
unsafe fn record(fp: usize, stack: &StackBounds) -> Option<(usize, usize)> {
    if fp == 0 || !fp.is_multiple_of(8) || fp < stack.start || fp > stack.end.saturating_sub(16) {
        return None;
    }
    // SAFETY: `fp..fp + 16` lies in `stack`, which the caller guarantees is
    // readable (or `fp` heads an intact chain).
    Some(unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) })
}

/// Whether `next_fp` can be the caller's frame of the frame at `fp`: a
/// caller's record lies above its callee's whole record.
#[inline(always)]
fn rises(fp: usize, next_fp: usize) -> bool {
    next_fp >= fp.saturating_add(16)
}

fn find(pc: usize, in_signal: bool) -> Option<Arc<CodeUnit>> {
    if in_signal {
        code_memory::try_lookup(pc)
    } else {
        code_memory::lookup(pc)
    }
}

fn frame_at(unit: &CodeUnit, pc: usize, is_return_address: bool) -> Option<RawFrame> {
    let at = if is_return_address { pc - 1 } else { pc };
    let f = unit.func_at(at)?;
    Some(RawFrame {
        unit: unit.id(),
        func: f.func_index,
        offset: unit.wasm_offset(at).unwrap_or(0),
        base: f.base,
    })
}

/// Walk wasm frames innermost first, starting at `pc` (if it is in wasm
/// code) and the frame-pointer chain at `fp`. `visit` returns `false` to
/// stop early. At most 2^20 frames: for trap backtraces, which have no
/// stack bounds at hand (see [`walk_exit`] for suspended threads).
///
/// # Safety
/// `fp` must be the frame pointer of a live frame on a stack that is not
/// being modified (the current thread's own, in a signal handler, or a
/// suspended fiber's), whose chain of JIT frames is intact.
pub unsafe fn walk_raw(
    pc: Option<usize>,
    fp: usize,
    in_signal: bool,
    visit: &mut dyn FnMut(RawFrame) -> bool,
) {
    // SAFETY: forwarded from the caller (an intact chain).
    unsafe { walk_chain(pc, fp, &(0..usize::MAX), in_signal, MAX_WALK, visit) };
}

/// [`walk_raw`] within `stack` and at most `limit` frames. Returns whether
/// the chain was followed to its end (`false` when `visit` stopped it too).
///
/// # Safety
/// As [`walk_raw`]; or `stack` is the readable stack of a suspended thread.
unsafe fn walk_chain(
    pc: Option<usize>,
    mut fp: usize,
    stack: &StackBounds,
    in_signal: bool,
    limit: usize,
    visit: &mut dyn FnMut(RawFrame) -> bool,
) -> bool {
    if let Some(pc) = pc {
        if let Some(unit) = find(pc, in_signal) {
            if unit.kind() == UnitKind::Wasm {
                if let Some(f) = frame_at(&unit, pc, false) {
                    if !visit(f) {
                        return false;
                    }
                }
            }
        }
    }
    // Consecutive frames are usually in the same unit: look it up once.
    let mut last: Option<Arc<CodeUnit>> = None;
    for _ in 0..limit {
        // SAFETY: forwarded from the caller.
        let Some((next_fp, ra)) = (unsafe { record(fp, stack) }) else {
            return false;
        };
        let unit = match last.take() {
            Some(u) if u.contains(ra) => u,
            _ => match find(ra, in_signal) {
                Some(u) => u,
                None => return true,
            },
        };
        if unit.kind() != UnitKind::Wasm {
            return true;
        }
        let Some(f) = frame_at(&unit, ra, true) else {
            return false;
        };
        if !visit(f) {
            return false;
        }
        last = Some(unit);
        if !rises(fp, next_fp) {
            return false;
        }
        fp = next_fp;
    }
    false
}

/// The wasm frames of one segment of a parked thread, from the exit record
/// written when it left JIT code (`exit_fp`), on the thread's `stack`, with
/// no depth limit. Returns whether the chain was followed to its end.
///
/// # Safety
/// The thread must be parked (not running), `stack` must be its stack, and
/// the exit record must be the one written by its latest exit from JIT
/// code.
pub unsafe fn walk_exit(exit_fp: usize, stack: &StackBounds, frames: &mut Vec<RawFrame>) -> bool {
    if exit_fp == 0 {
        return true;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        walk_chain(None, exit_fp, stack, false, usize::MAX, &mut |f| {
            frames.push(f);
            true
        })
    }
}

/// Code of interest to a scan: one function of a unit, or a whole unit.
#[derive(Clone, Debug)]
pub struct CodeRange {
    /// Addresses covered.
    pub range: std::ops::Range<usize>,
    /// The unit they belong to.
    pub unit: u32,
    /// The function, or `None` for the whole unit.
    pub func: Option<u32>,
}

/// A set of [`CodeRange`]s to find on stacks, with the units they lie in
/// kept alive (their addresses stay valid while the set exists).
#[derive(Default)]
pub struct CodeRanges {
    ranges: Vec<CodeRange>,
    _units: Vec<Arc<CodeUnit>>,
}

impl CodeRanges {
    /// The ranges `pick` chooses from `units`: for each unit, `pick` gets
    /// the unit and returns the ranges wanted in it.
    pub fn new(
        units: Vec<Arc<CodeUnit>>,
        mut pick: impl FnMut(&CodeUnit) -> Vec<CodeRange>,
    ) -> CodeRanges {
        let mut ranges: Vec<CodeRange> = units.iter().flat_map(|u| pick(u)).collect();
        ranges.sort_by_key(|r| r.range.start);
        CodeRanges {
            ranges,
            _units: units,
        }
    }

    /// Whether some range lies in unit `unit`.
    pub fn has_unit(&self, unit: u32) -> bool {
        self.ranges.iter().any(|r| r.unit == unit)
    }

    /// Every range, by address.
    pub fn iter(&self) -> impl Iterator<Item = &CodeRange> {
        self.ranges.iter()
    }

    fn at_pc(&self, pc: usize) -> Option<&CodeRange> {
        if self.ranges.len() <= 8 {
            return self.ranges.iter().find(|r| r.range.contains(&pc));
        }
        let i = self.ranges.partition_point(|r| r.range.start <= pc);
        let r = &self.ranges[i.checked_sub(1)?];
        r.range.contains(&pc).then_some(r)
    }
}

/// What a scan learned about code addresses, reusable across threads and
/// kept by a store for its whole life: the last wasm unit and the last
/// other unit (entry trampolines) seen. It holds the wasm unit alive (as
/// the registry's lookup cache does); the other unit's addresses are only
/// believed while the code registry's generation is the one read when they
/// were learned (`code_memory::generation`): a unit unmapped since then may
/// have left them to new wasm code.
pub struct ScanCache {
    wasm: Option<Arc<CodeUnit>>,
    other: std::ops::Range<usize>,
    /// The registry generation `other` was learned at.
    other_generation: u64,
    /// Return address → function index of recent wasm frames, direct
    /// mapped: parked threads mostly wait at a few call sites, and a
    /// recursion repeats one return address at every level.
    memo: [(usize, u32); MEMO],
    /// Units whose addresses the memo holds (kept mapped: an address is
    /// never reused while its unit lives).
    memo_units: Vec<Arc<CodeUnit>>,
}

const MEMO: usize = 64;

impl Default for ScanCache {
    fn default() -> Self {
        ScanCache {
            wasm: None,
            other: 0..0,
            other_generation: 0,
            memo: [(0, 0); MEMO],
            memo_units: Vec::new(),
        }
    }
}

impl ScanCache {
    /// The function index of the wasm frame returning to `ra`, or `None`
    /// when `ra` is not in wasm code.
    fn func_of_return(&mut self, ra: usize) -> Option<Option<u32>> {
        let slot = (ra >> 2) % MEMO;
        if self.memo[slot].0 == ra {
            return Some(Some(self.memo[slot].1));
        }
        let unit = self.wasm_unit(ra)?;
        let Some(func) = unit.func_at(ra - 1).map(|f| f.func_index) else {
            return Some(None);
        };
        let unit = self.wasm.clone().expect("just found");
        if !self.memo_units.iter().any(|u| Arc::ptr_eq(u, &unit)) {
            if self.memo_units.len() >= 8 {
                // Too many units: start over rather than hold them all.
                self.memo = [(0, 0); MEMO];
                self.memo_units.clear();
            }
            self.memo_units.push(unit);
        }
        self.memo[slot] = (ra, func);
        Some(Some(func))
    }

    /// The wasm unit holding `pc`, if `pc` is in wasm code.
    fn wasm_unit(&mut self, pc: usize) -> Option<&CodeUnit> {
        if self.wasm.as_ref().is_some_and(|u| u.contains(pc)) {
            return self.wasm.as_deref();
        }
        if self.other.contains(&pc) {
            if self.other_generation == code_memory::generation() {
                return None;
            }
            // Some unit was unmapped since: `pc` may be new code.
            self.other = 0..0;
        }
        // Read before the lookup: a unit unmapped after it bumps the
        // generation past this value, so `other` is never believed newer
        // than it is.
        let generation = code_memory::generation();
        match code_memory::lookup(pc) {
            Some(u) if u.kind() == UnitKind::Wasm => {
                self.wasm = Some(u);
                self.wasm.as_deref()
            }
            Some(u) => {
                self.other = u.range();
                self.other_generation = generation;
                None
            }
            None => None,
        }
    }

    /// Whether `pc` is in wasm code.
    fn is_wasm(&mut self, pc: usize) -> bool {
        self.wasm_unit(pc).is_some()
    }
}

/// The bit of function index `func` in a frame summary: a one-word Bloom
/// filter of the functions on a stack (any instance, any version).
pub fn func_bit(func: u32) -> u64 {
    1u64 << (func.wrapping_mul(0x9E37_79B9) >> 26)
}

/// The summary of a suspended thread's frames: the OR of [`func_bit`] over
/// the function of every wasm frame, or `None` when it has more than
/// `max_frames` frames, one cannot be resolved, or the chain breaks (module
/// docs): a summary always covers the whole stack. A check set whose bits
/// miss the summary is certainly not on the stack; a hit means "look".
///
/// Computed when a thread parks, while its stack is still in cache, so
/// that a transition starting later need not touch the cold stack.
///
/// # Safety
/// As [`walk_exit`], for every segment.
pub unsafe fn summarize(
    segments: impl Iterator<Item = usize>,
    stack: &StackBounds,
    cache: &mut ScanCache,
    max_frames: usize,
) -> Option<u64> {
    let mut bits = 0u64;
    let mut frames = 0usize;
    for exit_fp in segments {
        if exit_fp == 0 {
            continue;
        }
        let mut fp = exit_fp;
        loop {
            // SAFETY: as in `scan`.
            let (next_fp, ra) = unsafe { record(fp, stack) }?;
            let Some(func) = cache.func_of_return(ra) else {
                // The segment's entry trampoline: its end.
                break;
            };
            frames += 1;
            if frames > max_frames {
                return None;
            }
            bits |= func_bit(func?);
            if !rises(fp, next_fp) {
                return None;
            }
            fp = next_fp;
        }
    }
    Some(bits)
}

/// Scan the wasm frames of a suspended thread, innermost first, for code in
/// `ranges`: `hit` sees each frame that falls in one (with the frame's pc)
/// and returns `false` to stop the scan. Other frames cost a few compares:
/// no allocation, no function or offset lookup. `segments` are the exit
/// records (`exit_fp`), innermost segment first, on the thread's `stack`.
///
/// The walk has no depth limit: every chain ends at its entry trampoline
/// within the stack. A chain that breaks before (module docs) may hide any
/// frame, so `hit` then sees every range of `ranges`, with no pc: a caller
/// looking for blocking code finds some, one collecting the units in use
/// keeps them all.
///
/// Returns `false` when `hit` stopped it.
///
/// # Safety
/// As [`walk_exit`], for every segment.
pub unsafe fn scan(
    segments: impl Iterator<Item = usize>,
    stack: &StackBounds,
    ranges: &CodeRanges,
    cache: &mut ScanCache,
    hit: &mut dyn FnMut(&CodeRange, Option<usize>) -> bool,
) -> bool {
    for exit_fp in segments {
        if exit_fp == 0 {
            continue;
        }
        // SAFETY: forwarded from the caller.
        if !unsafe { scan_segment(exit_fp, stack, ranges, cache, hit) } {
            return false;
        }
    }
    true
}

/// [`scan`] of one segment. Returns `false` when `hit` stopped it.
///
/// # Safety
/// As [`scan`].
unsafe fn scan_segment(
    mut fp: usize,
    stack: &StackBounds,
    ranges: &CodeRanges,
    cache: &mut ScanCache,
    hit: &mut dyn FnMut(&CodeRange, Option<usize>) -> bool,
) -> bool {
    // The last return address found to be wasm code outside `ranges`: a
    // recursion repeats it at every level.
    let mut plain_ra = 0;
    loop {
        // SAFETY: the caller guarantees `stack` is the thread's frozen
        // stack and `fp` one of its exit records; `record` reads only
        // inside `stack`.
        let Some((next_fp, ra)) = (unsafe { record(fp, stack) }) else {
            return broken(ranges, hit);
        };
        // Deep stacks: keep the lines a few frames up on their way.
        super::prefetch(next_fp.wrapping_add(512));
        // A return address is looked up at `ra - 1`, inside the call.
        let pc = ra.wrapping_sub(1);
        if ra == plain_ra {
            // Same verdict as the frame before: go on.
        } else if let Some(r) = ranges.at_pc(pc) {
            if !hit(r, Some(pc)) {
                return false;
            }
        } else if cache.is_wasm(ra) {
            plain_ra = ra;
        } else {
            // Left wasm code: the segment's entry trampoline, its end.
            return true;
        }
        if !rises(fp, next_fp) {
            return broken(ranges, hit);
        }
        fp = next_fp;
    }
}

/// A chain that could not be followed to its end: any range may be on it.
fn broken(ranges: &CodeRanges, hit: &mut dyn FnMut(&CodeRange, Option<usize>) -> bool) -> bool {
    ranges.iter().all(|r| hit(r, None))
}
