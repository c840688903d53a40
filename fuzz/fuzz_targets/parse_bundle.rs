//! Fuzz target: reading a bundle is total.
//!
//! Any bytes go through everything a host or the CLI does with an untrusted
//! bundle: signature framing, trusted-key verification (which must look at
//! the signature before parsing), parsing, signature self-check, and the
//! round trip. A panic, a hang or an out-of-memory is a bug; so is a parsed
//! bundle that does not re-encode to itself.
//!
//! Seed corpus: the `.wpatch` files `tests/all/bundles.rs` builds, or any
//! output of `wasm-patch diff` on the pairs in `guests/patches/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patch_format::{split_signature, Bundle, SecretKey, TrustedKeys};

fuzz_target!(|data: &[u8]| {
    let _ = split_signature(data);

    let mut trusted = TrustedKeys::new();
    trusted.add(SecretKey::from_bytes(&[42; 32]).public_key());
    let _ = trusted.verify(data);

    if let Ok(bundle) = Bundle::parse(data) {
        let _ = bundle.verify_signature();
        let bytes = bundle.to_bytes();
        let again = Bundle::parse(&bytes).expect("a parsed bundle must re-parse");
        assert_eq!(again, bundle, "round trip changed the bundle");
        assert_eq!(again.bundle_id(), bundle.bundle_id());
        for e in bundle.entries() {
            let _ = bundle.func_type(e.type_index);
        }
    }
});
