//! Sends Stripe events to webhook endpoints, signed as Stripe signs them:
//! `Stripe-Signature: t={unix seconds},v1={hex HMAC-SHA256(secret as UTF-8, "{t}.{body}")}`.
//!
//! One worker per endpoint sends first attempts in the order events happened (Stripe does not
//! promise order; the sandbox keeps it so tests read plainly); a delivery that is refused is
//! retried on its own task ([`crate::redelivery`]).

use super::store::Delivery;
use crate::redelivery::{self, MAX_CONCURRENT_RETRIES};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Deliveries waiting to be sent to one endpoint; beyond this new ones are recorded as dropped.
const QUEUE_CAPACITY: usize = 10_000;
/// Delivery records kept for `GET /stripe/sandbox/deliveries`; the oldest go first.
const MAX_RECORDS: usize = 10_000;
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to one event sent to one endpoint.
pub type WebhookDeliveryRecord = redelivery::DeliveryRecord;

/// An endpoint's queue and the worker draining it.
type Queue = (mpsc::Sender<Delivery>, JoinHandle<()>);

/// One ordered queue and worker per endpoint URL, so an endpoint that is down delays only its
/// own deliveries (Stripe delivers to each endpoint independently).
pub(crate) struct Deliverer {
    runtime: tokio::runtime::Handle,
    http: Option<reqwest::Client>,
    queues: Mutex<HashMap<String, Queue>>,
    pub records: Arc<Mutex<Vec<WebhookDeliveryRecord>>>,
}

impl Deliverer {
    /// Must be called inside a Tokio runtime: workers run on it.
    pub(crate) fn start() -> Deliverer {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .build()
            .map_err(|err| {
                tracing::error!(error = %err, "stripe webhook client could not be built; no webhooks will be sent");
            })
            .ok();
        Deliverer {
            runtime: tokio::runtime::Handle::current(),
            http,
            queues: Mutex::new(HashMap::new()),
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn enqueue(&self, deliveries: Vec<Delivery>) {
        let Some(http) = &self.http else {
            return;
        };
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for delivery in deliveries {
            let (sender, _) = queues.entry(delivery.url.clone()).or_insert_with(|| {
                let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
                let task = self
                    .runtime
                    .spawn(run(receiver, http.clone(), self.records.clone()));
                (sender, task)
            });
            if let Err(err) = sender.try_send(delivery) {
                let delivery = match err {
                    mpsc::error::TrySendError::Full(delivery)
                    | mpsc::error::TrySendError::Closed(delivery) => delivery,
                };
                tracing::warn!(event_type = %delivery.event_type, "stripe webhook queue full; delivery dropped");
                record(
                    &self.records,
                    WebhookDeliveryRecord::queue_full(
                        delivery.event_id,
                        delivery.event_type,
                        delivery.url,
                    ),
                );
            }
        }
    }

    pub(crate) fn records(&self) -> Vec<WebhookDeliveryRecord> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Ends every worker; deliveries not yet sent are dropped.
    pub(crate) fn stop(&self) {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, (_, task)) in queues.drain() {
            task.abort();
        }
    }
}

fn record(records: &Mutex<Vec<WebhookDeliveryRecord>>, entry: WebhookDeliveryRecord) {
    let mut records = records
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if records.len() >= MAX_RECORDS {
        records.remove(0);
    }
    records.push(entry);
}

/// The `Stripe-Signature` header value for `payload` signed at `timestamp`.
pub(crate) fn signature_header(secret: &str, timestamp: i64, payload: &str) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

async fn run(
    mut receiver: mpsc::Receiver<Delivery>,
    http: reqwest::Client,
    records: Arc<Mutex<Vec<WebhookDeliveryRecord>>>,
) {
    let retries = Arc::new(Semaphore::new(MAX_CONCURRENT_RETRIES));
    while let Some(delivery) = receiver.recv().await {
        let http = http.clone();
        let (url, secret, payload) = (
            delivery.url.clone(),
            delivery.secret.clone(),
            delivery.payload.clone(),
        );
        let request = move || {
            let timestamp = chrono::Utc::now().timestamp();
            http.post(&url)
                .header("Content-Type", "application/json; charset=utf-8")
                .header(
                    "Stripe-Signature",
                    signature_header(&secret, timestamp, &payload),
                )
                .body(payload.clone())
        };
        let records = records.clone();
        redelivery::deliver(request, &retries, move |outcome| {
            if !outcome.delivered {
                tracing::warn!(event_type = %delivery.event_type, attempts = outcome.attempts, "stripe webhook not delivered");
            }
            record(
                &records,
                WebhookDeliveryRecord::new(delivery.event_id, delivery.event_type, delivery.url, outcome),
            );
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently: `printf '1614265330.{"a":1}' | openssl dgst -sha256 -hmac whsec_test`.
    #[test]
    fn signs_timestamp_dot_body_with_the_secret_as_text() {
        let header = signature_header("whsec_test", 1614265330, r#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1614265330,v1=50041a14d42235317bc163894f49b9bd969aeb2e4daafdbf9df1933c941d3d1b"
        );
    }
}
