//! The Paddle connector against the sandbox's Paddle Billing API, over HTTP, with the sandbox's
//! signed notifications received by a local endpoint and verified as payledger verifies them.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payledger_connector_paddle::webhook::{interpret, PaddleMeaning};
use payledger_connector_paddle::wire::{
    AdjustmentAction, AdjustmentStatus, SubscriptionStatus, TransactionStatus,
};
use payledger_connector_paddle::{
    AdjustmentRequest, CancelFrom, PaddleApiKey, PaddleConfig, PaddleGateway,
};
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::FailureClass;
use payledger_gateway::{ConfirmRequest, GatewayError, PaymentFactStatus, PaymentGateway};
use payledger_sandbox::{
    start, PaddleSandboxConfig, RunningSandbox, SandboxConfig, DEFAULT_PADDLE_API_KEY,
    SANDBOX_DECLINE_CARD, SANDBOX_PRICE_BASIC_MONTHLY, SANDBOX_PRICE_CREDITS_100,
};
use payledger_webhooks::{verify, HeaderPairs, Scheme, WebhookSecret};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "pdl_ntfset_connector_tests";

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct Harness {
    sandbox: RunningSandbox,
    paddle: PaddleGateway,
    received: Received,
    _receiver: actix_web::dev::ServerHandle,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    received: web::Data<Received>,
) -> HttpResponse {
    let signature = req
        .headers()
        .get("paddle-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received.lock().unwrap().push((signature, body.to_vec()));
    HttpResponse::Ok().finish()
}

impl Harness {
    async fn start() -> Harness {
        let received: Received = Arc::default();
        let data = web::Data::new(received.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let hook = format!("http://{}/hook", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let sandbox = start(
            "127.0.0.1:0".parse().unwrap(),
            SandboxConfig {
                paddle: PaddleSandboxConfig {
                    webhook_url: Some(hook),
                    webhook_secret: SECRET.to_owned(),
                    ..PaddleSandboxConfig::default()
                },
                ..SandboxConfig::default()
            },
        )
        .await
        .unwrap();
        let mut config = PaddleConfig::sandbox(sandbox.paddle_base_url());
        config.transport.backoff_base_ms = 10;
        config.transport.backoff_max_ms = 50;
        let paddle = PaddleGateway::new(config).unwrap();
        Harness {
            sandbox,
            paddle,
            received,
            _receiver: handle,
        }
    }

    /// What a customer or Paddle itself does, through the sandbox's controls.
    async fn control(&self, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.sandbox.paddle_base_url()))
            .bearer_auth(DEFAULT_PADDLE_API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json::<Value>().await.unwrap()["data"].clone()
    }

    async fn checkout(&self, price_id: &str) -> Value {
        self.control(
            "/sandbox/checkout",
            json!({"items": [{"price_id": price_id, "quantity": 1}],
                   "customer_email": "member@example.com",
                   "custom_data": {"customerId": "cust-1", "orderId": "order-paddle-1"}}),
        )
        .await
    }

    /// Waits for `count` notifications and returns their event types, each verified.
    async fn notifications(&self, count: usize) -> Vec<String> {
        for _ in 0..200 {
            if self.received.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received = self.received.lock().unwrap().clone();
        assert!(
            received.len() >= count,
            "only {} notifications",
            received.len()
        );
        received
            .iter()
            .map(|(signature, body)| {
                let headers = [("Paddle-Signature", signature.as_str())];
                verify(
                    Scheme::Paddle,
                    &HeaderPairs(&headers),
                    body,
                    &[WebhookSecret::new(SECRET)],
                    chrono::Utc::now(),
                    chrono::Duration::seconds(5).to_std().unwrap(),
                )
                .expect("the sandbox signs as Paddle does");
                interpret(body).expect("a Paddle notification").event_type
            })
            .collect()
    }
}

#[tokio::test]
async fn a_checkout_is_a_captured_transaction_and_an_active_subscription_with_paddles_period() {
    let h = Harness::start().await;
    let checkout = h.checkout(SANDBOX_PRICE_BASIC_MONTHLY).await;
    let txn_id = checkout["transaction"]["id"].as_str().unwrap();
    let sub_id = checkout["subscription"]["id"].as_str().unwrap();

    let txn = h.paddle.transaction(txn_id).await.unwrap().unwrap();
    assert_eq!(txn.status, TransactionStatus::Completed);
    assert_eq!(txn.subscription_id.as_deref(), Some(sub_id));
    assert_eq!(txn.price_ids(), [SANDBOX_PRICE_BASIC_MONTHLY]);
    let money = txn.money().unwrap();
    assert_eq!(
        (money.total_minor, money.fee_minor, money.earnings_minor),
        (990, 99, 891)
    );
    assert_eq!(money.currency, Currency::USD);

    let payment = h.paddle.transaction_payment(txn_id).await.unwrap().unwrap();
    assert_eq!(payment.status, PaymentFactStatus::Captured);
    assert_eq!(payment.order_id, "order-paddle-1");
    assert_eq!(payment.card.as_ref().unwrap().last4, "4242");

    let sub = h.paddle.subscription(sub_id).await.unwrap().unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
    let period = sub.current_billing_period.clone().unwrap();
    assert_eq!(Some(period.ends_at), sub.next_billed_at);
    assert_eq!(sub.custom_text("customerId"), Some("cust-1"));

    // A confirm of the order looks the transaction up: the same payment, nothing charged again.
    let confirmed = h
        .paddle
        .confirm(&ConfirmRequest {
            payment_key: txn_id.to_owned(),
            order_id: "order-paddle-1".to_owned(),
            amount_minor: 990,
            currency: Currency::USD,
            idempotency_key: "confirm-1".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(confirmed, payment);

    let types = h.notifications(6).await;
    assert_eq!(
        types,
        [
            "customer.created",
            "transaction.created",
            "transaction.paid",
            "subscription.created",
            "subscription.activated",
            "transaction.completed"
        ]
    );
    assert!(h
        .paddle
        .transaction("txn_01missing")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn renewals_past_due_recovery_and_a_scheduled_cancel_follow_paddles_billing() {
    let h = Harness::start().await;
    let checkout = h.checkout(SANDBOX_PRICE_BASIC_MONTHLY).await;
    let sub_id = checkout["subscription"]["id"].as_str().unwrap().to_owned();
    let first = h.paddle.subscription(&sub_id).await.unwrap().unwrap();

    let renewal = h
        .control(
            &format!("/sandbox/subscriptions/{sub_id}/advance"),
            json!({}),
        )
        .await;
    let renewed = h.paddle.subscription(&sub_id).await.unwrap().unwrap();
    assert_eq!(
        renewed.current_billing_period.as_ref().unwrap().starts_at,
        first.current_billing_period.as_ref().unwrap().ends_at
    );
    let renewal_txn = renewal["transaction"]["id"].as_str().unwrap();
    let txns = h
        .paddle
        .transactions_of_subscription(&sub_id)
        .await
        .unwrap();
    assert_eq!(txns.len(), 2);
    assert!(txns
        .iter()
        .any(|t| t.id == renewal_txn && t.origin.as_deref() == Some("subscription_recurring")));

    h.control(
        &format!("/sandbox/subscriptions/{sub_id}/advance"),
        json!({"card": SANDBOX_DECLINE_CARD}),
    )
    .await;
    let past_due = h.paddle.subscription(&sub_id).await.unwrap().unwrap();
    assert_eq!(past_due.status, SubscriptionStatus::PastDue);
    h.control(
        &format!("/sandbox/subscriptions/{sub_id}/dunning"),
        json!({"outcome": "recovered"}),
    )
    .await;
    assert_eq!(
        h.paddle
            .subscription(&sub_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        SubscriptionStatus::Active
    );

    let scheduled = h
        .paddle
        .cancel_subscription(&sub_id, CancelFrom::NextBillingPeriod)
        .await
        .unwrap();
    assert_eq!(scheduled.status, SubscriptionStatus::Active);
    assert_eq!(
        scheduled.cancel_effective_at(),
        scheduled.current_billing_period.as_ref().map(|p| p.ends_at)
    );
    // Asking again asks for the same state.
    let again = h
        .paddle
        .cancel_subscription(&sub_id, CancelFrom::NextBillingPeriod)
        .await
        .unwrap();
    assert_eq!(again.cancel_effective_at(), scheduled.cancel_effective_at());

    h.control(
        &format!("/sandbox/subscriptions/{sub_id}/advance"),
        json!({}),
    )
    .await;
    let ended = h.paddle.subscription(&sub_id).await.unwrap().unwrap();
    assert_eq!(ended.status, SubscriptionStatus::Canceled);
    let refused = h
        .paddle
        .cancel_subscription(&sub_id, CancelFrom::Immediately)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, GatewayError::Refused(f) if f.class == FailureClass::NotCancelable),
        "{refused:?}"
    );
    let types = h.notifications(20).await;
    for expected in [
        "transaction.completed",
        "transaction.payment_failed",
        "subscription.past_due",
        "subscription.updated",
        "subscription.canceled",
    ] {
        assert!(types.iter().any(|t| t == expected), "{expected}: {types:?}");
    }
}

#[tokio::test]
async fn a_refund_waits_for_paddles_approval_and_a_chargeback_is_an_approved_adjustment() {
    let h = Harness::start().await;
    let checkout = h.checkout(SANDBOX_PRICE_CREDITS_100).await;
    assert!(checkout["subscription"].is_null());
    let txn_id = checkout["transaction"]["id"].as_str().unwrap().to_owned();

    let partial = h
        .paddle
        .create_adjustment(&AdjustmentRequest {
            transaction_id: txn_id.clone(),
            action: AdjustmentAction::Refund,
            reason: "customer asked".to_owned(),
            amount_minor: Some(400),
        })
        .await
        .unwrap();
    assert_eq!(partial.status, AdjustmentStatus::PendingApproval);
    assert_eq!(partial.money().unwrap().total_minor, 400);
    let pending = h
        .paddle
        .transaction_payment(&txn_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pending.status,
        PaymentFactStatus::Captured,
        "not refunded until approved"
    );

    h.control(
        &format!("/sandbox/adjustments/{}/approve", partial.id),
        json!({}),
    )
    .await;
    let refunded = h
        .paddle
        .transaction_payment(&txn_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refunded.status, PaymentFactStatus::PartiallyRefunded);
    assert_eq!(refunded.balance_amount_minor, 600);
    assert_eq!(
        h.paddle
            .adjustment(&partial.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AdjustmentStatus::Approved
    );

    let too_much = h
        .paddle
        .create_adjustment(&AdjustmentRequest {
            transaction_id: txn_id.clone(),
            action: AdjustmentAction::Refund,
            reason: "again".to_owned(),
            amount_minor: Some(601),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(too_much, GatewayError::Refused(f) if f.class == FailureClass::InvalidRequest)
    );

    h.control(
        &format!("/sandbox/transactions/{txn_id}/chargeback"),
        json!({}),
    )
    .await;
    let adjustments = h.paddle.adjustments_of_transaction(&txn_id).await.unwrap();
    let chargeback = adjustments
        .iter()
        .find(|a| a.action == AdjustmentAction::Chargeback)
        .unwrap();
    assert_eq!(chargeback.status, AdjustmentStatus::Approved);
    assert_eq!(chargeback.money().unwrap().total_minor, 600);
    // Paddle passes its chargeback fee on (the sandbox's 1 500), stated in payout_totals.
    assert_eq!(chargeback.chargeback_fee_minor().unwrap(), 1_500);
    let read = payledger_connector_paddle::ledger::read_adjustment(chargeback).unwrap();
    assert_eq!(read.chargeback_fee_minor, 1_500);
    let charged_back = h
        .paddle
        .transaction_payment(&txn_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(charged_back.status, PaymentFactStatus::Refunded);

    let types = h.notifications(7).await;
    let received = h.received.lock().unwrap().clone();
    let meanings: Vec<PaddleMeaning> = received
        .iter()
        .map(|(_, body)| interpret(body).unwrap().meaning)
        .filter(|m| matches!(m, PaddleMeaning::Adjustment { .. }))
        .collect();
    assert_eq!(meanings.len(), 3, "{types:?}");
}

#[tokio::test]
async fn paddle_down_or_a_wrong_key_is_a_clear_error_and_a_creating_call_is_never_sent_twice() {
    let h = Harness::start().await;
    let checkout = h.checkout(SANDBOX_PRICE_CREDITS_100).await;
    let txn_id = checkout["transaction"]["id"].as_str().unwrap().to_owned();

    // One failed lookup is retried.
    h.control("/sandbox/outage", json!({"requests": 1})).await;
    assert!(h.paddle.transaction(&txn_id).await.unwrap().is_some());

    // A refund request that meets a 5xx is not sent again: its outcome is unknown.
    h.control("/sandbox/outage", json!({"requests": 1})).await;
    let unknown = h
        .paddle
        .create_adjustment(&AdjustmentRequest {
            transaction_id: txn_id.clone(),
            action: AdjustmentAction::Refund,
            reason: "r".to_owned(),
            amount_minor: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, GatewayError::OutcomeUnknown { .. }),
        "{unknown:?}"
    );
    assert!(h
        .paddle
        .adjustments_of_transaction(&txn_id)
        .await
        .unwrap()
        .is_empty());

    // Paddle down for longer than the retries: a provider error, named.
    h.control("/sandbox/outage", json!({"requests": 5})).await;
    let down = h.paddle.transaction(&txn_id).await.unwrap_err();
    assert!(
        matches!(&down, GatewayError::Refused(f) if f.class == FailureClass::ProviderError),
        "{down:?}"
    );
    h.control("/sandbox/outage", json!({"requests": 0})).await;

    let wrong_key = PaddleGateway::new(PaddleConfig::new(
        h.sandbox.paddle_base_url(),
        PaddleApiKey::new("pdl_sdbx_apikey_wrong"),
    ))
    .unwrap();
    let refused = wrong_key.transaction(&txn_id).await.unwrap_err();
    assert!(
        matches!(&refused, GatewayError::Refused(f) if f.provider_code == "forbidden"),
        "{refused:?}"
    );
    assert!(!format!("{refused} {wrong_key:?}").contains("wrong"));
}

#[tokio::test]
async fn paddle_bills_its_own_subscriptions_so_billing_keys_and_direct_refunds_are_refused() {
    let h = Harness::start().await;
    assert_eq!(h.paddle.provider_name(), "paddle");
    let refused = h.paddle.payment_by_order_id("order-1").await.unwrap_err();
    assert!(matches!(refused, GatewayError::Refused(f) if f.class == FailureClass::InvalidRequest));
    assert!(PaddleGateway::new(PaddleConfig::sandbox("http://example.com/paddle")).is_err());
}
