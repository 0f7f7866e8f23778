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
        force_cancel_reason: None,
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

// ---------------------------------------------------------------------------------------------
// The provider's confirmation: 24 hours, a reminder at 12, the admins' queue after.
// ---------------------------------------------------------------------------------------------

fn paid_at() -> DateTime<Utc> {
    starts() - Duration::days(3)
}

fn requested() -> BookingEvent {
    BookingEvent::BookingConfirmationRequested(BookingConfirmationRequested {
        order_id: OrderId::parse("order-0001").unwrap(),
        customer_id: CustomerId::parse("parent-lee").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        service_starts_at: starts(),
        remind_at: paid_at() + Duration::hours(12),
        confirm_by: paid_at() + Duration::hours(24),
        at: paid_at(),
    })
}

fn overdue_event(at: DateTime<Utc>) -> BookingEvent {
    BookingEvent::BookingConfirmationOverdue(BookingConfirmationOverdue {
        order_id: OrderId::parse("order-0001").unwrap(),
        customer_id: CustomerId::parse("parent-lee").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        service_starts_at: starts(),
        requested_at: paid_at(),
        confirm_by: paid_at() + Duration::hours(24),
        at,
    })
}

#[test]
fn a_paid_booking_asks_its_provider_once() {
    let booking = ConfirmableBooking {
        order_id: OrderId::parse("order-0001").unwrap(),
        customer_id: CustomerId::parse("parent-lee").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        service_starts_at: starts(),
    };
    BookingTest::with(())
        .given_no_previous_events()
        .when(BookingCommand::RequestConfirmation {
            booking: booking.clone(),
            at: paid_at(),
        })
        .then_expect_events(vec![requested()]);
    BookingTest::with(())
        .given(vec![requested()])
        .when(BookingCommand::RequestConfirmation {
            booking,
            at: paid_at() + Duration::hours(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn the_reminder_is_due_at_exactly_12_hours_and_the_queue_at_exactly_24() {
    let remind_at = paid_at() + Duration::hours(12);
    BookingTest::with(())
        .given(vec![requested()])
        .when(BookingCommand::RemindConfirmation {
            at: remind_at - Duration::seconds(1),
        })
        .then_expect_error(BookingError::NotDue { due_at: remind_at });
    let result = BookingTest::with(())
        .given(vec![requested()])
        .when(BookingCommand::RemindConfirmation { at: remind_at })
        .inspect_result()
        .unwrap();
    assert!(matches!(
        result.as_slice(),
        [BookingEvent::BookingConfirmationReminderRequested(_)]
    ));
    let confirm_by = paid_at() + Duration::hours(24);
    BookingTest::with(())
        .given(vec![requested()])
        .when(BookingCommand::RecordConfirmationOverdue {
            at: confirm_by - Duration::seconds(1),
        })
        .then_expect_error(BookingError::NotDue { due_at: confirm_by });
    BookingTest::with(())
        .given(vec![requested()])
        .when(BookingCommand::RecordConfirmationOverdue { at: confirm_by })
        .then_expect_events(vec![overdue_event(confirm_by)]);
    // Once overdue: no late reminder, no second entry in the queue.
    BookingTest::with(())
        .given(vec![requested(), overdue_event(confirm_by)])
        .when(BookingCommand::RemindConfirmation { at: confirm_by })
        .then_expect_events(vec![]);
    BookingTest::with(())
        .given(vec![requested(), overdue_event(confirm_by)])
        .when(BookingCommand::RecordConfirmationOverdue {
            at: confirm_by + Duration::hours(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_force_cancel_refunds_everything_and_only_an_unconfirmed_booking() {
    let at = paid_at() + Duration::hours(25);
    let result = BookingTest::with(())
        .given(vec![requested(), overdue_event(at)])
        .when(BookingCommand::ForceCancel {
            order: order(80_000, 10_000),
            admin: AdminId::parse("ops").unwrap(),
            reason: "no answer".into(),
            at,
        })
        .inspect_result()
        .unwrap();
    let [BookingEvent::BookingCancelled(c)] = result.as_slice() else {
        panic!("{result:?}");
    };
    assert_eq!(c.decision.tier, RefundTier::Unconfirmed);
    assert_eq!(
        (c.decision.refund_minor, c.decision.provider_minor),
        (80_000, 0)
    );
    assert_eq!(c.refund_now_minor, 70_000, "less what was refunded before");
    assert_eq!(c.cancelled_by, "admin:ops");
    assert_eq!(c.force_cancel_reason.as_deref(), Some("no answer"));

    let confirmed = BookingEvent::BookingConfirmed(BookingConfirmed {
        order_id: OrderId::parse("order-0001").unwrap(),
        customer_id: CustomerId::parse("parent-lee").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        service_starts_at: starts(),
        confirmed_by: "client:app".into(),
        admin: None,
        admin_notes: None,
        overdue: false,
        at: paid_at() + Duration::hours(1),
    });
    BookingTest::with(())
        .given(vec![requested(), confirmed])
        .when(BookingCommand::ForceCancel {
            order: order(80_000, 0),
            admin: AdminId::parse("ops").unwrap(),
            reason: "no answer".into(),
            at,
        })
        .then_expect_error(BookingError::AlreadyConfirmed);
    BookingTest::with(())
        .given_no_previous_events()
        .when(BookingCommand::ForceCancel {
            order: order(80_000, 0),
            admin: AdminId::parse("ops").unwrap(),
            reason: "no answer".into(),
            at,
        })
        .then_expect_error(BookingError::NotAwaitingConfirmation);
}

#[test]
fn a_cancelled_booking_cannot_be_confirmed() {
    let at = starts() - Duration::hours(48);
    BookingTest::with(())
        .given(vec![
            requested(),
            cancelled(80_000, RefundTier::Full, 10_000, 80_000, 80_000, at),
        ])
        .when(BookingCommand::Confirm {
            confirmed_by: "client:app".into(),
            admin: None,
            admin_notes: None,
            at,
        })
        .then_expect_error(BookingError::Cancelled);
}

#[test]
fn a_customer_moves_a_booking_with_48_hours_notice_and_an_admin_with_less() {
    let to = starts() + Duration::days(2);
    let reschedule = |at, admin: Option<AdminId>| BookingCommand::Reschedule {
        order: order(80_000, 0),
        to,
        requested_by: "client:app".into(),
        admin,
        reason: None,
        at,
    };
    let at = starts() - Duration::hours(48);
    let result = BookingTest::with(())
        .given(vec![requested()])
        .when(reschedule(at, None))
        .inspect_result()
        .unwrap();
    let [BookingEvent::BookingRescheduled(moved)] = result.as_slice() else {
        panic!("{result:?}");
    };
    assert_eq!((moved.from, moved.to), (starts(), to));
    assert_eq!(moved.notice_seconds, 48 * 3_600);
    BookingTest::with(())
        .given(vec![requested()])
        .when(reschedule(at + Duration::seconds(1), None))
        .then_expect_error(BookingError::RescheduleTooLate {
            starts_at: starts(),
        });
    let by_admin = BookingTest::with(())
        .given(vec![requested()])
        .when(reschedule(
            at + Duration::hours(40),
            Some(AdminId::parse("ops").unwrap()),
        ))
        .inspect_result()
        .unwrap();
    assert_eq!(by_admin.len(), 1);
    // The same change again changes nothing.
    BookingTest::with(())
        .given(vec![requested(), result[0].clone()])
        .when(reschedule(at + Duration::hours(1), None))
        .then_expect_events(vec![]);
}
