//! `wasm-patch status --control SOCKET` and `wasm-patch list --control
//! SOCKET`: what a running guest has applied, the transition in progress
//! with its blockers, and each thread's patch state (as Linux's
//! `/proc/<pid>/patch_state`: -1 no transition, 0 unpatched, 1 patched).

use crate::control::{self, ControlOpts};
use patch_format::names::readable;
use serde_json::{json, Value};

/// Arguments of `wasm-patch status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub control: ControlOpts,
    /// List every thread (state, patch state, innermost frame) and every
    /// blocker one by one, instead of grouping blockers by blocking frame
    /// and counting threads.
    #[arg(long)]
    pub threads: bool,
    /// Also print every thread's backtrace (implies `--threads`).
    #[arg(long)]
    pub backtraces: bool,
    /// Exit with status 4 (busy) while a transition is in progress, 0
    /// otherwise: for scripts that wait until a host is settled.
    #[arg(long)]
    pub check: bool,
    /// Show only this applied bundle: its number in this process, its
    /// bundle id or a unique prefix of it, or its name (as for `revert`).
    #[arg(value_name = "PATCH")]
    pub patch: Option<String>,
}

/// Arguments of `wasm-patch list`.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub control: ControlOpts,
}

fn print_applied(applied: &Value) {
    let list = applied.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("applied      none");
        return;
    }
    println!("applied      {} bundle(s), oldest first", list.len());
    for a in &list {
        let functions: Vec<String> = a["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(readable)
            .collect();
        let mut flags = String::new();
        if a["in_transition"].as_bool() == Some(true) {
            flags.push_str("  [in transition]");
        }
        if a["forced"].as_bool() == Some(true) {
            flags.push_str("  [forced: cannot be reverted]");
        }
        println!(
            "  patch {:<4} {:<16} bundle {}  functions: {}{flags}",
            a["id"].to_string(),
            a["name"].as_str().unwrap_or(""),
            a["bundle_id"].as_str().unwrap_or(""),
            functions.join(", ")
        );
        let d = &a["data"];
        if !d.is_null() {
            println!(
                "               data: {} object(s), {} bytes at {:#x} (memory 0 grew {} page(s)); \
                 {} table entry(ies) from {}",
                d["objects"].as_array().map_or(0, Vec::len),
                d["size"],
                d["base"].as_u64().unwrap_or(0),
                d["pages_grown"],
                d["table_entries"],
                d["table_base"]
            );
        }
        for t in a["transfers"].as_array().into_iter().flatten() {
            let f = readable(t["function"].as_str().unwrap_or("?"));
            if let Some(why) = t["never_moves"].as_str() {
                println!("               carries a map for `{f}`, but {why}");
                continue;
            }
            match t["no_way_back"].as_str() {
                None => println!(
                    "               moves frames of `{f}` at loop headers, and back on a revert"
                ),
                Some(why) => println!(
                    "               moves frames of `{f}` at loop headers, but not back ({why}): \
                     a revert waits for threads living in its loop"
                ),
            }
        }
    }
}

fn check(reply: &Value, json: bool) -> Option<i32> {
    if json {
        control::print_json(reply);
        return Some(if control::reply_error(reply).is_some() {
            control::exit_for_reply(reply)
        } else {
            control::EXIT_OK
        });
    }
    if let Some(e) = control::reply_error(reply) {
        eprintln!("error: {e}");
        return Some(control::exit_for_reply(reply));
    }
    None
}

/// `list` entry point.
pub fn list(args: ListArgs) -> anyhow::Result<i32> {
    let reply = control::request(&args.control.control, &json!({"op": "list"}))?;
    if let Some(code) = check(&reply, args.control.json) {
        return Ok(code);
    }
    print_applied(&reply["applied"]);
    Ok(control::EXIT_OK)
}

/// `status` entry point.
pub fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let mut req = json!({"op": "status"});
    if let Some(p) = &args.patch {
        req["patch"] = json!(p);
    }
    let reply = control::request(&args.control.control, &req)?;
    // `--check`: busy (4) while a transition is in progress.
    let settled = if args.check && !reply["transition"].is_null() {
        control::EXIT_BUSY
    } else {
        control::EXIT_OK
    };
    if let Some(code) = check(&reply, args.control.json) {
        return Ok(if code == control::EXIT_OK {
            settled
        } else {
            code
        });
    }
    let m = &reply["module"];
    if !m.is_null() {
        println!(
            "module       {} sha256:{}",
            m["path"].as_str().unwrap_or("?"),
            m["hash"].as_str().unwrap_or("?")
        );
    }
    if args.patch.is_some() {
        let sel = &reply["selected"];
        print_applied(&json!([sel]));
        let t = &reply["transition"];
        if !t.is_null() && t["patch"] == sel["id"] {
            println!(
                "transition   {} running for {:.3} ms: {} thread(s) pending, {} switched",
                t["direction"].as_str().unwrap_or("?"),
                t["elapsed_ms"].as_f64().unwrap_or(0.0),
                t["pending"],
                t["switched"]
            );
        }
        return Ok(settled);
    }
    print_applied(&reply["applied"]);
    let t = &reply["transition"];
    if t.is_null() {
        println!("transition   none in progress");
    } else {
        println!(
            "transition   patch {} ({}{}) running for {:.3} ms: {} thread(s) pending, {} switched",
            t["patch"],
            t["direction"].as_str().unwrap_or("?"),
            if t["reversed"].as_bool() == Some(true) {
                ", reversed"
            } else {
                ""
            },
            t["elapsed_ms"].as_f64().unwrap_or(0.0),
            t["pending"],
            t["switched"]
        );
        let n = t["blockers"].as_array().map_or(0, Vec::len);
        if n > 0 {
            println!("blockers     {n} thread(s)");
            if args.threads || args.backtraces {
                print!("{}", control::format_blockers(&t["blockers"], "  "));
            } else {
                print!("{}", control::format_blocker_groups(&t["blockers"], "  "));
            }
        }
    }
    let last = &reply["last_transition"];
    if !last.is_null() {
        let how = if last["reversed"].as_bool() == Some(true) {
            "reversed"
        } else if last["forced"].as_bool() == Some(true) {
            "forced"
        } else {
            "completed"
        };
        println!(
            "last         patch {} ({}) {how} after {:.3} ms",
            last["patch"],
            last["direction"].as_str().unwrap_or("?"),
            last["elapsed_ms"].as_f64().unwrap_or(0.0)
        );
    }
    let threads = reply["threads"].as_array().cloned().unwrap_or_default();
    let count = |v: i64| {
        threads
            .iter()
            .filter(|t| t["patch_state"].as_i64() == Some(v))
            .count()
    };
    println!(
        "threads      {} live: {} patched, {} unpatched, {} without transition (-1)",
        threads.len(),
        count(1),
        count(0),
        count(-1)
    );
    if args.threads || args.backtraces {
        print_threads(&threads, args.backtraces);
    } else {
        let mut states: Vec<(String, usize)> = Vec::new();
        for t in &threads {
            let st = t["state"].as_str().unwrap_or("?").to_string();
            match states.iter_mut().find(|(s, _)| *s == st) {
                Some(e) => e.1 += 1,
                None => states.push((st, 1)),
            }
        }
        let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!("             {} (--threads lists them)", states.join(", "));
    }
    let events = reply["events"].as_array().cloned().unwrap_or_default();
    if !events.is_empty() {
        println!(
            "events       last {} of {}",
            events.len(),
            reply["events_total"]
        );
        for e in &events {
            println!("  {}", e.as_str().unwrap_or(""));
        }
    }
    Ok(settled)
}

/// One line per thread (and its backtrace with `backtraces`).
fn print_threads(threads: &[Value], backtraces: bool) {
    println!(
        "  {:<8} {:<10} {:>11}  innermost frame",
        "thread", "state", "patch_state"
    );
    for t in threads {
        let bt: Vec<String> = t["backtrace"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(readable)
            .collect();
        println!(
            "  {:<8} {:<10} {:>11}  {}",
            t["id"].to_string(),
            t["state"].as_str().unwrap_or("?"),
            t["patch_state"].to_string(),
            bt.first().map_or("-", String::as_str)
        );
        if backtraces {
            for (i, f) in bt.iter().enumerate() {
                println!("  {:>21}{i:>3}: {f}", "");
            }
        }
    }
}
