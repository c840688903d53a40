//! The measuring engine: one case (a thread count) of the transition
//! benchmark, run in this process. `wasm-patch bench transition` and
//! `cargo bench --bench transition` both measure through [`run_case`], so
//! there is one measuring code path.
//!
//! A case spawns the entry once per thread with the thread index, lets the
//! threads run for the warm-up, then repeats `runs` times: apply the bundle
//! and wait for its transition, let the threads run for the warm-up again,
//! revert it and wait for that transition. Timestamps come from the store's
//! patch events ([`Store::on_patch_event`]): `Started` marks the start of a
//! transition, each `ThreadSwitched` one thread's switch, and the
//! `BlockedBy` events recorded inside the apply (or revert) call are the
//! threads blocked at the start.

use super::stats::Summary;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use wasm_patch_runtime::{
    ApplyOptions, Config, Engine, Event, FuncType, Instance, Linker, Module, PatchError, PatchId,
    Store, Val, ValType,
};

/// What a case runs: the settings shared by every thread count.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The export each thread runs, of type `(i32) -> ()`.
    pub entry: String,
    /// Apply/revert pairs measured per thread count.
    pub runs: usize,
    /// How long the threads run before each apply and each revert.
    pub warmup: Duration,
    /// Reverse a transition not complete after this long (the
    /// `ApplyOptions::timeout` policy); `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Each thread's fiber stack, in bytes.
    pub stack_size: usize,
    /// Compile the module with `Config::frame_transfer`, so that a bundle
    /// made with `diff --transfer` moves threads living in a changed loop
    /// (docs/transfer.md).
    pub frame_transfer: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            entry: "worker".into(),
            runs: 5,
            warmup: Duration::from_millis(10),
            timeout: None,
            stack_size: DEFAULT_STACK_SIZE,
            frame_transfer: false,
        }
    }
}

/// 256 KiB stacks without guard pages: a guarded stack costs two of the
/// process's 65 530 memory mappings, so only unguarded stacks let 100 000
/// threads fit.
pub const DEFAULT_STACK_SIZE: usize = 256 << 10;

/// Errors of the harness. A refused apply or revert keeps the runtime's
/// [`PatchError`], so that the CLI can give its exit status.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The module does not load, link or instantiate.
    #[error("module: {0}")]
    Module(String),
    /// The entry is missing or has the wrong type.
    #[error("entry `{name}`: {why}")]
    Entry {
        /// The export asked for.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// Spawning a thread failed.
    #[error("spawning thread {index} of {threads}: {why}")]
    Spawn {
        /// The thread that could not be spawned.
        index: usize,
        /// The case's thread count.
        threads: usize,
        /// The runtime's error.
        why: String,
    },
    /// The store refused the bundle.
    #[error("{threads} thread(s), run {run}: apply refused: {source}")]
    Apply {
        /// The case's thread count.
        threads: usize,
        /// The run (1-based).
        run: usize,
        /// The runtime's refusal.
        source: PatchError,
    },
    /// The store refused the revert.
    #[error("{threads} thread(s), run {run}: revert refused: {source}")]
    Revert {
        /// The case's thread count.
        threads: usize,
        /// The run (1-based).
        run: usize,
        /// The runtime's refusal.
        source: PatchError,
    },
    /// A transition could not complete (e.g. its blockers are parked and no
    /// timeout is set).
    #[error(
        "{threads} thread(s), run {run}: {what} transition did not complete: {why} \
         (--timeout reverses such a transition and counts it)"
    )]
    Stalled {
        /// The case's thread count.
        threads: usize,
        /// The run (1-based).
        run: usize,
        /// `apply` or `revert`.
        what: &'static str,
        /// The runtime's error.
        why: String,
    },
    /// Every try of a revert was reversed by the timeout: some threads
    /// cannot leave the bundle's code (e.g. a loop whose frames have no
    /// map back, docs/transfer.md). The bundle stays applied.
    #[error(
        "{threads} thread(s), run {run}: the revert was reversed by --timeout {tries} times in a row \
         (threads blocked in {blockers}); the bundle stays applied"
    )]
    RevertBlocked {
        /// The case's thread count.
        threads: usize,
        /// The run (1-based).
        run: usize,
        /// How many reverts were tried.
        tries: usize,
        /// The blocking functions of the last try.
        blockers: String,
    },
}

/// The figures of one transition (an apply or a revert).
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// The `Store::apply` (or `Store::revert`) call, µs.
    pub call_us: f64,
    /// From the call until the transition started: parsing, checks,
    /// compiling the bundle, placing its data and the pre-patch callback,
    /// µs (for a revert: its checks and the pre-unpatch callback).
    pub prepare_us: f64,
    /// Compiling the bundle's code, as the runtime measured it
    /// (`AppliedInfo::compile_time`), µs; 0 for a revert.
    pub compile_us: f64,
    /// From the start of the transition until every thread switched
    /// (`TransitionOutcome::elapsed`), µs.
    pub transition_us: f64,
    /// `Store::wait_transition` after the call, µs.
    pub wait_us: f64,
    /// Threads blocked by the check at the start of the transition.
    pub blocked_at_start: usize,
    /// Live threads when the transition started.
    pub threads: usize,
    /// Each switched thread's delay from the start of the transition, µs,
    /// in switch order.
    pub switch_us: Vec<f64>,
    /// Whether the timeout policy reversed the transition.
    pub reversed: bool,
}

/// One apply/revert pair.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// The apply.
    pub apply: Phase,
    /// The revert (`None` when the apply was reversed: nothing to revert).
    pub revert: Option<Phase>,
}

/// One thread count's runs.
#[derive(Clone, Debug)]
pub struct Case {
    /// Threads spawned.
    pub threads: usize,
    /// Spawning the threads and their first time slice, ms.
    pub setup_ms: f64,
    /// The runs, in order.
    pub runs: Vec<Run>,
}

impl Case {
    /// A summary of `f` over the applies (or the reverts) of every run.
    pub fn summary(&self, revert: bool, f: impl Fn(&Phase) -> f64) -> Summary {
        Summary::of(self.phases(revert).map(f))
    }

    /// Every thread's switch delay, over all runs, µs.
    pub fn switch_summary(&self, revert: bool) -> Summary {
        Summary::of(
            self.phases(revert)
                .flat_map(|p| p.switch_us.iter().copied()),
        )
    }

    /// The applies, or the reverts that ran.
    pub fn phases(&self, revert: bool) -> impl Iterator<Item = &Phase> + '_ {
        self.runs.iter().filter_map(move |r| {
            if revert {
                r.revert.as_ref()
            } else {
                Some(&r.apply)
            }
        })
    }
}

/// Where a case stands, for a progress line.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The case's thread count.
    pub threads: usize,
    /// Runs finished.
    pub done: usize,
    /// Runs in all.
    pub runs: usize,
    /// What is running now.
    pub doing: &'static str,
}

/// What the patch-event listener records for the transition in progress.
#[derive(Default)]
struct Recorder {
    /// Inside the apply or revert call: `BlockedBy` events count as
    /// blocked at the start.
    in_call: bool,
    started: Option<SystemTime>,
    switched: Vec<SystemTime>,
    blocked: usize,
}

impl Recorder {
    fn see(&mut self, time: SystemTime, e: &Event) {
        match e {
            Event::Started(..) => {
                self.started = Some(time);
                self.switched.clear();
                self.blocked = 0;
            }
            Event::ThreadSwitched(..) => self.switched.push(time),
            Event::BlockedBy(_, t, _) if self.in_call && t.0 != 0 => self.blocked += 1,
            _ => {}
        }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn since_us(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).map(us).unwrap_or(0.0)
}

/// The recorder, which the store's event listener shares (a `Mutex`: a
/// store is `Send`, so its listener must be; never contended).
fn lock(rec: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    rec.lock().unwrap_or_else(|e| e.into_inner())
}

/// The harness's store: the thread ABI, WASI preview 1 (no arguments, no
/// directories) and `env.park`, which parks the calling thread for good
/// (for modules whose threads should be parked when the bundle lands).
fn instantiate(engine: &Engine, module: &[u8]) -> Result<(Store<()>, Instance), BenchError> {
    let module = Module::new(engine, module).map_err(|e| BenchError::Module(e.to_string()))?;
    let mut store = Store::new(engine, ());
    let mut linker: Linker<()> = Linker::new(engine);
    linker.add_thread_abi();
    linker.func_new("env", "park", FuncType::new([], []), |c, _, _| c.park());
    let mut ctx = wasm_patch_wasi::WasiCtx::new();
    ctx.park_blocked_threads(true);
    let _wasi = wasm_patch_wasi::add_wasi(&mut linker, ctx)
        .map_err(|e| BenchError::Module(format!("linking WASI: {e}")))?;
    let inst = linker
        .instantiate(&mut store, &module)
        .map_err(|e| BenchError::Module(format!("instantiating: {e}")))?;
    Ok((store, inst))
}

/// Let the threads run for `d` (at most until none is runnable).
fn warm(store: &mut Store<()>, d: Duration, threads: usize) {
    let t = Instant::now();
    while t.elapsed() < d {
        if store.run_steps(threads.clamp(1, 64)) == 0 {
            break;
        }
    }
}

/// Measures one transition: `call` starts it (apply or revert), then the
/// store runs until it completes.
fn transition(
    store: &mut Store<()>,
    rec: &Arc<Mutex<Recorder>>,
    is_apply: bool,
    call: impl FnOnce(&mut Store<()>) -> Result<PatchId, PatchError>,
) -> Result<(PatchId, Phase), Result<PatchError, wasm_patch_runtime::Error>> {
    let threads = store.threads().len();
    {
        let mut r = lock(rec);
        r.in_call = true;
        r.started = None;
        r.switched.clear();
        r.blocked = 0;
    }
    let t0 = SystemTime::now();
    let i0 = Instant::now();
    let called = call(store);
    let call_d = i0.elapsed();
    lock(rec).in_call = false;
    let p = called.map_err(Ok)?;
    // The runtime's own measure of compiling the bundle (a revert compiles
    // nothing), read before the wait: a reversed apply leaves the list.
    let compile = if is_apply {
        store
            .applied()
            .iter()
            .find(|a| a.id == p)
            .map_or(0.0, |a| us(a.compile_time))
    } else {
        0.0
    };
    let i1 = Instant::now();
    let out = store.wait_transition().map_err(Err)?;
    let wait_d = i1.elapsed();
    let r = lock(rec);
    let started = r.started.unwrap_or(t0);
    Ok((
        p,
        Phase {
            call_us: us(call_d),
            prepare_us: since_us(t0, started),
            compile_us: compile,
            transition_us: us(out.elapsed),
            wait_us: us(wait_d),
            blocked_at_start: r.blocked,
            threads,
            switch_us: r.switched.iter().map(|&t| since_us(started, t)).collect(),
            reversed: out.reversed,
        },
    ))
}

/// How many times a revert reversed by the timeout is tried before the
/// case gives up.
const REVERT_TRIES: usize = 3;

/// Runs one case: `threads` threads of `settings.entry` in a fresh store
/// of `module` (binary), `settings.runs` apply/revert pairs of `bundle`.
/// `progress` is called before each apply and each revert.
///
/// # Errors
/// See [`BenchError`]; a refused apply or revert stops the case.
pub fn run_case(
    module: &[u8],
    bundle: &[u8],
    threads: usize,
    settings: &Settings,
    progress: &mut dyn FnMut(Progress),
) -> Result<Case, BenchError> {
    let engine = Engine::new(Config {
        stack_size: settings.stack_size,
        guard_pages: false,
        frame_transfer: settings.frame_transfer,
        ..Config::default()
    })
    .map_err(|e| BenchError::Module(format!("engine: {e}")))?;
    let (mut store, inst) = instantiate(&engine, module)?;
    let entry_err = |why: String| BenchError::Entry {
        name: settings.entry.clone(),
        why,
    };
    let entry = inst
        .get_func(&store, &settings.entry)
        .ok_or_else(|| entry_err("the module exports no such function".into()))?;
    let ty = entry.ty(&store);
    if ty.params() != [ValType::I32] || !ty.results().is_empty() {
        return Err(entry_err(format!(
            "its type is {ty:?}; the harness calls it as (param i32) with the thread index"
        )));
    }
    let setup = Instant::now();
    for i in 0..threads {
        store
            .spawn(entry, &[Val::I32(i as i32)])
            .map_err(|e| BenchError::Spawn {
                index: i,
                threads,
                why: e.to_string(),
            })?;
    }
    // Every thread runs once: into its first yield, park or preemption.
    store.run_steps(threads);
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;

    let rec = Arc::new(Mutex::new(Recorder::default()));
    let sink = rec.clone();
    store.on_patch_event(move |e| lock(&sink).see(e.time, e.event));
    let opts = ApplyOptions {
        timeout: settings.timeout,
        ..ApplyOptions::default()
    };
    let mut runs = Vec::with_capacity(settings.runs);
    for run in 1..=settings.runs {
        let mut report = |doing| {
            progress(Progress {
                threads,
                done: run - 1,
                runs: settings.runs,
                doing,
            })
        };
        report("warm-up");
        warm(&mut store, settings.warmup, threads);
        report("apply");
        let stalled = |what, e: wasm_patch_runtime::Error| BenchError::Stalled {
            threads,
            run,
            what,
            why: e.to_string(),
        };
        let (p, apply) = match transition(&mut store, &rec, true, |s| s.apply(inst, bundle, &opts))
        {
            Ok(x) => x,
            Err(Ok(source)) => {
                return Err(BenchError::Apply {
                    threads,
                    run,
                    source,
                })
            }
            Err(Err(e)) => return Err(stalled("apply", e)),
        };
        if apply.reversed {
            runs.push(Run {
                apply,
                revert: None,
            });
            continue;
        }
        report("warm-up");
        warm(&mut store, settings.warmup, threads);
        report("revert");
        let mut revert = None;
        // With a timeout, a reversed revert is tried again with the same
        // timeout, a bounded number of times: a thread that can never
        // leave the bundle's code (a loop whose frames have no map back,
        // docs/transfer.md) would otherwise keep the harness waiting for
        // ever. Without one, the second try waits as long as it takes.
        let tries: Vec<Option<Duration>> = match settings.timeout {
            Some(t) => vec![Some(t); REVERT_TRIES],
            None => vec![None],
        };
        let mut last_blockers = String::new();
        for timeout in tries {
            let r = transition(&mut store, &rec, false, |s| {
                s.revert(p, timeout).map(|()| p)
            });
            match r {
                Ok((_, ph)) => {
                    let done = !ph.reversed;
                    // A reversed revert leaves the bundle applied: revert
                    // again, waiting as long as it takes, so the next
                    // apply starts from the same state.
                    if !done {
                        last_blockers = store
                            .last_transition()
                            .map(|o| {
                                let mut b: Vec<String> =
                                    o.blockers.iter().map(|b| b.frame.name.clone()).collect();
                                b.sort();
                                b.dedup();
                                b.join(", ")
                            })
                            .unwrap_or_default();
                    }
                    if revert.is_none() {
                        revert = Some(ph);
                    }
                    if done {
                        last_blockers.clear();
                        break;
                    }
                }
                Err(Ok(source)) => {
                    return Err(BenchError::Revert {
                        threads,
                        run,
                        source,
                    })
                }
                Err(Err(e)) => return Err(stalled("revert", e)),
            }
        }
        if !last_blockers.is_empty() {
            return Err(BenchError::RevertBlocked {
                threads,
                run,
                tries: REVERT_TRIES,
                blockers: last_blockers,
            });
        }
        runs.push(Run { apply, revert });
    }
    progress(Progress {
        threads,
        done: settings.runs,
        runs: settings.runs,
        doing: "done",
    });
    Ok(Case {
        threads,
        setup_ms,
        runs,
    })
}
