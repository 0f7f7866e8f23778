//! `payledger privacy erase`: an operator erases a customer's personal fields from the shell.

use crate::{payledger, run, serve, stdout};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};

#[tokio::test]
async fn privacy_erase_shreds_a_customer_s_order_names_once_and_the_timeline_shows_it() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    {
        let server = serve(dir.path(), Some(urls)).await;
        let placed = server
            .http()
            .post(format!("{}/v1/orders", server.url))
            .json(&json!({"orderId": "priv-0001", "amount": 10_000, "currency": "KRW",
                          "customerId": "cust_shred", "payeeId": "payee_p", "orderName": "Secret check-up"}))
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status().as_u16(), 201);
        // The timeline is a read model: wait until serve has projected the order.
        let timeline = format!("{}/v1/orders/priv-0001/timeline", server.url);
        for _ in 0..100 {
            let answer: Value = server
                .http()
                .get(&timeline)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if answer["entries"].as_array().is_some_and(|e| !e.is_empty()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let before = stdout(&run(
        payledger(dir.path(), Some(urls)).args(["timeline", "priv-0001"])
    ));
    assert!(before.contains("Secret check-up"), "{before}");
    // Each line starts with `recordedAt` in the API's one format: six fraction digits and `Z`.
    for line in before.lines() {
        let at = line.split_whitespace().next().unwrap_or_default();
        let parsed = chrono::DateTime::parse_from_rfc3339(at);
        assert!(
            parsed.is_ok() && at.len() == "2026-12-06T03:48:18.000000Z".len() && at.ends_with('Z'),
            "{line}"
        );
    }

    let erase = |expected_destroyed: i64, expected_recorded: bool| {
        let output = run(payledger(dir.path(), Some(urls)).args([
            "privacy",
            "erase",
            "--customer",
            "cust_shred",
            "--reason",
            "erasure request",
        ]));
        assert!(output.status.success(), "{}", stdout(&output));
        let answer: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
        assert_eq!(answer["keysDestroyed"], expected_destroyed, "{answer}");
        assert_eq!(answer["recorded"], expected_recorded, "{answer}");
    };
    erase(1, true);
    erase(0, false);
    let after = stdout(&run(
        payledger(dir.path(), Some(urls)).args(["timeline", "priv-0001"])
    ));
    assert!(
        after.contains("[erased]") && !after.contains("Secret"),
        "{after}"
    );
    let verify = run(payledger(dir.path(), Some(urls)).args(["audit", "verify"]));
    assert!(verify.status.success(), "{}", stdout(&verify));
}

#[tokio::test]
async fn a_retention_pass_erases_only_customers_whose_orders_are_all_closed() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    {
        let server = serve(dir.path(), Some(urls)).await;
        let client = server.http();
        for (order, customer) in [("ret-closed", "cust_closed"), ("ret-open", "cust_open")] {
            let placed = client
                .post(format!("{}/v1/orders", server.url))
                .json(&json!({"orderId": order, "amount": 10_000, "currency": "KRW",
                              "customerId": customer, "payeeId": "payee_r", "orderName": format!("Name of {customer}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(placed.status().as_u16(), 201);
            let paid = client
                .post(format!("{}/v1/payments/confirm", server.url))
                .json(&json!({"paymentKey": format!("pk_{order}"), "orderId": order, "amount": 10_000}))
                .send()
                .await
                .unwrap();
            assert_eq!(paid.status().as_u16(), 200);
        }
        // The first is refunded in full: closed. The second stays paid: open.
        let refund = client
            .post(format!("{}/v1/orders/ret-closed/refunds", server.url))
            .json(&json!({"amount": 10_000, "reason": "cancelled"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refund.status().as_u16(), 201);
        let order = format!("{}/v1/orders/ret-closed", server.url);
        for _ in 0..100 {
            let answer: Value = client
                .get(&order)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if answer["status"] == "REFUNDED" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let pass = run(payledger(dir.path(), Some(urls)).args([
        "privacy",
        "retention",
        "--older-than-days",
        "0",
    ]));
    assert!(pass.status.success(), "{}", stdout(&pass));
    let answer: Value = serde_json::from_str(stdout(&pass).trim()).unwrap();
    assert_eq!(answer["erased"], json!(["cust_closed"]));
    let closed = stdout(&run(
        payledger(dir.path(), Some(urls)).args(["timeline", "ret-closed"])
    ));
    assert!(closed.contains("[erased]"), "{closed}");
    let open = stdout(&run(
        payledger(dir.path(), Some(urls)).args(["timeline", "ret-open"])
    ));
    assert!(open.contains("Name of cust_open"), "{open}");
    // A second pass finds nobody left to erase.
    let again = run(payledger(dir.path(), Some(urls)).args([
        "privacy",
        "retention",
        "--older-than-days",
        "0",
    ]));
    assert_eq!(stdout(&again).trim(), r#"{"erased":[]}"#);
}

#[tokio::test]
async fn ops_from_the_shell_seal_the_reasons_they_record_as_serve_does() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    {
        let server = serve(dir.path(), Some(urls)).await;
        let placed = server
            .http()
            .post(format!("{}/v1/orders", server.url))
            .json(
                &json!({"orderId": "ops-priv-1", "amount": 10_000, "currency": "KRW",
                          "customerId": "cust_ops", "payeeId": "payee_o", "orderName": "Lesson"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status().as_u16(), 201);
    }
    let reason = "이민지 전학으로 수강 취소";
    let cancelled = run(payledger(dir.path(), Some(urls)).args([
        "ops",
        "cancel-enrollment",
        "ops-priv-1",
        "--reason",
        reason,
    ]));
    assert!(
        cancelled.status.success(),
        "{:?}: {} {}",
        cancelled.status,
        stdout(&cancelled),
        String::from_utf8_lossy(&cancelled.stderr)
    );
    let stored: String = sqlx::query_scalar(
        "SELECT payload->>'reason' FROM events WHERE event_type = 'EnrollmentCancelled' \
         AND stream_id = 'order-ops-priv-1'",
    )
    .fetch_one(&db.owner_pool)
    .await
    .unwrap();
    assert!(stored.starts_with("pl-sealed:v1:"), "{stored}");
    // serve, with the same master key, reveals it once its projections have caught up.
    let server = serve(dir.path(), Some(urls)).await;
    let url = format!("{}/v1/orders/ops-priv-1/timeline", server.url);
    let mut last = String::new();
    for _ in 0..100 {
        last = server
            .http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if last.contains(reason) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(last.contains(reason), "{last}");
}
