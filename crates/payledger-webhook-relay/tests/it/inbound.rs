//! Webhooks in: verification on the raw body, de-duplication, processing, retries, dead letters.

use crate::support::*;
use chrono::Utc;
use payledger_app::context::RequestContext;
use payledger_app::payments::ConfirmOutcome;
use payledger_domain::ids::PaymentKey;
use payledger_domain::order::OrderStatus;
use payledger_domain::webhook::{VerificationMethod, WebhookDeliveryEvent, WebhookOutcome};
use payledger_gateway::CancelRequest;
use payledger_metrics::metrics;
use payledger_sandbox::SandboxConfig;
use payledger_webhook_relay::processor::Processed;
use payledger_webhook_relay::{AcceptError, Provider};
use payledger_webhooks::{HeaderPairs, SignatureError};
use serde_json::json;
use std::time::Duration;

fn event_types(events: &[WebhookDeliveryEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            WebhookDeliveryEvent::WebhookReceived(_) => "WebhookReceived",
            WebhookDeliveryEvent::WebhookVerified(_) => "WebhookVerified",
            WebhookDeliveryEvent::ProviderStateDiffers(_) => "ProviderStateDiffers",
            WebhookDeliveryEvent::WebhookApplied(_) => "WebhookApplied",
            WebhookDeliveryEvent::WebhookAttemptFailed(_) => "WebhookAttemptFailed",
            WebhookDeliveryEvent::WebhookDeadLettered(_) => "WebhookDeadLettered",
            WebhookDeliveryEvent::WebhookReplayRequested(_) => "WebhookReplayRequested",
        })
        .collect()
}

fn unsigned_toss_body(payment_key: &str, order_id: &str, claimed_status: &str) -> Vec<u8> {
    json!({
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-01-01T00:00:00.000000",
        "data": {"paymentKey": payment_key, "orderId": order_id, "status": claimed_status}
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_stripe_event_signed_with_the_previous_secret_is_stored_once_and_applied_once() {
    let h = harness().await;
    let body = json!({"id": "evt_rotation_1", "type": "charge.succeeded",
        "data": {"object": {"metadata": {"order_id": "order-stripe-1"}}}})
    .to_string();
    let now = Utc::now().timestamp();
    let signature = stripe_signature(STRIPE_PREVIOUS_SECRET, now, body.as_bytes());
    let headers = [("stripe-signature", signature.as_str())];

    let first = h
        .relay
        .accept(
            Provider::Stripe,
            &HeaderPairs(&headers),
            body.as_bytes(),
            None,
        )
        .await
        .expect("a genuine delivery signed with the previous secret is accepted");
    assert!(!first.duplicate);
    assert_eq!(first.event_id, "evt_rotation_1");
    let again = h
        .relay
        .accept(
            Provider::Stripe,
            &HeaderPairs(&headers),
            body.as_bytes(),
            None,
        )
        .await
        .unwrap();
    assert!(
        again.duplicate,
        "the redelivery is recognised by its event id"
    );
    assert_eq!(again.inbox_id, first.inbox_id);

    let processed = h.worker.run_once().await.unwrap();
    assert_eq!(
        processed,
        vec![Processed::Applied],
        "one row, processed once"
    );
    assert!(h.worker.run_once().await.unwrap().is_empty());
    assert_eq!(
        h.inbox_status("stripe", "evt_rotation_1").await,
        ("applied".into(), 1)
    );

    let events = h.delivery_events("stripe", "evt_rotation_1").await;
    assert_eq!(
        event_types(&events),
        vec!["WebhookReceived", "WebhookVerified", "WebhookApplied"]
    );
    let WebhookDeliveryEvent::WebhookVerified(verified) = &events[1] else {
        unreachable!()
    };
    assert_eq!(verified.method, VerificationMethod::Signature);
    assert_eq!(
        verified.secret_index,
        Some(1),
        "the previous secret matched"
    );
    assert!(events
        .iter()
        .all(|e| e.order_id() == Some("order-stripe-1")));
    let redeliveries: i32 =
        sqlx::query_scalar("SELECT redeliveries FROM webhook_inbox WHERE id = $1")
            .bind(first.inbox_id)
            .fetch_one(&h.db.app_pool)
            .await
            .unwrap();
    assert_eq!(redeliveries, 1);
}

#[tokio::test]
async fn forged_stale_and_malformed_deliveries_are_refused_counted_and_recorded() {
    let h = harness().await;
    let body = br#"{"id":"evt_forged","type":"charge.refunded"}"#;
    let now = Utc::now().timestamp();
    let rejected_before = metrics()
        .webhooks_rejected
        .get_or_create(&payledger_metrics::RejectionLabels {
            provider: "stripe",
            code: "E_WEBHOOK_SIGNATURE_MISMATCH",
        })
        .get();

    let forged = stripe_signature("whsec_an_attackers_guess", now, body);
    let stale = stripe_signature(STRIPE_SECRET, now - 301, body);
    let tampered_body = br#"{"id":"evt_forged","type":"charge.refunded","amount":1}"#;
    let genuine = stripe_signature(STRIPE_SECRET, now, body);
    let cases: [(&str, &[u8], &str); 5] = [
        (forged.as_str(), body, "E_WEBHOOK_SIGNATURE_MISMATCH"),
        (stale.as_str(), body, "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE"),
        // A genuine signature over other bytes: the body was changed in transit.
        (
            genuine.as_str(),
            tampered_body,
            "E_WEBHOOK_SIGNATURE_MISMATCH",
        ),
        ("t=1700000000,v1=zz", body, "E_WEBHOOK_SIGNATURE_ENCODING"),
        ("nonsense", body, "E_WEBHOOK_SIGNATURE_MALFORMED"),
    ];
    for (signature, body, code) in cases {
        let headers = [("stripe-signature", signature)];
        let error = h
            .relay
            .accept(
                Provider::Stripe,
                &HeaderPairs(&headers),
                body,
                Some("127.0.0.9"),
            )
            .await
            .expect_err("refused");
        assert_eq!(error.code(), code);
    }
    let missing = h
        .relay
        .accept(Provider::Stripe, &HeaderPairs(&[]), body, None)
        .await
        .unwrap_err();
    assert!(matches!(
        missing,
        AcceptError::Signature(SignatureError::MissingHeader { .. })
    ));

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_inbox")
        .fetch_one(&h.db.app_pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing refused is stored for processing");
    let recorded: Vec<(String, i64)> = sqlx::query_as(
        "SELECT code, sum(count)::bigint FROM webhook_rejections WHERE provider = 'stripe' \
         GROUP BY code ORDER BY code",
    )
    .fetch_all(&h.db.app_pool)
    .await
    .unwrap();
    assert_eq!(
        recorded,
        vec![
            ("E_WEBHOOK_SIGNATURE_ENCODING".into(), 1),
            ("E_WEBHOOK_SIGNATURE_MALFORMED".into(), 1),
            ("E_WEBHOOK_SIGNATURE_MISMATCH".into(), 2),
            ("E_WEBHOOK_SIGNATURE_MISSING".into(), 1),
            ("E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE".into(), 1),
        ]
    );
    let rejected_after = metrics()
        .webhooks_rejected
        .get_or_create(&payledger_metrics::RejectionLabels {
            provider: "stripe",
            code: "E_WEBHOOK_SIGNATURE_MISMATCH",
        })
        .get();
    // Other tests in this process may count too, so at least the two refused here.
    assert!(rejected_after >= rejected_before + 2);
}

#[tokio::test]
async fn a_signed_toss_payout_event_is_verified_with_the_security_key() {
    let h = harness().await;
    let body = br#"{"eventType":"payout.changed","createdAt":"2026-01-01T09:00:00+09:00","data":{"payoutId":"FPA_1","status":"COMPLETED"}}"#;
    let time = Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let signature = toss_signature(TOSS_SECURITY_KEY, body, &time);
    let headers = [
        ("tosspayments-webhook-signature", signature.as_str()),
        ("tosspayments-webhook-transmission-time", time.as_str()),
        ("tosspayments-webhook-transmission-id", "wh_tx_payout_1"),
    ];
    let accepted = h
        .relay
        .accept(Provider::Toss, &HeaderPairs(&headers), body, None)
        .await
        .expect("a payout event signed with the security key");
    assert_eq!(accepted.event_id, "wh_tx_payout_1");
    let forged = [
        (
            "tosspayments-webhook-signature",
            "v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
        ("tosspayments-webhook-transmission-time", time.as_str()),
    ];
    let error = h
        .relay
        .accept(Provider::Toss, &HeaderPairs(&forged), body, None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "E_WEBHOOK_SIGNATURE_MISMATCH");
    assert_eq!(h.worker.run_once().await.unwrap(), vec![Processed::Applied]);
    let events = h.delivery_events("toss", "wh_tx_payout_1").await;
    let WebhookDeliveryEvent::WebhookApplied(applied) = events.last().unwrap() else {
        panic!("{events:?}")
    };
    assert_eq!(applied.outcome, WebhookOutcome::Recorded);
}

#[tokio::test]
async fn an_unsigned_toss_status_event_settles_an_unknown_outcome_from_the_providers_answer() {
    // The confirm times out after the sandbox charged: payledger does not know the outcome.
    let h = harness_with(
        SandboxConfig {
            timeout_after_charge_delay_ms: 1_500,
            ..SandboxConfig::default()
        },
        300,
    )
    .await;
    let order_id = h.place_order("order-wh-unknown-1", 30_000).await;
    let payment_key = "sandbox_timeout_after_charge_wh1";
    let outcome = h
        .payments
        .confirm(
            &order_id,
            PaymentKey::parse(payment_key).unwrap(),
            30_000,
            &RequestContext::system("test"),
        )
        .await
        .expect("the confirm is accepted, outcome unknown");
    assert!(matches!(outcome, ConfirmOutcome::Pending(_)));

    // The body lies (CANCELED); only the provider's own answer counts.
    let body = unsigned_toss_body(payment_key, "order-wh-unknown-1", "CANCELED");
    let headers = [("tosspayments-webhook-transmission-id", "wh_tx_status_1")];
    h.relay
        .accept(Provider::Toss, &HeaderPairs(&headers), &body, None)
        .await
        .expect("unsigned status events are accepted as a prompt to re-fetch");
    assert_eq!(h.worker.run_once().await.unwrap(), vec![Processed::Applied]);

    let order = h.payments.load_order(&order_id).await.unwrap().unwrap();
    assert_eq!(order.state.status, OrderStatus::Paid);
    assert_eq!(order.state.captured_minor, 30_000);
    assert_eq!(h.sandbox.stats().total_charges, 1);
    let events = h.delivery_events("toss", "wh_tx_status_1").await;
    assert_eq!(
        event_types(&events),
        vec!["WebhookReceived", "WebhookVerified", "WebhookApplied"]
    );
    let WebhookDeliveryEvent::WebhookVerified(verified) = &events[1] else {
        unreachable!()
    };
    assert_eq!(verified.method, VerificationMethod::ProviderLookup);
    assert_eq!(verified.provider_status.as_deref(), Some("DONE"));
    let WebhookDeliveryEvent::WebhookApplied(applied) = &events[2] else {
        unreachable!()
    };
    assert_eq!(applied.outcome, WebhookOutcome::Settled);
    assert_eq!(applied.order_id.as_deref(), Some("order-wh-unknown-1"));
}

#[tokio::test]
async fn a_payment_canceled_at_the_provider_but_paid_here_is_flagged_for_support_not_refunded() {
    let h = harness().await;
    let order_id = h.place_order("order-wh-differs-1", 40_000).await;
    h.payments
        .confirm(
            &order_id,
            PaymentKey::parse("pk_wh_differs_1").unwrap(),
            40_000,
            &RequestContext::system("test"),
        )
        .await
        .expect("paid");
    // Someone cancels in the provider's console, outside payledger.
    h.payments
        .gateway()
        .cancel(&CancelRequest {
            payment_key: "pk_wh_differs_1".into(),
            cancel_amount_minor: None,
            cancel_reason: "canceled in the provider console".into(),
            idempotency_key: "console-cancel-1".into(),
        })
        .await
        .expect("the provider cancels");

    let body = unsigned_toss_body("pk_wh_differs_1", "order-wh-differs-1", "CANCELED");
    h.relay
        .accept(Provider::Toss, &HeaderPairs(&[]), &body, None)
        .await
        .unwrap();
    assert_eq!(h.worker.run_once().await.unwrap(), vec![Processed::Applied]);

    let order = h.payments.load_order(&order_id).await.unwrap().unwrap();
    assert_eq!(
        order.state.status,
        OrderStatus::Paid,
        "no refund is invented"
    );
    assert_eq!(order.state.refunded_minor, 0);
    let event_id: String = sqlx::query_scalar("SELECT event_id FROM webhook_inbox")
        .fetch_one(&h.db.app_pool)
        .await
        .unwrap();
    assert!(
        event_id.starts_with("sha256-"),
        "no transmission id: the body's hash"
    );
    let events = h.delivery_events("toss", &event_id).await;
    assert_eq!(
        event_types(&events),
        vec![
            "WebhookReceived",
            "WebhookVerified",
            "ProviderStateDiffers",
            "WebhookApplied"
        ]
    );
    let WebhookDeliveryEvent::ProviderStateDiffers(differs) = &events[2] else {
        unreachable!()
    };
    assert_eq!(differs.provider_status, "CANCELED");
    assert_eq!(differs.payledger_status, "PAID");
    assert_eq!(differs.provider_canceled_minor, 40_000);
    assert_eq!(differs.payledger_refunded_minor, 0);
    assert!(events[2].summary().starts_with("ATTENTION"));
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_retried_then_dead_lettered_and_an_admin_replays_it() {
    let h = harness_with(SandboxConfig::default(), 500).await;
    let order_id = h.place_order("order-wh-dead-1", 10_000).await;
    h.payments
        .confirm(
            &order_id,
            PaymentKey::parse("pk_wh_dead_1").unwrap(),
            10_000,
            &RequestContext::system("test"),
        )
        .await
        .unwrap();
    h.sandbox.start_outage(Duration::from_secs(600));
    let body = unsigned_toss_body("pk_wh_dead_1", "order-wh-dead-1", "DONE");
    let headers = [("tosspayments-webhook-transmission-id", "wh_tx_dead_1")];
    h.relay
        .accept(Provider::Toss, &HeaderPairs(&headers), &body, None)
        .await
        .unwrap();

    let mut outcomes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !outcomes.contains(&Processed::DeadLettered) {
        assert!(tokio::time::Instant::now() < deadline, "{outcomes:?}");
        outcomes.extend(h.worker.run_once().await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let attempts = payledger_webhooks::MAX_INBOUND_ATTEMPTS as usize;
    assert_eq!(
        outcomes.len(),
        attempts,
        "four quick attempts, then hourly reprocessing, then the dead-letter queue"
    );
    assert!(outcomes[..attempts - 1]
        .iter()
        .all(|o| *o == Processed::Retry));
    assert_eq!(
        h.inbox_status("toss", "wh_tx_dead_1").await,
        ("dead".into(), attempts as i32)
    );

    let letters = h.relay.inbound_dead_letters(0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts as usize, attempts);
    assert!(letters[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("could not be asked"));

    h.sandbox.start_outage(Duration::ZERO);
    // The circuit breaker opened during the outage: wait until the provider answers again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h
        .payments
        .gateway()
        .payment_by_key("pk_wh_dead_1")
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the provider did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replayed = h
        .relay
        .replay_inbound(letters[0].id, "admin:ops")
        .await
        .unwrap();
    assert_eq!(replayed.status, "pending");
    assert!(matches!(
        h.relay.replay_inbound(letters[0].id, "admin:ops").await,
        Err(payledger_webhook_relay::ReplayError::NotDeadLettered)
    ));
    assert_eq!(h.worker.run_once().await.unwrap(), vec![Processed::Applied]);
    let events = h.delivery_events("toss", "wh_tx_dead_1").await;
    let types = event_types(&events);
    assert_eq!(types[0], "WebhookReceived");
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "WebhookAttemptFailed")
            .count(),
        attempts
    );
    assert!(types.contains(&"WebhookDeadLettered"));
    assert!(types.contains(&"WebhookReplayRequested"));
    assert_eq!(types.last(), Some(&"WebhookApplied"));
    assert!(
        events
            .iter()
            .all(|e| e.order_id().is_none() || e.order_id() == Some("order-wh-dead-1")),
        "an unsigned body's order id is only used once the provider confirmed it"
    );
    assert_eq!(h.inbox_status("toss", "wh_tx_dead_1").await.0, "applied");
}
