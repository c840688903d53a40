//! DEFLATE (RFC 1951): an LZ77 compressor (hash chains, lazy matching) with
//! dynamic Huffman blocks, and an inflater for stored/fixed/dynamic blocks.
//! `run` compresses generated data, inflates it again and verifies the round
//! trip; the checksum covers the compressed bytes.

use crate::{finish, fnv, mix, reps, Rng, FNV_OFFSET};
use alloc::vec;
use alloc::vec::Vec;

/// Bytes of input per round trip.
pub const INPUT: u32 = 1 << 20;
/// Round trips per unit of `n`.
pub const TRIPS: u32 = 2;

const WSIZE: usize = 1 << 15;
const WMASK: usize = WSIZE - 1;
const HBITS: u32 = 15;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const MAX_CHAIN: u32 = 48;
const NICE: usize = 128;
const BLOCK_SYMS: usize = 1 << 14;

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195,
    227, 258,
];
const LEN_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
    4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CL_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

// ---------------------------------------------------------------- bit I/O

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    #[inline]
    fn put(&mut self, bits: u32, count: u32) {
        self.acc |= (bits as u64) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    fn flush(&mut self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.acc = 0;
        self.n = 0;
    }
}

// ---------------------------------------------------------------- Huffman construction

/// Code lengths for `freq`, limited to `limit` bits (deterministic ties).
#[inline(never)]
fn build_lengths(freq: &[u32], limit: u32, lens: &mut [u8]) {
    for l in lens.iter_mut() {
        *l = 0;
    }
    let mut f: Vec<u32> = freq.to_vec();
    loop {
        // Leaves sorted by (freq, symbol).
        let mut leaves: Vec<(u32, u16)> =
            f.iter().enumerate().filter(|(_, &x)| x > 0).map(|(s, &x)| (x, s as u16)).collect();
        if leaves.is_empty() {
            return;
        }
        if leaves.len() == 1 {
            lens[leaves[0].1 as usize] = 1;
            return;
        }
        leaves.sort_unstable();
        // Two-queue Huffman: nodes 0..L are leaves, then internal nodes.
        let nl = leaves.len();
        let mut weight: Vec<u64> = leaves.iter().map(|&(w, _)| w as u64).collect();
        let mut parent: Vec<u32> = vec![0; 2 * nl - 1];
        let (mut li, mut ii) = (0usize, nl);
        for _ in 0..nl - 1 {
            let mut pick = |weight: &Vec<u64>| -> usize {
                let next_internal = weight.len();
                if li < nl && (ii >= next_internal || weight[li] <= weight[ii]) {
                    li += 1;
                    li - 1
                } else {
                    ii += 1;
                    ii - 1
                }
            };
            let a = pick(&weight);
            let b = pick(&weight);
            let id = weight.len();
            weight.push(weight[a] + weight[b]);
            parent[a] = id as u32;
            parent[b] = id as u32;
        }
        // Depths: root is the last node.
        let total = 2 * nl - 1;
        let mut depth = vec![0u32; total];
        let mut maxd = 0;
        for i in (0..total - 1).rev() {
            depth[i] = depth[parent[i] as usize] + 1;
            if i < nl {
                maxd = maxd.max(depth[i]);
            }
        }
        if maxd <= limit {
            for i in 0..nl {
                lens[leaves[i].1 as usize] = depth[i] as u8;
            }
            return;
        }
        // Too deep: flatten the distribution and retry.
        for x in f.iter_mut() {
            if *x > 0 {
                *x = (*x >> 1) | 1;
            }
        }
    }
}

/// Canonical codes (already bit-reversed for LSB-first output).
fn canonical_codes(lens: &[u8], codes: &mut [u16]) {
    let mut bl_count = [0u16; 16];
    for &l in lens {
        bl_count[l as usize] += 1;
    }
    bl_count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + bl_count[bits - 1]) << 1;
        next[bits] = code;
    }
    for (s, &l) in lens.iter().enumerate() {
        if l > 0 {
            let c = next[l as usize];
            next[l as usize] += 1;
            codes[s] = c.reverse_bits() >> (16 - l as u32);
        }
    }
}

fn len_code(len: usize) -> usize {
    let mut c = 0;
    while c < 28 && LEN_BASE[c + 1] as usize <= len {
        c += 1;
    }
    c
}

fn dist_code(d: usize) -> usize {
    let mut c = 0;
    while c < 29 && DIST_BASE[c + 1] as usize <= d {
        c += 1;
    }
    c
}

// ---------------------------------------------------------------- compressor

#[derive(Clone, Copy)]
struct Sym {
    // Literal byte (dist == 0) or match length.
    lit_len: u16,
    dist: u16,
}

struct Tables {
    len_code: [u8; 259],
    dist_code_lo: [u8; 512],
    dist_code_hi: [u8; 256],
}

impl Tables {
    fn new() -> Self {
        let mut t = Tables { len_code: [0; 259], dist_code_lo: [0; 512], dist_code_hi: [0; 256] };
        for l in 3..=258 {
            t.len_code[l] = len_code(l) as u8;
        }
        for d in 1..=512 {
            t.dist_code_lo[d - 1] = dist_code(d) as u8;
        }
        for i in 2..256 {
            t.dist_code_hi[i] = dist_code((i << 7) + 1) as u8;
        }
        t
    }
    #[inline]
    fn dcode(&self, d: usize) -> usize {
        if d <= 512 {
            self.dist_code_lo[d - 1] as usize
        } else {
            self.dist_code_hi[(d - 1) >> 7] as usize
        }
    }
}

#[inline(never)]
fn write_block(w: &mut BitWriter, syms: &[Sym], last: bool, t: &Tables) {
    let mut lfreq = [0u32; 286];
    let mut dfreq = [0u32; 30];
    for s in syms {
        if s.dist == 0 {
            lfreq[s.lit_len as usize] += 1;
        } else {
            lfreq[257 + t.len_code[s.lit_len as usize] as usize] += 1;
            dfreq[t.dcode(s.dist as usize)] += 1;
        }
    }
    lfreq[256] = 1;
    let mut llen = [0u8; 286];
    let mut dlen = [0u8; 30];
    build_lengths(&lfreq, 15, &mut llen);
    build_lengths(&dfreq, 15, &mut dlen);
    if dlen.iter().all(|&l| l == 0) {
        dlen[0] = 1;
    }
    let hlit = 257 + (0..29).rev().find(|&i| llen[257 + i] != 0).map_or(0, |i| i + 1);
    let hdist = 1 + (0..30).rev().find(|&i| dlen[i] != 0).unwrap_or(0);

    // Run-length encode the concatenated code lengths.
    let mut all = Vec::with_capacity(hlit + hdist);
    all.extend_from_slice(&llen[..hlit]);
    all.extend_from_slice(&dlen[..hdist]);
    let mut rle: Vec<(u8, u8)> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let l = all[i];
        let mut run = 1;
        while i + run < all.len() && all[i + run] == l {
            run += 1;
        }
        let mut left = run;
        if l == 0 {
            while left >= 11 {
                let r = left.min(138);
                rle.push((18, (r - 11) as u8));
                left -= r;
            }
            if left >= 3 {
                rle.push((17, (left - 3) as u8));
                left = 0;
            }
        } else {
            rle.push((l, 0));
            left -= 1;
            while left >= 3 {
                let r = left.min(6);
                rle.push((16, (r - 3) as u8));
                left -= r;
            }
        }
        for _ in 0..left {
            rle.push((l, 0));
        }
        i += run;
    }
    let mut cfreq = [0u32; 19];
    for &(c, _) in &rle {
        cfreq[c as usize] += 1;
    }
    let mut clen = [0u8; 19];
    build_lengths(&cfreq, 7, &mut clen);
    let mut ccode = [0u16; 19];
    canonical_codes(&clen, &mut ccode);
    let hclen = 4 + (4..19).rev().find(|&i| clen[CL_ORDER[i]] != 0).map_or(0, |i| i - 3);

    w.put(last as u32, 1);
    w.put(2, 2);
    w.put((hlit - 257) as u32, 5);
    w.put((hdist - 1) as u32, 5);
    w.put((hclen - 4) as u32, 4);
    for &o in &CL_ORDER[..hclen] {
        w.put(clen[o] as u32, 3);
    }
    for &(c, extra) in &rle {
        w.put(ccode[c as usize] as u32, clen[c as usize] as u32);
        match c {
            16 => w.put(extra as u32, 2),
            17 => w.put(extra as u32, 3),
            18 => w.put(extra as u32, 7),
            _ => {}
        }
    }

    let mut lcode = [0u16; 286];
    let mut dcode = [0u16; 30];
    canonical_codes(&llen, &mut lcode);
    canonical_codes(&dlen, &mut dcode);
    for s in syms {
        if s.dist == 0 {
            let l = s.lit_len as usize;
            w.put(lcode[l] as u32, llen[l] as u32);
        } else {
            let len = s.lit_len as usize;
            let lc = t.len_code[len] as usize;
            w.put(lcode[257 + lc] as u32, llen[257 + lc] as u32);
            w.put((len - LEN_BASE[lc] as usize) as u32, LEN_EXTRA[lc] as u32);
            let d = s.dist as usize;
            let dc = t.dcode(d);
            w.put(dcode[dc] as u32, dlen[dc] as u32);
            w.put((d - DIST_BASE[dc] as usize) as u32, DIST_EXTRA[dc] as u32);
        }
    }
    w.put(lcode[256] as u32, llen[256] as u32);
}

struct Matcher<'a> {
    data: &'a [u8],
    head: Vec<i32>,
    prev: Vec<i32>,
}

impl<'a> Matcher<'a> {
    #[inline]
    fn hash(&self, i: usize) -> usize {
        let d = self.data;
        let v = (d[i] as u32) | (d[i + 1] as u32) << 8 | (d[i + 2] as u32) << 16;
        (v.wrapping_mul(0x9E37_79B1) >> (32 - HBITS)) as usize
    }

    #[inline]
    fn insert(&mut self, i: usize) {
        if i + MIN_MATCH <= self.data.len() {
            let h = self.hash(i);
            self.prev[i & WMASK] = self.head[h];
            self.head[h] = i as i32;
        }
    }

    /// Longest match for position `i` (must already be inserted).
    #[inline(never)]
    fn longest(&self, i: usize, prev_len: usize) -> (usize, usize) {
        let d = self.data;
        let max = (d.len() - i).min(MAX_MATCH);
        if max < MIN_MATCH {
            return (0, 0);
        }
        let mut best = prev_len.max(MIN_MATCH - 1);
        if best >= max {
            return (0, 0);
        }
        let mut best_dist = 0;
        let mut cand = self.prev[i & WMASK];
        let mut chain = if prev_len >= 32 { MAX_CHAIN / 4 } else { MAX_CHAIN };
        while cand >= 0 && chain > 0 {
            let c = cand as usize;
            if i - c > WSIZE - 1 {
                break;
            }
            if d[c + best] == d[i + best] && d[c] == d[i] {
                let mut l = 0;
                while l < max && d[c + l] == d[i + l] {
                    l += 1;
                }
                if l > best {
                    best = l;
                    best_dist = i - c;
                    if l >= NICE || l == max {
                        break;
                    }
                }
            }
            let nxt = self.prev[c & WMASK];
            if nxt >= cand {
                break;
            }
            cand = nxt;
            chain -= 1;
        }
        if best_dist == 0 {
            (0, 0)
        } else {
            (best, best_dist)
        }
    }
}

/// Compresses `data` into a raw DEFLATE stream.
#[inline(never)]
pub fn compress(data: &[u8]) -> Vec<u8> {
    let t = Tables::new();
    let mut w = BitWriter { out: Vec::with_capacity(data.len() / 2 + 64), acc: 0, n: 0 };
    let mut m = Matcher { data, head: vec![-1; 1 << HBITS], prev: vec![-1; WSIZE] };
    let mut syms: Vec<Sym> = Vec::with_capacity(BLOCK_SYMS + 2);
    let mut i = 0;
    // Lazy matching: a match found at i is emitted only if i+1 has no longer one.
    let mut pending: Option<(usize, usize)> = None;
    while i < data.len() {
        m.insert(i);
        let prev_len = pending.map_or(0, |p| p.0);
        let (l, d) = m.longest(i, prev_len);
        match pending {
            Some((pl, pd)) if l <= pl => {
                // Emit the previous match starting at i-1.
                syms.push(Sym { lit_len: pl as u16, dist: pd as u16 });
                for k in i + 1..i - 1 + pl {
                    m.insert(k);
                }
                i = i - 1 + pl;
                pending = None;
            }
            Some(_) => {
                syms.push(Sym { lit_len: data[i - 1] as u16, dist: 0 });
                pending = Some((l, d));
                i += 1;
            }
            None => {
                if l >= MIN_MATCH {
                    pending = Some((l, d));
                } else {
                    syms.push(Sym { lit_len: data[i] as u16, dist: 0 });
                }
                i += 1;
            }
        }
        if syms.len() >= BLOCK_SYMS {
            write_block(&mut w, &syms, false, &t);
            syms.clear();
        }
    }
    if let Some((pl, pd)) = pending {
        syms.push(Sym { lit_len: pl as u16, dist: pd as u16 });
    }
    write_block(&mut w, &syms, true, &t);
    w.flush();
    w.out
}

// ---------------------------------------------------------------- inflater

#[derive(Debug)]
pub struct Error(pub u32);

struct BitReader<'a> {
    s: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl<'a> BitReader<'a> {
    #[inline]
    fn refill(&mut self) {
        while self.n <= 56 {
            let b = if self.pos < self.s.len() { self.s[self.pos] } else { 0 };
            self.pos += 1;
            self.acc |= (b as u64) << self.n;
            self.n += 8;
        }
    }
    #[inline]
    fn bits(&mut self, count: u32) -> u32 {
        if self.n < count {
            self.refill();
        }
        let v = (self.acc & ((1u64 << count) - 1)) as u32;
        self.acc >>= count;
        self.n -= count;
        v
    }
    fn overrun(&self) -> bool {
        // Bytes consumed (including buffered bits) beyond the input.
        self.pos > self.s.len() + 8
    }
}

const FAST: u32 = 9;

/// Decoding table: 9-bit direct lookup plus canonical fallback.
struct Huff {
    fast: Vec<u16>, // (sym << 4) | len, 0 = slow path
    count: [u16; 16],
    symbols: Vec<u16>,
}

impl Huff {
    #[inline(never)]
    fn new(lens: &[u8]) -> Result<Huff, Error> {
        let mut count = [0u16; 16];
        for &l in lens {
            count[l as usize] += 1;
        }
        count[0] = 0;
        let mut left: i32 = 1;
        for c in &count[1..] {
            left = (left << 1) - *c as i32;
            if left < 0 {
                return Err(Error(1));
            }
        }
        let mut offs = [0u16; 16];
        for l in 1..15 {
            offs[l + 1] = offs[l] + count[l];
        }
        let mut symbols = vec![0u16; lens.len()];
        for (s, &l) in lens.iter().enumerate() {
            if l > 0 {
                symbols[offs[l as usize] as usize] = s as u16;
                offs[l as usize] += 1;
            }
        }
        let mut fast = vec![0u16; 1 << FAST];
        let mut codes = vec![0u16; lens.len()];
        canonical_codes(lens, &mut codes);
        for (s, &l) in lens.iter().enumerate() {
            if l > 0 && (l as u32) <= FAST {
                let mut c = codes[s] as usize;
                while c < (1 << FAST) {
                    fast[c] = ((s as u16) << 4) | l as u16;
                    c += 1 << l;
                }
            }
        }
        Ok(Huff { fast, count, symbols })
    }

    #[inline]
    fn decode(&self, br: &mut BitReader) -> Result<u16, Error> {
        if br.n < 16 {
            br.refill();
        }
        let e = self.fast[(br.acc & ((1 << FAST) - 1)) as usize];
        if e != 0 {
            let l = (e & 15) as u32;
            br.acc >>= l;
            br.n -= l;
            return Ok(e >> 4);
        }
        // Slow path, canonical decode bit by bit (puff style).
        let mut code: i32 = 0;
        let mut first: i32 = 0;
        let mut index: i32 = 0;
        for len in 1..16 {
            code |= br.bits(1) as i32;
            let count = self.count[len] as i32;
            if code - count < first {
                return Ok(self.symbols[(index + (code - first)) as usize]);
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err(Error(2))
    }
}

#[inline(never)]
fn inflate_block(br: &mut BitReader, out: &mut Vec<u8>, lit: &Huff, dist: &Huff) -> Result<(), Error> {
    loop {
        let sym = lit.decode(br)? as usize;
        if sym < 256 {
            out.push(sym as u8);
        } else if sym == 256 {
            return Ok(());
        } else {
            let lc = sym - 257;
            if lc >= 29 {
                return Err(Error(3));
            }
            let len = LEN_BASE[lc] as usize + br.bits(LEN_EXTRA[lc] as u32) as usize;
            let dc = dist.decode(br)? as usize;
            if dc >= 30 {
                return Err(Error(4));
            }
            let d = DIST_BASE[dc] as usize + br.bits(DIST_EXTRA[dc] as u32) as usize;
            if d > out.len() {
                return Err(Error(5));
            }
            let start = out.len() - d;
            if d >= len {
                out.extend_from_within(start..start + len);
            } else {
                for k in 0..len {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        }
        if br.overrun() {
            return Err(Error(6));
        }
    }
}

/// Inflates a raw DEFLATE stream.
#[inline(never)]
pub fn inflate(s: &[u8], size_hint: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(size_hint);
    let mut br = BitReader { s, pos: 0, acc: 0, n: 0 };
    loop {
        let last = br.bits(1);
        let kind = br.bits(2);
        match kind {
            0 => {
                // Stored: drop to a byte boundary.
                let drop = br.n % 8;
                br.bits(drop);
                let len = br.bits(16);
                let nlen = br.bits(16);
                if len != !nlen & 0xFFFF {
                    return Err(Error(7));
                }
                for _ in 0..len {
                    out.push(br.bits(8) as u8);
                }
            }
            1 => {
                let mut l = [0u8; 288];
                for (i, x) in l.iter_mut().enumerate() {
                    *x = match i {
                        0..=143 => 8,
                        144..=255 => 9,
                        256..=279 => 7,
                        _ => 8,
                    };
                }
                let lit = Huff::new(&l)?;
                let dist = Huff::new(&[5u8; 30])?;
                inflate_block(&mut br, &mut out, &lit, &dist)?;
            }
            2 => {
                let hlit = br.bits(5) as usize + 257;
                let hdist = br.bits(5) as usize + 1;
                let hclen = br.bits(4) as usize + 4;
                let mut cl = [0u8; 19];
                for &o in &CL_ORDER[..hclen] {
                    cl[o] = br.bits(3) as u8;
                }
                let clh = Huff::new(&cl)?;
                let mut lens = [0u8; 320];
                let mut i = 0;
                while i < hlit + hdist {
                    let sym = clh.decode(&mut br)?;
                    let (val, rep) = match sym {
                        0..=15 => (sym as u8, 1),
                        16 => {
                            if i == 0 {
                                return Err(Error(8));
                            }
                            (lens[i - 1], 3 + br.bits(2) as usize)
                        }
                        17 => (0, 3 + br.bits(3) as usize),
                        _ => (0, 11 + br.bits(7) as usize),
                    };
                    if i + rep > hlit + hdist {
                        return Err(Error(9));
                    }
                    for _ in 0..rep {
                        lens[i] = val;
                        i += 1;
                    }
                }
                let lit = Huff::new(&lens[..hlit])?;
                let dist = Huff::new(&lens[hlit..hlit + hdist])?;
                inflate_block(&mut br, &mut out, &lit, &dist)?;
            }
            _ => return Err(Error(10)),
        }
        if br.overrun() {
            return Err(Error(11));
        }
        if last == 1 {
            return Ok(out);
        }
    }
}

// ---------------------------------------------------------------- data & run

const VOCAB: [&[u8]; 32] = [
    b"the ", b"of ", b"and ", b"to ", b"in ", b"is ", b"that ", b"for ", b"it ", b"as ", b"was ", b"with ",
    b"be ", b"by ", b"on ", b"not ", b"he ", b"this ", b"are ", b"or ", b"his ", b"from ", b"at ",
    b"which ", b"but ", b"have ", b"an ", b"had ", b"they ", b"you ", b"were ", b"their ",
];

/// Mixed data: text from a skewed vocabulary, numbers, random bytes, repeats.
#[inline(never)]
pub fn generate(seed: u64, size: u32) -> Vec<u8> {
    let size = size as usize;
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(size + 512);
    while out.len() < size {
        match rng.below(20) {
            0 => {
                // Random bytes (incompressible run).
                for _ in 0..(16 + rng.below(64)) {
                    out.push(rng.next_u32() as u8);
                }
            }
            1 | 2 => {
                // Copy of earlier data.
                if out.len() > 1000 {
                    let len = 20 + rng.index(200);
                    let back = 1 + rng.index((out.len() as u32 - len as u32).min(40000));
                    let start = out.len() - back.min(out.len() - len);
                    let start = start.min(out.len() - len);
                    out.extend_from_within(start..start + len);
                }
            }
            3 => {
                let v = rng.next_u32() % 100000;
                let mut digits = [0u8; 6];
                let mut k = 0;
                let mut x = v;
                loop {
                    digits[k] = b'0' + (x % 10) as u8;
                    k += 1;
                    x /= 10;
                    if x == 0 {
                        break;
                    }
                }
                for j in (0..k).rev() {
                    out.push(digits[j]);
                }
                out.extend_from_slice(b", ");
            }
            4 => out.extend_from_slice(b".\n"),
            _ => {
                // Skewed choice: small indices far more likely.
                let a = rng.below(32);
                let b = rng.below(32);
                out.extend_from_slice(VOCAB[a.min(b) as usize]);
            }
        }
    }
    out.truncate(size);
    out
}

/// `run(n)`: `n * TRIPS` compress + inflate round trips over 1 MiB of data.
pub fn run(n: i32) -> i64 {
    let mut h = 0u64;
    for t in 0..reps(n) * TRIPS {
        let data = generate(0xDEF1_A7E0 + t as u64, INPUT);
        let z = compress(&data);
        let back = match inflate(&z, data.len()) {
            Ok(b) => b,
            Err(_) => return -1,
        };
        if back != data {
            return -2;
        }
        h = mix(h, z.len() as u64);
        h = mix(h, fnv(FNV_OFFSET, &z));
    }
    finish(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (seed, size) in [(1u64, 0u32), (2, 1), (3, 2), (4, 100), (5, 70000), (6, 300000)] {
            let d = generate(seed, size);
            let z = compress(&d);
            assert_eq!(inflate(&z, 0).unwrap(), d, "seed {seed}");
        }
        let zeros = vec![0u8; 200000];
        assert_eq!(inflate(&compress(&zeros), 0).unwrap(), zeros);
        let mut rng = Rng::new(9);
        let noise: Vec<u8> = (0..50000).map(|_| rng.next_u32() as u8).collect();
        assert_eq!(inflate(&compress(&noise), 0).unwrap(), noise);
    }

    #[test]
    fn inflates_fixed_and_stored() {
        // "hello" with fixed Huffman (zlib -9 raw) and a stored block.
        let fixed = [0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&fixed, 0).unwrap(), b"hello");
        let stored = [0x01, 0x05, 0x00, 0xfa, 0xff, b'h', b'e', b'l', b'l', b'o'];
        assert_eq!(inflate(&stored, 0).unwrap(), b"hello");
    }
}
