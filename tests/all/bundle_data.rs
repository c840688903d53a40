//! Bundle data at apply (FORMAT.md §9) on hand-made bundles: new table
//! entries against a table at its maximum and one that can grow, and data
//! that is in place before the pre-patch callback runs.

use patch_format::{
    BundleBuilder, BundleData, Callback, CallbackKind, CodeSite, DataObject, Entry, EntryKind,
    FuncType, ModuleHash, RelocTarget, SiteKind, TargetInterface, ValType,
};
use wasm_patch_runtime::{ApplyOptions, Engine, Linker, Module, PatchError, Store};

/// `f` returns 7 and `g` 9; only `f` is in the table.
fn target(table: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (type $r (func (result i32))) (memory 1) (table {table} funcref)
            (func $f (type $r) i32.const 7) (func $g (type $r) i32.const 9)
            (elem (i32.const 0) $f)
            (export "f" (func $f)) (export "g" (func $g)))"#
    ))
    .unwrap()
}

/// Replaces `f` with a call of `g` through a new table entry; a pre-patch
/// callback returns 0 only if the bundle's object already holds 42.
fn bundle(target: &[u8]) -> Vec<u8> {
    let site = [0x80, 0x80, 0x80, 0x80, 0x00];
    // i32.const <entry 0>; call_indirect (type 0) (table 0)
    let mut f = vec![0, 0x41];
    f.extend(site);
    f.extend([0x11, 0x00, 0x00, 0x0b]);
    // i32.const <object 0>; i32.load; i32.const 42; i32.sub
    let mut cb = vec![0, 0x41];
    cb.extend(site);
    cb.extend([0x28, 0x02, 0x00, 0x41, 0x2a, 0x6b, 0x0b]);
    let mut b = BundleBuilder::new(
        ModuleHash::of(target),
        TargetInterface::from_module(target).unwrap(),
    );
    b.entry(Entry {
        kind: EntryKind::Replace { target_index: 0 },
        name: "f".into(),
        type_index: 0,
        ty: FuncType::new([], [ValType::I32]),
        immediate: false,
        body: f,
    });
    b.callback(Callback {
        kind: CallbackKind::PrePatch,
        name: "check".into(),
        type_index: 0,
        body: cb,
    });
    b.data(BundleData {
        objects: vec![DataObject {
            name: "answer".into(),
            align_log2: 2,
            size: 4,
            init: Some(vec![42, 0, 0, 0]),
            relocs: Vec::new(),
        }],
        table_entries: vec![1],
        sites: vec![
            CodeSite {
                function: 0,
                offset: 2,
                kind: SiteKind::I32Const,
                target: RelocTarget::TableEntry(0),
            },
            CodeSite {
                function: 1,
                offset: 2,
                kind: SiteKind::I32Const,
                target: RelocTarget::Object {
                    index: 0,
                    addend: 0,
                },
            },
        ],
    });
    b.build().unwrap().to_bytes()
}

fn setup(table: &str) -> (Store<()>, wasm_patch_runtime::Instance, Vec<u8>) {
    let bytes = target(table);
    let engine = Engine::default();
    let module = Module::new(&engine, &bytes).unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let b = bundle(&bytes);
    (store, inst, b)
}

fn call_f(store: &mut Store<()>, inst: wasm_patch_runtime::Instance) -> Option<i32> {
    let f = inst.get_func(store, "f").unwrap();
    f.call(store, &[]).unwrap()[0].i32()
}

#[test]
fn a_new_function_pointer_is_appended_to_a_table_that_can_grow() {
    let (mut store, inst, b) = setup("1");
    assert_eq!(call_f(&mut store, inst), Some(7));
    // The callback saw its object initialised (else it vetoes).
    store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call_f(&mut store, inst), Some(9), "through the new entry");
    let p = store.applied()[0].data.clone().unwrap();
    assert_eq!((p.table_base, p.table_entries), (1, 1));
    assert_eq!((p.base, p.pages_grown), (65536, 1));
    assert_eq!(p.objects, [("answer".to_string(), 65536)]);
}

#[test]
fn a_table_at_its_maximum_refuses_new_entries_and_nothing_changes() {
    let (mut store, inst, b) = setup("1 1");
    let e = store.apply(inst, &b, &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(&e, PatchError::Incompatible(m) if m.contains("table 0 cannot take the bundle's 1 new entries")),
        "{e}"
    );
    assert!(store.applied().is_empty());
    assert_eq!(call_f(&mut store, inst), Some(7));
}
