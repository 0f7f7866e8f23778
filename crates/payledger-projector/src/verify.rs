//! Checks that a live read model is what the log says it should be.
//!
//! Read models are derived: a rebuild from position 0 must give the same rows. [`verify`] proves
//! it for the live tables as they are, without stopping anything and without leaving a trace:
//! in one REPEATABLE READ transaction it reads the projection's checkpoint, builds the
//! projection from position 0 up to exactly that checkpoint into a scratch schema, compares
//! every table row for row with the live one, and rolls everything back. The live runner keeps
//! going meanwhile; the transaction's snapshot holds the live tables and their checkpoint as
//! they were committed together.

use crate::{apply_log, create_tables, Projection, ProjectionError, LIVE_SCHEMA};
use serde::Serialize;
use sqlx::{Connection, Executor, PgPool};

/// How one table of a read model compares with its rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableDifference {
    pub table: String,
    /// Rows the rebuild has and the live table lacks (counting duplicates).
    pub missing_rows: i64,
    /// Rows the live table has and the rebuild does not.
    pub unexpected_rows: i64,
}

/// The outcome of [`verify`] for one projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub projection: String,
    /// The live checkpoint the rebuild was taken to.
    pub position: i64,
    /// Only the tables that differ; empty when the read model is exactly its rebuild.
    pub differences: Vec<TableDifference>,
}

impl VerifyReport {
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Rebuilds `projection` up to its live checkpoint in a scratch schema and compares every table
/// with the live one. Changes nothing.
pub async fn verify(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<VerifyReport, ProjectionError> {
    verify_with_progress(pool, projection, &|_, _| {}).await
}

/// [`verify`], calling `progress(position, checkpoint)` after each batch of the log applied to
/// the scratch copy.
///
/// Memory stays bounded on both sides: the log is applied a batch at a time (the scratch tables
/// live in the database, not here), and the comparison is two `EXCEPT ALL` queries answered with
/// a count, which PostgreSQL sorts or hashes within `work_mem`, spilling to disk past it. The
/// scratch tables are analysed first so that the planner sees their real size (a table created
/// in the transaction has no statistics, and an in-memory hashed set operation sized from a
/// wrong estimate is the one thing here that could grow without bound).
pub async fn verify_with_progress(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<VerifyReport, ProjectionError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    // One snapshot for the checkpoint, the live tables and the log up to the checkpoint.
    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let position: i64 =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(projection.name())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ProjectionError::Unknown(projection.name().to_string()))?;
    let scratch = format!("rm_verify_{}", projection.name());
    tx.execute(format!("DROP SCHEMA IF EXISTS {scratch} CASCADE").as_str())
        .await?;
    // Leaves `search_path` on the scratch schema for the rest of the transaction.
    create_tables(&mut tx, &scratch, projection).await?;
    apply_log(&mut tx, projection, 0, position, progress).await?;
    for table in projection.tables() {
        tx.execute(format!("ANALYZE {scratch}.{table}").as_str())
            .await?;
    }
    let mut differences = Vec::new();
    for table in projection.tables() {
        let (missing_rows, unexpected_rows): (i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT count(*) FROM (TABLE {scratch}.{table} EXCEPT ALL TABLE {LIVE_SCHEMA}.{table}) m), \
                    (SELECT count(*) FROM (TABLE {LIVE_SCHEMA}.{table} EXCEPT ALL TABLE {scratch}.{table}) u)"
        ))
        .fetch_one(&mut *tx)
        .await?;
        if missing_rows > 0 || unexpected_rows > 0 {
            differences.push(TableDifference {
                table: (*table).to_string(),
                missing_rows,
                unexpected_rows,
            });
        }
    }
    // Nothing of the scratch copy survives.
    tx.rollback().await?;
    Ok(VerifyReport {
        projection: projection.name().to_string(),
        position,
        differences,
    })
}
