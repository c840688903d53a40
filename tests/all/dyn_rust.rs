//! A rustc `dyn Trait` call target replaced live: the `bank` trait-object
//! variant (`guests/service/revisions/d0.rs`, `d1.rs`), whose workers
//! charge every transfer through a fee policy picked at run time from a
//! table of `&dyn Fee`, so rustc reaches `<Percent as Fee>::charge` through
//! `call_indirect` (the funcref record's world-0 slot address plus the
//! thread's world). `charge` stamps the revision that began a step, yields
//! inside (so the workers sit in the indirect callee when a bundle comes),
//! and ends the step in `close`, a direct call that stamps its own
//! revision: a step begun by one revision and ended by the other is mixed.
//! `d2` instead dispatches the fee through a new `dyn Rate` table (a bundle
//! that adds impls); `d3` is `d2` with those impls declared above the
//! older ones, which changes the older methods' symbol hashes. Built by `guests/service/build.sh d0 d1 d2 d3` into
//! `guests/built/service/d{0,1,2,3}.wasm` (committed: no toolchain needed).
//!
//! Per-thread consistency (docs/consistency.md rules 1, 5, 8) is checked
//! after every scheduler turn of every transition: a worker inside a step
//! began it in the revision of its thread's world (patched: revision 2,
//! unpatched: revision 1), read from guest memory while every thread is
//! suspended.

use crate::real_rust::built;
use patch_format::{diff, DiffOptions};
use std::time::Duration;
use wasm_patch_runtime::{
    ApplyOptions, Config, Engine, Instance, Linker, Module, PatchId, Store, ThreadId,
    ThreadPatchState, TransitionOutcome, Val,
};
use wasmparser::{ElementItems, KnownCustom, Name, Operator, Parser, Payload, TypeRef};

/// Accounts × opening balance: what the balances add up to once every
/// worker has stopped.
const TOTAL: i64 = 8 * 1000;

/// Workers in the service.
const WORKERS: i32 = 6;

/// The replaced method's readable name.
const CHARGE: &str = "<bank::Percent as bank::Fee>::charge";

/// Bound on scheduler turns for any wait (the workers never stop by
/// themselves, so a wait that exceeds it is a hang).
const MAX_TURNS: usize = 200_000;

/// One instance of the service, with its workers.
struct Tenant {
    inst: Instance,
    /// Each worker's thread.
    threads: Vec<ThreadId>,
    /// Where `BEGUN` (one `u32` a worker) lies in its memory 0.
    begun_at: usize,
}

struct Service {
    store: Store<()>,
    linker: Linker<()>,
    module: Module,
    setup: Setup,
    /// The first tenant's instance.
    inst: Instance,
    tenants: Vec<Tenant>,
    /// Which instance each bundle applied through `Service::apply` went to.
    owners: Vec<(PatchId, Instance)>,
    /// Scheduler turns after which the threads were checked.
    checks: usize,
    /// The `VERSION` the bundle's code stamps.
    patched: u32,
}

/// How a service is built and run.
#[derive(Clone, Copy, Debug, Default)]
struct Setup {
    /// Workers call the percent policy directly too, every other turn.
    direct: bool,
    /// Table 0 fixed at its size, as wasm-ld emits it without
    /// `--growable-table`: `call_indirect` then reads its element array
    /// inline from the vmctx.
    fixed_table: bool,
    /// `Config::inline`.
    inline: bool,
    /// The bundle goes to `d2` (a new `dyn Rate` table that `charge`
    /// dispatches through: new vtables as bundle data, two added functions
    /// in two new table entries) instead of `d1`.
    adds_impl: bool,
    /// With `adds_impl`: to `d3`, `d2` with the new items declared above
    /// the older impls, which renames their methods' symbols (hash only).
    impls_above: bool,
}

impl Setup {
    /// The revision the bundle goes to, and the `VERSION` it stamps.
    fn target(&self) -> (&'static str, u32) {
        if self.adds_impl && self.impls_above {
            ("d3", 3)
        } else if self.adds_impl {
            ("d2", 3)
        } else {
            ("d1", 2)
        }
    }

    /// Revision `name` (`d0` to `d3`) as this setup builds it.
    fn build(&self, name: &str) -> Vec<u8> {
        let bytes = built(name);
        if self.fixed_table {
            fixed_table(&bytes)
        } else {
            bytes
        }
    }

    /// The bundle `diff d0 d1` (or `d2`).
    fn bundle(&self) -> Vec<u8> {
        let opts = DiffOptions::default();
        let to = self.build(self.target().0);
        let outcome = diff(&self.build("d0"), &to, &opts).unwrap();
        outcome.bundle.to_bytes()
    }
}

/// `bytes` with table 0 (growable, by `--growable-table`) fixed at its
/// minimum: `limits` 0x01 with the maximum equal to the minimum, what
/// wasm-ld writes by default. Only the table section changes; the reloc
/// sections' offsets are relative to the sections they patch.
fn fixed_table(bytes: &[u8]) -> Vec<u8> {
    fn leb(b: &[u8], at: &mut usize) -> u32 {
        let (mut v, mut shift) = (0u32, 0);
        loop {
            let x = b[*at];
            *at += 1;
            v |= u32::from(x & 0x7f) << shift;
            shift += 7;
            if x < 0x80 {
                return v;
            }
        }
    }
    fn put(out: &mut Vec<u8>, mut v: u32) {
        loop {
            let x = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(x);
                return;
            }
            out.push(x | 0x80);
        }
    }
    let mut out = bytes[..8].to_vec();
    let mut at = 8;
    let mut done = false;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb(bytes, &mut at) as usize;
        let payload = &bytes[at..at + size];
        at += size;
        out.push(id);
        if id != 4 {
            put(&mut out, size as u32);
            out.extend_from_slice(payload);
            continue;
        }
        // One funcref table, limits without a maximum.
        assert_eq!(&payload[..3], &[1, 0x70, 0], "{payload:?}");
        let mut p = 3;
        let min = leb(payload, &mut p);
        assert_eq!(p, payload.len());
        let mut section = vec![1, 0x70, 1];
        put(&mut section, min);
        put(&mut section, min);
        put(&mut out, section.len() as u32);
        out.extend_from_slice(&section);
        done = true;
    }
    assert!(done, "no table section");
    out
}

impl Service {
    /// Revision `d0` with its workers started.
    fn start(setup: Setup) -> Service {
        let engine = Engine::new(Config {
            inline: setup.inline,
            ..Default::default()
        })
        .unwrap();
        let module = Module::new(&engine, setup.build("d0")).unwrap();
        let mut store = Store::new(&engine, ());
        let mut linker: Linker<()> = Linker::new(&engine);
        linker.add_thread_abi();
        let inst = linker.instantiate(&mut store, &module).unwrap();
        let mut s = Service {
            store,
            linker,
            module,
            setup,
            inst,
            tenants: Vec::new(),
            owners: Vec::new(),
            checks: 0,
            patched: setup.target().1,
        };
        s.start_tenant(inst);
        s
    }

    /// Another instance of `d0` in the same store, its workers started;
    /// returns it.
    fn add_tenant(&mut self) -> Instance {
        let inst = (self.linker)
            .instantiate(&mut self.store, &self.module)
            .unwrap();
        self.start_tenant(inst);
        inst
    }

    fn start_tenant(&mut self, inst: Instance) {
        let direct = Val::I32(self.setup.direct as i32);
        self.call_on(inst, "start", &[Val::I32(WORKERS), direct]);
        let mut threads = Vec::new();
        for i in 0..WORKERS {
            let t = self.call_on(inst, "thread_of", &[Val::I32(i)]);
            let t = t.unwrap().i32().unwrap();
            assert!(t >= 0, "worker {i} did not start");
            threads.push(ThreadId(t as u32));
        }
        let begun_at = self.call_on(inst, "begun_at", &[]).unwrap().i32().unwrap() as usize;
        self.tenants.push(Tenant {
            inst,
            threads,
            begun_at,
        });
    }

    /// Applies `bundle` to `inst`, remembering whose it is.
    fn apply(&mut self, inst: Instance, bundle: &[u8], opts: &ApplyOptions) -> PatchId {
        let id = self.store.apply(inst, bundle, opts).unwrap();
        self.owners.push((id, inst));
        id
    }

    fn call_on(&mut self, inst: Instance, name: &str, args: &[Val]) -> Option<Val> {
        let f = inst.get_func(&self.store, name).unwrap();
        f.call(&mut self.store, args).unwrap().first().cloned()
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Option<Val> {
        self.call_on(self.inst, name, args)
    }

    fn i64(&mut self, name: &str, args: &[Val]) -> i64 {
        self.call(name, args).unwrap().i64().unwrap()
    }

    /// Percent steps completed by revision `v`'s code.
    fn steps(&mut self, v: i32) -> i64 {
        self.i64("steps", &[Val::I32(v)])
    }

    /// The revision that began each of tenant `k`'s workers' step in
    /// progress (0: between steps), read from memory: no guest thread runs
    /// to answer.
    fn begun(&self, k: usize) -> Vec<u32> {
        let t = &self.tenants[k];
        let mem = t.inst.get_memory(&self.store, "memory").unwrap();
        let data = mem.data(&self.store);
        (0..WORKERS as usize)
            .map(|i| {
                let at = t.begun_at + 4 * i;
                u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
            })
            .collect()
    }

    /// Workers inside a percent step (each a blocker of a transition that
    /// changes `charge`).
    fn inside(&self) -> usize {
        self.begun(0).iter().filter(|&&v| v != 0).count()
    }

    /// The switch rule seen from the guest, at a moment when every thread
    /// is suspended: a worker inside a step began it in its thread's world
    /// (`charge` is on its stack from the step's start, so the thread
    /// cannot have switched since), the bundle's revision when patched, 1
    /// when not; outside a transition, the bundle's exactly when it is
    /// applied. The patch state names the side of the store's one
    /// transition: for a tenant whose instance it does not patch, the
    /// tenant's own settled revision stands whatever its threads' world.
    fn check_threads(&mut self) {
        self.checks += 1;
        let applied = self.store.applied();
        let moving = self.store.transition_patch();
        for k in 0..self.tenants.len() {
            let inst = self.tenants[k].inst;
            let settled = if applied.iter().any(|a| a.instance == inst) {
                self.patched
            } else {
                1
            };
            let here = moving.is_some_and(|p| self.owners.contains(&(p, inst)));
            let begun = self.begun(k);
            for (i, (&b, &t)) in begun.iter().zip(&self.tenants[k].threads).enumerate() {
                if b == 0 {
                    continue;
                }
                let state = self.store.thread_patch_state(t);
                let want = match state {
                    Some(ThreadPatchState::Patched) if here => self.patched,
                    Some(ThreadPatchState::Unpatched) if here => 1,
                    Some(_) => settled,
                    None => panic!("tenant {k}'s worker {i}'s thread {t:?} is gone"),
                };
                assert_eq!(
                    b, want,
                    "tenant {k}'s worker {i} (thread {t:?}, {state:?}, its instance in \
                     transition: {here}) is inside a step begun by revision {b}"
                );
            }
        }
    }

    /// Runs `n` scheduler turns one at a time, checking the threads after
    /// each.
    fn turns(&mut self, n: usize) {
        for _ in 0..n {
            self.store.run_steps(1);
            self.check_threads();
        }
    }

    /// Runs, checking after every turn, until the transition in progress
    /// ended. Returns how it ended.
    fn settle(&mut self, what: &str) -> TransitionOutcome {
        let mut turns = 0;
        while self.store.transition_status().is_some() {
            self.turns(1);
            turns += 1;
            assert!(turns < MAX_TURNS, "the {what} never ended");
        }
        self.store
            .last_transition()
            .expect("a transition ended")
            .clone()
    }

    /// Runs the workers until revision `v` completed at least `n` more
    /// steps, and checks that the other revisions completed none: every
    /// step begun after the transition ran the revision it promised.
    fn fresh(&mut self, v: i32, n: i64) {
        let others: Vec<i32> = (1..=3).filter(|&o| o != v).collect();
        let stale: Vec<i64> = others.iter().map(|&o| self.steps(o)).collect();
        let before = self.steps(v);
        let mut rounds = 0;
        while self.steps(v) < before + n {
            self.store.run_steps(16);
            self.check_threads();
            rounds += 1;
            assert!(
                rounds < MAX_TURNS / 16,
                "the workers stopped (revision {v})"
            );
        }
        let now: Vec<i64> = others.iter().map(|&o| self.steps(o)).collect();
        assert_eq!(
            now, stale,
            "revisions {others:?} completed steps while revision {v} was settled"
        );
    }

    /// Stops the workers (each ends its step and leaves its loop) and
    /// checks that no step was mixed and the money is all there.
    fn stop(&mut self) {
        let insts: Vec<Instance> = self.tenants.iter().map(|t| t.inst).collect();
        for &inst in &insts {
            self.call_on(inst, "stop", &[]);
        }
        self.store.run().unwrap();
        for (k, &inst) in insts.iter().enumerate() {
            let running = self.call_on(inst, "stop", &[]).unwrap().i32();
            assert_eq!(running, Some(0), "tenant {k}");
            let mixed = self.call_on(inst, "mixed", &[]).unwrap().i64();
            assert_eq!(mixed, Some(0), "tenant {k}: steps that mixed two revisions");
            let total = self.call_on(inst, "total", &[]).unwrap().i64();
            assert_eq!(total, Some(TOTAL), "tenant {k}: money was lost or made");
            assert!(self.begun(k).iter().all(|&b| b == 0), "tenant {k}");
        }
    }
}

fn no_timeout() -> ApplyOptions {
    ApplyOptions::default()
}

fn zero_timeout() -> ApplyOptions {
    ApplyOptions {
        timeout: Some(Duration::ZERO),
        ..Default::default()
    }
}

/// Function names (readable) by index, table 0's function elements, and
/// each defined function's direct callees and `call_indirect` count.
struct Shape {
    names: Vec<(u32, String)>,
    elements: Vec<u32>,
    /// By function index: (direct callees, `call_indirect`s).
    bodies: Vec<(u32, Vec<u32>, usize)>,
}

fn shape(bytes: &[u8]) -> Shape {
    let mut s = Shape {
        names: Vec::new(),
        elements: Vec::new(),
        bodies: Vec::new(),
    };
    let mut next = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.unwrap() {
            Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    if let TypeRef::Func(_) | TypeRef::FuncExact(_) = i.unwrap().ty {
                        next += 1;
                    }
                }
            }
            Payload::ElementSection(r) => {
                for e in r {
                    if let ElementItems::Functions(fs) = e.unwrap().items {
                        s.elements.extend(fs.into_iter().map(|f| f.unwrap()));
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let (mut callees, mut indirect) = (Vec::new(), 0);
                for op in body.get_operators_reader().unwrap() {
                    match op.unwrap() {
                        Operator::Call { function_index } => callees.push(function_index),
                        Operator::CallIndirect { .. } => indirect += 1,
                        _ => {}
                    }
                }
                s.bodies.push((next, callees, indirect));
                next += 1;
            }
            Payload::CustomSection(c) => {
                if let KnownCustom::Name(r) = c.as_known() {
                    for n in r {
                        if let Name::Function(map) = n.unwrap() {
                            for naming in map {
                                let naming = naming.unwrap();
                                let name = patch_format::names::readable(naming.name);
                                s.names.push((naming.index, name));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    s
}

impl Shape {
    fn index(&self, name: &str) -> u32 {
        let found = self.names.iter().find(|(_, n)| n == name);
        found
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.names))
            .0
    }

    fn body(&self, f: u32) -> (&[u32], usize) {
        let (_, callees, indirect) = self.bodies.iter().find(|b| b.0 == f).unwrap();
        (callees, *indirect)
    }
}

/// What the tests stand on: rustc really dispatches through the trait
/// object (`charge` is a table element and the worker calls through the
/// table), the worker also calls `charge` directly, and `diff d0 d1`
/// replaces `charge` and `close` (the two that stamp `VERSION`) and
/// nothing the workers loop in.
#[test]
fn rustc_calls_the_policy_through_the_table_and_diff_replaces_it() {
    for rev in ["d0", "d1"] {
        let s = shape(&built(rev));
        let charge = s.index(CHARGE);
        assert!(s.elements.contains(&charge), "{rev}: charge not in table 0");
        let (callees, indirect) = s.body(s.index("bank::worker"));
        assert!(indirect >= 1, "{rev}: the worker has no call_indirect");
        assert!(
            callees.contains(&charge),
            "{rev}: the worker never calls charge directly: {callees:?}"
        );
    }
    let outcome = diff(&built("d0"), &built("d1"), &DiffOptions::default()).unwrap();
    let mut carried: Vec<String> = (outcome.bundle.entries().iter())
        .map(|e| patch_format::names::readable(&e.name))
        .collect();
    carried.sort();
    assert_eq!(carried, [CHARGE, "bank::close"]);
}

/// A bundle replacing the method behind the trait object, applied while
/// the workers sit inside it (each blocks until its step ends): the
/// transition completes with every thread checked after every turn;
/// afterwards every step runs revision 2 (through the table), none is
/// mixed, and the money is all there.
#[test]
fn the_method_behind_the_trait_object_is_replaced_while_workers_sit_in_it() {
    let mut s = Service::start(Setup::default());
    s.fresh(1, 200);
    let inside = s.inside();
    assert!(inside > 0, "no worker is inside charge");
    s.apply(s.inst, &Setup::default().bundle(), &no_timeout());
    let status = s.store.transition_status().expect("a transition");
    assert_eq!(
        status.blockers.len(),
        inside,
        "every worker inside charge blocks"
    );
    for b in &status.blockers {
        assert_eq!(patch_format::names::readable(&b.frame.name), CHARGE);
    }
    let o = s.settle("apply");
    assert!(!o.reversed, "rolled back: {} blockers", o.blockers.len());
    s.fresh(2, 300);
    s.stop();
    eprintln!(
        "{WORKERS} workers, {inside} inside charge at apply: {} steps of revision 1, {} of 2, \
         0 mixed, {} thread checks, total {TOTAL}",
        s.steps(1),
        s.steps(2),
        s.checks
    );
}

/// Apply, reverse, apply at zero timeout (rolled back by the policy),
/// apply, revert at zero timeout (rolled back), revert, apply: one burst
/// with the workers running a few turns between the verbs and every
/// thread checked after every turn. After each transition, new steps run
/// the revision it promises; no step is ever mixed; the money is there.
fn burst(setup: Setup) {
    let mut s = Service::start(setup);
    let p = setup.target().1 as i32;
    s.fresh(1, 100);
    let b = setup.bundle();

    // Apply, let a worker switch (it ends its step and calls the new
    // `charge`), reverse while the others still wait: it comes back.
    s.apply(s.inst, &b, &no_timeout());
    let mut turns = 0;
    while s.store.transition_status().unwrap().switched == 0 {
        s.turns(1);
        turns += 1;
        assert!(turns < MAX_TURNS, "no worker switched");
    }
    assert!(s.store.transition_status().unwrap().pending > 0);
    s.store.reverse().unwrap();
    let o = s.settle("reversed apply");
    assert!(o.reversed);
    assert!(s.store.applied().is_empty());
    s.fresh(1, 50);

    // At zero timeout, with workers inside charge: rolled back at once.
    assert!(s.inside() > 0);
    s.apply(s.inst, &b, &zero_timeout());
    let o = s.settle("apply at zero timeout");
    assert!(o.reversed && !o.blockers.is_empty(), "{o:?}");
    assert!(s.store.applied().is_empty());
    s.turns(3);

    // Applied for good.
    let id = s.apply(s.inst, &b, &no_timeout());
    let o = s.settle("apply");
    assert!(!o.reversed, "{o:?}");
    s.fresh(p, 50);

    // A revert at zero timeout rolls back and the bundle stays.
    assert!(s.inside() > 0);
    s.store.revert(id, Some(Duration::ZERO)).unwrap();
    let o = s.settle("revert at zero timeout");
    assert!(o.reversed && !o.blockers.is_empty(), "{o:?}");
    assert_eq!(s.store.applied().len(), 1);
    s.fresh(p, 50);

    // Reverted for good, then applied again.
    s.store.revert(id, None).unwrap();
    let o = s.settle("revert");
    assert!(!o.reversed, "{o:?}");
    assert!(s.store.applied().is_empty());
    s.fresh(1, 50);
    s.apply(s.inst, &b, &no_timeout());
    s.turns(2);
    let o = s.settle("second apply");
    assert!(!o.reversed, "{o:?}");
    s.fresh(p, 100);

    eprintln!(
        "burst ({setup:?}): {} steps of revision 1, {} of {p}, 0 mixed, {} thread checks",
        s.steps(1),
        s.steps(p),
        s.checks
    );
    if setup.direct {
        let (through_table, direct_calls) = (
            s.i64("calls", &[Val::I32(0)]),
            s.i64("calls", &[Val::I32(1)]),
        );
        assert!(
            through_table > 0 && direct_calls > 0,
            "{through_table} {direct_calls}"
        );
    }
    s.stop();
}

#[test]
fn a_burst_of_apply_reverse_revert_keeps_every_worker_in_one_revision() {
    burst(Setup::default());
}

/// The same burst with the workers calling `charge` both through the trait
/// object and directly (every other turn): the slot is reached by `call`
/// and by `call_indirect`, in both worlds.
#[test]
fn a_burst_with_direct_and_indirect_calls_of_the_method_stays_consistent() {
    burst(Setup {
        direct: true,
        ..Default::default()
    });
}

/// The same burst on the build with table 0 fixed at its size (what
/// wasm-ld emits without `--growable-table`): `call_indirect` reads the
/// table's element array inline from the vmctx.
#[test]
fn a_burst_on_a_fixed_table_build_stays_consistent() {
    let d0 = fixed_table(&built("d0"));
    let tables: Vec<_> = (Parser::new(0).parse_all(&d0))
        .filter_map(|p| match p.unwrap() {
            Payload::TableSection(r) => {
                Some(r.into_iter().map(|t| t.unwrap().ty).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(tables.len(), 1);
    assert_eq!(Some(tables[0].initial), tables[0].maximum, "{tables:?}");
    burst(Setup {
        direct: true,
        fixed_table: true,
        ..Default::default()
    });
}

/// The same burst with `Config::inline` (`close`, a small leaf, may be
/// inlined into `charge`; the bundle replaces both).
#[test]
fn a_burst_with_inlining_stays_consistent() {
    burst(Setup {
        direct: true,
        inline: true,
        ..Default::default()
    });
}

/// A bundle that adds a trait impl: `d2`'s `charge` asks a new
/// `static RATES: [&dyn Rate; 2]` for the fee, so the bundle carries the
/// new vtables and `RATES` as data, adds the two `fee` methods, and
/// appends them to table 0, and the replaced method dispatches through
/// those new entries (`call_indirect` to an added function, mapped in both
/// worlds) while the burst runs.
#[test]
fn a_burst_with_a_bundle_that_adds_a_trait_impl_stays_consistent() {
    let d2 = shape(&built("d2"));
    let (_, indirect) = d2.body(d2.index(CHARGE));
    assert!(indirect >= 1, "d2's charge has no call_indirect");
    for rate in ["Small", "Large"] {
        let f = d2.index(&format!("<bank::{rate} as bank::Rate>::fee"));
        assert!(d2.elements.contains(&f), "{rate}::fee not in table 0");
    }
    let outcome = diff(&built("d0"), &built("d2"), &DiffOptions::default()).unwrap();
    let b = &outcome.bundle;
    let added = (b.entries().iter())
        .filter(|e| matches!(e.kind, patch_format::EntryKind::Add { .. }))
        .count();
    assert_eq!((b.entries().len(), added), (4, 2));
    assert_eq!(b.data().table_entries.len(), 2);
    burst(Setup {
        direct: true,
        adds_impl: true,
        ..Default::default()
    });
}

/// The raw (mangled) name section name of the function whose readable
/// name is `readable`.
fn raw_name(bytes: &[u8], readable: &str) -> String {
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CustomSection(c) = payload.unwrap() {
            if let KnownCustom::Name(r) = c.as_known() {
                for n in r {
                    if let Name::Function(map) = n.unwrap() {
                        for naming in map {
                            let naming = naming.unwrap();
                            if patch_format::names::readable(naming.name) == readable {
                                return naming.name.to_string();
                            }
                        }
                    }
                }
            }
        }
    }
    panic!("no {readable}")
}

/// The same bundle when the new build declares the new trait and impls
/// above the older impls (`d3`): rustc numbers impls in order, so both
/// `charge` methods keep their paths but get new symbol hashes. `diff`
/// pairs each with its old self (the only unmatched function of that
/// path on each side), so `Waived::charge`, whose code is the same, is
/// not in the bundle, the table's reference to it is no removal, and the
/// bundle is the one `diff d0 d2` builds.
#[test]
fn a_burst_with_impls_declared_above_the_old_ones_stays_consistent() {
    const WAIVED: &str = "<bank::Waived as bank::Fee>::charge";
    let (d0, d3) = (built("d0"), built("d3"));
    for f in [CHARGE, WAIVED] {
        assert_ne!(raw_name(&d0, f), raw_name(&d3, f), "{f} kept its hash");
    }
    let outcome = diff(&d0, &d3, &DiffOptions::default()).unwrap();
    let names: Vec<String> = (outcome.bundle.entries().iter())
        .map(|e| patch_format::names::readable(&e.name))
        .collect();
    // Exactly what `diff d0 d2` carries: not `Waived::charge`, and not
    // `worker`, whose call of the renamed `Percent::charge` and whose
    // vtables (`POLICIES`' targets, keyed by the functions they point at)
    // are the old ones.
    let d2 = diff(&d0, &built("d2"), &DiffOptions::default()).unwrap();
    let mut want: Vec<String> = (d2.bundle.entries().iter())
        .map(|e| patch_format::names::readable(&e.name))
        .collect();
    let mut names = names;
    names.sort();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        outcome.bundle.data().objects.len(),
        d2.bundle.data().objects.len()
    );
    burst(Setup {
        direct: true,
        adds_impl: true,
        impls_above: true,
        ..Default::default()
    });
}

/// Two instances of the service in one store, each with its workers. The
/// world selector is per thread and shared by every instance, so each
/// transition of one instance flips the threads of the other too, whose
/// calls through its table must keep reaching its own settled revision:
/// the first instance is patched, the second goes through an apply that
/// is reversed, an apply and a revert, the first is reverted while the
/// second is patched, and the second is reverted; every worker of both is
/// checked after every turn.
#[test]
fn a_second_instance_in_the_store_keeps_its_revision_while_the_first_moves() {
    let setup = Setup {
        direct: true,
        ..Default::default()
    };
    let mut s = Service::start(setup);
    let (one, two) = (s.inst, s.add_tenant());
    s.fresh(1, 100);
    let b = setup.bundle();

    let first = s.apply(one, &b, &no_timeout());
    assert!(!s.settle("apply to the first").reversed);
    s.fresh(2, 50);

    s.apply(two, &b, &no_timeout());
    let mut turns = 0;
    while s.store.transition_status().unwrap().switched == 0 {
        s.turns(1);
        turns += 1;
        assert!(turns < MAX_TURNS, "no worker switched");
    }
    s.store.reverse().unwrap();
    assert!(s.settle("reversed apply to the second").reversed);
    s.turns(8);

    let second = s.apply(two, &b, &no_timeout());
    assert!(!s.settle("apply to the second").reversed);
    s.turns(8);
    s.store.revert(first, None).unwrap();
    assert!(!s.settle("revert of the first").reversed);
    s.fresh(1, 50);
    s.store.revert(second, None).unwrap();
    assert!(!s.settle("revert of the second").reversed);
    s.turns(8);
    assert!(s.store.applied().is_empty());
    eprintln!(
        "two instances: {} thread checks of {} workers",
        s.checks,
        2 * WORKERS
    );
    s.stop();
}

/// Rule 4 through the trait object: applied as immediate while the workers
/// sit inside `charge`, the bundle changes both worlds at once (the check
/// set is empty, so the transition completes without waiting): each frame
/// already in the old `charge` finishes in it and ends its step in the new
/// `close` (exactly one mixed step per worker that was inside), and every
/// step begun afterwards, by a call through the table or a direct one, is
/// revision 2's.
#[test]
fn an_immediate_bundle_changes_the_method_behind_the_trait_object_at_once() {
    let mut s = Service::start(Setup {
        direct: true,
        ..Default::default()
    });
    s.fresh(1, 100);
    let inside = s.inside();
    assert!(inside > 0, "no worker is inside charge");
    let opts = ApplyOptions {
        immediate: true,
        ..Default::default()
    };
    let b = s.setup.bundle();
    s.apply(s.inst, &b, &opts);
    // Until each worker that was inside ended that step: the old steps
    // go on in the old code (no check of the switch rule: immediate), and
    // a worker that left its old step never begins another in it.
    let mut left = [false; WORKERS as usize];
    let mut turns = 0;
    loop {
        let begun = s.begun(0);
        for (i, &b) in begun.iter().enumerate() {
            if left[i] {
                assert_ne!(b, 1, "worker {i} began a step in the old charge");
            }
            left[i] |= b != 1;
        }
        if left.iter().all(|&l| l) {
            break;
        }
        s.store.run_steps(1);
        turns += 1;
        assert!(turns < MAX_TURNS, "an old step never ended");
    }
    assert!(
        s.store.transition_status().is_none(),
        "immediate: nothing to wait for"
    );
    let o = s.store.last_transition().unwrap();
    assert!(!o.reversed, "{o:?}");
    let ones = s.steps(1);
    s.fresh(2, 200);
    assert_eq!(s.steps(1), ones);
    assert_eq!(
        s.i64("mixed", &[]),
        inside as i64,
        "one mixed step per worker inside"
    );
    // `stop` demands no mixed step: end as it does, less that check.
    s.call("stop", &[]);
    s.store.run().unwrap();
    assert_eq!(s.call("stop", &[]).unwrap().i32(), Some(0));
    assert_eq!(s.i64("total", &[]), TOTAL);
}
