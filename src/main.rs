//! The `wasm-patch` command line: run guests, run spec scripts, build,
//! inspect and sign patch bundles, and patch running guests through their
//! control socket.

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
    /// Print a module's target hash, as bundles name it (SHA-256 of its
    /// exact binary bytes, custom sections included).
    Hash(commands::hash::HashArgs),
    /// Show what a patch bundle contains.
    Inspect(commands::inspect::InspectArgs),
    /// Generate an ed25519 key pair for signing bundles.
    Keygen(commands::sign::KeygenArgs),
    /// Sign a patch bundle.
    Sign(commands::sign::SignArgs),
    /// Verify a bundle's signature against a public key.
    Verify(commands::sign::VerifyArgs),
    /// Apply a bundle to a running guest (`run --control`) and wait for its
    /// transition.
    #[command(after_help = wasm_patch_cli::control::EXIT_CODES_HELP)]
    Apply(commands::apply::ApplyArgs),
    /// Show a running guest's bundles, transition, blockers and per-thread
    /// patch state.
    #[command(after_help = wasm_patch_cli::control::EXIT_CODES_HELP)]
    Status(commands::status::StatusArgs),
    /// List the bundles applied to a running guest.
    #[command(after_help = wasm_patch_cli::control::EXIT_CODES_HELP)]
    List(commands::status::ListArgs),
    /// Revert an applied bundle of a running guest (a transition back).
    #[command(after_help = wasm_patch_cli::control::EXIT_CODES_HELP)]
    Revert(commands::control_verbs::RevertArgs),
    /// Reverse the transition in progress in a running guest.
    #[command(after_help = wasm_patch_cli::control::EXIT_CODES_HELP)]
    Reverse(commands::control_verbs::ReverseArgs),
    /// Switch every pending thread now, ignoring the stack check (unsafe:
    /// the bundle can never be reverted afterwards).
    #[command(after_help = wasm_patch_cli::control::EXIT_CODES_HELP)]
    Force(commands::control_verbs::ForceArgs),
    /// Measure hot patching: `bench transition` applies and reverts a
    /// bundle on a module's threads and reports the latency distribution.
    Bench(commands::bench::BenchArgs),
}

impl Command {
    /// Whether this is a control verb run with `--json`: then every outcome,
    /// errors included, is one JSON object on stdout.
    fn json(&self) -> bool {
        match self {
            Command::Apply(a) => a.control.json,
            Command::Status(a) => a.control.json,
            Command::List(a) => a.control.json,
            Command::Revert(a) => a.control.json,
            Command::Reverse(a) => a.control.json,
            Command::Force(a) => a.control.json,
            _ => false,
        }
    }
}

/// The control verbs: with `--json`, even their usage errors are JSON.
const CONTROL_VERBS: [&str; 6] = ["apply", "status", "list", "revert", "reverse", "force"];

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let argv: Vec<String> = std::env::args().collect();
            let control_json = argv
                .get(1)
                .is_some_and(|v| CONTROL_VERBS.contains(&v.as_str()))
                && argv.iter().any(|a| a == "--json");
            let informational = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if control_json && !informational {
                let msg = e.render().to_string();
                wasm_patch_cli::control::print_json(&wasm_patch_cli::control::client_error(
                    msg.trim().trim_start_matches("error: "),
                    "usage",
                ));
                std::process::exit(wasm_patch_cli::control::EXIT_USAGE);
            }
            e.exit()
        }
    };
    let json = cli.command.json();
    let result = match cli.command {
        Command::Run(args) => commands::run::main(args),
        Command::Wast(args) => commands::wast::main(args),
        Command::Diff(args) => commands::diff::main(args),
        Command::Inspect(args) => commands::inspect::main(args),
        Command::Hash(args) => commands::hash::main(args),
        Command::Keygen(args) => commands::sign::keygen(args),
        Command::Sign(args) => commands::sign::sign(args),
        Command::Verify(args) => commands::sign::verify(args),
        Command::Apply(args) => commands::apply::main(args),
        Command::Status(args) => commands::status::status(args),
        Command::List(args) => commands::status::list(args),
        Command::Revert(args) => commands::control_verbs::revert(args),
        Command::Reverse(args) => commands::control_verbs::reverse(args),
        Command::Force(args) => commands::control_verbs::force(args),
        Command::Bench(args) => commands::bench::main(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let (code, kind) = wasm_patch_cli::control::exit_for_error(&e);
            if json {
                wasm_patch_cli::control::print_json(&wasm_patch_cli::control::client_error(
                    &format!("{e:#}"),
                    kind,
                ));
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::exit(code);
        }
    }
}
