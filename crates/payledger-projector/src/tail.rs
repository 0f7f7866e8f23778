//! The recent end of the global log, read once per process and shared by its followers.
//!
//! Every follower of the log in a `serve` process (five projections, three process managers,
//! the notification outbox) used to read and decode every new event itself: nine reads of the
//! same rows after every commit. Under load the followers are all near the head, so the first
//! one to ask for what follows the cached tail reads it and keeps it here; the others get the
//! same decoded events as a slice of that chunk, without a query or a copy.
//!
//! It is only a cache: a follower's checkpoint stays in the database and moves in the follower's
//! own transaction. What a chunk holds is exactly what `read_all` returned: consecutive,
//! committed positions (the store's positions are gapless and follow commit order), so a
//! follower reading from the cache sees the same events, in the same order, as it would have
//! read itself. A follower behind the cached tail reads the database directly and does not
//! disturb the cache.

use payledger_store::{read_all, ReadError, RecordedEvent};
use sqlx::PgConnection;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Events the cache keeps at most; older chunks are dropped first.
pub const DEFAULT_TAIL_CAPACITY_EVENTS: usize = 50_000;

/// A run of consecutive events read in one query.
struct Chunk {
    events: Vec<RecordedEvent>,
}

impl Chunk {
    fn first_position(&self) -> i64 {
        self.events.first().map_or(0, |e| e.global_position)
    }

    fn last_position(&self) -> i64 {
        self.events.last().map_or(0, |e| e.global_position)
    }
}

/// Consecutive events handed to a follower: a window on a shared chunk, or its own read.
pub struct EventBatch {
    chunk: Arc<Chunk>,
    start: usize,
    end: usize,
}

impl From<Vec<RecordedEvent>> for EventBatch {
    fn from(events: Vec<RecordedEvent>) -> EventBatch {
        EventBatch::whole(events)
    }
}

impl EventBatch {
    fn whole(events: Vec<RecordedEvent>) -> EventBatch {
        let end = events.len();
        EventBatch {
            chunk: Arc::new(Chunk { events }),
            start: 0,
            end,
        }
    }
}

impl Deref for EventBatch {
    type Target = [RecordedEvent];

    fn deref(&self) -> &[RecordedEvent] {
        &self.chunk.events[self.start..self.end]
    }
}

#[derive(Default)]
struct Chunks {
    chunks: VecDeque<Arc<Chunk>>,
    events: usize,
}

impl Chunks {
    fn newest_position(&self) -> Option<i64> {
        self.chunks.back().map(|c| c.last_position())
    }

    /// Up to `limit` cached events after `after`, if the cache holds the next one.
    fn window_after(&self, after: i64, limit: usize) -> Option<EventBatch> {
        let wanted = after + 1;
        // Chunks are in position order and do not overlap: the candidate is the last one that
        // starts at or before the wanted position.
        let starting_after = self
            .chunks
            .partition_point(|c| c.first_position() <= wanted);
        let chunk = self.chunks.get(starting_after.checked_sub(1)?)?;
        if wanted > chunk.last_position() {
            return None;
        }
        let start = usize::try_from(wanted - chunk.first_position()).ok()?;
        let end = chunk.events.len().min(start + limit);
        debug_assert_eq!(chunk.events[start].global_position, wanted);
        Some(EventBatch {
            chunk: chunk.clone(),
            start,
            end,
        })
    }

    /// What a follower after `after` is served from the cache: a window only if it is a full
    /// batch or reaches the newest cached event. A follower behind the tail would otherwise
    /// catch up one small chunk per transaction (chunks are as small as the commits that made
    /// them); it reads a full batch of its own instead.
    fn serve(&self, after: i64, limit: usize) -> Option<EventBatch> {
        let batch = self.window_after(after, limit)?;
        let last = batch.last().map(|e| e.global_position);
        (batch.len() == limit || last == self.newest_position()).then_some(batch)
    }

    fn push(&mut self, chunk: Arc<Chunk>, capacity_events: usize) {
        self.events += chunk.events.len();
        self.chunks.push_back(chunk);
        while self.events > capacity_events && self.chunks.len() > 1 {
            if let Some(oldest) = self.chunks.pop_front() {
                self.events -= oldest.events.len();
            }
        }
    }
}

/// The shared tail of the log. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct LogTail {
    chunks: Arc<Mutex<Chunks>>,
    /// Held by the one follower reading past the cached tail, so the others wait for its read
    /// instead of issuing the same query.
    reading: Arc<tokio::sync::Mutex<()>>,
    capacity_events: usize,
}

impl Default for LogTail {
    fn default() -> Self {
        LogTail::with_capacity(DEFAULT_TAIL_CAPACITY_EVENTS)
    }
}

impl LogTail {
    pub fn with_capacity(capacity_events: usize) -> LogTail {
        LogTail {
            chunks: Arc::new(Mutex::new(Chunks::default())),
            reading: Arc::new(tokio::sync::Mutex::new(())),
            capacity_events: capacity_events.max(1),
        }
    }

    fn cached(&self, after: i64, limit: usize) -> Option<EventBatch> {
        let chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        chunks.serve(after, limit)
    }

    fn newest_position(&self) -> Option<i64> {
        let chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        chunks.newest_position()
    }

    /// Up to `limit` events after position `after`, oldest first; empty when there are none yet.
    /// Reads through `conn` only what no follower of this process has read before.
    pub async fn read_after(
        &self,
        conn: &mut PgConnection,
        after: i64,
        limit: i64,
    ) -> Result<EventBatch, ReadError> {
        let limit_events = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        if let Some(batch) = self.cached(after, limit_events) {
            return Ok(batch);
        }
        let at_the_tail = self.newest_position().is_none_or(|newest| after >= newest);
        if !at_the_tail {
            // Behind the cached tail: a catch-up read of its own, not worth keeping.
            return Ok(EventBatch::whole(read_all(&mut *conn, after, limit).await?));
        }
        let _reading = self.reading.lock().await;
        // Another follower may have read this while we waited.
        if let Some(batch) = self.cached(after, limit_events) {
            return Ok(batch);
        }
        let events = read_all(&mut *conn, after, limit).await?;
        let batch = EventBatch::whole(events);
        if !batch.is_empty() {
            let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
            if chunks
                .newest_position()
                .is_some_and(|newest| after > newest)
            {
                // A follower jumped ahead (a rebuild swapped its tables in at a later position):
                // the cache restarts there, so chunks stay consecutive and never overlap.
                *chunks = Chunks::default();
            }
            chunks.push(batch.chunk.clone(), self.capacity_events);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn event(position: i64) -> RecordedEvent {
        RecordedEvent {
            global_position: position,
            stream_id: format!("order-{position}"),
            stream_version: 1,
            event_id: uuid::Uuid::nil(),
            event_type: "OrderPlaced".into(),
            schema_version: 1,
            payload: json!({}),
            metadata: json!({}),
            recorded_at: Utc::now(),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn chunk(first: i64, last: i64) -> Arc<Chunk> {
        Arc::new(Chunk {
            events: (first..=last).map(event).collect(),
        })
    }

    fn positions(batch: &EventBatch) -> Vec<i64> {
        batch.iter().map(|e| e.global_position).collect()
    }

    #[test]
    fn a_follower_mid_chunk_gets_the_rest_of_it_up_to_its_limit() {
        let mut chunks = Chunks::default();
        chunks.push(chunk(1, 10), 100);
        chunks.push(chunk(11, 12), 100);
        let batch = chunks.window_after(4, 3).expect("position 5 is cached");
        assert_eq!(positions(&batch), vec![5, 6, 7]);
        let batch = chunks.window_after(7, 100).expect("position 8 is cached");
        assert_eq!(
            positions(&batch),
            vec![8, 9, 10],
            "a window never spans two chunks"
        );
        let batch = chunks.window_after(10, 100).expect("position 11 is cached");
        assert_eq!(positions(&batch), vec![11, 12]);
    }

    #[test]
    fn a_follower_behind_the_tail_is_served_only_full_batches_from_the_cache() {
        let mut chunks = Chunks::default();
        chunks.push(chunk(1, 3), 100);
        chunks.push(chunk(4, 5), 100);
        chunks.push(chunk(6, 9), 100);
        // Short of its limit and not at the newest event: it reads a full batch itself.
        assert!(chunks.serve(0, 10).is_none());
        assert!(chunks.serve(3, 10).is_none());
        // A full batch, or what reaches the newest event, comes from the cache.
        let full = chunks.serve(0, 2).expect("a full batch");
        assert_eq!(positions(&full), vec![1, 2]);
        let at_tail = chunks.serve(6, 10).expect("the rest of the newest chunk");
        assert_eq!(positions(&at_tail), vec![7, 8, 9]);
    }

    #[test]
    fn nothing_is_answered_from_the_cache_that_it_does_not_hold() {
        let mut chunks = Chunks::default();
        chunks.push(chunk(11, 20), 100);
        assert!(chunks.window_after(20, 10).is_none(), "past the newest");
        assert!(chunks.window_after(9, 10).is_none(), "before the oldest");
        assert!(chunks.window_after(0, 10).is_none());
    }

    #[test]
    fn the_oldest_chunks_go_first_when_the_cache_is_full_but_the_newest_stays() {
        let mut chunks = Chunks::default();
        chunks.push(chunk(1, 10), 15);
        chunks.push(chunk(11, 20), 15);
        assert!(
            chunks.window_after(0, 10).is_none(),
            "the first chunk was dropped"
        );
        assert_eq!(chunks.events, 10);
        chunks.push(chunk(21, 60), 15);
        assert_eq!(
            chunks.events, 40,
            "a chunk larger than the capacity is still kept"
        );
        assert_eq!(chunks.newest_position(), Some(60));
    }
}
