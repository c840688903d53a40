//! Hot patching: applying and reverting bundles on a running instance, with
//! per-thread consistency (see `docs/consistency.md` for the rules this
//! implements and the names of the events).
//!
//! Entry points (all on [`Store`](crate::Store)): `apply`, `revert`,
//! `reverse`, `force`, `transition_status`, `wait_transition`,
//! `thread_patch_state`, `function_versions`, `applied`, `events`, and the
//! shadow-data accessors. The per-thread state machine is in
//! `transition.rs`, version history and worlds in `versions.rs`.

pub(crate) mod callbacks;
pub(crate) mod checks;
pub(crate) mod data;
pub(crate) mod queries;
pub(crate) mod shadow;
pub(crate) mod state;
pub(crate) mod transfer;
pub(crate) mod transition;
pub(crate) mod verbs;
pub(crate) mod versions;

use crate::errors::{Error, FrameInfo};
use crate::thread::ThreadId;
use crate::vm::code_memory::CodeUnit;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use data::DataPlacement;
pub use shadow::Shadow;
use versions::PatchedInstance;

/// Id of an applied bundle in a store (1, 2, …; never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatchId(pub u32);

impl std::fmt::Display for PatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "patch {}", self.0)
    }
}

/// Errors of patching. A refused operation changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// Another transition is in progress (docs/consistency.md rule 10).
    #[error("busy: {0} is in transition; wait for it, reverse it or force it")]
    Busy(PatchId),
    /// No transition is in progress.
    #[error("no transition in progress")]
    NoTransition,
    /// The bundle's bytes are malformed or its signature is missing or bad.
    #[error("bundle rejected: {0}")]
    Format(#[from] patch_format::FormatError),
    /// The bundle was made for another module.
    #[error("bundle targets module {expected}, but this instance runs module {actual}")]
    WrongTarget {
        /// Hash in the bundle.
        expected: String,
        /// Hash of the instance's module.
        actual: String,
    },
    /// The bundle does not fit the target (types, imports, flags, stacking).
    #[error("bundle does not fit its target: {0}")]
    Incompatible(String),
    /// A required state is not provided by the applied bundles.
    #[error("bundle requires state {0}, which no applied bundle provides")]
    MissingState(patch_format::StateVersion),
    /// The pre-patch callback vetoed the apply.
    #[error("pre-patch callback vetoed the bundle: {0}")]
    Vetoed(String),
    /// Compiling the bundle failed.
    #[error("bundle does not compile: {0}")]
    Compile(Error),
    /// Unknown patch id.
    #[error("no applied bundle {0}")]
    Unknown(PatchId),
    /// Revert refused.
    #[error("cannot revert {0}: {1}")]
    RevertRefused(PatchId, String),
    /// A bundle with the same bundle id is applied already (to this
    /// instance): applying it again would stack a copy of itself.
    #[error("bundle {bundle_id} is already applied as {patch}")]
    AlreadyApplied {
        /// The applied copy.
        patch: PatchId,
        /// The bundle id (hex).
        bundle_id: String,
    },
    /// The transition in progress was forced: it can only complete.
    #[error("{0} was forced: its transition can no longer be reversed")]
    Forced(PatchId),
    /// An immediate function is inlined into a function that a thread is
    /// executing: that activation would go on running the old inlined body
    /// after the transition starts, against rule 4 (docs/consistency.md,
    /// rule 18).
    #[error(
        "immediate function {func} is inlined into {caller}, which {thread} is executing: \
         apply refused (rule 4); apply again once it has left {caller}, or not immediate"
    )]
    InlinedOnStack {
        /// The immediate function.
        func: String,
        /// The function that inlined it.
        caller: String,
        /// A thread with a frame of `caller`'s original code.
        thread: ThreadId,
    },
    /// Called from inside a guest thread.
    #[error("patch operations must be made from the host, not from a guest thread")]
    FromGuest,
}

/// How to apply a bundle.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Demand a signature by one of these keys before anything else.
    pub trusted_keys: Option<patch_format::TrustedKeys>,
    /// Treat every function of the bundle as immediate.
    pub immediate: bool,
    /// Reverse automatically when the transition is not complete by then.
    pub timeout: Option<Duration>,
}

/// Direction of a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Applying a bundle.
    Patch,
    /// Reverting a bundle (or a reversed apply).
    Unpatch,
    /// Applying a cumulative `replace` bundle.
    Replace,
}

/// A thread that blocks the transition.
#[derive(Clone, Debug)]
pub struct Blocker {
    /// The thread.
    pub thread: ThreadId,
    /// Its wasm backtrace, innermost first.
    pub backtrace: Vec<FrameInfo>,
    /// The innermost frame whose function is in the check set.
    pub frame: FrameInfo,
    /// Whether that frame waits in a loop of its function, and whether a
    /// transfer map moves it or would (`docs/transfer.md`), as it stood
    /// when the blocker was taken: kept for the blockers of a transition
    /// that timed out, when [`crate::Store::loop_block`] can no longer
    /// answer.
    pub in_loop: Option<transfer::LoopBlock>,
}

/// Where a transition stands in its lifecycle (`docs/consistency.md`, "The
/// lifecycle of a transition").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitionPhase {
    /// Some threads are pending.
    Switching,
    /// No thread is pending; the completion runs at the scheduler's next turn.
    Switched,
    /// Forced: no thread is pending, and it can no longer be reversed.
    Forced,
}

impl TransitionPhase {
    /// `switching`, `switched` or `forced`.
    pub fn name(self) -> &'static str {
        match self {
            TransitionPhase::Switching => "switching",
            TransitionPhase::Switched => "switched",
            TransitionPhase::Forced => "forced",
        }
    }
}

/// What a transition looks like now.
#[derive(Clone, Debug)]
pub struct TransitionStatus {
    /// The bundle.
    pub patch: PatchId,
    /// Patch, unpatch or replace.
    pub direction: Direction,
    /// Threads still in the old world.
    pub pending: usize,
    /// Threads already in the new world.
    pub switched: usize,
    /// Time since the transition started.
    pub elapsed: Duration,
    /// Whether it has been reversed (it now leads back).
    pub reversed: bool,
    /// Where it stands.
    pub phase: TransitionPhase,
    /// Pending threads whose stacks hold a function of the check set.
    pub blockers: Vec<Blocker>,
}

/// How a transition ended.
#[derive(Clone, Debug)]
pub struct TransitionOutcome {
    /// The bundle.
    pub patch: PatchId,
    /// Direction of the transition as started.
    pub direction: Direction,
    /// Whether it was reversed (by request or by the timeout policy).
    pub reversed: bool,
    /// Whether it was forced.
    pub forced: bool,
    /// From its start (after compile and pre-patch) until the last thread
    /// switched; the completion's callbacks and bookkeeping come after.
    pub elapsed: Duration,
    /// When reversed by the timeout policy: the blockers at that moment.
    pub blockers: Vec<Blocker>,
}

/// A thread's patch state, as `/proc/<pid>/patch_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadPatchState {
    /// No transition is running (-1).
    None,
    /// The thread runs the unpatched world (0).
    Unpatched,
    /// The thread runs the patched world (1).
    Patched,
}

impl ThreadPatchState {
    /// -1, 0 or 1.
    pub fn as_i32(self) -> i32 {
        match self {
            ThreadPatchState::None => -1,
            ThreadPatchState::Unpatched => 0,
            ThreadPatchState::Patched => 1,
        }
    }
}

/// One event of the transcript. `Display` gives the stable wording used in
/// logs, the CLI and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A transition started.
    Started(PatchId, Direction),
    /// A thread switched world.
    ThreadSwitched(PatchId, ThreadId),
    /// A thread was found blocked by a function of the check set.
    BlockedBy(PatchId, ThreadId, String),
    /// The transition was reversed.
    Reversed(PatchId),
    /// The transition was forced.
    Forced(PatchId),
    /// The transition completed.
    Completed(PatchId, Direction),
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = |d: &Direction| match d {
            Direction::Patch => "patch",
            Direction::Unpatch => "unpatch",
            Direction::Replace => "replace",
        };
        match self {
            Event::Started(p, d) => write!(f, "{p}: started {}", dir(d)),
            Event::ThreadSwitched(p, t) => write!(f, "{p}: {t} switched"),
            Event::BlockedBy(p, t, func) => write!(f, "{p}: {t} blocked by {func}"),
            Event::Reversed(p) => write!(f, "{p}: reversed"),
            Event::Forced(p) => write!(f, "{p}: forced"),
            Event::Completed(p, d) => write!(f, "{p}: completed {}", dir(d)),
        }
    }
}

/// One event of the transcript with its timestamp (wall clock, taken when
/// the event was recorded) and its sequence number (0 for the first event
/// of the store, never reused: the transcript drops its oldest events past
/// its bound, and the numbers tell a reader what it has already seen).
#[derive(Clone, Copy, Debug)]
pub struct TimedEvent<'a> {
    /// Position in the store's whole transcript.
    pub seq: u64,
    /// When the event was recorded.
    pub time: std::time::SystemTime,
    /// The event.
    pub event: &'a Event,
}

/// The transcript: events and, in step, their timestamps.
#[derive(Default)]
pub(crate) struct EventLog {
    events: Vec<Event>,
    times: Vec<std::time::SystemTime>,
    /// Events dropped from the front so far (the first kept one's `seq`).
    dropped: u64,
    /// The host's callback for each new event (`Store::on_patch_event`).
    listener: Option<Box<EventListener>>,
}

/// A host callback for patch events.
pub(crate) type EventListener = dyn FnMut(&TimedEvent<'_>) + Send;

impl EventLog {
    /// Records `e` now.
    pub(crate) fn push(&mut self, e: Event) {
        let time = std::time::SystemTime::now();
        self.times.push(time);
        self.events.push(e);
        if let Some(f) = self.listener.as_mut() {
            let t = TimedEvent {
                seq: self.dropped + self.events.len() as u64 - 1,
                time,
                event: self.events.last().expect("just pushed"),
            };
            // Events are recorded from JIT callouts too (a thread switched
            // at a poll): a panicking callback must not unwind through
            // them. It is dropped instead.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&t))).is_ok();
            if !ok {
                self.listener = None;
            }
        }
    }

    /// Call `f` for every event recorded from now on.
    pub(crate) fn listen(&mut self, f: Box<EventListener>) {
        self.listener = Some(f);
    }

    /// Events kept.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Drops the oldest events, up to `range.end`.
    pub(crate) fn drain(&mut self, range: std::ops::RangeTo<usize>) {
        self.events.drain(range);
        self.times.drain(range);
        self.dropped += range.end as u64;
    }

    /// The events kept, oldest first.
    pub(crate) fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events kept with their timestamps and sequence numbers.
    pub(crate) fn timed(
        &self,
    ) -> impl DoubleEndedIterator<Item = TimedEvent<'_>> + ExactSizeIterator {
        let first = self.dropped;
        self.events
            .iter()
            .zip(&self.times)
            .enumerate()
            .map(move |(i, (event, time))| TimedEvent {
                seq: first + i as u64,
                time: *time,
                event,
            })
    }
}

/// An applied bundle, as listed.
#[derive(Clone, Debug)]
pub struct AppliedInfo {
    /// Its id.
    pub id: PatchId,
    /// The bundle's name.
    pub name: String,
    /// Bundle id (hex SHA-256).
    pub bundle_id: String,
    /// Instance it patches.
    pub instance: crate::Instance,
    /// Functions it replaces or adds.
    pub functions: Vec<String>,
    /// Forced (can never be reverted).
    pub forced: bool,
    /// Whether a transition for it is still in progress.
    pub in_transition: bool,
    /// Where its data objects and new table entries are, if it has any.
    pub data: Option<DataPlacement>,
    /// How long compiling its code took at apply (Cranelift and placing
    /// the code; not the checks, the data or the callbacks).
    pub compile_time: std::time::Duration,
    /// Functions of the module recompiled with the bundle because their
    /// original code inlined a function it changes (docs/consistency.md
    /// rule 18), by index.
    pub recompiled: Vec<u32>,
    /// The functions whose live frames it moves at loop headers
    /// (`docs/transfer.md`), by function index.
    pub transfers: Vec<TransferInfo>,
}

/// A function whose frames an applied bundle moves to its version at a loop
/// header, and whether they can move back (`docs/transfer.md`, "Maps
/// back").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferInfo {
    /// The function (the bundle entry's name).
    pub function: String,
    /// `None` when a revert (or a reverse) moves its frames back to the
    /// target's own code; else why it cannot, in which case a revert waits
    /// for every thread living in that loop.
    pub no_way_back: Option<String>,
    /// `Some(why)` when no frame moves at all under this engine: it
    /// compiled no transfer polls ([`crate::Config::frame_transfer`] is
    /// off), so the map is carried but unused and threads living in the
    /// loop block the transition as without one.
    pub never_moves: Option<String>,
}

/// Why a bundle's transfer maps move nothing under an engine without
/// transfer polls ([`TransferInfo::never_moves`], [`transfer::LoopBlock`]).
pub(crate) const NO_TRANSFER_POLLS: &str = "this runtime compiled no transfer polls \
     (Config::frame_transfer is off; `wasm-patch run --frame-transfer`), so no frame moves";

/// One version of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// `None` for the original code, else the bundle.
    pub patch: Option<PatchId>,
    /// The code unit (what backtraces show as `unit`).
    pub unit: u32,
}

/// What a host can learn about one function.
#[derive(Clone, Debug)]
pub struct FunctionVersions {
    /// Function index.
    pub func_index: u32,
    /// Versions, oldest first (v0 first).
    pub history: Vec<VersionInfo>,
    /// The live version (the newest still applied).
    pub live: VersionInfo,
    /// Code units of this function that some thread is executing now.
    pub on_stack: Vec<u32>,
}

/// Store-wide patch state (non-generic so that runtime calls reach it).
#[derive(Default)]
pub(crate) struct Core {
    pub(crate) instances: HashMap<usize, PatchedInstance>,
    pub(crate) transition: Option<transition::Transition>,
    /// The settled world (`VMThread.world` value: 0 or `WORLD_STRIDE`).
    pub(crate) world: u64,
    pub(crate) next_id: u32,
    pub(crate) events: EventLog,
    pub(crate) shadow: Shadow,
    /// Code no world maps any more but that might still run on a stack.
    pub(crate) zombies: Vec<Arc<CodeUnit>>,
    /// Outcome of the last finished transition.
    pub(crate) last_outcome: Option<TransitionOutcome>,
    /// Per instance: unused tails `[start, end)` of pages grown for bundle
    /// data, filled first by later bundles (`data.rs`).
    pub(crate) data_spare: HashMap<usize, Vec<(u64, u64)>>,
}

impl Core {
    /// Whether a transition has no pending thread left and its completion
    /// (callbacks, bookkeeping, reclaim) is due on the host side.
    pub(crate) fn completion_due(&self) -> bool {
        self.transition
            .as_ref()
            .is_some_and(|t| t.phase.completion_due())
    }

    /// Whether thread `id` is pending in the transition in progress.
    pub(crate) fn is_pending(&self, id: u32) -> bool {
        self.transition
            .as_ref()
            .is_some_and(|t| t.pending.contains(id))
    }
}
