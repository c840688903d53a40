//! Readable function names: Rust (legacy and v0) and C++ symbols as people
//! write them, and how a name given on a command line finds a function.
//!
//! Bundles, the runtime and `--json` output keep the raw (mangled) names;
//! only what is shown to a person goes through [`readable`].

/// The readable form of a function name: a Rust path without its hash
/// (`orders::worker`), a demangled C++ name, or `raw` itself when it is not
/// a mangled name.
pub fn readable(raw: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(raw) {
        // `{:#}` leaves out the legacy hash and v0 crate disambiguators.
        return format!("{d:#}");
    }
    if raw.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(raw) {
            if let Ok(d) = sym.demangle() {
                return d;
            }
        }
    }
    raw.to_string()
}

/// The demangled form with the Rust hash kept (`orders::worker::hc812…`),
/// or the readable one for other names.
fn with_hash(raw: &str) -> String {
    match rustc_demangle::try_demangle(raw) {
        Ok(d) => d.to_string(),
        Err(_) => readable(raw),
    }
}

/// Whether `query`, as given by a person, names the function `raw`: the raw
/// name itself, its readable form (a Rust path without the hash), or the
/// demangled form with the hash.
pub fn matches(raw: &str, query: &str) -> bool {
    raw == query || readable(raw) == query || with_hash(raw) == query
}

/// `readable (raw)` when the two differ, else the name once: for messages
/// that must let a person find the symbol again.
pub fn shown(raw: &str) -> String {
    let r = readable(raw);
    if r == raw {
        r
    } else {
        format!("{r} ({raw})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_legacy_v0_and_cpp_names_are_readable() {
        let legacy = "_ZN6orders6worker17hc812e9934cf5c14eE";
        assert_eq!(readable(legacy), "orders::worker");
        assert!(matches(legacy, "orders::worker"));
        assert!(matches(legacy, "orders::worker::hc812e9934cf5c14e"));
        assert!(matches(legacy, legacy));
        assert!(!matches(legacy, "orders::work"));
        let v0 = "_RNvCs1234_6orders6worker";
        assert_eq!(readable(v0), "orders::worker");
        assert!(matches(v0, "orders::worker"));
        assert_eq!(readable("_Z3fooi"), "foo(int)");
        assert_eq!(readable("plain_name"), "plain_name");
        assert_eq!(shown("plain_name"), "plain_name");
        assert_eq!(shown(legacy), format!("orders::worker ({legacy})"));
    }
}
