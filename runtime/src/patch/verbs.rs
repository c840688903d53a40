//! The patch verbs on a `Store`: apply, revert, reverse, force and wait,
//! and `drive`, which the scheduler calls between threads to complete a
//! transition and apply the timeout policy. Each verb checks its
//! preconditions before it changes anything, so a refused operation leaves
//! every slot, thread and byte of memory as it was (docs/consistency.md
//! rules 10, 11, 14).

use super::callbacks::{run_callback, Snapshot};
use super::queries::describe;
use super::transition::{self, Phase, Side, Transition};
use super::versions::{AppliedBundle, PatchedInstance};
use super::{
    checks, data, state, ApplyOptions, Direction, Event, PatchError, PatchId, TransitionOutcome,
};
use crate::compile::{self, CompiledBundle};
use crate::errors::Error;
use crate::instance::Instance;
use crate::store::{self, store_mut, Store, StoreInner};
use crate::thread::{RunState, ThreadId};
use crate::vm::stack_walk::{CodeRange, CodeRanges, ScanCache};
use crate::vm::vmctx::{VMContext, VMSlot};
use crate::vm::vmctx_block::{other_world, world_index};
use patch_format::{Bundle, CallbackKind, EntryKind};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// [`drive`] when a transition is in progress (without one it has nothing
/// to do): the test stays inline in the scheduler's loops, which then skip
/// the call and its register saves on every step (about 60 instructions).
#[inline]
pub(crate) fn drive_if_any<T: 'static>(inner: *mut StoreInner<T>) {
    // SAFETY: as in `drive`: the live store, between threads.
    if unsafe { store_mut(inner) }.patch.transition.is_some() {
        drive(inner);
    }
}

/// Complete a transition that is due, run its callbacks, reclaim code; and
/// apply the timeout policy. Called by the scheduler between threads.
pub(crate) fn drive<T: 'static>(inner: *mut StoreInner<T>) {
    // SAFETY: called by the scheduler with the live store, between threads.
    let s = unsafe { store_mut(inner) };
    if let Some(inst_index) = s.patch.transition.as_ref().map(|t| t.instance) {
        let names: *const StoreInner<T> = s;
        // SAFETY: `describe` only reads `units`, which the transition
        // functions do not touch.
        let d = describe(unsafe { &*names });
        let runnable = s.runnable();
        let inst = &mut s.instances[inst_index];
        transition::check_timeout(&mut s.patch, inst, &mut s.threads, runnable, &d);
    }
    let Some(t) = s.patch.transition.as_ref() else {
        return;
    };
    if !t.phase.completion_due() {
        return;
    }
    let (patch, instance) = (t.patch, t.instance);
    // The bundle whose callbacks run, taken before `complete` may drop it.
    let cb_bundle = s.patch.instances[&instance].position(patch);
    let callback = match t.phase.toward() {
        Side::Patched => Some(CallbackKind::PostPatch),
        Side::Unpatched => Some(CallbackKind::PostUnpatch),
    };
    // Keep the compiled bundle alive through its callback even if `finish`
    // removes it from the applied list.
    let held = cb_bundle.map(|i| {
        let b = &s.patch.instances[&instance].applied[i];
        (
            b.compiled.unit.clone(),
            b.compiled.trampolines.clone(),
            b.compiled.info.clone(),
            b.compiled.callbacks.clone(),
        )
    });
    if transition::complete(&mut s.patch, &mut s.instances[instance]).is_none() {
        return;
    }
    if let (Some(kind), Some((unit, trampolines, info, callbacks))) = (callback, held) {
        let compiled = CompiledBundle {
            unit,
            info,
            trampolines,
            callbacks,
            transfer: Default::default(),
            dependents: Vec::new(),
        };
        if let Err(e) = run_callback(inner, instance, &compiled, kind) {
            // SAFETY: as above.
            let s = unsafe { store_mut(inner) };
            transition::emit(
                &mut s.patch,
                Event::BlockedBy(
                    patch,
                    ThreadId(0),
                    format!("{} callback failed: {e}", kind.name()),
                ),
            );
        }
    }
    // SAFETY: as above.
    let s = unsafe { store_mut(inner) };
    transition::reclaim(&mut s.patch, &mut s.threads);
    // Forget the names of code that is gone.
    let mut live: HashSet<u32> = s
        .instances
        .iter()
        .map(|i| i.module.inner.compiled.unit.id())
        .collect();
    for pi in s.patch.instances.values() {
        live.extend(pi.applied.iter().map(|b| b.compiled.unit.id()));
    }
    live.extend(s.patch.zombies.iter().map(|u| u.id()));
    s.units.retain(|u, _| live.contains(u));
}

/// The defined functions of the target whose original code inlined a
/// function that `bundle` replaces, less those it replaces itself (their
/// new bodies are compiled without inlining already; with a signature
/// change they are in the bundle as callers). `record` is the module's
/// per-function inlining record (`CompiledModule::inlined`).
fn dependents(record: &[Vec<u32>], info: &crate::module::ModuleInfo, bundle: &Bundle) -> Vec<u32> {
    let replaced: HashSet<u32> = (bundle.entries().iter())
        .filter_map(|e| match e.kind {
            EntryKind::Replace { target_index } => Some(target_index),
            EntryKind::Add { .. } => None,
        })
        .collect();
    (record.iter().enumerate())
        .filter(|(_, callees)| callees.iter().any(|f| replaced.contains(f)))
        .map(|(i, _)| info.num_imported_funcs + i as u32)
        .filter(|g| !replaced.contains(g))
        .collect()
}

/// When the scheduler must wake up to apply the timeout policy.
pub(crate) fn timeout_deadline(core: &super::Core) -> Option<Instant> {
    let t = core.transition.as_ref()?;
    if t.reversed() || t.phase.completion_due() {
        return None;
    }
    t.timeout.map(|d| t.started + d)
}

impl<T: 'static> Store<T> {
    fn check_idle(&self) -> Result<(), PatchError> {
        if self.inner.running != 0 {
            return Err(PatchError::FromGuest);
        }
        if let Some(t) = &self.inner.patch.transition {
            return Err(PatchError::Busy(t.patch));
        }
        Ok(())
    }

    /// Apply a bundle to `instance`: check it (signature when demanded,
    /// target hash and interface, stacking and states, types), compile it
    /// without stopping guest threads, run its pre-patch callback, then start
    /// the transition. Parked threads whose stacks are clean switch at once;
    /// the others at their next safe point (drive with [`Store::run`] or
    /// [`Store::wait_transition`]).
    ///
    /// # Errors
    /// Any [`PatchError`]; then nothing changed.
    pub fn apply(
        &mut self,
        instance: Instance,
        bytes: &[u8],
        opts: &ApplyOptions,
    ) -> Result<PatchId, PatchError> {
        self.check_idle()?;
        let bundle = match &opts.trusted_keys {
            Some(keys) => keys.verify(bytes)?.bundle().clone(),
            None => Bundle::parse(bytes)?,
        };
        if instance.store_id != self.inner.id || instance.index >= self.inner.instances.len() {
            return Err(PatchError::Incompatible(
                "instance does not belong to this store".into(),
            ));
        }
        let inst_index = instance.index;
        let module = self.inner.instances[inst_index].module.clone();
        let info = module.info();
        let published = self.inner.instances[inst_index].vmctx.table(0).len();
        checks::check(
            &self.inner.engine,
            info,
            self.inner.patch.instances.get(&inst_index),
            published,
            &bundle,
            opts.immediate,
        )?;
        // Inlined code is changed code (rule 18): the functions whose
        // original code inlined a function this bundle replaces are
        // recompiled with it, unless the bundle replaces them too.
        let dependents = dependents(&module.inner.compiled.inlined, info, &bundle);
        self.check_inlined_immediate(inst_index, &bundle, opts.immediate)?;
        // Bundle data: placed now, put in memory after compiling, before the
        // pre-patch callback (which may use it); taken back out on a veto.
        let plan = {
            let s = &*self.inner;
            let spare = s.patch.data_spare.get(&inst_index);
            data::plan(
                &s.instances[inst_index],
                &s.memories,
                &s.tables,
                spare.map_or(&[][..], |v| v.as_slice()),
                &bundle,
            )?
        };
        let resolved;
        let to_compile = match &plan {
            Some(p) => {
                resolved = bundle.resolved(p.placement.base, p.placement.table_base)?;
                &resolved
            }
            None => &bundle,
        };
        let engine = self.inner.engine.clone();
        let compile_start = std::time::Instant::now();
        let compiled = compile::compile_bundle(&engine, info, to_compile, &dependents)
            .map_err(PatchError::Compile)?;
        let compile_time = compile_start.elapsed();
        if let Some(p) = &plan {
            p.put(&self.inner.memories, &self.inner.tables, &bundle)?;
        }
        // Pre-patch: may veto; nothing is published yet. What the callback
        // itself wrote (memory, globals, tables) is undone on a veto, so that
        // a refused bundle changes no byte (rule 13).
        let snapshot = compiled
            .callbacks
            .iter()
            .any(|(k, _)| *k == CallbackKind::PrePatch)
            .then(|| Snapshot::take(&self.inner, inst_index));
        let inner: *mut StoreInner<T> = &mut *self.inner;
        let first_spawned = self.inner.next_thread;
        let veto = match run_callback(inner, inst_index, &compiled, CallbackKind::PrePatch) {
            Ok(None) | Ok(Some(0)) => None,
            Ok(Some(v)) => Some(PatchError::Vetoed(format!("returned {v}"))),
            Err(e) => Some(PatchError::Vetoed(e.to_string())),
        };
        // Threads the callback spawned may have run into a function that
        // inlined an immediate one (rule 4 with inlining): refused as a
        // veto is, with everything the callback did undone.
        let veto = veto.or_else(|| {
            (self.inner.next_thread != first_spawned)
                .then(|| self.check_inlined_immediate(inst_index, &bundle, opts.immediate))
                .and_then(Result::err)
        });
        if let Some(err) = veto {
            // Threads the callback spawned never ran (it ran alone): they
            // go with the veto, before their code's memory is restored.
            let spawned: Vec<u32> = (self.inner.threads.keys().copied())
                .filter(|&id| id >= first_spawned)
                .collect();
            for id in spawned {
                // SAFETY: the store is live and idle (no fiber runs).
                unsafe { crate::store::cancel(inner, id) };
            }
            if let Some(snap) = snapshot {
                snap.restore(&self.inner);
            }
            if let Some(p) = &plan {
                p.undo(&self.inner.memories, &self.inner.tables);
            }
            return Err(err);
        }
        // ---- publish from here on ----
        let s = &mut *self.inner;
        s.units.insert(compiled.unit.id(), compiled.info.clone());
        let type_ids: Vec<u32> = compiled
            .info
            .types
            .iter()
            .map(|t| engine.signature_id(t))
            .collect();
        let nfuncs_visible = compiled.info.func_types.len() - compiled.callbacks.len();
        let inst = &mut s.instances[inst_index];
        inst.grow(
            &type_ids,
            &compiled.info.func_types[..nfuncs_visible],
            &mut s.retired,
        );
        if let Some(p) = &plan {
            p.fill(inst, &s.tables, &bundle);
            p.commit_spare(s.patch.data_spare.entry(inst_index).or_default());
        }
        let vmctx = &mut *inst.vmctx as *mut VMContext as *mut u8;
        let live = world_index(s.patch.world);
        let pi = s
            .patch
            .instances
            .entry(inst_index)
            .or_insert_with(|| PatchedInstance {
                base: inst.vmctx.table(live).to_vec(),
                removed: HashMap::new(),
                applied: Vec::new(),
                units: [module.inner.compiled.unit.id()].into_iter().collect(),
                stubs: Vec::new(),
                added: HashMap::new(),
                inlined: (module.inner.compiled.inlined.iter().enumerate())
                    .filter(|(_, c)| !c.is_empty())
                    .map(|(i, c)| (info.num_imported_funcs + i as u32, c.clone()))
                    .collect(),
            });
        pi.units.insert(compiled.unit.id());
        let mut slots = Vec::new();
        let mut immediate = HashSet::new();
        let mut added = HashSet::new();
        for (i, e) in bundle.entries().iter().enumerate() {
            let f = e.kind.func_index();
            slots.push((
                f,
                VMSlot {
                    code: compiled.unit.entry(i),
                    vmctx,
                },
            ));
            if opts.immediate || bundle.is_immediate(e) {
                immediate.insert(f);
            }
            if let EntryKind::Add { .. } = e.kind {
                added.insert(f);
                // The checks made sure an index already added holds this
                // very function (name and type): only the bundle changes.
                let info = pi.added.entry(f).or_insert_with(|| {
                    Box::new(super::versions::AddedFunction {
                        name: e.name.clone(),
                        signature: engine.signature_id(&e.ty),
                        patch: PatchId(0),
                    })
                });
                info.patch = PatchId(s.patch.next_id + 1);
                let info_ptr = &mut **info as *mut super::versions::AddedFunction as *mut u8;
                if let std::collections::hash_map::Entry::Vacant(v) = pi.removed.entry(f) {
                    v.insert(VMSlot {
                        code: compiled.removed_stub(e.type_index),
                        vmctx: info_ptr,
                    });
                    pi.stubs.push(compiled.trampolines.clone());
                }
            }
        }
        let dependent_slots = (compiled.dependents.iter())
            .map(|&(g, placed)| {
                let code = compiled.unit.entry(placed);
                (g, VMSlot { code, vmctx })
            })
            .collect();
        // A fresh added index holds its removed-function stub in both worlds
        // until the transition maps it (rule 6): a reversed apply leaves the
        // stub behind, never an empty slot.
        for &f in &added {
            let stub = pi.removed[&f];
            for w in 0..2 {
                let slot = &mut inst.vmctx.table_mut(w)[f as usize];
                if *slot == VMSlot::NULL {
                    *slot = stub;
                }
            }
        }
        let id = PatchId({
            s.patch.next_id += 1;
            s.patch.next_id
        });
        let before: Vec<PatchId> = pi.applied.iter().map(|b| b.id).collect();
        let direction = if bundle.replace() {
            Direction::Replace
        } else {
            Direction::Patch
        };
        let after: Vec<PatchId> = if bundle.replace() {
            vec![id]
        } else {
            before.iter().copied().chain([id]).collect()
        };
        let names = compiled.info.clone();
        pi.applied.push(AppliedBundle {
            id,
            bundle,
            compiled,
            slots,
            immediate,
            added,
            forced: false,
            data: plan.map(|p| p.placement),
            compile_time,
            dependents: dependent_slots,
        });
        // Free the checks' scratch data now: with many threads the
        // allocator's frees are not free, and they are no part of a switch.
        drop((snapshot, type_ids));
        self.start_transition(
            inst_index,
            id,
            direction,
            before,
            after,
            opts.timeout,
            names,
        );
        Ok(id)
    }

    /// Rule 4 with inlining (rule 18): an immediate function inlined into
    /// `g` makes `g`'s recompiled copy immediate too, so every call made
    /// after the start reaches the new version, but an activation of `g`'s
    /// original code already on a stack would still run the old inlined
    /// body, whether the bundle recompiles `g` or replaces it. Refuse the
    /// apply while some thread has such a frame (stacks are exact; no
    /// thread runs during an apply).
    fn check_inlined_immediate(
        &self,
        inst_index: usize,
        bundle: &Bundle,
        all_immediate: bool,
    ) -> Result<(), PatchError> {
        let s = &*self.inner;
        let module = &s.instances[inst_index].module;
        let info = module.info();
        let nimp = info.num_imported_funcs;
        let immediate: HashSet<u32> = (bundle.entries().iter())
            .filter(|e| all_immediate || bundle.is_immediate(e))
            .map(|e| e.kind.func_index())
            .collect();
        let record = &module.inner.compiled.inlined;
        // (caller, the immediate function it inlined)
        let pairs: HashMap<u32, u32> = (record.iter().enumerate())
            .filter_map(|(i, callees)| {
                let f = callees.iter().find(|f| immediate.contains(f))?;
                Some((nimp + i as u32, *f))
            })
            .collect();
        if pairs.is_empty() {
            return Ok(());
        }
        let unit = module.inner.compiled.unit.clone();
        let ranges = CodeRanges::new(vec![unit], |u| {
            (u.funcs().iter().enumerate())
                .filter(|(_, f)| pairs.contains_key(&f.func_index))
                .map(|(i, f)| CodeRange {
                    range: u.func_range(i),
                    unit: u.id(),
                    func: Some(f.func_index),
                })
                .collect()
        });
        let mut cache = ScanCache::default();
        let mut ids: Vec<&u32> = s.threads.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let ts = &s.threads[id];
            if ts.state == RunState::Done {
                continue;
            }
            let mut found = None;
            ts.scan(&ranges, &mut cache, &mut |r, _| {
                found = r.func;
                false
            });
            if let Some(g) = found {
                return Err(PatchError::InlinedOnStack {
                    func: info.func_name(pairs[&g]),
                    caller: info.func_name(g),
                    thread: ts.id,
                });
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start_transition(
        &mut self,
        inst_index: usize,
        id: PatchId,
        direction: Direction,
        keep_unpatched: Vec<PatchId>,
        keep_patched: Vec<PatchId>,
        timeout: Option<Duration>,
        names: std::sync::Arc<crate::module::ModuleInfo>,
    ) {
        let s = &mut *self.inner;
        let runnable = s.runnable();
        let inst = &mut s.instances[inst_index];
        let pi = s
            .patch
            .instances
            .get(&inst_index)
            .expect("patched instance");
        let len = inst.vmctx.table(0).len();
        let list = |keep: &[PatchId]| -> Vec<&AppliedBundle> {
            pi.applied.iter().filter(|b| keep.contains(&b.id)).collect()
        };
        let keep_to = match transition::initial_side(direction) {
            Side::Patched => &keep_patched,
            Side::Unpatched => &keep_unpatched,
        };
        let to_slots = pi.world(&list(keep_to), len);
        let from_world = s.patch.world;
        let from_slots: Vec<VMSlot> = inst.vmctx.table(world_index(from_world)).to_vec();
        // Functions that switch at once: the moving bundle's immediate ones,
        // and functions added by an apply (rule 6).
        let moving = pi
            .applied
            .iter()
            .find(|b| b.id == id)
            .expect("moving bundle");
        let mut immediate: Vec<(u32, VMSlot, VMSlot)> = Vec::new();
        let mut check = HashSet::new();
        for f in 0..len {
            let (a, b) = (from_slots[f], to_slots[f]);
            if a == b {
                continue;
            }
            let f32_ = f as u32;
            // An added function that no world maps yet (its slot holds the
            // removed stub) switches at once; one that is live already (a
            // cumulative replacement adds it again) is a new version.
            let fresh = pi.removed.get(&f32_) == Some(&a);
            let is_add = direction != Direction::Unpatch && moving.added.contains(&f32_) && fresh;
            if moving.immediate.contains(&f32_) || is_add {
                immediate.push((f32_, a, b));
            } else {
                check.insert(f32_);
            }
        }
        // A function whose change is due to inlining alone (rule 18) and
        // that inlined an immediate function changes with it at once: both
        // worlds then call the immediate function through its slot. The
        // apply made sure that no thread runs the old inlined code
        // (`check_inlined_immediate`).
        let now: HashSet<u32> = immediate.iter().map(|i| i.0).collect();
        let mut with_immediate: Vec<u32> = (check.iter().copied())
            .filter(|&g| {
                let inlined = pi.inlined.get(&g);
                inlined.is_some_and(|c| c.iter().any(|f| now.contains(f)))
                    && pi.same_body(g, from_slots[g as usize])
                    && pi.same_body(g, to_slots[g as usize])
            })
            .collect();
        with_immediate.sort_unstable();
        for g in with_immediate {
            check.remove(&g);
            immediate.push((g, from_slots[g as usize], to_slots[g as usize]));
        }
        let t = Transition {
            patch: id,
            direction,
            instance: inst_index,
            from: from_world,
            to: other_world(from_world),
            check,
            immediate,
            pending: Default::default(),
            check_code: Default::default(),
            check_bloom: 0,
            switched: 0,
            started: Instant::now(),
            timeout,
            phase: Phase::Switching {
                toward: transition::initial_side(direction),
            },
            keep_patched,
            keep_unpatched,
            names,
            reported: HashSet::new(),
            timeout_blockers: Vec::new(),
        };
        transition::start(&mut s.patch, inst, &mut s.threads, runnable, t, &to_slots);
    }

    /// Revert an applied bundle: remove its versions from every function's
    /// history, as a transition with the same consistency. Its pre-unpatch
    /// callback runs first (a failure is reported, the revert goes on).
    ///
    /// # Errors
    /// Busy, unknown, forced, or still needed by another bundle (sits on it,
    /// or needs a state only it provides).
    pub fn revert(&mut self, id: PatchId, timeout: Option<Duration>) -> Result<(), PatchError> {
        self.check_idle()?;
        let s = &mut *self.inner;
        let (inst_index, pi) = s
            .patch
            .instances
            .iter()
            .find(|(_, p)| p.position(id).is_some())
            .map(|(i, p)| (*i, p))
            .ok_or(PatchError::Unknown(id))?;
        let b = &pi.applied[pi.position(id).expect("found")];
        if b.forced {
            return Err(PatchError::RevertRefused(
                id,
                "it was forced, and a forced bundle can never be removed".into(),
            ));
        }
        let bid = b.bundle.bundle_id();
        for other in pi.applied.iter().filter(|o| o.id != id) {
            if other.bundle.sits_on().contains(&bid) {
                return Err(PatchError::RevertRefused(
                    id,
                    format!("{} sits on it", other.id),
                ));
            }
            let provided: Vec<_> = pi
                .applied
                .iter()
                .filter(|o| o.id != id)
                .flat_map(|o| o.bundle.states().iter().copied())
                .collect();
            if let Some(st) = state::first_unmet(other.bundle.requires_states(), &provided) {
                return Err(PatchError::RevertRefused(
                    id,
                    format!("{} needs state {st}, which only it provides", other.id),
                ));
            }
        }
        let before: Vec<PatchId> = pi.applied.iter().map(|b| b.id).collect();
        let after: Vec<PatchId> = before.iter().copied().filter(|b| *b != id).collect();
        let names = b.compiled.info.clone();
        let held = (
            b.compiled.unit.clone(),
            b.compiled.trampolines.clone(),
            b.compiled.info.clone(),
            b.compiled.callbacks.clone(),
        );
        let compiled = CompiledBundle {
            unit: held.0,
            trampolines: held.1,
            info: held.2,
            callbacks: held.3,
            transfer: Default::default(),
            dependents: Vec::new(),
        };
        let inner: *mut StoreInner<T> = &mut *self.inner;
        if let Err(e) = run_callback(inner, inst_index, &compiled, CallbackKind::PreUnpatch) {
            let s = &mut *self.inner;
            transition::emit(
                &mut s.patch,
                Event::BlockedBy(id, ThreadId(0), format!("pre-unpatch callback failed: {e}")),
            );
        }
        // The patched side of a revert is the world it starts from.
        self.start_transition(
            inst_index,
            id,
            Direction::Unpatch,
            after,
            before,
            timeout,
            names,
        );
        Ok(())
    }

    /// Reverse the transition in progress: threads converge back to the
    /// world they came from, under the same stack rule.
    ///
    /// # Errors
    /// [`PatchError::NoTransition`].
    pub fn reverse(&mut self) -> Result<(), PatchError> {
        if self.inner.running != 0 {
            return Err(PatchError::FromGuest);
        }
        let s = &mut *self.inner;
        let inst = s
            .patch
            .transition
            .as_ref()
            .ok_or(PatchError::NoTransition)?
            .instance;
        let runnable = s.runnable();
        transition::reverse(
            &mut s.patch,
            &mut s.instances[inst],
            &mut s.threads,
            runnable,
        )
    }

    /// Switch every pending thread now, ignoring the stack rule.
    ///
    /// # Danger
    /// A forced thread may run new code under frames of old code, the mix the
    /// consistency model exists to prevent. The bundle is marked forced and
    /// can never be reverted. Memory safety still holds: old code is freed
    /// only once no frame executes it.
    ///
    /// # Errors
    /// [`PatchError::NoTransition`].
    pub fn force(&mut self) -> Result<PatchId, PatchError> {
        if self.inner.running != 0 {
            return Err(PatchError::FromGuest);
        }
        let s = &mut *self.inner;
        transition::force(&mut s.patch, &mut s.threads)
    }

    /// Run guest threads until the transition in progress completes (or the
    /// timeout policy reverses it and the reverse completes).
    ///
    /// # Errors
    /// [`Error::Deadlock`]-like stall when nothing can run and no timeout is
    /// set (the blockers are in [`Store::transition_status`]).
    pub fn wait_transition(&mut self) -> Result<TransitionOutcome, Error> {
        let inner: *mut StoreInner<T> = &mut *self.inner;
        loop {
            drive(inner);
            let s = &mut *self.inner;
            if s.patch.transition.is_none() {
                return s
                    .patch
                    .last_outcome
                    .clone()
                    .ok_or_else(|| Error::BadCall("no transition ran".into()));
            }
            // SAFETY: the store is live; no fiber is running (we hold &mut).
            if !unsafe { store::step(inner) } {
                let s = &mut *self.inner;
                if s.patch.completion_due() {
                    continue;
                }
                let wake = match (timeout_deadline(&s.patch), store::next_wake(s)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match wake {
                    Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
                    None => {
                        return Err(Error::BadCall(
                            "transition stalled: its blockers are parked and no timeout is set"
                                .into(),
                        ))
                    }
                }
            }
        }
    }
}
