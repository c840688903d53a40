//! Counterexamples found by the model-based test, shrunk, kept as replays.
//! Each test fails while its bug is present.

#[allow(unused_imports)]
use crate::ops::{Cmd::*, Op::*, Spec};
#[allow(unused_imports)]
use crate::runner::replay;

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
