//! `payledger clock show|advance|set`: the scenario clock of a test deployment's database, from
//! the command line. It moves the database's clock; every `serve --test-clock` process of the
//! database follows at once (NOTIFY) and acts on the new time at its jobs' next pass. To have
//! everything due done before the answer, move it through the API
//! (`POST /v1/admin/test-clock/advance`), which runs the jobs itself.

use anyhow::Context;
use chrono::{DateTime, Utc};
use payledger_app::clock::{Clock, SystemClock};
use payledger_app::scenario_clock::ScenarioClock;
use sqlx::PgPool;
use std::process::ExitCode;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClockCommand {
    /// Print the scenario time (and the database's own time).
    Show,
    /// Move the scenario clock forward by a duration: `90s`, `30m`, `12h`, `3d` (no backwards).
    Advance { by: String },
    /// Set the scenario clock to an RFC 3339 time, not earlier than now.
    Set { to: String },
}

/// `90s`, `30m`, `12h`, `3d` as seconds.
pub fn parse_duration_s(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number
        .parse()
        .with_context(|| format!("'{text}' is not a duration such as 90s, 30m, 12h or 3d"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => anyhow::bail!("'{text}': the unit must be s, m, h or d"),
    };
    number
        .checked_mul(unit_s)
        .context("the duration is too large")
}

pub async fn run(command: ClockCommand, pool: &PgPool) -> anyhow::Result<ExitCode> {
    if !ScenarioClock::exists(pool).await? {
        anyhow::bail!(
            "this database has no scenario clock: it is not a test deployment (start `serve --test-clock` once)"
        );
    }
    // The clock exists, so the start time given here is never used.
    let clock = ScenarioClock::open(pool.clone(), SystemClock.now()).await?;
    let previous = clock.now();
    let now = match command {
        ClockCommand::Show => previous,
        ClockCommand::Advance { by } => {
            clock
                .advance(chrono::Duration::seconds(parse_duration_s(&by)?))
                .await?
        }
        ClockCommand::Set { to } => {
            let to: DateTime<Utc> = DateTime::parse_from_rfc3339(&to)
                .with_context(|| format!("'{to}' is not an RFC 3339 time"))?
                .with_timezone(&Utc);
            clock.set_forward(to).await?
        }
    };
    let database_now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
    println!(
        "{}",
        serde_json::json!({
            "previous": previous,
            "now": now,
            "databaseNow": database_now,
            "moves": clock.moves().await?,
        })
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_s;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration_s("90s").unwrap(), 90);
        assert_eq!(parse_duration_s("30m").unwrap(), 1_800);
        assert_eq!(parse_duration_s("12h").unwrap(), 43_200);
        assert_eq!(parse_duration_s("3d").unwrap(), 259_200);
        for bad in ["", "3", "d", "3w", "-"] {
            assert!(parse_duration_s(bad).is_err(), "{bad}");
        }
    }
}
