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
