//! Patch selectors: how `revert` and `status` name an applied bundle.
//!
//! A selector may be the per-process number (`3` or `patch 3`), the bundle
//! id (64 hex digits, optionally `sha256:`-prefixed) or a unique prefix of
//! it (at least [`MIN_ID_PREFIX`] hex digits), or the bundle's name. Every
//! reading is tried at once; the selector must name exactly one applied
//! bundle across all of them, so `1234` never silently means patch 1234
//! when it is also the start of a bundle id. Per-process numbers differ
//! from host to host; bundle ids and names do not, which is what a fleet
//! rollout uses.

use serde_json::{json, Value};

/// The shortest bundle-id prefix accepted (shorter ones are too likely to
/// match by accident).
pub const MIN_ID_PREFIX: usize = 4;

/// One applied bundle, as far as selection cares.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Per-process patch number.
    pub id: u32,
    /// The bundle's name.
    pub name: String,
    /// The bundle id (lowercase hex).
    pub bundle_id: String,
}

/// Why a selector names no single bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// Nothing applied matches.
    NoMatch(String),
    /// Several applied bundles match; each is listed.
    Ambiguous(String),
}

impl SelectError {
    /// The error reply of the protocol (`kind` `unknown_patch`: exit status
    /// 5, or `ambiguous`: exit status 2, a usage error).
    pub fn reply(&self) -> Value {
        match self {
            SelectError::NoMatch(m) => json!({"ok": false, "error": m, "kind": "unknown_patch"}),
            SelectError::Ambiguous(m) => json!({"ok": false, "error": m, "kind": "ambiguous"}),
        }
    }
}

/// The per-process number a selector spells, if it spells one.
fn as_number(sel: &str) -> Option<u32> {
    let t = sel.strip_prefix("patch").map(str::trim).unwrap_or(sel);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// The bundle-id prefix a selector spells, if it spells one.
fn as_id_prefix(sel: &str) -> Option<String> {
    let t = sel.strip_prefix("sha256:").unwrap_or(sel);
    (t.len() >= MIN_ID_PREFIX && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| t.to_ascii_lowercase())
}

/// The one applied bundle `sel` names.
///
/// # Errors
/// [`SelectError::NoMatch`] when none matches (the message lists what is
/// applied), [`SelectError::Ambiguous`] when several do (listing them).
pub fn select(applied: &[Candidate], sel: &str) -> Result<u32, SelectError> {
    let sel = sel.trim();
    let number = as_number(sel);
    let prefix = as_id_prefix(sel);
    let found: Vec<&Candidate> = applied
        .iter()
        .filter(|c| {
            number == Some(c.id)
                || prefix.as_ref().is_some_and(|p| c.bundle_id.starts_with(p))
                || (!c.name.is_empty() && c.name == sel)
        })
        .collect();
    let describe = |c: &&Candidate| format!("patch {} ({}, bundle {})", c.id, c.name, c.bundle_id);
    match found.as_slice() {
        [one] => Ok(one.id),
        [] => {
            let have = if applied.is_empty() {
                "nothing is applied".to_string()
            } else {
                format!(
                    "applied: {}",
                    applied
                        .iter()
                        .map(|c| describe(&c))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            Err(SelectError::NoMatch(format!(
                "no applied bundle matches `{sel}` (a patch number, a bundle id or a prefix of \
                 at least {MIN_ID_PREFIX} hex digits, or a bundle name); {have}"
            )))
        }
        many => Err(SelectError::Ambiguous(format!(
            "`{sel}` is ambiguous: it matches {} applied bundles: {}; give more of the bundle id",
            many.len(),
            many.iter().map(describe).collect::<Vec<_>>().join("; ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied() -> Vec<Candidate> {
        vec![
            Candidate {
                id: 1,
                name: "fix-orders".into(),
                bundle_id: "ab12".to_string() + &"0".repeat(60),
            },
            Candidate {
                id: 2,
                name: "fix-billing".into(),
                bundle_id: "ab12".to_string() + &"1".repeat(60),
            },
            Candidate {
                id: 3,
                name: "fix-orders".into(),
                bundle_id: "1234".to_string() + &"2".repeat(60),
            },
        ]
    }

    #[test]
    fn every_reading_names_the_bundle() {
        let a = applied();
        assert_eq!(select(&a, "2"), Ok(2));
        assert_eq!(select(&a, "patch 2"), Ok(2));
        assert_eq!(select(&a, "fix-billing"), Ok(2));
        assert_eq!(select(&a, "AB121"), Ok(2));
        assert_eq!(select(&a, "ab120"), Ok(1));
        assert_eq!(select(&a, &format!("sha256:{}", a[1].bundle_id)), Ok(2));
        assert_eq!(select(&a, &a[0].bundle_id), Ok(1));
    }

    #[test]
    fn ambiguity_is_refused_listing_the_candidates() {
        let a = applied();
        let Err(SelectError::Ambiguous(m)) = select(&a, "ab12") else {
            panic!("a prefix of two bundle ids");
        };
        assert!(m.contains("patch 1") && m.contains("patch 2"), "{m}");
        // Too short to be read as a prefix: matches nothing.
        assert!(matches!(select(&a, "ab1"), Err(SelectError::NoMatch(_))));
        let Err(SelectError::Ambiguous(m)) = select(&a, "fix-orders") else {
            panic!("two bundles share the name");
        };
        assert!(m.contains("patch 1") && m.contains("patch 3"), "{m}");
        // `1234` is patch 1234 (none) and a prefix of patch 3's id: one match.
        assert_eq!(select(&a, "1234"), Ok(3));
        let a2 = vec![
            a[0].clone(),
            Candidate {
                id: 1234,
                ..a[1].clone()
            },
            a[2].clone(),
        ];
        let Err(SelectError::Ambiguous(m)) = select(&a2, "1234") else {
            panic!("a number that is also an id prefix names two bundles");
        };
        assert!(m.contains("patch 1234") && m.contains("patch 3"), "{m}");
        assert!(matches!(select(&a, "ab55"), Err(SelectError::NoMatch(_))));
        assert!(matches!(select(&a, "9"), Err(SelectError::NoMatch(_))));
        let Err(SelectError::NoMatch(m)) = select(&[], "x") else {
            panic!()
        };
        assert!(m.contains("nothing is applied"), "{m}");
    }
}
