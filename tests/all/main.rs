//! Integration tests of the runtime's embedding API: calls through slots,
//! traps, guest threads, exact stacks, and the host API.

mod adversarial;
mod api;
mod bench_cli;
mod bundle_data;
mod bundles;
mod callbacks;
mod cli_control;
mod concurrency;
mod differential;
mod dyn_rust;
mod embedding;
mod fleet;
mod fleet_rollout;
mod frame_scan;
mod guest_stacks;
mod inline;
mod inline_random;
mod lifecycle;
mod patch_equivalence;
mod random_ops;
mod real_rust;
mod simd;
mod slots;
mod stacks;
mod threads;
mod transfer;
mod transfer_forged;
mod transfer_params;
mod transfer_random;
mod transfer_reentry;
mod transfer_rust;
mod transfer_stacked;
mod transitions;
mod traps;

use std::time::Duration;
use wasm_patch_runtime::{Error, FrameInfo, Trap, Val};

/// The trap of a call that must have trapped.
#[track_caller]
pub(crate) fn trap_of<R: std::fmt::Debug>(r: Result<R, Error>) -> Trap {
    match r {
        Err(Error::Trap(t)) => t,
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// Frame names, innermost first.
pub(crate) fn names(frames: &[FrameInfo]) -> Vec<&str> {
    frames.iter().map(|f| f.name.as_str()).collect()
}

/// The single i32 result of a call.
#[track_caller]
pub(crate) fn i32_of(r: Result<Vec<Val>, Error>) -> i32 {
    match r {
        Ok(v) if v.len() == 1 => v[0].i32().expect("an i32 result"),
        other => panic!("expected one i32 result, got {other:?}"),
    }
}

/// Run `f` on its own OS thread and fail if it takes longer than `limit`
/// (a runtime that never preempts would otherwise hang the test binary).
pub(crate) fn with_timeout<R: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("did not finish within {limit:?}"),
    }
}
