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
//! read itself. Chunks never overlap and are kept in position order; every batch handed out
//! starts at the position right after the follower's and is consecutive, whether it comes from
//! one chunk, several, or the database.
//!
//! Two ways to be served:
//! - [`LogTail::read_joined_after`] (every follower in `serve`): windows on every cached chunk
//!   that follows the follower's position, up to its batch size, handed out as [`JoinedBatch`]
//!   without copying an event (under the cache's lock only `Arc`s are cloned); when that is short
//!   of a batch and a commit notification announced events past the cache, the follower reads
//!   on from the cached tail itself and keeps what it read for the others. Only a follower whose
//!   next event the cache does not hold (far behind) reads the database for itself. The process
//!   managers take the joined windows as they are; the projections' runner, whose read models
//!   take one slice, gets [`JoinedBatch::into_one_slice`]: the window itself when there is one,
//!   a copy made outside the lock when its batch spans chunks. Before this, a follower a commit
//!   or two behind the cached tail (the process managers, whose transactions are slower, and
//!   the runner once they read ahead of it) read and decoded the log again itself: 2.1 rows
//!   read per event under the benchmark's load, 1.0 since.
//! - [`LogTail::read_after`]: one window on one chunk when it is a full batch or reaches the
//!   newest cached event, never a copy; a follower behind the cached tail reads the database
//!   directly and does not disturb the cache.

use payledger_store::{read_all, ReadError, RecordedEvent};
use sqlx::PgConnection;
use std::collections::VecDeque;
use std::ops::{Deref, Index};
use std::sync::atomic::{AtomicI64, Ordering};
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
        EventBatch::first_of(Arc::new(Chunk { events }), usize::MAX)
    }

    /// The first `limit` events of `chunk`.
    fn first_of(chunk: Arc<Chunk>, limit: usize) -> EventBatch {
        let end = chunk.events.len().min(limit);
        EventBatch {
            chunk,
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

/// Consecutive events handed to a follower as windows on one or more chunks, in order: what
/// several commits' chunks hold, without copying an event out of them.
#[derive(Default)]
pub struct JoinedBatch {
    parts: Vec<EventBatch>,
    len: usize,
}

impl From<Vec<RecordedEvent>> for JoinedBatch {
    fn from(events: Vec<RecordedEvent>) -> JoinedBatch {
        let mut joined = JoinedBatch::default();
        joined.push(EventBatch::whole(events));
        joined
    }
}

impl JoinedBatch {
    /// Appends `part`, which must start right after the last event held.
    fn push(&mut self, part: EventBatch) {
        if part.is_empty() {
            return;
        }
        debug_assert_eq!(
            self.last().map(|e| e.global_position + 1),
            self.last().and(part.first().map(|e| e.global_position)),
            "a joined batch is consecutive"
        );
        self.len += part.len();
        self.parts.push(part);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &RecordedEvent> {
        self.parts.iter().flat_map(|part| part.iter())
    }

    pub fn get(&self, mut index: usize) -> Option<&RecordedEvent> {
        for part in &self.parts {
            if index < part.len() {
                return part.get(index);
            }
            index -= part.len();
        }
        None
    }

    pub fn last(&self) -> Option<&RecordedEvent> {
        self.parts.last().and_then(|part| part.last())
    }

    /// The events as one slice: the window itself when there is one part, a copy of the parts'
    /// events joined when there are several (a follower that needs one slice and was behind by
    /// more than one commit). The copy is made outside the cache's lock.
    pub fn into_one_slice(mut self) -> EventBatch {
        if self.parts.len() <= 1 {
            return self
                .parts
                .pop()
                .unwrap_or_else(|| EventBatch::whole(Vec::new()));
        }
        let mut events = Vec::with_capacity(self.len);
        for part in &self.parts {
            events.extend_from_slice(part);
        }
        EventBatch::whole(events)
    }

    /// The position of the last event held, `after` when there is none.
    fn end(&self, after: i64) -> i64 {
        self.last().map_or(after, |e| e.global_position)
    }
}

impl Index<usize> for JoinedBatch {
    type Output = RecordedEvent;

    fn index(&self, index: usize) -> &RecordedEvent {
        match self.get(index) {
            Some(event) => event,
            None => panic!("index {index} out of a joined batch of {}", self.len),
        }
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
        if chunk.events.get(start)?.global_position != wanted {
            // Cannot happen with consecutive chunks; never hand out anything but the next event.
            return None;
        }
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

    /// Adds to `joined` (which ends at `after`) windows on the cached chunks that follow it, one
    /// after the other, until it holds `limit` events or the cache holds no next event. Takes
    /// references to the chunks, never a copy of an event: this runs under the cache's lock.
    fn join_after(&self, joined: &mut JoinedBatch, after: i64, limit: usize) {
        let mut end = after;
        while joined.len() < limit {
            let Some(window) = self.window_after(end, limit - joined.len()) else {
                break;
            };
            end = window.last().map_or(end, |e| e.global_position);
            joined.push(window);
        }
    }

    /// Keeps `chunk`, read after `after`, if it follows the newest cached event; starts over
    /// from it when it is past that (a follower jumped ahead: a rebuild swapped its tables in at
    /// a later position). A chunk that would overlap what is cached is not kept, so chunks stay
    /// consecutive and never overlap.
    fn keep(&mut self, after: i64, chunk: Arc<Chunk>, capacity_events: usize) {
        if chunk.events.is_empty() {
            return;
        }
        match self.newest_position() {
            Some(newest) if after > newest => {
                *self = Chunks::default();
                self.push(chunk, capacity_events);
            }
            Some(newest) if after < newest => {}
            _ => self.push(chunk, capacity_events),
        }
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
    /// The newest position a commit notification announced: every event up to it is
    /// committed. Only a hint of whether reading past the cache can find anything.
    announced: Arc<AtomicI64>,
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
            announced: Arc::new(AtomicI64::new(0)),
            capacity_events: capacity_events.max(1),
        }
    }

    /// Records that events up to `position` committed (a commit notification said so).
    pub fn announce(&self, position: i64) {
        self.announced.fetch_max(position, Ordering::Relaxed);
    }

    fn announced(&self) -> i64 {
        self.announced.load(Ordering::Relaxed)
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Chunks> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, after: i64, limit: usize) -> Option<EventBatch> {
        self.locked().serve(after, limit)
    }

    fn newest_position(&self) -> Option<i64> {
        self.locked().newest_position()
    }

    /// Whether nothing after `after` is cached yet: a read from there is the cache's next chunk.
    fn at_the_tail(&self, after: i64) -> bool {
        self.newest_position().is_none_or(|newest| after >= newest)
    }

    /// Reads up to `read_limit` events after `after` through `conn` and keeps them for the
    /// other followers. Called holding `reading`, at the cached tail.
    async fn read_and_keep(
        &self,
        conn: &mut PgConnection,
        after: i64,
        read_limit: i64,
    ) -> Result<Arc<Chunk>, ReadError> {
        let events = read_all(&mut *conn, after, read_limit).await?;
        let chunk = Arc::new(Chunk { events });
        self.locked()
            .keep(after, chunk.clone(), self.capacity_events);
        Ok(chunk)
    }

    /// Up to `limit` events after position `after`, oldest first, in one slice; empty when there
    /// are none yet. Reads through `conn` only what no follower of this process has read before.
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
        if !self.at_the_tail(after) {
            // Behind the cached tail: a catch-up read of its own, not worth keeping.
            return Ok(EventBatch::whole(read_all(&mut *conn, after, limit).await?));
        }
        let _reading = self.reading.lock().await;
        // Another follower may have read this while we waited.
        if let Some(batch) = self.cached(after, limit_events) {
            return Ok(batch);
        }
        let chunk = self.read_and_keep(conn, after, limit).await?;
        Ok(EventBatch::first_of(chunk, limit_events))
    }

    /// Up to `limit` events after position `after`, oldest first, as windows on the cached
    /// chunks that follow it (joined without copying), read on from the cached tail when that is
    /// short of `limit` and more was announced; empty when there are none yet.
    pub async fn read_joined_after(
        &self,
        conn: &mut PgConnection,
        after: i64,
        limit: i64,
    ) -> Result<JoinedBatch, ReadError> {
        let limit_events = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let mut joined = JoinedBatch::default();
        self.locked().join_after(&mut joined, after, limit_events);
        if self.enough(&joined, after, limit_events) {
            return Ok(joined);
        }
        if joined.is_empty() && !self.at_the_tail(after) {
            // The cache does not hold the next event (far behind): a catch-up read of its own,
            // not worth keeping.
            return Ok(JoinedBatch::from(read_all(&mut *conn, after, limit).await?));
        }
        let _reading = self.reading.lock().await;
        // Another follower may have read on while we waited.
        let end = joined.end(after);
        self.locked().join_after(&mut joined, end, limit_events);
        if self.enough(&joined, after, limit_events) {
            return Ok(joined);
        }
        let end = joined.end(after);
        if !self.at_the_tail(end) {
            // The cache restarted past `end` while we waited (a rebuild's jump): read for
            // ourselves what is missing, without keeping it.
            let rest = limit - joined.len() as i64;
            joined.push(EventBatch::whole(read_all(&mut *conn, end, rest).await?));
            return Ok(joined);
        }
        // A full read, kept whole for the followers behind us; this one takes what fits.
        let chunk = self.read_and_keep(conn, end, limit).await?;
        let rest = limit_events - joined.len();
        joined.push(EventBatch::first_of(chunk, rest));
        Ok(joined)
    }

    /// Whether `joined` (the events after `after` found cached) is what the follower gets: a
    /// full batch, or everything up to the newest announced event.
    fn enough(&self, joined: &JoinedBatch, after: i64, limit: usize) -> bool {
        joined.len() >= limit || (!joined.is_empty() && joined.end(after) >= self.announced())
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

    fn joined_positions(chunks: &Chunks, after: i64, limit: usize) -> Vec<i64> {
        let mut joined = JoinedBatch::default();
        chunks.join_after(&mut joined, after, limit);
        joined.iter().map(|e| e.global_position).collect()
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
        assert!(joined_positions(&chunks, 20, 10).is_empty());
        assert!(joined_positions(&chunks, 9, 10).is_empty());
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

    #[test]
    fn a_joined_batch_spans_chunks_from_the_next_event_up_to_its_limit() {
        let mut chunks = Chunks::default();
        chunks.push(chunk(1, 3), 100);
        chunks.push(chunk(4, 5), 100);
        chunks.push(chunk(6, 9), 100);
        assert_eq!(
            joined_positions(&chunks, 0, 100),
            (1..=9).collect::<Vec<_>>()
        );
        assert_eq!(joined_positions(&chunks, 2, 4), vec![3, 4, 5, 6]);
        assert_eq!(joined_positions(&chunks, 4, 3), vec![5, 6, 7]);
        assert_eq!(joined_positions(&chunks, 8, 100), vec![9]);
        // Its parts share the chunks: no event was copied.
        let mut joined = JoinedBatch::default();
        chunks.join_after(&mut joined, 2, 100);
        assert_eq!(joined.parts.len(), 3);
        assert!(Arc::ptr_eq(&joined.parts[1].chunk, &chunks.chunks[1]));
        assert_eq!(joined.len(), 7);
        assert_eq!(joined[0].global_position, 3);
        assert_eq!(joined[1].global_position, 4);
        assert_eq!(joined[6].global_position, 9);
        assert!(joined.get(7).is_none());
        assert_eq!(joined.last().map(|e| e.global_position), Some(9));
    }

    #[test]
    fn a_joined_batch_becomes_one_slice_copied_only_when_it_spans_chunks() {
        let mut chunks = Chunks::default();
        chunks.push(chunk(1, 3), 100);
        chunks.push(chunk(4, 5), 100);
        let mut one_part = JoinedBatch::default();
        chunks.join_after(&mut one_part, 1, 2);
        let slice = one_part.into_one_slice();
        assert_eq!(positions(&slice), vec![2, 3]);
        assert!(
            Arc::ptr_eq(&slice.chunk, &chunks.chunks[0]),
            "one part is handed over as it is"
        );
        let mut two_parts = JoinedBatch::default();
        chunks.join_after(&mut two_parts, 1, 100);
        let slice = two_parts.into_one_slice();
        assert_eq!(positions(&slice), vec![2, 3, 4, 5]);
        assert!(JoinedBatch::default().into_one_slice().is_empty());
    }

    #[test]
    fn a_kept_chunk_never_overlaps_the_cache_and_a_jump_starts_it_over() {
        let mut chunks = Chunks::default();
        chunks.keep(0, chunk(1, 5), 100);
        // Read by a follower that was behind (it overlaps 4..5): not kept.
        chunks.keep(3, chunk(4, 8), 100);
        assert_eq!(chunks.newest_position(), Some(5));
        assert_eq!(chunks.events, 5);
        chunks.keep(5, chunk(6, 8), 100);
        assert_eq!(
            joined_positions(&chunks, 0, 100),
            (1..=8).collect::<Vec<_>>()
        );
        // An empty read keeps nothing.
        chunks.keep(8, Arc::new(Chunk { events: Vec::new() }), 100);
        assert_eq!(chunks.chunks.len(), 2);
        // A follower jumped ahead: the cache restarts at its read, never bridging the gap.
        chunks.keep(20, chunk(21, 22), 100);
        assert_eq!(chunks.events, 2);
        assert!(joined_positions(&chunks, 8, 100).is_empty());
        assert_eq!(joined_positions(&chunks, 20, 100), vec![21, 22]);
    }
}
