//! The audit trail of `wasm-patch run`: every control request and every
//! transition event (start, blockers, completion, reverse, force, timeout),
//! and the bundles `run --apply` applies at start.
//!
//! Each entry is a JSON object with `time` (RFC 3339, UTC, milliseconds),
//! `kind` (`request`, `event` or `boot`) and what is known of the bundle:
//! `patch` (the per-process number), `bundle_id`, `name`, `key` (the hex
//! public key of the bundle's signature, null when unsigned). Requests add
//! `op`, `peer` (`uid`, `gid`, `pid` of the client, from `SO_PEERCRED`) and
//! `result` (`ok`, `started`, or the error `kind`) with `error`. Entries go
//! to stderr as one readable line each (`audit: TIME ...`) and, with
//! `--audit-log FILE`, to FILE as JSON lines (appended, flushed per entry).

use crate::{ControlError, Doing};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The credentials of a socket's peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Peer {
    /// The peer of `stream`, from `SO_PEERCRED` (taken by the kernel when
    /// the client connected); `None` if the query fails.
    pub fn of(stream: &UnixStream) -> Option<Peer> {
        use std::os::unix::io::AsRawFd;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a live `ucred` and `len` holds its exact size;
        // the kernel writes at most `len` bytes into it. The descriptor is
        // valid for as long as `stream` is borrowed.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(Peer {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
        })
    }

    /// `{"uid":..,"gid":..,"pid":..}`.
    pub fn json(&self) -> Value {
        json!({"uid": self.uid, "gid": self.gid, "pid": self.pid})
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-12-03T11:04:13.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by eras
    // of 400 years (146,097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// What the audit trail knows of a bundle.
#[derive(Clone, Debug, Default)]
pub struct BundleFacts {
    /// The bundle's name (empty if it could not be read).
    pub name: String,
    /// Its id (hex), if it could be read.
    pub bundle_id: Option<String>,
    /// The public key of its signature (hex), if signed.
    pub key: Option<String>,
}

impl BundleFacts {
    /// Facts read from a bundle's bytes (as much as can be read: a
    /// malformed bundle still gets an entry).
    pub fn of(bytes: &[u8]) -> BundleFacts {
        let key = patch_format::split_signature(bytes)
            .ok()
            .and_then(|(_, sig)| sig)
            .map(|s| s.public_key().to_hex());
        match patch_format::Bundle::parse(bytes) {
            Ok(b) => BundleFacts {
                name: b.metadata().name.clone(),
                bundle_id: Some(b.bundle_id().to_string()),
                key,
            },
            Err(_) => BundleFacts {
                key,
                ..BundleFacts::default()
            },
        }
    }

    /// Adds `name`, `bundle_id` and `key` to an entry.
    pub fn add_to(&self, entry: &mut Value) {
        entry["name"] = json!(self.name);
        entry["bundle_id"] = json!(self.bundle_id);
        entry["key"] = json!(self.key);
    }
}

/// Where audit entries go: stderr always, a JSON-lines file optionally.
pub struct AuditLog {
    file: Option<std::fs::File>,
}

impl AuditLog {
    /// Entries to stderr, and to `file` (created or appended to, mode 0600)
    /// when given.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(file: Option<&Path>) -> Result<AuditLog, ControlError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = match file {
            None => None,
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)
                    .doing(|| format!("opening the audit log {}", p.display()))?,
            ),
        };
        Ok(AuditLog { file })
    }

    /// Records `entry` (an object): `time` is set to now unless present.
    pub fn record(&mut self, mut entry: Value) {
        if entry.get("time").is_none() {
            entry["time"] = json!(rfc3339(SystemTime::now()));
        }
        eprintln!("audit: {}", summary(&entry));
        if let Some(f) = &mut self.file {
            let mut line = serde_json::to_vec(&entry).unwrap_or_default();
            line.push(b'\n');
            // An audit log that cannot be written must not stop the guest;
            // stderr keeps the entry.
            if let Err(e) = f.write_all(&line) {
                eprintln!("audit: cannot write the audit log: {e}");
            }
        }
    }
}

/// The readable one-line form of an entry.
fn summary(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
    let mut out = format!("{} {}", s("time"), s("kind"));
    match e["kind"].as_str() {
        Some("request") => {
            out.push_str(&format!(" {}", s("op")));
            let p = &e["peer"];
            if !p.is_null() {
                out.push_str(&format!(" from uid {} pid {}", p["uid"], p["pid"]));
            }
            out.push_str(&format!(": {}", s("result")));
        }
        Some("stop") => out.push_str(&format!(" by {}", s("signal"))),
        _ => out.push_str(&format!(" {}", s("event"))),
    }
    if let Some(p) = e["patch"].as_u64() {
        out.push_str(&format!(" patch {p}"));
    }
    if let Some(id) = e["bundle_id"].as_str() {
        out.push_str(&format!(" ({}, bundle {id}", s("name")));
        match e["key"].as_str() {
            Some(k) => out.push_str(&format!(", key {k})")),
            None => out.push_str(", unsigned)"),
        }
    }
    if let Some(err) = e["error"].as_str() {
        out.push_str(&format!(": {err}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_796_297_053, 123), "2026-12-03T11:24:13.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }
}
