//! The dependency check that runs with the tests (and so in CI), offline, over `cargo metadata`
//! for the platform payledger ships on (x86_64 Linux):
//! - **licenses**: every crate's SPDX expression is satisfied by the allowed licenses
//!   (`OR`: one of them allowed; `AND`: all); a crate with no SPDX expression fails;
//! - **sources**: crates come from crates.io or this repository, never a git URL or another
//!   registry;
//! - **duplicates**: the crates that exist in two versions today are listed; a new one fails
//!   (a second copy of a crate is build time and attack surface: pin, or list it here with why).
//!
//! Not covered, because it needs the network beyond crates.io: security advisories (the RustSec
//! database lives on GitHub) and yanked versions. `docs/security.md` says how to run those
//! where GitHub is reachable (`cargo deny check advisories`).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Command;

/// Licenses payledger (Apache-2.0) may ship with: permissive ones only.
const ALLOWED_LICENSES: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "Unicode-3.0",
    "Unlicense",
    "BSL-1.0",
    "CDLA-Permissive-2.0",
];

/// Crates in two versions in the lock file when this check was written: different majors that
/// different dependencies require. The list may only shrink without a reason in review.
const KNOWN_DUPLICATES: &[&str] = &[
    "base64",
    "cpufeatures",
    "foldhash",
    "getrandom",
    "hashbrown",
    "http",
    "rand",
    "rand_chacha",
    "rand_core",
    "syn",
];

fn metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// Whether an SPDX expression (as crates write them, `/` meaning OR) is satisfied.
fn license_allowed(expression: &str) -> bool {
    let normalised = expression.replace('/', " OR ").replace(['(', ')'], " ");
    let words: Vec<&str> = normalised.split_whitespace().collect();
    // Precedence as in SPDX: AND binds tighter than OR. Parentheses in the crates used only
    // group an OR inside an AND, e.g. `(MIT OR Apache-2.0) AND Unicode-3.0`: handled by
    // checking each AND term as an OR list.
    let text = words.join(" ");
    if expression.contains('(') {
        return expression.split(" AND ").all(|term| {
            license_allowed(term.trim().trim_start_matches('(').trim_end_matches(')'))
        });
    }
    text.split(" OR ").any(|alternative| {
        alternative
            .split(" AND ")
            .all(|license| ALLOWED_LICENSES.contains(&license.trim()))
    })
}

#[test]
fn licenses_sources_and_duplicates_of_every_dependency_are_acceptable() {
    let metadata = metadata();
    let resolved: HashSet<&str> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| resolved.contains(id)))
        .collect();
    assert!(packages.len() > 100, "only {} packages", packages.len());
    let mut problems = Vec::new();
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for package in &packages {
        let name = package["name"].as_str().unwrap_or_default();
        let version = package["version"].as_str().unwrap_or_default();
        versions.entry(name).or_default().insert(version);
        match package["license"].as_str() {
            Some(license) if license_allowed(license) => {}
            Some(license) => problems.push(format!("{name} {version}: license {license}")),
            None => problems.push(format!("{name} {version}: no SPDX license expression")),
        }
        match package["source"].as_str() {
            None => {}
            Some("registry+https://github.com/rust-lang/crates.io-index") => {}
            Some(source) if source.starts_with("sparse+https://index.crates.io/") => {}
            Some(source) => problems.push(format!("{name} {version}: from {source}")),
        }
    }
    for (name, found) in &versions {
        if found.len() > 1 && !KNOWN_DUPLICATES.contains(name) {
            problems.push(format!("{name}: {} versions ({found:?})", found.len()));
        }
    }
    assert!(
        problems.is_empty(),
        "dependency check:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_license_rule_reads_spdx_as_crates_write_it() {
    assert!(license_allowed("MIT OR Apache-2.0"));
    assert!(license_allowed("MIT/Apache-2.0"));
    assert!(license_allowed("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(license_allowed(
        "Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT"
    ));
    assert!(!license_allowed("GPL-3.0"));
    assert!(!license_allowed("MIT AND GPL-3.0"));
    assert!(license_allowed("GPL-3.0 OR MIT"));
    assert!(!license_allowed("(MIT OR Apache-2.0) AND AGPL-3.0"));
}
