//! Background jobs inside `serve`: the reconciler (unknown outcomes, stuck confirmations and
//! refunds) and the expiry of orders whose payment window closed.
//!
//! Candidates come from the orders read model, which is only an index: each candidate is
//! re-checked against its event stream by the command it receives. Several `serve` processes
//! may run these jobs at once; every command is version-checked and every provider call carries
//! its idempotency key, so doing one twice changes nothing.

use payledger_app::payments::{Payments, Reconciled};
use payledger_domain::ids::OrderId;
use payledger_read_models::orders;
use serde::Serialize;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Orders looked at per pass.
const MAX_CANDIDATES_PER_PASS: i64 = 500;

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub examined: usize,
    pub settled: usize,
    pub still_unknown: usize,
    /// Orders with a refund whose provider request differs from it (recorded once on the
    /// order; counted on every pass while it waits for support).
    pub held_for_review: usize,
    pub expired: usize,
    pub errors: usize,
}

pub async fn run_reconciler(
    payments: Arc<Payments>,
    pool: PgPool,
    every: Duration,
    older_than: chrono::Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match reconcile_once(&payments, &pool, older_than).await {
            Ok(report) if report.examined > 0 => {
                tracing::info!(?report, "reconciler pass");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reconciler pass failed"),
        }
    }
}

/// One pass: settle unknown outcomes older than `older_than`, expire unpaid orders.
pub async fn reconcile_once(
    payments: &Payments,
    pool: &PgPool,
    older_than: chrono::Duration,
) -> Result<ReconcileReport, sqlx::Error> {
    let mut report = ReconcileReport::default();
    let pending = orders::orders_awaiting_provider_outcome(pool, MAX_CANDIDATES_PER_PASS).await?;
    for order_id in pending {
        let Ok(order_id) = OrderId::parse(order_id) else {
            continue;
        };
        report.examined += 1;
        match payments.reconcile_order(&order_id, older_than).await {
            Ok(Reconciled::Settled(_)) => report.settled += 1,
            Ok(Reconciled::StillUnknown(_)) => report.still_unknown += 1,
            Ok(Reconciled::HeldForReview(_)) => report.held_for_review += 1,
            Ok(_) => {}
            Err(error) => {
                report.errors += 1;
                tracing::warn!(%order_id, %error, "failed to reconcile an order");
            }
        }
    }
    let window = chrono::Duration::minutes(payledger_domain::order::CONFIRMATION_WINDOW_MINUTES);
    let expirable = orders::unpaid_orders_placed_before(
        pool,
        payments.clock().now() - window,
        MAX_CANDIDATES_PER_PASS,
    )
    .await?;
    for order_id in expirable {
        let Ok(order_id) = OrderId::parse(order_id) else {
            continue;
        };
        report.examined += 1;
        match payments.expire(&order_id).await {
            Ok(_) => report.expired += 1,
            Err(error) => {
                report.errors += 1;
                tracing::debug!(%order_id, %error, "order not expired");
            }
        }
    }
    Ok(report)
}
