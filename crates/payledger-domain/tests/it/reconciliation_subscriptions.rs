//! Settlement lines of subscription charges: a Paddle-billed subscription's payment (its first
//! period or a renewal) and a payledger-billed one's (a Toss billing-key charge) are matched to
//! the subscription's `ChargeSucceeded` by payment key, judged like an order's line, and post so
//! that `provider_clearing` closes — the merchant of record's fee posted once, when charged.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cqrs_es::Aggregate;
use payledger_domain::billing::{BillingInterval, BillingKeyId, PlanId, SubscriptionId};
use payledger_domain::ids::{CustomerId, PaymentKey};
use payledger_domain::journal::{
    post_reconciliation_event, post_subscription_event, Account, TrialBalance,
};
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::OutcomeSource;
use payledger_domain::provider_billed::ProviderBilling;
use payledger_domain::reconciliation::*;
use payledger_domain::subscription::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn sub_id() -> SubscriptionId {
    SubscriptionId::parse("sub_01paddle").unwrap()
}

/// A subscription of 990 (USD for Paddle, which bills it; KRW for payledger's own billing)
/// whose first period was charged as `txn_1`, the provider keeping `fee` of it.
fn history(billed_by: Option<&str>, fee: i64) -> Vec<SubscriptionEvent> {
    let currency = if billed_by.is_some() {
        Currency::USD
    } else {
        Currency::KRW
    };
    vec![
        SubscriptionEvent::SubscriptionStarted(SubscriptionStarted {
            subscription_id: sub_id(),
            customer_id: CustomerId::parse("cust_1").unwrap(),
            plan_id: PlanId::parse("basic").unwrap(),
            membership_level: 1,
            amount: Money::new(990, currency).unwrap(),
            interval: BillingInterval::monthly(),
            billing_key_id: BillingKeyId::parse("sub_01paddle").unwrap(),
            anchor: t0(),
            order_name: "Basic monthly".into(),
            at: t0(),
            billed_by: billed_by.map(|provider| ProviderBilling {
                provider: provider.into(),
                provider_subscription_id: "sub_01paddle".into(),
                price_id: "pri_basic".into(),
            }),
        }),
        SubscriptionEvent::ChargeSucceeded(ChargeSucceeded {
            cycle: 1,
            attempt: 0,
            payment_key: PaymentKey::parse("txn_1").unwrap(),
            provider_order_id: "txn_1".into(),
            amount_minor: 990,
            currency,
            approved_at: t0(),
            period_start: t0(),
            period_end: t0() + chrono::Duration::days(30),
            source: OutcomeSource::Reconciler,
            at: t0(),
            provider_fee_minor: fee,
        }),
    ]
}

fn subscription(events: &[SubscriptionEvent]) -> Subscription {
    let mut state = Subscription::default();
    for event in events {
        state.apply(event.clone());
    }
    state
}

/// Paddle's line for `txn_1`: 990 at 5 % + 50 = 99, paid out 891 two days later.
fn paddle_line() -> SettlementLine {
    SettlementLine {
        provider: "paddle".into(),
        line_id: "txn_1".into(),
        kind: SettlementLineKind::Payment,
        payment_key: "txn_1".into(),
        order_id: None,
        amount_minor: 990,
        fee_minor: 99,
        vat_minor: 0,
        payout_minor: 891,
        currency: Currency::USD,
        sold_on: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
        paid_out_on: NaiveDate::from_ymd_opt(2026, 11, 4).unwrap(),
        payout_id: Some("pay_1".into()),
        method: None,
        subscription_id: Some("sub_01paddle".into()),
    }
}

fn judge(line: &SettlementLine, events: &[SubscriptionEvent]) -> Vec<ReconciliationEvent> {
    let state = subscription(events);
    judge_subscription_line(
        line,
        &sub_id(),
        (!events.is_empty()).then_some(&state),
        &FeeSchedule::PADDLE_DEFAULT,
        t0(),
    )
}

fn flags(events: &[ReconciliationEvent]) -> Vec<FlagKind> {
    events
        .iter()
        .filter_map(|e| match e {
            ReconciliationEvent::ReconciliationFlagged(f) => Some(f.kind),
            _ => None,
        })
        .collect()
}

fn books(subscription: &[SubscriptionEvent], judged: &[ReconciliationEvent]) -> TrialBalance {
    let mut books = TrialBalance::default();
    for entry in subscription
        .iter()
        .flat_map(post_subscription_event)
        .chain(judged.iter().flat_map(post_reconciliation_event))
    {
        books.post(&entry);
    }
    books
}

fn balance(books: &TrialBalance, account: Account, currency: Currency) -> i64 {
    books
        .rows
        .get(&(account, currency))
        .map_or(0, |(debits, credits)| debits - credits)
}

#[test]
fn a_paddle_subscription_payment_matches_its_charge_and_closes_clearing_with_the_fee_posted_once() {
    let history = history(Some("paddle"), 99);
    let judged = judge(&paddle_line(), &history);
    assert!(flags(&judged).is_empty(), "{judged:?}");
    assert!(matches!(
        &judged[0],
        ReconciliationEvent::SubscriptionChargeSettled(s)
            if s.recorded_fee_minor == 99 && s.subscription_id == sub_id()
    ));
    assert_eq!(judged[0].order_id(), None);
    let books = books(&history, &judged);
    assert!(books.is_balanced());
    assert_eq!(balance(&books, Account::ProviderClearing, Currency::USD), 0);
    assert_eq!(balance(&books, Account::ProviderFees, Currency::USD), 99);
    assert_eq!(balance(&books, Account::Bank, Currency::USD), 891);
}

#[test]
fn a_subscription_line_is_judged_like_an_orders_and_a_short_payout_stays_owed() {
    let history = history(Some("paddle"), 99);
    let mut line = paddle_line();
    line.fee_minor = 124;
    line.payout_minor = 846;
    let judged = judge(&line, &history);
    // 25 more fee than agreed, and 20 short of amount − fee.
    assert_eq!(
        flags(&judged),
        vec![FlagKind::FeeMismatch, FlagKind::ShortPayout]
    );
    let books = books(&history, &judged);
    assert!(books.is_balanced());
    assert_eq!(balance(&books, Account::ProviderFees, Currency::USD), 124);
    assert_eq!(
        balance(&books, Account::ProviderClearing, Currency::USD),
        20
    );

    let mut more = paddle_line();
    more.amount_minor = 1_990;
    more.fee_minor = FeeSchedule::PADDLE_DEFAULT.fee_for(1_990).0;
    more.payout_minor = 1_990 - more.fee_minor;
    assert_eq!(
        flags(&judge(&more, &history)),
        vec![FlagKind::AmountMismatch]
    );
}

#[test]
fn a_line_the_subscription_never_charged_or_another_provider_reports_is_unknown() {
    let history = history(Some("paddle"), 99);
    let mut unknown = paddle_line();
    unknown.payment_key = "txn_2".into();
    unknown.line_id = "txn_2".into();
    let judged = judge(&unknown, &history);
    assert!(matches!(
        judged[0],
        ReconciliationEvent::SettlementLineUnmatched(_)
    ));
    assert_eq!(flags(&judged), vec![FlagKind::UnknownPayment]);
    assert!(books(&[], &judged).rows.is_empty(), "posts nothing");

    let mut elsewhere = paddle_line();
    elsewhere.provider = "stripe".into();
    assert_eq!(
        flags(&judge(&elsewhere, &history)),
        vec![FlagKind::UnknownPayment]
    );
    assert_eq!(
        flags(&judge(&paddle_line(), &[])),
        vec![FlagKind::UnknownPayment],
        "no such subscription"
    );
    let mut currency = paddle_line();
    currency.currency = Currency::EUR;
    assert_eq!(
        flags(&judge(&currency, &history)),
        vec![FlagKind::CurrencyMismatch]
    );
}

#[test]
fn a_billing_key_charge_payledger_made_settles_with_its_whole_fee() {
    // Toss's line for a charge payledger's scheduler made: the fee comes only with the line.
    let history = history(None, 0);
    let schedule = FeeSchedule::TOSS_DEFAULT;
    let (fee, vat) = schedule.fee_for(990);
    let line = SettlementLine {
        provider: "toss".into(),
        order_id: Some("sub-sub_01paddle-c1".into()),
        currency: Currency::KRW,
        fee_minor: fee,
        vat_minor: vat,
        payout_minor: 990 - fee,
        subscription_id: None,
        ..paddle_line()
    };
    let state = subscription(&history);
    let judged = judge_subscription_line(&line, &sub_id(), Some(&state), &schedule, t0());
    assert!(flags(&judged).is_empty(), "{judged:?}");
    let books = books(&history, &judged);
    assert!(books.is_balanced());
    assert_eq!(balance(&books, Account::ProviderClearing, Currency::KRW), 0);
    assert_eq!(balance(&books, Account::ProviderFees, Currency::KRW), fee);
}

#[test]
fn a_subscription_line_imported_twice_is_recorded_once() {
    let history = history(Some("paddle"), 99);
    let line = paddle_line();
    let judged = judge(&line, &history);
    let mut record = ReconciliationRecord::default();
    for event in judged.clone() {
        record.apply(event);
    }
    assert!(record.matched);
    cqrs_es::test::TestFramework::<ReconciliationRecord>::with(())
        .given(judged.clone())
        .when(ReconciliationCommand::Import {
            line,
            judged,
            at: t0(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_subscription_line_recorded_unknown_before_the_importer_read_its_subscription_matches_on_reimport(
) {
    // Recorded by an importer that did not read `subscription_id`: no order, unknown.
    let mut old = paddle_line();
    old.subscription_id = None;
    let before = judge_line(&old, None, None, &FeeSchedule::PADDLE_DEFAULT, t0());
    assert_eq!(flags(&before), vec![FlagKind::UnknownPayment]);
    let history = history(Some("paddle"), 99);
    let line = paddle_line();
    let judged = judge(&line, &history);
    // The same line, now naming its subscription: matched and posted once, not `line_changed`.
    cqrs_es::test::TestFramework::<ReconciliationRecord>::with(())
        .given(before)
        .when(ReconciliationCommand::Import {
            line,
            judged: judged.clone(),
            at: t0(),
        })
        .then_expect_events(judged);
}
