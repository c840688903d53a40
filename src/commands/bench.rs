//! `wasm-patch bench transition MODULE BUNDLE --entry NAME [--threads
//! N[,N...]] [--runs R] [--warmup MS] [--timeout S] [--json FILE] [--plot
//! FILE.svg]`: transition latency of any module and bundle, measured by
//! the engine in `crate::bench`.
//!
//! Per thread count, a fresh store spawns `--entry` once per thread with
//! the thread index, the threads run for `--warmup` ms, then `--runs` times
//! the bundle is applied, the threads run for the warm-up again, and the
//! bundle is reverted. Which stack state is measured is the module's
//! business: its threads may be parked (`env.park`), busy (yielding), or
//! holding the changed functions.
//!
//! The table goes to stdout, a progress line to stderr; `--json` and
//! `--plot` write only where the user says. A bundle the store refuses
//! stops the run with `apply`'s exit status (5 refused, 6 applied already:
//! `control::EXIT_CODES_HELP`).

use super::diff::read_module;
use crate::bench::{self, engine, plot, report, BenchError, Progress, Settings};
use crate::control;
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `wasm-patch bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchCommand,
}

/// The benchmarks.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Transition latency of applying and reverting BUNDLE on MODULE, for
    /// each thread count.
    #[command(after_help = BENCH_HELP)]
    Transition(TransitionArgs),
}

const BENCH_HELP: &str = "The store links the thread ABI (`wasm-patch`), WASI preview 1 and \
`env.park` (parks the calling thread for good). Stacks are unguarded (so that 100 000 threads \
fit in the process's memory mappings).

Exit status: 0 success; 1 any other error; 2 usage; 5 the bundle was refused (wrong target, \
format, ...); 6 applied already; 4 busy.";

/// Arguments of `wasm-patch bench transition`.
#[derive(clap::Args)]
pub struct TransitionArgs {
    /// The module (`.wasm` or `.wat`).
    pub module: PathBuf,
    /// The bundle (`.wpatch`) to apply and revert, built against MODULE.
    pub bundle: PathBuf,
    /// The export each thread runs, of type (param i32), called with the
    /// thread index.
    #[arg(long, value_name = "NAME")]
    pub entry: String,
    /// Thread counts, one case each.
    #[arg(
        long,
        value_name = "N[,N...]",
        value_delimiter = ',',
        default_value = "1,100,10000"
    )]
    pub threads: Vec<usize>,
    /// Apply/revert pairs per thread count.
    #[arg(long, value_name = "R", default_value_t = 5)]
    pub runs: usize,
    /// Milliseconds the threads run before each apply and each revert.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    pub warmup: f64,
    /// Reverse a transition not complete after this many seconds (counted
    /// as reversed; default: wait as long as it takes). A reversed revert
    /// is tried again, up to 3 times, before the run fails (the bundle
    /// then stays applied).
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
    /// Write the results, raw samples included, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw latency against thread count (log axes) as SVG to FILE.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Each thread's stack, KiB.
    #[arg(long, value_name = "KIB", default_value_t = engine::DEFAULT_STACK_SIZE >> 10)]
    pub stack_kib: usize,
    /// Compile MODULE so that threads living in a loop move to the new
    /// version at a loop header, for a BUNDLE made with `diff --transfer`
    /// (docs/transfer.md).
    #[arg(long)]
    pub frame_transfer: bool,
}

/// Entry point.
pub fn main(args: BenchArgs) -> anyhow::Result<i32> {
    match args.what {
        BenchCommand::Transition(a) => transition(a),
    }
}

fn usage(msg: String) -> anyhow::Error {
    control::Usage(msg).into()
}

/// The settings `a` asks for, checked.
fn settings(a: &TransitionArgs) -> anyhow::Result<Settings> {
    if a.threads.is_empty() || a.threads.contains(&0) {
        return Err(usage(format!(
            "--threads must list thread counts of at least 1, not {:?}",
            a.threads
        )));
    }
    if a.runs == 0 {
        return Err(usage("--runs must be at least 1".into()));
    }
    if !(a.warmup.is_finite() && a.warmup >= 0.0) {
        return Err(usage(format!(
            "--warmup must be a number of milliseconds, not {}",
            a.warmup
        )));
    }
    let timeout = super::apply::timeout_ms(a.timeout)?.map(|ms| Duration::from_secs_f64(ms / 1e3));
    if a.stack_kib < 16 {
        return Err(usage(format!(
            "--stack-kib must be at least 16, not {}",
            a.stack_kib
        )));
    }
    Ok(Settings {
        entry: a.entry.clone(),
        runs: a.runs,
        warmup: Duration::from_secs_f64(a.warmup / 1e3),
        timeout,
        stack_size: a.stack_kib << 10,
        frame_transfer: a.frame_transfer,
    })
}

/// Prints where the run stands on stderr: on a terminal one line
/// rewritten in place, else a line every few seconds.
struct Ticker {
    tty: bool,
    last: Option<Instant>,
    started: Instant,
}

impl Ticker {
    fn new() -> Ticker {
        Ticker {
            tty: std::io::stderr().is_terminal(),
            last: None,
            started: Instant::now(),
        }
    }

    fn tick(&mut self, p: Progress) {
        let every = Duration::from_millis(if self.tty { 200 } else { 5000 });
        let due = self
            .last
            .map_or(self.started.elapsed() >= every, |t| t.elapsed() >= every);
        if !due {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!(
            "bench: {} thread(s): run {}/{}, {} ({:.0} s so far)",
            p.threads,
            (p.done + 1).min(p.runs),
            p.runs,
            p.doing,
            self.started.elapsed().as_secs_f64()
        );
        let mut e = std::io::stderr().lock();
        let _ = if self.tty {
            write!(e, "\r{line}\x1b[K")
        } else {
            writeln!(e, "{line}")
        };
    }

    fn finish(&self) {
        if self.tty && self.last.is_some() {
            eprintln!();
        }
    }
}

fn transition(a: TransitionArgs) -> anyhow::Result<i32> {
    let settings = settings(&a)?;
    let module = read_module(&a.module)?;
    let bundle =
        std::fs::read(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    let bundle_id = patch_format::Bundle::parse(&bundle)
        .map(|b| b.bundle_id().to_string())
        .unwrap_or_else(|_| "unparseable".into());
    let meta = report::Meta {
        module_sha256: patch_format::ModuleHash::of(&module).to_string(),
        bundle_id,
        entry: a.entry.clone(),
        warmup_ms: a.warmup,
        timeout_s: a.timeout,
        stack_size: settings.stack_size,
    };
    let mut ticker = Ticker::new();
    let mut cases = Vec::new();
    for &n in &a.threads {
        let r = bench::run_case(&module, &bundle, n, &settings, &mut |p| ticker.tick(p));
        match r {
            Ok(c) => cases.push(c),
            Err(e @ (BenchError::Apply { .. } | BenchError::Revert { .. })) => {
                ticker.finish();
                let source = match &e {
                    BenchError::Apply { source, .. } | BenchError::Revert { source, .. } => source,
                    _ => unreachable!("matched above"),
                };
                eprintln!(
                    "error: bench transition {} on {}: {e}",
                    a.bundle.display(),
                    a.module.display()
                );
                return Ok(control::exit_for_kind(Some(control::error_kind(source))));
            }
            Err(e) => {
                ticker.finish();
                return Err(e).with_context(|| format!("bench transition {}", a.module.display()));
            }
        }
    }
    ticker.finish();
    print!("{}", report::table(&cases));
    if let Some(path) = &a.json {
        let doc = report::document(&cases, &meta);
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.plot {
        let title = format!(
            "wasm-patch transition latency: {} ({}, {} build)",
            a.module
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            a.entry,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        let svg = plot::svg(&cases, &plot::ANCHORS, &title)?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(control::EXIT_OK)
}
