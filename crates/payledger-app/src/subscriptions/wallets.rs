//! Membership levels and credit wallets: purchases need a membership, refunds claw credits back, never below zero.

use super::*;

impl Subscriptions {
    /// The highest membership level the customer's subscriptions give now (0: none).
    pub async fn membership_level(&self, customer_id: &CustomerId) -> Result<u8, BillingError> {
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(customer_id))
            .await?;
        let now = self.clock.now();
        let mut level = 0;
        for subscription_id in &customer.subscriptions {
            let (_, state) = self
                .executor
                .load(
                    &self.subscriptions,
                    &subscription::stream_id(subscription_id),
                )
                .await?;
            // Only the customer's own: a link can point at a subscription id another customer
            // started first (the start that linked it then failed).
            let owned = state
                .terms
                .as_ref()
                .is_some_and(|terms| &terms.customer_id == customer_id);
            if owned {
                level = level.max(state.membership_level(now));
            }
        }
        Ok(level)
    }

    pub(super) async fn execute_wallet(
        &self,
        customer_id: &CustomerId,
        command: WalletCommand,
        context: &RequestContext,
    ) -> Result<WalletSnapshot, BillingError> {
        let executed = self
            .executor
            .execute(
                &self.wallets,
                &wallet::stream_id(customer_id),
                command,
                context,
            )
            .await?;
        Ok(WalletSnapshot {
            customer_id: customer_id.clone(),
            replay: executed.events.is_empty(),
            position: executed.append.as_ref().map(|a| a.last_position),
            membership_level: self.membership_level(customer_id).await?,
            state: executed.state,
            version: executed.version,
        })
    }

    pub async fn wallet(&self, customer_id: &CustomerId) -> Result<WalletSnapshot, BillingError> {
        let (version, state) = self
            .executor
            .load(&self.wallets, &wallet::stream_id(customer_id))
            .await?;
        Ok(WalletSnapshot {
            customer_id: customer_id.clone(),
            state,
            version,
            position: None,
            membership_level: self.membership_level(customer_id).await?,
            replay: false,
        })
    }

    pub(super) async fn paid_order(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
    ) -> Result<Order, BillingError> {
        let (version, order) = self
            .executor
            .load(&self.orders, &order::stream_id(order_id))
            .await?;
        let placed = order
            .placed
            .as_ref()
            .filter(|_| version > 0)
            .ok_or(BillingError::OrderNotFound)?;
        if &placed.customer_id != customer_id {
            return Err(BillingError::CustomerMismatch("order"));
        }
        if order.captured_minor <= 0 {
            return Err(BillingError::OrderNotPaid);
        }
        Ok(order)
    }

    /// Credits bought with a paid order of the customer. Needs membership level ≥ 1.
    pub async fn purchase_credits(
        &self,
        customer_id: &CustomerId,
        purchase_id: Option<CreditOperationId>,
        credits: i64,
        order_id: &OrderId,
        context: &RequestContext,
    ) -> Result<WalletSnapshot, BillingError> {
        let order = self.paid_order(order_id, customer_id).await?;
        let currency = order
            .placed
            .as_ref()
            .map(|p| p.amount.currency())
            .ok_or(BillingError::OrderNotFound)?;
        let paid = Money::new(order.captured_minor, currency)
            .map_err(|e| BillingError::Internal(e.to_string()))?;
        let purchase_id = purchase_id.unwrap_or_else(CreditOperationId::generate);
        let membership_level = self.membership_level(customer_id).await?;
        let snapshot = self
            .execute_wallet(
                customer_id,
                WalletCommand::PurchaseCredits {
                    purchase_id: purchase_id.clone(),
                    credits,
                    membership_level,
                    order_id: order_id.clone(),
                    paid,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        if order.refunded_minor > 0 {
            // Refunded before the credits were bought: take back its share at once.
            self.sync_purchase_refund(customer_id, &purchase_id, context)
                .await?;
            let replay = snapshot.replay;
            return Ok(WalletSnapshot {
                replay,
                ..self.wallet(customer_id).await?
            });
        }
        Ok(snapshot)
    }

    pub async fn spend_credits(
        &self,
        customer_id: &CustomerId,
        spend_id: Option<CreditOperationId>,
        credits: i64,
        reason: String,
        context: &RequestContext,
    ) -> Result<WalletSnapshot, BillingError> {
        self.execute_wallet(
            customer_id,
            WalletCommand::SpendCredits {
                spend_id: spend_id.unwrap_or_else(CreditOperationId::generate),
                credits,
                reason,
                at: self.clock.now(),
            },
            context,
        )
        .await
    }

    /// Claws back the credits of a purchase whose paying order was refunded since; `true` when
    /// something was recorded.
    pub async fn sync_purchase_refund(
        &self,
        customer_id: &CustomerId,
        purchase_id: &CreditOperationId,
        context: &RequestContext,
    ) -> Result<bool, BillingError> {
        let (_, wallet_state) = self
            .executor
            .load(&self.wallets, &wallet::stream_id(customer_id))
            .await?;
        let purchase = wallet_state
            .purchases
            .get(purchase_id)
            .ok_or(BillingError::Wallet(WalletError::PurchaseNotFound))?;
        let order = self.paid_order(&purchase.order_id, customer_id).await?;
        let snapshot = self
            .execute_wallet(
                customer_id,
                WalletCommand::ApplyRefund {
                    purchase_id: purchase_id.clone(),
                    refunded_minor_total: order.refunded_minor.min(purchase.paid_minor),
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(!snapshot.replay)
    }
}

impl Subscriptions {
    /// Claws back, at once, the credits of every purchase the order paid for, after a refund of
    /// the order was recorded (a Paddle refund Paddle approved): the scheduler would do the same
    /// on its next pass (`purchases_with_unapplied_refunds`); doing it now keeps the wallet true
    /// as soon as the refund is. Returns how many purchases changed.
    pub async fn claw_back_refunds_of_order(
        &self,
        customer_id: &CustomerId,
        order_id: &OrderId,
        context: &RequestContext,
    ) -> Result<usize, BillingError> {
        let (_, wallet_state) = self
            .executor
            .load(&self.wallets, &wallet::stream_id(customer_id))
            .await?;
        let purchase_ids: Vec<CreditOperationId> = wallet_state
            .purchases
            .iter()
            .filter(|(_, purchase)| &purchase.order_id == order_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = 0;
        for purchase_id in purchase_ids {
            if self
                .sync_purchase_refund(customer_id, &purchase_id, context)
                .await?
            {
                changed += 1;
            }
        }
        Ok(changed)
    }
}
