//! Reading is total: thousands of deterministic mutations of real bundles
//! (bit flips, byte writes, truncations, splices between bundles,
//! duplicated and inserted ranges, LEB128 blow-ups) go through `parse`,
//! `TrustedKeys::verify`, `split_signature` and re-encoding. None may panic,
//! and anything that parses must re-encode to itself.
//!
//! The same property runs unbounded under `cargo fuzz` (see `fuzz/`).

mod common;

use common::*;
use patch_format::{split_signature, Bundle, TrustedKeys};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed`, using `other` as splice material.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if m.is_empty() {
            m.push(0);
        }
        let len = m.len();
        match rng.below(8) {
            0 => {
                let i = rng.below(len);
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len);
                m[i] = rng.next() as u8;
            }
            2 => m.truncate(rng.below(len)),
            3 => {
                // Splice a range of another bundle over a range of this one.
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                let c = rng.below(other.len());
                let d = (c + rng.below(64)).min(other.len());
                m.splice(a..b, other[c..d].iter().copied());
            }
            4 => {
                let a = rng.below(len);
                let b = (a + rng.below(32)).min(len);
                let chunk = m[a..b].to_vec();
                let at = rng.below(len);
                m.splice(at..at, chunk);
            }
            5 => {
                let at = rng.below(len);
                let n = rng.below(8);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                m.splice(at..at, junk);
            }
            6 => {
                // Blow up what may be a LEB128 count or size.
                let at = rng.below(len);
                m.splice(at..at + 1, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            _ => {
                let a = rng.below(len);
                let b = (a + rng.below(16)).min(len);
                m.drain(a..b);
            }
        }
    }
    m
}

/// Everything a host or the CLI does with untrusted bytes.
fn exercise(bytes: &[u8], trusted: &TrustedKeys) -> bool {
    let _ = split_signature(bytes);
    let _ = trusted.verify(bytes);
    match Bundle::parse(bytes) {
        Ok(b) => {
            let again = Bundle::parse(&b.to_bytes()).expect("a parsed bundle re-parses");
            assert_eq!(again, b);
            let _ = b.verify_signature();
            for e in b.entries() {
                let _ = (
                    e.kind.func_index(),
                    b.func_type(e.type_index),
                    b.is_immediate(e),
                );
            }
            true
        }
        Err(e) => {
            // Every error renders a message.
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn thousands_of_mutated_bundles_never_panic() {
    let seeds = sample_bundles();
    let mut trusted = TrustedKeys::new();
    trusted.add(test_key().public_key());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut total, mut parsed) = (0, 0);
    for round in 0..400 {
        for (i, (_, seed)) in seeds.iter().enumerate() {
            let other = &seeds[(i + round + 1) % seeds.len()].1;
            let m = mutate(&mut rng, seed, other);
            total += 1;
            if exercise(&m, &trusted) {
                parsed += 1;
            }
        }
    }
    assert_eq!(total, 400 * seeds.len());
    // Most mutations are refused; some (e.g. a changed name byte) still
    // make a valid bundle. Both paths must have been exercised.
    assert!(parsed > 0 && parsed < total, "parsed {parsed} of {total}");
}

#[test]
fn every_truncation_of_a_signed_bundle_is_an_error() {
    let (_, signed) = sample_bundles()
        .into_iter()
        .find(|(l, _)| *l == "callbacks-signed")
        .unwrap();
    let mut trusted = TrustedKeys::new();
    trusted.add(test_key().public_key());
    for n in 0..signed.len() {
        assert!(
            trusted.verify(&signed[..n]).is_err(),
            "prefix of {n} bytes verifies"
        );
        let _ = Bundle::parse(&signed[..n]);
    }
    assert!(trusted.verify(&signed).is_ok());
}
