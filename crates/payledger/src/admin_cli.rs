//! `payledger switches …` and `payledger ops …`: the runbook's toggles and manual operations
//! (source document 2 §5–6) from the command line, as the same audited commands the admin HTTP
//! endpoints run. Each is recorded in its own stream with actor `cli:$USER`, and in `audit-admin`.
//!
//! A refusal names the API's stable error code (`error: E_…: message`) and exits non-zero:
//! 2 when the input is refused (a bad id or note), 3 when the order's state refuses it (no open
//! discrepancy, an unknown refund), 1 for anything else (no database, …).

use crate::keys::cli_actor;
use crate::providers::ProviderSettings;
use anyhow::bail;
use clap::Subcommand;
use payledger_app::clock::{Clock, SystemClock};
use payledger_app::context::RequestContext;
use payledger_app::operations::{ExternalPaymentInput, Operations, SalesSwitches};
use payledger_app::payments::{Payments, PaymentsConfig};
use payledger_connector_toss::TossConfig;
use payledger_domain::ids::{OrderId, PayeeId, PaymentKey};
use payledger_domain::money::Currency;
use payledger_domain::operations::{AdminAction, KillSwitches, SwitchCommand};
use payledger_domain::order::DiscrepancyResolution;
use sqlx::PgPool;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Clone, Subcommand)]
pub enum SwitchesCommand {
    /// Which switches are on.
    Status,
    /// Stop every new payment (new orders and confirmations answer E_PAYMENTS_SUSPENDED).
    SuspendPayments {
        #[arg(long)]
        reason: String,
    },
    ResumePayments,
    /// Stop one payee's sales (new orders and confirmations answer E_PAYEE_SUSPENDED).
    SuspendPayee {
        payee_id: String,
        #[arg(long)]
        reason: String,
    },
    ResumePayee {
        payee_id: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum OpsCliCommand {
    /// Record a payment made outside payledger; the transaction id pays for one order only.
    RecordExternalPayment {
        order_id: String,
        /// Who took the money: `toss`, `bank_transfer`, …
        #[arg(long)]
        provider: String,
        #[arg(long)]
        transaction_id: String,
        /// In minor units.
        #[arg(long)]
        amount: i64,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        method: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Cancel an order's enrollment; with --refund also refund what is refundable (needs the
    /// provider: PAYLEDGER_SANDBOX_URL or TOSS_SECRET_KEY).
    CancelEnrollment {
        order_id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        refund: bool,
    },
    /// Resolve a refund's open discrepancy (a provider's refund request that differs from the
    /// ledger's, `RefundDiscrepancyRecorded`) with a note; nothing moves: the refund keeps
    /// waiting for the provider with its amount held.
    ResolveRefundDiscrepancy {
        /// The order id.
        #[arg(long)]
        order: String,
        /// The refund id (`refundId` in the order's answer and on its timeline).
        #[arg(long)]
        refund: String,
        /// Why (1 to 500 characters, no control characters; no personal data: it is not sealed).
        #[arg(long)]
        note: String,
    },
}

/// Exit code of a command the ledger refused for its input (a bad id, note, …).
pub const EXIT_INPUT_REFUSED: u8 = 2;
/// Exit code of a command the order's state refused (nothing open to resolve, …).
pub const EXIT_STATE_REFUSED: u8 = 3;

/// The command line's card screen, run on every argument before clap or any command sees it.
///
/// The API screens every request for card numbers before a command sees it
/// (`payledger_http::screen`); free text typed on the command line (a switch's or a
/// cancellation's reason, a booking's notes, a discrepancy's note) is stored as typed, and
/// clap's own errors repeat the value they refuse. So an argument holding a card number ends
/// the command here: `E_CARD_DATA_REJECTED`, exit 2, naming the argument by its place only.
pub fn refuse_card_numbers_in_arguments(args: &[String]) -> Option<ExitCode> {
    let place = args
        .iter()
        .skip(1)
        .position(|arg| payledger_domain::card_numbers::contains_card_number(arg))?;
    eprintln!(
        "error: {}: argument {} holds a card number; payledger never stores card data",
        payledger_http::errors::ErrorCode::CardDataRejected.as_str(),
        place + 1
    );
    Some(ExitCode::from(EXIT_INPUT_REFUSED))
}

struct Wiring {
    operations: Operations,
    payments: Arc<Payments>,
    switches: Arc<SalesSwitches>,
    /// Seals what these commands record; reveals what they print.
    executor: Arc<payledger_app::executor::Executor>,
}

fn wire(pool: &PgPool, data_dir: &Path, needs_provider: bool) -> anyhow::Result<Wiring> {
    let config = match crate::providers::ProviderSettings::from_env() {
        ProviderSettings::EmbeddedSandbox if needs_provider => bail!(
            "this asks the provider that serve talks to: set PAYLEDGER_SANDBOX_URL or TOSS_SECRET_KEY"
        ),
        // Never called: these operations only record events.
        ProviderSettings::EmbeddedSandbox => TossConfig::sandbox("http://127.0.0.1:9".to_string()),
        ProviderSettings::Sandbox { base_url } => TossConfig::sandbox(base_url),
        ProviderSettings::Toss {
            base_url,
            secret_key,
        } => TossConfig::new(base_url, secret_key),
    };
    let providers = crate::startup::registry_from(config, None)?;
    let executor = Arc::new(crate::privacy_cli::executor(pool, data_dir)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let switches = Arc::new(SalesSwitches::new(executor.clone()));
    let payments = Arc::new(
        Payments::with_providers(
            executor.clone(),
            Arc::new(providers),
            clock.clone(),
            PaymentsConfig::default(),
        )
        .with_sales_switches(switches.clone()),
    );
    Ok(Wiring {
        operations: Operations::new(executor.clone(), payments.clone(), switches.clone(), clock),
        payments,
        switches,
        executor,
    })
}

/// Prints the switches, a payee suspension's sealed reason revealed (or `[erased]`).
async fn print_switches(
    out: &mut impl Write,
    switches: &KillSwitches,
    wiring: &Wiring,
) -> anyhow::Result<()> {
    let mut text = Vec::new();
    write_switches(&mut text, switches)?;
    let text = String::from_utf8(text)?;
    let text = match wiring.executor.vault() {
        Some(vault) => vault.reveal_text(&text).await?,
        None => text,
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn write_switches(out: &mut impl Write, switches: &KillSwitches) -> anyhow::Result<()> {
    match &switches.payments_suspended {
        Some(s) => writeln!(out, "payments: SUSPENDED since {} ({})", s.at, s.reason)?,
        None => writeln!(out, "payments: on")?,
    }
    if switches.suspended_payees.is_empty() {
        writeln!(out, "suspended payees: none")?;
    }
    for (payee, s) in &switches.suspended_payees {
        writeln!(
            out,
            "payee {payee}: SUSPENDED since {} ({})",
            s.at, s.reason
        )?;
    }
    Ok(())
}

async fn audit(operations: &Operations, action: String, context: &RequestContext) {
    let action = AdminAction {
        action,
        path: "-".to_string(),
        status: 200,
        key_id: "cli".to_string(),
        remote_addr: None,
        forwarded_for: None,
        user_agent: Some(format!("payledger-cli/{}", env!("CARGO_PKG_VERSION"))),
        at: operations.now(),
    };
    if let Err(error) = operations.record_admin_action(action, context).await {
        eprintln!("warning: failed to record the action in audit-admin: {error}");
    }
}

pub async fn run_switches(
    command: SwitchesCommand,
    pool: &PgPool,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let wiring = wire(pool, data_dir, false)?;
    let context = RequestContext::new(cli_actor(), None);
    let now = wiring.operations.now();
    let mut out = std::io::stdout().lock();
    let (name, command) = match command {
        SwitchesCommand::Status => {
            print_switches(&mut out, &wiring.switches.current().await?, &wiring).await?;
            return Ok(ExitCode::SUCCESS);
        }
        SwitchesCommand::SuspendPayments { reason } => (
            "switches suspend-payments".to_string(),
            SwitchCommand::SuspendPayments { reason, at: now },
        ),
        SwitchesCommand::ResumePayments => (
            "switches resume-payments".to_string(),
            SwitchCommand::ResumePayments { at: now },
        ),
        SwitchesCommand::SuspendPayee { payee_id, reason } => (
            format!("switches suspend-payee {payee_id}"),
            SwitchCommand::SuspendPayee {
                payee_id: PayeeId::parse(payee_id)?,
                reason,
                at: now,
            },
        ),
        SwitchesCommand::ResumePayee { payee_id } => (
            format!("switches resume-payee {payee_id}"),
            SwitchCommand::ResumePayee {
                payee_id: PayeeId::parse(payee_id)?,
                at: now,
            },
        ),
    };
    let flipped = wiring.switches.flip(command, &context).await?;
    audit(&wiring.operations, format!("cli {name}"), &context).await;
    if !flipped.changed {
        writeln!(out, "(already so; nothing recorded)")?;
    }
    print_switches(&mut out, &flipped.switches, &wiring).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run_ops(
    command: OpsCliCommand,
    pool: &PgPool,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let context = RequestContext::new(cli_actor(), None);
    let mut out = std::io::stdout().lock();
    match command {
        OpsCliCommand::RecordExternalPayment {
            order_id,
            provider,
            transaction_id,
            amount,
            currency,
            method,
            reason,
        } => {
            let wiring = wire(pool, data_dir, false)?;
            let input = ExternalPaymentInput {
                order_id: OrderId::parse(order_id.clone())?,
                provider,
                provider_transaction_id: PaymentKey::parse(transaction_id)?,
                amount_minor: amount,
                currency: Currency::parse(&currency)?,
                method,
                reason,
            };
            let snapshot = wiring
                .operations
                .record_external_payment(input, &context)
                .await?;
            audit(
                &wiring.operations,
                format!("cli ops record-external-payment {order_id}"),
                &context,
            )
            .await;
            writeln!(
                out,
                "order {order_id}: {:?}, captured {} (version {})",
                snapshot.state.status, snapshot.state.captured_minor, snapshot.version
            )?;
        }
        OpsCliCommand::CancelEnrollment {
            order_id,
            reason,
            refund,
        } => {
            let wiring = wire(pool, data_dir, refund)?;
            let snapshot = wiring
                .operations
                .cancel_enrollment(&OrderId::parse(order_id.clone())?, reason, refund, &context)
                .await?;
            audit(
                &wiring.operations,
                format!("cli ops cancel-enrollment {order_id}"),
                &context,
            )
            .await;
            writeln!(
                out,
                "order {order_id}: enrollment cancelled; {:?}, refunded {} of {}",
                snapshot.state.status, snapshot.state.refunded_minor, snapshot.state.captured_minor
            )?;
        }
        OpsCliCommand::ResolveRefundDiscrepancy {
            order,
            refund,
            note,
        } => return resolve_refund_discrepancy(pool, data_dir, &order, &refund, note).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// An API error as the CLI reports it: its stable code and message on stderr, and the exit code
/// of its kind (input or state).
fn refused(error: payledger_http::errors::ApiError) -> ExitCode {
    eprintln!("error: {}: {}", error.code.as_str(), error.message);
    let status = actix_web::ResponseError::status_code(&error).as_u16();
    if status == 409 || status == 404 {
        ExitCode::from(EXIT_STATE_REFUSED)
    } else {
        ExitCode::from(EXIT_INPUT_REFUSED)
    }
}

/// `ops resolve-refund-discrepancy`: the same command as
/// `POST /v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve`, with actor `cli:$USER`.
async fn resolve_refund_discrepancy(
    pool: &PgPool,
    data_dir: &Path,
    order: &str,
    refund: &str,
    note: String,
) -> anyhow::Result<ExitCode> {
    let order_id = match payledger_http::dto::parse_order_id(order) {
        Ok(id) => id,
        Err(error) => return Ok(refused(error)),
    };
    let refund_id = match payledger_http::dto::parse_refund_id(refund) {
        Ok(id) => id,
        Err(error) => return Ok(refused(error)),
    };
    let wiring = wire(pool, data_dir, false)?;
    let context = RequestContext::new(cli_actor(), None);
    let resolved = wiring
        .payments
        .resolve_refund_discrepancy(
            &order_id,
            refund_id,
            DiscrepancyResolution::Acknowledged,
            note,
            &context,
        )
        .await;
    let snapshot = match resolved {
        Ok(snapshot) => snapshot,
        Err(error) => {
            let error = payledger_http::orders::payment_error(error);
            // Storage and provider troubles are not refusals: they fail as any CLI error does.
            if actix_web::ResponseError::status_code(&error).is_server_error() {
                anyhow::bail!("{}: {}", error.code.as_str(), error.message);
            }
            return Ok(refused(error));
        }
    };
    audit(
        &wiring.operations,
        format!("cli ops resolve-refund-discrepancy {order} {refund}"),
        &context,
    )
    .await;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "order {order}: discrepancy of refund {refund} resolved ({}) by {}; the refund still awaits the provider, {} held (version {})",
        DiscrepancyResolution::Acknowledged.name(),
        context.actor,
        snapshot.state.refund_pending_minor,
        snapshot.version
    )?;
    Ok(ExitCode::SUCCESS)
}
