//! Issue 12: patching what real toolchains build. Readable (demangled)
//! names in the CLI; Rust guests built with `--emit-relocs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_wasm-patch");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wp-rr-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wasm_patch(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("runs wasm-patch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const WORKER: &str = "_ZN6orders6worker17hc812e9934cf5c14eE";

fn mangled(v: i32) -> String {
    format!(
        r#"(module
    (func ${WORKER} (export "worker") (result i32) i32.const {v})
    (func $_ZN6orders5crash17h2222222222222222E (export "crash") unreachable))"#
    )
}

#[test]
fn diff_and_inspect_show_demangled_names_and_json_keeps_raw_ones() {
    let d = scratch("names");
    let (old, new, out) = (d.join("old.wat"), d.join("new.wat"), d.join("b.patch"));
    std::fs::write(&old, mangled(1)).unwrap();
    std::fs::write(&new, mangled(2)).unwrap();
    let o = wasm_patch(&[
        "diff",
        p(&old),
        p(&new),
        "-o",
        p(&out),
        "--immediate",
        "orders::worker",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("replace orders::worker  (immediate)"), "{s}");
    assert!(!s.contains(WORKER), "{s}");

    let o = wasm_patch(&["inspect", p(&out)]);
    let s = text(&o.stdout);
    assert!(s.contains("orders::worker"), "{s}");
    assert!(!s.contains(WORKER), "{s}");

    let o = wasm_patch(&["inspect", "--json", p(&out)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"][0]["name"], WORKER);
    assert_eq!(v["entries"][0]["readable_name"], "orders::worker");
}

#[test]
fn a_trap_backtrace_shows_demangled_names() {
    let d = scratch("trap");
    let m = d.join("m.wat");
    std::fs::write(&m, mangled(1)).unwrap();
    let o = wasm_patch(&["run", p(&m), "--invoke", "crash"]);
    let s = text(&o.stderr);
    assert!(s.contains("- orders::crash"), "{s}");
    assert!(!s.contains("_ZN6orders5crash"), "{s}");
}
