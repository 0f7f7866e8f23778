//! The double-entry journal: how each money event posts to named accounts (domain spec §3.8).
//!
//! Posting rules are pure functions of one event (plus the order's or statement's payee and
//! currency, which some events do not repeat). Every entry is in one currency and balances —
//! debits equal credits — which [`JournalEntry::new`] asserts before an entry can exist.
//!
//! | event | debit | credit | amount |
//! | --- | --- | --- | --- |
//! | `PaymentCaptured` | provider_clearing | payee_payable | captured |
//! | `RefundRequested` | payee_payable | customer_refunds | refund |
//! | `RefundCompleted` | customer_refunds | provider_clearing | refund |
//! | `RefundFailed` | customer_refunds | payee_payable | refund (the request is undone) |
//! | `ClaimResolved` with a provider compensation | compensation_expense | payee_payable | compensation |
//! | `StatementConfirmed`, fee > 0 | payee_payable | platform_fee_revenue | fee |
//! | `StatementConfirmed`, fee < 0 (fee given back) | platform_fee_revenue | payee_payable | −fee |
//! | `StatementConfirmed`, net payable > 0 | payee_payable | payouts | net payable |
//! | `StatementPaidOut` | payouts | bank | amount paid |
//! | subscription `ChargeSucceeded` | provider_clearing | subscription_revenue | charged |
//! | subscription `ChargeSucceeded`, `providerFeeMinor` > 0 (a merchant of record: Paddle) | provider_fees | provider_clearing | the provider's fee |
//! | subscription `ProviderChargeReversed` (Paddle refund or chargeback) | subscription_revenue | provider_clearing | taken back |
//! | subscription `ProviderChargeReversed`, `providerFeeReturnedMinor` > 0 | provider_clearing | provider_fees | the fee the provider gives back |
//! | `ProviderRefundRecorded` (refunded at the provider, e.g. Stripe's dashboard) | payee_payable | provider_clearing | refund |
//! | `DisputeOpened` | — | — | nothing: no money has been decided yet (refunds refused, settlement held) |
//! | `DisputeLost` | payee_payable | provider_clearing | withdrawn (the payee bears the chargeback, as a refund) |
//! | `DisputeLost`, `DisputeWon`, fee > 0 | dispute_fees | provider_clearing | the provider's dispute fee (the platform bears it) |
//! | `SettlementLineMatched`, a payment | bank (payout) + provider_fees (fee) | provider_clearing | payout + fee |
//! | `SettlementLineMatched`, a refund | provider_clearing | bank (−payout) + provider_fees (−fee) | −(payout + fee) |
//! | `SettlementLineMatched`, a dispute withdrawal | provider_clearing | bank | −payout (amount + dispute fee: the fee was expensed by `DisputeLost`/`DisputeWon`) |
//! | `SettlementLineMatched`, a dispute reinstatement | bank | provider_clearing | payout |
//! | `ReconciliationResolved`, `write_off` | reconciliation_write_offs | provider_clearing | written off |
//! | `SubscriptionChargeSettled` (a provider-billed subscription payment's line) | bank (payout) + provider_fees (fee − the fee its `ChargeSucceeded` posted) | provider_clearing | payout + that fee difference |
//!
//! So `provider_clearing` is the money the provider holds for the platform (captured, not yet
//! settled: it closes when the provider's settlement line is imported), `bank` the platform's
//! cash (settlements in, payee payouts out), `provider_fees` what the providers kept, `payee_payable` what
//! payees are owed but not yet confirmed, `customer_refunds` refunds asked for and not yet
//! settled, `payouts` confirmed statements not yet paid, and the income-statement accounts
//! accumulate fees, subscription charges (paid to the platform itself, no payee) and
//! compensations. An unknown refund outcome posts nothing: the money has
//! not moved as far as anyone knows.

use crate::claim::ClaimEvent;
use crate::ids::PayeeId;
use crate::money::Currency;
use crate::order::OrderEvent;
use crate::reconciliation::ReconciliationEvent;
use crate::settlement::StatementEvent;
use crate::subscription::SubscriptionEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    ProviderClearing,
    PayeePayable,
    CustomerRefunds,
    PlatformFeeRevenue,
    CompensationExpense,
    Payouts,
    SubscriptionRevenue,
    /// Providers' dispute fees: an expense of the platform.
    DisputeFees,
    Bank,
    ProviderFees,
    ReconciliationWriteOffs,
}

impl Account {
    pub const ALL: [Account; 11] = [
        Account::ProviderClearing,
        Account::PayeePayable,
        Account::CustomerRefunds,
        Account::PlatformFeeRevenue,
        Account::CompensationExpense,
        Account::Payouts,
        Account::SubscriptionRevenue,
        Account::DisputeFees,
        Account::Bank,
        Account::ProviderFees,
        Account::ReconciliationWriteOffs,
    ];

    /// The account of a name, as stored.
    pub fn parse(name: &str) -> Option<Account> {
        Account::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Account::ProviderClearing => "provider_clearing",
            Account::PayeePayable => "payee_payable",
            Account::CustomerRefunds => "customer_refunds",
            Account::PlatformFeeRevenue => "platform_fee_revenue",
            Account::CompensationExpense => "compensation_expense",
            Account::Payouts => "payouts",
            Account::SubscriptionRevenue => "subscription_revenue",
            Account::DisputeFees => "dispute_fees",
            Account::Bank => "bank",
            Account::ProviderFees => "provider_fees",
            Account::ReconciliationWriteOffs => "reconciliation_write_offs",
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

/// One line of an entry: a positive amount on one side of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Posting {
    pub account: Account,
    pub side: Side,
    pub amount_minor: i64,
    /// Whose money, for drilling into `payee_payable` and `payouts`.
    pub payee_id: Option<PayeeId>,
}

/// A balanced set of postings in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    pub currency: Currency,
    pub memo: String,
    postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("entry '{memo}' does not balance: debits {debits_minor}, credits {credits_minor}")]
    Unbalanced {
        memo: String,
        debits_minor: i64,
        credits_minor: i64,
    },
    #[error("entry '{0}' has a posting that is not a positive amount")]
    NotPositive(String),
    #[error("entry '{0}' has no postings")]
    Empty(String),
}

impl JournalEntry {
    /// An entry, if its postings are positive and debits equal credits.
    pub fn new(
        currency: Currency,
        memo: impl Into<String>,
        postings: Vec<Posting>,
    ) -> Result<JournalEntry, JournalError> {
        let memo = memo.into();
        if postings.is_empty() {
            return Err(JournalError::Empty(memo));
        }
        if postings.iter().any(|p| p.amount_minor <= 0) {
            return Err(JournalError::NotPositive(memo));
        }
        let (debits_minor, credits_minor) = totals(&postings);
        if debits_minor != credits_minor {
            return Err(JournalError::Unbalanced {
                memo,
                debits_minor,
                credits_minor,
            });
        }
        Ok(JournalEntry {
            currency,
            memo,
            postings,
        })
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    pub fn is_balanced(&self) -> bool {
        let (debits, credits) = totals(&self.postings);
        debits == credits
    }
}

/// (debits, credits) of postings, in i128 so no sum of i64 amounts can overflow.
fn totals(postings: &[Posting]) -> (i64, i64) {
    let sum = |side: Side| -> i128 {
        postings
            .iter()
            .filter(|p| p.side == side)
            .map(|p| i128::from(p.amount_minor))
            .sum()
    };
    let clamp = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
    (clamp(sum(Side::Debit)), clamp(sum(Side::Credit)))
}

/// Moves `amount_minor` from `credit` to `debit`. Zero posts nothing; a negative amount posts the
/// other way round, so callers never build an unbalanced or negative entry.
fn transfer(
    currency: Currency,
    memo: &str,
    debit: Account,
    credit: Account,
    amount_minor: i64,
    payee_id: Option<&PayeeId>,
) -> Option<JournalEntry> {
    if amount_minor == 0 {
        return None;
    }
    let (debit, credit, amount_minor) = if amount_minor > 0 {
        (debit, credit, amount_minor)
    } else {
        (credit, debit, -amount_minor)
    };
    let posting = |account, side| Posting {
        account,
        side,
        amount_minor,
        payee_id: payee_id.cloned(),
    };
    let postings = vec![posting(debit, Side::Debit), posting(credit, Side::Credit)];
    // Two postings of one amount on opposite sides: balanced by construction.
    JournalEntry::new(currency, memo, postings).ok()
}

/// The order's payee and currency: `RefundFailed` does not repeat the payee, nor the currency
/// before its schema version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderFacts {
    pub payee_id: PayeeId,
    pub currency: Currency,
}

/// Entries of an order event. `facts` are the order's, from its `OrderPlaced`.
pub fn post_order_event(event: &OrderEvent, facts: Option<&OrderFacts>) -> Vec<JournalEntry> {
    let payee = facts.map(|f| &f.payee_id);
    let entry = match event {
        OrderEvent::PaymentCaptured(c) => transfer(
            c.currency,
            "payment captured",
            Account::ProviderClearing,
            Account::PayeePayable,
            c.amount_minor,
            Some(&c.payee_id),
        ),
        OrderEvent::RefundRequested(r) => transfer(
            r.currency,
            "refund requested",
            Account::PayeePayable,
            Account::CustomerRefunds,
            r.amount_minor,
            payee,
        ),
        OrderEvent::RefundCompleted(r) => transfer(
            r.currency,
            "refund completed",
            Account::CustomerRefunds,
            Account::ProviderClearing,
            r.amount_minor,
            Some(&r.payee_id),
        ),
        OrderEvent::RefundFailed(r) => facts.and_then(|f| {
            transfer(
                // Schema 2 carries the currency; schema 1 takes the order's.
                r.currency.unwrap_or(f.currency),
                "refund failed: request undone",
                Account::CustomerRefunds,
                Account::PayeePayable,
                r.amount_minor,
                Some(&f.payee_id),
            )
        }),
        OrderEvent::ProviderRefundRecorded(r) => transfer(
            r.currency,
            "refunded at the provider",
            Account::PayeePayable,
            Account::ProviderClearing,
            r.amount_minor,
            Some(&r.payee_id),
        ),
        OrderEvent::DisputeLost(d) => {
            return [
                transfer(
                    d.currency,
                    "dispute lost: the provider kept the disputed amount",
                    Account::PayeePayable,
                    Account::ProviderClearing,
                    d.withdrawn_minor,
                    Some(&d.payee_id),
                ),
                dispute_fee(d),
            ]
            .into_iter()
            .flatten()
            .collect()
        }
        OrderEvent::DisputeWon(d) => dispute_fee(d),
        _ => None,
    };
    entry.into_iter().collect()
}

/// The provider's dispute fee, won or lost: the platform's expense.
fn dispute_fee(closed: &crate::order::DisputeClosed) -> Option<JournalEntry> {
    transfer(
        closed.currency,
        "dispute fee",
        Account::DisputeFees,
        Account::ProviderClearing,
        closed.fee_minor,
        None,
    )
}

/// Entries of a claim event.
pub fn post_claim_event(event: &ClaimEvent) -> Vec<JournalEntry> {
    match event {
        ClaimEvent::ClaimResolved(r) => transfer(
            r.currency,
            "claim compensation to the provider",
            Account::CompensationExpense,
            Account::PayeePayable,
            r.provider_compensation_minor,
            Some(&r.payee_id),
        )
        .into_iter()
        .collect(),
        _ => vec![],
    }
}

/// Entries of a settlement statement event.
pub fn post_statement_event(event: &StatementEvent) -> Vec<JournalEntry> {
    match event {
        StatementEvent::StatementConfirmed(c) => [
            transfer(
                c.currency,
                "platform fee",
                Account::PayeePayable,
                Account::PlatformFeeRevenue,
                c.totals.platform_fee_minor,
                Some(&c.payee_id),
            ),
            transfer(
                c.currency,
                "statement confirmed: net payable due",
                Account::PayeePayable,
                Account::Payouts,
                c.totals.net_payable_minor,
                Some(&c.payee_id),
            ),
        ]
        .into_iter()
        .flatten()
        .collect(),
        StatementEvent::StatementPaidOut(p) => transfer(
            p.currency,
            "payout sent",
            Account::Payouts,
            Account::Bank,
            p.amount_minor,
            Some(&p.payee_id),
        )
        .into_iter()
        .collect(),
        _ => vec![],
    }
}

/// Entries of a subscription event: a successful charge is the platform's own revenue.
pub fn post_subscription_event(event: &SubscriptionEvent) -> Vec<JournalEntry> {
    match event {
        SubscriptionEvent::ChargeSucceeded(c) => [
            transfer(
                c.currency,
                "subscription charge",
                Account::ProviderClearing,
                Account::SubscriptionRevenue,
                c.amount_minor,
                None,
            ),
            // A merchant of record (Paddle) keeps its fee out of the charge: what it owes the
            // platform is the charge less the fee.
            transfer(
                c.currency,
                "merchant-of-record fee",
                Account::ProviderFees,
                Account::ProviderClearing,
                c.provider_fee_minor,
                None,
            ),
        ]
        .into_iter()
        .flatten()
        .collect(),
        // A merchant of record's refund or chargeback of a subscription payment: the platform's
        // revenue given back, out of what the provider holds for it.
        SubscriptionEvent::ProviderChargeReversed(r) => [
            transfer(
                r.currency,
                match r.kind {
                    crate::subscription::ChargeReversalKind::Refund => {
                        "subscription payment refunded at the provider"
                    }
                    crate::subscription::ChargeReversalKind::Chargeback => {
                        "subscription payment charged back"
                    }
                },
                Account::SubscriptionRevenue,
                Account::ProviderClearing,
                r.amount_minor,
                None,
            ),
            // The part of its fee the merchant of record gives back with the reversal: it
            // holds that much more for the platform again.
            transfer(
                r.currency,
                "merchant-of-record fee given back",
                Account::ProviderClearing,
                Account::ProviderFees,
                r.provider_fee_returned_minor,
                None,
            ),
        ]
        .into_iter()
        .flatten()
        .collect(),
        _ => vec![],
    }
}

/// Entries of a reconciliation event: a matched settlement line moves what the provider held
/// for the payment out of `provider_clearing`, the payout into `bank` and the fee into
/// `provider_fees`. Signed amounts post debit when positive, credit when negative; the three
/// always sum to zero, so the entry balances. A payout short of amount − fee leaves the
/// difference in `provider_clearing`: the provider still owes it.
pub fn post_reconciliation_event(event: &ReconciliationEvent) -> Vec<JournalEntry> {
    if let ReconciliationEvent::ReconciliationResolved(resolved) = event {
        // A write-off: what the provider will never pay leaves clearing as a loss.
        return transfer(
            resolved.currency,
            "provider shortfall written off",
            Account::ReconciliationWriteOffs,
            Account::ProviderClearing,
            resolved.written_off_minor,
            None,
        )
        .into_iter()
        .collect();
    }
    if let ReconciliationEvent::SubscriptionChargeSettled(settled) = event {
        return subscription_settlement(settled).into_iter().collect();
    }
    let ReconciliationEvent::SettlementLineMatched(matched) = event else {
        return vec![];
    };
    let line = &matched.line;
    let Some(settled) = line.payout_minor.checked_add(line.fee_minor) else {
        return vec![];
    };
    let payee = Some(matched.payee_id.clone());
    // A dispute's fee was expensed to dispute_fees (out of provider_clearing) by the order's
    // DisputeLost/DisputeWon: the line only moves its payout between clearing and the bank.
    let (fee, settled) = match line.kind {
        crate::reconciliation::SettlementLineKind::Dispute => (0, line.payout_minor),
        _ => (line.fee_minor, settled),
    };
    let postings: Vec<Posting> = [
        (Account::Bank, line.payout_minor),
        (Account::ProviderFees, fee),
        (Account::ProviderClearing, -settled),
    ]
    .into_iter()
    .filter(|(_, amount)| *amount != 0)
    .map(|(account, amount)| Posting {
        account,
        side: if amount > 0 {
            Side::Debit
        } else {
            Side::Credit
        },
        amount_minor: amount.abs(),
        payee_id: payee.clone(),
    })
    .collect();
    if postings.is_empty() {
        return vec![];
    }
    JournalEntry::new(line.currency, "provider settlement", postings)
        .into_iter()
        .collect()
}

/// A provider-billed subscription payment's settlement: its `ChargeSucceeded` left
/// amount − recorded fee in `provider_clearing` (the fee went to `provider_fees` then), so the
/// line moves its payout to `bank` and only a fee different from the recorded one to
/// `provider_fees`; what the provider paid short stays in clearing, as for an order.
fn subscription_settlement(
    settled: &crate::reconciliation::SubscriptionChargeSettled,
) -> Option<JournalEntry> {
    let line = &settled.line;
    let fee = line.fee_minor.checked_sub(settled.recorded_fee_minor)?;
    let cleared = line.payout_minor.checked_add(fee)?;
    let postings: Vec<Posting> = [
        (Account::Bank, line.payout_minor),
        (Account::ProviderFees, fee),
        (Account::ProviderClearing, -cleared),
    ]
    .into_iter()
    .filter(|(_, amount)| *amount != 0)
    .map(|(account, amount)| Posting {
        account,
        side: if amount > 0 {
            Side::Debit
        } else {
            Side::Credit
        },
        amount_minor: amount.abs(),
        payee_id: None,
    })
    .collect();
    if postings.is_empty() {
        return None;
    }
    JournalEntry::new(
        line.currency,
        "provider settlement of a subscription charge",
        postings,
    )
    .ok()
}

/// Debit and credit totals per account and currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrialBalance {
    pub rows: BTreeMap<(Account, Currency), (i64, i64)>,
}

impl TrialBalance {
    pub fn post(&mut self, entry: &JournalEntry) {
        for posting in entry.postings() {
            let row = self
                .rows
                .entry((posting.account, entry.currency))
                .or_default();
            match posting.side {
                Side::Debit => row.0 += posting.amount_minor,
                Side::Credit => row.1 += posting.amount_minor,
            }
        }
    }

    /// Per currency: (debits, credits). A balanced book has them equal in every currency.
    pub fn by_currency(&self) -> BTreeMap<Currency, (i64, i64)> {
        let mut sums: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
        for ((_, currency), (debits, credits)) in &self.rows {
            let sum = sums.entry(*currency).or_default();
            sum.0 += debits;
            sum.1 += credits;
        }
        sums
    }

    pub fn is_balanced(&self) -> bool {
        self.by_currency().values().all(|(d, c)| d == c)
    }
}
