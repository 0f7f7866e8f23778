//! Every read model rebuilt from position 0 gives exactly the rows the live projections wrote.

use super::*;
use sqlx::Row;

/// Every row of a table, as JSON text, sorted: the table's content independent of its physical
/// order.
async fn contents(pool: &sqlx::PgPool, table: &str) -> Vec<String> {
    let rows = sqlx::query(&format!(
        "SELECT to_jsonb(t)::text AS row FROM rm.{table} t ORDER BY 1"
    ))
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("read rm.{table}: {e}"));
    rows.iter().map(|r| r.get::<String, _>("row")).collect()
}

#[tokio::test]
async fn rebuilding_every_read_model_gives_identical_rows() {
    let app = spawn().await;
    let day = Duration::days(1);
    // Bookings (two payers for one slot), a late cancellation, a fulfilment, a claim with a
    // refund and a warning, a confirmed and paid statement.
    app.paid_booking("rb-race-1", 80_000, t0() + day * 2).await;
    app.paid_booking("rb-race-2", 80_000, t0() + day * 2).await;
    app.paid_booking("rb-cancel", 70_001, t0() + day * 3).await;
    app.paid_booking("rb-served", 50_000, t0() + Duration::hours(1))
        .await;
    app.clock.set(t0() + day * 2 + Duration::hours(1));
    assert_eq!(
        app.post("/v1/orders/rb-cancel/cancel", &json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.post("/v1/orders/rb-served/fulfil", &json!({}))
            .await
            .status,
        200
    );
    let filed = app
        .post(
            "/v1/claims",
            &json!({"claimId": "clm-rb", "orderId": "rb-served", "type": "SERVICE_QUALITY",
                    "filedBy": "customer", "description": "late start", "evidence": ["chat-log"]}),
        )
        .await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    app.admin("/v1/claims/clm-rb/assign", &json!({})).await;
    let resolved = app
        .admin(
            "/v1/claims/clm-rb/resolve",
            &json!({"outcome": "split", "reason": "late", "refundAmount": 10001, "providerPayoutAmount": 39999,
                    "providerCompensationAmount": 0, "penalties": ["warning"]}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    app.settle().await;
    app.clock.set(t0() + day * 8);
    let confirmed = app
        .admin(
            &format!("/v1/settlements/{THERAPIST}-2026-10-05-KRW/confirm"),
            &json!({}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let net = confirmed.body["totals"]["netPayable"].as_i64().unwrap();
    let paid = app
        .admin(
            &format!("/v1/settlements/{THERAPIST}-2026-10-05-KRW/payout"),
            &json!({"reference": "bank-1", "amount": net}),
        )
        .await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    app.settle().await;

    let pool = &app.db.app_pool;
    for projection in payledger_read_models::all_projections() {
        let mut before = Vec::new();
        for table in projection.tables() {
            before.push((table, contents(pool, table).await));
        }
        payledger_projector::rebuild(pool, projection.as_ref(), &|_, _| {})
            .await
            .unwrap_or_else(|e| panic!("rebuild {}: {e}", projection.name()));
        for (table, rows) in before {
            let after = contents(pool, table).await;
            assert_eq!(
                rows.len(),
                after.len(),
                "{}: rows of {table}",
                projection.name()
            );
            assert_eq!(
                rows,
                after,
                "{}: {table} differs after a rebuild",
                projection.name()
            );
        }
    }
    // The rebuilt models still hold what the scenario made.
    for table in [
        "claims",
        "settlement_statements",
        "settlement_lines",
        "journal_lines",
    ] {
        assert!(!contents(pool, table).await.is_empty(), "{table} is empty");
    }
    let books = app.trial_balance().await;
    assert_eq!(books["balanced"], true, "{books}");
}
