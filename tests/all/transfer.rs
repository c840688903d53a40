//! Frame transfer at loop headers (issue 14, `docs/transfer.md`,
//! docs/consistency.md rule 17): WAT pairs whose worker never leaves its
//! loop, patched with and without a transfer map.

use crate::transitions::{apply, func, host_linker, setup_host_with, Host};
use patch_format::transfer::Transfers;
use patch_format::{diff, DiffOptions};
use wasm_patch_runtime::*;

/// A worker that loops until `stop` is called: each turn adds `k` to
/// `$acc`, counts in `$i` and yields (inside `$helper`, which has a loop of
/// its own); it returns `$acc` and records `$i`. `decl` declares the two
/// locals (their order is the local numbering); `swap` puts the two
/// updates in the other order.
fn worker_with(k: i32, decl: &str, swap: bool, prologue: i32, other_k: i32) -> String {
    let acc = format!("(local.set $acc (i32.add (local.get $acc) (i32.const {k})))");
    let i = "(local.set $i (i32.add (local.get $i) (i32.const 1)))";
    let updates = if swap {
        format!("{i} {acc}")
    } else {
        format!("{acc} {i}")
    };
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (import "env" "record" (func $record (param i32)))
          (global $sp (mut i32) (i32.const 4096))
          (global $stop (mut i32) (i32.const 0))
          (func $helper (local $j i32)
            (loop $h
              (call $yield)
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $h (i32.lt_u (local.get $j) (i32.const 2)))))
          (func $worker (export "worker") (result i32) {decl} (local $fp i32)
            (local.set $fp (i32.sub (global.get $sp) (i32.const {prologue})))
            (global.set $sp (local.get $fp))
            (loop $l
              {updates}
              (call $helper)
              (br_if $l (i32.eqz (global.get $stop))))
            (global.set $sp (i32.add (local.get $fp) (i32.const {prologue})))
            (call $record (local.get $i))
            (local.get $acc))
          (func $other (export "other") (result i32) (local $n i32)
            (loop $o
              (call $yield)
              (local.set $n (i32.add (local.get $n) (i32.const {other_k})))
              (br_if $o (i32.eqz (global.get $stop))))
            (local.get $n))
          (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

fn worker(k: i32, decl: &str) -> String {
    worker_with(k, decl, false, 16, 1)
}

/// [`worker`] in a module with a memory: its polls read the memory's poll
/// hint instead of the thread's poll word.
fn worker_mem(k: i32, decl: &str) -> String {
    worker(k, decl).replacen("(global $sp", "(memory 1) (global $sp", 1)
}

const I_ACC: &str = "(local $i i32) (local $acc i32)";
const ACC_I: &str = "(local $acc i32) (local $i i32)";

pub(crate) fn transfer_opts(names: &[&str]) -> DiffOptions {
    DiffOptions {
        transfer: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub(crate) fn bundle(old: &str, new: &str, opts: &DiffOptions) -> patch_format::Bundle {
    let (o, n) = (wat::parse_str(old).unwrap(), wat::parse_str(new).unwrap());
    diff(&o, &n, opts).expect("diff").bundle
}

/// Index of `worker` in the test modules (two imports, then `helper`).
const WORKER: u32 = 3;

/// An engine that compiles transfer polls (`Config::frame_transfer`).
pub(crate) fn engine() -> Engine {
    Engine::new(Config {
        frame_transfer: true,
        ..Default::default()
    })
    .unwrap()
}

fn setup_host(src: &str) -> (Store<Host>, Instance) {
    setup_host_with(engine(), src)
}

/// Spawn `n` workers and run a few turns.
pub(crate) fn start(old: &str, n: usize) -> (Store<Host>, Instance, Vec<ThreadId>) {
    let (mut store, inst) = setup_host(old);
    let ts = (0..n)
        .map(|_| store.spawn(func(&store, inst, "worker"), &[]).unwrap())
        .collect();
    store.run_steps(3 * n);
    (store, inst, ts)
}

/// Stop the workers; each one's (acc, turns).
pub(crate) fn finish(store: &mut Store<Host>, inst: Instance, ts: &[ThreadId]) -> Vec<(i32, i32)> {
    func(store, inst, "stop").call(store, &[]).unwrap();
    let accs: Vec<i32> = ts.iter().map(|&t| crate::i32_of(store.join(t))).collect();
    let by = &store.data().rec_by;
    assert_eq!(by.len(), ts.len());
    // Workers finish in any order (a preemption tick can reorder them):
    // pair each one's result with the turns it recorded itself.
    ts.iter()
        .zip(accs)
        .map(|(t, acc)| {
            let turns = by.iter().find(|(id, _)| id == t).expect("its turns").1;
            (acc, turns)
        })
        .collect()
}

/// Run `worker` for a few turns, apply `bytes`, run a few more turns, stop
/// it; returns (its result, the turns it counted, whether the transition
/// was over before `stop`).
fn run_patched(old: &str, bytes: &[u8]) -> (i32, i32, bool) {
    let (mut store, inst, ts) = start(old, 1);
    apply(&mut store, inst, bytes);
    // Parked at a yield inside `helper`, a callee of the loop: it waits.
    let st = store
        .transition_status()
        .expect("the worker is not at a header");
    assert_eq!((st.pending, st.blockers[0].frame.func_index), (1, WORKER));
    assert_eq!(st.blockers[0].backtrace[0].name, "helper");
    store.run_steps(6);
    let done = store.transition_status().is_none();
    let r = finish(&mut store, inst, &ts);
    (r[0].0, r[0].1, done)
}

/// What an old turn adds to `$acc` (a new one adds 1000): not 1, so that
/// `$acc` and `$i` never hold the same value and a mix-up shows.
const OLD_K: i32 = 7;

/// Old turns add `OLD_K`, new turns 1000: `acc` splits into both counts,
/// which must add up to the turns `$i` counted (the state crossed intact).
#[track_caller]
fn split(acc: i32) -> (i32, i32) {
    assert_eq!(acc % 1000 % OLD_K, 0, "acc {acc} is no sum of turns");
    (acc % 1000 / OLD_K, acc / 1000)
}

#[track_caller]
fn assert_carried(acc: i32, turns: i32) {
    let (before, after) = split(acc);
    assert!(
        before >= 1 && after >= 1,
        "acc {acc}: turns of both versions"
    );
    assert_eq!(before + after, turns, "acc {acc}, turns {turns}");
}

/// The transfer happens: a worker that never leaves its loop switches at
/// its loop header (after waiting inside `helper`, a callee of the loop,
/// which is not a header of the mapped function), and its locals cross.
#[test]
fn same_roles_transfer_and_carry_the_state() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, I_ACC));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.locals, vec![0, 1, 2]);
    assert_eq!(map.headers, vec![(0, 0)]);
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(done, "the worker switched without leaving its loop");
    assert_carried(acc, turns);
}

/// The same with a memory (polls read the memory's poll hint).
#[test]
fn transfer_with_memory_poll_hints() {
    let (old, new) = (worker_mem(OLD_K, I_ACC), worker_mem(1000, ACC_I));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(done);
    assert_carried(acc, turns);
}

/// Instances of one module share its code, so a worker of another instance
/// counts as a frame of `worker` (it delays the transition, rule "frame
/// set"), but its frame never moves: only the patched instance's does.
#[test]
fn only_the_patched_instances_frames_move() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, I_ACC));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let engine = engine();
    let module = Module::new(&engine, &old).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let a = host_linker(store.engine())
        .instantiate(&mut store, &module)
        .unwrap();
    let other = host_linker(store.engine())
        .instantiate(&mut store, &module)
        .unwrap();
    let ta = store.spawn(func(&store, a, "worker"), &[]).unwrap();
    let tb = store.spawn(func(&store, other, "worker"), &[]).unwrap();
    store.run_steps(6);
    apply(&mut store, a, &b.to_bytes());
    store.run_steps(12);
    let st = store
        .transition_status()
        .expect("the other instance's worker delays it");
    assert_eq!((st.pending, st.switched), (1, 1));
    let lb = store
        .loop_block(&st.blockers[0])
        .expect("blocked in a loop");
    assert!(lb.mapped, "{lb}");
    // Status says why it never moves (the scan alone cannot tell).
    assert!(
        lb.stuck
            .as_deref()
            .is_some_and(|w| w.contains("another instance")),
        "{lb}"
    );
    func(&store, a, "stop").call(&mut store, &[]).unwrap();
    func(&store, other, "stop").call(&mut store, &[]).unwrap();
    let (acc_a, acc_b) = (crate::i32_of(store.join(ta)), crate::i32_of(store.join(tb)));
    assert!(
        split(acc_a).1 >= 1,
        "acc {acc_a}: the patched instance's worker moved"
    );
    assert_eq!(
        split(acc_b).1,
        0,
        "acc {acc_b}: the other one ran only old code"
    );
}

/// Code compiled without `Config::frame_transfer` has no transfer polls:
/// even with a map, its worker waits (the default costs nothing).
#[test]
fn without_frame_transfer_compiled_in_the_worker_waits() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, I_ACC));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let (mut store, inst) = setup_host_with(Engine::default(), &old);
    let t = store.spawn(func(&store, inst, "worker"), &[]).unwrap();
    store.run_steps(3);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    let status = store.transition_status().unwrap();
    assert_eq!(status.pending, 1);
    // Nobody is told it will move: the applied bundle and the blocker
    // both say the map is unused here, and why.
    let why = store.applied()[0].transfers[0].never_moves.clone();
    assert!(
        why.as_deref().is_some_and(|w| w.contains("frame_transfer")),
        "{why:?}"
    );
    let lb = store
        .loop_block(&status.blockers[0])
        .expect("blocked in its loop");
    assert!(lb.mapped);
    assert_eq!(lb.stuck, why, "{lb}");
    assert!(
        !lb.to_string().contains("moves at its next loop header"),
        "{lb}"
    );
    let r = finish(&mut store, inst, &[t]);
    assert_eq!(split(r[0].0), (r[0].1, 0), "every turn ran the old code");
}

/// Without a map the worker blocks the transition for as long as it lives
/// in its loop (the behaviour before issue 14).
#[test]
fn without_a_map_the_worker_blocks_the_transition() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, I_ACC));
    let b = bundle(&old, &new, &DiffOptions::default());
    assert!(b.transfers().is_empty());
    // Status says why, and what would help (issue 14, item 5).
    let (mut store, inst, ts) = start(&old, 1);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    let blockers = store.blockers();
    let lb = store.loop_block(&blockers[0]).expect("blocked in a loop");
    assert_eq!((lb.function.as_str(), lb.mapped), ("worker", false));
    assert!(lb
        .to_string()
        .contains("a transfer map would help (diff --transfer worker)"));
    drop(finish(&mut store, inst, &ts));
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(!done, "blocked while the worker lives in its loop");
    assert_eq!(split(acc), (turns, 0), "every turn ran the old code");
}

/// Renumbered locals (two same-typed locals swap numbers): mapped by role,
/// not by index, and the state crosses to the right locals.
#[test]
fn renumbered_locals_map_by_role() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, ACC_I));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.locals, vec![1, 0, 2], "new $acc (0) takes old $acc (1)");
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(done);
    assert_carried(acc, turns);
}

/// Two same-typed locals whose updates trade places: the aligned loop
/// bodies line up each local's write with the other's, but the values
/// written differ (`+ 7` against `+ 1`), so that is no evidence; the reads
/// after the loop pair each with its own role. Never crossed: mapped by
/// role (here that is by index too), and both values cross intact.
#[test]
fn locals_whose_updates_trade_places_map_by_role() {
    let (old, new) = (worker(OLD_K, I_ACC), worker_with(1000, I_ACC, true, 16, 1));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.locals, vec![0, 1, 2], "{:?}", b.transfers());
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(done);
    assert_carried(acc, turns);
}

/// LLVM reuses a local for another value once the first is dead: here the
/// new build copies `$i` into `$fp`'s slot after the loop (after the
/// epilogue's last read of `$fp`). The whole-body pairing of operators
/// saw old `$i` line up with both new `$i` and `$fp` and refused; the
/// dataflow evidence looks only at the life of each value at the header
/// (`$fp`'s frame pointer ends at the epilogue, the copy is another value)
/// and maps every local to its own role, so the state crosses intact.
#[test]
fn a_local_reused_after_the_loop_still_maps_by_role() {
    let old = worker(OLD_K, I_ACC);
    let new = worker(1000, I_ACC).replacen(
        "(call $record (local.get $i))",
        "(local.set $fp (local.get $i)) (call $record (local.get $fp))",
        1,
    );
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.locals, vec![0, 1, 2], "{:?}", b.transfers());
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(done);
    assert_carried(acc, turns);
}

/// A different linear-memory frame size set before the loop (the Rust/C
/// `__stack_pointer` prologue): the code from the entry to the header
/// differs, so the header is not mapped.
#[test]
fn a_changed_prologue_is_refused() {
    let (old, new) = (worker(OLD_K, I_ACC), worker_with(1000, I_ACC, false, 32, 1));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    assert!(b.transfers().map(WORKER).is_none());
    let r = &b.transfers().refused[0];
    assert!(r.reason.contains("from the function entry"), "{}", r.reason);
    // And the bundle still works the old way: the worker blocks.
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(!done);
    assert_eq!(split(acc), (turns, 0));
}

fn leb(mut v: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Replace the bundle's transfer section by `t`'s encoding.
pub(crate) fn with_transfers(b: &patch_format::Bundle, t: &Transfers) -> Vec<u8> {
    let bytes = b.to_bytes();
    let mut out = bytes[..8].to_vec();
    for p in wasmparser::Parser::new(0).parse_all(&bytes) {
        let p = p.unwrap();
        if let wasmparser::Payload::CustomSection(c) = &p {
            if c.name() == patch_format::transfer::TRANSFER_SECTION {
                continue;
            }
        }
        if let Some((id, range)) = p.as_section() {
            let range = range.start as usize..range.end as usize;
            out.push(id);
            leb(range.len(), &mut out);
            out.extend_from_slice(&bytes[range]);
        }
    }
    let name = patch_format::transfer::TRANSFER_SECTION.as_bytes();
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend(t.encode());
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend(payload);
    out
}

/// A change made to a bundle's transfer maps.
type Edit = Box<dyn Fn(&mut Transfers)>;

/// Bad maps are refused at apply, clearly, and nothing changes: a header
/// that does not exist, local types that are not the live code's, a local
/// carried twice.
#[test]
fn bad_maps_are_refused_at_apply() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, I_ACC));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let good = b.transfers().clone();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "does not exist",
            Box::new(|t| t.maps[0].headers = vec![(0, 5)]),
        ),
        (
            "does not exist",
            Box::new(|t| t.maps[0].headers = vec![(7, 0)]),
        ),
        (
            "old local types",
            Box::new(|t| t.maps[0].old_locals[1] = ValType::I64),
        ),
        ("twice", Box::new(|t| t.maps[0].locals = vec![0, 0, 2])),
        (
            "starts fresh but may be read",
            Box::new(|t| t.maps[0].locals[1] = patch_format::transfer::FRESH),
        ),
        ("does not replace", Box::new(|t| t.maps[0].func = 2)),
    ];
    for (want, edit) in cases {
        let mut t = good.clone();
        edit(&mut t);
        let bytes = with_transfers(&b, &t);
        let (mut store, inst, ts) = start(&old, 1);
        let err = store
            .apply(inst, &bytes, &ApplyOptions::default())
            .expect_err("a bad map is refused");
        let msg = err.to_string();
        assert!(msg.contains("transfer map") && msg.contains(want), "{msg}");
        assert!(store.transition_status().is_none(), "nothing started");
        assert!(store.applied().is_empty(), "nothing applied");
        let r = finish(&mut store, inst, &ts);
        assert_eq!(split(r[0].0), (r[0].1, 0), "the old code ran on");
    }
    // The untouched map, spliced the same way, applies.
    let (mut store, inst, _) = start(&old, 1);
    store
        .apply(inst, &with_transfers(&b, &good), &ApplyOptions::default())
        .expect("the diff's own map applies");
}

/// Transfer polls spill only the locals live at their header (a dead
/// one's slot holds zero), so a map may not give a local the new code
/// reads at the header the value of an old local the old code does not
/// keep there: refused at apply. Here old `$t` is written first thing in
/// each turn (dead at the header), new `$t` counts across turns (live).
#[test]
fn a_map_that_takes_a_local_dead_at_the_old_header_is_refused() {
    let old = with_extra_local(&worker(OLD_K, I_ACC), "(local.set $t (i32.const 9))");
    let new = with_extra_local(
        &worker(1000, I_ACC),
        "(local.set $t (i32.add (local.get $t) (i32.const 1)))",
    );
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    assert!(b.transfers().map(WORKER).is_none(), "diff gives no map");
    let t = Transfers {
        maps: vec![patch_format::transfer::TransferMap {
            func: WORKER,
            old_locals: vec![ValType::I32; 4],
            new_locals: vec![ValType::I32; 4],
            locals: vec![0, 1, 2, 3],
            headers: vec![(0, 0)],
            params: vec![Vec::new()],
        }],
        refused: Vec::new(),
    };
    let (mut store, inst, ts) = start(&old, 1);
    let err = store
        .apply(inst, &with_transfers(&b, &t), &ApplyOptions::default())
        .expect_err("the map is refused");
    let msg = err.to_string();
    assert!(msg.contains("dead at loop 0"), "{msg}");
    assert!(store.applied().is_empty(), "nothing applied");
    let r = finish(&mut store, inst, &ts);
    assert_eq!(split(r[0].0), (r[0].1, 0), "the old code ran on");
}

/// Two workers in the loop and a thread outside it: all switch, the
/// transition completes, and both workers carried their state.
#[test]
fn two_workers_in_the_loop_and_one_outside() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, ACC_I));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let (mut store, inst, ts) = start(&old, 2);
    let other = store.spawn(func(&store, inst, "other"), &[]).unwrap();
    store.run_steps(6);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(20);
    assert!(store.transition_status().is_none(), "all three switched");
    for (acc, turns) in finish(&mut store, inst, &ts) {
        assert_carried(acc, turns);
    }
    assert!(crate::i32_of(store.join(other)) > 0);
}

/// Revert after a transfer: the map back (derived at apply from the
/// forward map, docs/transfer.md "Maps back") moves the transferred frame
/// into the target's own code at its next header, so the revert completes
/// while the worker lives on in its loop, with its state intact; applied
/// again, the frame moves forward again, from the code it was moved back
/// into. (Before maps back, the revert waited for ever.)
#[test]
fn revert_after_a_transfer_maps_the_frame_back() {
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, ACC_I));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let (mut store, inst, ts) = start(&old, 1);
    let p = apply(&mut store, inst, &b.to_bytes());
    let t = &store.applied()[0].transfers;
    assert_eq!((t.len(), &t[0].no_way_back), (1, &None), "{t:?}");
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred");
    store.revert(p, None).expect("revert starts");
    store.run_steps(6);
    assert!(
        store.transition_status().is_none(),
        "the revert completed while the worker lives in its loop: {:?}",
        store.transition_status().map(|s| s.blockers)
    );
    assert!(store.applied().is_empty());
    assert!(store.last_transition().is_some_and(|o| !o.reversed));
    // Applied again: the frame moves forward from the code it came back to.
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred again");
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);
}

/// A reversed apply: a worker that already transferred runs the new code;
/// the reverse moves it back through the map back at its next header. (The
/// bundle also changes `other`, without a map, so that its thread keeps the
/// apply from completing until the reverse.)
#[test]
fn reverse_after_a_transfer_moves_the_worker_back() {
    let old = worker(OLD_K, I_ACC);
    let new = worker_with(1000, ACC_I, false, 16, 2);
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let (mut store, inst, ts) = start(&old, 1);
    let other = store.spawn(func(&store, inst, "other"), &[]).unwrap();
    store.run_steps(4);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(8);
    let st = store.transition_status().expect("`other` blocks the apply");
    assert_eq!((st.pending, st.switched), (1, 1), "the worker transferred");
    store.reverse().expect("reverse");
    store.run_steps(8);
    assert!(
        store.transition_status().is_none(),
        "the reverse completed while the worker lives in its loop: {:?}",
        store.transition_status().map(|s| s.blockers)
    );
    assert!(
        store.applied().is_empty(),
        "a reversed apply leaves nothing"
    );
    assert!(store.last_transition().is_some_and(|o| o.reversed));
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);
    assert!(crate::i32_of(store.join(other)) > 0);
}

/// A reversed revert: the revert moves the worker back into the old code
/// (a thread in `other`, changed without a map, keeps the revert from
/// completing), then the reverse moves it forward again, from the OSR
/// entry of the map back it runs in.
#[test]
fn a_reversed_revert_moves_the_worker_forward_again() {
    let old = worker(OLD_K, I_ACC);
    let new = worker_with(1000, ACC_I, false, 16, 2);
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let (mut store, inst, ts) = start(&old, 1);
    let p = apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred");
    let other = store.spawn(func(&store, inst, "other"), &[]).unwrap();
    store.run_steps(4);
    store.revert(p, None).expect("revert starts");
    store.run_steps(8);
    let st = store
        .transition_status()
        .expect("`other` blocks the revert");
    assert_eq!((st.pending, st.switched), (1, 1), "the worker moved back");
    store.reverse().expect("reverse");
    store.run_steps(8);
    assert!(
        store.transition_status().is_none(),
        "the worker moved forward again: {:?}",
        store.transition_status().map(|s| s.blockers)
    );
    assert!(store.last_transition().is_some_and(|o| o.reversed));
    assert_eq!(store.applied().len(), 1, "the bundle stays");
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);
    assert!(crate::i32_of(store.join(other)) > 0);
}

/// A map back that cannot be made: the old build keeps a count in `$t`
/// (read at its header) that the new build dropped, so nothing in a new
/// frame can give it its value. The forward map is fine and the worker
/// moves; the revert leaves it pending, status says why, and the revert
/// completes once the worker leaves its loop.
#[test]
fn no_map_back_when_the_old_code_reads_a_dropped_local() {
    let old = with_extra_local(
        &worker(OLD_K, I_ACC),
        "(local.set $t (i32.add (local.get $t) (i32.const 1)))",
    );
    let b = bundle(&old, &worker(1000, I_ACC), &transfer_opts(&["worker"]));
    let locals = b.transfers().map(WORKER).map(|m| m.locals.clone());
    assert_eq!(locals, Some(vec![0, 1, 2]), "{:?}", b.transfers());
    let (mut store, inst, ts) = start(&old, 1);
    let p = apply(&mut store, inst, &b.to_bytes());
    // Said at apply, before anyone tries a revert.
    let t = &store.applied()[0].transfers;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].function, "worker");
    assert!(
        t[0].no_way_back
            .as_deref()
            .is_some_and(|w| w.contains("old local 3")),
        "{t:?}"
    );
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred forward");
    store.revert(p, None).expect("revert starts");
    store.run_steps(8);
    let st = store.transition_status().expect("the revert waits");
    // The blocker carries the same answer.
    assert_eq!(st.blockers[0].in_loop, store.loop_block(&st.blockers[0]));
    assert_eq!(st.pending, 1);
    let lb = store
        .loop_block(&st.blockers[0])
        .expect("blocked in a loop");
    let why = lb.stuck.clone().unwrap_or_default();
    assert!(
        lb.mapped && why.contains("no map back") && why.contains("old local 3"),
        "{lb}"
    );
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);
    store.run().unwrap();
    assert!(store.transition_status().is_none(), "the revert completed");
    assert!(store.applied().is_empty());
}

/// Stacked bundles: maps lead from and to the target's own code only.
/// - Bundle 1 changes `other` only; bundle 2, on top, changes `worker`
///   with a map: bundle 2's revert maps the worker back (the world it
///   returns to runs the target's own `worker`).
/// - Bundle 1 changes `worker` with a map (the worker moves into it);
///   bundle 2 changes `worker` again, its map made against the target's
///   code: the worker, running bundle 1's version, does not move (maps do
///   not chain), status says so, and a reverse of bundle 2 completes.
#[test]
fn stacked_bundles_map_back_only_to_the_targets_own_code() {
    let old = worker(OLD_K, I_ACC);
    let only_other = bundle(
        &old,
        &worker_with(OLD_K, I_ACC, false, 16, 2),
        &transfer_opts(&[]),
    );
    let both = worker_with(1000, ACC_I, false, 16, 2);
    let b2 = bundle(&old, &both, &transfer_opts(&["worker"]));
    let (mut store, inst, ts) = start(&old, 1);
    apply(&mut store, inst, &only_other.to_bytes());
    store.run_steps(4);
    assert!(store.transition_status().is_none(), "bundle 1 applied");
    let p2 = apply(&mut store, inst, &b2.to_bytes());
    store.run_steps(6);
    assert!(
        store.transition_status().is_none(),
        "bundle 2 moved the worker"
    );
    store.revert(p2, None).expect("revert of bundle 2");
    store.run_steps(6);
    assert!(
        store.transition_status().is_none(),
        "bundle 2's revert mapped the worker back: {:?}",
        store.transition_status().map(|s| s.blockers)
    );
    assert_eq!(store.applied().len(), 1, "bundle 1 stays");
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);

    // Maps do not chain.
    let v2 = worker(2000, I_ACC);
    let b1 = bundle(&old, &worker(1000, ACC_I), &transfer_opts(&["worker"]));
    let b2 = bundle(&old, &v2, &transfer_opts(&["worker"]));
    let (mut store, inst, ts) = start(&old, 1);
    apply(&mut store, inst, &b1.to_bytes());
    store.run_steps(6);
    assert!(
        store.transition_status().is_none(),
        "bundle 1 moved the worker"
    );
    apply(&mut store, inst, &b2.to_bytes());
    store.run_steps(8);
    let st = store.transition_status().expect("bundle 2 waits");
    assert_eq!(st.pending, 1);
    let lb = store
        .loop_block(&st.blockers[0])
        .expect("blocked in a loop");
    let why = lb.stuck.clone().unwrap_or_default();
    assert!(why.contains("maps do not chain"), "{lb}");
    store.reverse().expect("reverse");
    store.run_steps(4);
    assert!(store.transition_status().is_none(), "the reverse completed");
    let r = finish(&mut store, inst, &ts);
    let (acc, turns) = r[0];
    assert_eq!(acc % 1000 % OLD_K, 0, "acc {acc}");
    assert_eq!(
        acc % 1000 / OLD_K + acc / 1000,
        turns,
        "acc {acc}, turns {turns}"
    );
}

/// Two never-ending loops on one stack: `$g` loops calling `$f`, which
/// loops and yields; both change, both are mapped. Only the innermost
/// frame can move (docs/transfer.md, "Several frames on one stack"): the
/// thread stays pending with `$f` at its header and `$g` below at a call,
/// and status says that `$g` blocks too. It switches once both loops end.
fn nested(k: i32) -> String {
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (global $stop (mut i32) (i32.const 0))
          (func $f (result i32) (local $n i32)
            (loop $l
              (call $yield)
              (local.set $n (i32.add (local.get $n) (i32.const {k})))
              (br_if $l (i32.eqz (global.get $stop))))
            (local.get $n))
          (func $g (export "g") (result i32) (local $acc i32)
            (loop $l
              (local.set $acc (i32.add (local.get $acc) (call $f)))
              (local.set $acc (i32.add (local.get $acc) (i32.const {k})))
              (br_if $l (i32.eqz (global.get $stop))))
            (local.get $acc))
          (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

#[test]
fn only_the_innermost_of_two_mapped_loop_frames_moves() {
    let (old, new) = (nested(OLD_K), nested(1000));
    let b = bundle(&old, &new, &transfer_opts(&["f", "g"]));
    assert_eq!(b.transfers().maps.len(), 2, "{:?}", b.transfers());
    let (mut store, inst) = setup_host(&old);
    let t = store.spawn(func(&store, inst, "g"), &[]).unwrap();
    store.run_steps(3);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(8);
    let st = store.transition_status().expect("the thread waits");
    assert_eq!(st.pending, 1);
    assert_eq!(st.blockers[0].frame.name, "f");
    let lb = store
        .loop_block(&st.blockers[0])
        .expect("blocked in a loop");
    let why = lb.stuck.clone().unwrap_or_default();
    assert!(
        why.contains("blocked by g too") && why.contains("only the innermost frame transfers"),
        "{lb}"
    );
    func(&store, inst, "stop").call(&mut store, &[]).unwrap();
    let acc = crate::i32_of(store.join(t));
    assert_eq!(acc % OLD_K, 0, "old code only: {acc}");
    store.run().unwrap();
    assert!(
        store.transition_status().is_none(),
        "completed once the loops ended"
    );
}

/// [`worker`] with a `v128` local `$v` that each turn adds `(k, 0, 0, k)`
/// to: its first and last lanes must equal `$acc` when the worker stops
/// (it traps otherwise), so both halves of the vector must cross.
fn simd_worker(k: i32, decl: &str) -> String {
    let check = "(call $record (local.get $i))
            (if (i32.or
                  (i32.ne (i32x4.extract_lane 0 (local.get $v)) (local.get $acc))
                  (i32.ne (i32x4.extract_lane 3 (local.get $v)) (local.get $acc)))
              (then unreachable))";
    worker(k, decl)
        .replacen("(local $fp i32)", "(local $fp i32) (local $v v128)", 1)
        .replacen(
            "(call $helper)",
            &format!(
                "(local.set $v (i32x4.add (local.get $v) (v128.const i32x4 {k} 0 0 {k}))) (call $helper)"
            ),
            1,
        )
        .replacen("(call $record (local.get $i))", check, 1)
}

/// A frame with a `v128` local moves forward and back (16-byte slots in
/// the spill area and the buffer), the vector intact.
#[test]
fn a_v128_local_crosses_both_ways() {
    let (old, new) = (simd_worker(OLD_K, I_ACC), simd_worker(1000, ACC_I));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER);
    let map = map.unwrap_or_else(|| panic!("no map: {:?}", b.transfers()));
    assert_eq!(map.locals, vec![1, 0, 2, 3]);
    let (mut store, inst, ts) = start(&old, 1);
    let p = apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred");
    store.revert(p, None).expect("revert starts");
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "mapped back");
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);
}

/// A worker whose loop carries its sum as a loop parameter (`loop (param
/// i32)`), not in a local.
fn loop_param_worker(k: i32) -> String {
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (import "env" "record" (func $record (param i32)))
          (global $stop (mut i32) (i32.const 0))
          (func $worker (export "worker") (result i32) (local $i i32)
            (i32.const 0)
            (loop $l (param i32) (result i32)
              (i32.const {k})
              (i32.add)
              (call $yield)
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.eqz (global.get $stop))))
            (call $record (local.get $i)))
          (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

/// A loop parameter is carried only with evidence of its role
/// (docs/transfer.md, "Loop parameters"): here the code that consumes it
/// (`i32.const k; i32.add`) is what changed, and the back edge passes a
/// value computed before a call, so nothing shows what it is; diff refuses
/// the header and says why; the bundle applies without a map and the
/// worker waits, as without `--transfer`. (Before loop parameters were
/// carried, the reason was "it takes 1 loop parameter(s)".)
#[test]
fn a_loop_with_parameters_is_refused_with_its_reason() {
    let (old, new) = (loop_param_worker(OLD_K), loop_param_worker(1000));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let t = b.transfers();
    assert!(t.maps.is_empty(), "{t:?}");
    assert!(
        t.refused[0]
            .reason
            .contains("loop 0: no aligned code consumes new loop parameter 0"),
        "{t:?}"
    );
    let (mut store, inst, ts) = start(&old, 1);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert_eq!(store.transition_status().map(|s| s.pending), Some(1));
    let r = finish(&mut store, inst, &ts);
    assert_eq!(split(r[0].0), (r[0].1, 0), "the old code ran on");
}

/// The command line: `diff --transfer NAME` writes the map and says so,
/// `inspect` (text and JSON) shows it, and a name that no replaced
/// function has is refused.
#[test]
fn diff_and_inspect_show_the_map() {
    let bin = env!("CARGO_BIN_EXE_wasm-patch");
    let d = std::env::temp_dir().join(format!("wp-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let (old, new, out) = (d.join("old.wat"), d.join("new.wat"), d.join("b.wpb"));
    std::fs::write(&old, worker(OLD_K, I_ACC)).unwrap();
    std::fs::write(&new, worker(1000, ACC_I)).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&[
        "diff".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--transfer".as_ref(),
        "worker".as_ref(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("transfer     1 map(s), 0 refused"),
        "{stdout}"
    );
    assert!(
        stdout.contains("map      worker  loop headers 0→0; 3 locals, renumbered 0←1 1←0"),
        "{stdout}"
    );
    let (ok, text, _) = run(&["inspect".as_ref(), out.as_os_str()]);
    assert!(ok && text.contains("map      worker"), "{text}");
    let (ok, json, _) = run(&["inspect".as_ref(), out.as_os_str(), "--json".as_ref()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["transfer"]["maps"][0]["name"], "worker");
    assert_eq!(
        v["transfer"]["maps"][0]["locals"],
        serde_json::json!([1, 0, 2])
    );
    let (ok, _, stderr) = run(&[
        "diff".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--transfer".as_ref(),
        "nosuch".as_ref(),
    ]);
    assert!(!ok && stderr.contains("--transfer `nosuch`"), "{stderr}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A thousand workers living in the changed loop: every one moves at its
/// next header, the transition completes within one round of the
/// scheduler, and each carried its own state. (Measured at 10,000
/// workers: docs/transfer.md, "Latency".)
#[test]
fn a_thousand_workers_all_transfer() {
    let n = 1000;
    let (old, new) = (worker(OLD_K, I_ACC), worker(1000, ACC_I));
    let b = bundle(&old, &new, &transfer_opts(&["worker"])).to_bytes();
    let (mut store, inst, ts) = start(&old, n);
    apply(&mut store, inst, &b);
    assert!(store.transition_status().is_some_and(|s| s.pending == n));
    // Each worker is parked in `helper`, which yields at most twice more
    // before the worker reaches its header: about 3 turns each, more when
    // the preemption ticker cuts a turn short on a loaded machine.
    let mut steps = 0;
    while store.transition_status().is_some() && steps < 30 * n {
        store.run_steps(n);
        steps += n;
    }
    assert!(store.last_transition().is_some_and(|o| !o.reversed));
    assert!(store.transition_status().is_none());
    for (acc, turns) in finish(&mut store, inst, &ts) {
        assert_carried(acc, turns);
    }
}

/// A worker that parks (a host function parks its thread) inside its loop.
fn parking_worker(k: i32) -> String {
    format!(
        r#"(module
          (import "env" "park" (func $park))
          (import "env" "record" (func $record (param i32)))
          (global $stop (mut i32) (i32.const 0))
          (func $worker (export "worker") (result i32) (local $i i32) (local $acc i32)
            (loop $l
              (local.set $acc (i32.add (local.get $acc) (i32.const {k})))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (call $park)
              (br_if $l (i32.eqz (global.get $stop))))
            (call $record (local.get $i))
            (local.get $acc))
          (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

/// A parked thread with the loop's frame below its host call: checked and
/// blocked at apply, it transfers at its first header after it is woken.
#[test]
fn a_parked_worker_transfers_after_it_wakes() {
    use crate::transitions::{park, wake};
    let (old, new) = (parking_worker(OLD_K), parking_worker(1000));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let (mut store, inst) = setup_host(&old);
    let t = park(&mut store, inst, "worker", &[]);
    wake(&mut store, t);
    apply(&mut store, inst, &b.to_bytes());
    let status = store.transition_status().unwrap();
    assert_eq!(status.pending, 1);
    // Status says why a mapped frame has not moved yet: it waits in a call.
    let lb = store.loop_block(&status.blockers[0]).expect("in its loop");
    assert!(lb.parked && lb.stuck.is_none(), "{lb}");
    assert!(
        lb.to_string().contains("parked in a call the loop made"),
        "{lb}"
    );
    wake(&mut store, t);
    assert!(store.transition_status().is_none(), "moved at its header");
    wake(&mut store, t);
    func(&store, inst, "stop").call(&mut store, &[]).unwrap();
    store.unpark(t);
    let acc = crate::i32_of(store.join(t));
    assert_eq!(
        split(acc),
        (2, 2),
        "two turns of each version, state intact"
    );
    assert_eq!(store.data().rec, vec![4]);
}

/// `worker` with an extra local `$t`, set by `stmt` first thing in each
/// turn.
fn with_extra_local(src: &str, stmt: &str) -> String {
    src.replacen("(local $fp i32)", "(local $fp i32) (local $t i32)", 1)
        .replacen("(loop $l", &format!("(loop $l {stmt}"), 1)
}

/// LLVM adds and drops locals between builds: a new local that is written
/// before it is read from the header starts fresh, and an old local the new
/// version lacks is dropped; a new local read at the header is refused.
#[test]
fn added_and_dropped_locals() {
    let old = worker(OLD_K, I_ACC);
    // Added, dead at the header: it starts at zero, harmlessly.
    let new = with_extra_local(&worker(1000, I_ACC), "(local.set $t (i32.const 5))");
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let m = b.transfers().map(WORKER).map(|m| m.locals.clone());
    let fresh = patch_format::transfer::FRESH;
    assert_eq!(m, Some(vec![0, 1, 2, fresh]), "{:?}", b.transfers());
    let (acc, turns, done) = run_patched(&old, &b.to_bytes());
    assert!(done);
    assert_carried(acc, turns);
    // Dropped: the old build's `$t` has no counterpart in the new one.
    let old_t = with_extra_local(&old, "(local.set $t (i32.const 9))");
    let b = bundle(&old_t, &worker(1000, I_ACC), &transfer_opts(&["worker"]));
    let m = b.transfers().map(WORKER);
    let locals = m.map(|m| m.locals.clone());
    assert_eq!(locals, Some(vec![0, 1, 2]), "{:?}", b.transfers());
    let (acc, turns, done) = run_patched(&old_t, &b.to_bytes());
    assert!(done);
    assert_carried(acc, turns);
    // Added and read at the header: its value there would be invented
    // (here the alignment cannot even tell it from `$acc`: refused).
    let live = with_extra_local(
        &worker(1000, I_ACC),
        "(local.set $t (i32.add (local.get $t) (i32.const 1)))",
    );
    let b = bundle(&old, &live, &transfer_opts(&["worker"]));
    assert!(b.transfers().map(WORKER).is_none());
    assert_eq!(b.transfers().refused.len(), 1);
}

/// A `--invoke main` service whose main thread never leaves its loop until
/// it has done `turns` turns of at least 1 ms: each adds `k` to `$acc`.
fn cli_loop(k: i32, turns: i32) -> String {
    format!(
        r#"(module
          (import "wasm-patch" "sleep" (func $sleep (param i64)))
          (func (export "main") (result i32) (local $i i32) (local $acc i32)
            (loop $l
              (local.set $acc (i32.add (local.get $acc) (i32.const {k})))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (call $sleep (i64.const 1000000))
              (br_if $l (i32.lt_u (local.get $i) (i32.const {turns}))))
            (local.get $acc)))"#
    )
}

/// The CLI end to end: `run --frame-transfer --control`, a bundle from
/// `diff --transfer main` applied live completes although `main` never
/// leaves its loop, and the sum shows old turns then new ones. Without a
/// map, `status` says the thread is blocked by the loop it lives in and
/// that `diff --transfer` would help.
#[test]
fn the_cli_transfers_a_main_loop_and_status_names_the_loop() {
    use crate::cli_control::{scratch, text, wasm_patch, Guest};
    let dir = scratch("transfer-cli");
    let (old, new) = (dir.join("old.wat"), dir.join("new.wat"));
    std::fs::write(&old, cli_loop(7, 2000)).unwrap();
    std::fs::write(&new, cli_loop(1000, 2000)).unwrap();
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    let mapped = dir.join("mapped.wpatch");
    let plain = dir.join("plain.wpatch");
    let o = wasm_patch(&[
        "diff",
        &p(&old),
        &p(&new),
        "-o",
        &p(&mapped),
        "--transfer",
        "main",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = wasm_patch(&["diff", &p(&old), &p(&new), "-o", &p(&plain)]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Without a map: the transition waits, and status says why.
    let sock = dir.join("a.sock");
    let g = Guest::start_with(&sock, &old, "main", &[], &["--frame-transfer"]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (s2, pl) = (p(&sock), p(&plain));
    let applying =
        std::thread::spawn(move || wasm_patch(&["apply", "--control", &s2, &pl, "--timeout", "1"]));
    let t0 = std::time::Instant::now();
    let status = loop {
        let o = wasm_patch(&["status", "--control", &p(&sock)]);
        let s = text(&o.stdout) + &text(&o.stderr);
        if s.contains("blocked by a loop") || t0.elapsed() > std::time::Duration::from_secs(2) {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        status.contains("blocked by a loop it lives in (main)")
            && status.contains("diff --transfer"),
        "{status}"
    );
    let o = applying.join().unwrap();
    assert_eq!(o.status.code(), Some(3), "timed out and rolled back");
    // The rollback's report says the same of its blockers.
    assert!(
        text(&o.stderr).contains("a transfer map would help (diff --transfer main)"),
        "{}",
        text(&o.stderr)
    );
    let (code, out, err) = g.finish();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        (7 * 2000).to_string(),
        "the old code throughout"
    );

    // With the map: the main loop moves to the new version.
    let sock = dir.join("b.sock");
    let g = Guest::start_with(&sock, &old, "main", &[], &["--frame-transfer"]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let o = wasm_patch(&[
        "apply",
        "--control",
        &p(&sock),
        &p(&mapped),
        "--timeout",
        "5",
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    // Status says the applied bundle moves `main`'s frames, both ways.
    let o = wasm_patch(&["status", "--control", &p(&sock)]);
    assert!(
        text(&o.stdout).contains("moves frames of `main` at loop headers, and back on a revert"),
        "{}",
        text(&o.stdout)
    );
    let (code, out, err) = g.finish();
    assert_eq!(code, 0, "{err}");
    let acc: i64 = out.trim().parse().unwrap();
    // acc = 7 a + 1000 b with a + b = 2000 turns, both parts present.
    let b = (acc - 7 * 2000) / 993;
    assert_eq!((acc - 7 * 2000) % 993, 0, "{acc}");
    assert!(b > 0 && b < 2000, "{acc}: {b} new turns");
}
