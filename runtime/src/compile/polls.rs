//! Which functions of a module poll at entry.
//!
//! A poll bounds how long a thread runs without looking at its poll word
//! (preemption, switch requests, cancellation). Every loop header polls
//! (but those of short counted loops, `loop_bounds.rs`, which contain no
//! call and run like straight-line code), so what remains is work done
//! through calls: recursion (a cycle in the call
//! graph, `fib`) and call trees that fan out without loops (`f` calls `g`
//! twice, `g` calls `h` twice, ...). Polling at the entry of every function
//! that calls bounds both, but costs a load and a branch on every call, and
//! most calls go to functions that can never be part of either.
//!
//! So a function of the module polls at entry only when it must:
//!
//! - **cost**: the number of calls one activation can make before it polls
//!   or returns, counting each call site once (a site runs again only after
//!   a loop back-edge, which polls) and adding a callee's own cost when the
//!   callee does not poll. A function whose cost exceeds [`MAX_CALLS`]
//!   polls, and then costs its callers 1. Calls to imports and indirect
//!   calls count [`MAX_CALLS`]: their callee is unknown here.
//! - **cycles**: the depth-first walk that computes costs marks the target
//!   of every back edge as polling, so every cycle of the call graph (every
//!   recursion) contains a polling function.
//!
//! Every stretch of execution between two polls therefore makes at most
//! about `MAX_CALLS` calls per frame it returns through, and frames are
//! bounded by the stack.
//!
//! Patch bundles keep this true without redoing the analysis: a bundle
//! function polls at entry whenever it calls or loops (`compile_bundle`), so
//! a replaced callee costs its old callers at most 1, and a new cycle through
//! a bundle function contains a polling function.

use crate::errors::Error;
use crate::module::ModuleInfo;
use wasmparser::{FunctionBody, Operator};

/// The most calls a non-polling function may make between polls, its
/// callees' calls included.
pub(crate) const MAX_CALLS: u32 = 32;

/// One call site of a function body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Site {
    /// A direct call of a function defined in the module (its index).
    Defined(u32),
    /// A call of an import, or an indirect call.
    Unknown,
}

/// For every defined function of `info` (in order), whether it polls at
/// entry.
///
/// # Errors
/// [`Error::Compile`] if a body cannot be read (bodies are validated first,
/// so this does not happen for a module that parsed).
pub(crate) fn entry_polls(info: &ModuleInfo) -> Result<Vec<bool>, Error> {
    let imported = info.num_imported_funcs;
    let sites = info
        .bodies
        .iter()
        .enumerate()
        .map(|(i, range)| {
            let body = FunctionBody::new(wasmparser::BinaryReader::new(
                &info.bytes[range.clone()],
                range.start as u64,
            ));
            call_sites(&body, imported).map_err(|e| {
                Error::Compile(format!(
                    "function {}: {e}",
                    info.func_name(imported + i as u32)
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(decide(&sites))
}

/// The call sites of one body, in order (defined callees renumbered from 0).
fn call_sites(
    body: &FunctionBody<'_>,
    imported: u32,
) -> Result<Vec<Site>, wasmparser::BinaryReaderError> {
    let mut sites = Vec::new();
    for op in body.get_operators_reader()? {
        match op? {
            Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                sites.push(match function_index.checked_sub(imported) {
                    Some(d) => Site::Defined(d),
                    None => Site::Unknown,
                });
            }
            Operator::CallIndirect { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. } => sites.push(Site::Unknown),
            _ => {}
        }
    }
    Ok(sites)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Active,
    Done,
}

/// The decision over a call graph given as each function's call sites.
/// Iterative: a long call chain must not overflow the host stack.
fn decide(sites: &[Vec<Site>]) -> Vec<bool> {
    let n = sites.len();
    let mut polls = vec![false; n];
    let mut cost = vec![0u32; n];
    let mut visit = vec![Visit::New; n];
    // (function, next site, calls so far)
    let mut stack: Vec<(usize, usize, u32)> = Vec::new();
    for root in 0..n {
        if visit[root] != Visit::New {
            continue;
        }
        visit[root] = Visit::Active;
        stack.push((root, 0, 1));
        while let Some(top) = stack.last_mut() {
            let (f, next, acc) = *top;
            if let Some(&site) = sites[f].get(next) {
                top.1 += 1;
                let add = match site {
                    Site::Unknown => MAX_CALLS,
                    Site::Defined(g) => {
                        let g = g as usize;
                        match visit.get(g).copied() {
                            // Out of range only in a body that failed
                            // validation: treat it as unknown.
                            None => MAX_CALLS,
                            Some(Visit::New) => {
                                visit[g] = Visit::Active;
                                stack.push((g, 0, 1));
                                continue;
                            }
                            // A back edge: `g` closes a cycle and polls.
                            Some(Visit::Active) => {
                                polls[g] = true;
                                1
                            }
                            Some(Visit::Done) if polls[g] => 1,
                            Some(Visit::Done) => cost[g],
                        }
                    }
                };
                top.2 = acc.saturating_add(add);
                continue;
            }
            stack.pop();
            visit[f] = Visit::Done;
            cost[f] = acc;
            if acc > MAX_CALLS {
                polls[f] = true;
            }
            if let Some(parent) = stack.last_mut() {
                let add = if polls[f] { 1 } else { cost[f] };
                parent.2 = parent.2.saturating_add(add);
            }
        }
    }
    polls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> ModuleInfo {
        crate::module::parse(wat::parse_str(wat).expect("wat")).expect("parse")
    }

    #[test]
    fn leaves_chains_and_loops_do_not_poll() {
        let info = module(
            r#"(module
              (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
              (func $chain (param i32) (result i32) (call $leaf (local.get 0)))
              (func $looper (param i32) (result i32)
                (loop $l (br_if $l (i32.eqz (call $chain (local.get 0)))))
                (i32.const 0)))"#,
        );
        assert_eq!(entry_polls(&info).unwrap(), vec![false, false, false]);
    }

    #[test]
    fn recursion_polls_somewhere_in_every_cycle() {
        let info = module(
            r#"(module
              (func $fib (param i32) (result i32)
                (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
                  (then (local.get 0))
                  (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                                 (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
              (func $even (param i32) (result i32)
                (if (result i32) (local.get 0)
                  (then (call $odd (i32.sub (local.get 0) (i32.const 1)))) (else (i32.const 1))))
              (func $odd (param i32) (result i32)
                (if (result i32) (local.get 0)
                  (then (call $even (i32.sub (local.get 0) (i32.const 1)))) (else (i32.const 0)))))"#,
        );
        let polls = entry_polls(&info).unwrap();
        assert!(polls[0], "self-recursion");
        assert!(polls[1] || polls[2], "mutual recursion: {polls:?}");
    }

    #[test]
    fn a_fan_out_tree_polls_before_it_grows_past_the_bound() {
        // f0 calls f1 twice, f1 calls f2 twice, ...: f0 makes 2^k calls.
        let depth = 10;
        let mut funcs = String::new();
        for i in 0..depth {
            if i + 1 == depth {
                funcs.push_str(&format!("(func $f{i})\n"));
            } else {
                let j = i + 1;
                funcs.push_str(&format!("(func $f{i} (call $f{j}) (call $f{j}))\n"));
            }
        }
        let info = module(&format!("(module {funcs})"));
        let polls = entry_polls(&info).unwrap();
        let sites: Vec<Vec<Site>> = (0..depth)
            .map(|i| {
                if i + 1 == depth {
                    vec![]
                } else {
                    vec![Site::Defined(i + 1), Site::Defined(i + 1)]
                }
            })
            .collect();
        assert_eq!(polls, decide(&sites));
        // Walk down from the root: between two polls, at most MAX_CALLS.
        let mut cost = vec![0u32; depth as usize];
        for i in (0..depth as usize).rev() {
            let callee = if i + 1 < depth as usize {
                if polls[i + 1] {
                    1
                } else {
                    cost[i + 1]
                }
            } else {
                0
            };
            cost[i] = 1 + 2 * callee;
            assert!(polls[i] || cost[i] <= MAX_CALLS, "f{i} costs {}", cost[i]);
        }
        assert!(polls.iter().any(|&p| p), "2^{depth} calls without a poll");
        assert!(!polls[depth as usize - 1], "the leaf need not poll");
    }

    #[test]
    fn imports_and_indirect_calls_count_as_unknown() {
        let info = module(
            r#"(module
              (import "h" "f" (func $host))
              (type $t (func))
              (table 1 funcref)
              (func $calls_host (call $host))
              (func $calls_table (call_indirect (type $t) (i32.const 0)))
              (func $plain))"#,
        );
        assert_eq!(entry_polls(&info).unwrap(), vec![true, true, false]);
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_host_stack() {
        let n = 200_000u32;
        let sites: Vec<Vec<Site>> = (0..n)
            .map(|i| {
                if i + 1 < n {
                    vec![Site::Defined(i + 1)]
                } else {
                    vec![]
                }
            })
            .collect();
        let polls = decide(&sites);
        // Every MAX_CALLS-th function up the chain polls.
        let count = polls.iter().filter(|&&p| p).count() as u32;
        assert!(
            count >= n / (MAX_CALLS + 1) - 1 && count <= n / MAX_CALLS + 1,
            "{count}"
        );
    }
}
