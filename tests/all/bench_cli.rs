//! `wasm-patch bench transition`, run as the real binary on the harness's
//! own guest (`guests/bench/transition.wat`, whose threads hold the
//! changed function half of the time): the JSON document's shape and the
//! sanity of its numbers, the SVG plot, what is written where, and the
//! exit status of a bundle the store refuses.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::cli_control::BIN;

const GUEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guests/bench/transition.wat");
const GUEST_V2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/guests/bench/transition-v2.wat"
);

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wp-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run wasm-patch")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The harness's bundle, built by the CLI's `diff` into `dir`.
fn bundle(dir: &Path, old: &str, new: &str, name: &str) -> PathBuf {
    let b = dir.join(name);
    ok(&run(
        dir,
        &["diff", old, new, "-o", b.to_str().expect("utf-8")],
    ));
    b
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

/// min ≤ p50 ≤ p99 ≤ max, all finite and not negative, over `count`.
#[track_caller]
fn ordered(s: &Value, unit: &str, count: usize) {
    ordered_quantiles(s, unit);
    assert_eq!(s["count"].as_u64(), Some(count as u64), "{s}");
}

/// min ≤ p50 ≤ p99 ≤ max, all finite and not negative.
#[track_caller]
fn ordered_quantiles(s: &Value, unit: &str) {
    let q = |k: &str| num(s, &format!("{k}{unit}"));
    let (min, p50, p99, max) = (q("min"), q("p50"), q("p99"), q("max"));
    assert!(min >= 0.0 && max.is_finite(), "{s}");
    assert!(min <= p50 && p50 <= p99 && p99 <= max, "not ordered: {s}");
}

/// Tags of `svg` balance (each open tag closed in order, self-closing ones
/// aside) and attribute quotes pair up: well-formed enough for XML readers.
fn well_formed(svg: &str) -> Result<Vec<String>, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let end = after.find('>').ok_or("unterminated tag")?;
        let tag = &after[..end];
        if !tag.matches('"').count().is_multiple_of(2) {
            return Err(format!("unbalanced quotes in <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else if !tag.starts_with('?') && !tag.starts_with('!') {
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            if name.is_empty() {
                return Err(format!("tag without a name: <{tag}>"));
            }
            seen.push(name.clone());
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &after[end + 1..];
    }
    if !stack.is_empty() {
        return Err(format!("unclosed: {stack:?}"));
    }
    Ok(seen)
}

#[test]
fn bench_transition_writes_sane_json_and_a_valid_svg() {
    let dir = scratch("ok");
    let b = bundle(&dir, GUEST, GUEST_V2, "t.wpatch");
    let (json, svg) = (dir.join("r.json"), dir.join("r.svg"));
    let runs = 3;
    let counts = [1usize, 4];
    let out = run(
        &dir,
        &[
            "bench",
            "transition",
            GUEST,
            b.to_str().unwrap(),
            "--entry",
            "worker",
            "--threads",
            "1,4",
            "--runs",
            &runs.to_string(),
            "--warmup",
            "1",
            "--json",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    let table = ok(&out);
    for head in ["apply (times in", "revert (times in", "switch delay", "p99"] {
        assert!(table.contains(head), "table lacks `{head}`:\n{table}");
    }

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid JSON");
    // What was measured, and where.
    let hash = ok(&run(&dir, &["hash", GUEST]));
    assert_eq!(
        format!("sha256:{}", doc["module_sha256"].as_str().expect("hash")),
        hash.trim()
    );
    let inspect = ok(&run(&dir, &["inspect", b.to_str().unwrap()]));
    let id = doc["bundle_id"].as_str().expect("bundle id");
    assert!(
        id.len() == 64 && inspect.contains(id),
        "{id} not in\n{inspect}"
    );
    assert!(!doc["machine"]["cpu"].as_str().expect("cpu").is_empty());
    assert!(doc["machine"]["cores"].as_u64().expect("cores") >= 1);
    assert_eq!(doc["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert!(!doc["commit"].as_str().expect("commit").is_empty());
    let date = doc["date"].as_str().expect("date");
    assert!(
        date.len() == 24 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{date}"
    );

    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), counts.len());
    let mut blocked_seen = 0;
    for (case, &n) in cases.iter().zip(&counts) {
        assert_eq!(case["threads"].as_u64(), Some(n as u64));
        assert_eq!(case["runs"].as_u64(), Some(runs as u64));
        ordered_quantiles(case, "_us");
        assert!(num(case, "p50_us") > 0.0, "{case}");
        let samples = case["samples"].as_array().expect("samples");
        assert_eq!(samples.len(), runs);
        for phase in ["apply", "revert"] {
            let s = &case[phase];
            assert_eq!(s["reversed"].as_u64(), Some(0), "{s}");
            for m in ["call", "prepare", "compile", "transition", "wait"] {
                ordered(&s[m], "_us", runs);
            }
            // Every thread switches once per transition.
            ordered(&s["switch_delay"], "_us", runs * n);
            ordered(&s["blocked_at_start"], "", runs);
            assert!(num(&s["blocked_at_start"], "max") <= n as f64);
        }
        for sample in samples {
            for phase in ["apply", "revert"] {
                let p = &sample[phase];
                let switched = p["switch_us"].as_array().expect("switch delays");
                assert_eq!(switched.len(), n, "{p}");
                let blocked = p["blocked_at_start"].as_u64().expect("blocked") as usize;
                assert!(blocked <= n);
                assert_eq!(p["threads"].as_u64(), Some(n as u64));
                // The transition lasts until the last switch.
                let last = switched
                    .iter()
                    .filter_map(Value::as_f64)
                    .fold(0.0, f64::max);
                assert!(last <= num(p, "transition_us") + 1.0, "{p}");
                assert!(num(p, "prepare_us") <= num(p, "call_us"), "{p}");
                // Compiling is part of preparing an apply; a revert
                // compiles nothing.
                assert!(num(p, "compile_us") <= num(p, "prepare_us"), "{p}");
                if phase == "apply" {
                    assert!(num(p, "compile_us") > 0.0, "{p}");
                } else {
                    assert_eq!(num(p, "compile_us"), 0.0, "{p}");
                }
                blocked_seen += blocked;
            }
        }
    }
    // Its threads hold the changed function half of the time: some were
    // found blocked at the start.
    assert!(blocked_seen > 0, "no run saw a blocked thread");

    let text = std::fs::read_to_string(&svg).expect("svg written");
    let tags = well_formed(&text).unwrap_or_else(|e| panic!("malformed SVG: {e}"));
    assert_eq!(tags.first().map(String::as_str), Some("svg"));
    for t in ["polyline", "polygon", "circle", "text"] {
        assert!(tags.iter().any(|x| x == t), "no <{t}> in the plot");
    }
    for label in ["transition p50", "transition p99", "Erlang/OTP 25"] {
        assert!(text.contains(label), "plot lacks `{label}`");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_transition_writes_nothing_unless_asked() {
    let dir = scratch("quiet");
    let b = bundle(&dir, GUEST, GUEST_V2, "t.wpatch");
    let before = std::fs::read_dir(&dir).expect("dir").count();
    let out = run(
        &dir,
        &[
            "bench",
            "transition",
            GUEST,
            b.to_str().unwrap(),
            "--entry",
            "worker",
            "--threads",
            "2",
            "--runs",
            "1",
            "--warmup",
            "0",
        ],
    );
    let table = ok(&out);
    assert!(!table.contains("wrote"), "{table}");
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_transition_refused_bundle_exits_with_apply_status() {
    let dir = scratch("refused");
    // Built against another module: the store refuses it (wrong target).
    let other = dir.join("other.wat");
    std::fs::write(
        &other,
        std::fs::read_to_string(GUEST)
            .expect("guest")
            .replace("i32.const 64", "i32.const 65"),
    )
    .expect("other module");
    let b = bundle(&dir, other.to_str().unwrap(), GUEST_V2, "wrong.wpatch");
    let json = dir.join("r.json");
    let out = run(
        &dir,
        &[
            "bench",
            "transition",
            GUEST,
            b.to_str().unwrap(),
            "--entry",
            "worker",
            "--threads",
            "2",
            "--runs",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "stderr:\n{err}");
    assert!(
        err.contains("apply refused") && err.contains("bundle targets module"),
        "{err}"
    );
    assert!(
        err.contains("wrong.wpatch"),
        "the message names the bundle: {err}"
    );
    assert!(!json.exists(), "no results for a refused bundle");

    // Not a bundle at all: refused as malformed, same status.
    let junk = dir.join("junk.wpatch");
    std::fs::write(&junk, b"not a bundle").expect("junk");
    let out = run(
        &dir,
        &[
            "bench",
            "transition",
            GUEST,
            junk.to_str().unwrap(),
            "--entry",
            "worker",
            "--threads",
            "1",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "stderr:\n{err}");
    assert!(err.contains("bundle rejected"), "{err}");

    // An entry of the wrong type is an error of its own (status 1), named.
    let out = run(
        &dir,
        &[
            "bench",
            "transition",
            GUEST,
            b.to_str().unwrap(),
            "--entry",
            "nope",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(err.contains("entry `nope`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A module whose threads park inside the changed function for good.
const STUCK: &str = r#"(module
  (import "env" "park" (func $park))
  (func $handle (param i32) (result i32) (call $park) (i32.const V))
  (func (export "worker") (param $id i32) (drop (call $handle (local.get $id)))))"#;

#[test]
fn bench_transition_counts_runs_reversed_by_the_timeout() {
    let dir = scratch("stuck");
    let (old, new) = (dir.join("stuck.wat"), dir.join("stuck2.wat"));
    std::fs::write(&old, STUCK.replace('V', "1")).expect("old");
    std::fs::write(&new, STUCK.replace('V', "2")).expect("new");
    let b = bundle(
        &dir,
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "s.wpatch",
    );
    let json = dir.join("r.json");
    let args = |extra: &[&str]| -> Output {
        let mut a = vec![
            "bench",
            "transition",
            old.to_str().unwrap(),
            b.to_str().unwrap(),
            "--entry",
            "worker",
            "--threads",
            "3",
            "--runs",
            "2",
        ];
        a.extend_from_slice(extra);
        run(&dir, &a)
    };
    // Every apply is reversed by the timeout: counted, nothing to revert.
    let table = ok(&args(&[
        "--timeout",
        "0.02",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(table.contains("2 of 2 reversed by --timeout"), "{table}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid JSON");
    let case = &doc["cases"][0];
    assert_eq!(case["apply"]["reversed"].as_u64(), Some(2));
    assert_eq!(case["apply"]["blocked_at_start"]["min"].as_f64(), Some(3.0));
    assert_eq!(case["revert"]["count"].as_u64(), Some(0));
    for s in case["samples"].as_array().expect("samples") {
        assert!(s["revert"].is_null(), "{s}");
        assert_eq!(s["apply"]["reversed"].as_bool(), Some(true), "{s}");
    }
    // Without a timeout the transition can never complete: an error that
    // says so, and no hang.
    let out = args(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("did not complete") && err.contains("--timeout"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Threads living in a loop whose old frame reads a local the new version
/// dropped: the bundle moves them forward (`--frame-transfer`, a map made
/// by `diff --transfer`), but nothing moves them back, so every revert is
/// reversed by the timeout. The harness gives up after a few tries and
/// says why, instead of waiting for ever.
#[test]
fn bench_transition_gives_up_on_a_revert_that_can_never_complete() {
    let dir = scratch("no-way-back");
    let loop_wat = |body: &str, locals: &str| {
        format!(
            r#"(module
              (import "wasm-patch" "yield" (func $yield))
              (global $sink (mut i32) (i32.const 0))
              (func $pause (call $yield))
              (func (export "worker") (param $id i32) {locals}
                (loop $l {body} (br $l))))"#
        )
    };
    let old = dir.join("old.wat");
    let new = dir.join("new.wat");
    std::fs::write(
        &old,
        loop_wat(
            "(local.set $t (i32.add (local.get $t) (i32.const 1)))
             (local.set $x (i32.add (local.get $x) (i32.const 3)))
             (call $pause)
             (global.set $sink (i32.add (local.get $x) (local.get $t)))",
            "(local $x i32) (local $t i32)",
        ),
    )
    .unwrap();
    std::fs::write(
        &new,
        loop_wat(
            "(local.set $x (i32.add (local.get $x) (i32.const 3)))
             (call $pause)
             (global.set $sink (i32.mul (local.get $x) (i32.const 2)))",
            "(local $x i32)",
        ),
    )
    .unwrap();
    let b = dir.join("b.wpatch");
    let (o, n, bs) = (
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        b.to_str().unwrap(),
    );
    ok(&run(
        &dir,
        &["diff", o, n, "-o", bs, "--transfer", "worker"],
    ));
    let out = run(
        &dir,
        &[
            "bench",
            "transition",
            o,
            bs,
            "--entry",
            "worker",
            "--threads",
            "2",
            "--runs",
            "1",
            "--warmup",
            "5",
            "--timeout",
            "0.2",
            "--frame-transfer",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the revert was reversed by --timeout 3 times in a row")
            && err.contains("blocked in worker"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
