//! The provider's money, reconciled (issue 18), over HTTP with the sandbox: payments captured and
//! refunded, the sandbox's settlement report imported, `provider_clearing` closed for every
//! settled payment, each planted discrepancy flagged once on the right order and resolved by an
//! admin, and the books still balanced and verified.

use crate::reconciliation_steps::{
    balance_in, balanced_books, import_settlements, json_of, spawn_with_provider_clock,
};
use chrono::{Days, Duration, NaiveDate, Utc};
use payledger_sandbox::SettlementFault;
use payledger_tests::{spawn_app_with, SpawnOptions, TestApp};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Today in Korea (Toss's calendar).
fn toss_today() -> NaiveDate {
    (Utc::now() + Duration::hours(9)).date_naive()
}

async fn paid(app: &TestApp, order_id: &str, amount: i64) {
    app.place_order(order_id, amount).await;
    let confirmed = app
        .confirm(order_id, &format!("pk_{order_id}"), amount)
        .await;
    assert_eq!(confirmed.status().as_u16(), 200, "{order_id}");
}

async fn import(app: &TestApp) -> Value {
    let from = toss_today();
    let (status, body) = import_settlements(
        app,
        &json!({"provider": "toss", "from": from, "to": from + Days::new(10)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn open_exceptions(app: &TestApp) -> Vec<Value> {
    app.wait_for_projections().await;
    let (status, body) = json_of(
        app.get_as(&app.support_key, "/v1/reconciliation/exceptions")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["exceptions"].as_array().unwrap().clone()
}

async fn unsettled_check(app: &TestApp, as_of: chrono::DateTime<Utc>) -> (u16, Value) {
    json_of(
        app.post_as(
            &app.admin_key,
            "/v1/admin/reconciliation/unsettled-checks",
            &json!({"provider": "toss", "asOf": as_of}),
        )
        .await,
    )
    .await
}

/// Events in reconciliation streams (admin commands also add to the admin audit trail).
async fn reconciliation_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id LIKE 'reconciliation-%'")
        .fetch_one(&app.app_pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_week_of_toss_payments_reconciles_and_every_discrepancy_is_flagged_once() {
    let (app, offset) = spawn_with_provider_clock().await;
    paid(&app, "recon-clean-1", 50_000).await;
    let refund = app
        .post(
            "/v1/orders/recon-clean-1/refunds",
            &json!({"amount": 20_000, "reason": "one session cancelled"}),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 201);
    for order in [
        "recon-clean-2",
        "recon-short",
        "recon-fee",
        "recon-late",
        "recon-missing",
    ] {
        paid(&app, order, 10_000).await;
    }
    let fault = |key: &str, fault: SettlementFault| {
        assert!(app.sandbox.set_settlement_fault(key, fault));
    };
    fault(
        "pk_recon-short",
        SettlementFault {
            short_minor: 100,
            ..Default::default()
        },
    );
    fault(
        "pk_recon-fee",
        SettlementFault {
            extra_fee_minor: 50,
            ..Default::default()
        },
    );
    fault(
        "pk_recon-late",
        SettlementFault {
            late_days: 3,
            ..Default::default()
        },
    );
    fault(
        "pk_recon-missing",
        SettlementFault {
            missing: true,
            ..Default::default()
        },
    );
    // A payment the provider processed that the ledger never heard of.
    let unknown = app
        .client
        .post(format!("{}/v1/payments/confirm", app.sandbox.base_url()))
        .basic_auth(payledger_sandbox::DEFAULT_SECRET_KEY, Some(""))
        .json(&json!({"paymentKey": "pk_recon_stranger", "orderId": "recon-stranger-1", "amount": 7_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 200);

    // Before the settlement delay, nothing is paid out.
    let early = import(&app).await;
    assert_eq!(early["lines"], 0, "{early}");

    // Two days on, Toss pays out everything but the late and the missing payment.
    *offset.lock().unwrap() = Duration::days(2);
    let first = import(&app).await;
    assert_eq!(first["lines"], 6, "{first}");
    assert_eq!(first["matched"], 5, "{first}");
    assert_eq!(first["unmatched"], 1, "{first}");
    assert_eq!(
        first["flags"],
        json!({"fee_mismatch": 1, "short_payout": 1, "unknown_payment": 1})
    );
    // The same report again has no effect.
    let recorded = reconciliation_events(&app).await;
    let again = import(&app).await;
    assert_eq!(again["alreadyImported"], 6, "{again}");
    assert_eq!(again["matched"], 0);
    assert_eq!(reconciliation_events(&app).await, recorded);

    // Captures the provider has not settled past its delay: the late and the missing one.
    let as_of = Utc::now() + Duration::days(4);
    let (status, unsettled) = unsettled_check(&app, as_of).await;
    assert_eq!(status, 200, "{unsettled}");
    assert_eq!(unsettled["flagged"], 2, "{unsettled}");
    let (_, unsettled) = unsettled_check(&app, as_of).await;
    assert_eq!(unsettled["flagged"], 0, "flagged once: {unsettled}");

    // Three days later still, the late line arrives, late.
    *offset.lock().unwrap() = Duration::days(5);
    let late = import(&app).await;
    assert_eq!(late["matched"], 1, "{late}");
    assert_eq!(late["flags"], json!({"late_payout": 1}));

    // Each discrepancy once, on the right order.
    let open = open_exceptions(&app).await;
    let mut found: Vec<(String, String)> = open
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["orderId"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(String, String)> = [
        ("fee_mismatch", "recon-fee"),
        ("late_payout", "recon-late"),
        ("short_payout", "recon-short"),
        ("unknown_payment", "-"),
        ("unsettled_capture", "recon-late"),
        ("unsettled_capture", "recon-missing"),
    ]
    .iter()
    .map(|(k, o)| (k.to_string(), o.to_string()))
    .collect();
    assert_eq!(found, expected, "{open:?}");
    let short = open.iter().find(|e| e["kind"] == "short_payout").unwrap();
    assert_eq!(
        (
            short["expectedMinor"].as_i64(),
            short["actualMinor"].as_i64()
        ),
        (Some(9_648), Some(9_548))
    );
    let fee = open.iter().find(|e| e["kind"] == "fee_mismatch").unwrap();
    assert_eq!(
        (fee["expectedMinor"].as_i64(), fee["actualMinor"].as_i64()),
        (Some(352), Some(402))
    );

    // Counted, and open ones visible, in the metrics.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"payledger_reconciliation_open_exceptions{provider="toss",kind="short_payout"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"payledger_reconciliation_open_exceptions{provider="toss",kind="unsettled_capture"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("payledger_reconciliation_flags_total{"),
        "{metrics}"
    );

    // On the order's timeline.
    let timeline: Value = app
        .get("/v1/orders/recon-short/timeline")
        .await
        .json()
        .await
        .unwrap();
    let summaries: Vec<&str> = timeline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["summary"].as_str())
        .collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("toss settled payment 10000 KRW")),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("reconciliation flag short_payout")),
        "{summaries:?}"
    );

    // The journal: settled payments close provider_clearing; what stays is what Toss owes (the
    // missing payment and the short payout); bank and fees hold what was paid and kept.
    let books = balanced_books(&app).await;
    assert_eq!(
        balance_in(&books, "provider_clearing", "KRW"),
        10_000 + 100,
        "{books}"
    );
    assert_eq!(
        balance_in(&books, "bank", "KRW"),
        48_240 - 19_296 + 9_648 + 9_548 + 9_598 + 9_648
    );
    assert_eq!(
        balance_in(&books, "provider_fees", "KRW"),
        1_760 - 704 + 352 + 352 + 402 + 352
    );

    // The report, and what Toss owes by age.
    let from = toss_today();
    let report_path = format!(
        "/v1/reconciliation?provider=toss&from={from}&to={}",
        from + Days::new(10)
    );
    let (status, report) = json_of(app.get_as(&app.auditor_key, &report_path).await).await;
    assert_eq!(status, 200, "{report}");
    let days = report["days"].as_array().unwrap();
    assert_eq!(
        days.iter()
            .map(|d| d["lines"].as_i64().unwrap())
            .sum::<i64>(),
        7
    );
    assert_eq!(
        days.iter()
            .map(|d| d["payoutsMinor"].as_i64().unwrap())
            .sum::<i64>(),
        48_240 - 19_296 + 9_648 + 9_548 + 9_598 + 9_648 + 7_000 - 224 - 22
    );
    assert_eq!(report["agedClearing"][0]["totalMinor"], 10_100, "{report}");
    let csv = app
        .get_as(&app.auditor_key, &format!("{report_path}&format=csv"))
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("provider,day,currency,lines,"), "{csv}");
    assert_eq!(csv.lines().count(), days.len() + 1);

    // An admin resolves each, once, with a note.
    for exception in &open {
        let path = format!(
            "/v1/reconciliation/exceptions/{}/{}/resolve",
            exception["streamId"].as_str().unwrap(),
            exception["kind"].as_str().unwrap()
        );
        // The short payout is written off; the rest are claimed from Toss.
        let resolution = if exception["kind"] == "short_payout" {
            "write_off"
        } else {
            "claim_against_provider"
        };
        let body = json!({"resolution": resolution, "note": "raised with Toss, ticket 42"});
        let (status, answer) = json_of(app.post_as(&app.admin_key, &path, &body).await).await;
        assert_eq!(status, 200, "{answer}");
        if exception["kind"] == "short_payout" {
            let (status, again) = json_of(app.post_as(&app.admin_key, &path, &body).await).await;
            assert_eq!(status, 409, "{again}");
            assert_eq!(again["code"], "E_RECONCILIATION_EXCEPTION_NOT_OPEN");
            let (status, _) = json_of(app.post_as(&app.support_key, &path, &body).await).await;
            assert_eq!(status, 403);
        }
    }
    assert!(open_exceptions(&app).await.is_empty());
    // The written-off shortfall left clearing as a loss; the missing payment is still owed.
    let books = balanced_books(&app).await;
    assert_eq!(
        balance_in(&books, "provider_clearing", "KRW"),
        10_000,
        "{books}"
    );
    assert_eq!(
        balance_in(&books, "reconciliation_write_offs", "KRW"),
        100,
        "{books}"
    );
    let (_, all) = json_of(
        app.get_as(&app.support_key, "/v1/reconciliation/exceptions?status=all")
            .await,
    )
    .await;
    let resolved = &all["exceptions"][0];
    assert!(resolved["resolution"].is_string(), "{all}");
    assert_eq!(resolved["resolvedBy"], "admin:ops");

    // The reconciliation and journal read models are exactly their rebuild from the log.
    for projection in ["reconciliation", "journal", "orders"] {
        let projection = payledger_read_models::projection_named(projection).unwrap();
        let report = payledger_projector::verify(&app.app_pool, projection.as_ref())
            .await
            .unwrap();
        assert!(report.matches(), "{report:?}");
    }

    // The log verifies, and so does the journal against it.
    let chains = payledger_store::audit::verify_all(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(chains.first_problem, None);
    app.wait_for_projections().await;
    let journal = payledger_read_models::journal::verify(&app.app_pool)
        .await
        .unwrap();
    assert!(journal.mismatches.is_empty(), "{:?}", journal.mismatches);
    assert!(journal.unbalanced_entries.is_empty());
}

#[tokio::test]
async fn imports_are_for_admins_and_refuse_what_they_cannot_do() {
    let (app, _) = spawn_with_provider_clock().await;
    let today = toss_today();
    let body = json!({"provider": "toss", "from": today, "to": today});
    let (status, _) = json_of(
        app.post_as(&app.client_key, "/v1/admin/reconciliation/imports", &body)
            .await,
    )
    .await;
    assert_eq!(status, 403);
    let (status, answer) = import_settlements(
        &app,
        &json!({"provider": "adyen", "from": today, "to": today}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["code"], "E_RECONCILIATION_PROVIDER_UNKNOWN");
    let recorded = reconciliation_events(&app).await;
    let (status, answer) = import_settlements(
        &app,
        &json!({"provider": "toss", "from": today, "to": today + Days::new(40)}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "E_INVALID_FIELD");
    let (status, answer) = json_of(
        app.get_as(
            &app.support_key,
            "/v1/reconciliation/exceptions?kind=nonsense",
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    // The provider down: nothing recorded, a clear 503.
    app.sandbox.start_outage(std::time::Duration::from_secs(30));
    let (status, answer) = import_settlements(&app, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "E_SETTLEMENT_REPORT_UNAVAILABLE");
    app.sandbox.start_outage(std::time::Duration::ZERO);
    assert_eq!(reconciliation_events(&app).await, recorded);
}

async fn stripe_paid(app: &TestApp, order_id: &str, amount: i64) -> String {
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": order_id, "amount": amount, "currency": "USD",
                    "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga class",
                    "provider": "stripe"}),
        )
        .await;
    assert_eq!(placed.status().as_u16(), 201);
    let (status, body) = json_of(app.confirm(order_id, "pm_card_visa", amount).await).await;
    assert_eq!(status, 200, "{body}");
    // The order knows its payment by the PaymentIntent id.
    body["paymentKey"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn stripe_payouts_and_balance_transactions_close_clearing_per_payment_intent() {
    let (app, offset) = spawn_with_provider_clock().await;
    stripe_paid(&app, "recon-stripe-1", 10_000).await;
    let refund = app
        .post(
            "/v1/orders/recon-stripe-1/refunds",
            &json!({"amount": 3_000, "reason": "one class missed"}),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 201);
    let short_intent = stripe_paid(&app, "recon-stripe-2", 5_000).await;
    assert!(short_intent.starts_with("pi_"), "{short_intent}");
    assert!(app.sandbox.set_settlement_fault(
        &short_intent,
        SettlementFault {
            short_minor: 50,
            ..Default::default()
        }
    ));

    *offset.lock().unwrap() = Duration::days(2);
    let today = Utc::now().date_naive();
    let body = json!({"provider": "stripe", "from": today, "to": today + Days::new(10)});
    let (status, imported) = import_settlements(&app, &body).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["lines"], 3, "{imported}");
    assert_eq!(imported["matched"], 3, "{imported}");
    assert_eq!(imported["flags"], json!({"short_payout": 1}));
    let (_, again) = import_settlements(&app, &body).await;
    assert_eq!(again["alreadyImported"], 3, "{again}");

    app.wait_for_projections().await;
    let open = open_exceptions(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["orderId"], "recon-stripe-2");
    assert_eq!(open[0]["provider"], "stripe");
    let books = balanced_books(&app).await;
    // 2.9 % + 30 per charge, kept on the refund; the second payout 50 short.
    assert_eq!(
        balance_in(&books, "provider_clearing", "USD"),
        50,
        "{books}"
    );
    assert_eq!(balance_in(&books, "provider_fees", "USD"), 320 + 175);
    assert_eq!(
        balance_in(&books, "bank", "USD"),
        (10_000 - 320) - 3_000 + (5_000 - 175 - 50)
    );
}

/// On the scenario clock, a move runs the settlement import and the unsettled check: the paid
/// payment settles when its payout day comes, the one Toss never pays is flagged once its delay
/// has passed.
#[tokio::test]
async fn a_move_of_the_scenario_clock_imports_settlements_and_flags_what_never_came() {
    // Monday 2026-10-05 00:00 UTC (09:00 in Seoul); the provider's clock follows the scenario's.
    let start = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 10, 5, 0, 0, 0).unwrap();
    let provider_now = Arc::new(Mutex::new(start));
    let read = provider_now.clone();
    let app = spawn_app_with(SpawnOptions {
        test_clock_start: Some(start),
        sandbox_clock: Some(Arc::new(move || *read.lock().unwrap())),
        reconciliation_interval_s: 3_600,
        ..SpawnOptions::default()
    })
    .await;
    paid(&app, "clock-recon-1", 10_000).await;
    paid(&app, "clock-recon-2", 10_000).await;
    assert!(app.sandbox.set_settlement_fault(
        "pk_clock-recon-2",
        SettlementFault {
            missing: true,
            ..Default::default()
        }
    ));
    let move_to = |to: chrono::DateTime<Utc>| {
        *provider_now.lock().unwrap() = to;
        let app = &app;
        async move {
            let (status, body) = json_of(
                app.post_as(
                    &app.admin_key,
                    "/v1/admin/test-clock/set",
                    &json!({"to": to.to_rfc3339()}),
                )
                .await,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["job"] == "reconciliation.settlements")
                .map(|j| j["result"]["toss"].clone())
                .collect::<Vec<Value>>()
        }
    };
    // Wednesday 10:00 in Seoul: the first payment is paid out; the second is not late yet.
    let wednesday = move_to(start + Duration::days(2) + Duration::hours(1)).await;
    let matched: i64 = wednesday
        .iter()
        .map(|r| r["import"]["matched"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(matched, 1, "{wednesday:?}");
    assert!(open_exceptions(&app).await.is_empty());
    // Friday: the second is past Toss's delay and never came.
    let friday = move_to(start + Duration::days(4) + Duration::hours(1)).await;
    let flagged: i64 = friday
        .iter()
        .map(|r| r["unsettledFlagged"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(flagged, 1, "{friday:?}");
    let open = open_exceptions(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["kind"], "unsettled_capture");
    assert_eq!(open[0]["orderId"], "clock-recon-2");
    let books = balanced_books(&app).await;
    assert_eq!(
        balance_in(&books, "provider_clearing", "KRW"),
        10_000,
        "{books}"
    );
}

/// A line for a payment the ledger learns of later (recorded as an outside payment) is matched
/// and posted by the next import; its `unknown_payment` flag waits for an admin.
#[tokio::test]
async fn a_line_matched_nowhere_is_matched_once_the_payment_is_recorded() {
    let (app, offset) = spawn_with_provider_clock().await;
    let direct = app
        .client
        .post(format!("{}/v1/payments/confirm", app.sandbox.base_url()))
        .basic_auth(payledger_sandbox::DEFAULT_SECRET_KEY, Some(""))
        .json(&json!({"paymentKey": "pk_recon_outside", "orderId": "recon-outside-1", "amount": 7_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status().as_u16(), 200);
    *offset.lock().unwrap() = Duration::days(2);
    let first = import(&app).await;
    assert_eq!(first["unmatched"], 1, "{first}");

    app.place_order("recon-outside-1", 7_000).await;
    let (status, recorded) = json_of(
        app.post_as(
            &app.admin_key,
            "/v1/admin/orders/recon-outside-1/external-payments",
            &json!({"provider": "toss", "providerTransactionId": "pk_recon_outside",
                    "amount": 7_000, "currency": "KRW", "method": "카드",
                    "reason": "paid at Toss directly, ticket 9"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{recorded}");
    let second = import(&app).await;
    assert_eq!(second["matched"], 1, "{second}");
    let third = import(&app).await;
    assert_eq!(third["alreadyImported"], 1, "{third}");

    let open = open_exceptions(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["kind"], "unknown_payment");
    let books = balanced_books(&app).await;
    assert_eq!(balance_in(&books, "provider_clearing", "KRW"), 0, "{books}");
    assert_eq!(balance_in(&books, "bank", "KRW"), 7_000 - 246, "{books}");
    let projection = payledger_read_models::projection_named("reconciliation").unwrap();
    let report = payledger_projector::verify(&app.app_pool, projection.as_ref())
        .await
        .unwrap();
    assert!(report.matches(), "{report:?}");
}
