//! Weekly settlement through the API: fulfilled payments, the platform fee, confirmation that
//! freezes a statement, a payout that closes it, and a late claim carried to the next week.

use super::*;

fn statement_line<'a>(statement: &'a Value, kind: &str) -> Vec<&'a Value> {
    statement["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn a_late_claim_on_a_confirmed_statement_is_carried_to_the_next_one() {
    let app = spawn().await;
    // Week of Monday 2026-10-05 in Seoul; t0 is that Monday 09:00 KST.
    let starts = t0() + Duration::hours(3);
    app.paid_booking("weekly-1", 80_001, starts).await;
    app.paid_booking("weekly-2", 50_000, starts + Duration::hours(2))
        .await;
    app.clock.set(starts + Duration::hours(4));
    for id in ["weekly-1", "weekly-2"] {
        // The provider's session notes, without which the payment would be held.
        let notes = app
            .post(
                &format!("/v1/orders/{id}/session-notes"),
                &json!({"reference": format!("notes/{id}")}),
            )
            .await;
        assert_eq!(notes.status, 200, "{}", notes.body);
        let fulfilled = app
            .post(&format!("/v1/orders/{id}/fulfil"), &json!({}))
            .await;
        assert_eq!(fulfilled.status, 200, "{}", fulfilled.body);
        assert!(fulfilled.body["fulfilledAt"].is_string());
    }
    app.settle().await;
    let statement_id = format!("{THERAPIST}-2026-10-05-KRW");

    // Not before the week is over (Sunday 24:00 KST = Sunday 15:00 UTC).
    let early = app
        .admin(
            &format!("/v1/settlements/{statement_id}/confirm"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (early.status, early.body["code"].as_str()),
        (409, Some("E_STATEMENT_PERIOD_NOT_OVER"))
    );
    let week_end = Utc.with_ymd_and_hms(2026, 10, 11, 15, 0, 0).unwrap();
    assert_eq!(
        DateTime::parse_from_rfc3339(early.body["periodEnd"].as_str().unwrap()).unwrap(),
        week_end
    );

    app.clock.set(week_end + Duration::hours(9));
    let confirmed = app
        .admin(
            &format!("/v1/settlements/{statement_id}/confirm"),
            &json!({}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let totals = &confirmed.body["totals"];
    assert_eq!(totals["payments"], 130_001);
    // 10 % of 130,001 rounds down in the payee's favour.
    assert_eq!(totals["platformFee"], 13_000);
    assert_eq!(totals["netPayable"], 117_001);
    assert_eq!(confirmed.body["status"], "confirmed");

    let wrong = app
        .admin(
            &format!("/v1/settlements/{statement_id}/payout"),
            &json!({"reference": "bank-77", "amount": 117000}),
        )
        .await;
    assert_eq!(
        (
            wrong.status,
            wrong.body["code"].as_str(),
            wrong.body["netPayable"].as_i64()
        ),
        (409, Some("E_PAYOUT_AMOUNT_MISMATCH"), Some(117_001))
    );
    let paid = app
        .admin(
            &format!("/v1/settlements/{statement_id}/payout"),
            &json!({"reference": "bank-77", "amount": 117001}),
        )
        .await;
    assert_eq!(
        (paid.status, paid.body["status"].as_str()),
        (200, Some("paid_out")),
        "{}",
        paid.body
    );

    // A quality claim about weekly-1 after its statement was confirmed and paid.
    let filed = app
        .post(
            "/v1/claims",
            &json!({"claimId": "clm-late", "orderId": "weekly-1", "type": "SERVICE_QUALITY",
                    "filedBy": "customer", "description": "30 of 50 minutes"}),
        )
        .await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    app.settle().await;

    let this_week = &app.statements("2026-10-05").await[0];
    assert_eq!(this_week["status"], "paid_out");
    assert_eq!(
        this_week["totals"]["netPayable"], 117_001,
        "a confirmed statement stays frozen"
    );
    assert!(statement_line(this_week, "hold").is_empty());
    let next_week = app.statements("2026-10-12").await;
    assert_eq!(next_week.len(), 1, "the hold opened next week's statement");
    let holds = statement_line(&next_week[0], "hold");
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0]["amount"], 80_001);
    assert_eq!(holds[0]["carriedFrom"], "2026-10-05");
    assert_eq!(holds[0]["claimId"], "clm-late");

    // Resolved with a partial refund: the hold is released, the refund taken off next week.
    app.admin("/v1/claims/clm-late/assign", &json!({})).await;
    let resolved = app
        .admin(
            "/v1/claims/clm-late/resolve",
            &json!({"outcome": "split", "reason": "a shortened session", "refundAmount": 32000, "providerPayoutAmount": 48001}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    app.settle().await;
    let next_week = &app.statements("2026-10-12").await[0];
    let t = &next_week["totals"];
    assert_eq!(
        (
            t["held"].as_i64(),
            t["released"].as_i64(),
            t["refunds"].as_i64()
        ),
        (Some(80_001), Some(80_001), Some(32_000))
    );
    // The fee on the refunded part is given back: net sales −32,000, fee −3,200.
    assert_eq!(
        (t["netSales"].as_i64(), t["platformFee"].as_i64()),
        (Some(-32_000), Some(-3_200))
    );
    assert_eq!(
        (t["netPayable"].as_i64(), t["carryForward"].as_i64()),
        (Some(0), Some(-28_800))
    );

    // Confirming it carries the negative net to the week after.
    app.clock
        .set(week_end + Duration::days(7) + Duration::hours(1));
    let second = app
        .admin(
            &format!("/v1/settlements/{THERAPIST}-2026-10-12-KRW/confirm"),
            &json!({}),
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.body);
    app.settle().await;
    let third = app.statements("2026-10-19").await;
    let carried = statement_line(&third[0], "carried_balance");
    assert_eq!(carried.len(), 1, "{:?}", third);
    assert_eq!(carried[0]["amount"], -28_800);

    // The books balance. Nothing is settled by the provider yet (no settlement import), so it
    // still holds what was captured and not refunded; the payees were paid from the bank.
    let books = app.trial_balance().await;
    assert_eq!(books["balanced"], true, "{books}");
    assert_eq!(balance(&books, "provider_clearing"), 130_001 - 32_000);
    assert_eq!(balance(&books, "bank"), -117_001);
    assert_eq!(balance(&books, "platform_fee_revenue"), -(13_000 - 3_200));
    assert_eq!(balance(&books, "payouts"), 0);
}

#[tokio::test]
async fn a_late_cancellation_pays_the_provider_share_and_an_early_one_nothing() {
    let app = spawn().await;
    let day = Duration::days(1);
    app.paid_booking("late-cancel", 80_001, t0() + day * 2)
        .await;
    app.paid_booking("early-cancel", 60_000, t0() + day * 5)
        .await;
    // 30 hours before the first, four days and more before the second.
    app.clock.set(t0() + Duration::hours(18));
    let late = app.post("/v1/orders/late-cancel/cancel", &json!({})).await;
    assert_eq!(late.body["tier"], "HALF", "{}", late.body);
    let early = app.post("/v1/orders/early-cancel/cancel", &json!({})).await;
    assert_eq!(early.body["tier"], "FULL", "{}", early.body);
    app.settle().await;
    let week = &app.statements("2026-10-05").await[0];
    let payments = statement_line(week, "payment");
    assert_eq!(
        payments.len(),
        1,
        "only the late cancellation is payable: {week}"
    );
    assert_eq!(payments[0]["orderId"], "late-cancel");
    assert_eq!(week["totals"]["payments"], 80_001);
    assert_eq!(week["totals"]["refunds"], 40_000);
    assert_eq!(week["totals"]["netSales"], 40_001);
}

/// The operator console, in headless Chromium: an admin finds the payee's statement of the
/// week, reads its lines and the hold an open claim put on it, is refused a confirmation
/// before the week is over, confirms it after, and records its payout.
#[tokio::test]
async fn console_confirms_a_statement_and_records_its_payout() {
    use crate::console::{accessibility_problems, Browser, DESKTOP, ONE_BROWSER_AT_A_TIME};
    let _one = ONE_BROWSER_AT_A_TIME.lock().await;
    let app = spawn().await;
    let starts = t0() + Duration::hours(3);
    app.paid_booking("console-week-1", 80_001, starts).await;
    app.paid_booking("console-week-2", 50_000, starts + Duration::hours(2))
        .await;
    app.clock.set(starts + Duration::hours(4));
    for id in ["console-week-1", "console-week-2"] {
        // The provider's session notes, without which the payment would be held.
        let notes = app
            .post(
                &format!("/v1/orders/{id}/session-notes"),
                &json!({"reference": format!("notes/{id}")}),
            )
            .await;
        assert_eq!(notes.status, 200, "{}", notes.body);
        let fulfilled = app
            .post(&format!("/v1/orders/{id}/fulfil"), &json!({}))
            .await;
        assert_eq!(fulfilled.status, 200, "{}", fulfilled.body);
    }
    let filed = app
        .post(
            "/v1/claims",
            &json!({"claimId": "clm-console-hold", "orderId": "console-week-2",
                    "type": "SERVICE_QUALITY", "filedBy": "customer",
                    "description": "20 of 50 minutes"}),
        )
        .await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    app.settle().await;
    let statement_id = format!("{THERAPIST}-2026-10-05-KRW");

    let browser = Browser::start(&app.address).await;
    browser.sign_in(&app.admin_key).await;
    // Without a payee the list is this week's (the scenario clock's week).
    browser.goto("/console/settlements").await;
    assert_eq!(
        browser.texts("[data-testid=statement-link]").await,
        std::slice::from_ref(&statement_id)
    );
    browser
        .goto(&format!("/console/settlements?payee_id={THERAPIST}"))
        .await;
    assert_eq!(
        browser.texts("[data-testid=statement-link]").await,
        std::slice::from_ref(&statement_id)
    );
    browser.screenshot("settlements", DESKTOP).await;
    let problems = accessibility_problems(&browser).await;
    assert!(problems.is_empty(), "{problems:?}");
    browser.click("[data-testid=statement-link]").await;
    assert_eq!(browser.text("[data-testid=statement-status]").await, "open");
    assert_eq!(
        browser.text("[data-testid=total-payments]").await,
        "130,001 KRW"
    );
    let holds = browser.text("[data-testid=holds]").await;
    assert!(
        holds.contains("clm-console-hold") && holds.contains("50,000 KRW"),
        "{holds}"
    );
    assert_eq!(browser.texts("[data-testid=lines] tbody tr").await.len(), 2);

    // Not before the week is over: the API's refusal, in words and code.
    browser.click("[data-testid=confirm-statement]").await;
    let refused = browser.text("[data-testid=result-error]").await;
    assert!(refused.contains("E_STATEMENT_PERIOD_NOT_OVER"), "{refused}");

    app.clock
        .set(Utc.with_ymd_and_hms(2026, 10, 12, 0, 0, 0).unwrap());
    // Sessions expire on the scenario clock too: a week later, sign in again.
    browser.sign_in(&app.admin_key).await;
    browser
        .goto(&format!("/console/settlements/{statement_id}"))
        .await;
    browser.click("[data-testid=confirm-statement]").await;
    assert_eq!(
        browser.text("[data-testid=detail-status]").await,
        "confirmed"
    );
    app.settle().await;
    let net_payable = app.statements("2026-10-05").await[0]["totals"]["netPayable"]
        .as_i64()
        .unwrap();
    browser.click("[data-testid=back]").await;
    assert_eq!(
        browser.text("[data-testid=statement-status]").await,
        "confirmed"
    );
    assert_eq!(
        browser.property("#payout_amount", "value").await,
        net_payable.to_string(),
        "the payout form offers the net payable"
    );
    browser.fill("#payout_reference", "bank-console-77").await;
    browser
        .click("form[action$=\"/payout\"] input[name=confirm]")
        .await;
    browser.click("[data-testid=record-payout]").await;
    assert_eq!(
        browser.text("[data-testid=detail-status]").await,
        "paid_out"
    );
    browser.click("[data-testid=back]").await;
    assert_eq!(
        browser.text("[data-testid=payout-reference]").await,
        "bank-console-77"
    );
    assert!(!browser.exists("[data-testid=record-payout]").await);
    browser.screenshot("statement", DESKTOP).await;
    let problems = accessibility_problems(&browser).await;
    assert!(problems.is_empty(), "{problems:?}");

    app.settle().await;
    let statement = &app.statements("2026-10-05").await[0];
    assert_eq!(
        (
            statement["status"].as_str(),
            statement["payoutReference"].as_str()
        ),
        (Some("paid_out"), Some("bank-console-77"))
    );
    let audit = app
        .get_as(&app.auditor_key, "/v1/streams/audit-admin")
        .await;
    let actions: Vec<(String, String)> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["payload"]["action"].as_str().unwrap_or("").to_string(),
                e["payload"]["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for action in ["confirm", "payout"] {
        let wanted = (
            format!("POST /v1/settlements/{{statement_id}}/{action}"),
            format!("/console/settlements/{statement_id}/{action}"),
        );
        assert!(actions.contains(&wanted), "{wanted:?} not in {actions:?}");
    }
    browser.close().await;
}
