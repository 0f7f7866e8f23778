//! Issue 18's "Done means", end to end over HTTP on the sandbox and the scenario clock: a week
//! of Toss, Stripe and Paddle payments and refunds (a Paddle refund approved in Paddle settled as
//! a line of the payout it came off; a Paddle-billed subscription's first
//! payment and its renewal, and a membership charged on a Toss billing key) → each provider's settlement report imported, twice, with one
//! effect → `provider_clearing` closed for every matched payment → each planted discrepancy
//! flagged exactly once: short payout and unexpected fee on the right order's timeline, a Toss
//! payment paid out 3 days late (`late_payout`) and a Stripe capture never settled
//! (`unsettled_capture`, from the unsettled check past Stripe's delay on the scenario clock) on
//! theirs, the unknown payment on its line, and Paddle's missing and late payment as its
//! payouts' differences (`payout_mismatch`: Paddle's API states its payouts and each
//! transaction's earnings, not which payout paid which transaction) → an admin resolves each
//! with an audited note (accepted difference, write-off, claim against the provider) → the trial
//! balance balances, the clearing account is empty and the log and the journal verify.

use crate::paddle_steps::{
    paddle_approves, paddle_charges_back, paddle_refund_asked, paid_credit_order, spawn_with_clock,
    subscribe, subscription_until,
};
use crate::reconciliation_steps::{balance_in, balanced_books, import_settlements, json_of};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use payledger_sandbox::SettlementFault;
use payledger_tests::{TestApp, TestProvider};
use serde_json::{json, Value};

/// Saturday 2026-09-05 00:30 UTC: the Paddle subscription's first period starts.
fn subscribed_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 5, 0, 30, 0).unwrap()
}

/// Monday 2026-10-05 01:00 UTC (10:00 in Seoul): the week of payments starts, a month after the
/// subscription, so Paddle bills its renewal that morning.
fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 1, 0, 0).unwrap()
}

/// On the scenario clock from [`subscribed_at`], its sandbox's Paddle notifying it.
async fn spawn() -> TestApp {
    spawn_with_clock(Some(subscribed_at())).await
}

async fn set_clock(app: &TestApp, to: DateTime<Utc>) {
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
}

/// The customer's refund asked in Paddle and approved by Paddle (through the sandbox's
/// controls); waits until the ledger recorded it on the order. Answers the adjustment id.
async fn paddle_refunded(app: &TestApp, order_id: &str, txn: &str) -> String {
    let asked = paddle_refund_asked(app, txn, "not needed").await;
    let adjustment_id = asked["id"].as_str().unwrap().to_owned();
    paddle_approves(app, &adjustment_id, json!({})).await;
    let mut order = Value::Null;
    for _ in 0..150 {
        order = app
            .get_as(&app.support_key, &format!("/v1/orders/{order_id}"))
            .await
            .json()
            .await
            .unwrap();
        if order["refundedAmount"] == 1000 {
            return adjustment_id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the Paddle refund was never recorded: {order}");
}

/// The customer's bank takes a Paddle payment back (a chargeback, through the sandbox's
/// controls); waits until the ledger recorded the lost dispute on the order.
async fn paddle_charged_back(app: &TestApp, order_id: &str, txn: &str) {
    paddle_charges_back(app, txn).await;
    let mut order = Value::Null;
    for _ in 0..150 {
        order = app
            .get_as(&app.support_key, &format!("/v1/orders/{order_id}"))
            .await
            .json()
            .await
            .unwrap();
        // The dispute opened already refuses refunds: wait for it to be lost too.
        if order["refundableAmount"] == 0
            && timeline_summaries(app, order_id)
                .await
                .iter()
                .any(|s| s.starts_with("dispute ") && s.contains(" lost: "))
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the Paddle chargeback was never recorded: {order}");
}

/// Polls the subscription until it has paid `cycles` periods (Paddle's notifications are
/// applied in the background).
async fn until_paid_cycles(app: &TestApp, id: &str, cycles: i64) {
    subscription_until(app, id, &format!("paid {cycles} period(s)"), |s| {
        s["paidCycles"] == cycles
    })
    .await;
}

async fn toss_paid(app: &TestApp, order_id: &str, amount: i64) {
    app.place_order_with(TestProvider::Toss, order_id, amount)
        .await;
    let (status, body) = json_of(
        app.confirm(order_id, &format!("pk_{order_id}"), amount)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn stripe_paid(app: &TestApp, order_id: &str, amount: i64) {
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
}

async fn refund(app: &TestApp, order_id: &str, amount: i64) {
    let (status, body) = json_of(
        app.post(
            &format!("/v1/orders/{order_id}/refunds"),
            &json!({"amount": amount, "reason": "one session cancelled"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Imports every provider's settlements of two windows (the subscription's first payout a
/// month back, and the week) and answers the summaries.
async fn import_all(app: &TestApp) -> Vec<Value> {
    let windows = [
        (
            NaiveDate::from_ymd_opt(2026, 9, 5).unwrap(),
            NaiveDate::from_ymd_opt(2026, 10, 4).unwrap(),
        ),
        (
            NaiveDate::from_ymd_opt(2026, 10, 5).unwrap(),
            NaiveDate::from_ymd_opt(2026, 10, 14).unwrap(),
        ),
    ];
    let mut summaries = Vec::new();
    for provider in ["toss", "stripe", "paddle"] {
        for (from, to) in windows {
            let (status, body) =
                import_settlements(app, &json!({"provider": provider, "from": from, "to": to}))
                    .await;
            assert_eq!(status, 200, "{provider} {from}: {body}");
            summaries.push(body);
        }
    }
    summaries
}

fn total(summaries: &[Value], field: &str) -> i64 {
    summaries.iter().map(|s| s[field].as_i64().unwrap()).sum()
}

fn flags(summaries: &[Value]) -> std::collections::BTreeMap<String, i64> {
    let mut all = std::collections::BTreeMap::new();
    for summary in summaries {
        for (kind, count) in summary["flags"].as_object().unwrap() {
            *all.entry(kind.clone()).or_default() += count.as_i64().unwrap();
        }
    }
    all
}

async fn reconciliation_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id LIKE 'reconciliation-%'")
        .fetch_one(&app.app_pool)
        .await
        .unwrap()
}

async fn trial_balance(app: &TestApp) -> Value {
    app.wait_for_projections().await;
    balanced_books(app).await
}

/// `GET /v1/reconciliation`'s aged `provider_clearing` (`agedClearing`), as it stands now.
async fn aged_clearing(app: &TestApp) -> Value {
    app.wait_for_projections().await;
    let (status, report) = json_of(
        app.get_as(
            &app.auditor_key,
            "/v1/reconciliation?from=2026-09-05&to=2026-10-14",
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    report
}

/// What `agedClearing` says `provider` owes in `currency` (0 when it is not listed).
fn aged_total(report: &Value, provider: &str, currency: &str) -> i64 {
    report["agedClearing"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["provider"] == provider && a["currency"] == currency)
        .map(|a| {
            let total = a["totalMinor"].as_i64().unwrap();
            // The age buckets (every other `…Minor` field) add up to the total.
            let buckets: i64 = a
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.ends_with("Minor") && k.as_str() != "totalMinor")
                .map(|(_, v)| v.as_i64().unwrap())
                .sum();
            assert_eq!(buckets, total, "{a}");
            total
        })
        .sum()
}

/// The aged `provider_clearing`, summed over the providers, is the journal's
/// `provider_clearing` balance in every currency at the same moment; answers the report.
async fn aged_clearing_is_the_journal(app: &TestApp, moment: &str) -> Value {
    let books = trial_balance(app).await;
    let report = aged_clearing(app).await;
    for currency in ["KRW", "USD"] {
        let aged: i64 = ["toss", "stripe", "paddle"]
            .iter()
            .map(|provider| aged_total(&report, provider, currency))
            .sum();
        assert_eq!(
            aged,
            balance_in(&books, "provider_clearing", currency),
            "{moment}, {currency}: {report} against {books}"
        );
    }
    let listed: Vec<&str> = report["agedClearing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["provider"].as_str().unwrap())
        .collect();
    assert!(
        listed
            .iter()
            .all(|p| ["toss", "stripe", "paddle"].contains(p)),
        "{moment}: {report}"
    );
    report
}

async fn timeline_summaries(app: &TestApp, order_id: &str) -> Vec<String> {
    let timeline: Value = app
        .get_as(&app.support_key, &format!("/v1/orders/{order_id}/timeline"))
        .await
        .json()
        .await
        .unwrap();
    timeline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["summary"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_week_of_toss_stripe_and_paddle_money_reconciles_and_every_planted_discrepancy_is_resolved(
) {
    let app = spawn().await;

    // A month back: a Paddle-billed membership starts (its first payment, 990 USD cents).
    let subscription_id = subscribe(&app, "cust_1").await.id;

    // Monday: Paddle renews the membership by itself; the week's payments.
    set_clock(&app, monday()).await;
    until_paid_cycles(&app, &subscription_id, 2).await;
    toss_paid(&app, "week-toss-1", 50_000).await;
    toss_paid(&app, "week-toss-2", 30_000).await;
    stripe_paid(&app, "week-stripe-1", 10_000).await;
    stripe_paid(&app, "week-stripe-2", 5_000).await;
    // One Toss payment Toss pays out late, one Stripe charge Stripe never pays out (planted below).
    toss_paid(&app, "week-toss-late", 20_000).await;
    stripe_paid(&app, "week-stripe-missing", 4_000).await;
    // A membership payledger bills on a Toss billing key, charged at its start.
    let (status, key) = json_of(
        app.post(
            "/v1/billing-keys",
            &json!({"customerId": "cust_member", "authKey": "bln_week_1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let (status, started) = json_of(
        app.post(
            "/v1/subscriptions",
            &json!({"subscriptionId": "sub_week_toss", "customerId": "cust_member",
                    "planId": "standard", "amount": 9900, "currency": "KRW",
                    "interval": "month", "billingKeyId": key["billingKeyId"],
                    "orderName": "Standard membership"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["paidCycles"], 1, "{started}");
    let paddle_clean = paid_credit_order(&app, "week-paddle-clean").await;
    let paddle_short = paid_credit_order(&app, "week-paddle-short").await;
    let paddle_late = paid_credit_order(&app, "week-paddle-late").await;
    let paddle_fee = paid_credit_order(&app, "week-paddle-fee").await;
    let paddle_missing = paid_credit_order(&app, "week-paddle-missing").await;
    assert!(paddle_clean.starts_with("txn_"));
    // A payment Toss processed that the ledger never heard of.
    let stranger = app
        .client
        .post(format!("{}/v1/payments/confirm", app.sandbox.base_url()))
        .basic_auth(payledger_sandbox::DEFAULT_SECRET_KEY, Some(""))
        .json(
            &json!({"paymentKey": "pk_week_stranger", "orderId": "week-stranger-1",
                      "amount": 7_000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status().as_u16(), 200);
    // The planted discrepancies (docs/operations.md): a late Toss payment (keyed by its payment
    // key), a missing Stripe charge (keyed by its PaymentIntent), and four on Paddle's
    // transactions.
    let plant = |key: &str, fault: SettlementFault| {
        assert!(app.sandbox.set_settlement_fault(key, fault));
    };
    plant(
        "pk_week-toss-late",
        SettlementFault {
            late_days: 3,
            ..Default::default()
        },
    );
    let (status, stripe_missing) = json_of(
        app.get_as(&app.support_key, "/v1/orders/week-stripe-missing")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{stripe_missing}");
    let stripe_missing_intent = stripe_missing["paymentKey"].as_str().unwrap().to_owned();
    assert!(stripe_missing_intent.starts_with("pi_"), "{stripe_missing}");
    plant(
        &stripe_missing_intent,
        SettlementFault {
            missing: true,
            ..Default::default()
        },
    );
    plant(
        &paddle_short,
        SettlementFault {
            short_minor: 40,
            ..Default::default()
        },
    );
    plant(
        &paddle_late,
        SettlementFault {
            late_days: 3,
            ..Default::default()
        },
    );
    plant(
        &paddle_fee,
        SettlementFault {
            extra_fee_minor: 25,
            ..Default::default()
        },
    );
    plant(
        &paddle_missing,
        SettlementFault {
            missing: true,
            ..Default::default()
        },
    );

    // Before any settlement: Paddle owes the orders' captures and the membership's two periods
    // less the fee Paddle kept (posted when they were charged); Toss the billing-key charge too.
    app.wait_for_projections().await;
    let (status, owed) = json_of(
        app.get_as(
            &app.auditor_key,
            "/v1/reconciliation?provider=paddle&from=2026-09-05&to=2026-10-14",
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{owed}");
    let aged = |report: &Value, provider: &str, currency: &str| -> i64 {
        report["agedClearing"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["provider"] == provider && a["currency"] == currency)
            .map(|a| a["totalMinor"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(aged(&owed, "paddle", "USD"), 5 * 1_000 + 2 * 891, "{owed}");
    assert_eq!(
        aged(&owed, "toss", "KRW"),
        50_000 + 30_000 + 20_000 + 9_900,
        "{owed}"
    );

    // Still Monday: the customer of week-paddle-clean asks Paddle for a refund, which Paddle
    // approves at once; Paddle takes it from Monday's balance (its payout is 1 000 less).
    let paddle_refund = paddle_refunded(&app, "week-paddle-clean", &paddle_clean).await;
    assert!(paddle_refund.starts_with("adj_"), "{paddle_refund}");
    // And one paid that the customer's bank takes back the same day: Paddle takes the amount
    // and its chargeback fee (1 500) from Monday's balance.
    let paddle_disputed = paid_credit_order(&app, "week-paddle-chargeback").await;
    paddle_charged_back(&app, "week-paddle-chargeback", &paddle_disputed).await;
    // The chargeback took the payment (1 000) and its fee (1 500) out of what Paddle owes, as
    // the journal posts the lost dispute; the refund took its 1 000.
    let owed = aged_clearing_is_the_journal(&app, "after the Paddle chargeback").await;
    assert_eq!(
        aged_total(&owed, "paddle", "USD"),
        5 * 1_000 + 2 * 891 - 1_000 - 1_500,
        "{owed}"
    );

    // Tuesday: refunds on Toss and Stripe.
    set_clock(&app, monday() + Duration::days(1)).await;
    refund(&app, "week-toss-1", 20_000).await;
    refund(&app, "week-stripe-1", 3_000).await;

    // The next Monday: every payout of the week has come (the late one too).
    set_clock(&app, monday() + Duration::days(7)).await;
    let first = import_all(&app).await;
    // Toss: 3 payments (the late one's line has come, 3 days late) + 1 refund + the
    // billing-key membership charge + the stranger; Stripe: 2 charges + 1 refund (the missing
    // charge is in no payout); Paddle: the subscription's 2 payments + the 5 orders billed in the
    // balances its payouts closed (Paddle does not say which payout paid which transaction, so
    // the missing and the late one are lines of Monday's payout, which is short of them) + the
    // refund Paddle approved in Monday's balance, matched to the order's refund + the charged
    // back order's payment and its chargeback, matched to the order's lost dispute.
    // Every subscription payment is matched to its subscription.
    assert_eq!(total(&first, "lines"), 6 + 3 + 10, "{first:?}");
    assert_eq!(total(&first, "matched"), 5 + 3 + 10, "{first:?}");
    assert_eq!(total(&first, "unmatched"), 1, "{first:?}");
    let expected_flags: std::collections::BTreeMap<String, i64> = [
        ("fee_mismatch", 1),
        ("late_payout", 1),
        ("payout_mismatch", 2),
        ("short_payout", 1),
        ("unknown_payment", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(flags(&first), expected_flags, "{first:?}");

    // The same reports again: one effect.
    let recorded = reconciliation_events(&app).await;
    let again = import_all(&app).await;
    assert_eq!(total(&again, "alreadyImported"), 19, "{again:?}");
    assert_eq!(total(&again, "matched"), 0, "{again:?}");
    assert!(flags(&again).is_empty(), "{again:?}");
    assert_eq!(reconciliation_events(&app).await, recorded);

    // Captures not settled past the delay: Stripe's missing charge only (Toss's late line has
    // come; Paddle's missing payment is a line of the payout of its balance; the payout's
    // shortfall is the flag). Checked twice: flagged once.
    let now = monday() + Duration::days(7);
    for run in 0..2 {
        for (provider, expected) in [("toss", 0), ("stripe", 1), ("paddle", 0)] {
            let expected = if run == 0 { expected } else { 0 };
            let (status, checked) = json_of(
                app.post_as(
                    &app.admin_key,
                    "/v1/admin/reconciliation/unsettled-checks",
                    &json!({"provider": provider, "asOf": now}),
                )
                .await,
            )
            .await;
            assert_eq!(status, 200, "{checked}");
            assert_eq!(
                checked["flagged"], expected,
                "{provider} run {run}: {checked}"
            );
        }
    }

    // The aged clearing says the same, per provider: Paddle owes the short payout's 40 (its
    // charged-back order closed by the chargeback line), Stripe its unsettled charge.
    let owed = aged_clearing_is_the_journal(&app, "after the imports").await;
    assert_eq!(aged_total(&owed, "paddle", "USD"), 40, "{owed}");
    assert_eq!(aged_total(&owed, "stripe", "USD"), 4_000, "{owed}");
    assert_eq!(aged_total(&owed, "toss", "KRW"), 0, "{owed}");

    // Clearing: every matched payment closed; what is left is exactly what Paddle itemised
    // short — the short payout's 40 (USD) — and Stripe's unsettled charge (4 000 USD); nothing
    // in KRW. (Paddle's missing and late payment's earnings are the payouts' differences: money
    // the bank did not receive, flagged.)
    let books = trial_balance(&app).await;
    assert_eq!(balance_in(&books, "provider_clearing", "KRW"), 0, "{books}");
    assert_eq!(
        balance_in(&books, "provider_clearing", "USD"),
        40 + 4_000,
        "{books}"
    );
    // Toss kept 3.2 % + 10 % VAT of each payment and gave it back on the refund's amount.
    assert_eq!(
        balance_in(&books, "provider_fees", "KRW"),
        (1_600 + 160) + (960 + 96) + (640 + 64) + (316 + 31) - (640 + 64),
        "{books}"
    );
    // Paddle kept 5 % + 50 of each payment (its fee on the subscription's two periods posted
    // once, when they were charged), plus the planted 25; Stripe 2.9 % + 30 of each settled
    // charge (none on the missing one).
    // (Paddle's chargeback fee is the lost dispute's, in dispute_fees.)
    assert_eq!(
        balance_in(&books, "provider_fees", "USD"),
        2 * 99 + 6 * 100 + 25 + (320 + 175),
        "{books}"
    );

    // Each planted discrepancy exactly once, on the right order.
    app.wait_for_projections().await;
    let (status, listed) = json_of(
        app.get_as(&app.support_key, "/v1/reconciliation/exceptions")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let open = listed["exceptions"].as_array().unwrap().clone();
    let mut found: Vec<(String, String, String)> = open
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["provider"].as_str().unwrap().to_owned(),
                e["orderId"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(String, String, String)> = [
        ("fee_mismatch", "paddle", "week-paddle-fee"),
        ("late_payout", "toss", "week-toss-late"),
        ("payout_mismatch", "paddle", "-"),
        ("payout_mismatch", "paddle", "-"),
        ("short_payout", "paddle", "week-paddle-short"),
        ("unknown_payment", "toss", "-"),
        ("unsettled_capture", "stripe", "week-stripe-missing"),
    ]
    .iter()
    .map(|(k, p, o)| (k.to_string(), p.to_string(), o.to_string()))
    .collect();
    assert_eq!(found, expected, "{open:?}");
    for (kind, _, order) in &expected {
        if order == "-" {
            continue;
        }
        let summaries = timeline_summaries(&app, order).await;
        let on_timeline = summaries
            .iter()
            .filter(|s| s.starts_with(&format!("reconciliation flag {kind}")))
            .count();
        assert_eq!(on_timeline, 1, "{order}: {summaries:?}");
    }
    let short = open.iter().find(|e| e["kind"] == "short_payout").unwrap();
    assert_eq!(
        (
            short["expectedMinor"].as_i64(),
            short["actualMinor"].as_i64()
        ),
        (Some(900), Some(860)),
        "{short}"
    );
    // Monday's payout: the earnings of the renewal and the 5 orders as itemised (891 + 900 +
    // 860 + 900 + 875 + 900), plus the charged-back order's 900, less the refund Paddle took
    // back (1 000) and the chargeback with its fee (1 000 + 1 500), paid without the late
    // and the missing one's 900 each; the late one came 3 days later in a payout of its own,
    // whose balance held no transaction.
    let mut payouts: Vec<(Option<i64>, Option<i64>)> = open
        .iter()
        .filter(|e| e["kind"] == "payout_mismatch")
        .map(|e| (e["expectedMinor"].as_i64(), e["actualMinor"].as_i64()))
        .collect();
    payouts.sort();
    assert_eq!(
        payouts,
        vec![(Some(0), Some(900)), (Some(2_726), Some(926))],
        "{open:?}"
    );
    let fee = open.iter().find(|e| e["kind"] == "fee_mismatch").unwrap();
    assert_eq!(
        (fee["expectedMinor"].as_i64(), fee["actualMinor"].as_i64()),
        (Some(100), Some(125)),
        "{fee}"
    );
    // The late Toss line: 3 days late. The unsettled Stripe charge: its whole capture owed.
    let late = open.iter().find(|e| e["kind"] == "late_payout").unwrap();
    assert_eq!(late["actualMinor"].as_i64(), Some(3), "{late}");
    let unsettled = open
        .iter()
        .find(|e| e["kind"] == "unsettled_capture")
        .unwrap();
    assert_eq!(
        (
            unsettled["expectedMinor"].as_i64(),
            unsettled["currency"].as_str()
        ),
        (Some(4_000), Some("USD")),
        "{unsettled}"
    );

    // The refund's line is on its order's timeline, settled (taken from Monday's payout).
    let summaries = timeline_summaries(&app, "week-paddle-clean").await;
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("paddle settled refund -1000 USD: fee 0, paid out -1000")),
        "{summaries:?}"
    );

    // The report: Paddle's days hold the subscription's two payments, the six orders, the
    // refund and the chargeback.
    let (status, report) = json_of(
        app.get_as(
            &app.auditor_key,
            "/v1/reconciliation?provider=paddle&from=2026-09-05&to=2026-10-14",
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let days = report["days"].as_array().unwrap();
    let sum = |field: &str| -> i64 { days.iter().map(|d| d[field].as_i64().unwrap()).sum() };
    assert_eq!(sum("lines"), 10, "{report}");
    assert_eq!(sum("unmatchedLines"), 0, "{report}");
    assert_eq!(
        sum("settledMinor"),
        2 * 990 + 6 * 1_000 - 1_000 - 1_000,
        "{report}"
    );
    assert_eq!(
        sum("payoutsMinor"),
        2 * 891 + 900 + 860 + 900 + 875 + 900 + 900 - 1_000 - (1_000 + 1_500),
        "{report}"
    );
    // The day counts its lines' flags (short, fee); the payouts' are in the exceptions.
    assert_eq!(sum("discrepancies"), 2, "{report}");

    // An admin resolves each with a note: the shortfall and the unsettled charge written off,
    // the fee and the late payout accepted, the payouts' differences and the stranger claimed
    // from the providers.
    for exception in &open {
        let resolution = match exception["kind"].as_str().unwrap() {
            "short_payout" | "unsettled_capture" => "write_off",
            "late_payout" | "fee_mismatch" => "accepted_difference",
            _ => "claim_against_provider",
        };
        let path = format!(
            "/v1/reconciliation/exceptions/{}/{}/resolve",
            exception["streamId"].as_str().unwrap(),
            exception["kind"].as_str().unwrap()
        );
        let body = json!({"resolution": resolution, "note": "finance review, week 41"});
        let (status, answer) = json_of(app.post_as(&app.admin_key, &path, &body).await).await;
        assert_eq!(status, 200, "{answer}");
    }
    app.wait_for_projections().await;
    let (_, all) = json_of(
        app.get_as(&app.support_key, "/v1/reconciliation/exceptions?status=all")
            .await,
    )
    .await;
    let resolved = all["exceptions"].as_array().unwrap();
    assert_eq!(resolved.len(), 7, "{all}");
    assert!(
        resolved
            .iter()
            .all(|e| e["resolvedBy"] == "admin:ops" && e["note"] == "finance review, week 41"),
        "{all}"
    );
    for (order, kind, resolution) in [
        ("week-paddle-short", "short_payout", "write_off"),
        ("week-toss-late", "late_payout", "accepted_difference"),
        ("week-stripe-missing", "unsettled_capture", "write_off"),
    ] {
        let summaries = timeline_summaries(&app, order).await;
        let wanted = format!("reconciliation flag {kind} resolved: {resolution}");
        assert!(summaries.contains(&wanted), "{order}: {summaries:?}");
    }

    // The books: balanced, the clearing account empty in every currency, the losses (the
    // shortfall and the unsettled charge) written off.
    let books = trial_balance(&app).await;
    assert_eq!(balance_in(&books, "provider_clearing", "KRW"), 0, "{books}");
    assert_eq!(balance_in(&books, "provider_clearing", "USD"), 0, "{books}");
    assert_eq!(
        balance_in(&books, "reconciliation_write_offs", "USD"),
        40 + 4_000,
        "{books}"
    );
    // Written off, nothing is owed any more: the aged clearing is empty too.
    let owed = aged_clearing_is_the_journal(&app, "after the write-offs").await;
    assert_eq!(owed["agedClearing"], json!([]), "{owed}");

    // The log verifies (what `payledger audit verify` runs), the journal against it, and the
    // read models are their rebuild.
    let chains = payledger_store::audit::verify_all(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(chains.first_problem, None);
    let journal = payledger_read_models::journal::verify(&app.app_pool)
        .await
        .unwrap();
    assert!(journal.mismatches.is_empty(), "{:?}", journal.mismatches);
    assert!(journal.unbalanced_entries.is_empty());
    for projection in ["reconciliation", "journal", "orders"] {
        let projection = payledger_read_models::projection_named(projection).unwrap();
        let report = payledger_projector::verify(&app.app_pool, projection.as_ref())
            .await
            .unwrap();
        assert!(report.matches(), "{report:?}");
    }
}
