//! Reading and writing bundles: round trips, the wasm-module property,
//! canonical form, typed errors that name offsets and fields, and
//! signatures.

mod common;

use common::*;
use patch_format::{
    split_signature, Bundle, BundleBuilder, CallbackKind, DiffOptions, Entry, EntryKind,
    FormatError, FuncType, ModuleHash, PublicKey, SecretKey, TargetInterface, TrustedKeys,
    FORMAT_VERSION,
};

#[test]
fn bundles_round_trip_byte_for_byte() {
    for (label, bytes) in sample_bundles() {
        let b = Bundle::parse(&bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(b.to_bytes(), bytes, "{label}");
        assert_eq!(Bundle::parse(&b.to_bytes()).unwrap(), b, "{label}");
    }
}

#[test]
fn a_bundle_is_a_valid_wasm_module_importing_the_target() {
    for (label, bytes) in sample_bundles() {
        wasmparser::validate(&bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        let mut imports = 0;
        for p in wasmparser::Parser::new(0).parse_all(&bytes) {
            if let wasmparser::Payload::ImportSection(r) = p.unwrap() {
                for i in r.into_imports() {
                    assert_eq!(i.unwrap().module, patch_format::TARGET_MODULE);
                    imports += 1;
                }
            }
        }
        assert!(imports > 0, "{label}");
    }
}

#[test]
fn callbacks_are_exports_of_the_bundle_module() {
    let bytes = sample_bundles()
        .into_iter()
        .find(|(l, _)| *l == "callbacks")
        .unwrap()
        .1;
    let mut exports = Vec::new();
    for p in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ExportSection(r) = p.unwrap() {
            for e in r {
                exports.push(e.unwrap().name.to_string());
            }
        }
    }
    assert_eq!(exports, ["wasm-patch:pre-patch", "wasm-patch:post-patch"]);
    let b = Bundle::parse(&bytes).unwrap();
    assert_eq!(
        b.callback(CallbackKind::PrePatch).unwrap().name,
        "pre_patch"
    );
    assert!(b.callback(CallbackKind::PreUnpatch).is_none());
    assert_eq!(b.states()[0].to_string(), "1:2");
}

#[test]
fn the_bundle_id_is_the_hash_of_the_unsigned_bytes_and_survives_signing() {
    let mut b = diff_case("counter", &DiffOptions::default()).unwrap();
    let id = b.bundle_id();
    assert_eq!(id.0, ModuleHash::of(&b.to_bytes()).0);
    b.sign(&test_key());
    assert_eq!(b.bundle_id(), id);
    assert_eq!(Bundle::parse(&b.to_bytes()).unwrap().bundle_id(), id);
    assert_eq!(
        b.unsigned_bytes().len() + 2 + 1 + 20 + 97,
        b.to_bytes().len()
    );
}

#[test]
fn builder_enforces_format_rules() {
    let old = guest("counter", "old");
    let it = TargetInterface::from_module(&old).unwrap();
    let body = vec![0, 0x41, 1, 0x0b]; // no locals, i32.const 1, end
    let entry = |kind| Entry {
        kind,
        name: "f".into(),
        type_index: 0,
        ty: FuncType::new([], []),
        immediate: false,
        body: body.clone(),
    };
    let hash = ModuleHash::of(&old);
    // Type 0 of counter is (i32) -> i32: a body returning a constant without
    // reading its parameter is fine.
    let mut b = BundleBuilder::new(hash, it.clone());
    b.entry(entry(EntryKind::Replace { target_index: 2 }));
    b.set_func_type(2, 0).unwrap();
    let ok = b.build().unwrap();
    assert_eq!(
        ok.entries()[0].ty.params().len(),
        1,
        "ty is derived from type_index"
    );

    let mut b = BundleBuilder::new(hash, it.clone());
    assert!(matches!(b.build(), Err(FormatError::Build(_))));
    b.entry(entry(EntryKind::Add { new_index: 7 }));
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("expected 4"), "{e}");

    // A body that does not validate against the target is refused.
    let mut b = BundleBuilder::new(hash, it.clone());
    let mut bad = entry(EntryKind::Add { new_index: 4 });
    bad.body = vec![0, 0x42, 1, 0x0b]; // i64.const where i32 is expected
    b.entry(bad);
    assert!(matches!(b.build(), Err(FormatError::Invalid { .. })));

    // Replacement type must match the imported (patched) type.
    let mut b = BundleBuilder::new(hash, it);
    b.entry(entry(EntryKind::Replace { target_index: 3 }));
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("imports carry the patched type"), "{e}");
}

#[test]
fn plain_modules_and_garbage_give_typed_errors() {
    assert!(matches!(
        Bundle::parse(b""),
        Err(FormatError::Malformed { offset: 0, .. })
    ));
    assert!(matches!(
        Bundle::parse(b"\0asm\x0d\0\x01\0"),
        Err(FormatError::Malformed { offset: 4, .. })
    ));
    let plain = wat::parse_str("(module (func))").unwrap();
    assert_eq!(Bundle::parse(&plain), Err(FormatError::MissingManifest));
    let importing = wat::parse_str(r#"(module (import "env" "f" (func)))"#).unwrap();
    let e = Bundle::parse(&importing).unwrap_err().to_string();
    assert!(e.contains("imports only from `wasm-patch:target`"), "{e}");
}

fn counter_bytes() -> Vec<u8> {
    diff_case("counter", &DiffOptions::default())
        .unwrap()
        .to_bytes()
}

#[test]
fn an_unknown_version_is_refused_with_its_offset() {
    let bytes = with_manifest(&counter_bytes(), |m| m[4] = 9);
    match Bundle::parse(&bytes) {
        Err(FormatError::UnsupportedVersion {
            found: 9,
            supported,
            offset,
        }) => {
            assert_eq!(supported, FORMAT_VERSION);
            assert_eq!(&bytes[offset as usize - 4..offset as usize], b"WPMF");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn manifest_errors_name_the_field() {
    let base = counter_bytes();
    let field_of = |bytes: Vec<u8>| match Bundle::parse(&bytes) {
        Err(FormatError::Manifest { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    // Truncated right after the target hash (magic 4 + version 1 + hash 32).
    assert_eq!(
        field_of(with_manifest(&base, |m| m.truncate(37))),
        "target_func_count"
    );
    // Unknown flag bit: magic, version, hash, func count, type count, flags.
    assert_eq!(field_of(with_manifest(&base, |m| m[39] = 0x80)), "flags");
    // Trailing bytes.
    assert_eq!(field_of(with_manifest(&base, |m| m.push(0))), "end");
    // A huge name length: rejected before any allocation.
    let e = Bundle::parse(&with_manifest(&base, |m| {
        m.truncate(40);
        put_leb(u32::MAX as u64, m);
    }))
    .unwrap_err();
    assert!(e.to_string().contains("manifest field `name`"), "{e}");
    // Last byte belongs to the last function name: make it invalid UTF-8.
    let e = Bundle::parse(&with_manifest(&base, |m| *m.last_mut().unwrap() = 0xff)).unwrap_err();
    assert!(
        e.to_string().contains("functions[0].name") && e.to_string().contains("UTF-8"),
        "{e}"
    );
}

#[test]
fn extra_sections_and_non_canonical_encodings_are_refused() {
    let base = counter_bytes();
    let mut extra = base.clone();
    extra.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
    let e = Bundle::parse(&extra).unwrap_err().to_string();
    assert!(e.contains("unexpected custom section `abc`"), "{e}");
    // A padded LEB128 in the manifest (version 1 as 0x81 0x00) is valid
    // LEB128 but not canonical.
    let padded = with_manifest(&base, |m| {
        m.splice(4..5, [0x81, 0x00]);
    });
    assert!(matches!(
        Bundle::parse(&padded),
        Err(FormatError::NotCanonical { .. })
    ));
}

#[test]
fn signatures_verify_only_for_the_right_key_and_intact_bytes() {
    let key = test_key();
    let other = SecretKey::from_bytes(&[1; 32]);
    let mut b = diff_case("counter", &DiffOptions::default()).unwrap();
    let unsigned = b.to_bytes();
    b.sign(&key);
    let signed = b.to_bytes();

    let mut trusted = TrustedKeys::new();
    trusted.add(key.public_key());
    let v = trusted.verify(&signed).unwrap();
    assert_eq!(v.signer(), &key.public_key());
    assert_eq!(v.bundle_id(), b.bundle_id());
    assert_eq!(b.verify_signature().unwrap(), &key.public_key());

    assert_eq!(
        trusted.verify(&unsigned).unwrap_err(),
        FormatError::Unsigned
    );
    let mut wrong = TrustedKeys::new();
    wrong.add(other.public_key());
    assert!(matches!(
        wrong.verify(&signed),
        Err(FormatError::UntrustedKey { .. })
    ));
    assert!(matches!(
        TrustedKeys::new().verify(&signed),
        Err(FormatError::UntrustedKey { .. })
    ));

    // Every single changed byte breaks verification, wherever it is.
    for i in 0..signed.len() {
        let mut m = signed.clone();
        m[i] ^= 0x01;
        assert!(trusted.verify(&m).is_err(), "flip at {i} still verifies");
    }
    // Appending or dropping bytes too.
    let mut longer = signed.clone();
    longer.push(0);
    assert!(trusted.verify(&longer).is_err());
    assert!(trusted.verify(&signed[..signed.len() - 1]).is_err());

    // Re-signing a signed bundle with another key replaces the signature.
    b.sign(&other);
    assert!(matches!(
        trusted.verify(&b.to_bytes()),
        Err(FormatError::UntrustedKey { .. })
    ));
}

#[test]
fn a_signature_of_another_bundle_does_not_transfer() {
    let key = test_key();
    let mut a = diff_case("counter", &DiffOptions::default()).unwrap();
    let b = diff_case("shifted", &DiffOptions::default()).unwrap();
    a.sign(&key);
    let (_, sig) = split_signature(&a.to_bytes()).unwrap();
    let mut forged = b.to_bytes();
    let sig_section = &a.to_bytes()[a.unsigned_bytes().len()..];
    forged.extend_from_slice(sig_section);
    assert!(sig.is_some());
    let mut trusted = TrustedKeys::new();
    trusted.add(key.public_key());
    assert!(matches!(
        trusted.verify(&forged),
        Err(FormatError::BadSignature { .. })
    ));
}

#[test]
fn the_signature_section_must_be_last() {
    let mut b = diff_case("counter", &DiffOptions::default()).unwrap();
    b.sign(&test_key());
    let mut bytes = b.to_bytes();
    bytes.extend_from_slice(&[0, 2, 1, b'x']);
    assert!(matches!(
        Bundle::parse(&bytes),
        Err(FormatError::MalformedSignature { .. })
    ));
}

#[test]
fn key_files_round_trip_and_are_not_confused() {
    let key = SecretKey::generate().unwrap();
    let text = key.to_text();
    assert!(text.starts_with("wasm-patch-ed25519-secret-key:"));
    let back = SecretKey::from_text(&text).unwrap();
    assert_eq!(back.public_key(), key.public_key());
    let pubtext = key.public_key().to_text();
    assert_eq!(PublicKey::from_text(&pubtext).unwrap(), key.public_key());
    let e = PublicKey::from_text(&text).unwrap_err().to_string();
    assert!(e.contains("other half"), "{e}");
    assert!(SecretKey::from_text("garbage").is_err());
    assert!(PublicKey::from_text("wasm-patch-ed25519-public-key:abc").is_err());
    assert!(
        !format!("{key:?}").contains(&text[30..]),
        "Debug must not leak the secret"
    );
}
