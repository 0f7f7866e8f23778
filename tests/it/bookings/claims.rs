//! Claims through the API: filing windows, statements and the deadline, assignment, resolution
//! driving refunds and warnings through the process manager, appeal, the queue and statistics.

use super::*;
use payledger_app::context::RequestContext;
use payledger_app::executor::{AggregateCache, Executor};
use payledger_domain::ids::RefundId;
use payledger_domain::order::{self, Order, OrderCommand, RefundStatus};
use payledger_store::{EventStore, WriterConfig};
use payledger_tests::event_types;

fn file_body(
    claim_id: &str,
    order_id: &str,
    claim_type: &str,
    filed_by: &str,
    evidence: &[&str],
) -> Value {
    json!({
        "claimId": claim_id,
        "orderId": order_id,
        "type": claim_type,
        "filedBy": filed_by,
        "description": "the therapist did not come and did not call",
        "evidence": evidence,
    })
}

async fn resolve(app: &BookingApp, claim_id: &str, body: Value) -> Answer {
    app.admin(&format!("/v1/claims/{claim_id}/resolve"), &body)
        .await
}

#[tokio::test]
async fn filing_windows_open_15_and_10_minutes_after_the_start() {
    let app = spawn().await;
    let starts = t0() + Duration::hours(5);
    app.paid_booking("window-order", 80_000, starts).await;

    app.clock
        .set(starts + Duration::minutes(15) - Duration::seconds(1));
    let early = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-early",
                "window-order",
                "PROVIDER_NO_SHOW",
                "customer",
                &[],
            ),
        )
        .await;
    assert_eq!(
        (early.status, early.body["code"].as_str()),
        (409, Some("E_CLAIM_WINDOW_NOT_OPEN"))
    );
    let opens_at = DateTime::parse_from_rfc3339(early.body["opensAt"].as_str().unwrap()).unwrap();
    assert_eq!(opens_at, starts + Duration::minutes(15));

    app.clock
        .set(starts + Duration::minutes(10) - Duration::seconds(1));
    let provider_early = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-cust-early",
                "window-order",
                "CUSTOMER_NO_SHOW",
                "provider",
                &["photo-1"],
            ),
        )
        .await;
    assert_eq!(provider_early.body["code"], "E_CLAIM_WINDOW_NOT_OPEN");

    app.clock.set(starts + Duration::minutes(10));
    let without_evidence = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-cust",
                "window-order",
                "CUSTOMER_NO_SHOW",
                "provider",
                &[],
            ),
        )
        .await;
    assert_eq!(
        (
            without_evidence.status,
            without_evidence.body["code"].as_str()
        ),
        (400, Some("E_EVIDENCE_REQUIRED"))
    );
    let wrong_side = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-cust",
                "window-order",
                "CUSTOMER_NO_SHOW",
                "customer",
                &["x"],
            ),
        )
        .await;
    assert_eq!(wrong_side.body["code"], "E_CLAIM_WRONG_CLAIMANT");
    let customer_no_show = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-cust",
                "window-order",
                "CUSTOMER_NO_SHOW",
                "provider",
                &["gps:37.56,126.97", "photo-door"],
            ),
        )
        .await;
    assert_eq!(customer_no_show.status, 201, "{}", customer_no_show.body);
    assert_eq!(
        customer_no_show.body["evidence"],
        json!(["gps:37.56,126.97", "photo-door"])
    );

    app.clock.set(starts + Duration::minutes(15));
    let on_time = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-provider",
                "window-order",
                "PROVIDER_NO_SHOW",
                "customer",
                &[],
            ),
        )
        .await;
    assert_eq!(on_time.status, 201, "{}", on_time.body);
    assert_eq!(on_time.body["status"], "filed");
    assert_eq!(
        DateTime::parse_from_rfc3339(on_time.body["respondBy"].as_str().unwrap()).unwrap(),
        starts + Duration::minutes(15) + Duration::hours(24)
    );
    let again = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-provider",
                "window-order",
                "PROVIDER_NO_SHOW",
                "customer",
                &[],
            ),
        )
        .await;
    assert_eq!(again.body["code"], "E_CLAIM_ALREADY_EXISTS");
}

#[tokio::test]
async fn a_resolution_refunds_once_warns_the_provider_and_three_warnings_suspend_them() {
    let app = spawn().await;
    let starts = t0() + Duration::hours(2);
    for n in 1..=3 {
        app.paid_booking(&format!("noshow-{n}"), 80_000, starts + Duration::hours(n))
            .await;
    }
    app.clock.set(starts + Duration::hours(4));
    for n in 1..=3 {
        let claim_id = format!("clm-noshow-{n}");
        let filed = app
            .post(
                "/v1/claims",
                &file_body(
                    &claim_id,
                    &format!("noshow-{n}"),
                    "PROVIDER_NO_SHOW",
                    "customer",
                    &[],
                ),
            )
            .await;
        assert_eq!(filed.status, 201, "{}", filed.body);
        let statement = app
            .post(
                &format!("/v1/claims/{claim_id}/statements"),
                &json!({"side": "respondent", "text": "a traffic accident", "evidence": ["photo-accident"]}),
            )
            .await;
        assert_eq!(statement.status, 201, "{}", statement.body);
        // Only an admin assigns and resolves.
        let by_client = app
            .post(
                &format!("/v1/claims/{claim_id}/assign"),
                &json!({"adminId": "ops"}),
            )
            .await;
        assert_eq!(by_client.status, 403);
        let assigned = app
            .admin(&format!("/v1/claims/{claim_id}/assign"), &json!({}))
            .await;
        assert_eq!(
            (assigned.status, assigned.body["assignedTo"].as_str()),
            (200, Some("ops"))
        );
    }
    app.advance(Duration::hours(2));
    let uneven = resolve(
        &app,
        "clm-noshow-1",
        json!({"outcome": "split", "reason": "no prior contact", "refundAmount": 50000, "providerPayoutAmount": 20000}),
    )
    .await;
    assert_eq!(
        (
            uneven.status,
            uneven.body["code"].as_str(),
            uneven.body["amountAtStake"].as_i64()
        ),
        (400, Some("E_RESOLUTION_INVALID"), Some(80_000))
    );
    for n in 1..=3 {
        let resolved = resolve(
            &app,
            &format!("clm-noshow-{n}"),
            json!({
                "outcome": "split",
                "reason": "the accident is accepted, but nobody was told",
                "refundAmount": 40001,
                "providerPayoutAmount": 39999,
                "coupon": "FREE_SESSION_1",
                "penalties": ["warning"],
            }),
        )
        .await;
        assert_eq!(resolved.status, 200, "{}", resolved.body);
        assert_eq!(resolved.body["decision"]["additionalRefundAmount"], 40_001);
    }
    app.settle().await;

    for n in 1..=3 {
        let order = app.order_state(&format!("noshow-{n}")).await;
        let refund_id = RefundId::parse(format!("claim-clm-noshow-{n}-1")).unwrap();
        let refund = order.refunds.get(&refund_id).expect("the claim's refund");
        assert_eq!(
            (refund.amount_minor, refund.status),
            (40_001, RefundStatus::Completed)
        );
        assert_eq!(order.refunds.len(), 1);
    }
    let payee = app
        .get_as(&app.auditor_key, &format!("/v1/streams/payee-{THERAPIST}"))
        .await;
    let kinds = event_types(&payee.body["events"]);
    assert_eq!(
        kinds,
        vec![
            "PayeeWarned",
            "PayeeWarned",
            "PayeeWarned",
            "PayeeSuspended"
        ]
    );
    let suspended = &payee.body["events"][3]["payload"];
    let from = DateTime::parse_from_rfc3339(suspended["from"].as_str().unwrap()).unwrap();
    let until = DateTime::parse_from_rfc3339(suspended["until"].as_str().unwrap()).unwrap();
    assert_eq!(until - from, Duration::days(7));

    // While suspended the provider takes no booking; nothing is recorded for the refused one.
    let refused = app
        .post(
            "/v1/orders",
            &json!({"orderId": "during-suspension", "amount": 80_000, "currency": "KRW",
                    "customerId": "parent-lee", "payeeId": THERAPIST,
                    "orderName": "Speech therapy session",
                    "serviceStartsAt": (app.clock.now() + Duration::days(2)).to_rfc3339()}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (409, Some("E_PAYEE_SUSPENDED")),
        "{}",
        refused.body
    );
    assert_eq!(refused.body["suspendedUntil"], suspended["until"]);
    let nothing = app
        .get_as(&app.auditor_key, "/v1/streams/order-during-suspension")
        .await;
    assert_eq!(nothing.status, 404, "{}", nothing.body);
    // The rule is the application layer's, so a booking that comes through another door than
    // the HTTP API (an operator tool, a process manager) is refused the same way.
    let direct = app
        .payments
        .place_order(
            payledger_app::payments::PlaceOrderInput {
                order_id: Some(
                    payledger_domain::ids::OrderId::parse("through-another-door").unwrap(),
                ),
                amount: payledger_domain::money::Money::new(
                    80_000,
                    payledger_domain::money::Currency::KRW,
                )
                .unwrap(),
                customer_id: payledger_domain::ids::CustomerId::parse("parent-lee").unwrap(),
                payee_id: payledger_domain::ids::PayeeId::parse(THERAPIST).unwrap(),
                order_name: "Speech therapy session".into(),
                service_starts_at: Some(app.clock.now() + Duration::days(2)),
                provider: None,
            },
            &RequestContext::system("architecture-check"),
        )
        .await;
    assert!(
        matches!(
            direct,
            Err(payledger_app::payments::PaymentError::BookingsSuspended { .. })
        ),
        "{direct:?}"
    );
    // Seven days later it takes bookings again.
    app.clock
        .set(until.with_timezone(&chrono::Utc) + Duration::minutes(1));
    app.place_booking(
        "after-suspension",
        "parent-lee",
        80_000,
        app.clock.now() + Duration::days(2),
    )
    .await;

    // The queue, a detail and the statistics.
    let queue = app
        .get_as(
            &app.support_key,
            "/v1/claims?status=resolved&type=PROVIDER_NO_SHOW",
        )
        .await;
    assert_eq!(
        queue.body["claims"].as_array().unwrap().len(),
        3,
        "{}",
        queue.body
    );
    let detail = app
        .get_as(&app.support_key, "/v1/claims/clm-noshow-2")
        .await;
    assert_eq!(
        detail.body["respondentStatement"]["text"],
        "a traffic accident"
    );
    assert_eq!(
        detail.body["respondentStatement"]["evidence"],
        json!(["photo-accident"])
    );
    assert_eq!(detail.body["decision"]["coupon"], "FREE_SESSION_1");
    assert_eq!(detail.body["decision"]["penalties"], json!(["warning"]));
    let stats = app.get_as(&app.support_key, "/v1/claims/stats").await;
    assert_eq!(stats.body["resolved"], 3, "{}", stats.body);
    assert_eq!(
        stats.body["byTypeAndOutcome"],
        json!([{"type": "PROVIDER_NO_SHOW", "outcome": "split", "count": 3}])
    );
    // Filed at start + 4 h, resolved 2 h later.
    assert_eq!(stats.body["medianSecondsToResolve"], 7200);
    let filtered = app
        .get_as(&app.support_key, "/v1/claims?status=filed")
        .await;
    assert_eq!(filtered.body["claims"], json!([]));
    let bad = app.get_as(&app.support_key, "/v1/claims?status=lost").await;
    assert_eq!(bad.body["code"], "E_INVALID_QUERY");
}

#[tokio::test]
async fn a_missed_respondent_deadline_is_recorded_and_a_late_statement_refused() {
    let app = spawn().await;
    let starts = t0() + Duration::hours(1);
    app.paid_booking("deadline-order", 80_000, starts).await;
    app.clock.set(starts + Duration::minutes(30));
    let filed = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-deadline",
                "deadline-order",
                "PROVIDER_NO_SHOW",
                "customer",
                &[],
            ),
        )
        .await;
    assert_eq!(filed.status, 201);
    app.advance(Duration::hours(24) + Duration::seconds(1));
    let late = app
        .post(
            "/v1/claims/clm-deadline/statements",
            &json!({"side": "respondent", "text": "sorry, I was sick"}),
        )
        .await;
    assert_eq!(
        (late.status, late.body["code"].as_str()),
        (409, Some("E_RESPONSE_WINDOW_CLOSED"))
    );
    let assigned = app
        .admin("/v1/claims/clm-deadline/assign", &json!({}))
        .await;
    assert_eq!(assigned.status, 200);
    assert!(
        assigned.body["deadlineMissedAt"].is_string(),
        "{}",
        assigned.body
    );
    // The claimant may still add to their side.
    let claimant = app
        .post(
            "/v1/claims/clm-deadline/statements",
            &json!({"side": "claimant", "text": "we waited 40 minutes", "evidence": ["call-log-1"]}),
        )
        .await;
    assert_eq!(claimant.status, 201, "{}", claimant.body);
}

/// A support refund was recorded but its provider call never happened (the process died), and
/// then a claim about the same order is resolved with a full refund: the claim's refund waits for
/// the first to settle and refunds only what is left — never more than was captured.
#[tokio::test]
async fn a_claim_resolved_while_its_order_is_being_refunded_refunds_only_what_is_left() {
    let app = spawn().await;
    let starts = t0() + Duration::hours(1);
    app.paid_booking("racing-refunds", 80_000, starts).await;
    app.clock.set(starts + Duration::minutes(20));
    let filed = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-racing",
                "racing-refunds",
                "PROVIDER_NO_SHOW",
                "customer",
                &[],
            ),
        )
        .await;
    assert_eq!(filed.status, 201);

    // Another process records a 30,000 support refund and dies before calling the provider.
    let store = EventStore::new(app.db.app_pool.clone(), WriterConfig::default());
    let executor = Executor::new(store);
    let cache: AggregateCache<Order> = AggregateCache::new(10);
    let order_id = payledger_domain::ids::OrderId::parse("racing-refunds").unwrap();
    executor
        .execute(
            &cache,
            &order::stream_id(&order_id),
            OrderCommand::RequestRefund {
                refund_id: RefundId::parse("support-1").unwrap(),
                amount_minor: Some(30_000),
                reason: "goodwill".into(),
                reason_digest: None,
                at: app.clock.now(),
            },
            &RequestContext::system("crashed-support-tool"),
        )
        .await
        .expect("record the support refund");

    assert_eq!(
        app.admin("/v1/claims/clm-racing/assign", &json!({}))
            .await
            .status,
        200
    );
    let resolved = resolve(
        &app,
        "clm-racing",
        json!({"outcome": "claimant_wins", "reason": "no-show", "refundAmount": 80000, "providerPayoutAmount": 0}),
    )
    .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);

    // The claims process waits while the support refund is in flight.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let waiting = app.order_state("racing-refunds").await;
    assert_eq!(
        waiting.refunds.len(),
        1,
        "nothing else is refunded while one is in flight"
    );

    // The reconciler finishes the support refund; then the claim's refund takes what is left.
    let reconciled = app
        .payments
        .reconcile_order(&order_id, Duration::zero())
        .await
        .expect("reconcile");
    assert!(
        matches!(reconciled, payledger_app::payments::Reconciled::Settled(_)),
        "{reconciled:?}"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let order = app.order_state("racing-refunds").await;
        let claim_refund = RefundId::parse("claim-clm-racing-1").unwrap();
        if order
            .refunds
            .get(&claim_refund)
            .is_some_and(|r| r.status == RefundStatus::Completed)
        {
            assert_eq!(order.refunds[&claim_refund].amount_minor, 50_000);
            assert_eq!(order.refunded_minor, 80_000);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim's refund did not happen: {order:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.settle().await;
    assert_eq!(
        app.sandbox.stats().canceled_amount_by_payment_key["pk_racing-refunds"],
        80_000
    );
    let books = app.trial_balance().await;
    assert_eq!(books["balanced"], true);
    assert_eq!(balance(&books, "provider_clearing"), 0);
    assert_eq!(balance(&books, "customer_refunds"), 0);
}

#[tokio::test]
async fn an_appeal_raises_the_refund_by_the_difference_only() {
    let app = spawn().await;
    let starts = t0() + Duration::hours(1);
    app.paid_booking("appealed-order", 80_000, starts).await;
    app.clock.set(starts + Duration::hours(1));
    app.post(
        "/v1/claims",
        &file_body(
            "clm-appeal",
            "appealed-order",
            "SERVICE_QUALITY",
            "customer",
            &[],
        ),
    )
    .await;
    app.admin("/v1/claims/clm-appeal/assign", &json!({})).await;
    let first = resolve(
        &app,
        "clm-appeal",
        json!({"outcome": "split", "reason": "half the session", "refundAmount": 40000, "providerPayoutAmount": 40000}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    app.advance(Duration::days(2));
    let appealed = app
        .post(
            "/v1/claims/clm-appeal/appeal",
            &json!({"side": "claimant", "reason": "it was 10 minutes, not 25"}),
        )
        .await;
    assert_eq!(
        (appealed.status, appealed.body["status"].as_str()),
        (200, Some("appealed"))
    );
    app.admin("/v1/claims/clm-appeal/assign", &json!({})).await;
    let lower = resolve(
        &app,
        "clm-appeal",
        json!({"outcome": "split", "reason": "x", "refundAmount": 30000, "providerPayoutAmount": 50000}),
    )
    .await;
    assert_eq!(lower.body["code"], "E_RESOLUTION_INVALID");
    let second = resolve(
        &app,
        "clm-appeal",
        json!({"outcome": "claimant_wins", "reason": "the recording shows 10 minutes", "refundAmount": 80000, "providerPayoutAmount": 0}),
    )
    .await;
    assert_eq!(
        second.body["decision"]["additionalRefundAmount"], 40_000,
        "{}",
        second.body
    );
    let twice = app
        .post(
            "/v1/claims/clm-appeal/appeal",
            &json!({"side": "respondent", "reason": "again"}),
        )
        .await;
    assert_eq!(twice.body["code"], "E_CLAIM_STATE_CONFLICT");
    app.settle().await;
    let order = app.order_state("appealed-order").await;
    assert_eq!(order.refunded_minor, 80_000);
    assert_eq!(order.refunds.len(), 2);
}

/// The operator console, in headless Chromium: an admin assigns a claim, previews the split,
/// confirms it, and the refund the resolution causes shows on the order's page.
#[tokio::test]
async fn console_resolves_a_claim_and_the_refund_shows_on_the_order() {
    use crate::console::{Browser, DESKTOP, ONE_BROWSER_AT_A_TIME};
    let _one = ONE_BROWSER_AT_A_TIME.lock().await;
    let app = spawn().await;
    let starts = t0() + Duration::hours(2);
    app.paid_booking("console-claim", 80_000, starts).await;
    app.clock.set(starts + Duration::hours(1));
    let filed = app
        .post(
            "/v1/claims",
            &file_body(
                "clm-console",
                "console-claim",
                "PROVIDER_NO_SHOW",
                "customer",
                &["photo-door"],
            ),
        )
        .await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    let statement = app
        .post(
            "/v1/claims/clm-console/statements",
            &json!({"side": "respondent", "text": "a traffic accident", "evidence": ["photo-accident"]}),
        )
        .await;
    assert_eq!(statement.status, 201, "{}", statement.body);
    app.settle().await;

    let browser = Browser::start(&app.address).await;
    browser.sign_in(&app.admin_key).await;
    browser.goto("/console/claims?status=filed").await;
    assert_eq!(
        browser.texts("[data-testid=claim-link]").await,
        ["clm-console"]
    );
    browser.screenshot("claims", DESKTOP).await;
    browser.click("[data-testid=claim-link]").await;
    browser.click("[data-testid=assign]").await;
    assert_eq!(browser.text("[data-testid=detail-assignedTo]").await, "ops");
    browser.click("[data-testid=back]").await;
    assert_eq!(browser.text("[data-testid=assigned-to]").await, "ops");

    app.advance(Duration::hours(2));
    browser.goto("/console/claims/clm-console").await;
    browser.fill("#refund_amount", "50000").await;
    browser.fill("#provider_payout_amount", "30000").await;
    browser
        .fill(
            "#resolve_reason",
            "the accident is accepted, but nobody was told",
        )
        .await;
    browser.click("#outcome option[value=split]").await;
    browser.click("[data-testid=preview-resolution]").await;
    assert_eq!(
        browser.text("[data-testid=preview-refund]").await,
        "50,000 KRW"
    );
    // The refund policy's split beside the decision: filed an hour after the start, the policy
    // refunds nothing (tier NONE), so this decision refunds 50,000 more than the policy.
    assert_eq!(browser.text("[data-testid=policy-tier]").await, "NONE");
    assert_eq!(browser.text("[data-testid=policy-refund]").await, "0 KRW");
    assert_eq!(
        browser.text("[data-testid=policy-payee]").await,
        "80,000 KRW"
    );
    assert_eq!(
        browser.text("[data-testid=preview-against-policy]").await,
        "+50,000 KRW"
    );
    browser.screenshot("claim", DESKTOP).await;
    let problems = crate::console::accessibility_problems(&browser).await;
    assert!(problems.is_empty(), "{problems:?}");
    browser.click("[data-testid=confirm-resolution]").await;
    assert!(!browser.text("[data-testid=result-ok]").await.is_empty());
    app.settle().await;

    browser.goto("/console/claims/clm-console").await;
    assert_eq!(browser.text("[data-testid=claim-status]").await, "resolved");
    assert!(browser
        .text("[data-testid=decision]")
        .await
        .contains("50,000 KRW"));
    browser.click("[data-testid=claim-order]").await;
    assert_eq!(browser.text("[data-testid=refunded]").await, "50,000 KRW");
    browser.close().await;
}
