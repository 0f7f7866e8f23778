//! Refunds under review in the console: a Paddle refund whose adjustment the sandbox's Paddle
//! rejects in another currency (a planted fault, as in `paddle_refund_discrepancies.rs`) shows on
//! the order page with what the ledger expected and what Paddle said; support reads it, an admin
//! resolves it with a note through the API's own handler. In headless Chromium (see console.rs
//! for the driver), then the form's refusals over plain HTTP.

use crate::console::{
    accessibility_problems, http_session, Browser, DESKTOP, ONE_BROWSER_AT_A_TIME,
};
use crate::paddle_steps::{deliveries_settled, paddle, paid_credit_order, spawn};
use crate::paddle_steps::{order_events, order_until, refund_asked, timeline_until};
use payledger_tests::TestApp;
use serde_json::{json, Value};

/// A paid Paddle order with one refund under review; returns (refund id, adjustment id).
async fn order_under_review(app: &TestApp, order_id: &str) -> (String, String) {
    paid_credit_order(app, order_id).await;
    let asked = refund_asked(app, order_id, &format!("{order_id}-refund")).await;
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    let refund_id = asked["refundId"].as_str().unwrap().to_owned();
    deliveries_settled(app).await;
    paddle(
        app,
        &format!("/sandbox/adjustments/{adjustment}/reject"),
        json!({"currency_code": "EUR"}),
    )
    .await;
    timeline_until(
        app,
        order_id,
        &format!("ATTENTION: paddle reports refund request {adjustment} (rejected)"),
    )
    .await;
    deliveries_settled(app).await;
    order_until(app, order_id, "the refund under review", |o| {
        o["refundsUnderReview"] == 1
    })
    .await;
    (refund_id, adjustment)
}

/// Tall enough to show the order's facts and its discrepancies together.
const TALL: (u32, u32) = (1280, 1250);

const FORM: &str = "form[action$=\"/discrepancy/resolve\"]";

#[tokio::test]
async fn console_shows_a_refund_under_review_and_an_admin_resolves_it_with_a_note() {
    let _one = ONE_BROWSER_AT_A_TIME.lock().await;
    let app = spawn().await;
    let order_id = "order-console-discrepancy";
    let (refund_id, adjustment) = order_under_review(&app, order_id).await;
    let page = format!("/console/orders/{order_id}");
    let browser = Browser::start(&app.address).await;

    // Support sees what differs and when, read-only.
    browser.sign_in(&app.support_key).await;
    browser.goto(&page).await;
    assert_eq!(
        browser.text("[data-testid=discrepancy-refund-id]").await,
        refund_id
    );
    assert_eq!(
        browser.text("[data-testid=discrepancy-state]").await,
        "Under review"
    );
    let differences = browser
        .texts("[data-testid=discrepancy-differences] tbody td")
        .await;
    assert_eq!(differences, ["currency", "USD", "EUR"], "{differences:?}");
    let facts = browser.text("[data-testid=discrepancy]").await;
    assert!(
        facts.contains(&adjustment) && facts.contains("rejected"),
        "{facts}"
    );
    assert!(!browser
        .text("[data-testid=discrepancy-recorded]")
        .await
        .is_empty());
    assert!(!browser.exists(FORM).await, "support may not resolve");
    assert_eq!(accessibility_problems(&browser).await, Vec::<String>::new());
    browser.sign_out().await;

    // The admin resolves it with a note.
    browser.sign_in(&app.admin_key).await;
    browser.goto(&page).await;
    assert_eq!(accessibility_problems(&browser).await, Vec::<String>::new());
    let note = "raised with Paddle support, ticket 42";
    browser
        .fill(&format!("{FORM} input[name=note]"), note)
        .await;
    browser
        .screenshot("order-refund-discrepancy", DESKTOP)
        .await;
    browser.click(&format!("{FORM} button")).await;
    assert!(!browser.text("[data-testid=result-ok]").await.is_empty());
    assert_eq!(
        browser
            .text("[data-testid=detail-refundPendingAmount]")
            .await,
        "1000"
    );
    app.wait_for_projections().await;
    browser.click("[data-testid=back]").await;
    assert_eq!(
        browser.text("[data-testid=discrepancy-state]").await,
        "Resolved"
    );
    assert_eq!(
        browser.text("[data-testid=discrepancy-note]").await,
        format!("acknowledged: {note}")
    );
    let resolution = browser.text("[data-testid=discrepancy-resolution]").await;
    assert!(resolution.contains("admin:ops"), "{resolution}");
    assert!(!browser.exists(FORM).await, "nothing left to resolve");
    browser
        .screenshot("order-refund-discrepancy-resolved", TALL)
        .await;
    browser.close().await;

    // One resolution, by the admin, with the note; nothing refunded; the console's path in
    // audit-admin.
    let resolved = order_events(&app, order_id, "RefundDiscrepancyResolved").await;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["refundId"], refund_id.as_str());
    assert_eq!(resolved[0]["resolvedBy"], "admin:ops");
    assert_eq!(resolved[0]["note"], note);
    assert!(order_events(&app, order_id, "RefundCompleted")
        .await
        .is_empty());
    let shown = order_until(&app, order_id, "no refund left under review", |o| {
        o.get("refundsUnderReview").is_none()
    })
    .await;
    assert_eq!(shown["refundPendingAmount"], 1000, "{shown}");
    let audit: Value = app
        .get_as(&app.auditor_key, "/v1/streams/audit-admin")
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/console/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve");
    let recorded = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["payload"]["path"] == path.as_str())
        .unwrap_or_else(|| panic!("no console resolution in audit-admin: {audit}"));
    assert_eq!(recorded["metadata"]["actor"], "admin:ops");
    assert_eq!(recorded["payload"]["status"], 200);
    assert_eq!(
        recorded["payload"]["action"],
        "POST /v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve"
    );
}

#[tokio::test]
async fn console_discrepancy_form_needs_its_token_and_role_and_shows_the_apis_refusals() {
    let app = spawn().await;
    let order_id = "order-console-discrepancy-http";
    let (refund_id, _) = order_under_review(&app, order_id).await;
    let (admin_session, admin_csrf) = http_session(&app, &app.admin_key).await;
    let (support_session, support_csrf) = http_session(&app, &app.support_key).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let action = format!("/console/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve");
    let post = |session: &str, csrf: &str, note: &str| {
        let request = client
            .post(app.url(&action))
            .header("cookie", format!("payledger_console_session={session}"))
            .form(&[("csrf", csrf), ("note", note)]);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let page = |session: &str| {
        let request = client
            .get(app.url(&format!("/console/orders/{order_id}")))
            .header("cookie", format!("payledger_console_session={session}"));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let note = "checked with Paddle";
    let head = app.head_position().await;
    // What the console appended since `head` to the order and to `audit-admin`: (stream, the
    // audited status). Other streams (notifications, the reconciler) may move meanwhile.
    let appended = || async {
        sqlx::query_as::<_, (String, Option<i64>)>(
            "SELECT stream_id, (payload->>'status')::bigint FROM events \
              WHERE global_position > $1 AND stream_id IN ($2, 'audit-admin') \
              ORDER BY global_position",
        )
        .bind(head)
        .bind(format!("order-{order_id}"))
        .fetch_all(&app.app_pool)
        .await
        .unwrap()
    };

    // The support page shows the refund under review without the form; the admin's has it.
    let support_page = page(&support_session).await;
    assert!(support_page.contains(&refund_id), "{support_page}");
    assert!(!support_page.contains(&action), "no form for support");
    assert!(page(&admin_session).await.contains(&action));

    // Without the session's token, or as support: 403, nothing stored.
    assert_eq!(post(&admin_session, "not-the-token", note).await.0, 403);
    assert_eq!(post(&support_session, &support_csrf, note).await.0, 403);
    assert_eq!(appended().await, vec![], "nothing was stored");
    // The API's note rules, its code on the console's page, nothing stored.
    for bad in ["", "   ", "two\nlines", "bell\u{7}", &"x".repeat(501)] {
        let (status, html) = post(&admin_session, &admin_csrf, bad).await;
        assert_eq!(status, 400, "{bad:?}: {html}");
        assert!(html.contains("E_INVALID_FIELD"), "{bad:?}: {html}");
    }
    // Only the admin's attempts, in audit-admin (as the API's middleware records them): the
    // order's stream did not move.
    assert_eq!(
        appended().await,
        vec![("audit-admin".to_string(), Some(400)); 5],
        "only the refusals' audit records"
    );

    // Resolved once; the second time the API's 409 and its code.
    let (status, html) = post(&admin_session, &admin_csrf, note).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-testid=\"result-ok\""), "{html}");
    let (status, html) = post(&admin_session, &admin_csrf, note).await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("E_REFUND_DISCREPANCY_NOT_OPEN"), "{html}");
    assert_eq!(
        order_events(&app, order_id, "RefundDiscrepancyResolved")
            .await
            .len(),
        1
    );
    // A refund the order does not hold: the API's 409 for it.
    let other = format!("/console/orders/{order_id}/refunds/rf-unknown/discrepancy/resolve");
    let response = client
        .post(app.url(&other))
        .header(
            "cookie",
            format!("payledger_console_session={admin_session}"),
        )
        .form(&[("csrf", admin_csrf.as_str()), ("note", note)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("E_ORDER_STATE_CONFLICT"));
    // Both pages now show it resolved, neither with the form.
    app.wait_for_projections().await;
    for session in [&support_session, &admin_session] {
        let html = page(session).await;
        assert!(
            html.contains("data-testid=\"discrepancy-state\">Resolved<"),
            "{html}"
        );
        assert!(!html.contains(&action), "{html}");
    }
}
