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

// ---------------------------------------------------------------------------
// The `bank` service (guests/service), patched live through the embedding
// API while its workers move money.

use patch_format::{diff, DiffOptions};
use wasm_patch_runtime::{ApplyOptions, Engine, Instance, Linker, Module, Store, Val};

/// Accounts × opening balance: what the balances always add up to.
const TOTAL: i64 = 8 * 1000;

fn rev(n: u32) -> Vec<u8> {
    built(&format!("r{n}"))
}

/// The committed build `name` of the service (`guests/built/service/`).
pub(crate) fn built(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/guests/built/service/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Bank {
    store: Store<()>,
    inst: Instance,
}

impl Bank {
    fn start(rev_n: u32, workers: i32) -> Bank {
        let engine = Engine::default();
        let module = Module::new(&engine, rev(rev_n)).unwrap();
        let mut store = Store::new(&engine, ());
        let mut linker: Linker<()> = Linker::new(&engine);
        linker.add_thread_abi();
        let inst = linker.instantiate(&mut store, &module).unwrap();
        let mut b = Bank { store, inst };
        b.call("start", &[Val::I32(workers)]);
        b
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Option<Val> {
        let f = self.inst.get_func(&self.store, name).unwrap();
        f.call(&mut self.store, args).unwrap().first().cloned()
    }

    fn i64(&mut self, name: &str, args: &[Val]) -> i64 {
        self.call(name, args).unwrap().i64().unwrap()
    }

    fn transfer(&mut self, from: i32, to: i32, amount: i64) -> i32 {
        let v = self.call(
            "transfer",
            &[Val::I32(from), Val::I32(to), Val::I64(amount)],
        );
        v.unwrap().i32().unwrap()
    }

    /// Runs the workers until `moves` grew by at least `n`.
    fn work(&mut self, n: i64) {
        let before = self.i64("moves", &[]);
        let mut rounds = 0;
        while self.i64("moves", &[]) < before + n {
            self.store.run_steps(64);
            rounds += 1;
            assert!(rounds < 20_000, "the workers stopped moving money");
        }
    }

    /// Applies the bundle `a → b` and runs until its transition completed.
    fn patch(&mut self, a: u32, b: u32) -> patch_format::DiffOutcome {
        let outcome = diff(&rev(a), &rev(b), &DiffOptions::default()).unwrap();
        self.store
            .apply(
                self.inst,
                &outcome.bundle.to_bytes(),
                &ApplyOptions::default(),
            )
            .unwrap();
        let mut rounds = 0;
        while self.store.transition_status().is_some() {
            self.store.run_steps(64);
            rounds += 1;
            assert!(rounds < 20_000, "the transition never completed");
        }
        outcome
    }

    fn finish(mut self) {
        self.call("stop", &[]);
        self.store.run().unwrap();
        assert_eq!(self.call("stop", &[]).unwrap().i32(), Some(0));
    }
}

#[test]
fn a_code_only_fix_inlined_into_two_callers_applies_live_and_money_is_conserved() {
    let mut bank = Bank::start(0, 4);
    bank.work(200);
    // Revision 0's bug: an overdraft goes through.
    assert_eq!(bank.transfer(0, 1, 1_000_000), 1);
    assert!(bank.i64("balance", &[Val::I32(0)]) < 0);
    assert_eq!(bank.transfer(1, 0, 1_000_000), 1);
    assert_eq!(bank.i64("total", &[]), TOTAL);

    let outcome = bank.patch(0, 1);
    let carried: Vec<String> = outcome
        .bundle
        .entries()
        .iter()
        .map(|e| patch_format::names::readable(&e.name))
        .collect();
    assert_eq!(carried, ["bank::try_overdraft", "bank::step", "transfer"]);

    // Fixed, for the host's calls and for the workers (which keep running
    // the patched `step` from their unchanged loop).
    assert_eq!(bank.transfer(0, 1, 1_000_000), 0);
    let before = bank.i64("moves", &[]);
    bank.work(300);
    assert!(bank.i64("moves", &[]) >= before + 300);
    for i in 0..8 {
        let b = bank.i64("balance", &[Val::I32(i)]);
        assert!(b > -1_000_000, "account {i}: {b}");
    }
    // The state built by revision 0 survived: the same money, the moves
    // counted before the patch still there.
    assert_eq!(bank.i64("total", &[]), TOTAL);
    assert!(bank.i64("moves", &[]) >= 500);
    bank.finish();
}

#[test]
fn a_fix_below_shifted_lines_applies_and_line_only_functions_stay() {
    let mut bank = Bank::start(1, 3);
    bank.work(100);
    // Revision 1 lets a negative amount through.
    assert_eq!(bank.transfer(0, 1, -5), 1);
    let outcome = bank.patch(1, 2);
    assert_eq!(outcome.line_only.len(), 1);
    assert_eq!(outcome.bundle.entries().len(), 1);
    assert_eq!(bank.transfer(0, 1, -5), 0);
    // Overdrafts are still refused (the carried `transfer` reads the
    // running instance's balances at their addresses).
    assert_eq!(bank.transfer(0, 1, 1_000_000), 0);
    assert_eq!(bank.transfer(0, 1, 1), 1);
    bank.work(200);
    assert_eq!(bank.i64("total", &[]), TOTAL);
    bank.finish();
}

#[test]
fn a_fix_that_moves_every_static_carries_one_function_relocated_to_the_running_layout() {
    // Revision 5 drops `balance`'s panic location: `.rodata` shrinks and
    // every static moves down. Only `balance` changed; it must read the
    // running instance's balances at their old addresses.
    let mut bank = Bank::start(1, 3);
    bank.work(100);
    let f = bank.inst.get_func(&bank.store, "balance").unwrap();
    assert!(
        f.call(&mut bank.store, &[Val::I32(99)]).is_err(),
        "r1 panics"
    );
    let outcome = bank.patch(1, 5);
    assert_eq!(outcome.bundle.entries().len(), 1);
    assert_eq!(bank.i64("balance", &[Val::I32(99)]), 0);
    bank.work(200);
    // Stopped, so that no transfer runs between the reads.
    bank.call("stop", &[]);
    bank.store.run().unwrap();
    let sum: i64 = (0..8).map(|i| bank.i64("balance", &[Val::I32(i)])).sum();
    assert_eq!(sum, TOTAL, "the patched `balance` reads the live balances");
    assert_eq!(bank.i64("total", &[]), TOTAL);
    bank.finish();
}

#[test]
fn blockers_are_printed_with_demangled_names() {
    let frame = serde_json::json!({"name": WORKER, "func_index": 3, "offset": 16});
    let blockers = serde_json::json!([{ "thread": 7, "frame": frame, "backtrace": [frame] }]);
    let s = wasm_patch_cli::control::format_blockers(&blockers, "");
    assert!(s.contains("blocked in `orders::worker`"), "{s}");
    assert!(s.contains("0: orders::worker   <- blocks"), "{s}");
}

/// `wasm-patch run --control SOCK r0.wasm --invoke serve 4`: `serve` runs
/// until an overdraft is refused, which only the fix makes happen.
#[test]
fn the_service_is_fixed_live_under_run_control_and_exits_with_the_money_intact() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::process::Stdio;

    let d = scratch("control");
    let sock = d.join("bank.sock");
    let (old, new, bundle) = (d.join("r0.wasm"), d.join("r1.wasm"), d.join("fix.wpatch"));
    std::fs::write(&old, rev(0)).unwrap();
    std::fs::write(&new, rev(1)).unwrap();
    let o = wasm_patch(&["diff", p(&old), p(&new), "-o", p(&bundle)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("replace bank::try_overdraft"), "{s}");
    assert!(s.contains("left out 1 function(s)"), "{s}");

    let mut child = Command::new(BIN)
        .args([
            "run",
            "--control",
            p(&sock),
            "--invoke",
            "serve",
            p(&old),
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Waiting for the server, not timing it: the loop ends when it answers.
    let mut tries = 0;
    while UnixStream::connect(&sock).is_err() {
        tries += 1;
        if tries > 3000 {
            let _ = child.kill();
            panic!("the control socket never appeared");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Threads blocked or not, `status` names them readably.
    let st = wasm_patch(&["status", "--control", p(&sock), "--backtraces"]);
    let s = text(&st.stdout);
    assert!(st.status.success(), "{}", text(&st.stderr));
    assert!(!s.contains("_ZN4bank"), "{s}");

    let a = wasm_patch(&["apply", "--control", p(&sock), p(&bundle)]);
    assert!(a.status.success(), "{}{}", text(&a.stdout), text(&a.stderr));
    // The guest ends by itself once the fix is in: `serve` returns the total.
    let mut waits = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        waits += 1;
        if waits > 6000 {
            let _ = child.kill();
            panic!("the guest did not end after the fix");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), TOTAL.to_string(), "{err}");
}

#[test]
fn a_callback_reads_the_running_instances_statics() {
    // `panic_line` as the pre-patch callback of r1 → r5: in r5's layout
    // PANIC_LINE is where r1 keeps a balance (nonzero: a veto). Relocated,
    // it reads r1's PANIC_LINE, which is 0.
    let mut bank = Bank::start(1, 2);
    bank.work(50);
    let opts = DiffOptions {
        callbacks: vec![(patch_format::CallbackKind::PrePatch, "panic_line".into())],
        ..DiffOptions::default()
    };
    let b = diff(&rev(1), &rev(5), &opts).unwrap().bundle;
    bank.store
        .apply(bank.inst, &b.to_bytes(), &ApplyOptions::default())
        .expect("the callback read PANIC_LINE, not a balance");
    let mut rounds = 0;
    while bank.store.transition_status().is_some() {
        bank.store.run_steps(64);
        rounds += 1;
        assert!(rounds < 20_000, "the transition never completed");
    }
    assert_eq!(bank.i64("balance", &[Val::I32(99)]), 0);
    bank.finish();
}

// ---------------------------------------------------------------------------
// Fixes that need new data (issue 12, items 2 and 5): revision 6 has three
// exports that revisions 7 (a new string), 8 (a new static) and 9 (a new
// function pointer) fill in. Each is applied live, with workers moving
// money, and the money stays where revision 6 put it.

impl Bank {
    fn i32(&mut self, name: &str, args: &[Val]) -> i32 {
        self.call(name, args).unwrap().i32().unwrap()
    }

    /// The reason of the last refusal, as `refusal_reason` spells it.
    fn reason(&mut self) -> String {
        let mut s = String::new();
        for i in 0..64 {
            match self.i32("refusal_reason", &[Val::I32(i)]) {
                -1 => break,
                b => s.push(b as u8 as char),
            }
        }
        s
    }

    /// Where the last applied bundle's data went.
    fn placement(&self) -> wasm_patch_runtime::DataPlacement {
        let applied = self.store.applied();
        applied
            .last()
            .unwrap()
            .data
            .clone()
            .expect("the bundle has data")
    }

    /// Stops the workers and checks that the money is all there.
    fn conserved(&mut self) {
        self.call("stop", &[]);
        self.store.run().unwrap();
        let sum: i64 = (0..8).map(|i| self.i64("balance", &[Val::I32(i)])).sum();
        assert_eq!(sum, TOTAL);
        assert_eq!(self.i64("total", &[]), TOTAL);
    }
}

#[test]
fn a_fix_that_adds_strings_applies_live_and_keeps_the_reason() {
    let mut bank = Bank::start(6, 4);
    bank.work(200);
    assert_eq!(bank.transfer(0, 1, -5), 0, "r6 refuses, keeping no reason");
    assert_eq!(bank.reason(), "");

    let outcome = bank.patch(6, 7);
    let carried: Vec<String> = outcome
        .bundle
        .entries()
        .iter()
        .map(|e| patch_format::names::readable(&e.name))
        .collect();
    assert_eq!(
        carried,
        [
            "bank::try_overdraft",
            "bank::step",
            "refusal_reason",
            "transfer"
        ]
    );
    let p = bank.placement();
    assert_eq!(p.objects.len(), 3);
    assert_eq!(
        p.pages_grown, 1,
        "the data went into a page past the old end"
    );
    assert!(p
        .objects
        .iter()
        .all(|(_, a)| *a >= p.base && *a < p.base + p.size));

    // The workers run the patched `step`: their refusals keep a reason too
    // (only overdrafts: their amounts are never negative).
    bank.work(300);
    bank.conserved();
    let r = bank.reason();
    assert!(r.is_empty() || r == "insufficient funds", "{r}");
    // The fixed behaviour, with the workers stopped so that no refusal of
    // theirs comes between the reads: the reason is the bundle's string.
    assert_eq!(bank.transfer(0, 1, -5), 0);
    assert_eq!(bank.reason(), "negative amount");
    assert_eq!(bank.transfer(0, 1, 1_000_000_000), 0);
    assert_eq!(bank.reason(), "insufficient funds");
    assert_eq!(bank.transfer(0, 1, 1), 1);
    assert_eq!(bank.transfer(1, 0, 1), 1);
    assert_eq!(bank.i64("total", &[]), TOTAL);
    bank.finish();
}

#[test]
fn a_fix_that_adds_a_static_counts_from_zero_after_apply() {
    let mut bank = Bank::start(6, 4);
    bank.work(200);
    assert_eq!(bank.i64("refusals", &[]), -1, "r6 does not count");
    let outcome = bank.patch(6, 8);
    assert_eq!(outcome.bundle.data().objects.len(), 1);
    // Zero-initialised at apply, then counted by host calls and workers.
    let before = bank.i64("refusals", &[]);
    assert!(before >= 0, "{before}");
    assert_eq!(bank.transfer(0, 1, 1_000_000_000), 0);
    assert_eq!(bank.transfer(0, 1, -1), 0);
    let after = bank.i64("refusals", &[]);
    assert!(after >= before + 2, "{before} → {after}");
    bank.work(300);
    assert!(bank.i64("refusals", &[]) >= after);
    bank.conserved();
    bank.finish();
}

#[test]
fn a_fix_that_needs_a_new_function_pointer_appends_a_table_entry() {
    let mut bank = Bank::start(6, 3);
    bank.work(100);
    assert_eq!(bank.i64("fee", &[Val::I64(500)]), 0);
    let outcome = bank.patch(6, 9);
    assert_eq!(outcome.bundle.data().table_entries.len(), 1);
    let p = bank.placement();
    assert_eq!(p.table_entries, 1);
    assert_eq!(p.table_base, 2, "appended after revision 6's two entries");
    // `fee` calls `flat_fee` through the new entry.
    assert_eq!(bank.i64("fee", &[Val::I64(500)]), 2);
    assert_eq!(bank.i64("fee", &[Val::I64(50)]), 0);
    bank.work(200);
    bank.conserved();
    bank.finish();
}

// Attacks on bundle data: what must hold when it goes wrong or twice.

impl Bank {
    /// Applies `bundle`, and runs until its transition completed.
    fn apply(
        &mut self,
        bundle: &patch_format::Bundle,
    ) -> Result<(), wasm_patch_runtime::PatchError> {
        self.store
            .apply(self.inst, &bundle.to_bytes(), &ApplyOptions::default())?;
        let mut rounds = 0;
        while self.store.transition_status().is_some() {
            self.store.run_steps(64);
            rounds += 1;
            assert!(rounds < 20_000, "the transition never completed");
        }
        Ok(())
    }
}

fn bundle(a: u32, b: u32, opts: &DiffOptions) -> patch_format::Bundle {
    diff(&rev(a), &rev(b), opts).unwrap().bundle
}

#[test]
fn one_data_bundle_applied_to_two_instances_gives_each_its_own_statics() {
    let b = bundle(6, 8, &DiffOptions::default());
    let engine = Engine::default();
    let module = Module::new(&engine, rev(6)).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.add_thread_abi();
    let one = linker.instantiate(&mut store, &module).unwrap();
    let two = linker.instantiate(&mut store, &module).unwrap();
    for inst in [one, two] {
        store
            .apply(inst, &b.to_bytes(), &ApplyOptions::default())
            .unwrap();
        store.wait_transition().unwrap();
    }
    let call = |store: &mut Store<()>, inst: Instance, name: &str, args: &[Val]| {
        let f = inst.get_func(store, name).unwrap();
        f.call(store, args).unwrap()[0]
    };
    let refused = [Val::I32(0), Val::I32(1), Val::I64(1_000_000_000)];
    for _ in 0..3 {
        assert_eq!(call(&mut store, one, "transfer", &refused).i32(), Some(0));
    }
    assert_eq!(call(&mut store, two, "transfer", &refused).i32(), Some(0));
    assert_eq!(call(&mut store, one, "refusals", &[]).i64(), Some(3));
    assert_eq!(call(&mut store, two, "refusals", &[]).i64(), Some(1));
    let placed: Vec<_> = store
        .applied()
        .into_iter()
        .map(|a| a.data.unwrap())
        .collect();
    assert_eq!(placed.len(), 2);
    assert_eq!(placed[0].objects.len(), 1);
}

#[test]
fn revert_then_reapply_starts_the_static_afresh_and_keeps_the_old_data() {
    let mut bank = Bank::start(6, 3);
    bank.work(100);
    let b = bundle(6, 8, &DiffOptions::default());
    bank.apply(&b).unwrap();
    let first = bank.placement();
    bank.conserved();
    let counted = bank.i64("refusals", &[]);
    assert_eq!(bank.transfer(0, 1, -1), 0);
    assert_eq!(bank.i64("refusals", &[]), counted + 1);
    let id = bank.store.applied()[0].id;
    bank.store.revert(id, None).unwrap();
    bank.store.wait_transition().unwrap();
    assert_eq!(bank.i64("refusals", &[]), -1, "revision 6 again");
    // Applied again: a new copy of the static, zero, in the spare tail of
    // the first copy's page (which stays: code or data may still use it).
    bank.apply(&b).unwrap();
    let second = bank.placement();
    assert_eq!(second.pages_grown, 0);
    assert!(
        second.base >= first.base + first.size,
        "{first:?} {second:?}"
    );
    assert_eq!(bank.i64("refusals", &[]), 0);
    assert_eq!(bank.transfer(0, 1, -1), 0);
    assert_eq!(bank.i64("refusals", &[]), 1);
    assert_eq!(bank.i64("total", &[]), TOTAL);
    bank.finish();
}

/// `b` with its first object made `size` bytes of zeros.
fn with_object_size(b: &patch_format::Bundle, size: u32) -> patch_format::Bundle {
    let mut builder = patch_format::BundleBuilder::new(b.target_hash(), b.interface().clone());
    for e in b.entries() {
        builder.entry(e.clone());
    }
    let mut d = b.data().clone();
    d.objects[0].size = size;
    d.objects[0].init = None;
    builder.data(d);
    builder.build().unwrap()
}

#[test]
fn data_larger_than_memory_can_grow_is_refused_and_changes_nothing() {
    let b = bundle(6, 8, &DiffOptions::default());
    // The same service with as many workers (each has its own
    // linear-memory stack, grown at its start) and no failed apply.
    let mut fresh = Bank::start(6, 2);
    fresh.work(50);
    fresh.apply(&b).unwrap();
    let expected = fresh.placement();
    fresh.finish();

    let mut bank = Bank::start(6, 2);
    bank.work(50);
    let huge = with_object_size(&b, 0xffff_0000);
    let e = bank.apply(&huge).unwrap_err().to_string();
    assert!(e.contains("does not fit in memory 0"), "{e}");
    assert!(bank.store.applied().is_empty());
    assert_eq!(bank.i64("refusals", &[]), -1);
    // Memory did not grow: the real bundle lands where it does on a fresh
    // instance.
    bank.apply(&b).unwrap();
    assert_eq!(bank.placement(), expected);
    bank.work(50);
    bank.conserved();
    bank.finish();
}

#[test]
fn a_veto_after_the_data_was_put_takes_it_back_out() {
    let b = bundle(6, 8, &DiffOptions::default());
    // The same service with as many workers (each has its own
    // linear-memory stack, grown at its start) and no vetoed apply.
    let mut fresh = Bank::start(6, 3);
    fresh.work(50);
    fresh.apply(&b).unwrap();
    let expected = fresh.placement();
    fresh.finish();

    // `stop` as the pre-patch callback: it writes STOP (restored on the
    // veto) and returns the number of running workers, nonzero: a veto.
    let mut bank = Bank::start(6, 3);
    bank.work(50);
    let opts = DiffOptions {
        callbacks: vec![(patch_format::CallbackKind::PrePatch, "stop".into())],
        ..DiffOptions::default()
    };
    let vetoing = bundle(6, 8, &opts);
    assert!(!vetoing.data().is_empty());
    let e = bank.apply(&vetoing).unwrap_err();
    assert!(
        matches!(e, wasm_patch_runtime::PatchError::Vetoed(_)),
        "{e}"
    );
    assert_eq!(bank.i64("refusals", &[]), -1);
    let before = bank.i64("moves", &[]);
    bank.work(100);
    assert!(
        bank.i64("moves", &[]) >= before + 100,
        "the workers were not stopped"
    );
    // Memory is back to its size before the vetoed apply.
    bank.apply(&b).unwrap();
    assert_eq!(bank.placement(), expected);
    bank.conserved();
    bank.finish();
}

/// Line of the first line of revision `n`'s source that contains `text`.
fn source_line(n: u32, text: &str) -> i32 {
    let path = format!(
        "{}/guests/service/revisions/r{n}.rs",
        env!("CARGO_MANIFEST_DIR")
    );
    let src = std::fs::read_to_string(&path).unwrap();
    src.lines().position(|l| l.contains(text)).unwrap() as i32 + 1
}

#[test]
fn a_line_only_function_taken_in_panics_with_its_new_line() {
    // r1 → r2 moved `balance`'s panic location; --include-line-only carries
    // `balance` with a copy of the new location (its file name pointing at
    // the running instance's string).
    let mut bank = Bank::start(1, 2);
    bank.work(50);
    let crash = |bank: &mut Bank| {
        let f = bank.inst.get_func(&bank.store, "balance").unwrap();
        assert!(f.call(&mut bank.store, &[Val::I32(99)]).is_err());
        bank.i32("panic_line", &[])
    };
    let text = "BALANCES[i as usize].load(Relaxed)";
    assert_eq!(crash(&mut bank), source_line(1, text));
    let opts = DiffOptions {
        include_line_only: true,
        ..DiffOptions::default()
    };
    let b = bundle(1, 2, &opts);
    assert!(!b.data().objects.is_empty());
    bank.apply(&b).unwrap();
    assert_eq!(crash(&mut bank), source_line(2, text));
    assert_ne!(source_line(1, text), source_line(2, text));
    bank.work(50);
    bank.conserved();
    bank.finish();
}

/// A data bundle (r0 → r3: the overdraft fix plus the refusal's reason,
/// two new strings and a new static) applied with `wasm-patch apply
/// --control` to revision 0 serving under `run --control`: `serve` ends
/// once an overdraft is refused, with the money intact.
#[test]
fn a_data_bundle_applies_under_run_control_and_the_service_ends_with_the_money() {
    use std::io::Read;
    use std::process::Stdio;

    let d = scratch("data-control");
    let sock = d.join("bank.sock");
    let (old, new, bundle) = (d.join("r0.wasm"), d.join("r3.wasm"), d.join("fix.wpatch"));
    std::fs::write(&old, rev(0)).unwrap();
    std::fs::write(&new, rev(3)).unwrap();
    let o = wasm_patch(&["diff", p(&old), p(&new), "-o", p(&bundle)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("data         3 object(s), 48 bytes"), "{s}");
    assert!(
        s.contains("18 bytes, align 4, \"insufficient funds\""),
        "{s}"
    );
    assert!(s.contains("object   bank::LAST_REFUSAL  8 bytes"), "{s}");
    assert!(s.contains("bundle size"), "{s}");

    let mut child = Command::new(BIN)
        .args([
            "run",
            "--control",
            p(&sock),
            "--invoke",
            "serve",
            p(&old),
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tries = 0;
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        tries += 1;
        if tries > 3000 {
            let _ = child.kill();
            panic!("the control socket never appeared");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let a = wasm_patch(&["apply", "--control", p(&sock), p(&bundle)]);
    assert!(a.status.success(), "{}{}", text(&a.stdout), text(&a.stderr));
    let mut waits = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        waits += 1;
        if waits > 6000 {
            let _ = child.kill();
            panic!("the guest did not end after the fix");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success());
    assert_eq!(out.trim(), TOTAL.to_string());
}

/// Attack on the veto path: every guest thread holds a linear-memory stack,
/// so the vetoing callback's own thread must grow one past the bundle's
/// pages. Taking the bundle's data back out must not shrink memory under
/// that stack (a later thread reuses it); the service keeps working.
#[test]
fn a_veto_keeps_the_stack_its_callback_thread_grew_past_the_data() {
    let mut bank = Bank::start(6, 3);
    bank.work(50);
    // A thread takes its stack when it is spawned: threads spawned and
    // not yet run hold every free region, so the callback's thread must
    // grow one.
    let total = bank.inst.get_func(&bank.store, "total").unwrap();
    for _ in 0..4 {
        bank.store.spawn(total, &[]).unwrap();
    }
    let mem = bank.inst.get_memory(&bank.store, "memory").unwrap();
    let before = mem.size(&bank.store);
    let opts = DiffOptions {
        callbacks: vec![(patch_format::CallbackKind::PrePatch, "stop".into())],
        ..DiffOptions::default()
    };
    let e = bank.apply(&bundle(6, 8, &opts)).unwrap_err();
    assert!(
        matches!(e, wasm_patch_runtime::PatchError::Vetoed(_)),
        "{e}"
    );
    assert_eq!(
        mem.size(&bank.store),
        before,
        "the veto takes the growth back"
    );
    // The callback thread's region went with it: later threads must not
    // be given it.
    assert_eq!(bank.transfer(0, 1, -1), 0);
    bank.work(50);
    assert_eq!(bank.i64("total", &[]), TOTAL);
}
