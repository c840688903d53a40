//! `wasm-patch inspect BUNDLE [--json]`: what a bundle contains.
//!
//! Owns the text and JSON renderings of a [`Bundle`]: target hash, one line
//! per entry (name, replace/add, immediate, type), callbacks, states,
//! flags, metadata and the signature's presence and self-consistency. It
//! names only the functions in the bundle. Any input is safe to inspect:
//! parsing is total, and a broken bundle ends in an error, never a crash.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use patch_format::names::readable;
use patch_format::{Bundle, EntryKind, FuncType};
use serde_json::json;

/// Arguments of `wasm-patch inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Entry point.
pub fn main(args: InspectArgs) -> anyhow::Result<i32> {
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    let b = Bundle::parse(&bytes)
        .with_context(|| format!("{} is not a valid patch bundle", args.bundle.display()))?;
    let out = if args.json {
        serde_json::to_string_pretty(&render_json(&b))? + "\n"
    } else {
        render_text(&b)
    };
    print_stdout(&out)?;
    Ok(0)
}

/// Writes to stdout; a closed pipe (`inspect ... | head`) is not an error.
pub(crate) fn print_stdout(s: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(s.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `(i32, i32) -> i64`.
pub fn signature(ty: &FuncType) -> String {
    let list = |v: &[patch_format::ValType]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let results = match ty.results() {
        [] => "()".to_string(),
        [one] => one.to_string(),
        many => format!("({})", list(many)),
    };
    format!("({}) -> {results}", list(ty.params()))
}

/// What the signature section says: `none`, valid for its key, or invalid.
fn signature_status(b: &Bundle) -> (&'static str, Option<String>) {
    match b.signature() {
        None => ("none", None),
        Some(sig) => {
            let key = sig.public_key().to_hex();
            match b.verify_signature() {
                Ok(_) => ("valid", Some(key)),
                Err(_) => ("invalid", Some(key)),
            }
        }
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The text rendering.
pub fn render_text(b: &Bundle) -> String {
    let m = b.metadata();
    let mut s = String::new();
    let yes = |x: bool| if x { "yes" } else { "no" };
    let _ = writeln!(s, "bundle       {}", b.bundle_id());
    let version = if b.data().is_empty() {
        1
    } else {
        patch_format::FORMAT_VERSION
    };
    let _ = writeln!(s, "format       version {version}");
    let _ = writeln!(s, "name         {}", m.name);
    if !m.description.is_empty() {
        let _ = writeln!(s, "description  {}", m.description);
    }
    let _ = writeln!(
        s,
        "created      by {} at {} (unix seconds)",
        m.created_by, m.created_at
    );
    let _ = writeln!(
        s,
        "target       sha256:{} ({} functions, {} types)",
        b.target_hash(),
        b.target_func_count(),
        b.target_type_count()
    );
    if let Some(h) = m.new_module {
        let _ = writeln!(s, "built from   sha256:{h}");
    }
    let _ = writeln!(
        s,
        "flags        immediate: {}, replace (cumulative): {}",
        yes(b.immediate()),
        yes(b.replace())
    );
    let _ = writeln!(s, "sits on      {}", list(b.sits_on()));
    let _ = writeln!(
        s,
        "states       declares {}; requires {}",
        list(b.states()),
        list(b.requires_states())
    );
    let _ = writeln!(s, "entries      {}", b.entries().len());
    let shown: Vec<String> = b.entries().iter().map(|e| readable(&e.name)).collect();
    let width = shown.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (e, name) in b.entries().iter().zip(&shown) {
        let (verb, index) = match e.kind {
            EntryKind::Replace { target_index } => ("replace", target_index),
            EntryKind::Add { new_index } => ("add", new_index),
        };
        let imm = if b.is_immediate(e) {
            "immediate"
        } else {
            "per-thread"
        };
        let _ = writeln!(
            s,
            "  {verb:<8} {name:<width$}  func {index:<5} {imm:<10} {}",
            signature(&e.ty),
        );
    }
    if b.callbacks().is_empty() {
        let _ = writeln!(s, "callbacks    none");
    } else {
        let _ = writeln!(s, "callbacks    {}", b.callbacks().len());
    }
    for c in b.callbacks() {
        let _ = writeln!(s, "  {:<13}{}", c.kind.name(), readable(&c.name));
    }
    s.push_str(&data_lines(b));
    for line in transfer_lines(b) {
        let _ = writeln!(s, "{line}");
    }
    let sig = match signature_status(b) {
        (_, None) => "none (unsigned)".to_string(),
        ("valid", Some(k)) => format!(
            "ed25519, key {k}: consistent with the bundle (whether the key is trusted: `wasm-patch verify`)"
        ),
        (_, Some(k)) => format!("ed25519, key {k}: INVALID, the bundle was changed after signing"),
    };
    let _ = writeln!(s, "signature    {sig}");
    s
}

/// The bundle's data objects and new table entries (FORMAT.md §9), one
/// line each; empty for a bundle of code only.
pub fn data_lines(b: &Bundle) -> String {
    let d = b.data();
    if d.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let total = d.layout().map_or(0, |(_, t)| t);
    let _ = writeln!(
        s,
        "data         {} object(s), {total} bytes, {} code site(s)",
        d.objects.len(),
        d.sites.len()
    );
    for o in &d.objects {
        let init = match &o.init {
            None => "zeros".to_string(),
            Some(b) if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => {
                format!("{:?}", String::from_utf8_lossy(b))
            }
            Some(_) => "bytes".to_string(),
        };
        let relocs = if o.relocs.is_empty() {
            String::new()
        } else {
            format!(", {} pointer(s) inside", o.relocs.len())
        };
        let _ = writeln!(
            s,
            "  object   {}  {} bytes, align {}, {init}{relocs}",
            readable(&o.name),
            o.size,
            1u32 << o.align_log2
        );
    }
    if !d.table_entries.is_empty() {
        let _ = writeln!(s, "table        {} new entry(ies)", d.table_entries.len());
        for f in &d.table_entries {
            let name = b
                .entries()
                .iter()
                .find(|e| e.kind.func_index() == *f)
                .map_or_else(|| format!("func {f}"), |e| readable(&e.name));
            let _ = writeln!(s, "  entry    {name} (func {f})");
        }
    }
    s
}

/// The readable name of replaced target function `func` in `b`.
fn replaced_name(b: &Bundle, func: u32) -> String {
    b.entries()
        .iter()
        .find(|e| matches!(e.kind, EntryKind::Replace { target_index } if target_index == func))
        .map_or_else(|| format!("func {func}"), |e| readable(&e.name))
}

/// The bundle's frame transfer maps and refusals (docs/transfer.md), one
/// line each after a heading; nothing when it has none.
pub fn transfer_lines(b: &Bundle) -> Vec<String> {
    let t = b.transfers();
    if t.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "transfer     {} map(s), {} refused",
        t.maps.len(),
        t.refused.len()
    )];
    for m in &t.maps {
        // A header with operands (below the loop, then its parameters):
        // "0→0 (stack 0←1 1←0)", new ← old.
        let headers: Vec<String> = (m.headers.iter().enumerate())
            .map(
                |(k, (a, b))| match m.params.get(k).filter(|p| !p.is_empty()) {
                    Some(p) => {
                        let p: Vec<String> = (p.iter().enumerate())
                            .map(|(j, i)| format!("{j}←{i}"))
                            .collect();
                        format!("{a}→{b} (stack {})", p.join(" "))
                    }
                    None => format!("{a}→{b}"),
                },
            )
            .collect();
        let moved: Vec<String> = m
            .locals
            .iter()
            .enumerate()
            .filter(|(j, i)| **i as usize != *j)
            .map(|(j, &i)| match i {
                patch_format::transfer::FRESH => format!("{j} fresh"),
                _ => format!("{j}←{i}"),
            })
            .collect();
        let locals = if moved.is_empty() {
            format!("{} locals in place", m.locals.len())
        } else {
            format!("{} locals, renumbered {}", m.locals.len(), moved.join(" "))
        };
        out.push(format!(
            "  map      {}  loop headers {}; {locals}",
            replaced_name(b, m.func),
            headers.join(", ")
        ));
    }
    for r in &t.refused {
        out.push(format!(
            "  refused  {}: {}",
            replaced_name(b, r.func),
            r.reason
        ));
    }
    out
}

/// The JSON rendering of the transfer maps and refusals.
fn transfer_json(b: &Bundle) -> serde_json::Value {
    let t = b.transfers();
    let types = |v: &[patch_format::ValType]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    json!({
        "maps": t.maps.iter().map(|m| json!({
            "func_index": m.func,
            "name": replaced_name(b, m.func),
            "headers": m.headers,
            "params": m.params,
            "locals": m.locals,
            "old_locals": types(&m.old_locals),
            "new_locals": types(&m.new_locals),
        })).collect::<Vec<_>>(),
        "refused": t.refused.iter().map(|r| json!({
            "func_index": r.func,
            "name": replaced_name(b, r.func),
            "reason": r.reason,
        })).collect::<Vec<_>>(),
    })
}

/// The JSON rendering.
pub fn render_json(b: &Bundle) -> serde_json::Value {
    let m = b.metadata();
    let entries: Vec<_> = b
        .entries()
        .iter()
        .map(|e| {
            let (kind, index) = match e.kind {
                EntryKind::Replace { target_index } => ("replace", target_index),
                EntryKind::Add { new_index } => ("add", new_index),
            };
            json!({
                "name": e.name,
                "readable_name": readable(&e.name),
                "kind": kind,
                "func_index": index,
                "immediate": b.is_immediate(e),
                "type": signature(&e.ty),
                "params": e.ty.params().iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "results": e.ty.results().iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "body_bytes": e.body.len(),
            })
        })
        .collect();
    let callbacks: Vec<_> = b
        .callbacks()
        .iter()
        .map(|c| json!({ "kind": c.kind.name(), "name": c.name, "readable_name": readable(&c.name) }))
        .collect();
    let state = |v: &[patch_format::StateVersion]| {
        v.iter()
            .map(|s| json!({ "id": s.id, "version": s.version }))
            .collect::<Vec<_>>()
    };
    let (status, key) = signature_status(b);
    json!({
        "format_version": if b.data().is_empty() { 1 } else { patch_format::FORMAT_VERSION },
        "data": {
            "objects": b.data().objects.iter().map(|o| json!({
                "name": o.name,
                "readable_name": readable(&o.name),
                "size": o.size,
                "align": 1u32 << o.align_log2,
                "zero": o.init.is_none(),
                "relocations": o.relocs.len(),
            })).collect::<Vec<_>>(),
            "table_entries": b.data().table_entries,
            "sites": b.data().sites.len(),
        },
        "bundle_id": b.bundle_id().to_string(),
        "name": m.name,
        "description": m.description,
        "created_by": m.created_by,
        "created_at": m.created_at,
        "target": {
            "sha256": b.target_hash().to_string(),
            "functions": b.target_func_count(),
            "types": b.target_type_count(),
        },
        "built_from_sha256": m.new_module.map(|h| h.to_string()),
        "immediate": b.immediate(),
        "replace": b.replace(),
        "sits_on": b.sits_on().iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "states": state(b.states()),
        "requires_states": state(b.requires_states()),
        "entries": entries,
        "callbacks": callbacks,
        "transfer": transfer_json(b),
        "signature": {
            "present": key.is_some(),
            "status": status,
            "public_key": key,
        },
    })
}
