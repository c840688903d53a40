//! JSON: generate a document as text, tokenize and parse it into a tree, walk
//! the tree (summing numbers, hashing keys and strings), serialize it back to
//! compact text, parse that again and check the second walk agrees.

use crate::{finish, fnv, mix, reps, Rng, FNV_OFFSET};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Records per generated document.
pub const RECORDS: u32 = 2000;
/// Documents per unit of `n`.
pub const DOCS: u32 = 5;

// ---------------------------------------------------------------- generator

const WORDS: [&str; 24] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "x-ray",
];

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

struct Gen {
    rng: Rng,
    out: Vec<u8>,
}

impl Gen {
    fn ws(&mut self) {
        // Occasional insignificant whitespace.
        match self.rng.below(8) {
            0 => self.out.push(b' '),
            1 => self.out.extend_from_slice(b"\n  "),
            _ => {}
        }
    }

    fn string(&mut self) {
        self.out.push(b'"');
        let words = 1 + self.rng.below(4);
        for w in 0..words {
            if w > 0 {
                self.out.push(b' ');
            }
            let word = WORDS[self.rng.index(WORDS.len() as u32)];
            self.out.extend_from_slice(word.as_bytes());
            match self.rng.below(16) {
                0 => self.out.extend_from_slice(b"\\\"q\\\""),
                1 => self.out.extend_from_slice(b"\\n"),
                2 => self.out.extend_from_slice(b"\\u00e9t\\u00E9"),
                3 => self.out.extend_from_slice(b"\\ud83d\\ude00"),
                4 => self.out.extend_from_slice(b"\\\\/\\t"),
                5 => self.out.extend_from_slice("\u{00fc}ber".as_bytes()),
                _ => {}
            }
        }
        self.out.push(b'"');
    }

    fn key(&mut self, k: &str) {
        self.ws();
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.ws();
    }

    fn number(&mut self) {
        match self.rng.below(4) {
            0 => push_i64(&mut self.out, self.rng.next_u32() as i64 - (1 << 31)),
            1 => push_u64(&mut self.out, self.rng.below(1000) as u64),
            2 => {
                push_i64(&mut self.out, self.rng.below(200000) as i64 - 100000);
                self.out.push(b'.');
                let frac = self.rng.below(1000);
                self.out.push(b'0' + (frac / 100) as u8);
                self.out.push(b'0' + (frac / 10 % 10) as u8);
                self.out.push(b'0' + (frac % 10) as u8);
            }
            _ => {
                push_u64(&mut self.out, 1 + self.rng.below(9) as u64);
                self.out.push(b'.');
                push_u64(&mut self.out, self.rng.below(100000) as u64);
                self.out.extend_from_slice(if self.rng.below(2) == 0 { b"e-" } else { b"E+" });
                push_u64(&mut self.out, self.rng.below(30) as u64);
            }
        }
    }

    fn value(&mut self, depth: u32) {
        let choice = if depth >= 4 { self.rng.below(5) } else { self.rng.below(8) };
        match choice {
            0 => self.out.extend_from_slice(b"null"),
            1 => self.out.extend_from_slice(if self.rng.below(2) == 0 { b"true" } else { b"false" }),
            2 | 3 => self.number(),
            4 => self.string(),
            5 | 6 => {
                self.out.push(b'[');
                let len = self.rng.below(6);
                for i in 0..len {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.ws();
                    self.value(depth + 1);
                }
                self.out.push(b']');
            }
            _ => {
                self.out.push(b'{');
                let len = self.rng.below(5);
                for i in 0..len {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    let k = WORDS[self.rng.index(WORDS.len() as u32)];
                    self.key(k);
                    self.value(depth + 1);
                }
                self.out.push(b'}');
            }
        }
    }

    fn record(&mut self, id: u32) {
        self.out.push(b'{');
        self.key("id");
        push_u64(&mut self.out, id as u64);
        self.out.push(b',');
        self.key("name");
        self.string();
        self.out.push(b',');
        self.key("score");
        self.number();
        self.out.push(b',');
        self.key("active");
        self.out.extend_from_slice(if self.rng.below(3) == 0 { b"false" } else { b"true" });
        self.out.push(b',');
        self.key("tags");
        self.out.push(b'[');
        let n = self.rng.below(5);
        for i in 0..n {
            if i > 0 {
                self.out.push(b',');
            }
            self.string();
        }
        self.out.push(b']');
        self.out.push(b',');
        self.key("matrix");
        self.out.push(b'[');
        for r in 0..3 {
            if r > 0 {
                self.out.push(b',');
            }
            self.out.push(b'[');
            for c in 0..3 {
                if c > 0 {
                    self.out.push(b',');
                }
                push_i64(&mut self.out, self.rng.below(2001) as i64 - 1000);
            }
            self.out.push(b']');
        }
        self.out.push(b']');
        self.out.push(b',');
        self.key("extra");
        self.value(1);
        self.ws();
        self.out.push(b'}');
    }
}

/// Generates a document: `{"version":1,"records":[...]}`.
#[inline(never)]
pub fn generate(seed: u64, records: u32) -> Vec<u8> {
    let mut g = Gen { rng: Rng::new(seed), out: Vec::new() };
    g.out.extend_from_slice(b"{\"version\": 1, \"records\": [\n");
    for id in 0..records {
        if id > 0 {
            g.out.extend_from_slice(b",\n");
        }
        g.record(id);
    }
    g.out.extend_from_slice(b"\n]}\n");
    g.out
}

// ---------------------------------------------------------------- tokenizer

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tok {
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    Comma,
    Str,
    Num,
    True,
    False,
    Null,
    Eof,
}

/// Numbers are kept exactly as decimal `mant * 10^exp` (and as f64 for sums).
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Number {
    pub mant: i64,
    pub exp: i32,
}

#[derive(Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Num(Number),
    Str(Box<[u8]>),
    Arr(Vec<Value>),
    Obj(Vec<(Box<[u8]>, Value)>),
}

#[derive(Debug)]
pub struct Error(pub u32);

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    // Payload of the last Str / Num token.
    text: Vec<u8>,
    num: Number,
}

fn hex4(s: &[u8]) -> Result<u32, Error> {
    if s.len() < 4 {
        return Err(Error(1));
    }
    let mut v = 0u32;
    for &c in &s[..4] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(Error(2)),
        };
        v = v * 16 + d as u32;
    }
    Ok(v)
}

fn push_utf8(out: &mut Vec<u8>, c: u32) {
    if c < 0x80 {
        out.push(c as u8);
    } else if c < 0x800 {
        out.push(0xC0 | (c >> 6) as u8);
        out.push(0x80 | (c & 0x3F) as u8);
    } else if c < 0x10000 {
        out.push(0xE0 | (c >> 12) as u8);
        out.push(0x80 | ((c >> 6) & 0x3F) as u8);
        out.push(0x80 | (c & 0x3F) as u8);
    } else {
        out.push(0xF0 | (c >> 18) as u8);
        out.push(0x80 | ((c >> 12) & 0x3F) as u8);
        out.push(0x80 | ((c >> 6) & 0x3F) as u8);
        out.push(0x80 | (c & 0x3F) as u8);
    }
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer { s, pos: 0, text: Vec::new(), num: Number { mant: 0, exp: 0 } }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8], tok: Tok) -> Result<Tok, Error> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(tok)
        } else {
            Err(Error(3))
        }
    }

    #[inline(never)]
    fn next(&mut self) -> Result<Tok, Error> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.pos) else { return Ok(Tok::Eof) };
        let single = match c {
            b'{' => Some(Tok::LBrace),
            b'}' => Some(Tok::RBrace),
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b':' => Some(Tok::Colon),
            b',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(t) = single {
            self.pos += 1;
            return Ok(t);
        }
        match c {
            b'"' => self.string(),
            b't' => self.literal(b"true", Tok::True),
            b'f' => self.literal(b"false", Tok::False),
            b'n' => self.literal(b"null", Tok::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Error(4)),
        }
    }

    #[inline(never)]
    fn string(&mut self) -> Result<Tok, Error> {
        self.pos += 1;
        self.text.clear();
        loop {
            let Some(&c) = self.s.get(self.pos) else { return Err(Error(5)) };
            self.pos += 1;
            match c {
                b'"' => return Ok(Tok::Str),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else { return Err(Error(6)) };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let mut cp = hex4(&self.s[self.pos..])?;
                            self.pos += 4;
                            if (0xD800..0xDC00).contains(&cp) {
                                if self.s.get(self.pos) != Some(&b'\\') || self.s.get(self.pos + 1) != Some(&b'u') {
                                    return Err(Error(7));
                                }
                                let lo = hex4(&self.s[self.pos + 2..])?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Error(8));
                                }
                                self.pos += 6;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            }
                            push_utf8(&mut self.text, cp);
                            continue;
                        }
                        _ => return Err(Error(9)),
                    };
                    self.text.push(ch);
                }
                0..=0x1F => return Err(Error(10)),
                _ => self.text.push(c),
            }
        }
    }

    #[inline(never)]
    fn number(&mut self) -> Result<Tok, Error> {
        let neg = self.s[self.pos] == b'-';
        if neg {
            self.pos += 1;
        }
        let mut mant: i64 = 0;
        let mut exp: i32 = 0;
        let mut digits = 0;
        while let Some(&c @ b'0'..=b'9') = self.s.get(self.pos) {
            mant = mant.checked_mul(10).and_then(|m| m.checked_add((c - b'0') as i64)).ok_or(Error(11))?;
            self.pos += 1;
            digits += 1;
        }
        if digits == 0 {
            return Err(Error(12));
        }
        if self.s.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            let mut fd = 0;
            while let Some(&c @ b'0'..=b'9') = self.s.get(self.pos) {
                mant = mant.checked_mul(10).and_then(|m| m.checked_add((c - b'0') as i64)).ok_or(Error(13))?;
                exp -= 1;
                self.pos += 1;
                fd += 1;
            }
            if fd == 0 {
                return Err(Error(14));
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.pos) {
            self.pos += 1;
            let eneg = match self.s.get(self.pos) {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let mut e: i32 = 0;
            let mut ed = 0;
            while let Some(&c @ b'0'..=b'9') = self.s.get(self.pos) {
                e = (e * 10 + (c - b'0') as i32).min(100_000);
                self.pos += 1;
                ed += 1;
            }
            if ed == 0 {
                return Err(Error(15));
            }
            exp += if eneg { -e } else { e };
        }
        self.num = Number { mant: if neg { -mant } else { mant }, exp };
        Ok(Tok::Num)
    }
}

// ---------------------------------------------------------------- parser

struct Parser<'a> {
    lx: Lexer<'a>,
    tok: Tok,
}

impl<'a> Parser<'a> {
    fn bump(&mut self) -> Result<(), Error> {
        self.tok = self.lx.next()?;
        Ok(())
    }

    fn expect(&mut self, t: Tok) -> Result<(), Error> {
        if self.tok != t {
            return Err(Error(20));
        }
        self.bump()
    }

    #[inline(never)]
    fn value(&mut self, depth: u32) -> Result<Value, Error> {
        if depth > 64 {
            return Err(Error(21));
        }
        let v = match self.tok {
            Tok::Null => Value::Null,
            Tok::True => Value::Bool(true),
            Tok::False => Value::Bool(false),
            Tok::Num => Value::Num(self.lx.num),
            Tok::Str => Value::Str(self.lx.text.as_slice().into()),
            Tok::LBracket => {
                self.bump()?;
                let mut items = Vec::new();
                if self.tok != Tok::RBracket {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.tok == Tok::Comma {
                            self.bump()?;
                        } else {
                            break;
                        }
                    }
                }
                if self.tok != Tok::RBracket {
                    return Err(Error(22));
                }
                Value::Arr(items)
            }
            Tok::LBrace => {
                self.bump()?;
                let mut members = Vec::new();
                if self.tok != Tok::RBrace {
                    loop {
                        if self.tok != Tok::Str {
                            return Err(Error(23));
                        }
                        let key: Box<[u8]> = self.lx.text.as_slice().into();
                        self.bump()?;
                        self.expect(Tok::Colon)?;
                        let v = self.value(depth + 1)?;
                        members.push((key, v));
                        if self.tok == Tok::Comma {
                            self.bump()?;
                        } else {
                            break;
                        }
                    }
                }
                if self.tok != Tok::RBrace {
                    return Err(Error(24));
                }
                Value::Obj(members)
            }
            _ => return Err(Error(25)),
        };
        self.bump()?;
        Ok(v)
    }
}

/// Parses a complete JSON text.
pub fn parse(s: &[u8]) -> Result<Value, Error> {
    let mut p = Parser { lx: Lexer::new(s), tok: Tok::Eof };
    p.bump()?;
    let v = p.value(0)?;
    if p.tok != Tok::Eof {
        return Err(Error(26));
    }
    Ok(v)
}

// ---------------------------------------------------------------- walk & serialize

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

impl Number {
    /// Deterministic (not always correctly rounded) conversion to f64.
    pub fn to_f64(self) -> f64 {
        let mut v = self.mant as f64;
        let mut e = self.exp;
        while e > 22 {
            v *= 1e22;
            e -= 22;
        }
        while e < -22 {
            v /= 1e22;
            e += 22;
        }
        if e >= 0 {
            v * POW10[e as usize]
        } else {
            v / POW10[(-e) as usize]
        }
    }
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
pub struct Stats {
    pub hash: u64,
    pub sum: f64,
    pub nodes: u64,
    pub depth_sum: u64,
}

#[inline(never)]
fn walk(v: &Value, depth: u32, st: &mut Stats) {
    st.nodes += 1;
    st.depth_sum += depth as u64;
    match v {
        Value::Null => st.hash = mix(st.hash, 1),
        Value::Bool(b) => st.hash = mix(st.hash, 2 + *b as u64),
        Value::Num(n) => {
            st.sum += n.to_f64();
            st.hash = mix(st.hash, (n.mant as u64) ^ ((n.exp as u32 as u64) << 48));
        }
        Value::Str(s) => st.hash = mix(st.hash, fnv(FNV_OFFSET, s)),
        Value::Arr(items) => {
            st.hash = mix(st.hash, 0xA000 + items.len() as u64);
            for it in items {
                walk(it, depth + 1, st);
            }
        }
        Value::Obj(members) => {
            st.hash = mix(st.hash, 0x0B00 + members.len() as u64);
            for (k, it) in members {
                st.hash = mix(st.hash, fnv(FNV_OFFSET ^ 0x55, k));
                walk(it, depth + 1, st);
            }
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1F => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

#[inline(never)]
fn serialize(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Num(n) => {
            push_i64(out, n.mant);
            if n.exp != 0 {
                out.push(b'e');
                push_i64(out, n.exp as i64);
            }
        }
        Value::Str(s) => write_str(out, s),
        Value::Arr(items) => {
            out.push(b'[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serialize(it, out);
            }
            out.push(b']');
        }
        Value::Obj(members) => {
            out.push(b'{');
            for (i, (k, it)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                serialize(it, out);
            }
            out.push(b'}');
        }
    }
}

/// One document: generate, parse, walk, serialize, reparse, walk; returns a
/// checksum, or `None` if anything failed or the two walks disagree.
#[inline(never)]
pub fn process(seed: u64, records: u32) -> Option<u64> {
    let text = generate(seed, records);
    let tree = parse(&text).ok()?;
    let mut st = Stats::default();
    walk(&tree, 0, &mut st);
    let mut out = Vec::with_capacity(text.len());
    serialize(&tree, &mut out);
    drop(tree);
    let tree2 = parse(&out).ok()?;
    let mut st2 = Stats::default();
    walk(&tree2, 0, &mut st2);
    if st != st2 {
        return None;
    }
    let mut h = mix(st.hash, st.sum.to_bits());
    h = mix(h, st.nodes);
    h = mix(h, st.depth_sum);
    h = mix(h, text.len() as u64);
    h = mix(h, fnv(FNV_OFFSET, &out));
    Some(h)
}

/// `run(n)`: `n * DOCS` documents of `RECORDS` records (~0.5 MB of JSON each).
pub fn run(n: i32) -> i64 {
    let mut h = 0u64;
    for d in 0..reps(n) * DOCS {
        match process(0x15_0000 + d as u64, RECORDS) {
            Some(x) => h = mix(h, x),
            None => return -1,
        }
    }
    finish(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basics() {
        let v = parse(br#" {"a": [1, -2.5e1, true, null, "x\u00e9\ud83d\ude00"], "b": {}} "#).unwrap();
        let Value::Obj(m) = v else { panic!() };
        assert_eq!(&*m[0].0, b"a");
        let Value::Arr(a) = &m[0].1 else { panic!() };
        assert_eq!(a[1], Value::Num(Number { mant: -25, exp: 0 - 1 + 1 }));
        assert_eq!(a[4], Value::Str("x\u{e9}\u{1F600}".as_bytes().into()));
        assert!(parse(b"[1,]").is_err());
        assert!(parse(b"{\"a\" 1}").is_err());
        assert!(parse(b"[1] x").is_err());
    }

    #[test]
    fn round_trip() {
        assert!(process(7, 200).is_some());
    }
}
