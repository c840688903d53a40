//! Helpers shared by the patch-format integration tests: the WAT pairs of
//! `guests/patches/`, inline pairs, and a few byte-level tools.

#![allow(dead_code)]

use patch_format::{diff, Bundle, DiffError, DiffOptions, Unpatchable};

/// `guests/patches/<case>/<which>.wat`, compiled.
pub fn guest(case: &str, which: &str) -> Vec<u8> {
    let path = format!(
        "{}/../guests/patches/{case}/{which}.wat",
        env!("CARGO_MANIFEST_DIR")
    );
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Diff of a guest pair with options.
pub fn diff_case(case: &str, opts: &DiffOptions) -> Result<Bundle, DiffError> {
    diff(&guest(case, "old"), &guest(case, "new"), opts).map(|o| o.bundle)
}

/// Diff of two inline WAT modules.
pub fn diff_wat(old: &str, new: &str, opts: &DiffOptions) -> Result<Bundle, DiffError> {
    let old = wat::parse_str(old).unwrap();
    let new = wat::parse_str(new).unwrap();
    diff(&old, &new, opts).map(|o| o.bundle)
}

/// The refusal list of a failed diff (panics on anything else).
pub fn refusals(r: Result<Bundle, DiffError>) -> Vec<Unpatchable> {
    match r {
        Err(DiffError::Unpatchable(list)) => list,
        Err(e) => panic!("expected refusals, got error {e}"),
        Ok(b) => panic!("expected refusals, got a bundle with {:?}", names(&b)),
    }
}

/// `(verb, name)` of every entry.
pub fn names(b: &Bundle) -> Vec<(String, String)> {
    b.entries()
        .iter()
        .map(|e| (e.kind.verb().to_string(), e.name.clone()))
        .collect()
}

/// Function indices named by `call` in a body.
pub fn calls_in(body: &[u8]) -> Vec<u32> {
    let fb = wasmparser::FunctionBody::new(wasmparser::BinaryReader::new(body, 0));
    let mut ops = fb.get_operators_reader().unwrap();
    let mut out = Vec::new();
    while !ops.eof() {
        if let wasmparser::Operator::Call { function_index } = ops.read().unwrap() {
            out.push(function_index);
        }
    }
    out
}

/// Sample bundles for byte-level tests: (label, bytes).
pub fn sample_bundles() -> Vec<(&'static str, Vec<u8>)> {
    let opts = DiffOptions {
        name: "sample".into(),
        description: "for tests".into(),
        ..DiffOptions::default()
    };
    let mut out = Vec::new();
    for case in ["counter", "shifted", "signature", "removed"] {
        out.push((case, diff_case(case, &opts).unwrap().to_bytes()));
    }
    let cb = DiffOptions {
        callbacks: vec![
            (patch_format::CallbackKind::PrePatch, "pre_patch".into()),
            (patch_format::CallbackKind::PostPatch, "post_patch".into()),
        ],
        states: vec!["1:2".parse().unwrap()],
        requires: vec!["3:1".parse().unwrap()],
        sits_on: vec![patch_format::BundleId([9; 32])],
        ..opts
    };
    let mut signed = diff_case("callbacks", &cb).unwrap();
    out.push(("callbacks", signed.to_bytes()));
    signed.sign(&test_key());
    out.push(("callbacks-signed", signed.to_bytes()));
    out
}

/// A fixed key for tests.
pub fn test_key() -> patch_format::SecretKey {
    patch_format::SecretKey::from_bytes(&[42; 32])
}

/// Replaces the manifest payload of an unsigned bundle (the manifest is its
/// last section) with `f(payload)`.
pub fn with_manifest(bundle: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut pos = 8;
    let mut last = 8;
    while pos < bundle.len() {
        last = pos;
        pos += 1;
        let (size, n) = leb(&bundle[pos..]);
        pos += n + size as usize;
    }
    let mut p = last + 1;
    let (_, n) = leb(&bundle[p..]);
    p += n;
    let (name_len, n) = leb(&bundle[p..]);
    p += n;
    assert_eq!(&bundle[p..p + name_len as usize], b"wasm-patch.manifest");
    let mut payload = bundle[p + name_len as usize..].to_vec();
    f(&mut payload);
    let mut out = bundle[..last].to_vec();
    let mut content = Vec::new();
    put_leb(name_len, &mut content);
    content.extend_from_slice(b"wasm-patch.manifest");
    content.extend_from_slice(&payload);
    out.push(0);
    put_leb(content.len() as u64, &mut out);
    out.extend_from_slice(&content);
    out
}

fn leb(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate() {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    panic!("bad leb")
}

/// Appends an unsigned LEB128.
pub fn put_leb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
