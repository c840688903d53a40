//! Frame transfer of loops that take parameters (issue 14, item 1:
//! "the wasm locals (and the loop's parameters, if any) carried over";
//! `docs/transfer.md`, "Loop parameters"): the worker's loop carries its
//! turn count and its accumulator as loop parameters, which the back edge
//! passes and the header keeps in locals.

use crate::transfer::{bundle, finish, start, transfer_opts, with_transfers};
use crate::transitions::apply;
use patch_format::transfer::{Transfers, FRESH};
use wasm_patch_runtime::*;

/// Index of `worker` (two imports, then `helper`).
const WORKER: u32 = 3;

/// A worker that never leaves its loop until `stop`: the loop takes
/// `(i, acc)` (or `(acc, i)` with `swap`) as parameters; each turn yields
/// inside `helper`, then adds 1 to `i` and `k` to `acc` and passes both
/// back to the header. On `stop` it records `i` and returns `acc`.
fn worker(k: i32, swap: bool) -> String {
    worker_of(
        k,
        if swap {
            &["$acc", "$i"]
        } else {
            &["$i", "$acc"]
        },
    )
}

/// [`worker`] whose loop takes the parameters named by `order`, any of
/// `$i`, `$acc` and `$n` (which adds 3 a turn; on `stop` the worker traps
/// unless it is three times `$i`).
pub(crate) fn worker_of(k: i32, order: &[&str]) -> String {
    let next = |l: &str| match l {
        "$i" => "(i32.add (local.get $i) (i32.const 1))".to_string(),
        "$n" => "(i32.add (local.get $n) (i32.const 3))".to_string(),
        _ => format!("(i32.add (local.get $acc) (i32.const {k}))"),
    };
    let zeros = vec!["(i32.const 0)"; order.len()].join(" ");
    let types = vec!["i32"; order.len()].join(" ");
    let sets: Vec<String> = order
        .iter()
        .rev()
        .map(|l| format!("(local.set {l})"))
        .collect();
    let nexts: Vec<String> = order.iter().map(|l| next(l)).collect();
    let check = if order.contains(&"$n") {
        "(if (i32.ne (local.get $n) (i32.mul (local.get $i) (i32.const 3))) (then unreachable))"
    } else {
        ""
    };
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (import "env" "record" (func $record (param i32)))
          (global $stop (mut i32) (i32.const 0))
          (func $helper (local $j i32)
            (loop $h
              (call $yield)
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $h (i32.lt_u (local.get $j) (i32.const 2)))))
          (func $worker (export "worker") (result i32) (local $i i32) (local $acc i32) (local $n i32)
            {zeros}
            (loop $l (param {types})
              {}
              (call $helper)
              (if (global.get $stop)
                (then {check} (call $record (local.get $i)) (return (local.get $acc))))
              {}
              (br $l))
            (unreachable))
          (func (export "stop") (global.set $stop (i32.const 1))))"#,
        sets.join(" "),
        nexts.join(" ")
    )
}

/// Old turns add 7 to `acc`, new turns 1000: `acc` splits into both
/// counts; they must add up to the turns `i` counted.
#[track_caller]
fn split(acc: i32) -> (i32, i32) {
    assert_eq!(acc % 1000 % 7, 0, "acc {acc} is no sum of turns");
    (acc % 1000 / 7, acc / 1000)
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

/// (a) The loop's parameters cross with the frame, forward, back on a
/// revert, and forward again: the worker never leaves its loop, every
/// transition completes, and the count and the sum stay in step.
#[test]
fn loop_parameters_cross_forward_back_and_forward_again() {
    let (old, new) = (worker(7, false), worker(1000, false));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(
        (&map.headers, &map.params),
        (&vec![(0, 0)], &vec![vec![0, 1]])
    );
    let (mut store, inst, ts) = start(&old, 1);
    let p = apply(&mut store, inst, &b.to_bytes());
    assert_eq!(store.applied()[0].transfers[0].no_way_back, None);
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred");
    store.revert(p, None).expect("revert starts");
    store.run_steps(6);
    assert!(
        store.transition_status().is_none(),
        "the revert completed while the worker lives in its loop"
    );
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred again");
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);
}

/// (b) The two same-typed parameters trade places in the new build: diff
/// pairs them by their roles (the lives of the locals the header keeps
/// them in), not by position, and the worker's count and sum stay right,
/// forward and back through the inverted pairing of the map back.
#[test]
fn loop_parameters_that_trade_places_are_paired_by_role() {
    let (old, new) = (worker(7, false), worker(1000, true));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.params, vec![vec![1, 0]], "paired by role: {map:?}");
    for revert in [false, true] {
        let (mut store, inst, ts) = start(&old, 1);
        let p = apply(&mut store, inst, &b.to_bytes());
        store.run_steps(6);
        assert!(store.transition_status().is_none(), "transferred");
        if revert {
            store.revert(p, None).expect("revert starts");
            store.run_steps(6);
            assert!(store.transition_status().is_none(), "moved back");
        }
        let r = finish(&mut store, inst, &ts);
        assert_carried(r[0].0, r[0].1);
        // After the revert, old turns again: the sum has more old turns
        // than the new version saw before it (a crossed pairing back would
        // have swapped count and sum, which `split` rejects).
    }
}

/// Three parameters rotated in the new build, `(i, acc, n)` to
/// `(acc, n, i)`: the pairing is a cycle, `[1, 2, 0]`, whose map back is
/// its inverse, `[2, 0, 1]`; forward then back, each value lands in its
/// own role (a crossed one breaks the sum, or `n = 3 i`, which traps).
#[test]
fn rotated_loop_parameters_move_forward_and_back() {
    let old = worker_of(7, &["$i", "$acc", "$n"]);
    let new = worker_of(1000, &["$acc", "$n", "$i"]);
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.params, vec![vec![1, 2, 0]], "paired by role: {map:?}");
    let (mut store, inst, ts) = start(&old, 1);
    let p = apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred");
    store.revert(p, None).expect("revert starts");
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "moved back");
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0, r[0].1);
}

/// [`worker`] whose accumulator (the second loop parameter) is an `i64`.
fn worker_i64(k: i32) -> String {
    worker(k, false)
        .replace("(local $acc i32)", "(local $acc i64)")
        .replace("(param i32 i32)", "(param i32 i64)")
        .replace("(i32.const 0) (i32.const 0)", "(i32.const 0) (i64.const 0)")
        .replace(
            &format!("(i32.add (local.get $acc) (i32.const {k}))"),
            &format!("(i64.add (local.get $acc) (i64.const {k}))"),
        )
        .replace(
            "(return (local.get $acc))",
            "(return (i32.wrap_i64 (local.get $acc)))",
        )
}

/// (c) A loop parameter whose type changes: refused, the reason names the
/// loop; the bundle still applies without a transfer (the worker waits).
#[test]
fn a_loop_parameter_whose_type_changes_is_refused() {
    let (old, new) = (worker(7, false), worker_i64(1000));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let t = b.transfers();
    assert!(t.map(WORKER).is_none(), "no map: {t:?}");
    let reason = &t.refused[0].reason;
    assert!(
        reason.contains("loop 0: its block type changes"),
        "{reason}"
    );
    let (mut store, inst, ts) = start(&old, 1);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert_eq!(store.transition_status().map(|s| s.pending), Some(1));
    let r = finish(&mut store, inst, &ts);
    assert_eq!(split(r[0].0), (r[0].1, 0), "every turn ran the old code");
}

/// (d) Forged parameter pairings are refused at apply, naming the
/// function, the loop and the parameter; nothing is applied and the worker
/// runs on in the old code.
#[test]
fn forged_loop_parameter_pairings_are_refused_at_apply() {
    let (old, new) = (worker(7, false), worker(1000, false));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let good = b.transfers().clone();
    let forged = |params: Vec<u32>| {
        let mut t = good.clone();
        t.maps[0].params = vec![params];
        t
    };
    // A type mismatch needs a loop of other types: the i64 worker's, with
    // a map diff refused (its locals dead at the header start fresh).
    let b64 = bundle(&old, &worker_i64(1000), &transfer_opts(&["worker"]));
    let mut typed = good.clone();
    typed.refused.clear();
    typed.maps[0].new_locals[1] = ValType::I64;
    typed.maps[0].locals = vec![FRESH; 3];
    let cases: Vec<(&patch_format::Bundle, Transfers, &str)> = vec![
        (
            &b,
            forged(vec![0, 0]),
            "loop 0: old loop parameter 0 is carried twice",
        ),
        (
            &b,
            forged(vec![0, 5]),
            "loop 0: new loop parameter 1 takes old loop parameter 5, which does not exist",
        ),
        (
            &b,
            forged(vec![1]),
            "loop 0: 1 operand(s) paired, but the new loop takes 2 parameter(s)",
        ),
        (&b, forged(Vec::new()), "loop 0: 0 operand(s) paired"),
        // One operand below the header that the loop does not have.
        (
            &b,
            forged(vec![0, 1, 2]),
            "not the operands below its header the map carries",
        ),
        (
            &b64,
            typed,
            "loop 0: new loop parameter 1 (i64) takes old loop parameter 1 (i32)",
        ),
    ];
    for (bundle, t, want) in cases {
        let (mut store, inst, ts) = start(&old, 1);
        let err = store
            .apply(inst, &with_transfers(bundle, &t), &ApplyOptions::default())
            .expect_err("the forged map is refused");
        let msg = err.to_string();
        assert!(
            msg.contains("transfer map of function worker") && msg.contains(want),
            "{msg}"
        );
        assert!(store.applied().is_empty(), "nothing applied");
        assert!(store.transition_status().is_none(), "no transition");
        let r = finish(&mut store, inst, &ts);
        assert_eq!(split(r[0].0), (r[0].1, 0), "the old code ran on");
    }
    // The diff's own map applies.
    let (mut store, inst, _) = start(&old, 1);
    store
        .apply(inst, &with_transfers(&b, &good), &ApplyOptions::default())
        .expect("the diff's own map applies");
}

/// `inspect` shows the parameter pairing of a header (text and JSON), as
/// `diff` does.
#[test]
fn inspect_shows_the_parameter_pairing() {
    let bin = env!("CARGO_BIN_EXE_wasm-patch");
    let d = std::env::temp_dir().join(format!("wp-transfer-params-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let (old, new, out) = (d.join("old.wat"), d.join("new.wat"), d.join("b.wpb"));
    std::fs::write(&old, worker(7, false)).unwrap();
    std::fs::write(&new, worker(1000, true)).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        (
            o.status.success(),
            text,
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
    let line = "map      worker  loop headers 0→0 (stack 0←1 1←0)";
    assert!(stdout.contains(line), "{stdout}");
    let (ok, text, _) = run(&["inspect".as_ref(), out.as_os_str()]);
    assert!(ok && text.contains(line), "{text}");
    let (ok, json, _) = run(&["inspect".as_ref(), out.as_os_str(), "--json".as_ref()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["transfer"]["maps"][0]["params"],
        serde_json::json!([[1, 0]])
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A worker whose loop runs above two operands that the code after it
/// uses (`base - 3`, added to the sum it returns).
pub(crate) fn worker_above(k: i32) -> String {
    format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (import "env" "record" (func $record (param i32)))
          (global $stop (mut i32) (i32.const 0))
          (global $base (mut i32) (i32.const 100000))
          (func $helper (local $j i32)
            (loop $h
              (call $yield)
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $h (i32.lt_u (local.get $j) (i32.const 2)))))
          (func $worker (export "worker") (result i32) (local $i i32) (local $acc i32)
            (global.get $base) (i32.const 3)
            (loop $l
              (local.set $acc (i32.add (local.get $acc) (i32.const {k})))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (call $helper)
              (br_if $l (i32.eqz (global.get $stop))))
            (i32.sub)
            (call $record (local.get $i))
            (local.get $acc)
            (i32.add))
          (func (export "stop") (global.set $stop (i32.const 1))))"#
    )
}

/// Operands below a header keep their places (the code that pushed them
/// is the same): the map pairs them in place, and they cross with the
/// frame forward, back on a revert and forward again (lost or swapped,
/// `base - 3` comes out wrong).
#[test]
fn operands_below_a_header_cross_forward_and_back() {
    let (old, new) = (worker_above(7), worker_above(1000));
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.params, vec![vec![0, 1]]);
    let (mut store, inst, ts) = start(&old, 1);
    let p = apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred");
    store.revert(p, None).expect("revert starts");
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "moved back");
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert!(store.transition_status().is_none(), "transferred again");
    let r = finish(&mut store, inst, &ts);
    assert_carried(r[0].0 - (100000 - 3), r[0].1);
}

/// Forged pairings of operands below a header are refused at apply: the
/// operands swapped, or carried into a build whose code before the header
/// pushes something else (diff refuses that one: the code before differs);
/// nothing is applied and the worker runs on in the old code.
#[test]
fn forged_operands_below_a_header_are_refused_at_apply() {
    let old = worker_above(7);
    let other = worker_above(1000).replace("(i32.const 3)", "(i32.const 4)");
    let b = bundle(&old, &other, &transfer_opts(&["worker"]));
    let reason = &b.transfers().refused[0].reason;
    assert!(
        reason.contains("the code from the function entry to it differs"),
        "{reason}"
    );
    let map = |params: Vec<u32>| Transfers {
        maps: vec![patch_format::transfer::TransferMap {
            func: WORKER,
            old_locals: vec![ValType::I32; 2],
            new_locals: vec![ValType::I32; 2],
            locals: vec![0, 1],
            headers: vec![(0, 0)],
            params: vec![params],
        }],
        refused: Vec::new(),
    };
    let same = bundle(&old, &worker_above(1000), &transfer_opts(&["worker"]));
    let cases = [
        (&same, map(vec![1, 0]), "loop 0: operand 0 below the header takes old operand 1"),
        (
            &b,
            map(vec![0, 1]),
            "loop 0: 2 operand(s) on the stack at the header, but the code before it differs from the target's",
        ),
    ];
    for (bundle, t, want) in cases {
        let (mut store, inst, ts) = start(&old, 1);
        let err = store
            .apply(inst, &with_transfers(bundle, &t), &ApplyOptions::default())
            .expect_err("the forged map is refused");
        let msg = err.to_string();
        assert!(
            msg.contains("transfer map of function worker") && msg.contains(want),
            "{msg}"
        );
        assert!(store.applied().is_empty(), "nothing applied");
        let r = finish(&mut store, inst, &ts);
        assert_eq!(
            split(r[0].0 - (100000 - 3)),
            (r[0].1, 0),
            "the old code ran on"
        );
    }
}

/// A forged map over a target header with an operand below its loop that
/// the new header lacks: its pairing of the parameters alone passes every
/// check of the pairing itself, but it would read the operand below as a
/// parameter (the old spill area holds it first); refused at apply because
/// the code before the two headers differs.
#[test]
fn a_forged_map_over_a_header_with_other_operands_is_refused() {
    let old = worker(7, false).replace(
        "(i32.const 0) (i32.const 0)",
        "(global.get $stop) (i32.const 0) (i32.const 0)",
    );
    let b = bundle(&old, &worker(1000, false), &transfer_opts(&["worker"]));
    assert!(b.transfers().map(WORKER).is_none(), "diff refuses it");
    let t = Transfers {
        maps: vec![patch_format::transfer::TransferMap {
            func: WORKER,
            old_locals: vec![ValType::I32; 3],
            new_locals: vec![ValType::I32; 3],
            locals: vec![FRESH; 3],
            headers: vec![(0, 0)],
            params: vec![vec![0, 1]],
        }],
        refused: Vec::new(),
    };
    let (mut store, inst, ts) = start(&old, 1);
    let err = store
        .apply(inst, &with_transfers(&b, &t), &ApplyOptions::default())
        .expect_err("the forged map is refused");
    let msg = err.to_string();
    assert!(
        msg.contains(
            "loop 0: 2 operand(s) on the stack at the header, but the code before it differs"
        ),
        "{msg}"
    );
    assert!(store.applied().is_empty(), "nothing applied");
    let r = finish(&mut store, inst, &ts);
    assert_eq!(split(r[0].0), (r[0].1, 0), "the old code ran on");
}

/// [`worker_above`] whose loop is nested in another loop, with the two
/// operands below both.
fn worker_nested(k: i32) -> String {
    worker_above(k)
        .replace("(loop $l\n", "(loop $outer (loop $l\n")
        .replace(
            "(br_if $l (i32.eqz (global.get $stop))))",
            "(br_if $l (i32.eqz (global.get $stop)))) (br_if $outer (i32.eqz (global.get $stop))))",
        )
}

/// Operands below an enclosing loop: the OSR entry of the inner loop
/// cannot carry them around the outer loop's back edge, so diff maps only
/// the outer header, and the worker, which lives in the inner loop, waits
/// (it is never moved with its operands lost).
#[test]
fn operands_below_an_enclosing_loop_are_not_carried() {
    let (old, new) = (worker_nested(7), worker_nested(1000));
    assert!(old.contains("(loop $outer (loop $l"), "{old}");
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let map = b.transfers().map(WORKER).expect("a map for worker");
    assert_eq!(map.headers, vec![(0, 0)], "only the outer header: {map:?}");
    let (mut store, inst, ts) = start(&old, 1);
    apply(&mut store, inst, &b.to_bytes());
    store.run_steps(6);
    assert_eq!(store.transition_status().map(|s| s.pending), Some(1));
    let r = finish(&mut store, inst, &ts);
    assert_eq!(
        split(r[0].0 - (100000 - 3)),
        (r[0].1, 0),
        "the old code ran on"
    );
    // A forged map of the inner header too is refused at apply (its OSR
    // entry cannot be built; it used to panic inside Cranelift).
    let mut t = b.transfers().clone();
    t.maps[0].headers.push((1, 1));
    t.maps[0].params.push(vec![0, 1]);
    let (mut store, inst, _) = start(&old, 1);
    let err = store
        .apply(inst, &with_transfers(&b, &t), &ApplyOptions::default())
        .expect_err("the forged map is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("loop 1: ") && msg.contains("the OSR entry's loop cannot transfer"),
        "{msg}"
    );
    assert!(store.applied().is_empty(), "nothing applied");
}
