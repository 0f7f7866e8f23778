//! Handling one batch's events as independent chains, many at once.
//!
//! A process manager's handler mostly waits: it loads a stream and runs a command whose append
//! waits for its commit. One event after the other, a process catching up on a long log does one
//! commit (and its fsync) per decision, however idle the database is. Events that concern
//! different things (different orders, slots, statements) do not depend on one another, so their
//! decisions can be in flight together and share the store's group commits, while events that
//! share a key are still handled one after the other, in log order.

use super::{ProcessError, Unhandled};
use futures::StreamExt;
use payledger_store::RecordedEvent;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Chains handled at once by default: enough to fill the store's group commits (which take up
/// to 512 appends), few enough to leave connections of the pool to the API.
pub const MAX_CHAINS_IN_FLIGHT: usize = 32;

/// Splits `keys` (one list per event, in log order) into chains: events that share a key,
/// directly or through other events, are in one chain, in log order. An event without keys is
/// a chain of its own. Chains are ordered by their first event.
pub fn chains_of(keys: &[Vec<String>]) -> Vec<Vec<usize>> {
    // Union-find over event indexes; a key joins every event that names it to the first one.
    let mut parent: Vec<usize> = (0..keys.len()).collect();
    fn root(parent: &mut [usize], mut at: usize) -> usize {
        while parent[at] != at {
            parent[at] = parent[parent[at]];
            at = parent[at];
        }
        at
    }
    let mut first_with: HashMap<&str, usize> = HashMap::new();
    for (index, event_keys) in keys.iter().enumerate() {
        for key in event_keys {
            let first = *first_with.entry(key.as_str()).or_insert(index);
            let (a, b) = (root(&mut parent, first), root(&mut parent, index));
            // The smaller index stays the root, so a chain is named by its first event.
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut chain_at: HashMap<usize, usize> = HashMap::new();
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for index in 0..keys.len() {
        let chain_root = root(&mut parent, index);
        let at = *chain_at.entry(chain_root).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[at].push(index);
    }
    chains
}

/// Handles `events` (one batch's, in log order) with `handle`, as [`chains_of`] their `keys`:
/// each chain in log order, up to `max_in_flight` chains at once.
///
/// Answers as [`super::ProcessManager::handle_many`] must: on failure, the first event not
/// handled, every event before it handled. A chain stops at its own failure and at any event
/// after the earliest failure seen so far; events after the reported one that other chains
/// handled meanwhile are handled again later, which idempotent handlers allow.
pub async fn handle_in_chains<'e, F, Fut>(
    events: &[&'e RecordedEvent],
    keys: &[Vec<String>],
    max_in_flight: usize,
    handle: F,
) -> Result<(), Unhandled>
where
    F: Fn(&'e RecordedEvent) -> Fut,
    Fut: Future<Output = Result<(), ProcessError>>,
{
    assert_eq!(events.len(), keys.len(), "one list of keys per event");
    let earliest_failure = AtomicUsize::new(usize::MAX);
    // The chains' futures are made before they are streamed: a closure inside the stream would
    // make the future of an `async_trait` method that calls this one fail to be `Send`.
    let chains: Vec<_> = chains_of(keys)
        .into_iter()
        .map(|chain| handle_chain(events, chain, &handle, &earliest_failure))
        .collect();
    let outcomes: Vec<Option<Unhandled>> = futures::stream::iter(chains)
        .buffer_unordered(max_in_flight.max(1))
        .collect()
        .await;
    match outcomes
        .into_iter()
        .flatten()
        .min_by_key(|failure| failure.index)
    {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// Handles one chain in order; stops at its failure, or before an event after the earliest
/// failure of any chain (which will be handled again anyway).
async fn handle_chain<'e, F, Fut>(
    events: &[&'e RecordedEvent],
    chain: Vec<usize>,
    handle: &F,
    earliest_failure: &AtomicUsize,
) -> Option<Unhandled>
where
    F: Fn(&'e RecordedEvent) -> Fut,
    Fut: Future<Output = Result<(), ProcessError>>,
{
    for index in chain {
        if index > earliest_failure.load(Ordering::Acquire) {
            return None;
        }
        if let Err(error) = handle(events[index]).await {
            earliest_failure.fetch_min(index, Ordering::AcqRel);
            return Some(Unhandled { index, error });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::chains_of;

    fn keys(lists: &[&[&str]]) -> Vec<Vec<String>> {
        lists
            .iter()
            .map(|list| list.iter().map(|key| key.to_string()).collect())
            .collect()
    }

    #[test]
    fn events_sharing_a_key_form_one_chain_in_log_order() {
        let chains = chains_of(&keys(&[&["a"], &["b"], &["a"], &[], &["c"], &["b"]]));
        assert_eq!(chains, vec![vec![0, 2], vec![1, 5], vec![3], vec![4]]);
    }

    #[test]
    fn a_key_shared_through_another_event_joins_chains() {
        // 0 and 2 share nothing, but 3 names both their keys: one chain.
        let chains = chains_of(&keys(&[
            &["order:1"],
            &["order:2"],
            &["slot:9"],
            &["order:1", "slot:9"],
        ]));
        assert_eq!(chains, vec![vec![0, 2, 3], vec![1]]);
    }
}
