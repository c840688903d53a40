//! Counterexamples found by the model-based test, shrunk, kept as replays.
//! Each test fails while its bug is present.

#[allow(unused_imports)]
use crate::ops::{Cmd::*, Op::*, Spec};
#[allow(unused_imports)]
use crate::runner::{replay, replay_forked};

/// Not a counterexample: the harness itself on a hand-written sequence
/// (a thread inside a changed function stays pending until it returns,
/// then calls the new version).
#[test]
fn sanity_per_thread_switch() {
    replay(&[
        Spawn { inst: 0 },
        Thread {
            thread: 0,
            cmds: vec![Call(0), Call(1)],
        },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 0b011,
                ..Default::default()
            },
        },
        Thread {
            thread: 0,
            cmds: vec![Call(1), Ret, Ret, Ret, Call(0), Call(1)],
        },
        Drive,
        Revert {
            id: 1,
            timeout0: false,
        },
        Thread {
            thread: 0,
            cmds: vec![Ret, Ret, Call(0)],
        },
    ]);
}

/// Issue 11 item 2: a forced bundle is permanent, so a reverse after a
/// force is refused. The runtime accepted it (and with a thread inside the
/// bundle's code, freed that code under it).
#[test]
fn reverse_after_force_is_refused() {
    replay(&[
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 1,
                ..Default::default()
            },
        },
        Force,
        Reverse,
    ]);
}

/// Issue 11 item 5: two bundles that each add a different function at the
/// same index (both diffed from the same base). The second must be refused
/// (or get its own index); the runtime accepted it, and callers of the
/// first added function reach the second.
#[test]
fn second_bundle_adding_at_the_same_index_is_refused() {
    replay(&[
        Apply {
            inst: 1,
            spec: Spec {
                funcs: 1,
                adds: 1,
                ..Default::default()
            },
        },
        Spawn { inst: 0 },
        Apply {
            inst: 1,
            spec: Spec {
                funcs: 1,
                adds: 2,
                ..Default::default()
            },
        },
    ]);
}

/// Issue 11 item 4: two instances in one store. After a transition of
/// instance 0 completes, instance 1's calls must still reach its own
/// applied bundle; the runtime sent them back to the original code.
#[test]
fn a_transition_of_one_instance_keeps_the_other_instance_patched() {
    replay(&[
        Apply {
            inst: 1,
            spec: Spec {
                funcs: 4,
                ..Default::default()
            },
        },
        Spawn { inst: 1 },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 1,
                ..Default::default()
            },
        },
        Thread {
            thread: 0,
            cmds: vec![Host(2), Ret, Call(2)],
        },
    ]);
}

/// A thread of instance 0 inside `f0` stays pending in a transition of
/// instance 1 that changes instance 1's `f0`: frames are matched by code,
/// which instances of one module share (docs/consistency.md, "Frame set").
/// Conservative: it can only delay a switch, never mix versions.
#[test]
fn frames_of_another_instance_running_shared_code_block_conservatively() {
    replay(&[
        Spawn { inst: 0 },
        Thread {
            thread: 0,
            cmds: vec![Call(0)],
        },
        Apply {
            inst: 1,
            spec: Spec {
                funcs: 1,
                ..Default::default()
            },
        },
    ]);
}

/// Issue 11 item 1: two reverses in a row. The first leaves nobody pending
/// (completion due); the second makes the thread inside `f1` pending
/// again. The transition must not complete while it is pending; the
/// runtime completed it, stranding the thread in the old world.
#[test]
fn two_reverses_do_not_complete_with_a_pending_thread() {
    replay(&[
        Spawn { inst: 0 },
        Thread {
            thread: 0,
            cmds: vec![Call(1)],
        },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 2,
                ..Default::default()
            },
        },
        Reverse,
        Reverse,
        Drive,
    ]);
}

/// Issue 11 item 6: reversing an apply that added a function. Thread 1
/// runs the bundle's `f0`, whose frame survives the reverse; its call to
/// the added function must trap cleanly (`RemovedFunction`, rule 6). The
/// runtime left a null slot there: SIGSEGV.
#[test]
fn call_to_an_added_function_after_a_reverse_traps() {
    replay_forked(&[
        Spawn { inst: 0 },
        Spawn { inst: 0 },
        Thread {
            thread: 0,
            cmds: vec![Call(0)],
        },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 7,
                immediate: 2,
                adds: 3,
                ..Default::default()
            },
        },
        Thread {
            thread: 1,
            cmds: vec![Call(0)],
        },
        Reverse,
        Thread {
            thread: 1,
            cmds: vec![Added(0)],
        },
    ]);
}

/// Issue 11 item 7: a pre-patch callback that calls a function its own
/// bundle adds. The call must work, or the bundle be refused; the runtime
/// crashed (SIGSEGV) during the apply.
#[test]
fn pre_patch_callback_calling_an_added_function_does_not_crash() {
    replay_forked(&[Apply {
        inst: 0,
        spec: Spec {
            funcs: 1,
            adds: 3,
            cb_calls_added: true,
            ..Default::default()
        },
    }]);
}

/// Issue 11 item 10: a (crafted) bundle changes the type of `$tf`, which
/// is in a table (and not exported, and called directly by nobody).
/// `call_indirect` callers with the old type would reach code expecting
/// the new one: the runtime must refuse it; it accepted it.
#[test]
fn type_change_of_a_table_function_is_refused() {
    replay(&[SigTable { inst: 0 }]);
}

/// Issue 11 item 3: a stale frame-summary cache. Bundle 1's post-patch
/// callback sleeps (its thread's stack is summarised with bundle 1's code
/// addresses in the scan cache); bundle 1 is reverted and bundle 2, of the
/// same shape, lands at the same address. The thread then parks inside
/// bundle 2's `f1` above `f0`; bundle 3 changes `f0`, so the thread must
/// stay pending. The runtime switched it at once (its summary missed
/// `f0`). Written from the description and confirmed by the model
/// (the random search had not reached it yet).
#[test]
fn a_reused_code_address_does_not_hide_a_blocking_frame() {
    replay_forked(&[
        Spawn { inst: 0 },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 2,
                post_sleep: true,
                ..Default::default()
            },
        },
        Drive,
        Revert {
            id: 1,
            timeout0: false,
        },
        Drive,
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 2,
                ..Default::default()
            },
        },
        Drive,
        Thread {
            thread: 0,
            cmds: vec![Call(0), Call(1)],
        },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 1,
                ..Default::default()
            },
        },
    ]);
}

/// Not a counterexample: rule 6 on the harness. Bundle 1's `f0` is
/// immediate, so reverting it leaves a thread inside that `f0`; once the
/// revert completes, the frame's call to the added function it knew traps
/// with an error naming it.
#[test]
fn sanity_removed_function_traps() {
    replay_forked(&[
        Spawn { inst: 0 },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 1,
                immediate: 1,
                adds: 1,
                ..Default::default()
            },
        },
        Drive,
        Thread {
            thread: 0,
            cmds: vec![Call(0), Added(0), Ret],
        },
        Revert {
            id: 1,
            timeout0: false,
        },
        Drive,
        Thread {
            thread: 0,
            cmds: vec![Added(0)],
        },
    ]);
}

/// A cumulative replacement that adds a function again while an earlier
/// bundle's version of it is live gives it a new version, switched per
/// thread (rules 1 and 6: it has an older version, so it is not "added").
/// Found by the long run (seed 15).
#[test]
fn a_function_added_again_while_live_is_a_per_thread_replacement() {
    replay(&[
        Spawn { inst: 0 },
        Spawn { inst: 0 },
        Spawn { inst: 0 },
        Spawn { inst: 0 },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 6,
                adds: 1,
                ..Default::default()
            },
        },
        Thread {
            thread: 57,
            cmds: vec![Call(1)],
        },
        Thread {
            thread: 58,
            cmds: vec![Ret],
        },
        Spawn { inst: 0 },
        Thread {
            thread: 142,
            cmds: vec![Call(0)],
        },
        Apply {
            inst: 0,
            spec: Spec {
                funcs: 1,
                adds: 3,
                replace: true,
                ..Default::default()
            },
        },
        Thread {
            thread: 69,
            cmds: vec![Added(0)],
        },
    ]);
}
