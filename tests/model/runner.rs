//! The runner: executes a sequence against the real runtime and the model
//! in lockstep and compares them after every operation.
//!
//! Compared: the result of every patch operation (accepted or refused, and
//! why), every thread's recorded `(function, version)` history, which
//! threads finished and which trapped, `thread_patch_state` of every live
//! thread, whether a transition is in progress with how many threads
//! pending and whether it is reversed, the applied bundles with their
//! forced flags, and the callbacks that ran. Any difference is a
//! counterexample.

use crate::guest::{self, CODE_ADDED, CODE_CALL, CODE_HOST, CODE_INDIRECT, CODE_TABLE};
use crate::model::{Expect, Model, PatchState, Refusal};
use crate::ops::{Cmd, Op, Spec, INSTANCES};
use patch_format::{Bundle, BundleId};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use wasm_patch_runtime::*;

/// The embedder's data: command queues, recorded calls, callbacks.
#[derive(Default)]
pub struct Host {
    queues: HashMap<u32, VecDeque<Cmd>>,
    records: HashMap<u32, Vec<(i32, i32)>>,
    callbacks: Vec<(i32, i32)>,
}

struct Shared {
    engine: Engine,
    module: Module,
    base: Vec<u8>,
    bundles: HashMap<(i32, Spec, Option<BundleId>), Vec<u8>>,
}

thread_local! {
    static SHARED: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    SHARED.with(|s| {
        let mut s = s.borrow_mut();
        let sh = s.get_or_insert_with(|| {
            // Only explicit yields, sleeps and parks are safe points: no
            // time slice ever runs out during a test.
            let engine = Engine::new(Config {
                time_slice: Duration::from_secs(3600),
                ..Config::default()
            })
            .expect("engine");
            let base = wat::parse_str(guest::base_wat()).expect("base parses");
            let module = Module::new(&engine, &base).expect("base compiles");
            Shared {
                engine,
                module,
                base,
                bundles: HashMap::new(),
            }
        });
        f(sh)
    })
}

fn code(c: &Cmd) -> Option<i32> {
    Some(match *c {
        Cmd::Call(j) => CODE_CALL + j as i32,
        Cmd::Indirect(j) => CODE_INDIRECT + j as i32,
        Cmd::Host(j) => CODE_HOST + j as i32,
        Cmd::Added(k) => CODE_ADDED + k as i32,
        Cmd::Table => CODE_TABLE,
        Cmd::Ret => 0,
        Cmd::Yield | Cmd::Sleep => return None,
    })
}

fn linker(engine: &Engine) -> Linker<Host> {
    let mut l: Linker<Host> = Linker::new(engine);
    l.func_new(
        "env",
        "cmd",
        FuncType::new([], [ValType::I32]),
        |c, _, r| loop {
            let id = c.thread_id().0;
            let Some(q) = c.data_mut().queues.get_mut(&id) else {
                // Not a thread of the sequence (a callback's thread): every
                // function it reaches returns at once.
                r[0] = Val::I32(0);
                return Ok(());
            };
            match q.pop_front() {
                None => c.park()?,
                Some(Cmd::Yield) => c.yield_now()?,
                Some(Cmd::Sleep) => c.sleep(Duration::ZERO)?,
                Some(cmd) => {
                    r[0] = Val::I32(code(&cmd).expect("a call or return"));
                    return Ok(());
                }
            }
        },
    );
    l.func_new(
        "env",
        "record",
        FuncType::new([ValType::I32, ValType::I32], []),
        |c, a, _| {
            let id = c.thread_id().0;
            let rec = (a[0].i32().unwrap_or(-9), a[1].i32().unwrap_or(-9));
            c.data_mut().records.entry(id).or_default().push(rec);
            Ok(())
        },
    );
    l.func_new(
        "env",
        "hostcall",
        FuncType::new([ValType::I32], []),
        |c, a, _| {
            let j = a[0].i32().unwrap_or(0) as u32;
            let f = c
                .table_func(0, j)
                .ok_or_else(|| Error::Host(format!("table slot {j} holds no function")))?;
            c.call(f, &[])?;
            Ok(())
        },
    );
    l.func_new(
        "env",
        "cb",
        FuncType::new([ValType::I32, ValType::I32], []),
        |c, a, _| {
            let rec = (a[0].i32().unwrap_or(-9), a[1].i32().unwrap_or(-9));
            c.data_mut().callbacks.push(rec);
            Ok(())
        },
    );
    l.func_new("env", "cbsleep", FuncType::new([], []), |c, _, _| {
        c.sleep(Duration::ZERO)
    });
    l
}

/// Totals of a run.
#[derive(Default, Clone, Copy, Debug)]
pub struct Counts {
    /// Sequences run.
    pub sequences: u64,
    /// Operations run.
    pub operations: u64,
}

/// One sequence against the runtime and the model.
struct Run {
    store: Store<Host>,
    instances: Vec<Instance>,
    model: Model,
    /// Model thread index → runtime thread id.
    tids: Vec<ThreadId>,
    /// Patch id → bundle id of every published bundle.
    bundle_ids: HashMap<u32, BundleId>,
    /// Threads whose result was taken (the runtime forgets them).
    reaped: Vec<bool>,
}

fn refusal_of(e: &PatchError) -> Refusal {
    match e {
        PatchError::Busy(_) => Refusal::Busy,
        PatchError::NoTransition => Refusal::NoTransition,
        PatchError::Unknown(_) => Refusal::Unknown,
        PatchError::RevertRefused(..) => Refusal::RevertRefused,
        PatchError::Incompatible(_) => Refusal::Incompatible,
        PatchError::MissingState(_) => Refusal::MissingState,
        PatchError::Vetoed(_) => Refusal::Vetoed,
        _ => Refusal::Any,
    }
}

/// Compare an expectation with what the runtime did.
fn judge<T: std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    expect: Expect,
    got: &Result<T, E>,
    refusal: impl Fn(&E) -> Refusal,
) -> Result<(), String> {
    match (expect, got) {
        (Expect::Ok | Expect::Either, Ok(_)) => Ok(()),
        (Expect::Either | Expect::Refused(Refusal::Any), Err(_)) => Ok(()),
        (Expect::Refused(r), Err(e)) if refusal(e) == r => Ok(()),
        (expect, got) => Err(format!(
            "{what}: the model expects {expect:?}, the runtime returned {got:?}"
        )),
    }
}

impl Run {
    fn new() -> Run {
        let (engine, module) = with_shared(|s| (s.engine.clone(), s.module.clone()));
        let mut store = Store::new(&engine, Host::default());
        let l = linker(&engine);
        let instances = (0..INSTANCES)
            .map(|_| l.instantiate(&mut store, &module).expect("instantiate"))
            .collect();
        Run {
            store,
            instances,
            model: Model::new(),
            tids: Vec::new(),
            bundle_ids: HashMap::new(),
            reaped: Vec::new(),
        }
    }

    fn run_scheduler(&mut self) -> Result<(), String> {
        self.store
            .run()
            .map_err(|e| format!("the scheduler failed: {e}"))
    }

    fn bundle_bytes(&self, tag: i32, spec: &Spec) -> Vec<u8> {
        let sits_on = spec.sits_on.map(|p| {
            self.bundle_ids
                .get(&p)
                .copied()
                .unwrap_or_else(guest::unknown_bundle_id)
        });
        with_shared(|s| {
            if s.bundles.len() > 20_000 {
                s.bundles.clear();
            }
            let key = (tag, spec.clone(), sits_on);
            if let Some(b) = s.bundles.get(&key) {
                return b.clone();
            }
            let b = guest::bundle(&s.base, tag, spec, sits_on);
            s.bundles.insert(key, b.clone());
            b
        })
    }

    /// Execute operation number `n` (0-based) on both sides.
    fn step(&mut self, n: usize, op: &Op) -> Result<(), String> {
        match op {
            Op::Spawn { inst } => {
                let inst = *inst % INSTANCES;
                let root = self.instances[inst as usize]
                    .get_func(&self.store, "run")
                    .expect("run export");
                let id = self
                    .store
                    .spawn(root, &[])
                    .map_err(|e| format!("spawn failed: {e}"))?;
                self.tids.push(id);
                self.reaped.push(false);
                self.store.data_mut().queues.insert(id.0, VecDeque::new());
                self.model.spawn(inst);
                self.run_scheduler()?;
            }
            Op::Thread { thread, cmds } => {
                let Some(i) = self.model.pick(*thread) else {
                    return Ok(());
                };
                let id = self.tids[i];
                self.store
                    .data_mut()
                    .queues
                    .insert(id.0, cmds.iter().cloned().collect());
                self.store.unpark(id);
                self.model.thread(i, cmds);
                self.run_scheduler()?;
                if let Some(q) = self.store.data_mut().queues.get_mut(&id.0) {
                    // Commands after the thread finished are dropped.
                    q.clear();
                }
            }
            Op::Apply { inst, spec } => {
                let inst = *inst % INSTANCES;
                let tag = n as i32 + 1;
                let bytes = self.bundle_bytes(tag, spec);
                let opts = ApplyOptions {
                    immediate: spec.all_immediate,
                    timeout: spec.timeout0.then_some(Duration::ZERO),
                    ..Default::default()
                };
                let got = self
                    .store
                    .apply(self.instances[inst as usize], &bytes, &opts);
                let expect = self
                    .model
                    .apply(inst, tag, spec, got.as_ref().err().map(refusal_of));
                judge("apply", expect, &got, refusal_of)?;
                if let Ok(p) = got {
                    let id = Bundle::parse(&bytes).expect("bundle parses").bundle_id();
                    self.bundle_ids.insert(p.0, id);
                    if p.0 != self.model.next_id {
                        return Err(format!(
                            "apply: the runtime named the patch {p}, the model patch {}",
                            self.model.next_id
                        ));
                    }
                }
            }
            Op::SigTable { inst } => {
                let inst = *inst % INSTANCES;
                let bytes = with_shared(|s| guest::table_signature_bundle(&s.base, n as i32 + 1));
                let got = self.store.apply(
                    self.instances[inst as usize],
                    &bytes,
                    &ApplyOptions::default(),
                );
                judge(
                    "apply (type change of a table function)",
                    self.model.sig_table(),
                    &got,
                    refusal_of,
                )?;
            }
            Op::Revert { id, timeout0 } => {
                let got = self
                    .store
                    .revert(PatchId(*id), timeout0.then_some(Duration::ZERO));
                let expect = self.model.revert(*id, *timeout0);
                judge("revert", expect, &got, refusal_of)?;
            }
            Op::Reverse => {
                let got = self.store.reverse();
                let expect = self.model.reverse();
                judge("reverse", expect, &got, refusal_of)?;
            }
            Op::Force => {
                let got = self.store.force();
                let expect = self.model.force();
                judge("force", expect, &got, refusal_of)?;
            }
            Op::Drive => {
                self.store.run_steps(0);
                self.model.drive();
            }
            Op::Wait => {
                let got = self.store.wait_transition();
                let expect = self.model.wait();
                judge("wait_transition", expect, &got, |_| Refusal::Any)?;
            }
        }
        self.compare()
    }

    /// Everything observable, runtime against model.
    fn compare(&mut self) -> Result<(), String> {
        let m = &self.model;
        for (i, th) in m.threads.iter().enumerate() {
            let id = self.tids[i];
            let got = self
                .store
                .data()
                .records
                .get(&id.0)
                .cloned()
                .unwrap_or_default();
            if got != th.records {
                return Err(format!(
                    "thread {i} ({id}) recorded (function, version) {got:?}, the model predicts {:?}",
                    th.records
                ));
            }
            let state = self.store.thread_state(id);
            let done = self.reaped[i] || state == Some(RunState::Done);
            if done != th.done {
                return Err(format!(
                    "thread {i} ({id}) is {state:?}, the model says done = {}",
                    th.done
                ));
            }
            if th.done {
                continue;
            }
            if state != Some(RunState::Parked) {
                return Err(format!(
                    "thread {i} ({id}) is {state:?} where it should be parked for its next command"
                ));
            }
            let ps = self.store.thread_patch_state(id);
            let want = match m.patch_state(i) {
                PatchState::None => ThreadPatchState::None,
                PatchState::Unpatched => ThreadPatchState::Unpatched,
                PatchState::Patched => ThreadPatchState::Patched,
            };
            if ps != Some(want) {
                return Err(format!(
                    "thread {i} ({id}) patch state is {ps:?}, the model says {want:?}"
                ));
            }
        }
        // Trapped threads: their result must be the trap.
        for (i, th) in m.threads.iter().enumerate() {
            if th.done && !self.reaped[i] {
                let id = self.tids[i];
                if self.store.thread_state(id) == Some(RunState::Done) {
                    self.reaped[i] = true;
                    let r = self.store.take_result(id);
                    let trapped = r.is_err();
                    if trapped != th.trapped {
                        return Err(format!(
                            "thread {i} ({id}) finished with {r:?}, the model says trapped = {}",
                            th.trapped
                        ));
                    }
                    // Rule 6: the error names the removed function.
                    if let (Err(e), Some(crate::model::FuncId::Add(k))) = (&r, th.trap) {
                        let text = format!("{e}");
                        if !text.contains(&format!("add{k}")) {
                            return Err(format!(
                                "thread {i} ({id}) trapped calling the removed add{k}, but the error does not name it: {text}"
                            ));
                        }
                    }
                }
            }
        }
        let st = self.store.transition_status();
        match (&st, &m.transition) {
            (None, None) => {}
            (Some(s), Some(t)) => {
                if s.pending != m.pending() || s.reversed != t.reversed || s.patch.0 != t.patch {
                    return Err(format!(
                        "transition: runtime {} pending={} reversed={}, model patch {} pending={} reversed={}",
                        s.patch,
                        s.pending,
                        s.reversed,
                        t.patch,
                        m.pending(),
                        t.reversed
                    ));
                }
            }
            (s, t) => {
                return Err(format!(
                    "transition in progress: runtime {:?}, model {:?}",
                    s.as_ref().map(|s| (s.patch, s.pending)),
                    t.as_ref().map(|t| t.patch)
                ))
            }
        }
        let applied: Vec<(u32, bool)> = self
            .store
            .applied()
            .iter()
            .map(|a| (a.id.0, a.forced))
            .collect();
        if applied != m.applied_list() {
            return Err(format!(
                "applied bundles (id, forced): runtime {applied:?}, model {:?}",
                m.applied_list()
            ));
        }
        if self.store.data().callbacks != m.callbacks {
            return Err(format!(
                "callbacks (tag, kind): runtime {:?}, model {:?}",
                self.store.data().callbacks,
                m.callbacks
            ));
        }
        Ok(())
    }
}

/// Run `ops` against the runtime and the model; the first difference, with
/// the operation that showed it.
pub fn check(ops: &[Op], counts: &mut Counts) -> Result<(), String> {
    if let Some(path) = std::env::var_os("MODEL_TRACE") {
        // The sequence about to run, for a crash that kills the process.
        let _ = std::fs::write(path, crate::ops::listing(ops));
    }
    let mut run = Run::new();
    counts.sequences += 1;
    let debug = std::env::var_os("MODEL_DEBUG").is_some();
    for (n, op) in ops.iter().enumerate() {
        counts.operations += 1;
        if let Err(e) = run.step(n, op) {
            if debug {
                for e in run.store.events() {
                    eprintln!("{e}");
                }
            }
            return Err(format!("after operation {n} ({op:?}): {e}"));
        }
    }
    if debug {
        for (i, t) in run.model.threads.iter().enumerate() {
            eprintln!("thread {i}: {:?}", t.records);
        }
        for e in run.store.events() {
            eprintln!("{e}");
        }
    }
    Ok(())
}

/// Replay a sequence (a shrunk counterexample pasted into a test); panics
/// with the difference.
#[track_caller]
pub fn replay(ops: &[Op]) {
    if let Err(e) = check(ops, &mut Counts::default()) {
        panic!("counterexample: {e}");
    }
}

/// [`check`] in a forked child process: a crash of the runtime (a signal)
/// becomes an error instead of killing the test. The child gets 20 s.
///
/// Forking a multi-threaded process is safe here because the child only
/// runs this sequence and exits with `_exit`; the one lock another thread
/// (the preemption ticker) takes is held for a few instructions, and the
/// alarm bounds the rare case where the child inherits it held.
pub fn check_forked(ops: &[Op], counts: &mut Counts) -> Result<(), String> {
    counts.sequences += 1;
    counts.operations += ops.len() as u64;
    // A child that inherited a lock held by another OS thread at the fork
    // (another test's code registry write) never finishes: the alarm ends
    // it, and the sequence runs again. A sequence that hangs every time is
    // reported as such.
    for _ in 0..3 {
        match fork_once(ops) {
            Err(e) if e == HUNG => continue,
            r => return r,
        }
    }
    Err("the sequence hung (killed after 20 s, three times)".into())
}

const HUNG: &str = "hung";

fn fork_once(ops: &[Op]) -> Result<(), String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    // SAFETY: the child only runs `check` and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain system calls in the child on descriptors it owns.
        unsafe {
            libc::close(fds[0]);
            libc::alarm(20);
        }
        let r = check(ops, &mut Counts::default());
        let msg = r.as_ref().err().cloned().unwrap_or_default();
        // SAFETY: writes `msg`'s bytes to the pipe, then leaves without
        // running destructors.
        unsafe {
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(if r.is_ok() { 0 } else { 1 });
        }
    }
    // SAFETY: closing the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    if pid < 0 {
        // SAFETY: closing the read end we own.
        unsafe { libc::close(fds[0]) };
        return Err("fork failed".into());
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into `buf`, within its length.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: waits for our own child; closes the read end we own.
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGALRM {
            return Err(HUNG.into());
        }
        return Err(format!("the host process crashed with signal {sig}"));
    }
    if libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out).into_owned())
    }
}

/// [`replay`] in a forked child: for counterexamples that crash the host,
/// so that the crash fails this test only.
#[track_caller]
pub fn replay_forked(ops: &[Op]) {
    if let Err(e) = check_forked(ops, &mut Counts::default()) {
        panic!("counterexample: {e}");
    }
}
