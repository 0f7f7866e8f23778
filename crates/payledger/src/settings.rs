//! Every setting of payledger in one table, and where each value comes from.
//!
//! Precedence: the built-in default < a settings file < the environment. The file
//! (`--settings FILE` or `PAYLEDGER_SETTINGS_FILE`) holds `NAME=value` lines with the same names
//! as the environment, so a deployment can move a setting between the two without renaming it.
//! It is read once at start, before any thread exists, and fills only what the environment leaves
//! unset (into the process environment, so the flags clap reads from it agree); a name the table
//! does not know is refused, so a typo cannot silently fall back to a default. Each module then reads its settings through [`var`] / [`get`] and validates them
//! into its own typed settings at start (a bad value stops `serve` with the variable's name).
//! Libraries never read the environment: they take a lookup (`&dyn Fn(&str) -> Option<String>`)
//! from here. `payledger config show` prints the effective settings, secrets redacted.

use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

/// One setting: its name (in the environment and in a settings file), the default that applies
/// when neither sets it, whether its value is a secret, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub secret: bool,
    pub what: &'static str,
}

const fn setting(name: &'static str, default: &'static str, what: &'static str) -> Setting {
    Setting {
        name,
        default,
        secret: false,
        what,
    }
}

const fn secret(name: &'static str, what: &'static str) -> Setting {
    Setting {
        name,
        default: "unset",
        secret: true,
        what,
    }
}

/// Where the settings file is named when `--settings` is not given.
pub const SETTINGS_FILE_VARIABLE: &str = "PAYLEDGER_SETTINGS_FILE";

/// Longest settings file read; a settings file is a few kilobytes.
const MAX_SETTINGS_FILE_BYTES: u64 = 256 * 1024;

/// THE table of settings. `docs/operations.md` lists every one (a test checks it).
pub const SETTINGS: &[Setting] = &[
    // Where payledger runs.
    setting(
        "PAYLEDGER_SETTINGS_FILE",
        "unset",
        "a settings file of NAME=value lines, below the environment",
    ),
    secret(
        "DATABASE_URL",
        "the database (unset: payledger's own cluster in the data directory)",
    ),
    secret(
        "PAYLEDGER_MIGRATE_DATABASE_URL",
        "the schema owner's URL for migrations (default DATABASE_URL)",
    ),
    setting(
        "PAYLEDGER_DATA_DIR",
        ".payledger",
        "the managed cluster, its password and the first API keys",
    ),
    setting("PAYLEDGER_LISTEN", "127.0.0.1:8080", "where serve listens"),
    setting(
        "PAYLEDGER_TEST_CLOCK",
        "false",
        "true: serve on the scenario clock (refused with live keys)",
    ),
    // Providers.
    secret(
        "TOSS_SECRET_KEY",
        "Toss Payments' secret key (unset: the sandbox)",
    ),
    setting(
        "TOSS_API_BASE",
        "https://api.tosspayments.com",
        "Toss's base URL",
    ),
    secret(
        "STRIPE_SECRET_KEY",
        "Stripe's secret key (unset: the sandbox's /stripe)",
    ),
    setting(
        "STRIPE_API_BASE",
        "https://api.stripe.com",
        "Stripe's base URL",
    ),
    setting(
        "PAYLEDGER_SANDBOX_URL",
        "unset",
        "a sandbox already running (unset: serve starts one)",
    ),
    // Webhooks in and out.
    secret(
        "PAYLEDGER_WEBHOOK_SECRET_TOSS",
        "Toss's payout/seller webhook security key",
    ),
    secret(
        "PAYLEDGER_WEBHOOK_SECRET_TOSS_PREVIOUS",
        "the previous one, during a rotation",
    ),
    secret(
        "PAYLEDGER_WEBHOOK_SECRET_STRIPE",
        "Stripe's webhook signing secret",
    ),
    secret(
        "PAYLEDGER_WEBHOOK_SECRET_STRIPE_PREVIOUS",
        "the previous one, during a rotation",
    ),
    secret("PAYLEDGER_WEBHOOK_SECRET_PADDLE", "Paddle's webhook secret"),
    secret(
        "PAYLEDGER_WEBHOOK_SECRET_PADDLE_PREVIOUS",
        "the previous one, during a rotation",
    ),
    secret(
        "PAYLEDGER_WEBHOOK_SECRET_STANDARD",
        "the Standard Webhooks secret of inbound deliveries",
    ),
    secret(
        "PAYLEDGER_WEBHOOK_SECRET_STANDARD_PREVIOUS",
        "the previous one, during a rotation",
    ),
    setting(
        "PAYLEDGER_WEBHOOK_TOLERANCE_S",
        "300",
        "the signature timestamp window, seconds",
    ),
    setting(
        "PAYLEDGER_WEBHOOK_TOLERANCE_PADDLE_S",
        "5",
        "Paddle notification timestamp tolerance, seconds (Paddle's documented 5 s)",
    ),
    setting(
        "PAYLEDGER_WEBHOOK_UNSIGNED_PER_SOURCE_PER_MINUTE",
        "120",
        "unsigned Toss prompts per source per minute",
    ),
    setting(
        "PAYLEDGER_WEBHOOK_UNSIGNED_TOTAL_PER_MINUTE",
        "1200",
        "unsigned Toss prompts per minute in all",
    ),
    setting(
        "PAYLEDGER_WEBHOOK_ENDPOINTS",
        "unset",
        "outbound notification URLs (https, or http to loopback)",
    ),
    secret(
        "PAYLEDGER_OUTBOUND_WEBHOOK_SECRET",
        "the whsec_ key outbound notifications are signed with",
    ),
    secret(
        "PAYLEDGER_OUTBOUND_WEBHOOK_SECRET_PREVIOUS",
        "the previous one, during a rotation",
    ),
    setting(
        "PAYLEDGER_ALERT_WEBHOOK_URL",
        "unset",
        "where alerts are posted (off when unset)",
    ),
    secret(
        "PAYLEDGER_ALERT_WEBHOOK_SECRET",
        "the whsec_ key alerts are signed with",
    ),
    // Billing.
    setting(
        "PAYLEDGER_BILLING_INTERVAL_MS",
        "60000",
        "how often the billing scheduler runs (0: off)",
    ),
    setting(
        "PAYLEDGER_PLAN_CATALOGUE",
        "built in",
        "plans: id, amount, currency, interval, level",
    ),
    setting(
        "PAYLEDGER_PADDLE_PRICE_MAP",
        "empty",
        "Paddle price/product ids to plans and credit packs: pri_…=plan:basic,pri_…=credits:100",
    ),
    secret(
        "PADDLE_API_KEY",
        "Paddle Billing API key (pdl_live_apikey_… / pdl_sdbx_apikey_…)",
    ),
    setting(
        "PADDLE_API_BASE_URL",
        "https://api.paddle.com",
        "Paddle Billing API base (the sandbox's /paddle when no key is set)",
    ),
    setting(
        "PAYLEDGER_DUNNING_RETRY_DAYS",
        "3,7,14",
        "soft-decline retries after the first failure, days",
    ),
    setting(
        "PAYLEDGER_BILLING_KEY_GRACE_DAYS",
        "7",
        "grace after a billing key is lost, days",
    ),
    setting(
        "PAYLEDGER_PROVIDER_BACKOFF_MINUTES",
        "1,5,15,60,240,720",
        "retries after a provider error, minutes",
    ),
    secret(
        "PAYLEDGER_BILLING_KEY_SECRET",
        "the key billing keys are encrypted with at rest",
    ),
    secret(
        "PAYLEDGER_BILLING_KEY_SECRET_PREVIOUS",
        "the previous one, during a rotation",
    ),
    // Settlement.
    setting(
        "PAYLEDGER_SETTLEMENT_TIME_ZONE",
        "Asia/Seoul",
        "the zone settlement weeks are counted in",
    ),
    setting(
        "PAYLEDGER_PLATFORM_FEE_BPS",
        "1000",
        "the platform fee, basis points",
    ),
    setting(
        "PAYLEDGER_SETTLEMENT_CONFIRM_AT",
        "Mon 10:00",
        "when last week's statements are confirmed",
    ),
    setting(
        "PAYLEDGER_SETTLEMENT_PAYOUT_AT",
        "Wed 10:00",
        "when confirmed statements are paid out",
    ),
    // Reconciliation of the providers' settlements (issue 18).
    setting(
        "PAYLEDGER_RECONCILIATION_INTERVAL_S",
        "21600",
        "how often settlements are imported (0: off)",
    ),
    setting(
        "PAYLEDGER_RECONCILIATION_LOOKBACK_DAYS",
        "7",
        "each import takes the payouts of this many days",
    ),
    setting(
        "PAYLEDGER_FEE_SCHEDULE_TOSS",
        "rate_bps=320,vat_bps=1000,fixed_minor=0,refund_returns_fee=true,delay_days=2",
        "Toss's agreed fee and settlement delay",
    ),
    setting(
        "PAYLEDGER_FEE_SCHEDULE_STRIPE",
        "rate_bps=290,vat_bps=0,fixed_minor=30,refund_returns_fee=false,delay_days=2",
        "Stripe's agreed fee and payout delay",
    ),
    setting(
        "PAYLEDGER_FEE_SCHEDULE_PADDLE",
        "rate_bps=500,vat_bps=0,fixed_minor=50,refund_returns_fee=false,delay_days=2",
        "Paddle's agreed merchant-of-record fee and payout delay",
    ),
    // Audit and privacy.
    setting(
        "PAYLEDGER_CHECKPOINTS",
        "on",
        "off: serve seals no periodic checkpoints",
    ),
    setting(
        "PAYLEDGER_CHECKPOINT_EVERY_EVENTS",
        "10000",
        "seal after this many new events",
    ),
    setting(
        "PAYLEDGER_CHECKPOINT_EVERY_S",
        "60",
        "or after this many seconds with a new event",
    ),
    secret(
        "PAYLEDGER_AUDIT_SIGNING_KEY",
        "the checkpoint signing key (unset: a 0600 file)",
    ),
    setting(
        "PAYLEDGER_AUDIT_DIR",
        "the data directory",
        "where the signing key file and the checkpoint export live",
    ),
    setting(
        "PAYLEDGER_PRIVACY",
        "on",
        "off: personal fields are stored as sent",
    ),
    secret(
        "PAYLEDGER_PRIVACY_MASTER_KEY",
        "the key that wraps subject keys (unset: a 0600 file)",
    ),
    setting(
        "PAYLEDGER_PRIVACY_RETENTION_DAYS",
        "unset (off)",
        "erase customers whose orders are all closed this long",
    ),
    setting(
        "PAYLEDGER_PRIVACY_RETENTION_INTERVAL_S",
        "3600",
        "how often the retention job runs",
    ),
    setting(
        "PAYLEDGER_PRIVACY_KEY_CACHE_TTL_MS",
        "1000",
        "how long a process keeps an unwrapped subject key (0 to 2000; 0: no cache)",
    ),
    // The console.
    setting(
        "PAYLEDGER_CONSOLE_TIME_ZONE",
        "Asia/Seoul",
        "the zone the console shows times in",
    ),
    setting(
        "PAYLEDGER_CONSOLE_SESSION_TTL_S",
        "28800",
        "how long a console session lasts",
    ),
    setting(
        "PAYLEDGER_CONSOLE_SECURE_COOKIES",
        "false",
        "true: Secure cookies (behind TLS)",
    ),
    // Tools.
    secret("PAYLEDGER_API_KEY", "the API key payledger bench sends"),
    // Read replicas (docs/scaling.md).
    secret(
        "DATABASE_REPLICA_URL",
        "hot standby URLs, comma-separated, for reads (unset: the primary reads)",
    ),
    setting(
        "PAYLEDGER_REPLICA_MAX_LAG_MS",
        "1000",
        "a replica further behind answers no read",
    ),
    setting(
        "PAYLEDGER_REPLICA_WAIT_MS",
        "500",
        "how long a minPosition read waits on a replica before the primary answers",
    ),
    // Dead connections (docs/operations.md, "Dead connections and the runners' locks").
    setting(
        "PAYLEDGER_DATABASE_CALL_TIMEOUT_MS",
        "10000",
        "longest database call (writer, stream load, idempotency) and read request; then 503",
    ),
];

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Environment,
}

/// The names whose value the settings file supplied.
static FROM_FILE: OnceLock<BTreeSet<String>> = OnceLock::new();

/// The setting's entry in the table. Reading a name the table does not hold is a bug that the
/// tests catch (debug builds panic), so every setting a module reads is documented.
fn entry(name: &str) -> Option<&'static Setting> {
    let found = SETTINGS.iter().find(|s| s.name == name);
    debug_assert!(found.is_some(), "{name} is not in settings::SETTINGS");
    found
}

/// A setting as `std::env::var` answers it (the settings file has been folded in at start).
pub fn var(name: &str) -> Result<String, std::env::VarError> {
    let _ = entry(name);
    std::env::var(name)
}

/// A setting's value when it is set and not blank (the lookup libraries are handed).
pub fn get(name: &str) -> Option<String> {
    var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads the settings file named by `--settings FILE` in `args` or by `PAYLEDGER_SETTINGS_FILE`
/// and puts each of its values the environment does not set into the environment. Call it
/// first thing in `main`, before any thread is started: it changes the process environment.
pub fn load_before_threads(args: &[String]) -> anyhow::Result<()> {
    let named = settings_flag(args)
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os(SETTINGS_FILE_VARIABLE).map(Into::into));
    let mut applied = BTreeSet::new();
    if let Some(path) = named {
        for (name, value) in read_file(&path)? {
            let unset = std::env::var(&name).map_or(true, |v| v.is_empty());
            if unset {
                std::env::set_var(&name, value);
                applied.insert(name);
            }
        }
    }
    let _ = FROM_FILE.set(applied);
    Ok(())
}

/// The value of `--settings FILE` or `--settings=FILE`, when given.
fn settings_flag(args: &[String]) -> Option<&str> {
    args.iter().enumerate().find_map(|(i, arg)| {
        arg.strip_prefix("--settings=")
            .or_else(|| (arg == "--settings").then(|| args.get(i + 1).map(String::as_str))?)
    })
}

fn read_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    // Holds secrets: refuse one that other users can read, as ssh does with its keys.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("failed to read the settings file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the settings file {} may be read by other users (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let size = std::fs::metadata(path)
        .with_context(|| format!("failed to read the settings file {}", path.display()))?
        .len();
    if size > MAX_SETTINGS_FILE_BYTES {
        bail!(
            "the settings file {} is over {MAX_SETTINGS_FILE_BYTES} bytes",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the settings file {}", path.display()))?;
    parse(&text).with_context(|| format!("in the settings file {}", path.display()))
}

/// `NAME=value` lines; blank lines and `#` comments are skipped; a value may be quoted.
pub fn parse(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            bail!("line {}: expected NAME=value", number + 1);
        };
        let name = name.trim();
        if !SETTINGS.iter().any(|s| s.name == name) || name == SETTINGS_FILE_VARIABLE {
            bail!("line {}: {name} is not a payledger setting", number + 1);
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if values.insert(name.to_string(), value.to_string()).is_some() {
            bail!("line {}: {name} is set twice", number + 1);
        }
    }
    Ok(values)
}

/// Each setting, its effective value (secrets as `***`) and where the value came from.
pub fn effective() -> Vec<(&'static Setting, String, Source)> {
    SETTINGS
        .iter()
        .map(|setting| {
            let value = std::env::var(setting.name).ok().filter(|v| !v.is_empty());
            let from_file = FROM_FILE
                .get()
                .is_some_and(|names| names.contains(setting.name));
            let (value, source) = match value {
                Some(value) if from_file => (value, Source::File),
                Some(value) => (value, Source::Environment),
                None => (setting.default.to_string(), Source::Default),
            };
            let shown = if setting.secret && source != Source::Default {
                "***".to_string()
            } else {
                value
            };
            (setting, shown, source)
        })
        .collect()
}

/// `payledger config show`: the effective settings as a table.
pub fn show(out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "{:<50} {:<12} value", "setting", "from")?;
    for (setting, value, source) in effective() {
        let source = match source {
            Source::Default => "default",
            Source::File => "file",
            Source::Environment => "environment",
        };
        writeln!(out, "{:<50} {:<12} {value}", setting.name, source)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_takes_known_names_and_refuses_the_rest() {
        let values = parse(
            "# comment\nPAYLEDGER_LISTEN=0.0.0.0:9000\nexport PAYLEDGER_PLATFORM_FEE_BPS=\"250\"\n",
        )
        .unwrap();
        assert_eq!(values["PAYLEDGER_LISTEN"], "0.0.0.0:9000");
        assert_eq!(values["PAYLEDGER_PLATFORM_FEE_BPS"], "250");
        assert!(parse("PAYLEDGER_LISTNE=1").is_err(), "a typo is refused");
        assert!(parse("just text").is_err());
        assert!(parse("PAYLEDGER_LISTEN=1\nPAYLEDGER_LISTEN=2").is_err());
        assert!(
            parse("PAYLEDGER_SETTINGS_FILE=x").is_err(),
            "no file names another"
        );
    }

    #[test]
    fn the_settings_flag_is_found_in_either_form() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            settings_flag(&args(&["payledger", "--settings", "/etc/p.env", "serve"])),
            Some("/etc/p.env")
        );
        assert_eq!(
            settings_flag(&args(&["payledger", "--settings=/x"])),
            Some("/x")
        );
        assert_eq!(settings_flag(&args(&["payledger", "serve"])), None);
    }

    #[test]
    fn names_are_unique_and_secrets_never_show() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a setting is listed twice");
        for (setting, value, source) in effective() {
            if setting.secret && source != Source::Default {
                assert_eq!(value, "***");
            }
        }
    }
}
