//! Diff on what real toolchains produce: identical function types,
//! mangled names, relocation sections (issue 12).

mod common;

use common::*;
use patch_format::{DiffOptions, EntryKind};

fn opts() -> DiffOptions {
    DiffOptions::default()
}

#[test]
fn a_replacement_keeps_its_own_type_among_identical_types() {
    // Issue 12, item 10: `a` uses the second of two identical types; a new
    // type makes the type sections differ, so the type map canonicalizes.
    // The replacement must still carry the target's own type index (1), as
    // the bundle's import of `a` does.
    let old = r#"(module (type $t0 (func)) (type $t1 (func))
        (func $a (type $t1) nop) (export "a" (func $a)))"#;
    let new = r#"(module (type $t0 (func)) (type $t1 (func))
        (type $t2 (func (param i32) (result i32)))
        (func $a (type $t1) i32.const 1 call $h drop)
        (func $h (type $t2) local.get 0)
        (export "a" (func $a)))"#;
    let b = diff_wat(old, new, &opts()).unwrap();
    let a = b.entry("a").unwrap();
    assert_eq!(a.kind, EntryKind::Replace { target_index: 0 });
    assert_eq!(a.type_index, 1);
    let h = b.entry("h").unwrap();
    assert_eq!(h.kind, EntryKind::Add { new_index: 1 });
    assert_eq!(calls_in(&a.body), [1]);
}

/// Two Rust-style builds: `worker` changes; two instances of a generic
/// `get` share a path and differ only in their hashes.
const MANGLED_OLD: &str = r#"(module
    (func $_ZN6orders6worker17hc812e9934cf5c14eE (export "worker") (result i32) i32.const 1)
    (func $_ZN6orders3get17h0000000000000001E (result i32) i32.const 2)
    (func $_ZN6orders3get17h0000000000000002E (result i32) i32.const 3))"#;
const MANGLED_NEW: &str = r#"(module
    (func $_ZN6orders6worker17hc812e9934cf5c14eE (export "worker") (result i32) i32.const 10)
    (func $_ZN6orders3get17h0000000000000001E (result i32) i32.const 20)
    (func $_ZN6orders3get17h0000000000000002E (result i32) i32.const 30))"#;

#[test]
fn immediate_accepts_the_demangled_path_and_entries_keep_raw_names() {
    let o = DiffOptions {
        immediate: vec!["orders::worker".into()],
        ..opts()
    };
    let b = diff_wat(MANGLED_OLD, MANGLED_NEW, &o).unwrap();
    let w = b.entry("_ZN6orders6worker17hc812e9934cf5c14eE").unwrap();
    assert!(w.immediate);
    let g = b.entry("_ZN6orders3get17h0000000000000001E").unwrap();
    assert!(!g.immediate);
    // The raw name and the path with its hash work too.
    for q in [
        "_ZN6orders6worker17hc812e9934cf5c14eE",
        "orders::worker::hc812e9934cf5c14e",
    ] {
        let o = DiffOptions {
            immediate: vec![q.into()],
            ..opts()
        };
        let b = diff_wat(MANGLED_OLD, MANGLED_NEW, &o).unwrap();
        assert!(
            b.entry("_ZN6orders6worker17hc812e9934cf5c14eE")
                .unwrap()
                .immediate
        );
    }
}

#[test]
fn a_path_that_names_several_functions_is_refused_with_their_raw_names() {
    let o = DiffOptions {
        immediate: vec!["orders::get".into()],
        ..opts()
    };
    let e = diff_wat(MANGLED_OLD, MANGLED_NEW, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("names 2 functions"), "{e}");
    assert!(e.contains("_ZN6orders3get17h0000000000000001E"), "{e}");
    assert!(e.contains("_ZN6orders3get17h0000000000000002E"), "{e}");
}

#[test]
fn refusals_show_demangled_names() {
    // `worker` is gone from the new build while the old export uses it.
    let new = r#"(module
        (func $_ZN6orders5other17h1111111111111111E (export "worker") (result i32) i32.const 10)
        (func $_ZN6orders3get17h0000000000000001E (result i32) i32.const 20)
        (func $_ZN6orders3get17h0000000000000002E (result i32) i32.const 30))"#;
    let e = diff_wat(MANGLED_OLD, new, &opts()).unwrap_err().to_string();
    assert!(e.contains("`orders::worker`"), "{e}");
    assert!(e.contains("`orders::other`"), "{e}");
    assert!(!e.contains("_ZN6orders6worker"), "{e}");
}
