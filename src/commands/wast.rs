//! `wasm-patch wast FILE...`: run spec scripts and report `N passed, M failed`.

use anyhow::Context;
use wasm_patch_runtime::Engine;

/// Arguments of `wasm-patch wast`.
#[derive(clap::Args)]
pub struct WastArgs {
    /// Spec scripts to run.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Print every failed assertion with its reason.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Entry point: exit code 0 when every assertion passed, 1 otherwise.
pub fn main(args: WastArgs) -> anyhow::Result<i32> {
    let engine = Engine::default();
    let (mut passed, mut failed) = (0, 0);
    for f in &args.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let report = crate::wast::run_script(&engine, &name, &text);
        passed += report.passed;
        failed += report.failures.len();
        if args.verbose {
            for fl in &report.failures {
                println!("FAIL {}:{}: {}", fl.script, fl.line, fl.reason);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}
