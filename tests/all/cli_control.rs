//! End to end: `wasm-patch run --control SOCKET` driven through its socket
//! by the real binary's `apply`, `list`, `status` and by raw protocol lines.
//! Guests print one tag per step on stdout, which the tests read.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_wasm-patch");

/// A service of version `v`: `step` calls `encode`, yields, sleeps 1 ms
/// (so that about a third of the workers are inside `step` whenever a
/// bundle lands), calls `decode` and prints `v*1000 + v*100 + v*10` when all three ran in one version;
/// any other tag is a mixed step. `slow` sleeps inside itself. Only the
/// functions that mention `v` differ between versions.
pub(crate) fn service(v: i32) -> String {
    format!(
        r#"(module
  (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
  (import "wasm-patch" "yield" (func $yield))
  (import "wasm-patch" "sleep" (func $sleep (param i64)))
  (import "env" "print_i32" (func $print_i32 (param i32)))
  (global $stop (mut i32) (i32.const 0))
  (global $done (mut i32) (i32.const 0))
  (table 2 funcref)
  (elem (i32.const 0) $worker $sleeper)
  (func $encode (param i32) (result i32) i32.const {v} i32.const 100 i32.mul)
  (func $decode (param i32) (result i32) i32.const {v} i32.const 10 i32.mul local.get 0 i32.add)
  (func $step (result i32)
    (local $x i32)
    i32.const {v} i32.const 1000 i32.mul
    i32.const 0 call $encode
    i32.add
    local.set $x
    call $yield
    i64.const 1000000 call $sleep
    local.get $x call $decode)
  (func $slow (param $ms i32)
    i32.const {v} drop
    local.get $ms i64.extend_i32_u i64.const 1000000 i64.mul call $sleep)
  (func $worker (param $id i32)
    (loop $l
      call $step call $print_i32
      i64.const 2000000 call $sleep
      global.get $stop i32.eqz br_if $l)
    global.get $done i32.const 1 i32.add global.set $done)
  (func $sleeper (param $ms i32) local.get $ms call $slow)
  (func (export "main") (param $workers i32) (param $ms i32) (param $sleeper_ms i32)
    (local $i i32)
    (block $b (loop $l
      local.get $i local.get $workers i32.ge_u br_if $b
      (drop (call $spawn (i32.const 0) (local.get $i)))
      local.get $i i32.const 1 i32.add local.set $i
      br $l))
    (if (local.get $sleeper_ms)
      (then (drop (call $spawn (i32.const 1) (local.get $sleeper_ms)))))
    local.get $ms i64.extend_i32_u i64.const 1000000 i64.mul call $sleep
    i32.const 1 global.set $stop
    (loop $w
      i64.const 1000000 call $sleep
      global.get $done local.get $workers i32.lt_u br_if $w)))"#
    )
}

/// A scratch directory for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wp-cc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn write_service(dir: &Path) -> (PathBuf, PathBuf) {
    let (old, new) = (dir.join("old.wat"), dir.join("new.wat"));
    std::fs::write(&old, service(1)).unwrap();
    std::fs::write(&new, service(2)).unwrap();
    (old, new)
}

pub(crate) fn wasm_patch(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("runs wasm-patch")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Builds a bundle with `wasm-patch diff`.
pub(crate) fn make_bundle(
    dir: &Path,
    old: &Path,
    new: &Path,
    name: &str,
    extra: &[&str],
) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = wasm_patch(&args);
    assert!(o.status.success(), "diff failed: {}", text(&o.stderr));
    out
}

/// A running `wasm-patch run --control`, its output drained by threads so
/// that a chatty guest never blocks on a full pipe.
pub(crate) struct Guest {
    pub(crate) child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

pub(crate) fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        text(&s)
    })
}

impl Guest {
    pub(crate) fn start(sock: &Path, file: &Path, invoke: &str, args: &[&str]) -> Guest {
        Guest::start_with(sock, file, invoke, args, &[])
    }

    /// [`Guest::start`] with more `run` options.
    pub(crate) fn start_with(
        sock: &Path,
        file: &Path,
        invoke: &str,
        args: &[&str],
        opts: &[&str],
    ) -> Guest {
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .args(opts)
            .arg("--control")
            .arg(sock)
            .arg("--invoke")
            .arg(invoke)
            .arg(file)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starts wasm-patch run");
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        let g = Guest {
            child,
            out: Some(out),
            err: Some(err),
        };
        let t0 = Instant::now();
        // Until a server answers (a stale socket may be there before).
        while UnixStream::connect(sock).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the control socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        g
    }

    /// Waits for the run to end: (exit code, stdout, stderr).
    pub(crate) fn finish(mut self) -> (i32, String, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("the guest did not finish");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = self.out.take().unwrap().join().unwrap();
        let err = self.err.take().unwrap().join().unwrap();
        (status.code().unwrap_or(-1), out, err)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // Only when a test failed midway: do not leave the child behind.
        if self.out.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the guest runs at least `n` threads (the socket answers
/// before the module is compiled and `main` has spawned its workers).
pub(crate) fn wait_threads(sock: &Path, n: usize) {
    let t0 = Instant::now();
    loop {
        let st = raw(sock, b"{\"op\":\"status\"}\n");
        if st["threads"].as_array().map_or(0, Vec::len) >= n {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "threads never started: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tags printed by the guest: (consistent v1, consistent v2, mixed).
pub(crate) fn tally(stdout: &str) -> (usize, usize, usize) {
    let (mut v1, mut v2, mut mixed) = (0, 0, 0);
    for l in stdout.lines() {
        let Ok(t) = l.trim().parse::<i32>() else {
            continue;
        };
        let (a, b, c) = (t / 1000, (t / 100) % 10, (t / 10) % 10);
        match (a, b, c) {
            (1, 1, 1) => v1 += 1,
            (2, 2, 2) => v2 += 1,
            _ => mixed += 1,
        }
    }
    (v1, v2, mixed)
}

pub(crate) fn json_of(o: &Output) -> Value {
    let s = text(&o.stdout);
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
}

/// Sends raw bytes on a fresh connection and reads one reply line.
pub(crate) fn raw(sock: &Path, bytes: &[u8]) -> Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply not JSON ({e}): {line:?}"))
}

fn apply_scenario(name: &str, diff_flags: &[&str]) -> (Value, i32, String) {
    let dir = scratch(name);
    let (old, new) = write_service(&dir);
    let bundle = make_bundle(&dir, &old, &new, "b.wpatch", diff_flags);
    let sock = dir.join("ctl.sock");
    let g = Guest::start(&sock, &old, "main", &["300", "1200", "0"]);
    wait_threads(&sock, 301);
    // Let every worker get into its loop.
    std::thread::sleep(Duration::from_millis(200));
    let o = wasm_patch(&[
        "apply",
        "--control",
        sock.to_str().unwrap(),
        bundle.to_str().unwrap(),
        "--json",
    ]);
    let code = o.status.code().unwrap_or(-1);
    let reply = json_of(&o);
    let (rc, out, err) = g.finish();
    assert_eq!(rc, 0, "run failed: {err}");
    assert!(!sock.exists(), "socket not removed after the run");
    let _ = std::fs::remove_dir_all(&dir);
    (reply, code, out)
}

#[test]
fn consistent_apply_through_the_socket_never_mixes_versions() {
    let (reply, code, out) = apply_scenario("consistent", &[]);
    assert_eq!(code, 0, "apply failed: {reply}");
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["outcome"]["reversed"], false);
    let ms = reply["outcome"]["elapsed_ms"].as_f64().unwrap();
    eprintln!("consistent transition, 300 threads: {ms:.3} ms");
    let (v1, v2, mixed) = tally(&out);
    assert!(v1 > 300, "old code ran ({v1} steps)");
    assert!(v2 > 300, "new code ran ({v2} steps)");
    assert_eq!(mixed, 0, "a consistent bundle produced mixed steps");
}

#[test]
fn all_immediate_apply_through_the_socket_mixes_versions() {
    let (reply, code, out) = apply_scenario("immediate", &["--all-immediate"]);
    assert_eq!(code, 0, "apply failed: {reply}");
    let (_, v2, mixed) = tally(&out);
    eprintln!(
        "immediate transition: {:.3} ms, {mixed} mixed steps",
        reply["outcome"]["elapsed_ms"].as_f64().unwrap()
    );
    assert!(v2 > 0, "new code never ran");
    assert!(
        mixed > 0,
        "an all-immediate bundle should visibly mix versions"
    );
}

#[test]
fn apply_timeout_rolls_back_and_names_the_blocking_function() {
    let dir = scratch("timeout");
    let (old, new) = write_service(&dir);
    let bundle = make_bundle(&dir, &old, &new, "b.wpatch", &[]);
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    // 50 workers for 2.5 s; one thread asleep inside `slow` for 6 s.
    let g = Guest::start(&sock, &old, "main", &["50", "2500", "6000"]);
    wait_threads(&sock, 52);
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let o = wasm_patch(&[
        "apply",
        "--control",
        s,
        bundle.to_str().unwrap(),
        "--timeout",
        "1",
    ]);
    let took = t0.elapsed();
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(3),
        "stdout {} stderr {err}",
        text(&o.stdout)
    );
    assert!(err.contains("rolled back"), "{err}");
    assert!(err.contains("blocked in `slow`"), "{err}");
    assert!(err.contains("sleeper"), "backtrace shows the caller: {err}");
    assert!(
        took >= Duration::from_millis(900),
        "gave up early: {took:?}"
    );
    eprintln!("timed-out apply returned after {took:?}:\n{err}");
    // Rolled back: nothing applied, no transition.
    let list = json_of(&wasm_patch(&["list", "--control", s, "--json"]));
    assert_eq!(list["applied"].as_array().unwrap().len(), 0, "{list}");
    let st = json_of(&wasm_patch(&["status", "--control", s, "--json"]));
    assert!(st["transition"].is_null(), "{st}");
    assert_eq!(st["last_transition"]["reversed"], true, "{st}");
    // The same with --json: the blockers are in the reply.
    let o = wasm_patch(&[
        "apply",
        "--control",
        s,
        bundle.to_str().unwrap(),
        "--timeout",
        "0.3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let r = json_of(&o);
    assert_eq!(r["outcome"]["blockers"][0]["frame"]["name"], "slow", "{r}");
    let (rc, out, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    let (v1, _, mixed) = tally(&out);
    assert!(v1 > 0);
    assert_eq!(mixed, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_that_disconnects_leaves_the_transition_running() {
    let dir = scratch("disconnect");
    let (old, new) = write_service(&dir);
    let bundle = make_bundle(&dir, &old, &new, "b.wpatch", &[]);
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    // The sleeper blocks the transition for 1.8 s.
    let g = Guest::start(&sock, &old, "main", &["20", "2500", "1800"]);
    wait_threads(&sock, 22);
    let hex: String = std::fs::read(&bundle)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    {
        let mut c = UnixStream::connect(&sock).unwrap();
        writeln!(c, r#"{{"op":"apply","bundle":"{hex}"}}"#).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // Dropped here, mid-transition.
    }
    let st = json_of(&wasm_patch(&["status", "--control", s, "--json"]));
    assert_eq!(st["transition"]["patch"], 1, "still in transition: {st}");
    assert_eq!(
        st["transition"]["blockers"][0]["frame"]["name"], "slow",
        "{st}"
    );
    let states: Vec<i64> = st["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["patch_state"].as_i64().unwrap())
        .collect();
    assert!(states.contains(&0) && states.contains(&1), "{states:?}");
    // It completes once the sleeper leaves `slow`.
    let t0 = Instant::now();
    loop {
        let st = json_of(&wasm_patch(&["status", "--control", s, "--json"]));
        if st["transition"].is_null() {
            assert_eq!(st["last_transition"]["reversed"], false, "{st}");
            assert_eq!(st["applied"][0]["id"], 1, "{st}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "never completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (rc, out, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    assert_eq!(tally(&out).2, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_requests_get_errors_and_never_stop_the_guest() {
    let dir = scratch("malformed");
    let (old, _) = write_service(&dir);
    let sock = dir.join("ctl.sock");
    let g = Guest::start(&sock, &old, "main", &["10", "2500", "0"]);
    let bad: &[(&[u8], &str)] = &[
        (b"hello there\n", "malformed request"),
        (b"\xff\xfe\x00garbage\n", "not UTF-8"),
        (b"[1, 2, 3]\n", "`op`"),
        (b"{\"op\":\"format-disk\"}\n", "unknown op"),
        (b"{\"op\":\"apply\"}\n", "`bundle`"),
        (b"{\"op\":\"apply\",\"bundle\":\"zz\"}\n", "not valid hex"),
        (
            b"{\"op\":\"apply\",\"bundle\":\"00ff00ff\"}\n",
            "bundle rejected",
        ),
        (
            b"{\"op\":\"apply\",\"bundle\":\"\",\"timeout_ms\":-1}\n",
            "timeout_ms",
        ),
        (b"{\"op\":\"revert\",\"id\":99}\n", "no applied bundle"),
        (b"{\"op\":\"revert\",\"id\":\"x\"}\n", "numeric `id`"),
        (b"{\"op\":\"reverse\"}\n", "no transition"),
        (b"{\"op\":\"force\"}\n", "no transition"),
    ];
    for (req, want) in bad {
        let r = raw(&sock, req);
        assert_eq!(r["ok"], false, "{r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains(want), "{:?} -> {e}", text(req));
    }
    // Several requests on one connection, the last without a newline.
    {
        let mut c = UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"junk\n{\"op\":\"ping\"}\n{\"op\":\"list\"}")
            .unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let lines: Vec<Value> = BufReader::new(c)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["ok"], false);
        assert_eq!(lines[1]["op"], "ping");
        assert_eq!(lines[2]["op"], "list");
    }
    // Connections that vanish: at once, and halfway through a request.
    drop(UnixStream::connect(&sock).unwrap());
    {
        let mut c = UnixStream::connect(&sock).unwrap();
        c.write_all(b"{\"op\":\"apply\",\"bundle\":\"00").unwrap();
    }
    // An endless line is cut off at the limit with an error.
    {
        let c = UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..140 {
                if w.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        let r: Value = serde_json::from_str(&line).unwrap();
        assert!(
            r["error"].as_str().unwrap().contains("request too large"),
            "{r}"
        );
        writer.join().unwrap();
    }
    // Still serving, and the guest runs to its normal end.
    let st = raw(&sock, b"{\"op\":\"status\"}\n");
    assert_eq!(st["ok"], true, "{st}");
    assert!(st["threads"].as_array().unwrap().len() >= 10);
    let (rc, out, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    assert!(tally(&out).0 > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn socket_is_private_exclusive_and_removed_after_the_run() {
    let dir = scratch("socket");
    let (old, _) = write_service(&dir);
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    // A stale socket (its server is gone) is replaced.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let g = Guest::start(&sock, &old, "main", &["4", "1200", "0"]);
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let ping = raw(&sock, b"{\"op\":\"ping\"}\n");
    assert_eq!(ping["ok"], true, "{ping}");
    // A second server on the same path is refused, and the first survives.
    let o = wasm_patch(&[
        "run",
        "--control",
        s,
        "--invoke",
        "main",
        old.to_str().unwrap(),
        "1",
        "10",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("already listening"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(raw(&sock, b"{\"op\":\"ping\"}\n")["ok"], true);
    let (rc, _, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    assert!(!sock.exists(), "socket left behind");
    // Something that is not a socket is never replaced.
    std::fs::write(&sock, "precious").unwrap();
    let o = wasm_patch(&[
        "run",
        "--control",
        s,
        "--invoke",
        "main",
        old.to_str().unwrap(),
        "1",
        "10",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "precious");
    // Without a server, clients fail with status 7 and say why.
    std::fs::remove_file(&sock).unwrap();
    let o = wasm_patch(&["status", "--control", s]);
    assert_eq!(o.status.code(), Some(7));
    assert!(text(&o.stderr).contains("cannot reach a control server"));
    // Usage errors are status 2.
    assert_eq!(
        wasm_patch(&["apply", "--control", s]).status.code(),
        Some(2)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_guest_is_fixed_and_reverted_live() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/demo");
    let dir = scratch("demo");
    let bundle = make_bundle(
        &dir,
        &root.join("service.wat"),
        &root.join("service-fixed.wat"),
        "fix.wpatch",
        &[],
    );
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    let g = Guest::start(&sock, &root.join("service.wat"), "serve", &["3"]);
    wait_threads(&sock, 4);
    std::thread::sleep(Duration::from_millis(500));
    // With --require-signature, an unsigned bundle is refused...
    let key = dir.join("ops");
    assert!(wasm_patch(&["keygen", "-o", key.to_str().unwrap()])
        .status
        .success());
    let public = dir.join("ops.pub");
    let p = public.to_str().unwrap();
    let o = wasm_patch(&[
        "apply",
        "--control",
        s,
        bundle.to_str().unwrap(),
        "--require-signature",
        p,
    ]);
    // Refused for good: status 5.
    assert_eq!(o.status.code(), Some(5));
    assert!(
        text(&o.stderr).contains("not signed"),
        "{}",
        text(&o.stderr)
    );
    // ...and the signed one applies.
    let signed = dir.join("fix.signed.wpatch");
    let o = wasm_patch(&[
        "sign",
        bundle.to_str().unwrap(),
        "--key",
        dir.join("ops.key").to_str().unwrap(),
        "-o",
        signed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = wasm_patch(&[
        "apply",
        "--control",
        s,
        signed.to_str().unwrap(),
        "--require-signature",
        p,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("transition completed"));
    std::thread::sleep(Duration::from_millis(700));
    let st = wasm_patch(&["status", "--control", s]);
    assert!(text(&st.stdout).contains("sum_to"), "{}", text(&st.stdout));
    let o = wasm_patch(&["revert", "--control", s, "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (rc, out, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    let sums: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("worker 1 "))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    // Buggy, then fixed, then buggy again after the revert.
    let first_fixed = sums.iter().position(|s| *s == "55").expect("fix ran");
    assert!(first_fixed > 0 && sums[..first_fixed].iter().all(|s| *s == "45"));
    assert_eq!(*sums.last().unwrap(), "45", "{sums:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends raw bytes (several requests) on a fresh connection and reads `n`
/// reply lines.
pub(crate) fn raw_n(sock: &Path, bytes: &[u8], n: usize) -> Vec<Value> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut r = BufReader::new(s);
    (0..n)
        .map(|_| {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply not JSON ({e}): {line:?}"))
        })
        .collect()
}

/// Issue 11, item 1, as an operator's script sends it: two reverses in one
/// write, handled in one control poll. The thread asleep in `slow` is
/// pending again after the second, so the apply completes only once it
/// leaves `slow`; meanwhile `status` shows the transition open.
#[test]
fn two_reverses_in_one_write_keep_the_transition_open() {
    let dir = scratch("batched");
    let (old, new) = write_service(&dir);
    let bundle = make_bundle(&dir, &old, &new, "b.wpatch", &[]);
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    // 20 workers for 4 s; one thread asleep inside `slow` for 2 s.
    let g = Guest::start(&sock, &old, "main", &["20", "4000", "2000"]);
    wait_threads(&sock, 22);
    let o = wasm_patch(&[
        "apply",
        "--control",
        s,
        bundle.to_str().unwrap(),
        "--no-wait",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let sock2 = sock.clone();
    let batch = std::thread::spawn(move || {
        raw_n(&sock2, b"{\"op\":\"reverse\"}\n{\"op\":\"reverse\"}\n", 2)
    });
    std::thread::sleep(Duration::from_millis(300));
    let st = json_of(&wasm_patch(&["status", "--control", s, "--json"]));
    assert!(
        st["transition"]["pending"].as_u64() >= Some(1),
        "the sleeper inside `slow` keeps the transition open: {st}"
    );
    assert_eq!(st["transition"]["reversed"], false, "{st}");
    let replies = batch.join().unwrap();
    // Both requests answer when the transition ends: forward, applied.
    for r in &replies {
        assert_eq!(r["outcome"]["reversed"], false, "{replies:?}");
        assert_eq!(r["outcome"]["direction"], "patch", "{replies:?}");
    }
    let st = json_of(&wasm_patch(&["status", "--control", s, "--json"]));
    assert!(st["transition"].is_null(), "{st}");
    assert_eq!(st["last_transition"]["reversed"], false, "{st}");
    let list = json_of(&wasm_patch(&["list", "--control", s, "--json"]));
    assert_eq!(list["applied"].as_array().unwrap().len(), 1, "{list}");
    let (rc, out, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    let (_, v2, mixed) = tally(&out);
    assert!(v2 > 0, "new code ran");
    assert_eq!(mixed, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: a socket path longer than a Unix socket address holds is
/// refused by `run` before the guest starts, naming the limit (it used to
/// be created, unreachable by any client).
#[test]
fn run_refuses_a_control_socket_path_no_client_could_reach() {
    let dir = scratch("longsock");
    let long = dir.join("x".repeat(120)).with_extension("sock");
    let o = wasm_patch(&[
        "run",
        "--control",
        long.to_str().unwrap(),
        "--invoke",
        "run",
        "guests/built/deflate.wasm",
        "1",
    ]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "accepted: {err}");
    assert!(err.contains("at most 107"), "{err}");
    assert!(!long.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: SIGTERM (as an init system or `kill` sends it) ends a run that
/// serves a control socket without leaving the socket file behind.
#[test]
fn sigterm_removes_the_control_socket() {
    let dir = scratch("sigterm");
    let (old, _) = write_service(&dir);
    let sock = dir.join("ctl.sock");
    let mut g = Guest::start(&sock, &old, "main", &["4", "20000", "0"]);
    wait_threads(&sock, 5);
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(g.child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = g.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "SIGTERM did not end the run"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success());
    assert!(!sock.exists(), "the socket file was left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: a trap in a guest thread other than the main one is reported
/// (with its backtrace) and fails the run, even when the main thread
/// returns normally.
#[test]
fn a_trap_in_a_worker_thread_fails_the_run() {
    let dir = scratch("workertrap");
    let file = dir.join("w.wat");
    std::fs::write(
        &file,
        r#"(module
          (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
          (import "wasm-patch" "sleep" (func $sleep (param i64)))
          (table 1 funcref)
          (elem (i32.const 0) $worker)
          (func $worker (param i32) unreachable)
          (func (export "main") (result i32)
            (drop (call $spawn (i32.const 0) (i32.const 0)))
            i64.const 20000000 call $sleep
            i32.const 5))"#,
    )
    .unwrap();
    let o = wasm_patch(&["run", "--invoke", "main", file.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(134), "stderr: {err}");
    assert!(err.contains("guest thread 2 trapped"), "{err}");
    assert!(
        err.contains("worker"),
        "the backtrace names the frame: {err}"
    );
    assert_eq!(text(&o.stdout).trim(), "5");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: `run --trusted-key` makes the host refuse every bundle not
/// signed by one of its keys, whatever the client asks (the client does not
/// ask for a signature here); a signed bundle is applied.
#[test]
fn the_hosts_signature_policy_refuses_unsigned_bundles() {
    let dir = scratch("policy");
    let (old, new) = write_service(&dir);
    let bundle = make_bundle(&dir, &old, &new, "b.wpatch", &[]);
    let ops = dir.join("ops");
    let o = wasm_patch(&["keygen", "-o", ops.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let signed = dir.join("signed.wpatch");
    let key = dir.join("ops.key");
    let o = wasm_patch(&[
        "sign",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        signed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    let pubkey = dir.join("ops.pub");
    let g = Guest::start_with(
        &sock,
        &old,
        "main",
        &["10", "1500", "0"],
        &["--trusted-key", pubkey.to_str().unwrap()],
    );
    wait_threads(&sock, 11);
    let o = wasm_patch(&["apply", "--control", s, bundle.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "unsigned bundle accepted: {err}");
    assert!(err.contains("signature policy"), "{err}");
    let list = json_of(&wasm_patch(&["list", "--control", s, "--json"]));
    assert_eq!(list["applied"].as_array().unwrap().len(), 0, "{list}");
    let o = wasm_patch(&["apply", "--control", s, signed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (rc, _, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: exit statuses automation can branch on. Busy (4) while a
/// transition runs, already applied (6, naming the patch), refused for good
/// (5: a bundle for another module), no server (7).
#[test]
fn control_verbs_exit_with_statuses_automation_can_branch_on() {
    let dir = scratch("exits");
    let (old, new) = write_service(&dir);
    let bundle = make_bundle(&dir, &old, &new, "b.wpatch", &[]);
    // A bundle for another module: the demo service.
    let other = make_bundle(
        &dir,
        Path::new("guests/demo/service.wat"),
        Path::new("guests/demo/service-fixed.wat"),
        "other.wpatch",
        &[],
    );
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    // 10 workers for 4 s; one thread asleep inside `slow` for 1.5 s keeps
    // the first apply's transition open meanwhile.
    let g = Guest::start(&sock, &old, "main", &["10", "4000", "1500"]);
    wait_threads(&sock, 12);
    let b = bundle.to_str().unwrap();
    let o = wasm_patch(&["apply", "--control", s, b, "--no-wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = wasm_patch(&["apply", "--control", s, other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "busy: {}", text(&o.stderr));
    // Wait for the first transition to end.
    let t0 = Instant::now();
    while !json_of(&wasm_patch(&["status", "--control", s, "--json"]))["transition"].is_null() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the transition never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = wasm_patch(&["apply", "--control", s, b]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "already applied: {err}");
    assert!(err.contains("already applied as patch 1"), "{err}");
    let o = wasm_patch(&["apply", "--control", s, other.to_str().unwrap(), "--json"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "wrong target: {}",
        text(&o.stdout)
    );
    assert_eq!(json_of(&o)["kind"], "wrong_target");
    let (rc, _, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    let gone = dir.join("nobody.sock");
    let o = wasm_patch(&["status", "--control", gone.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
