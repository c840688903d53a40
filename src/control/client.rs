//! The client side: one request per connection, and the human-readable
//! rendering of replies shared by the control verbs.

use super::*;
use anyhow::{bail, Context};
use patch_format::names::readable;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

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

/// A usage error found by the client (a bad `--timeout`): exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit status and `kind` of an error that ended a command before (or
/// instead of) a reply: no server (7, `unreachable`), a usage error (2,
/// `usage`), anything else (1, `error`: an unreadable file, a broken
/// connection).
pub fn exit_for_error(e: &anyhow::Error) -> (i32, &'static str) {
    if e.downcast_ref::<Unreachable>().is_some() {
        (EXIT_UNREACHABLE, "unreachable")
    } else if e.downcast_ref::<Usage>().is_some() {
        (EXIT_USAGE, "usage")
    } else {
        (EXIT_ERROR, "error")
    }
}

/// The JSON object a `--json` command prints for an error found on the
/// client side, shaped like an error reply.
pub fn client_error(message: &str, kind: &str) -> Value {
    serde_json::json!({"ok": false, "error": message, "kind": kind})
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
        if let Some(text) = b["loop"]["text"].as_str() {
            out.push_str(&format!("{indent}  {text}\n"));
        }
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

/// How many thread ids a blocker group lists before `...`.
const GROUP_THREADS_SHOWN: usize = 16;

/// Human-readable lines for a blocker list, grouped by blocking frame
/// (function and offset): "200 thread(s) blocked in `worker` +0x1a0", the
/// first threads' ids and one example backtrace per group, largest group
/// first. [`format_blockers`] lists every thread instead.
pub fn format_blocker_groups(blockers: &Value, indent: &str) -> String {
    let mut groups: Vec<(String, u64, Vec<&Value>)> = Vec::new();
    for b in blockers.as_array().into_iter().flatten() {
        let frame = &b["frame"];
        let name = frame["name"].as_str().unwrap_or("?").to_string();
        let offset = frame["offset"].as_u64().unwrap_or(0);
        match groups.iter_mut().find(|g| g.0 == name && g.1 == offset) {
            Some(g) => g.2.push(b),
            None => groups.push((name, offset, vec![b])),
        }
    }
    // Largest first; ties in order of appearance (the sort is stable).
    groups.sort_by_key(|g| std::cmp::Reverse(g.2.len()));
    let mut out = String::new();
    for (name, offset, members) in &groups {
        let ids: Vec<String> = members
            .iter()
            .take(GROUP_THREADS_SHOWN)
            .map(|b| b["thread"].to_string())
            .collect();
        let more = if members.len() > GROUP_THREADS_SHOWN {
            format!(", ... ({} more)", members.len() - GROUP_THREADS_SHOWN)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{indent}{} thread(s) blocked in `{}` +{offset:#x} (func {}): thread {}{more}\n",
            members.len(),
            readable(name),
            members[0]["frame"]["func_index"],
            ids.join(", ")
        ));
        let example = members[0];
        if let Some(text) = example["loop"]["text"].as_str() {
            out.push_str(&format!("{indent}  {text}\n"));
        }
        out.push_str(&format!(
            "{indent}  example backtrace (thread {}, innermost first):\n",
            example["thread"]
        ));
        for (i, f) in example["backtrace"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            out.push_str(&format!(
                "{indent}    {i:>3}: {}{}\n",
                readable(f["name"].as_str().unwrap_or("?")),
                if *f == example["frame"] {
                    "   <- blocks"
                } else {
                    ""
                }
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
            eprint!("{}", format_blocker_groups(&o["blockers"], "  "));
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
