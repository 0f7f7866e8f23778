//! Billing keys, subscriptions and wallets through HTTP: card data is refused before anything is
//! stored, the billing key never appears in an answer, dunning states show in the read model,
//! and credits need a membership.

use payledger_domain::card_numbers::test_cards;
use payledger_tests::{spawn_app, TestApp};
use serde_json::{json, Value};

async fn register_key(app: &TestApp, customer_id: &str, auth_key: &str) -> Value {
    let response = app
        .post(
            "/v1/billing-keys",
            &json!({"customerId": customer_id, "authKey": auth_key}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201, "register the billing key");
    response.json().await.unwrap()
}

async fn start(
    app: &TestApp,
    subscription_id: &str,
    customer_id: &str,
    billing_key_id: &str,
) -> Value {
    let response = app
        .post(
            "/v1/subscriptions",
            &json!({
                "subscriptionId": subscription_id,
                "customerId": customer_id,
                "planId": "standard",
                "amount": 9900,
                "currency": "KRW",
                "interval": "month",
                "billingKeyId": billing_key_id,
                "orderName": "Standard membership"
            }),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201, "start the subscription");
    response.json().await.unwrap()
}

#[tokio::test]
async fn card_numbers_are_refused_before_anything_is_stored() {
    let app = spawn_app().await;
    let before = app.head_position().await;
    for body in [
        json!({"customerId": "cust_1", "authKey": test_cards::VISA_SPACED}),
        json!({"customerId": "cust_1", "authKey": "bln_x", "cardNumber": test_cards::VISA_STRIPE}),
        json!({"customerId": "cust_1", "authKey": "bln_x", "cardNumber": "not even a number"}),
    ] {
        let response = app.post("/v1/billing-keys", &body).await;
        assert_eq!(response.status().as_u16(), 400);
        let text = response.text().await.unwrap();
        assert!(text.contains("E_CARD_DATA_REJECTED"), "{text}");
        assert!(!text.contains("4242"), "the card number is echoed: {text}");
    }
    assert_eq!(app.head_position().await, before, "nothing was stored");
    assert_eq!(
        app.sandbox.stats().billing_keys,
        0,
        "the provider was not asked"
    );
}

#[tokio::test]
async fn a_subscription_is_charged_at_start_and_the_billing_key_never_leaves_the_ledger() {
    let app = spawn_app().await;
    let key = register_key(&app, "cust_http", "bln_http_1").await;
    assert_eq!(key["status"], "active");
    assert_eq!(key["card"]["last4"].as_str().unwrap().len(), 4);
    let billing_key_id = key["billingKeyId"].as_str().unwrap();
    let started = start(&app, "sub_http", "cust_http", billing_key_id).await;
    assert_eq!(started["status"], "active");
    assert_eq!(started["paidCycles"], 1);
    assert_eq!(started["membershipLevel"], 2);
    assert_eq!(
        app.sandbox.stats().charges_by_order_id["sub-sub_http-c1"],
        1
    );

    let position = started["position"]
        .as_i64()
        .expect("a position to read my writes");
    let read = app
        .get(&format!(
            "/v1/subscriptions/sub_http?minPosition={position}"
        ))
        .await;
    assert_eq!(read.status().as_u16(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["status"], "active");
    assert_eq!(read["walletBalance"], 0);
    assert_eq!(read["nextChargeAt"], started["nextChargeAt"]);

    // The provider's key (the sandbox issues `sbx_bk_…`) is in no answer and no event in clear.
    let stream: Value = app
        .get("/v1/streams/customer-cust_http")
        .await
        .json()
        .await
        .unwrap();
    let everything = format!("{key}{started}{read}{stream}");
    assert!(!everything.contains("sbx_bk"), "{everything}");
    assert!(stream.to_string().contains("ciphertextB64"));
}

#[tokio::test]
async fn admins_list_subscriptions_by_status() {
    let app = spawn_app().await;
    let good = register_key(&app, "cust_ok", "bln_ok").await;
    start(
        &app,
        "sub_ok",
        "cust_ok",
        good["billingKeyId"].as_str().unwrap(),
    )
    .await;
    let short = register_key(&app, "cust_short", "sandbox_insufficient_http").await;
    let past_due = start(
        &app,
        "sub_short",
        "cust_short",
        short["billingKeyId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(past_due["status"], "past_due");
    assert_eq!(past_due["lastFailureCode"], "REJECT_CARD_COMPANY");
    assert!(past_due["nextRetryAt"].is_string());
    app.wait_for_projections().await;

    let forbidden = app.get("/v1/subscriptions?status=past_due").await;
    assert_eq!(forbidden.status().as_u16(), 403, "clients do not list");
    let listed: Value = app
        .get_as(&app.admin_key, "/v1/subscriptions?status=past_due")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sub_short"]);
    let bad = app
        .get_as(&app.admin_key, "/v1/subscriptions?status=late")
        .await;
    assert_eq!(bad.status().as_u16(), 400);

    // A new card charges the past-due cycle at once.
    let new_card = register_key(&app, "cust_short", "bln_new_card").await;
    let recovered: Value = app
        .post(
            "/v1/subscriptions/sub_short/payment-method",
            &json!({"billingKeyId": new_card["billingKeyId"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recovered["status"], "active");
    assert_eq!(recovered["paidCycles"], 1);
}

#[tokio::test]
async fn credits_need_a_membership_and_stop_at_zero() {
    let app = spawn_app().await;
    // A paid order of cust_1 (the helpers' customer) to buy credits with.
    app.place_order("order-credits-1", 10_000).await;
    assert_eq!(
        app.confirm("order-credits-1", "pk_credits_1", 10_000)
            .await
            .status()
            .as_u16(),
        200
    );
    let buy = json!({"purchaseId": "buy-1", "credits": 100, "orderId": "order-credits-1"});
    let refused = app.post("/v1/wallets/cust_1/credits", &buy).await;
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["code"],
        "E_MEMBERSHIP_REQUIRED"
    );

    let key = register_key(&app, "cust_1", "bln_member").await;
    start(
        &app,
        "sub_member",
        "cust_1",
        key["billingKeyId"].as_str().unwrap(),
    )
    .await;
    let bought = app.post("/v1/wallets/cust_1/credits", &buy).await;
    assert_eq!(bought.status().as_u16(), 201);
    assert_eq!(bought.json::<Value>().await.unwrap()["balance"], 100);
    let spent = app
        .post(
            "/v1/wallets/cust_1/spend",
            &json!({"credits": 100, "reason": "exports"}),
        )
        .await;
    assert_eq!(spent.status().as_u16(), 200);
    let overspent = app
        .post(
            "/v1/wallets/cust_1/spend",
            &json!({"credits": 1, "reason": "exports"}),
        )
        .await;
    assert_eq!(overspent.status().as_u16(), 409);
    assert_eq!(
        overspent.json::<Value>().await.unwrap()["code"],
        "E_INSUFFICIENT_CREDITS"
    );
    let wallet: Value = app.get("/v1/wallets/cust_1").await.json().await.unwrap();
    assert_eq!(
        (
            wallet["balance"].as_i64(),
            wallet["membershipLevel"].as_i64()
        ),
        (Some(0), Some(2))
    );
}

#[tokio::test]
async fn clients_see_and_change_only_the_customers_they_created() {
    let app = spawn_app().await;
    let key = register_key(&app, "cust_owned", "bln_owned_1").await;
    let billing_key_id = key["billingKeyId"].as_str().unwrap();
    start(&app, "sub_owned", "cust_owned", billing_key_id).await;
    let other = &app.other_client_key;

    // Another client: the subscription does not exist for it …
    for (path, body) in [
        ("/v1/subscriptions/sub_owned/cancel", Some(json!({}))),
        ("/v1/subscriptions/sub_owned/resume", Some(json!({}))),
        (
            "/v1/subscriptions/sub_owned/payment-method",
            Some(json!({"billingKeyId": billing_key_id})),
        ),
        ("/v1/subscriptions/sub_owned", None),
    ] {
        let response = match body {
            Some(body) => app.post_as(other, path, &body).await,
            None => app.get_as(other, path).await,
        };
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "E_SUBSCRIPTION_NOT_FOUND", "{path}");
    }
    // … nor does the customer: no billing key, subscription or wallet in its name.
    let customer_requests = [
        app.post_as(
            other,
            "/v1/billing-keys",
            &json!({"customerId": "cust_owned", "authKey": "bln_stolen"}),
        )
        .await,
        app.post_as(
            other,
            "/v1/subscriptions",
            &json!({"subscriptionId": "sub_stolen", "customerId": "cust_owned",
                    "planId": "standard", "amount": 9900, "currency": "KRW",
                    "interval": "month", "billingKeyId": billing_key_id,
                    "orderName": "Standard membership"}),
        )
        .await,
        app.get_as(other, "/v1/wallets/cust_owned").await,
        app.post_as(
            other,
            "/v1/wallets/cust_owned/spend",
            &json!({"credits": 1, "reason": "steal"}),
        )
        .await,
        app.delete_as(
            other,
            &format!("/v1/billing-keys/{billing_key_id}?customerId=cust_owned"),
        )
        .await,
    ];
    for response in customer_requests {
        let path = response.url().path().to_string();
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "E_CUSTOMER_NOT_FOUND", "{path}");
    }
    let charges = app.sandbox.stats().total_charges;
    assert_eq!(charges, 1, "only the owner's subscription was charged");

    // The owner keeps every right; the other client may still create customers of its own.
    let mine = app.get("/v1/subscriptions/sub_owned").await;
    assert_eq!(mine.status().as_u16(), 200);
    let wallet = app.get("/v1/wallets/cust_owned").await;
    assert_eq!(wallet.status().as_u16(), 200);
    let theirs = app
        .post_as(
            other,
            "/v1/billing-keys",
            &json!({"customerId": "cust_theirs", "authKey": "bln_theirs_1"}),
        )
        .await;
    assert_eq!(theirs.status().as_u16(), 201);
    let cancelled = app
        .post("/v1/subscriptions/sub_owned/cancel", &json!({}))
        .await;
    assert_eq!(cancelled.status().as_u16(), 200);
}

#[tokio::test]
async fn a_provider_error_on_a_charge_shows_when_the_next_attempt_is() {
    let app = spawn_app().await;
    let key = register_key(&app, "cust_flaky", "sandbox_provider_error_sub").await;
    let started = start(
        &app,
        "sub_flaky",
        "cust_flaky",
        key["billingKeyId"].as_str().unwrap(),
    )
    .await;
    // A provider error is not a decline: the status stays, a short backoff attempt is scheduled.
    assert_eq!(started["status"], "active", "{started}");
    assert_eq!(started["retryCount"], 0, "{started}");
    let next_retry_at = started["nextRetryAt"]
        .as_str()
        .unwrap_or_else(|| panic!("nextRetryAt is shown: {started}"));
    let position = started["position"].as_i64().unwrap();
    let read: Value = app
        .get(&format!(
            "/v1/subscriptions/sub_flaky?minPosition={position}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["nextRetryAt"].as_str(), Some(next_retry_at), "{read}");
}
