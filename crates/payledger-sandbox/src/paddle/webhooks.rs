//! Sends Paddle notifications to the configured destinations, signed as Paddle signs them:
//! `Paddle-Signature: ts={unix seconds};h1={hex HMAC-SHA256(secret as UTF-8, "{ts}:{body}")}`.
//!
//! One worker sends first attempts in the order events happened (Paddle does not promise order;
//! the sandbox keeps it so tests read plainly); a notification that is refused is retried on its
//! own task ([`crate::redelivery`]). The signing time is the wall clock, as at Paddle: replay protection is about real
//! time, and payledger checks the timestamp against its wall clock too.

use super::store::PendingEvent;
use crate::redelivery::{self, MAX_CONCURRENT_RETRIES};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Notifications waiting to be sent; beyond this new ones are recorded as dropped.
const QUEUE_CAPACITY: usize = 10_000;
/// Delivery records kept for `GET /paddle/sandbox/deliveries`; the oldest go first.
const MAX_RECORDS: usize = 10_000;
/// Destinations one sandbox sends to.
pub(crate) const MAX_DESTINATIONS: usize = 10;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to one notification sent to one destination.
pub type PaddleDeliveryRecord = redelivery::DeliveryRecord;

#[derive(Clone)]
struct Destination {
    url: String,
    secret: String,
}

struct Job {
    event: PendingEvent,
    destinations: Vec<Destination>,
}

pub(crate) struct PaddleDeliverer {
    sender: Option<mpsc::Sender<Job>>,
    task: Mutex<Option<JoinHandle<()>>>,
    destinations: Mutex<Vec<Destination>>,
    pub records: Arc<Mutex<Vec<PaddleDeliveryRecord>>>,
}

impl PaddleDeliverer {
    /// Must be called inside a Tokio runtime: the worker runs on it.
    pub(crate) fn start() -> PaddleDeliverer {
        let records = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Paddle")
            .build()
            .map_err(|err| {
                tracing::error!(error = %err, "paddle webhook client could not be built; no webhooks will be sent");
            })
            .ok();
        let (sender, task) = match http {
            Some(http) => {
                let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
                let task = tokio::spawn(run(receiver, http, records.clone()));
                (Some(sender), Some(task))
            }
            None => (None, None),
        };
        PaddleDeliverer {
            sender,
            task: Mutex::new(task),
            destinations: Mutex::new(Vec::new()),
            records,
        }
    }

    /// Sends every later notification to `url` too, signed with `secret`.
    pub(crate) fn add_destination(&self, url: String, secret: String) -> Result<(), String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("destination must be an http(s) URL".to_owned());
        }
        if secret.is_empty() {
            return Err("the secret must not be empty".to_owned());
        }
        let mut destinations = lock(&self.destinations);
        if destinations.len() >= MAX_DESTINATIONS {
            return Err(format!("at most {MAX_DESTINATIONS} destinations"));
        }
        destinations.push(Destination { url, secret });
        Ok(())
    }

    pub(crate) fn enqueue(&self, events: Vec<PendingEvent>) {
        let Some(sender) = &self.sender else { return };
        let destinations = lock(&self.destinations).clone();
        if destinations.is_empty() {
            return;
        }
        for event in events {
            let job = Job {
                event,
                destinations: destinations.clone(),
            };
            if let Err(err) = sender.try_send(job) {
                let job = match err {
                    mpsc::error::TrySendError::Full(job)
                    | mpsc::error::TrySendError::Closed(job) => job,
                };
                tracing::warn!(event_type = %job.event.event_type, "paddle webhook queue full; notification dropped");
                for destination in job.destinations {
                    record(
                        &self.records,
                        PaddleDeliveryRecord::queue_full(
                            job.event.event_id.clone(),
                            job.event.event_type.clone(),
                            destination.url,
                        ),
                    );
                }
            }
        }
    }

    pub(crate) fn records(&self) -> Vec<PaddleDeliveryRecord> {
        lock(&self.records).clone()
    }

    pub(crate) fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn record(records: &Mutex<Vec<PaddleDeliveryRecord>>, entry: PaddleDeliveryRecord) {
    let mut records = lock(records);
    if records.len() >= MAX_RECORDS {
        records.remove(0);
    }
    records.push(entry);
}

/// The `Paddle-Signature` header value for `body` signed at `timestamp` (public so that tests
/// can sign a notification as Paddle would, at a time of their choosing).
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    mac.update(format!("{timestamp}:{body}").as_bytes());
    format!(
        "ts={timestamp};h1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

async fn run(
    mut receiver: mpsc::Receiver<Job>,
    http: reqwest::Client,
    records: Arc<Mutex<Vec<PaddleDeliveryRecord>>>,
) {
    let retries = Arc::new(Semaphore::new(MAX_CONCURRENT_RETRIES));
    while let Some(job) = receiver.recv().await {
        for destination in job.destinations {
            let (http, body) = (http.clone(), job.event.body.clone());
            let url = destination.url.clone();
            let request = move || {
                let timestamp = chrono::Utc::now().timestamp();
                http.post(&url)
                    .header("Content-Type", "application/json")
                    .header(
                        "Paddle-Signature",
                        signature_header(&destination.secret, timestamp, &body),
                    )
                    .body(body.clone())
            };
            let (records, event) = (records.clone(), job.event.clone());
            let url = destination.url.clone();
            redelivery::deliver(request, &retries, move |outcome| {
                if !outcome.delivered {
                    tracing::warn!(event_type = %event.event_type, attempts = outcome.attempts, "paddle webhook not delivered");
                }
                record(
                    &records,
                    PaddleDeliveryRecord::new(event.event_id, event.event_type, url, outcome),
                );
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently: `printf '1671552777:{"a":1}' | openssl dgst -sha256 -hmac pdl_ntfset_test`.
    #[test]
    fn signs_timestamp_colon_body_with_the_secret_as_text() {
        let header = signature_header("pdl_ntfset_test", 1671552777, r#"{"a":1}"#);
        assert_eq!(
            header,
            "ts=1671552777;h1=22d072ed3f2299e7853fbddc68da80b05dc6d460cd3d43ddb22678d118035ba2"
        );
    }
}
