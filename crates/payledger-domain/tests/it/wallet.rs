//! The credit wallet: purchases need a membership, spending never goes below zero, refunds claw
//! back credits without pushing the balance below zero.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use payledger_domain::billing::CreditOperationId;
use payledger_domain::ids::OrderId;
use payledger_domain::money::{Currency, Money};
use payledger_domain::wallet::*;
use proptest::prelude::*;

type WalletTest = TestFramework<Wallet>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 1, 8, 0, 0).unwrap()
}

fn op(id: &str) -> CreditOperationId {
    CreditOperationId::parse(id).unwrap()
}

fn order(id: &str) -> OrderId {
    OrderId::parse(id).unwrap()
}

fn purchase(id: &str, credits: i64, level: u8, order_id: &str) -> WalletCommand {
    WalletCommand::PurchaseCredits {
        purchase_id: op(id),
        credits,
        membership_level: level,
        order_id: order(order_id),
        paid: Money::new(10_000, Currency::KRW).unwrap(),
        at: t0(),
    }
}

fn purchased(id: &str, credits: i64, order_id: &str, balance_after: i64) -> WalletEvent {
    WalletEvent::CreditsPurchased(CreditsPurchased {
        purchase_id: op(id),
        credits,
        order_id: order(order_id),
        paid_minor: 10_000,
        currency: Currency::KRW,
        membership_level: 1,
        balance_after,
        at: t0(),
    })
}

fn spend(id: &str, credits: i64) -> WalletCommand {
    WalletCommand::SpendCredits {
        spend_id: op(id),
        credits,
        reason: "report export".into(),
        at: t0(),
    }
}

fn spent(id: &str, credits: i64, balance_after: i64) -> WalletEvent {
    WalletEvent::CreditsSpent(CreditsSpent {
        spend_id: op(id),
        credits,
        reason: "report export".into(),
        balance_after,
        at: t0(),
    })
}

fn refund(id: &str, refunded_minor_total: i64) -> WalletCommand {
    WalletCommand::ApplyRefund {
        purchase_id: op(id),
        refunded_minor_total,
        at: t0(),
    }
}

#[test]
fn members_buy_credits() {
    WalletTest::with(())
        .given_no_previous_events()
        .when(purchase("p1", 100, 1, "order-0001"))
        .then_expect_events(vec![purchased("p1", 100, "order-0001", 100)]);
}

#[test]
fn buying_credits_without_a_membership_is_refused() {
    WalletTest::with(())
        .given_no_previous_events()
        .when(purchase("p1", 100, 0, "order-0001"))
        .then_expect_error(WalletError::MembershipRequired);
}

#[test]
fn a_purchase_repeated_is_a_replay_and_its_id_cannot_be_reused_differently() {
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100)])
        .when(purchase("p1", 100, 1, "order-0001"))
        .then_expect_events(vec![]);
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100)])
        .when(purchase("p1", 200, 1, "order-0001"))
        .then_expect_error(WalletError::OperationIdConflict);
}

#[test]
fn one_order_pays_for_one_purchase() {
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100)])
        .when(purchase("p2", 100, 1, "order-0001"))
        .then_expect_error(WalletError::OrderAlreadyUsed);
}

#[test]
fn credit_amounts_are_positive_and_bounded() {
    for credits in [0, -5, MAX_CREDITS_PER_OPERATION + 1] {
        WalletTest::with(())
            .given_no_previous_events()
            .when(purchase("p1", credits, 1, "order-0001"))
            .then_expect_error(WalletError::InvalidCredits);
    }
}

#[test]
fn spending_never_takes_the_balance_below_zero() {
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100)])
        .when(spend("s1", 100))
        .then_expect_events(vec![spent("s1", 100, 0)]);
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100)])
        .when(spend("s1", 101))
        .then_expect_error(WalletError::InsufficientCredits {
            balance: 100,
            requested: 101,
        });
}

#[test]
fn a_spend_repeated_is_a_replay() {
    WalletTest::with(())
        .given(vec![
            purchased("p1", 100, "order-0001", 100),
            spent("s1", 30, 70),
        ])
        .when(spend("s1", 30))
        .then_expect_events(vec![]);
    WalletTest::with(())
        .given(vec![
            purchased("p1", 100, "order-0001", 100),
            spent("s1", 30, 70),
        ])
        .when(spend("s1", 31))
        .then_expect_error(WalletError::OperationIdConflict);
}

#[test]
fn a_full_refund_claws_back_every_credit_of_the_purchase() {
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100)])
        .when(refund("p1", 10_000))
        .then_expect_events(vec![WalletEvent::CreditsClawedBack(CreditsClawedBack {
            purchase_id: op("p1"),
            refunded_minor_total: 10_000,
            credits_due_total: 100,
            credits_clawed: 100,
            shortfall_credits: 0,
            balance_after: 0,
            at: t0(),
        })]);
}

#[test]
fn a_partial_refund_claws_back_in_proportion_rounding_the_customer_down() {
    // 33 credits for 10 000; 5 000 refunded: the customer keeps floor(33 × 5000 / 10000) = 16.
    WalletTest::with(())
        .given(vec![purchased("p1", 33, "order-0001", 33)])
        .when(refund("p1", 5_000))
        .then_expect_events(vec![WalletEvent::CreditsClawedBack(CreditsClawedBack {
            purchase_id: op("p1"),
            refunded_minor_total: 5_000,
            credits_due_total: 17,
            credits_clawed: 17,
            shortfall_credits: 0,
            balance_after: 16,
            at: t0(),
        })]);
}

#[test]
fn credits_already_spent_become_a_shortfall_not_a_negative_balance() {
    WalletTest::with(())
        .given(vec![
            purchased("p1", 100, "order-0001", 100),
            spent("s1", 80, 20),
        ])
        .when(refund("p1", 10_000))
        .then_expect_events(vec![WalletEvent::CreditsClawedBack(CreditsClawedBack {
            purchase_id: op("p1"),
            refunded_minor_total: 10_000,
            credits_due_total: 100,
            credits_clawed: 20,
            shortfall_credits: 80,
            balance_after: 0,
            at: t0(),
        })]);
}

#[test]
fn a_refund_total_applied_twice_claws_back_once_and_a_growing_total_claws_the_difference() {
    let first = WalletEvent::CreditsClawedBack(CreditsClawedBack {
        purchase_id: op("p1"),
        refunded_minor_total: 5_000,
        credits_due_total: 50,
        credits_clawed: 50,
        shortfall_credits: 0,
        balance_after: 50,
        at: t0(),
    });
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100), first.clone()])
        .when(refund("p1", 5_000))
        .then_expect_events(vec![]);
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100), first])
        .when(refund("p1", 10_000))
        .then_expect_events(vec![WalletEvent::CreditsClawedBack(CreditsClawedBack {
            purchase_id: op("p1"),
            refunded_minor_total: 10_000,
            credits_due_total: 100,
            credits_clawed: 50,
            shortfall_credits: 0,
            balance_after: 0,
            at: t0(),
        })]);
}

#[test]
fn refunds_of_unknown_purchases_or_beyond_the_paid_amount_are_refused() {
    WalletTest::with(())
        .given_no_previous_events()
        .when(refund("p1", 1))
        .then_expect_error(WalletError::PurchaseNotFound);
    WalletTest::with(())
        .given(vec![purchased("p1", 100, "order-0001", 100)])
        .when(refund("p1", 10_001))
        .then_expect_error(WalletError::InvalidRefundTotal);
}

#[derive(Debug, Clone)]
enum Op {
    Buy(i64, i64),
    Spend(i64),
    Refund(usize, i64),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..1_000, 1i64..100_000).prop_map(|(c, p)| Op::Buy(c, p)),
        (1i64..1_500).prop_map(Op::Spend),
        (0usize..20, 0i64..=100).prop_map(|(i, pct)| Op::Refund(i, pct)),
    ]
}

proptest! {
    /// Whatever members buy, spend and get refunded, in any order: the balance never goes below
    /// zero, equals purchases minus spending minus clawbacks, and no purchase loses more credits
    /// to clawbacks (clawed + shortfall) than it brought.
    #[test]
    fn the_balance_never_goes_below_zero(ops in prop::collection::vec(op_strategy(), 1..80)) {
        let mut wallet = Wallet::default();
        let mut bought: Vec<(String, i64, i64)> = Vec::new();
        for (i, step) in ops.into_iter().enumerate() {
            let command = match step {
                Op::Buy(credits, paid) => {
                    let id = format!("p{i}");
                    bought.push((id.clone(), credits, paid));
                    WalletCommand::PurchaseCredits {
                        purchase_id: op(&id),
                        credits,
                        membership_level: 2,
                        order_id: order(&format!("order-{i:06}")),
                        paid: Money::new(paid, Currency::KRW).unwrap(),
                        at: t0(),
                    }
                }
                Op::Spend(credits) => spend(&format!("s{i}"), credits),
                Op::Refund(which, pct) => {
                    let Some((id, _, paid)) = bought.get(which % bought.len().max(1)).cloned() else { continue };
                    refund(&id, paid * pct / 100)
                }
            };
            let mut next = wallet.clone();
            if run(&mut next, command).is_ok() {
                wallet = next;
            }
            prop_assert!(wallet.balance >= 0);
            prop_assert_eq!(wallet.balance, wallet.purchased_total - wallet.spent_total - wallet.clawed_back_total);
            for purchase in wallet.purchases.values() {
                prop_assert!(purchase.credits_due <= purchase.credits);
            }
        }
    }
}

/// Runs one command on `wallet` with the aggregate's own `handle`, which applies the events it
/// decides and asserts the wallet's invariants.
fn run(wallet: &mut Wallet, command: WalletCommand) -> Result<Vec<WalletEvent>, WalletError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let sink = cqrs_es::event_sink::EventSink::default();
        wallet.handle(command, &(), &sink).await?;
        Ok(sink.collect().await)
    })
}
