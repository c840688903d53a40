//! The operations a sequence is made of, and the proptest strategies that
//! generate them.
//!
//! Every type here derives `Debug` so that a shrunk counterexample prints
//! as a Rust expression: with `use crate::ops::{Cmd::*, Op::*, Spec}` in
//! scope, the printed list pastes straight into `replay(&[...])`.

use proptest::prelude::*;

/// Number of patchable functions `f0..f{N-1}` in the guest module.
pub const N: u8 = 3;
/// Number of functions a bundle may add (`add0`, `add1`).
pub const ADDS: u8 = 2;
/// Number of instances of the guest module in each store.
pub const INSTANCES: u8 = 2;

/// One step of a guest thread, delivered through the `cmd` host import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// The current frame calls `f{j}` directly.
    Call(u8),
    /// The current frame calls `f{j}` through its table (`call_indirect`).
    Indirect(u8),
    /// The current frame calls the host, which calls the export `f{j}` of
    /// the same instance on the same thread.
    Host(u8),
    /// The current frame calls `add{k}`, when its version knows it (a
    /// version of the bundle that added it); otherwise nothing happens.
    Added(u8),
    /// The current frame calls the table-only function `$tf` through the
    /// table; `$tf` calls `$h` and both return.
    Table,
    /// The current frame returns (at the root frame the thread finishes).
    Ret,
    /// Yield inside the host call (a safe point with the same frames).
    Yield,
    /// Sleep for zero time inside the host call (a safe point).
    Sleep,
}

/// What a bundle changes and carries. Bundle `tag` (its operation's
/// position in the sequence, from 1) is the version number its functions
/// record.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Spec {
    /// Bit `i`: the bundle replaces `f{i}` (never 0).
    pub funcs: u8,
    /// Bit `i`: `f{i}` is marked immediate in the bundle (subset of `funcs`).
    pub immediate: u8,
    /// Apply with `ApplyOptions::immediate` (every function immediate).
    pub all_immediate: bool,
    /// Bit `k`: the bundle adds `add{k}`; its replaced functions and added
    /// functions can call it.
    pub adds: u8,
    /// A cumulative replace bundle.
    pub replace: bool,
    /// Sits on the bundle applied as this patch id (a bundle id that was
    /// never applied when there is none).
    pub sits_on: Option<u32>,
    /// Provides this state (id, version).
    pub state: Option<(u32, u32)>,
    /// Requires this state (id, version).
    pub requires: Option<(u32, u32)>,
    /// The pre-patch callback vetoes.
    pub veto: bool,
    /// The post-patch callback sleeps.
    pub post_sleep: bool,
    /// The pre-patch callback calls the first function the bundle adds
    /// (issue 11 item 7); the post-patch callback calls it too.
    pub cb_calls_added: bool,
    /// The bundle replaces `$tf` and `$h`, changing `$h`'s signature (its
    /// only caller, `$tf`, is in the bundle: a legal change).
    pub sig: bool,
    /// Apply with a zero timeout: reversed at the first scheduler pass
    /// that finds a thread pending.
    pub timeout0: bool,
}

/// One operation of a sequence. Threads are named by their position among
/// the live threads of the sequence (modulo their number; nothing happens
/// when there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Spawn a thread running the root function of instance `inst`.
    Spawn { inst: u8 },
    /// Deliver commands to a thread and run the scheduler until every
    /// thread is parked again.
    Thread { thread: u8, cmds: Vec<Cmd> },
    /// Apply a bundle to instance `inst`.
    Apply { inst: u8, spec: Spec },
    /// Apply a crafted bundle changing the type of `$tf`, which is in the
    /// table: always refused.
    SigTable { inst: u8 },
    /// Revert patch `id`, optionally with a zero timeout.
    Revert { id: u32, timeout0: bool },
    /// Reverse the transition in progress.
    Reverse,
    /// Force the transition in progress.
    Force,
    /// One scheduler pass with no thread to run (`run_steps(0)`).
    Drive,
    /// `wait_transition`.
    Wait,
}

impl Op {
    /// The kind name used by `MODEL_SKIP`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Spawn { .. } => "spawn",
            Op::Thread { cmds, .. } => {
                if cmds.iter().any(|c| matches!(c, Cmd::Host(_))) {
                    "hostcall"
                } else {
                    "thread"
                }
            }
            Op::Apply { spec, .. } => {
                if spec.adds != 0 {
                    "adds"
                } else if spec.replace {
                    "replace"
                } else {
                    "apply"
                }
            }
            Op::SigTable { .. } => "sig_table",
            Op::Revert { .. } => "revert",
            Op::Reverse => "reverse",
            Op::Force => "force",
            Op::Drive => "drive",
            Op::Wait => "wait",
        }
    }
}

/// Operation kinds excluded by `MODEL_SKIP` (comma-separated kind names,
/// see [`Op::kind`]; also `timeout` for zero timeouts and `instances` for
/// the second instance). Off by default.
pub fn skipped() -> Vec<String> {
    std::env::var("MODEL_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        6 => (0..N).prop_map(Cmd::Call),
        2 => (0..N).prop_map(Cmd::Indirect),
        2 => (0..N).prop_map(Cmd::Host),
        3 => (0..ADDS).prop_map(Cmd::Added),
        2 => Just(Cmd::Table),
        6 => Just(Cmd::Ret),
        1 => Just(Cmd::Yield),
        1 => Just(Cmd::Sleep),
    ]
}

fn state() -> impl Strategy<Value = Option<(u32, u32)>> {
    prop_oneof![4 => Just(None), 1 => (1..3u32, 1..3u32).prop_map(Some)]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (1..(1u8 << N), any::<u8>(), prop::bool::weighted(0.1)),
        prop_oneof![3 => Just(0u8), 1 => 1..(1u8 << ADDS)],
        prop::bool::weighted(0.15),
        prop_oneof![4 => Just(None), 1 => (1..6u32).prop_map(Some)],
        (state(), state()),
        (
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.4),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.15),
        ),
    )
        .prop_map(
            |(
                (funcs, imm, all_immediate),
                adds,
                replace,
                sits_on,
                (st, req),
                (veto, ps, t0, ca, sig),
            )| {
                Spec {
                    funcs,
                    // Mostly per-thread bundles, some mixed.
                    immediate: if imm & 0xc0 == 0 { funcs & imm } else { 0 },
                    all_immediate,
                    adds,
                    replace,
                    sits_on,
                    state: st,
                    requires: req,
                    veto,
                    post_sleep: ps,
                    cb_calls_added: ca && adds != 0,
                    sig,
                    timeout0: t0,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..INSTANCES).prop_map(|inst| Op::Spawn { inst }),
        10 => (any::<u8>(), prop::collection::vec(cmd(), 1..5))
            .prop_map(|(thread, cmds)| Op::Thread { thread, cmds }),
        1 => (any::<u8>(), 0..N, 8..40usize).prop_map(|(thread, f, n)| Op::Thread {
            thread,
            cmds: (0..n as u8).map(|i| Cmd::Call((f + i) % N)).collect(),
        }),
        4 => (0..INSTANCES, spec()).prop_map(|(inst, spec)| Op::Apply { inst, spec }),
        1 => (0..INSTANCES).prop_map(|inst| Op::SigTable { inst }),
        3 => (1..8u32, prop::bool::weighted(0.1))
            .prop_map(|(id, timeout0)| Op::Revert { id, timeout0 }),
        2 => Just(Op::Reverse),
        1 => Just(Op::Force),
        3 => Just(Op::Drive),
        1 => Just(Op::Wait),
    ]
}

/// Whether `op` survives the `MODEL_SKIP` list.
fn allowed(op: &Op, skip: &[String]) -> bool {
    if skip.iter().any(|s| s == op.kind()) {
        return false;
    }
    match op {
        Op::Apply { inst, spec } => {
            !(skip.iter().any(|s| s == "timeout") && spec.timeout0
                || skip.iter().any(|s| s == "instances") && *inst != 0)
        }
        Op::Revert { timeout0, .. } => !(skip.iter().any(|s| s == "timeout") && *timeout0),
        Op::Spawn { inst } | Op::SigTable { inst } => {
            !(skip.iter().any(|s| s == "instances") && *inst != 0)
        }
        _ => true,
    }
}

/// Drop the operation patterns `MODEL_SKIP` names: `double_reverse` (a
/// second reverse with no scheduler pass since the first), `force_reverse`
/// (any reverse after a force), `add_conflict` (every bundle that adds
/// functions adds all of them, so no two add different functions at one
/// index), `reverse_adds` (any reverse after a bundle that adds
/// functions), `cb_added` (no callback calls an added function).
fn sanitize(ops: Vec<Op>, skip: &[String]) -> Vec<Op> {
    let double = skip.iter().any(|s| s == "double_reverse");
    let after_force = skip.iter().any(|s| s == "force_reverse");
    let add_conflict = skip.iter().any(|s| s == "add_conflict");
    let reverse_adds = skip.iter().any(|s| s == "reverse_adds");
    let cb_added = skip.iter().any(|s| s == "cb_added");
    let mut added = false;
    let mut out = Vec::with_capacity(ops.len());
    let (mut reversed, mut forced) = (false, false);
    for op in ops {
        let op = match op {
            Op::Apply { inst, mut spec } if add_conflict || cb_added => {
                if add_conflict && spec.adds != 0 {
                    spec.adds = (1 << ADDS) - 1;
                }
                if cb_added {
                    spec.cb_calls_added = false;
                }
                Op::Apply { inst, spec }
            }
            op => op,
        };
        match op {
            Op::Reverse
                if (double && reversed) || (after_force && forced) || (reverse_adds && added) =>
            {
                continue
            }
            Op::Reverse => reversed = true,
            Op::Force => forced = true,
            Op::Apply { ref spec, .. } if spec.adds != 0 => added = true,
            Op::Spawn { .. } | Op::Thread { .. } | Op::Drive | Op::Wait => reversed = false,
            _ => {}
        }
        out.push(op);
    }
    out
}

/// A random sequence of up to `max_len` operations (shrinks towards fewer
/// and simpler operations).
pub fn sequence(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let skip = skipped();
    let skip2 = skip.clone();
    prop::collection::vec(
        op().prop_filter("excluded by MODEL_SKIP", move |o| allowed(o, &skip)),
        1..max_len,
    )
    .prop_map(move |v| sanitize(v, &skip2))
}

/// Prints only the fields that differ from the default, as a Rust
/// expression (`Spec { funcs: 1, ..Default::default() }`).
impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = Spec::default();
        let mut parts = Vec::new();
        macro_rules! field {
            ($name:ident) => {
                if self.$name != d.$name {
                    parts.push(format!(concat!(stringify!($name), ": {:?}"), self.$name));
                }
            };
        }
        field!(funcs);
        field!(immediate);
        field!(all_immediate);
        field!(adds);
        field!(replace);
        field!(sits_on);
        field!(state);
        field!(requires);
        field!(veto);
        field!(post_sleep);
        field!(cb_calls_added);
        field!(sig);
        field!(timeout0);
        parts.push("..Default::default()".into());
        write!(f, "Spec {{ {} }}", parts.join(", "))
    }
}

/// A sequence as the argument of `replay`, one operation per line.
pub fn listing(ops: &[Op]) -> String {
    let mut s = String::from("&[\n");
    for op in ops {
        s += &format!("    {op:?},\n").replace("cmds: [", "cmds: vec![");
    }
    s + "]"
}
