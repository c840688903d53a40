//! The executable reference model of the consistency rules
//! (`CONSISTENCY.md`), in plain Rust: no JIT, no fibers, no clocks.
//!
//! State: the applied bundles of each instance (versions, immediate flags,
//! added functions, forced flag, `sits_on`, states, callbacks), the
//! transition in progress (its *from* and *to* worlds, the check set `C`,
//! the immediate changes, reversed/forced, the bundle lists kept in each
//! direction), and every guest thread's frames and world.
//!
//! Given the operations of a sequence it says which version every call
//! must reach, which operations must be refused, when each transition
//! completes (no thread pending, at the next scheduler pass) and which
//! callbacks run. Where the rules leave a choice to the runtime (see
//! [`Expect::Either`]) the model follows what the runtime did.

use crate::guest::ADD_BASE;
use crate::ops::{Cmd, Spec, ADDS, INSTANCES, N};
use std::collections::{BTreeMap, BTreeSet};

/// A version: 0 is the original code, else the tag of the bundle.
pub type Ver = i32;

/// A function of an instance, as the model names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FuncId {
    /// The root function `run` (never patched).
    Root,
    /// `f{i}`.
    F(u8),
    /// `add{k}`.
    Add(u8),
    /// `$tf` (table only).
    Tf,
    /// `$h` (called by `$tf` only).
    H,
}

impl FuncId {
    /// The function id the guest records.
    pub fn code(self) -> i32 {
        match self {
            FuncId::Root => -1,
            FuncId::F(i) => i as i32,
            FuncId::Add(k) => ADD_BASE + k as i32,
            FuncId::Tf => crate::guest::TF,
            FuncId::H => crate::guest::H,
        }
    }
}

/// Which version each function maps to; an added function that is not
/// mapped is absent (a call to it traps).
pub type World = BTreeMap<FuncId, Ver>;

/// Why an operation must be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another transition is in progress.
    Busy,
    /// No transition is in progress.
    NoTransition,
    /// No applied bundle has this id.
    Unknown,
    /// Revert refused (forced, sat on, state needed).
    RevertRefused,
    /// The bundle does not fit (sits on a bundle that is not applied).
    Incompatible,
    /// A required state is missing.
    MissingState,
    /// The pre-patch callback vetoed.
    Vetoed,
    /// Refused, with whatever error the runtime chooses.
    Any,
}

/// What the model expects of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// It must succeed.
    Ok,
    /// It must be refused.
    Refused(Refusal),
    /// The rules allow both; the model follows the runtime.
    Either,
}

/// Direction of a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Apply.
    Patch,
    /// Revert.
    Unpatch,
    /// Cumulative replace.
    Replace,
}

/// A thread's patch state (`/proc/<pid>/patch_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchState {
    /// No transition.
    None,
    /// In the unpatched world.
    Unpatched,
    /// In the patched world.
    Patched,
}

/// A published bundle.
#[derive(Clone, Debug)]
pub struct BundleInfo {
    /// Its version number.
    pub tag: i32,
    /// Instance it patches.
    pub inst: u8,
    /// What it is.
    pub spec: Spec,
    /// Forced (never revertible).
    pub forced: bool,
}

/// A frame on a model thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Function.
    pub func: FuncId,
    /// Version running in this frame.
    pub ver: Ver,
}

/// A guest thread.
#[derive(Clone, Debug)]
pub struct Thread {
    /// Its instance.
    pub inst: u8,
    /// Frames, outermost first.
    pub frames: Vec<Frame>,
    /// Finished.
    pub done: bool,
    /// Finished by a trap (a call to a removed function).
    pub trapped: bool,
    /// The removed function whose call trapped it.
    pub trap: Option<FuncId>,
    /// In the *to* world of the transition in progress (meaningless
    /// outside one).
    pub in_to: bool,
    /// `(function, version)` of every call it made.
    pub records: Vec<(i32, i32)>,
}

/// The transition in progress.
#[derive(Clone, Debug)]
pub struct Transition {
    /// Instance.
    pub inst: u8,
    /// Patch id of the moving bundle.
    pub patch: u32,
    /// Its tag.
    pub tag: i32,
    /// Direction as started.
    pub dir: Dir,
    /// Worlds.
    pub from: World,
    /// Worlds.
    pub to: World,
    /// The check set `C`.
    pub check: BTreeSet<FuncId>,
    /// Immediate changes: (function, before, after).
    pub immediate: Vec<(FuncId, Option<Ver>, Option<Ver>)>,
    /// Bundles applied when it completes in its current direction.
    pub keep_forward: Vec<u32>,
    /// ... and in the other.
    pub keep_reversed: Vec<u32>,
    /// Reversed (an odd number of times).
    pub reversed: bool,
    /// Forced.
    pub forced: bool,
    /// Zero timeout.
    pub timeout0: bool,
}

/// The whole model.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Every thread ever spawned, in order.
    pub threads: Vec<Thread>,
    /// Applied patch ids per instance, oldest first.
    pub applied: Vec<Vec<u32>>,
    /// Every published bundle by patch id.
    pub bundles: BTreeMap<u32, BundleInfo>,
    /// Specs of published bundles by tag (frames may outlive the bundle).
    pub tags: BTreeMap<i32, Spec>,
    /// The settled world of each instance.
    pub live: Vec<World>,
    /// The transition in progress.
    pub transition: Option<Transition>,
    /// Last patch id handed out.
    pub next_id: u32,
    /// Callbacks run: (tag, kind index as in `guest::CB_KINDS`).
    pub callbacks: Vec<(i32, i32)>,
    /// Whether any transition completed.
    pub any_completed: bool,
    /// A frame of `f` in another instance of the same module, running the
    /// module's code, also blocks a transition that changes `f`: the runtime
    /// matches frames by code (a frame does not record its instance), and
    /// instances of one module share that code (docs/consistency.md,
    /// "Frame set"). `MODEL_SHARED_CODE_BLOCKS=0` models the stricter
    /// reading where a function belongs to one instance only.
    pub shared_code_blocks: bool,
}

const PRE_PATCH: i32 = 0;
const POST_PATCH: i32 = 1;
const PRE_UNPATCH: i32 = 2;
const POST_UNPATCH: i32 = 3;

fn base_world() -> World {
    (0..N)
        .map(FuncId::F)
        .chain([FuncId::Tf, FuncId::H])
        .map(|f| (f, 0))
        .collect()
}

impl Model {
    /// A store with `INSTANCES` unpatched instances and no thread.
    pub fn new() -> Model {
        Model {
            shared_code_blocks: std::env::var("MODEL_SHARED_CODE_BLOCKS").as_deref() != Ok("0"),
            applied: vec![Vec::new(); INSTANCES as usize],
            live: vec![base_world(); INSTANCES as usize],
            ..Default::default()
        }
    }

    /// Indices (into `threads`) of the live threads, in spawn order.
    pub fn live_threads(&self) -> Vec<usize> {
        (0..self.threads.len())
            .filter(|&i| !self.threads[i].done)
            .collect()
    }

    /// The live thread an operation's `thread` selector names.
    pub fn pick(&self, sel: u8) -> Option<usize> {
        let live = self.live_threads();
        (!live.is_empty()).then(|| live[sel as usize % live.len()])
    }

    /// The world of `inst` after `ids` (in order): each function maps to
    /// the newest version among them, else to v0 (added ones: unmapped).
    pub fn world_of(&self, inst: u8, ids: &[u32]) -> World {
        let _ = inst;
        let mut w = base_world();
        for id in ids {
            let b = &self.bundles[id];
            for i in 0..N {
                if b.spec.funcs & (1 << i) != 0 {
                    w.insert(FuncId::F(i), b.tag);
                }
            }
            for k in 0..ADDS {
                if b.spec.adds & (1 << k) != 0 {
                    w.insert(FuncId::Add(k), b.tag);
                }
            }
            if b.spec.sig {
                w.insert(FuncId::Tf, b.tag);
                w.insert(FuncId::H, b.tag);
            }
        }
        w
    }

    /// Number of pending threads.
    pub fn pending(&self) -> usize {
        if self.transition.is_none() {
            return 0;
        }
        self.threads.iter().filter(|t| !t.done && !t.in_to).count()
    }

    /// Thread `i`'s patch state.
    pub fn patch_state(&self, i: usize) -> PatchState {
        let Some(t) = &self.transition else {
            return PatchState::None;
        };
        let patched_side = matches!(
            (t.dir, t.reversed),
            (Dir::Patch | Dir::Replace, false) | (Dir::Unpatch, true)
        );
        if self.threads[i].in_to == patched_side {
            PatchState::Patched
        } else {
            PatchState::Unpatched
        }
    }

    fn clean(&self, i: usize) -> bool {
        let Some(t) = &self.transition else {
            return true;
        };
        let th = &self.threads[i];
        // Another instance's frames block only in the shared-code mode,
        // and then only those running the module's own code (v0): bundle
        // code belongs to one instance.
        !th.frames.iter().any(|f| {
            t.check.contains(&f.func)
                && (th.inst == t.inst || self.shared_code_blocks && f.ver == 0)
        })
    }

    /// A safe point of thread `i`: a pending thread whose frames hold no
    /// function of `C` switches (rules 1, 2).
    fn safe_point(&mut self, i: usize) {
        if self.transition.is_some()
            && !self.threads[i].done
            && !self.threads[i].in_to
            && self.clean(i)
        {
            self.threads[i].in_to = true;
        }
    }

    /// Check every pending thread (start and reverse of a transition).
    fn settle(&mut self) {
        for i in 0..self.threads.len() {
            self.safe_point(i);
        }
    }

    /// The world thread `i` calls through.
    fn world_for(&self, i: usize) -> &World {
        let th = &self.threads[i];
        match &self.transition {
            Some(t) if t.inst == th.inst => {
                if th.in_to {
                    &t.to
                } else {
                    &t.from
                }
            }
            _ => &self.live[th.inst as usize],
        }
    }

    fn knows(&self, frame: Frame, k: u8) -> bool {
        frame.func != FuncId::Root
            && frame.ver != 0
            && self
                .tags
                .get(&frame.ver)
                .is_some_and(|s| s.adds & (1 << k) != 0)
    }

    fn call(&mut self, i: usize, f: FuncId) {
        match self.world_for(i).get(&f).copied() {
            Some(ver) => {
                let th = &mut self.threads[i];
                th.frames.push(Frame { func: f, ver });
                th.records.push((f.code(), ver));
            }
            None => {
                // A call to a removed function traps; the thread unwinds.
                let th = &mut self.threads[i];
                th.done = true;
                th.trapped = true;
                th.trap = Some(f);
                th.frames.clear();
            }
        }
    }

    /// A new thread of `inst`, run until it parks (rule 3: it starts in
    /// *to*).
    pub fn spawn(&mut self, inst: u8) {
        self.threads.push(Thread {
            inst,
            frames: vec![Frame {
                func: FuncId::Root,
                ver: 0,
            }],
            done: false,
            trapped: false,
            trap: None,
            in_to: self.transition.is_some(),
            records: Vec::new(),
        });
        let i = self.threads.len() - 1;
        self.drive();
        self.safe_point(i);
        self.drive();
    }

    /// Thread `i` runs `cmds`, then parks.
    pub fn thread(&mut self, i: usize, cmds: &[Cmd]) {
        self.drive();
        for c in cmds {
            if self.threads[i].done {
                break;
            }
            match *c {
                Cmd::Call(j) | Cmd::Indirect(j) | Cmd::Host(j) => self.call(i, FuncId::F(j)),
                Cmd::Added(k) => {
                    let top = *self.threads[i]
                        .frames
                        .last()
                        .expect("live thread has frames");
                    if self.knows(top, k) {
                        self.call(i, FuncId::Add(k));
                    }
                }
                Cmd::Table => {
                    // Leaves: `$tf` calls `$h`, both return at once.
                    self.call(i, FuncId::Tf);
                    self.call(i, FuncId::H);
                    let frames = &mut self.threads[i].frames;
                    frames.truncate(frames.len() - 2);
                }
                Cmd::Ret => {
                    let th = &mut self.threads[i];
                    th.frames.pop();
                    if th.frames.is_empty() {
                        th.done = true;
                    }
                }
                Cmd::Yield | Cmd::Sleep => {
                    self.safe_point(i);
                    self.drive();
                }
            }
            // The next poll (function entry or loop header) or the park.
            self.safe_point(i);
        }
        self.safe_point(i);
        self.drive();
    }

    /// A scheduler pass: the timeout policy, then completion when no
    /// thread is pending (rule 7).
    pub fn drive(&mut self) {
        let Some(t) = &self.transition else { return };
        if t.timeout0 && !t.reversed && self.pending() > 0 {
            self.reverse_now();
        }
        if self.transition.is_some() && self.pending() == 0 {
            self.complete();
        }
    }

    fn complete(&mut self) {
        let t = self.transition.take().expect("in transition");
        let inst = t.inst as usize;
        self.applied[inst] = t.keep_forward.clone();
        let live = self.world_of(t.inst, &t.keep_forward);
        debug_assert_eq!(live, t.to, "model: the to world is the kept bundles' world");
        self.live[inst] = live;
        if t.forced && t.keep_forward.contains(&t.patch) {
            self.bundles.get_mut(&t.patch).expect("bundle").forced = true;
        }
        let kind = match (t.dir, t.reversed) {
            (Dir::Patch | Dir::Replace, false) | (Dir::Unpatch, true) => POST_PATCH,
            (Dir::Patch | Dir::Replace, true) | (Dir::Unpatch, false) => POST_UNPATCH,
        };
        self.callbacks.push((t.tag, kind));
        self.any_completed = true;
    }

    fn start(&mut self, mut t: Transition) {
        let moving = self.bundles[&t.patch].clone();
        let mut imm = BTreeSet::new();
        for i in 0..N {
            let entry = moving.spec.funcs & (1 << i) != 0;
            if entry && (moving.spec.all_immediate || moving.spec.immediate & (1 << i) != 0) {
                imm.insert(FuncId::F(i));
            }
        }
        // Added functions exist in both worlds from the start (rule 6); a
        // revert removes them under the switch rule unless the whole
        // bundle was applied immediate. A function added again while an
        // earlier bundle's version of it is live has an older version: it
        // is a replacement, switched per thread like any other.
        if t.dir != Dir::Unpatch || moving.spec.all_immediate {
            for k in 0..ADDS {
                let fresh = !t.from.contains_key(&FuncId::Add(k));
                if moving.spec.adds & (1 << k) != 0 && (fresh || moving.spec.all_immediate) {
                    imm.insert(FuncId::Add(k));
                }
            }
        }
        let keys: BTreeSet<FuncId> = t.from.keys().chain(t.to.keys()).copied().collect();
        for f in keys {
            let (a, b) = (t.from.get(&f).copied(), t.to.get(&f).copied());
            if a == b {
                continue;
            }
            if imm.contains(&f) {
                t.immediate.push((f, a, b));
            } else {
                t.check.insert(f);
            }
        }
        for &(f, _, b) in &t.immediate {
            set(&mut t.from, f, b);
        }
        self.transition = Some(t);
        for th in &mut self.threads {
            th.in_to = false;
        }
        self.settle();
    }

    /// What `apply` of `spec` (as bundle `tag`) on `inst` must do.
    pub fn check_apply(&self, inst: u8, spec: &Spec) -> Expect {
        if self.transition.is_some() {
            return Expect::Refused(Refusal::Busy);
        }
        let applied = &self.applied[inst as usize];
        if let Some(on) = spec.sits_on {
            if !applied.contains(&on) {
                return Expect::Refused(Refusal::Incompatible);
            }
        }
        if let Some((id, version)) = spec.requires {
            let met = applied.iter().any(|b| {
                self.bundles[b]
                    .spec
                    .state
                    .is_some_and(|(i, v)| i == id && v >= version)
            });
            if !met {
                return Expect::Refused(Refusal::MissingState);
            }
        }
        // A function whose type changes is never immediate (rule 4).
        if spec.sig && spec.all_immediate {
            return Expect::Refused(Refusal::Incompatible);
        }
        // Added functions: each gets the next index after the module's
        // functions, in order; two different functions at one index are
        // never both live (issue 11, item 5).
        let mut either = false;
        let mine = crate::guest::added(spec);
        for (id, b) in self.bundles.iter().filter(|(_, b)| b.inst == inst) {
            let theirs = crate::guest::added(&b.spec);
            for (slot, k) in mine.iter().enumerate() {
                let Some(other) = theirs.get(slot) else {
                    continue;
                };
                let is_applied = applied.contains(id);
                match (other == k, is_applied) {
                    (false, true) => return Expect::Refused(Refusal::Any),
                    (true, true) | (false, false) => either = true,
                    (true, false) => {}
                }
            }
        }
        // A pre-patch callback that calls a function its own bundle adds:
        // the call works, or the bundle is refused before anything runs
        // (issue 11 item 7).
        if either || (spec.cb_calls_added && spec.adds != 0) {
            return Expect::Either;
        }
        if spec.veto {
            return Expect::Refused(Refusal::Vetoed);
        }
        Expect::Ok
    }

    /// Apply `spec` as bundle `tag` on `inst`, given what the runtime did
    /// (`runtime`: `None` when it accepted, else its refusal), which
    /// decides an [`Expect::Either`]. Returns the expectation.
    pub fn apply(&mut self, inst: u8, tag: i32, spec: &Spec, runtime: Option<Refusal>) -> Expect {
        let e = self.check_apply(inst, spec);
        let go = match e {
            Expect::Ok => true,
            Expect::Refused(Refusal::Vetoed) => {
                self.callbacks.push((tag, PRE_PATCH));
                false
            }
            Expect::Refused(_) => false,
            Expect::Either => {
                let passed = matches!(runtime, None | Some(Refusal::Vetoed));
                if passed && (spec.veto || runtime.is_some()) {
                    // The runtime let the added functions through and ran
                    // the pre-patch callback; its veto (or its trap on
                    // the unpublished added function, which the runtime
                    // undoes like a veto) refuses.
                    self.callbacks.push((tag, PRE_PATCH));
                    return Expect::Refused(Refusal::Vetoed);
                }
                runtime.is_none()
            }
        };
        if !go {
            return e;
        }
        self.callbacks.push((tag, PRE_PATCH));
        self.next_id += 1;
        let id = self.next_id;
        self.bundles.insert(
            id,
            BundleInfo {
                tag,
                inst,
                spec: spec.clone(),
                forced: false,
            },
        );
        self.tags.insert(tag, spec.clone());
        let before = self.applied[inst as usize].clone();
        let after: Vec<u32> = if spec.replace {
            vec![id]
        } else {
            before.iter().copied().chain([id]).collect()
        };
        let t = Transition {
            inst,
            patch: id,
            tag,
            dir: if spec.replace {
                Dir::Replace
            } else {
                Dir::Patch
            },
            from: self.live[inst as usize].clone(),
            to: self.world_of(inst, &after),
            check: BTreeSet::new(),
            immediate: Vec::new(),
            keep_forward: after,
            keep_reversed: before,
            reversed: false,
            forced: false,
            timeout0: spec.timeout0,
        };
        self.start(t);
        e
    }

    /// Revert patch `id` (rule 11).
    pub fn revert(&mut self, id: u32, timeout0: bool) -> Expect {
        if self.transition.is_some() {
            return Expect::Refused(Refusal::Busy);
        }
        let Some(inst) = (0..INSTANCES).find(|&i| self.applied[i as usize].contains(&id)) else {
            return Expect::Refused(Refusal::Unknown);
        };
        let b = self.bundles[&id].clone();
        if b.forced {
            return Expect::Refused(Refusal::RevertRefused);
        }
        let applied = self.applied[inst as usize].clone();
        let others: Vec<u32> = applied.iter().copied().filter(|&o| o != id).collect();
        for &o in &others {
            let ob = &self.bundles[&o];
            if ob.spec.sits_on == Some(id) {
                return Expect::Refused(Refusal::RevertRefused);
            }
            if let Some((sid, sv)) = ob.spec.requires {
                let met = others.iter().any(|p| {
                    self.bundles[p]
                        .spec
                        .state
                        .is_some_and(|(i, v)| i == sid && v >= sv)
                });
                if !met {
                    return Expect::Refused(Refusal::RevertRefused);
                }
            }
        }
        self.callbacks.push((b.tag, PRE_UNPATCH));
        let t = Transition {
            inst,
            patch: id,
            tag: b.tag,
            dir: Dir::Unpatch,
            from: self.live[inst as usize].clone(),
            to: self.world_of(inst, &others),
            check: BTreeSet::new(),
            immediate: Vec::new(),
            keep_forward: others,
            keep_reversed: applied,
            reversed: false,
            forced: false,
            timeout0,
        };
        self.start(t);
        Expect::Ok
    }

    fn reverse_now(&mut self) {
        let t = self.transition.as_mut().expect("in transition");
        std::mem::swap(&mut t.from, &mut t.to);
        std::mem::swap(&mut t.keep_forward, &mut t.keep_reversed);
        t.reversed = !t.reversed;
        for e in t.immediate.iter_mut() {
            std::mem::swap(&mut e.1, &mut e.2);
        }
        for &(f, _, after) in &t.immediate.clone() {
            set(&mut t.from, f, after);
            set(&mut t.to, f, after);
        }
        for th in &mut self.threads {
            th.in_to = !th.in_to;
        }
        self.settle();
    }

    /// Reverse (rule 8); refused for a forced transition (rule 9).
    pub fn reverse(&mut self) -> Expect {
        match &self.transition {
            None => Expect::Refused(Refusal::NoTransition),
            Some(t) if t.forced => Expect::Refused(Refusal::Any),
            Some(_) => {
                self.reverse_now();
                Expect::Ok
            }
        }
    }

    /// Force (rule 9).
    pub fn force(&mut self) -> Expect {
        let Some(t) = &mut self.transition else {
            return Expect::Refused(Refusal::NoTransition);
        };
        t.forced = true;
        for th in &mut self.threads {
            th.in_to = true;
        }
        Expect::Ok
    }

    /// `wait_transition`: completes when nothing is pending; otherwise it
    /// stalls (every thread is parked waiting for a command).
    pub fn wait(&mut self) -> Expect {
        if self.transition.is_none() {
            return if self.any_completed {
                Expect::Ok
            } else {
                Expect::Refused(Refusal::Any)
            };
        }
        self.drive();
        if self.transition.is_none() {
            Expect::Ok
        } else {
            Expect::Refused(Refusal::Any)
        }
    }

    /// Applied patch ids and forced flags of every instance.
    /// The bundle in transition is listed from its apply until the
    /// transition completes (as `Store::applied` lists it).
    pub fn applied_list(&self) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        for (i, ids) in self.applied.iter().enumerate() {
            let mut ids = ids.clone();
            if let Some(t) = &self.transition {
                if t.inst as usize == i && t.dir != Dir::Unpatch {
                    ids.push(t.patch);
                }
            }
            out.extend(ids.iter().map(|id| (*id, self.bundles[id].forced)));
        }
        out
    }
}

fn set(w: &mut World, f: FuncId, v: Option<Ver>) {
    match v {
        Some(v) => {
            w.insert(f, v);
        }
        None => {
            w.remove(&f);
        }
    }
}

impl Model {
    /// A bundle that changes the type of a function in a table: refused
    /// (issue 11 item 10), or busy during a transition.
    pub fn sig_table(&self) -> Expect {
        if self.transition.is_some() {
            Expect::Refused(Refusal::Busy)
        } else {
            Expect::Refused(Refusal::Any)
        }
    }
}
