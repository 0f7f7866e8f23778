//! What handlers share: [`AppState`], one per server, handed to handlers as `web::Data`.

use crate::{auth, bookings, idempotency, test_clock};
use payledger_app::payments::Payments;
use payledger_store::EventStore;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// What handlers share.
pub struct AppState {
    pub payments: Arc<Payments>,
    pub store: EventStore,
    /// Pool for read models and health checks.
    pub read_pool: PgPool,
    /// Committed positions of the projections this process runs.
    pub projection_positions: HashMap<String, watch::Receiver<i64>>,
    /// API keys and order owners (`auth`).
    pub access: Arc<auth::AccessControl>,
    /// Stored answers of commands sent with an `Idempotency-Key`.
    pub idempotency: Arc<idempotency::IdempotencyStore>,
    /// Kill switches, manual operations and the admin audit trail.
    pub operations: Arc<payledger_app::operations::Operations>,
    /// Billing keys, subscriptions, wallets and memberships.
    pub subscriptions: Arc<payledger_app::subscriptions::Subscriptions>,
    /// Bookings, claims and settlements.
    pub bookings: Arc<bookings::BookingServices>,
    /// The scenario clock and the jobs a move runs; its `clock` is `None` on the system clock,
    /// where the moving routes answer `E_TEST_CLOCK_DISABLED`.
    pub test_clock: test_clock::TestClockServices,
    /// Read replicas (`DATABASE_REPLICA_URL`; empty when none): see `routing`.
    pub replicas: Arc<payledger_store::replicas::ReplicaSet>,
    /// Longest read request, and longest database call of a command's own steps
    /// (`PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`; `deadline`).
    pub database_call_timeout_ms: u64,
}
