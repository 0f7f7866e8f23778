//! `GET /v1/customers/{id}/membership` over HTTP (issue 15): the level, plan, provider and
//! billing times of a membership Paddle bills (through renewal, a scheduled cancel and the end)
//! or payledger bills (Toss), and who owns a customer Paddle's notification names first.

use crate::paddle_steps::{
    checkout, deliveries_settled, eventually, paddle, paddle_advances_the_period, spawn, subscribe,
    subscription_until,
};
use payledger_tests::TestApp;
use serde_json::{json, Value};

async fn membership_status(app: &TestApp, key: &str, customer: &str) -> (u16, Value) {
    membership_at(app, key, customer, 0).await
}

/// The membership once the read model has caught up with `position`.
async fn membership_at(app: &TestApp, key: &str, customer: &str, position: i64) -> (u16, Value) {
    let response = app
        .get_as(
            key,
            &format!("/v1/customers/{customer}/membership?minPosition={position}"),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

fn instant(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|_| panic!("not a time: {value}"))
}

#[tokio::test]
async fn the_membership_status_shows_level_plan_provider_and_billing_times_of_a_paddle_membership()
{
    let app = spawn().await;
    let (status, none) = membership_status(&app, &app.support_key, "cust_1").await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["membershipLevel"], 0, "{none}");
    assert_eq!(none["planId"], Value::Null, "{none}");
    assert_eq!(none["provider"], Value::Null, "{none}");

    let subscribed = subscribe(&app, "cust_1").await;
    let sub_id = subscribed.id;
    let period_end = &subscribed.checkout["subscription"]["current_billing_period"]["ends_at"];
    assert_eq!(subscribed.started["paidCycles"], 1);
    let head = app.head_position().await;
    let (status, member) = membership_at(&app, &app.support_key, "cust_1", head).await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membershipLevel"], 1, "{member}");
    assert_eq!(member["planId"], "basic", "{member}");
    assert_eq!(member["provider"], "paddle", "{member}");
    assert_eq!(member["billedByProvider"], true, "{member}");
    assert_eq!(member["subscriptionId"], sub_id.as_str(), "{member}");
    assert_eq!(member["status"], "active", "{member}");
    assert_eq!(instant(&member["currentPeriodEnd"]), instant(period_end));
    assert_eq!(
        instant(&member["nextBillingAt"]),
        instant(period_end),
        "Paddle bills the next period when this one ends"
    );
    assert_eq!(member["cancelAtPeriodEnd"], false, "{member}");

    // Another API client does not see a customer it did not create.
    let (status, hidden) = membership_status(&app, &app.other_client_key, "cust_1").await;
    assert_eq!(
        (status, hidden["code"].as_str()),
        (404, Some("E_CUSTOMER_NOT_FOUND"))
    );
    let (status, invalid) = membership_status(&app, &app.support_key, "bad id!").await;
    assert_eq!(status, 400, "{invalid}");

    // A renewal moves the period; a cancel scheduled in Paddle's dashboard shows as ending at
    // the period's end with no next billing; the end downgrades.
    paddle_advances_the_period(&app, &sub_id).await;
    let renewed =
        subscription_until(&app, &sub_id, "renewal recorded", |s| s["paidCycles"] == 2).await;
    let head = app.head_position().await;
    let (_, member) = membership_at(&app, &app.support_key, "cust_1", head).await;
    assert_eq!(
        instant(&member["currentPeriodEnd"]),
        instant(&renewed["paidThrough"])
    );
    assert!(instant(&member["currentPeriodEnd"]) > instant(period_end));
    paddle(
        &app,
        &format!("/subscriptions/{sub_id}/cancel"),
        json!({"effective_from": "next_billing_period"}),
    )
    .await;
    subscription_until(&app, &sub_id, "cancel scheduled", |s| {
        s["cancelAtPeriodEnd"] == true
    })
    .await;
    deliveries_settled(&app).await;
    let head = app.head_position().await;
    let (_, ending) = membership_at(&app, &app.support_key, "cust_1", head).await;
    assert_eq!(ending["membershipLevel"], 1, "{ending}");
    assert_eq!(ending["cancelAtPeriodEnd"], true, "{ending}");
    assert_eq!(ending["nextBillingAt"], Value::Null, "{ending}");
    assert_eq!(
        instant(&ending["cancelEffectiveAt"]),
        instant(&ending["currentPeriodEnd"])
    );
    paddle_advances_the_period(&app, &sub_id).await;
    subscription_until(&app, &sub_id, "ended", |s| s["status"] == "ended").await;
    let head = app.head_position().await;
    let (_, ended) = membership_at(&app, &app.support_key, "cust_1", head).await;
    assert_eq!(ended["membershipLevel"], 0, "{ended}");
    assert_eq!(
        ended["planId"],
        Value::Null,
        "an ended plan is no membership: {ended}"
    );
}

/// The dead letters of Paddle deliveries, once none is pending.
async fn paddle_dead_letters(app: &TestApp) -> Vec<String> {
    deliveries_settled(app).await;
    sqlx::query_scalar(
        "SELECT coalesce(last_error, '') FROM webhook_inbox WHERE provider = 'paddle' \
         AND status = 'dead' ORDER BY id",
    )
    .fetch_all(&app.app_pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_customer_paddle_names_first_belongs_to_the_api_client_its_checkout_names() {
    let app = spawn().await;
    // Named by the checkout: the customer is the client's; the client reads its membership,
    // another client does not see it.
    // (The checkout names the test's own client, `e2e`.)
    subscribe(&app, "cust_owned").await;
    let head = app.head_position().await;
    let (status, own) = membership_at(&app, &app.client_key, "cust_owned", head).await;
    assert_eq!(
        (status, own["membershipLevel"].as_i64()),
        (200, Some(1)),
        "{own}"
    );
    let (status, other) = membership_status(&app, &app.other_client_key, "cust_owned").await;
    assert_eq!(status, 404, "{other}");

    // No API client named, an unknown one, or another client than the customer's owner: held
    // for review, no customer created, no membership.
    for (customer, custom_data, why) in [
        (
            "cust_nobody",
            json!({"customerId": "cust_nobody", "apiClient": null}),
            "names no API client",
        ),
        (
            "cust_ghost",
            json!({"customerId": "cust_ghost", "apiClient": "ghost"}),
            "no API client with an active key",
        ),
        (
            "cust_owned",
            json!({"customerId": "cust_owned", "apiClient": "other"}),
            "belongs to another API client",
        ),
    ] {
        let mut custom_data = custom_data;
        if custom_data["apiClient"].is_null() {
            custom_data.as_object_mut().unwrap().remove("apiClient");
            // The helper adds the test client unless asked otherwise: ask with an explicit
            // empty object path.
            paddle(
                &app,
                "/sandbox/checkout",
                json!({"items": [{"price_id": payledger_sandbox::SANDBOX_PRICE_PRO_MONTHLY, "quantity": 1}],
                       "customer_email": "x@example.com", "custom_data": custom_data}),
            )
            .await;
        } else {
            checkout(
                &app,
                payledger_sandbox::SANDBOX_PRICE_PRO_MONTHLY,
                custom_data,
            )
            .await;
        }
        let dead = eventually(
            || paddle_dead_letters(&app),
            |dead| dead.iter().any(|d| d.contains(why)),
        )
        .await;
        assert!(dead.iter().any(|d| d.contains(why)), "{why}: {dead:?}");
        let head = app.head_position().await;
        let (_, status) = membership_at(&app, &app.support_key, customer, head).await;
        let expected = if customer == "cust_owned" { 1 } else { 0 };
        assert_eq!(status["membershipLevel"], expected, "{customer}: {status}");
    }
    let stream: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id IN ('customer-cust_nobody', 'customer-cust_ghost')",
    )
    .fetch_one(&app.app_pool)
    .await
    .unwrap();
    assert_eq!(stream, 0, "no ownerless customer is created");
}

#[tokio::test]
async fn the_membership_status_of_a_plan_payledger_bills_names_its_provider_and_next_charge() {
    let app = payledger_tests::spawn_app().await;
    let key = app
        .post(
            "/v1/billing-keys",
            &json!({"customerId": "cust_toss", "authKey": "bln_membership_1"}),
        )
        .await;
    assert_eq!(key.status().as_u16(), 201);
    let key: Value = key.json().await.unwrap();
    let started = app
        .post(
            "/v1/subscriptions",
            &json!({"subscriptionId": "sub_toss_member", "customerId": "cust_toss",
                    "planId": "standard", "amount": 9900, "currency": "KRW", "interval": "month",
                    "billingKeyId": key["billingKeyId"], "orderName": "Standard membership"}),
        )
        .await;
    assert_eq!(started.status().as_u16(), 201);
    let started: Value = started.json().await.unwrap();
    let position = started["position"].as_i64().unwrap();
    // As the client that created the customer.
    let (status, member) = membership_at(&app, &app.client_key, "cust_toss", position).await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(
        member["membershipLevel"], started["membershipLevel"],
        "{member}"
    );
    assert_eq!(member["planId"], "standard", "{member}");
    assert_eq!(member["provider"], "toss", "{member}");
    assert_eq!(member["billedByProvider"], false, "{member}");
    assert_eq!(
        instant(&member["nextBillingAt"]),
        instant(&started["nextChargeAt"])
    );
    assert_eq!(
        instant(&member["currentPeriodEnd"]),
        instant(&started["paidThrough"])
    );
    let (status, _) = membership_at(&app, &app.other_client_key, "cust_toss", position).await;
    assert_eq!(status, 404);
}
