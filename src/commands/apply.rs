//! `wasm-patch apply --control SOCKET BUNDLE [--timeout SECONDS]
//! [--immediate] [--require-signature KEY.pub]`: send a bundle to a running
//! `wasm-patch run --control SOCKET` and wait for its transition.

use crate::control::{self, ControlOpts};
use anyhow::{bail, Context};
use patch_format::PublicKey;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `wasm-patch apply`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub control: ControlOpts,
    /// The bundle (`.wpatch`), read here and sent over the socket.
    pub bundle: PathBuf,
    /// Reverse the transition (roll back) if it is not complete after this
    /// many seconds (default 60; 0 waits forever); the command then exits
    /// with status 3 and prints the threads that blocked it.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Switch every function of the bundle for all threads at once, without
    /// the per-thread stack check.
    #[arg(long)]
    pub immediate: bool,
    /// Refuse the bundle unless it is signed by this key (repeatable: any of
    /// them).
    #[arg(long, value_name = "KEY.pub")]
    pub require_signature: Vec<PathBuf>,
    /// Return once the transition has started instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

/// Reads `.pub` files into hex public keys.
fn read_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let key = PublicKey::from_text(&text).with_context(|| format!("{}", p.display()))?;
            Ok(key.to_hex())
        })
        .collect()
}

/// `apply`'s rollback timeout when none is given: a rollout never waits
/// forever by accident.
pub const DEFAULT_APPLY_TIMEOUT_S: f64 = 60.0;

/// The timeout `apply` uses for `--timeout` given as `arg`: the default
/// when absent, none (wait forever) for 0.
fn apply_timeout(arg: Option<f64>) -> Option<f64> {
    match arg {
        None => Some(DEFAULT_APPLY_TIMEOUT_S),
        Some(0.0) => None,
        t => t,
    }
}

/// Seconds → milliseconds, checked.
pub(crate) fn timeout_ms(timeout: Option<f64>) -> anyhow::Result<Option<f64>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Ok(Some(t * 1000.0)),
        Some(t) => Err(control::Usage(format!(
            "--timeout must be a positive number of seconds, not {t}"
        ))
        .into()),
    }
}

/// Entry point.
pub fn main(args: ApplyArgs) -> anyhow::Result<i32> {
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    if bytes.len() > control::MAX_BUNDLE_BYTES {
        bail!(
            "{} is {} bytes; the control socket accepts bundles of at most {} bytes",
            args.bundle.display(),
            bytes.len(),
            control::MAX_BUNDLE_BYTES
        );
    }
    let mut req = json!({
        "op": "apply",
        "bundle": control::to_hex(&bytes),
        "immediate": args.immediate,
        "wait": !args.no_wait,
        "timeout_ms": timeout_ms(apply_timeout(args.timeout))?,
    });
    if !args.require_signature.is_empty() {
        req["trusted_keys"] = json!(read_keys(&args.require_signature)?);
    }
    let started = std::time::Instant::now();
    let reply = control::request(&args.control.control, &req)?;
    let what = match (reply["patch"].as_u64(), reply["name"].as_str()) {
        (Some(id), Some(name)) if !name.is_empty() => {
            format!("applied {} as patch {id} ({name})", args.bundle.display())
        }
        (Some(id), _) => format!("applied {} as patch {id}", args.bundle.display()),
        _ => format!("apply {}", args.bundle.display()),
    };
    let code = control::report_transition(&what, &reply, args.control.json);
    if !args.control.json && reply.get("outcome").is_some() && code == control::EXIT_OK {
        println!(
            "  (request answered after {:.3} ms)",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_waits_at_most_a_minute_unless_told_otherwise() {
        assert_eq!(apply_timeout(None), Some(60.0));
        assert_eq!(apply_timeout(Some(0.0)), None);
        assert_eq!(apply_timeout(Some(2.5)), Some(2.5));
        assert!(timeout_ms(apply_timeout(Some(-1.0))).is_err());
    }
}
