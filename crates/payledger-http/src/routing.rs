//! Which database answers a read: a fresh read replica when there is one, else the primary
//! (docs/scaling.md). Commands, appends and projector writes never come here: they use the
//! primary's pool directly.
//!
//! - Without `minPosition`, a replica answers only while its staleness bound is within
//!   `PAYLEDGER_REPLICA_MAX_LAG_MS` (`payledger_store::replicas`); otherwise the primary does.
//! - With `minPosition`, a replica answers once its copy of the read model's checkpoint has
//!   reached that position (the checkpoint commits with the rows, and the replica replays whole
//!   transactions, so the rows are there too). It is waited for at most
//!   `PAYLEDGER_REPLICA_WAIT_MS`; then the primary answers after its own bounded wait
//!   (`AppState::wait_for_projection`, 5 s), or the read is a 503 as without replicas.
//! - Every routed answer carries `X-Payledger-Read-Source: primary` or `replica-N`, and is
//!   counted in `payledger_routed_reads{source, reason}`: a replica never answers silently.
//! - A replica query that fails is run again on the primary.

use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpResponse;
use payledger_metrics::ReadSourceLabels;
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;

/// The response header that names the database that answered.
pub const READ_SOURCE_HEADER: &str = "x-payledger-read-source";
const PRIMARY: &str = "primary";
/// How often a replica's checkpoint is looked at while waiting for `minPosition`.
const REPLICA_POLL: Duration = Duration::from_millis(10);

/// The pool a read runs on and the name of its database.
#[derive(Clone)]
pub struct RoutedPool {
    pub pool: PgPool,
    pub source: String,
}

impl RoutedPool {
    fn primary(state: &AppState, reason: &'static str) -> RoutedPool {
        count(PRIMARY, reason);
        RoutedPool {
            pool: state.read_pool.clone(),
            source: PRIMARY.to_owned(),
        }
    }

    pub fn is_replica(&self) -> bool {
        self.source != PRIMARY
    }
}

fn count(source: &str, reason: &'static str) {
    payledger_metrics::metrics()
        .routed_reads
        .get_or_create(&ReadSourceLabels {
            source: source.to_owned(),
            reason,
        })
        .inc();
}

impl AppState {
    /// Chooses the database for a read of read model `projection` (its checkpoint name), or of
    /// the raw log when `projection` is `None`, honouring `min_position`.
    pub async fn route_read(
        &self,
        projection: Option<&str>,
        min_position: Option<i64>,
    ) -> Result<RoutedPool, ApiError> {
        if min_position.is_some_and(|p| p < 0) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "minPosition must be >= 0",
            ));
        }
        let on_primary = |reason| async move {
            if let Some(name) = projection {
                self.wait_for_projection(name, min_position).await?;
            }
            Ok(RoutedPool::primary(self, reason))
        };
        if self.replicas.is_empty() {
            return on_primary("no_replica").await;
        }
        let Some(replica) = self.replicas.fresh_replica() else {
            return on_primary("replica_lagging").await;
        };
        let (Some(name), Some(min_position)) = (projection, min_position) else {
            count(&replica.name, "fresh");
            return Ok(RoutedPool {
                pool: replica.pool.clone(),
                source: replica.name.clone(),
            });
        };
        let deadline = tokio::time::Instant::now() + self.replicas.config().wait;
        loop {
            let checkpoint: Result<Option<i64>, sqlx::Error> =
                sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&replica.pool)
                    .await;
            match checkpoint {
                Ok(position) if position.unwrap_or(0) >= min_position => {
                    count(&replica.name, "replayed_min_position");
                    return Ok(RoutedPool {
                        pool: replica.pool.clone(),
                        source: replica.name.clone(),
                    });
                }
                Ok(_) => {}
                Err(_) => return on_primary("replica_failed").await,
            }
            if tokio::time::Instant::now() >= deadline || !self.replicas.is_fresh(&replica) {
                return on_primary("replica_wait_timed_out").await;
            }
            tokio::time::sleep(REPLICA_POLL).await;
        }
    }

    /// Runs `read` on the routed pool; when a replica fails it, runs it again on the primary.
    pub async fn run_routed<T, F, Fut>(
        &self,
        routed: RoutedPool,
        read: F,
    ) -> Result<(T, RoutedPool), ApiError>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        match read(routed.pool.clone()).await {
            Ok(value) => Ok((value, routed)),
            Err(error) if routed.is_replica() => {
                tracing::warn!(replica = %routed.source, code = ?error.code, "a replica failed a read; the primary answers");
                let primary = RoutedPool::primary(self, "replica_failed");
                let value = read(primary.pool.clone()).await?;
                Ok((value, primary))
            }
            Err(error) => Err(error),
        }
    }
}

/// Names the database that answered on `response`.
pub fn mark(mut response: HttpResponse, routed: &RoutedPool) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(&routed.source) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(READ_SOURCE_HEADER), value);
    }
    response
}
