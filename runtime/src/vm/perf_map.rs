//! Linux `perf` symbol maps for JIT code.
//!
//! With `WASM_PATCH_PERF_MAP=1` in the environment, every published code
//! unit appends one line per function to `/tmp/perf-<pid>.map`
//! (`<start> <len> <name>`, hex), the format `perf report` reads to name
//! samples in anonymous executable memory. Names are
//! `wasm[<unit>]::f<index>` (unit 1 and up: a module or a bundle) or
//! `trampoline[<unit>]::<index>`, so two versions of one function show up
//! as two symbols.

use super::code_memory::{CodeUnit, UnitKind};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// The open map file, when the environment asks for one.
fn map_file() -> Option<&'static Mutex<std::fs::File>> {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    FILE.get_or_init(|| {
        let on = std::env::var_os("WASM_PATCH_PERF_MAP").is_some_and(|v| v != "0" && !v.is_empty());
        if !on {
            return None;
        }
        let path = format!("/tmp/perf-{}.map", std::process::id());
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
            .map(Mutex::new)
    })
    .as_ref()
}

/// Record `unit`'s functions in the perf map (a no-op unless enabled).
pub(crate) fn record(unit: &CodeUnit) {
    let Some(file) = map_file() else { return };
    let mut text = String::new();
    for (i, f) in unit.funcs().iter().enumerate() {
        let r = unit.func_range(i);
        let name = match unit.kind() {
            UnitKind::Wasm => format!("wasm[{}]::f{}", unit.id(), f.func_index),
            UnitKind::Trampolines => format!("trampoline[{}]::{}", unit.id(), f.func_index),
        };
        text.push_str(&format!("{:x} {:x} {}\n", r.start, r.len(), name));
    }
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    // A profiling aid: failing to write it must not fail the publish.
    let _ = file.write_all(text.as_bytes());
}
