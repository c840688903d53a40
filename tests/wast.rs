//! Runs the WebAssembly 2.0 core spec scripts (SIMD included) through the
//! project's wast driver, one trial per script, and checks the failures
//! against `tests/spec-failures.txt` in both directions: an unlisted failure
//! fails the run, and so does a listed entry that now passes.
//!
//! The suite is read from `$WASM_TESTSUITE`, else `../shared/wasm-testsuite`
//! beside the project. Our own scripts in `tests/misc_testsuite/` run too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasm_patch_cli::wast::{run_script, Failure};
use wasm_patch_runtime::Engine;

fn suite_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("WASM_TESTSUITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/wasm-testsuite"));
    dir.is_dir().then_some(dir)
}

fn scripts() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    match suite_dir() {
        Some(dir) => {
            for e in std::fs::read_dir(&dir)
                .expect("read the spec suite")
                .flatten()
            {
                let p = e.path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(".wast") {
                    out.push(p);
                }
            }
        }
        None => eprintln!(
            "SPEC SUITE ABSENT: set WASM_TESTSUITE or place it at ../shared/wasm-testsuite; \
             only the project's own scripts run"
        ),
    }
    if let Ok(rd) = std::fs::read_dir(root.join("tests/misc_testsuite")) {
        out.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "wast")),
        );
    }
    out.sort();
    out
}

fn expected_failures() -> BTreeSet<(String, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/spec-failures.txt")).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let loc = l.split_whitespace().next()?;
            let (script, line) = loc.rsplit_once(':')?;
            Some((script.to_string(), line.parse().ok()?))
        })
        .collect()
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let scripts: Vec<PathBuf> = scripts()
        .into_iter()
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    let engine = Engine::default();
    let queue = Mutex::new(scripts.clone());
    let results: Mutex<Vec<(String, usize, Vec<Failure>)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(path) = queue.lock().unwrap().pop() else {
                    break;
                };
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).expect("read script");
                let r = run_script(&engine, &name, &text);
                results.lock().unwrap().push((name, r.passed, r.failures));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = expected_failures();
    let mut passed = 0;
    let mut failed = 0;
    let mut unexpected = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, p, fails) in &results {
        passed += p;
        failed += fails.len();
        let status = if fails
            .iter()
            .all(|f| expected.contains(&(f.script.clone(), f.line)))
        {
            "ok"
        } else {
            "FAILED"
        };
        println!(
            "test spec::{name} ... {status} ({p} passed, {} failed)",
            fails.len()
        );
        for f in fails {
            seen.insert((f.script.clone(), f.line));
            if !expected.contains(&(f.script.clone(), f.line)) {
                unexpected.push(f.clone());
            }
        }
    }
    let ran: BTreeSet<String> = results.iter().map(|r| r.0.clone()).collect();
    let now_passing: Vec<_> = expected
        .iter()
        .filter(|e| ran.contains(&e.0) && !seen.contains(*e))
        .collect();
    for f in &unexpected {
        println!("UNEXPECTED FAILURE {}:{}: {}", f.script, f.line, f.reason);
    }
    for (s, l) in &now_passing {
        println!("LISTED FAILURE NOW PASSES {s}:{l}: remove it from tests/spec-failures.txt");
    }
    println!(
        "spec assertions: {passed} passed, {failed} failed ({} scripts)",
        results.len()
    );
    if !unexpected.is_empty() || !now_passing.is_empty() || results.is_empty() {
        std::process::exit(1);
    }
}
