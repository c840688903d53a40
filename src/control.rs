//! Live control of a running guest over a Unix socket.
//!
//! `wasm-patch run --control SOCKET` serves this protocol while the guest
//! runs; `apply`, `status`, `list`, `revert`, `reverse` and `force` are its
//! clients.
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
//! | `{"op":"revert","id":N,"timeout_ms":N,"wait":B}` | `patch`, `outcome` |
//! | `{"op":"reverse","wait":B}` | `patch`, `outcome` |
//! | `{"op":"force"}` | `patch` |
//! | `{"op":"status"}` | `applied`, `transition`, `last_transition`, `threads`, `events` |
//! | `{"op":"list"}` | `applied` |
//!
//! `wait` defaults to true: the reply is sent when the transition ends, and
//! the server keeps running the guest meanwhile. A client that disconnects
//! before then changes nothing: the transition runs to completion (or to
//! its timeout). Requests are bounded ([`MAX_REQUEST_BYTES`], bundles
//! [`MAX_BUNDLE_BYTES`]); a malformed request gets an error reply and never
//! stops the guest.

use anyhow::{bail, Context};
use patch_format::names::readable;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasm_patch_runtime::{
    ApplyOptions, Blocker, Direction, FrameInfo, Instance, PatchError, PatchId, RunState, Store,
    ThreadPatchState, TransitionOutcome, TransitionStatus,
};

/// Largest bundle accepted over the socket.
pub const MAX_BUNDLE_BYTES: usize = 64 << 20;
/// Largest request line (a hex-encoded bundle plus room for the rest).
pub const MAX_REQUEST_BYTES: usize = 2 * MAX_BUNDLE_BYTES + (1 << 20);
/// Connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Bytes read from one connection per poll, so that a fast client cannot
/// starve the guest.
const READ_BUDGET: usize = 8 << 20;
/// How many of the latest patch events `status` returns.
const STATUS_EVENTS: usize = 50;

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
  2  usage error
  3  the transition was reversed (by --timeout, or by a `reverse` request)
     and rolled back; the blockers are printed
  4  busy: another transition is in progress; retry later
  5  refused: wrong target, missing base or state, signature or policy,
     a rule violation; do not retry
  6  already applied (the message names the patch)
  7  cannot reach the control server";

/// The exit status for an error reply of kind `kind` (the `kind` field of
/// a reply; `None` for errors without one, such as malformed requests).
pub fn exit_for_kind(kind: Option<&str>) -> i32 {
    match kind {
        Some("busy") => EXIT_BUSY,
        Some("already_applied") => EXIT_ALREADY_APPLIED,
        Some(
            "format" | "wrong_target" | "incompatible" | "missing_state" | "vetoed" | "compile"
            | "revert_refused" | "forced" | "policy" | "unknown_patch" | "no_transition",
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

fn ms(d: Duration) -> f64 {
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

fn run_state_name(s: RunState) -> &'static str {
    match s {
        RunState::Ready => "ready",
        RunState::Running => "running",
        RunState::Sleeping => "sleeping",
        RunState::Parked => "parked",
        RunState::Done => "done",
    }
}

fn frame_json(f: &FrameInfo) -> Value {
    json!({"name": f.name, "func_index": f.func_index, "unit": f.unit, "offset": f.offset})
}

fn blockers_json(bs: &[Blocker]) -> Value {
    Value::Array(
        bs.iter()
            .map(|b| {
                json!({
                    "thread": b.thread.0,
                    "frame": frame_json(&b.frame),
                    "backtrace": b.backtrace.iter().map(frame_json).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn outcome_json(o: &TransitionOutcome) -> Value {
    json!({
        "patch": o.patch.0,
        "direction": direction_name(o.direction),
        "reversed": o.reversed,
        "forced": o.forced,
        "elapsed_ms": ms(o.elapsed),
        "blockers": blockers_json(&o.blockers),
    })
}

fn status_json(t: &TransitionStatus) -> Value {
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

fn error_kind(e: &PatchError) -> &'static str {
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
        PatchError::FromGuest => "from_guest",
    }
}

fn error_reply(msg: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": msg.to_string()})
}

fn patch_error_reply(e: &PatchError) -> Value {
    json!({"ok": false, "error": e.to_string(), "kind": error_kind(e)})
}

/// The reply for a transition that ended with `o`.
fn finished_reply(op: &str, o: &TransitionOutcome) -> Value {
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

// ---------------------------------------------------------------------------
// Server

struct Conn {
    id: u64,
    stream: UnixStream,
    inbuf: Vec<u8>,
    /// Bytes of `inbuf` already searched for a newline.
    scanned: usize,
    outbuf: Vec<u8>,
    /// The client closed its side, or sent something we stopped reading.
    read_closed: bool,
    /// Writing failed: the client is gone.
    dead: bool,
}

impl Conn {
    fn reply(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        line.push(b'\n');
        self.outbuf.extend_from_slice(&line);
    }

    /// Reads what is available (within the budget); returns complete lines.
    fn read_lines(&mut self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        if self.read_closed || self.dead {
            return lines;
        }
        let mut buf = [0u8; 64 * 1024];
        let mut got = 0;
        while got < READ_BUDGET {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.read_closed = true;
                    break;
                }
                Ok(n) => {
                    got += n;
                    self.inbuf.extend_from_slice(&buf[..n]);
                    if self.inbuf.len() - self.scanned > MAX_REQUEST_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.read_closed = true;
                    self.dead = true;
                    break;
                }
            }
        }
        while let Some(pos) = self.inbuf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + pos;
            let line: Vec<u8> = self.inbuf.drain(..=end).take(end).collect();
            self.scanned = 0;
            lines.push(line);
        }
        self.scanned = self.inbuf.len();
        if self.inbuf.len() > MAX_REQUEST_BYTES {
            // Answer once and stop reading: the rest of the line is junk.
            self.inbuf = Vec::new();
            self.scanned = 0;
            self.read_closed = true;
            self.reply(&error_reply(format!(
                "request too large: more than {MAX_REQUEST_BYTES} bytes without a newline"
            )));
        } else if self.read_closed && !self.inbuf.is_empty() {
            // A last request without its newline.
            lines.push(std::mem::take(&mut self.inbuf));
            self.scanned = 0;
        }
        lines
    }

    fn flush(&mut self) {
        while !self.outbuf.is_empty() && !self.dead {
            match self.stream.write(&self.outbuf) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
    }
}

/// A client waiting for the end of a transition.
struct Waiter {
    conn: u64,
    op: &'static str,
    patch: PatchId,
    /// Bundle name and id, for the reply.
    names: Option<(String, String)>,
}

/// The control endpoint of one `run`: a listening socket and its clients.
/// Everything happens on the thread that owns the store, between guest time
/// slices ([`Server::poll`], [`Server::after_steps`]).
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket we created, so that `Drop` removes
    /// only our own file.
    ident: (u64, u64),
    conns: Vec<Conn>,
    next_conn: u64,
    waiters: Vec<Waiter>,
    /// The host's signature policy (`run --trusted-key`): when set, every
    /// bundle must be signed by one of these keys, whatever the request.
    policy: Option<patch_format::TrustedKeys>,
}

impl Server {
    /// Refuse, from now on, every bundle not signed by one of `keys`, like
    /// the kernel's `module.sig_enforce` (a client's own `trusted_keys` is
    /// an extra check on top).
    pub fn require_signatures(&mut self, keys: patch_format::TrustedKeys) {
        self.policy = Some(keys);
    }

    /// Creates the socket at `path`, readable and writable by the owner only
    /// (mode 0600). Refuses when a server already answers there, or when the
    /// path is something other than a socket; replaces a stale socket that
    /// nobody answers.
    ///
    /// # Errors
    /// Refusals above, and I/O errors.
    pub fn bind(path: &Path) -> anyhow::Result<Server> {
        // `sockaddr_un.sun_path` holds 108 bytes with the final NUL: a longer
        // path could be created (through the short temporary name below)
        // but no client could ever connect to it.
        const SUN_PATH_MAX: usize = 107;
        let len = path.as_os_str().len();
        if len > SUN_PATH_MAX {
            bail!(
                "control socket path {} is {len} bytes long, but a Unix socket path holds at most \
                 {SUN_PATH_MAX}: no client could connect to it; use a shorter path",
                path.display()
            );
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.file_type().is_socket() {
                    bail!(
                        "{} exists and is not a socket; refusing to replace it",
                        path.display()
                    );
                }
                match UnixStream::connect(path) {
                    Ok(_) => bail!(
                        "another control server is already listening on {}",
                        path.display()
                    ),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        // Stale: its server is gone.
                        match std::fs::remove_file(path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => {
                                return Err(e).with_context(|| {
                                    format!("removing stale socket {}", path.display())
                                })
                            }
                        }
                    }
                    Err(e) => bail!(
                        "{} exists and cannot be checked ({e}); refusing to replace it",
                        path.display()
                    ),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
        }
        // Bind under a temporary name, restrict it to the owner, then link
        // it into place: the socket is never reachable with wider
        // permissions, and `link` fails rather than replace a socket another
        // server created meanwhile.
        let tmp = path.with_file_name(format!(".wp-control-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener =
            UnixListener::bind(&tmp).with_context(|| format!("binding {}", path.display()))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io::Error::new(
                    e.kind(),
                    "another server created it meanwhile",
                )),
                // File systems without hard links: a plain rename.
                Err(_) => std::fs::rename(&tmp, path),
                ok => ok,
            });
        let _ = std::fs::remove_file(&tmp);
        placed.with_context(|| format!("creating socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            ident: (meta.dev(), meta.ino()),
            conns: Vec::new(),
            next_conn: 1,
            waiters: Vec::new(),
            policy: None,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether some client waits for a transition to end.
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Accepts connections, reads requests and answers them. Returns whether
    /// anything happened (so that the caller does not sleep).
    pub fn poll<T: 'static>(&mut self, store: &mut Store<T>, instance: Instance) -> bool {
        let mut busy = false;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    busy = true;
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let mut c = Conn {
                        id: self.next_conn,
                        stream,
                        inbuf: Vec::new(),
                        scanned: 0,
                        outbuf: Vec::new(),
                        read_closed: false,
                        dead: false,
                    };
                    self.next_conn += 1;
                    if self.conns.len() >= MAX_CONNECTIONS {
                        c.reply(&error_reply(format!(
                            "too many connections (at most {MAX_CONNECTIONS})"
                        )));
                        c.read_closed = true;
                        c.flush();
                        continue;
                    }
                    self.conns.push(c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ECONNABORTED and the like: that client is gone.
                Err(_) => break,
            }
        }
        for i in 0..self.conns.len() {
            let lines = self.conns[i].read_lines();
            let id = self.conns[i].id;
            for line in lines {
                busy = true;
                if let Some(reply) = self.handle(id, &line, store, instance) {
                    self.conns[i].reply(&reply);
                }
            }
            self.conns[i].flush();
        }
        let waiting: Vec<u64> = self.waiters.iter().map(|w| w.conn).collect();
        self.conns.retain(|c| {
            !(c.dead || (c.read_closed && c.outbuf.is_empty() && !waiting.contains(&c.id)))
        });
        busy
    }

    /// Called after guest steps: answers the clients waiting for a
    /// transition that has ended.
    pub fn after_steps<T: 'static>(&mut self, store: &Store<T>) {
        if self.waiters.is_empty() || store.transition_status().is_some() {
            return;
        }
        let outcome = store.last_transition().cloned();
        for w in std::mem::take(&mut self.waiters) {
            let reply = match &outcome {
                Some(o) if o.patch == w.patch => {
                    let mut r = finished_reply(w.op, o);
                    add_names(&mut r, &w.names);
                    r
                }
                _ => error_reply(format!(
                    "{} ended, but its outcome was not recorded",
                    w.patch
                )),
            };
            if let Some(c) = self.conns.iter_mut().find(|c| c.id == w.conn) {
                c.reply(&reply);
                c.flush();
            }
        }
    }

    /// The guest is done: tell the waiting clients, flush replies (briefly)
    /// and remove the socket.
    pub fn shutdown(mut self) {
        for w in std::mem::take(&mut self.waiters) {
            if let Some(c) = self.conns.iter_mut().find(|c| c.id == w.conn) {
                c.reply(&error_reply(format!(
                    "the guest exited before the transition of {} ended",
                    w.patch
                )));
            }
        }
        for c in &mut self.conns {
            if !c.outbuf.is_empty() {
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = c.stream.write_all(&c.outbuf);
            }
        }
        // Drop removes the socket.
    }

    fn handle<T: 'static>(
        &mut self,
        conn: u64,
        line: &[u8],
        store: &mut Store<T>,
        instance: Instance,
    ) -> Option<Value> {
        let Ok(text) = std::str::from_utf8(line) else {
            return Some(error_reply("malformed request: not UTF-8"));
        };
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let req: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Some(error_reply(format!("malformed request: {e}"))),
        };
        let Some(op) = req.get("op").and_then(Value::as_str) else {
            return Some(error_reply(
                "malformed request: expected a JSON object with a string field `op`",
            ));
        };
        let wait = match req.get("wait") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Some(error_reply("malformed request: `wait` must be a boolean")),
        };
        let timeout = match req.get("timeout_ms") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(t) if t.is_finite() && t > 0.0 && t < 1e12 => {
                    Some(Duration::from_secs_f64(t / 1000.0))
                }
                _ => {
                    return Some(error_reply(
                        "malformed request: `timeout_ms` must be a positive number",
                    ))
                }
            },
        };
        match op {
            "ping" => Some(json!({
                "ok": true, "op": "ping",
                "pid": std::process::id(),
                "version": env!("CARGO_PKG_VERSION"),
            })),
            "apply" => self.apply(conn, &req, wait, timeout, store, instance),
            "revert" => {
                let Some(id) = req
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                else {
                    return Some(error_reply(
                        "malformed request: `revert` needs a numeric `id`",
                    ));
                };
                let id = PatchId(id);
                match store.revert(id, timeout) {
                    Ok(()) => self.started(conn, "revert", id, wait, store),
                    Err(e) => Some(patch_error_reply(&e)),
                }
            }
            "reverse" => match store.reverse() {
                Ok(()) => {
                    let id = store
                        .transition_status()
                        .map(|t| t.patch)
                        .or_else(|| store.last_transition().map(|o| o.patch))?;
                    self.started(conn, "reverse", id, wait, store)
                }
                Err(e) => Some(patch_error_reply(&e)),
            },
            "force" => match store.force() {
                Ok(id) => Some(json!({
                    "ok": true, "op": "force", "patch": id.0,
                    "warning": format!("every pending thread was switched without the stack check; {id} can never be reverted"),
                })),
                Err(e) => Some(patch_error_reply(&e)),
            },
            "status" => Some(status(store)),
            "list" => Some(json!({"ok": true, "op": "list", "applied": applied_json(store)})),
            other => Some(error_reply(format!(
                "unknown op `{}`; expected one of ping, apply, revert, reverse, force, status, list",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }

    fn apply<T: 'static>(
        &mut self,
        conn: u64,
        req: &Value,
        wait: bool,
        timeout: Option<Duration>,
        store: &mut Store<T>,
        instance: Instance,
    ) -> Option<Value> {
        let Some(hex) = req.get("bundle").and_then(Value::as_str) else {
            return Some(error_reply(
                "malformed request: `apply` needs `bundle` (the bundle's bytes in hex)",
            ));
        };
        if hex.len() / 2 > MAX_BUNDLE_BYTES {
            return Some(error_reply(format!(
                "bundle too large: {} bytes (at most {MAX_BUNDLE_BYTES})",
                hex.len() / 2
            )));
        }
        let Some(bytes) = from_hex(hex) else {
            return Some(error_reply("malformed request: `bundle` is not valid hex"));
        };
        let immediate = match req.get("immediate") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Some(error_reply(
                    "malformed request: `immediate` must be a boolean",
                ))
            }
        };
        let trusted_keys = match req.get("trusted_keys") {
            None | Some(Value::Null) => None,
            Some(Value::Array(keys)) => {
                let mut t = patch_format::TrustedKeys::new();
                for k in keys {
                    let key = k
                        .as_str()
                        .and_then(from_hex)
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .and_then(|b| patch_format::PublicKey::from_bytes(&b).ok());
                    match key {
                        Some(key) => {
                            t.add(key);
                        }
                        None => {
                            return Some(error_reply(
                                "malformed request: `trusted_keys` holds something other than a 32-byte ed25519 public key in hex",
                            ))
                        }
                    }
                }
                Some(t)
            }
            Some(_) => {
                return Some(error_reply(
                    "malformed request: `trusted_keys` must be an array",
                ))
            }
        };
        if let Some(policy) = &self.policy {
            if let Err(e) = policy.verify(&bytes) {
                return Some(json!({
                    "ok": false,
                    "error": format!("bundle refused by the host's signature policy (run --trusted-key): {e}"),
                    "kind": "policy",
                }));
            }
        }
        let opts = ApplyOptions {
            trusted_keys,
            immediate,
            timeout,
        };
        match store.apply(instance, &bytes, &opts) {
            Ok(id) => {
                // Named now: a rolled-back bundle is no longer listed later.
                let names = store
                    .applied()
                    .into_iter()
                    .find(|a| a.id == id)
                    .map(|a| (a.name, a.bundle_id));
                let mut reply = self.started(conn, "apply", id, wait, store);
                match reply.as_mut() {
                    Some(r) => add_names(r, &names),
                    None => {
                        if let Some(w) = self.waiters.last_mut() {
                            w.names = names;
                        }
                    }
                }
                reply
            }
            Err(e) => Some(patch_error_reply(&e)),
        }
    }

    /// A transition for `id` started: answer now, or register the client to
    /// be answered when it ends.
    fn started<T: 'static>(
        &mut self,
        conn: u64,
        op: &'static str,
        id: PatchId,
        wait: bool,
        store: &Store<T>,
    ) -> Option<Value> {
        match store.transition_status() {
            None => Some(match store.last_transition() {
                Some(o) if o.patch == id => finished_reply(op, o),
                _ => json!({"ok": true, "op": op, "patch": id.0}),
            }),
            Some(t) if !wait => Some(json!({
                "ok": true, "op": op, "patch": id.0, "transition": status_json(&t),
            })),
            Some(_) => {
                self.waiters.push(Waiter {
                    conn,
                    op,
                    patch: id,
                    names: None,
                });
                None
            }
        }
    }
}

fn add_names(reply: &mut Value, names: &Option<(String, String)>) {
    if let Some((name, bundle_id)) = names {
        reply["name"] = json!(name);
        reply["bundle_id"] = json!(bundle_id);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn applied_json<T: 'static>(store: &Store<T>) -> Value {
    Value::Array(
        store
            .applied()
            .iter()
            .map(|a| {
                json!({
                    "id": a.id.0,
                    "name": a.name,
                    "bundle_id": a.bundle_id,
                    "functions": a.functions,
                    "forced": a.forced,
                    "in_transition": a.in_transition,
                    "data": a.data.as_ref().map(|d| json!({
                        "base": d.base,
                        "size": d.size,
                        "pages_grown": d.pages_grown,
                        "objects": d.objects.iter().map(|(n, at)| json!({ "name": n, "address": at })).collect::<Vec<_>>(),
                        "table_base": d.table_base,
                        "table_entries": d.table_entries,
                    })),
                })
            })
            .collect(),
    )
}

fn status<T: 'static>(store: &Store<T>) -> Value {
    let threads: Vec<Value> = store
        .threads()
        .into_iter()
        .map(|t| {
            json!({
                "id": t.0,
                "state": store.thread_state(t).map(run_state_name),
                "patch_state": store
                    .thread_patch_state(t)
                    .unwrap_or(ThreadPatchState::None)
                    .as_i32(),
                "backtrace": store
                    .backtrace(t)
                    .unwrap_or_default()
                    .iter()
                    .map(|f| f.name.clone())
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let events = store.events();
    let recent: Vec<String> = events
        .iter()
        .skip(events.len().saturating_sub(STATUS_EVENTS))
        .map(|e| e.to_string())
        .collect();
    json!({
        "ok": true,
        "op": "status",
        "applied": applied_json(store),
        "transition": store.transition_status().as_ref().map(status_json),
        "last_transition": store.last_transition().map(outcome_json),
        "threads": threads,
        "events": recent,
        "events_total": events.len(),
    })
}

// ---------------------------------------------------------------------------
// Client

/// Sends one request to the server at `socket` and returns its reply.
///
/// # Errors
/// No server there, or the connection broke before a reply.
pub fn request(socket: &Path, req: &Value) -> anyhow::Result<Value> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        anyhow::Error::new(Unreachable(format!(
            "cannot reach a control server at {} ({e}); start one with `wasm-patch run --control {} FILE`",
            socket.display(),
            socket.display()
        )))
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .with_context(|| format!("sending the request to {}", socket.display()))?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader
        .read_line(&mut reply)
        .with_context(|| format!("reading the reply from {}", socket.display()))?;
    if reply.trim().is_empty() {
        bail!(
            "the control server at {} closed the connection without replying (did the guest exit?)",
            socket.display()
        );
    }
    serde_json::from_str(&reply).context("the control server sent a malformed reply")
}

/// Options every control verb shares.
#[derive(clap::Args, Clone, Debug)]
pub struct ControlOpts {
    /// The control socket of a running `wasm-patch run --control SOCKET`.
    #[arg(long, value_name = "SOCKET")]
    pub control: PathBuf,
    /// Print the server's reply as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints a reply as JSON (for `--json`).
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// The error message of an error reply.
pub fn reply_error(v: &Value) -> Option<&str> {
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        None
    } else {
        Some(
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("the server refused the request"),
        )
    }
}

/// Human-readable lines for a blocker list (reply JSON).
pub fn format_blockers(blockers: &Value, indent: &str) -> String {
    let mut out = String::new();
    for b in blockers.as_array().into_iter().flatten() {
        let frame = &b["frame"];
        out.push_str(&format!(
            "{indent}thread {} is blocked in `{}` (func {}, offset {:#x})\n",
            b["thread"],
            readable(frame["name"].as_str().unwrap_or("?")),
            frame["func_index"],
            frame["offset"].as_u64().unwrap_or(0)
        ));
        out.push_str(&format!("{indent}  backtrace (innermost first):\n"));
        for (i, f) in b["backtrace"].as_array().into_iter().flatten().enumerate() {
            out.push_str(&format!(
                "{indent}    {i:>3}: {}{}\n",
                readable(f["name"].as_str().unwrap_or("?")),
                if f == frame { "   <- blocks" } else { "" }
            ));
        }
    }
    out
}

/// Prints the end of a transition (`outcome` of a reply) for humans and
/// returns the exit status.
pub fn report_outcome(what: &str, reply: &Value) -> i32 {
    let o = &reply["outcome"];
    let elapsed = o["elapsed_ms"].as_f64().unwrap_or(0.0);
    if o["reversed"].as_bool() == Some(true) {
        eprintln!(
            "error: {}",
            reply_error(reply).unwrap_or("the transition was reversed")
        );
        let n = o["blockers"].as_array().map_or(0, Vec::len);
        if n > 0 {
            eprintln!("blocked by {n} thread(s):");
            eprint!("{}", format_blockers(&o["blockers"], "  "));
        }
        EXIT_REVERSED
    } else {
        let forced = if o["forced"].as_bool() == Some(true) {
            " (forced)"
        } else {
            ""
        };
        println!("{what}: transition completed{forced} in {elapsed:.3} ms");
        EXIT_OK
    }
}

/// Prints the reply of a transition-starting request (apply, revert,
/// reverse) and returns the exit status.
pub fn report_transition(what: &str, reply: &Value, json: bool) -> i32 {
    if json {
        print_json(reply);
        return if reply.get("outcome").and_then(|o| o["reversed"].as_bool()) == Some(true) {
            EXIT_REVERSED
        } else if reply_error(reply).is_some() {
            exit_for_reply(reply)
        } else {
            EXIT_OK
        };
    }
    if reply.get("outcome").is_some() {
        return report_outcome(what, reply);
    }
    if let Some(e) = reply_error(reply) {
        eprintln!("error: {e}");
        return exit_for_reply(reply);
    }
    if let Some(t) = reply.get("transition") {
        println!(
            "{what}: transition started ({} pending, {} switched); follow it with `wasm-patch status`",
            t["pending"], t["switched"]
        );
    } else {
        println!("{what}: done");
    }
    EXIT_OK
}
