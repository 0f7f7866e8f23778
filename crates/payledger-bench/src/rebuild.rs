//! Fill a store with realistic events, then time a rebuild of every read model.

use anyhow::Context;
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use payledger_domain::codec;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::*;
use payledger_domain::streams::StreamKind;
use payledger_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, WriterConfig};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Instant;

/// Generated ids, amounts and dates are valid by construction.
const VALID: &str = "generated values are valid by construction";

/// Concurrent writers while filling: enough to keep group commit's batches full.
const FILL_WRITERS: usize = 64;

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events: i64,
    pub filled: i64,
    pub seconds: f64,
    pub events_per_s: f64,
}

impl RebuildReport {
    pub fn summary_line(&self) -> String {
        format!(
            "events={} events_per_s={:.0}",
            self.events, self.events_per_s
        )
    }
}

/// The events of one realistic order: placed and paid; some partly refunded, some fulfilled,
/// some declined first, some never paid.
fn order_history(n: u64) -> Vec<OrderEvent> {
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .expect(VALID)
        + ChronoDuration::seconds(i64::try_from(n % 5_000_000).unwrap_or(0));
    let order_id = OrderId::parse(format!("bench-fill-{n:010}")).expect(VALID);
    let amount_minor = 10_000 + i64::try_from(n % 90_000).unwrap_or(0);
    let payee_id = PayeeId::parse(format!("payee_{}", n % 200)).expect(VALID);
    let key = PaymentKey::parse(format!("pk_fill_{n}")).expect(VALID);
    let mut events = vec![OrderEvent::OrderPlaced(PlaceOrder {
        order_id: order_id.clone(),
        amount: Money::new(amount_minor, Currency::KRW).expect(VALID),
        customer_id: CustomerId::parse(format!("cust_{}", n % 10_000)).expect(VALID),
        payee_id: payee_id.clone(),
        order_name: "Pilates, 10 sessions".into(),
        provider: "sandbox".into(),
        service_starts_at: Some(t0 + ChronoDuration::days(3)),
        placed_at: t0,
    })];
    if n % 10 == 9 {
        return events; // never paid
    }
    let mut attempt = 1;
    if n % 7 == 3 {
        events.push(started(&order_id, &key, amount_minor, attempt, t0));
        events.push(OrderEvent::PaymentFailed(PaymentFailed {
            payment_key: key.clone(),
            failure: payledger_domain::provider_failure::ProviderFailure {
                class: payledger_domain::provider_failure::FailureClass::SoftDecline,
                provider_code: "REJECT_CARD_COMPANY".into(),
                provider_message: "declined".into(),
            },
            source: OutcomeSource::Request,
            at: t0,
        }));
        attempt += 1;
    }
    events.push(started(&order_id, &key, amount_minor, attempt, t0));
    events.push(OrderEvent::PaymentCaptured(PaymentCaptured {
        payment_key: key,
        amount_minor,
        currency: Currency::KRW,
        payee_id: payee_id.clone(),
        approved_at: t0 + ChronoDuration::seconds(1),
        method: Some("CARD".into()),
        source: OutcomeSource::Request,
    }));
    if n % 3 == 1 {
        let refund_id = RefundId::parse(format!("rf_{n}")).expect(VALID);
        events.push(OrderEvent::RefundRequested(RefundRequested {
            idempotency_key: format!("{}:refund:{refund_id}", stream_id(&order_id)),
            refund_id: refund_id.clone(),
            amount_minor: amount_minor / 2,
            currency: Currency::KRW,
            reason: "schedule change".into(),
            at: t0 + ChronoDuration::hours(1),
            customer_id: None,
            reason_digest: None,
        }));
        events.push(OrderEvent::RefundCompleted(RefundCompleted {
            refund_id,
            amount_minor: amount_minor / 2,
            currency: Currency::KRW,
            payee_id,
            transaction_key: format!("tx_{n}"),
            source: OutcomeSource::Request,
            at: t0 + ChronoDuration::hours(1),
        }));
    } else if n % 3 == 2 {
        events.push(OrderEvent::OrderFulfilled(OrderFulfilled {
            at: t0 + ChronoDuration::days(3),
        }));
    }
    events
}

fn started(
    order_id: &OrderId,
    key: &PaymentKey,
    amount_minor: i64,
    attempt: u32,
    at: chrono::DateTime<Utc>,
) -> OrderEvent {
    OrderEvent::PaymentConfirmationStarted(ConfirmationStarted {
        payment_key: key.clone(),
        amount_minor,
        attempt,
        idempotency_key: format!("{}:confirm:{attempt}", stream_id(order_id)),
        at,
    })
}

/// Appends orders until the store holds at least `events` events. Returns how many it added.
pub async fn fill(pool: &PgPool, events: i64) -> anyhow::Result<i64> {
    let head = payledger_store::head_position(pool).await?;
    if head >= events {
        return Ok(0);
    }
    let store = EventStore::new(pool.clone(), WriterConfig::default());
    let existing_orders =
        payledger_store::count_streams_with_prefix(pool, &StreamKind::Order.name("bench-fill-"))
            .await?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(
        u64::try_from(existing_orders).unwrap_or(0),
    ));
    let written = Arc::new(std::sync::atomic::AtomicI64::new(head));
    let metadata = EventMetadata {
        actor: Some("system:bench-fill".into()),
        ..EventMetadata::default()
    };
    let tasks: Vec<_> = (0..FILL_WRITERS)
        .map(|_| {
            let store = store.clone();
            let next = next.clone();
            let written = written.clone();
            let metadata = metadata.clone();
            tokio::spawn(async move {
                while written.load(std::sync::atomic::Ordering::Relaxed) < events {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let history = order_history(n);
                    let Some(OrderEvent::OrderPlaced(placed)) = history.first() else {
                        continue;
                    };
                    let stream = stream_id(&placed.order_id);
                    let new_events = history
                        .iter()
                        .map(|e| {
                            let (event_type, payload) = codec::encode(e)?;
                            Ok(NewEvent::new(event_type, payload, metadata.clone()))
                        })
                        .collect::<Result<Vec<_>, codec::CodecError>>()?;
                    let count = new_events.len() as i64;
                    store
                        .append(&stream, ExpectedVersion::NoStream, new_events, false)
                        .await?;
                    written.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a fill writer panicked")??;
    }
    Ok(payledger_store::head_position(pool).await? - head)
}

/// Orders per COPY load (about 5 events each: ~25,000 events, one transaction).
const ORDERS_PER_LOAD: u64 = 5_000;
/// Loads built and sent at once: one builds (JSON, hashes) while the other copies.
const LOADERS: usize = 2;

/// Like [`fill`], through the COPY loader (`payledger_store::bulk`): the same orders, ten or
/// more times faster. `owner_pool` must be the schema owner's (the loader inserts directly).
/// `progress(filled, target)` is called after every load.
pub async fn fill_fast(
    owner_pool: &PgPool,
    events: i64,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> anyhow::Result<i64> {
    let head = payledger_store::head_position(owner_pool).await?;
    if head >= events {
        return Ok(0);
    }
    let existing_orders = payledger_store::count_streams_with_prefix(
        owner_pool,
        &StreamKind::Order.name("bench-fill-"),
    )
    .await?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(
        u64::try_from(existing_orders).unwrap_or(0),
    ));
    let written = Arc::new(std::sync::atomic::AtomicI64::new(head));
    let metadata = EventMetadata {
        actor: Some("system:bench-fill".into()),
        ..EventMetadata::default()
    };
    // The callback is borrowed, so the loaders report through a channel.
    {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<i64>();
        let loaders: Vec<_> = (0..LOADERS)
            .map(|_| {
                let (pool, next, written, metadata, sender) = (
                    owner_pool.clone(),
                    next.clone(),
                    written.clone(),
                    metadata.clone(),
                    sender.clone(),
                );
                tokio::spawn(async move {
                    while written.load(std::sync::atomic::Ordering::Relaxed) < events {
                        let first =
                            next.fetch_add(ORDERS_PER_LOAD, std::sync::atomic::Ordering::Relaxed);
                        let metadata = metadata.clone();
                        let streams = tokio::task::spawn_blocking(move || {
                            (first..first + ORDERS_PER_LOAD)
                                .map(|n| order_stream(n, &metadata))
                                .collect::<Result<Vec<_>, codec::CodecError>>()
                        })
                        .await
                        .context("a fill builder panicked")??;
                        let count: usize = streams.iter().map(|s| s.events.len()).sum();
                        payledger_store::bulk::load_new_streams(&pool, &streams).await?;
                        let now = written
                            .fetch_add(count as i64, std::sync::atomic::Ordering::Relaxed)
                            + count as i64;
                        let _ = sender.send(now);
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        drop(sender);
        while let Some(now) = receiver.recv().await {
            progress(now, events);
        }
        for loader in loaders {
            loader.await.context("a fill loader panicked")??;
        }
    }
    Ok(payledger_store::head_position(owner_pool).await? - head)
}

fn order_stream(
    n: u64,
    metadata: &EventMetadata,
) -> Result<payledger_store::bulk::NewStream, codec::CodecError> {
    let history = order_history(n);
    let stream_id = match history.first() {
        Some(OrderEvent::OrderPlaced(placed)) => stream_id(&placed.order_id),
        _ => unreachable!("an order history starts with OrderPlaced"),
    };
    let events = history
        .iter()
        .map(|e| {
            let (event_type, payload) = codec::encode(e)?;
            Ok(NewEvent::new(event_type, payload, metadata.clone()))
        })
        .collect::<Result<Vec<_>, codec::CodecError>>()?;
    Ok(payledger_store::bulk::NewStream { stream_id, events })
}

/// Rebuilds every read model from zero in one pass and reports the rate.
pub async fn rebuild_all(
    pool: &PgPool,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> anyhow::Result<RebuildReport> {
    let projections = payledger_read_models::all_projections();
    let refs: Vec<&dyn payledger_projector::Projection> =
        projections.iter().map(|p| p.as_ref()).collect();
    let started = Instant::now();
    let position = payledger_projector::rebuild_many(pool, &refs, progress).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(RebuildReport {
        events: position,
        filled: 0,
        seconds,
        events_per_s: position as f64 / seconds.max(f64::EPSILON),
    })
}
