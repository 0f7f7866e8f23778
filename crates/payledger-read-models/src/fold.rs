//! What every projection's fold needs: the error for an event it cannot fold, the check that a
//! stream's events arrive in order, and the distinct ids whose stored rows a batch continues.
//! For the models that store the aggregate's state (docs/architecture.md, "How a read model
//! folds": claims, subscriptions, wallets), the one skeleton: [`Folded`] rows loaded by
//! [`load_stored`], advanced event by event, and written back with [`state_json`].

use chrono::{DateTime, Utc};
use payledger_projector::ProjectionError;
use payledger_store::RecordedEvent;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;

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

/// A stream being folded: the aggregate's state plus where the stream stands in the log.
pub(crate) struct Folded<S> {
    pub(crate) state: S,
    pub(crate) stream_version: i64,
    pub(crate) last_position: i64,
    pub(crate) updated_at: DateTime<Utc>,
}

impl<S: Default> Folded<S> {
    /// A stream the model has not seen yet.
    pub(crate) fn new(at: DateTime<Utc>) -> Folded<S> {
        Folded {
            state: S::default(),
            stream_version: 0,
            last_position: 0,
            updated_at: at,
        }
    }

    /// Moves the row to `event` (after checking it follows: [`ensure_follows`]); the caller
    /// applies the event to `state`.
    pub(crate) fn advance(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        ensure_follows(event, self.stream_version)?;
        self.stream_version = event.stream_version;
        self.last_position = event.global_position;
        self.updated_at = event.recorded_at;
        Ok(())
    }
}

/// The stored rows of the streams `ids` in `table` (keyed by `id_column`), with the aggregate's
/// state read back from the row's `state` JSON. `what` names the aggregate in errors.
pub(crate) async fn load_stored<S: serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    table: &'static str,
    id_column: &'static str,
    ids: &[String],
    what: &str,
) -> Result<HashMap<String, Folded<S>>, ProjectionError> {
    let sql = format!(
        "SELECT {id_column}, stream_version, last_position, updated_at, state \
         FROM {table} WHERE {id_column} = ANY($1)"
    );
    let rows = sqlx::query(&sql)
        // Planned per call: docs/architecture.md, "Lookups by many keys".
        .persistent(false)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut folding = HashMap::with_capacity(ids.len());
    for row in rows {
        let state: serde_json::Value = row.try_get("state")?;
        let last_position: i64 = row.try_get("last_position")?;
        let state = serde_json::from_value(state).map_err(|e| ProjectionError::BadEvent {
            position: last_position,
            reason: format!("stored {what} state does not decode: {e}"),
        })?;
        folding.insert(
            row.try_get(id_column)?,
            Folded {
                state,
                stream_version: row.try_get("stream_version")?,
                last_position,
                updated_at: row.try_get("updated_at")?,
            },
        );
    }
    Ok(folding)
}

/// `value` as the JSON a row stores; `position` names the event in the error.
pub(crate) fn state_json<T: serde::Serialize>(
    value: &T,
    position: i64,
) -> Result<serde_json::Value, ProjectionError> {
    serde_json::to_value(value).map_err(|e| ProjectionError::BadEvent {
        position,
        reason: format!("state does not serialise: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sorted_and_each_kept_once() {
        assert_eq!(distinct_ids(["b", "a", "b", "c", "a"]), vec!["a", "b", "c"]);
    }
}
