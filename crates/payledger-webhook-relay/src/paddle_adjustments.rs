//! Applying a Paddle adjustment (`adjustment.created` / `adjustment.updated`): the body only
//! says which adjustment to look at. payledger asks Paddle's API for the adjustment and for its
//! transaction, judges them against the order the transaction paid, and records:
//!
//! | the adjustment (as Paddle's API says) | what is recorded |
//! | --- | --- |
//! | a refund payledger asked for (`POST /v1/orders/{id}/refunds`), approved | `RefundCompleted` of that refund (Paddle's amount and currency must be the refund's), then the credits clawed back |
//! | a refund payledger asked for, rejected | `RefundFailed` of that refund (`PADDLE_REFUND_REJECTED`): the held amount is released, nothing moves |
//! | a refund payledger asked for, approved or rejected, whose transaction, amount or currency is not the refund's | `RefundDiscrepancyRecorded` on the order (once: a redelivery records nothing new), outcome `provider_differs`; the refund keeps waiting, nothing moves |
//! | a refund, pending approval, or rejected and not payledger's | nothing (the delivery is kept on record) |
//! | a refund, approved | `ProviderRefundRecorded` on the order (within its capture, same currency), then the credits the order bought are clawed back (never below zero; the shortfall is recorded) |
//! | a chargeback, approved | `DisputeOpened` + `DisputeClosed` (lost: Paddle took the amount; the fee is the chargeback fee Paddle passes on, `payout_totals.chargeback_fee.amount`) on the order |
//! | a refund or chargeback, approved, of a subscription payment (no order) | `ProviderChargeReversed` on the subscription, judged against its paid period (the current period's payment taken back in full, or charged back: the membership is downgraded at once) |
//! | a chargeback warning, credit, reversal | nothing |
//!
//! A fact the ledger cannot record (another transaction than the order's payment, more than is
//! left of the capture, another currency, an order payledger does not know, a payment that is
//! not one of the subscription's paid periods) fails permanently: dead-lettered
//! with the reason, for review. Every step is idempotent on the order: a redelivery or an admin
//! replay records nothing new.

use crate::applied::{Applied, Failure};
use crate::paddle::PaddleApplier;
use payledger_app::context::RequestContext;
use payledger_app::payments::PaymentError;
use payledger_connector_paddle::ledger::AdjustmentReading;
use payledger_domain::billing::SubscriptionId;
use payledger_domain::ids::{OrderId, PaymentKey};
use payledger_domain::money::Money;
use payledger_domain::order::{
    Order, OrderError, ProviderRefundDecision, ProviderRefundFact, RefundStatus,
};
use payledger_domain::provider_billed::ProviderSubscriptionFact;
use payledger_domain::provider_fact::{DisputeFact, DisputeStatus};
use payledger_domain::subscription::ChargeReversalKind;
use payledger_domain::webhook::{VerificationMethod, WebhookOutcome, WebhookVerified};

impl PaddleApplier {
    pub(crate) async fn apply_adjustment(
        &self,
        verified: WebhookVerified,
        adjustment_id: &str,
        transaction_id: &str,
    ) -> Result<Applied, Failure> {
        let adjustment = self
            .paddle
            .adjustment_reading(adjustment_id)
            .await
            .map_err(crate::paddle::gateway_failure)?
            .ok_or_else(|| {
                Failure::permanent(None, format!("Paddle has no adjustment {adjustment_id}"))
            })?;
        if adjustment.transaction_id != transaction_id {
            return Err(Failure::permanent(
                None,
                format!(
                    "held for review: Paddle's adjustment {adjustment_id} names transaction {}, the notification {transaction_id}",
                    adjustment.transaction_id
                ),
            ));
        }
        let recorded = |detail: String| Applied {
            order_id: None,
            verified: Some(verified.clone()),
            differs: None,
            outcome: WebhookOutcome::NoLedgerEffect,
            detail,
        };
        let status_name = adjustment.status.clone();
        let nothing_changes = || {
            Ok(recorded(format!(
                "Paddle adjustment {adjustment_id} ({}) is {status_name}: nothing changes",
                adjustment.action
            )))
        };
        // A rejected refund may be one payledger asked for: its order is looked at below.
        let rejected_refund = adjustment.reversal == Some(ChargeReversalKind::Refund)
            && adjustment.status == "rejected";
        let Some(kind) = adjustment
            .reversal
            .filter(|_| adjustment.approved || rejected_refund)
        else {
            return nothing_changes();
        };
        let money = Money::new(adjustment.total_minor, adjustment.currency).map_err(|err| {
            Failure::permanent(None, format!("unreadable Paddle adjustment: {err}"))
        })?;
        let money = (money.amount_minor(), money.currency());
        let payment = self
            .paddle
            .transaction_payment(transaction_id)
            .await
            .map_err(crate::paddle::gateway_failure)?
            .ok_or_else(|| {
                Failure::permanent(None, format!("Paddle has no transaction {transaction_id}"))
            })?;
        let Ok(order_id) = OrderId::parse(payment.order_id.clone()) else {
            if !adjustment.approved {
                return nothing_changes();
            }
            return self
                .reverse_subscription_payment(verified, &adjustment, kind)
                .await;
        };
        let order = self
            .payments
            .load_order(&order_id)
            .await
            .map_err(|err| Failure::transient(Some(&order_id), err.to_string()))?
            .ok_or_else(|| {
                Failure::permanent(
                    Some(&order_id),
                    format!("held for review: payledger has no order {order_id}"),
                )
            })?
            .state;
        if order.payment_key.as_ref().map(|key| key.as_str()) != Some(transaction_id) {
            return Err(Failure::permanent(
                Some(&order_id),
                format!(
                    "held for review: order {order_id} was not paid by Paddle transaction {transaction_id}"
                ),
            ));
        }
        let differs = |err: PaymentError| {
            match err {
            PaymentError::Order(OrderError::ProviderDiscrepancy)
            | PaymentError::ProviderDiscrepancy { .. } => Failure::permanent(
                Some(&order_id),
                format!(
                    "held for review: Paddle adjustment {adjustment_id} of {} {} does not fit order {order_id} (its capture, refunds or currency)",
                    money.0, money.1
                ),
            ),
            other => Failure::transient(Some(&order_id), other.to_string()),
        }
        };
        if kind == ChargeReversalKind::Refund {
            if let Some(applied) = self
                .decide_payledger_refund(&verified, &adjustment, &order_id, &order)
                .await?
            {
                return Ok(applied);
            }
        }
        if !adjustment.approved {
            return nothing_changes();
        }
        let snapshot = if kind == ChargeReversalKind::Refund {
            self.payments
                .record_provider_refund(
                    &order_id,
                    payledger_connector_paddle::PROVIDER_NAME,
                    &adjustment.id,
                    money.0,
                    money.1,
                )
                .await
                .map_err(differs)?
        } else {
            self.payments
                .record_dispute(
                    &order_id,
                    DisputeFact {
                        provider: payledger_connector_paddle::PROVIDER_NAME.to_owned(),
                        dispute_id: adjustment.id.clone(),
                        payment_key: transaction_id.to_owned(),
                        // Paddle records a chargeback once it has taken the money back.
                        status: DisputeStatus::Lost,
                        amount_minor: money.0,
                        currency: money.1,
                        withdrawn_minor: money.0,
                        // The chargeback fee Paddle passes on (its payout_totals), which
                        // the platform bears; the settlement line of the payout it comes
                        // off states it again, so the two are compared.
                        fee_minor: adjustment.chargeback_fee_minor,
                        reason: Some(adjustment.reason.clone()),
                    },
                )
                .await
                .map_err(differs)?
        };
        let mut detail = format!(
            "Paddle {} {adjustment_id} of {} {} on order {order_id}{}",
            adjustment.action,
            money.0,
            money.1,
            if snapshot.replay {
                ": already recorded"
            } else {
                ""
            }
        );
        if kind == ChargeReversalKind::Refund {
            if let Some(placed) = &snapshot.state.placed {
                let clawed = self
                    .subscriptions
                    .claw_back_refunds_of_order(
                        &placed.customer_id,
                        &order_id,
                        &RequestContext::system("webhooks:paddle"),
                    )
                    .await
                    .map_err(|err| Failure::transient(Some(&order_id), err.to_string()))?;
                if clawed > 0 {
                    detail.push_str(&format!("; credits of {clawed} purchase(s) clawed back"));
                }
            }
        }
        Ok(Applied {
            order_id: Some(order_id.to_string()),
            verified: Some(WebhookVerified {
                order_id: Some(order_id.to_string()),
                provider_status: Some(status_name),
                method: VerificationMethod::Signature,
                ..verified
            }),
            differs: None,
            outcome: if snapshot.replay {
                WebhookOutcome::AlreadyConsistent
            } else {
                WebhookOutcome::ProviderFactRecorded
            },
            detail,
        })
    }
}

impl PaddleApplier {
    /// Paddle's decision on a refund payledger asked for (`POST /v1/orders/{id}/refunds` made
    /// the adjustment): approved, the refund completes as asked (Paddle's amount and currency
    /// checked against it) and the credits the order bought are clawed back; rejected, the
    /// refund fails and nothing moves. `None`: no refund of the order awaits this adjustment
    /// (one made in Paddle's dashboard), for the caller to record as such. While a refund of the
    /// order is still being sent to Paddle, an approval is retried later: it may be that one.
    async fn decide_payledger_refund(
        &self,
        verified: &WebhookVerified,
        adjustment: &AdjustmentReading,
        order_id: &OrderId,
        order: &Order,
    ) -> Result<Option<Applied>, Failure> {
        let awaited = order
            .refunds
            .values()
            .any(|r| r.provider_refund_id.as_deref() == Some(adjustment.id.as_str()));
        if !awaited {
            let in_flight = order.refunds.values().any(|r| {
                matches!(
                    r.status,
                    RefundStatus::Requested | RefundStatus::OutcomeUnknown
                )
            });
            if in_flight && adjustment.approved {
                return Err(Failure::transient(
                    Some(order_id),
                    format!(
                        "a refund of order {order_id} is still being sent to Paddle; adjustment {} is looked at again later",
                        adjustment.id
                    ),
                ));
            }
            return Ok(None);
        }
        // Paddle's amount, currency and transaction are checked for a rejection as for an
        // approval: a request that does not fit the refund awaited is recorded on the order as
        // a discrepancy (once), and the refund keeps waiting.
        let decision = if adjustment.approved {
            ProviderRefundDecision::Approved
        } else {
            ProviderRefundDecision::Rejected {
                failure: payledger_connector_paddle::refund_rejected(&adjustment.status),
            }
        };
        let fact = ProviderRefundFact {
            provider_refund_id: adjustment.id.clone(),
            payment_key: adjustment.transaction_id.clone(),
            is_refund: adjustment.reversal == Some(ChargeReversalKind::Refund),
            action: adjustment.action.clone(),
            amount_minor: adjustment.total_minor,
            currency: adjustment.currency,
            provider_status: adjustment.status.clone(),
            decision,
        };
        let snapshot = self
            .payments
            .record_provider_refund_decision(
                order_id,
                &adjustment.id,
                fact,
                payledger_domain::order::OutcomeSource::Webhook,
            )
            .await
            .map_err(|err| Failure::transient(Some(order_id), err.to_string()))?;
        let refund = snapshot
            .state
            .refunds
            .values()
            .find(|r| r.provider_refund_id.as_deref() == Some(adjustment.id.as_str()));
        if let Some(discrepancy) = refund
            .filter(|r| r.status == RefundStatus::AwaitingProvider)
            .and_then(|r| r.discrepancy.as_ref())
        {
            let differences = discrepancy
                .differences
                .iter()
                .map(|d| {
                    format!(
                        "{} {} (payledger {})",
                        d.fact.name(),
                        d.provider,
                        d.expected
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(Some(Applied {
                order_id: Some(order_id.to_string()),
                verified: Some(WebhookVerified {
                    order_id: Some(order_id.to_string()),
                    provider_status: Some(adjustment.status.clone()),
                    method: VerificationMethod::Signature,
                    ..verified.clone()
                }),
                differs: None,
                outcome: WebhookOutcome::ProviderDiffers,
                detail: format!(
                    "held for review: Paddle {} adjustment {} does not fit the refund payledger asked for on order {order_id}: {differences}{}; the refund keeps waiting",
                    adjustment.status,
                    adjustment.id,
                    if snapshot.replay { " (already recorded)" } else { "" }
                ),
            }));
        }
        let mut detail = format!(
            "Paddle {} refund {} of {} {} on order {order_id}{}",
            adjustment.status,
            adjustment.id,
            adjustment.total_minor,
            adjustment.currency,
            if snapshot.replay {
                ": already recorded"
            } else {
                ""
            }
        );
        if adjustment.approved {
            if let Some(placed) = &snapshot.state.placed {
                let clawed = self
                    .subscriptions
                    .claw_back_refunds_of_order(
                        &placed.customer_id,
                        order_id,
                        &RequestContext::system("webhooks:paddle"),
                    )
                    .await
                    .map_err(|err| Failure::transient(Some(order_id), err.to_string()))?;
                if clawed > 0 {
                    detail.push_str(&format!("; credits of {clawed} purchase(s) clawed back"));
                }
            }
        }
        Ok(Some(Applied {
            order_id: Some(order_id.to_string()),
            verified: Some(WebhookVerified {
                order_id: Some(order_id.to_string()),
                provider_status: Some(adjustment.status.clone()),
                method: VerificationMethod::Signature,
                ..verified.clone()
            }),
            differs: None,
            outcome: if snapshot.replay {
                WebhookOutcome::AlreadyConsistent
            } else {
                WebhookOutcome::ProviderFactRecorded
            },
            detail,
        }))
    }

    /// An approved refund or chargeback of a transaction that pays no order: a subscription's
    /// period, recorded on the subscription (which judges it against that paid period).
    async fn reverse_subscription_payment(
        &self,
        verified: WebhookVerified,
        adjustment: &AdjustmentReading,
        kind: ChargeReversalKind,
    ) -> Result<Applied, Failure> {
        let (amount_minor, currency) = (adjustment.total_minor, adjustment.currency);
        let held = |why: String| Failure::permanent(None, format!("held for review: {why}"));
        let subscription_id = adjustment
            .subscription_id
            .as_deref()
            .and_then(|id| SubscriptionId::parse(id).ok())
            .ok_or_else(|| {
                held(format!(
                    "Paddle transaction {} pays no payledger order and no subscription",
                    adjustment.transaction_id
                ))
            })?;
        let payment_key = PaymentKey::parse(&adjustment.transaction_id)
            .map_err(|err| held(format!("Paddle transaction id: {err}")))?;
        let amount = Money::new(amount_minor, currency)
            .map_err(|err| held(format!("Paddle adjustment amount: {err}")))?;
        let snapshot = self
            .subscriptions
            .record_provider_fact(
                &subscription_id,
                ProviderSubscriptionFact::ChargeReversed {
                    payment_key,
                    reversal_id: adjustment.id.clone(),
                    kind,
                    amount,
                    provider_fee_returned_minor: adjustment.fee_returned_minor,
                    at: adjustment.created_at,
                },
                &RequestContext::system("webhooks:paddle"),
            )
            .await
            .map_err(crate::paddle::billing_failure)?;
        Ok(Applied {
            order_id: None,
            verified: Some(verified),
            differs: None,
            outcome: if snapshot.replay {
                WebhookOutcome::AlreadyConsistent
            } else {
                WebhookOutcome::ProviderFactRecorded
            },
            detail: format!(
                "Paddle {} {} of {amount_minor} {currency} on subscription {subscription_id} ({}){}",
                adjustment.action,
                adjustment.id,
                adjustment.transaction_id,
                if snapshot.replay { ": already recorded" } else { "" }
            ),
        })
    }
}
