//! `payledger keys` and `payledger switches`: the operator's side of keys and kill switches,
//! each change recorded in `audit-admin`.

use crate::{payledger, run, stdout};
use payledger_testdb::TestDatabase;
use serde_json::Value;

#[tokio::test]
async fn keys_and_switches_from_the_command_line_are_audited() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    let cli = |args: &[&str]| {
        run(payledger(dir.path(), Some(urls))
            .env("USER", "oncall")
            .args(args))
    };

    let created = cli(&["keys", "create", "--role", "admin", "--name", "alice"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = stdout(&created).lines().nth(1).unwrap().to_string();
    let listed = stdout(&cli(&["keys", "list"]));
    assert!(
        listed.contains("alice") && listed.contains("admin"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "keys list must never print a key");
    assert!(
        listed.contains(&key[..12]),
        "it shows the first characters: {listed}"
    );

    let other_role = cli(&["keys", "create", "--role", "client", "--name", "alice"]);
    assert!(!other_role.status.success(), "a name keeps one role");
    let bad_role = cli(&["keys", "create", "--role", "root", "--name", "bob"]);
    assert!(!bad_role.status.success());

    let revoked = cli(&["keys", "revoke", "alice"]);
    assert!(revoked.status.success());
    assert!(stdout(&revoked).contains("revoked key_"));
    assert!(
        !cli(&["keys", "revoke", "alice"]).status.success(),
        "nothing left to revoke"
    );

    let suspended = cli(&[
        "switches",
        "suspend-payee",
        "studio_x",
        "--reason",
        "price bug",
    ]);
    assert!(
        suspended.status.success(),
        "{}",
        String::from_utf8_lossy(&suspended.stderr)
    );
    assert!(stdout(&cli(&["switches", "status"])).contains("payee studio_x: SUSPENDED"));
    assert!(cli(&["switches", "resume-payee", "studio_x"])
        .status
        .success());
    assert!(stdout(&cli(&["switches", "status"])).contains("suspended payees: none"));

    let audit = cli(&["replay", "audit-admin"]);
    let events: Vec<Value> = stdout(&audit)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "ApiKeyCreated",
            "ApiKeyRevoked",
            "AdminActionRecorded",
            "AdminActionRecorded"
        ]
    );
    assert!(events
        .iter()
        .all(|e| e["metadata"]["actor"] == "cli:oncall"));
    assert_eq!(
        events[2]["payload"]["action"],
        "cli switches suspend-payee studio_x"
    );
    let switches = stdout(&cli(&["replay", "ops-switches"]));
    assert!(switches.contains("PayeeSalesSuspended") && switches.contains("PayeeSalesResumed"));
}
