//! Disputes on the payees' statements: while a provider dispute (chargeback) is open on a
//! payable order, what is at stake is held (`hold:dispute:{dispute}`); when it is decided the
//! hold is released (`release:dispute:{dispute}`), and a lost dispute takes what the provider
//! kept off the payee's statement like a refund (`dispute-lost:{order}:{dispute}`), matching the
//! journal (`DisputeLost` debits `payee_payable`). Line ids derive from the dispute, so a
//! replayed event adds nothing.

use super::*;
use payledger_domain::order::{DisputeClosed, DisputeOpened};

impl SettlementProcess {
    pub(super) async fn on_dispute_opened(
        &self,
        state: &State<'_>,
        order_id: &OrderId,
        opened: &DisputeOpened,
    ) -> Result<(), ProcessError> {
        sqlx::query(
            "UPDATE pm_settlement_orders SET dispute_id = $2, dispute_open = true, \
                dispute_minor = $3 WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .bind(&opened.dispute_id)
        .bind(opened.amount_minor)
        .execute(&mut **state.lock().await)
        .await?;
        if let Some(order) = Self::order_row(state, order_id).await? {
            if let Some(week) = order.payable_week {
                self.hold_for_dispute(state, &order, order_id, week, opened.at)
                    .await?;
            }
        }
        Ok(())
    }

    /// Holds the disputed amount (no more than is left of the payment) of a payable order whose
    /// dispute is open and not held yet. Also called when an order becomes payable.
    pub(super) async fn hold_for_dispute(
        &self,
        state: &State<'_>,
        order: &OrderRow,
        order_id: &OrderId,
        base_week: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        let row: Option<(Option<String>, bool, i64, i64)> = sqlx::query_as(
            "SELECT dispute_id, dispute_open, dispute_minor, dispute_held_minor \
             FROM pm_settlement_orders WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .fetch_optional(&mut **state.lock().await)
        .await?;
        let Some((Some(dispute_id), true, dispute_minor, 0)) = row else {
            return Ok(());
        };
        let at_stake = dispute_minor.min(order.captured_minor - order.refunded_minor);
        if at_stake <= 0 {
            return Ok(());
        }
        let line = Self::line(
            format!("hold:dispute:{dispute_id}"),
            LineKind::Hold,
            order_id,
            None,
            at_stake,
            at,
            "held while the payment is disputed at the provider",
        );
        let key = self.add(self.week_key(order, base_week), line).await?;
        sqlx::query(
            "UPDATE pm_settlement_orders SET dispute_held_minor = $2, dispute_hold_week = $3 \
             WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .bind(at_stake)
        .bind(key.week_start)
        .execute(&mut **state.lock().await)
        .await?;
        Ok(())
    }

    pub(super) async fn on_dispute_closed(
        &self,
        state: &State<'_>,
        order_id: &OrderId,
        closed: &DisputeClosed,
        lost: bool,
    ) -> Result<(), ProcessError> {
        let Some(order) = Self::order_row(state, order_id).await? else {
            return Ok(());
        };
        let held: Option<(i64, Option<NaiveDate>)> = sqlx::query_as(
            "SELECT dispute_held_minor, dispute_hold_week FROM pm_settlement_orders \
             WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .fetch_optional(&mut **state.lock().await)
        .await?;
        if let Some((held_minor, Some(hold_week))) = held {
            if held_minor > 0 {
                // Never before the hold's own statement.
                let now_week =
                    self.settlements
                        .key_for(order.payee_id.clone(), order.currency, closed.at);
                let base = self.week_key(&order, hold_week.max(now_week.week_start));
                let line = Self::line(
                    format!("release:dispute:{}", closed.dispute_id),
                    LineKind::HoldReleased,
                    order_id,
                    None,
                    held_minor,
                    closed.at,
                    if lost { "dispute lost" } else { "dispute won" },
                );
                self.add(base, line).await?;
            }
        }
        let withdrawn_minor = if lost { closed.withdrawn_minor } else { 0 };
        sqlx::query(
            "UPDATE pm_settlement_orders SET dispute_open = false, dispute_held_minor = 0, \
                refunded_minor = refunded_minor + $2 WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .bind(withdrawn_minor)
        .execute(&mut **state.lock().await)
        .await?;
        if withdrawn_minor > 0 && order.payable_week.is_some() {
            let line = Self::line(
                format!("dispute-lost:{order_id}:{}", closed.dispute_id),
                LineKind::Refund,
                order_id,
                None,
                withdrawn_minor,
                closed.at,
                "dispute lost: the provider kept the disputed amount",
            );
            let base = self
                .settlements
                .key_for(order.payee_id.clone(), order.currency, closed.at);
            self.add(base, line).await?;
        }
        Ok(())
    }
}
