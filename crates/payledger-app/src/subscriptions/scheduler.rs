//! The scheduler: what is due is charged, retried or ended, one subscription at a time.

use super::*;

impl Subscriptions {
    /// One scheduler pass as of `as_of`: charges what is due (each cycle and attempt once, even
    /// with several processes running passes), settles stale attempts, ends cancelled
    /// subscriptions and suspends those whose grace ran out, catching up on everything missed
    /// while no pass ran; then claws back credits of refunded purchases. Events record `as_of`
    /// as their time.
    pub async fn run_due(
        &self,
        index: &dyn BillingIndex,
        as_of: DateTime<Utc>,
    ) -> Result<RunDueReport, BillingError> {
        let context = RequestContext::system("scheduler");
        let mut report = RunDueReport {
            as_of: Some(as_of),
            ..RunDueReport::default()
        };
        let due = index
            .due_subscriptions(as_of, self.config.max_due_per_pass)
            .await
            .map_err(BillingError::Index)?;
        for subscription_id in due {
            report.examined += 1;
            if let Err(error) = self
                .advance(&subscription_id, as_of, &context, &mut report)
                .await
            {
                report.errors += 1;
                tracing::warn!(%subscription_id, %error, "scheduler failed to advance a subscription");
            }
        }
        let purchases = index
            .purchases_with_unapplied_refunds(self.config.max_refund_syncs_per_pass)
            .await
            .map_err(BillingError::Index)?;
        for (customer_id, purchase_id) in purchases {
            match self
                .sync_purchase_refund(&customer_id, &purchase_id, &context)
                .await
            {
                Ok(true) => report.refunds_clawed_back += 1,
                Ok(false) => {}
                Err(error) => {
                    report.errors += 1;
                    tracing::warn!(%customer_id, %purchase_id, %error, "failed to claw back credits");
                }
            }
        }
        Ok(report)
    }

    /// Does whatever is due for one subscription at `as_of`, repeatedly (missed cycles), within
    /// the per-subscription bound.
    pub(super) async fn advance(
        &self,
        subscription_id: &SubscriptionId,
        as_of: DateTime<Utc>,
        context: &RequestContext,
        report: &mut RunDueReport,
    ) -> Result<(), BillingError> {
        for _ in 0..self.config.max_actions_per_subscription {
            let (_, state) = self
                .executor
                .load(
                    &self.subscriptions,
                    &subscription::stream_id(subscription_id),
                )
                .await?;
            let Some(action) = state.due_action(as_of) else {
                return Ok(());
            };
            let result = match action {
                DueAction::Charge => {
                    if let Err(BillingError::PaymentsSuspended(_)) =
                        self.check_payments_allowed().await
                    {
                        // Not an attempt: nothing is recorded, no retry is counted, and the
                        // charge stays due for the first pass after the switch is off.
                        report.held_by_kill_switch += 1;
                        return Ok(());
                    }
                    match self
                        .execute(
                            subscription_id,
                            SubscriptionCommand::StartChargeAttempt {
                                trigger: AttemptTrigger::Scheduled,
                                at: as_of,
                            },
                            context,
                        )
                        .await
                    {
                        Ok(executed) => {
                            report.attempts += 1;
                            let attempt = executed.state.in_flight.clone().ok_or_else(|| {
                                BillingError::Internal("attempt started but not in flight".into())
                            })?;
                            self.drive_attempt(
                                subscription_id,
                                &executed.state,
                                &attempt,
                                as_of,
                                context,
                            )
                            .await
                            .map(Some)
                        }
                        Err(e) => Err(e),
                    }
                }
                DueAction::Resolve { .. } => {
                    report.resolved += 1;
                    match self.resolve(subscription_id, &state, as_of, context).await {
                        // Nothing more can be done until the provider answers lookups again.
                        Ok(Driven::Unknown) => {
                            report.outcome_unknown += 1;
                            return Ok(());
                        }
                        other => other.map(Some),
                    }
                }
                DueAction::EndAtPeriodEnd => self
                    .execute(
                        subscription_id,
                        SubscriptionCommand::EndAtPeriodEnd { at: as_of },
                        context,
                    )
                    .await
                    .map(|_| {
                        report.ended += 1;
                        None
                    }),
                DueAction::SuspendAfterGrace => self
                    .execute(
                        subscription_id,
                        SubscriptionCommand::SuspendAfterGrace { at: as_of },
                        context,
                    )
                    .await
                    .map(|_| {
                        report.suspended += 1;
                        None
                    }),
            };
            match result {
                Ok(Some(Driven::Succeeded)) => report.succeeded += 1,
                Ok(Some(Driven::Failed)) => report.failed += 1,
                Ok(Some(Driven::Unknown)) => {
                    report.outcome_unknown += 1;
                    return Ok(());
                }
                Ok(None) => {}
                // Another process did it first (the version check let only one through).
                Err(BillingError::Subscription(
                    SubscriptionError::AttemptInProgress | SubscriptionError::NothingDue,
                ))
                | Err(BillingError::Contention) => {
                    report.skipped += 1;
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}
