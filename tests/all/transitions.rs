//! Transitions: per-thread consistency, immediate functions, blockers,
//! reverse, force, timeout rollback, revert order, atomic rejection, spawn
//! during a transition, reclaim. Each test follows one rule of
//! `docs/consistency.md`.

use patch_format::{diff, DiffOptions};
use wasm_patch_runtime::*;

/// Version 1: `step` calls `encode`, yields, calls `decode`; each version
/// tags its results so that a mixed step is visible: a consistent step
/// returns tag*1000 + tag*100 + tag*10 (all three from one version).
fn service(v: i32) -> String {
    format!(
        r#"(module
      (import "wasm-patch" "yield" (func $yield))
      (import "env" "record" (func $record (param i32)))
      (global $stop (mut i32) (i32.const 0))
      (func $encode (param i32) (result i32) i32.const {v} i32.const 100 i32.mul)
      (func $decode (param i32) (result i32) i32.const {v} i32.const 10 i32.mul local.get 0 i32.add)
      (func $step (result i32)
        (local $x i32)
        i32.const {v} i32.const 1000 i32.mul
        i32.const 0 call $encode
        i32.add
        local.set $x
        call $yield
        local.get $x call $decode)
      (func $worker (export "worker") (param $n i32)
        (loop $l
          call $step call $record
          local.get $n i32.const 1 i32.sub local.tee $n
          br_if $l))
      (func (export "stop") i32.const 1 global.set $stop))"#
    )
}

fn bundle(old: &str, new: &str, immediate: &[&str]) -> Vec<u8> {
    let old = wat::parse_str(old).unwrap();
    let new = wat::parse_str(new).unwrap();
    let opts = DiffOptions {
        immediate: immediate.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    diff(&old, &new, &opts).expect("diff").bundle.to_bytes()
}

struct Recorded(Vec<i32>);

fn setup(src: &str) -> (Store<Recorded>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, src).unwrap();
    let mut store = Store::new(&engine, Recorded(Vec::new()));
    let mut linker: Linker<Recorded> = Linker::new(&engine);
    linker.add_thread_abi();
    linker.func_new(
        "env",
        "record",
        FuncType::new([ValType::I32], []),
        |c, a, _| {
            c.data_mut().0.push(a[0].i32().unwrap());
            Ok(())
        },
    );
    let inst = linker.instantiate(&mut store, &module).unwrap();
    (store, inst)
}

fn mixed(steps: &[i32]) -> usize {
    steps
        .iter()
        .filter(|&&s| {
            let (a, b, c) = (s / 1000, (s / 100) % 10, (s / 10) % 10);
            !(a == b && b == c)
        })
        .count()
}

fn run_scenario(immediate: bool) -> (usize, usize) {
    let (mut store, inst) = setup(&service(1));
    let worker = inst.get_func(&store, "worker").unwrap();
    for _ in 0..50 {
        store.spawn(worker, &[Val::I32(40)]).unwrap();
    }
    // Every thread runs into the middle of its first step (in `yield`).
    assert_eq!(store.run_steps(50), 50);
    let names: Vec<&str> = if immediate {
        vec!["step", "encode", "decode"]
    } else {
        vec![]
    };
    let b = bundle(&service(1), &service(2), &names);
    store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    if !immediate {
        let st = store.transition_status().expect("in transition");
        assert_eq!(st.pending, 50, "every thread is inside `step`");
        assert_eq!(st.blockers.len(), 50);
        assert_eq!(st.blockers[0].frame.name, "step");
    }
    store.run().unwrap();
    assert!(store.transition_status().is_none(), "transition completed");
    let steps = store.data().0.clone();
    if std::env::var("DEBUG_T").is_ok() {
        for e in store.events().iter().take(8) {
            eprintln!("{e}");
        }
        eprintln!(
            "{} events; last {:?}; steps {:?}",
            store.events().len(),
            store.events().last(),
            &steps[..20]
        );
    }
    let new = steps.iter().filter(|&&s| s / 1000 == 2).count();
    (mixed(&steps), new)
}

#[test]
fn per_thread_consistency_gives_no_mixed_steps() {
    let (mixed, new) = run_scenario(false);
    assert_eq!(mixed, 0, "consistent bundle produced mixed steps");
    assert!(new > 0, "new code never ran");
}

#[test]
fn the_same_bundle_marked_immediate_mixes_versions() {
    let (mixed, new) = run_scenario(true);
    assert!(mixed > 0, "immediate bundle should visibly mix versions");
    assert!(new > 0);
}

// ---------------------------------------------------------------------------
// The scenario module of the tests below. `$f` and `$g` return a version
// constant; `f(p)` parks inside itself when `p != 0` and, when `p == 2`,
// records `g()` after waking (still inside `f`). `park_f(p)` reaches `f`
// through `outer` → `mid`, records what that frame of `f` returned, parks
// again outside every patched function (a safe point with a clean stack), and
// finally returns `f(0)` as its world sees it.
// ---------------------------------------------------------------------------

pub(crate) fn app_with(f_body: &str, g_body: &str, extra: &str) -> String {
    format!(
        r#"(module
      (import "env" "park" (func $park))
      (import "env" "record" (func $record (param i32)))
      (import "env" "snap" (func $snap))
      (import "wasm-patch" "yield" (func $yield))
      (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
      (type $ret (func (result i32)))
      (memory (export "mem") 1)
      (data (i32.const 0) "wasm-patch original bytes")
      (global $cb (mut i32) (i32.const 0))
      (table $t 2 funcref)
      (elem (i32.const 0) func $child)
      (func $f (param $p i32) (result i32)
        (if (local.get $p) (then (call $park)))
        (if (i32.eq (local.get $p) (i32.const 2))
          (then (call $record (call $g (i32.const 0)))))
        {f_body})
      (func $g (param $p i32) (result i32)
        (if (local.get $p) (then (call $park)))
        {g_body})
      (func $mid (param $p i32) (result i32) local.get $p call $f)
      (func $outer (param $p i32) (result i32) local.get $p call $mid)
      (func $child (param i32) i32.const 0 call $f call $record)
      (func (export "call_f") (result i32) i32.const 0 call $f)
      (func (export "call_g") (result i32) i32.const 0 call $g)
      (func (export "park_f") (param $p i32) (result i32)
        local.get $p call $outer call $record
        call $park
        i32.const 0 call $f)
      (func (export "park_g") (result i32)
        i32.const 1 call $g call $record
        call $park
        i32.const 0 call $g)
      (func (export "idle") (result i32) call $park i32.const 0 call $f)
      (func (export "spin") (loop $l call $yield i32.const 0 call $f drop br $l))
      (func (export "spawn_child") (result i32) i32.const 0 i32.const 0 call $spawn)
      (func (export "call_slot") (param i32) (result i32) local.get 0 call_indirect (type $ret))
      (func (export "cb") (result i32) global.get $cb)
      (func (export "snap") call $snap)
      {extra})"#
    )
}

/// `f` returns `f`, `g` returns `g`.
pub(crate) fn app(f: i32, g: i32) -> String {
    app_with(&format!("i32.const {f}"), &format!("i32.const {g}"), "")
}

/// Callback functions of a new build: each records its code and sets its bit
/// in `$cb`; `pre` returns `veto`.
pub(crate) fn callbacks(veto: i32) -> String {
    let cb = |name: &str, code: i32, bit: i32, ret: i32| {
        format!(
            "(func ${name} (result i32) i32.const {code} call $record \
             global.get $cb i32.const {bit} i32.or global.set $cb i32.const {ret})"
        )
    };
    [
        cb("pre", 81, 8, veto),
        cb("post", 82, 1, 0),
        cb("pre_un", 83, 2, 0),
        cb("post_un", 84, 4, 0),
    ]
    .join("\n")
}

pub(crate) fn diff_with(old: &str, new: &str, opts: &DiffOptions) -> patch_format::Bundle {
    let old = wat::parse_str(old).unwrap();
    let new = wat::parse_str(new).unwrap();
    diff(&old, &new, opts).expect("diff").bundle
}

pub(crate) fn bytes_with(old: &str, new: &str, opts: &DiffOptions) -> Vec<u8> {
    diff_with(old, new, opts).to_bytes()
}

pub(crate) fn imm(names: &[&str]) -> DiffOptions {
    DiffOptions {
        immediate: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[derive(Default)]
pub(crate) struct Host {
    pub(crate) rec: Vec<i32>,
    /// `rec` with the thread that recorded each value.
    pub(crate) rec_by: Vec<(ThreadId, i32)>,
    pub(crate) mem: Vec<u8>,
}

pub(crate) fn setup_host(src: &str) -> (Store<Host>, Instance) {
    setup_host_with(Engine::default(), src)
}

pub(crate) fn setup_host_with(engine: Engine, src: &str) -> (Store<Host>, Instance) {
    let module = Module::new(&engine, src).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let inst = host_linker(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    (store, inst)
}

/// The thread ABI plus `env.park`, `env.record` and `env.snap`.
pub(crate) fn host_linker(engine: &Engine) -> Linker<Host> {
    let mut linker: Linker<Host> = Linker::new(engine);
    linker.add_thread_abi();
    linker.func_new("env", "park", FuncType::new([], []), |c, _, _| c.park());
    linker.func_new(
        "env",
        "record",
        FuncType::new([ValType::I32], []),
        |c, a, _| {
            let (id, v) = (c.thread_id(), a[0].i32().unwrap());
            c.data_mut().rec.push(v);
            c.data_mut().rec_by.push((id, v));
            Ok(())
        },
    );
    linker.func_new("env", "snap", FuncType::new([], []), |c, _, _| {
        let m = c.memory(0).map(|m| m.to_vec()).unwrap_or_default();
        c.data_mut().mem = m;
        Ok(())
    });
    linker
}

pub(crate) fn func(store: &Store<Host>, inst: Instance, name: &str) -> Func {
    inst.get_func(store, name)
        .unwrap_or_else(|| panic!("no export {name}"))
}

/// Call an export on a new thread and run until it returns its i32.
#[track_caller]
pub(crate) fn call(store: &mut Store<Host>, inst: Instance, name: &str) -> i32 {
    let f = func(store, inst, name);
    crate::i32_of(f.call(store, &[]))
}

/// Spawn `name(args)` and run every thread until all are parked or done.
pub(crate) fn park(store: &mut Store<Host>, inst: Instance, name: &str, args: &[Val]) -> ThreadId {
    let f = func(store, inst, name);
    let id = store.spawn(f, args).unwrap();
    store.run().unwrap();
    assert_eq!(store.thread_state(id), Some(RunState::Parked), "{name}");
    id
}

/// Wake `id` and run until everything is parked or done.
pub(crate) fn wake(store: &mut Store<Host>, id: ThreadId) {
    store.unpark(id);
    store.run().unwrap();
}

pub(crate) fn snapshot(store: &mut Store<Host>, inst: Instance) -> Vec<u8> {
    let f = func(store, inst, "snap");
    f.call(store, &[]).unwrap();
    std::mem::take(&mut store.data_mut().mem)
}

pub(crate) fn transcript(store: &Store<Host>) -> Vec<String> {
    store.events().iter().map(|e| e.to_string()).collect()
}

pub(crate) fn f_index(store: &Store<Host>, inst: Instance, name: &str) -> u32 {
    store.func_index(inst, name).unwrap()
}

pub(crate) fn live(store: &Store<Host>, inst: Instance, name: &str) -> Option<PatchId> {
    let i = f_index(store, inst, name);
    store.function_versions(inst, i).unwrap().live.patch
}

pub(crate) fn apply(store: &mut Store<Host>, inst: Instance, bytes: &[u8]) -> PatchId {
    store
        .apply(inst, bytes, &ApplyOptions::default())
        .expect("apply")
}

/// Rule 1 (the Linux 4.16 case): threads asleep inside `f`'s original
/// version and inside its first immediate version are still checked against
/// `f` when a later, non-immediate bundle changes `f`: they stay pending,
/// blocked by `f`, until they leave it.
#[test]
fn thread_inside_an_older_immediate_version_is_still_checked() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    // t0 sleeps inside f v0.
    let t0 = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    // A: f immediate (v1).
    let a = bytes_with(&v0, &app(1, 0), &imm(&["f"]));
    let pa = apply(&mut store, inst, &a);
    assert!(!store.wait_transition().unwrap().reversed);
    assert_eq!(live(&store, inst, "f"), Some(pa));
    // t1 sleeps inside f v1.
    let t1 = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    // B: f immediate again (v2), not sitting on A.
    let b = bytes_with(&v0, &app(2, 0), &imm(&["f"]));
    let pb = apply(&mut store, inst, &b);
    assert!(!store.wait_transition().unwrap().reversed);
    assert_eq!(call(&mut store, inst, "call_f"), 2);
    let fi = f_index(&store, inst, "f");
    let fv = store.function_versions(inst, fi).unwrap();
    let hist: Vec<Option<PatchId>> = fv.history.iter().map(|v| v.patch).collect();
    assert_eq!(hist, vec![None, Some(pa), Some(pb)]);
    assert_eq!(fv.live.patch, Some(pb));
    let mut expect_on_stack = vec![fv.history[0].unit, fv.history[1].unit];
    expect_on_stack.sort();
    assert_eq!(fv.on_stack, expect_on_stack, "v0 and v1 still execute");

    // C: a consistent (non-immediate) change of f.
    let c = bytes_with(&v0, &app(3, 0), &DiffOptions::default());
    let pc = apply(&mut store, inst, &c);
    let st = store.transition_status().expect("C is in transition");
    assert_eq!(st.patch, pc);
    assert_eq!(st.pending, 2, "neither thread may switch while inside f");
    let mut blocked: Vec<ThreadId> = st.blockers.iter().map(|b| b.thread).collect();
    blocked.sort();
    assert_eq!(blocked, vec![t0, t1]);
    assert!(st.blockers.iter().all(|b| b.frame.name == "f"));
    let b0 = st.blockers.iter().find(|b| b.thread == t0).unwrap();
    assert_eq!(b0.frame.unit, fv.history[0].unit, "t0's f frame is v0");
    let b1 = st.blockers.iter().find(|b| b.thread == t1).unwrap();
    assert_eq!(b1.frame.unit, fv.history[1].unit, "t1's f frame is v1");
    assert_eq!(
        store.thread_patch_state(t0),
        Some(ThreadPatchState::Unpatched)
    );
    assert_eq!(
        store.thread_patch_state(t1),
        Some(ThreadPatchState::Unpatched)
    );
    // Nothing else can run: waiting stalls rather than switching them.
    assert!(store.wait_transition().is_err());
    assert_eq!(store.transition_status().unwrap().pending, 2);
    // New threads already get C.
    assert_eq!(call(&mut store, inst, "call_f"), 3);

    // t0 leaves f (its v0 frame finishes in v0) and parks outside: it switches.
    wake(&mut store, t0);
    assert_eq!(store.data().rec, vec![0]);
    assert_eq!(
        store.thread_patch_state(t0),
        Some(ThreadPatchState::Patched)
    );
    assert_eq!(
        store.thread_patch_state(t1),
        Some(ThreadPatchState::Unpatched)
    );
    let st = store.transition_status().unwrap();
    assert_eq!(st.pending, 1);
    assert_eq!(st.blockers.len(), 1);
    assert_eq!(st.blockers[0].thread, t1);
    // t1 leaves f (v1 finishes in v1): the transition completes.
    wake(&mut store, t1);
    assert_eq!(store.data().rec, vec![0, 1]);
    assert!(store.transition_status().is_none());
    let ev = transcript(&store);
    let pos = |s: &str| {
        ev.iter()
            .position(|e| e == s)
            .unwrap_or_else(|| panic!("no `{s}` in {ev:#?}"))
    };
    assert!(pos(&format!("{pc}: {t0} blocked by f")) < pos(&format!("{pc}: {t0} switched")));
    assert!(pos(&format!("{pc}: {t1} blocked by f")) < pos(&format!("{pc}: {t1} switched")));
    assert!(pos(&format!("{pc}: {t1} switched")) < pos(&format!("{pc}: completed patch")));
    // Both now call C's f.
    store.unpark(t0);
    store.unpark(t1);
    assert_eq!(crate::i32_of(store.join(t0)), 3);
    assert_eq!(crate::i32_of(store.join(t1)), 3);
}

/// Blockers name the thread, its whole backtrace innermost first, and the
/// innermost frame whose function is in the check set.
#[test]
fn blockers_carry_backtraces_and_the_blocking_frame() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let idle = park(&mut store, inst, "idle", &[]);
    // Change `mid` and `outer` but not `f`: the blocking frame is `mid`,
    // which is not the innermost frame.
    let new = v0
        .replace(
            "(func $mid (param $p i32) (result i32) local.get $p call $f)",
            "(func $mid (param $p i32) (result i32) local.get $p call $f i32.const 1 i32.add)",
        )
        .replace(
            "(func $outer (param $p i32) (result i32) local.get $p call $mid)",
            "(func $outer (param $p i32) (result i32) local.get $p call $mid i32.const 10 i32.add)",
        );
    assert_ne!(new, v0);
    let p = apply(
        &mut store,
        inst,
        &bytes_with(&v0, &new, &DiffOptions::default()),
    );
    let st = store.transition_status().unwrap();
    assert_eq!(st.direction, Direction::Patch);
    assert_eq!((st.pending, st.switched), (1, 1), "idle switched at once");
    assert_eq!(st.blockers.len(), 1);
    let b = &st.blockers[0];
    assert_eq!(b.thread, t);
    assert_eq!(
        crate::names(&b.backtrace),
        vec!["f", "mid", "outer", "park_f"]
    );
    assert_eq!(b.frame.name, "mid");
    assert_eq!(b.frame.func_index, f_index(&store, inst, "mid"));
    let again = store.blockers();
    assert_eq!(again.len(), 1);
    assert_eq!(
        crate::names(&again[0].backtrace),
        crate::names(&b.backtrace)
    );
    assert_eq!(
        store.thread_patch_state(idle),
        Some(ThreadPatchState::Patched)
    );
    assert!(transcript(&store).contains(&format!("{p}: {t} blocked by mid")));
    // Leaving mid/outer unblocks it; old mid/outer finish in the old version.
    wake(&mut store, t);
    assert_eq!(store.data().rec, vec![0]);
    assert!(store.transition_status().is_none());
}

/// Rule 8: a reversed transition sends switched threads back, undoes the
/// immediate changes at once (also for threads still in the patched world),
/// and leaves the bundle not applied.
#[test]
fn reverse_brings_threads_back_and_unapplies() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let blocked = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let idle = park(&mut store, inst, "idle", &[]);
    let b = bytes_with(&v0, &app(1, 1), &imm(&["g"]));
    let p = apply(&mut store, inst, &b);
    assert_eq!(call(&mut store, inst, "call_g"), 1, "g is immediate");
    assert_eq!(
        store.thread_patch_state(idle),
        Some(ThreadPatchState::Patched)
    );
    // A thread of the patched world that sleeps inside the new f.
    let late = park(&mut store, inst, "park_f", &[Val::I32(2)]);
    assert_eq!(
        store.thread_patch_state(late),
        Some(ThreadPatchState::Patched)
    );
    assert_eq!(
        store.thread_patch_state(blocked),
        Some(ThreadPatchState::Unpatched)
    );

    store.reverse().unwrap();
    let st = store.transition_status().unwrap();
    assert!(st.reversed);
    assert_eq!(st.pending, 1, "only `late` is held back (by f v1)");
    assert_eq!(st.blockers.len(), 1);
    assert_eq!(st.blockers[0].thread, late);
    assert_eq!(st.blockers[0].frame.name, "f");
    assert_eq!(
        store.thread_patch_state(idle),
        Some(ThreadPatchState::Unpatched),
        "a switched thread with a clean stack came back at once"
    );
    assert_eq!(
        store.thread_patch_state(blocked),
        Some(ThreadPatchState::Unpatched)
    );
    assert_eq!(
        store.thread_patch_state(late),
        Some(ThreadPatchState::Patched)
    );
    // `late` wakes inside f v1 and calls g: g is already back to v0, even
    // though `late` is still in the patched world.
    wake(&mut store, late);
    assert_eq!(store.data().rec, vec![0, 1], "g() = 0 from v1 of f, f = 1");
    let out = store.last_transition().expect("completed").clone();
    assert!(out.reversed && !out.forced);
    assert_eq!(out.patch, p);
    assert!(store.transition_status().is_none());
    assert!(store.applied().is_empty());
    assert_eq!(live(&store, inst, "f"), None);
    assert_eq!(live(&store, inst, "g"), None);
    assert_eq!(call(&mut store, inst, "call_f"), 0);
    assert_eq!(call(&mut store, inst, "call_g"), 0);
    for t in [blocked, idle, late] {
        assert_eq!(store.thread_patch_state(t), Some(ThreadPatchState::None));
    }
    let ev = transcript(&store);
    let pos = |s: String| {
        ev.iter()
            .position(|e| *e == s)
            .unwrap_or_else(|| panic!("no `{s}` in {ev:#?}"))
    };
    let (s, r, c) = (
        pos(format!("{p}: started patch")),
        pos(format!("{p}: reversed")),
        pos(format!("{p}: completed unpatch")),
    );
    assert!(s < r && r < c, "{ev:#?}");
    assert!(pos(format!("{p}: {late} switched")) > r);
    // Every thread ends on the old code.
    for t in [blocked, late, idle] {
        store.unpark(t);
    }
    store.run().unwrap();
    for t in [blocked, late, idle] {
        store.unpark(t);
        assert_eq!(crate::i32_of(store.join(t)), 0, "{t}");
    }
}

/// Rule 9: force switches pending threads at once; the bundle is marked
/// forced and can never be reverted.
#[test]
fn force_switches_everyone_and_forbids_revert() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let p = apply(
        &mut store,
        inst,
        &bytes_with(&v0, &app(1, 0), &DiffOptions::default()),
    );
    assert_eq!(store.transition_status().unwrap().pending, 1);
    assert_eq!(store.force().unwrap(), p);
    assert_eq!(store.thread_patch_state(t), Some(ThreadPatchState::Patched));
    let out = store.wait_transition().unwrap();
    assert!(out.forced && !out.reversed);
    assert!(store.last_transition().unwrap().forced);
    let applied = store.applied();
    assert_eq!(applied.len(), 1);
    assert!(applied[0].forced);
    match store.revert(p, None) {
        Err(PatchError::RevertRefused(id, _)) => assert_eq!(id, p),
        other => panic!("revert of a forced bundle: {other:?}"),
    }
    assert!(store.transition_status().is_none());
    assert_eq!(store.applied().len(), 1);
    // The forced thread finishes its old frame in old code (still mapped),
    // then gets the new f.
    wake(&mut store, t);
    assert_eq!(store.data().rec, vec![0]);
    store.unpark(t);
    assert_eq!(crate::i32_of(store.join(t)), 1);
    assert!(transcript(&store).contains(&format!("{p}: forced")));
}

/// Timeout policy: a transition still blocked after its timeout is reversed;
/// the outcome names the blockers; old code runs for everyone afterwards.
#[test]
fn timeout_reverses_a_blocked_transition() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let stuck = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let idle = park(&mut store, inst, "idle", &[]);
    let opts = ApplyOptions {
        timeout: Some(std::time::Duration::from_millis(50)),
        ..Default::default()
    };
    let b = bytes_with(&v0, &app(1, 0), &DiffOptions::default());
    let t0 = std::time::Instant::now();
    let p = store.apply(inst, &b, &opts).unwrap();
    let out = store.wait_transition().unwrap();
    assert!(t0.elapsed() >= std::time::Duration::from_millis(50));
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(5),
        "reversed late"
    );
    assert_eq!(out.patch, p);
    assert!(out.reversed);
    assert!(!out.forced);
    assert_eq!(out.blockers.len(), 1);
    assert_eq!(out.blockers[0].thread, stuck);
    assert_eq!(out.blockers[0].frame.name, "f");
    assert!(store.applied().is_empty());
    assert!(store.transition_status().is_none());
    assert_eq!(
        store.thread_patch_state(stuck),
        Some(ThreadPatchState::None)
    );
    assert_eq!(store.thread_patch_state(idle), Some(ThreadPatchState::None));
    assert_eq!(call(&mut store, inst, "call_f"), 0);
    store.unpark(idle);
    assert_eq!(crate::i32_of(store.join(idle)), 0);
    wake(&mut store, stuck);
    store.unpark(stuck);
    assert_eq!(crate::i32_of(store.join(stuck)), 0);
    assert_eq!(store.data().rec, vec![0]);
    assert!(transcript(&store).contains(&format!("{p}: reversed")));
}

/// Rule 11: reverting in any order leaves each function at the newest
/// version still applied.
#[test]
fn revert_order_follows_the_version_history() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let idle = park(&mut store, inst, "idle", &[]);
    let go = |store: &mut Store<Host>, new: &str| {
        let p = apply(store, inst, &bytes_with(&v0, new, &DiffOptions::default()));
        store.wait_transition().unwrap();
        p
    };
    let a = go(&mut store, &app(1, 0)); // f: A
    let b = go(&mut store, &app(0, 2)); // g: B
    let c = go(&mut store, &app(3, 0)); // f: C (same function as A)
    let check = |store: &mut Store<Host>, f: (Option<PatchId>, i32), g: (Option<PatchId>, i32)| {
        assert!(store.transition_status().is_none());
        assert_eq!(live(store, inst, "f"), f.0);
        assert_eq!(live(store, inst, "g"), g.0);
        assert_eq!(call(store, inst, "call_f"), f.1);
        assert_eq!(call(store, inst, "call_g"), g.1);
    };
    check(&mut store, (Some(c), 3), (Some(b), 2));
    let fi = f_index(&store, inst, "f");
    let hist: Vec<_> = store
        .function_versions(inst, fi)
        .unwrap()
        .history
        .iter()
        .map(|v| v.patch)
        .collect();
    assert_eq!(hist, vec![None, Some(a), Some(c)]);
    // Revert A (an older version of f): nothing changes for f.
    store.revert(a, None).unwrap();
    store.wait_transition().unwrap();
    check(&mut store, (Some(c), 3), (Some(b), 2));
    // Revert C: f goes back to v0 (A is gone).
    store.revert(c, None).unwrap();
    store.wait_transition().unwrap();
    check(&mut store, (None, 0), (Some(b), 2));
    store.revert(b, None).unwrap();
    store.wait_transition().unwrap();
    check(&mut store, (None, 0), (None, 0));
    assert!(store.applied().is_empty());
    assert!(matches!(store.revert(b, None), Err(PatchError::Unknown(_))));

    // The other order: the newest first, then the older one.
    let a = go(&mut store, &app(1, 0));
    let c = go(&mut store, &app(3, 0));
    check(&mut store, (Some(c), 3), (None, 0));
    store.revert(c, None).unwrap();
    store.wait_transition().unwrap();
    check(&mut store, (Some(a), 1), (None, 0));
    store.revert(a, None).unwrap();
    store.wait_transition().unwrap();
    check(&mut store, (None, 0), (None, 0));
    // A thread that lived through all of it sees the final world.
    store.unpark(idle);
    assert_eq!(crate::i32_of(store.join(idle)), 0);
}

/// Everything a host can observe, for the atomic-rejection checks.
#[derive(Debug, PartialEq)]
struct Observed {
    f: i32,
    g: i32,
    cb: i32,
    /// Length and FNV-1a hash of the memory (a 64 KiB dump would drown
    /// the failure message; `first_diff` locates a change).
    mem: (usize, u64),
    applied: usize,
    transition: bool,
    states: Vec<Option<ThreadPatchState>>,
    events: usize,
    pub(crate) rec: Vec<i32>,
}

fn fnv(bytes: &[u8]) -> (usize, u64) {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (bytes.len(), h)
}

/// The first offset where two memory snapshots differ, with both bytes.
fn first_diff(a: &[u8], b: &[u8]) -> Option<(usize, Option<u8>, Option<u8>)> {
    (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .map(|i| (i, a.get(i).copied(), b.get(i).copied()))
}

fn observe(store: &mut Store<Host>, inst: Instance, threads: &[ThreadId]) -> Observed {
    let mem = fnv(&snapshot(store, inst));
    Observed {
        f: call(store, inst, "call_f"),
        g: call(store, inst, "call_g"),
        cb: call(store, inst, "cb"),
        mem,
        applied: store.applied().len(),
        transition: store.transition_status().is_some(),
        states: threads
            .iter()
            .map(|t| store.thread_patch_state(*t))
            .collect(),
        events: store.events().len(),
        rec: store.data().rec.clone(),
    }
}

/// Rule 14: a refused bundle changes nothing.
#[test]
fn rejected_bundles_change_nothing() {
    use patch_format::{CallbackKind, SecretKey, StateVersion, TrustedKeys};
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let threads = vec![
        park(&mut store, inst, "park_f", &[Val::I32(1)]),
        park(&mut store, inst, "idle", &[]),
    ];
    let before = observe(&mut store, inst, &threads);
    assert_eq!(before.states, vec![Some(ThreadPatchState::None); 2]);
    let good = bytes_with(&v0, &app(1, 1), &DiffOptions::default());

    let mut cases: Vec<(&str, Vec<u8>, ApplyOptions)> = Vec::new();
    // For another module.
    let x = "(func $x (export \"x\") (result i32) i32.const 5)";
    cases.push((
        "wrong target",
        bytes_with(
            &app_with("i32.const 0", "i32.const 0", x),
            &app_with("i32.const 1", "i32.const 1", x),
            &DiffOptions::default(),
        ),
        ApplyOptions::default(),
    ));
    // Corrupt: a flipped byte of the magic, of the version, and a truncated
    // bundle. (An unsigned bundle has no checksum: a flip inside a constant
    // of a body yields another valid bundle, so the flips are chosen where
    // the bytes cannot stay valid; integrity is the signature's job.)
    for at in [0, 4] {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        cases.push(("corrupt", bad, ApplyOptions::default()));
    }
    cases.push((
        "corrupt",
        good[..good.len() - 3].to_vec(),
        ApplyOptions::default(),
    ));
    // Unsigned, with trusted keys demanded.
    let mut keys = TrustedKeys::new();
    keys.add(SecretKey::from_bytes(&[7; 32]).public_key());
    cases.push((
        "unsigned",
        good.clone(),
        ApplyOptions {
            trusted_keys: Some(keys.clone()),
            ..Default::default()
        },
    ));
    // Signed by an untrusted key.
    let mut other_signed = diff_with(&v0, &app(1, 1), &DiffOptions::default());
    other_signed.sign(&SecretKey::from_bytes(&[9; 32]));
    cases.push((
        "untrusted signer",
        other_signed.to_bytes(),
        ApplyOptions {
            trusted_keys: Some(keys.clone()),
            ..Default::default()
        },
    ));
    // Vetoed by pre-patch (which touches nothing).
    let vetoing = app_with(
        "i32.const 1",
        "i32.const 1",
        "(func $pre (result i32) i32.const 1)",
    );
    cases.push((
        "vetoed",
        bytes_with(
            &v0,
            &vetoing,
            &DiffOptions {
                callbacks: vec![(CallbackKind::PrePatch, "pre".into())],
                ..Default::default()
            },
        ),
        ApplyOptions::default(),
    ));
    // Requires a state nobody provides.
    cases.push((
        "missing state",
        bytes_with(
            &v0,
            &app(1, 1),
            &DiffOptions {
                requires: vec![StateVersion { id: 7, version: 1 }],
                ..Default::default()
            },
        ),
        ApplyOptions::default(),
    ));

    for (what, bytes, opts) in &cases {
        let r = store.apply(inst, bytes, opts);
        match (what, &r) {
            (&"wrong target", Err(PatchError::WrongTarget { .. }))
            | (&"corrupt", Err(_))
            | (&"unsigned", Err(PatchError::Format(_)))
            | (&"untrusted signer", Err(PatchError::Format(_)))
            | (&"vetoed", Err(PatchError::Vetoed(_)))
            | (&"missing state", Err(PatchError::MissingState(_))) => {}
            _ => panic!("{what}: unexpected {r:?}"),
        }
        let after = observe(&mut store, inst, &threads);
        assert_eq!(after, before, "{what}: something changed");
    }
    // The good bundle still applies afterwards (so the rejections were not
    // a consequence of a broken store).
    let p = apply(&mut store, inst, &good);
    assert_eq!(p, PatchId(1), "refused bundles do not consume ids");
    assert_eq!(call(&mut store, inst, "call_g"), 1);
}

/// Rule 13: "if [pre-patch] fails, nothing happened (no slot, thread, world
/// or byte of memory changed)" — also when the vetoing callback itself wrote
/// memory and a global before returning nonzero.
///
#[test]
fn vetoing_pre_patch_leaves_memory_and_globals_unchanged() {
    use patch_format::CallbackKind;
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let before = snapshot(&mut store, inst);
    let new = app_with(
        "i32.const 1",
        "i32.const 0",
        "(func $pre (result i32)
           (i32.store8 (i32.const 100) (i32.const 42))
           (global.set $cb (i32.const 99))
           i32.const 1)",
    );
    let opts = DiffOptions {
        callbacks: vec![(CallbackKind::PrePatch, "pre".into())],
        ..Default::default()
    };
    let r = store.apply(
        inst,
        &bytes_with(&v0, &new, &opts),
        &ApplyOptions::default(),
    );
    assert!(matches!(r, Err(PatchError::Vetoed(_))), "{r:?}");
    let after = snapshot(&mut store, inst);
    assert_eq!(
        first_diff(&before, &after),
        None,
        "memory changed (offset, before, after)"
    );
    assert_eq!(call(&mut store, inst, "cb"), 0, "global changed");
}

/// Rule 10: one transition at a time.
#[test]
fn second_apply_during_a_transition_is_busy() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let a = apply(
        &mut store,
        inst,
        &bytes_with(&v0, &app(1, 0), &DiffOptions::default()),
    );
    let b = bytes_with(&v0, &app(0, 1), &DiffOptions::default());
    match store.apply(inst, &b, &ApplyOptions::default()) {
        Err(PatchError::Busy(id)) => assert_eq!(id, a),
        other => panic!("expected Busy, got {other:?}"),
    }
    match store.apply(
        inst,
        &b,
        &ApplyOptions {
            immediate: true,
            ..Default::default()
        },
    ) {
        Err(PatchError::Busy(id)) => assert_eq!(id, a),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(matches!(store.revert(a, None), Err(PatchError::Busy(id)) if id == a));
    // Nothing of B leaked in.
    assert_eq!(store.applied().len(), 1);
    assert_eq!(call(&mut store, inst, "call_g"), 0);
    let st = store.transition_status().unwrap();
    assert_eq!((st.patch, st.pending), (a, 1));
    // Once it completes, B applies.
    wake(&mut store, t);
    assert!(store.transition_status().is_none());
    apply(&mut store, inst, &b);
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_g"), 1);
}

/// Rule 3: threads spawned during a transition start in the new world, from
/// the host or from a guest.
#[test]
fn threads_spawned_during_a_transition_start_patched() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    apply(
        &mut store,
        inst,
        &bytes_with(&v0, &app(1, 0), &DiffOptions::default()),
    );
    let cf = func(&store, inst, "call_f");
    let n = store.spawn(cf, &[]).unwrap();
    assert_eq!(store.thread_patch_state(n), Some(ThreadPatchState::Patched));
    assert_eq!(
        store.thread_patch_state(t),
        Some(ThreadPatchState::Unpatched)
    );
    assert_eq!(crate::i32_of(store.join(n)), 1);
    // A guest-spawned thread (thread ABI `spawn`) runs `child`, which records f.
    let child = call(&mut store, inst, "spawn_child");
    assert!(child > 0, "spawn failed: {child}");
    store.run().unwrap();
    assert_eq!(store.data().rec, vec![1]);
    assert!(store.transition_status().is_some(), "t still blocks");
    assert_eq!(store.transition_status().unwrap().pending, 1);
    wake(&mut store, t);
    assert!(store.transition_status().is_none());
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const RECLAIM_CHILD: &str = "WASM_PATCH_RECLAIM_CHILD";

/// Rule 7 (reclaim): 2,000 apply/revert cycles with threads running between
/// them keep the reclaim list small and RSS flat. Runs in a child process
/// (this test binary, filtered to this test) so that the RSS is its own.
#[test]
fn reclaim_keeps_memory_flat_over_2000_cycles() {
    if std::env::var_os(RECLAIM_CHILD).is_some() {
        return reclaim_cycles();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "transitions::reclaim_keeps_memory_flat_over_2000_cycles",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RECLAIM_CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("reclaim:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "child ran nothing:\n{text}");
}

fn reclaim_cycles() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let idle = park(&mut store, inst, "idle", &[]);
    // Spinners never park: from here on drive with `run_steps` only.
    let spin = func(&store, inst, "spin");
    for _ in 0..4 {
        store.spawn(spin, &[]).unwrap();
    }
    store.run_steps(8);
    let b = bytes_with(&v0, &app(1, 1), &DiffOptions::default());
    let mut rss200 = 0;
    let mut max_pending = 0;
    let t0 = std::time::Instant::now();
    for cycle in 1..=2000 {
        let p = apply(&mut store, inst, &b);
        store.run_steps(4);
        assert!(!store.wait_transition().unwrap().reversed);
        store.run_steps(4);
        store.revert(p, None).unwrap();
        store.run_steps(4);
        assert!(!store.wait_transition().unwrap().reversed);
        max_pending = max_pending.max(store.reclaim_pending());
        if cycle == 200 {
            rss200 = vm_rss_kib();
        }
        if cycle % 100 == 0 && std::env::var_os("RECLAIM_TRACE").is_some() {
            eprintln!(
                "reclaim: cycle {cycle} at {:?}, VmRSS {} KiB, pending {}",
                t0.elapsed(),
                vm_rss_kib(),
                store.reclaim_pending()
            );
        }
    }
    let rss2000 = vm_rss_kib();
    eprintln!(
        "reclaim: 2000 cycles in {:?}; VmRSS {} KiB at cycle 200, {} KiB at cycle 2000 \
         (+{} KiB); max reclaim_pending {max_pending}; {} events",
        t0.elapsed(),
        rss200,
        rss2000,
        rss2000 as i64 - rss200 as i64,
        store.events().len()
    );
    assert!(max_pending <= 2, "reclaim list grew to {max_pending}");
    assert!(
        rss2000 <= rss200 + 4 * 1024,
        "RSS grew from {rss200} KiB (cycle 200) to {rss2000} KiB (cycle 2000)"
    );
    assert_eq!(call(&mut store, inst, "call_f"), 0);
    store.unpark(idle);
    assert_eq!(crate::i32_of(store.join(idle)), 0);
}

fn cb_opts(kinds: &[patch_format::CallbackKind]) -> DiffOptions {
    use patch_format::CallbackKind::*;
    DiffOptions {
        callbacks: kinds
            .iter()
            .map(|k| {
                let name = match k {
                    PrePatch => "pre",
                    PostPatch => "post",
                    PreUnpatch => "pre_un",
                    PostUnpatch => "post_un",
                };
                (*k, name.to_string())
            })
            .collect(),
        ..Default::default()
    }
}

/// Rule 13: callbacks in pairs; post-patch after completion; pre-unpatch
/// before a revert starts, post-unpatch after it completes; a reversed apply
/// runs post-unpatch but not pre-unpatch (nor post-patch).
#[test]
fn callbacks_run_at_their_points() {
    use patch_format::CallbackKind::*;
    let v0 = app(0, 0);
    let new = app_with("i32.const 1", "i32.const 0", &callbacks(0));
    let b = bytes_with(
        &v0,
        &new,
        &cb_opts(&[PrePatch, PostPatch, PreUnpatch, PostUnpatch]),
    );
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let p = apply(&mut store, inst, &b);
    // Pre-patch ran; post-patch waits for completion.
    assert_eq!(store.data().rec, vec![81]);
    assert_eq!(call(&mut store, inst, "cb"), 8);
    wake(&mut store, t); // records f = 0, parks outside → switches → completes
    assert!(store.transition_status().is_none());
    assert_eq!(store.data().rec, vec![81, 0, 82]);
    assert_eq!(call(&mut store, inst, "cb"), 8 | 1);
    // Revert while a thread blocks it: pre-unpatch at once, post-unpatch at
    // completion.
    store.unpark(t);
    assert_eq!(crate::i32_of(store.join(t)), 1);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    store.revert(p, None).unwrap();
    assert!(store.transition_status().is_some());
    assert_eq!(store.data().rec, vec![81, 0, 82, 83]);
    assert_eq!(call(&mut store, inst, "cb"), 8 | 1 | 2);
    wake(&mut store, t);
    assert!(store.transition_status().is_none());
    assert_eq!(store.data().rec, vec![81, 0, 82, 83, 1, 84]);
    assert_eq!(call(&mut store, inst, "cb"), 15);

    // A reversed apply: pre-patch, then post-unpatch only.
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    store.apply(inst, &b, &ApplyOptions::default()).unwrap();
    store.reverse().unwrap();
    let out = store.wait_transition().unwrap();
    assert!(out.reversed);
    assert_eq!(store.data().rec, vec![81, 84]);
    assert_eq!(call(&mut store, inst, "cb"), 8 | 4);
    assert!(store.applied().is_empty());
    wake(&mut store, t);
    assert_eq!(store.data().rec, vec![81, 84, 0]);
}

fn sig_module(f: &str, call_args: &str) -> String {
    format!(
        r#"(module
      (import "env" "park" (func $park))
      (import "env" "record" (func $record (param i32)))
      (func $f {f})
      (func $h (param $p i32) (result i32)
        (if (local.get $p) (then (call $park)))
        {call_args} call $f)
      (func (export "park_h") (result i32)
        i32.const 1 call $h call $record
        call $park
        i32.const 0 call $h)
      (func (export "call_h") (result i32) i32.const 0 call $h))"#
    )
}

/// `f(i32) -> i32` (old) and `f(i32, i32) -> i32` with its caller `h` (new).
fn sig_pair() -> (String, String) {
    (
        sig_module(
            "(param i32) (result i32) local.get 0 i32.const 10 i32.mul",
            "local.get $p i32.const 3 i32.add",
        ),
        sig_module(
            "(param i32 i32) (result i32) local.get 0 local.get 1 i32.add i32.const 100 i32.mul",
            "local.get $p i32.const 3 i32.add i32.const 7",
        ),
    )
}

/// Rule 4: a function whose type changes is never immediate: `diff`
/// refuses `--immediate f`, and `apply` refuses the bundle with
/// `immediate: true`, changing nothing.
#[test]
fn signature_change_cannot_be_immediate() {
    let (v0, v1) = sig_pair();
    let (mut store, inst) = setup_host(&v0);
    assert_eq!(call(&mut store, inst, "call_h"), 30);
    let o = wat::parse_str(&v0).unwrap();
    let n = wat::parse_str(&v1).unwrap();
    assert!(diff(&o, &n, &imm(&["f"])).is_err());
    let b = bytes_with(&v0, &v1, &DiffOptions::default());
    let r = store.apply(
        inst,
        &b,
        &ApplyOptions {
            immediate: true,
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(PatchError::Incompatible(_))), "{r:?}");
    assert!(store.applied().is_empty() && store.transition_status().is_none());
    assert!(store.events().is_empty());
    assert_eq!(call(&mut store, inst, "call_h"), 30);
}

/// A signature change (`f(i32) -> i32` to `f(i32, i32) -> i32`) with all its
/// callers in the bundle applies consistently: a thread inside the old
/// caller finishes with the old `f`, new calls get the new pair.
///
#[test]
fn signature_change_with_callers_applies_consistently() {
    let (v0, v1) = sig_pair();
    let (mut store, inst) = setup_host(&v0);
    let b = bytes_with(&v0, &v1, &DiffOptions::default());
    let t = park(&mut store, inst, "park_h", &[]);
    apply(&mut store, inst, &b);
    let st = store.transition_status().unwrap();
    assert_eq!(st.blockers.len(), 1);
    assert_eq!(st.blockers[0].frame.name, "h");
    assert_eq!(call(&mut store, inst, "call_h"), 1000);
    // The old h finishes calling the old f with one argument.
    wake(&mut store, t);
    assert_eq!(store.data().rec, vec![40]);
    assert!(store.transition_status().is_none());
    store.unpark(t);
    assert_eq!(crate::i32_of(store.join(t)), 1000);
}

/// Rule 6: an added function called by a replacement works; after the
/// revert, a stale funcref to it (left in a table) traps `RemovedFunction`.
#[test]
fn added_function_and_stale_funcref_after_revert() {
    let v0 = app(0, 0);
    let new = app_with(
        "(table.set $t (i32.const 1) (ref.func $added)) call $added",
        "i32.const 0",
        "(func $added (result i32) i32.const 77) (elem declare func $added)",
    );
    let (mut store, inst) = setup_host(&v0);
    let slot = func(&store, inst, "call_slot");
    let trap = crate::trap_of(slot.call(&mut store, &[Val::I32(1)]));
    assert_eq!(trap.kind, TrapKind::NullReference);
    let p = apply(
        &mut store,
        inst,
        &bytes_with(&v0, &new, &DiffOptions::default()),
    );
    store.wait_transition().unwrap();
    assert_eq!(
        store.applied()[0].functions.len(),
        2,
        "{:?}",
        store.applied()
    );
    assert_eq!(call(&mut store, inst, "call_f"), 77);
    assert_eq!(crate::i32_of(slot.call(&mut store, &[Val::I32(1)])), 77);
    store.revert(p, None).unwrap();
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_f"), 0);
    let trap = crate::trap_of(slot.call(&mut store, &[Val::I32(1)]));
    assert_eq!(trap.kind, TrapKind::RemovedFunction);
    assert_eq!(crate::names(&trap.frames), vec!["call_slot"]);
    // Re-applying brings it back through the same stale reference.
    apply(
        &mut store,
        inst,
        &bytes_with(&v0, &new, &DiffOptions::default()),
    );
    store.wait_transition().unwrap();
    assert_eq!(crate::i32_of(slot.call(&mut store, &[Val::I32(1)])), 77);
}

/// Rule 6: "a call through a stale reference traps with an error naming the
/// function and the reverted bundle".
///
#[test]
fn stale_funcref_trap_names_the_function_and_the_bundle() {
    let v0 = app(0, 0);
    let new = app_with(
        "(table.set $t (i32.const 1) (ref.func $added)) call $added",
        "i32.const 0",
        "(func $added (result i32) i32.const 77) (elem declare func $added)",
    );
    let (mut store, inst) = setup_host(&v0);
    let p = apply(
        &mut store,
        inst,
        &bytes_with(&v0, &new, &DiffOptions::default()),
    );
    store.wait_transition().unwrap();
    assert_eq!(call(&mut store, inst, "call_f"), 77);
    store.revert(p, None).unwrap();
    store.wait_transition().unwrap();
    let slot = func(&store, inst, "call_slot");
    let trap = crate::trap_of(slot.call(&mut store, &[Val::I32(1)]));
    assert_eq!(trap.kind, TrapKind::RemovedFunction);
    let text = format!("{trap} {trap:?}");
    assert!(text.contains("added"), "does not name the function: {text}");
    assert!(text.contains(&p.to_string()), "does not name {p}: {text}");
}

/// The transcript of apply / revert / reverse / force sequences, word for
/// word (thread ids are known: the only threads are the ones spawned here).
#[test]
fn transcript_wording() {
    let v0 = app(0, 0);
    let (mut store, inst) = setup_host(&v0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let f1 = bytes_with(&v0, &app(1, 0), &DiffOptions::default());
    let mut expect: Vec<String> = Vec::new();

    // Apply, blocked, completes when t leaves f.
    let p1 = apply(&mut store, inst, &f1);
    wake(&mut store, t);
    expect.extend([
        format!("{p1}: started patch"),
        format!("{p1}: {t} blocked by f"),
        format!("{p1}: {t} switched"),
        format!("{p1}: completed patch"),
    ]);
    assert_eq!(transcript(&store), expect);
    // Revert: t is parked outside f, so it switches at once.
    store.revert(p1, None).unwrap();
    store.wait_transition().unwrap();
    expect.extend([
        format!("{p1}: started unpatch"),
        format!("{p1}: {t} switched"),
        format!("{p1}: completed unpatch"),
    ]);
    assert_eq!(transcript(&store), expect);
    // Apply, blocked, reversed.
    store.unpark(t);
    assert_eq!(crate::i32_of(store.join(t)), 0);
    let t = park(&mut store, inst, "park_f", &[Val::I32(1)]);
    let p2 = apply(&mut store, inst, &f1);
    store.reverse().unwrap();
    store.wait_transition().unwrap();
    expect.extend([
        format!("{p2}: started patch"),
        format!("{p2}: {t} blocked by f"),
        format!("{p2}: reversed"),
        format!("{p2}: completed unpatch"),
    ]);
    assert_eq!(transcript(&store), expect);
    // Apply, blocked, forced.
    let p3 = apply(&mut store, inst, &f1);
    store.force().unwrap();
    store.wait_transition().unwrap();
    expect.extend([
        format!("{p3}: started patch"),
        format!("{p3}: {t} blocked by f"),
        format!("{p3}: forced"),
        format!("{p3}: {t} switched"),
        format!("{p3}: completed patch"),
    ]);
    assert_eq!(transcript(&store), expect);
    assert_ne!(p1, p2);
    assert_ne!(p2, p3);
}

/// Parked threads are checked from a frame summary taken when they parked
/// (up to 256 frames) or, deeper, by a full scan of their stack: both must
/// find `f` at any depth, and neither may hold back a thread that only has
/// `g` on its stack.
#[test]
fn parked_threads_are_checked_exactly_at_any_depth() {
    let extra = r#"
      (func $deep (export "deep") (param $n i32) (result i32)
        (if (result i32) (local.get $n)
          (then (call $deep (i32.sub (local.get $n) (i32.const 1))))
          (else (call $f (i32.const 1)))))
      (func $deep_g (export "deep_g") (param $n i32) (result i32)
        (if (result i32) (local.get $n)
          (then (call $deep_g (i32.sub (local.get $n) (i32.const 1))))
          (else (call $g (i32.const 1)))))"#;
    let v0 = app_with("i32.const 0", "i32.const 0", extra);
    let v1 = app_with("i32.const 1", "i32.const 0", extra);
    let (mut store, inst) = setup_host(&v0);
    let in_f: Vec<ThreadId> = [3, 300]
        .iter()
        .map(|&d| park(&mut store, inst, "deep", &[Val::I32(d)]))
        .collect();
    let in_g: Vec<ThreadId> = [3, 300]
        .iter()
        .map(|&d| park(&mut store, inst, "deep_g", &[Val::I32(d)]))
        .collect();
    let p = apply(
        &mut store,
        inst,
        &bytes_with(&v0, &v1, &DiffOptions::default()),
    );
    let mut blocked: Vec<ThreadId> = store.blockers().iter().map(|b| b.thread).collect();
    blocked.sort();
    assert_eq!(blocked, in_f, "exactly the threads inside f are blocked");
    for id in &in_g {
        assert_eq!(
            store.thread_patch_state(*id),
            Some(wasm_patch_runtime::ThreadPatchState::Patched),
            "thread {id:?} (only g on its stack) switched at once"
        );
    }
    for id in in_f {
        wake(&mut store, id);
    }
    let out = store.wait_transition().unwrap();
    assert_eq!(out.patch, p);
    assert!(!out.reversed);
}

/// Thousands of runnable threads are checked on several OS threads at once
/// (when the machine has several cores): the result must be the same exact
/// split between threads inside the changed function and the others, and
/// the blocked ones must switch at their next clean poll.
#[test]
fn thousands_of_runnable_threads_are_checked_exactly() {
    const EACH: usize = 2600; // 5200 runnable threads: above the parallel threshold
    let app = |v: i32| {
        format!(
            r#"(module
              (import "wasm-patch" "yield" (func $yield))
              (func $f (result i32) call $yield i32.const {v})
              (func (export "in_f") (loop $l (drop (call $f)) (br $l)))
              (func (export "outside") (loop $l (call $yield) (br $l))))"#
        )
    };
    let (v0, v1) = (app(0), app(1));
    let engine = Engine::new(wasm_patch_runtime::Config {
        stack_size: 128 << 10,
        guard_pages: false,
        ..Default::default()
    })
    .unwrap();
    let (mut store, inst) = setup_host_with(engine, &v0);
    let (in_f, outside) = (
        inst.get_func(&store, "in_f").unwrap(),
        inst.get_func(&store, "outside").unwrap(),
    );
    let mut all = Vec::new();
    for i in 0..2 * EACH {
        all.push(
            store
                .spawn(if i % 2 == 0 { in_f } else { outside }, &[])
                .unwrap(),
        );
    }
    // Every thread runs once, into its first yield. (The ticker may preempt
    // a thread at its loop header before it enters `f`: which threads are
    // inside `f` is read from their backtraces.)
    assert_eq!(store.run_steps(2 * EACH), 2 * EACH);
    let (inside, others): (Vec<ThreadId>, Vec<ThreadId>) = all
        .iter()
        .partition(|&&id| crate::names(&store.backtrace(id).unwrap()).contains(&"f"));
    assert!(
        inside.len() > EACH / 2,
        "most `in_f` threads are inside `f`"
    );
    let p = store
        .apply(
            inst,
            &bytes_with(&v0, &v1, &DiffOptions::default()),
            &ApplyOptions::default(),
        )
        .unwrap();
    let mut blocked: Vec<ThreadId> = store.blockers().iter().map(|b| b.thread).collect();
    blocked.sort();
    assert!(
        blocked == inside,
        "{} threads blocked, {} inside f; first difference: {:?}",
        blocked.len(),
        inside.len(),
        blocked.iter().zip(&inside).find(|(a, b)| a != b)
    );
    for id in &others {
        assert_eq!(
            store.thread_patch_state(*id),
            Some(wasm_patch_runtime::ThreadPatchState::Patched)
        );
    }
    let out = store.wait_transition().unwrap();
    assert_eq!((out.patch, out.reversed), (p, false));
}

/// `main` waits inside `inside` (in `yield`, then in a polling loop), then
/// spins calling `target`
/// until it returns non-zero, and returns how many loop turns that took
/// (0 when it gave up after 10 million). With `memory`, polls read the
/// memory's poll hint instead of the thread's poll word.
fn spin_until_patched(v: i32, memory: bool) -> String {
    let memory = if memory { "(memory 1)" } else { "" };
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          {memory}
          (func $target (result i32) i32.const {v})
          (global $k (mut i32) (i32.const 1000))
          (func $inside (local $i i32)
            (call $yield)
            ;; Polls while still blocked here: each re-requests the check.
            (local.set $i (global.get $k))
            (loop $spin
              (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
            (drop (i32.const {v})))
          (func (export "main") (result i32) (local $n i32)
            (call $inside)
            (loop $l
              (local.set $n (i32.add (local.get $n) (i32.const 1)))
              (if (i32.ge_u (local.get $n) (i32.const 10000000))
                (then (return (i32.const 0))))
              (br_if $l (i32.eqz (call $target))))
            (local.get $n)))"#
    )
}

/// Rule 2: a running thread switches at its next poll where its stack is
/// clean, with no help from preemption (the time slice here is an hour).
/// The thread was blocked (inside `inside`) while suspended; the scheduler
/// resumes it with the switch request pending, its polls inside `inside`
/// find it still blocked and request the check again, and its first loop
/// poll after leaving `inside` must switch it, whether polls read the
/// thread's poll word (no memory) or the memory's poll hint, which the
/// scheduler must arm when it resumes a thread with a request and the slow
/// path must re-arm with each new request.
#[test]
fn a_blocked_thread_switches_at_its_first_clean_poll() {
    for memory in [false, true] {
        let engine = Engine::new(Config {
            time_slice: std::time::Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap();
        let (mut store, inst) = setup_host_with(engine, &spin_until_patched(0, memory));
        let main = func(&store, inst, "main");
        let t = store.spawn(main, &[]).unwrap();
        assert_eq!(store.run_steps(1), 1, "main runs into its yield");
        let bytes = bundle(
            &spin_until_patched(0, memory),
            &spin_until_patched(1, memory),
            &[],
        );
        apply(&mut store, inst, &bytes);
        let st = store.transition_status().expect("in transition");
        assert_eq!(st.pending, 1, "memory {memory}: blocked inside `inside`");
        store.run().unwrap();
        assert_eq!(
            store.take_result(t).unwrap(),
            vec![Val::I32(1)],
            "memory {memory}: the first loop poll switches the thread"
        );
        assert!(store.transition_status().is_none());
    }
}
