//! `wasm-patch diff OLD NEW -o OUT`: builds a patch bundle from two builds
//! of one module, like kpatch-build.
//!
//! Owns the command-line face of [`patch_format::diff`]: reading `.wasm` or
//! `.wat` inputs, turning options into [`DiffOptions`], and writing OUT
//! atomically (a temporary file renamed into place), so that a refused
//! diff never leaves a partial or stale bundle behind.

use std::path::{Path, PathBuf};

use anyhow::Context;
use patch_format::names::readable;
use patch_format::{Bundle, BundleId, CallbackKind, DiffOptions, EntryKind, StateVersion};

/// Arguments of `wasm-patch diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The build that is running now, i.e. the target (`.wasm` or `.wat`).
    /// The bundle records the SHA-256 of its binary form.
    pub old: PathBuf,
    /// The fixed build (`.wasm` or `.wat`).
    pub new: PathBuf,
    /// Where to write the bundle.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Bundle name (default: OUT's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Free-text description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Switch this replaced function for every thread at once (repeatable).
    #[arg(long = "immediate", value_name = "NAME")]
    pub immediate: Vec<String>,
    /// Make the whole bundle immediate.
    #[arg(long)]
    pub all_immediate: bool,
    /// Cumulative bundle: replaces every bundle applied before it.
    #[arg(long)]
    pub replace: bool,
    /// Declare a state this bundle leaves behind (repeatable).
    #[arg(long = "state", value_name = "ID:VERSION")]
    pub states: Vec<StateVersion>,
    /// Require a state left by an applied bundle, at least this version (repeatable).
    #[arg(long = "requires-state", value_name = "ID:VERSION")]
    pub requires: Vec<StateVersion>,
    /// A bundle this one must sit on: its id (64 hex digits) or its file (repeatable).
    #[arg(long = "sits-on", value_name = "BUNDLE")]
    pub sits_on: Vec<String>,
    /// Also carry functions whose only change is a panic location's line or
    /// column (left out by default, and counted).
    #[arg(long)]
    pub include_line_only: bool,
    /// Compute a frame transfer map for this replaced function, so that a
    /// thread living in one of its loops moves to the new version at the
    /// loop's header (repeatable; docs/transfer.md).
    #[arg(long = "transfer", value_name = "NAME")]
    pub transfer: Vec<String>,
    /// Compute transfer maps for every replaced function.
    #[arg(long)]
    pub transfer_all: bool,
    /// Function of NEW, type `() -> i32`, run before patching; nonzero vetoes.
    #[arg(long, value_name = "NAME")]
    pub pre_patch: Option<String>,
    /// Function of NEW, type `() -> i32`, run once the patch is complete.
    #[arg(long, value_name = "NAME")]
    pub post_patch: Option<String>,
    /// Function of NEW, type `() -> i32`, run before a revert.
    #[arg(long, value_name = "NAME")]
    pub pre_unpatch: Option<String>,
    /// Function of NEW, type `() -> i32`, run once a revert is complete.
    #[arg(long, value_name = "NAME")]
    pub post_unpatch: Option<String>,
}

/// Entry point.
pub fn main(args: DiffArgs) -> anyhow::Result<i32> {
    let old = read_module(&args.old)?;
    let new = read_module(&args.new)?;
    let mut callbacks = Vec::new();
    for (kind, name) in [
        (CallbackKind::PrePatch, &args.pre_patch),
        (CallbackKind::PostPatch, &args.post_patch),
        (CallbackKind::PreUnpatch, &args.pre_unpatch),
        (CallbackKind::PostUnpatch, &args.post_unpatch),
    ] {
        if let Some(name) = name {
            callbacks.push((kind, name.clone()));
        }
    }
    let sits_on = args
        .sits_on
        .iter()
        .map(|s| bundle_id(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = DiffOptions {
        name: args.name.clone().unwrap_or_else(|| {
            args.output
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        }),
        description: args.description.clone(),
        created_by: concat!("wasm-patch diff ", env!("CARGO_PKG_VERSION")).to_string(),
        created_at: created_at(),
        immediate: args.immediate.clone(),
        all_immediate: args.all_immediate,
        replace: args.replace,
        states: args.states.clone(),
        requires: args.requires.clone(),
        sits_on,
        callbacks,
        include_line_only: args.include_line_only,
        transfer: args.transfer.clone(),
        transfer_all: args.transfer_all,
    };
    let outcome = patch_format::diff(&old, &new, &opts).with_context(|| {
        format!(
            "{} → {}: nothing written",
            args.old.display(),
            args.new.display()
        )
    })?;
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    let b = &outcome.bundle;
    write_atomically(&args.output, &b.to_bytes())?;
    let mut text = summary(&args.output, b);
    if outcome.relocations {
        text.push_str("  (relocation sections: data followed by symbol)\n");
    }
    if !outcome.line_only.is_empty() {
        text.push_str(&format!(
            "  left out {} function(s) whose only change is a panic location's line or column \
             (--include-line-only takes them in): {}\n",
            outcome.line_only.len(),
            outcome
                .line_only
                .iter()
                .map(|n| readable(n))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    super::inspect::print_stdout(&text)?;
    Ok(0)
}

/// What `diff` prints after writing a bundle.
fn summary(out: &Path, b: &Bundle) -> String {
    let replaced = b
        .entries()
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Replace { .. }))
        .count();
    let mut s = format!(
        "wrote {}: {} replaced, {} added, {} callbacks; bundle id {}\n",
        out.display(),
        replaced,
        b.entries().len() - replaced,
        b.callbacks().len(),
        b.bundle_id()
    );
    for e in b.entries() {
        let imm = if b.is_immediate(e) {
            "  (immediate)"
        } else {
            ""
        };
        s.push_str(&format!(
            "  {:<8}{}{imm}\n",
            e.kind.verb(),
            readable(&e.name)
        ));
    }
    for c in b.callbacks() {
        s.push_str(&format!(
            "  {:<8}{} ({})\n",
            "callback",
            readable(&c.name),
            c.kind
        ));
    }
    s.push_str(&super::inspect::data_lines(b));
    s.push_str(&format!("  bundle size {} bytes\n", b.to_bytes().len()));
    for line in super::inspect::transfer_lines(b) {
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// Reads a module as binary; `.wat` (or any text) is compiled first.
pub(crate) fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    wat::parse_file(path).with_context(|| format!("reading module {}", path.display()))
}

/// `--sits-on`: 64 hex digits, or the path of a bundle whose id is taken.
fn bundle_id(s: &str) -> anyhow::Result<BundleId> {
    if let Ok(id) = s.parse::<BundleId>() {
        return Ok(id);
    }
    let bytes = std::fs::read(s)
        .with_context(|| format!("--sits-on `{s}`: neither a bundle id nor a readable file"))?;
    let b = Bundle::parse(&bytes).with_context(|| format!("--sits-on `{s}`: not a bundle"))?;
    Ok(b.bundle_id())
}

/// `SOURCE_DATE_EPOCH` if set (reproducible builds), else now.
fn created_at() -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over
/// `path`: readers see the old file or the whole new one, never a part.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}", path.display())
    })
}
