//! Per-function version history of one patched instance, and the worlds
//! built from it.
//!
//! `H(f)` is the original code `v0` followed by one version per applied
//! bundle that replaces or adds `f`, in the order applied. A world maps
//! every function to one slot: `world(list)` replays a list of applied
//! bundles over the originals (a cumulative `replace` bundle first resets
//! everything to `v0`).

use super::PatchId;
use crate::compile::CompiledBundle;
use crate::vm::code_memory::CodeUnit;
use crate::vm::vmctx::VMSlot;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One applied (or being-applied) bundle of an instance.
pub(crate) struct AppliedBundle {
    pub(crate) id: PatchId,
    pub(crate) bundle: patch_format::Bundle,
    pub(crate) compiled: CompiledBundle,
    /// (function, slot) for every entry.
    pub(crate) slots: Vec<(u32, VMSlot)>,
    /// Functions switched immediately (entry flag or bundle flag).
    pub(crate) immediate: HashSet<u32>,
    /// Functions this bundle adds.
    pub(crate) added: HashSet<u32>,
    /// Set by `force`: this bundle can never be reverted.
    pub(crate) forced: bool,
    /// Where its data objects and table entries are (FORMAT.md §9).
    pub(crate) data: Option<super::DataPlacement>,
    /// How long compiling its code took, at apply.
    pub(crate) compile_time: std::time::Duration,
    /// Functions of the module that inlined a function this bundle changes,
    /// recompiled without inlining into this bundle's unit (rule 18), with
    /// their slots. A world uses one where it keeps the original code of
    /// such a function but changes a function it inlined
    /// ([`PatchedInstance::world`]).
    pub(crate) dependents: Vec<(u32, VMSlot)>,
}

/// A function index that a bundle added to the instance. It keeps its
/// function and type for the life of the instance: references to it may
/// sit in tables and memory after a revert, and code calls it by index.
/// Boxed in [`PatchedInstance::added`]: the index's removed-function stub
/// points at it to name the function and the bundle in its trap.
#[derive(Debug)]
pub(crate) struct AddedFunction {
    /// The function's name.
    pub(crate) name: String,
    /// Its type's engine signature id.
    pub(crate) signature: u32,
    /// The bundle that added it last (and whose revert removes it).
    pub(crate) patch: PatchId,
}

/// Patch bookkeeping of one instance.
pub(crate) struct PatchedInstance {
    /// Version 0 of every function (imports included).
    pub(crate) base: Vec<VMSlot>,
    /// Slots that trap "removed function", by function index, for functions
    /// added by bundles (used once the bundle that added them is reverted).
    pub(crate) removed: HashMap<u32, VMSlot>,
    /// Applied bundles, oldest first.
    pub(crate) applied: Vec<AppliedBundle>,
    /// Every code unit that ever held this instance's functions (the
    /// module's and each bundle's): frames of these units name functions of
    /// this instance.
    pub(crate) units: HashSet<u32>,
    /// Removed-function stubs' code, kept alive.
    pub(crate) stubs: Vec<Arc<CodeUnit>>,
    /// Every index a bundle ever added, with its function and type.
    pub(crate) added: HashMap<u32, Box<AddedFunction>>,
    /// For each function of the module whose original code inlined others
    /// (`compile/inline.rs`), the functions it inlined. Bundle code and
    /// dependents inline nothing.
    pub(crate) inlined: HashMap<u32, Vec<u32>>,
}

impl PatchedInstance {
    /// The world that `list` (applied bundles, in order) defines, over
    /// `len` functions.
    ///
    /// Inlined code is changed code (rule 18): where the world keeps the
    /// original code of a function `g` but maps a function that `g`'s
    /// original code inlined to another version, `g` gets the recompiled
    /// copy (which calls through slots) of the oldest bundle of `list`
    /// that has one. Every bundle that changes a function inlined into `g`
    /// carries such a copy unless it replaces `g` itself, so one exists.
    pub(crate) fn world(&self, list: &[&AppliedBundle], len: usize) -> Vec<VMSlot> {
        let mut slots = self.reset(len);
        let mut copies: HashMap<u32, VMSlot> = HashMap::new();
        for b in list {
            if b.bundle.replace() {
                slots = self.reset(len);
                copies.clear();
            }
            for &(f, s) in &b.slots {
                slots[f as usize] = s;
            }
            for &(g, s) in &b.dependents {
                copies.entry(g).or_insert(s);
            }
        }
        for (&g, callees) in &self.inlined {
            let g_ = g as usize;
            let original = slots[g_] == self.base[g_];
            if original
                && callees
                    .iter()
                    .any(|&f| slots[f as usize] != self.base[f as usize])
            {
                debug_assert!(copies.contains_key(&g), "no recompiled copy of {g}");
                if let Some(&s) = copies.get(&g) {
                    slots[g_] = s;
                }
            }
        }
        slots
    }

    /// Whether `slot` holds function `g`'s original code or one of its
    /// recompiled copies: a change of `g` between two such slots is due to
    /// inlining alone (rule 18), not to a new version of `g`'s body.
    pub(crate) fn same_body(&self, g: u32, slot: VMSlot) -> bool {
        slot == self.base[g as usize]
            || self
                .applied
                .iter()
                .any(|b| b.dependents.iter().any(|&(d, s)| d == g && s == slot))
    }

    fn reset(&self, len: usize) -> Vec<VMSlot> {
        let mut slots = self.base.clone();
        slots.resize(len, VMSlot::NULL);
        for (&f, &s) in &self.removed {
            if (f as usize) < len {
                slots[f as usize] = s;
            }
        }
        slots
    }

    /// Index of applied bundle `id`.
    pub(crate) fn position(&self, id: PatchId) -> Option<usize> {
        self.applied.iter().position(|b| b.id == id)
    }
}
