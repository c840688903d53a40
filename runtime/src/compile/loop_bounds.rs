//! Counted loops whose header needs no poll.
//!
//! A loop header polls so that a thread running the loop looks at its poll
//! word (preemption, switch requests, cancellation) within a bounded time.
//! Some loops bound themselves: a counted loop such as SHA-256's 64 rounds,
//!
//! ```wat
//! i32.const 0
//! local.set $i
//! loop
//!   ...                        ;; no call, no inner loop, no other back-edge
//!   local.get $i
//!   i32.const 4
//!   i32.add
//!   local.tee $i
//!   i32.const 256
//!   i32.ne
//!   br_if 0
//! end
//! ```
//!
//! runs its body at most a known number of times per entry. When that count
//! times the body's length is at most [`MAX_LOOP_WORK`] operators, the loop
//! is no different from a stretch of straight-line code of that length: the
//! polls around it (an enclosing loop's header, or the callers' polls chosen
//! by `polls.rs`, which count call sites and never see one inside such a
//! loop) bound how often it is entered. Its header then does without a poll,
//! and the loop without the register that a poll keeps live across it.
//!
//! Recognised, with `$i` written nowhere else in the body and the loop's
//! only back-edge the final `br_if 0`:
//!
//! - `$i = $i ± c; br_if ($i != k)` (also `br_if $i`, i.e. `k = 0`) when
//!   `$i` holds a constant `s` on entry (set in straight-line code before
//!   the `loop`): the count is the exact number of steps from `s` to `k`;
//! - `$i = $i + c; br_if ($i <u k)` with `c > 0` and `k + c <= 2^32`
//!   (unsigned), whatever `$i` holds on entry: at most `ceil(k / c) + 1`
//!   runs. With `k + c > 2^32` the counter can step over `k` and wrap
//!   round below it, and the loop need never end.
//!
//! All arithmetic is modulo 2^32, as the machine's. Only i32 counters are
//! recognised (an i64 counter keeps its poll).
//!
//! Anything else (or a body that cannot be read) keeps its poll.

use std::collections::HashMap;
use wasmparser::{FunctionBody, Operator};

/// The most operators a loop without a header poll may run per entry
/// (trip count times body length): tens of microseconds at most.
pub(crate) const MAX_LOOP_WORK: u64 = 1 << 16;

/// The byte offsets of the `loop` operators of `body` whose header needs no
/// poll, in increasing order.
pub(crate) fn self_bounded_loops(body: &FunctionBody<'_>) -> Vec<usize> {
    let Ok(reader) = body.get_operators_reader() else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    for item in reader.into_iter_with_offsets() {
        match item {
            Ok((op, offset)) => ops.push((op, offset as usize)),
            Err(_) => return Vec::new(),
        }
    }
    let mut bounded = Vec::new();
    // Locals known to hold an i32 constant at this point of straight-line
    // code: set by `i32.const; local.set/tee`, forgotten at every merge
    // point (`else`, `end`) and at a loop header (its back-edges).
    let mut consts: HashMap<u32, i32> = HashMap::new();
    let mut prev_const = None;
    for (p, (op, offset)) in ops.iter().enumerate() {
        match *op {
            Operator::Loop { .. } => {
                if trip_work(&ops, p, &consts).is_some_and(|w| w <= MAX_LOOP_WORK) {
                    bounded.push(*offset);
                }
                consts.clear();
            }
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                match prev_const {
                    Some(v) => consts.insert(local_index, v),
                    None => consts.remove(&local_index),
                };
            }
            Operator::Else | Operator::End => consts.clear(),
            _ => {}
        }
        prev_const = match *op {
            Operator::I32Const { value } => Some(value),
            _ => None,
        };
    }
    bounded
}

/// The loop's exit test, from its last operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// `br_if ($i != k)`.
    Ne(i32),
    /// `br_if ($i <u k)`.
    LtU(i32),
}

/// Operators run per entry by the loop at `ops[p]`, if the loop is counted
/// (module docs); `None` when it is not, or not recognisably so.
fn trip_work(ops: &[(Operator<'_>, usize)], p: usize, consts: &HashMap<u32, i32>) -> Option<u64> {
    let end = matching_end(ops, p)?;
    let body = &ops[p + 1..end];
    let (var, step, exit, tail) = counter(body)?;
    // Every operator before the counter update: no call, no inner loop, no
    // branch back to this loop's header, no other write of the counter.
    let mut depth = 0u32;
    for (op, _) in &body[..body.len() - tail] {
        match op {
            Operator::Block { .. } | Operator::If { .. } => depth += 1,
            Operator::End => depth = depth.checked_sub(1)?,
            Operator::Br { relative_depth } | Operator::BrIf { relative_depth }
                if *relative_depth == depth =>
            {
                return None
            }
            Operator::BrTable { targets } => {
                if targets.default() == depth {
                    return None;
                }
                for t in targets.targets() {
                    if t.ok()? == depth {
                        return None;
                    }
                }
            }
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index }
                if *local_index == var =>
            {
                return None
            }
            Operator::Loop { .. }
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::Try { .. }
            | Operator::TryTable { .. } => return None,
            _ => {}
        }
    }
    let trips = trip_count(step, exit, consts.get(&var).copied())?;
    trips.checked_mul(body.len() as u64)
}

/// The index of the `end` closing the block-like operator at `ops[p]`.
fn matching_end(ops: &[(Operator<'_>, usize)], p: usize) -> Option<usize> {
    let mut depth = 0u32;
    for (q, (op, _)) in ops.iter().enumerate().skip(p + 1) {
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Try { .. }
            | Operator::TryTable { .. } => depth += 1,
            Operator::End if depth == 0 => return Some(q),
            Operator::End => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The counter update that ends `body`: (local, step, exit test, number of
/// operators it takes).
fn counter(body: &[(Operator<'_>, usize)]) -> Option<(u32, i32, Exit, usize)> {
    let ops: Vec<&Operator<'_>> = body.iter().map(|(op, _)| op).collect();
    let n = ops.len();
    if n < 5 || !matches!(ops[n - 1], Operator::BrIf { relative_depth: 0 }) {
        return None;
    }
    // `br_if` on the tee'd value itself, or on a comparison with a constant.
    let (exit, update_end) = match (ops[n - 3], ops[n - 2]) {
        (Operator::I32Const { value }, Operator::I32Ne) => (Exit::Ne(*value), n - 3),
        (Operator::I32Const { value }, Operator::I32LtU) => (Exit::LtU(*value), n - 3),
        _ => (Exit::Ne(0), n - 1),
    };
    if update_end < 4 {
        return None;
    }
    let [get, konst, arith, tee] = [
        ops[update_end - 4],
        ops[update_end - 3],
        ops[update_end - 2],
        ops[update_end - 1],
    ];
    let (Operator::LocalGet { local_index: var }, Operator::I32Const { value: c }) = (get, konst)
    else {
        return None;
    };
    let Operator::LocalTee { local_index } = tee else {
        return None;
    };
    if local_index != var {
        return None;
    }
    let step = match arith {
        Operator::I32Add => *c,
        Operator::I32Sub => c.checked_neg()?,
        _ => return None,
    };
    if step == 0 {
        return None;
    }
    Some((*var, step, exit, n - (update_end - 4)))
}

/// How many times the body runs per entry (an upper bound), given the
/// counter's step, the exit test and the counter's value on entry if known.
fn trip_count(step: i32, exit: Exit, start: Option<i32>) -> Option<u64> {
    match exit {
        Exit::Ne(k) => {
            // The body runs n times, n the least n >= 1 with
            // start + n * step == k (mod 2^32). With d the distance in the
            // step's direction and s = |step|, n * s == d (mod 2^32); when s
            // divides d (and d != 0) that n is d / s: every other solution
            // differs by a multiple of 2^32 / gcd(s, 2^32) >= 2^32 / s > d / s.
            let start = start?;
            let (d, s) = if step > 0 {
                ((k as u32).wrapping_sub(start as u32), step as u32)
            } else {
                ((start as u32).wrapping_sub(k as u32), step.unsigned_abs())
            };
            (d != 0 && d % s == 0).then_some(u64::from(d / s))
        }
        Exit::LtU(k) => {
            // Each run but the last leaves the counter below k. From a value
            // below k, adding s (= step > 0) stays below 2^32, so does not
            // wrap, exactly when k + s <= 2^32: then the counter rises by s
            // from the first run's value c1 >= 0 (the start is unknown, and
            // its first step may wrap), c1 + (n - 2) s < k, so
            // n <= ceil(k / s) + 1. When k + s > 2^32, a counter in
            // [2^32 - s, k) steps over the bound and wraps below it: the loop
            // can run for ever (e.g. `+= 1 << 20` against `<u -1`).
            if step <= 0 {
                return None;
            }
            let (k, s) = (u64::from(k as u32), u64::from(step as u32));
            (k + s <= 1 << 32).then(|| k.div_ceil(s) + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets `self_bounded_loops` picks in the first function of
    /// `wat`, as indices into the order of its `loop`s.
    fn picked(wat: &str) -> Vec<usize> {
        let bytes = wat::parse_str(wat).unwrap();
        let mut loops = Vec::new();
        let mut picked = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
            if let wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() {
                for item in body
                    .get_operators_reader()
                    .unwrap()
                    .into_iter_with_offsets()
                {
                    if let (Operator::Loop { .. }, off) = item.unwrap() {
                        loops.push(off as usize);
                    }
                }
                picked = self_bounded_loops(&body);
                break;
            }
        }
        picked
            .iter()
            .map(|off| loops.iter().position(|l| l == off).unwrap())
            .collect()
    }

    /// A function `(param i32)` whose body is `body`, with i32 locals 1..=3.
    fn func(body: &str) -> String {
        format!("(module (memory 1) (func (param i32) (local i32 i32 i32) {body}))")
    }

    const SHA_ROUNDS: &str = "
        i32.const 0 local.set 1
        loop
          local.get 1 local.get 1 i32.load i32.const 3 i32.shr_u i32.store
          local.get 1 i32.const 4 i32.add local.tee 1
          i32.const 256 i32.ne br_if 0
        end";

    #[test]
    fn a_counted_loop_from_a_known_start_needs_no_poll() {
        assert_eq!(picked(&func(SHA_ROUNDS)), vec![0]);
        // Counting down to zero with `br_if` on the counter itself.
        let down = "i32.const 100 local.set 2
            loop local.get 2 i32.const 1 i32.sub local.tee 2 br_if 0 end";
        assert_eq!(picked(&func(down)), vec![0]);
    }

    #[test]
    fn an_unknown_or_unreachable_start_keeps_the_poll() {
        // Start is the parameter: `!=` may take 2^30 steps.
        let param = "loop local.get 0 i32.const 4 i32.add local.tee 0
            i32.const 256 i32.ne br_if 0 end";
        assert_eq!(picked(&func(param)), Vec::<usize>::new());
        // The constant was set on one arm of an `if` only.
        let one_arm = "local.get 0 if i32.const 0 local.set 1 end
            loop local.get 1 i32.const 4 i32.add local.tee 1
            i32.const 256 i32.ne br_if 0 end";
        assert_eq!(picked(&func(one_arm)), Vec::<usize>::new());
        // 4 does not divide 258 - 0: the counter steps over the bound and
        // runs for 2^30 more steps.
        let miss = "i32.const 0 local.set 1
            loop local.get 1 i32.const 4 i32.add local.tee 1
            i32.const 258 i32.ne br_if 0 end";
        assert_eq!(picked(&func(miss)), Vec::<usize>::new());
        // Start equal to the bound: the first test wraps all the way round.
        let wrap = "i32.const 8 local.set 1
            loop local.get 1 i32.const 4 i32.add local.tee 1
            i32.const 8 i32.ne br_if 0 end";
        assert_eq!(picked(&func(wrap)), Vec::<usize>::new());
    }

    #[test]
    fn an_unsigned_less_than_bound_needs_no_start() {
        let lt = "loop local.get 0 i32.const 1 i32.add local.tee 0
            i32.const 1000 i32.lt_u br_if 0 end";
        assert_eq!(picked(&func(lt)), vec![0]);
        // Counting down under `<u` can run 2^32 times.
        let down = "loop local.get 0 i32.const 1 i32.sub local.tee 0
            i32.const 1000 i32.lt_u br_if 0 end";
        assert_eq!(picked(&func(down)), Vec::<usize>::new());
    }

    /// `$i += c; br_if ($i <u k)` with the counter starting at the
    /// parameter (any value).
    fn lt_u(c: &str, k: &str) -> String {
        func(&format!(
            "loop local.get 0 i32.const {c} i32.add local.tee 0
             i32.const {k} i32.lt_u br_if 0 end"
        ))
    }

    #[test]
    fn an_unsigned_bound_the_counter_can_step_over_and_wrap_below_keeps_the_poll() {
        // Issue 11, item 8: 2^20 + (2^32 - 1) > 2^32. From 0xFFF0_0000 the
        // counter steps to 0, below the bound again: it never ends.
        assert_eq!(picked(&lt_u("0x100000", "-1")), Vec::<usize>::new());
        // Four steps of 2^30 from 0 reach 0xC000_0000, still below the
        // bound; the fifth wraps to 0.
        assert_eq!(
            picked(&lt_u("0x40000000", "0xC0000001")),
            Vec::<usize>::new()
        );
        // The same step written as subtracting its negation.
        let sub = "loop local.get 0 i32.const -0x100000 i32.sub local.tee 0
            i32.const -1 i32.lt_u br_if 0 end";
        assert_eq!(picked(&func(sub)), Vec::<usize>::new());
        // A step of 2^31 (as an add of i32::MIN) against any bound above it.
        assert_eq!(
            picked(&lt_u("0x80000000", "0x80000001")),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn an_unsigned_bound_the_counter_cannot_wrap_below_needs_no_poll() {
        // Bound + step = 2^32 exactly: the last value below the bound, at
        // most 0xBFFF_FFFF, steps to at most 0xFFFF_FFFF without wrapping.
        assert_eq!(picked(&lt_u("0x40000000", "0xC0000000")), vec![0]);
        assert_eq!(picked(&lt_u("1", "-1")), Vec::<usize>::new(), "too long");
        assert_eq!(
            trip_count(1 << 30, Exit::LtU(0xC000_0000u32 as i32), None),
            Some(4)
        );
        // Not a multiple of the step: runs with counters 0, 3, 6, 9, 12
        // (the first value may be 0, whatever the start).
        assert_eq!(trip_count(3, Exit::LtU(10), None), Some(5));
        assert_eq!(trip_count(1, Exit::LtU(0), None), Some(1));
    }

    #[test]
    fn an_equality_exit_counts_modulo_2_to_the_32() {
        // From -16 by 8 to 8 through zero: 3 runs (-8, 0, 8).
        let through_zero = "i32.const -16 local.set 1
            loop local.get 1 i32.const 8 i32.add local.tee 1
            i32.const 8 i32.ne br_if 0 end";
        assert_eq!(picked(&func(through_zero)), vec![0]);
        assert_eq!(trip_count(8, Exit::Ne(8), Some(-16)), Some(3));
        // Downwards from 16 by 8 to -8: 3 runs.
        assert_eq!(trip_count(-8, Exit::Ne(-8), Some(16)), Some(3));
        // 3 does not divide 1: the counter first equals 1 after
        // 0xAAAA_AAAB steps (3's inverse modulo 2^32).
        assert_eq!(trip_count(3, Exit::Ne(1), Some(0)), None);
        // An i64 counter is not recognised at all.
        let wide = "(module (func (local i64)
            i64.const 0 local.set 0
            loop local.get 0 i64.const 1 i64.add local.tee 0
            i64.const 64 i64.ne br_if 0 end))";
        assert_eq!(picked(wide), Vec::<usize>::new());
    }

    #[test]
    fn calls_inner_loops_other_back_edges_and_writes_keep_the_poll() {
        let with = |extra: &str| {
            func(&format!(
                "i32.const 0 local.set 1
                 loop
                   {extra}
                   local.get 1 i32.const 1 i32.add local.tee 1
                   i32.const 64 i32.ne br_if 0
                 end"
            ))
        };
        assert_eq!(picked(&with("nop")), vec![0]);
        let calls = "(module (func $f) (func (local i32)
            i32.const 0 local.set 0
            loop call $f local.get 0 i32.const 1 i32.add local.tee 0
            i32.const 64 i32.ne br_if 0 end))";
        assert_eq!(picked(calls), Vec::<usize>::new());
        // The inner loop is unbounded (parameter start); the outer one
        // contains a loop: neither is picked.
        let inner = "loop local.get 0 i32.const 1 i32.add local.tee 0 br_if 0 end";
        assert_eq!(picked(&with(inner)), Vec::<usize>::new());
        // A `br_if` back to the header from inside a block skips the step.
        assert_eq!(
            picked(&with("block local.get 0 br_if 1 end")),
            Vec::<usize>::new()
        );
        assert_eq!(
            picked(&with("block local.get 0 br_table 0 1 end")),
            Vec::<usize>::new()
        );
        // A branch out of the loop is fine.
        assert_eq!(picked(&with("block local.get 0 br_if 2 end")), vec![0]);
        // Another write of the counter.
        assert_eq!(
            picked(&with("local.get 0 local.set 1")),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn too_much_work_per_entry_keeps_the_poll() {
        let count = |n: u32| {
            format!(
                "i32.const 0 local.set 1
                 loop local.get 1 i32.const 1 i32.add local.tee 1
                 i32.const {n} i32.ne br_if 0 end"
            )
        };
        // The body is the 7 operators between `loop` and `end`.
        let limit = MAX_LOOP_WORK / 7;
        assert_eq!(picked(&func(&count(limit as u32))), vec![0]);
        assert_eq!(picked(&func(&count(limit as u32 + 1))), Vec::<usize>::new());
    }
}
