//! CLI-level tests of patch bundles: `diff` → `inspect` → `keygen` →
//! `sign` → `verify`, run through the built `wasm-patch` binary on the WAT
//! pairs of `guests/patches/`, plus hundreds of mutated bundles that
//! `inspect` and `verify` must survive.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_wasm-patch");

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("wasm-patch-bundles-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn guest(case: &str, which: &str) -> String {
    format!(
        "{}/guests/patches/{case}/{which}.wat",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `diff` on a guest pair into `out`.
fn diff(s: &Scratch, case: &str, out: &str, extra: &[&str]) -> Output {
    let (old, new) = (guest(case, "old"), guest(case, "new"));
    let mut args = vec!["diff", old.as_str(), new.as_str(), "-o", out];
    args.extend_from_slice(extra);
    run(&s.0, &args)
}

/// Entry lines of `inspect`: (verb, name).
fn inspected_entries(s: &Scratch, bundle: &str) -> Vec<(String, String)> {
    let o = run(&s.0, &["inspect", bundle]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let verb = w.next()?;
            (verb == "replace" || verb == "add")
                .then(|| (verb.to_string(), w.next().unwrap().to_string()))
        })
        .collect()
}

#[test]
fn diff_bundles_exactly_the_changed_and_added_functions() {
    let s = Scratch::new("exact");
    let o = diff(&s, "shifted", "fix.wpatch", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 replaced, 1 added"), "{}", stdout(&o));
    let entries = inspected_entries(&s, "fix.wpatch");
    assert_eq!(
        entries,
        [
            ("add".to_string(), "clamp".to_string()),
            ("replace".to_string(), "add".to_string())
        ]
    );
    let text = stdout(&run(&s.0, &["inspect", "fix.wpatch"]));
    for unchanged in ["mul", "square", "sum3", "apply"] {
        assert!(
            !text.split_whitespace().any(|w| w == unchanged),
            "inspect names unchanged `{unchanged}`:\n{text}"
        );
    }
    assert!(text.contains("(i64) -> i32"), "{text}");
    assert!(text.contains("signature    none"), "{text}");

    let o = diff(&s, "counter", "counter.wpatch", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        inspected_entries(&s, "counter.wpatch"),
        [("replace".to_string(), "increment".to_string())]
    );
}

#[test]
fn diff_accepts_a_signature_change_with_its_callers() {
    let s = Scratch::new("sig");
    let o = diff(&s, "signature", "sig.wpatch", &["--immediate", "price"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut entries = inspected_entries(&s, "sig.wpatch");
    entries.sort();
    let names: Vec<&str> = entries.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["double_price", "price", "scale"]);
    let text = stdout(&run(&s.0, &["inspect", "sig.wpatch"]));
    let price = text.lines().find(|l| l.contains(" price ")).unwrap();
    assert!(price.contains("immediate"), "{price}");
    let scale = text.lines().find(|l| l.contains(" scale ")).unwrap();
    assert!(
        scale.contains("per-thread") && scale.contains("(i32, i32) -> i32"),
        "{scale}"
    );
}

#[test]
fn diff_refuses_immediate_on_a_signature_change_naming_it() {
    let s = Scratch::new("sigimm");
    let o = diff(&s, "signature", "sig.wpatch", &["--immediate", "scale"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`scale`") && stderr(&o).contains("never be immediate"),
        "{}",
        stderr(&o)
    );
    assert!(!s.path("sig.wpatch").exists());
}

#[test]
fn diff_refuses_a_caller_left_out_naming_it() {
    let s = Scratch::new("sigcaller");
    let o = diff(&s, "signature-unchecked", "x.wpatch", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`trap_path`"), "{}", stderr(&o));
    assert!(!s.path("x.wpatch").exists());
}

#[test]
fn diff_refuses_a_data_change_naming_the_segment_and_writes_nothing() {
    let s = Scratch::new("data");
    let o = diff(&s, "data", "data.wpatch", &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("data segment 0 (`greeting`)"), "{err}");
    assert!(err.contains("nothing written"), "{err}");
    assert!(!s.path("data.wpatch").exists());
    // No temporary file left behind either.
    assert_eq!(std::fs::read_dir(&s.0).unwrap().count(), 0);
}

#[test]
fn diff_refuses_identical_modules() {
    let s = Scratch::new("identical");
    let o = diff(&s, "identical", "same.wpatch", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no function changed"), "{}", stderr(&o));
    assert!(!s.path("same.wpatch").exists());
}

#[test]
fn diff_options_show_up_in_inspect() {
    let s = Scratch::new("options");
    let o = diff(&s, "counter", "base.wpatch", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = diff(
        &s,
        "callbacks",
        "cb.wpatch",
        &[
            "--name",
            "ready-check",
            "--description",
            "work returns 2",
            "--pre-patch",
            "pre_patch",
            "--post-patch",
            "post_patch",
            "--state",
            "5:2",
            "--requires-state",
            "4:1",
            "--replace",
            "--sits-on",
            "base.wpatch",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let base_id = stdout(&run(&s.0, &["inspect", "--json", "base.wpatch"]));
    let base: serde_json::Value = serde_json::from_str(&base_id).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&s.0, &["inspect", "--json", "cb.wpatch"]))).unwrap();
    assert_eq!(json["name"], "ready-check");
    assert_eq!(json["description"], "work returns 2");
    assert_eq!(json["replace"], true);
    assert_eq!(json["created_at"], 1_700_000_000);
    assert_eq!(json["states"][0]["id"], 5);
    assert_eq!(json["requires_states"][0]["version"], 1);
    assert_eq!(json["sits_on"][0], base["bundle_id"]);
    assert_eq!(json["callbacks"][0]["kind"], "pre-patch");
    assert_eq!(json["callbacks"][1]["name"], "post_patch");
    let names: Vec<&str> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["log_ok", "work"]);
    assert_eq!(json["signature"]["present"], false);
}

#[test]
fn keygen_writes_a_private_secret_and_never_overwrites_it() {
    let s = Scratch::new("keygen");
    let o = run(&s.0, &["keygen", "-o", "ops"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.path("ops.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pubkey = std::fs::read_to_string(s.path("ops.pub")).unwrap();
    assert!(pubkey.starts_with("wasm-patch-ed25519-public-key:"));
    let secret = std::fs::read(s.path("ops.key")).unwrap();
    let o = run(&s.0, &["keygen", "-o", "ops"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(s.path("ops.key")).unwrap(), secret);
}

/// Builds, keys and signs: returns the scratch dir with `fix.wpatch`,
/// `fix.signed.wpatch`, `ops.{key,pub}` and `other.{key,pub}`.
fn signed_setup(test: &str) -> Scratch {
    let s = Scratch::new(test);
    assert_eq!(
        diff(&s, "shifted", "fix.wpatch", &[]).status.code(),
        Some(0)
    );
    for name in ["ops", "other"] {
        assert_eq!(run(&s.0, &["keygen", "-o", name]).status.code(), Some(0));
    }
    let o = run(
        &s.0,
        &[
            "sign",
            "fix.wpatch",
            "--key",
            "ops.key",
            "-o",
            "fix.signed.wpatch",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    s
}

#[test]
fn verify_accepts_only_an_intact_bundle_signed_by_the_key() {
    let s = signed_setup("verify");
    let ok = run(&s.0, &["verify", "fix.signed.wpatch", "--pub", "ops.pub"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("OK"));

    let wrong = run(&s.0, &["verify", "fix.signed.wpatch", "--pub", "other.pub"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("not trusted"), "{}", stderr(&wrong));

    let unsigned = run(&s.0, &["verify", "fix.wpatch", "--pub", "ops.pub"]);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(
        stderr(&unsigned).contains("not signed"),
        "{}",
        stderr(&unsigned)
    );

    let either = run(
        &s.0,
        &[
            "verify",
            "fix.signed.wpatch",
            "--pub",
            "other.pub",
            "--pub",
            "ops.pub",
        ],
    );
    assert_eq!(either.status.code(), Some(0));

    // The secret key is not a public key.
    let confused = run(&s.0, &["verify", "fix.signed.wpatch", "--pub", "ops.key"]);
    assert_eq!(confused.status.code(), Some(1));

    let text = stdout(&run(&s.0, &["inspect", "fix.signed.wpatch"]));
    assert!(text.contains("signature    ed25519"), "{text}");
}

#[test]
fn verify_refuses_every_single_byte_change() {
    let s = signed_setup("flip");
    let signed = std::fs::read(s.path("fix.signed.wpatch")).unwrap();
    for i in 0..signed.len() {
        let mut m = signed.clone();
        m[i] ^= 0x20;
        std::fs::write(s.path("m.wpatch"), &m).unwrap();
        let o = run(&s.0, &["verify", "m.wpatch", "--pub", "ops.pub"]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "byte {i} changed, still verifies: {}",
            stdout(&o)
        );
    }
}

/// xorshift64*, for reproducible mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn hundreds_of_mutated_bundles_never_crash_inspect_or_verify() {
    let s = signed_setup("mutate");
    assert_eq!(
        diff(&s, "signature", "sig.wpatch", &[]).status.code(),
        Some(0)
    );
    let seeds = [
        std::fs::read(s.path("fix.wpatch")).unwrap(),
        std::fs::read(s.path("fix.signed.wpatch")).unwrap(),
        std::fs::read(s.path("sig.wpatch")).unwrap(),
    ];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut outcomes = [0usize; 2];
    for round in 0..300 {
        let seed = &seeds[round % seeds.len()];
        let other = &seeds[(round + 1) % seeds.len()];
        let mut m = seed.clone();
        let len = m.len();
        match rng.below(5) {
            0 => {
                let i = rng.below(len);
                m[i] ^= 1 << rng.below(8);
            }
            1 => m.truncate(rng.below(len)),
            2 => {
                let a = rng.below(len);
                let b = (a + rng.below(48)).min(len);
                let c = rng.below(other.len());
                let d = (c + rng.below(48)).min(other.len());
                m.splice(a..b, other[c..d].iter().copied());
            }
            3 => {
                let i = rng.below(len);
                m.splice(i..i + 1, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            _ => {
                for _ in 0..4 {
                    let i = rng.below(len);
                    m[i] = rng.next() as u8;
                }
            }
        }
        std::fs::write(s.path("m.wpatch"), &m).unwrap();
        for args in [
            &["inspect", "m.wpatch"][..],
            &["inspect", "--json", "m.wpatch"],
            &["verify", "m.wpatch", "--pub", "ops.pub"],
        ] {
            let o = run(&s.0, args);
            let code = o.status.code();
            assert!(
                matches!(code, Some(0) | Some(1)),
                "{args:?} on mutant {round} ended with {:?}: {}",
                o.status,
                stderr(&o)
            );
            assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
            if args[0] == "inspect" {
                outcomes[code.unwrap() as usize] += 1;
            }
        }
    }
    // Both accepted and rejected mutants were seen.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
