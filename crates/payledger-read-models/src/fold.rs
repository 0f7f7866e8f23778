//! What every projection's fold needs: the error for an event it cannot fold, the check that a
//! stream's events arrive in order, and the distinct ids whose stored rows a batch continues.

use payledger_projector::ProjectionError;
use payledger_store::RecordedEvent;

/// An event the projection cannot fold, named by its position.
pub(crate) fn bad(event: &RecordedEvent, reason: String) -> ProjectionError {
    ProjectionError::BadEvent {
        position: event.global_position,
        reason,
    }
}

/// Pair assertion: the log hands each stream's events over contiguously, so `event` follows
/// the row's `stream_version` by exactly one.
pub(crate) fn ensure_follows(
    event: &RecordedEvent,
    stream_version: i64,
) -> Result<(), ProjectionError> {
    if event.stream_version == stream_version + 1 {
        return Ok(());
    }
    Err(bad(
        event,
        format!("version {} follows {stream_version}", event.stream_version),
    ))
}

/// `ids` sorted, each once: the keys of one `= ANY($1)` lookup.
pub(crate) fn distinct_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().map(str::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sorted_and_each_kept_once() {
        assert_eq!(distinct_ids(["b", "a", "b", "c", "a"]), vec!["a", "b", "c"]);
    }
}
