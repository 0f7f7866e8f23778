//! Background work of bookings and claims inside `serve`: the process managers (slot
//! reservations and refunds, claim refunds and warnings, settlement lines) and the sweep that
//! records respondents' missed deadlines.

use payledger_app::bookings::Bookings;
use payledger_app::claims::Claims;
use payledger_app::settlements::Settlements;
use payledger_domain::ids::ClaimId;
use payledger_projector::process::ProcessConfig;
use payledger_projector::Wakeup;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Claims looked at per sweep.
const MAX_OVERDUE_PER_SWEEP: i64 = 500;
/// How often the deadline sweep runs.
pub const DEADLINE_SWEEP_INTERVAL_MS: u64 = 60_000;

/// Starts the bookings, claims and settlements process managers (one active runner each across
/// processes) and the deadline sweep.
pub fn spawn(
    bookings: Arc<Bookings>,
    claims: Arc<Claims>,
    settlements: Arc<Settlements>,
    connect: PgConnectOptions,
    pool: PgPool,
    wakeup: Wakeup,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for process in payledger_app::processes::all(bookings, claims.clone(), settlements) {
        let (positions, _) = tokio::sync::watch::channel(0);
        tasks.push(tokio::spawn(payledger_projector::process::run_process(
            connect.clone(),
            process,
            ProcessConfig::default(),
            wakeup.clone(),
            Arc::new(positions),
        )));
    }
    tasks.push(tokio::spawn(run_deadline_sweep(
        claims,
        pool,
        Duration::from_millis(DEADLINE_SWEEP_INTERVAL_MS),
    )));
    tasks
}

/// Records, for open claims whose respondent let 24 hours pass, that the deadline was missed.
/// Candidates come from the claims read model; each is re-checked by the claim itself.
pub async fn run_deadline_sweep(claims: Arc<Claims>, pool: PgPool, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match sweep_once(&claims, &pool).await {
            Ok(0) => {}
            Ok(recorded) => tracing::info!(recorded, "recorded missed claim deadlines"),
            Err(error) => tracing::warn!(%error, "claim deadline sweep failed"),
        }
    }
}

pub async fn sweep_once(claims: &Claims, pool: &PgPool) -> Result<usize, sqlx::Error> {
    let now = claims.now();
    let overdue =
        payledger_read_models::claims::overdue_claims(pool, now, MAX_OVERDUE_PER_SWEEP).await?;
    let mut recorded = 0;
    for claim_id in overdue {
        let Ok(claim_id) = ClaimId::parse(claim_id) else {
            continue;
        };
        match claims.record_missed_deadline(&claim_id).await {
            Ok(true) => recorded += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(%claim_id, %error, "failed to record a missed deadline"),
        }
    }
    Ok(recorded)
}
