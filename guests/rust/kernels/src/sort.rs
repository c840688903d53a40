//! Sorting through function pointers: records are sorted again and again with
//! comparators picked at run time from a table (`COMPARATORS`), by a merge
//! sort and a heapsort that take a `&dyn Fn` comparator (a counting closure
//! around the chosen `fn`) and a quicksort that takes the `fn` pointer itself.
//! Every comparison goes through the run-time-chosen function pointer, i.e. a
//! `call_indirect` in the wasm build.

use crate::{finish, mix, reps, Rng};
use alloc::vec::Vec;
use core::cell::Cell;
use core::cmp::Ordering;

/// Records per array.
pub const RECORDS: u32 = 20_000;
/// Sorts per unit of `n`.
pub const SORTS: u32 = 22;

#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub id: u32,
    pub key: u32,
    pub group: u16,
    pub name: [u8; 8],
    pub score: f64,
}

pub type Cmp = fn(&Rec, &Rec) -> Ordering;

fn by_key(a: &Rec, b: &Rec) -> Ordering {
    a.key.cmp(&b.key)
}
fn by_key_desc(a: &Rec, b: &Rec) -> Ordering {
    b.key.cmp(&a.key)
}
fn by_score(a: &Rec, b: &Rec) -> Ordering {
    a.score.total_cmp(&b.score)
}
fn by_name(a: &Rec, b: &Rec) -> Ordering {
    a.name.cmp(&b.name)
}
fn by_group_then_key(a: &Rec, b: &Rec) -> Ordering {
    a.group.cmp(&b.group).then_with(|| a.key.cmp(&b.key))
}
fn by_group_desc_then_name(a: &Rec, b: &Rec) -> Ordering {
    b.group.cmp(&a.group).then_with(|| a.name.cmp(&b.name))
}
fn by_key_mod(a: &Rec, b: &Rec) -> Ordering {
    (a.key % 1000).cmp(&(b.key % 1000)).then_with(|| a.id.cmp(&b.id))
}
fn by_id(a: &Rec, b: &Rec) -> Ordering {
    a.id.cmp(&b.id)
}

/// The comparator table indexed at run time.
pub static COMPARATORS: [Cmp; 8] =
    [by_key, by_key_desc, by_score, by_name, by_group_then_key, by_group_desc_then_name, by_key_mod, by_id];

/// Stable top-down merge sort with insertion sort for short runs.
#[inline(never)]
pub fn merge_sort(v: &mut [Rec], buf: &mut Vec<Rec>, cmp: &dyn Fn(&Rec, &Rec) -> Ordering) {
    buf.clear();
    buf.extend_from_slice(v);
    merge_rec(v, buf, cmp);
}

fn insertion_sort(v: &mut [Rec], cmp: &dyn Fn(&Rec, &Rec) -> Ordering) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && cmp(&x, &v[j - 1]) == Ordering::Less {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

// Sorts `v`, using `tmp` (same length) as scratch.
fn merge_rec(v: &mut [Rec], tmp: &mut [Rec], cmp: &dyn Fn(&Rec, &Rec) -> Ordering) {
    let n = v.len();
    if n <= 12 {
        insertion_sort(v, cmp);
        return;
    }
    let mid = n / 2;
    {
        let (vl, vr) = v.split_at_mut(mid);
        let (tl, tr) = tmp.split_at_mut(mid);
        merge_rec(vl, tl, cmp);
        merge_rec(vr, tr, cmp);
    }
    if cmp(&v[mid], &v[mid - 1]) != Ordering::Less {
        return; // already in order
    }
    tmp.copy_from_slice(v);
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        if cmp(&tmp[j], &tmp[i]) == Ordering::Less {
            v[k] = tmp[j];
            j += 1;
        } else {
            v[k] = tmp[i];
            i += 1;
        }
        k += 1;
    }
    while i < mid {
        v[k] = tmp[i];
        i += 1;
        k += 1;
    }
    while j < n {
        v[k] = tmp[j];
        j += 1;
        k += 1;
    }
}

/// Quicksort (median of three, insertion sort below 16) through a `fn` pointer.
#[inline(never)]
pub fn quick_sort(v: &mut [Rec], cmp: Cmp) {
    let mut v = v;
    loop {
        let n = v.len();
        if n <= 16 {
            insertion_sort(v, &cmp);
            return;
        }
        let (a, b, c) = (0, n / 2, n - 1);
        let m = if cmp(&v[a], &v[b]) == Ordering::Less {
            if cmp(&v[b], &v[c]) == Ordering::Less {
                b
            } else if cmp(&v[a], &v[c]) == Ordering::Less {
                c
            } else {
                a
            }
        } else if cmp(&v[a], &v[c]) == Ordering::Less {
            a
        } else if cmp(&v[b], &v[c]) == Ordering::Less {
            c
        } else {
            b
        };
        v.swap(m, n - 1);
        let pivot = v[n - 1];
        // Hoare-style partition around the pivot.
        let (mut i, mut j) = (0usize, n - 2);
        loop {
            while cmp(&v[i], &pivot) == Ordering::Less {
                i += 1;
            }
            while j > 0 && cmp(&pivot, &v[j]) == Ordering::Less {
                j -= 1;
            }
            if i >= j {
                break;
            }
            v.swap(i, j);
            i += 1;
            j = j.saturating_sub(1);
        }
        v.swap(i, n - 1);
        // Recurse into the smaller side, loop on the larger.
        let (left, right) = v.split_at_mut(i);
        let right = &mut right[1..];
        if left.len() < right.len() {
            quick_sort(left, cmp);
            v = right;
        } else {
            quick_sort(right, cmp);
            v = left;
        }
    }
}

/// Heapsort through a `&dyn Fn`.
#[inline(never)]
pub fn heap_sort(v: &mut [Rec], cmp: &dyn Fn(&Rec, &Rec) -> Ordering) {
    fn sift(v: &mut [Rec], mut root: usize, end: usize, cmp: &dyn Fn(&Rec, &Rec) -> Ordering) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && cmp(&v[child], &v[child + 1]) == Ordering::Less {
                child += 1;
            }
            if cmp(&v[root], &v[child]) != Ordering::Less {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift(v, i, n, cmp);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end, cmp);
    }
}

/// Random records with plenty of duplicate keys.
#[inline(never)]
pub fn generate(seed: u64, n: u32) -> Vec<Rec> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|id| {
            let mut name = [0u8; 8];
            for c in name.iter_mut() {
                *c = b'a' + rng.below(4) as u8;
            }
            Rec {
                id,
                key: rng.below(n * 2),
                group: rng.below(16) as u16,
                name,
                score: (rng.next_u32() as i32) as f64 / 1024.0,
            }
        })
        .collect()
}

/// `run(n)`: `n * SORTS` sorts of `RECORDS` records with run-time comparators.
pub fn run(n: i32) -> i64 {
    let mut rng = Rng::new(0x5027);
    let base = generate(0xB0B, RECORDS);
    let mut v = base.clone();
    let mut buf = Vec::with_capacity(v.len());
    let mut h = 0u64;
    for s in 0..reps(n) * SORTS {
        let ci = rng.index(COMPARATORS.len() as u32);
        let cmp = COMPARATORS[ci];
        let algo = rng.below(3);
        // Start every other sort from the original order, else from the last result.
        if s % 2 == 0 {
            v.copy_from_slice(&base);
        }
        let calls = Cell::new(0u64);
        let counted = |a: &Rec, b: &Rec| {
            calls.set(calls.get() + 1);
            cmp(a, b)
        };
        match algo {
            0 => merge_sort(&mut v, &mut buf, &counted),
            1 => quick_sort(&mut v, cmp),
            _ => heap_sort(&mut v, &counted),
        }
        // Verify and fold in the resulting order.
        for w in v.windows(2) {
            if cmp(&w[0], &w[1]) == Ordering::Greater {
                return -1;
            }
        }
        let mut order = 0u64;
        for (i, r) in v.iter().enumerate() {
            order = mix(order, (r.id as u64) << 20 | (i as u64 & 0xFFFFF));
        }
        h = mix(h, order);
        h = mix(h, (ci as u64) << 8 | algo as u64);
        h = mix(h, calls.get());
    }
    finish(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_sorts_sort() {
        let base = generate(3, 3000);
        for cmp in COMPARATORS {
            let mut a = base.clone();
            let mut buf = Vec::new();
            merge_sort(&mut a, &mut buf, &cmp);
            let mut b = base.clone();
            quick_sort(&mut b, cmp);
            let mut c = base.clone();
            heap_sort(&mut c, &cmp);
            let mut d = base.clone();
            d.sort_by(cmp);
            // Stable merge sort must agree exactly with the std stable sort.
            assert!(a.iter().zip(&d).all(|(x, y)| x.id == y.id));
            for v in [&b, &c] {
                assert!(v.windows(2).all(|w| cmp(&w[0], &w[1]) != Ordering::Greater));
                let mut ids: Vec<u32> = v.iter().map(|r| r.id).collect();
                ids.sort();
                assert!(ids.iter().enumerate().all(|(i, &x)| x == i as u32));
            }
        }
    }
}
