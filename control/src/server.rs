//! The control server: the listening socket, its connections, and the
//! handling of each request between guest time slices.

use super::*;
use crate::audit::{rfc3339, AuditLog, BundleFacts, Peer};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasm_patch_runtime::Event;
use wasm_patch_runtime::{ApplyOptions, Instance, PatchId, Store, ThreadPatchState};

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
    /// The client's credentials (`SO_PEERCRED`), for the audit trail.
    peer: Option<Peer>,
}

impl Conn {
    fn reply(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        line.push(b'\n');
        self.outbuf.extend_from_slice(&line);
    }

    /// Reads what is available (within the budget); returns complete lines.
    /// A partial request longer than `limit` is refused and the connection
    /// closed.
    fn read_lines(&mut self, limit: usize) -> Vec<Vec<u8>> {
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
                    if self.inbuf.len() - self.scanned > limit {
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
        if self.inbuf.len() > limit {
            // Answer once and stop reading: the rest of the line is junk.
            let held = self.inbuf.len();
            self.inbuf = Vec::new();
            self.scanned = 0;
            self.read_closed = true;
            self.reply(&error_reply(if limit < MAX_REQUEST_BYTES {
                format!(
                    "request refused: {held} bytes of it are buffered and the server already holds \
                     most of its {MAX_BUFFERED_BYTES} bytes for unfinished requests of other \
                     connections; the connection is closed, retry later"
                )
            } else {
                format!(
                    "request too large: more than {MAX_REQUEST_BYTES} bytes without a newline; \
                     the connection is closed"
                )
            }));
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
    /// The running module: `{"path": ..., "hash": ...}` (null until set).
    module: Value,
    /// Where audit entries go.
    audit: AuditLog,
    /// What the audit trail knows of each patch (by per-process number).
    known: HashMap<u32, BundleFacts>,
    /// The next transcript event to audit (its `seq`).
    next_event: u64,
    /// A `reverse` was requested in the current transition (a reverse
    /// without one is the timeout policy's).
    reverse_requested: bool,
    /// What the request being handled concerns, for its audit entry.
    note: Note,
}

/// What one request concerns, noted while it is handled.
#[derive(Default)]
struct Note {
    op: Option<String>,
    patch: Option<PatchId>,
    facts: Option<BundleFacts>,
}

impl Server {
    /// Refuse, from now on, every bundle not signed by one of `keys`, like
    /// the kernel's `module.sig_enforce` (a client's own `trusted_keys` is
    /// an extra check on top).
    pub fn require_signatures(&mut self, keys: patch_format::TrustedKeys) {
        self.policy = Some(keys);
    }

    /// Sends audit entries to `log` from now on (by default: stderr only).
    pub fn set_audit_log(&mut self, log: AuditLog) {
        self.audit = log;
    }

    /// Tells the audit trail about patch `id`, applied before the server
    /// started serving (`run --apply`).
    pub fn know(&mut self, id: PatchId, facts: BundleFacts) {
        self.known.insert(id.0, facts);
    }

    /// Audits the transcript events recorded since the last call: start,
    /// blockers, reverse (or timeout), force, completion. Threads switching
    /// are not audited one by one: the completion says the transition
    /// ended.
    pub fn audit_events<T: 'static>(&mut self, store: &Store<T>) {
        let next = self.next_event;
        let mut fresh: Vec<_> = store
            .timed_events()
            .rev()
            .take_while(|e| e.seq >= next)
            .collect();
        fresh.reverse();
        for te in fresh {
            self.next_event = te.seq + 1;
            let (event, patch, mut entry) = match te.event {
                Event::ThreadSwitched(..) => continue,
                Event::Started(p, d) => {
                    self.reverse_requested = false;
                    ("start", *p, json!({"direction": direction_name(*d)}))
                }
                Event::BlockedBy(p, t, f) => (
                    "blocked",
                    *p,
                    json!({"thread": t.0, "function": readable(f)}),
                ),
                Event::Reversed(p) if self.reverse_requested => ("reverse", *p, json!({})),
                Event::Reversed(p) => ("timeout", *p, json!({})),
                Event::Forced(p) => ("force", *p, json!({})),
                Event::Completed(p, d) => {
                    ("complete", *p, json!({"direction": direction_name(*d)}))
                }
            };
            entry["time"] = json!(rfc3339(te.time));
            entry["kind"] = json!("event");
            entry["event"] = json!(event);
            entry["patch"] = json!(patch.0);
            entry["transcript"] = json!(te.event.to_string());
            if let Some(f) = self.known.get(&patch.0) {
                f.add_to(&mut entry);
            }
            self.audit.record(entry);
        }
    }

    /// Audits one handled request with its outcome (`None`: the reply waits
    /// for the end of the transition it started).
    fn audit_request(&mut self, peer: Option<Peer>, reply: Option<&Value>) {
        let note = std::mem::take(&mut self.note);
        let Some(op) = note.op else { return };
        let mut entry = json!({"kind": "request", "op": op, "peer": peer.map(|p| p.json())});
        match reply {
            None => entry["result"] = json!("started"),
            Some(r) if r["ok"] == true => entry["result"] = json!("ok"),
            Some(r) => {
                entry["result"] = r.get("kind").cloned().unwrap_or(json!("error"));
                entry["error"] = r["error"].clone();
            }
        }
        let patch = note.patch.map(|p| p.0).or_else(|| {
            reply
                .and_then(|r| r["patch"].as_u64())
                .and_then(|p| u32::try_from(p).ok())
        });
        if let Some(p) = patch {
            entry["patch"] = json!(p);
        }
        let facts = note
            .facts
            .or_else(|| patch.and_then(|p| self.known.get(&p).cloned()));
        if let Some(f) = facts {
            f.add_to(&mut entry);
        }
        self.audit.record(entry);
    }

    /// Names the running module in `ping` and `status` replies: its path
    /// and its target hash (what bundles name, see `wasm-patch hash`).
    pub fn set_module(&mut self, path: &Path, hash: &patch_format::ModuleHash) {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.module = json!({"path": path.display().to_string(), "hash": hash.to_string()});
    }

    /// Creates the socket at `path`, readable and writable by the owner only
    /// (mode 0600). Refuses when a server already answers there, or when the
    /// path is something other than a socket; replaces a stale socket that
    /// nobody answers.
    ///
    /// # Errors
    /// Refusals above, and I/O errors.
    pub fn bind(path: &Path) -> Result<Server, ControlError> {
        // `sockaddr_un.sun_path` holds 108 bytes with the final NUL: a longer
        // path could be created (through the short temporary name below)
        // but no client could ever connect to it.
        const SUN_PATH_MAX: usize = 107;
        let len = path.as_os_str().len();
        if len > SUN_PATH_MAX {
            refuse!(
                "control socket path {} is {len} bytes long, but a Unix socket path holds at most \
                 {SUN_PATH_MAX}: no client could connect to it; use a shorter path",
                path.display()
            );
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.file_type().is_socket() {
                    refuse!(
                        "{} exists and is not a socket; refusing to replace it",
                        path.display()
                    );
                }
                match UnixStream::connect(path) {
                    Ok(_) => refuse!(
                        "another control server is already listening on {}",
                        path.display()
                    ),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        // Stale: its server is gone.
                        match std::fs::remove_file(path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => {
                                return Err(e)
                                    .doing(|| format!("removing stale socket {}", path.display()))
                            }
                        }
                    }
                    Err(e) => refuse!(
                        "{} exists and cannot be checked ({e}); refusing to replace it",
                        path.display()
                    ),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).doing(|| format!("checking {}", path.display())),
        }
        // Bind under an unpredictable temporary name, created 0600 by the
        // kernel (bind never follows a symlink and fails on an existing
        // name), then link it into place: the socket is never reachable with
        // wider permissions, and `link` fails rather than replace a socket
        // another server created meanwhile.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let (listener, tmp) =
            bind_unique(dir, random_name).doing(|| format!("binding {}", path.display()))?;
        let placed = match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io::Error::new(
                e.kind(),
                "another server created it meanwhile",
            )),
            // File systems without hard links: a plain rename.
            Err(_) => std::fs::rename(&tmp, path),
            ok => ok,
        };
        let _ = std::fs::remove_file(&tmp);
        placed.doing(|| format!("creating socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        // What now sits at `path` must be our socket: a connection to it
        // must reach our listener. A client that connected first is kept.
        let probe = UnixStream::connect(path).ok();
        let (mut ours, mut early) = (false, Vec::new());
        while probe.is_some() {
            match listener.accept() {
                Ok((stream, _)) => {
                    let me = Peer::of(&stream).map(|p| p.pid) == Some(std::process::id() as i32);
                    if me && !ours {
                        ours = true;
                    } else {
                        early.push(stream);
                    }
                }
                Err(_) => break,
            }
        }
        drop(probe);
        if !ours {
            refuse!(
                "{} is not the socket this server created (was the directory changed meanwhile?); refusing to serve",
                path.display()
            );
        }
        let meta = std::fs::symlink_metadata(path)?;
        let mut server = Server {
            listener,
            path: path.to_path_buf(),
            ident: (meta.dev(), meta.ino()),
            conns: Vec::new(),
            next_conn: 1,
            waiters: Vec::new(),
            policy: None,
            module: Value::Null,
            audit: AuditLog::open(None)?,
            known: HashMap::new(),
            next_event: 0,
            reverse_requested: false,
            note: Note::default(),
        };
        for stream in early {
            server.add_conn(stream);
        }
        Ok(server)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether some client waits for a transition to end.
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Serves a new connection (or refuses it: too many).
    fn add_conn(&mut self, stream: UnixStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let peer = Peer::of(&stream);
        let mut c = Conn {
            id: self.next_conn,
            stream,
            inbuf: Vec::new(),
            scanned: 0,
            outbuf: Vec::new(),
            read_closed: false,
            dead: false,
            peer,
        };
        self.next_conn += 1;
        if self.conns.len() >= MAX_CONNECTIONS {
            c.reply(&error_reply(format!(
                "too many connections (at most {MAX_CONNECTIONS})"
            )));
            c.read_closed = true;
            c.flush();
            return;
        }
        self.conns.push(c);
    }

    /// Accepts connections, reads requests and answers them. Returns whether
    /// anything happened (so that the caller does not sleep).
    pub fn poll<T: 'static>(&mut self, store: &mut Store<T>, instance: Instance) -> bool {
        let mut busy = false;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    busy = true;
                    self.add_conn(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ECONNABORTED and the like: that client is gone.
                Err(_) => break,
            }
        }
        let mut buffered: usize = self.conns.iter().map(|c| c.inbuf.len()).sum();
        for i in 0..self.conns.len() {
            let own = self.conns[i].inbuf.len();
            let room = MAX_BUFFERED_BYTES.saturating_sub(buffered - own);
            let lines = self.conns[i].read_lines(MAX_REQUEST_BYTES.min(room));
            buffered = buffered - own + self.conns[i].inbuf.len();
            let (id, peer) = (self.conns[i].id, self.conns[i].peer);
            for line in lines {
                busy = true;
                if let Some(reply) = self.handle(id, peer, &line, store, instance) {
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
        self.audit_events(store);
        if self.waiters.is_empty() || store.transition_patch().is_some() {
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
    pub fn shutdown(self) {
        self.shutdown_because("the guest exited");
    }

    /// The run was stopped by a termination signal (`signal` is its name):
    /// audit it, tell the waiting clients, remove the socket.
    pub fn stop(mut self, signal: &str) {
        self.audit
            .record(json!({"kind": "stop", "event": "stop", "signal": signal}));
        self.shutdown_because(&format!("the run was stopped by {signal}"));
    }

    fn shutdown_because(mut self, why: &str) {
        for w in std::mem::take(&mut self.waiters) {
            if let Some(c) = self.conns.iter_mut().find(|c| c.id == w.conn) {
                c.reply(&error_reply(format!(
                    "{why} before the transition of {} ended",
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
        peer: Option<Peer>,
        line: &[u8],
        store: &mut Store<T>,
        instance: Instance,
    ) -> Option<Value> {
        // Events before this request are audited before it.
        self.audit_events(store);
        self.note = Note {
            op: Some("malformed".into()),
            ..Note::default()
        };
        let reply = self.dispatch(conn, line, store, instance);
        self.audit_request(peer, reply.as_ref());
        self.audit_events(store);
        reply
    }

    fn dispatch<T: 'static>(
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
            self.note.op = None;
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
        self.note.op = Some(op.chars().take(64).collect());
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
                "module": self.module,
            })),
            "apply" => self.apply(conn, &req, wait, timeout, store, instance),
            "revert" => {
                let id = match selected(&req, store) {
                    Ok(Some(id)) => id,
                    Ok(None) => {
                        return Some(error_reply(
                            "malformed request: `revert` needs `patch` (a patch number, bundle id or prefix, or name) or a numeric `id`",
                        ))
                    }
                    Err(reply) => return Some(reply),
                };
                self.note.patch = Some(id);
                let names = names_of(store, id);
                match store.revert(id, timeout) {
                    Ok(()) => self.started_named(conn, "revert", id, wait, store, names),
                    Err(e) => Some(patch_error_reply(&e)),
                }
            }
            "reverse" => match store.reverse() {
                Ok(()) => {
                    self.reverse_requested = true;
                    let id = store
                        .transition_patch()
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
            "status" => match selected(&req, store) {
                Ok(None) => Some(status(store, &self.module)),
                Ok(Some(id)) => {
                    self.note.patch = Some(id);
                    let mut reply = status(store, &self.module);
                    reply["selected"] = applied_json(store)
                        .as_array()
                        .and_then(|a| a.iter().find(|p| p["id"] == id.0).cloned())
                        .unwrap_or(Value::Null);
                    Some(reply)
                }
                Err(reply) => Some(reply),
            },
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
        let facts = BundleFacts::of(&bytes);
        self.note.facts = Some(facts.clone());
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
                self.known.insert(id.0, facts);
                // Named now: a rolled-back bundle is no longer listed later.
                let names = names_of(store, id);
                self.started_named(conn, "apply", id, wait, store, names)
            }
            Err(e) => Some(patch_error_reply(&e)),
        }
    }

    /// [`Server::started`], the reply (now or later) naming the bundle.
    fn started_named<T: 'static>(
        &mut self,
        conn: u64,
        op: &'static str,
        id: PatchId,
        wait: bool,
        store: &Store<T>,
        names: Option<(String, String)>,
    ) -> Option<Value> {
        self.note.patch = Some(id);
        let mut reply = self.started(conn, op, id, wait, store);
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

/// The patch a request names: `patch` (a selector, see [`select`]) or a
/// numeric `id`; `Ok(None)` when it names none.
fn selected<T: 'static>(req: &Value, store: &Store<T>) -> Result<Option<PatchId>, Value> {
    let candidates = || -> Vec<select::Candidate> {
        store
            .applied()
            .into_iter()
            .map(|a| select::Candidate {
                id: a.id.0,
                name: a.name,
                bundle_id: a.bundle_id,
            })
            .collect()
    };
    match (req.get("patch"), req.get("id")) {
        (Some(Value::String(sel)), _) => select::select(&candidates(), sel)
            .map(|id| Some(PatchId(id)))
            .map_err(|e| e.reply()),
        (Some(Value::Number(n)), _) | (None, Some(Value::Number(n))) => n
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .map(|i| Some(PatchId(i)))
            .ok_or_else(|| error_reply("malformed request: a numeric `id` must be a patch number")),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ok(None),
        _ => Err(error_reply(
            "malformed request: give `patch` as a string (a patch number, bundle id or prefix, or name) or a numeric `id`",
        )),
    }
}

/// The name and bundle id of applied patch `id`.
fn names_of<T: 'static>(store: &Store<T>, id: PatchId) -> Option<(String, String)> {
    store
        .applied()
        .into_iter()
        .find(|a| a.id == id)
        .map(|a| (a.name, a.bundle_id))
}

fn add_names(reply: &mut Value, names: &Option<(String, String)>) {
    if let Some((name, bundle_id)) = names {
        reply["name"] = json!(name);
        reply["bundle_id"] = json!(bundle_id);
    }
}

/// `.wp-control-` and 16 random hex digits (from `/dev/urandom`).
fn random_name() -> io::Result<String> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(format!(".wp-control-{}", to_hex(&b)))
}

/// Binds a listening socket at `dir/name()` with mode 0600, trying fresh
/// names while one exists already (whatever it is: `bind` neither follows
/// nor replaces a symlink or file).
fn bind_unique(
    dir: &Path,
    mut name: impl FnMut() -> io::Result<String>,
) -> io::Result<(UnixListener, PathBuf)> {
    for _ in 0..16 {
        let tmp = dir.join(name()?);
        // SAFETY: `umask` only swaps the process's file-creation mask; it
        // is restored right after the bind. Nothing else creates files at
        // start-up, when this runs.
        let saved = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(&tmp);
        // SAFETY: as above.
        unsafe { libc::umask(saved) };
        match bound {
            Ok(l) => return Ok((l, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free temporary socket name after 16 tries",
    ))
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
                    "transfers": a.transfers.iter().map(|t| json!({
                        "function": t.function,
                        "back": t.no_way_back.is_none(),
                        "no_way_back": t.no_way_back,
                        "never_moves": t.never_moves,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn status<T: 'static>(store: &Store<T>, module: &Value) -> Value {
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
        "module": module,
        "applied": applied_json(store),
        "transition": store.transition_status().as_ref().map(status_json),
        "last_transition": store.last_transition().map(outcome_json),
        "threads": threads,
        "events": recent,
        "events_total": events.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_socket_names_are_unpredictable() {
        let (a, b) = (random_name().unwrap(), random_name().unwrap());
        assert_ne!(a, b);
        let hex = a.strip_prefix(".wp-control-").unwrap();
        assert_eq!(hex.len(), 16, "{a}");
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }

    #[test]
    fn binding_never_follows_or_replaces_what_sits_at_a_temporary_name() {
        let dir = std::env::temp_dir().join(format!("wp-bind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // An attacker's symlink and file at the first two names tried.
        let target = dir.join("victim");
        std::os::unix::fs::symlink(&target, dir.join("n0")).unwrap();
        std::fs::write(dir.join("n1"), "precious").unwrap();
        let mut i = 0;
        let (l, tmp) = bind_unique(&dir, || {
            i += 1;
            Ok(format!("n{}", i - 1))
        })
        .unwrap();
        assert_eq!(tmp, dir.join("n2"));
        assert!(!target.exists(), "the symlink was followed");
        assert_eq!(std::fs::read_to_string(dir.join("n1")).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(&tmp).unwrap();
        assert!(meta.file_type().is_socket());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(l);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
