//! The architecture, checked: docs/architecture.md states its invariants as absences, and this
//! module looks for each absence in the source tree, the way rust-analyzer's "tidy" tests do.
//! When one fails, either the code broke a rule (mend the code) or the rule changed on purpose
//! (change the table here and the invariant in docs/architecture.md in the same commit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which workspace crates each crate may depend on (normal dependencies; tests may use more).
/// A crate missing from this table fails the test: a new crate is placed on the map on purpose.
const ALLOWED_DEPENDENCIES: &[(&str, &[&str])] = &[
    // The ledger's rules: nothing of ours below it.
    ("payledger-domain", &[]),
    // Leaves with one job each.
    ("payledger-metrics", &[]),
    ("payledger-pgcluster", &[]),
    ("payledger-webhooks", &[]),
    ("payledger-sandbox", &[]),
    // The event store knows events as rows, not the domain's types.
    ("payledger-store", &[]),
    (
        "payledger-testdb",
        &["payledger-pgcluster", "payledger-store"],
    ),
    // The provider seam: the trait and its adapters speak the domain's money and failures.
    ("payledger-gateway", &["payledger-domain"]),
    // One connector per provider, each behind the seam and knowing nothing of the others.
    (
        "payledger-connector-toss",
        &["payledger-domain", "payledger-gateway"],
    ),
    (
        "payledger-connector-stripe",
        &["payledger-domain", "payledger-gateway"],
    ),
    (
        "payledger-connector-paddle",
        &["payledger-domain", "payledger-gateway"],
    ),
    // The projector runtime follows the log; it knows no read model and no aggregate.
    ("payledger-projector", &["payledger-store"]),
    (
        "payledger-read-models",
        &["payledger-domain", "payledger-projector", "payledger-store"],
    ),
    // The application layer: no HTTP, no read model (process managers use the projector's
    // follower runtime, not its read models).
    (
        "payledger-app",
        &[
            "payledger-domain",
            "payledger-gateway",
            "payledger-projector",
            "payledger-store",
        ],
    ),
    (
        "payledger-webhook-relay",
        &[
            "payledger-app",
            "payledger-connector-paddle",
            "payledger-domain",
            "payledger-gateway",
            "payledger-metrics",
            "payledger-projector",
            "payledger-store",
            "payledger-webhooks",
        ],
    ),
    (
        "payledger-bench",
        &[
            "payledger-domain",
            "payledger-projector",
            "payledger-read-models",
            "payledger-store",
        ],
    ),
    // The HTTP surface sits on everything it serves, and nothing sits on it but the binary.
    (
        "payledger-http",
        &[
            "payledger-app",
            "payledger-domain",
            "payledger-gateway",
            "payledger-metrics",
            "payledger-projector",
            "payledger-read-models",
            "payledger-store",
            "payledger-webhook-relay",
            "payledger-webhooks",
        ],
    ),
    // The console renders pages over the API's own handlers and the app layer; it owns no SQL.
    (
        "payledger-console",
        &[
            "payledger-app",
            "payledger-domain",
            "payledger-http",
            "payledger-metrics",
            "payledger-projector",
            "payledger-read-models",
            "payledger-store",
            "payledger-webhook-relay",
        ],
    ),
    // The one binary composes the rest.
    (
        "payledger",
        &[
            "payledger-app",
            "payledger-bench",
            "payledger-connector-paddle",
            "payledger-connector-stripe",
            "payledger-connector-toss",
            "payledger-console",
            "payledger-domain",
            "payledger-gateway",
            "payledger-http",
            "payledger-metrics",
            "payledger-pgcluster",
            "payledger-projector",
            "payledger-read-models",
            "payledger-sandbox",
            "payledger-store",
            "payledger-webhook-relay",
            "payledger-webhooks",
        ],
    ),
];

/// Files that may read the wall clock, and why. Everything else asks the injected `Clock`, so a
/// test clock moves every rule that depends on time.
const WALL_CLOCK_READERS: &[(&str, &str)] = &[
    ("crates/payledger-app/src/clock.rs", "it is the clock"),
    (
        "crates/payledger-projector/src/lib.rs",
        "projection lag is how far behind the wall clock a read model is, not business time",
    ),
    (
        "crates/payledger-sandbox/",
        "the sandbox imitates an outside provider, which has its own clock",
    ),
];

/// Crates whose sources may hold SQL against the read models' schema `rm`.
const READ_MODEL_SQL: &[&str] = &["crates/payledger-read-models/"];

/// Crates whose sources may hold SQL against `events`.
const EVENT_SQL: &[&str] = &["crates/payledger-store/"];

/// Where stream-name prefixes may be spelled out.
const STREAM_PREFIX_OWNERS: &[&str] = &["crates/payledger-domain/src/"];

/// Where a provider's wire types (the JSON it sends and takes) may be named.
const PROVIDER_WIRE_OWNERS: &[&str] = &[
    "crates/payledger-connector-",
    "crates/payledger-gateway/",
    "crates/payledger-sandbox/",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("crates"))
        .expect("read crates/")
        .map(|entry| entry.expect("read a crates/ entry").path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The `payledger*` names in a manifest's `[dependencies]` table.
fn internal_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut in_dependencies = false;
    let mut found = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if !in_dependencies {
            continue;
        }
        let name = line.split(['.', '=', ' ']).next().unwrap_or_default();
        if name.starts_with("payledger") {
            found.insert(name.to_string());
        }
    }
    found
}

/// Every `.rs` file under `src/` of every crate, with its path relative to the workspace root
/// and its text up to the first `#[cfg(test)]` (unit tests may build whatever they need).
fn production_sources() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut sources = Vec::new();
    for dir in crate_dirs() {
        let mut pending = vec![dir.join("src")];
        while let Some(path) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("read a source entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read a source file");
                    let production = match text.find("#[cfg(test)]") {
                        Some(at) => text[..at].to_string(),
                        None => text,
                    };
                    let relative = path
                        .strip_prefix(&root)
                        .expect("under the root")
                        .to_string_lossy()
                        .replace('\\', "/");
                    sources.push((relative, production));
                }
            }
        }
    }
    sources.sort();
    sources
}

/// `path:line: text` for each line of a file outside `allowed` that `matches`.
fn offenders(allowed: &[&str], matches: impl Fn(&str) -> bool) -> Vec<String> {
    production_sources()
        .into_iter()
        .filter(|(path, _)| !allowed.iter().any(|a| path.starts_with(a)))
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, line)| {
                    let code = line.trim_start();
                    !code.starts_with("//") && matches(line)
                })
                .map(|(n, line)| format!("{path}:{}: {}", n + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_crate_depends_only_on_the_crates_its_layer_allows() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED_DEPENDENCIES
        .iter()
        .map(|(name, deps)| (*name, deps.iter().copied().collect()))
        .collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in crate_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read a manifest");
        let Some(allowed_here) = allowed.get(name.as_str()) else {
            problems.push(format!(
                "{name} is not in ALLOWED_DEPENDENCIES: put it on the map"
            ));
            continue;
        };
        seen.insert(name.clone());
        for dependency in internal_dependencies(&manifest) {
            if !allowed_here.contains(dependency.as_str()) {
                problems.push(format!(
                    "{name} depends on {dependency}, which its layer forbids"
                ));
            }
        }
    }
    for name in allowed.keys() {
        if !seen.contains(*name) {
            problems.push(format!(
                "ALLOWED_DEPENDENCIES names {name}, which does not exist"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_domain_crate_does_no_io() {
    let manifest =
        std::fs::read_to_string(workspace_root().join("crates/payledger-domain/Cargo.toml"))
            .expect("read the domain manifest");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_default();
    for io in ["sqlx", "actix", "reqwest", "tokio", "hyper", "tracing"] {
        assert!(
            !dependencies.lines().any(|l| l.trim_start().starts_with(io)),
            "payledger-domain depends on {io}"
        );
    }
}

#[test]
fn the_codemap_names_every_crate() {
    let map = std::fs::read_to_string(workspace_root().join("docs/architecture.md"))
        .expect("read docs/architecture.md");
    let missing: Vec<String> = crate_dirs()
        .into_iter()
        .map(|dir| dir.file_name().unwrap().to_string_lossy().to_string())
        .filter(|name| !map.contains(&format!("`crates/{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md's codemap has no entry `crates/NAME` for: {missing:?}"
    );
}

#[test]
fn every_crate_says_what_it_is_for() {
    let undocumented: Vec<String> = crate_dirs()
        .into_iter()
        .filter(|dir| {
            let root = ["src/lib.rs", "src/main.rs"]
                .iter()
                .map(|f| dir.join(f))
                .find(|f| f.is_file())
                .expect("a crate root");
            !std::fs::read_to_string(root)
                .expect("read a crate root")
                .starts_with("//!")
        })
        .map(|dir| dir.display().to_string())
        .collect();
    assert!(undocumented.is_empty(), "no crate doc: {undocumented:?}");
}

#[test]
fn only_the_clock_reads_the_wall_clock() {
    let allowed: Vec<&str> = WALL_CLOCK_READERS.iter().map(|(path, _)| *path).collect();
    let found = offenders(&allowed, |line| {
        line.contains("Utc::now()") || line.contains("Local::now()")
    });
    assert!(
        found.is_empty(),
        "read time from the injected Clock instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_read_models_query_their_tables() {
    let found = offenders(READ_MODEL_SQL, |line| {
        line.match_indices("rm.").any(|(at, _)| {
            let before = line[..at].chars().next_back();
            let after = line[at + 3..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                && after.is_some_and(|c| c.is_ascii_lowercase())
        })
    });
    assert!(
        found.is_empty(),
        "SQL against `rm.` belongs in payledger-read-models:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_store_writes_sql_against_events() {
    let found = offenders(EVENT_SQL, |line| {
        let upper = line.to_ascii_uppercase();
        [
            "FROM EVENTS",
            "INTO EVENTS",
            "UPDATE EVENTS",
            "JOIN EVENTS",
            "TABLE EVENTS",
        ]
        .iter()
        .any(|sql| {
            upper.match_indices(sql).any(|(at, _)| {
                let after = upper[at + sql.len()..].chars().next();
                !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
    });
    assert!(
        found.is_empty(),
        "only payledger-store touches `events`:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_domain_spells_stream_names() {
    let prefixes = [
        "order",
        "customer",
        "subscription",
        "wallet",
        "claim",
        "booking",
        "slot",
        "payee",
        "settlement",
        "webhook",
        "provider-tx",
        "reminders",
    ];
    let found = offenders(STREAM_PREFIX_OWNERS, |line| {
        prefixes.iter().any(|prefix| {
            line.contains(&format!("\"{prefix}-\"")) || line.contains(&format!("\"{prefix}-{{"))
        })
    });
    assert!(
        found.is_empty(),
        "build and parse stream names with payledger_domain::streams::StreamKind:\n{}",
        found.join("\n")
    );
}

#[test]
fn provider_wire_types_stay_in_their_connector() {
    let found = offenders(PROVIDER_WIRE_OWNERS, |line| {
        line.contains("wire::") || line.contains("mod wire")
    });
    assert!(
        found.is_empty(),
        "a provider's wire types are its connector's own:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_test_is_skipped_silently() {
    let root = workspace_root();
    let mut found = Vec::new();
    let mut pending = vec![root.join("crates"), root.join("tests")];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("read a directory") {
            let path = entry.expect("read an entry").path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path != root.join("tests/it/architecture.rs")
            {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                if text.contains("#[ignore") {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "gate slow tests by an environment variable, never #[ignore]: {found:?}"
    );
}

/// The modules of `crate_dir` (a file or folder under `src/`, the crate root left out) and the
/// other modules each names through `crate::`, outside comments and unit tests.
fn module_uses(crate_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = crate_dir.join("src");
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(path) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read a source entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let module = relative
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .unwrap_or_default();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let production = text.split("#[cfg(test)]").next().unwrap_or_default();
            let named = uses.entry(module.clone()).or_default();
            for line in production.lines() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for (at, _) in line.match_indices("crate::") {
                    let used: String = line[at + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !used.is_empty() && used != module {
                        named.insert(used);
                    }
                }
            }
        }
    }
    uses
}

/// Modules that, like a crate root, put the others together: they may name the modules that
/// use them. `(crate, module, why)`.
const COMPOSITION_ROOTS: &[(&str, &str, &str)] = &[(
    "payledger-http",
    "state",
    "AppState bundles the services of the modules (auth's AccessControl, idempotency's store, \
     the booking services) and every handler reads it; it was the crate root's until it moved \
     out so that no module imports from lib.rs",
)];

#[test]
fn no_two_modules_of_a_crate_use_each_other() {
    let mut circles = Vec::new();
    for dir in crate_dirs() {
        let crate_name = dir.file_name().unwrap().to_string_lossy().to_string();
        let is_root = |module: &str| {
            COMPOSITION_ROOTS
                .iter()
                .any(|(c, m, _)| *c == crate_name && *m == module)
        };
        let uses = module_uses(&dir);
        for (module, used) in &uses {
            for other in used {
                let back = uses.get(other).is_some_and(|u| u.contains(module));
                if back && module < other && !is_root(module) && !is_root(other) {
                    circles.push(format!(
                        "{}: {module} <-> {other}",
                        dir.file_name().unwrap().to_string_lossy()
                    ));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "move what both need into a module below them:\n{}",
        circles.join("\n")
    );
}

/// The modules a crate root declares (`mod name;`, `pub mod name;`, `pub(crate) mod name;`).
fn declared_modules(root_text: &str) -> BTreeSet<String> {
    root_text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(|name| name.trim().to_string())
        })
        .collect()
}

/// The names a submodule takes through `crate::` that are not modules of the crate root: items
/// of `lib.rs` itself. `crate::x::…` and `crate::{x, y::…}` name modules when `x` and `y` are
/// modules; a `crate::name!` macro must live in the root and is allowed; `$crate::` is a macro's.
fn crate_root_items_used(text: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            if line[..at].ends_with('$') || line[..at].chars().last().is_some_and(is_name) {
                continue;
            }
            let rest = &line[at + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                // Only the group's first level: `crate::{a, b::{c, d}}` names `a` and `b`.
                let mut depth = 0;
                let mut level: Vec<&str> = Vec::new();
                let mut start = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            level.push(&group[start..i]);
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            level.push(&group[start..i]);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                level
            } else {
                vec![rest]
            };
            for name in names {
                let name = name.trim();
                let ident: String = name.chars().take_while(|c| is_name(*c)).collect();
                let after = name[ident.len()..].trim_start();
                if ident.is_empty() || after.starts_with('!') || ident == "self" {
                    continue;
                }
                if !modules.contains(&ident) {
                    found.push(ident);
                }
            }
        }
    }
    found
}

/// Crates whose modules take nothing from the crate root (it only declares, re-exports and
/// wires them). The HTTP crate's root kept `AppState` and `request_context` until issue 13.
const ROOT_ONLY_WIRES: &[&str] = &["payledger-http"];

#[test]
fn modules_do_not_import_from_their_crate_root() {
    let mut found = Vec::new();
    for dir in crate_dirs() {
        let crate_name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !ROOT_ONLY_WIRES.contains(&crate_name.as_str()) {
            continue;
        }
        let src = dir.join("src");
        let root_text = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
        let modules = declared_modules(&root_text);
        let mut pending = vec![src.clone()];
        while let Some(path) = pending.pop() {
            for entry in std::fs::read_dir(&path).expect("read a source folder") {
                let path = entry.expect("read a source entry").path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path == src.join("lib.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read a source file");
                let production = text.split("#[cfg(test)]").next().unwrap_or_default();
                for item in crate_root_items_used(production, &modules) {
                    found.push(format!(
                        "{}: crate::{item}",
                        path.strip_prefix(workspace_root()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "move what modules need out of lib.rs into a module of its own (lib.rs may re-export it):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_crate_root_check_sees_root_items_and_passes_modules() {
    let modules: BTreeSet<String> = ["auth", "state"].iter().map(|m| m.to_string()).collect();
    let text = "use crate::{auth, request_context, AppState};\n\
                use crate::state::AppState;\n\
                use crate::{auth::{self, Role}, state};\n\
                let x = crate::configure;\n\
                crate::identifier!(X);\n\
                $crate::ids::parse();\n\
                // use crate::AppState;\n";
    assert_eq!(
        crate_root_items_used(text, &modules),
        vec!["request_context", "AppState", "configure"]
    );
}

/// Files that may read the process environment, and why. Everything else takes its settings
/// from `crates/payledger/src/settings.rs` (the binary) or as arguments (libraries).
const ENVIRONMENT_READERS: &[(&str, &str)] = &[
    (
        "crates/payledger/src/settings.rs",
        "the one table of settings",
    ),
    (
        "crates/payledger/src/keys.rs",
        "the operator's login name, recorded as who created a key",
    ),
    (
        "crates/payledger/src/webhook_jobs.rs",
        "the operator's login name, recorded as who replayed a dead letter",
    ),
    (
        "crates/payledger-testdb/",
        "tests may point at their own PostgreSQL (PAYLEDGER_TEST_DATABASE_URL)",
    ),
];

/// `PAYLEDGER_*`-shaped strings that are not settings: names written into `api-keys.txt`,
/// provider failure codes payledger gives its own refusals, the tests' own database URL.
const NOT_SETTINGS: &[&str] = &[
    "PAYLEDGER_ADMIN_KEY",
    "PAYLEDGER_CLIENT_KEY",
    "PAYLEDGER_INVALID_ORDER_ID",
    "PAYLEDGER_INVALID_PAYMENT_KEY",
    "PAYLEDGER_PAYMENT_INTENT_MISMATCH",
    "PAYLEDGER_UNSUPPORTED_CURRENCY",
    "PAYLEDGER_UNSUPPORTED_OPERATION",
    "PAYLEDGER_TEST_DATABASE_URL",
];

/// The names in `settings::SETTINGS`, read from its source.
fn setting_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root().join("crates/payledger/src/settings.rs"))
        .expect("read settings.rs");
    let mut names = BTreeSet::new();
    for opener in ["setting(", "secret("] {
        for (at, _) in text.match_indices(opener) {
            let rest = text[at + opener.len()..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn only_the_settings_module_reads_the_environment() {
    let allowed: Vec<&str> = ENVIRONMENT_READERS.iter().map(|(path, _)| *path).collect();
    let found = offenders(&allowed, |line| line.contains("env::var("));
    assert!(
        found.is_empty(),
        "read settings through payledger::settings (or take them as an argument):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_setting_is_in_the_table_and_documented() {
    let names = setting_names();
    assert!(
        names.len() > 40,
        "settings.rs lists {} settings",
        names.len()
    );
    let mut unknown = BTreeSet::new();
    for (_, text) in production_sources() {
        for (at, _) in text.match_indices('"') {
            let literal: String = text[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let closed = text[at + 1 + literal.len()..].starts_with('"');
            let shaped = ["PAYLEDGER_", "TOSS_", "STRIPE_"]
                .iter()
                .any(|prefix| literal.starts_with(prefix))
                || literal == "DATABASE_URL";
            if closed
                && shaped
                && !names.contains(&literal)
                && !NOT_SETTINGS.contains(&literal.as_str())
            {
                unknown.insert(literal);
            }
        }
    }
    assert!(unknown.is_empty(), "not in settings::SETTINGS: {unknown:?}");
    let operations = std::fs::read_to_string(workspace_root().join("docs/operations.md"))
        .expect("read docs/operations.md");
    let undocumented: Vec<&String> = names
        .iter()
        .filter(|name| !operations.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/operations.md names no `{undocumented:?}`"
    );
}
