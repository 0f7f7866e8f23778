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
    assert!(
        accepted.event_id.starts_with("sha256-"),
        "a digest of the signed content, not the unsigned transmission id: {}",
        accepted.event_id
    );
    // The same signed content under another transmission id is the same delivery.
    let mut other_id = headers;
    other_id[2] = ("tosspayments-webhook-transmission-id", "wh_tx_other");
    let again = h
        .relay
        .accept(Provider::Toss, &HeaderPairs(&other_id), body, None)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.event_id, accepted.event_id);
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
    let events = h.delivery_events("toss", &accepted.event_id).await;
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
    assert!(matches!(outcome, ConfirmOutcome::Pending(..)));

    // The body lies (CANCELED); only the provider's own answer counts.
    let body = unsigned_toss_body(payment_key, "order-wh-unknown-1", "CANCELED");
    let headers = [("tosspayments-webhook-transmission-id", "wh_tx_status_1")];
    let accepted = h
        .relay
        .accept(Provider::Toss, &HeaderPairs(&headers), &body, None)
        .await
        .expect("unsigned status events are accepted as a prompt to re-fetch");
    assert!(
        accepted.event_id.starts_with("refetch-"),
        "named after the payment, never the unsigned header: {}",
        accepted.event_id
    );
    assert_eq!(h.worker.run_once().await.unwrap(), vec![Processed::Applied]);

    let order = h.payments.load_order(&order_id).await.unwrap().unwrap();
    assert_eq!(order.state.status, OrderStatus::Paid);
    assert_eq!(order.state.captured_minor, 30_000);
    assert_eq!(h.sandbox.stats().total_charges, 1);
    let events = h.delivery_events("toss", &accepted.event_id).await;
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
    assert!(event_id.starts_with("refetch-"), "{event_id}");
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
    let dead_id = h
        .relay
        .accept(Provider::Toss, &HeaderPairs(&headers), &body, None)
        .await
        .unwrap()
        .event_id;

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
        h.inbox_status("toss", &dead_id).await,
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

    // Eight failed re-fetches opened the re-fetch circuit, never the one payments use.
    assert_eq!(
        h.payments.gateway().circuit_state(),
        payledger_gateway::CircuitState::Closed,
        "webhook intake traffic must not open the payments' circuit"
    );
    assert_ne!(
        payledger_gateway::PaymentGateway::circuit_state(h.lookups.as_ref()),
        payledger_gateway::CircuitState::Closed
    );
    h.sandbox.start_outage(Duration::ZERO);
    // The re-fetch circuit opened during the outage: wait until the provider answers again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while payledger_gateway::PaymentGateway::payment_by_key(h.lookups.as_ref(), "pk_wh_dead_1")
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
    let events = h.delivery_events("toss", &dead_id).await;
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
    assert_eq!(h.inbox_status("toss", &dead_id).await.0, "applied");
}

/// Issue 14, item 3: the transmission id is unsigned, so it decides nothing. A forger who sends
/// first with the genuine delivery's id does not make the genuine one a duplicate.
#[tokio::test]
async fn a_forged_first_delivery_with_the_same_transmission_id_does_not_block_the_genuine_one() {
    let h = harness().await;
    let order_id = h.place_order("order-wh-forged-1", 40_000).await;
    h.payments
        .confirm(
            &order_id,
            PaymentKey::parse("pk_wh_forged_1").unwrap(),
            40_000,
            &RequestContext::system("test"),
        )
        .await
        .expect("paid");
    h.payments
        .gateway()
        .cancel(&CancelRequest {
            payment_key: "pk_wh_forged_1".into(),
            cancel_amount_minor: None,
            cancel_reason: "canceled in the provider console".into(),
            idempotency_key: "console-cancel-forged-1".into(),
        })
        .await
        .expect("the provider cancels");

    let headers = [("tosspayments-webhook-transmission-id", "wh_tx_genuine_1")];
    let forged = h
        .relay
        .accept(
            Provider::Toss,
            &HeaderPairs(&headers),
            &unsigned_toss_body("pk_made_up_by_a_forger", "order-nothing", "DONE"),
            Some("203.0.113.9"),
        )
        .await
        .unwrap();
    assert_eq!(h.worker.run_once().await.unwrap(), vec![Processed::Applied]);

    let genuine = h
        .relay
        .accept(
            Provider::Toss,
            &HeaderPairs(&headers),
            &unsigned_toss_body("pk_wh_forged_1", "order-wh-forged-1", "CANCELED"),
            Some("198.51.100.1"),
        )
        .await
        .unwrap();
    assert!(
        !genuine.duplicate,
        "the forged delivery blocked the genuine one"
    );
    assert_ne!(genuine.event_id, forged.event_id);
    assert_eq!(h.worker.run_once().await.unwrap(), vec![Processed::Applied]);
    let events = h.delivery_events("toss", &genuine.event_id).await;
    assert!(
        event_types(&events).contains(&"ProviderStateDiffers"),
        "the genuine event was applied from the provider's answer: {:?}",
        event_types(&events)
    );
}

/// Issue 14, item 2: what an unsigned delivery may cost is bounded.
#[tokio::test]
async fn unsigned_deliveries_keep_only_the_refetch_key_collapse_repeats_and_are_rate_limited() {
    use payledger_webhook_relay::intake::{IntakeLimits, LimitHit};
    use payledger_webhook_relay::Relay;
    let h = harness().await;
    let junk = |payment_key: &str| {
        json!({"eventType": "PAYMENT_STATUS_CHANGED", "note": "x".repeat(10_000),
            "data": {"paymentKey": payment_key, "status": "DONE", "extra": {"a": [1, 2, 3]}}})
        .to_string()
        .into_bytes()
    };
    // Ten prompts for one payment before the worker runs: one row, nine duplicates.
    let mut event_ids = std::collections::HashSet::new();
    for i in 0..10 {
        let transmission_id = format!("tx_{i}");
        let accepted = h
            .relay
            .accept(
                Provider::Toss,
                &HeaderPairs(&[(
                    "tosspayments-webhook-transmission-id",
                    transmission_id.as_str(),
                )]),
                &junk("pk_repeated_1"),
                Some("192.0.2.1"),
            )
            .await
            .unwrap();
        assert_eq!(accepted.duplicate, i > 0);
        event_ids.insert(accepted.event_id);
    }
    assert_eq!(event_ids.len(), 1);
    let (raw_body, headers, redeliveries): (Vec<u8>, serde_json::Value, i32) =
        sqlx::query_as("SELECT raw_body, headers, redeliveries FROM webhook_inbox")
            .fetch_one(&h.db.app_pool)
            .await
            .unwrap();
    assert_eq!(
        raw_body,
        br#"{"paymentKey":"pk_repeated_1"}"#.to_vec(),
        "only the re-fetch key is kept"
    );
    assert_eq!(
        headers["deliveryId"],
        serde_json::Value::Null,
        "the unsigned header is not kept"
    );
    assert_eq!(redeliveries, 9);

    // Per source and in total.
    let mut settings = h.relay.settings.clone();
    settings.inbound.unsigned_limits = IntakeLimits {
        per_source_per_minute: 5,
        total_per_minute: 8,
    };
    let limited = Relay::new(
        h.db.app_pool.clone(),
        h.store.clone(),
        settings,
        h.relay.clock.clone(),
    );
    let mut outcomes = Vec::new();
    for i in 0..25 {
        let result = limited
            .accept(
                Provider::Toss,
                &HeaderPairs(&[]),
                &junk(&format!("pk_junk_{i}")),
                Some("192.0.2.66"),
            )
            .await;
        outcomes.push(result.map(|a| a.duplicate));
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 5);
    assert!(outcomes[5..]
        .iter()
        .all(|o| matches!(o, Err(AcceptError::RateLimited(LimitHit::PerSource)))));
    let mut others = Vec::new();
    for i in 0..5 {
        let source = format!("192.0.2.{}", 100 + i);
        others.push(
            limited
                .accept(
                    Provider::Toss,
                    &HeaderPairs(&[]),
                    &junk(&format!("pk_other_{i}")),
                    Some(source.as_str()),
                )
                .await
                .is_ok(),
        );
    }
    assert_eq!(
        others,
        vec![true, true, true, false, false],
        "the total limit holds across sources"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_inbox")
        .fetch_one(&h.db.app_pool)
        .await
        .unwrap();
    assert_eq!(rows, 1 + 5 + 3);
}
