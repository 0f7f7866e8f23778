//! The credit wallet of one customer: purchases, spending and refund clawbacks. Stream
//! `wallet-{customer_id}`.
//!
//! Rules (source document 4, domain spec §3.3):
//! - buying credits needs membership level ≥ 1 ([`CREDIT_PURCHASE_MIN_LEVEL`]), else
//!   `MembershipRequired`; the level is decided by the application from the customer's
//!   subscriptions and handed to the command;
//! - a purchase is paid by one order, which backs at most one purchase;
//! - spending never takes the balance below zero;
//! - a refund of the paying order claws back the credits it paid for, in proportion, but never
//!   below a zero balance: credits already spent are recorded as a shortfall instead.

use crate::billing::{contains_card_number_like, CreditOperationId, CREDIT_PURCHASE_MIN_LEVEL};
use crate::ids::{CustomerId, OrderId};
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The most credits one purchase or spend may move.
pub const MAX_CREDITS_PER_OPERATION: i64 = 1_000_000_000;
/// Purchases one wallet may hold; a bound so the stream's state stays small.
pub const MAX_PURCHASES_PER_WALLET: usize = 10_000;
/// Spend ids remembered for answering a repeated spend as a replay. Older ids are forgotten: a
/// spend repeated after this many newer ones is a new spend.
pub const REMEMBERED_SPENDS: usize = 1_000;

pub fn stream_id(customer_id: &CustomerId) -> String {
    crate::streams::StreamKind::Wallet.name(customer_id)
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum WalletCommand {
    PurchaseCredits {
        purchase_id: CreditOperationId,
        credits: i64,
        /// The customer's membership level now (from their subscriptions).
        membership_level: u8,
        /// The paid order the credits were bought with, and what it captured.
        order_id: OrderId,
        paid: Money,
        at: DateTime<Utc>,
    },
    SpendCredits {
        spend_id: CreditOperationId,
        credits: i64,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The order that paid for `purchase_id` has `refunded_minor_total` refunded in all.
    ApplyRefund {
        purchase_id: CreditOperationId,
        refunded_minor_total: i64,
        at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletEvent {
    CreditsPurchased(CreditsPurchased),
    CreditsSpent(CreditsSpent),
    CreditsClawedBack(CreditsClawedBack),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditsPurchased {
    pub purchase_id: CreditOperationId,
    pub credits: i64,
    pub order_id: OrderId,
    pub paid_minor: i64,
    pub currency: Currency,
    pub membership_level: u8,
    pub balance_after: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditsSpent {
    pub spend_id: CreditOperationId,
    pub credits: i64,
    pub reason: String,
    pub balance_after: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditsClawedBack {
    pub purchase_id: CreditOperationId,
    /// The paying order's refunds in all, as of this clawback.
    pub refunded_minor_total: i64,
    /// Credits the refund takes back in all (this and earlier clawbacks of the purchase).
    pub credits_due_total: i64,
    /// Taken from the balance now.
    pub credits_clawed: i64,
    /// Due now but already spent: the balance cannot go below zero.
    pub shortfall_credits: i64,
    pub balance_after: i64,
    pub at: DateTime<Utc>,
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        match self {
            WalletEvent::CreditsPurchased(_) => "CreditsPurchased",
            WalletEvent::CreditsSpent(_) => "CreditsSpent",
            WalletEvent::CreditsClawedBack(_) => "CreditsClawedBack",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error(
        "buying credits needs an active membership (level {CREDIT_PURCHASE_MIN_LEVEL} or above)"
    )]
    MembershipRequired,
    #[error("credits must be between 1 and {MAX_CREDITS_PER_OPERATION}")]
    InvalidCredits,
    #[error("the balance of {balance} credits does not cover {requested}")]
    InsufficientCredits { balance: i64, requested: i64 },
    #[error("this id was used for another operation")]
    OperationIdConflict,
    #[error("this order already paid for another purchase")]
    OrderAlreadyUsed,
    #[error("the wallet has reached the maximum of {MAX_PURCHASES_PER_WALLET} purchases")]
    TooManyPurchases,
    #[error("no purchase with this id")]
    PurchaseNotFound,
    #[error("the refunded total must be between 0 and the purchase's paid amount")]
    InvalidRefundTotal,
    #[error("the reason must be 1 to 200 characters")]
    InvalidReason,
    #[error("the balance would overflow")]
    Overflow,
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseState {
    pub order_id: OrderId,
    pub credits: i64,
    pub paid_minor: i64,
    pub currency: Currency,
    pub refunded_minor_applied: i64,
    /// Credits the refunds take back in all: clawed plus shortfall.
    pub credits_due: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    pub balance: i64,
    pub purchased_total: i64,
    pub spent_total: i64,
    pub clawed_back_total: i64,
    /// Credits refunds should have taken back but that were already spent.
    pub shortfall_total: i64,
    pub purchases: BTreeMap<CreditOperationId, PurchaseState>,
    pub recent_spends: VecDeque<(CreditOperationId, i64, String)>,
}

fn check_credits(credits: i64) -> Result<i64, WalletError> {
    if credits <= 0 || credits > MAX_CREDITS_PER_OPERATION {
        return Err(WalletError::InvalidCredits);
    }
    Ok(credits)
}

impl Wallet {
    /// Credits a refund of `refunded` out of `paid` takes back from a purchase of `credits`:
    /// the customer keeps their share of what was not refunded, rounded down (domain spec §2),
    /// and the rest is due back. i128, because credits × amount can exceed i64.
    pub fn credits_due_for_refund(credits: i64, paid_minor: i64, refunded_minor: i64) -> i64 {
        assert!(paid_minor > 0 && (0..=paid_minor).contains(&refunded_minor));
        let kept =
            i128::from(credits) * i128::from(paid_minor - refunded_minor) / i128::from(paid_minor);
        let kept = i64::try_from(kept).expect("a share of credits fits in i64");
        credits - kept
    }

    fn assert_invariants(&self) {
        assert!(
            self.balance >= 0,
            "wallet balance below zero: {}",
            self.balance
        );
        assert_eq!(
            self.balance,
            self.purchased_total - self.spent_total - self.clawed_back_total,
            "the balance disagrees with its movements"
        );
        assert!(self.purchases.len() <= MAX_PURCHASES_PER_WALLET);
    }

    fn decide(&self, command: WalletCommand) -> Result<Vec<WalletEvent>, WalletError> {
        match command {
            WalletCommand::PurchaseCredits {
                purchase_id,
                credits,
                membership_level,
                order_id,
                paid,
                at,
            } => {
                let credits = check_credits(credits)?;
                if let Some(existing) = self.purchases.get(&purchase_id) {
                    if existing.credits == credits && existing.order_id == order_id {
                        return Ok(vec![]);
                    }
                    return Err(WalletError::OperationIdConflict);
                }
                if membership_level < CREDIT_PURCHASE_MIN_LEVEL {
                    return Err(WalletError::MembershipRequired);
                }
                if self.purchases.values().any(|p| p.order_id == order_id) {
                    return Err(WalletError::OrderAlreadyUsed);
                }
                if self.purchases.len() >= MAX_PURCHASES_PER_WALLET {
                    return Err(WalletError::TooManyPurchases);
                }
                let balance_after = self
                    .balance
                    .checked_add(credits)
                    .filter(|b| self.purchased_total.checked_add(credits).is_some() && *b > 0)
                    .ok_or(WalletError::Overflow)?;
                Ok(vec![WalletEvent::CreditsPurchased(CreditsPurchased {
                    purchase_id,
                    credits,
                    order_id,
                    paid_minor: paid.amount_minor(),
                    currency: paid.currency(),
                    membership_level,
                    balance_after,
                    at,
                })])
            }
            WalletCommand::SpendCredits {
                spend_id,
                credits,
                reason,
                at,
            } => {
                let credits = check_credits(credits)?;
                let len = reason.chars().count();
                if len == 0
                    || len > 200
                    || reason.chars().any(char::is_control)
                    || contains_card_number_like(&reason)
                {
                    return Err(WalletError::InvalidReason);
                }
                if let Some((_, spent, spent_reason)) =
                    self.recent_spends.iter().find(|(id, _, _)| *id == spend_id)
                {
                    if *spent == credits && *spent_reason == reason {
                        return Ok(vec![]);
                    }
                    return Err(WalletError::OperationIdConflict);
                }
                if credits > self.balance {
                    return Err(WalletError::InsufficientCredits {
                        balance: self.balance,
                        requested: credits,
                    });
                }
                Ok(vec![WalletEvent::CreditsSpent(CreditsSpent {
                    spend_id,
                    credits,
                    reason,
                    balance_after: self.balance - credits,
                    at,
                })])
            }
            WalletCommand::ApplyRefund {
                purchase_id,
                refunded_minor_total,
                at,
            } => {
                let purchase = self
                    .purchases
                    .get(&purchase_id)
                    .ok_or(WalletError::PurchaseNotFound)?;
                if !(0..=purchase.paid_minor).contains(&refunded_minor_total) {
                    return Err(WalletError::InvalidRefundTotal);
                }
                if refunded_minor_total <= purchase.refunded_minor_applied {
                    // Already applied (refund totals only grow).
                    return Ok(vec![]);
                }
                let due_total = Wallet::credits_due_for_refund(
                    purchase.credits,
                    purchase.paid_minor,
                    refunded_minor_total,
                );
                let due_now = due_total - purchase.credits_due;
                let clawed = due_now.min(self.balance);
                Ok(vec![WalletEvent::CreditsClawedBack(CreditsClawedBack {
                    purchase_id,
                    refunded_minor_total,
                    credits_due_total: due_total,
                    credits_clawed: clawed,
                    shortfall_credits: due_now - clawed,
                    balance_after: self.balance - clawed,
                    at,
                })])
            }
        }
    }
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "wallet";
    type Command = WalletCommand;
    type Event = WalletEvent;
    type Error = WalletError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WalletCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WalletError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        self.assert_invariants();
        Ok(())
    }

    fn apply(&mut self, event: WalletEvent) {
        match event {
            WalletEvent::CreditsPurchased(purchased) => {
                self.balance += purchased.credits;
                self.purchased_total += purchased.credits;
                self.purchases.insert(
                    purchased.purchase_id,
                    PurchaseState {
                        order_id: purchased.order_id,
                        credits: purchased.credits,
                        paid_minor: purchased.paid_minor,
                        currency: purchased.currency,
                        refunded_minor_applied: 0,
                        credits_due: 0,
                    },
                );
            }
            WalletEvent::CreditsSpent(spent) => {
                self.balance -= spent.credits;
                self.spent_total += spent.credits;
                if self.recent_spends.len() >= REMEMBERED_SPENDS {
                    self.recent_spends.pop_front();
                }
                self.recent_spends
                    .push_back((spent.spend_id, spent.credits, spent.reason));
            }
            WalletEvent::CreditsClawedBack(clawed) => {
                self.balance -= clawed.credits_clawed;
                self.clawed_back_total += clawed.credits_clawed;
                self.shortfall_total += clawed.shortfall_credits;
                if let Some(purchase) = self.purchases.get_mut(&clawed.purchase_id) {
                    purchase.refunded_minor_applied = clawed.refunded_minor_total;
                    purchase.credits_due = clawed.credits_due_total;
                }
            }
        }
    }
}
