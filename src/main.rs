//! The `wasm-patch` command line: run guests, run spec scripts, build,
//! inspect and sign patch bundles.

use clap::{Parser, Subcommand};
use wasm_patch_cli::commands;

/// A WebAssembly runtime whose guest code can be patched while it runs.
#[derive(Parser)]
#[command(name = "wasm-patch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up; the size difference between verbs is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a WebAssembly module (binary or text).
    Run(commands::run::RunArgs),
    /// Run WebAssembly spec scripts (.wast) and report `N passed, M failed`.
    Wast(commands::wast::WastArgs),
    /// Build a patch bundle from two builds of one module.
    Diff(commands::diff::DiffArgs),
    /// Show what a patch bundle contains.
    Inspect(commands::inspect::InspectArgs),
    /// Generate an ed25519 key pair for signing bundles.
    Keygen(commands::sign::KeygenArgs),
    /// Sign a patch bundle.
    Sign(commands::sign::SignArgs),
    /// Verify a bundle's signature against a public key.
    Verify(commands::sign::VerifyArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::main(args),
        Command::Wast(args) => commands::wast::main(args),
        Command::Diff(args) => commands::diff::main(args),
        Command::Inspect(args) => commands::inspect::main(args),
        Command::Keygen(args) => commands::sign::keygen(args),
        Command::Sign(args) => commands::sign::sign(args),
        Command::Verify(args) => commands::sign::verify(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
