//! Random programs and their code mutations, for the patch-equivalence
//! fuzzer (`patch_equivalence.rs`, which includes this file).
//!
//! A [`Prog`] is a small module kept as a tree, so that a mutation can name
//! a node and the result can be printed as WAT again:
//!
//! - a type section with repeated identical types (functions declare either
//!   copy, as the type map of `diff` must tell them apart: issue 12 item 10);
//! - the thread ABI's `yield` (the only import), one memory page, a table of
//!   8 funcrefs partly filled, a few mutable globals and a `fuel` global;
//! - functions `$f0..` (exported as `f0..`) whose bodies assign globals and
//!   locals, store to memory, yield, branch, run counted loops, call
//!   functions of a higher *rank* directly or through the table, and may
//!   trap (division, memory bounds, `unreachable`, the table's null and
//!   mistyped entries);
//! - fixed exports that are never mutated: `reset` (globals, memory and
//!   fuel back to their initial values), `refuel`, `digest` (a hash of the
//!   memory) and one worker `w<i>` per function, which loops calling `f<i>`
//!   and yielding, for threads running while a bundle is applied.
//!
//! Termination: direct calls only go to functions of a higher rank, the
//! table holds only functions of the upper half of the ranks and only the
//! lower half calls through it, loops are counted (1 to 4 times), and every
//! generated function entry costs one unit of fuel (trap `unreachable` at
//! zero), so a call tree that fans out stays bounded too.
//!
//! [`mutate`] makes M' from M with the code mutations of the brief: change a
//! constant, swap an operator for another of the same type, wrap an
//! expression in a call to a new function (often of a new type, inserted
//! anywhere in the type and function lists), retarget a call to another
//! function of the same signature, read another global, add a statement;
//! and two that diff must treat with care: give an internal (unexported)
//! function one more parameter (its callers change with it), or remove an
//! internal function (its table entries too, which diff must refuse).
//! Imports, globals, memory and exports never change.

use arbitrary::{Result, Unstructured};
use std::fmt::Write as _;

/// A value type of generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// i32.
    I32,
    /// i64.
    I64,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::I32 => "i32",
            Ty::I64 => "i64",
        }
    }
}

/// A function type: parameters and one result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sig {
    /// Parameter types.
    pub params: Vec<Ty>,
    /// Result type.
    pub result: Ty,
}

/// A named type of the type section.
#[derive(Clone, Debug)]
pub struct TypeDef {
    /// `$<name>` in the WAT.
    pub name: String,
    /// Its signature.
    pub sig: Sig,
}

/// Integer operators (the same list for i32 and i64).
const BINOPS: &[&str] = &[
    "add", "sub", "mul", "and", "or", "xor", "shl", "shr_s", "shr_u", "rotl", "rotr", "div_s",
    "div_u", "rem_s", "rem_u",
];
/// Comparisons (result i32).
const RELOPS: &[&str] = &["eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "ge_u"];

/// An expression of generated code.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A constant of the type.
    Const(Ty, i64),
    /// `local.get` (parameters first).
    Local(u32),
    /// `global.get $g<k>`.
    Global(usize),
    /// `<ty>.<op>` on two operands of `ty`.
    Bin(Ty, &'static str, Box<Expr>, Box<Expr>),
    /// `<ty>.<op>` comparison of two operands of `ty`, giving i32.
    Cmp(Ty, &'static str, Box<Expr>, Box<Expr>),
    /// `i32.wrap_i64`.
    Wrap(Box<Expr>),
    /// `i64.extend_i32_s`.
    Extend(Box<Expr>),
    /// `select` between two values of one type on an i32.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// A direct call of the named function.
    Call(String, Vec<Expr>),
    /// `call_indirect` through the table with the named type.
    CallIndirect(String, Vec<Expr>, Box<Expr>),
    /// A load at a masked (in bounds) address, or at a raw one.
    Load(Ty, Box<Expr>, bool),
}

/// A statement of generated code.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `global.set $g<k>`.
    GlobalSet(usize, Expr),
    /// `local.set`.
    LocalSet(u32, Expr),
    /// A store of a value of the type (address as in [`Expr::Load`]).
    Store(Ty, Expr, bool, Expr),
    /// `call $yield`.
    Yield,
    /// A value computed for its effects.
    Drop(Expr),
    /// `if` / `else` on an i32.
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    /// A loop run `count` times (1 to 4), counting down in local `counter`.
    Loop(u32, u32, Vec<Stmt>),
    /// `unreachable`.
    Trap,
}

/// A generated function.
#[derive(Clone, Debug)]
pub struct Func {
    /// `$<name>`, also its export name.
    pub name: String,
    /// Whether it is exported (then it has a worker and the script calls
    /// it); only original functions are.
    pub exported: bool,
    /// Seeds of the two argument lists the script calls it with.
    pub arg_seeds: [i64; 2],
    /// Its calls go only to functions of a higher rank.
    pub rank: u32,
    /// Index into [`Prog::types`].
    pub ty: usize,
    /// Declared locals (after the parameters).
    pub locals: Vec<Ty>,
    /// Locals used as loop counters (never assigned by statements).
    pub counters: Vec<u32>,
    /// Statements, then the result.
    pub body: Vec<Stmt>,
    /// The result expression.
    pub ret: Expr,
}

/// A generated module.
#[derive(Clone, Debug)]
pub struct Prog {
    /// The type section, in order.
    pub types: Vec<TypeDef>,
    /// Globals: type and initial value.
    pub globals: Vec<(Ty, i64)>,
    /// The functions, in module order.
    pub funcs: Vec<Func>,
    /// The table: offset of the element segment and the functions in it.
    pub table: (u32, Vec<String>),
    /// Rank from which functions may be in the table (and below which they
    /// may call through it).
    pub table_rank: u32,
    /// Counter for fresh names.
    pub next_name: u32,
    /// Whether mutations put new functions after all others (M' → M'':
    /// the functions M' added keep their places, as a developer who adds
    /// code to a patched build would keep them).
    pub append_new: bool,
}

/// Fuel of one call from the host (function entries).
pub const FUEL: i64 = 3_000;
/// Size of the table.
const TABLE: u32 = 8;

impl Prog {
    /// The signature of a function.
    pub fn sig(&self, f: &Func) -> &Sig {
        &self.types[f.ty].sig
    }

    /// Types of the parameters and locals of `f`, by local index.
    fn local_types(&self, f: &Func) -> Vec<Ty> {
        let mut v = self.sig(f).params.clone();
        v.extend(&f.locals);
        v
    }

    /// The exported functions with their signatures and argument seeds,
    /// in rank order (the same in M and M').
    pub fn exports(&self) -> Vec<(String, Sig, [i64; 2])> {
        let mut v: Vec<&Func> = self.funcs.iter().filter(|f| f.exported).collect();
        v.sort_by_key(|f| f.rank);
        v.into_iter()
            .map(|f| (f.name.clone(), self.sig(f).clone(), f.arg_seeds))
            .collect()
    }
}

/// Context of expression generation in one function.
struct Gen<'a> {
    prog: &'a Prog,
    rank: u32,
    locals: Vec<Ty>,
    counters: Vec<u32>,
    /// Whether `call_indirect` may be used.
    indirect: bool,
}

fn any_ty(u: &mut Unstructured<'_>) -> Result<Ty> {
    Ok(if u.arbitrary()? { Ty::I64 } else { Ty::I32 })
}

fn constant(u: &mut Unstructured<'_>, ty: Ty) -> Result<i64> {
    // Mostly small values (shifts, divisors, addresses), sometimes the edges
    // that trap a division.
    Ok(match u.int_in_range(0..=9u8)? {
        0 => 0,
        1 => -1,
        2 => match ty {
            Ty::I32 => i32::MIN as i64,
            Ty::I64 => i64::MIN,
        },
        3..=6 => u.int_in_range(-20..=100)?,
        _ => match ty {
            Ty::I32 => u.arbitrary::<i32>()? as i64,
            Ty::I64 => u.arbitrary::<i64>()?,
        },
    })
}

impl Gen<'_> {
    fn expr(&mut self, u: &mut Unstructured<'_>, ty: Ty, depth: u32) -> Result<Expr> {
        let leaf = depth == 0 || u.ratio(1, 4)?;
        if leaf {
            let locals: Vec<u32> = (0..self.locals.len() as u32)
                .filter(|&i| self.locals[i as usize] == ty)
                .collect();
            let globals: Vec<usize> = (0..self.prog.globals.len())
                .filter(|&k| self.prog.globals[k].0 == ty)
                .collect();
            return Ok(match u.int_in_range(0..=2u8)? {
                0 if !locals.is_empty() => Expr::Local(*u.choose(&locals)?),
                1 if !globals.is_empty() => Expr::Global(*u.choose(&globals)?),
                _ => Expr::Const(ty, constant(u, ty)?),
            });
        }
        let d = depth - 1;
        Ok(match u.int_in_range(0..=9u8)? {
            0..=2 => Expr::Bin(
                ty,
                u.choose(BINOPS)?,
                Box::new(self.expr(u, ty, d)?),
                Box::new(self.expr(u, ty, d)?),
            ),
            3 => match ty {
                Ty::I32 => {
                    let t = any_ty(u)?;
                    Expr::Cmp(
                        t,
                        u.choose(RELOPS)?,
                        Box::new(self.expr(u, t, d)?),
                        Box::new(self.expr(u, t, d)?),
                    )
                }
                Ty::I64 => Expr::Extend(Box::new(self.expr(u, Ty::I32, d)?)),
            },
            4 if ty == Ty::I32 => Expr::Wrap(Box::new(self.expr(u, Ty::I64, d)?)),
            4 => Expr::Select(
                Box::new(self.expr(u, ty, d)?),
                Box::new(self.expr(u, ty, d)?),
                Box::new(self.expr(u, Ty::I32, d)?),
            ),
            5 | 6 => match self.call(u, ty, d)? {
                Some(e) => e,
                None => Expr::Const(ty, constant(u, ty)?),
            },
            7 if self.indirect => {
                let types: Vec<usize> = (0..self.prog.types.len())
                    .filter(|&k| self.prog.types[k].sig.result == ty)
                    .collect();
                if types.is_empty() {
                    Expr::Const(ty, constant(u, ty)?)
                } else {
                    let k = *u.choose(&types)?;
                    let args = self.args(u, &self.prog.types[k].sig.params.clone(), d)?;
                    let index = if u.ratio(1, 3)? {
                        Expr::Const(Ty::I32, u.int_in_range(0..=TABLE as i64 + 1)?)
                    } else {
                        Expr::Bin(
                            Ty::I32,
                            "and",
                            Box::new(self.expr(u, Ty::I32, d)?),
                            Box::new(Expr::Const(Ty::I32, 7)),
                        )
                    };
                    Expr::CallIndirect(self.prog.types[k].name.clone(), args, Box::new(index))
                }
            }
            _ => Expr::Load(ty, Box::new(self.expr(u, Ty::I32, d)?), u.ratio(7, 8)?),
        })
    }

    fn args(&mut self, u: &mut Unstructured<'_>, params: &[Ty], depth: u32) -> Result<Vec<Expr>> {
        params.iter().map(|&t| self.expr(u, t, depth)).collect()
    }

    /// A call of a function of a higher rank returning `ty`, if there is one.
    fn call(&mut self, u: &mut Unstructured<'_>, ty: Ty, depth: u32) -> Result<Option<Expr>> {
        let callees: Vec<&Func> = self
            .prog
            .funcs
            .iter()
            .filter(|f| f.rank > self.rank && self.prog.sig(f).result == ty)
            .collect();
        if callees.is_empty() {
            return Ok(None);
        }
        let f = *u.choose(&callees)?;
        let (name, params) = (f.name.clone(), self.prog.sig(f).params.clone());
        Ok(Some(Expr::Call(name, self.args(u, &params, depth)?)))
    }

    fn stmts(&mut self, u: &mut Unstructured<'_>, depth: u32) -> Result<Vec<Stmt>> {
        let n = u.int_in_range(0..=if depth > 0 { 4 } else { 2 })?;
        (0..n).map(|_| self.stmt(u, depth)).collect()
    }

    fn stmt(&mut self, u: &mut Unstructured<'_>, depth: u32) -> Result<Stmt> {
        const E: u32 = 3;
        Ok(match u.int_in_range(0..=11u8)? {
            0 | 1 if !self.prog.globals.is_empty() => {
                let k = u.choose_index(self.prog.globals.len())?;
                Stmt::GlobalSet(k, self.expr(u, self.prog.globals[k].0, E)?)
            }
            2 | 3 => {
                let assignable: Vec<u32> = (0..self.locals.len() as u32)
                    .filter(|i| !self.counters.contains(i))
                    .collect();
                match u.choose(&assignable) {
                    Ok(&i) => Stmt::LocalSet(i, self.expr(u, self.locals[i as usize], E)?),
                    Err(_) => Stmt::Yield,
                }
            }
            4 | 5 => {
                let ty = any_ty(u)?;
                Stmt::Store(
                    ty,
                    self.expr(u, Ty::I32, 2)?,
                    u.ratio(7, 8)?,
                    self.expr(u, ty, E)?,
                )
            }
            6 | 7 => Stmt::Yield,
            8 => {
                let ty = any_ty(u)?;
                Stmt::Drop(self.expr(u, ty, E)?)
            }
            9 if depth > 0 => Stmt::If(
                self.expr(u, Ty::I32, 2)?,
                self.stmts(u, depth - 1)?,
                self.stmts(u, depth - 1)?,
            ),
            10 if depth > 0 => {
                let counter = self.locals.len() as u32;
                self.locals.push(Ty::I32);
                self.counters.push(counter);
                Stmt::Loop(counter, u.int_in_range(1..=4)?, self.stmts(u, depth - 1)?)
            }
            11 if u.ratio(1, 3)? => {
                Stmt::If(self.expr(u, Ty::I32, 1)?, vec![Stmt::Trap], Vec::new())
            }
            _ => Stmt::Yield,
        })
    }
}

/// Fills `f`'s locals, body and result (its type and rank are set).
fn fill(prog: &Prog, u: &mut Unstructured<'_>, f: &mut Func, indirect: bool) -> Result<()> {
    let mut g = Gen {
        prog,
        rank: f.rank,
        locals: prog.local_types(f),
        counters: Vec::new(),
        indirect,
    };
    let params = g.locals.len();
    for _ in 0..u.int_in_range(0..=2)? {
        g.locals.push(any_ty(u)?);
    }
    f.body = g.stmts(u, 2)?;
    f.ret = g.expr(u, prog.sig(f).result, 4)?;
    f.locals = g.locals[params..].to_vec();
    f.counters = g.counters;
    Ok(())
}

fn random_sig(u: &mut Unstructured<'_>) -> Result<Sig> {
    let n = u.int_in_range(0..=3)?;
    Ok(Sig {
        params: (0..n).map(|_| any_ty(u)).collect::<Result<_>>()?,
        result: any_ty(u)?,
    })
}

/// A random module M.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Prog> {
    let mut types: Vec<TypeDef> = Vec::new();
    for k in 0..u.int_in_range(2..=5)? {
        let sig = if k > 0 && u.ratio(1, 3)? {
            types[u.choose_index(types.len())?].sig.clone()
        } else {
            random_sig(u)?
        };
        types.push(TypeDef {
            name: format!("t{k}"),
            sig,
        });
    }
    let globals = (0..u.int_in_range(1..=3)?)
        .map(|_| {
            let t = any_ty(u)?;
            Ok((t, constant(u, t)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let n = u.int_in_range(3..=7u32)?;
    let mut prog = Prog {
        types,
        globals,
        funcs: Vec::new(),
        table: (0, Vec::new()),
        table_rank: n.div_ceil(2) * 10,
        next_name: 0,
        append_new: false,
    };
    // Ranks 0, 10, 20, ...: room for new functions in between.
    for i in 0..n {
        let ty = u.choose_index(prog.types.len())?;
        prog.funcs.push(Func {
            name: format!("f{i}"),
            // f0 is always exported.
            exported: i == 0 || !u.ratio(1, 4)?,
            arg_seeds: [u.arbitrary()?, u.arbitrary()?],
            rank: i * 10,
            ty,
            locals: Vec::new(),
            counters: Vec::new(),
            body: Vec::new(),
            ret: Expr::Const(Ty::I32, 0),
        });
    }
    // Bodies from the highest rank down, so that callees exist.
    for i in (0..n as usize).rev() {
        let mut f = prog.funcs[i].clone();
        let indirect = f.rank < prog.table_rank;
        fill(&prog, u, &mut f, indirect)?;
        prog.funcs[i] = f;
    }
    let upper: Vec<String> = prog
        .funcs
        .iter()
        .filter(|f| f.rank >= prog.table_rank)
        .map(|f| f.name.clone())
        .collect();
    let count = u.int_in_range(1..=upper.len().min(TABLE as usize - 1))?;
    let entries = (0..count)
        .map(|_| u.choose(&upper).cloned())
        .collect::<Result<Vec<_>>>()?;
    let offset = u.int_in_range(0..=TABLE - count as u32)?;
    prog.table = (offset, entries);
    Ok(prog)
}

/// Visits every expression of a function, outermost first, with the
/// function-local context; stops when `f` returns true.
fn walk_exprs(f: &mut Func, visit: &mut dyn FnMut(&mut Expr) -> bool) -> bool {
    fn expr(e: &mut Expr, visit: &mut dyn FnMut(&mut Expr) -> bool) -> bool {
        if visit(e) {
            return true;
        }
        match e {
            Expr::Const(..) | Expr::Local(_) | Expr::Global(_) => false,
            Expr::Bin(_, _, a, b) | Expr::Cmp(_, _, a, b) => expr(a, visit) || expr(b, visit),
            Expr::Wrap(a) | Expr::Extend(a) | Expr::Load(_, a, _) => expr(a, visit),
            Expr::Select(a, b, c) => expr(a, visit) || expr(b, visit) || expr(c, visit),
            Expr::Call(_, args) => args.iter_mut().any(|a| expr(a, visit)),
            Expr::CallIndirect(_, args, i) => {
                args.iter_mut().any(|a| expr(a, visit)) || expr(i, visit)
            }
        }
    }
    fn stmts(s: &mut [Stmt], visit: &mut dyn FnMut(&mut Expr) -> bool) -> bool {
        s.iter_mut().any(|s| match s {
            Stmt::GlobalSet(_, e) | Stmt::LocalSet(_, e) | Stmt::Drop(e) => expr(e, visit),
            Stmt::Store(_, a, _, v) => expr(a, visit) || expr(v, visit),
            Stmt::If(c, t, e) => expr(c, visit) || stmts(t, visit) || stmts(e, visit),
            Stmt::Loop(_, _, b) => stmts(b, visit),
            Stmt::Yield | Stmt::Trap => false,
        })
    }
    stmts(&mut f.body, visit) || expr(&mut f.ret, visit)
}

/// The value type of an expression of a function with local types
/// `locals`.
fn type_of(e: &Expr, prog: &Prog, locals: &[Ty]) -> Ty {
    match e {
        Expr::Const(t, _) | Expr::Bin(t, ..) | Expr::Load(t, ..) => *t,
        Expr::Local(i) => locals[*i as usize],
        Expr::Global(k) => prog.globals[*k].0,
        Expr::Cmp(..) | Expr::Wrap(_) => Ty::I32,
        Expr::Extend(_) => Ty::I64,
        Expr::Select(a, ..) => type_of(a, prog, locals),
        Expr::Call(name, _) => {
            let f = prog.funcs.iter().find(|f| &f.name == name).expect("callee");
            prog.sig(f).result
        }
        Expr::CallIndirect(ty, ..) => {
            let t = prog.types.iter().find(|t| &t.name == ty).expect("type");
            t.sig.result
        }
    }
}

/// Picks the `k`-th expression of `f` that `want` accepts and replaces it
/// with `make(old)`; returns whether there was one.
fn replace_nth(
    f: &mut Func,
    k: usize,
    want: &dyn Fn(&Expr) -> bool,
    make: &mut dyn FnMut(&mut Expr),
) -> bool {
    let mut seen = 0;
    walk_exprs(f, &mut |e| {
        if want(e) {
            if seen == k {
                make(e);
                return true;
            }
            seen += 1;
        }
        false
    })
}

fn count(f: &mut Func, want: &dyn Fn(&Expr) -> bool) -> usize {
    let mut n = 0;
    walk_exprs(f, &mut |e| {
        n += want(e) as usize;
        false
    });
    n
}

/// A type index for `sig`: an existing type of that signature (half of the
/// time when there is one) or a new type inserted anywhere, shifting the
/// types after it (the index it was inserted at is returned too).
fn type_for(
    prog: &mut Prog,
    u: &mut Unstructured<'_>,
    sig: &Sig,
) -> Result<(usize, Option<usize>)> {
    let existing = prog.types.iter().position(|t| &t.sig == sig);
    if let Some(i) = existing {
        if u.ratio(1, 2)? {
            return Ok((i, None));
        }
    }
    prog.next_name += 1;
    let at = u.int_in_range(0..=prog.types.len())?;
    prog.types.insert(
        at,
        TypeDef {
            name: format!("n{}", prog.next_name),
            sig: sig.clone(),
        },
    );
    for g in &mut prog.funcs {
        if g.ty >= at {
            g.ty += 1;
        }
    }
    Ok((at, Some(at)))
}

/// Renumbers the locals of `stmts` from `from` on by one (a parameter was
/// inserted before them).
fn shift_locals(stmts: &mut [Stmt], from: u32) {
    let bump = |i: &mut u32| {
        if *i >= from {
            *i += 1;
        }
    };
    for s in stmts {
        match s {
            Stmt::LocalSet(i, _) => bump(i),
            Stmt::Loop(c, _, body) => {
                bump(c);
                shift_locals(body, from);
            }
            Stmt::If(_, t, e) => {
                shift_locals(t, from);
                shift_locals(e, from);
            }
            _ => {}
        }
    }
}

/// A signature change: an internal function gets one more parameter, which
/// its result uses, and every call passes a constant for it.
fn change_signature(prog: &mut Prog, u: &mut Unstructured<'_>) -> Result<Option<String>> {
    let internal: Vec<usize> = (0..prog.funcs.len())
        .filter(|&i| !prog.funcs[i].exported)
        .collect();
    if internal.is_empty() {
        return Ok(None);
    }
    let gi = *u.choose(&internal)?;
    let mut sig = prog.sig(&prog.funcs[gi]).clone();
    let extra = any_ty(u)?;
    let p = sig.params.len() as u32;
    sig.params.push(extra);
    let c = constant(u, extra)?;
    let (ty, _) = type_for(prog, u, &sig)?;
    let mut g = prog.funcs[gi].clone();
    g.ty = ty;
    // Locals after the parameters move up by one.
    walk_exprs(&mut g, &mut |e| {
        if let Expr::Local(i) = e {
            if *i >= p {
                *i += 1;
            }
        }
        false
    });
    shift_locals(&mut g.body, p);
    for c in &mut g.counters {
        *c += 1;
    }
    let arg = Expr::Local(p);
    let arg = match (sig.result, extra) {
        (Ty::I32, Ty::I64) => Expr::Wrap(Box::new(arg)),
        (Ty::I64, Ty::I32) => Expr::Extend(Box::new(arg)),
        _ => arg,
    };
    let ret = std::mem::replace(&mut g.ret, Expr::Const(Ty::I32, 0));
    g.ret = Expr::Bin(sig.result, "add", Box::new(ret), Box::new(arg));
    let name = g.name.clone();
    prog.funcs[gi] = g;
    let mut sites = 0;
    for f in &mut prog.funcs {
        walk_exprs(f, &mut |e| {
            if let Expr::Call(callee, args) = e {
                if *callee == name {
                    args.push(Expr::Const(extra, c));
                    sites += 1;
                }
            }
            false
        });
    }
    Ok(Some(format!(
        "{name}: new parameter {extra:?} ({sites} call sites pass {c})"
    )))
}

/// An internal function removed: its calls become constants (and its table
/// entries go, which diff must refuse).
fn remove_function(prog: &mut Prog, u: &mut Unstructured<'_>) -> Result<Option<String>> {
    let internal: Vec<usize> = (0..prog.funcs.len())
        .filter(|&i| !prog.funcs[i].exported)
        .collect();
    if internal.is_empty() {
        return Ok(None);
    }
    let gi = *u.choose(&internal)?;
    let result = prog.sig(&prog.funcs[gi]).result;
    let c = constant(u, result)?;
    let g = prog.funcs.remove(gi);
    for f in &mut prog.funcs {
        walk_exprs(f, &mut |e| {
            if matches!(e, Expr::Call(callee, _) if *callee == g.name) {
                *e = Expr::Const(result, c);
            }
            false
        });
    }
    let before = prog.table.1.len();
    prog.table.1.retain(|n| *n != g.name);
    let note = if prog.table.1.len() < before {
        " and its table entries"
    } else {
        ""
    };
    Ok(Some(format!("{} removed{note}", g.name)))
}

/// One code mutation of `prog`; returns a description, or `None` when the
/// chosen kind found nothing to change.
fn mutate_once(prog: &mut Prog, u: &mut Unstructured<'_>) -> Result<Option<String>> {
    let kind = u.int_in_range(0..=8u8)?;
    match kind {
        7 => return change_signature(prog, u),
        8 => return remove_function(prog, u),
        _ => {}
    }
    let fi = u.choose_index(prog.funcs.len())?;
    let mut f = prog.funcs[fi].clone();
    let name = f.name.clone();
    let locals = prog.local_types(&f);
    let what = match kind {
        0 => {
            let want = |e: &Expr| matches!(e, Expr::Const(..));
            let n = count(&mut f, &want);
            if n == 0 {
                return Ok(None);
            }
            let k = u.int_in_range(0..=n - 1)?;
            let mut new = None;
            replace_nth(&mut f, k, &want, &mut |e| {
                if let Expr::Const(t, v) = e {
                    let c = new.get_or_insert((*t, *v ^ 1));
                    *v = c.1;
                }
            });
            if let Some((t, v)) = new {
                // A second byte decides whether the flip is replaced by a
                // fresh constant (the flip keeps some equal-looking results).
                if u.arbitrary::<bool>()? {
                    let fresh = constant(u, t)?;
                    replace_nth(&mut f, k, &want, &mut |e| *e = Expr::Const(t, fresh));
                    format!("{name}: constant {v} → {fresh}")
                } else {
                    format!("{name}: constant {} → {v}", v ^ 1)
                }
            } else {
                return Ok(None);
            }
        }
        1 => {
            let want = |e: &Expr| matches!(e, Expr::Bin(..) | Expr::Cmp(..));
            let n = count(&mut f, &want);
            if n == 0 {
                return Ok(None);
            }
            let k = u.int_in_range(0..=n - 1)?;
            let bin = *u.choose(BINOPS)?;
            let rel = *u.choose(RELOPS)?;
            let mut what = String::new();
            replace_nth(&mut f, k, &want, &mut |e| match e {
                Expr::Bin(t, op, ..) => {
                    what = format!("{name}: {t:?}.{op} → {bin}");
                    *op = bin;
                }
                Expr::Cmp(t, op, ..) => {
                    what = format!("{name}: {t:?}.{op} → {rel}");
                    *op = rel;
                }
                _ => {}
            });
            what
        }
        2 | 3 => {
            // Wrap an expression of a non-call kind in a call to a new
            // function, whose type is new more often than not.
            let want = |e: &Expr| !matches!(e, Expr::Call(..) | Expr::CallIndirect(..));
            let n = count(&mut f, &want);
            if n == 0 {
                return Ok(None);
            }
            let k = u.int_in_range(0..=n - 1)?;
            let mut target = None;
            replace_nth(&mut f, k, &want, &mut |e| target = Some(e.clone()));
            let Some(target) = target else {
                return Ok(None);
            };
            let ty = type_of(&target, prog, &locals);
            let mut sig = Sig {
                params: vec![ty],
                result: ty,
            };
            for _ in 0..u.int_in_range(0..=2)? {
                sig.params.push(any_ty(u)?);
            }
            if u.ratio(1, 4)? {
                sig.result = any_ty(u)?;
            }
            let (ty_index, shifted) = type_for(prog, u, &sig)?;
            if shifted.is_some_and(|at| f.ty >= at) {
                f.ty += 1;
            }
            prog.next_name += 1;
            let mut h = Func {
                name: format!("h{}", prog.next_name),
                exported: false,
                arg_seeds: [0; 2],
                rank: f.rank,
                ty: ty_index,
                locals: Vec::new(),
                counters: Vec::new(),
                body: Vec::new(),
                ret: Expr::Const(ty, 0),
            };
            let indirect = h.rank < prog.table_rank;
            fill(prog, u, &mut h, indirect)?;
            // The result passes through a conversion when the types differ.
            let extra: Vec<Expr> = sig.params[1..]
                .iter()
                .map(|&t| Ok(Expr::Const(t, constant(u, t)?)))
                .collect::<Result<_>>()?;
            let hname = h.name.clone();
            replace_nth(&mut f, k, &want, &mut |e| {
                let mut args = vec![e.clone()];
                args.extend(extra.iter().cloned());
                let call = Expr::Call(hname.clone(), args);
                *e = match (sig.result, ty) {
                    (Ty::I32, Ty::I64) => Expr::Extend(Box::new(call)),
                    (Ty::I64, Ty::I32) => Expr::Wrap(Box::new(call)),
                    _ => call,
                };
            });
            let at = if prog.append_new {
                prog.funcs.len()
            } else {
                u.int_in_range(0..=prog.funcs.len())?
            };
            let what = format!(
                "{name}: calls new {hname} of type {}",
                prog.types[ty_index].name
            );
            prog.funcs.insert(at, h);
            let fi = if at <= fi { fi + 1 } else { fi };
            prog.funcs[fi] = f;
            return Ok(Some(what));
        }
        4 => {
            // Retarget a direct call to another function of the same
            // signature and a higher rank.
            let sigs: Vec<(String, Sig, u32)> = prog
                .funcs
                .iter()
                .map(|g| (g.name.clone(), prog.sig(g).clone(), g.rank))
                .collect();
            let rank = f.rank;
            let want = |e: &Expr| matches!(e, Expr::Call(..));
            let n = count(&mut f, &want);
            if n == 0 {
                return Ok(None);
            }
            let k = u.int_in_range(0..=n - 1)?;
            let pick = u.arbitrary::<u8>()? as usize;
            let mut what = None;
            replace_nth(&mut f, k, &want, &mut |e| {
                if let Expr::Call(callee, _) = e {
                    let sig = &sigs.iter().find(|s| &s.0 == callee).expect("callee").1;
                    let others: Vec<&String> = sigs
                        .iter()
                        .filter(|s| &s.1 == sig && s.2 > rank && &s.0 != callee)
                        .map(|s| &s.0)
                        .collect();
                    if !others.is_empty() {
                        let to = others[pick % others.len()].clone();
                        what = Some(format!("{name}: call {callee} → {to}"));
                        *callee = to;
                    }
                }
            });
            match what {
                Some(w) => w,
                None => return Ok(None),
            }
        }
        5 => {
            let want = |e: &Expr| matches!(e, Expr::Global(_));
            let n = count(&mut f, &want);
            if n == 0 {
                return Ok(None);
            }
            let k = u.int_in_range(0..=n - 1)?;
            let globals = prog.globals.clone();
            let pick = u.arbitrary::<u8>()? as usize;
            let mut what = None;
            replace_nth(&mut f, k, &want, &mut |e| {
                if let Expr::Global(g) = e {
                    let same: Vec<usize> = (0..globals.len())
                        .filter(|&j| j != *g && globals[j].0 == globals[*g].0)
                        .collect();
                    if !same.is_empty() {
                        let to = same[pick % same.len()];
                        what = Some(format!("{name}: global.get g{g} → g{to}"));
                        *g = to;
                    }
                }
            });
            match what {
                Some(w) => w,
                None => return Ok(None),
            }
        }
        _ => {
            // A new statement (may itself call, yield or trap).
            let mut g = Gen {
                prog,
                rank: f.rank,
                locals: locals.clone(),
                counters: f.counters.clone(),
                indirect: f.rank < prog.table_rank,
            };
            let s = g.stmt(u, 1)?;
            let params = prog.sig(&f).params.len();
            f.locals = g.locals[params..].to_vec();
            f.counters = g.counters;
            let at = u.int_in_range(0..=f.body.len())?;
            f.body.insert(at, s);
            format!("{name}: new statement at {at}")
        }
    };
    prog.funcs[fi] = f;
    Ok(Some(what))
}

/// M' from M: one to three code mutations (at least one that found
/// something to change, unless the bytes ran out). Returns the
/// descriptions.
pub fn mutate(prog: &mut Prog, u: &mut Unstructured<'_>) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let want = u.int_in_range(1..=3)?;
    for _ in 0..want * 4 {
        if done.len() >= want {
            break;
        }
        if let Some(w) = mutate_once(prog, u)? {
            done.push(w);
        }
    }
    Ok(done)
}

fn wat_expr(out: &mut String, e: &Expr, prog: &Prog) {
    match e {
        Expr::Const(t, v) => match t {
            Ty::I32 => write!(out, "(i32.const {})", *v as i32),
            Ty::I64 => write!(out, "(i64.const {v})"),
        }
        .unwrap(),
        Expr::Local(i) => write!(out, "(local.get {i})").unwrap(),
        Expr::Global(k) => write!(out, "(global.get $g{k})").unwrap(),
        Expr::Bin(t, op, a, b) | Expr::Cmp(t, op, a, b) => {
            write!(out, "({}.{op} ", t.name()).unwrap();
            wat_expr(out, a, prog);
            out.push(' ');
            wat_expr(out, b, prog);
            out.push(')');
        }
        Expr::Wrap(a) | Expr::Extend(a) => {
            out.push_str(if matches!(e, Expr::Wrap(_)) {
                "(i32.wrap_i64 "
            } else {
                "(i64.extend_i32_s "
            });
            wat_expr(out, a, prog);
            out.push(')');
        }
        Expr::Select(a, b, c) => {
            out.push_str("(select ");
            for x in [a, b, c] {
                wat_expr(out, x, prog);
                out.push(' ');
            }
            out.push(')');
        }
        Expr::Call(name, args) => {
            write!(out, "(call ${name}").unwrap();
            for a in args {
                out.push(' ');
                wat_expr(out, a, prog);
            }
            out.push(')');
        }
        Expr::CallIndirect(ty, args, index) => {
            write!(out, "(call_indirect $tab (type ${ty})").unwrap();
            for a in args.iter().chain([&**index]) {
                out.push(' ');
                wat_expr(out, a, prog);
            }
            out.push(')');
        }
        Expr::Load(t, addr, masked) => {
            write!(out, "({}.load ", t.name()).unwrap();
            wat_addr(out, addr, *masked, prog);
            out.push(')');
        }
    }
}

/// A masked address stays in the page (8-byte aligned); a raw one is the
/// value itself (almost always out of bounds, so it traps).
fn wat_addr(out: &mut String, addr: &Expr, masked: bool, prog: &Prog) {
    if masked {
        out.push_str("(i32.and ");
        wat_expr(out, addr, prog);
        out.push_str(" (i32.const 0xfff8))");
    } else {
        wat_expr(out, addr, prog);
    }
}

fn wat_stmts(out: &mut String, stmts: &[Stmt], prog: &Prog, indent: usize) {
    for s in stmts {
        out.push('\n');
        out.push_str(&" ".repeat(indent));
        match s {
            Stmt::GlobalSet(k, e) => {
                write!(out, "(global.set $g{k} ").unwrap();
                wat_expr(out, e, prog);
                out.push(')');
            }
            Stmt::LocalSet(i, e) => {
                write!(out, "(local.set {i} ").unwrap();
                wat_expr(out, e, prog);
                out.push(')');
            }
            Stmt::Store(t, addr, masked, v) => {
                write!(out, "({}.store ", t.name()).unwrap();
                wat_addr(out, addr, *masked, prog);
                out.push(' ');
                wat_expr(out, v, prog);
                out.push(')');
            }
            Stmt::Yield => out.push_str("(call $yield)"),
            Stmt::Drop(e) => {
                out.push_str("(drop ");
                wat_expr(out, e, prog);
                out.push(')');
            }
            Stmt::If(c, t, e) => {
                out.push_str("(if ");
                wat_expr(out, c, prog);
                out.push_str(" (then");
                wat_stmts(out, t, prog, indent + 2);
                out.push_str(") (else");
                wat_stmts(out, e, prog, indent + 2);
                out.push_str("))");
            }
            Stmt::Loop(c, n, body) => {
                write!(out, "(local.set {c} (i32.const {n})) (loop").unwrap();
                wat_stmts(out, body, prog, indent + 2);
                write!(
                    out,
                    "\n{}(br_if 0 (local.tee {c} (i32.sub (local.get {c}) (i32.const 1)))))",
                    " ".repeat(indent + 2)
                )
                .unwrap();
            }
            Stmt::Trap => out.push_str("unreachable"),
        }
    }
}

impl Prog {
    /// The module as WAT.
    pub fn wat(&self) -> String {
        let mut s = String::from("(module\n");
        for t in &self.types {
            let params: Vec<&str> = t.sig.params.iter().map(|p| p.name()).collect();
            writeln!(
                s,
                "  (type ${} (func (param {}) (result {})))",
                t.name,
                params.join(" "),
                t.sig.result.name()
            )
            .unwrap();
        }
        s.push_str("  (import \"wasm-patch\" \"yield\" (func $yield))\n");
        s.push_str("  (memory $mem 1 1)\n");
        writeln!(s, "  (table $tab {TABLE} {TABLE} funcref)").unwrap();
        writeln!(
            s,
            "  (elem (table $tab) (i32.const {}) func {})",
            self.table.0,
            self.table
                .1
                .iter()
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
        .unwrap();
        for (k, (t, v)) in self.globals.iter().enumerate() {
            let v = match t {
                Ty::I32 => (*v as i32) as i64,
                Ty::I64 => *v,
            };
            writeln!(
                s,
                "  (global $g{k} (export \"g{k}\") (mut {0}) ({0}.const {v}))",
                t.name()
            )
            .unwrap();
        }
        writeln!(s, "  (global $fuel (mut i32) (i32.const {FUEL}))").unwrap();
        for f in &self.funcs {
            let sig = self.sig(f);
            write!(s, "  (func ${} ", f.name).unwrap();
            if f.exported {
                write!(s, "(export \"{}\") ", f.name).unwrap();
            }
            write!(s, "(type ${})", self.types[f.ty].name).unwrap();
            // The type use must repeat the parameters for locals to follow
            // them in index order.
            for p in &sig.params {
                write!(s, " (param {})", p.name()).unwrap();
            }
            write!(s, " (result {})", sig.result.name()).unwrap();
            for l in &f.locals {
                write!(s, " (local {})", l.name()).unwrap();
            }
            s.push_str(
                "\n    (if (i32.eqz (global.get $fuel)) (then unreachable))\
                 \n    (global.set $fuel (i32.sub (global.get $fuel) (i32.const 1)))",
            );
            wat_stmts(&mut s, &f.body, self, 4);
            s.push_str("\n    ");
            wat_expr(&mut s, &f.ret, self);
            s.push_str(")\n");
        }
        // The fixed exports.
        s.push_str("  (func (export \"reset\")\n    (memory.fill (i32.const 0) (i32.const 0) (i32.const 65536))\n");
        for (k, (t, v)) in self.globals.iter().enumerate() {
            let v = match t {
                Ty::I32 => (*v as i32) as i64,
                Ty::I64 => *v,
            };
            writeln!(s, "    (global.set $g{k} ({}.const {v}))", t.name()).unwrap();
        }
        writeln!(s, "    (global.set $fuel (i32.const {FUEL})))").unwrap();
        writeln!(
            s,
            "  (func $refuel (export \"refuel\") (global.set $fuel (i32.const {FUEL})))"
        )
        .unwrap();
        s.push_str(
            "  (func (export \"digest\") (result i64) (local $i i32) (local $h i64)\n    \
             (loop $l\n      \
             (local.set $h (i64.mul (i64.xor (local.get $h) (i64.load (local.get $i))) (i64.const 0x100000001b3)))\n      \
             (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 8))) (i32.const 65536))))\n    \
             (local.get $h))\n",
        );
        for (i, (name, sig, _)) in self.exports().iter().enumerate() {
            let args: Vec<String> = sig
                .params
                .iter()
                .enumerate()
                .map(|(j, t)| format!("({}.const {})", t.name(), j as i64 * 7 + i as i64))
                .collect();
            writeln!(
                s,
                "  (func (export \"w{i}\") (param $n i32)\n    (loop $l\n      (call $refuel) (call $yield)\n      (drop (call ${name} {}))\n      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))",
                args.join(" ")
            )
            .unwrap();
        }
        s.push(')');
        s
    }
}
