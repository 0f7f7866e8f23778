//! `payledger reconcile settlements`: imports a provider's settlement report next to a running
//! `serve`, prints what it did, and imports a report once however often it is run.

use crate::{payledger, run, serve_command, stdout};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn reconcile_settlements_imports_a_report_once_and_flags_the_unsettled() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    // The provider's clock runs ahead when the test says so: payouts come two days after a sale.
    let offset = Arc::new(Mutex::new(chrono::Duration::zero()));
    let read = offset.clone();
    let sandbox = payledger_sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        payledger_sandbox::SandboxConfig {
            clock: Some(Arc::new(move || chrono::Utc::now() + *read.lock().unwrap())),
            ..payledger_sandbox::SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let mut command = payledger(dir.path(), Some(urls));
    command
        .env("PAYLEDGER_SANDBOX_URL", sandbox.base_url())
        .env("PAYLEDGER_RECONCILIATION_INTERVAL_S", "0")
        .stderr(Stdio::null());
    let server = serve_command(command, dir.path()).await;
    for (order, amount) in [("cli-recon-1", 12_000), ("cli-recon-2", 8_000)] {
        let client = server.http();
        let placed = client
            .post(format!("{}/v1/orders", server.url))
            .json(&json!({"orderId": order, "amount": amount, "currency": "KRW",
                          "customerId": "cust_cli", "payeeId": "payee_cli", "orderName": "CLI class"}))
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status().as_u16(), 201);
        let paid = client
            .post(format!("{}/v1/payments/confirm", server.url))
            .json(&json!({"paymentKey": format!("pk_{order}"), "orderId": order, "amount": amount}))
            .send()
            .await
            .unwrap();
        assert_eq!(paid.status().as_u16(), 200);
    }
    assert!(sandbox.set_settlement_fault(
        "pk_cli-recon-2",
        payledger_sandbox::SettlementFault {
            missing: true,
            ..Default::default()
        }
    ));
    *offset.lock().unwrap() = chrono::Duration::days(2);
    let today = (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive();
    let from = today.to_string();
    let to = (today + chrono::Days::new(5)).to_string();
    let as_of = (chrono::Utc::now() + chrono::Duration::days(4)).to_rfc3339();
    let reconcile = |extra: &[&str]| {
        let mut command = payledger(dir.path(), Some(urls));
        command
            .env("PAYLEDGER_SANDBOX_URL", sandbox.base_url())
            .args([
                "reconcile",
                "settlements",
                "--provider",
                "toss",
                "--from",
                &from,
                "--to",
                &to,
            ])
            .args(extra);
        let output = run(&mut command);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str::<Value>(stdout(&output).trim()).unwrap()
    };
    let first = reconcile(&["--as-of", &as_of]);
    assert_eq!(first["import"]["lines"], 1, "{first}");
    assert_eq!(first["import"]["matched"], 1, "{first}");
    assert_eq!(first["unsettledFlagged"], 1, "{first}");
    let again = reconcile(&["--as-of", &as_of]);
    assert_eq!(again["import"]["alreadyImported"], 1, "{again}");
    assert_eq!(again["unsettledFlagged"], 0, "{again}");
    // Recorded as the operator at the command line.
    let actor: String = sqlx::query_scalar(
        "SELECT metadata->>'actor' FROM events WHERE event_type = 'SettlementLineMatched'",
    )
    .fetch_one(&db.owner_pool)
    .await
    .unwrap();
    assert!(actor.starts_with("cli:"), "{actor}");
    // A period too long is refused before anything is asked.
    let mut long = payledger(dir.path(), Some(urls));
    long.env("PAYLEDGER_SANDBOX_URL", sandbox.base_url()).args([
        "reconcile",
        "settlements",
        "--provider",
        "toss",
        "--from",
        "2026-01-01",
        "--to",
        "2026-03-01",
    ]);
    assert!(!run(&mut long).status.success());
    drop(server);
    sandbox.stop().await;
}
