//! Rebuilding a read model without downtime: build it from position 0 into a fresh schema while
//! the live tables keep serving (bulk builders fold in memory and `COPY`, indexes come after
//! the load), then catch up and swap the tables in within one transaction.

use super::*;

/// Events per read of the log while rebuilding (and per transaction of a projection without a
/// bulk path): large batches for bulk writes.
pub const REBUILD_BATCH_SIZE: i64 = 5_000;

/// Events a [`BulkBuild`] folds in memory before it writes them out: its memory bound. A
/// rebuild of 1 M order events (orders and journal builders, queued batches, the reader) peaked
/// at 290 MiB RSS; a bound in events rather than bytes keeps the flush points reproducible.
pub const REBUILD_FLUSH_EVENTS: usize = 100_000;

/// Batches queued ahead of each bulk builder and of the feed: the reader waits when they are
/// full, so at most this many batches per builder are in memory besides the one being folded.
const REBUILD_QUEUE_BATCHES: usize = 4;

/// Sort memory for building one rebuilt projection's indexes (two builds at once on two cores).
const REBUILD_INDEX_MEMORY_MB: u32 = 256;

/// Rebuilds `projection` from position 0 into a fresh schema while the live tables keep serving,
/// then swaps the new tables in. `progress(position, head)` is called after each batch.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    rebuild_many(pool, &[projection], progress).await
}

/// Rebuilds several projections in one pass over the log, then swaps each in.
pub async fn rebuild_many(
    pool: &PgPool,
    projections: &[&dyn Projection],
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    rebuild_with(pool, projections, &RebuildConfig::default(), progress).await
}

/// How a rebuild reads and writes; the defaults suit production, tests shrink them.
#[derive(Debug, Clone)]
pub struct RebuildConfig {
    /// Events per read of the log (and per transaction of a projection without a bulk path).
    pub batch_events: i64,
    /// Events a [`BulkBuild`] folds in memory before it writes them out.
    pub flush_events: usize,
}

impl Default for RebuildConfig {
    fn default() -> Self {
        RebuildConfig {
            batch_events: REBUILD_BATCH_SIZE,
            flush_events: REBUILD_FLUSH_EVENTS,
        }
    }
}

/// [`rebuild_many`] with explicit batch and flush sizes.
///
/// One reader reads each batch once (the next batch is read while the current one is applied).
/// Projections with a [`BulkBuild`] each fold on their own task and connection, so their work and
/// PostgreSQL's run on every core; the others apply each batch in one transaction. Secondary
/// indexes are created after loading (one sort per index instead of a b-tree insert per row).
pub async fn rebuild_with(
    pool: &PgPool,
    projections: &[&dyn Projection],
    config: &RebuildConfig,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    let mut builds = Vec::with_capacity(projections.len());
    for projection in projections {
        builds.push(prepare_build(pool, *projection).await?);
    }
    let position = load_builds(pool, &mut builds, config, progress).await?;
    finish_builds(pool, &builds).await?;
    let mut swapped_at = position;
    for build in &builds {
        swapped_at = swap_in(pool, build.projection, &build.schema, position).await?;
    }
    Ok(swapped_at)
}

/// A projection being rebuilt into its build schema.
struct Build<'a> {
    projection: &'a dyn Projection,
    schema: String,
    /// Its bulk path, until the load takes it.
    builder: Option<Box<dyn BulkBuild>>,
    /// Statements creating the indexes and constraints dropped while loading.
    deferred: Vec<String>,
}

/// Creates the build schema: its tables without secondary indexes, and for a bulk build without
/// the keys it does not need while loading.
async fn prepare_build<'a>(
    pool: &PgPool,
    projection: &'a dyn Projection,
) -> Result<Build<'a>, ProjectionError> {
    ensure_live(pool, projection).await?;
    let schema = format!("rm_build_{}", projection.name());
    let builder = projection.bulk_builder();
    let mut tx = pool.begin().await?;
    tx.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
        .await?;
    // The tables stay logged: `COPY` writes the WAL once while loading, where unlogged tables
    // made logged before the swap were rewritten whole (and re-indexed) by `SET LOGGED`, which
    // made the rebuild of 1 M events about 30 % slower.
    create_tables(&mut tx, &schema, projection).await?;
    let mut deferred = Vec::new();
    if let Some(builder) = &builder {
        let keyed = builder.keyed_tables();
        deferred = take_constraints(&mut tx, &schema, |table| !keyed.contains(&table)).await?;
    }
    deferred.extend(take_secondary_indexes(&mut tx, &schema).await?);
    tx.commit().await?;
    Ok(Build {
        projection,
        schema,
        builder,
        deferred,
    })
}

/// Drops the primary key and unique constraints of the tables of `schema` that `defer` picks
/// and returns the statements adding them again: one sort per key after loading instead of a
/// b-tree insert per row.
async fn take_constraints(
    conn: &mut PgConnection,
    schema: &str,
    defer: impl Fn(&str) -> bool,
) -> Result<Vec<String>, ProjectionError> {
    let constraints: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, k.conname::text, pg_get_constraintdef(k.oid) \
         FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND k.contype IN ('p', 'u') \
         ORDER BY 1, 2",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    let mut statements = Vec::new();
    for (table, name, definition) in constraints {
        if !defer(&table) {
            continue;
        }
        conn.execute(format!("ALTER TABLE {schema}.{table} DROP CONSTRAINT {name}").as_str())
            .await?;
        statements.push(format!(
            "ALTER TABLE {schema}.{table} ADD CONSTRAINT {name} {definition}"
        ));
    }
    Ok(statements)
}

/// Drops the indexes of `schema` that back no constraint and returns their definitions.
/// Projections look rows up by key while they apply; secondary indexes serve queries.
async fn take_secondary_indexes(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<String>, ProjectionError> {
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         ORDER BY c.relname",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for (name, _) in &indexes {
        conn.execute(format!("DROP INDEX {schema}.{name}").as_str())
            .await?;
    }
    Ok(indexes
        .into_iter()
        .map(|(_, definition)| definition)
        .collect())
}

/// Time spent on one projection during a rebuild, logged when it is loaded.
#[derive(Debug, Default, Clone, Copy)]
struct BuildTiming {
    fold: Duration,
    write: Duration,
}

type Batch = Arc<Vec<RecordedEvent>>;

/// A bulk builder running on its own task: where to send it batches, and its outcome.
struct BulkTask {
    name: &'static str,
    batches: mpsc::Sender<Batch>,
    handle: JoinHandle<Result<(), ProjectionError>>,
}

/// Feeds the whole log to every build. Returns the position of the last event loaded.
async fn load_builds(
    pool: &PgPool,
    builds: &mut [Build<'_>],
    config: &RebuildConfig,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    let connect = pool.connect_options().as_ref().clone();
    let mut bulk = Vec::new();
    let mut per_batch = Vec::new();
    for build in builds.iter_mut() {
        match build.builder.take() {
            Some(builder) => bulk.push(spawn_bulk(&connect, build, builder, config)),
            None => per_batch.push(&*build),
        }
    }
    let (log_sender, mut log) = mpsc::channel(REBUILD_QUEUE_BATCHES);
    let reader = tokio::spawn(read_log(pool.clone(), config.batch_events, log_sender));
    let fed = feed(pool, &mut log, &bulk, &per_batch, progress).await;
    // Close every queue first, so that the builders make their last flushes at the same time,
    // then collect each task's outcome.
    drop(log);
    let handles: Vec<_> = bulk.into_iter().map(|t| (t.name, t.handle)).collect();
    let mut built = Ok(());
    for (name, handle) in handles {
        built = built.and(join_task(handle, name).await);
    }
    let read = join_task(reader, "the log reader").await;
    // A builder or the reader that stopped ends the feed early without an error of its own, so
    // their errors come first.
    built?;
    read?;
    fed
}

async fn join_task(
    handle: JoinHandle<Result<(), ProjectionError>>,
    what: &str,
) -> Result<(), ProjectionError> {
    handle
        .await
        .map_err(|e| ProjectionError::Task(format!("{what}: {e}")))?
}

fn spawn_bulk(
    connect: &PgConnectOptions,
    build: &Build<'_>,
    builder: Box<dyn BulkBuild>,
    config: &RebuildConfig,
) -> BulkTask {
    let (batches, queue) = mpsc::channel(REBUILD_QUEUE_BATCHES);
    let name = build.projection.name();
    let handle = tokio::spawn(run_bulk(
        connect.clone(),
        build.schema.clone(),
        name,
        builder,
        config.flush_events,
        queue,
    ));
    BulkTask {
        name,
        batches,
        handle,
    }
}

/// Hands every batch of the log to the bulk builders and applies it to the other builds.
async fn feed(
    pool: &PgPool,
    log: &mut mpsc::Receiver<Batch>,
    bulk: &[BulkTask],
    per_batch: &[&Build<'_>],
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    let mut position = 0i64;
    let mut timings = vec![BuildTiming::default(); per_batch.len()];
    while let Some(events) = log.recv().await {
        let Some(last) = events.last().map(|e| e.global_position) else {
            break;
        };
        for task in bulk {
            if task.batches.send(events.clone()).await.is_err() {
                // The builder stopped: its task's error is reported by the caller.
                return Ok(position);
            }
        }
        if !per_batch.is_empty() {
            apply_batch(pool, per_batch, &events, &mut timings).await?;
        }
        position = last;
        let head = payledger_store::head_position(pool).await?;
        progress(position, head.max(position));
    }
    for (build, timing) in per_batch.iter().zip(timings) {
        tracing::info!(
            projection = build.projection.name(),
            apply_ms = timing.write.as_millis() as u64,
            "rebuild loaded batch by batch"
        );
    }
    Ok(position)
}

/// Applies one batch to every build without a bulk path, in one transaction.
async fn apply_batch(
    pool: &PgPool,
    builds: &[&Build<'_>],
    events: &[RecordedEvent],
    timings: &mut [BuildTiming],
) -> Result<(), ProjectionError> {
    let mut tx = pool.begin().await?;
    for (build, timing) in builds.iter().zip(timings.iter_mut()) {
        let started = Instant::now();
        set_search_path(&mut tx, &build.schema).await?;
        build.projection.apply(&mut tx, events).await?;
        timing.write += started.elapsed();
    }
    tx.commit().await?;
    Ok(())
}

/// Reads the log from position 0 to the head it finds at the start, batch by batch, into
/// `batches`; the swap catches up with what was appended meanwhile.
///
/// Positions are gapless, so the batches are known ranges and [`REBUILD_READS_IN_FLIGHT`] of
/// them are read at once on their own connections: PostgreSQL produces the next batch while
/// this process decodes the last one, which a single reader left waiting on each other.
async fn read_log(
    pool: PgPool,
    batch_events: i64,
    batches: mpsc::Sender<Batch>,
) -> Result<(), ProjectionError> {
    let head = payledger_store::head_position(&pool).await?;
    let mut in_flight = std::collections::VecDeque::new();
    let mut next_after = 0i64;
    loop {
        while in_flight.len() < REBUILD_READS_IN_FLIGHT && next_after < head {
            let pool = pool.clone();
            let after = next_after;
            let last = (after + batch_events).min(head);
            in_flight.push_back(tokio::spawn(
                async move { read_range(&pool, after, last).await },
            ));
            next_after = last;
        }
        let Some(read) = in_flight.pop_front() else {
            return Ok(());
        };
        let events = read
            .await
            .map_err(|e| ProjectionError::Task(format!("the log reader: {e}")))??;
        if batches.send(Arc::new(events)).await.is_err() {
            // The feed stopped: its caller reports why.
            return Ok(());
        }
    }
}

/// Reads in flight while rebuilding: one being handed over, one being produced.
const REBUILD_READS_IN_FLIGHT: usize = 2;

/// The events at positions `after + 1 ..= last`, all committed, checked to be exactly those.
async fn read_range(
    pool: &PgPool,
    after: i64,
    last: i64,
) -> Result<Vec<RecordedEvent>, ProjectionError> {
    let events = read_all(pool, after, last - after).await?;
    let contiguous = events.len() as i64 == last - after
        && events.first().map(|e| e.global_position) == Some(after + 1)
        && events.last().map(|e| e.global_position) == Some(last);
    if !contiguous {
        return Err(ProjectionError::BadEvent {
            position: after + 1,
            reason: format!(
                "the log between positions {} and {last} is not contiguous: read {} events",
                after + 1,
                events.len()
            ),
        });
    }
    Ok(events)
}

/// Runs one bulk builder over every batch it is sent, flushing every `flush_events` events and
/// at the end.
async fn run_bulk(
    connect: PgConnectOptions,
    schema: String,
    name: &'static str,
    mut builder: Box<dyn BulkBuild>,
    flush_events: usize,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<(), ProjectionError> {
    // Its own connection rather than the pool's: the session settings below must not leak.
    let mut conn = PgConnection::connect_with(&connect).await?;
    conn.execute(
        format!("SET search_path TO {schema}, public; SET synchronous_commit TO off").as_str(),
    )
    .await?;
    let mut timing = BuildTiming::default();
    let mut held_events = 0usize;
    while let Some(events) = batches.recv().await {
        let started = Instant::now();
        builder.fold(&mut conn, &events).await?;
        timing.fold += started.elapsed();
        held_events += events.len();
        if held_events >= flush_events {
            flush_bulk(&mut conn, builder.as_mut(), &mut timing).await?;
            held_events = 0;
        }
    }
    flush_bulk(&mut conn, builder.as_mut(), &mut timing).await?;
    conn.close().await?;
    tracing::info!(
        projection = name,
        fold_ms = timing.fold.as_millis() as u64,
        write_ms = timing.write.as_millis() as u64,
        "rebuild loaded in bulk"
    );
    Ok(())
}

async fn flush_bulk(
    conn: &mut PgConnection,
    builder: &mut dyn BulkBuild,
    timing: &mut BuildTiming,
) -> Result<(), ProjectionError> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    builder.flush(&mut tx).await?;
    tx.commit().await?;
    timing.write += started.elapsed();
    Ok(())
}

/// Creates every build's deferred keys and indexes, each build on its own connection.
async fn finish_builds(pool: &PgPool, builds: &[Build<'_>]) -> Result<(), ProjectionError> {
    let tasks: Vec<_> = builds
        .iter()
        .map(|build| {
            tokio::spawn(finish_build(
                pool.clone(),
                build.projection.name(),
                build.deferred.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| ProjectionError::Task(format!("finishing a build: {e}")))??;
    }
    Ok(())
}

/// While the live tables still serve: creates the keys and indexes dropped while loading.
async fn finish_build(
    pool: PgPool,
    name: &'static str,
    deferred: Vec<String>,
) -> Result<(), ProjectionError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    tx.execute(format!("SET LOCAL maintenance_work_mem TO '{REBUILD_INDEX_MEMORY_MB}MB'").as_str())
        .await?;
    for statement in &deferred {
        tx.execute(statement.as_str()).await?;
    }
    tx.commit().await?;
    tracing::info!(
        projection = name,
        index_ms = started.elapsed().as_millis() as u64,
        "rebuild indexed"
    );
    Ok(())
}

/// Catches the build up to the head and replaces the live tables, in one transaction.
async fn swap_in(
    pool: &PgPool,
    projection: &dyn Projection,
    build_schema: &str,
    position: i64,
) -> Result<i64, ProjectionError> {
    let mut tx = pool.begin().await?;
    // Tables first: waits for a live batch in flight to commit (it writes tables, then the
    // checkpoint), so the two never wait on each other.
    let live_tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|t| format!("{LIVE_SCHEMA}.{t}"))
        .collect();
    tx.execute(
        format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            live_tables.join(", ")
        )
        .as_str(),
    )
    .await?;
    sqlx::query("SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(projection.name())
        .fetch_one(&mut *tx)
        .await?;
    set_search_path(&mut tx, build_schema).await?;
    let position = apply_log(&mut tx, projection, position, i64::MAX, &|_, _| {}).await?;
    for table in projection.tables() {
        tx.execute(format!("DROP TABLE {LIVE_SCHEMA}.{table} CASCADE").as_str())
            .await?;
        tx.execute(format!("ALTER TABLE {build_schema}.{table} SET SCHEMA {LIVE_SCHEMA}").as_str())
            .await?;
    }
    tx.execute(format!("DROP SCHEMA {build_schema} CASCADE").as_str())
        .await?;
    sqlx::query(
        "UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE name = $1",
    )
    .bind(projection.name())
    .bind(position)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(position)
}
