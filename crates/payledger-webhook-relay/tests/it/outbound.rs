//! Webhooks out: the outbox follower of the log and the Standard Webhooks sender, delivering to
//! a real HTTP receiver on 127.0.0.1 that verifies every signature with `payledger-webhooks`.

use crate::support::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payledger_app::context::RequestContext;
use payledger_domain::ids::PaymentKey;
use payledger_projector::{RunnerConfig, Wakeup};
use payledger_webhook_relay::sender::Sent;
use payledger_webhook_relay::{
    NotificationSender, OutboundConfig, OutboxProjection, WebhookSettings,
};
use payledger_webhooks::{verify, Scheme, WebhookSecret, DEFAULT_TOLERANCE};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OUTBOUND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// webhook-id → (attempts answered 500, attempts answered 200)
    attempts: HashMap<String, (usize, usize)>,
    bodies: HashMap<String, serde_json::Value>,
    bad_signatures: usize,
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Seen>>,
    /// Every message's first `fail_first` attempts are answered 500.
    fail_first: Arc<AtomicUsize>,
    _server: actix_web::dev::ServerHandle,
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<(Arc<Mutex<Seen>>, Arc<AtomicUsize>)>,
) -> HttpResponse {
    let headers = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let verified = verify(
        Scheme::StandardWebhooks,
        &headers,
        &body,
        &[WebhookSecret::new(OUTBOUND_SECRET)],
        chrono::Utc::now(),
        DEFAULT_TOLERANCE,
    );
    let mut seen = state.0.lock().unwrap();
    let Ok(delivery) = verified else {
        seen.bad_signatures += 1;
        return HttpResponse::Unauthorized().finish();
    };
    let id = delivery.delivery_id.unwrap_or_default();
    let fail_first = state.1.load(Ordering::SeqCst);
    let counts = seen.attempts.entry(id.clone()).or_default();
    if counts.0 < fail_first {
        counts.0 += 1;
        return HttpResponse::InternalServerError().body("not yet");
    }
    counts.1 += 1;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    seen.bodies.insert(id, json);
    HttpResponse::NoContent().finish()
}

async fn start_receiver(fail_first: usize) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fail = Arc::new(AtomicUsize::new(fail_first));
    let state = web::Data::new((seen.clone(), fail.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/hooks", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver {
        url: format!("http://127.0.0.1:{port}/hooks"),
        seen,
        fail_first: fail,
        _server: handle,
    }
}

fn settings(endpoint: &str) -> WebhookSettings {
    let mut outbound = OutboundConfig::new(
        vec![endpoint.to_string()],
        &[WebhookSecret::new(OUTBOUND_SECRET)],
    )
    .unwrap();
    outbound.timeout_ms = 2_000;
    WebhookSettings {
        outbound,
        retry: FAST_RETRIES,
        poll_interval_ms: 20,
        ..WebhookSettings::default()
    }
}

/// Runs the outbox follower through the projector runtime, as `serve` does.
fn follow(h: &Harness, endpoint: &str) -> tokio::task::JoinHandle<()> {
    let connect = h.db.app_pool.connect_options().as_ref().clone();
    tokio::spawn(payledger_projector::run_projection(
        connect,
        Arc::new(OutboxProjection::new(vec![endpoint.to_string()])),
        RunnerConfig {
            poll_interval_ms: 20,
            ..RunnerConfig::default()
        },
        Wakeup::default(),
        Arc::new(tokio::sync::watch::channel(0).0),
    ))
}

async fn outbox_rows(h: &Harness) -> Vec<(String, String, String, i32)> {
    sqlx::query_as(
        "SELECT notification_type, priority, status, attempts FROM webhook_outbox ORDER BY id",
    )
    .fetch_all(&h.db.app_pool)
    .await
    .unwrap()
}

async fn wait_for_outbox_rows(h: &Harness, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while outbox_rows(h).await.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox rows did not appear"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send_until(sender: &NotificationSender, done: impl Fn(&[Sent]) -> bool) -> Vec<Sent> {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(&all) {
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        all.extend(sender.run_once().await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    all
}

#[tokio::test]
async fn notifications_reach_the_endpoint_signed_with_a_stable_id_after_failures() {
    let h = harness().await;
    let receiver = start_receiver(2).await;
    let follower = follow(&h, &receiver.url);
    let context = RequestContext::system("test");
    let paid = h.place_order("order-out-paid", 20_000).await;
    h.payments
        .confirm(
            &paid,
            PaymentKey::parse("pk_out_paid").unwrap(),
            20_000,
            &context,
        )
        .await
        .unwrap();
    let declined = h.place_order("order-out-declined", 20_000).await;
    let refused = h
        .payments
        .confirm(
            &declined,
            PaymentKey::parse("sandbox_decline_out1").unwrap(),
            20_000,
            &context,
        )
        .await;
    assert!(refused.is_err());
    wait_for_outbox_rows(&h, 2).await;

    let sender = NotificationSender::new(
        h.db.app_pool.clone(),
        settings(&receiver.url),
        h.relay.clock.clone(),
    )
    .unwrap();
    let sent = send_until(&sender, |s| {
        s.iter().filter(|x| **x == Sent::Delivered).count() == 2
    })
    .await;
    assert_eq!(sent.iter().filter(|x| **x == Sent::Retry).count(), 4);

    {
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen.bad_signatures, 0, "every attempt verifies");
        assert_eq!(
            seen.attempts.len(),
            2,
            "two messages, each with one stable webhook-id"
        );
        for (id, (failed, delivered)) in &seen.attempts {
            assert_eq!((*failed, *delivered), (2, 1), "{id}");
        }
        let by_type: HashMap<&str, &serde_json::Value> = seen
            .bodies
            .values()
            .map(|b| (b["type"].as_str().unwrap(), b))
            .collect();
        let failed = by_type["payment.failed"];
        assert_eq!(failed["priority"], "urgent");
        assert_eq!(failed["data"]["orderId"], "order-out-declined");
        assert_eq!(failed["data"]["eventType"], "PaymentFailed");
        assert_eq!(by_type["payment.confirmed"]["priority"], "important");
        // The webhook-id is the event's id in the log.
        let failed_id = seen
            .bodies
            .iter()
            .find(|(_, b)| b["type"] == "payment.failed")
            .map(|(id, _)| id.clone())
            .unwrap();
        assert_eq!(failed["data"]["eventId"], failed_id);
    }
    let rows = outbox_rows(&h).await;
    assert!(
        rows.iter().all(|r| r.2 == "delivered" && r.3 == 3),
        "{rows:?}"
    );
    follower.abort();
}

#[tokio::test]
async fn each_event_enters_the_outbox_once_even_when_a_second_follower_starts() {
    let h = harness().await;
    let endpoint = "http://127.0.0.1:9/never-called";
    let first = follow(&h, endpoint);
    let context = RequestContext::system("test");
    for n in 0..3 {
        let order = h.place_order(&format!("order-once-{n}"), 5_000).await;
        h.payments
            .confirm(
                &order,
                PaymentKey::parse(format!("pk_once_{n}")).unwrap(),
                5_000,
                &context,
            )
            .await
            .unwrap();
    }
    wait_for_outbox_rows(&h, 3).await;
    first.abort();
    // A new follower (another process after a crash) resumes from the checkpoint.
    let second = follow(&h, endpoint);
    let order = h.place_order("order-once-3", 5_000).await;
    h.payments
        .confirm(
            &order,
            PaymentKey::parse("pk_once_3").unwrap(),
            5_000,
            &context,
        )
        .await
        .unwrap();
    wait_for_outbox_rows(&h, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = outbox_rows(&h).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == "payment.confirmed"));
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT message_id) FROM webhook_outbox")
        .fetch_one(&h.db.app_pool)
        .await
        .unwrap();
    assert_eq!(distinct, 4);
    second.abort();
}

#[tokio::test]
async fn a_notification_that_never_gets_through_is_dead_lettered_and_replayed_with_the_same_id() {
    let h = harness().await;
    let receiver = start_receiver(usize::MAX).await;
    let follower = follow(&h, &receiver.url);
    let order = h.place_order("order-out-dead", 7_000).await;
    h.payments
        .confirm(
            &order,
            PaymentKey::parse("pk_out_dead").unwrap(),
            7_000,
            &RequestContext::system("test"),
        )
        .await
        .unwrap();
    wait_for_outbox_rows(&h, 1).await;
    let sender = NotificationSender::new(
        h.db.app_pool.clone(),
        settings(&receiver.url),
        h.relay.clock.clone(),
    )
    .unwrap();
    let sent = send_until(&sender, |s| s.contains(&Sent::DeadLettered)).await;
    assert_eq!(
        sent.len(),
        8,
        "eight attempts on the Standard Webhooks schedule"
    );

    let letters = payledger_webhook_relay::outbox::outbound_dead_letters(&h.db.app_pool, 0, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].last_status_code, Some(500));
    assert_eq!(letters[0].attempts, 8);

    receiver.fail_first.store(0, Ordering::SeqCst);
    payledger_webhook_relay::outbox::replay_outbound(
        &h.db.app_pool,
        letters[0].id,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    send_until(&sender, |s| s.contains(&Sent::Delivered)).await;
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.attempts.len(), 1, "the replay kept the webhook-id");
    let (failed, delivered) = seen.attempts[&letters[0].message_id];
    assert_eq!((failed, delivered), (8, 1));
    follower.abort();
}
