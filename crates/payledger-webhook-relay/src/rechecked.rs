//! Applying a signed webhook whose connector interprets and re-checks it (Stripe): the
//! signature only says the sender is the provider; what changes money state is the object the
//! connector re-fetched from the provider's API (`PaymentGateway::recheck_webhook`), judged by
//! the order (`payledger_domain::provider_fact`) before anything is recorded.
//!
//! | re-fetched | the order | what is recorded |
//! | --- | --- | --- |
//! | the payment | waiting for an outcome (confirming, unknown, 3-D Secure) | the outcome, as a confirm's answer would be (`PaymentCaptured`, `PaymentFailed`, or a discrepancy) |
//! | the payment | settled | nothing; a difference from the ledger becomes `ProviderStateDiffers` |
//! | the payment's refunds | paid | payledger's own refunds in flight are settled first (as the reconciler would, same idempotency keys); each remaining refund that moved money is a `ProviderRefundRecorded`, within the capture |
//! | the dispute | paid | `DisputeOpened`, then `DisputeWon` / `DisputeLost` |
//!
//! What the order refuses (more refunded than captured, a dispute about another payment) is not
//! recorded on it: a `ProviderStateDiffers` puts it in the timeline for support, and the
//! discrepancy is counted. Redelivery is harmless: every step is idempotent on the order.

use chrono::{DateTime, Utc};
use payledger_app::payments::{PaymentError, Payments, Reconciled};
use payledger_domain::ids::OrderId;
use payledger_domain::order::{Order, OrderError, OrderStatus};
use payledger_domain::provider_fact::DisputeFact;
use payledger_domain::webhook::{
    ProviderStateDiffers, VerificationMethod, WebhookOutcome, WebhookVerified,
};
use payledger_gateway::{PaymentGateway, ProviderPayment, WebhookFactError, WebhookMeaning};

use crate::applied::{Applied, Failure};
use crate::short;
use crate::toss::{compare, order_status_name};

/// The delivery being applied, as the inbox stored it.
pub(crate) struct Delivery<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub scheme: &'a str,
    pub secret_index: Option<u8>,
    pub raw_body: &'a [u8],
}

pub(crate) async fn apply(
    payments: &Payments,
    connector: &dyn PaymentGateway,
    delivery: &Delivery<'_>,
    now: DateTime<Utc>,
) -> Result<Applied, Failure> {
    let fact = match connector.recheck_webhook(delivery.raw_body).await {
        Ok(fact) => fact,
        Err(WebhookFactError::Malformed(reason)) => {
            return Err(Failure::permanent(None, short(reason)))
        }
        Err(WebhookFactError::Unsupported) => {
            return Err(Failure::permanent(
                None,
                "the connector does not interpret signed webhooks",
            ))
        }
        Err(WebhookFactError::Gateway(error)) => {
            return Err(Failure::transient(
                None,
                format!("the provider could not be asked: {}", short(error)),
            ))
        }
    };
    let step = Step {
        payments,
        connector,
        delivery,
        now,
    };
    // For the timeline only: the order the signed body names (nothing is changed on it).
    let named_order = crate::Provider::parse(delivery.provider).and_then(|provider| {
        let body = serde_json::from_slice::<serde_json::Value>(delivery.raw_body).ok()?;
        provider.body_order_id(&body)
    });
    match fact.meaning {
        WebhookMeaning::NoLedgerEffect { reason } => Ok(step.applied(
            named_order.as_ref(),
            None,
            None,
            WebhookOutcome::NoLedgerEffect,
            format!("{}: no ledger effect ({reason})", fact.event_type),
        )),
        WebhookMeaning::UnknownAtProvider { object_id } => Ok(step.applied(
            named_order.as_ref(),
            None,
            None,
            WebhookOutcome::PaymentUnknownAtProvider,
            format!("the provider does not know {object_id}; nothing to apply"),
        )),
        WebhookMeaning::Payment(payment) => step.payment(&payment).await,
        WebhookMeaning::Refunds(payment) => step.refunds(&payment).await,
        WebhookMeaning::Dispute(dispute) => step.dispute(dispute).await,
    }
}

struct Step<'a> {
    payments: &'a Payments,
    connector: &'a dyn PaymentGateway,
    delivery: &'a Delivery<'a>,
    now: DateTime<Utc>,
}

impl Step<'_> {
    fn verified(
        &self,
        provider_status: Option<String>,
        order_id: Option<&OrderId>,
    ) -> WebhookVerified {
        WebhookVerified {
            provider: self.delivery.provider.to_string(),
            event_id: self.delivery.event_id.to_string(),
            method: VerificationMethod::Signature,
            scheme: self.delivery.scheme.to_string(),
            secret_index: self.delivery.secret_index,
            provider_status,
            order_id: order_id.map(ToString::to_string),
            at: self.now,
        }
    }

    fn applied(
        &self,
        order_id: Option<&OrderId>,
        provider_status: Option<String>,
        differs: Option<ProviderStateDiffers>,
        outcome: WebhookOutcome,
        detail: String,
    ) -> Applied {
        Applied {
            order_id: order_id.map(ToString::to_string),
            verified: Some(self.verified(provider_status, order_id)),
            differs,
            outcome,
            detail,
        }
    }

    /// The order a re-fetched payment belongs to, when payledger has it.
    async fn order_of(
        &self,
        payment: &ProviderPayment,
    ) -> Result<Result<(OrderId, Order), Applied>, Failure> {
        let status = Some(payment.provider_status.clone());
        let Ok(order_id) = OrderId::parse(payment.order_id.clone()) else {
            return Ok(Err(self.applied(
                None,
                status,
                None,
                WebhookOutcome::OrderUnknown,
                "the provider's payment names no order payledger issues".into(),
            )));
        };
        let snapshot = self
            .payments
            .load_order(&order_id)
            .await
            .map_err(|e| Failure::transient(Some(&order_id), short(e)))?;
        match snapshot {
            Some(snapshot) => Ok(Ok((order_id, snapshot.state))),
            None => Ok(Err(self.applied(
                Some(&order_id),
                status,
                None,
                WebhookOutcome::OrderUnknown,
                format!("payledger has no order {order_id}"),
            ))),
        }
    }

    /// The ledger and the provider's payment compared; a difference is recorded for support.
    fn consistent_or_differs(
        &self,
        order_id: &OrderId,
        order: &Order,
        payment: &ProviderPayment,
        what: &str,
    ) -> Applied {
        let differs = compare(
            &payment.provider,
            self.delivery.event_id,
            order_id,
            order,
            payment,
            self.now,
        );
        let status = Some(payment.provider_status.clone());
        match differs {
            Some(differs) => {
                payledger_metrics::metrics().provider_discrepancy(&payment.provider);
                tracing::warn!(
                    %order_id,
                    provider_status = differs.provider_status,
                    payledger_status = differs.payledger_status,
                    "the provider's payment differs from the ledger; support must review"
                );
                let detail = format!(
                    "{what}: the provider reports {} (returned {}) while payledger has {} (refunded {}); nothing was changed",
                    differs.provider_status,
                    differs.provider_canceled_minor,
                    differs.payledger_status,
                    differs.payledger_refunded_minor
                );
                self.applied(
                    Some(order_id),
                    status,
                    Some(differs),
                    WebhookOutcome::ProviderDiffers,
                    detail,
                )
            }
            None => self.applied(
                Some(order_id),
                status,
                None,
                WebhookOutcome::AlreadyConsistent,
                format!(
                    "{what}: the provider reports {}, payledger has {}",
                    payment.provider_status,
                    order_status_name(order.status)
                ),
            ),
        }
    }

    async fn payment(&self, payment: &ProviderPayment) -> Result<Applied, Failure> {
        let (order_id, order) = match self.order_of(payment).await? {
            Ok(found) => found,
            Err(applied) => return Ok(applied),
        };
        let waiting = matches!(
            order.status,
            OrderStatus::Confirming | OrderStatus::OutcomeUnknown
        );
        let this_attempt = order
            .payment_key
            .as_ref()
            .is_some_and(|key| payment.fact().has_key(key.as_str()))
            || order
                .client_payment_key
                .as_ref()
                .is_some_and(|key| payment.fact().has_key(key.as_str()));
        if !this_attempt && !payment.status.was_charged() {
            // Stripe makes one PaymentIntent per attempt: a late event about an earlier attempt
            // that never charged says nothing about this one.
            return Ok(self.applied(
                Some(&order_id),
                Some(payment.provider_status.clone()),
                None,
                WebhookOutcome::AlreadyConsistent,
                format!(
                    "the provider reports {} for {}, an attempt the order no longer waits on; nothing to apply",
                    payment.provider_status, payment.payment_key
                ),
            ));
        }
        if !waiting || !this_attempt {
            return Ok(self.consistent_or_differs(&order_id, &order, payment, "payment"));
        }
        let settled = match self
            .payments
            .settle_confirmation_with(&order_id, payment)
            .await
        {
            Ok(settled) => settled,
            // Settled meanwhile (the confirm's own answer, the reconciler): judge against that.
            Err(PaymentError::Order(OrderError::NoConfirmationPending)) => {
                return self.reloaded(&order_id, payment).await
            }
            Err(error) => return Err(Failure::transient(Some(&order_id), short(error))),
        };
        let status = settled.state.status;
        let outcome = if matches!(
            status,
            OrderStatus::Confirming | OrderStatus::OutcomeUnknown
        ) {
            WebhookOutcome::AlreadyConsistent
        } else {
            WebhookOutcome::Settled
        };
        Ok(self.applied(
            Some(&order_id),
            Some(payment.provider_status.clone()),
            None,
            outcome,
            format!(
                "the provider reports {}: the order is {}",
                payment.provider_status,
                order_status_name(status)
            ),
        ))
    }

    async fn reloaded(
        &self,
        order_id: &OrderId,
        payment: &ProviderPayment,
    ) -> Result<Applied, Failure> {
        let snapshot = self
            .payments
            .load_order(order_id)
            .await
            .map_err(|e| Failure::transient(Some(order_id), short(e)))?
            .ok_or_else(|| Failure::transient(Some(order_id), "the order disappeared"))?;
        Ok(self.consistent_or_differs(order_id, &snapshot.state, payment, "payment"))
    }

    async fn refunds(&self, payment: &ProviderPayment) -> Result<Applied, Failure> {
        let (order_id, mut order) = match self.order_of(payment).await? {
            Ok(found) => found,
            Err(applied) => return Ok(applied),
        };
        let captured_payment = order
            .payment_key
            .as_ref()
            .is_some_and(|key| key.as_str() == payment.payment_key);
        if !order.is_paid() || !captured_payment {
            // Refunds of a payment the order did not capture are not this order's to record.
            return Ok(self.consistent_or_differs(&order_id, &order, payment, "refunds"));
        }
        if order.refund_pending_minor > 0 {
            // payledger's own refunds in flight are settled first, with their own idempotency
            // keys: a refund payledger asked for must never be recorded as the provider's.
            let reconciled = self
                .payments
                .reconcile_order(&order_id, chrono::Duration::zero())
                .await
                .map_err(|e| Failure::transient(Some(&order_id), short(e)))?;
            if let Reconciled::StillUnknown(reason) = reconciled {
                return Err(Failure::transient(
                    Some(&order_id),
                    format!(
                        "payledger's own refund is still unsettled: {}",
                        short(reason)
                    ),
                ));
            }
            order = self
                .payments
                .load_order(&order_id)
                .await
                .map_err(|e| Failure::transient(Some(&order_id), short(e)))?
                .map(|snapshot| snapshot.state)
                .unwrap_or(order);
        }
        let mut recorded = Vec::new();
        for cancel in &payment.cancels {
            if order
                .refund_transaction_keys
                .contains(&cancel.transaction_key)
            {
                continue;
            }
            match self
                .payments
                .record_provider_refund(
                    &order_id,
                    &payment.provider,
                    &cancel.transaction_key,
                    cancel.cancel_amount_minor,
                    payment.currency,
                )
                .await
            {
                Ok(snapshot) => {
                    if !snapshot.replay {
                        recorded.push(format!(
                            "{} of {}",
                            cancel.transaction_key, cancel.cancel_amount_minor
                        ));
                    }
                    order = snapshot.state;
                }
                Err(PaymentError::Order(OrderError::ProviderDiscrepancy))
                | Err(PaymentError::ProviderDiscrepancy { .. }) => {
                    return Ok(self.consistent_or_differs(&order_id, &order, payment, "refunds"));
                }
                Err(error) => return Err(Failure::transient(Some(&order_id), short(error))),
            }
        }
        if recorded.is_empty() {
            return Ok(self.consistent_or_differs(&order_id, &order, payment, "refunds"));
        }
        Ok(self.applied(
            Some(&order_id),
            Some(payment.provider_status.clone()),
            None,
            WebhookOutcome::ProviderFactRecorded,
            format!(
                "refunded at the provider without payledger asking: {}",
                recorded.join(", ")
            ),
        ))
    }

    async fn dispute(&self, dispute: DisputeFact) -> Result<Applied, Failure> {
        // The dispute names the provider's payment; the payment (re-fetched) names the order.
        let payment = self
            .connector
            .payment_by_key(&dispute.payment_key)
            .await
            .map_err(|e| {
                Failure::transient(
                    None,
                    format!("the provider could not be asked: {}", short(e)),
                )
            })?;
        let Some(payment) = payment else {
            return Ok(self.applied(
                None,
                None,
                None,
                WebhookOutcome::PaymentUnknownAtProvider,
                format!(
                    "the provider does not know the disputed payment {}",
                    dispute.payment_key
                ),
            ));
        };
        let (order_id, order) = match self.order_of(&payment).await? {
            Ok(found) => found,
            Err(applied) => return Ok(applied),
        };
        let status = Some(format!("dispute {:?}", dispute.status).to_lowercase());
        let summary = format!(
            "dispute {} {:?}: {} {} (withdrawn {}, fee {})",
            dispute.dispute_id,
            dispute.status,
            dispute.amount_minor,
            dispute.currency,
            dispute.withdrawn_minor,
            dispute.fee_minor
        );
        match self
            .payments
            .record_dispute(&order_id, dispute.clone())
            .await
        {
            Ok(snapshot) if snapshot.replay => Ok(self.applied(
                Some(&order_id),
                status,
                None,
                WebhookOutcome::AlreadyConsistent,
                format!("{summary}: already recorded"),
            )),
            Ok(_) => Ok(self.applied(
                Some(&order_id),
                status,
                None,
                WebhookOutcome::ProviderFactRecorded,
                summary,
            )),
            Err(PaymentError::Order(OrderError::ProviderDiscrepancy))
            | Err(PaymentError::ProviderDiscrepancy { .. }) => {
                payledger_metrics::metrics().provider_discrepancy(&dispute.provider);
                tracing::warn!(%order_id, dispute_id = %dispute.dispute_id, "the provider's dispute does not match the order; support must review");
                let differs = ProviderStateDiffers {
                    provider: dispute.provider.clone(),
                    event_id: self.delivery.event_id.to_string(),
                    order_id: order_id.to_string(),
                    payment_key: dispute.payment_key.clone(),
                    provider_status: status.clone().unwrap_or_default(),
                    payledger_status: order_status_name(order.status),
                    provider_canceled_minor: dispute.withdrawn_minor,
                    payledger_refunded_minor: order.refunded_minor + order.refund_pending_minor,
                    currency: dispute.currency.code().to_string(),
                    at: self.now,
                };
                Ok(self.applied(
                    Some(&order_id),
                    status,
                    Some(differs),
                    WebhookOutcome::ProviderDiffers,
                    format!("{summary}: does not match the order's payment; nothing was changed"),
                ))
            }
            Err(error) => Err(Failure::transient(Some(&order_id), short(error))),
        }
    }
}
