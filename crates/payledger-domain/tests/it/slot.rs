//! The booking slot: the first reservation wins, later ones are refused and remembered.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use payledger_domain::ids::{OrderId, PayeeId};
use payledger_domain::slot::*;

type SlotTest = TestFramework<Slot>;

fn starts() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 5, 0, 0).unwrap()
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 6, 50, 0).unwrap()
}

fn payee() -> PayeeId {
    PayeeId::parse("therapist-kim").unwrap()
}

fn order(n: u32) -> OrderId {
    OrderId::parse(format!("order-{n:04}")).unwrap()
}

fn reserve(n: u32) -> SlotCommand {
    SlotCommand::Reserve {
        payee_id: payee(),
        starts_at: starts(),
        order_id: order(n),
        at: at(),
    }
}

fn reserved(n: u32) -> SlotEvent {
    SlotEvent::SlotReserved(SlotReserved {
        payee_id: payee(),
        starts_at: starts(),
        order_id: order(n),
        at: at(),
    })
}

fn refused(n: u32, held_by: u32) -> SlotEvent {
    SlotEvent::SlotReservationRefused(SlotReservationRefused {
        payee_id: payee(),
        starts_at: starts(),
        order_id: order(n),
        held_by: order(held_by),
        at: at(),
    })
}

fn release(n: u32) -> SlotCommand {
    SlotCommand::Release {
        order_id: order(n),
        reason: RELEASE_REASON_CANCELLED.into(),
        at: at(),
    }
}

fn released(n: u32) -> SlotEvent {
    SlotEvent::SlotReleased(SlotReleased {
        order_id: order(n),
        reason: RELEASE_REASON_CANCELLED.into(),
        at: at(),
    })
}

#[test]
fn the_stream_is_named_by_payee_and_start_in_utc() {
    assert_eq!(
        stream_id(&payee(), starts()),
        "slot-therapist-kim-20261005T050000Z"
    );
}

#[test]
fn a_free_slot_is_reserved_by_the_first_order() {
    SlotTest::with(())
        .given_no_previous_events()
        .when(reserve(1))
        .then_expect_events(vec![reserved(1)]);
}

#[test]
fn a_second_order_is_refused_and_told_who_holds_the_slot() {
    SlotTest::with(())
        .given(vec![reserved(1)])
        .when(reserve(2))
        .then_expect_events(vec![refused(2, 1)]);
}

#[test]
fn asking_again_for_an_order_already_answered_changes_nothing() {
    SlotTest::with(())
        .given(vec![reserved(1)])
        .when(reserve(1))
        .then_expect_events(vec![]);
    SlotTest::with(())
        .given(vec![reserved(1), refused(2, 1)])
        .when(reserve(2))
        .then_expect_events(vec![]);
}

#[test]
fn the_holder_releases_the_slot_and_a_new_order_can_take_it() {
    SlotTest::with(())
        .given(vec![reserved(1)])
        .when(release(1))
        .then_expect_events(vec![released(1)]);
    SlotTest::with(())
        .given(vec![reserved(1), released(1)])
        .when(reserve(3))
        .then_expect_events(vec![reserved(3)]);
    SlotTest::with(())
        .given(vec![reserved(1), released(1)])
        .when(release(1))
        .then_expect_events(vec![]);
}

#[test]
fn a_refused_order_taking_the_slot_after_a_release_is_still_refused_silently() {
    // Its payment was refunded when it was refused: it must not come back as the holder.
    SlotTest::with(())
        .given(vec![reserved(1), refused(2, 1), released(1)])
        .when(reserve(2))
        .then_expect_events(vec![]);
}

#[test]
fn only_the_holder_can_release() {
    SlotTest::with(())
        .given(vec![reserved(1)])
        .when(release(9))
        .then_expect_error(SlotError::NotHolder(order(9)));
}

#[test]
fn a_reservation_for_another_slot_is_refused() {
    SlotTest::with(())
        .given(vec![reserved(1)])
        .when(SlotCommand::Reserve {
            payee_id: payee(),
            starts_at: starts() + chrono::Duration::hours(1),
            order_id: order(2),
            at: at(),
        })
        .then_expect_error(SlotError::WrongSlot);
}
