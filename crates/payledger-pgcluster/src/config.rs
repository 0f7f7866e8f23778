//! The server settings payledger owns, written to `payledger.conf` inside the cluster on every
//! start and included from the end of `postgresql.conf`, so that a change in code or in
//! [`crate::ClusterOptions::settings`] takes effect at the next start without editing the
//! distribution's file. `ALTER SYSTEM` (postgresql.auto.conf) is read later and still wins.

use crate::error::ClusterError;

/// File name inside the cluster directory.
pub(crate) const FILE_NAME: &str = "payledger.conf";

/// Appended once to `postgresql.conf` right after `initdb`.
pub(crate) const INCLUDE_LINE: &str =
    "\n# Settings managed by payledger; rewritten on every start.\ninclude 'payledger.conf'\n";

/// Settings payledger's own connection depends on; they have dedicated options or none at all.
const RESERVED: [(&str, &str); 6] = [
    ("port", "use ClusterOptions::port"),
    (
        "listen_addresses",
        "payledger connects over 127.0.0.1 and exposes the cluster nowhere else",
    ),
    (
        "unix_socket_directories",
        "socket paths have a 107-byte limit that deep data directories exceed",
    ),
    ("include", "only settings are accepted"),
    ("include_if_exists", "only settings are accepted"),
    ("include_dir", "only settings are accepted"),
];

/// Longest value accepted; postgresql.conf values are short, and a limit keeps a mistake small.
const MAX_VALUE_BYTES: usize = 1024;

/// Checks the extra settings without writing anything, so that a bad one is refused before any
/// cluster is touched.
pub(crate) fn validate(settings: &[(String, String)]) -> Result<(), ClusterError> {
    for (name, value) in settings {
        validate_one(name, value)?;
    }
    Ok(())
}

fn validate_one(name: &str, value: &str) -> Result<(), ClusterError> {
    let refuse = |reason| ClusterError::InvalidSetting {
        name: name.to_owned(),
        reason,
    };
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(refuse("a setting name is letters, digits, `_` and `.`"));
    }
    let lowercase = name.to_ascii_lowercase();
    if let Some((_, reason)) = RESERVED.iter().find(|(reserved, _)| *reserved == lowercase) {
        return Err(refuse(reason));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(refuse("the value is longer than 1024 bytes"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(refuse(
            "the value contains a line break or another control character",
        ));
    }
    Ok(())
}

/// The full contents of `payledger.conf`. Later lines win in postgresql.conf, so the extra
/// settings override payledger's defaults; durability settings are stated explicitly because the
/// ledger's guarantees depend on them.
pub(crate) fn render(port: u16, extra: &[(String, String)]) -> Result<String, ClusterError> {
    validate(extra)?;
    let mut text = String::from(
        "# Written by payledger on every start of this cluster: edits here are lost.\n\
         # Add settings through ClusterOptions::settings, or ALTER SYSTEM for this cluster only.\n",
    );
    let defaults: [(&str, String); 13] = [
        ("listen_addresses", "127.0.0.1".to_owned()),
        ("port", port.to_string()),
        // TCP only: a socket path inside a deep data directory can exceed the 107-byte limit.
        ("unix_socket_directories", String::new()),
        ("max_connections", "200".to_owned()),
        ("shared_buffers", "256MB".to_owned()),
        // A forgotten open transaction holds back every reader of the global event order.
        ("idle_in_transaction_session_timeout", "60s".to_owned()),
        ("fsync", "on".to_owned()),
        ("synchronous_commit", "on".to_owned()),
        ("full_page_writes", "on".to_owned()),
        // A client that vanished without closing its connection (a network partition, a frozen
        // host) is found within seconds instead of the operating system's two hours, so its
        // session's advisory locks (one runner per projection) go to another node. payledger's
        // own connections ask for the same in their startup options; these cover every other
        // client (psql, a standby's replication connection). docs/operations.md.
        ("tcp_keepalives_idle", "5".to_owned()),
        ("tcp_keepalives_interval", "1".to_owned()),
        ("tcp_keepalives_count", "5".to_owned()),
        ("tcp_user_timeout", "10000".to_owned()),
    ];
    for (name, value) in defaults.iter().map(|(name, value)| (*name, value.as_str())) {
        push_setting(&mut text, name, value);
    }
    if !extra.is_empty() {
        text.push_str("# From ClusterOptions::settings.\n");
    }
    for (name, value) in extra {
        push_setting(&mut text, name, value);
    }
    Ok(text)
}

fn push_setting(text: &mut String, name: &str, value: &str) {
    // Quoted values are accepted for every parameter type; inside quotes postgresql.conf treats
    // backslash as an escape and doubles single quotes.
    let quoted = value.replace('\\', "\\\\").replace('\'', "''");
    text.push_str(&format!("{name} = '{quoted}'\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, value: &str) -> Vec<(String, String)> {
        vec![(name.to_owned(), value.to_owned())]
    }

    #[test]
    fn extra_settings_come_after_the_defaults_so_they_override_them() {
        let text = render(54321, &setting("max_connections", "50")).expect("renders");
        let default_at = text
            .find("max_connections = '200'")
            .expect("default present");
        let extra_at = text.find("max_connections = '50'").expect("extra present");
        assert!(extra_at > default_at, "{text}");
        assert!(text.contains("port = '54321'\n"), "{text}");
        assert!(text.contains("fsync = 'on'\n"), "{text}");
    }

    #[test]
    fn quotes_and_backslashes_in_values_are_escaped() {
        let text = render(5432, &setting("application_name", r"it's a\b")).expect("renders");
        assert!(text.contains(r"application_name = 'it''s a\\b'"), "{text}");
    }

    #[test]
    fn settings_payledger_depends_on_are_refused() {
        for name in [
            "port",
            "LISTEN_ADDRESSES",
            "unix_socket_directories",
            "include",
        ] {
            let refused = validate(&setting(name, "x"));
            assert!(
                matches!(refused, Err(ClusterError::InvalidSetting { .. })),
                "{name}"
            );
        }
    }

    #[test]
    fn a_value_cannot_smuggle_in_another_line() {
        let refused = validate(&setting("work_mem", "4MB'\nfsync = 'off"));
        assert!(matches!(refused, Err(ClusterError::InvalidSetting { .. })));
    }

    #[test]
    fn names_outside_the_setting_alphabet_are_refused() {
        for name in ["", "1abc", "work mem", "a=b"] {
            assert!(validate(&setting(name, "1")).is_err(), "{name:?}");
        }
        assert!(validate(&setting("auto_explain.log_min_duration", "1s")).is_ok());
    }
}
