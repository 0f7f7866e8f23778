//! `payledger bookings unconfirmed|confirm|force-cancel`: the admins' queue of bookings their
//! provider has not confirmed within 24 hours (source document 5, §6.1), from the command line.
//! The same commands as `/v1/admin/bookings/…`, recorded with actor `cli:$USER`. On a test
//! deployment they read the database's scenario clock.

use crate::keys::cli_actor;
use crate::providers::ProviderSettings;
use anyhow::bail;
use clap::Subcommand;
use payledger_app::bookings::Bookings;
use payledger_app::clock::{Clock, SystemClock};
use payledger_app::context::RequestContext;
use payledger_app::payments::{Payments, PaymentsConfig};
use payledger_app::scenario_clock::ScenarioClock;
use payledger_connector_toss::TossConfig;
use payledger_domain::ids::{AdminId, OrderId};
use sqlx::PgPool;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Clone, Subcommand)]
pub enum BookingsCommand {
    /// The bookings unconfirmed after 24 hours, the longest overdue first.
    Unconfirmed {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long, default_value_t = 1)]
        page: i64,
    },
    /// Confirm an unconfirmed booking by hand.
    Confirm {
        order_id: String,
        #[arg(long)]
        notes: String,
        /// The admin recorded (default: $USER).
        #[arg(long)]
        admin: Option<String>,
    },
    /// Cancel an unconfirmed booking with a full refund (needs the provider:
    /// PAYLEDGER_SANDBOX_URL or TOSS_SECRET_KEY).
    ForceCancel {
        order_id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        admin: Option<String>,
    },
}

async fn clock(pool: &PgPool) -> anyhow::Result<Arc<dyn Clock>> {
    if ScenarioClock::exists(pool).await? {
        // The clock exists, so the start time given here is never used.
        return Ok(ScenarioClock::open(pool.clone(), SystemClock.now()).await?);
    }
    Ok(Arc::new(SystemClock))
}

async fn bookings(
    pool: &PgPool,
    data_dir: &Path,
    needs_provider: bool,
) -> anyhow::Result<Bookings> {
    let config = match ProviderSettings::from_env() {
        ProviderSettings::EmbeddedSandbox if needs_provider => bail!(
            "this refunds through the provider that serve talks to: set PAYLEDGER_SANDBOX_URL or TOSS_SECRET_KEY"
        ),
        // Never called: a confirmation only records events.
        ProviderSettings::EmbeddedSandbox => TossConfig::sandbox("http://127.0.0.1:9".to_string()),
        ProviderSettings::Sandbox { base_url } => TossConfig::sandbox(base_url),
        ProviderSettings::Toss {
            base_url,
            secret_key,
        } => TossConfig::new(base_url, secret_key),
    };
    let providers = crate::startup::registry_from(config, None)?;
    // Seals the notes and reasons it records, as `serve` does (docs/events.md).
    let executor = Arc::new(crate::privacy_cli::executor(pool, data_dir)?);
    let payments = Arc::new(Payments::with_providers(
        executor.clone(),
        Arc::new(providers),
        clock(pool).await?,
        PaymentsConfig::default(),
    ));
    Ok(Bookings::new(executor, payments))
}

fn admin_id(named: Option<String>) -> anyhow::Result<AdminId> {
    let name = named.unwrap_or_else(|| cli_actor().trim_start_matches("cli:").to_string());
    Ok(AdminId::parse(name)?)
}

pub async fn run(
    command: BookingsCommand,
    pool: &PgPool,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let context = RequestContext::new(cli_actor(), None);
    let mut out = std::io::stdout().lock();
    match command {
        BookingsCommand::Unconfirmed { limit, page } => {
            let (rows, total) =
                payledger_read_models::bookings::unconfirmed_queue(pool, page, limit).await?;
            writeln!(out, "{total} unconfirmed after 24 hours")?;
            for r in rows {
                writeln!(
                    out,
                    "{}  payee {}  starts {}  confirm by {}  overdue since {}",
                    r.order_id,
                    r.payee_id,
                    r.service_starts_at.to_rfc3339(),
                    r.confirm_by.to_rfc3339(),
                    r.overdue_at.to_rfc3339()
                )?;
            }
        }
        BookingsCommand::Confirm {
            order_id,
            notes,
            admin,
        } => {
            let order_id = OrderId::parse(order_id)?;
            let confirmed = bookings(pool, data_dir, false)
                .await?
                .confirm(&order_id, Some(admin_id(admin)?), Some(notes), &context)
                .await?;
            let when = confirmed
                .booking
                .confirmation
                .and_then(|c| c.confirmed)
                .map(|c| c.at.to_rfc3339())
                .unwrap_or_default();
            let again = if confirmed.replay { " (before)" } else { "" };
            writeln!(out, "{order_id}: confirmed at {when}{again}")?;
        }
        BookingsCommand::ForceCancel {
            order_id,
            reason,
            admin,
        } => {
            let order_id = OrderId::parse(order_id)?;
            let cancellation = bookings(pool, data_dir, true)
                .await?
                .force_cancel(&order_id, admin_id(admin)?, reason, &context)
                .await?;
            let c = &cancellation.cancelled;
            let again = if cancellation.replay { " (before)" } else { "" };
            writeln!(
                out,
                "{order_id}: cancelled at {}{again}; refund {} of {} {}",
                c.at.to_rfc3339(),
                c.decision.refund_minor,
                c.paid_minor,
                c.currency.code()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
