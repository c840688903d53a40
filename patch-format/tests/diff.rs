//! `diff` rules, one test per rule, on the pairs of `guests/patches/` and
//! on small inline pairs.

mod common;

use common::*;
use patch_format::{
    diff, names, CallbackKind, DiffError, DiffOptions, EntryKind, ModuleHash, Unpatchable, ValType,
};

fn opts() -> DiffOptions {
    DiffOptions::default()
}

#[test]
fn only_the_changed_function_is_in_the_bundle() {
    let b = diff_case("counter", &opts()).unwrap();
    assert_eq!(
        names(&b),
        [("replace".to_string(), "increment".to_string())]
    );
    let e = &b.entries()[0];
    assert_eq!(e.kind, EntryKind::Replace { target_index: 0 });
    assert!(!e.immediate && !b.immediate());
    assert_eq!(e.ty.params(), []);
    assert_eq!(e.ty.results(), [ValType::I32]);
    assert_eq!(b.target_hash(), ModuleHash::of(&guest("counter", "old")));
    assert_eq!(
        b.metadata().new_module,
        Some(ModuleHash::of(&guest("counter", "new")))
    );
    assert_eq!(b.target_func_count(), 4);
    assert!(b.callbacks().is_empty());
}

#[test]
fn a_function_added_first_shifts_no_unchanged_function_into_the_bundle() {
    let b = diff_case("shifted", &opts()).unwrap();
    assert_eq!(
        names(&b),
        [
            ("add".to_string(), "clamp".to_string()),
            ("replace".to_string(), "add".to_string()),
        ]
    );
    // The target has 5 functions; `clamp` is the first addition.
    assert_eq!(b.entries()[0].kind, EntryKind::Add { new_index: 5 });
    assert_eq!(b.entries()[1].kind, EntryKind::Replace { target_index: 0 });
    // `add`'s body calls `clamp` by its index in the *target* space.
    assert_eq!(calls_in(&b.entries()[1].body), [5]);
    // `clamp`'s type (i64) -> i32 did not exist in the old module.
    let clamp = &b.entries()[0];
    assert_eq!(clamp.ty.params(), [ValType::I64]);
    assert!(clamp.type_index >= b.target_type_count());
    assert_eq!(b.extra_types().len(), 1);
    assert_eq!(b.func_type(clamp.type_index), Some(&clamp.ty));
}

#[test]
fn unchanged_callers_keep_target_indices_in_replacement_bodies() {
    // In the new build `square` calls `mul` at index 2; in the target, `mul`
    // is index 1. Changing `square` must produce `call 1`.
    let old = r#"(module
        (func $mul (param i32 i32) (result i32) local.get 0 local.get 1 i32.mul)
        (func $square (export "square") (param i32) (result i32) local.get 0 local.get 0 call $mul))"#;
    let new = r#"(module
        (func $new_helper (result i32) i32.const 0)
        (func $mul (param i32 i32) (result i32) local.get 0 local.get 1 i32.mul)
        (func $square (export "square") (param i32) (result i32)
            local.get 0 local.get 0 call $mul call $new_helper i32.add))"#;
    let b = diff_wat(old, new, &opts()).unwrap();
    let square = b.entry("square").unwrap();
    assert_eq!(square.kind, EntryKind::Replace { target_index: 1 });
    assert_eq!(calls_in(&square.body), [0, 2]);
    assert_eq!(
        b.entry("new_helper").unwrap().kind,
        EntryKind::Add { new_index: 2 }
    );
    assert!(b.entry("mul").is_none());
}

#[test]
fn a_signature_change_with_all_its_callers_is_accepted() {
    let b = diff_case("signature", &opts()).unwrap();
    let mut got = names(&b);
    got.sort();
    assert_eq!(
        got,
        [
            ("replace".to_string(), "double_price".to_string()),
            ("replace".to_string(), "price".to_string()),
            ("replace".to_string(), "scale".to_string()),
        ]
    );
    let scale = b.entry("scale").unwrap();
    assert_eq!(scale.ty.params(), [ValType::I32, ValType::I32]);
    // The bundle imports `scale` with its new type, so callers validate.
    assert_eq!(b.interface().func_type_indices()[0], scale.type_index);
}

#[test]
fn a_signature_change_is_never_immediate() {
    let o = DiffOptions {
        immediate: vec!["scale".into()],
        ..opts()
    };
    let r = refusals(diff_case("signature", &o));
    assert_eq!(r.len(), 1);
    let msg = r[0].to_string();
    assert!(
        msg.contains("`scale`") && msg.contains("never be immediate"),
        "{msg}"
    );
    let all = DiffOptions {
        all_immediate: true,
        ..opts()
    };
    assert!(refusals(diff_case("signature", &all))[0]
        .to_string()
        .contains("`scale`"));
}

#[test]
fn immediate_marks_only_the_named_replacement() {
    let o = DiffOptions {
        immediate: vec!["price".into()],
        ..opts()
    };
    let b = diff_case("signature", &o).unwrap();
    for e in b.entries() {
        assert_eq!(e.immediate, e.name == "price", "{}", e.name);
        assert_eq!(b.is_immediate(e), e.name == "price");
    }
}

#[test]
fn immediate_on_something_not_replaced_is_refused() {
    let cases = [
        ("get", "did not change"),
        ("nope", "no function of that name"),
    ];
    for (name, why) in cases {
        let o = DiffOptions {
            immediate: vec![name.into()],
            ..opts()
        };
        match diff_case("counter", &o) {
            Err(DiffError::Option(m)) => assert!(m.contains(name) && m.contains(why), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let o = DiffOptions {
        immediate: vec!["clamp".into()],
        ..opts()
    };
    match diff_case("shifted", &o) {
        Err(DiffError::Option(m)) => assert!(m.contains("only replacements"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_signature_change_with_an_unchanged_caller_is_refused_naming_it() {
    let r = refusals(diff_case("signature-unchecked", &opts()));
    assert_eq!(r.len(), 1, "{r:?}");
    let msg = r[0].to_string();
    assert!(msg.contains("`check`"), "{msg}");
    assert!(msg.contains("`trap_path`"), "{msg}");
    assert!(
        msg.contains("(i32) -> i32") && msg.contains("(i64) -> i32"),
        "{msg}"
    );
}

#[test]
fn a_signature_change_of_an_exported_function_is_refused() {
    let old = r#"(module (func $f (export "f") (param i32) (result i32) local.get 0))"#;
    let new =
        r#"(module (func $f (export "f") (param i64) (result i32) local.get 0 i32.wrap_i64))"#;
    let r = refusals(diff_wat(old, new, &opts()));
    assert!(
        r.iter().any(|u| u.to_string().contains("exported as `f`")),
        "{r:?}"
    );
}

#[test]
fn a_signature_change_of_a_function_in_a_table_is_refused() {
    let old = r#"(module (table 1 funcref) (elem (i32.const 0) $f)
        (func $f (param i32) (result i32) local.get 0))"#;
    let new = r#"(module (table 1 funcref) (elem (i32.const 0) $f)
        (func $f (param i64) (result i32) local.get 0 i32.wrap_i64))"#;
    let r = refusals(diff_wat(old, new, &opts()));
    assert!(
        r.iter()
            .any(|u| u.to_string().contains("element segment 0")),
        "{r:?}"
    );
}

#[test]
fn a_data_change_is_refused_naming_the_segment() {
    let r = refusals(diff_case("data", &opts()));
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(matches!(&r[0], Unpatchable::Data { index: 0, name: Some(n), .. } if n == "greeting"));
    let msg = r[0].to_string();
    assert!(msg.contains("data segment 0 (`greeting`)"), "{msg}");
}

#[test]
fn identical_modules_are_refused() {
    assert_eq!(
        diff_case("identical", &opts()).unwrap_err(),
        DiffError::NoChange
    );
    let m = guest("counter", "old");
    let e = diff(&m, &m, &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no function changed: the two modules are identical as far as a patch is concerned"
    );
}

#[test]
fn callbacks_are_carried_and_their_helpers_added() {
    let o = DiffOptions {
        callbacks: vec![
            (CallbackKind::PostPatch, "post_patch".into()),
            (CallbackKind::PrePatch, "pre_patch".into()),
        ],
        ..opts()
    };
    let b = diff_case("callbacks", &o).unwrap();
    assert_eq!(
        names(&b),
        [
            ("add".to_string(), "log_ok".to_string()),
            ("replace".to_string(), "work".to_string()),
        ]
    );
    let kinds: Vec<_> = b
        .callbacks()
        .iter()
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (CallbackKind::PrePatch, "pre_patch"),
            (CallbackKind::PostPatch, "post_patch")
        ]
    );
    // post_patch calls log_ok by its added index (target has 1 function).
    assert_eq!(
        calls_in(&b.callback(CallbackKind::PostPatch).unwrap().body),
        [1]
    );
    // Without the callback options, pre_patch and post_patch are additions.
    let plain = diff_case("callbacks", &opts()).unwrap();
    assert_eq!(plain.entries().len(), 4);
}

#[test]
fn callback_options_are_checked() {
    let missing = DiffOptions {
        callbacks: vec![(CallbackKind::PrePatch, "nope".into())],
        ..opts()
    };
    match diff_case("callbacks", &missing) {
        Err(DiffError::Option(m)) => assert!(m.contains("--pre-patch `nope`"), "{m}"),
        other => panic!("{other:?}"),
    }
    let wrong_type = DiffOptions {
        callbacks: vec![(CallbackKind::PreUnpatch, "add".into())],
        ..opts()
    };
    match diff_case("shifted", &wrong_type) {
        Err(DiffError::Option(m)) => assert!(m.contains("() -> i32"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_removed_function_nobody_uses_is_left_in_place() {
    let out = diff(&guest("removed", "old"), &guest("removed", "new"), &opts()).unwrap();
    assert_eq!(
        names(&out.bundle),
        [("replace".to_string(), "round".to_string())]
    );
    assert_eq!(out.notes.len(), 1);
    assert!(out.notes[0].contains("`legacy_round`"));
}

#[test]
fn a_removed_function_still_in_a_table_is_refused() {
    let old = r#"(module (table 2 funcref) (elem (i32.const 0) $a $b)
        (func $a (result i32) i32.const 1) (func $b (result i32) i32.const 2)
        (func $c (export "c") (result i32) i32.const 3))"#;
    let new = r#"(module (table 2 funcref) (elem (i32.const 0) $a $a)
        (func $a (result i32) i32.const 1)
        (func $c (export "c") (result i32) i32.const 4))"#;
    let r = refusals(diff_wat(old, new, &opts()));
    let msgs: Vec<String> = r.iter().map(|u| u.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("function `b` was removed") && m.contains("element segment 0")),
        "{msgs:?}"
    );
}

/// rustc's legacy mangling of `bank::Waived::charge` with symbol hash `h`
/// (16 hex digits).
fn charge(h: &str) -> String {
    format!("_ZN4bank6Waived6charge17h{h}E")
}

#[test]
fn a_function_renamed_only_by_rustcs_hash_is_the_same_function() {
    // An impl declared above another shifts rustc's disambiguators, so the
    // symbol hash of an unchanged method changes: it is still the function
    // the table holds, replaced when its body changed, left alone if not.
    let module = |h: &str, k: i32| {
        format!(
            r#"(module (table 1 funcref) (elem (i32.const 0) ${c})
            (func ${c} (result i32) i32.const {k})
            (func $run (export "run") (result i32) (call_indirect (result i32) (i32.const 0))))"#,
            c = charge(h)
        )
    };
    let (a, b) = ("1111111111111111", "2222222222222222");
    let bundle = diff_wat(&module(a, 1), &module(b, 2), &opts()).unwrap();
    assert_eq!(bundle.entries().len(), 1);
    let e = &bundle.entries()[0];
    assert_eq!(e.kind, EntryKind::Replace { target_index: 0 });
    assert_eq!(e.name, charge(b));
    // Unchanged apart from the hash: nothing to patch (and nothing refused).
    assert_eq!(
        diff_wat(&module(a, 1), &module(b, 1), &opts()).unwrap_err(),
        DiffError::NoChange
    );
}

#[test]
fn functions_sharing_a_name_but_for_the_hash_are_not_guessed() {
    // Two instances of one generic function differ only by the hash: when
    // both change hash, which is which cannot be told, so neither pairs and
    // the table's references to the old ones are refused as before.
    let module = |h1: &str, h2: &str| {
        format!(
            r#"(module (table 2 funcref) (elem (i32.const 0) ${x} ${y})
            (func ${x} (result i32) i32.const 1)
            (func ${y} (result i32) i32.const 2)
            (func $run (export "run") (result i32) (call_indirect (result i32) (i32.const 0))))"#,
            x = charge(h1),
            y = charge(h2)
        )
    };
    let old = module("1111111111111111", "2222222222222222");
    let new = module("3333333333333333", "4444444444444444");
    let msgs: Vec<String> = refusals(diff_wat(&old, &new, &opts()))
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("was removed") && m.contains("element segment 0")),
        "{msgs:?}"
    );
}

#[test]
fn a_closure_removed_and_another_added_are_not_paired() {
    // Legacy mangling gives every closure of `bank::worker` the path
    // `bank::worker::{{closure}}`: the old closure, still in the table
    // (a live `Box<dyn Fn>` may point at it), is not the new one, whose
    // captures differ; it stays refused as removed.
    let closure = |h: &str| format!("_ZN4bank6worker28_$u7b$$u7b$closure$u7d$$u7d$17h{h}E");
    let module = |h: &str, k: i32| {
        format!(
            r#"(module (table 1 funcref) (elem (i32.const 0) ${c})
            (func ${c} (param i32) (result i32) (i32.load offset={k} (local.get 0)))
            (func $run (export "run") (result i32)
              (call_indirect (param i32) (result i32) (i32.const 8) (i32.const 0)))
            (memory 1))"#,
            c = closure(h)
        )
    };
    assert_eq!(
        names::readable(&closure("1111111111111111")),
        "bank::worker::{{closure}}"
    );
    let old = module("1111111111111111", 0);
    let new = module("2222222222222222", 4);
    let msgs: Vec<String> = refusals(diff_wat(&old, &new, &opts()))
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("was removed") && m.contains("element segment 0")),
        "{msgs:?}"
    );
}

#[test]
fn a_removed_exported_function_is_refused() {
    let old = r#"(module (func $a (export "a") (result i32) i32.const 1)
        (func $c (export "c") (result i32) i32.const 3))"#;
    let new = r#"(module (func $c (export "c") (result i32) i32.const 4))"#;
    let r = refusals(diff_wat(old, new, &opts()));
    let msgs: Vec<String> = r.iter().map(|u| u.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("function `a` was removed") && m.contains("export `a`")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("export `a` changed: it was removed")),
        "{msgs:?}"
    );
}

/// One pair per thing a function-level patch cannot carry; each message
/// must name the item.
#[test]
fn what_a_function_patch_cannot_carry_is_refused_by_name() {
    let f = r#"(func $f (export "f") (result i32) i32.const 1)"#;
    let g = r#"(func $f (export "f") (result i32) i32.const 2)"#;
    let cases: &[(&str, &str, &str)] = &[
        (
            "(global $limit i32 (i32.const 10))",
            "(global $limit i32 (i32.const 20))",
            "global 0 (`limit`) changed: its initial value changed",
        ),
        (
            "(global $limit i32 (i32.const 10))",
            "(global $limit (mut i32) (i32.const 10))",
            "global 0 (`limit`) changed: its type changed",
        ),
        (
            "(global $limit i32 (i32.const 10))",
            "(global $limit i32 (i32.const 10)) (global $more i32 (i32.const 1))",
            "global 1 (`more`) changed: it was added",
        ),
        (
            "(memory 1)",
            "(memory 2)",
            "memory 0 changed: limits changed from min 1 max none to min 2 max none",
        ),
        ("(memory 1 4)", "(memory 1 5)", "memory 0 changed"),
        ("(table 1 funcref)", "(table 2 funcref)", "table 0 changed"),
        (
            "",
            r#"(import "env" "log" (func (param i32)))"#,
            "imports changed: import `env`.`log` was added",
        ),
        (
            r#"(import "env" "log" (func (param i32)))"#,
            r#"(import "env" "log" (func (param i64)))"#,
            "imports changed: import `env`.`log` changed its type",
        ),
        (
            r#"(import "env" "mem" (memory 1))"#,
            r#"(import "env" "mem" (memory 2))"#,
            "imports changed: import `env`.`mem` changed its type",
        ),
        (
            "(func $s)",
            "(func $s) (start $s)",
            "start function changed: `s` became the start function",
        ),
        (
            "(func $s) (func $t) (start $s)",
            "(func $s) (func $t) (start $t)",
            "start function changed: it was `s` and is now `t`",
        ),
        (
            "(table 2 funcref) (func $s) (func $t) (elem (i32.const 0) $s)",
            "(table 2 funcref) (func $s) (func $t) (elem (i32.const 0) $t)",
            "element segment 0 changed",
        ),
        (
            "(table 2 funcref) (func $s) (elem (i32.const 0) $s)",
            "(table 2 funcref) (func $s) (elem (i32.const 1) $s)",
            "element segment 0 changed",
        ),
        (
            "(func $s)",
            r#"(func $s (export "s"))"#,
            "export `s` changed: it was added",
        ),
        (
            r#"(func $s) (func $t) (export "x" (func $s))"#,
            r#"(func $s) (func $t) (export "x" (func $t))"#,
            "export `x` changed: it exported `s` and now exports `t`",
        ),
        (
            "(memory 1) (data (i32.const 0) \"ab\")",
            "(memory 1) (data (i32.const 8) \"ab\")",
            "data segment 0 changed: its memory or offset changed",
        ),
        (
            "(memory 1)",
            "(memory 1) (data (i32.const 0) \"x\")",
            "data segment 0 changed: it was added",
        ),
        (
            "(tag $e (param i32))",
            "(tag $e (param i64))",
            "tag 0 changed: its type changed",
        ),
    ];
    for (old_extra, new_extra, expected) in cases {
        // Imports must come first in the text format.
        let (old, new) = if old_extra.contains("import") || new_extra.contains("import") {
            (
                format!("(module {old_extra} {f})"),
                format!("(module {new_extra} {g})"),
            )
        } else {
            (
                format!("(module {f} {old_extra})"),
                format!("(module {g} {new_extra})"),
            )
        };
        let r = refusals(diff_wat(&old, &new, &opts()));
        let msgs: Vec<String> = r.iter().map(|u| u.to_string()).collect();
        assert!(
            msgs.iter().any(|m| m.contains(expected)),
            "{old} → {new}: expected `{expected}` in {msgs:?}"
        );
    }
}

#[test]
fn all_refusals_are_reported_together() {
    let old = r#"(module (memory 1) (global $g i32 (i32.const 1)) (data $d (i32.const 0) "a")
        (func $f (export "f") (result i32) i32.const 1))"#;
    let new = r#"(module (memory 2) (global $g i32 (i32.const 2)) (data $d (i32.const 0) "b")
        (func $f (export "f") (result i32) i32.const 2))"#;
    let e = diff_wat(old, new, &opts()).unwrap_err();
    let msg = e.to_string();
    for part in ["memory 0", "global 0 (`g`)", "data segment 0 (`d`)"] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn declarative_segments_may_change_for_new_references() {
    let old = r#"(module (func $f (export "f") (result funcref) ref.null func))"#;
    let new = r#"(module (func $f (export "f") (result funcref) ref.func $g)
        (func $g (result i32) i32.const 7) (elem declare func $g))"#;
    let b = diff_wat(old, new, &opts()).unwrap();
    assert_eq!(names(&b).len(), 2);
    // The bundle declares the reference itself and validates.
    wasmparser::validate(&b.to_bytes()).unwrap();
}

#[test]
fn unnamed_functions_match_by_index_only_when_the_count_is_unchanged() {
    // `wat` names functions from `$ids`; without ids there are no names.
    let old = r#"(module (func (result i32) i32.const 1) (func (result i32) i32.const 2))"#;
    let new = r#"(module (func (result i32) i32.const 1) (func (result i32) i32.const 3))"#;
    let b = diff_wat(old, new, &opts()).unwrap();
    assert_eq!(names(&b), [("replace".to_string(), "func[1]".to_string())]);
    assert_eq!(b.entries()[0].kind, EntryKind::Replace { target_index: 1 });

    let grown = r#"(module (func (result i32) i32.const 1) (func (result i32) i32.const 3)
        (func (result i32) i32.const 4))"#;
    let r = refusals(diff_wat(old, grown, &opts()));
    assert!(r.iter().all(|u| matches!(u, Unpatchable::Unmatched(_))));
    assert!(r[0].to_string().contains("no name"), "{r:?}");
}

#[test]
fn export_names_are_the_fallback_key() {
    // No name section: functions are matched through their exports even
    // though the new build inserts one before them.
    let old = r#"(module (func (export "a") (result i32) i32.const 1)
        (func (export "b") (result i32) i32.const 2))"#;
    let new = r#"(module (func (export "z") (result i32) i32.const 0)
        (func (export "a") (result i32) i32.const 1)
        (func (export "b") (result i32) i32.const 5))"#;
    // `z` is a new export, which is refused; but matching worked: `b` is the
    // only changed function.
    let r = refusals(diff_wat(old, new, &opts()));
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].to_string().contains("export `z`"));
}

#[test]
fn options_end_up_in_the_bundle() {
    let o = DiffOptions {
        name: "fix-42".into(),
        description: "increment by one".into(),
        created_by: "tests".into(),
        created_at: 1_700_000_000,
        replace: true,
        all_immediate: true,
        states: vec!["7:2".parse().unwrap()],
        requires: vec!["3:1".parse().unwrap()],
        sits_on: vec!["ab".repeat(32).parse().unwrap()],
        ..opts()
    };
    let b = diff_case("counter", &o).unwrap();
    let m = b.metadata();
    assert_eq!(
        (m.name.as_str(), m.description.as_str()),
        ("fix-42", "increment by one")
    );
    assert_eq!(
        (m.created_by.as_str(), m.created_at),
        ("tests", 1_700_000_000)
    );
    assert!(b.replace() && b.immediate());
    assert_eq!(b.states()[0].to_string(), "7:2");
    assert_eq!(b.requires_states()[0].to_string(), "3:1");
    assert_eq!(b.sits_on()[0].to_string(), "ab".repeat(32));
}

#[test]
fn invalid_input_modules_are_reported_by_side() {
    let good = guest("counter", "old");
    match diff(b"not wasm", &good, &opts()) {
        Err(DiffError::Module { side, .. }) => assert_eq!(side, patch_format::Side::Old),
        other => panic!("{other:?}"),
    }
    match diff(&good, &good[..good.len() - 3], &opts()) {
        Err(DiffError::Module { side, .. }) => assert_eq!(side, patch_format::Side::New),
        other => panic!("{other:?}"),
    }
}
