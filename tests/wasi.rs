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
//! beside the project; when it is absent the runner says so and runs nothing.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let Some(suite) = suite_dir() else {
        println!(
            "WASI TESTSUITE ABSENT: set WASI_TESTSUITE or place it at ../shared/wasi-testsuite; \
             nothing ran"
        );
        println!("wasi testsuite: 0 passed, 0 failed");
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
    let scratch = std::env::temp_dir().join(format!("wasm-patch-wasi-{}", std::process::id()));
    let (mut passed, mut failed, mut wrong) = (0, 0, Vec::new());
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
