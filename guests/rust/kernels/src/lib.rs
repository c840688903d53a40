//! Benchmark kernels for wasm-patch guests.
//!
//! Everything here is target independent: checksums use explicit `u32`/`u64`
//! arithmetic only (never `usize`-sized values or addresses), so a native build
//! and a `wasm32-unknown-unknown` build return the same numbers. The crate uses
//! `std` (for `f64::sqrt` and the allocator); on wasm32-unknown-unknown that
//! std needs no imports, so the guest modules import nothing.

// Index loops mirror the textbook forms of these algorithms.
#![allow(clippy::needless_range_loop, clippy::collapsible_match)]

extern crate alloc;

pub mod deflate;
pub mod hash;
pub mod interp;
pub mod json;
pub mod matmul;
pub mod nbody;
pub mod regex;
pub mod sort;

/// SplitMix64: small, fast, deterministic.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x2545_F491_4F6C_DD1D)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.next_u32() as u64 * n as u64) >> 32) as u32
    }
    /// Uniform in `0..n` as an index.
    #[inline]
    pub fn index(&mut self, n: u32) -> usize {
        self.below(n) as usize
    }
}

/// Order-dependent 64-bit mixing of a stream of words.
#[inline]
pub fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(0x517C_C1B7_2722_0A95)
}

/// FNV-1a over bytes, continuing from `h`.
#[inline]
pub fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

pub const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

/// Final avalanche so small input differences spread over all 64 bits.
#[inline]
pub fn finish(mut z: u64) -> i64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    (z ^ (z >> 33)) as i64
}

/// Repetition count from the exported argument (negative means zero).
#[inline]
pub fn reps(n: i32) -> u32 {
    if n < 0 {
        0
    } else {
        n as u32
    }
}
