//! Issue 15, the fleet control plane: patch selectors that are the same on
//! every host, `--json` on every outcome, module identity, status that
//! scales, the audit trail, bundles applied at start, socket hygiene. The
//! helpers (a running guest, bundles, the binary) are `cli_control`'s.

use crate::cli_control::{
    json_of, make_bundle, scratch, service, text, wait_threads, wasm_patch, Guest,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `service(1)` with only `slow` changed: a second bundle on the same
/// target that touches nothing the first one does.
fn service_slow_changed() -> String {
    service(1).replace("i32.const 1 drop", "i32.const 7 drop")
}

/// Writes `service(1)`, `service(2)` and [`service_slow_changed`] into `dir`.
fn write_three(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (old, new, slow) = (
        dir.join("old.wat"),
        dir.join("new.wat"),
        dir.join("slow.wat"),
    );
    std::fs::write(&old, service(1)).unwrap();
    std::fs::write(&new, service(2)).unwrap();
    std::fs::write(&slow, service_slow_changed()).unwrap();
    (old, new, slow)
}

/// Issue 15 point 2: `revert` and `status` take the bundle id, a unique
/// prefix of it or the bundle's name as well as the per-process number; a
/// selector that matches two bundles is refused (status 2) listing both.
#[test]
fn revert_and_status_name_a_patch_by_bundle_id_prefix_or_name() {
    let dir = scratch("select");
    let (old, new, slow) = write_three(&dir);
    let a = make_bundle(&dir, &old, &new, "a.wpatch", &["--name", "fix"]);
    let b = make_bundle(&dir, &old, &slow, "b.wpatch", &["--name", "fix"]);
    let sock = dir.join("ctl.sock");
    let s = sock.to_str().unwrap();
    let g = Guest::start(&sock, &old, "main", &["6", "6000", "0"]);
    wait_threads(&sock, 7);
    for bundle in [&a, &b] {
        let o = wasm_patch(&["apply", "--control", s, bundle.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    let list = json_of(&wasm_patch(&["list", "--control", s, "--json"]));
    let id_b = list["applied"][1]["bundle_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(list["applied"][1]["id"], 2, "{list}");
    // Both are named `fix`: refused as a usage error, listing both.
    let o = wasm_patch(&["revert", "--control", s, "fix"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("ambiguous"), "{err}");
    assert!(err.contains("patch 1") && err.contains("patch 2"), "{err}");
    let o = wasm_patch(&["status", "--control", s, "fix", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json_of(&o)["kind"], "ambiguous");
    // A prefix of the bundle id names one.
    let o = wasm_patch(&["status", "--control", s, &id_b[..10], "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert_eq!(json_of(&o)["selected"]["id"], 2);
    let o = wasm_patch(&["status", "--control", s, &id_b[..10]]);
    assert!(text(&o.stdout).contains(&id_b), "{}", text(&o.stdout));
    // Nothing matches: refused for good.
    let o = wasm_patch(&["revert", "--control", s, "no-such-fix"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no applied bundle matches"));
    // Revert by full bundle id, then the name is unique.
    let o = wasm_patch(&["revert", "--control", s, &id_b, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let r = json_of(&o);
    assert_eq!(
        (r["patch"].as_u64(), r["bundle_id"].as_str()),
        (Some(2), Some(id_b.as_str()))
    );
    let o = wasm_patch(&["revert", "--control", s, "fix"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("reverted patch 1"),
        "{}",
        text(&o.stdout)
    );
    let list = json_of(&wasm_patch(&["list", "--control", s, "--json"]));
    assert_eq!(list["applied"], Value::Array(vec![]), "{list}");
    let (rc, _, err) = g.finish();
    assert_eq!(rc, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
