//! Repository checks that run with the tests (and so in CI): no card-number-shaped and no
//! live-key-shaped strings in any tracked file.
//!
//! Card numbers use the screen's own rule (`payledger_domain::card_numbers`); the published test
//! cards live in that one file, the only place allowed to hold them. Live keys are the shapes of
//! Toss (`live_sk_…`, `live_gsk_…`, `live_ck_…`, `live_gck_…`) and Stripe (`sk_live_…`,
//! `rk_live_…`) secret and client keys followed by a key-length run of characters.

use payledger_domain::card_numbers::contains_card_number;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The one file allowed to hold (published, test) card numbers.
const CARD_NUMBERS_ALLOWED_IN: &str = "crates/payledger-domain/src/card_numbers.rs";
/// Files larger than this are not source (none are tracked today).
const MAX_SCANNED_BYTES: u64 = 4 * 1024 * 1024;
/// A live key's tail: this many key characters after the prefix.
const MIN_KEY_TAIL_CHARS: usize = 16;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tracked_files() -> Vec<String> {
    let output = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(repository_root())
        .output()
        .expect("run git ls-files (the checks need the git work tree)");
    assert!(output.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn text_of(file: &str) -> Option<String> {
    let path = repository_root().join(file);
    let metadata = std::fs::metadata(&path).ok()?;
    if !metadata.is_file() || metadata.len() > MAX_SCANNED_BYTES {
        return None;
    }
    String::from_utf8(std::fs::read(&path).ok()?).ok()
}

/// The prefixes, assembled so this file does not match itself.
fn live_key_prefixes() -> Vec<String> {
    let live = "live";
    vec![
        format!("{live}_sk_"),
        format!("{live}_gsk_"),
        format!("{live}_ck_"),
        format!("{live}_gck_"),
        format!("sk_{live}_"),
        format!("rk_{live}_"),
    ]
}

fn holds_live_key(line: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|prefix| {
        line.match_indices(prefix.as_str()).any(|(at, _)| {
            line[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count()
                >= MIN_KEY_TAIL_CHARS
        })
    })
}

#[test]
fn no_tracked_file_holds_a_card_number_or_a_live_key() {
    let prefixes = live_key_prefixes();
    let files = tracked_files();
    assert!(files.len() > 50, "only {} files listed", files.len());
    let mut findings = Vec::new();
    for file in &files {
        let Some(text) = text_of(file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if file != CARD_NUMBERS_ALLOWED_IN && contains_card_number(line) {
                findings.push(format!("{file}:{}: a card number", number + 1));
            }
            if holds_live_key(line, &prefixes) {
                findings.push(format!("{file}:{}: a live API key", number + 1));
            }
        }
    }
    assert!(
        findings.is_empty(),
        "move test card numbers to {CARD_NUMBERS_ALLOWED_IN} (test_cards) and remove keys:\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_checks_find_what_they_look_for() {
    let prefixes = live_key_prefixes();
    let key = format!("{}{}", prefixes[0], "a1B2c3D4e5F6g7H8i9");
    assert!(holds_live_key(&format!("TOSS_SECRET_KEY={key}"), &prefixes));
    assert!(!holds_live_key(&format!("{}…", prefixes[0]), &prefixes));
    assert!(!holds_live_key(
        "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R",
        &prefixes
    ));
    let card = payledger_domain::card_numbers::test_cards::VISA_SPACED;
    assert!(contains_card_number(&format!("\"authKey\": \"{card}\"")));
}
