//! Whether the server still has a runner's lock-holding session.
//!
//! A runner's advisory locks live in its server session. When a node is cut off from PostgreSQL
//! the server ends that session within its TCP keepalive / `tcp_user_timeout` bound and another
//! node takes the locks (docs/operations.md, "Dead connections and the runners' locks"). The
//! cut-off runner itself may never learn it: if the server had received and acknowledged its
//! last request when the cut came and the answer was lost, its socket has nothing left to
//! retransmit and waits for that answer forever, and sqlx offers no client-side keepalive. The
//! runner would then never stand by again, leaving its node without a standby for good.
//!
//! So an active runner asks, now and then and on a connection of its own, whether the server
//! still has its session (by process id and start time: a process id alone may be reused). Only
//! a successful answer that the session is gone ends the runner; a check that cannot reach the
//! server decides nothing.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// How often an active runner checks that its session still exists on the server.
pub const SESSION_CHECK_INTERVAL_MS: u64 = 15_000;
/// How long one check may take before it counts as "could not tell".
const SESSION_CHECK_TIMEOUT_MS: u64 = 5_000;

/// A server session: its backend process id and when that backend started (µs since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    pid: i32,
    started_us: i64,
}

/// The session `conn` is connected to.
pub(crate) async fn session_of(conn: &mut PgConnection) -> Result<Session, sqlx::Error> {
    let (pid, started_us): (i32, i64) = sqlx::query_as(
        "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint \
         FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .fetch_one(conn)
    .await?;
    Ok(Session { pid, started_us })
}

/// Resolves once a check on a fresh connection has found that `session` no longer exists; never
/// resolves while the session exists or the server cannot be asked.
pub(crate) async fn session_ended(connect: &PgConnectOptions, session: Session) {
    loop {
        tokio::time::sleep(Duration::from_millis(SESSION_CHECK_INTERVAL_MS)).await;
        let check = async {
            let mut conn = PgConnection::connect_with(connect).await?;
            // Another role's session shows no start time: it counts as still there.
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 \
                   AND (backend_start IS NULL \
                        OR (extract(epoch FROM backend_start) * 1000000)::bigint = $2))",
            )
            .bind(session.pid)
            .bind(session.started_us)
            .fetch_one(&mut conn)
            .await?;
            let _ = conn.close().await;
            Ok::<bool, sqlx::Error>(exists)
        };
        let timeout = Duration::from_millis(SESSION_CHECK_TIMEOUT_MS);
        if let Ok(Ok(false)) = tokio::time::timeout(timeout, check).await {
            tracing::warn!(
                pid = session.pid,
                "the server ended this runner's session (its connection died unnoticed); \
                 dropping it"
            );
            return;
        }
    }
}
