//! Subscriptions a provider bills (Paddle), in the same state model as the ones payledger bills.
//!
//! With Toss, payledger holds the billing key and its scheduler charges each cycle. With Paddle,
//! Paddle bills each cycle and tells payledger what happened. Both are the one [`Subscription`]
//! aggregate: the same statuses, cycles, paid-through time, cancel at period end and membership
//! rule. A provider-billed subscription (its `SubscriptionStarted.billed_by` set) is never
//! charged by payledger's scheduler; its cycles move on the provider's confirmed facts
//! ([`ProviderSubscriptionFact`]), recorded with the same events as payledger's own billing:
//!
//! | provider fact (confirmed against its API) | event | status |
//! | --- | --- | --- |
//! | a period billed and paid (checkout, renewal, recovered renewal) | `ChargeSucceeded` (attempt 0) | `active` |
//! | a renewal failed, the provider retries | `ChargeFailed` with `ProviderDunning` | `past_due` |
//! | a cancel scheduled / withdrawn | `CancellationScheduled` / `CancellationWithdrawn` | unchanged |
//! | canceled (at the provider, or its dunning gave up) | `SubscriptionEnded` (`canceled_by_provider`) | `ended` |
//!
//! Each fact is judged against what the ledger expects before it is recorded: a paid period must
//! be the subscription's current cycle (start and end as the ledger counts them from the first
//! period) at the subscription's amount and currency. A difference is refused with
//! [`SubscriptionError::ProviderFactDiffers`] and recorded by the caller as a discrepancy, never
//! smoothed over. A fact already recorded (a replayed delivery) records nothing.
//!
//! [`ProviderPriceMap`] is the configured mapping of the provider's price and product ids to
//! plans (a membership level) and credit packs.

use crate::billing::PlanId;
use crate::order::OutcomeSource;
use crate::provider_failure::{FailureClass, ProviderFailure};
use crate::subscription::{
    CancellationScheduled, CancellationWithdrawn, ChargeFailed, ChargeSucceeded, EndReason,
    FailureHandling, ProviderChargeReversed, Subscription, SubscriptionEnded, SubscriptionError,
    SubscriptionEvent, SubscriptionStatus,
};

pub use crate::billing::{ProviderBilling, ProviderSubscriptionFact};

impl Subscription {
    /// Whether a provider bills this subscription.
    pub fn is_provider_billed(&self) -> bool {
        self.terms.as_ref().is_some_and(|t| t.billed_by.is_some())
    }

    pub(crate) fn record_provider_fact(
        &self,
        fact: ProviderSubscriptionFact,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        let terms = self.terms.as_ref().ok_or(SubscriptionError::NotFound)?;
        if terms.billed_by.is_none() {
            return Err(SubscriptionError::NotProviderBilled);
        }
        let ended = self.status == SubscriptionStatus::Ended;
        match fact {
            ProviderSubscriptionFact::Paid {
                payment_key,
                amount,
                provider_fee_minor,
                period_start,
                period_end,
                approved_at,
                at,
            } => {
                // A period already recorded (a replayed delivery, or `transaction.completed`
                // after the start recorded it) records nothing.
                if self.paid_through.is_some_and(|paid| period_end <= paid) {
                    return Ok(vec![]);
                }
                if ended {
                    return Err(SubscriptionError::Ended);
                }
                let cycle = self.cycle;
                let expected = (self.cycle_start(cycle), self.cycle_start(cycle + 1));
                if expected != (Some(period_start), Some(period_end)) {
                    return Err(SubscriptionError::ProviderFactDiffers(format!(
                        "period {period_start}..{period_end} is not cycle {cycle} of the subscription"
                    )));
                }
                if amount != terms.amount {
                    return Err(SubscriptionError::ProviderFactDiffers(format!(
                        "amount {} {} is not the subscription's {} {}",
                        amount.amount_minor(),
                        amount.currency(),
                        terms.amount.amount_minor(),
                        terms.amount.currency()
                    )));
                }
                if !(0..=amount.amount_minor()).contains(&provider_fee_minor) {
                    return Err(SubscriptionError::ProviderFactDiffers(format!(
                        "the provider's fee {provider_fee_minor} is not within the payment's {}",
                        amount.amount_minor()
                    )));
                }
                Ok(vec![SubscriptionEvent::ChargeSucceeded(ChargeSucceeded {
                    provider_fee_minor,
                    cycle,
                    attempt: 0,
                    provider_order_id: payment_key.to_string(),
                    payment_key,
                    amount_minor: amount.amount_minor(),
                    currency: amount.currency(),
                    approved_at,
                    period_start,
                    period_end,
                    source: OutcomeSource::Reconciler,
                    at,
                })])
            }
            ProviderSubscriptionFact::ChargeReversed {
                payment_key,
                reversal_id,
                kind,
                amount,
                provider_fee_returned_minor,
                at,
            } => {
                if self.provider_reversals.contains(&reversal_id) {
                    return Ok(vec![]);
                }
                let Some((charged, reversed)) = self.provider_payments.get(payment_key.as_str())
                else {
                    return Err(SubscriptionError::ProviderFactDiffers(format!(
                        "{payment_key} is not a paid period of the subscription"
                    )));
                };
                if amount.currency() != terms.amount.currency()
                    || amount.amount_minor() <= 0
                    || amount.amount_minor() > charged - reversed
                    || reversal_id.is_empty()
                    || reversal_id.len() > 255
                {
                    return Err(SubscriptionError::ProviderFactDiffers(format!(
                        "{} {} taken back is not within what is left of {payment_key} ({} {})",
                        amount.amount_minor(),
                        amount.currency(),
                        charged - reversed,
                        terms.amount.currency()
                    )));
                }
                if !(0..=amount.amount_minor()).contains(&provider_fee_returned_minor) {
                    return Err(SubscriptionError::ProviderFactDiffers(format!(
                        "the provider's fee given back {provider_fee_returned_minor} is not within the {} taken back",
                        amount.amount_minor()
                    )));
                }
                Ok(vec![SubscriptionEvent::ProviderChargeReversed(
                    ProviderChargeReversed {
                        payment_key,
                        reversal_id,
                        kind,
                        amount_minor: amount.amount_minor(),
                        currency: amount.currency(),
                        provider_fee_returned_minor,
                        at,
                    },
                )])
            }
            ProviderSubscriptionFact::PastDue { provider_code, at } => {
                if ended || self.status == SubscriptionStatus::PastDue {
                    return Ok(vec![]);
                }
                Ok(vec![SubscriptionEvent::ChargeFailed(ChargeFailed {
                    cycle: self.cycle,
                    attempt: 0,
                    failure: ProviderFailure {
                        class: FailureClass::SoftDecline,
                        provider_code,
                        provider_message: "the provider's renewal failed; it retries".to_owned(),
                    },
                    handling: FailureHandling::ProviderDunning,
                    source: OutcomeSource::Reconciler,
                    at,
                })])
            }
            ProviderSubscriptionFact::CancelScheduled { effective_at, at } => {
                if ended || self.cancel_effective_at == effective_at {
                    return Ok(vec![]);
                }
                Ok(vec![match effective_at {
                    Some(effective_at) => {
                        SubscriptionEvent::CancellationScheduled(CancellationScheduled {
                            effective_at,
                            at,
                        })
                    }
                    None => SubscriptionEvent::CancellationWithdrawn(CancellationWithdrawn { at }),
                }])
            }
            ProviderSubscriptionFact::Canceled { at } => {
                if ended {
                    return Ok(vec![]);
                }
                Ok(vec![SubscriptionEvent::SubscriptionEnded(
                    SubscriptionEnded {
                        reason: EndReason::CanceledByProvider,
                        at,
                    },
                )])
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Price and product mapping
// ---------------------------------------------------------------------------------------------

/// What a provider's price or product sells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceUse {
    /// A membership plan (its level comes from the plan catalogue).
    Plan(PlanId),
    /// A pack of this many credits.
    Credits(u64),
}

/// The most entries a price map holds.
pub const MAX_PRICE_MAP_ENTRIES: usize = 200;
/// The most credits one pack may hold.
pub const MAX_CREDITS_PER_PACK: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceMapError {
    #[error("price map entries are `pri_…=plan:PLAN` or `pro_…=credits:N`, got '{0}'")]
    Malformed(String),
    #[error("'{0}' is listed twice")]
    Duplicate(String),
    #[error("the price map has more than {MAX_PRICE_MAP_ENTRIES} entries")]
    TooMany,
}

/// Which provider price or product ids sell which plan or credit pack
/// (`PAYLEDGER_PADDLE_PRICE_MAP`). A price id entry wins over its product's entry; an id in
/// neither is unknown, and a delivery naming it is held for review, never dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderPriceMap {
    entries: Vec<(String, PriceUse)>,
}

impl ProviderPriceMap {
    /// Reads `pri_a=plan:basic,pro_b=plan:premium,pri_c=credits:100`.
    pub fn parse(text: &str) -> Result<ProviderPriceMap, PriceMapError> {
        let mut entries: Vec<(String, PriceUse)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let malformed = || PriceMapError::Malformed(entry.chars().take(80).collect());
            let (id, usage) = entry.split_once('=').ok_or_else(malformed)?;
            let id = id.trim();
            let plain = !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !plain {
                return Err(malformed());
            }
            let usage = match usage.trim().split_once(':') {
                Some(("plan", plan)) => {
                    PriceUse::Plan(PlanId::parse(plan.trim()).map_err(|_| malformed())?)
                }
                Some(("credits", credits)) => match credits.trim().parse::<u64>() {
                    Ok(n) if (1..=MAX_CREDITS_PER_PACK).contains(&n) => PriceUse::Credits(n),
                    _ => return Err(malformed()),
                },
                _ => return Err(malformed()),
            };
            if entries.iter().any(|(known, _)| known == id) {
                return Err(PriceMapError::Duplicate(id.to_owned()));
            }
            entries.push((id.to_owned(), usage));
            if entries.len() > MAX_PRICE_MAP_ENTRIES {
                return Err(PriceMapError::TooMany);
            }
        }
        Ok(ProviderPriceMap { entries })
    }

    /// What a price (or, failing that, its product) sells; `None`: unknown.
    pub fn lookup(&self, price_id: &str, product_id: &str) -> Option<&PriceUse> {
        let find = |id: &str| {
            self.entries
                .iter()
                .find(|(known, _)| known == id)
                .map(|(_, usage)| usage)
        };
        find(price_id).or_else(|| find(product_id))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in the configured form, for `payledger config show`.
    pub fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|(id, usage)| match usage {
                PriceUse::Plan(plan) => format!("{id}=plan:{plan}"),
                PriceUse::Credits(n) => format!("{id}=credits:{n}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_wins_over_its_product_and_unknown_ids_are_none() {
        let map = ProviderPriceMap::parse(
            "pri_pro=plan:premium, pro_membership=plan:basic,pri_credits=credits:100",
        )
        .unwrap();
        assert_eq!(
            map.lookup("pri_pro", "pro_membership"),
            Some(&PriceUse::Plan(PlanId::parse("premium").unwrap()))
        );
        assert_eq!(
            map.lookup("pri_new", "pro_membership"),
            Some(&PriceUse::Plan(PlanId::parse("basic").unwrap()))
        );
        assert_eq!(
            map.lookup("pri_credits", "pro_x"),
            Some(&PriceUse::Credits(100))
        );
        assert_eq!(map.lookup("pri_unknown", "pro_unknown"), None);
        assert_eq!(
            ProviderPriceMap::parse(&map.describe()).unwrap(),
            map,
            "describe() reads back"
        );
    }

    #[test]
    fn malformed_and_duplicate_entries_are_refused() {
        for bad in [
            "pri_a",
            "pri_a=gold:1",
            "pri_a=credits:0",
            "pri a=plan:basic",
            "pri_a=plan:",
        ] {
            assert!(ProviderPriceMap::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ProviderPriceMap::parse("pri_a=plan:basic,pri_a=credits:1"),
            Err(PriceMapError::Duplicate("pri_a".into()))
        );
    }
}
