//! Sends Stripe events to webhook endpoints, signed as Stripe signs them:
//! `Stripe-Signature: t={unix seconds},v1={hex HMAC-SHA256(secret as UTF-8, "{t}.{body}")}`.
//!
//! One worker sends in the order events happened (Stripe does not promise order; the sandbox
//! keeps it so tests read plainly), each delivery up to [`MAX_DELIVERY_ATTEMPTS`] times.

use super::store::Delivery;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Attempts per delivery (Stripe retries for days; a sandbox's caller is on this machine).
pub(crate) const MAX_DELIVERY_ATTEMPTS: u32 = 3;
/// Deliveries waiting to be sent; beyond this new ones are recorded as dropped.
const QUEUE_CAPACITY: usize = 10_000;
/// Delivery records kept for `GET /stripe/sandbox/deliveries`; the oldest go first.
const MAX_RECORDS: usize = 10_000;
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to one event sent to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryRecord {
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub attempts: u32,
    /// The endpoint's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Whether it answered 2xx.
    pub delivered: bool,
}

/// The queue into the delivery worker, and what it recorded.
pub(crate) struct Deliverer {
    sender: mpsc::Sender<Delivery>,
    pub records: Arc<Mutex<Vec<WebhookDeliveryRecord>>>,
}

impl Deliverer {
    /// Starts the worker on the current runtime.
    pub(crate) fn start() -> (Deliverer, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let records = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run(receiver, records.clone()));
        (Deliverer { sender, records }, task)
    }

    pub(crate) fn enqueue(&self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            if let Err(err) = self.sender.try_send(delivery) {
                let delivery = match err {
                    mpsc::error::TrySendError::Full(delivery)
                    | mpsc::error::TrySendError::Closed(delivery) => delivery,
                };
                tracing::warn!(event_type = %delivery.event_type, "stripe webhook queue full; delivery dropped");
                record(
                    &self.records,
                    WebhookDeliveryRecord {
                        event_id: delivery.event_id,
                        event_type: delivery.event_type,
                        url: delivery.url,
                        attempts: 0,
                        last_status: None,
                        delivered: false,
                    },
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
    records: Arc<Mutex<Vec<WebhookDeliveryRecord>>>,
) {
    let http = match reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
        .build()
    {
        Ok(http) => http,
        Err(err) => {
            tracing::error!(error = %err, "stripe webhook client could not be built; no webhooks will be sent");
            return;
        }
    };
    while let Some(delivery) = receiver.recv().await {
        let mut entry = WebhookDeliveryRecord {
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            url: delivery.url.clone(),
            attempts: 0,
            last_status: None,
            delivered: false,
        };
        while entry.attempts < MAX_DELIVERY_ATTEMPTS && !entry.delivered {
            if entry.attempts > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(entry.attempts))).await;
            }
            entry.attempts += 1;
            let timestamp = chrono::Utc::now().timestamp();
            let result = http
                .post(&delivery.url)
                .header("Content-Type", "application/json; charset=utf-8")
                .header(
                    "Stripe-Signature",
                    signature_header(&delivery.secret, timestamp, &delivery.payload),
                )
                .body(delivery.payload.clone())
                .send()
                .await;
            match result {
                Ok(response) => {
                    entry.last_status = Some(response.status().as_u16());
                    entry.delivered = response.status().is_success();
                }
                Err(err) => {
                    tracing::debug!(error = %err.without_url(), event_type = %delivery.event_type, "stripe webhook delivery failed");
                }
            }
        }
        if !entry.delivered {
            tracing::warn!(event_type = %delivery.event_type, attempts = entry.attempts, "stripe webhook not delivered");
        }
        record(&records, entry);
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
