//! `wasm-patch hash FILE`: a module's identity as bundles name it (their
//! target hash, `inspect`'s `target sha256:...`), so that an operator can
//! tell which bundle fits which running module before applying it.
//!
//! The hash is the SHA-256 of the module's exact binary bytes (a `.wat`
//! file is compiled to binary first, as `run` and `diff` do). It covers
//! every section, custom sections included (`name`, debug info,
//! `producers`, relocations): stripping or adding one gives another hash,
//! and a bundle built against the unstripped build is refused on the
//! stripped one (`wrong_target`). That is deliberate: a bundle is built
//! from, and checked against, the exact build it patches, and `diff` reads
//! the names and relocations these sections hold.

use super::diff::read_module;
use patch_format::ModuleHash;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `wasm-patch hash`.
#[derive(clap::Args)]
pub struct HashArgs {
    /// The module: binary `.wasm` or text `.wat`.
    pub file: PathBuf,
    /// Print `{"file":...,"hash":...}` instead of `sha256:HEX`.
    #[arg(long)]
    pub json: bool,
}

/// The target hash of the module at `path`, as bundles name it.
///
/// # Errors
/// The file cannot be read, or is neither binary nor text WebAssembly.
pub fn module_hash(path: &std::path::Path) -> anyhow::Result<ModuleHash> {
    Ok(ModuleHash::of(&read_module(path)?))
}

/// Entry point.
pub fn main(args: HashArgs) -> anyhow::Result<i32> {
    let h = module_hash(&args.file)?;
    if args.json {
        println!(
            "{}",
            json!({"file": args.file.display().to_string(), "hash": h.to_string()})
        );
    } else {
        println!("sha256:{h}");
    }
    Ok(0)
}
