//! A subscription's life: start, charge now, a new payment method, cancel at period end, resume, end now.

use super::*;

impl Subscriptions {
    /// The subscription as the command side knows it; `None` when it does not exist.
    pub async fn load_subscription(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<SubscriptionSnapshot>, BillingError> {
        let (version, state) = self
            .executor
            .load(
                &self.subscriptions,
                &subscription::stream_id(subscription_id),
            )
            .await?;
        if version == 0 {
            return Ok(None);
        }
        let snapshot = self
            .snapshot(
                Executed {
                    state,
                    version,
                    events: vec![],
                    append: None,
                },
                false,
            )
            .await?;
        Ok(Some(snapshot))
    }

    /// Starts a subscription. With no anchor (or an anchor now) the first cycle is charged before
    /// the answer, so the answer says whether it was paid.
    pub async fn start(
        &self,
        input: StartSubscriptionInput,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let level = self
            .config
            .catalogue
            .level_of(&input.plan_id)
            .ok_or_else(|| BillingError::UnknownPlan(input.plan_id.to_string()))?;
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(&input.customer_id))
            .await?;
        customer.active_billing_key(&input.billing_key_id)?;
        let now = self.clock.now();
        if input.anchor.unwrap_or(now) <= now {
            // Its first charge is due at once: refuse the whole start rather than record a
            // subscription whose charge the kill switch would then hold back.
            self.check_payments_allowed().await?;
        }
        let subscription_id = input
            .subscription_id
            .unwrap_or_else(SubscriptionId::generate);
        if self.load_subscription(&subscription_id).await?.is_some() {
            return Err(BillingError::Subscription(SubscriptionError::AlreadyExists));
        }
        // Linked first: if the process dies before the subscription starts, the link points at
        // an empty stream, which every reader treats as no subscription.
        self.executor
            .execute(
                &self.customers,
                &customer::stream_id(&input.customer_id),
                CustomerCommand::LinkSubscription {
                    subscription_id: subscription_id.clone(),
                    at: now,
                },
                context,
            )
            .await?;
        let anchor = input.anchor.unwrap_or(now);
        let order_name = input
            .order_name
            .unwrap_or_else(|| format!("{} subscription", input.plan_id));
        let executed = self
            .execute(
                &subscription_id,
                SubscriptionCommand::Start(SubscriptionStarted {
                    subscription_id: subscription_id.clone(),
                    customer_id: input.customer_id,
                    plan_id: input.plan_id,
                    membership_level: level,
                    amount: input.amount,
                    interval: input.interval,
                    billing_key_id: input.billing_key_id,
                    anchor,
                    order_name,
                    at: now,
                    billed_by: None,
                }),
                context,
            )
            .await?;
        tracing::info!(%subscription_id, %anchor, "subscription started");
        if anchor <= now {
            return self
                .charge(&subscription_id, AttemptTrigger::Scheduled, context)
                .await;
        }
        self.snapshot(executed, false).await
    }

    /// Charges the current cycle now: `Admin` whenever the cycle has started (retry timing and
    /// review states do not hold an admin back), `Scheduled` only when a charge is due.
    pub async fn charge(
        &self,
        subscription_id: &SubscriptionId,
        trigger: AttemptTrigger,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        self.check_payments_allowed().await?;
        let now = self.clock.now();
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::StartChargeAttempt { trigger, at: now },
                context,
            )
            .await?;
        let attempt =
            executed.state.in_flight.clone().ok_or_else(|| {
                BillingError::Internal("attempt started but not in flight".into())
            })?;
        self.drive_attempt(subscription_id, &executed.state, &attempt, now, context)
            .await?;
        self.current_with_position(subscription_id).await
    }

    /// A new payment method; a subscription that waits for money is charged at once.
    pub async fn change_payment_method(
        &self,
        subscription_id: &SubscriptionId,
        billing_key_id: BillingKeyId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let snapshot = self.current(subscription_id).await?;
        let terms = snapshot
            .state
            .terms
            .as_ref()
            .ok_or(BillingError::Subscription(SubscriptionError::NotFound))?;
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(&terms.customer_id))
            .await?;
        customer.active_billing_key(&billing_key_id)?;
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::ChangePaymentMethod {
                    billing_key_id,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let charge_now = executed.events.iter().any(
            |e| matches!(e, SubscriptionEvent::PaymentMethodChanged(changed) if changed.charge_now),
        );
        if charge_now {
            match self
                .charge(
                    subscription_id,
                    AttemptTrigger::PaymentMethodChanged,
                    context,
                )
                .await
            {
                // A scheduler got there first, or the cycle is already paid: fine either way.
                Err(BillingError::Subscription(
                    SubscriptionError::AttemptInProgress | SubscriptionError::NothingDue,
                )) => {}
                other => return other,
            }
            return self.current_with_position(subscription_id).await;
        }
        let replay = executed.events.is_empty();
        self.snapshot(executed, replay).await
    }

    /// Cancels at the end of the paid period (at once when nothing paid is left).
    pub async fn cancel_at_period_end(
        &self,
        subscription_id: &SubscriptionId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        if let Some(snapshot) = self
            .cancel_at_provider(subscription_id, true, context)
            .await?
        {
            return Ok(snapshot);
        }
        let command = SubscriptionCommand::CancelAtPeriodEnd {
            at: self.clock.now(),
        };
        self.command_and_answer(subscription_id, command, context)
            .await
    }

    pub async fn resume(
        &self,
        subscription_id: &SubscriptionId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let command = SubscriptionCommand::Resume {
            at: self.clock.now(),
        };
        self.command_and_answer(subscription_id, command, context)
            .await
    }

    pub async fn end_now(
        &self,
        subscription_id: &SubscriptionId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        if let Some(snapshot) = self
            .cancel_at_provider(subscription_id, false, context)
            .await?
        {
            return Ok(snapshot);
        }
        let command = SubscriptionCommand::EndNow {
            at: self.clock.now(),
        };
        self.command_and_answer(subscription_id, command, context)
            .await
    }

    /// Runs a command that needs no provider call and answers the subscription after it (a
    /// repeated command appends nothing and is answered as a replay).
    async fn command_and_answer(
        &self,
        subscription_id: &SubscriptionId,
        command: SubscriptionCommand,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let executed = self.execute(subscription_id, command, context).await?;
        let replay = executed.events.is_empty();
        self.snapshot(executed, replay).await
    }
}
