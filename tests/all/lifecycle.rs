//! The lifecycle of a transition (`docs/consistency.md`, "The lifecycle of
//! a transition"): every legal edge is taken and every illegal one refused.

use crate::transitions::{app, apply, bytes_with, park, setup_host, wake, Host};
use patch_format::DiffOptions;
use wasm_patch_runtime::*;

fn phase(store: &Store<Host>) -> Option<(TransitionPhase, bool, usize)> {
    store
        .transition_status()
        .map(|t| (t.phase, t.reversed, t.pending))
}

/// A store whose `f` the bundle changes; with `blocked`, a thread sleeps
/// inside `f` so that the apply starts `Switching`.
fn started(blocked: bool) -> (Store<Host>, Instance, Option<ThreadId>, Vec<u8>) {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = blocked.then(|| park(&mut store, inst, "park_f", &[Val::I32(1)]));
    // A thread parked outside every changed function: clean.
    park(&mut store, inst, "idle", &[]);
    let b = bytes_with(&v0, &app(1, 0), &DiffOptions::default());
    apply(&mut store, inst, &b);
    (store, inst, t, b)
}

use TransitionPhase::*;

#[test]
fn start_is_switching_when_a_thread_is_blocked_and_switched_when_none_is() {
    let (store, ..) = started(true);
    assert_eq!(phase(&store), Some((Switching, false, 1)));
    let (mut store, ..) = started(false);
    assert_eq!(phase(&store), Some((Switched, false, 0)));
    store.run().unwrap();
    assert_eq!(phase(&store), None);
    let o = store.last_transition().unwrap();
    assert!(!o.reversed && !o.forced);
}

#[test]
fn switching_becomes_switched_when_the_last_pending_thread_switches() {
    let (mut store, _, t, _) = started(true);
    wake(&mut store, t.unwrap());
    assert_eq!(phase(&store), None);
    let events: Vec<String> = store.events().iter().map(|e| e.to_string()).collect();
    let switched = events.iter().position(|e| e.ends_with("thread 1 switched"));
    let done = events.iter().position(|e| e == "patch 1: completed patch");
    assert!(switched.is_some() && switched < done, "{events:?}");
}

#[test]
fn reverse_leads_back_from_switching_and_from_switched() {
    // Switching(s) → reverse → Switched(¬s): the blocked thread never left.
    let (mut store, _, t, _) = started(true);
    store.reverse().unwrap();
    assert_eq!(phase(&store), Some((Switched, true, 0)));
    // Switched(¬s) → reverse → Switching(s): it is blocked again.
    store.reverse().unwrap();
    assert_eq!(phase(&store), Some((Switching, false, 1)));
    store.run().unwrap();
    assert_eq!(phase(&store), Some((Switching, false, 1)));
    wake(&mut store, t.unwrap());
    assert_eq!(phase(&store), None);
    // Switched(s) → reverse → Switched(¬s), then completes unapplied.
    let (mut store, ..) = started(false);
    store.reverse().unwrap();
    assert_eq!(phase(&store), Some((Switched, true, 0)));
    store.run().unwrap();
    assert!(store.last_transition().unwrap().reversed);
    assert!(store.applied().is_empty());
}

#[test]
fn force_is_permanent_and_idempotent() {
    for blocked in [true, false] {
        let (mut store, _, _, _) = started(blocked);
        let p = store.force().unwrap();
        assert_eq!(phase(&store), Some((Forced, false, 0)));
        assert_eq!(store.force().unwrap(), p, "forcing again changes nothing");
        assert_eq!(phase(&store), Some((Forced, false, 0)));
        assert!(matches!(store.reverse(), Err(PatchError::Forced(q)) if q == p));
        store.run().unwrap();
        assert_eq!(phase(&store), None);
        assert!(store.last_transition().unwrap().forced);
        assert!(store.applied()[0].forced);
        assert!(matches!(
            store.revert(p, None),
            Err(PatchError::RevertRefused(..))
        ));
    }
}

#[test]
fn apply_and_revert_are_busy_in_every_phase_and_reverse_needs_a_transition() {
    for (blocked, force) in [(true, false), (false, false), (true, true)] {
        let (mut store, inst, _, b) = started(blocked);
        if force {
            store.force().unwrap();
        }
        let p = store.transition_status().unwrap().patch;
        assert!(matches!(
            store.apply(inst, &b, &ApplyOptions::default()),
            Err(PatchError::Busy(q)) if q == p
        ));
        assert!(matches!(store.revert(p, None), Err(PatchError::Busy(_))));
    }
    let (mut store, _) = setup_host(&app(0, 0));
    assert!(matches!(store.reverse(), Err(PatchError::NoTransition)));
    assert!(matches!(store.force(), Err(PatchError::NoTransition)));
}

#[test]
fn the_timeout_reverses_only_a_switching_transition_that_still_leads_forward() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let b = bytes_with(&v0, &app(1, 0), &DiffOptions::default());
    let opts = ApplyOptions {
        timeout: Some(std::time::Duration::ZERO),
        ..Default::default()
    };
    store.apply(inst, &b, &opts).unwrap();
    store.run().unwrap();
    // Reversed by the timeout; `t` never left, so it completed unapplied.
    let o = store.last_transition().unwrap();
    assert!(o.reversed && !o.forced);
    assert_eq!(o.blockers.len(), 1);
    assert!(store.applied().is_empty());
    // A transition the operator reversed is never touched by the timeout:
    // it completes on the side the operator chose.
    store.apply(inst, &b, &opts).unwrap();
    store.reverse().unwrap();
    assert_eq!(phase(&store), Some((Switched, true, 0)));
    store.run().unwrap();
    assert!(store.last_transition().unwrap().reversed);
    wake(&mut store, t);
}

/// Issue 16, item 3: the host receives every patch event through a
/// callback, as it is recorded, with its timestamp and sequence number: the
/// same events, in the same order, as the transcript.
#[test]
fn a_host_callback_receives_every_patch_event_as_it_happens() {
    use crate::transitions::transcript;
    use std::sync::{Arc, Mutex};
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let seen: Arc<Mutex<Vec<(u64, std::time::SystemTime, String)>>> = Arc::default();
    let sink = seen.clone();
    store.on_patch_event(move |e| {
        sink.lock()
            .unwrap()
            .push((e.seq, e.time, e.event.to_string()))
    });
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    apply(
        &mut store,
        inst,
        &bytes_with(&v0, &app(1, 0), &DiffOptions::default()),
    );
    let while_blocked = seen.lock().unwrap().len();
    assert!(
        while_blocked > 0,
        "the apply and the blocked thread are reported at once"
    );
    wake(&mut store, t);
    let seen = seen.lock().unwrap();
    let texts: Vec<String> = seen.iter().map(|(_, _, s)| s.clone()).collect();
    assert_eq!(texts, transcript(&store));
    assert!(seen.len() > while_blocked, "completion came later");
    assert!(seen
        .windows(2)
        .all(|w| w[0].0 + 1 == w[1].0 && w[0].1 <= w[1].1));
    let timed: Vec<u64> = store.timed_events().map(|e| e.seq).collect();
    assert_eq!(timed, seen.iter().map(|(s, _, _)| *s).collect::<Vec<_>>());
}
