//! A small bytecode interpreter: a stack VM with locals, calls and a
//! `match`-based dispatch loop, running loop-heavy programs assembled at run
//! time (prime counting by trial division, recursive Fibonacci, Collatz
//! lengths, and a GCD table).

use crate::{finish, mix, reps};
use alloc::vec;
use alloc::vec::Vec;

// Opcodes. Immediates are little-endian i32 after the opcode byte.
const PUSH: u8 = 0; // imm
const LOAD: u8 = 1; // local index (u8)
const STORE: u8 = 2; // local index (u8)
const ADD: u8 = 3;
const SUB: u8 = 4;
const MUL: u8 = 5;
const DIV: u8 = 6;
const REM: u8 = 7;
const LT: u8 = 8;
const LE: u8 = 9;
const EQ: u8 = 10;
const JMP: u8 = 11; // imm target
const JZ: u8 = 12; // imm target
const JNZ: u8 = 13; // imm target
const CALL: u8 = 14; // imm target, u8 nargs, u8 nlocals
const RET: u8 = 15;
const DUP: u8 = 16;
const POP: u8 = 17;
const INC: u8 = 18; // local index (u8), imm delta
const OUT: u8 = 19; // pop into the output checksum
const HALT: u8 = 20;
const SHR: u8 = 21; // imm shift
const AND: u8 = 22; // imm mask

#[derive(Debug)]
pub struct Error(pub u32);

/// A tiny assembler with forward labels.
pub struct Asm {
    code: Vec<u8>,
    labels: Vec<Option<u32>>,
    fixups: Vec<(usize, usize)>,
}

impl Default for Asm {
    fn default() -> Self {
        Self::new()
    }
}

impl Asm {
    pub fn new() -> Self {
        Asm { code: Vec::new(), labels: Vec::new(), fixups: Vec::new() }
    }
    pub fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    pub fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len() as u32);
    }
    fn imm(&mut self, v: i32) {
        self.code.extend_from_slice(&v.to_le_bytes());
    }
    pub fn op(&mut self, op: u8) -> &mut Self {
        self.code.push(op);
        self
    }
    pub fn push(&mut self, v: i32) -> &mut Self {
        self.code.push(PUSH);
        self.imm(v);
        self
    }
    pub fn load(&mut self, i: u8) -> &mut Self {
        self.code.extend_from_slice(&[LOAD, i]);
        self
    }
    pub fn store(&mut self, i: u8) -> &mut Self {
        self.code.extend_from_slice(&[STORE, i]);
        self
    }
    pub fn inc(&mut self, i: u8, d: i32) -> &mut Self {
        self.code.extend_from_slice(&[INC, i]);
        self.imm(d);
        self
    }
    pub fn shr(&mut self, s: i32) -> &mut Self {
        self.code.push(SHR);
        self.imm(s);
        self
    }
    pub fn and(&mut self, m: i32) -> &mut Self {
        self.code.push(AND);
        self.imm(m);
        self
    }
    pub fn jump(&mut self, op: u8, l: usize) -> &mut Self {
        self.code.push(op);
        self.fixups.push((self.code.len(), l));
        self.imm(0);
        self
    }
    pub fn call(&mut self, l: usize, nargs: u8, nlocals: u8) -> &mut Self {
        self.jump(CALL, l);
        self.code.extend_from_slice(&[nargs, nlocals]);
        self
    }
    pub fn finish(mut self) -> Result<Vec<u8>, Error> {
        for &(at, l) in &self.fixups {
            let t = self.labels[l].ok_or(Error(1))?;
            self.code[at..at + 4].copy_from_slice(&t.to_le_bytes());
        }
        Ok(self.code)
    }
}

struct Frame {
    ret: usize,
    base: usize,
    stack_base: usize,
}

#[inline]
fn imm(code: &[u8], pc: usize) -> i32 {
    i32::from_le_bytes([code[pc], code[pc + 1], code[pc + 2], code[pc + 3]])
}

/// Executes `code` from offset 0 with `main_locals` locals; returns the
/// checksum of everything `OUT` produced and the number of instructions run.
#[inline(never)]
pub fn execute(code: &[u8], main_locals: usize) -> Result<(u64, u64), Error> {
    let mut stack: Vec<i64> = Vec::with_capacity(256);
    let mut locals: Vec<i64> = vec![0; main_locals];
    let mut frames: Vec<Frame> = Vec::new();
    let mut base = 0usize;
    let mut pc = 0usize;
    let mut out = 0u64;
    let mut steps = 0u64;
    macro_rules! pop {
        () => {
            match stack.pop() {
                Some(v) => v,
                None => return Err(Error(2)),
            }
        };
    }
    macro_rules! bin {
        ($f:expr) => {{
            let b = pop!();
            let a = pop!();
            stack.push($f(a, b));
            pc += 1;
        }};
    }
    loop {
        steps += 1;
        let op = *code.get(pc).ok_or(Error(3))?;
        match op {
            PUSH => {
                stack.push(imm(code, pc + 1) as i64);
                pc += 5;
            }
            LOAD => {
                stack.push(locals[base + code[pc + 1] as usize]);
                pc += 2;
            }
            STORE => {
                let v = pop!();
                locals[base + code[pc + 1] as usize] = v;
                pc += 2;
            }
            INC => {
                let slot = base + code[pc + 1] as usize;
                locals[slot] = locals[slot].wrapping_add(imm(code, pc + 2) as i64);
                pc += 6;
            }
            ADD => bin!(|a: i64, b: i64| a.wrapping_add(b)),
            SUB => bin!(|a: i64, b: i64| a.wrapping_sub(b)),
            MUL => bin!(|a: i64, b: i64| a.wrapping_mul(b)),
            DIV | REM => {
                let b = pop!();
                let a = pop!();
                if b == 0 {
                    return Err(Error(4));
                }
                stack.push(if op == DIV { a.wrapping_div(b) } else { a.wrapping_rem(b) });
                pc += 1;
            }
            LT => bin!(|a: i64, b: i64| (a < b) as i64),
            LE => bin!(|a: i64, b: i64| (a <= b) as i64),
            EQ => bin!(|a: i64, b: i64| (a == b) as i64),
            SHR => {
                let a = pop!();
                stack.push(a >> (imm(code, pc + 1) & 63));
                pc += 5;
            }
            AND => {
                let a = pop!();
                stack.push(a & imm(code, pc + 1) as i64);
                pc += 5;
            }
            JMP => pc = imm(code, pc + 1) as u32 as usize,
            JZ => {
                if pop!() == 0 {
                    pc = imm(code, pc + 1) as u32 as usize;
                } else {
                    pc += 5;
                }
            }
            JNZ => {
                if pop!() != 0 {
                    pc = imm(code, pc + 1) as u32 as usize;
                } else {
                    pc += 5;
                }
            }
            CALL => {
                let target = imm(code, pc + 1) as u32 as usize;
                let nargs = code[pc + 5] as usize;
                let nlocals = code[pc + 6] as usize;
                if frames.len() > 10_000 || stack.len() < nargs {
                    return Err(Error(5));
                }
                let new_base = locals.len();
                locals.resize(new_base + nlocals.max(nargs), 0);
                for i in (0..nargs).rev() {
                    locals[new_base + i] = pop!();
                }
                frames.push(Frame { ret: pc + 7, base, stack_base: stack.len() });
                base = new_base;
                pc = target;
            }
            RET => {
                let v = pop!();
                let f = frames.pop().ok_or(Error(6))?;
                stack.truncate(f.stack_base);
                locals.truncate(base);
                base = f.base;
                pc = f.ret;
                stack.push(v);
            }
            DUP => {
                let v = *stack.last().ok_or(Error(7))?;
                stack.push(v);
                pc += 1;
            }
            POP => {
                pop!();
                pc += 1;
            }
            OUT => {
                let v = pop!();
                out = mix(out, v as u64);
                pc += 1;
            }
            HALT => return Ok((out, steps)),
            _ => return Err(Error(8)),
        }
    }
}

/// Assembles the benchmark program, parameterised by its sizes.
pub fn program(prime_limit: i32, fib_n: i32, collatz_limit: i32, gcd_size: i32) -> Result<Vec<u8>, Error> {
    let mut a = Asm::new();
    let fib = a.label();
    let gcd = a.label();

    // ---- main: locals 0=p 1=d 2=count 3=isprime 4=i 5=x 6=steps 7=total 8=j 9=acc
    // Count primes below prime_limit by trial division.
    let outer = a.label();
    let outer_end = a.label();
    let inner = a.label();
    let inner_end = a.label();
    let not_prime = a.label();
    a.push(2).store(0).push(0).store(2);
    a.bind(outer);
    a.load(0).push(prime_limit).op(LT).jump(JZ, outer_end);
    a.push(2).store(1);
    a.bind(inner);
    a.load(1).load(1).op(MUL).load(0).op(LE).jump(JZ, inner_end);
    a.load(0).load(1).op(REM).jump(JZ, not_prime);
    a.inc(1, 1).jump(JMP, inner);
    a.bind(inner_end);
    a.inc(2, 1);
    a.bind(not_prime);
    a.inc(0, 1).jump(JMP, outer);
    a.bind(outer_end);
    a.load(2).op(OUT);

    // Recursive Fibonacci.
    a.push(fib_n).call(fib, 1, 1).op(OUT);

    // Collatz: total steps for 1..collatz_limit.
    let c_outer = a.label();
    let c_outer_end = a.label();
    let c_inner = a.label();
    let c_inner_end = a.label();
    let c_odd = a.label();
    let c_next = a.label();
    a.push(1).store(4).push(0).store(7);
    a.bind(c_outer);
    a.load(4).push(collatz_limit).op(LT).jump(JZ, c_outer_end);
    a.load(4).store(5).push(0).store(6);
    a.bind(c_inner);
    a.load(5).push(1).op(EQ).jump(JNZ, c_inner_end);
    a.load(5).and(1).jump(JNZ, c_odd);
    a.load(5).shr(1).store(5).jump(JMP, c_next);
    a.bind(c_odd);
    a.load(5).push(3).op(MUL).push(1).op(ADD).store(5);
    a.bind(c_next);
    a.inc(6, 1).jump(JMP, c_inner);
    a.bind(c_inner_end);
    a.load(7).load(6).op(ADD).store(7);
    a.inc(4, 1).jump(JMP, c_outer);
    a.bind(c_outer_end);
    a.load(7).op(OUT);

    // GCD table: sum of gcd(i, j) * (i ^ j-ish) for 1..gcd_size squared.
    let g_i = a.label();
    let g_i_end = a.label();
    let g_j = a.label();
    let g_j_end = a.label();
    a.push(1).store(4).push(0).store(9);
    a.bind(g_i);
    a.load(4).push(gcd_size).op(LE).jump(JZ, g_i_end);
    a.push(1).store(8);
    a.bind(g_j);
    a.load(8).push(gcd_size).op(LE).jump(JZ, g_j_end);
    a.load(9).push(31).op(MUL).load(4).load(8).call(gcd, 2, 2).op(ADD).and(0x7FFF_FFFF).store(9);
    a.inc(8, 1).jump(JMP, g_j);
    a.bind(g_j_end);
    a.inc(4, 1).jump(JMP, g_i);
    a.bind(g_i_end);
    a.load(9).op(OUT);
    a.op(HALT);

    // ---- fib(n): n < 2 ? n : fib(n-1) + fib(n-2)
    let fib_rec = a.label();
    a.bind(fib);
    a.load(0).push(2).op(LT).jump(JZ, fib_rec);
    a.load(0).op(RET);
    a.bind(fib_rec);
    a.load(0).push(1).op(SUB).call(fib, 1, 1);
    a.load(0).push(2).op(SUB).call(fib, 1, 1);
    a.op(ADD).op(RET);

    // ---- gcd(a, b): Euclid with a loop.
    let gl = a.label();
    let gl_end = a.label();
    a.bind(gcd);
    a.bind(gl);
    a.load(1).jump(JZ, gl_end);
    a.load(0).load(1).op(REM); // a % b
    a.load(1).store(0).store(1); // a = b; b = a % b
    a.jump(JMP, gl);
    a.bind(gl_end);
    a.load(0).op(RET);

    a.finish()
}

/// Program sizes for one unit of `n` (varied slightly per repetition).
pub const PRIME_LIMIT: i32 = 30_000;
pub const FIB_N: i32 = 22;
pub const COLLATZ_LIMIT: i32 = 7_500;
pub const GCD_SIZE: i32 = 120;

/// `run(n)`: assembles and executes the program `n` times.
pub fn run(n: i32) -> i64 {
    let mut h = 0u64;
    for r in 0..reps(n) as i32 {
        let code = match program(PRIME_LIMIT + r % 7, FIB_N + r % 2, COLLATZ_LIMIT + r % 5, GCD_SIZE + r % 3) {
            Ok(c) => c,
            Err(_) => return -1,
        };
        match execute(&code, 10) {
            Ok((out, steps)) => {
                h = mix(h, out);
                h = mix(h, steps);
            }
            Err(_) => return -2,
        }
    }
    finish(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_program() {
        // primes below 100 = 25, fib(10) = 55, collatz total for 1..10.
        let code = program(100, 10, 10, 3).unwrap();
        let (out, _) = execute(&code, 10).unwrap();
        let collatz: i64 = (1..10i64)
            .map(|mut x| {
                let mut s = 0;
                while x != 1 {
                    x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
                    s += 1;
                }
                s
            })
            .sum();
        fn g(a: i64, b: i64) -> i64 {
            if b == 0 {
                a
            } else {
                g(b, a % b)
            }
        }
        let mut acc = 0i64;
        for i in 1..=3 {
            for j in 1..=3 {
                acc = (acc * 31 + g(i, j)) & 0x7FFF_FFFF;
            }
        }
        let mut want = 0u64;
        for v in [25i64, 55, collatz, acc] {
            want = mix(want, v as u64);
        }
        assert_eq!(out, want);
    }
}
