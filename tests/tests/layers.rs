//! The workspace's rooms and which way their doors open: each crate may
//! depend only on the crates below it (docs/ARCHITECTURE.md). Cargo already
//! refuses a cycle; this refuses a crate reaching *upward* — the store
//! reading the pipeline, the review pages reaching into delivery — before
//! the shape erodes one convenient import at a time.

use std::collections::BTreeSet;

/// Each workspace crate and the workspace crates it may use, lowest first.
/// Changing this table is changing the architecture: update
/// docs/ARCHITECTURE.md with it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("record", &[]),
    ("firmware-config", &[]),
    ("synth", &[]),
    ("vision", &["firmware-config", "synth"]),
    ("fusion", &["record", "firmware-config", "vision"]),
    ("telemetry", &["record", "firmware-config"]),
    ("store", &["record", "firmware-config", "telemetry"]),
    (
        "delivery",
        &["record", "firmware-config", "telemetry", "store"],
    ),
    ("review-web", &["record", "telemetry", "store"]),
    (
        "appliance",
        &[
            "record",
            "firmware-config",
            "synth",
            "vision",
            "fusion",
            "telemetry",
            "store",
            "delivery",
            "review-web",
        ],
    ),
];

#[test]
fn no_crate_depends_on_a_crate_above_it() {
    let repo = e2e::repo();
    let workspace: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo.join("Cargo.toml")).unwrap()).unwrap();
    let members: BTreeSet<String> = workspace["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let listed: BTreeSet<String> = ALLOWED.iter().map(|(c, _)| c.to_string()).collect();
    let untold: Vec<_> = members
        .iter()
        .filter(|m| *m != "tests" && !listed.contains(*m))
        .collect();
    assert!(
        untold.is_empty(),
        "crates with no place in the architecture: {untold:?}; add them to ALLOWED and docs/ARCHITECTURE.md"
    );
    for (krate, allowed) in ALLOWED {
        let manifest: toml::Value =
            toml::from_str(&std::fs::read_to_string(repo.join(krate).join("Cargo.toml")).unwrap())
                .unwrap();
        // Normal dependencies only: tests and benches may reach wider.
        let used: BTreeSet<&str> = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let upward: Vec<&&str> = used
            .iter()
            .filter(|d| listed.contains(**d) && !allowed.contains(*d))
            .collect();
        assert!(
            upward.is_empty(),
            "{krate} depends on {upward:?}, which it may not (allowed: {allowed:?}); \
             see docs/ARCHITECTURE.md"
        );
    }
}
