//! Cancelling a booking: the policy's decision is recorded once.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use payledger_domain::booking::*;
use payledger_domain::ids::{AdminId, CustomerId, OrderId, PayeeId};
use payledger_domain::money::{BasisPoints, Currency};
use payledger_domain::refund_policy::{EmergencyApproval, RefundDecision, RefundTier};

type BookingTest = TestFramework<Booking>;

fn starts() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 5, 0, 0).unwrap()
}

fn order(captured_minor: i64, refunded_minor: i64) -> BookedOrder {
    BookedOrder {
        order_id: OrderId::parse("order-0001").unwrap(),
        customer_id: CustomerId::parse("parent-lee").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        currency: Currency::KRW,
        service_starts_at: Some(starts()),
        captured_minor,
        refunded_minor,
    }
}

fn cancel(order: BookedOrder, at: DateTime<Utc>) -> BookingCommand {
    BookingCommand::Cancel {
        order,
        cancelled_by: "client:app".into(),
        emergency: None,
        at,
    }
}

fn cancelled(
    paid: i64,
    tier: RefundTier,
    bps: u32,
    refund: i64,
    refund_now: i64,
    at: DateTime<Utc>,
) -> BookingEvent {
    BookingEvent::BookingCancelled(BookingCancelled {
        order_id: OrderId::parse("order-0001").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        currency: Currency::KRW,
        service_starts_at: starts(),
        paid_minor: paid,
        decision: RefundDecision {
            tier,
            customer_share: BasisPoints::new(bps).unwrap(),
            refund_minor: refund,
            provider_minor: paid - refund,
            notice_seconds: (starts() - at).num_seconds(),
        },
        refund_now_minor: refund_now,
        emergency: None,
        cancelled_by: "client:app".into(),
        at,
        customer_id: Some(CustomerId::parse("parent-lee").unwrap()),
    })
}

#[test]
fn cancelling_48_hours_ahead_records_a_full_refund() {
    let at = starts() - Duration::hours(48);
    BookingTest::with(())
        .given_no_previous_events()
        .when(cancel(order(80_000, 0), at))
        .then_expect_events(vec![cancelled(
            80_000,
            RefundTier::Full,
            10_000,
            80_000,
            80_000,
            at,
        )]);
}

#[test]
fn what_was_refunded_before_is_deducted_from_the_refund_now() {
    let at = starts() - Duration::hours(30);
    BookingTest::with(())
        .given_no_previous_events()
        .when(cancel(order(80_001, 10_000), at))
        .then_expect_events(vec![cancelled(
            80_001,
            RefundTier::Half,
            5_000,
            40_000,
            30_000,
            at,
        )]);
    // Refunded more than the policy gives already: nothing more goes back.
    BookingTest::with(())
        .given_no_previous_events()
        .when(cancel(order(80_000, 50_000), at))
        .then_expect_events(vec![cancelled(
            80_000,
            RefundTier::Half,
            5_000,
            40_000,
            0,
            at,
        )]);
}

#[test]
fn cancelling_twice_keeps_the_first_decision() {
    let at = starts() - Duration::hours(49);
    BookingTest::with(())
        .given(vec![cancelled(
            80_000,
            RefundTier::Full,
            10_000,
            80_000,
            80_000,
            at,
        )])
        .when(cancel(order(80_000, 80_000), starts()))
        .then_expect_events(vec![]);
}

#[test]
fn an_order_without_a_service_time_or_a_payment_cannot_be_cancelled_as_a_booking() {
    let mut no_time = order(80_000, 0);
    no_time.service_starts_at = None;
    BookingTest::with(())
        .given_no_previous_events()
        .when(cancel(no_time, starts()))
        .then_expect_error(BookingError::NotABooking);
    BookingTest::with(())
        .given_no_previous_events()
        .when(cancel(order(0, 0), starts()))
        .then_expect_error(BookingError::NotPaid);
}

#[test]
fn an_admin_approved_emergency_refunds_what_the_admin_decided() {
    let at = starts() - Duration::hours(1);
    let approval = EmergencyApproval {
        approved_by: AdminId::parse("admin_kim").unwrap(),
        evidence: vec!["doc-123".into()],
        customer_share: BasisPoints::FULL,
    };
    let result = BookingTest::with(())
        .given_no_previous_events()
        .when(BookingCommand::Cancel {
            order: order(80_000, 0),
            cancelled_by: "admin:admin_kim".into(),
            emergency: Some(approval.clone()),
            at,
        })
        .inspect_result()
        .unwrap();
    let [BookingEvent::BookingCancelled(c)] = result.as_slice() else {
        panic!("one cancellation expected, got {result:?}")
    };
    assert_eq!(c.decision.tier, RefundTier::Emergency);
    assert_eq!(c.refund_now_minor, 80_000);
    assert_eq!(c.emergency, Some(approval));
    assert_eq!(refund_reason(&c.decision), "BOOKING_CANCELLED_EMERGENCY");
}
