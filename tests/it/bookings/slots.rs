//! One slot, many payers: the slot's version check keeps exactly one; the others are refunded
//! automatically with reason SLOT_TAKEN, once each, even when the process manager replays.

use super::*;
use payledger_app::context::RequestContext;
use payledger_app::executor::{AggregateCache, ExecuteError, Executor};
use payledger_domain::ids::{OrderId, PayeeId};
use payledger_domain::order::{OrderStatus, RefundStatus};
use payledger_domain::slot::{self, Slot, SlotCommand, SlotEvent};
use payledger_store::{EventStore, WriterConfig};

const PAYERS: usize = 100;
const PRICE: i64 = 80_000;

#[tokio::test]
async fn of_a_hundred_customers_paying_for_one_slot_at_once_one_keeps_it_and_the_rest_are_refunded()
{
    let app = spawn().await;
    let starts = t0() + Duration::days(7);
    let ids: Vec<String> = (0..PAYERS).map(|i| format!("race-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        app.place_booking(id, &format!("parent-{i}"), PRICE, starts)
            .await;
    }
    let answers = futures::future::join_all(ids.iter().map(|id| app.confirm(id, PRICE))).await;
    for (id, answer) in ids.iter().zip(&answers) {
        assert_eq!(
            answer.status, 200,
            "every payment is captured first: {id} {}",
            answer.body
        );
    }
    app.settle().await;

    // The slot's own stream: one reservation, every other payer refused and told who holds it.
    let stream = slot::stream_id(&PayeeId::parse(THERAPIST).unwrap(), starts);
    let page = app
        .get_as(
            &app.auditor_key,
            &format!("/v1/streams/{stream}?limit=1000"),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let events = page.body["events"].as_array().unwrap().clone();
    let reserved: Vec<&Value> = events
        .iter()
        .filter(|e| e["eventType"] == "SlotReserved")
        .collect();
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["eventType"] == "SlotReservationRefused")
        .collect();
    assert_eq!(reserved.len(), 1, "exactly one payer keeps the slot");
    assert_eq!(refused.len(), PAYERS - 1);
    let holder = reserved[0]["payload"]["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(refused
        .iter()
        .all(|e| e["payload"]["heldBy"] == holder.as_str()));

    for id in &ids {
        let order = app.order_state(id).await;
        if *id == holder {
            assert_eq!(order.status, OrderStatus::Paid);
            assert!(order.refunds.is_empty(), "the holder is not refunded");
        } else {
            assert_eq!(order.status, OrderStatus::Refunded, "{id}");
            let refund = order.refunds.values().next().expect("a refund");
            assert_eq!(order.refunds.len(), 1, "{id} is refunded once");
            // The reason is sealed under the customer (docs/events.md, "Personal data and
            // erasure"); the refund id says why in clear, the timeline reveals the reason.
            assert!(
                order.refunds.keys().any(|k| k.as_str() == "slot-taken"),
                "{id}: {:?}",
                order.refunds.keys()
            );
            assert!(
                refund.reason.starts_with("pl-sealed:v1:"),
                "{}",
                refund.reason
            );
            assert_eq!(
                (refund.amount_minor, refund.status),
                (PRICE, RefundStatus::Completed)
            );
        }
    }

    let refused_order = ids.iter().find(|id| **id != holder).unwrap();
    let timeline = app
        .get_as(
            &app.support_key,
            &format!("/v1/orders/{refused_order}/timeline"),
        )
        .await;
    assert!(
        timeline.body.to_string().contains("(SLOT_TAKEN)"),
        "{}",
        timeline.body
    );

    // The provider saw 100 charges and 99 full cancels, none of the holder's.
    let stats = app.sandbox.stats();
    assert_eq!(stats.total_charges, PAYERS as u64);
    assert_eq!(stats.total_canceled_amount, (PAYERS as i64 - 1) * PRICE);
    assert_eq!(stats.canceled_amount_by_payment_key.len(), PAYERS - 1);
    assert!(stats
        .canceled_amount_by_payment_key
        .values()
        .all(|a| *a == PRICE));
    assert!(!stats
        .canceled_amount_by_payment_key
        .contains_key(&format!("pk_{holder}")));

    // The books: what stays at the provider is the one kept payment, owed to the therapist.
    let books = app.trial_balance().await;
    assert_eq!(books["balanced"], true, "{books}");
    assert_eq!(balance(&books, "provider_clearing"), PRICE);
    assert_eq!(balance(&books, "payee_payable"), -PRICE);
    assert_eq!(balance(&books, "customer_refunds"), 0);
}

#[tokio::test]
async fn replaying_the_booking_process_from_the_start_refunds_nobody_twice() {
    let app = spawn().await;
    let starts = t0() + Duration::days(3);
    for id in ["replay-a1", "replay-b2", "replay-c3"] {
        app.paid_booking(id, PRICE, starts).await;
    }
    app.settle().await;
    let head_before = payledger_store::head_position(&app.db.app_pool)
        .await
        .unwrap();
    let stats_before = app.sandbox.stats();
    assert_eq!(stats_before.total_canceled_amount, 2 * PRICE);

    // As after a crash that lost every checkpoint: the process sees all its events again.
    sqlx::query("UPDATE process_checkpoints SET position = 0 WHERE name = 'bookings'")
        .execute(&app.db.owner_pool)
        .await
        .unwrap();
    app.settle().await;

    assert_eq!(app.sandbox.stats().total_canceled_amount, 2 * PRICE);
    assert_eq!(
        app.sandbox.stats().total_charges,
        stats_before.total_charges
    );
    let head_after = payledger_store::head_position(&app.db.app_pool)
        .await
        .unwrap();
    assert_eq!(head_after, head_before, "a replay records nothing new");
}

/// Several processes (each its own executor and cache, as separate `serve`s would be) reserve
/// one slot at the same moment: the store's version check lets exactly one through.
#[tokio::test]
async fn concurrent_reservations_from_separate_processes_are_decided_by_the_version_check() {
    let db = TestDatabase::fresh().await;
    let starts = t0() + Duration::days(2);
    let payee = PayeeId::parse(THERAPIST).unwrap();
    let stream = slot::stream_id(&payee, starts);
    // Fewer than the executor's conflict retries: each round of appends lets one through.
    let contenders = 8;
    let tasks = (0..contenders).map(|i| {
        let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
        let stream = stream.clone();
        let payee = payee.clone();
        async move {
            let executor = Executor::new(store);
            let cache: AggregateCache<Slot> = AggregateCache::new(10);
            let command = SlotCommand::Reserve {
                payee_id: payee,
                starts_at: starts,
                order_id: OrderId::parse(format!("contender-{i:02}")).unwrap(),
                at: t0(),
            };
            let executed: Result<_, ExecuteError<_>> = executor
                .execute(&cache, &stream, command, &RequestContext::system("test"))
                .await;
            executed.expect("every contender gets an answer").events
        }
    });
    let answers = futures::future::join_all(tasks).await;
    let reserved = answers
        .iter()
        .flatten()
        .filter(|e| matches!(e, SlotEvent::SlotReserved(_)))
        .count();
    let refused = answers
        .iter()
        .flatten()
        .filter(|e| matches!(e, SlotEvent::SlotReservationRefused(_)))
        .count();
    assert_eq!((reserved, refused), (1, contenders - 1));
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    let stored = store.read_whole_stream(&stream).await.unwrap();
    assert_eq!(stored.len(), contenders);
    assert_eq!(
        stored
            .iter()
            .filter(|e| e.event_type == "SlotReserved")
            .count(),
        1
    );
}

/// The slot's events of one type, as (orderId, heldBy) pairs.
async fn slot_events(app: &BookingApp, starts: DateTime<Utc>, event_type: &str) -> Vec<Value> {
    let stream = slot::stream_id(&PayeeId::parse(THERAPIST).unwrap(), starts);
    let page = app
        .get_as(&app.auditor_key, &format!("/v1/streams/{stream}"))
        .await;
    page.body["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["eventType"] == event_type)
        .map(|e| e["payload"].clone())
        .collect()
}

#[tokio::test]
async fn a_failed_payment_holds_the_slot_five_minutes_for_its_payer() {
    let app = spawn().await;
    let starts = t0() + Duration::days(3);
    app.place_booking("retry-first", "parent-a", PRICE, starts)
        .await;
    app.place_booking("retry-other", "parent-b", PRICE, starts)
        .await;
    let declined = app
        .post(
            "/v1/payments/confirm",
            &json!({"paymentKey": "sandbox_decline_retry", "orderId": "retry-first", "amount": PRICE}),
        )
        .await;
    assert_eq!(declined.status, 402, "{}", declined.body);
    app.settle().await;
    let held = slot_events(&app, starts, "SlotHeldForRetry").await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["orderId"], "retry-first");
    assert_eq!(held[0]["until"], json!(t0() + Duration::minutes(5)));

    // Another customer pays within the five minutes: refused and refunded.
    app.clock.set(t0() + Duration::minutes(4));
    assert_eq!(app.confirm("retry-other", PRICE).await.status, 200);
    app.settle().await;
    let refused = slot_events(&app, starts, "SlotReservationRefused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (
            refused[0]["orderId"].as_str(),
            refused[0]["heldBy"].as_str()
        ),
        (Some("retry-other"), Some("retry-first"))
    );
    assert_eq!(
        app.order_state("retry-other").await.status,
        OrderStatus::Refunded
    );

    // The first payer's retry with another card keeps the slot.
    let retried = app
        .post(
            "/v1/payments/confirm",
            &json!({"paymentKey": "pk_retry_first_2", "orderId": "retry-first", "amount": PRICE}),
        )
        .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    app.settle().await;
    let reserved = slot_events(&app, starts, "SlotReserved").await;
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0]["orderId"], "retry-first");
}

#[tokio::test]
async fn after_five_minutes_the_slot_is_free_for_anyone() {
    let app = spawn().await;
    let starts = t0() + Duration::days(3);
    app.place_booking("lapse-first", "parent-a", PRICE, starts)
        .await;
    app.place_booking("lapse-other", "parent-b", PRICE, starts)
        .await;
    let declined = app
        .post(
            "/v1/payments/confirm",
            &json!({"paymentKey": "sandbox_decline_lapse", "orderId": "lapse-first", "amount": PRICE}),
        )
        .await;
    assert_eq!(declined.status, 402);
    app.settle().await;
    app.clock.set(t0() + Duration::minutes(5));
    assert_eq!(app.confirm("lapse-other", PRICE).await.status, 200);
    app.settle().await;
    let reserved = slot_events(&app, starts, "SlotReserved").await;
    assert_eq!(reserved.len(), 1, "{reserved:?}");
    assert_eq!(reserved[0]["orderId"], "lapse-other");
}
