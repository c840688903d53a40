//! State ids and versions between bundles (the kernel's `klp_state`): a
//! bundle may require a state left by bundles already applied, and a
//! revert is refused while another applied bundle still needs a state that
//! only the reverted one provides.

use patch_format::StateVersion;

/// Whether `required` is provided by one of `provided` (same id, version at
/// least the required one).
pub(crate) fn satisfied(required: StateVersion, provided: &[StateVersion]) -> bool {
    provided
        .iter()
        .any(|p| p.id == required.id && p.version >= required.version)
}

/// The first requirement of `requires` not met by `provided`.
pub(crate) fn first_unmet(
    requires: &[StateVersion],
    provided: &[StateVersion],
) -> Option<StateVersion> {
    requires.iter().copied().find(|r| !satisfied(*r, provided))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(id: u32, version: u32) -> StateVersion {
        StateVersion { id, version }
    }

    #[test]
    fn newer_versions_satisfy_older_requirements() {
        assert!(satisfied(sv(1, 2), &[sv(1, 3)]));
        assert!(satisfied(sv(1, 2), &[sv(1, 2)]));
        assert!(!satisfied(sv(1, 2), &[sv(1, 1)]));
        assert!(!satisfied(sv(1, 2), &[sv(2, 9)]));
        assert_eq!(
            first_unmet(&[sv(1, 1), sv(2, 1)], &[sv(1, 1)]),
            Some(sv(2, 1))
        );
    }
}
