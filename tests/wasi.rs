//! Runs the official WASI preview 1 testsuite (72 prebuilt programs in
//! `rust/`, `c/` and `assemblyscript/`) through `wasm-patch run`, each as its
//! JSON specification says (the suite's `SPECIFICATION.md`): `args` after the
//! file, `env` through `--env` (and nothing else), `root` copied fresh and
//! preopened as `/` (`--dir COPY::/`), then `exit_code` is compared, and
//! `stdout` and `stderr` when the spec gives them (as the suite's own runner
//! does). Specs in the operation-based
//! form (`run`/`read`/`wait`) are read the same way.
//!
//! Failures are checked against [`EXPECTED_FAILURES`] in both directions: an
//! unlisted failure fails the run, and so does a listed program that passes.
//!
//! The suite is read from `$WASI_TESTSUITE`, else `../shared/wasi-testsuite`
//! beside the project; when it is absent the runner says so and skips it.
//!
//! Before the suite, the CLI checks of this project's own (see
//! [`cli_checks`]) run: a guest thread blocked reading stdin parks only
//! itself (the other threads keep printing, the control socket keeps
//! answering), also in a Rust `wasm32-wasip1` guest reading with
//! `stdin().read_line`, `proc_exit` in a spawned thread ends the run with
//! its status, `--invoke` links WASI, and a bundle diffed from two
//! `wasm32-wasip1` builds applies to the running old one.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-patch");

/// Programs known to fail, as `DIR/NAME` (without `.wasm`), with why.
const EXPECTED_FAILURES: &[(&str, &str)] = &[];

fn suite_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("WASI_TESTSUITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/wasi-testsuite"));
    dir.is_dir().then_some(dir)
}

/// What one program must do.
#[derive(Default)]
struct Spec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    root: Option<String>,
    exit_code: i32,
    stdout: Option<String>,
    stderr: Option<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn env_of(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_spec(text: Option<&str>) -> Result<Spec, String> {
    let mut spec = Spec::default();
    let Some(text) = text else { return Ok(spec) };
    let v: Value = serde_json::from_str(text).map_err(|e| format!("bad spec JSON: {e}"))?;
    let Some(ops) = v.get("operations").and_then(Value::as_array) else {
        spec.args = strings(v.get("args"));
        spec.env = env_of(v.get("env"));
        spec.root = v.get("root").and_then(Value::as_str).map(String::from);
        spec.exit_code = v.get("exit_code").and_then(Value::as_i64).unwrap_or(0) as i32;
        spec.stdout = v.get("stdout").and_then(Value::as_str).map(String::from);
        spec.stderr = v.get("stderr").and_then(Value::as_str).map(String::from);
        return Ok(spec);
    };
    for op in ops {
        match op.get("type").and_then(Value::as_str) {
            Some("run") => {
                spec.args = strings(op.get("args"));
                spec.env = env_of(op.get("env"));
                spec.root = op.get("root").and_then(Value::as_str).map(String::from);
            }
            Some("wait") => {
                spec.exit_code = op.get("exit_code").and_then(Value::as_i64).unwrap_or(0) as i32
            }
            Some("read") => {
                let payload = op
                    .get("payload")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match op.get("id").and_then(Value::as_str).unwrap_or("stdout") {
                    "stderr" => spec.stderr = Some(payload),
                    _ => spec.stdout = Some(payload),
                }
            }
            other => return Err(format!("unsupported operation {other:?} (network tests)")),
        }
    }
    Ok(spec)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            copy_dir(&src, &dst)?;
        } else if src.extension().is_none_or(|x| x != "cleanup") {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Run one program; `Err` says how it failed.
fn run_one(wasm: &Path, scratch: &Path) -> Result<(), String> {
    let json = wasm.with_extension("json");
    let text = std::fs::read_to_string(&json).ok();
    let spec = parse_spec(text.as_deref())?;
    let dir = wasm.parent().expect("in a directory");
    let mut cmd = Command::new(BIN);
    cmd.arg("run");
    if let Some(root) = &spec.root {
        let copy = scratch.join(root);
        let _ = std::fs::remove_dir_all(&copy);
        copy_dir(&dir.join(root), &copy).map_err(|e| format!("copying {root}: {e}"))?;
        cmd.arg("--dir").arg(format!("{}::/", copy.display()));
    }
    for (k, v) in &spec.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg(wasm).args(&spec.args);
    cmd.current_dir(scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().map_err(|e| format!("spawning {BIN}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    if code != spec.exit_code {
        return Err(format!(
            "exit code {code}, expected {}; stderr: {}",
            spec.exit_code,
            stderr.trim()
        ));
    }
    if let Some(o) = &spec.stdout {
        if &stdout != o {
            return Err(format!("stdout {stdout:?}, expected {o:?}"));
        }
    }
    if let Some(e) = &spec.stderr {
        if &stderr != e {
            return Err(format!("stderr {stderr:?}, expected {e:?}"));
        }
    }
    Ok(())
}

/// Main prints `tick` every 2 ms forever; a spawned reader blocks in
/// `fd_read(stdin)`, echoes `read: LINE` and calls `proc_exit(7)`.
const BLOCKING_GUEST: &str = r#"(module
  (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (elem (i32.const 0) $reader)
  (data (i32.const 100) "\c8\00\00\00\05\00\00\00")
  (data (i32.const 200) "tick\n")
  (data (i32.const 300) "\90\01\00\00\40\00\00\00")
  (data (i32.const 500) "\58\02\00\00\06\00\00\00")
  (data (i32.const 600) "read: ")
  (data (i32.const 1016) "\01\00\00\00")
  (data (i32.const 1024) "\80\84\1e\00\00\00\00\00")
  (func $reader (param i32)
    (drop (call $fd_read (i32.const 0) (i32.const 300) (i32.const 1) (i32.const 116)))
    (i32.store (i32.const 508) (i32.const 400))
    (i32.store (i32.const 512) (i32.load (i32.const 116)))
    (drop (call $fd_write (i32.const 1) (i32.const 500) (i32.const 2) (i32.const 120)))
    (call $exit (i32.const 7)))
  (func (export "_start")
    (drop (call $spawn (i32.const 0) (i32.const 0)))
    (loop $l
      (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 124)))
      (drop (call $poll (i32.const 1000) (i32.const 1100) (i32.const 1) (i32.const 1140)))
      (br $l))))"#;

/// Lines of a child's stdout, delivered through a channel; `next` fails
/// the check instead of hanging when the child stops printing for a minute
/// (a hang guard, not a timing assertion).
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn new(out: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    fn next(&self, what: &str) -> Result<String, String> {
        self.0
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| format!("no output line while waiting for {what}"))
    }
}

/// A guest thread blocked on stdin parks only itself: `tick`s keep coming
/// and `list` over the control socket answers while the reader waits; the
/// line written then reaches it, and its `proc_exit(7)` ends the run.
fn blocked_reader_parks_only_itself(scratch: &Path) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let wat = scratch.join("blocking.wat");
    std::fs::write(&wat, BLOCKING_GUEST).map_err(|e| e.to_string())?;
    let sock = scratch.join("ctl.sock");
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--control")
        .arg(&sock)
        .arg(&wat)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = Lines::new(child.stdout.take().expect("piped"));
    let result = (|| {
        for i in 0..5 {
            let l = lines.next(&format!("tick {i} while the reader is blocked"))?;
            if l != "tick" {
                return Err(format!("expected `tick`, got {l:?}"));
            }
        }
        let list = Command::new(BIN)
            .args(["list", "--control"])
            .arg(&sock)
            .output()
            .map_err(|e| e.to_string())?;
        if !list.status.success() {
            return Err(format!(
                "control socket did not answer while the reader was blocked: {}",
                String::from_utf8_lossy(&list.stderr)
            ));
        }
        for i in 0..5 {
            let l = lines.next(&format!("tick {i} after the control request"))?;
            if l != "tick" {
                return Err(format!("expected `tick`, got {l:?}"));
            }
        }
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(b"hello\n").map_err(|e| e.to_string())?;
        loop {
            let l = lines.next("the reader's echo")?;
            if l == "read: hello" {
                break;
            }
            if l != "tick" {
                return Err(format!("unexpected line {l:?}"));
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    // Hang guard: a run that does not end on proc_exit is killed after a
    // minute and reported.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the run did not end after proc_exit(7) in the reader thread".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    result?;
    match status.code() {
        Some(7) => Ok(()),
        other => Err(format!(
            "proc_exit(7) in the reader thread must end the run with status 7, got {other:?}"
        )),
    }
}

/// A committed guest module, `guests/built/NAME` (the WASI ones are built
/// from `guests/wasi/` by `guests/build-wasi.sh`).
fn built_guest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guests/built")
        .join(name)
}

/// A Rust `wasm32-wasip1` program: its reader thread blocks in
/// `stdin().read_line` while the main thread and two workers print
/// `WHO tick N`. Every one of them prints ten ticks with the reader still
/// blocked (stdin is an open, empty pipe); then the line written reaches
/// the reader, which prints `reader got: LINE` and exits with status 3.
/// Each printing thread holds frames in its own linear-memory stack across
/// every sleep, and prints `WHO: frame corrupted` if another thread wrote
/// into them (as happens on one shared stack).
fn rust_guest_reader_parks_only_itself(_scratch: &Path) -> Result<(), String> {
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(built_guest("wasi-threads.wasm"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = Lines::new(child.stdout.take().expect("piped"));
    let result = (|| {
        ticks(&lines, 10, |_| false)?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(b"hello from the test\n")
            .map_err(|e| e.to_string())?;
        reader_line(&lines, "reader got: hello from the test")
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = wait_or_kill(&mut child, "exit(3) in the reader thread")?;
    result?;
    match status.code() {
        Some(3) => Ok(()),
        other => Err(format!(
            "exit(3) in the reader thread must end the run with status 3, got {other:?}"
        )),
    }
}

/// `order N: total T` from the patchable service, as (N, T).
fn order_line(l: &str) -> Result<(u32, u32), String> {
    let parse = || {
        let (n, t) = l.strip_prefix("order ")?.split_once(": total ")?;
        Some((n.parse().ok()?, t.parse().ok()?))
    };
    parse().ok_or_else(|| format!("unexpected line {l:?}"))
}

/// Patching a WASI program (issue 13, item 5): two `wasm32-wasip1` builds
/// of `guests/wasi/patchme` (the fix changes only the code of `total`),
/// `wasm-patch diff` between them, applied with `wasm-patch apply` to the
/// old build running under `run --control`. The buggy totals (`100+N-20`)
/// are followed, once the transition completes, only by fixed ones
/// (`100+N-10`).
fn wasi_program_patched_live(scratch: &Path) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let (old, new) = (
        built_guest("wasi-patch-old.wasm"),
        built_guest("wasi-patch-new.wasm"),
    );
    let bundle = scratch.join("fix.wpatch");
    let diff = Command::new(BIN)
        .arg("diff")
        .arg(&old)
        .arg(&new)
        .arg("-o")
        .arg(&bundle)
        .output()
        .map_err(|e| e.to_string())?;
    if !diff.status.success() {
        return Err(format!(
            "diff refused the two wasip1 builds: {}",
            String::from_utf8_lossy(&diff.stderr)
        ));
    }
    let sock = scratch.join("ctl.sock");
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--control")
        .arg(&sock)
        .arg(&old)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = Lines::new(child.stdout.take().expect("piped"));
    let result = (|| {
        for _ in 0..5 {
            let (n, t) = order_line(&lines.next("a buggy total")?)?;
            if t != 100 + n - 20 {
                return Err(format!("order {n}: total {t} before the patch"));
            }
        }
        let apply = Command::new(BIN)
            .arg("apply")
            .arg("--control")
            .arg(&sock)
            .arg(&bundle)
            .output()
            .map_err(|e| e.to_string())?;
        let said = String::from_utf8_lossy(&apply.stdout);
        if !apply.status.success() || !said.contains("transition completed") {
            return Err(format!(
                "apply: status {:?}, stdout {said:?}, stderr {}",
                apply.status.code(),
                String::from_utf8_lossy(&apply.stderr)
            ));
        }
        // Lines printed before the transition completed may still be
        // buggy (up to 2,000, far more than the pipe and channel hold);
        // once a fixed one shows, every later one must be fixed too.
        let mut fixed = 0;
        for _ in 0..2000 {
            let (n, t) = order_line(&lines.next("a fixed total")?)?;
            if t == 100 + n - 10 {
                fixed += 1;
                if fixed == 5 {
                    return Ok(());
                }
            } else if fixed > 0 || t != 100 + n - 20 {
                return Err(format!("order {n}: total {t} after the patch"));
            }
        }
        Err("still buggy 2,000 lines after the transition completed".into())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Waits for `child` to end; a run still going after a minute is killed
/// and reported (a hang guard, not a timing assertion).
fn wait_or_kill(
    child: &mut std::process::Child,
    what: &str,
) -> Result<std::process::ExitStatus, String> {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the run did not end after {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `--invoke` calls an export of a WASI program with WASI linked.
fn invoke_links_wasi(scratch: &Path) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let wat = scratch.join("invoke.wat");
    std::fs::write(
        &wat,
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "\10\00\00\00\03\00\00\00")
  (data (i32.const 16) "hi\n")
  (func (export "f") (param i32) (result i32)
    (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 32)))
    (i32.add (local.get 0) (i32.const 1))))"#,
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(BIN)
        .args(["run", "--invoke", "f"])
        .arg(&wat)
        .arg("41")
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stdout != "hi\n42\n" {
        return Err(format!(
            "status {:?}, stdout {stdout:?}, stderr {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Reads `lines` until the reader's line `want`; only ticks may come
/// before it.
fn reader_line(lines: &Lines, want: &str) -> Result<(), String> {
    loop {
        let l = lines.next("the reader's line")?;
        if l == want {
            return Ok(());
        }
        if !l.contains(" tick ") {
            return Err(format!("unexpected line {l:?}"));
        }
    }
}

/// Reads `lines` until `main`, `worker 1` and `worker 2` printed `n` ticks
/// each (in order per thread); any other line fails unless `skip` allows
/// it.
fn ticks(lines: &Lines, n: u32, skip: impl Fn(&str) -> bool) -> Result<(), String> {
    let who = ["main", "worker 1", "worker 2"];
    let mut seen = [0u32; 3];
    while seen.iter().any(|&t| t < n) {
        let l = lines.next("ticks while one thread is blocked")?;
        let Some((name, k)) = l.rsplit_once(" tick ") else {
            if skip(&l) {
                continue;
            }
            return Err(format!("unexpected line {l:?}"));
        };
        let i = who
            .iter()
            .position(|w| *w == name)
            .ok_or_else(|| format!("unexpected line {l:?}"))?;
        if k != seen[i].to_string() {
            return Err(format!("{name}: expected tick {}, got {l:?}", seen[i]));
        }
        seen[i] += 1;
    }
    Ok(())
}

/// The Rust guest's reader opens a FIFO in a preopened directory and
/// blocks reading it: opening a FIFO waits for a writer and reading it
/// waits for data, and both park only the reader while the other threads
/// print ten ticks each; then the test writes a line into the FIFO.
fn rust_guest_fifo_reader_parks_only_itself(scratch: &Path) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let fifo = scratch.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(format!("mkfifo: {}", std::io::Error::last_os_error()));
    }
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/p", scratch.display()))
        .arg(built_guest("wasi-threads.wasm"))
        .args(["read", "/p/fifo"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = Lines::new(child.stdout.take().expect("piped"));
    let result = (|| {
        ticks(&lines, 10, |_| false)?;
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .map_err(|e| e.to_string())?;
        w.write_all(b"through the fifo\n")
            .map_err(|e| e.to_string())?;
        reader_line(&lines, "reader got: through the fifo")
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = wait_or_kill(&mut child, "exit(3) in the reader thread")?;
    result?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).map_err(|e| e.to_string())?;
    }
    // `proc_exit` in a spawned thread is an exit, not a trap to report.
    if stderr.contains("trapped") {
        return Err(format!("stderr reports a trap: {stderr}"));
    }
    match status.code() {
        Some(3) => Ok(()),
        other => Err(format!("expected status 3, got {other:?}")),
    }
}

/// The Rust guest's flooder writes 200,000 lines to stdout, a pipe the test
/// leaves unread: the pipe fills, and the flooder's writes park only the
/// flooder while the other threads print ten ticks each on stderr. Then the
/// test drains stdout: every line arrives, in order, none cut or repeated
/// (writes to a full pipe may be short; the guest's `write_all` finishes
/// them).
fn rust_guest_full_stdout_parks_only_the_writer(_scratch: &Path) -> Result<(), String> {
    const N: usize = 200_000;
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(built_guest("wasi-threads.wasm"))
        .args(["flood", &N.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().expect("piped");
    let err_lines = Lines::new(child.stderr.take().expect("piped"));
    let result = (|| {
        ticks(&err_lines, 10, |l| l == "flood done")?;
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).map_err(|e| e.to_string())?;
        let mut count = 0;
        for (i, l) in out.lines().enumerate() {
            if l != format!("flood {i}") {
                return Err(format!("stdout line {i} is {l:?}"));
            }
            count += 1;
        }
        if count != N {
            return Err(format!("{count} flood lines, expected {N}"));
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = wait_or_kill(&mut child, "exit(5) in the flooder")?;
    result?;
    match status.code() {
        Some(5) => Ok(()),
        other => Err(format!("expected status 5, got {other:?}")),
    }
}

/// `poll_oneoff` with one `fd_read` subscription on stdin, then prints
/// the errno, the number of events, the event's error and its `nbytes`.
const POLL_NBYTES_GUEST: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "env" "print_i32" (func $print (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 1))
    (i32.store (i32.const 16) (i32.const 0))
    (call $print (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (call $print (i32.load (i32.const 128)))
    (call $print (i32.load16_u (i32.const 72)))
    (call $print (i32.wrap_i64 (i64.load (i32.const 80))))))"#;

/// `poll_oneoff` reports how many bytes a ready read returns: 6 after
/// `hello\n` arrives on a stdin pipe (the guest waits for it), 10 for a
/// 10-byte regular file as stdin.
fn poll_reports_readable_bytes(scratch: &Path) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let wat = scratch.join("poll.wat");
    std::fs::write(&wat, POLL_NBYTES_GUEST).map_err(|e| e.to_string())?;
    let run = |stdin: Stdio, feed: Option<&[u8]>| -> Result<String, String> {
        let mut child = Command::new(BIN)
            .arg("run")
            .arg(&wat)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(bytes) = feed {
            std::thread::sleep(Duration::from_millis(50));
            let mut w = child.stdin.take().expect("piped");
            w.write_all(bytes).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("run failed: {}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).replace('\n', " "))
    };
    let piped = run(Stdio::piped(), Some(b"hello\n"))?;
    if piped.trim() != "0 1 0 6" {
        return Err(format!("pipe: errno, events, error, nbytes = {piped:?}"));
    }
    let file = scratch.join("ten");
    std::fs::write(&file, b"0123456789").map_err(|e| e.to_string())?;
    let f = std::fs::File::open(&file).map_err(|e| e.to_string())?;
    let regular = run(Stdio::from(f), None)?;
    if regular.trim() != "0 1 0 10" {
        return Err(format!("file: errno, events, error, nbytes = {regular:?}"));
    }
    Ok(())
}

/// How many checks [`cli_checks`] runs.
const CLI_CHECKS: usize = 7;

/// This project's own CLI checks; returns the failures.
fn cli_checks(scratch: &Path) -> Vec<String> {
    type Check = fn(&Path) -> Result<(), String>;
    let checks: [(&str, Check); CLI_CHECKS] = [
        (
            "blocked_reader_parks_only_itself",
            blocked_reader_parks_only_itself,
        ),
        (
            "rust_guest_reader_parks_only_itself",
            rust_guest_reader_parks_only_itself,
        ),
        (
            "rust_guest_fifo_reader_parks_only_itself",
            rust_guest_fifo_reader_parks_only_itself,
        ),
        (
            "rust_guest_full_stdout_parks_only_the_writer",
            rust_guest_full_stdout_parks_only_the_writer,
        ),
        ("poll_reports_readable_bytes", poll_reports_readable_bytes),
        ("wasi_program_patched_live", wasi_program_patched_live),
        ("invoke_links_wasi", invoke_links_wasi),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        match check(&scratch.join(name)) {
            Ok(()) => println!("ok   cli/{name}"),
            Err(e) => {
                println!("FAIL cli/{name}: {e}");
                failed.push(format!("cli/{name}: {e}"));
            }
        }
    }
    failed
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let scratch = std::env::temp_dir().join(format!("wasm-patch-wasi-{}", std::process::id()));
    let cli_failed = if filter.is_none() {
        cli_checks(&scratch.join("cli"))
    } else {
        Vec::new()
    };
    let Some(suite) = suite_dir() else {
        let _ = std::fs::remove_dir_all(&scratch);
        println!(
            "WASI TESTSUITE ABSENT: set WASI_TESTSUITE or place it at ../shared/wasi-testsuite; \
             only the CLI checks ran"
        );
        println!(
            "wasi testsuite: {} passed, {} failed",
            CLI_CHECKS - cli_failed.len(),
            cli_failed.len()
        );
        if !cli_failed.is_empty() {
            std::process::exit(1);
        }
        return;
    };
    let mut programs = Vec::new();
    for lang in ["rust", "c", "assemblyscript"] {
        let Ok(rd) = std::fs::read_dir(suite.join(lang)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "wasm") {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                programs.push((format!("{lang}/{stem}"), p));
            }
        }
    }
    programs.sort();
    let expected: BTreeSet<&str> = EXPECTED_FAILURES.iter().map(|(n, _)| *n).collect();
    let (mut passed, mut failed, mut wrong) = (0, 0, cli_failed);
    for (name, wasm) in &programs {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let work = scratch.join(name);
        std::fs::create_dir_all(&work).expect("scratch directory");
        let r = run_one(wasm, &work);
        let listed = expected.contains(name.as_str());
        match (&r, listed) {
            (Ok(()), false) => {
                passed += 1;
                println!("ok   {name}");
            }
            (Err(e), true) => {
                failed += 1;
                println!("xfail {name}: {e}");
            }
            (Err(e), false) => {
                failed += 1;
                println!("FAIL {name}: {e}");
                wrong.push(format!("{name}: unexpected failure"));
            }
            (Ok(()), true) => {
                passed += 1;
                println!("XPASS {name}");
                wrong.push(format!("{name}: listed as an expected failure but passes"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    for w in &wrong {
        println!("unexpected: {w}");
    }
    println!("wasi testsuite: {passed} passed, {failed} failed");
    if !wrong.is_empty() {
        std::process::exit(1);
    }
}
