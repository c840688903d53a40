//! Bundle-owned data (FORMAT.md §9): the version-2 manifest fields, what a
//! reader refuses, and resolution at a chosen address.

mod common;

use common::*;
use patch_format::{
    Bundle, BundleBuilder, BundleData, CodeSite, DataObject, DataReloc, Entry, EntryKind,
    FormatError, FuncType, ModuleHash, RelocTarget, SiteKind, TargetInterface,
};

const TARGET: &str = r#"(module (type (func)) (memory 1 4) (table 1 funcref)
    (func $f) (export "f" (func $f)))"#;

/// `i32.const <padded 0>; drop` then `i32.const 0; i32.load offset=<padded 0>; drop`.
fn body() -> Vec<u8> {
    vec![
        0, // no locals
        0x41, 0x80, 0x80, 0x80, 0x80, 0x00, 0x1a, // i32.const (site at 2), drop
        0x41, 0x00, 0x28, 0x02, 0x80, 0x80, 0x80, 0x80, 0x00, 0x1a, // i32.load (site at 12)
        0x0b,
    ]
}

fn object(name: &str, size: u32, init: Option<Vec<u8>>, relocs: Vec<DataReloc>) -> DataObject {
    DataObject {
        name: name.into(),
        align_log2: 2,
        size,
        init,
        relocs,
    }
}

fn sample() -> BundleData {
    BundleData {
        objects: vec![
            object(
                "msg",
                8,
                Some(b"abcd\0\0\0\0".to_vec()),
                vec![DataReloc {
                    offset: 4,
                    target: RelocTarget::Object {
                        index: 1,
                        addend: 2,
                    },
                }],
            ),
            object("COUNTER", 8, None, vec![]),
            object(
                "vtable",
                4,
                Some(vec![0; 4]),
                vec![DataReloc {
                    offset: 0,
                    target: RelocTarget::TableEntry(0),
                }],
            ),
        ],
        table_entries: vec![0],
        sites: vec![
            CodeSite {
                function: 0,
                offset: 2,
                kind: SiteKind::I32Const,
                target: RelocTarget::Object {
                    index: 0,
                    addend: 0,
                },
            },
            CodeSite {
                function: 0,
                offset: 12,
                kind: SiteKind::MemArgOffset,
                target: RelocTarget::Object {
                    index: 1,
                    addend: 4,
                },
            },
        ],
    }
}

fn build(target: &str, data: BundleData) -> Result<Bundle, FormatError> {
    build_with(target, data, body())
}

fn build_with(target: &str, data: BundleData, body: Vec<u8>) -> Result<Bundle, FormatError> {
    let old = wat::parse_str(target).unwrap();
    let mut b = BundleBuilder::new(
        ModuleHash::of(&old),
        TargetInterface::from_module(&old).unwrap(),
    );
    b.entry(Entry {
        kind: EntryKind::Replace { target_index: 0 },
        name: "f".into(),
        type_index: 0,
        ty: FuncType::new([], []),
        immediate: false,
        body,
    });
    b.data(data);
    b.build()
}

/// The manifest's version field of a bundle.
fn version(b: &Bundle) -> u8 {
    let mut v = None;
    with_manifest(b.unsigned_bytes(), |m| v = Some(m[4]));
    v.unwrap()
}

#[test]
fn data_round_trips_and_only_bundles_with_data_are_version_2() {
    let b = build(TARGET, sample()).unwrap();
    assert_eq!(version(&b), 2);
    let again = Bundle::parse(&b.to_bytes()).unwrap();
    assert_eq!(again.data(), &sample());
    assert_eq!(again.bundle_id(), b.bundle_id());
    let code_only = build(TARGET, BundleData::default()).unwrap();
    assert_eq!(version(&code_only), 1, "readable by version-1 readers");
}

#[test]
fn a_reader_that_knows_only_version_1_refuses_data_clearly() {
    // What a version-1 reader sees: a version it does not know. The same
    // bundle claiming version 1 has fields a version-1 manifest cannot hold.
    let b = build(TARGET, sample()).unwrap();
    let as_v3 = with_manifest(b.unsigned_bytes(), |m| m[4] = 3);
    assert!(matches!(
        Bundle::parse(&as_v3),
        Err(FormatError::UnsupportedVersion { found: 3, .. })
    ));
    let as_v1 = with_manifest(b.unsigned_bytes(), |m| m[4] = 1);
    let e = Bundle::parse(&as_v1).unwrap_err().to_string();
    assert!(e.contains("trailing bytes"), "{e}");
}

fn refused(data: BundleData) -> String {
    build(TARGET, data).unwrap_err().to_string()
}

#[test]
fn a_relocation_out_of_its_object_is_refused() {
    // The field itself lies past the object's end.
    let mut d = sample();
    d.objects[0].relocs[0].offset = 6;
    let e = refused(d);
    assert!(
        e.contains("objects[0].relocs[0]") && e.contains("out of its object"),
        "{e}"
    );
    // The field points past the end of its target.
    let mut d = sample();
    d.objects[0].relocs[0].target = RelocTarget::Object {
        index: 1,
        addend: 9,
    };
    let e = refused(d);
    assert!(
        e.contains("9 bytes into object 1") && e.contains("out of its object"),
        "{e}"
    );
    // At an object that does not exist, or a table entry that does not.
    let mut d = sample();
    d.objects[0].relocs[0].target = RelocTarget::Object {
        index: 7,
        addend: 0,
    };
    assert!(refused(d).contains("points at object 7, but the bundle has 3"));
    let mut d = sample();
    d.sites[0].target = RelocTarget::TableEntry(1);
    assert!(refused(d).contains("names table entry 1, but the bundle has 1"));
    // Initial bytes that are not the object's size.
    let mut d = sample();
    d.objects[1].init = Some(vec![0; 3]);
    assert!(refused(d).contains("3 initial bytes for a size of 8"));
    // A zero object cannot hold relocations.
    let mut d = sample();
    d.objects[0].init = None;
    assert!(refused(d).contains("zero-initialised object has relocations"));
}

#[test]
fn a_site_must_be_an_immediate_of_its_kind() {
    for (offset, kind, why) in [
        (1, SiteKind::I32Const, "does not hold a 5-byte LEB"),
        (12, SiteKind::I32Const, "not the immediate of an i32.const"),
        (
            2,
            SiteKind::MemArgOffset,
            "not the immediate of a load or store",
        ),
        (40, SiteKind::I32Const, "out of the function's body"),
    ] {
        let mut d = sample();
        d.sites = vec![CodeSite {
            function: 0,
            offset,
            kind,
            target: RelocTarget::TableEntry(0),
        }];
        let e = refused(d);
        assert!(e.contains("sites[0]") && e.contains(why), "{offset}: {e}");
    }
    let mut d = sample();
    d.sites[1].function = 1;
    assert!(refused(d).contains("names function 1, but the bundle has 1"));
    let mut d = sample();
    d.sites.swap(0, 1);
    assert!(refused(d).contains("ordered by function and offset"));
}

#[test]
fn data_needs_a_memory_and_table_entries_a_funcref_table() {
    let no_memory = r#"(module (type (func)) (table 1 funcref) (func $f) (export "f" (func $f)))"#;
    let mut d = sample();
    d.sites.clear();
    let e = build_with(no_memory, d, vec![0, 0x0b])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no memory"), "{e}");
    let no_table = r#"(module (type (func)) (memory 1) (func $f) (export "f" (func $f)))"#;
    let mut d = sample();
    d.objects.truncate(2);
    let e = build(no_table, d).unwrap_err().to_string();
    assert!(e.contains("no funcref table 0"), "{e}");
    let mut d = sample();
    d.table_entries = vec![5];
    assert!(refused(d).contains("function 5, but the patched module has 1"));
    // Objects that cannot fit in a 32-bit memory.
    let mut d = sample();
    d.objects.push(object("huge", u32::MAX, None, vec![]));
    assert!(refused(d).contains("do not fit in a 32-bit memory"));
}

#[test]
fn resolving_writes_the_final_addresses_into_code_and_data() {
    let b = build(TARGET, sample()).unwrap();
    let (offsets, total) = b.data().layout().unwrap();
    assert_eq!((offsets.as_slice(), total), (&[0, 8, 16][..], 32));
    let base = 0x2_0000;
    let r = b.resolved(base, 5).unwrap();
    let body = &r.entries()[0].body;
    let mut rd = wasmparser::BinaryReader::new(&body[2..7], 0);
    assert_eq!(rd.read_var_i32().unwrap() as u32, base);
    let mut rd = wasmparser::BinaryReader::new(&body[12..17], 0);
    assert_eq!(rd.read_var_u32().unwrap(), base + 8 + 4);
    assert_eq!(r.data(), b.data(), "same data, other code");
    let img = b.data().image(base, 5).unwrap();
    assert_eq!(img.len(), 32);
    assert_eq!(&img[..4], b"abcd");
    assert_eq!(img[4..8], (base + 8 + 2).to_le_bytes());
    assert_eq!(img[8..16], [0; 8]);
    assert_eq!(img[16..20], 5u32.to_le_bytes());
    // A base where the data would pass 4 GiB.
    assert!(b.resolved(u32::MAX - 16, 0).is_err());
}

#[test]
fn mutated_data_manifests_never_panic_the_reader() {
    let b = build(TARGET, sample()).unwrap();
    let mut len = 0;
    with_manifest(b.unsigned_bytes(), |m| len = m.len());
    let mut seed = 0x9e37_79b9_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for _ in 0..2000 {
        let at = next() as usize % len;
        let v = next() as u8;
        let m = with_manifest(b.unsigned_bytes(), |m| m[at] = v);
        if let Ok(p) = Bundle::parse(&m) {
            // Whatever parses also resolves or says why not.
            let _ = p.resolved(0x1_0000, 1);
            let _ = p.data().image(0x1_0000, 1);
        }
    }
}
