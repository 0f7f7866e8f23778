//! The webhook workers `serve` runs: the inbound processor, the outbox follower of the log and
//! the notification sender. Several `serve` processes may run them at once: the follower holds
//! the projector runtime's lock (it runs in `serve`'s projection runner), the other two claim
//! rows with leases.

use anyhow::Context;
use payledger_app::payments::Payments;
use payledger_projector::{PositionSender, Projection};
use payledger_webhook_relay::{InboundWorker, NotificationSender, OutboxProjection, Relay};
use sqlx::PgPool;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Spawns the inbound processor and the notification sender, and adds the outbox follower to
/// `followers`, the projections the caller runs together with its read models (one transaction
/// per batch for all of them).
pub async fn spawn(
    relay: &Arc<Relay>,
    payments: &Arc<Payments>,
    webhook_lookups: Arc<dyn payledger_gateway::PaymentGateway>,
    pool: &PgPool,
    followers: &mut Vec<(Arc<dyn Projection>, Arc<PositionSender>)>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        InboundWorker::new(relay.clone(), payments.clone())
            .with_lookup_gateway(webhook_lookups)
            .run(),
    ));
    let outbox = OutboxProjection::new(relay.settings.outbound.endpoints.clone());
    payledger_projector::ensure_live(pool, &outbox)
        .await
        .context("failed to set up the notification outbox follower")?;
    let (position, _) = tokio::sync::watch::channel(0);
    followers.push((Arc::new(outbox), Arc::new(position)));
    if !relay.settings.outbound.endpoints.is_empty() {
        let sender =
            NotificationSender::new(pool.clone(), relay.settings.clone(), relay.clock.clone())
                .context("failed to build the notification HTTP client")?;
        tasks.push(tokio::spawn(sender.run()));
    }
    tracing::info!(
        endpoints = relay.settings.outbound.endpoints.len(),
        "webhook workers started"
    );
    Ok(tasks)
}

/// `payledger webhooks dlq list|replay ID` and `payledger notifications dlq list|replay ID`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum WebhooksCommand {
    /// The dead-letter queue: deliveries that failed every attempt.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first (JSON lines).
    List {
        /// Only ids above this (paging).
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Put a dead letter back in the queue; a running `serve` processes (or sends) it again.
    Replay { id: i64 },
}

/// Runs a dead-letter command against the database and prints JSON lines.
pub async fn run_dead_letters(
    command: WebhooksCommand,
    outbound: bool,
    pool: &PgPool,
    out: &mut impl std::io::Write,
) -> anyhow::Result<std::process::ExitCode> {
    use payledger_app::clock::SystemClock;
    use payledger_store::{EventStore, WriterConfig};
    let WebhooksCommand::Dlq { command } = command;
    let clock: Arc<dyn payledger_app::clock::Clock> = Arc::new(SystemClock);
    match (command, outbound) {
        (DlqCommand::List { after, limit }, false) => {
            let relay = Relay::new(
                pool.clone(),
                EventStore::new(pool.clone(), WriterConfig::default()),
                Default::default(),
                clock,
            );
            for letter in relay.inbound_dead_letters(after, limit).await? {
                writeln!(out, "{}", inbound_json(&letter))?;
            }
        }
        (DlqCommand::List { after, limit }, true) => {
            for letter in
                payledger_webhook_relay::outbox::outbound_dead_letters(pool, after, limit).await?
            {
                writeln!(out, "{}", outbound_json(&letter))?;
            }
        }
        (DlqCommand::Replay { id }, false) => {
            let relay = Relay::new(
                pool.clone(),
                EventStore::new(pool.clone(), WriterConfig::default()),
                Default::default(),
                clock,
            );
            let actor = format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "operator".into())
            );
            let letter = relay
                .replay_inbound(id, &actor)
                .await
                .with_context(|| format!("failed to replay inbound webhook {id}"))?;
            writeln!(out, "{}", inbound_json(&letter))?;
        }
        (DlqCommand::Replay { id }, true) => {
            let letter = payledger_webhook_relay::outbox::replay_outbound(pool, id, clock.now())
                .await
                .with_context(|| format!("failed to replay notification {id}"))?;
            writeln!(out, "{}", outbound_json(&letter))?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn inbound_json(letter: &payledger_webhook_relay::InboundDeadLetter) -> serde_json::Value {
    serde_json::json!({
        "id": letter.id,
        "provider": letter.provider,
        "eventId": letter.event_id,
        "eventType": letter.event_type,
        "status": letter.status,
        "attempts": letter.attempts,
        "lastError": letter.last_error,
        "receivedAt": letter.received_at,
        "deadLetteredAt": letter.dead_lettered_at,
        "streamId": payledger_domain::webhook::stream_id(&letter.provider, &letter.event_id),
    })
}

fn outbound_json(letter: &payledger_webhook_relay::OutboundDeadLetter) -> serde_json::Value {
    serde_json::json!({
        "id": letter.id,
        "messageId": letter.message_id,
        "endpointUrl": letter.endpoint_url,
        "notificationType": letter.notification_type,
        "priority": letter.priority,
        "status": letter.status,
        "attempts": letter.attempts,
        "lastError": letter.last_error,
        "lastStatusCode": letter.last_status_code,
        "createdAt": letter.created_at,
        "deadLetteredAt": letter.dead_lettered_at,
    })
}
