//! `payledger audit trial-balance` and the journal checks of `payledger audit verify`.

use super::*;
use payledger_testdb::TestDatabase;
use serde_json::json;

async fn pay(server: &Server, order_id: &str, amount: i64) {
    let client = server.http();
    let placed = client
        .post(format!("{}/v1/orders", server.url))
        .json(&json!({"orderId": order_id, "amount": amount, "currency": "KRW", "customerId": "cust_books",
                      "payeeId": "payee_books", "orderName": "Books class"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 201);
    let paid = client
        .post(format!("{}/v1/payments/confirm", server.url))
        .json(
            &json!({"paymentKey": format!("pk_{order_id}"), "orderId": order_id, "amount": amount}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200);
}

/// The row of `account` in trial-balance output: (debit, credit, balance).
fn row(text: &str, account: &str) -> Option<(i64, i64, i64)> {
    text.lines().find_map(|line| {
        let cells: Vec<&str> = line.split_whitespace().collect();
        (cells.first() == Some(&account) && cells.len() == 5).then(|| {
            (
                cells[2].parse().unwrap(),
                cells[3].parse().unwrap(),
                cells[4].parse().unwrap(),
            )
        })
    })
}

async fn wait_for_journal(db: &TestDatabase) {
    for _ in 0..300 {
        let head = payledger_store::head_position(&db.app_pool).await.unwrap();
        let journal: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE name = 'journal'",
        )
        .fetch_optional(&db.app_pool)
        .await
        .unwrap();
        if journal == Some(head) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the journal did not catch up");
}

#[tokio::test]
async fn the_trial_balance_is_printed_at_any_position_and_verify_catches_an_unbalanced_journal() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    {
        let server = serve(dir.path(), Some(urls)).await;
        pay(&server, "books-0001", 10_000).await;
        pay(&server, "books-0002", 20_001).await;
        let refund = server
            .http()
            .post(format!("{}/v1/orders/books-0002/refunds", server.url))
            .json(&json!({"amount": 5_000, "reason": "goodwill"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refund.status().as_u16(), 201);
        wait_for_journal(&db).await;
    }

    let now = run(payledger(dir.path(), Some(urls)).args(["audit", "trial-balance"]));
    assert!(now.status.success(), "{}", stdout(&now));
    let text = stdout(&now);
    assert_eq!(
        row(&text, "provider_clearing"),
        Some((30_001, 5_000, 25_001)),
        "{text}"
    );
    assert_eq!(
        row(&text, "customer_refunds"),
        Some((5_000, 5_000, 0)),
        "{text}"
    );
    assert!(text.contains("total (balanced)"), "{text}");

    // At the first capture (placed 1, confirmation 2, captured 3): only the first payment.
    let early =
        run(payledger(dir.path(), Some(urls)).args(["audit", "trial-balance", "--at", "3"]));
    let text = stdout(&early);
    assert!(
        text.starts_with("trial balance at global position 3"),
        "{text}"
    );
    assert_eq!(
        row(&text, "provider_clearing"),
        Some((10_000, 0, 10_000)),
        "{text}"
    );
    assert_eq!(row(&text, "customer_refunds"), None, "{text}");

    // Beyond the head: refused with the code the HTTP endpoint answers, not the head's balances.
    let beyond =
        run(payledger(dir.path(), Some(urls)).args(["audit", "trial-balance", "--at", "99999"]));
    assert_eq!(beyond.status.code(), Some(1), "{}", stdout(&beyond));
    let error = String::from_utf8_lossy(&beyond.stderr);
    assert!(error.contains("E_POSITION_BEYOND_HEAD"), "{error}");
    assert!(stdout(&beyond).is_empty(), "{}", stdout(&beyond));

    let clean = run(payledger(dir.path(), Some(urls)).args(["audit", "verify"]));
    assert!(clean.status.success(), "{}", stdout(&clean));
    assert!(
        stdout(&clean).contains("journal entries balance"),
        "{}",
        stdout(&clean)
    );

    // Someone edits the journal behind the ledger's back.
    sqlx::query(
        "UPDATE rm.journal_lines SET debit_minor = debit_minor + 1 \
         WHERE account = 'provider_clearing' AND debit_minor > 0 AND global_position = 3",
    )
    .execute(&db.owner_pool)
    .await
    .unwrap();
    let broken = run(payledger(dir.path(), Some(urls)).args(["audit", "verify"]));
    assert_eq!(broken.status.code(), Some(3), "{}", stdout(&broken));
    let text = stdout(&broken);
    assert!(text.contains("UNBALANCED journal entry 3-1"), "{text}");
    assert!(text.contains("MISMATCH provider_clearing KRW"), "{text}");
}
