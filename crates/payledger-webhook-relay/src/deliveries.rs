//! The event stream of one inbound delivery: what is recorded so far, and appending more.

use payledger_domain::codec;
use payledger_domain::webhook::{self, WebhookDeliveryEvent};
use payledger_store::{AppendError, EventMetadata, EventStore, ExpectedVersion, NewEvent};

/// Appends retried after losing a race on the stream (a worker and a replay at once).
const MAX_APPEND_TRIES: u32 = 3;
/// A delivery stream holds a handful of events (8 attempts at most per replay).
const MAX_STREAM_EVENTS: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("failed to read the delivery's events: {0}")]
    Read(#[from] payledger_store::ReadError),
    #[error("failed to record the delivery's events: {0}")]
    Append(#[from] AppendError),
    #[error("a delivery event does not encode or decode: {0}")]
    Codec(#[from] codec::CodecError),
}

/// What a delivery's stream already says.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub version: i64,
    pub received: bool,
    pub verified: bool,
    /// The last order id any of its events named.
    pub order_id: Option<String>,
}

pub async fn recorded(store: &EventStore, stream_id: &str) -> Result<Recorded, StreamError> {
    let events = store.read_stream(stream_id, 0, MAX_STREAM_EVENTS).await?;
    let mut recorded = Recorded::default();
    for event in events {
        recorded.version = event.stream_version;
        let decoded: WebhookDeliveryEvent = codec::decode(&event.event_type, &event.payload)?;
        match &decoded {
            WebhookDeliveryEvent::WebhookReceived(_) => recorded.received = true,
            WebhookDeliveryEvent::WebhookVerified(_) => recorded.verified = true,
            _ => {}
        }
        if let Some(order_id) = decoded.order_id() {
            recorded.order_id = Some(order_id.to_string());
        }
    }
    Ok(recorded)
}

/// Appends `build(recorded)` to the stream of `(provider, event_id)`. `build` sees what the
/// stream already holds, and is asked again if another writer got in between.
pub async fn append(
    store: &EventStore,
    provider: &str,
    event_id: &str,
    actor: &str,
    request_id: Option<&str>,
    build: impl Fn(&Recorded) -> Vec<WebhookDeliveryEvent>,
) -> Result<Option<i64>, StreamError> {
    let stream_id = webhook::stream_id(provider, event_id);
    let mut tries = 0;
    loop {
        tries += 1;
        let recorded = recorded(store, &stream_id).await?;
        let events = build(&recorded);
        if events.is_empty() {
            return Ok(None);
        }
        let metadata = EventMetadata {
            actor: Some(actor.to_string()),
            request_id: request_id.map(str::to_string),
            ..EventMetadata::default()
        };
        let new_events = events
            .iter()
            .map(|event| {
                let (event_type, payload) = codec::encode(event)?;
                Ok(NewEvent::new(event_type, payload, metadata.clone()))
            })
            .collect::<Result<Vec<_>, codec::CodecError>>()?;
        let expected = match recorded.version {
            0 => ExpectedVersion::NoStream,
            version => ExpectedVersion::Exact(version),
        };
        match store.append(&stream_id, expected, new_events, false).await {
            Ok(outcome) => return Ok(Some(outcome.last_position)),
            Err(AppendError::WrongExpectedVersion { .. }) if tries < MAX_APPEND_TRIES => continue,
            Err(error) => return Err(error.into()),
        }
    }
}
