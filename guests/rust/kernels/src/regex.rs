//! A small regex engine: parser (literals, `.`, classes, `\d\w\s`, groups,
//! `|`, `* + ? {m,n}` greedy and lazy, `^ $`), compiler to a Thompson-NFA
//! program, and two matchers over it: a Pike VM (earliest match end) and a
//! memoised backtracker (leftmost-first match). `run` searches generated text
//! with several patterns using both engines and cross-checks them.

use crate::{finish, mix, reps, Rng};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

/// Lines of text per unit of `n`.
pub const LINES: u32 = 3600;

// ---------------------------------------------------------------- AST & parser

#[derive(Clone, Debug)]
enum Node {
    Empty,
    Byte(u8),
    Any,
    Class(Box<[u32; 8]>),
    Bol,
    Eol,
    Cat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat { node: Box<Node>, min: u32, max: Option<u32>, greedy: bool },
}

#[derive(Debug)]
pub struct Error(pub u32);

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

fn set(c: &mut [u32; 8], b: u8) {
    c[(b >> 5) as usize] |= 1 << (b & 31);
}

fn set_range(c: &mut [u32; 8], lo: u8, hi: u8) {
    for b in lo..=hi {
        set(c, b);
    }
}

fn perl_class(c: &mut [u32; 8], e: u8) -> bool {
    let mut tmp = [0u32; 8];
    let negate = e.is_ascii_uppercase();
    match e.to_ascii_lowercase() {
        b'd' => set_range(&mut tmp, b'0', b'9'),
        b'w' => {
            set_range(&mut tmp, b'0', b'9');
            set_range(&mut tmp, b'a', b'z');
            set_range(&mut tmp, b'A', b'Z');
            set(&mut tmp, b'_');
        }
        b's' => {
            for b in [b' ', b'\t', b'\n', b'\r', 11, 12] {
                set(&mut tmp, b);
            }
        }
        _ => return false,
    }
    for i in 0..8 {
        c[i] |= if negate { !tmp[i] } else { tmp[i] };
    }
    true
}

fn escape_byte(e: u8) -> u8 {
    match e {
        b'n' => b'\n',
        b't' => b'\t',
        b'r' => b'\r',
        _ => e,
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn alt(&mut self, depth: u32) -> Result<Node, Error> {
        if depth > 100 {
            return Err(Error(1));
        }
        let mut alts = vec![self.cat(depth)?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            alts.push(self.cat(depth)?);
        }
        Ok(if alts.len() == 1 { alts.pop().unwrap() } else { Node::Alt(alts) })
    }

    fn cat(&mut self, depth: u32) -> Result<Node, Error> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            items.push(self.repeat(depth)?);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap(),
            _ => Node::Cat(items),
        })
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut v = 0u32;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.saturating_mul(10).saturating_add((c - b'0') as u32);
            self.pos += 1;
        }
        if self.pos == start {
            None
        } else {
            Some(v.min(1000))
        }
    }

    fn repeat(&mut self, depth: u32) -> Result<Node, Error> {
        let mut node = self.atom(depth)?;
        loop {
            let (min, max) = match self.peek() {
                Some(b'*') => (0, None),
                Some(b'+') => (1, None),
                Some(b'?') => (0, Some(1)),
                Some(b'{') => {
                    self.pos += 1;
                    let min = self.number().ok_or(Error(2))?;
                    let max = if self.peek() == Some(b',') {
                        self.pos += 1;
                        self.number()
                    } else {
                        Some(min)
                    };
                    if self.peek() != Some(b'}') || max.is_some_and(|m| m < min) {
                        return Err(Error(3));
                    }
                    (min, max)
                }
                _ => return Ok(node),
            };
            self.pos += 1;
            let greedy = if self.peek() == Some(b'?') {
                self.pos += 1;
                false
            } else {
                true
            };
            node = Node::Repeat { node: Box::new(node), min, max, greedy };
        }
    }

    fn atom(&mut self, depth: u32) -> Result<Node, Error> {
        let c = self.peek().ok_or(Error(4))?;
        self.pos += 1;
        Ok(match c {
            b'(' => {
                let n = self.alt(depth + 1)?;
                if self.peek() != Some(b')') {
                    return Err(Error(5));
                }
                self.pos += 1;
                n
            }
            b'.' => Node::Any,
            b'^' => Node::Bol,
            b'$' => Node::Eol,
            b'[' => self.class()?,
            b'\\' => {
                let e = self.peek().ok_or(Error(6))?;
                self.pos += 1;
                let mut cls = [0u32; 8];
                if perl_class(&mut cls, e) {
                    Node::Class(Box::new(cls))
                } else {
                    Node::Byte(escape_byte(e))
                }
            }
            b'*' | b'+' | b'?' | b'{' | b')' => return Err(Error(7)),
            _ => Node::Byte(c),
        })
    }

    fn class(&mut self) -> Result<Node, Error> {
        let mut cls = [0u32; 8];
        let negate = self.peek() == Some(b'^');
        if negate {
            self.pos += 1;
        }
        let mut first = true;
        loop {
            let c = self.peek().ok_or(Error(8))?;
            self.pos += 1;
            if c == b']' && !first {
                break;
            }
            first = false;
            let lo = if c == b'\\' {
                let e = self.peek().ok_or(Error(9))?;
                self.pos += 1;
                if perl_class(&mut cls, e) {
                    continue;
                }
                escape_byte(e)
            } else {
                c
            };
            if self.peek() == Some(b'-') && self.s.get(self.pos + 1).is_some_and(|&x| x != b']') {
                self.pos += 1;
                let mut hi = self.peek().ok_or(Error(10))?;
                self.pos += 1;
                if hi == b'\\' {
                    hi = escape_byte(self.peek().ok_or(Error(11))?);
                    self.pos += 1;
                }
                if hi < lo {
                    return Err(Error(12));
                }
                set_range(&mut cls, lo, hi);
            } else {
                set(&mut cls, lo);
            }
        }
        if negate {
            for w in cls.iter_mut() {
                *w = !*w;
            }
        }
        Ok(Node::Class(Box::new(cls)))
    }
}

// ---------------------------------------------------------------- compiler

#[derive(Clone, Copy, Debug)]
enum Inst {
    Byte(u8),
    Any,
    Class(u32),
    Split(u32, u32),
    Jmp(u32),
    Bol,
    Eol,
    Match,
}

/// A compiled pattern.
pub struct Regex {
    prog: Vec<Inst>,
    classes: Vec<[u32; 8]>,
}

struct Compiler {
    prog: Vec<Inst>,
    classes: Vec<[u32; 8]>,
}

impl Compiler {
    fn pc(&self) -> u32 {
        self.prog.len() as u32
    }

    fn emit(&mut self, node: &Node) -> Result<(), Error> {
        if self.prog.len() > 20000 {
            return Err(Error(20));
        }
        match node {
            Node::Empty => {}
            Node::Byte(b) => self.prog.push(Inst::Byte(*b)),
            Node::Any => self.prog.push(Inst::Any),
            Node::Class(c) => {
                let idx = match self.classes.iter().position(|x| x == &**c) {
                    Some(i) => i,
                    None => {
                        self.classes.push(**c);
                        self.classes.len() - 1
                    }
                };
                self.prog.push(Inst::Class(idx as u32));
            }
            Node::Bol => self.prog.push(Inst::Bol),
            Node::Eol => self.prog.push(Inst::Eol),
            Node::Cat(items) => {
                for it in items {
                    self.emit(it)?;
                }
            }
            Node::Alt(alts) => {
                let mut jumps = Vec::new();
                for (i, a) in alts.iter().enumerate() {
                    if i + 1 < alts.len() {
                        let split = self.pc();
                        self.prog.push(Inst::Split(split + 1, 0));
                        self.emit(a)?;
                        jumps.push(self.pc());
                        self.prog.push(Inst::Jmp(0));
                        let next = self.pc();
                        self.prog[split as usize] = Inst::Split(split + 1, next);
                    } else {
                        self.emit(a)?;
                    }
                }
                let end = self.pc();
                for j in jumps {
                    self.prog[j as usize] = Inst::Jmp(end);
                }
            }
            Node::Repeat { node, min, max, greedy } => {
                for _ in 0..*min {
                    self.emit(node)?;
                }
                match max {
                    None => {
                        // L0: split L1, L3; L1: node; jmp L0; L3:
                        let l0 = self.pc();
                        self.prog.push(Inst::Split(0, 0));
                        self.emit(node)?;
                        self.prog.push(Inst::Jmp(l0));
                        let l3 = self.pc();
                        self.prog[l0 as usize] =
                            if *greedy { Inst::Split(l0 + 1, l3) } else { Inst::Split(l3, l0 + 1) };
                    }
                    Some(max) => {
                        let mut holes = Vec::new();
                        for _ in *min..*max {
                            let s = self.pc();
                            self.prog.push(Inst::Split(0, 0));
                            holes.push(s);
                            self.emit(node)?;
                        }
                        let end = self.pc();
                        for s in holes {
                            self.prog[s as usize] =
                                if *greedy { Inst::Split(s + 1, end) } else { Inst::Split(end, s + 1) };
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Regex {
    /// Parses and compiles `pattern`.
    #[inline(never)]
    pub fn new(pattern: &[u8]) -> Result<Regex, Error> {
        let mut p = Parser { s: pattern, pos: 0 };
        let ast = p.alt(0)?;
        if p.pos != pattern.len() {
            return Err(Error(13));
        }
        let mut c = Compiler { prog: Vec::new(), classes: Vec::new() };
        c.emit(&ast)?;
        c.prog.push(Inst::Match);
        Ok(Regex { prog: c.prog, classes: c.classes })
    }

    #[inline]
    fn class_has(&self, idx: u32, b: u8) -> bool {
        self.classes[idx as usize][(b >> 5) as usize] & (1 << (b & 31)) != 0
    }
}

// ---------------------------------------------------------------- Pike VM

struct SparseSet {
    dense: Vec<u32>,
    sparse: Vec<u32>,
    len: usize,
}

impl SparseSet {
    fn new(n: usize) -> Self {
        SparseSet { dense: vec![0; n], sparse: vec![0; n], len: 0 }
    }
    #[inline]
    fn contains(&self, x: u32) -> bool {
        let i = self.sparse[x as usize] as usize;
        i < self.len && self.dense[i] == x
    }
    #[inline]
    fn insert(&mut self, x: u32) {
        self.dense[self.len] = x;
        self.sparse[x as usize] = self.len as u32;
        self.len += 1;
    }
}

/// Reusable matcher state.
pub struct Pike {
    clist: SparseSet,
    nlist: SparseSet,
    stack: Vec<u32>,
}

impl Pike {
    pub fn new(re: &Regex) -> Self {
        let n = re.prog.len();
        Pike { clist: SparseSet::new(n), nlist: SparseSet::new(n), stack: Vec::new() }
    }
}

#[inline]
fn add_thread(re: &Regex, list: &mut SparseSet, stack: &mut Vec<u32>, pc0: u32, pos: usize, len: usize) {
    stack.push(pc0);
    while let Some(pc) = stack.pop() {
        if list.contains(pc) {
            continue;
        }
        list.insert(pc);
        match re.prog[pc as usize] {
            Inst::Jmp(x) => stack.push(x),
            Inst::Split(x, y) => {
                stack.push(y);
                stack.push(x);
            }
            Inst::Bol => {
                if pos == 0 {
                    stack.push(pc + 1)
                }
            }
            Inst::Eol => {
                if pos == len {
                    stack.push(pc + 1)
                }
            }
            _ => {}
        }
    }
}

/// End of the earliest-ending match of `re` in `text`, if any.
#[inline(never)]
pub fn pike_search(re: &Regex, vm: &mut Pike, text: &[u8]) -> Option<u32> {
    let len = text.len();
    vm.clist.len = 0;
    for pos in 0..=len {
        add_thread(re, &mut vm.clist, &mut vm.stack, 0, pos, len);
        vm.nlist.len = 0;
        let c = if pos < len { text[pos] } else { 0 };
        for i in 0..vm.clist.len {
            let pc = vm.clist.dense[i];
            let ok = match re.prog[pc as usize] {
                Inst::Match => return Some(pos as u32),
                Inst::Byte(b) => pos < len && c == b,
                Inst::Any => pos < len && c != b'\n',
                Inst::Class(k) => pos < len && re.class_has(k, c),
                _ => false,
            };
            if ok {
                add_thread(re, &mut vm.nlist, &mut vm.stack, pc + 1, pos + 1, len);
            }
        }
        core::mem::swap(&mut vm.clist, &mut vm.nlist);
    }
    None
}

// ---------------------------------------------------------------- backtracker

/// Leftmost-first backtracking with a visited bitmap over (pc, pos), so each
/// state is explored once and the search stays linear.
pub struct Backtrack {
    visited: Vec<u32>,
}

impl Backtrack {
    pub fn new() -> Self {
        Backtrack { visited: Vec::new() }
    }
}

impl Default for Backtrack {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(never)]
fn bt(re: &Regex, visited: &mut [u32], text: &[u8], mut pc: u32, mut pos: usize) -> Option<u32> {
    let len = text.len();
    loop {
        let key = pc as usize * (len + 1) + pos;
        if visited[key >> 5] & (1 << (key & 31)) != 0 {
            return None;
        }
        visited[key >> 5] |= 1 << (key & 31);
        match re.prog[pc as usize] {
            Inst::Match => return Some(pos as u32),
            Inst::Byte(b) => {
                if pos < len && text[pos] == b {
                    pc += 1;
                    pos += 1;
                } else {
                    return None;
                }
            }
            Inst::Any => {
                if pos < len && text[pos] != b'\n' {
                    pc += 1;
                    pos += 1;
                } else {
                    return None;
                }
            }
            Inst::Class(k) => {
                if pos < len && re.class_has(k, text[pos]) {
                    pc += 1;
                    pos += 1;
                } else {
                    return None;
                }
            }
            Inst::Split(x, y) => {
                if let Some(e) = bt(re, visited, text, x, pos) {
                    return Some(e);
                }
                pc = y;
            }
            Inst::Jmp(x) => pc = x,
            Inst::Bol => {
                if pos == 0 {
                    pc += 1
                } else {
                    return None;
                }
            }
            Inst::Eol => {
                if pos == len {
                    pc += 1
                } else {
                    return None;
                }
            }
        }
    }
}

/// Leftmost-first match `(start, end)` of `re` in `text`, if any.
#[inline(never)]
pub fn bt_search(re: &Regex, st: &mut Backtrack, text: &[u8]) -> Option<(u32, u32)> {
    let bits = re.prog.len() * (text.len() + 1);
    st.visited.clear();
    st.visited.resize(bits.div_ceil(32), 0);
    for start in 0..=text.len() {
        if let Some(end) = bt(re, &mut st.visited, text, 0, start) {
            return Some((start as u32, end));
        }
    }
    None
}

// ---------------------------------------------------------------- text & run

pub const PATTERNS: [&str; 8] = [
    r"[a-z]+@[a-z]+\.(com|org|net)",
    r"\d{4}-\d\d-\d{2}",
    r"^(GET|POST|PUT) /[a-z/]*",
    r"0x[0-9a-fA-F]{4,8}",
    r"(foo|bar)+baz",
    r"[A-Z][a-z]+ [A-Z][a-z]+$",
    r"e[^ ]*r.*!$",
    r"(\w+)\s+(is|was) (not )?an? \w+",
];

const WORDS: [&str; 28] = [
    "the", "error", "server", "foo", "bar", "baz", "foobar", "request", "is", "was", "not", "a", "an",
    "value", "Alice", "Smith", "Bob", "Jones", "ready", "never", "queue", "timer", "eager", "over", "user",
    "data", "x", "id",
];

/// Generated log-like lines.
#[inline(never)]
pub fn generate(seed: u64, lines: u32) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(lines as usize);
    for _ in 0..lines {
        let mut l = Vec::with_capacity(128);
        match rng.below(6) {
            0 => l.extend_from_slice(b"GET /api/v"),
            1 => l.extend_from_slice(b"POST /users/"),
            2 => l.extend_from_slice(b"PUT "),
            _ => {}
        }
        let pieces = 4 + rng.below(12);
        for p in 0..pieces {
            if p > 0 || !l.is_empty() {
                l.push(b' ');
            }
            match rng.below(14) {
                0 => {
                    for _ in 0..(2 + rng.below(6)) {
                        l.push(b'a' + rng.below(26) as u8);
                    }
                    l.push(b'@');
                    for _ in 0..(3 + rng.below(5)) {
                        l.push(b'a' + rng.below(26) as u8);
                    }
                    l.extend_from_slice([&b".com"[..], b".org", b".net", b".io"][rng.index(4)]);
                }
                1 => {
                    let digits = [4, 2, 2];
                    for (i, &d) in digits.iter().enumerate() {
                        if i > 0 {
                            l.push(if rng.below(8) == 0 { b'/' } else { b'-' });
                        }
                        for _ in 0..d {
                            l.push(b'0' + rng.below(10) as u8);
                        }
                    }
                }
                2 => {
                    l.extend_from_slice(b"0x");
                    for _ in 0..(1 + rng.below(10)) {
                        l.push(b"0123456789abcdefABCDEF"[rng.index(22)]);
                    }
                }
                3 => {
                    for _ in 0..(1 + rng.below(3)) {
                        l.extend_from_slice(if rng.below(2) == 0 { b"foo" } else { b"bar" });
                    }
                    if rng.below(2) == 0 {
                        l.extend_from_slice(b"baz");
                    }
                }
                _ => l.extend_from_slice(WORDS[rng.index(WORDS.len() as u32)].as_bytes()),
            }
        }
        if rng.below(4) == 0 {
            l.push(b'!');
        }
        out.push(l);
    }
    out
}

/// Searches every line with every pattern using both engines.
#[inline(never)]
pub fn scan(res: &[Regex], lines: &[Vec<u8>]) -> Option<u64> {
    let mut h = 0u64;
    let mut bt_state = Backtrack::new();
    for (k, re) in res.iter().enumerate() {
        let mut vm = Pike::new(re);
        let mut count = 0u64;
        for (i, line) in lines.iter().enumerate() {
            let a = pike_search(re, &mut vm, line);
            let b = bt_search(re, &mut bt_state, line);
            match (a, b) {
                (None, None) => {}
                (Some(end), Some((s, e))) if end <= e && s <= end => {
                    count += 1;
                    h = mix(h, (i as u64) << 32 | (end as u64) << 16 | (s as u64) << 8 | e as u64);
                }
                _ => return None,
            }
        }
        h = mix(h, (k as u64) << 32 | count);
    }
    Some(h)
}

/// `run(n)`: `n` batches of `LINES` lines, 8 patterns, two engines each.
pub fn run(n: i32) -> i64 {
    let mut res = Vec::new();
    for p in PATTERNS {
        match Regex::new(p.as_bytes()) {
            Ok(r) => res.push(r),
            Err(_) => return -1,
        }
    }
    let mut h = 0u64;
    for r in 0..reps(n) {
        let lines = generate(0x4E6E_0000 + r as u64, LINES);
        match scan(&res, &lines) {
            Some(x) => h = mix(h, x),
            None => return -2,
        }
    }
    finish(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(p: &str, t: &str) -> (Option<u32>, Option<(u32, u32)>) {
        let re = Regex::new(p.as_bytes()).unwrap();
        let mut vm = Pike::new(&re);
        let mut b = Backtrack::new();
        (pike_search(&re, &mut vm, t.as_bytes()), bt_search(&re, &mut b, t.as_bytes()))
    }

    #[test]
    fn basics() {
        assert_eq!(find("abc", "xxabcxx"), (Some(5), Some((2, 5))));
        assert_eq!(find("a+", "baaa"), (Some(2), Some((1, 4))));
        assert_eq!(find("a+?", "baaa"), (Some(2), Some((1, 2))));
        assert_eq!(find("^a", "ba"), (None, None));
        assert_eq!(find("a$", "aba"), (Some(3), Some((2, 3))));
        assert_eq!(find("[^a-c]x", "axbxdx"), (Some(6), Some((4, 6))));
        assert_eq!(find(r"\d{2,3}", "a12345"), (Some(3), Some((1, 4))));
        assert_eq!(find("(a|ab)(c|bcd)", "abcd"), (Some(3), Some((0, 4))));
        assert_eq!(find("(a*)*b", "aaab"), (Some(4), Some((0, 4))));
        assert_eq!(find(r"[a-z]+@[a-z]+\.(com|org)", "mail bob@ex.org now"), (Some(15), Some((5, 15))));
        assert!(Regex::new(b"(ab").is_err());
        assert!(Regex::new(b"*a").is_err());
        assert!(Regex::new(b"[ab").is_err());
    }
}
