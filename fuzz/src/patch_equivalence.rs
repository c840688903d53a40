//! Patch equivalence: a bundle that `diff M M'` makes, applied to an
//! instance of M, must make it behave as a fresh instance of M'.
//!
//! One place for the whole check, used by the cargo-fuzz target
//! `fuzz_targets/patch_equivalence.rs` and by the fixed-seed test
//! `tests/all/patch_equivalence.rs` (both include this file with `#[path]`).
//!
//! A case is a pair (M, M') from `eqgen.rs`: a random module and a
//! code-mutated copy. `diff` (the library call behind `wasm-patch diff`)
//! either refuses the pair, counted by reason, or makes a bundle. The
//! bundle is then applied to instances of M:
//!
//! - **before**: to a fresh instance, before any guest code ran;
//! - **live**: while one worker thread per exported function (`w<i>`, a
//!   loop that calls `f<i>` and yields; the functions yield too) is
//!   suspended somewhere in its calls. Threads inside changed functions
//!   make the transition wait; all threads then run to their end and the
//!   transition must have completed. This instance is then reverted the
//!   same way, under new workers;
//! - **immediate**: live as above, the bundle made immediate
//!   (`all_immediate`, when diff carries that: no signature change);
//! - **cumulative**: when the bytes mutate M' once more into M'', a
//!   cumulative bundle M → M'' (`replace`) is applied live over the first,
//!   on the *before* instance. The runtime must refuse it when it adds
//!   another function at an index the first bundle added
//!   ([`Stacked::AddedIndexClash`]).
//!
//! Each instance then runs the *script*: `reset` (globals, memory and fuel
//! back to their initial values, so what the workers did is forgotten),
//! every exported function with two argument lists (results or trap kind,
//! with `refuel` before each call), `digest` (a hash of the memory) and
//! every exported global. A patched instance's script must equal the script
//! of a fresh instance of M' (M'' after the cumulative bundle), the
//! reverted one's the script of M. Whether the scripts of M and M' differ
//! tells whether the mutation was observable at all.

#[path = "eqgen.rs"]
pub mod eqgen;

use arbitrary::Unstructured;
use eqgen::{Prog, Ty};
use patch_format::{diff, DiffError, DiffOptions};
use std::collections::BTreeMap;
use wasm_patch_runtime as wp;

/// What one script step gave: values or a trap kind (or another error).
pub type Outcome = Result<Vec<wp::Val>, String>;

/// A case from arbitrary bytes.
#[derive(Debug)]
pub struct Case {
    /// The module.
    pub m: Prog,
    /// M, code-mutated.
    pub m2: Prog,
    /// M', mutated again (when the bytes made a mutation): the target of a
    /// cumulative bundle applied over the first.
    pub m3: Option<Prog>,
    /// What the mutations did (M → M', then M' → M'').
    pub what: Vec<String>,
}

/// A case from arbitrary bytes, or `None` when they made no mutation.
pub fn generate(data: &[u8]) -> Option<Case> {
    let mut u = Unstructured::new(data);
    let m = eqgen::generate(&mut u).ok()?;
    let mut m2 = m.clone();
    let mut what = eqgen::mutate(&mut m2, &mut u).ok()?;
    if what.is_empty() {
        return None;
    }
    let mut m3 = m2.clone();
    m3.append_new = true;
    let more = eqgen::mutate(&mut m3, &mut u).unwrap_or_default();
    let m3 = (!more.is_empty()).then_some(m3);
    what.extend(more.into_iter().map(|w| format!("then {w}")));
    Some(Case { m, m2, m3, what })
}

/// `len` deterministic bytes for case `seed` (splitmix64).
pub fn case_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The verdict on one pair.
#[derive(Debug)]
pub enum Verdict {
    /// `diff` refused the pair: the reason's kind (see [`refusal_kind`])
    /// and diff's message.
    Refused(String, String),
    /// The bundle was applied both ways and every script step agreed.
    Carried {
        /// Whether M's own script differs from M''s (the change shows).
        observable: bool,
        /// Threads pending (inside changed functions) when the live apply
        /// started the transition.
        pending: usize,
        /// Whether the bundle made immediate was carried too (and equivalent).
        immediate: bool,
        /// What became of a cumulative bundle M → M'' over the first.
        stacked: Stacked,
    },
    /// A bug: what differs.
    Mismatch(String),
}

/// What became of the cumulative bundle M → M'' applied over M → M'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stacked {
    /// No M'', or diff refused M → M''.
    NotTried,
    /// Carried, and the instance then answers as M''.
    Carried,
    /// Refused by the runtime, as it must be: the cumulative bundle adds
    /// another function at an index the first one added (an added index
    /// keeps its function and type for the life of the instance, and diff
    /// does not know what an applied bundle added).
    AddedIndexClash,
    /// Refused by the runtime: the cumulative bundle drops a function the
    /// first bundle replaced or added (M'' removed it), and the runtime
    /// still counts that function's version from the first bundle as a
    /// caller of a function whose signature M'' changes. diff cannot know
    /// (it sees M and M'' only); whether the runtime must refuse is open
    /// (the cumulative bundle takes that version out of the new world).
    Dropped,
}

/// How the functions two bundles add relate: whether `second` adds a
/// function at an index where `first` added another one (another name or
/// type), and whether `second` drops something of `first`: a function it
/// replaced or added that `second` does not carry, or adds differently.
fn added_relation(first: &[u8], second: &[u8]) -> Result<(bool, bool), String> {
    let parse = |b| patch_format::Bundle::parse(b).map_err(|e| format!("bundle: {e}"));
    let (first, second) = (parse(first)?, parse(second)?);
    let added = |b: &patch_format::Bundle| -> Vec<(u32, String, wp::FuncType)> {
        b.entries()
            .iter()
            .filter_map(|e| match e.kind {
                patch_format::EntryKind::Add { new_index } => {
                    Some((new_index, e.name.clone(), e.ty.clone()))
                }
                _ => None,
            })
            .collect()
    };
    let (earlier, later) = (added(&first), added(&second));
    let clash = later.iter().any(|(i, name, ty)| {
        earlier
            .iter()
            .any(|(j, n, t)| i == j && (n != name || t != ty))
    });
    // A function of the first (added or replaced) that the second does not
    // carry: its version from the first is what the runtime's checks see.
    let index = |e: &patch_format::Entry| match e.kind {
        patch_format::EntryKind::Add { new_index } => new_index,
        patch_format::EntryKind::Replace { target_index } => target_index,
    };
    let carried: Vec<u32> = second.entries().iter().map(index).collect();
    let dropped = first.entries().iter().any(|e| !carried.contains(&index(e)))
        || earlier.iter().any(|e| !later.contains(e));
    Ok((clash, dropped))
}

/// The kind of a refusal: `DiffError`'s variant, and for an unpatchable
/// change the kind of each reason (`Unpatchable`'s variants), sorted.
pub fn refusal_kind(e: &DiffError) -> Option<String> {
    match e {
        DiffError::NoChange => Some("no function changed".into()),
        DiffError::OnlyLineChanges(_) => Some("only line changes".into()),
        DiffError::Unpatchable(reasons) => {
            let mut kinds: Vec<String> = reasons
                .iter()
                .map(|r| {
                    let d = format!("{r:?}");
                    let end = d.find(['(', ' ', '{']).unwrap_or(d.len());
                    d[..end].to_string()
                })
                .collect();
            kinds.sort();
            kinds.dedup();
            Some(format!("unpatchable: {}", kinds.join(", ")))
        }
        // Not refusals: an invalid module, a bundle that breaks the format
        // or a body that cannot be rewritten are bugs of the generator or
        // of diff.
        _ => None,
    }
}

/// Runs pairs; holds one engine for all of them.
pub struct Runner {
    engine: wp::Engine,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

/// A store with the thread ABI and an instance of `module`.
fn instantiate(
    engine: &wp::Engine,
    module: &wp::Module,
) -> Result<(wp::Store<()>, wp::Instance), String> {
    let mut store = wp::Store::new(engine, ());
    let mut linker = wp::Linker::new(engine);
    linker.add_thread_abi();
    let inst = linker
        .instantiate(&mut store, module)
        .map_err(|e| format!("instantiate: {e}"))?;
    Ok((store, inst))
}

fn arg(t: Ty, seed: i64, j: usize) -> wp::Val {
    // Small values for the first list, the raw seed (mixed per parameter)
    // for the second.
    let v = seed
        .wrapping_mul(j as i64 * 2 + 1)
        .rotate_left(j as u32 * 13);
    match t {
        Ty::I32 => wp::Val::I32(v as i32),
        Ty::I64 => wp::Val::I64(v),
    }
}

fn call(store: &mut wp::Store<()>, inst: wp::Instance, name: &str, args: &[wp::Val]) -> Outcome {
    let f = inst
        .get_func(store, name)
        .ok_or_else(|| format!("no export `{name}`"))?;
    f.call(store, args).map_err(|e| match e {
        wp::Error::Trap(t) => format!("trap: {:?}", t.kind),
        other => format!("error: {other}"),
    })
}

/// The script (see the module docs): labelled outcomes.
pub fn script(
    store: &mut wp::Store<()>,
    inst: wp::Instance,
    prog: &Prog,
) -> Vec<(String, Outcome)> {
    let mut out = vec![("reset".to_string(), call(store, inst, "reset", &[]))];
    for (name, sig, seeds) in prog.exports() {
        for (k, &seed) in seeds.iter().enumerate() {
            let seed = if k == 0 { seed % 50 } else { seed };
            let args: Vec<wp::Val> = sig
                .params
                .iter()
                .enumerate()
                .map(|(j, &t)| arg(t, seed, j))
                .collect();
            let _ = call(store, inst, "refuel", &[]);
            out.push((format!("{name}{args:?}"), call(store, inst, &name, &args)));
        }
    }
    out.push(("digest".into(), call(store, inst, "digest", &[])));
    for k in 0..prog.globals.len() {
        let name = format!("g{k}");
        let v = match inst.get_export(store, &name) {
            Some(wp::Extern::Global(g)) => Ok(vec![wp::Instance::global_value(store, g)]),
            _ => Err(format!("no global export `{name}`")),
        };
        out.push((name, v));
    }
    out
}

/// The first step where two scripts differ (`want` is the script of
/// module `of`).
fn first_difference(
    what: &str,
    got: &[(String, Outcome)],
    want: &[(String, Outcome)],
    of: &str,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} script steps, {of} has {}",
            got.len(),
            want.len()
        ));
    }
    match got.iter().zip(want).find(|((_, g), (_, w))| g != w) {
        Some(((label, g), (_, w))) => Err(format!("{what}: {label} gave {g:?}, {of} gives {w:?}")),
        None => Ok(()),
    }
}

/// Spawns the workers (`w<i>`, 3 to 5 rounds each).
fn spawn_workers(s: &mut wp::Store<()>, i: wp::Instance, m: &Prog) -> Result<(), String> {
    for w in 0..m.exports().len() {
        let f = i
            .get_func(s, &format!("w{w}"))
            .ok_or_else(|| format!("no worker w{w}"))?;
        s.spawn(f, &[wp::Val::I32(3 + w as i32 % 3)])
            .map_err(|e| format!("spawn w{w}: {e}"))?;
    }
    Ok(())
}

/// Runs every thread to its end; the transition must then have completed
/// (not reversed). Forgets the threads' results.
fn finish(what: &str, s: &mut wp::Store<()>) -> Result<(), String> {
    s.run().map_err(|e| format!("{what}: run: {e}"))?;
    if let Some(t) = s.transition_status() {
        return Err(format!(
            "{what}: every worker finished but the transition is still open: {t:?}"
        ));
    }
    match s.last_transition() {
        Some(o) if !o.reversed => {}
        other => {
            return Err(format!(
                "{what}: the transition did not complete: {other:?}"
            ))
        }
    }
    for t in s.finished_threads() {
        let _ = s.take_result(t);
    }
    Ok(())
}

impl Runner {
    /// A runner with a default engine.
    pub fn new() -> Self {
        Runner {
            engine: wp::Engine::default(),
        }
    }

    /// Checks one pair; `steps` is how many scheduler slices the workers
    /// run before the live apply.
    pub fn check(&self, case: &Case, steps: usize) -> Verdict {
        match self.check_inner(case, steps) {
            Ok(v) => v,
            Err(why) => Verdict::Mismatch(why),
        }
    }

    fn check_inner(&self, case: &Case, steps: usize) -> Result<Verdict, String> {
        let (m, m2) = (&case.m, &case.m2);
        let (old, new) = (m.wat(), m2.wat());
        let old_bin = wat::parse_str(&old).map_err(|e| format!("M does not assemble: {e}"))?;
        let new_bin = wat::parse_str(&new).map_err(|e| format!("M' does not assemble: {e}"))?;
        let bundle = match diff(&old_bin, &new_bin, &DiffOptions::default()) {
            Ok(d) => d.bundle.to_bytes(),
            Err(e) => {
                return match refusal_kind(&e) {
                    Some(kind) => Ok(Verdict::Refused(kind, e.to_string())),
                    None => Err(format!("diff failed: {e}")),
                }
            }
        };
        let engine = &self.engine;
        let m_mod = wp::Module::new(engine, &old_bin).map_err(|e| format!("M: {e}"))?;
        let m2_mod = wp::Module::new(engine, &new_bin).map_err(|e| format!("M': {e}"))?;

        let (mut s, i) = instantiate(engine, &m2_mod)?;
        let want = script(&mut s, i, m2);
        let (mut s, i) = instantiate(engine, &m_mod)?;
        let before_patch = script(&mut s, i, m);
        let observable = before_patch != want;

        // (a) Applied before any guest code ran.
        let (mut s, i) = instantiate(engine, &m_mod)?;
        s.apply(i, &bundle, &wp::ApplyOptions::default())
            .map_err(|e| format!("apply (before) refused: {e}"))?;
        s.wait_transition()
            .map_err(|e| format!("transition (before): {e}"))?;
        first_difference("applied before", &script(&mut s, i, m), &want, "M'")?;
        let stacked = match &case.m3 {
            Some(m3) => self.stacked(&old_bin, &bundle, m3, (&mut s, i), steps)?,
            None => Stacked::NotTried,
        };

        // (b) Applied live, with the workers suspended mid-call.
        let (mut s, i) = instantiate(engine, &m_mod)?;
        spawn_workers(&mut s, i, m)?;
        s.run_steps(steps);
        let id = s
            .apply(i, &bundle, &wp::ApplyOptions::default())
            .map_err(|e| format!("apply (live, after {steps} steps) refused: {e}"))?;
        let pending = s.transition_status().map_or(0, |t| t.pending);
        finish("apply (live)", &mut s)?;
        first_difference("applied live", &script(&mut s, i, m), &want, "M'")?;

        // (c) Reverted live, the same way: M again.
        spawn_workers(&mut s, i, m)?;
        s.run_steps(steps);
        s.revert(id, None)
            .map_err(|e| format!("revert (live, after {steps} steps) refused: {e}"))?;
        finish("revert (live)", &mut s)?;
        first_difference("reverted live", &script(&mut s, i, m), &before_patch, "M")?;

        // (d) The bundle made immediate, applied live: threads switch at
        // once, and once they have run out the instance is M' too.
        let opts = DiffOptions {
            all_immediate: true,
            ..Default::default()
        };
        let immediate = match diff(&old_bin, &new_bin, &opts) {
            Ok(d) => {
                let (mut s, i) = instantiate(engine, &m_mod)?;
                spawn_workers(&mut s, i, m)?;
                s.run_steps(steps);
                s.apply(i, &d.bundle.to_bytes(), &wp::ApplyOptions::default())
                    .map_err(|e| format!("apply (immediate, live) refused: {e}"))?;
                finish("apply (immediate, live)", &mut s)?;
                first_difference("applied immediate", &script(&mut s, i, m), &want, "M'")?;
                true
            }
            Err(e) if refusal_kind(&e).is_some() => false,
            Err(e) => return Err(format!("diff (all immediate) failed: {e}")),
        };
        Ok(Verdict::Carried {
            observable,
            pending,
            immediate,
            stacked,
        })
    }

    /// (e) A cumulative bundle M → M'' applied live over the first bundle
    /// (instance `s`, patched to M'): the instance then answers as M''.
    fn stacked(
        &self,
        old_bin: &[u8],
        first: &[u8],
        m3: &Prog,
        (s, i): (&mut wp::Store<()>, wp::Instance),
        steps: usize,
    ) -> Result<Stacked, String> {
        let bin3 = wat::parse_str(m3.wat()).map_err(|e| format!("M'' does not assemble: {e}"))?;
        let opts = DiffOptions {
            replace: true,
            ..Default::default()
        };
        let bundle = match diff(old_bin, &bin3, &opts) {
            Ok(d) => d.bundle.to_bytes(),
            Err(e) if refusal_kind(&e).is_some() => return Ok(Stacked::NotTried),
            Err(e) => return Err(format!("diff M M'' (replace) failed: {e}")),
        };
        let m3_mod = wp::Module::new(&self.engine, &bin3).map_err(|e| format!("M'': {e}"))?;
        let (mut s3, i3) = instantiate(&self.engine, &m3_mod)?;
        let want = script(&mut s3, i3, m3);
        spawn_workers(s, i, m3)?;
        s.run_steps(steps);
        let (clash, dropped) = added_relation(first, &bundle)?;
        match s.apply(i, &bundle, &wp::ApplyOptions::default()) {
            Err(wp::PatchError::Incompatible(_)) if clash || dropped => {
                finish("refused cumulative bundle", s)?;
                return Ok(if clash {
                    Stacked::AddedIndexClash
                } else {
                    Stacked::Dropped
                });
            }
            Err(e) => return Err(format!("apply (cumulative M → M'', live) refused: {e}")),
            Ok(_) if clash => {
                return Err(
                    "a cumulative bundle that adds another function at an index the \
                     first one added was applied"
                        .into(),
                )
            }
            Ok(_) => {}
        }
        finish("apply (cumulative, live)", s)?;
        first_difference("replaced live", &script(s, i, m3), &want, "M''")?;
        Ok(Stacked::Carried)
    }
}

/// Counts of a run of many pairs.
#[derive(Debug, Default)]
pub struct Tally {
    /// Pairs generated.
    pub pairs: u64,
    /// Pairs carried and equivalent.
    pub carried: u64,
    /// Carried pairs whose change showed in the script.
    pub observable: u64,
    /// Carried pairs whose live apply found threads inside changed code.
    pub live_pending: u64,
    /// Carried pairs also carried (and equivalent) as immediate bundles.
    pub immediate: u64,
    /// Carried pairs whose cumulative bundle M → M'' was carried (and
    /// equivalent) over the first.
    pub stacked: u64,
    /// Carried pairs whose cumulative bundle the runtime refused (rightly)
    /// for an added index that the first bundle holds.
    pub stacked_clash: u64,
    /// Carried pairs whose cumulative bundle the runtime refused for a
    /// function the first bundle replaced or added and M'' dropped.
    pub stacked_dropped: u64,
    /// Refusals by kind: how many, and the first one's message.
    pub refused: BTreeMap<String, (u64, String)>,
    /// Mismatches: a label and what differs.
    pub mismatches: Vec<String>,
}

impl Tally {
    /// Adds one verdict.
    pub fn add(&mut self, label: &str, v: Verdict) {
        self.pairs += 1;
        match v {
            Verdict::Refused(k, message) => {
                self.refused.entry(k).or_insert((0, message)).0 += 1;
            }
            Verdict::Carried {
                observable,
                pending,
                immediate,
                stacked,
            } => {
                self.carried += 1;
                self.immediate += immediate as u64;
                self.stacked += (stacked == Stacked::Carried) as u64;
                self.stacked_clash += (stacked == Stacked::AddedIndexClash) as u64;
                self.stacked_dropped += (stacked == Stacked::Dropped) as u64;
                self.observable += observable as u64;
                self.live_pending += (pending > 0) as u64;
            }
            Verdict::Mismatch(why) => self.mismatches.push(format!("{label}: {why}")),
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pairs: {} carried and equivalent ({} observably changed, {} with threads \
             inside changed code at the live apply, {} also as immediate bundles, {} with a \
             cumulative bundle M → M'' over the first, {} whose cumulative bundle the runtime \
             refused for an added index the first holds, {} for a function the first \
             replaced or added and M'' dropped), {} mismatches; refused:",
            self.pairs,
            self.carried,
            self.observable,
            self.live_pending,
            self.immediate,
            self.stacked,
            self.stacked_clash,
            self.stacked_dropped,
            self.mismatches.len()
        )?;
        if self.refused.is_empty() {
            write!(f, " none")?;
        }
        for (k, (n, example)) in &self.refused {
            // The first reason of the first refusal of the kind.
            let first = example
                .lines()
                .find(|l| l.starts_with("  - "))
                .unwrap_or(example);
            write!(
                f,
                "\n  {n:>5}  {k} (e.g. {})",
                first.trim_start_matches("  - ")
            )?;
        }
        Ok(())
    }
}
