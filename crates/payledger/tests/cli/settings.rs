//! `payledger config show` and the settings file: defaults < file < environment, secrets never
//! printed, typos and readable files refused.

use super::BIN;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn settings_file(dir: &std::path::Path, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join("payledger.env");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn config_show(file: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .arg("--settings")
        .arg(file)
        .args(["config", "show"])
        .env_remove("PAYLEDGER_LISTEN")
        .env_remove("TOSS_SECRET_KEY")
        .env_remove("PAYLEDGER_PLATFORM_FEE_BPS");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn config_show_tells_each_settings_value_and_source_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "test_sk_settings_file_only_7f3a";
    let file = settings_file(
        dir.path(),
        &format!(
            "# staging\nPAYLEDGER_LISTEN=0.0.0.0:9911\nTOSS_SECRET_KEY=\"{secret}\"\n\
             PAYLEDGER_PLATFORM_FEE_BPS=250\n"
        ),
        0o600,
    );
    // The environment wins over the file; the file over the defaults.
    let shown = config_show(&file, &[("PAYLEDGER_PLATFORM_FEE_BPS", "300")]);
    assert!(shown.status.success(), "{shown:?}");
    let out = String::from_utf8(shown.stdout).unwrap();
    assert_eq!(
        row(&out, "PAYLEDGER_LISTEN"),
        ["PAYLEDGER_LISTEN", "file", "0.0.0.0:9911"]
    );
    assert_eq!(
        row(&out, "PAYLEDGER_PLATFORM_FEE_BPS"),
        ["PAYLEDGER_PLATFORM_FEE_BPS", "environment", "300"]
    );
    assert_eq!(
        row(&out, "TOSS_SECRET_KEY"),
        ["TOSS_SECRET_KEY", "file", "***"]
    );
    assert_eq!(
        row(&out, "PAYLEDGER_CONSOLE_TIME_ZONE"),
        ["PAYLEDGER_CONSOLE_TIME_ZONE", "default", "Asia/Seoul"]
    );
    assert!(!out.contains(secret), "a secret was printed:\n{out}");
}

#[test]
fn a_settings_file_with_a_typo_or_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let typo = settings_file(dir.path(), "PAYLEDGER_LISTNE=0.0.0.0:1\n", 0o600);
    let refused = config_show(&typo, &[]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("line 1: PAYLEDGER_LISTNE is not a payledger setting"),
        "{message}"
    );
    let open = settings_file(dir.path(), "PAYLEDGER_LISTEN=0.0.0.0:1\n", 0o644);
    let refused = config_show(&open, &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("chmod 600"),
        "{refused:?}"
    );
}
