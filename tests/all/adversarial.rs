//! Ordinary operations in unusual orders (issue 11): each test is one
//! sequence that once mixed versions or crashed the host, and checks the
//! rule of `docs/consistency.md` it broke.

use crate::transitions::{
    app, app_with, apply, bytes_with, call, f_index, host_linker, live, park, setup_host,
    transcript, wake, Host,
};
use patch_format::{
    diff, BundleBuilder, CallbackKind, DiffOptions, Entry, EntryKind, ModuleHash, TargetInterface,
};
use wasm_patch_runtime::*;

fn plain() -> DiffOptions {
    DiffOptions::default()
}

/// Item 1: a second reverse makes a thread that is asleep inside a changed
/// function pending again; the transition must not complete until it leaves.
#[test]
fn a_second_reverse_keeps_the_transition_open_while_a_thread_is_pending() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let p = apply(&mut store, inst, &bytes_with(&v0, &app(1, 0), &plain()));
    assert_eq!(store.transition_status().unwrap().pending, 1);
    // Back: `t` never left the old world, nobody is pending.
    store.reverse().unwrap();
    // Forward again: `t` still sleeps inside `f`, so it is pending again.
    store.reverse().unwrap();
    store.run().unwrap();
    let st = store
        .transition_status()
        .expect("the transition must stay open while a thread is pending");
    assert_eq!(st.pending, 1);
    assert!(!st.reversed, "two reverses lead forward again");
    assert_eq!(
        store.thread_patch_state(t),
        Some(ThreadPatchState::Unpatched)
    );
    // `t` leaves `f` and parks on a clean stack: it switches, and the apply
    // completes as a patch.
    wake(&mut store, t);
    assert!(store.transition_status().is_none());
    assert_eq!(live(&store, inst, "f"), Some(p));
    assert_eq!(call(&mut store, inst, "call_f"), 1);
    assert_eq!(
        transcript(&store).last().map(String::as_str),
        Some("patch 1: completed patch")
    );
}

/// Item 2: a forced transition is permanent: reverse and revert are refused,
/// and the forced code keeps running.
#[test]
fn a_forced_transition_cannot_be_reversed_or_reverted() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let p = apply(&mut store, inst, &bytes_with(&v0, &app(1, 0), &plain()));
    assert_eq!(store.force().unwrap(), p);
    assert!(
        store.reverse().is_err(),
        "a forced bundle must not be reversed"
    );
    store.run().unwrap();
    assert!(store.transition_status().is_none());
    assert!(matches!(
        store.revert(p, None),
        Err(PatchError::RevertRefused(..))
    ));
    // The forced thread wakes inside the old `f` and goes on.
    wake(&mut store, t);
    assert_eq!(call(&mut store, inst, "call_f"), 1);
    assert_eq!(live(&store, inst, "f"), Some(p));
}

/// The lifecycle's one answer to "which side": a reversed revert leaves its
/// bundle applied, and every report says so (events, outcome, patch state).
#[test]
fn a_reversed_revert_completes_on_the_patched_side() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let p = apply(&mut store, inst, &bytes_with(&v0, &app(1, 0), &plain()));
    store.wait_transition().unwrap();
    // `t` sleeps inside the patched `f`: the revert waits for it.
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    store.revert(p, None).unwrap();
    assert_eq!(store.thread_patch_state(t), Some(ThreadPatchState::Patched));
    store.reverse().unwrap();
    let outcome = store.wait_transition().unwrap();
    assert!(outcome.reversed);
    assert_eq!(live(&store, inst, "f"), Some(p));
    assert_eq!(store.applied().len(), 1);
    assert_eq!(
        transcript(&store).last().map(String::as_str),
        Some("patch 1: completed patch")
    );
    wake(&mut store, t);
    assert_eq!(call(&mut store, inst, "call_f"), 1);
}

/// Item 4: patching one instance must not change which code another
/// instance of the same store runs.
#[test]
fn patching_one_instance_leaves_the_other_instances_world_alone() {
    let v0 = app(0, 0);
    let engine = Engine::default();
    let module = Module::new(&engine, &v0).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let linker = host_linker(&engine);
    let a = linker.instantiate(&mut store, &module).unwrap();
    let b = linker.instantiate(&mut store, &module).unwrap();
    let pa = apply(&mut store, a, &bytes_with(&v0, &app(1, 0), &plain()));
    assert!(!store.wait_transition().unwrap().reversed);
    assert_eq!(call(&mut store, a, "call_f"), 1);
    let pb = apply(&mut store, b, &bytes_with(&v0, &app(2, 0), &plain()));
    assert!(!store.wait_transition().unwrap().reversed);
    assert_eq!(
        call(&mut store, a, "call_f"),
        1,
        "instance A lost its patch"
    );
    assert_eq!(call(&mut store, b, "call_f"), 2);
    // And back: reverting B leaves A patched, reverting A leaves B alone.
    store.revert(pb, None).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, a, "call_f"), 1);
    assert_eq!(call(&mut store, b, "call_f"), 0);
    store.revert(pa, None).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, a, "call_f"), 0);
    assert_eq!(call(&mut store, b, "call_f"), 0);
    assert_eq!(live(&store, a, "f"), None);
}

/// Item 5: two bundles diffed from the same base each add a function at the
/// same index, with different types. The second is refused; the first
/// keeps working.
#[test]
fn a_second_bundle_adding_another_function_at_the_same_index_is_refused() {
    let v0 = app(0, 0);
    let a_src = app_with(
        "call $helper_a",
        "i32.const 0",
        "(func $helper_a (result i32) i32.const 7)",
    );
    let b_src = app_with(
        "i32.const 0",
        "i32.const 5 call $helper_b",
        "(func $helper_b (param i32) (result i32) local.get 0 i32.const 1 i32.add)",
    );
    let (mut store, inst) = setup_host(&v0);
    let ba = bytes_with(&v0, &a_src, &plain());
    let bb = bytes_with(&v0, &b_src, &plain());
    let pa = apply(&mut store, inst, &ba);
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_f"), 7);
    let err = store
        .apply(inst, &bb, &ApplyOptions::default())
        .expect_err("B adds helper_b where A's helper_a lives");
    let msg = err.to_string();
    assert!(
        msg.contains("helper_a") && msg.contains("helper_b"),
        "the refusal names both functions: {msg}"
    );
    assert_eq!(call(&mut store, inst, "call_f"), 7);
    assert_eq!(live(&store, inst, "f"), Some(pa));
    // Once A is reverted, its added index keeps A's type: B, which gives it
    // another type, is still refused (stale references to helper_a may sit
    // in tables or memory).
    store.revert(pa, None).unwrap();
    store.wait_transition().unwrap();
    assert!(store.apply(inst, &bb, &ApplyOptions::default()).is_err());
    // A again is fine: same function, same type.
    apply(&mut store, inst, &ba);
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_f"), 7);
}

/// Item 6: new code stores a reference to the function its bundle adds in a
/// table; the apply is reversed. Calling through that entry traps cleanly,
/// naming the function.
#[test]
fn a_reversed_apply_leaves_its_added_function_trapping_cleanly() {
    let extra_old = "(func (export \"install\") (result i32) i32.const 0)";
    let extra_new = "(elem declare func $helper)
        (func $helper (result i32) i32.const 42)
        (func (export \"install\") (result i32)
          i32.const 1 ref.func $helper table.set $t i32.const 1)";
    let v0 = app_with("i32.const 0", "i32.const 0", extra_old);
    let v1 = app_with("i32.const 1", "i32.const 0", extra_new);
    let (mut store, inst) = setup_host(&v0);
    // `t` sleeps inside `f`, which the bundle changes: the transition stays
    // open.
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    apply(&mut store, inst, &bytes_with(&v0, &v1, &plain()));
    assert_eq!(store.transition_status().unwrap().pending, 1);
    // A new thread starts in the new world and installs the reference.
    assert_eq!(call(&mut store, inst, "install"), 1);
    assert_eq!(
        crate::i32_of(
            inst.get_func(&store, "call_slot")
                .unwrap()
                .call(&mut store, &[Val::I32(1)])
        ),
        42
    );
    store.reverse().unwrap();
    store.run().unwrap();
    assert!(store.transition_status().is_none());
    let slot = inst.get_func(&store, "call_slot").unwrap();
    let trap = crate::trap_of(slot.call(&mut store, &[Val::I32(1)]));
    assert_eq!(trap.kind, TrapKind::RemovedFunction, "{trap}");
    assert!(trap.to_string().contains("helper"), "{trap}");
    wake(&mut store, t);
    assert_eq!(call(&mut store, inst, "call_f"), 0);
}

/// Item 7: a pre-patch callback that calls a function its own bundle adds
/// (which is not published yet) is refused before anything runs.
#[test]
fn a_pre_patch_callback_calling_an_added_function_is_refused() {
    let v0 = app(0, 0);
    let new = app_with(
        "call $helper",
        "i32.const 0",
        "(func $helper (result i32) i32.const 3)
         (func $pre (result i32) call $helper drop i32.const 0)",
    );
    let opts = DiffOptions {
        callbacks: vec![(CallbackKind::PrePatch, "pre".into())],
        ..Default::default()
    };
    let (mut store, inst) = setup_host(&v0);
    let err = store
        .apply(
            inst,
            &bytes_with(&v0, &new, &opts),
            &ApplyOptions::default(),
        )
        .expect_err("pre-patch would call an unpublished function");
    assert!(err.to_string().contains("helper"), "{err}");
    assert!(store.applied().is_empty());
    assert_eq!(call(&mut store, inst, "call_f"), 0);
}

/// Item 10: a crafted bundle (valid format, right target hash) that changes
/// the type of a function reachable through a table is refused on apply,
/// whatever `diff` would have said.
#[test]
fn apply_refuses_a_signature_change_of_a_function_in_a_table() {
    // The target: `child` sits in table 0 (see `app_with`), of type
    // (i32) -> (). The donor pair has no table entry for it, so `diff`
    // accepts the change there; the crafted bundle then aims the same
    // entries at the real target.
    let v0 = app(0, 0);
    let no_table = |child: &str| {
        v0.replace("(elem (i32.const 0) func $child)", "").replace(
            "(func $child (param i32) i32.const 0 call $f call $record)",
            child,
        )
    };
    let donor_old = no_table("(func $child (param i32) i32.const 0 call $f call $record)");
    let donor_new =
        no_table("(func $child (param i32) (param i32) i32.const 0 call $f call $record)");
    let donor = diff(
        &wat::parse_str(&donor_old).unwrap(),
        &wat::parse_str(&donor_new).unwrap(),
        &plain(),
    )
    .expect("the donor pair diffs")
    .bundle;
    let target = wat::parse_str(&v0).unwrap();
    let mut b = BundleBuilder::new(
        ModuleHash::of(&target),
        TargetInterface::from_module(&target).unwrap(),
    );
    for ty in donor.extra_types() {
        b.add_type(ty).unwrap();
    }
    for e in donor.entries() {
        if let EntryKind::Replace { target_index } = e.kind {
            b.set_func_type(target_index, e.type_index).unwrap();
        }
        b.entry(Entry::clone(e));
    }
    let crafted = b.build().expect("a well-formed bundle").to_bytes();
    let (mut store, inst) = setup_host(&v0);
    let child = f_index(&store, inst, "child");
    let err = store
        .apply(inst, &crafted, &ApplyOptions::default())
        .expect_err("child is in a table");
    assert!(err.to_string().contains("child"), "{err}");
    assert!(store.applied().is_empty());
    assert_eq!(
        store.function_versions(inst, child).unwrap().live.patch,
        None
    );
}

/// The attack after the review: one bundle that adds a function, applied to
/// two instances of one module. Each instance's added function is reached
/// through its own table; reverting the bundle on one instance makes that
/// instance's table entry trap cleanly and leaves the other's working.
#[test]
fn an_added_function_in_two_instances_tables_survives_a_revert_of_one() {
    let extra_old = "(func (export \"install\") (result i32) i32.const 0)";
    let extra_new = "(elem declare func $helper)
        (func $helper (result i32) i32.const 42)
        (func (export \"install\") (result i32)
          i32.const 1 ref.func $helper table.set $t i32.const 1)";
    let v0 = app_with("i32.const 0", "i32.const 0", extra_old);
    let v1 = app_with("i32.const 1", "i32.const 0", extra_new);
    let engine = Engine::default();
    let module = Module::new(&engine, &v0).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let linker = host_linker(&engine);
    let a = linker.instantiate(&mut store, &module).unwrap();
    let b = linker.instantiate(&mut store, &module).unwrap();
    let bundle = bytes_with(&v0, &v1, &plain());
    let pa = apply(&mut store, a, &bundle);
    store.wait_transition().unwrap();
    // The same bundle on the other instance is not "already applied".
    apply(&mut store, b, &bundle);
    store.wait_transition().unwrap();
    let slot = |store: &mut Store<Host>, i: Instance| {
        let f = i.get_func(store, "call_slot").unwrap();
        f.call(store, &[Val::I32(1)])
    };
    for i in [a, b] {
        assert_eq!(call(&mut store, i, "install"), 1);
        assert_eq!(crate::i32_of(slot(&mut store, i)), 42);
    }
    store.revert(pa, None).unwrap();
    store.wait_transition().unwrap();
    let trap = crate::trap_of(slot(&mut store, a));
    assert_eq!(trap.kind, TrapKind::RemovedFunction, "{trap}");
    assert_eq!(crate::i32_of(slot(&mut store, b)), 42, "B keeps its helper");
    assert_eq!(call(&mut store, b, "call_f"), 1);
    assert_eq!(call(&mut store, a, "call_f"), 0);
    // Applying it again to A works: same function, same type, same index.
    apply(&mut store, a, &bundle);
    store.wait_transition().unwrap();
    assert_eq!(crate::i32_of(slot(&mut store, a)), 42);
}

/// Found by the patch-equivalence fuzzer (`fuzz/known/cumulative-dropped-
/// caller.*.wat`): bundle 1 makes `r` call `g`; a cumulative bundle drops
/// `r`'s call and gives `g` a parameter. Patch 1's `r` is out of the new
/// world (rule 12), so its call no longer holds `g`'s signature; the
/// module's `r` never called `g`.
#[test]
fn a_cumulative_bundle_may_change_a_signature_only_a_superseded_version_called() {
    let m = r#"(module
      (func $g (param i32) (result i32) local.get 0)
      (func $k (param i32) (result i32) i32.const 7)
      (func $r (result i32) i32.const 1 call $k)
      (func $f (export "f") (result i32) call $r))"#;
    let m1 = r#"(module
      (func $g (param i32) (result i32) local.get 0)
      (func $k (param i32) (result i32) i32.const 7)
      (func $r (result i32) i32.const 1 call $g)
      (func $f (export "f") (result i32) call $r))"#;
    let m2 = r#"(module
      (func $g (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
      (func $k (param i32) (result i32) i32.const 7)
      (func $r (result i32) i32.const 1 call $k)
      (func $f (export "f") (result i32) i32.const 2 i32.const 3 call $g))"#;
    let (mut store, inst) = setup_host(m);
    assert_eq!(call(&mut store, inst, "f"), 7);
    apply(&mut store, inst, &bytes_with(m, m1, &plain()));
    assert_eq!(call(&mut store, inst, "f"), 1);
    let cumulative = DiffOptions {
        replace: true,
        ..plain()
    };
    apply(&mut store, inst, &bytes_with(m, m2, &cumulative));
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "f"), 5);
}

/// The same, but patch 1's code takes a *reference* to `g` (which the
/// module must declare for that): a reference may sit in a table or in
/// memory and be called with the old type after the cumulative bundle, so
/// the signature change is still refused, and nothing changes.
#[test]
fn a_cumulative_bundle_cannot_change_a_signature_an_applied_bundle_took_a_reference_to() {
    let m = r#"(module
      (table 1 funcref)
      (elem declare func $g)
      (type $t (func (param i32) (result i32)))
      (func $g (param i32) (result i32) local.get 0)
      (func $r (result i32) i32.const 1)
      (func $f (export "f") (result i32) call $r))"#;
    let m1 = r#"(module
      (table 1 funcref)
      (elem declare func $g)
      (type $t (func (param i32) (result i32)))
      (func $g (param i32) (result i32) local.get 0)
      (func $r (result i32) (table.set 0 (i32.const 0) (ref.func $g)) i32.const 2)
      (func $f (export "f") (result i32) call $r))"#;
    let m2 = r#"(module
      (table 1 funcref)
      (elem declare func $g)
      (type $t (func (param i32) (result i32)))
      (func $g (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
      (func $r (result i32) i32.const 1)
      (func $f (export "f") (result i32) i32.const 2 i32.const 3 call $g))"#;
    let (mut store, inst) = setup_host(m);
    apply(&mut store, inst, &bytes_with(m, m1, &plain()));
    assert_eq!(call(&mut store, inst, "f"), 2);
    let cumulative = DiffOptions {
        replace: true,
        ..plain()
    };
    let e = store
        .apply(
            inst,
            &bytes_with(m, m2, &cumulative),
            &ApplyOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("function g cannot change its signature"), "{e}");
    assert_eq!(call(&mut store, inst, "f"), 2);
    assert_eq!(store.applied().len(), 1);
}
