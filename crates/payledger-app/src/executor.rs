//! Load → decide → append, for any cqrs-es aggregate, with a conflict retry.
//!
//! Two things keep this cheap under load without weakening the version check:
//! - a per-process cache of aggregate states, so a stream this process holds current is not read
//!   again (a stale entry is caught by the store's version check, then caught up and retried);
//! - a lock per stream (sharded), so concurrent commands on one stream inside this process queue
//!   up instead of racing to a conflict; across processes the version check still decides.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use payledger_domain::codec;
use payledger_store::{
    AppendError, AppendOutcome, EventStore, ExpectedVersion, NewEvent, ReadError,
};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

use crate::context::RequestContext;

/// How often a command is re-decided after losing a race to another process.
pub const MAX_CONFLICT_RETRIES: u32 = 10;
const LOCK_SHARDS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    #[error(transparent)]
    Append(AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("stored event does not decode: {0}")]
    Decode(String),
    #[error("the stream kept changing: gave up after {MAX_CONFLICT_RETRIES} attempts")]
    Contention,
}

/// How a command failed below the domain, in the three ways every caller answers it.
#[derive(Debug)]
pub enum StoreFailure {
    /// The database cannot be reached or refused for now: a retry may succeed (503).
    Unavailable(String),
    /// The stream kept changing under concurrent commands (409 with Retry-After).
    Contention,
    /// Anything else is a bug: a stored event that does not decode, a refused append.
    Internal(String),
}

impl<E: std::error::Error> ExecuteError<E> {
    /// The domain's refusal as `Ok`, or how the store failed: the one place that decides
    /// which store failures are worth a retry.
    pub fn into_domain(self) -> Result<E, StoreFailure> {
        match self {
            ExecuteError::Domain(e) => Ok(e),
            ExecuteError::Append(e) if e.is_unavailable() => {
                Err(StoreFailure::Unavailable(e.to_string()))
            }
            ExecuteError::Read(e) => Err(StoreFailure::Unavailable(e.to_string())),
            ExecuteError::Contention => Err(StoreFailure::Contention),
            other => Err(StoreFailure::Internal(other.to_string())),
        }
    }
}

/// The state after a command, and what it appended.
pub struct Executed<A: Aggregate> {
    pub state: A,
    pub version: i64,
    pub events: Vec<A::Event>,
    pub append: Option<AppendOutcome>,
}

/// Last known state of streams of one aggregate type. Bounded; only ever behind the store.
pub struct AggregateCache<A> {
    entries: Mutex<HashMap<String, (i64, A)>>,
    capacity: usize,
}

impl<A: Clone> AggregateCache<A> {
    pub fn new(capacity: usize) -> AggregateCache<A> {
        AggregateCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, stream_id: &str) -> Option<(i64, A)> {
        self.entries.lock().ok()?.get(stream_id).cloned()
    }

    /// The state this process last saw of a stream, without reading the store; `None` when it
    /// holds none. It may be behind the store (another process may have appended since), so
    /// only facts that never change once recorded — who placed an order, for whom, whether it
    /// books a slot — may be taken from it without [`Executor::load`].
    pub fn peek(&self, stream_id: &str) -> Option<(i64, A)> {
        self.get(stream_id)
    }

    fn put(&self, stream_id: &str, version: i64, state: A) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(stream_id) {
            // Forgetting costs one read per stream later, never correctness.
            entries.clear();
        }
        match entries.get(stream_id) {
            Some((known, _)) if *known > version => {}
            _ => {
                entries.insert(stream_id.to_string(), (version, state));
            }
        }
    }

    fn forget(&self, stream_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(stream_id);
        }
    }
}

/// Serialises commands per stream inside this process.
pub struct StreamLocks {
    shards: Vec<AsyncMutex<()>>,
}

impl Default for StreamLocks {
    fn default() -> Self {
        StreamLocks {
            shards: (0..LOCK_SHARDS).map(|_| AsyncMutex::new(())).collect(),
        }
    }
}

impl StreamLocks {
    pub async fn lock(&self, stream_id: &str) -> MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        stream_id.hash(&mut hasher);
        let shard = (hasher.finish() % LOCK_SHARDS as u64) as usize;
        self.shards[shard].lock().await
    }
}

/// Runs commands against the event store.
pub struct Executor {
    store: EventStore,
    locks: StreamLocks,
    /// Seals personal fields on their way into the store; `None` stores them as they are.
    vault: Option<std::sync::Arc<crate::privacy::PrivacyVault>>,
}

impl Executor {
    pub fn new(store: EventStore) -> Executor {
        Executor {
            store,
            locks: StreamLocks::default(),
            vault: None,
        }
    }

    /// Seals the personal fields of every event this executor appends (docs/events.md).
    pub fn with_vault(mut self, vault: std::sync::Arc<crate::privacy::PrivacyVault>) -> Executor {
        self.vault = Some(vault);
        self
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The vault that seals this executor's personal fields, when sealing is on.
    pub fn vault(&self) -> Option<&crate::privacy::PrivacyVault> {
        self.vault.as_deref()
    }

    /// The aggregate's current state and version (0 when the stream does not exist).
    pub async fn load<A>(
        &self,
        cache: &AggregateCache<A>,
        stream_id: &str,
    ) -> Result<(i64, A), ExecuteError<A::Error>>
    where
        A: Aggregate + Clone,
    {
        let (version, state) = cache.get(stream_id).unwrap_or((0, A::default()));
        self.catch_up(cache, stream_id, version, state).await
    }

    /// Applies whatever the store has after `version` to `state`.
    async fn catch_up<A>(
        &self,
        cache: &AggregateCache<A>,
        stream_id: &str,
        mut version: i64,
        mut state: A,
    ) -> Result<(i64, A), ExecuteError<A::Error>>
    where
        A: Aggregate + Clone,
    {
        loop {
            let page = self
                .store
                .read_stream(stream_id, version, payledger_store::MAX_READ_LIMIT)
                .await?;
            let full_page = page.len() as i64 == payledger_store::MAX_READ_LIMIT;
            for recorded in page {
                if recorded.stream_version != version + 1 {
                    return Err(ExecuteError::Decode(format!(
                        "{stream_id}: version {} follows {version}",
                        recorded.stream_version
                    )));
                }
                let event: A::Event = codec::decode(&recorded.event_type, &recorded.payload)
                    .map_err(|e| ExecuteError::Decode(e.to_string()))?;
                state.apply(event);
                version = recorded.stream_version;
            }
            if !full_page {
                break;
            }
        }
        cache.put(stream_id, version, state.clone());
        Ok((version, state))
    }

    /// Decides `command` on the current state and appends the resulting events, retrying on a
    /// version conflict. A command that produces no events appends nothing.
    pub async fn execute<A>(
        &self,
        cache: &AggregateCache<A>,
        stream_id: &str,
        command: A::Command,
        context: &RequestContext,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        let _guard = self.locks.lock(stream_id).await;
        // Held current by this process: decide without a read (the append re-checks). Not in the
        // cache: first try the decision on an empty stream — a command that creates a stream
        // (placing an order) then needs no read at all, and `NoStream` makes the store refuse it
        // if the stream exists after all. A command that needs history fails on the empty state
        // and is decided again on the loaded one.
        let (mut version, mut state, mut assumed_empty) = match cache.get(stream_id) {
            Some((version, state)) => (version, state, false),
            None => (0, A::default(), true),
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut next = state.clone();
            let sink = EventSink::default();
            let decided = next.handle(command.clone(), &(), &sink).await;
            if let Err(error) = decided {
                if assumed_empty {
                    assumed_empty = false;
                    (version, state) = self.load(cache, stream_id).await?;
                    continue;
                }
                return Err(ExecuteError::Domain(error));
            }
            let events = sink.collect().await;
            if events.is_empty() && assumed_empty {
                // "Nothing to do" on a stream that may not be empty proves nothing: load it.
                assumed_empty = false;
                (version, state) = self.load(cache, stream_id).await?;
                continue;
            }
            if events.is_empty() {
                return Ok(Executed {
                    state: next,
                    version,
                    events,
                    append: None,
                });
            }
            let mut new_events = events
                .iter()
                .map(|event| {
                    let (event_type, payload) =
                        codec::encode(event).map_err(|e| ExecuteError::Decode(e.to_string()))?;
                    let schema_version = codec::schema_version(&event_type);
                    Ok(NewEvent {
                        schema_version,
                        ..NewEvent::new(event_type, payload, context.metadata())
                    })
                })
                .collect::<Result<Vec<_>, ExecuteError<A::Error>>>()?;
            let (next, events) = match &self.vault {
                Some(vault) => {
                    // After the decision, before the hash: the log holds only sealed tokens.
                    // The vault's key calls are bounded per call (its `with_call_timeout_ms`);
                    // given up, nothing is appended (503). For an event that records a
                    // provider's answer this is after the provider call: then, as with the
                    // writer's bound, the command's durable intent stays for a retry or the
                    // reconciler to settle (see `Payments::confirm`).
                    let mut sealed_any = false;
                    for event in &mut new_events {
                        let before = event.payload.clone();
                        vault
                            .seal_event(&event.event_type, &mut event.payload)
                            .await
                            .map_err(|e| match e {
                                crate::privacy::PrivacyError::Database(e) => {
                                    ExecuteError::Read(ReadError::Database(e))
                                }
                                other => ExecuteError::Decode(other.to_string()),
                            })?;
                        sealed_any |= event.payload != before;
                    }
                    if sealed_any {
                        // The state and events handed back (and cached) are what a reload from
                        // the store gives: tokens, revealed only on the way out.
                        let mut sealed_state = state.clone();
                        let mut sealed_events = Vec::with_capacity(new_events.len());
                        for event in &new_events {
                            let decoded: A::Event =
                                codec::decode(&event.event_type, &event.payload)
                                    .map_err(|e| ExecuteError::Decode(e.to_string()))?;
                            sealed_state.apply(decoded.clone());
                            sealed_events.push(decoded);
                        }
                        (sealed_state, sealed_events)
                    } else {
                        (next, events)
                    }
                }
                None => (next, events),
            };
            let expected = if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            };
            match self
                .store
                .append(stream_id, expected, new_events, false)
                .await
            {
                Ok(outcome) => {
                    debug_assert_eq!(outcome.stream_version, version + events.len() as i64);
                    cache.put(stream_id, outcome.stream_version, next.clone());
                    return Ok(Executed {
                        state: next,
                        version: outcome.stream_version,
                        events,
                        append: Some(outcome),
                    });
                }
                Err(AppendError::WrongExpectedVersion { .. }) => {
                    // Another process (or an earlier life of this stream) wrote first: catch up
                    // and decide again.
                    assumed_empty = false;
                    (version, state) = self.catch_up(cache, stream_id, version, state).await?;
                }
                Err(error) => {
                    cache.forget(stream_id);
                    return Err(ExecuteError::Append(error));
                }
            }
        }
        cache.forget(stream_id);
        Err(ExecuteError::Contention)
    }
}
