//! The sandbox's Stripe API driven over HTTP as Stripe's client libraries drive it: form bodies
//! with bracket notation, Bearer auth, `Idempotency-Key`, and signed webhooks verified with
//! payledger's own verifier.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payledger_sandbox::{
    start, RunningSandbox, SandboxConfig, StripeSandboxConfig, DEFAULT_STRIPE_SECRET_KEY,
};
use payledger_webhooks::{verify, HeaderPairs, Scheme, WebhookSecret, DEFAULT_TOLERANCE};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WEBHOOK_SECRET: &str = "whsec_it_sandbox_secret";

/// A received webhook: its `Stripe-Signature` header and raw body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct Stripe {
    sandbox: RunningSandbox,
    http: reqwest::Client,
    received: Received,
    _receiver: actix_web::dev::ServerHandle,
}

impl Stripe {
    async fn start() -> Stripe {
        Stripe::start_with(SandboxConfig::default()).await
    }

    async fn start_with(config: SandboxConfig) -> Stripe {
        let received: Received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let server = HttpServer::new(move || {
            let sink = sink.clone();
            App::new().route(
                "/hooks",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let sink = sink.clone();
                    async move {
                        let signature = req
                            .headers()
                            .get("stripe-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        sink.lock().unwrap().push((signature, body.to_vec()));
                        HttpResponse::Ok().finish()
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let hook_addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let config = SandboxConfig {
            stripe: StripeSandboxConfig {
                webhook_url: Some(format!("http://{hook_addr}/hooks")),
                webhook_secret: WEBHOOK_SECRET.to_owned(),
                ..StripeSandboxConfig::default()
            },
            ..config
        };
        let sandbox = start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        Stripe {
            sandbox,
            http: reqwest::Client::new(),
            received,
            _receiver: handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.stripe_base_url())
    }

    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.post_full(path, key, form).await;
        (status, body)
    }

    async fn post_full(
        &self,
        path: &str,
        key: Option<&str>,
        form: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .bearer_auth(DEFAULT_STRIPE_SECRET_KEY)
            .form(form);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(DEFAULT_STRIPE_SECRET_KEY)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn pay(
        &self,
        order_id: &str,
        amount: &str,
        currency: &str,
        pm: &str,
    ) -> (StatusCode, Value) {
        self.post(
            "/v1/payment_intents",
            Some(&format!("confirm-{order_id}")),
            &[
                ("amount", amount),
                ("currency", currency),
                ("payment_method", pm),
                ("confirm", "true"),
                ("metadata[order_id]", order_id),
                ("expand[]", "latest_charge"),
            ],
        )
        .await
    }

    /// Waits until webhooks of these types arrived (in this order among themselves), verifies
    /// every signature, and answers the events.
    async fn events_of(&self, types: &[&str]) -> Vec<Value> {
        for _ in 0..100 {
            let events = self.verified_events();
            let found: Vec<Value> = events
                .into_iter()
                .filter(|event| types.contains(&event["type"].as_str().unwrap_or_default()))
                .collect();
            if found.len() >= types.len() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "webhooks {types:?} did not arrive; got {:?}",
            self.verified_events()
                .iter()
                .map(|e| e["type"].clone())
                .collect::<Vec<_>>()
        );
    }

    fn verified_events(&self) -> Vec<Value> {
        let received = self.received.lock().unwrap().clone();
        received
            .iter()
            .map(|(signature, body)| {
                verify(
                    Scheme::Stripe,
                    &HeaderPairs(&[("Stripe-Signature", signature.as_str())]),
                    body,
                    &[WebhookSecret::new(WEBHOOK_SECRET)],
                    chrono::Utc::now(),
                    DEFAULT_TOLERANCE,
                )
                .expect("every sandbox webhook carries a valid Stripe signature");
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }
}

#[tokio::test]
async fn bearer_and_basic_secret_keys_are_accepted_and_anything_else_is_401() {
    let stripe = Stripe::start().await;
    let url = stripe.url("/v1/payment_intents?limit=1");
    let bearer = stripe
        .http
        .get(&url)
        .bearer_auth(DEFAULT_STRIPE_SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    let basic = stripe
        .http
        .get(&url)
        .basic_auth(DEFAULT_STRIPE_SECRET_KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    for request in [
        stripe.http.get(&url),
        stripe.http.get(&url).bearer_auth("sk_test_wrong"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn a_visa_payment_succeeds_is_searchable_by_order_id_and_sends_signed_webhooks() {
    let stripe = Stripe::start().await;
    let (status, intent) = stripe
        .pay("order-visa-1", "2000", "usd", "pm_card_visa")
        .await;
    assert_eq!(status, StatusCode::OK, "{intent}");
    assert_eq!(intent["object"], "payment_intent");
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount_received"], 2000);
    assert_eq!(intent["currency"], "usd");
    assert_eq!(intent["metadata"]["order_id"], "order-visa-1");
    assert_eq!(intent["latest_charge"]["object"], "charge");
    assert_eq!(
        intent["latest_charge"]["payment_method_details"]["card"]["last4"],
        "4242"
    );

    let id = intent["id"].as_str().unwrap();
    let (_, retrieved) = stripe.get(&format!("/v1/payment_intents/{id}")).await;
    assert!(
        retrieved["latest_charge"]
            .as_str()
            .unwrap()
            .starts_with("ch_"),
        "not expanded unless asked"
    );

    let (status, found) = stripe
        .get("/v1/payment_intents/search?query=metadata%5B%27order_id%27%5D%3A%27order-visa-1%27")
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["object"], "search_result");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["id"], id);
    let (_, none) = stripe
        .get("/v1/payment_intents/search?query=metadata%5B%27order_id%27%5D%3A%27nobody%27")
        .await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);

    let events = stripe.events_of(&["payment_intent.succeeded"]).await;
    assert_eq!(events[0]["data"]["object"]["id"], id);
    assert_eq!(
        events[0]["request"]["idempotency_key"],
        "confirm-order-visa-1"
    );
    let stats = stripe.sandbox.stripe_stats();
    assert_eq!(stats["chargesByOrderId"]["order-visa-1"], 1);
}

#[tokio::test]
async fn declines_answer_402_card_errors_with_stripe_codes() {
    let stripe = Stripe::start().await;
    let cases = [
        (
            "pm_card_chargeDeclined",
            "card_declined",
            Some("generic_decline"),
        ),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "card_declined",
            Some("insufficient_funds"),
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            "expired_card",
            Some("expired_card"),
        ),
        (
            "pm_card_chargeDeclinedProcessingError",
            "processing_error",
            None,
        ),
    ];
    for (index, (pm, code, decline_code)) in cases.into_iter().enumerate() {
        let (status, body) = stripe
            .pay(&format!("order-decline-{index}"), "1500", "eur", pm)
            .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{pm}: {body}");
        let error = &body["error"];
        assert_eq!(error["type"], "card_error", "{pm}");
        assert_eq!(error["code"], code, "{pm}");
        assert_eq!(error["decline_code"].as_str(), decline_code, "{pm}");
        assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
        assert_eq!(error["payment_intent"]["last_payment_error"]["code"], code);
    }
    stripe
        .events_of(&["payment_intent.payment_failed"; 4])
        .await;
    assert_eq!(stripe.sandbox.stripe_stats()["totalCharges"], 0);
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer_and_refuse_other_parameters() {
    let stripe = Stripe::start().await;
    let form = [
        ("amount", "5000"),
        ("currency", "krw"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("metadata[order_id]", "order-idem-1"),
    ];
    let (status, first_headers, first) = stripe
        .post_full("/v1/payment_intents", Some("idem-1"), &form)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(first_headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = stripe
        .post_full("/v1/payment_intents", Some("idem-1"), &form)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again, first);
    assert_eq!(
        stripe.sandbox.stripe_stats()["chargesByOrderId"]["order-idem-1"],
        1
    );

    let mut changed = form;
    changed[0] = ("amount", "6000");
    let (status, mismatch) = stripe
        .post("/v1/payment_intents", Some("idem-1"), &changed)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(mismatch["error"]["type"], "idempotency_error");
    let (status, other_endpoint) = stripe
        .post(
            "/v1/refunds",
            Some("idem-1"),
            &[("payment_intent", first["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(other_endpoint["error"]["type"], "idempotency_error");

    // A decline is stored too: the same key answers the same 402 and charges nothing.
    let declined = [
        ("amount", "5000"),
        ("currency", "krw"),
        ("payment_method", "pm_card_chargeDeclined"),
        ("confirm", "true"),
    ];
    let (status, first_decline) = stripe
        .post("/v1/payment_intents", Some("idem-2"), &declined)
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let (status, replayed) = stripe
        .post("/v1/payment_intents", Some("idem-2"), &declined)
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(replayed, first_decline);
    assert_eq!(stripe.sandbox.stripe_stats()["paymentIntents"], 2);
}

#[tokio::test]
async fn three_d_secure_requires_action_then_succeeds_later_with_a_webhook() {
    let stripe = Stripe::start().await;
    let (status, intent) = stripe
        .pay(
            "order-3ds-1",
            "3000",
            "usd",
            "pm_card_authenticationRequired",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{intent}");
    assert_eq!(intent["status"], "requires_action");
    assert_eq!(intent["next_action"]["type"], "use_stripe_sdk");
    assert!(intent["client_secret"]
        .as_str()
        .unwrap()
        .contains("_secret_"));
    let id = intent["id"].as_str().unwrap();

    let (status, body) = stripe
        .post(&format!("/v1/payment_intents/{id}/capture"), None, &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "payment_intent_unexpected_state");

    let (status, done) = stripe
        .post(
            &format!("/sandbox/payment_intents/{id}/authenticate"),
            None,
            &[("outcome", "succeed")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "succeeded");
    let events = stripe
        .events_of(&["payment_intent.requires_action", "payment_intent.succeeded"])
        .await;
    let succeeded = events
        .iter()
        .find(|e| e["type"] == "payment_intent.succeeded")
        .unwrap();
    assert_eq!(succeeded["data"]["object"]["id"], id);
    assert_eq!(
        succeeded["request"]["id"],
        Value::Null,
        "it happened outside an API request"
    );

    let (status, again) = stripe
        .post(&format!("/v1/payment_intents/{id}/confirm"), None, &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"]["code"], "payment_intent_unexpected_state");

    let (_, failing) = stripe
        .pay(
            "order-3ds-2",
            "3000",
            "usd",
            "pm_card_threeDSecure2Required",
        )
        .await;
    let failing_id = failing["id"].as_str().unwrap();
    let (_, failed) = stripe
        .post(
            &format!("/sandbox/payment_intents/{failing_id}/authenticate"),
            None,
            &[("outcome", "fail")],
        )
        .await;
    assert_eq!(failed["status"], "requires_payment_method");
    assert_eq!(
        failed["last_payment_error"]["code"],
        "payment_intent_authentication_failure"
    );
}

#[tokio::test]
async fn refunds_partial_several_and_full_within_the_captured_amount() {
    let stripe = Stripe::start().await;
    let (_, intent) = stripe
        .pay("order-refund-1", "10000", "usd", "pm_card_visa")
        .await;
    let id = intent["id"].as_str().unwrap();
    let (status, first) = stripe
        .post(
            "/v1/refunds",
            Some("refund-1"),
            &[("payment_intent", id), ("amount", "3000")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["object"], "refund");
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["amount"], 3000);
    let (status, _) = stripe
        .post(
            "/v1/refunds",
            Some("refund-2"),
            &[("payment_intent", id), ("amount", "2000")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, too_much) = stripe
        .post(
            "/v1/refunds",
            Some("refund-3"),
            &[("payment_intent", id), ("amount", "5001")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(too_much["error"]["code"], "amount_too_large");
    let (status, rest) = stripe
        .post("/v1/refunds", Some("refund-4"), &[("payment_intent", id)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest["amount"], 5000);
    let (status, none_left) = stripe
        .post("/v1/refunds", Some("refund-5"), &[("payment_intent", id)])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(none_left["error"]["code"], "charge_already_refunded");

    let (_, expanded) = stripe
        .get(&format!(
            "/v1/payment_intents/{id}?expand[]=latest_charge&expand[]=latest_charge.refunds"
        ))
        .await;
    let charge = &expanded["latest_charge"];
    assert_eq!(charge["amount_refunded"], 10000);
    assert_eq!(charge["refunded"], true);
    assert_eq!(charge["refunds"]["data"].as_array().unwrap().len(), 3);
    let (_, retrieved) = stripe
        .get(&format!("/v1/refunds/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(retrieved, first);
    stripe.events_of(&["charge.refunded"; 3]).await;
}

#[tokio::test]
async fn zero_decimal_currencies_count_whole_units() {
    let stripe = Stripe::start().await;
    let (status, small_usd) = stripe.pay("order-zd-1", "49", "usd", "pm_card_visa").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(small_usd["error"]["code"], "amount_too_small");
    let (status, jpy) = stripe.pay("order-zd-2", "50", "jpy", "pm_card_visa").await;
    assert_eq!(status, StatusCode::OK, "{jpy}");
    assert_eq!(jpy["amount_received"], 50);
    let (status, krw) = stripe
        .pay("order-zd-3", "41000", "KRW", "pm_card_visa")
        .await;
    assert_eq!(status, StatusCode::OK, "{krw}");
    assert_eq!(krw["currency"], "krw");
    let (status, _) = stripe.pay("order-zd-4", "99", "krw", "pm_card_visa").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_dispute_refuses_refunds_and_closes_lost_or_won_with_webhooks() {
    let stripe = Stripe::start().await;
    let (_, intent) = stripe
        .pay("order-dispute-1", "8000", "usd", "pm_card_visa")
        .await;
    let id = intent["id"].as_str().unwrap();
    stripe
        .post(
            "/v1/refunds",
            None,
            &[("payment_intent", id), ("amount", "1000")],
        )
        .await;
    let (status, dispute) = stripe
        .post(
            &format!("/sandbox/payment_intents/{id}/disputes"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dispute}");
    assert_eq!(dispute["object"], "dispute");
    assert_eq!(dispute["status"], "needs_response");
    assert_eq!(dispute["amount"], 7000, "the unrefunded amount");
    assert_eq!(dispute["balance_transactions"][0]["amount"], -7000);
    assert_eq!(dispute["balance_transactions"][0]["fee"], 1500);

    let (status, refused) = stripe
        .post(
            "/v1/refunds",
            None,
            &[("payment_intent", id), ("amount", "100")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"]["code"], "charge_disputed");

    let dispute_id = dispute["id"].as_str().unwrap();
    let (status, closed) = stripe
        .post(&format!("/v1/disputes/{dispute_id}/close"), None, &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(closed["status"], "lost");
    let (_, listed) = stripe
        .get(&format!("/v1/disputes?payment_intent={id}"))
        .await;
    assert_eq!(listed["data"][0]["id"], dispute_id);
    let events = stripe
        .events_of(&["charge.dispute.created", "charge.dispute.closed"])
        .await;
    assert_eq!(events[1]["data"]["object"]["status"], "lost");

    let (_, won_intent) = stripe
        .pay("order-dispute-2", "8000", "usd", "pm_card_createDispute")
        .await;
    let won_id = won_intent["id"].as_str().unwrap();
    let (_, disputes) = stripe
        .get(&format!("/v1/disputes?payment_intent={won_id}"))
        .await;
    let won_dispute = disputes["data"][0]["id"].as_str().unwrap();
    let (status, won) = stripe
        .post(
            &format!("/v1/disputes/{won_dispute}"),
            None,
            &[("evidence[uncategorized_text]", "winning_evidence")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{won}");
    assert_eq!(won["status"], "won");
    assert_eq!(won["balance_transactions"][1]["amount"], 8000);
}

#[tokio::test]
async fn a_timeout_after_charge_charges_then_holds_the_answer() {
    let stripe = Stripe::start_with(SandboxConfig {
        timeout_after_charge_delay_ms: 1_500,
        ..SandboxConfig::default()
    })
    .await;
    let request = stripe
        .http
        .post(stripe.url("/v1/payment_intents"))
        .bearer_auth(DEFAULT_STRIPE_SECRET_KEY)
        .header("Idempotency-Key", "timeout-1")
        .timeout(Duration::from_millis(300))
        .form(&[
            ("amount", "4100"),
            ("currency", "usd"),
            ("payment_method", "pm_sandbox_timeoutAfterCharge"),
            ("confirm", "true"),
            ("metadata[order_id]", "order-timeout-1"),
        ]);
    assert!(request.send().await.unwrap_err().is_timeout());
    let (_, found) = stripe
        .get(
            "/v1/payment_intents/search?query=metadata%5B%27order_id%27%5D%3A%27order-timeout-1%27",
        )
        .await;
    assert_eq!(found["data"][0]["status"], "succeeded");
    let (status, in_use) = stripe
        .post(
            "/v1/payment_intents",
            Some("timeout-1"),
            &[
                ("amount", "4100"),
                ("currency", "usd"),
                ("payment_method", "pm_sandbox_timeoutAfterCharge"),
                ("confirm", "true"),
                ("metadata[order_id]", "order-timeout-1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(in_use["error"]["code"], "idempotency_key_in_use");
}

#[tokio::test]
async fn pending_refunds_settle_later_as_refund_updated() {
    let stripe = Stripe::start().await;
    let (_, intent) = stripe
        .pay("order-pending-1", "2500", "gbp", "pm_sandbox_refundPending")
        .await;
    let id = intent["id"].as_str().unwrap();
    let (_, refund) = stripe
        .post(
            "/v1/refunds",
            None,
            &[("payment_intent", id), ("amount", "2500")],
        )
        .await;
    assert_eq!(refund["status"], "pending");
    let refund_id = refund["id"].as_str().unwrap();
    let (_, failed) = stripe
        .post(
            &format!("/sandbox/refunds/{refund_id}/settle"),
            None,
            &[("outcome", "failed")],
        )
        .await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["failure_reason"].is_string());
    let events = stripe.events_of(&["refund.updated"]).await;
    assert_eq!(events[0]["data"]["object"]["status"], "failed");
    // A failed refund gives the amount back to refund.
    let (status, again) = stripe
        .post("/v1/refunds", None, &[("payment_intent", id)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["amount"], 2500);
}

#[tokio::test]
async fn requests_are_checked_as_stripe_checks_them() {
    let stripe = Stripe::start().await;
    let (status, unknown) = stripe
        .post(
            "/v1/payment_intents",
            None,
            &[("amount", "100"), ("currency", "usd"), ("amountt", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown["error"]["code"], "parameter_unknown");
    assert_eq!(unknown["error"]["param"], "amountt");
    let (status, missing) = stripe
        .post("/v1/payment_intents", None, &[("currency", "usd")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(missing["error"]["code"], "parameter_missing");
    let (status, no_pm) = stripe
        .pay("order-check-1", "1000", "usd", "pm_card_nonexistent")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(no_pm["error"]["code"], "resource_missing");
    let json = stripe
        .http
        .post(stripe.url("/v1/payment_intents"))
        .bearer_auth(DEFAULT_STRIPE_SECRET_KEY)
        .json(&serde_json::json!({"amount": 100, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::BAD_REQUEST);
    let (status, missing_intent) = stripe.get("/v1/payment_intents/pi_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing_intent["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn webhook_endpoints_created_over_the_api_get_their_own_secret() {
    let stripe = Stripe::start().await;
    let (status, endpoint) = stripe
        .post(
            "/v1/webhook_endpoints",
            None,
            &[
                ("url", "http://127.0.0.1:9/unused"),
                ("enabled_events[]", "charge.refunded"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{endpoint}");
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(endpoint["enabled_events"][0], "charge.refunded");
}

#[tokio::test]
async fn an_endpoint_that_is_down_does_not_hold_back_another_endpoints_webhooks() {
    let stripe = Stripe::start().await;
    // Port 9 (discard) refuses connections here: every delivery to it is retried and fails.
    stripe
        .sandbox
        .add_stripe_webhook_endpoint("http://127.0.0.1:9/down", "whsec_down")
        .unwrap();
    for index in 0..5 {
        let (status, _) = stripe
            .pay(
                &format!("order-down-{index}"),
                "1000",
                "usd",
                "pm_card_visa",
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Delivered one after another behind the failing endpoint, these would take over 10 s.
    stripe.events_of(&["payment_intent.succeeded"; 5]).await;
}

#[tokio::test]
async fn manual_capture_holds_the_charge_until_captured_in_part() {
    let stripe = Stripe::start().await;
    let (status, held) = stripe
        .post(
            "/v1/payment_intents",
            None,
            &[
                ("amount", "5000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_mastercard"),
                ("confirm", "true"),
                ("capture_method", "manual"),
                ("metadata[order_id]", "order-capture-1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["status"], "requires_capture");
    assert_eq!(held["amount_capturable"], 5000);
    assert_eq!(held["amount_received"], 0);
    let id = held["id"].as_str().unwrap();
    let (status, refused) = stripe
        .post("/v1/refunds", None, &[("payment_intent", id)])
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "nothing captured to refund: {refused}"
    );
    let (status, too_much) = stripe
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            None,
            &[("amount_to_capture", "5001")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(too_much["error"]["code"], "amount_too_large");
    let (status, captured) = stripe
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            None,
            &[("amount_to_capture", "4000"), ("expand[]", "latest_charge")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{captured}");
    assert_eq!(captured["status"], "succeeded");
    assert_eq!(captured["amount_received"], 4000);
    assert_eq!(captured["latest_charge"]["amount_captured"], 4000);
    stripe
        .events_of(&[
            "payment_intent.amount_capturable_updated",
            "payment_intent.succeeded",
        ])
        .await;
}

#[tokio::test]
async fn rate_limited_requests_answer_429_and_are_not_stored_under_their_key() {
    let stripe = Stripe::start().await;
    let (status, _) = stripe
        .post("/sandbox/rate_limit", None, &[("requests", "2")])
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        let (status, limited) = stripe
            .pay("order-rate-1", "1000", "usd", "pm_card_visa")
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited["error"]["code"], "rate_limit");
    }
    let (status, paid) = stripe
        .pay("order-rate-1", "1000", "usd", "pm_card_visa")
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same key acts once the limit passes: {paid}"
    );
    assert_eq!(
        stripe.sandbox.stripe_stats()["chargesByOrderId"]["order-rate-1"],
        1
    );
}
