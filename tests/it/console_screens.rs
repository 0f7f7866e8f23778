//! The console's customers, subscriptions, settlements and SLO screens in headless Chromium
//! (see console.rs for the browser driver). Each action is checked against the API afterwards
//! and in `audit-admin`.

use crate::console::{accessibility_problems, Browser, DESKTOP, ONE_BROWSER_AT_A_TIME, PHONE};
use payledger_tests::{spawn_app, TestApp};
use serde_json::{json, Value};

async fn register_key(app: &TestApp, customer_id: &str, auth_key: &str) -> String {
    let response = app
        .post(
            "/v1/billing-keys",
            &json!({"customerId": customer_id, "authKey": auth_key}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201, "register a billing key");
    let body: Value = response.json().await.unwrap();
    body["billingKeyId"].as_str().unwrap().to_string()
}

async fn start(app: &TestApp, subscription_id: &str, customer_id: &str, key: &str) -> Value {
    let response = app
        .post(
            "/v1/subscriptions",
            &json!({
                "subscriptionId": subscription_id, "customerId": customer_id,
                "planId": "standard", "amount": 9900, "currency": "KRW", "interval": "month",
                "billingKeyId": key, "orderName": "Standard membership"
            }),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201, "start {subscription_id}");
    response.json().await.unwrap()
}

/// The admin actions the console recorded in `audit-admin`: (action, console path, status).
async fn console_actions(app: &TestApp) -> Vec<(String, String, i64)> {
    let audit: Value = app
        .get_as(&app.auditor_key, "/v1/streams/audit-admin")
        .await
        .json()
        .await
        .unwrap();
    audit["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e["payload"]["path"]
                .as_str()
                .unwrap_or("")
                .starts_with("/console")
        })
        .map(|e| {
            (
                e["payload"]["action"].as_str().unwrap_or("").to_string(),
                e["payload"]["path"].as_str().unwrap_or("").to_string(),
                e["payload"]["status"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn console_shows_a_customer_and_an_admin_cancels_resumes_charges_and_ends_subscriptions() {
    let _one = ONE_BROWSER_AT_A_TIME.lock().await;
    let app = spawn_app().await;
    // cust_1 (the helpers' customer): a paid order, a subscription, credits bought and spent.
    app.place_order("order-console-credits", 10_000).await;
    let paid = app
        .confirm("order-console-credits", "pk_console_credits", 10_000)
        .await;
    assert_eq!(paid.status().as_u16(), 200);
    let key = register_key(&app, "cust_1", "bln_console_member").await;
    let started = start(&app, "sub_console", "cust_1", &key).await;
    assert_eq!(started["status"], "active");
    let bought = app
        .post(
            "/v1/wallets/cust_1/credits",
            &json!({"purchaseId": "buy-console", "credits": 100, "orderId": "order-console-credits"}),
        )
        .await;
    assert_eq!(bought.status().as_u16(), 201);
    let spent = app
        .post(
            "/v1/wallets/cust_1/spend",
            &json!({"spendId": "spend-console", "credits": 30, "reason": "exports"}),
        )
        .await;
    assert_eq!(spent.status().as_u16(), 200);
    // cust_short: the card is refused, the subscription is past due.
    let short_key = register_key(&app, "cust_short", "sandbox_insufficient_console").await;
    let short = start(&app, "sub_short", "cust_short", &short_key).await;
    assert_eq!(short["status"], "past_due");
    app.wait_for_projections().await;

    let browser = Browser::start(&app.address).await;
    // Support reads the queues and the customer, and gets no buttons.
    browser.sign_in(&app.support_key).await;
    browser.goto("/console/customers").await;
    assert_eq!(
        browser.texts("[data-testid=subscription-link]").await,
        ["sub_short"],
        "the past_due queue comes first"
    );
    browser.goto("/console/subscriptions/sub_console").await;
    assert_eq!(
        browser.text("[data-testid=subscription-status]").await,
        "active"
    );
    assert!(!browser.exists("[data-testid=cancel-at-period-end]").await);
    assert!(!browser.exists("[data-testid=charge-now]").await);
    browser.goto("/console/home").await;
    browser.sign_out().await;

    browser.sign_in(&app.admin_key).await;
    browser.goto("/console/customers?status=past_due").await;
    assert_eq!(
        browser.texts("[data-testid=subscription-link]").await,
        ["sub_short"]
    );
    browser.screenshot("customers", DESKTOP).await;
    let problems = accessibility_problems(&browser).await;
    assert!(problems.is_empty(), "{problems:?}");
    browser.fill("#customer_id", "cust_1").await;
    browser
        .click("form[action=\"/console/customers\"] button")
        .await;
    assert_eq!(browser.text("[data-testid=customer-id]").await, "cust_1");
    assert_eq!(browser.text("[data-testid=membership-level]").await, "2");
    assert_eq!(browser.text("[data-testid=wallet-balance]").await, "70");
    let history = browser.text("[data-testid=wallet-history]").await;
    assert!(
        history.contains("CreditsSpent") && history.contains("-30") && history.contains("+100"),
        "{history}"
    );
    let keys = browser.text("[data-testid=billing-keys]").await;
    assert!(keys.contains("•••• •••• •••• "), "{keys}");
    let source = browser
        .execute("return document.documentElement.outerHTML")
        .await;
    let source = source.as_str().unwrap_or_default();
    assert!(
        !source.contains("sbx_bk") && !source.contains("ciphertext"),
        "the billing key is on the page"
    );
    browser.screenshot("customer", DESKTOP).await;
    browser.screenshot("customer-phone", PHONE).await;
    let problems = accessibility_problems(&browser).await;
    assert!(problems.is_empty(), "{problems:?}");

    // The subscription: its paid period and attempt; cancel at period end, then withdraw it.
    browser.click("[data-testid=subscription-link]").await;
    assert_eq!(
        browser.text("[data-testid=subscription-status]").await,
        "active"
    );
    assert_eq!(
        browser.texts("[data-testid=attempt-outcome]").await,
        ["succeeded"]
    );
    assert_eq!(
        browser.texts("[data-testid=periods] tbody tr").await.len(),
        1
    );
    browser.click("[data-testid=cancel-at-period-end]").await;
    assert_eq!(
        browser.text("[data-testid=detail-cancelAtPeriodEnd]").await,
        "true"
    );
    browser.click("[data-testid=back]").await;
    browser.text("[data-testid=cancel-effective]").await;
    browser.screenshot("subscription", DESKTOP).await;
    let problems = accessibility_problems(&browser).await;
    assert!(problems.is_empty(), "{problems:?}");
    app.wait_for_projections().await;
    let api: Value = app
        .get("/v1/subscriptions/sub_console")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        api["cancelAtPeriodEnd"], true,
        "the API sees the cancellation"
    );
    browser.click("[data-testid=resume]").await;
    assert_eq!(
        browser.text("[data-testid=detail-cancelAtPeriodEnd]").await,
        "false"
    );
    browser.click("[data-testid=back]").await;
    assert!(!browser.exists("[data-testid=cancel-effective]").await);

    // The past-due one: charged now (the card is still refused), then ended now.
    browser.goto("/console/subscriptions/sub_short").await;
    assert_eq!(
        browser.text("[data-testid=last-failure]").await,
        "REJECT_CARD_COMPANY"
    );
    browser.click("[data-testid=charge-now]").await;
    browser
        .wait_for("[data-testid=result-ok], [data-testid=result-error]")
        .await;
    browser.click("[data-testid=back]").await;
    let outcomes = browser.texts("[data-testid=attempt-outcome]").await;
    assert_eq!(
        outcomes,
        ["failed", "failed"],
        "the admin's charge is a second attempt"
    );
    // Ending now needs the box ticked (the browser's `required`, then the server's check).
    browser.click("[data-testid=end-now]").await;
    assert_eq!(browser.path().await, "/console/subscriptions/sub_short");
    browser
        .click("form[action=\"/console/subscriptions/sub_short/cancel\"] input[name=confirm]")
        .await;
    browser.click("[data-testid=end-now]").await;
    assert_eq!(browser.text("[data-testid=detail-status]").await, "ended");
    browser.click("[data-testid=back]").await;
    assert_eq!(
        browser.text("[data-testid=subscription-status]").await,
        "ended"
    );
    assert!(!browser.exists("[data-testid=end-now]").await);

    let actions = console_actions(&app).await;
    for (action, path) in [
        (
            "POST /v1/subscriptions/{subscription_id}/cancel",
            "/console/subscriptions/sub_console/cancel",
        ),
        (
            "POST /v1/subscriptions/{subscription_id}/resume",
            "/console/subscriptions/sub_console/resume",
        ),
        (
            "POST /v1/subscriptions/{subscription_id}/charge",
            "/console/subscriptions/sub_short/charge",
        ),
        (
            "POST /v1/subscriptions/{subscription_id}/cancel",
            "/console/subscriptions/sub_short/cancel",
        ),
    ] {
        assert!(
            actions.iter().any(|(a, p, _)| a == action && p == path),
            "{action} from {path} is not in audit-admin: {actions:?}"
        );
    }
    browser.close().await;
}

#[tokio::test]
async fn console_dashboard_charts_the_service_levels_from_the_log() {
    let _one = ONE_BROWSER_AT_A_TIME.lock().await;
    let app = spawn_app().await;
    // Two captured (one slow at the provider), one declined, one amount mismatch.
    for (order_id, payment_key) in [
        ("order-slo-1", "pk_slo_1"),
        ("order-slo-2", "sandbox_slow_700_slo"),
    ] {
        app.place_order(order_id, 10_000).await;
        let confirmed = app.confirm(order_id, payment_key, 10_000).await;
        assert_eq!(confirmed.status().as_u16(), 200, "{order_id}");
    }
    app.place_order("order-slo-3", 10_000).await;
    let declined = app
        .confirm("order-slo-3", "sandbox_decline_1", 10_000)
        .await;
    assert_eq!(declined.status().as_u16(), 402);
    app.place_order("order-slo-4", 10_000).await;
    let mismatched = app.confirm("order-slo-4", "pk_slo_4", 1).await;
    assert_eq!(mismatched.status().as_u16(), 400);

    let browser = Browser::start(&app.address).await;
    browser.sign_in(&app.auditor_key).await;
    browser.goto("/console/home?period=1h").await;
    let success = browser.text("[data-testid=slo-success_rate]").await;
    assert_eq!(success, "66.66 % (2 / 3)");
    // Three confirmations reached the provider and one was refused for its amount.
    let mismatch = browser.text("[data-testid=slo-mismatch_rate]").await;
    assert_eq!(mismatch, "25.00 % (1 / 4)");
    let p95 = browser.text("[data-testid=slo-confirm_p95]").await;
    let p95_ms: i64 = p95
        .split(' ')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no latency in {p95:?}"));
    assert!(
        p95_ms >= 700,
        "the slow confirmation is the 95th percentile: {p95}"
    );
    assert!(p95.ends_with("(3 confirmations)"), "{p95}");
    assert!(browser.exists("[data-testid=slo-breach]").await);
    // The charts are drawn on the server: bars for captured, failed and mismatched, a point of
    // latency, the target line, and no script needed.
    let bars = browser
        .execute(
            "return Array.from(document.querySelectorAll('[data-testid=chart-volume] rect'))\
             .map(r => r.getAttribute('fill'))",
        )
        .await;
    let fills: Vec<&str> = bars
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for fill in ["#17612c", "#a4161a", "#8a4b00"] {
        assert!(fills.contains(&fill), "no {fill} bar in {fills:?}");
    }
    assert!(browser.exists("[data-testid=chart-latency] circle").await);
    assert!(
        browser
            .exists("[data-testid=chart-latency] line[stroke-dasharray]")
            .await
    );
    assert!(browser
        .text("[data-testid=process-confirm_mean]")
        .await
        .ends_with("requests)"));
    browser.text("[data-testid=projector-lag]").await;
    browser.screenshot("dashboard-slo", DESKTOP).await;
    browser.screenshot("dashboard-slo-phone", PHONE).await;
    let problems = accessibility_problems(&browser).await;
    assert!(problems.is_empty(), "{problems:?}");

    // The check can fail: faint text added to the page is reported with its contrast.
    browser
        .execute(
            "const p = document.createElement('p'); p.textContent = 'faint text'; \
             p.style.color = '#b0b0b0'; document.querySelector('main').append(p); return 1;",
        )
        .await;
    let problems = accessibility_problems(&browser).await;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("contrast 2.") && p.contains("faint text")),
        "{problems:?}"
    );

    // Another period, chosen with the form.
    browser.click("#period option[value='24h']").await;
    browser.click("form[action=\"/console/home\"] button").await;
    // The next page draws the chosen period selected.
    browser
        .wait_for("#period option[value='24h'][selected]")
        .await;
    assert_eq!(
        browser.text("[data-testid=slo-success_rate]").await,
        "66.66 % (2 / 3)"
    );
    browser.close().await;
}

/// The new forms over plain HTTP: without the session's CSRF token, or from a role the API's
/// route does not admit, each is refused with 403 and nothing is appended; with both it works.
#[tokio::test]
async fn console_subscription_and_settlement_forms_need_their_csrf_token_and_role() {
    let app = spawn_app().await;
    let key = register_key(&app, "cust_1", "bln_console_csrf").await;
    start(&app, "sub_csrf", "cust_1", &key).await;
    app.wait_for_projections().await;
    let (admin_session, admin_csrf) = crate::console::http_session(&app, &app.admin_key).await;
    let (support_session, support_csrf) =
        crate::console::http_session(&app, &app.support_key).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |session: String, path: &'static str, form: Vec<(&'static str, String)>| {
        let request = client
            .post(app.url(path))
            .header("cookie", format!("payledger_console_session={session}"))
            .form(&form);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let forms: Vec<(&'static str, Vec<(&'static str, String)>)> = vec![
        (
            "/console/subscriptions/sub_csrf/cancel",
            vec![("mode", "at_period_end".into()), ("idem", "t1".into())],
        ),
        ("/console/subscriptions/sub_csrf/resume", vec![]),
        ("/console/subscriptions/sub_csrf/charge", vec![]),
        (
            "/console/settlements/payee_1-2026-11-30-KRW/confirm",
            vec![],
        ),
        (
            "/console/settlements/payee_1-2026-11-30-KRW/payout",
            vec![("reference", "bank-1".into()), ("amount", "0".into())],
        ),
    ];
    let before = app.head_position().await;
    for (path, form) in &forms {
        let mut without = form.clone();
        without.push(("csrf", "not-the-token".into()));
        assert_eq!(
            post(admin_session.clone(), path, without).await,
            403,
            "{path} without the token"
        );
        let mut as_support = form.clone();
        as_support.push(("csrf", support_csrf.clone()));
        assert_eq!(
            post(support_session.clone(), path, as_support).await,
            403,
            "{path} as support"
        );
    }
    assert_eq!(app.head_position().await, before, "nothing was appended");

    let mut with = forms[0].1.clone();
    with.push(("csrf", admin_csrf.clone()));
    assert_eq!(post(admin_session.clone(), forms[0].0, with).await, 200);
    app.wait_for_projections().await;
    let api: Value = app
        .get("/v1/subscriptions/sub_csrf")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["cancelAtPeriodEnd"], true);
}
