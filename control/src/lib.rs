//! Live control of a running guest over a Unix socket.
//!
//! `wasm-patch run --control SOCKET` serves this protocol while the guest
//! runs; `apply`, `status`, `list`, `revert`, `reverse` and `force` are its
//! clients. A host that embeds the runtime serves it for its own store with
//! this library alone (no CLI, no clap, no text parser): [`Server::bind`],
//! then in its loop [`Server::poll`], its guest steps, and
//! [`Server::after_steps`]; [`Server::shutdown`] at the end
//! (`tests/host.rs` is a complete host).
//!
//! # Protocol
//!
//! One JSON object per line in each direction; every request gets exactly
//! one reply line. A reply has `"ok": true` and the operation's fields, or
//! `"ok": false` and an `"error"` message (plus `"kind"` for refused patch
//! operations, and `"outcome"` when a transition was rolled back).
//!
//! | request | reply |
//! |---|---|
//! | `{"op":"ping"}` | `pid`, `version` |
//! | `{"op":"apply","bundle":HEX,"immediate":B,"timeout_ms":N,"trusted_keys":[HEX],"wait":B}` | `patch`, `name`, `bundle_id`, `outcome` (or `transition` when `wait` is false) |
//! | `{"op":"revert","patch":SEL,"timeout_ms":N,"wait":B}` (or `"id":N`) | `patch`, `outcome` |
//! | `{"op":"reverse","wait":B}` | `patch`, `outcome` |
//! | `{"op":"force"}` | `patch` |
//! | `{"op":"status","patch":SEL}` (`patch` optional) | `applied`, `transition`, `last_transition`, `threads`, `events`; `selected` with `patch` |
//! | `{"op":"list"}` | `applied` |
//!
//! `SEL` is a patch selector ([`select`]): the per-process number, the
//! bundle id or a unique prefix of it, or the bundle's name.
//!
//! `wait` defaults to true: the reply is sent when the transition ends, and
//! the server keeps running the guest meanwhile. A client that disconnects
//! before then changes nothing: the transition runs to completion (or to
//! its timeout). Requests are bounded ([`MAX_REQUEST_BYTES`] each,
//! [`MAX_BUFFERED_BYTES`] for all connections together, bundles
//! [`MAX_BUNDLE_BYTES`]); a malformed request gets an error reply and never
//! stops the guest.

use patch_format::names::readable;
use serde_json::{json, Value};
use std::time::Duration;
use wasm_patch_runtime::{
    Blocker, Direction, FrameInfo, PatchError, RunState, TransitionOutcome, TransitionStatus,
};

/// Largest bundle accepted over the socket.
pub const MAX_BUNDLE_BYTES: usize = 8 << 20;
/// Largest request line (a hex-encoded bundle plus room for the rest): the
/// most one connection may hold of an unfinished request. A longer one is
/// refused and its connection closed.
pub const MAX_REQUEST_BYTES: usize = 2 * MAX_BUNDLE_BYTES + (64 << 10);
/// The most all connections together may hold of unfinished requests, so
/// that [`MAX_CONNECTIONS`] clients cannot make the server hold gigabytes:
/// a connection whose partial request would pass it is refused and closed.
pub const MAX_BUFFERED_BYTES: usize = 64 << 20;
/// Connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Bytes read from one connection per poll, so that a fast client cannot
/// starve the guest.
pub(crate) const READ_BUDGET: usize = 8 << 20;
/// How many of the latest patch events `status` returns.
pub(crate) const STATUS_EVENTS: usize = 50;

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: any other error.
pub const EXIT_ERROR: i32 = 1;
/// Exit status: bad command line (clap's own).
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the transition was reversed (by the timeout or on request).
pub const EXIT_REVERSED: i32 = 3;
/// Exit status: busy, another transition is in progress; retry later.
pub const EXIT_BUSY: i32 = 4;
/// Exit status: refused for good (wrong target, missing base or state,
/// signature or policy, a rule of the consistency model); do not retry.
pub const EXIT_REFUSED: i32 = 5;
/// Exit status: this bundle is applied already.
pub const EXIT_ALREADY_APPLIED: i32 = 6;
/// Exit status: no control server answers at the socket.
pub const EXIT_UNREACHABLE: i32 = 7;

/// The `Exit status` section of every control verb's `--help`.
pub const EXIT_CODES_HELP: &str = "Exit status:
  0  success (for apply/revert/reverse: the transition completed)
  1  any other error (e.g. the guest exited before the transition completed)
  2  usage error (also a patch selector matching several bundles)
  3  the transition was reversed (by --timeout, or by a `reverse` request)
     and rolled back; the blockers are printed
  4  busy: another transition is in progress; retry later (also
     `status --check` while a transition is in progress)
  5  refused: wrong target, missing base or state, signature or policy,
     a rule violation; do not retry
  6  already applied (the message names the patch)
  7  cannot reach the control server";

/// The exit status for an error reply of kind `kind` (the `kind` field of
/// a reply; `None` for errors without one, such as malformed requests).
pub fn exit_for_kind(kind: Option<&str>) -> i32 {
    match kind {
        Some("busy") => EXIT_BUSY,
        Some("ambiguous" | "usage") => EXIT_USAGE,
        Some("already_applied") => EXIT_ALREADY_APPLIED,
        Some(
            "format" | "wrong_target" | "incompatible" | "missing_state" | "vetoed" | "compile"
            | "revert_refused" | "forced" | "policy" | "unknown_patch" | "no_transition"
            | "inlined_on_stack",
        ) => EXIT_REFUSED,
        _ => EXIT_ERROR,
    }
}

/// The exit status for a failed reply.
pub fn exit_for_reply(reply: &Value) -> i32 {
    exit_for_kind(reply.get("kind").and_then(Value::as_str))
}

/// No control server answers at a socket (exit status 7).
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

// ---------------------------------------------------------------------------
// Encoding helpers

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    patch_format::hex(bytes)
}

/// Decodes hex (either case); `None` if malformed.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|c| Some((nibble(c[0])? << 4) | nibble(c[1])?))
        .collect()
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `patch`, `unpatch` or `replace`.
pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Patch => "patch",
        Direction::Unpatch => "unpatch",
        Direction::Replace => "replace",
    }
}

pub(crate) fn run_state_name(s: RunState) -> &'static str {
    match s {
        RunState::Ready => "ready",
        RunState::Running => "running",
        RunState::Sleeping => "sleeping",
        RunState::Parked => "parked",
        RunState::Done => "done",
    }
}

pub(crate) fn frame_json(f: &FrameInfo) -> Value {
    json!({"name": f.name, "func_index": f.func_index, "unit": f.unit, "offset": f.offset})
}

pub(crate) fn blockers_json(bs: &[Blocker]) -> Value {
    Value::Array(
        bs.iter()
            .map(|b| {
                let mut v = json!({
                    "thread": b.thread.0,
                    "frame": frame_json(&b.frame),
                    "backtrace": b.backtrace.iter().map(frame_json).collect::<Vec<_>>(),
                });
                // Why it waits in a loop, and whether a transfer map helps
                // (docs/transfer.md).
                if let Some(l) = &b.in_loop {
                    v["loop"] = json!({
                        "function": l.function,
                        "mapped": l.mapped,
                        "stuck": l.stuck,
                        "parked": l.parked,
                        "text": l.to_string(),
                    });
                }
                v
            })
            .collect(),
    )
}

pub(crate) fn outcome_json(o: &TransitionOutcome) -> Value {
    json!({
        "patch": o.patch.0,
        "direction": direction_name(o.direction),
        "reversed": o.reversed,
        "forced": o.forced,
        "elapsed_ms": ms(o.elapsed),
        "blockers": blockers_json(&o.blockers),
    })
}

pub(crate) fn status_json(t: &TransitionStatus) -> Value {
    json!({
        "patch": t.patch.0,
        "direction": direction_name(t.direction),
        "pending": t.pending,
        "switched": t.switched,
        "elapsed_ms": ms(t.elapsed),
        "reversed": t.reversed,
        "phase": t.phase.name(),
        "blockers": blockers_json(&t.blockers),
    })
}

/// The `kind` of an error reply for `e` (see [`exit_for_kind`]).
pub fn error_kind(e: &PatchError) -> &'static str {
    match e {
        PatchError::Busy(_) => "busy",
        PatchError::NoTransition => "no_transition",
        PatchError::Format(_) => "format",
        PatchError::WrongTarget { .. } => "wrong_target",
        PatchError::Incompatible(_) => "incompatible",
        PatchError::MissingState(_) => "missing_state",
        PatchError::Vetoed(_) => "vetoed",
        PatchError::Compile(_) => "compile",
        PatchError::Unknown(_) => "unknown_patch",
        PatchError::RevertRefused(..) => "revert_refused",
        PatchError::Forced(_) => "forced",
        PatchError::AlreadyApplied { .. } => "already_applied",
        PatchError::InlinedOnStack { .. } => "inlined_on_stack",
        PatchError::FromGuest => "from_guest",
    }
}

pub(crate) fn error_reply(msg: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": msg.to_string()})
}

pub(crate) fn patch_error_reply(e: &PatchError) -> Value {
    json!({"ok": false, "error": e.to_string(), "kind": error_kind(e)})
}

/// The reply for a transition that ended with `o`.
pub(crate) fn finished_reply(op: &str, o: &TransitionOutcome) -> Value {
    // For a `reverse` request, ending reversed is the success.
    let failed = o.reversed && op != "reverse";
    let mut v = json!({"ok": !failed, "op": op, "patch": o.patch.0, "outcome": outcome_json(o)});
    if failed {
        let why = if o.blockers.is_empty() {
            "on request".to_string()
        } else {
            format!(
                "by the timeout policy, blocked by {} thread(s)",
                o.blockers.len()
            )
        };
        v["error"] = json!(format!(
            "{} was reversed {why} after {:.3} ms and rolled back",
            o.patch,
            ms(o.elapsed)
        ));
    }
    v
}

pub mod audit;
pub mod select;
mod server;

pub use server::Server;

/// Why a control server or its audit log could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket path cannot be served: too long, not a socket, already
    /// served, or replaced meanwhile.
    #[error("{0}")]
    Refused(String),
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (names the path).
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error on the control socket.
    #[error("control socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// `io::Result` with what was being done, as a [`ControlError`].
pub(crate) trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, ControlError>;
}

impl<T> Doing<T> for std::io::Result<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, ControlError> {
        self.map_err(|source| ControlError::Io {
            what: what(),
            source,
        })
    }
}

/// Return a [`ControlError::Refused`] with a formatted message.
macro_rules! refuse {
    ($($t:tt)*) => {
        return Err($crate::ControlError::Refused(format!($($t)*)))
    };
}
pub(crate) use refuse;
