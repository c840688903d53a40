//! `wasm-patch run [--dir HOST[::GUEST]]... [--env NAME[=VALUE]]...
//! [--invoke NAME] FILE [ARGS...]`, following wasmtime's conventions: with
//! `--invoke`, call that export with ARGS (parsed by the parameter types)
//! and print each result on its own line; without it, run `_start` with
//! ARGS as the WASI program's arguments (after the file name). The run ends
//! when that call returns, or when any guest thread calls WASI `proc_exit(n)`:
//! then the exit status is `n`. A trap prints its kind and wasm backtrace to
//! stderr and exits with status 134 (as wasmtime does). SIGTERM, SIGINT
//! and SIGHUP stop the run loop cleanly (`crate::signals`): status 128 +
//! the signal's number.
//!
//! Every run links WASI preview 1 (`wasm_patch_wasi`): the environment holds
//! only the `--env` variables, and the guest reaches only the `--dir`
//! directories.
//!
//! With `--control SOCKET`, the run also serves the live-control protocol
//! (`crate::control`) on a Unix socket while the guest runs: the store stays
//! on this thread, and the run loop alternates guest time slices with
//! control requests.
//!
//! Besides the thread ABI, guests may import three output functions from
//! module `env`: `print_i32(i32)` (the decimal value and a newline),
//! `print_line(ptr: i32, len: i32)` (bytes of memory 0 and a newline) and
//! `print(ptr: i32, len: i32)` (the bytes only).

use crate::audit::{AuditLog, BundleFacts};
use crate::control;
use anyhow::{bail, Context};
use std::io::Write;
use std::time::Duration;
use wasm_patch_runtime::{
    ApplyOptions, Caller, Engine, Error, FuncType, Linker, Module, RunState, Store, Val, ValType,
};

/// Arguments of `wasm-patch run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Call this exported function instead of `_start`.
    #[arg(long, value_name = "NAME")]
    pub invoke: Option<String>,
    /// Preopen host directory HOST for the guest, as GUEST (default: HOST).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
    /// Set a WASI environment variable; `NAME` alone passes the host's value.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub envs: Vec<String>,
    /// Serve live control (apply, status, revert, ...) on this Unix socket
    /// while the guest runs. Created with mode 0600 and removed when the run
    /// ends; refused if another server answers there.
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<std::path::PathBuf>,
    /// Refuse every bundle (over `--control` or from `--apply`) not signed
    /// by one of these public keys (`.pub` files from `keygen`), whatever
    /// the client asks.
    #[arg(long = "trusted-key", value_name = "PUB")]
    pub trusted_keys: Vec<std::path::PathBuf>,
    /// Apply this bundle at start, before the guest runs (repeatable, in
    /// order), with the same checks and `--trusted-key` policy as `apply`,
    /// like `kpatch install` or livepatch at boot: a restarted service comes
    /// back patched. A refused bundle stops the run before the guest starts,
    /// with the status `apply` would give (5 refused, 6 applied already).
    #[arg(long = "apply", value_name = "BUNDLE")]
    pub apply: Vec<std::path::PathBuf>,
    /// Also write the audit trail (every control request and transition
    /// event, with time, bundle, signing key and the client's uid and pid)
    /// to FILE as JSON lines; it always goes to stderr.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<std::path::PathBuf>,
    /// Compile the module so that threads living in a loop can have their
    /// frame moved to a new version at a loop header, by bundles made with
    /// `diff --transfer` (docs/transfer.md). Costs run time in loops.
    #[arg(long)]
    pub frame_transfer: bool,
    /// The module: binary `.wasm` or text `.wat`.
    pub file: std::path::PathBuf,
    /// Arguments: the WASI program's, or with `--invoke` the function's
    /// (integers in decimal, floats as decimals, v128 as one 128-bit number
    /// in hexadecimal with `0x` or in decimal, lane 0 in the low bits).
    #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// Exit status of a run that trapped.
pub const TRAP_EXIT: i32 = 134;
/// A run stopped by a termination signal exits with this plus the signal's
/// number: 143 for SIGTERM, 130 for SIGINT, 129 for SIGHUP.
pub const STOPPED_EXIT_BASE: i32 = 128;

/// One `--invoke` argument as a value of type `ty`. Integers may be
/// written signed or unsigned (`-1` and `4294967295` are the same i32); a
/// value that fits neither reading is refused, never wrapped.
fn parse_arg(s: &str, ty: ValType) -> anyhow::Result<Val> {
    let int = |bits: u32| -> anyhow::Result<i64> {
        let v: i128 = s
            .parse()
            .with_context(|| format!("`{s}` is not an i{bits} (not an integer)"))?;
        let (min, max) = (-(1i128 << (bits - 1)), (1i128 << bits) - 1);
        if v < min || v > max {
            bail!(
                "`{s}` does not fit in an i{bits} (from {min} to {max}, unsigned values included)"
            );
        }
        Ok(v as i64)
    };
    Ok(match ty {
        ValType::I32 => Val::I32(int(32)? as i32),
        ValType::I64 => Val::I64(int(64)?),
        ValType::F32 => Val::F32(
            s.parse::<f32>()
                .with_context(|| format!("`{s}` is not an f32"))?
                .to_bits(),
        ),
        ValType::F64 => Val::F64(
            s.parse::<f64>()
                .with_context(|| format!("`{s}` is not an f64"))?
                .to_bits(),
        ),
        // A v128 as one 128-bit number, lane 0 in the low bits: hexadecimal
        // with `0x` (as results are printed) or decimal.
        ValType::V128 => Val::V128(
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u128::from_str_radix(&hex.replace('_', ""), 16)
                    .with_context(|| format!("`{s}` is not a v128 (not 32 hexadecimal digits)"))?,
                None => s.parse::<u128>().with_context(|| {
                    format!("`{s}` is not a v128 (not a 128-bit unsigned integer)")
                })?,
            },
        ),
        other => bail!("cannot pass a {other:?} argument from the command line"),
    })
}

/// Bytes `[ptr, ptr + len)` of the caller's memory 0.
fn guest_bytes(c: &mut Caller<'_, ()>, ptr: &Val, len: &Val) -> Result<Vec<u8>, Error> {
    let (ptr, len) = (
        ptr.i32().unwrap_or(0) as u32 as usize,
        len.i32().unwrap_or(0) as u32 as usize,
    );
    let mem = c
        .memory(0)
        .ok_or_else(|| Error::Host("print: the module has no memory".into()))?;
    ptr.checked_add(len)
        .and_then(|end| mem.get(ptr..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| Error::Host(format!("print: [{ptr}, {ptr}+{len}) is out of bounds")))
}

/// Defines the `env` output functions (see the module documentation).
/// Output errors (a closed pipe) are ignored: they must not kill the guest.
fn add_print_functions(linker: &mut Linker<()>) {
    use ValType::I32;
    linker.func_new("env", "print_i32", FuncType::new([I32], []), |_, a, _| {
        let _ = writeln!(std::io::stdout(), "{}", a[0].i32().unwrap_or(0));
        Ok(())
    });
    linker.func_new(
        "env",
        "print_line",
        FuncType::new([I32, I32], []),
        |c, a, _| {
            let bytes = guest_bytes(c, &a[0], &a[1])?;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes);
            let _ = out.write_all(b"\n");
            Ok(())
        },
    );
    linker.func_new("env", "print", FuncType::new([I32, I32], []), |c, a, _| {
        let bytes = guest_bytes(c, &a[0], &a[1])?;
        let _ = std::io::stdout().write_all(&bytes);
        Ok(())
    });
}

/// The WASI context of a run: program name and ARGS (without `--invoke`),
/// `--env` variables and `--dir` preopens.
fn wasi_ctx(args: &RunArgs) -> anyhow::Result<wasm_patch_wasi::WasiCtx> {
    let mut ctx = wasm_patch_wasi::WasiCtx::new();
    // The run loop below drives the reactor: a guest thread blocked on
    // stdin parks only itself.
    ctx.park_blocked_threads(true);
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.arg(&name)?;
    if args.invoke.is_none() {
        for a in &args.args {
            ctx.arg(a)?;
        }
    }
    for e in &args.envs {
        match e.split_once('=') {
            Some((k, v)) => ctx.env(k, v)?,
            None => match std::env::var(e) {
                Ok(v) => ctx.env(e, &v)?,
                Err(_) => &mut ctx,
            },
        };
    }
    for d in &args.dirs {
        let (host, guest) = d.split_once("::").unwrap_or((d, d));
        ctx.preopen_dir(std::path::Path::new(host), guest)?;
    }
    Ok(ctx)
}

/// The host's signature policy from `--trusted-key` files (none: no policy).
fn host_policy(paths: &[std::path::PathBuf]) -> anyhow::Result<Option<patch_format::TrustedKeys>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut keys = patch_format::TrustedKeys::new();
    for p in paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let key = patch_format::PublicKey::from_text(&text)
            .with_context(|| format!("{}: not a public key", p.display()))?;
        keys.add(key);
    }
    Ok(Some(keys))
}

/// Entry point.
pub fn main(args: RunArgs) -> anyhow::Result<i32> {
    // Bind first: a refused socket must not start the guest.
    let policy = host_policy(&args.trusted_keys)?;
    let mut audit = AuditLog::open(args.audit_log.as_deref())?;
    let mut server = match &args.control {
        Some(path) => {
            let mut s = control::Server::bind(path)?;
            s.set_module(&args.file, &super::hash::module_hash(&args.file)?);
            if let Some(keys) = &policy {
                s.require_signatures(keys.clone());
            }
            Some(s)
        }
        None => None,
    };
    // Declared after the server: dropped first, so the socket is removed by
    // the server's `Drop` once the handler no longer would.
    let _signals = crate::signals::install(args.control.as_deref())?;
    let engine = Engine::new(wasm_patch_runtime::Config {
        frame_transfer: args.frame_transfer,
        ..wasm_patch_runtime::Config::default()
    })?;
    let module = Module::from_file(&engine, &args.file)?;
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    add_print_functions(&mut linker);
    let wasi = wasm_patch_wasi::add_wasi(&mut linker, wasi_ctx(&args)?)?;
    let instance = match linker.instantiate(&mut store, &module) {
        Ok(i) => i,
        Err(Error::Trap(mut t)) => {
            // Backtraces show readable (demangled) names.
            for fr in &mut t.frames {
                fr.name = patch_format::names::readable(&fr.name);
            }
            eprintln!("error: start function trapped\n{t}");
            return Ok(TRAP_EXIT);
        }
        Err(e) => return Err(e).with_context(|| format!("instantiating {}", args.file.display())),
    };
    let name = args.invoke.as_deref().unwrap_or("_start");
    let func = instance
        .get_func(&store, name)
        .with_context(|| format!("{} has no exported function `{name}`", args.file.display()))?;
    let ty = func.ty(&store);
    if args.invoke.is_some() && ty.params().len() != args.args.len() {
        bail!(
            "`{name}` takes {} argument(s), {} given",
            ty.params().len(),
            args.args.len()
        );
    }
    let vals = if args.invoke.is_some() {
        args.args
            .iter()
            .zip(ty.params())
            .map(|(s, t)| parse_arg(s, *t))
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    if let Some(code) = apply_at_start(
        &mut store,
        instance,
        &args.apply,
        policy.as_ref(),
        &mut audit,
        server.as_mut(),
    )? {
        return Ok(code);
    }
    let audit = match server.as_mut() {
        Some(s) => {
            s.set_audit_log(audit);
            None
        }
        None => Some(audit),
    };
    let main = store.spawn(func, &vals)?;
    let mut reaper = Reaper::default();
    let r = serve(
        &mut store,
        instance,
        main,
        server.as_mut(),
        &wasi,
        &mut reaper,
    );
    let stopped = crate::signals::stop_requested();
    match (server, stopped) {
        (Some(s), Some(sig)) => s.stop(crate::signals::name(sig)),
        (Some(s), None) => s.shutdown(),
        (None, Some(sig)) => {
            if let Some(mut a) = audit {
                let signal = crate::signals::name(sig);
                a.record(serde_json::json!({"kind": "stop", "event": "stop", "signal": signal}));
            }
        }
        (None, None) => {}
    }
    r?;
    if let Some(sig) = stopped {
        eprintln!(
            "wasm-patch: stopped by {}: the guest was shut down",
            crate::signals::name(sig)
        );
        return Ok(STOPPED_EXIT_BASE + sig);
    }
    reaper.reap(&mut store, main);
    if let Some(code) = wasi.exit_code() {
        return Ok(code);
    }
    let result = store.take_result(main);
    match result {
        Ok(results) => {
            for r in results {
                println!("{r}");
            }
            // A guest thread that trapped fails the run, even when the main
            // thread returned.
            Ok(if reaper.traps > 0 { TRAP_EXIT } else { 0 })
        }
        Err(Error::Trap(mut t)) => {
            // Backtraces show readable (demangled) names.
            for fr in &mut t.frames {
                fr.name = patch_format::names::readable(&fr.name);
            }
            eprintln!(
                "error: failed to run `{name}` in {}\n{t}",
                args.file.display()
            );
            Ok(TRAP_EXIT)
        }
        Err(e) => Err(e.into()),
    }
}

/// `--apply`: applies `paths` in order before any guest thread runs, each
/// transition to completion (there is no thread to wait for). Returns the
/// exit status of the first refusal (as `apply` would exit), after which the
/// guest must not run.
fn apply_at_start(
    store: &mut Store<()>,
    instance: wasm_patch_runtime::Instance,
    paths: &[std::path::PathBuf],
    policy: Option<&patch_format::TrustedKeys>,
    audit: &mut AuditLog,
    mut server: Option<&mut control::Server>,
) -> anyhow::Result<Option<i32>> {
    for path in paths {
        let bytes =
            std::fs::read(path).with_context(|| format!("--apply: reading {}", path.display()))?;
        let facts = BundleFacts::of(&bytes);
        let mut entry = serde_json::json!({
            "kind": "boot", "event": "apply", "file": path.display().to_string(),
        });
        facts.add_to(&mut entry);
        let refused = |kind: &str, error: String| (kind.to_string(), error);
        let result = match policy.map(|p| p.verify(&bytes)) {
            Some(Err(e)) => Err(refused(
                "policy",
                format!("refused by the host's signature policy (--trusted-key): {e}"),
            )),
            _ => store
                .apply(instance, &bytes, &ApplyOptions::default())
                .map_err(|e| refused(control::error_kind(&e), e.to_string())),
        };
        match result {
            Ok(id) => {
                let outcome = store.wait_transition()?;
                entry["patch"] = serde_json::json!(id.0);
                entry["result"] = serde_json::json!("ok");
                audit.record(entry);
                if outcome.reversed {
                    bail!("--apply {}: the transition was reversed", path.display());
                }
                if let Some(s) = server.as_deref_mut() {
                    s.know(id, facts);
                }
            }
            Err((kind, error)) => {
                entry["result"] = serde_json::json!(kind);
                entry["error"] = serde_json::json!(error);
                audit.record(entry);
                eprintln!("error: --apply {}: {error}", path.display());
                return Ok(Some(control::exit_for_kind(Some(&kind))));
            }
        }
    }
    Ok(None)
}

/// Collects the guest threads other than the main one as they finish: a
/// trap is reported on stderr at once (with its backtrace) and counted, so
/// that the run cannot end with status 0; results are dropped.
#[derive(Default)]
struct Reaper {
    traps: usize,
    last: Option<std::time::Instant>,
}

impl Reaper {
    /// [`Reaper::reap`] at most every 100 ms: it looks at every thread.
    fn reap_now_and_then(&mut self, store: &mut Store<()>, main: wasm_patch_runtime::ThreadId) {
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.last = Some(std::time::Instant::now());
            self.reap(store, main);
        }
    }

    fn reap(&mut self, store: &mut Store<()>, main: wasm_patch_runtime::ThreadId) {
        for id in store.finished_threads() {
            if id == main {
                continue;
            }
            if let Err(Error::Trap(mut t)) = store.take_result(id) {
                // `proc_exit` from this thread ends the run with its status:
                // an exit, not a trap.
                if is_proc_exit(&t) {
                    continue;
                }
                for fr in &mut t.frames {
                    fr.name = patch_format::names::readable(&fr.name);
                }
                eprintln!("error: guest {id} trapped\n{t}");
                self.traps += 1;
            }
        }
    }
}

/// Whether `t` is how a guest thread that called WASI `proc_exit` ends.
fn is_proc_exit(t: &wasm_patch_runtime::Trap) -> bool {
    t.kind == wasm_patch_runtime::TrapKind::HostError
        && t.message.as_deref().is_some_and(|m| {
            let m = m.strip_prefix("host error: ").unwrap_or(m);
            m.strip_prefix(wasm_patch_wasi::PROC_EXIT_MESSAGE)
                .is_some_and(|rest| rest.starts_with('('))
        })
}

/// The run loop of `run --control`: guest time slices and control requests
/// alternate on this thread until the main thread (`_start` or `--invoke`)
/// finishes. Requests never block the loop: a client waiting for a
/// transition is answered when it ends.
///
/// Without a server (a WASI run), the loop only steps the guest; either way
/// it ends as soon as a guest thread has called `proc_exit`.
fn serve(
    store: &mut Store<()>,
    instance: wasm_patch_runtime::Instance,
    main: wasm_patch_runtime::ThreadId,
    mut server: Option<&mut control::Server>,
    wasi: &wasm_patch_wasi::WasiHandle,
    reaper: &mut Reaper,
) -> anyhow::Result<()> {
    loop {
        // SIGTERM, SIGINT or SIGHUP: stop between time slices.
        if crate::signals::stop_requested().is_some() {
            return Ok(());
        }
        // 16 slices of at most 5 ms each: control requests wait < 100 ms
        // even for a busy guest. The exit status is checked after each.
        let mut ran = 0;
        for _ in 0..16 {
            if store.run_steps(1) == 0 {
                break;
            }
            ran += 1;
            if wasi.exit_code().is_some() {
                return Ok(());
            }
        }
        if let Some(s) = server.as_deref_mut() {
            s.after_steps(store);
        }
        reaper.reap_now_and_then(store, main);
        match store.thread_state(main) {
            Some(RunState::Done) | None => return Ok(()),
            _ => {}
        }
        let busy = match server.as_deref_mut() {
            Some(s) => s.poll(store, instance),
            None => false,
        };
        // Guest threads parked on stdin (or poll_oneoff on it) run again
        // once it is readable: checked without waiting while others run,
        // waited for (briefly, so control requests stay prompt) when idle.
        if ran != 0 || busy {
            for id in wasi.wait_ready(Duration::ZERO) {
                store.unpark(id);
            }
        } else {
            let live = store.threads();
            if store.transition_patch().is_none()
                && !wasi.has_waiters()
                && !live.is_empty()
                && live
                    .iter()
                    .all(|t| store.thread_state(*t) == Some(RunState::Parked))
            {
                return Err(Error::Deadlock(main.0).into());
            }
            if wasi.has_waiters() {
                for id in wasi.wait_ready(Duration::from_millis(1)) {
                    store.unpark(id);
                }
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_arguments_are_range_checked_not_wrapped() {
        let i32_of = |s| parse_arg(s, ValType::I32).map(|v| v.i32().unwrap());
        assert_eq!(i32_of("7").unwrap(), 7);
        assert_eq!(i32_of("-2147483648").unwrap(), i32::MIN);
        assert_eq!(i32_of("4294967295").unwrap(), -1);
        let e = i32_of("99999999999").unwrap_err().to_string();
        assert!(e.contains("does not fit in an i32"), "{e}");
        assert!(i32_of("-2147483649").is_err());
        assert!(i32_of("x").is_err());
        let i64_of = |s| parse_arg(s, ValType::I64).map(|v| v.i64().unwrap());
        assert_eq!(i64_of("18446744073709551615").unwrap(), -1);
        assert!(i64_of("18446744073709551616").is_err());
        assert!(i64_of("-9223372036854775809").is_err());
    }
}
