//! `wasm-patch revert PATCH`, `wasm-patch reverse` and `wasm-patch force`
//! against a running `wasm-patch run --control SOCKET`.

use crate::control::{self, ControlOpts};
use serde_json::json;

/// Arguments of `wasm-patch revert`.
#[derive(clap::Args)]
pub struct RevertArgs {
    #[command(flatten)]
    pub control: ControlOpts,
    /// The applied bundle: its number in this process as `list` shows it
    /// (`3` or `patch 3`), its bundle id or a unique prefix of it (at least
    /// 4 hex digits), or its name. A selector matching several bundles is
    /// refused with status 2, listing them.
    #[arg(value_name = "PATCH")]
    pub patch: String,
    /// Reverse the revert (keep the bundle) if it is not complete after this
    /// many seconds; exits with status 3.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Return once the transition has started instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

/// Arguments of `wasm-patch reverse`.
#[derive(clap::Args)]
pub struct ReverseArgs {
    #[command(flatten)]
    pub control: ControlOpts,
    /// Return once the reverse has started instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

/// Arguments of `wasm-patch force`.
#[derive(clap::Args)]
pub struct ForceArgs {
    #[command(flatten)]
    pub control: ControlOpts,
}

/// `revert` entry point.
pub fn revert(args: RevertArgs) -> anyhow::Result<i32> {
    let req = json!({
        "op": "revert",
        "patch": args.patch,
        "wait": !args.no_wait,
        "timeout_ms": super::apply::timeout_ms(args.timeout)?,
    });
    let reply = control::request(&args.control.control, &req)?;
    let what = match reply["patch"].as_u64() {
        Some(id) => format!("reverted patch {id}"),
        None => format!("revert {}", args.patch),
    };
    Ok(control::report_transition(&what, &reply, args.control.json))
}

/// `reverse` entry point.
pub fn reverse(args: ReverseArgs) -> anyhow::Result<i32> {
    let req = json!({"op": "reverse", "wait": !args.no_wait});
    let reply = control::request(&args.control.control, &req)?;
    if args.control.json {
        control::print_json(&reply);
        return Ok(if control::reply_error(&reply).is_some() {
            control::exit_for_reply(&reply)
        } else {
            control::EXIT_OK
        });
    }
    if control::reply_error(&reply).is_some() || reply.get("outcome").is_none() {
        return Ok(control::report_transition("reverse", &reply, false));
    }
    // A reverse that completes is this command's success.
    let o = &reply["outcome"];
    println!(
        "reversed patch {}: threads are back on the previous code after {:.3} ms",
        o["patch"],
        o["elapsed_ms"].as_f64().unwrap_or(0.0)
    );
    Ok(control::EXIT_OK)
}

/// `force` entry point.
pub fn force(args: ForceArgs) -> anyhow::Result<i32> {
    let reply = control::request(&args.control.control, &json!({"op": "force"}))?;
    if args.control.json {
        control::print_json(&reply);
    } else if let Some(e) = control::reply_error(&reply) {
        eprintln!("error: {e}");
    } else {
        println!("forced patch {}", reply["patch"]);
        if let Some(w) = reply["warning"].as_str() {
            eprintln!("warning: {w}");
        }
    }
    Ok(if control::reply_error(&reply).is_some() {
        control::exit_for_reply(&reply)
    } else {
        control::EXIT_OK
    })
}
