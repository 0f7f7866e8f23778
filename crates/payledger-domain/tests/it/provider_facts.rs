//! Property: whatever a provider reports (random status, amount, currency, ids, in any order
//! and as often as it likes), the order never records a capture the report does not support,
//! and never two captures.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey};
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::*;
use payledger_domain::provider_fact::{PaymentFact, PaymentFactStatus};
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use proptest::prelude::*;

const ORDER_ID: &str = "order-prop-1";
const PLACED_MINOR: i64 = 30_000;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced(PlaceOrder {
        order_id: OrderId::parse(ORDER_ID).unwrap(),
        amount: Money::new(PLACED_MINOR, Currency::KRW).unwrap(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        payee_id: PayeeId::parse("payee_1").unwrap(),
        order_name: "Yoga class".into(),
        provider: "toss".into(),
        service_starts_at: None,
        placed_at: t0(),
    })
}

/// Runs one command on `order` as the executor does; applies and returns what it decided.
fn run(order: &mut Order, command: OrderCommand) -> Vec<OrderEvent> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut next = order.clone();
    let sink = EventSink::default();
    let events = runtime.block_on(async {
        match next.handle(command, &(), &sink).await {
            Ok(()) => sink.collect().await,
            Err(_) => Vec::new(),
        }
    });
    for event in &events {
        order.apply(event.clone());
    }
    events
}

fn status() -> impl Strategy<Value = PaymentFactStatus> {
    prop_oneof![
        Just(PaymentFactStatus::Pending),
        Just(PaymentFactStatus::Captured),
        Just(PaymentFactStatus::PartiallyRefunded),
        Just(PaymentFactStatus::Refunded),
        Just(PaymentFactStatus::NotCompleted),
    ]
}

fn fact() -> impl Strategy<Value = PaymentFact> {
    (
        status(),
        prop_oneof![Just(PLACED_MINOR), 1..=100_000i64],
        0..=100_000i64,
        prop_oneof![
            Just(Currency::KRW),
            Just(Currency::USD),
            Just(Currency::JPY)
        ],
        prop_oneof![Just(ORDER_ID.to_string()), Just("order-other".to_string())],
        prop_oneof![
            Just("pk_a".to_string()),
            Just("pk_b".to_string()),
            Just("pk_c".to_string())
        ],
    )
        .prop_map(
            |(status, amount_minor, refunded_minor, currency, order_id, payment_key)| PaymentFact {
                provider: "toss".into(),
                order_id,
                payment_key,
                status,
                provider_status: format!("{status:?}"),
                amount_minor,
                refunded_minor: refunded_minor.min(amount_minor),
                currency,
                approved_at: Some(t0()),
                method: None,
                client_key: None,
            },
        )
}

/// What a caller may do between provider reports.
#[derive(Debug, Clone)]
enum Step {
    /// A customer confirms with this key (the ledger then waits on it).
    Confirm(&'static str),
    /// A provider report reaches the order (confirm answer, lookup, reconciler).
    Report(PaymentFact),
    /// The provider failed or was not reached.
    Refused,
    Unknown,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop_oneof![Just("pk_a"), Just("pk_b"), Just("pk_c")].prop_map(Step::Confirm),
        fact().prop_map(Step::Report),
        fact().prop_map(Step::Report),
        Just(Step::Refused),
        Just(Step::Unknown),
    ]
}

fn supports_capture(fact: &PaymentFact, waiting_key: &str) -> bool {
    fact.status == PaymentFactStatus::Captured
        && fact.refunded_minor == 0
        && fact.amount_minor == PLACED_MINOR
        && fact.currency == Currency::KRW
        && fact.order_id == ORDER_ID
        && fact.payment_key == waiting_key
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_ledger_records_only_captures_a_provider_fact_supports_and_at_most_one(
        steps in proptest::collection::vec(step(), 1..25)
    ) {
        let mut order = Order::default();
        order.apply(placed());
        let mut captures = 0;
        for step in steps {
            let waiting_key = order.payment_key.as_ref().map(|k| k.as_str().to_string());
            let (events, reported) = match step {
                Step::Confirm(key) => (run(&mut order, OrderCommand::StartConfirmation {
                    payment_key: PaymentKey::parse(key).unwrap(),
                    claimed_amount_minor: PLACED_MINOR,
                    at: t0(),
                }), None),
                Step::Report(fact) => (run(&mut order, OrderCommand::RecordConfirmationOutcome {
                    outcome: ProviderOutcome::Observed { fact: fact.clone() },
                    source: OutcomeSource::Reconciler,
                    at: t0(),
                }), Some(fact)),
                Step::Refused => (run(&mut order, OrderCommand::RecordConfirmationOutcome {
                    outcome: ProviderOutcome::Refused { failure: ProviderFailure {
                        class: FailureClass::SoftDecline,
                        provider_code: "REJECT_CARD_COMPANY".into(),
                        provider_message: String::new(),
                    }},
                    source: OutcomeSource::Request,
                    at: t0(),
                }), None),
                Step::Unknown => (run(&mut order, OrderCommand::RecordConfirmationOutcome {
                    outcome: ProviderOutcome::Unknown { reason: "timeout".into() },
                    source: OutcomeSource::Request,
                    at: t0(),
                }), None),
            };
            for event in &events {
                if let OrderEvent::PaymentCaptured(captured) = event {
                    captures += 1;
                    let fact = reported.as_ref();
                    prop_assert!(
                        fact.is_some_and(|f| waiting_key.as_deref().is_some_and(|k| supports_capture(f, k))),
                        "a capture without a supporting fact: {fact:?} while waiting on {waiting_key:?}"
                    );
                    prop_assert_eq!(captured.amount_minor, PLACED_MINOR);
                    prop_assert_eq!(captured.currency, Currency::KRW);
                }
            }
            prop_assert!(captures <= 1, "two captures for one order");
            prop_assert!(order.captured_minor == 0 || order.captured_minor == PLACED_MINOR);
        }
    }
}
