//! Issue 15 point 11: the rollout recipe of `docs/rollout.md`, run as
//! written (`docs/rollout.sh`, which runs `docs/rollout-host.sh` per guest)
//! against five local `run --control` guests, the third of which runs a
//! different module: the canary and the second are patched, the rollout
//! stops at the third with status 5 and says so, and the last two are
//! never touched. A re-run over the patched ones is a no-op (already
//! applied), not an error.

use crate::cli_control::{
    json_of, make_bundle, scratch, service, text, wait_threads, wasm_patch, Guest, BIN,
};
use std::path::Path;
use std::process::Command;

fn rollout(bundle: &Path, socks: &[&Path]) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rollout.sh");
    let o = Command::new("sh")
        .arg(script)
        .arg(bundle)
        .args(socks)
        .env("WASM_PATCH", BIN)
        .env("RETRY_DELAY", "0.2")
        .env("TIMEOUT", "20")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        text(&o.stdout) + &text(&o.stderr),
    )
}

fn applied(sock: &Path) -> usize {
    json_of(&wasm_patch(&[
        "list",
        "--control",
        sock.to_str().unwrap(),
        "--json",
    ]))["applied"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn the_rollout_recipe_stops_at_the_host_running_another_module() {
    let dir = scratch("rollout");
    let (old, new, odd) = (
        dir.join("old.wat"),
        dir.join("new.wat"),
        dir.join("odd.wat"),
    );
    std::fs::write(&old, service(1)).unwrap();
    std::fs::write(&new, service(2)).unwrap();
    // Host 3 runs another build: same code, one constant different.
    std::fs::write(&odd, service(3)).unwrap();
    let bundle = make_bundle(&dir, &old, &new, "fix.wpatch", &["--name", "fix"]);
    let socks: Vec<_> = (1..=5).map(|i| dir.join(format!("h{i}.sock"))).collect();
    let guests: Vec<Guest> = socks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Guest::start(
                s,
                if i == 2 { &odd } else { &old },
                "main",
                &["4", "5000", "0"],
            )
        })
        .collect();
    for s in &socks {
        wait_threads(s, 5);
    }
    let all: Vec<&Path> = socks.iter().map(|p| p.as_path()).collect();
    let (rc, out) = rollout(&bundle, &all);
    assert_eq!(rc, 5, "{out}");
    let h3 = socks[2].display().to_string();
    assert!(out.contains("[1/5] canary"), "{out}");
    assert!(out.contains(&format!("refused {h3}")), "{out}");
    assert!(
        out.contains("wrong_target"),
        "the reason is reported: {out}"
    );
    assert!(
        out.contains(&format!(
            "rollout STOPPED at {h3} (status 5): 2 of 5 patched, 2 not attempted"
        )),
        "{out}"
    );
    assert!(!out.contains("[4/5]"), "{out}");
    let counts: Vec<usize> = socks.iter().map(|s| applied(s)).collect();
    assert_eq!(counts, [1, 1, 0, 0, 0], "{out}");
    // Re-running over the patched hosts changes nothing and succeeds.
    let (rc, out) = rollout(&bundle, &all[..2]);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(out.matches("already-applied").count(), 2, "{out}");
    assert!(out.contains("rollout complete: 2 of 2 patched"), "{out}");
    assert_eq!(applied(&socks[0]), 1);
    for g in guests {
        let (rc, _, err) = g.finish();
        assert_eq!(rc, 0, "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
