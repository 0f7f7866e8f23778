//! `payledger ops resolve-refund-discrepancy`: an operator resolves a refund discrepancy from the
//! command line. The discrepancy is real: a Paddle order paid in the sandbox's checkout next to a
//! running `serve`, a refund asked through the API, and the sandbox's Paddle rejecting the
//! adjustment in another currency (a planted fault) in a signed notification `serve` applies.

use crate::{payledger, run, serve_command, stdout};
use payledger_domain::card_numbers::test_cards;
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::process::{Output, Stdio};
use std::time::Duration;

const SECRET: &str = "pdl_ntfset_cli_secret";

/// What the customer or Paddle itself does, through the sandbox's controls and API.
async fn paddle(sandbox: &payledger_sandbox::RunningSandbox, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", sandbox.paddle_base_url()))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json::<Value>().await.unwrap()["data"].clone()
}

/// The payloads of the order's events of `event_type`, from the log.
async fn events_of(db: &TestDatabase, order_id: &str, event_type: &str) -> Vec<Value> {
    let rows: Vec<(Value,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE stream_id = $1 AND event_type = $2 ORDER BY global_position",
    )
    .bind(format!("order-{order_id}"))
    .bind(event_type)
    .fetch_all(&db.app_pool)
    .await
    .unwrap();
    rows.into_iter().map(|(payload,)| payload).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[tokio::test]
async fn ops_resolve_refund_discrepancy_records_the_resolution_once_with_the_cli_actor() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    let sandbox = payledger_sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        payledger_sandbox::SandboxConfig::default(),
    )
    .await
    .unwrap();
    let mut command = payledger(dir.path(), Some(urls));
    command
        .env("PAYLEDGER_SANDBOX_URL", sandbox.base_url())
        .env("PAYLEDGER_WEBHOOK_SECRET_PADDLE", SECRET)
        .stderr(Stdio::null());
    let server = serve_command(command, dir.path()).await;
    sandbox
        .add_paddle_webhook_destination(&format!("{}/v1/webhooks/paddle", server.url), SECRET)
        .unwrap();
    let client = server.http();

    // A credit pack paid through Paddle's checkout and confirmed by its transaction id.
    let order_id = "order-cli-discrepancy";
    let placed = client
        .post(format!("{}/v1/orders", server.url))
        .json(
            &json!({"orderId": order_id, "amount": 1000, "currency": "USD",
                      "customerId": "cust_1", "payeeId": "payee_1", "orderName": "100 credits",
                      "provider": "paddle"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 201);
    let paid = paddle(
        &sandbox,
        "/sandbox/checkout",
        json!({"items": [{"price_id": payledger_sandbox::SANDBOX_PRICE_CREDITS_100, "quantity": 1}],
               "customer_email": "member@example.com",
               "custom_data": {"customerId": "cust_1", "orderId": order_id}}),
    )
    .await;
    let txn = paid["transaction"]["id"].as_str().unwrap();
    let confirmed = client
        .post(format!("{}/v1/payments/confirm", server.url))
        .json(&json!({"paymentKey": txn, "orderId": order_id, "amount": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status().as_u16(), 200);

    // A refund through payledger: Paddle holds it as an adjustment awaiting its decision.
    let asked: Value = client
        .post(format!("{}/v1/orders/{order_id}/refunds", server.url))
        .header("Idempotency-Key", "cli-discrepancy-1")
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refund_id = asked["refundId"].as_str().unwrap().to_owned();
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();

    let resolve = |refund: &str, note: &str| {
        run(payledger(dir.path(), Some(urls))
            .env("USER", "oncall")
            .args([
                "ops",
                "resolve-refund-discrepancy",
                "--order",
                order_id,
                "--refund",
                refund,
                "--note",
                note,
            ]))
    };
    let note = "raised with Paddle support, ticket 42";

    // Nothing recorded yet: nothing to resolve, exit 3 naming the code.
    let early = resolve(&refund_id, note);
    assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("E_REFUND_DISCREPANCY_NOT_OPEN"),
        "{}",
        stderr(&early)
    );

    // Paddle rejects the adjustment in EUR, not USD (a planted fault).
    paddle(
        &sandbox,
        &format!("/sandbox/adjustments/{adjustment}/reject"),
        json!({"currency_code": "EUR"}),
    )
    .await;
    let mut recorded = Vec::new();
    for _ in 0..300 {
        recorded = events_of(&db, order_id, "RefundDiscrepancyRecorded").await;
        if !recorded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recorded.len(), 1, "the rejection was applied: {recorded:?}");
    // The order's stream and audit-admin: what these commands could append (notifications and
    // the reconciler move other streams meanwhile).
    let written = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE stream_id IN ($1, 'audit-admin')",
        )
        .bind(format!("order-{order_id}"))
        .fetch_one(&db.app_pool)
        .await
        .unwrap()
    };
    let before = written().await;

    // Bad input: exit 2 with the stable code, nothing recorded.
    for bad in ["  ", "ring\u{7}bell", &"x".repeat(501)] {
        let refused = resolve(&refund_id, bad);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{bad:?}: {}",
            stderr(&refused)
        );
        assert!(
            stderr(&refused).contains("E_INVALID_FIELD"),
            "{}",
            stderr(&refused)
        );
    }
    let refused = resolve("not a refund id!", note);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    // A card number in the note: refused as the API's screen refuses it, never echoed.
    let refused = resolve(
        &refund_id,
        &format!("card {} read out on the phone", test_cards::VISA_SPACED),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("E_CARD_DATA_REJECTED") && !stderr(&refused).contains("4242"),
        "{}",
        stderr(&refused)
    );
    // A refund the order does not have: the order's state refuses it.
    let unknown = resolve("rf-unknown", note);
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("E_ORDER_STATE_CONFLICT"),
        "{}",
        stderr(&unknown)
    );
    assert_eq!(written().await, before, "nothing was appended");

    // The operator resolves it.
    let resolved = resolve(&refund_id, note);
    assert!(resolved.status.success(), "{}", stderr(&resolved));
    let said = stdout(&resolved);
    assert!(
        said.contains(&format!(
            "discrepancy of refund {refund_id} resolved (acknowledged) by cli:oncall"
        )) && said.contains("1000 held"),
        "{said}"
    );
    let events = events_of(&db, order_id, "RefundDiscrepancyResolved").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["refundId"], refund_id.as_str());
    assert_eq!(events[0]["providerRefundId"], adjustment.as_str());
    assert_eq!(events[0]["resolution"], "acknowledged");
    assert_eq!(events[0]["note"], note);
    assert_eq!(events[0]["resolvedBy"], "cli:oncall");
    // Nothing moved: no refund completed or failed.
    assert!(events_of(&db, order_id, "RefundCompleted").await.is_empty());
    assert!(events_of(&db, order_id, "RefundFailed").await.is_empty());

    // Twice: refused with exit 3 and the code; still one resolution.
    let again = resolve(&refund_id, note);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("E_REFUND_DISCREPANCY_NOT_OPEN"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        events_of(&db, order_id, "RefundDiscrepancyResolved")
            .await
            .len(),
        1
    );

    // The API agrees: no longer under review, the amount still held.
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = client
            .get(format!("{}/v1/orders/{order_id}", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown.get("refundsUnderReview").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shown.get("refundsUnderReview").is_none(), "{shown}");
    assert_eq!(shown["refundPendingAmount"], 1000, "{shown}");
    assert_eq!(shown["refundedAmount"], 0, "{shown}");

    // The action is in audit-admin with the CLI's actor.
    let audit: Vec<Value> = stdout(&run(
        payledger(dir.path(), Some(urls)).args(["replay", "audit-admin"])
    ))
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let action = format!("cli ops resolve-refund-discrepancy {order_id} {refund_id}");
    let recorded: Vec<&Value> = audit
        .iter()
        .filter(|e| e["payload"]["action"] == action.as_str())
        .collect();
    assert_eq!(recorded.len(), 1, "{audit:?}");
    assert_eq!(recorded[0]["metadata"]["actor"], "cli:oncall");
    drop(server);
    sandbox.stop().await;
}

/// Every command line that carries free text (a note, a reason, notes) is refused when the text
/// holds a card number, before anything runs: exit 2, `E_CARD_DATA_REJECTED`, the number never
/// repeated, nothing stored.
#[tokio::test]
async fn a_card_number_in_any_argument_is_refused_before_the_command_runs_and_stores_nothing() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    let card = test_cards::VISA_SPACED;
    let with_card = format!("customer read out {card}");
    let command_lines: [Vec<&str>; 6] = [
        vec![
            "ops",
            "resolve-refund-discrepancy",
            "--order",
            "order-cli-card-note",
            "--refund",
            "rf_card_note",
            "--note",
            &with_card,
        ],
        vec!["switches", "suspend-payments", "--reason", &with_card],
        vec![
            "switches",
            "suspend-payee",
            "payee-1",
            "--reason",
            &with_card,
        ],
        vec![
            "ops",
            "cancel-enrollment",
            "order-cli-card",
            "--reason",
            &with_card,
        ],
        vec![
            "bookings",
            "confirm",
            "order-cli-card",
            "--notes",
            &with_card,
        ],
        // A card number where a number is expected: refused before clap, whose error would
        // repeat the value.
        vec![
            "ops",
            "record-external-payment",
            "order-cli-card",
            "--provider",
            "toss",
            "--transaction-id",
            "tx-1",
            "--amount",
            test_cards::VISA_STRIPE,
            "--currency",
            "KRW",
            "--reason",
            "paid at the desk",
        ],
    ];
    for args in command_lines {
        let output = run(payledger(dir.path(), Some(urls)).args(&args));
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains("E_CARD_DATA_REJECTED"), "{args:?}: {said}");
        assert!(
            !said.contains(card) && !said.contains(test_cards::VISA_STRIPE),
            "{args:?}: the number is never repeated: {said}"
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.app_pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing was stored");
}

#[tokio::test]
async fn ops_resolve_refund_discrepancy_refuses_a_note_with_a_card_number_and_stores_nothing() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    let card = test_cards::VISA_SPACED;
    let output = run(payledger(dir.path(), Some(urls)).args([
        "ops",
        "resolve-refund-discrepancy",
        "--order",
        "order-cli-card-note",
        "--refund",
        "rf_card_note",
        "--note",
        &format!("customer read out {card}"),
    ]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(said.contains("E_CARD_DATA_REJECTED"), "{said}");
    assert!(
        !said.contains(card) && !said.contains(test_cards::VISA_STRIPE),
        "the number is never echoed: {said}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.app_pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing was stored");
}
