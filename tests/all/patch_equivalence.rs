//! Patch equivalence (issue 12, item 11): a fixed-seed run of the fuzzer of
//! `fuzz/src/patch_equivalence.rs` (shared with the cargo-fuzz target
//! `patch_equivalence`). For each random module M and code-mutated M',
//! `diff M M'` refuses (counted by reason) or makes a bundle. Applied to an
//! instance of M before it runs, live under running threads, and live as an
//! immediate bundle, it must make the instance answer every export as a
//! fresh instance of M' does; reverted live, as M does; and a cumulative
//! bundle M → M'' applied live over it, as M'' does.
//!
//! `EQ_FUZZ_CASES=N` runs N pairs instead of the default, `EQ_FUZZ_SEED=S`
//! starts from another seed, `EQ_FUZZ_VERBOSE=1` prints each pair's verdict.
//! A mismatch writes M, M' and M'' as WAT to `target/tmp/patch_equivalence/`.
//!
//! And the cases the fuzzer found, reduced (`fuzz/known/`).

#[path = "../../fuzz/src/patch_equivalence.rs"]
mod eq;

/// Pairs of the default run.
const DEFAULT_CASES: u64 = 300;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// Random pairs from a fixed seed: no mismatch, and most pairs carried.
#[test]
fn patched_instances_behave_as_the_new_module() {
    let cases = env_u64("EQ_FUZZ_CASES", DEFAULT_CASES);
    let first = env_u64("EQ_FUZZ_SEED", 0x0e9f_0000);
    let verbose = std::env::var("EQ_FUZZ_VERBOSE").is_ok();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("patch_equivalence");
    let runner = eq::Runner::new();
    let mut tally = eq::Tally::default();
    let mut ungenerated = 0;
    for seed in first..first + cases {
        let data = eq::case_bytes(seed, 256 << (seed % 4));
        let Some(case) = eq::generate(&data) else {
            ungenerated += 1;
            continue;
        };
        let steps = (seed % 13) as usize;
        let verdict =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.check(&case, steps)))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    eq::Verdict::Mismatch(format!("panicked: {msg}"))
                });
        if verbose {
            eprintln!("seed {seed}: {:?}: {verdict:?}", case.what);
        }
        if let eq::Verdict::Mismatch(why) = &verdict {
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("seed-{seed}"));
            std::fs::write(path.with_extension("old.wat"), case.m.wat()).unwrap();
            std::fs::write(path.with_extension("new.wat"), case.m2.wat()).unwrap();
            if let Some(m3) = &case.m3 {
                std::fs::write(path.with_extension("newer.wat"), m3.wat()).unwrap();
            }
            eprintln!(
                "seed {seed} ({:?}): {why}\n  modules: {}.{{old,new,newer}}.wat",
                case.what,
                path.display()
            );
        }
        tally.add(&format!("seed {seed}"), verdict);
    }
    eprintln!("patch equivalence, seeds {first}..+{cases} ({ungenerated} not generated): {tally}");
    assert!(
        tally.mismatches.is_empty(),
        "{} mismatches:\n{}",
        tally.mismatches.len(),
        tally.mismatches.join("\n")
    );
    assert!(
        tally.carried * 2 >= tally.pairs,
        "fewer than half of the pairs were carried: {tally}"
    );
    // The comparison has teeth: in a quarter of the carried pairs at least,
    // M and M' answer differently, so an unapplied or half-applied bundle
    // would show.
    assert!(
        tally.observable * 4 >= tally.carried,
        "too few carried pairs change what the exports answer: {tally}"
    );
    // Every way of applying was exercised.
    assert!(
        tally.live_pending > 0 && tally.immediate > 0 && tally.stacked > 0,
        "some way of applying never ran: {tally}"
    );
}

/// What a bundle that `diff` makes does to an instance of `old`: `Err`
/// with diff's refusal, else whether the runtime applied it.
fn diff_then_apply(old: &str, new: &str) -> Result<Result<(), String>, patch_format::DiffError> {
    use wasm_patch_runtime::{ApplyOptions, Engine, Linker, Module, Store};
    let (old, new) = (wat::parse_str(old).unwrap(), wat::parse_str(new).unwrap());
    let bundle = patch_format::diff(&old, &new, &patch_format::DiffOptions::default())?
        .bundle
        .to_bytes();
    let engine = Engine::default();
    let module = Module::new(&engine, &old).unwrap();
    let mut store = Store::new(&engine, ());
    let inst = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    Ok(store
        .apply(inst, &bundle, &ApplyOptions::default())
        .map(drop)
        .map_err(|e| e.to_string()))
}

/// Found by the fuzzer (`fuzz/known/removed-caller-signature.*.wat`): a
/// function removed by the new build still calls, in the target, a function
/// whose signature changes. The runtime refuses such a bundle (the removed
/// function stays in the target and would call the new version with the
/// old arguments), so diff must refuse it too, naming that caller.
#[test]
fn diff_refuses_a_signature_change_called_by_a_removed_function() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/known/");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
    let (old, new) = (
        read("removed-caller-signature.old.wat"),
        read("removed-caller-signature.new.wat"),
    );
    match diff_then_apply(&old, &new) {
        Ok(applied) => panic!("diff carried the pair; the runtime said: {applied:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("`g` changes type") && msg.contains("`r`"),
                "diff must refuse the signature change of `g` naming its removed caller `r`: {msg}"
            );
        }
    }
}
