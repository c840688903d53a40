//! What a host can see of patching (docs/consistency.md, "What a host
//! can see"): the transition and its blockers, per-thread patch state, the
//! applied bundles, per-function versions, the transcript, shadow data.

use super::transition::{self, Side};
use super::{
    AppliedInfo, Blocker, Event, FunctionVersions, ThreadPatchState, TimedEvent, TransitionOutcome,
    TransitionPhase, TransitionStatus, VersionInfo,
};
use crate::errors::FrameInfo;
use crate::instance::Instance;
use crate::store::{Store, StoreInner};
use crate::thread::ThreadId;

pub(crate) fn describe<T>(
    s: &StoreInner<T>,
) -> impl Fn(&crate::vm::stack_walk::RawFrame) -> FrameInfo + '_ {
    move |f| s.frame_info(f)
}

impl<T: 'static> Store<T> {
    /// The bundle whose transition is in progress, if one is: a constant-
    /// time check, where [`Store::transition_status`] walks every pending
    /// thread's stack to name its blockers.
    pub fn transition_patch(&self) -> Option<super::PatchId> {
        self.inner.patch.transition.as_ref().map(|t| t.patch)
    }

    /// The transition in progress, with its blockers (every pending
    /// thread's stack is walked: see [`Store::transition_patch`] for a
    /// cheap "is one running").
    pub fn transition_status(&self) -> Option<TransitionStatus> {
        let s = &*self.inner;
        let t = s.patch.transition.as_ref()?;
        let d = describe(s);
        Some(TransitionStatus {
            patch: t.patch,
            direction: t.direction,
            pending: t.pending.len(),
            switched: t.switched,
            elapsed: t.started.elapsed(),
            reversed: t.reversed(),
            phase: match t.phase {
                transition::Phase::Switching { .. } => TransitionPhase::Switching,
                transition::Phase::Switched { .. } => TransitionPhase::Switched,
                transition::Phase::Forced { .. } => TransitionPhase::Forced,
            },
            blockers: s
                .instances
                .get(t.instance)
                .map(|inst| transition::blockers(&s.patch, inst, &s.threads, &d))
                .unwrap_or_default(),
        })
    }

    /// The blockers of the transition in progress.
    pub fn blockers(&self) -> Vec<Blocker> {
        self.transition_status()
            .map(|t| t.blockers)
            .unwrap_or_default()
    }

    /// How the last transition ended.
    pub fn last_transition(&self) -> Option<&TransitionOutcome> {
        self.inner.patch.last_outcome.as_ref()
    }

    /// A thread's patch state (`/proc/<pid>/patch_state`).
    pub fn thread_patch_state(&self, id: ThreadId) -> Option<ThreadPatchState> {
        let ts = self.inner.threads.get(&id.0)?;
        let Some(t) = &self.inner.patch.transition else {
            return Some(ThreadPatchState::None);
        };
        Some(match t.side_of(ts.world) {
            Side::Patched => ThreadPatchState::Patched,
            Side::Unpatched => ThreadPatchState::Unpatched,
        })
    }

    /// Applied bundles (and the one in transition), oldest first.
    pub fn applied(&self) -> Vec<AppliedInfo> {
        let s = &*self.inner;
        let mut out = Vec::new();
        let mut keys: Vec<_> = s.patch.instances.keys().copied().collect();
        keys.sort();
        for i in keys {
            for b in &s.patch.instances[&i].applied {
                out.push(AppliedInfo {
                    id: b.id,
                    name: b.bundle.metadata().name.clone(),
                    bundle_id: patch_format::hex(&b.bundle.bundle_id().0),
                    instance: Instance {
                        store_id: s.id,
                        index: i,
                    },
                    functions: b.bundle.entries().iter().map(|e| e.name.clone()).collect(),
                    forced: b.forced,
                    in_transition: s.patch.transition.as_ref().is_some_and(|t| t.patch == b.id),
                    data: b.data.clone(),
                    compile_time: b.compile_time,
                    recompiled: b.dependents.iter().map(|d| d.0).collect(),
                    transfers: transfers(b, s.engine.config().frame_transfer),
                });
            }
        }
        out
    }

    /// The transcript of patch events so far.
    pub fn events(&self) -> &[Event] {
        self.inner.patch.events.events()
    }

    /// The transcript with each event's timestamp and sequence number, for
    /// logs and audit trails (a reader that remembers the last `seq` it saw
    /// finds the new events even after the oldest were dropped).
    pub fn timed_events(
        &self,
    ) -> impl DoubleEndedIterator<Item = TimedEvent<'_>> + ExactSizeIterator {
        self.inner.patch.events.timed()
    }

    /// Call `f` with every patch event from now on (apply, each thread
    /// switched, blocked, completion, revert, reverse, force, timeout), with
    /// its timestamp and sequence number, as it is recorded: a host need
    /// not poll [`Store::events`]. `f` runs inside the store's operations,
    /// so it gets the event only, not the store; one that panics is
    /// dropped. A second call replaces the first callback.
    pub fn on_patch_event(&mut self, f: impl FnMut(&TimedEvent<'_>) + Send + 'static) {
        self.inner.patch.events.listen(Box::new(f));
    }

    /// Which versions function `func` of `instance` has, which is live, and
    /// which are executing on some thread's stack now.
    pub fn function_versions(&self, instance: Instance, func: u32) -> Option<FunctionVersions> {
        let s = &*self.inner;
        let inst = s.instances.get(instance.index)?;
        let base_unit = inst.module.inner.compiled.unit.id();
        let v0 = VersionInfo {
            patch: None,
            unit: base_unit,
        };
        let mut history = vec![v0.clone()];
        let mut live = v0;
        if let Some(pi) = s.patch.instances.get(&instance.index) {
            for b in &pi.applied {
                if b.slots.iter().any(|(f, _)| *f == func) {
                    let v = VersionInfo {
                        patch: Some(b.id),
                        unit: b.compiled.unit.id(),
                    };
                    history.push(v.clone());
                    let settled = s.patch.transition.as_ref().is_none_or(|t| t.patch != b.id);
                    if settled {
                        live = v;
                    }
                }
            }
        }
        let mut on_stack: Vec<u32> = s
            .threads
            .values()
            .flat_map(|t| t.frames_any())
            .filter(|f| f.func == func && history.iter().any(|v| v.unit == f.unit))
            .map(|f| f.unit)
            .collect();
        on_stack.sort();
        on_stack.dedup();
        Some(FunctionVersions {
            func_index: func,
            history,
            live,
            on_stack,
        })
    }

    /// Look up a function index of `instance` by name.
    pub fn func_index(&self, instance: Instance, name: &str) -> Option<u32> {
        let inst = self.inner.instances.get(instance.index)?;
        let info = inst.module.info();
        (0..info.func_types.len() as u32).find(|&f| info.func_name(f) == name)
    }

    /// Shadow data of this store.
    pub fn shadow(&self) -> &super::Shadow {
        &self.inner.patch.shadow
    }

    /// Shadow data of this store, mutably.
    pub fn shadow_mut(&mut self) -> &mut super::Shadow {
        &mut self.inner.patch.shadow
    }

    /// Code units kept only because a stack may still execute them.
    pub fn reclaim_pending(&self) -> usize {
        self.inner.patch.zombies.len()
    }
}

/// What `b` moves at loop headers, by function index, under an engine
/// that compiled transfer polls (`polls`) or not.
fn transfers(b: &super::versions::AppliedBundle, polls: bool) -> Vec<super::TransferInfo> {
    let mut fs: Vec<_> = b.compiled.transfer.iter().collect();
    fs.sort_by_key(|(f, _)| **f);
    fs.into_iter()
        .map(|(&f, t)| super::TransferInfo {
            function: b
                .bundle
                .entries()
                .iter()
                .find(|e| matches!(e.kind, patch_format::EntryKind::Replace { target_index } if target_index == f))
                .map_or_else(|| format!("func {f}"), |e| e.name.clone()),
            no_way_back: t.back.as_ref().err().cloned(),
            never_moves: (!polls).then(|| super::NO_TRANSFER_POLLS.to_string()),
        })
        .collect()
}
