//! Dense matrix multiplication (f64, row-major `Vec<f64>`), the textbook
//! triple loop in two orders, and an integer (wrapping `u32`) product.

use crate::{finish, mix, reps, Rng};
use alloc::vec;
use alloc::vec::Vec;

/// Matrix side.
pub const N: usize = 128;

/// A row-major square matrix.
struct Matrix {
    n: usize,
    a: Vec<f64>,
}

impl Matrix {
    fn random(n: usize, rng: &mut Rng) -> Self {
        let a = (0..n * n).map(|_| (rng.below(2001) as f64 - 1000.0) / 1000.0).collect();
        Matrix { n, a }
    }

    /// `self * other`, i-j-k order (a dot product per element).
    fn mul_ijk(&self, other: &Matrix) -> Matrix {
        let n = self.n;
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0;
                for k in 0..n {
                    s += self.a[i * n + k] * other.a[k * n + j];
                }
                c[i * n + j] = s;
            }
        }
        Matrix { n, a: c }
    }

    /// `self * other`, i-k-j order (a row update per element of `self`).
    fn mul_ikj(&self, other: &Matrix) -> Matrix {
        let n = self.n;
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            let row = &mut c[i * n..(i + 1) * n];
            for k in 0..n {
                let x = self.a[i * n + k];
                let b = &other.a[k * n..(k + 1) * n];
                for (r, &y) in row.iter_mut().zip(b) {
                    *r += x * y;
                }
            }
        }
        Matrix { n, a: c }
    }

    fn checksum(&self, mut h: u64) -> u64 {
        for &x in &self.a {
            h = mix(h, x.to_bits());
        }
        h
    }
}

/// Wrapping `u32` product, i-j-k order.
fn mul_u32(a: &[u32], b: &[u32], n: usize) -> Vec<u32> {
    let mut c = vec![0u32; n * n];
    for i in 0..n {
        for j in 0..n {
            let mut s = 0u32;
            for k in 0..n {
                s = s.wrapping_add(a[i * n + k].wrapping_mul(b[k * n + j]));
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// `n` units of work: per unit, 14 f64 products in both orders (cross-checked:
/// the two orders sum the same terms in the same order) and 8 integer ones.
pub fn run(n: i32) -> i64 {
    let mut h = 0u64;
    let mut rng = Rng::new(0x6D61_746D);
    for _ in 0..reps(n) {
        let a = Matrix::random(N, &mut rng);
        let mut b = Matrix::random(N, &mut rng);
        for _ in 0..14 {
            let c1 = a.mul_ijk(&b);
            let c2 = a.mul_ikj(&b);
            if c1.a != c2.a {
                return -1;
            }
            h = c1.checksum(h);
            // Keep values bounded: scale the product into the next factor.
            let m = c1.a.iter().fold(0.0f64, |m, &x| m.max(x.abs())).max(1.0);
            b = Matrix { n: N, a: c1.a.iter().map(|&x| x / m).collect() };
        }
        let x: Vec<u32> = (0..N * N).map(|_| rng.next_u32()).collect();
        let mut y: Vec<u32> = (0..N * N).map(|_| rng.next_u32()).collect();
        for _ in 0..8 {
            y = mul_u32(&x, &y, N);
            for &v in &y {
                h = mix(h, v as u64);
            }
        }
    }
    finish(h)
}
