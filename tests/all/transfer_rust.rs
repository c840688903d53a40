//! Frame transfer on a rustc-built service (issue 14, item 6): the `bank`
//! loop variant (`guests/service/revisions/l0.rs`, `l1.rs`), whose workers
//! live in one loop for the life of the service and whose fix (`fee`) LLVM
//! inlined into that loop. Built by `guests/service/build.sh l0 l1` into
//! `guests/built/service/l{0,1}.wasm` (committed: no toolchain needed).

use patch_format::{diff, DiffOptions};
use std::time::Duration;
use wasm_patch_runtime::{ApplyOptions, Config, Engine, Instance, Linker, Module, Store, Val};

/// Accounts × opening balance: what the balances add up to once every
/// worker has stopped.
const TOTAL: i64 = 8 * 1000;

/// Workers in the service.
const WORKERS: i32 = 16;

use crate::real_rust::built as build;

struct Service {
    store: Store<()>,
    inst: Instance,
}

impl Service {
    /// Revision 0 with its workers started, on an engine that compiles
    /// transfer polls.
    fn start() -> Service {
        let engine = Engine::new(Config {
            frame_transfer: true,
            ..Default::default()
        })
        .unwrap();
        let module = Module::new(&engine, build("l0")).unwrap();
        let mut store = Store::new(&engine, ());
        let mut linker: Linker<()> = Linker::new(&engine);
        linker.add_thread_abi();
        let inst = linker.instantiate(&mut store, &module).unwrap();
        let mut s = Service { store, inst };
        s.call("start", &[Val::I32(WORKERS)]);
        s
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Option<Val> {
        let f = self.inst.get_func(&self.store, name).unwrap();
        f.call(&mut self.store, args).unwrap().first().cloned()
    }

    fn i64(&mut self, name: &str) -> i64 {
        self.call(name, &[]).unwrap().i64().unwrap()
    }

    /// Steps completed by revision `v`'s code.
    fn steps(&mut self, v: i32) -> i64 {
        self.call("steps", &[Val::I32(v)]).unwrap().i64().unwrap()
    }

    /// Runs the workers until revision `v` completed at least `n` more
    /// steps.
    fn work(&mut self, v: i32, n: i64) {
        let before = self.steps(v);
        let mut rounds = 0;
        while self.steps(v) < before + n {
            self.store.run_steps(64);
            rounds += 1;
            assert!(rounds < 20_000, "the workers stopped (revision {v})");
        }
    }

    /// Stops the workers (each ends its step and leaves its loop) and
    /// checks that the money is all there.
    fn stop(&mut self) {
        self.call("stop", &[]);
        self.store.run().unwrap();
        assert_eq!(self.call("stop", &[]).unwrap().i32(), Some(0));
        assert_eq!(self.i64("total"), TOTAL, "money was lost or made");
    }
}

fn opts(transfer: bool) -> DiffOptions {
    DiffOptions {
        transfer: if transfer {
            vec!["bank::worker".into()]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// The fix is inlined into the worker loop: `diff` replaces the worker
/// itself, and with `--transfer bank::worker` it maps the loop (the
/// renumbered and reused locals of LLVM's two builds paired by dataflow).
#[test]
fn the_fix_lands_in_the_worker_loop_and_diff_maps_it() {
    let outcome = diff(&build("l0"), &build("l1"), &opts(true)).unwrap();
    let names: Vec<String> = outcome
        .bundle
        .entries()
        .iter()
        .map(|e| patch_format::names::readable(&e.name))
        .collect();
    assert!(names.iter().any(|n| n == "bank::worker"), "{names:?}");
    let t = outcome.bundle.transfers();
    assert!(t.refused.is_empty(), "{:?}", t.refused);
    let [map] = t.maps.as_slice() else {
        panic!("one map: {t:?}")
    };
    assert_eq!(map.headers, vec![(0, 0)]);
    // The loop-carried state (the seed, in the parameter's local, the
    // worker's account index, its tag's address, its turn count) keeps its
    // locals; the temporaries of a step are dead at the header and start
    // fresh.
    let fresh = patch_format::transfer::FRESH;
    assert_eq!(&map.locals[..4], &[0, 1, 2, 3], "{map:?}");
    assert!(map.locals[4..].iter().all(|&l| l == fresh), "{map:?}");
}

/// The closing requirement: the workers never leave their loop, the
/// bundle applies with a timeout, and the transition completes (each
/// worker's frame moves at its loop header), with no step that began in
/// one version and ended in the other, every worker's own count intact,
/// and the money conserved.
#[test]
fn the_service_is_fixed_inside_its_never_ending_loop() {
    let mut s = Service::start();
    s.work(1, 500);
    let bundle = diff(&build("l0"), &build("l1"), &opts(true))
        .unwrap()
        .bundle;
    let timeout = ApplyOptions {
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    s.store.apply(s.inst, &bundle.to_bytes(), &timeout).unwrap();
    let mut rounds = 0;
    while s.store.transition_status().is_some() {
        s.store.run_steps(64);
        rounds += 1;
        assert!(rounds < 20_000, "the transition never completed");
    }
    let outcome = s.store.last_transition().expect("a transition ended");
    assert!(
        !outcome.reversed,
        "rolled back: {} blockers",
        outcome.blockers.len()
    );
    let outcome_elapsed = outcome.elapsed;
    let v1 = s.steps(1);
    s.work(2, 500);
    assert_eq!(s.steps(1), v1, "old code ran after the transition");
    s.stop();
    assert_eq!(s.i64("mixed"), 0, "steps that mixed the versions");
    assert_eq!(s.i64("broken"), 0, "a worker lost its turn count");
    assert!(v1 >= 500 && s.steps(2) >= 500);
    eprintln!(
        "{WORKERS} workers: transition {:?}, {v1} old steps, {} new, 0 mixed, total {TOTAL}",
        outcome_elapsed,
        s.steps(2)
    );
}

/// Without a map the same bundle cannot finish: every worker keeps the
/// changed loop on its stack, and the timeout rolls the bundle back; the
/// service goes on with the old code, its state intact.
#[test]
fn without_a_map_the_timeout_rolls_the_service_back() {
    let mut s = Service::start();
    s.work(1, 200);
    let bundle = diff(&build("l0"), &build("l1"), &opts(false))
        .unwrap()
        .bundle;
    let timeout = ApplyOptions {
        timeout: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    s.store.apply(s.inst, &bundle.to_bytes(), &timeout).unwrap();
    let mut rounds = 0;
    while s.store.transition_status().is_some() {
        s.store.run_steps(64);
        rounds += 1;
        assert!(rounds < 1_000_000, "the timeout never fired");
    }
    let outcome = s.store.last_transition().expect("a transition ended");
    assert!(outcome.reversed);
    assert_eq!(outcome.blockers.len(), WORKERS as usize);
    s.work(1, 200);
    s.stop();
    assert_eq!((s.i64("mixed"), s.i64("broken"), s.steps(2)), (0, 0, 0));
}

/// Maps back (docs/transfer.md): with the fix applied and every worker
/// moved into the new loop, a revert moves each worker's frame back into
/// the old code at its next loop header, and applying again moves it
/// forward once more; each transition completes within its timeout, no
/// step mixes two versions in either direction, old code never runs while
/// the fix is in and new code never while it is out, and the money is all
/// there. (Before maps back the revert could never finish.)
#[test]
fn the_service_is_reverted_and_fixed_again_inside_its_loop() {
    let mut s = Service::start();
    s.work(1, 300);
    let bundle = diff(&build("l0"), &build("l1"), &opts(true))
        .unwrap()
        .bundle
        .to_bytes();
    let timeout = ApplyOptions {
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let mut elapsed = Vec::new();
    let mut settle = |s: &mut Service, what: &str| {
        let mut rounds = 0;
        while s.store.transition_status().is_some() {
            s.store.run_steps(64);
            rounds += 1;
            assert!(rounds < 20_000, "the {what} never completed");
        }
        let o = s.store.last_transition().expect("a transition ended");
        assert!(
            !o.reversed,
            "{what} rolled back: {} blockers",
            o.blockers.len()
        );
        elapsed.push(o.elapsed);
    };
    let p = s.store.apply(s.inst, &bundle, &timeout).unwrap();
    settle(&mut s, "apply");
    let v1 = s.steps(1);
    s.work(2, 300);
    assert_eq!(s.steps(1), v1, "old code ran while the fix was in");
    s.store.revert(p, Some(Duration::from_secs(60))).unwrap();
    settle(&mut s, "revert");
    assert!(s.store.applied().is_empty());
    let v2 = s.steps(2);
    s.work(1, 300);
    assert_eq!(s.steps(2), v2, "new code ran after the revert");
    s.store.apply(s.inst, &bundle, &timeout).unwrap();
    settle(&mut s, "second apply");
    let v1 = s.steps(1);
    s.work(2, 300);
    assert_eq!(s.steps(1), v1, "old code ran after the second apply");
    s.stop();
    assert_eq!(s.i64("mixed"), 0, "steps that mixed the versions");
    assert_eq!(s.i64("broken"), 0, "a worker lost its turn count");
    eprintln!(
        "{WORKERS} workers: apply {:?}, revert {:?}, apply again {:?}; {} old steps, {} new, 0 mixed, total {TOTAL}",
        elapsed[0],
        elapsed[1],
        elapsed[2],
        s.steps(1),
        s.steps(2)
    );
}
