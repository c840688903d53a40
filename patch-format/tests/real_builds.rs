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

// ---------------------------------------------------------------------------
// The `bank` service (guests/service), built with --emit-relocs.

use patch_format::names::readable;
use patch_format::{diff, DiffError, DiffOutcome, Unpatchable};

fn rev(n: u32) -> Vec<u8> {
    let path = format!(
        "{}/../guests/built/service/r{n}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn diff_revs(a: u32, b: u32, o: &DiffOptions) -> Result<DiffOutcome, DiffError> {
    diff(&rev(a), &rev(b), o)
}

fn carried(o: &DiffOutcome) -> Vec<String> {
    o.bundle
        .entries()
        .iter()
        .map(|e| readable(&e.name))
        .collect()
}

/// `bytes` without its `linking` and `reloc.*` custom sections.
fn strip_relocs(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes[..8].to_vec();
    for p in wasmparser::Parser::new(0).parse_all(bytes) {
        let p = p.unwrap();
        if let Some((id, range)) = p.as_section() {
            if let wasmparser::Payload::CustomSection(c) = &p {
                if c.name() == "linking" || c.name().starts_with("reloc.") {
                    continue;
                }
            }
            let body = &bytes[range.start as usize..range.end as usize];
            out.push(id);
            let mut n = body.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                out.push(if n > 0 { byte | 0x80 } else { byte });
                if n == 0 {
                    break;
                }
            }
            out.extend_from_slice(body);
        }
    }
    out
}

#[test]
fn a_code_fix_in_a_real_build_carries_the_inlining_callers_and_leaves_line_only_ones_out() {
    // r1 adds an overdraft check to `move_money`, inlined into `step` and
    // into the export `transfer`; the three added lines move the panic
    // locations of `balance` below them, and nothing else of `balance`.
    let o = diff_revs(0, 1, &opts()).unwrap();
    assert!(o.relocations);
    assert_eq!(
        carried(&o),
        ["bank::try_overdraft", "bank::step", "transfer"]
    );
    let left: Vec<String> = o.line_only.iter().map(|n| readable(n)).collect();
    assert_eq!(left, ["balance"]);
}

#[test]
fn the_same_pair_without_relocations_is_refused_with_how_to_rebuild() {
    let e = diff(&strip_relocs(&rev(0)), &strip_relocs(&rev(1)), &opts()).unwrap_err();
    let DiffError::Unpatchable(list) = &e else {
        panic!("{e}")
    };
    assert!(matches!(&list[0], Unpatchable::Data { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("-C link-arg=--emit-relocs"), "{text}");
    assert!(text.contains("-Wl,--emit-relocs"), "{text}");
}

#[test]
fn lines_shifted_above_unchanged_functions_leave_them_out_and_a_flag_takes_them_in() {
    let o = diff_revs(1, 2, &opts()).unwrap();
    assert_eq!(carried(&o), ["transfer"]);
    assert_eq!(o.line_only.len(), 1);
    assert!(
        o.bundle.data().is_empty(),
        "moved locations pair with the old ones"
    );
    // Taken in, `balance` carries its new location: a 16-byte object
    // whose file-name pointer is the running instance's string.
    let with = DiffOptions {
        include_line_only: true,
        ..opts()
    };
    let o = diff_revs(1, 2, &with).unwrap();
    assert_eq!(carried(&o), ["balance", "transfer"]);
    let objects = &o.bundle.data().objects;
    assert!(!objects.is_empty());
    for obj in objects {
        assert_eq!(obj.size, 16, "a core::panic::Location");
        assert!(obj.relocs.is_empty(), "the file name exists in the target");
    }
}

/// `(readable name, size, initial bytes)` of every carried object.
fn objects(o: &DiffOutcome) -> Vec<(String, u32, Option<Vec<u8>>)> {
    o.bundle
        .data()
        .objects
        .iter()
        .map(|d| (readable(&d.name), d.size, d.init.clone()))
        .collect()
}

#[test]
fn a_new_string_and_static_are_carried_as_bundle_data() {
    // r3: `move_money` (inlined into three functions) keeps the reason of
    // a refusal, a new string, in a new static.
    let o = diff_revs(2, 3, &opts()).unwrap();
    assert_eq!(
        carried(&o),
        ["bank::try_overdraft", "bank::step", "transfer"]
    );
    let objs = objects(&o);
    let strings: Vec<&[u8]> = objs.iter().filter_map(|o| o.2.as_deref()).collect();
    assert!(strings.contains(&&b"insufficient funds"[..]), "{objs:?}");
    assert!(strings.contains(&&b"negative amount"[..]), "{objs:?}");
    assert!(
        objs.contains(&("bank::LAST_REFUSAL".into(), 8, None)),
        "a zero static: {objs:?}"
    );
    assert_eq!(objs.len(), 3, "each object once, however many users");
    let d = o.bundle.data();
    assert!(d.table_entries.is_empty());
    for f in 0..3 {
        assert!(
            d.sites.iter().any(|s| s.function == f),
            "function {f} has sites"
        );
    }
    // r4: refusals counted in a new static, zero-initialised.
    let o = diff_revs(2, 4, &opts()).unwrap();
    assert_eq!(objects(&o), [("bank::REFUSED".into(), 8, None)]);
    assert_eq!(o.bundle.data().sites.len(), 3);
}

#[test]
fn statics_that_moved_do_not_make_their_users_changed() {
    // r5 removes `balance`'s panic location: every static moves down 16
    // bytes; `step`, `transfer`, `total`, `worker` differ only in addresses.
    let o = diff_revs(1, 5, &opts()).unwrap();
    assert_eq!(carried(&o), ["balance"]);
}

#[test]
fn corrupted_linking_and_relocation_sections_never_panic_diff() {
    let (old, new) = (rev(0), rev(1));
    // File ranges of the new build's linking and reloc.* sections.
    let mut ranges = Vec::new();
    for p in wasmparser::Parser::new(0).parse_all(&new) {
        if let wasmparser::Payload::CustomSection(c) = p.unwrap() {
            if c.name() == "linking" || c.name().starts_with("reloc.") {
                let start = c.data_offset() as usize;
                let r = start..start + c.data().len();
                ranges.push(r);
            }
        }
    }
    assert_eq!(ranges.len(), 3);
    let mut seed = 0x2545_f491_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for _ in 0..600 {
        let mut m = new.clone();
        let r = &ranges[next() as usize % ranges.len()];
        let at = r.start + next() as usize % (r.end - r.start);
        m[at] = next() as u8;
        // Any result but a panic: a bundle, a refusal, or a format error.
        let _ = diff(&old, &m, &opts());
        let _ = diff(&m, &old, &opts());
    }
}

#[test]
fn a_new_function_pointer_becomes_a_table_entry_of_the_bundle() {
    // r9: `fee` calls the new `flat_fee` through a pointer. The linker put
    // `flat_fee` into table 0 (before `worker`: the segment and the table's
    // size changed), which with relocations is live state: the running
    // table keeps `worker` where it is, the bundle appends one entry.
    let o = diff_revs(6, 9, &opts()).unwrap();
    let b = &o.bundle;
    let added = b
        .entries()
        .iter()
        .find(|e| matches!(e.kind, EntryKind::Add { .. }))
        .unwrap();
    assert_eq!(readable(&added.name), "bank::flat_fee");
    assert_eq!(carried(&o), ["bank::flat_fee", "fee"]);
    let d = b.data();
    assert!(d.objects.is_empty());
    assert_eq!(d.table_entries, [added.kind.func_index()]);
    assert_eq!(d.sites.len(), 1);
    // Without relocations the same pair is refused on the table.
    let e = diff(&strip_relocs(&rev(6)), &strip_relocs(&rev(9)), &opts()).unwrap_err();
    assert!(e.to_string().contains("table 0 changed"), "{e}");
}

#[test]
fn each_fix_of_revision_6_carries_what_it_needs_and_nothing_more() {
    for (to, functions, objects) in [
        (
            7,
            &[
                "bank::try_overdraft",
                "bank::step",
                "refusal_reason",
                "transfer",
            ][..],
            3,
        ),
        (
            8,
            &["bank::try_overdraft", "bank::step", "refusals", "transfer"][..],
            1,
        ),
    ] {
        let o = diff_revs(6, to, &opts()).unwrap();
        assert_eq!(carried(&o), functions, "r{to}");
        assert_eq!(o.bundle.data().objects.len(), objects, "r{to}");
        assert!(o.bundle.data().table_entries.is_empty());
        assert_eq!(o.line_only.len(), 1, "`balance` moved below the new lines");
    }
}

#[test]
fn impls_declared_in_another_order_are_no_change() {
    // `d3` is `d2` with its new trait and impls moved above the older
    // impls: rustc renumbers the impls, so two methods get new symbol
    // hashes (the vtables pointing at them too), and nothing else changes.
    let built = |name: &str| {
        let p = format!(
            "{}/../guests/built/service/{name}.wasm",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let (d2, d3) = (built("d2"), built("d3"));
    assert_ne!(d2, d3);
    assert_eq!(diff(&d2, &d3, &opts()).unwrap_err(), DiffError::NoChange);
}
