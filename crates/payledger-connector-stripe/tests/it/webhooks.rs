//! Stripe webhooks from the sandbox, verified, interpreted and re-checked against the API.

use crate::{confirm, Harness};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payledger_connector_stripe::webhook::{
    interpret, recheck, DisputeState, RefundState, StripeEvent, StripeFact, StripeMeaning,
};
use payledger_domain::money::Currency;
use payledger_gateway::{PaymentFactStatus, PaymentGateway};
use payledger_sandbox::SandboxConfig;
use payledger_webhooks::{verify, HeaderPairs, Scheme, WebhookSecret, DEFAULT_TOLERANCE};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "whsec_connector_it";

type Inbox = Arc<Mutex<Vec<StripeEvent>>>;

/// A receiver that does what payledger's webhook endpoint must: verify, then interpret.
async fn receiver(h: &Harness) -> (Inbox, actix_web::dev::ServerHandle) {
    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let sink = inbox.clone();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().route(
            "/stripe",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let sink = sink.clone();
                async move {
                    let signature = req
                        .headers()
                        .get("stripe-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let verified = verify(
                        Scheme::Stripe,
                        &HeaderPairs(&[("Stripe-Signature", signature.as_str())]),
                        &body,
                        &[WebhookSecret::new(SECRET)],
                        chrono::Utc::now(),
                        DEFAULT_TOLERANCE,
                    );
                    if verified.is_err() {
                        return HttpResponse::BadRequest().finish();
                    }
                    sink.lock().unwrap().push(interpret(&body).unwrap());
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    h.sandbox
        .add_stripe_webhook_endpoint(&format!("http://{addr}/stripe"), SECRET)
        .unwrap();
    (inbox, handle)
}

async fn next_of(inbox: &Inbox, event_type: &str, seen: usize) -> StripeEvent {
    for _ in 0..100 {
        let found: Vec<StripeEvent> = inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event.event_type == event_type)
            .cloned()
            .collect();
        if found.len() > seen {
            return found[seen].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {event_type} webhook arrived");
}

#[tokio::test]
async fn payment_refund_and_dispute_webhooks_are_rechecked_into_facts() {
    let h = Harness::start_with(SandboxConfig::default(), |config| config).await;
    let (inbox, _server) = receiver(&h).await;

    // 3-D Secure finished by the customer: payment_intent.succeeded, re-checked as Done.
    let pending = h
        .gateway
        .confirm(&confirm(
            "pm_card_threeDSecure2Required",
            "ord-hook-1",
            9_000,
            Currency::JPY,
        ))
        .await
        .unwrap();
    let pi = pending.payment_key.clone();
    let action = next_of(&inbox, "payment_intent.requires_action", 0).await;
    assert!(matches!(
        action.meaning,
        StripeMeaning::NoLedgerEffect { .. }
    ));
    h.control(
        &format!("/sandbox/payment_intents/{pi}/authenticate"),
        &[("outcome", "succeed")],
    )
    .await;
    let succeeded = next_of(&inbox, "payment_intent.succeeded", 0).await;
    let StripeFact::Payment {
        payment,
        refund: None,
    } = recheck(&h.gateway, &succeeded.meaning).await.unwrap()
    else {
        panic!("a payment fact");
    };
    assert_eq!(payment.status, PaymentFactStatus::Captured);
    assert_eq!(
        (payment.order_id.as_str(), payment.total_amount_minor),
        ("ord-hook-1", 9_000)
    );
    let charge_succeeded = next_of(&inbox, "charge.succeeded", 0).await;
    assert!(matches!(
        recheck(&h.gateway, &charge_succeeded.meaning)
            .await
            .unwrap(),
        StripeFact::NoLedgerEffect { .. }
    ));

    // A refund made in Stripe's dashboard: charge.refunded, re-checked with the refund listed.
    h.control(
        &format!("/sandbox/payment_intents/{pi}/refunds"),
        &[("amount", "2000")],
    )
    .await;
    let refunded = next_of(&inbox, "charge.refunded", 0).await;
    let StripeFact::Payment { payment, .. } = recheck(&h.gateway, &refunded.meaning).await.unwrap()
    else {
        panic!("a payment fact");
    };
    assert_eq!(payment.status, PaymentFactStatus::PartiallyRefunded);
    assert_eq!(payment.cancels.len(), 1);
    assert_eq!(payment.cancels[0].cancel_amount_minor, 2_000);
    let created = next_of(&inbox, "refund.created", 0).await;
    let StripeFact::Payment {
        refund: Some(refund),
        ..
    } = recheck(&h.gateway, &created.meaning).await.unwrap()
    else {
        panic!("a refund fact");
    };
    assert_eq!(
        (refund.status, refund.amount_minor, refund.currency),
        (RefundState::Succeeded, 2_000, Currency::JPY)
    );

    // A dispute opened, then lost: the fact carries the withdrawal and Stripe's fee.
    h.control(&format!("/sandbox/payment_intents/{pi}/disputes"), &[])
        .await;
    let opened = next_of(&inbox, "charge.dispute.created", 0).await;
    let StripeFact::Dispute(open) = recheck(&h.gateway, &opened.meaning).await.unwrap() else {
        panic!("a dispute fact");
    };
    assert_eq!(open.status, DisputeState::Open);
    assert_eq!(
        (open.amount_minor, open.withdrawn_minor, open.fee_minor),
        (7_000, 7_000, 2_000)
    );
    assert_eq!(open.payment_key, pi);
    let withdrawn = next_of(&inbox, "charge.dispute.funds_withdrawn", 0).await;
    assert!(matches!(
        withdrawn.meaning,
        StripeMeaning::NoLedgerEffect { .. }
    ));
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/disputes/{}/close",
            h.sandbox.stripe_base_url(),
            open.dispute_id
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_STRIPE_SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let closed = next_of(&inbox, "charge.dispute.closed", 0).await;
    let StripeFact::Dispute(lost) = recheck(&h.gateway, &closed.meaning).await.unwrap() else {
        panic!("a dispute fact");
    };
    assert_eq!(lost.status, DisputeState::Lost);
    assert_eq!(
        (lost.withdrawn_minor, lost.fee_minor, lost.currency),
        (7_000, 2_000, Currency::JPY)
    );
}

#[tokio::test]
async fn a_pending_refund_that_fails_arrives_as_refund_updated_failed() {
    let h = Harness::start_with(SandboxConfig::default(), |config| config).await;
    let (inbox, _server) = receiver(&h).await;
    let paid = h
        .gateway
        .confirm(&confirm(
            "pm_sandbox_refundPending",
            "ord-hook-2",
            2_500,
            Currency::EUR,
        ))
        .await
        .unwrap();
    let _ = h
        .gateway
        .cancel(&crate::refund(&paid.payment_key, Some(1_000), "rk-1"))
        .await;
    let created = next_of(&inbox, "refund.created", 0).await;
    let StripeMeaning::Refund {
        refund_id: Some(refund_id),
        ..
    } = &created.meaning
    else {
        panic!("a refund event");
    };
    h.control(
        &format!("/sandbox/refunds/{refund_id}/settle"),
        &[("outcome", "failed")],
    )
    .await;
    let updated = next_of(&inbox, "refund.updated", 0).await;
    let StripeFact::Payment {
        payment,
        refund: Some(refund),
    } = recheck(&h.gateway, &updated.meaning).await.unwrap()
    else {
        panic!("a refund fact");
    };
    assert_eq!(refund.status, RefundState::Failed);
    assert!(refund.failure_reason.is_some());
    assert_eq!(
        payment.balance_amount_minor, 2_500,
        "a failed refund moved no money"
    );
}
