//! The scenario clock of a test deployment (`serve --test-clock`): read it, set it forward,
//! advance it. Moving it runs every time-driven job once at the new time (after the read models
//! and process managers caught up with the log, and again after the jobs), so the answer shows a
//! ledger that has lived through the move.

use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use payledger_app::scenario_clock::{DueJob, ScenarioClock, ScenarioClockError};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;

/// How long a move waits for the read models and process managers to catch up, each time.
const MAX_CATCH_UP_WAIT_MS: u64 = 20_000;
/// Rounds of "run the jobs, wait for their effects" per move: a job's events can make another
/// job's work due (a confirmed statement becomes payable), bounded so a move always answers.
const MAX_JOB_ROUNDS: usize = 3;

/// What the test-clock routes need: a field of [`AppState`], always present.
pub struct TestClockServices {
    /// `None`: the server runs on the system clock.
    pub clock: Option<Arc<ScenarioClock>>,
    /// Run in this order after each move.
    pub jobs: Vec<Arc<dyn DueJob>>,
    pub pool: PgPool,
    /// Serialises moves within the process, so two moves' job runs do not interleave.
    pub moving: tokio::sync::Mutex<()>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockOut {
    /// `true` on a test deployment; `false`: the system clock, nothing can be moved.
    pub test_clock: bool,
    /// The time every rule reads (the scenario time).
    pub now: DateTime<Utc>,
    /// The database's own time, what `recordedAt` of new events will be near.
    pub database_now: DateTime<Utc>,
    /// How many times the clock was moved in this database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moves: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    pub job: String,
    pub round: usize,
    /// What the pass did (counts), or `error`.
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovedOut {
    pub previous: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub jobs: Vec<JobRun>,
    /// `false` when the read models or process managers did not catch up in time (the jobs ran
    /// anyway; a later move or their own schedule picks up the rest).
    pub caught_up: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvanceBody {
    /// Seconds to move forward (0 to 34,560,000); added to `minutes`, `hours` and `days`.
    #[serde(default)]
    pub seconds: i64,
    #[serde(default)]
    pub minutes: i64,
    #[serde(default)]
    pub hours: i64,
    #[serde(default)]
    pub days: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetBody {
    /// The new time (RFC 3339), not earlier than now.
    pub to: String,
}

/// The services and the clock when the test clock is on; `E_TEST_CLOCK_DISABLED` otherwise.
fn services(
    services: &TestClockServices,
) -> Result<(&TestClockServices, &Arc<ScenarioClock>), ApiError> {
    match &services.clock {
        Some(clock) => Ok((services, clock)),
        None => Err(ApiError::new(
            ErrorCode::TestClockDisabled,
            "this server runs on the system clock; start it with `serve --test-clock`",
        )),
    }
}

fn clock_error(error: ScenarioClockError) -> ApiError {
    match error {
        ScenarioClockError::Backwards { now, requested } => {
            ApiError::new(ErrorCode::ClockBackwards, error.to_string())
                .with("now", now.to_rfc3339())
                .with("requested", requested.to_rfc3339())
        }
        ScenarioClockError::OutOfRange => ApiError::field("seconds", error.to_string()),
        ScenarioClockError::Database(e) => ApiError::unavailable(e),
    }
}

async fn database_now(pool: &PgPool) -> Result<DateTime<Utc>, ApiError> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(pool)
        .await
        .map_err(ApiError::unavailable)
}

#[utoipa::path(
    get,
    path = "/v1/admin/test-clock",
    tag = "operations",
    responses((status = 200, description = "The scenario time (or the system time when the test clock is off)", body = ClockOut))
)]
pub async fn get_clock(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database_now = database_now(&state.read_pool).await?;
    let out = match state.test_clock.clock.clone() {
        Some(clock) => ClockOut {
            test_clock: true,
            now: clock.refresh().await.map_err(clock_error)?,
            database_now,
            moves: Some(clock.moves().await.map_err(clock_error)?),
        },
        None => ClockOut {
            test_clock: false,
            now: state.payments.clock().now(),
            database_now,
            moves: None,
        },
    };
    Ok(HttpResponse::Ok().json(out))
}

#[utoipa::path(
    post,
    path = "/v1/admin/test-clock/advance",
    tag = "operations",
    request_body = AdvanceBody,
    responses(
        (status = 200, description = "Moved; every time-driven job ran once at the new time", body = MovedOut),
        (status = 404, description = "`E_TEST_CLOCK_DISABLED`", body = Object)
    )
)]
pub async fn advance(
    state: web::Data<AppState>,
    body: web::Json<AdvanceBody>,
) -> Result<HttpResponse, ApiError> {
    let (services, clock) = services(&state.test_clock)?;
    let parts = [
        (body.days, 86_400),
        (body.hours, 3_600),
        (body.minutes, 60),
        (body.seconds, 1),
    ];
    let mut seconds: i64 = 0;
    for (value, unit) in parts {
        seconds = value
            .checked_mul(unit)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(|| ApiError::field("seconds", "the move is too large"))?;
    }
    let _moving = services.moving.lock().await;
    // What happened before the move is followed at the old time (a captured booking asks for
    // its confirmation when it was paid, not after the jump).
    wait_for_followers(&services.pool).await;
    let previous = clock.refresh().await.map_err(clock_error)?;
    let now = clock
        .advance(Duration::seconds(seconds))
        .await
        .map_err(clock_error)?;
    Ok(HttpResponse::Ok().json(run_jobs(services, previous, now).await))
}

#[utoipa::path(
    post,
    path = "/v1/admin/test-clock/set",
    tag = "operations",
    request_body = SetBody,
    responses(
        (status = 200, description = "Set forward; every time-driven job ran once at the new time", body = MovedOut),
        (status = 409, description = "`E_CLOCK_BACKWARDS`: the time is earlier than now", body = Object),
        (status = 404, description = "`E_TEST_CLOCK_DISABLED`", body = Object)
    )
)]
pub async fn set(
    state: web::Data<AppState>,
    body: web::Json<SetBody>,
) -> Result<HttpResponse, ApiError> {
    let (services, clock) = services(&state.test_clock)?;
    let to = DateTime::parse_from_rfc3339(&body.to)
        .map_err(|_| ApiError::field("to", "to must be an RFC 3339 time"))?
        .with_timezone(&Utc);
    let _moving = services.moving.lock().await;
    // What happened before the move is followed at the old time (a captured booking asks for
    // its confirmation when it was paid, not after the jump).
    wait_for_followers(&services.pool).await;
    let previous = clock.refresh().await.map_err(clock_error)?;
    let now = clock.set_forward(to).await.map_err(clock_error)?;
    Ok(HttpResponse::Ok().json(run_jobs(services, previous, now).await))
}

/// Runs every job once at the new time, in rounds while they still find work, waiting for the
/// log's followers before each round and after the last.
async fn run_jobs(
    services: &TestClockServices,
    previous: DateTime<Utc>,
    now: DateTime<Utc>,
) -> MovedOut {
    let mut caught_up = wait_for_followers(&services.pool).await;
    let mut jobs = Vec::new();
    for round in 1..=MAX_JOB_ROUNDS {
        let mut did_something = false;
        for job in &services.jobs {
            let result = match job.run_due().await {
                Ok(result) => result,
                Err(error) => serde_json::json!({ "error": error }),
            };
            did_something |= found_work(&result);
            jobs.push(JobRun {
                job: job.name().to_string(),
                round,
                result,
            });
        }
        caught_up = wait_for_followers(&services.pool).await;
        if !did_something {
            break;
        }
    }
    MovedOut {
        previous,
        now,
        jobs,
        caught_up,
    }
}

/// Did a pass's report count anything done (a positive number anywhere in it)?
fn found_work(result: &serde_json::Value) -> bool {
    match result {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0) > 0,
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(key, value)| key != "examined" && found_work(value)),
        serde_json::Value::Array(values) => values.iter().any(found_work),
        _ => false,
    }
}

/// Waits until every read model and process manager has handled the whole log (bounded).
async fn wait_for_followers(pool: &PgPool) -> bool {
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(MAX_CATCH_UP_WAIT_MS);
    let mut quiet_rounds = 0;
    loop {
        let projections = payledger_projector::status(pool).await;
        let processes = payledger_projector::process::status(pool).await;
        let idle = match (projections, processes) {
            (Ok(projections), Ok(processes)) => {
                projections.iter().all(|p| p.lag_events == 0)
                    && processes.iter().all(|p| p.lag_events == 0)
            }
            _ => false,
        };
        // Twice in a row: a process manager's own appends show up as new lag.
        quiet_rounds = if idle { quiet_rounds + 1 } else { 0 };
        if quiet_rounds >= 2 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
