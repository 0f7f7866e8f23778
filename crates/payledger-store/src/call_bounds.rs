//! How long a database call may take, and what becomes of a connection whose call was given up
//! (docs/operations.md, "Dead connections and the runners' locks"). The one place that owns it.
//!
//! sqlx gives a query no deadline of its own, and it exposes no socket keepalive: a call on a
//! connection whose server is cut off (a network partition, a frozen host) waits until the
//! kernel's retransmissions give up — minutes. So:
//!
//! - **Every call is given up after `database_call_timeout_ms`** (setting
//!   `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`, default [`DEFAULT_DATABASE_CALL_TIMEOUT_MS`]): the
//!   group-commit writer per call (`WriterConfig::call_timeout_ms`), stream loads per call
//!   ([`crate::EventStore::read_stream`]; also every kill-switch read), every other call a
//!   command makes per call ([`bounded`]: the idempotency steps, the API-key lookup, the privacy
//!   vault's key reads, the console's session and key calls, the webhook inbox, the reads of a
//!   `POST` handler; app services take the bound from [`crate::EventStore::call_timeout_ms`]),
//!   and every read request of the HTTP API as a whole
//!   (`payledger_http::deadline`: one timer per request, none per query). A call given up is
//!   `sqlx::Error::Io` of kind `TimedOut` ([`timed_out`]), which every caller already answers as
//!   "the database is unavailable" (HTTP 503 `E_UNAVAILABLE`).
//! - **A connection given up is never handed to the next caller.** Dropping a query future
//!   mid-flight drops its `PoolConnection`, and sqlx's release task then *drains* it: it waits,
//!   with no deadline, for every answer still owed (`PgConnection::ping` after
//!   `wait_until_ready`, sqlx-core 0.8 `pool/connection.rs` `return_to_pool`), and puts the
//!   connection back in the pool once they came. On a dead connection that wait holds a pool slot
//!   until the kernel gives up; after a slow query the connection is reused, its query finished.
//!   [`drain_or_close_on_release`] gives that drain [`RELEASE_DRAIN_MS`]: a connection with
//!   nothing owed (every normal release) costs nothing more, one that does not catch up in time
//!   is closed and its slot freed for a fresh connection.
//! - **Waiting for a connection is bounded too**: `acquire_timeout` on every pool (the service's
//!   [`SERVICE_ACQUIRE_TIMEOUT_MS`], a replica's 500 ms), which also bounds sqlx's liveness ping
//!   of an idle connection before it is handed out (`test_before_acquire`).

use sqlx::postgres::PgPoolOptions;
use sqlx::Connection;
use std::future::Future;
use std::time::Duration;

/// Default bound of one database call, and of one read request as a whole. Far above any
/// healthy call (a read request's own longest wait, for `minPosition` on the primary, is 5 s),
/// and equal to the server's `tcp_user_timeout`, after which a cut-off connection is gone on the
/// server's side anyway.
pub const DEFAULT_DATABASE_CALL_TIMEOUT_MS: u64 = 10_000;
/// Lowest accepted bound: below it healthy calls under load would be given up.
pub const MIN_DATABASE_CALL_TIMEOUT_MS: u64 = 100;
/// Highest accepted bound, so that a typo cannot turn it off.
pub const MAX_DATABASE_CALL_TIMEOUT_MS: u64 = 120_000;
/// How long the service's pool lets a caller wait for a connection (including sqlx's ping of
/// an idle one). Short: with the pool exhausted or the database gone, a fast 503 is better.
pub const SERVICE_ACQUIRE_TIMEOUT_MS: u64 = 2_000;
/// How long a released connection may take to receive the answers still owed to a call that
/// was given up (or dropped: a client that went away). Nothing is owed on a normal release.
pub const RELEASE_DRAIN_MS: u64 = 1_000;

/// The bound of one database call.
pub fn call_timeout(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms.max(1))
}

/// The error of a call given up after `timeout_ms`: an I/O time-out, so that every caller maps
/// it as it maps a lost connection (503 `E_UNAVAILABLE` over HTTP). The outcome of a write given
/// up is unknown.
pub fn timed_out(what: &str, timeout_ms: u64) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} took longer than {timeout_ms} ms"),
    ))
}

/// Runs `call` for at most `timeout_ms`. The connection it held, if it is dropped mid-call, is
/// drained or closed by the pool ([`drain_or_close_on_release`]), never handed on stuck.
pub async fn bounded<T, E>(
    what: &str,
    timeout_ms: u64,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E>
where
    E: From<sqlx::Error>,
{
    match tokio::time::timeout(call_timeout(timeout_ms), call).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(what, timeout_ms, "the database did not answer in time");
            Err(timed_out(what, timeout_ms).into())
        }
    }
}

/// [`bounded`] for a call whose error converts into the caller's (a read model's `sqlx::Error`
/// into an HTTP handler's error, say): the one bound, without a conversion at every call site.
pub async fn bounded_as<T, E, F>(
    what: &str,
    timeout_ms: u64,
    call: impl Future<Output = Result<T, F>>,
) -> Result<T, E>
where
    E: From<sqlx::Error> + From<F>,
{
    bounded(what, timeout_ms, async { call.await.map_err(E::from) }).await
}

/// Pool options whose released connections are drained for at most [`RELEASE_DRAIN_MS`], then
/// closed (see the module's documentation). Every pool of the service is built with it.
pub fn drain_or_close_on_release(options: PgPoolOptions) -> PgPoolOptions {
    options.after_release(|connection, _meta| {
        Box::pin(async move {
            // `flush` (sqlx's `wait_until_ready`) sends what is buffered and reads the answers
            // still owed; with none owed it returns at once, without a round trip. sqlx's own
            // ping on release follows it, as before.
            let drain = tokio::time::timeout(
                Duration::from_millis(RELEASE_DRAIN_MS),
                connection.flush(),
            )
            .await;
            match drain {
                Ok(Ok(())) => Ok(true),
                // Broken: sqlx closes it without a goodbye.
                Ok(Err(error)) => Err(error),
                Err(_) => {
                    tracing::warn!(
                        drain_ms = RELEASE_DRAIN_MS,
                        "a released database connection still owed answers; it is closed, not reused"
                    );
                    Err(timed_out("draining a released connection", RELEASE_DRAIN_MS))
                }
            }
        })
    })
}
