//! The patch operations the random-sequence tests share
//! (`inline_random.rs`, `transfer_stacked.rs`): apply one of several
//! bundles, revert any applied one, reverse, each only when the store is
//! in a state that allows it, so that every generated sequence is legal.

use std::collections::HashMap;
use std::time::Duration;
use wasm_patch_runtime::*;

/// One patch operation; the `bool`s ask for a zero timeout.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PatchOp {
    /// Apply bundle `k` (when no transition runs and it is not applied).
    Apply(u8, bool),
    /// Revert the applied bundle with this index, modulo their number
    /// (when no transition runs).
    Revert(u8, bool),
    /// Reverse the transition in progress (when one runs).
    Reverse,
}

/// Run `op` on `inst`'s bundles `bytes`; `kinds` records which bundle each
/// applied patch id is. An error from the store is the test's failure.
pub(crate) fn patch_op<T: 'static>(
    store: &mut Store<T>,
    inst: Instance,
    bytes: &[Vec<u8>],
    kinds: &mut HashMap<PatchId, usize>,
    op: PatchOp,
) -> Result<(), String> {
    let quiet = store.transition_patch().is_none();
    let applied: Vec<PatchId> = store.applied().iter().map(|a| a.id).collect();
    let timeout = |zero: bool| zero.then_some(Duration::ZERO);
    match op {
        PatchOp::Apply(k, zero) => {
            let k = k as usize;
            if quiet && !applied.iter().any(|p| kinds.get(p) == Some(&k)) {
                let opts = ApplyOptions {
                    timeout: timeout(zero),
                    ..ApplyOptions::default()
                };
                let p = store
                    .apply(inst, &bytes[k], &opts)
                    .map_err(|e| e.to_string())?;
                kinds.insert(p, k);
            }
        }
        PatchOp::Revert(i, zero) => {
            if quiet && !applied.is_empty() {
                let p = applied[i as usize % applied.len()];
                store.revert(p, timeout(zero)).map_err(|e| e.to_string())?;
            }
        }
        PatchOp::Reverse => {
            if !quiet {
                store.reverse().map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}
