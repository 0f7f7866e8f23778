//! Recurring billing against a real database and a real sandbox provider, with a clock moved by
//! hand: months of billing in seconds, every row of the dunning table, restarts and racing
//! schedulers. Each test checks the provider's own counters (`sandbox.stats()`), so "charged once"
//! is what the provider saw, not what payledger believes.

use crate::support::*;
use chrono::{Duration, TimeZone, Utc};
use payledger_app::executor::{AggregateCache, Executor};
use payledger_app::subscriptions::{BillingError, SubscriptionsConfig};
use payledger_domain::billing::{DunningPolicy, SubscriptionId};
use payledger_domain::customer::BillingKeyStatus;
use payledger_domain::subscription::{
    self, AttemptTrigger, Subscription, SubscriptionCommand, SubscriptionError, SubscriptionStatus,
    ATTEMPT_STALE_AFTER_SECONDS,
};
use payledger_sandbox::{Behaviour, SandboxConfig};
use std::sync::Arc;

fn days(n: i64) -> Duration {
    Duration::days(n)
}

fn order_id(subscription: &str, cycle: u32) -> String {
    format!("sub-{subscription}-c{cycle}")
}

async fn status(services: &payledger_app::subscriptions::Subscriptions, id: &str) -> Subscription {
    services
        .load_subscription(&SubscriptionId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("the subscription exists")
        .state
}

#[tokio::test]
async fn a_year_of_monthly_billing_charges_each_cycle_exactly_once() {
    let h = Harness::start().await;
    let services = h.services();
    h.subscribe(&services, "cust_year", "year", "sandbox_approve_year")
        .await;
    // The first cycle is charged when the subscription starts.
    assert_eq!(h.provider_counts(&order_id("year", 1)), (1, 1));
    for month in 1..=12 {
        let due = status(&services, "year").await.next_charge_at.unwrap();
        // A pass a minute early does nothing.
        let early = h.run_due_at(&services, due - Duration::minutes(1)).await;
        assert_eq!(early.attempts, 0, "month {month}: nothing before it is due");
        let report = h.run_due_at(&services, due).await;
        assert_eq!(report.succeeded, 1, "month {month}");
    }
    let state = status(&services, "year").await;
    assert_eq!(state.paid_cycles, 13);
    assert_eq!(state.status, SubscriptionStatus::Active);
    // 31 January anchor: February is clamped to the 28th, March is the 31st again.
    assert_eq!(
        state.paid_through,
        Some(Utc.with_ymd_and_hms(2027, 2, 28, 0, 0, 0).unwrap())
    );
    let stats = h.sandbox.stats();
    for cycle in 1..=13 {
        assert_eq!(
            h.provider_counts(&order_id("year", cycle)),
            (1, 1),
            "cycle {cycle}"
        );
    }
    assert_eq!(stats.total_charges, 13);

    // The read model agrees, membership included.
    h.index.caught_up().await;
    let view =
        payledger_read_models::subscriptions::get_subscription(&h.db.app_pool, "year", h.now())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(view.status, "active");
    assert_eq!(view.paid_cycles, 13);
    assert_eq!(view.membership_level, 2);
    assert_eq!(view.retry_count, 0);
    assert_eq!(view.next_charge_at, state.next_charge_at);
}

#[tokio::test]
async fn row_soft_decline_retries_on_days_3_7_14_then_suspends_and_a_new_card_recovers() {
    let h = Harness::start().await;
    let services = h.services();
    let (id, _) = h
        .subscribe(&services, "cust_soft", "soft", "sandbox_insufficient_soft")
        .await;
    let first_failure = h.now();
    let state = status(&services, "soft").await;
    assert_eq!(state.status, SubscriptionStatus::PastDue);
    assert_eq!(state.next_retry_at(), Some(first_failure + days(3)));

    for (retry, day) in [(1, 3), (2, 7), (3, 14)] {
        let due = first_failure + days(day);
        let early = h.run_due_at(&services, due - Duration::seconds(1)).await;
        assert_eq!(early.attempts, 0, "retry {retry} not before day {day}");
        let report = h.run_due_at(&services, due).await;
        assert_eq!((report.attempts, report.failed), (1, 1), "retry {retry}");
    }
    let state = status(&services, "soft").await;
    assert_eq!(state.status, SubscriptionStatus::Suspended);
    assert_eq!(
        state.suspended_reason.as_deref(),
        Some("PAYMENT_FAILED_MAX_RETRIES")
    );
    assert_eq!(state.retry_count(), 3);
    // Four attempts of cycle 1 reached the provider, none charged.
    assert_eq!(h.provider_counts(&order_id("soft", 1)), (4, 0));
    // Nothing more happens on its own.
    let later = h.run_due_at(&services, first_failure + days(60)).await;
    assert_eq!(later.attempts, 0);

    let types = h.event_types(&subscription::stream_id(&id)).await;
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "PaymentFailedNotificationRequested")
            .count(),
        3,
        "the customer hears of each failure that has a retry"
    );
    assert!(types.contains(&"SubscriptionSuspendedNotificationRequested".to_string()));

    h.index.caught_up().await;
    let suspended = payledger_read_models::subscriptions::list_subscriptions(
        &h.db.app_pool,
        &payledger_read_models::subscriptions::SubscriptionFilter {
            status: Some("suspended"),
            ..Default::default()
        },
        100,
        h.now(),
    )
    .await
    .unwrap();
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].retry_count, 3);
    assert_eq!(
        suspended[0].last_failure_code.as_deref(),
        Some("REJECT_CARD_COMPANY")
    );
    assert_eq!(suspended[0].membership_level, 0);

    // A new card charges the unpaid cycle at once.
    let new_key = services
        .register_billing_key(
            &customer("cust_soft"),
            "sandbox_approve_newcard",
            &context(),
        )
        .await
        .unwrap();
    let after = services
        .change_payment_method(&id, new_key.billing_key_id, &context())
        .await
        .unwrap();
    assert_eq!(after.state.status, SubscriptionStatus::Active);
    assert_eq!(after.state.paid_cycles, 1);
    assert_eq!(h.provider_counts(&order_id("soft", 1)), (5, 1));
}

#[tokio::test]
async fn a_soft_decline_recovers_on_its_first_retry_when_the_card_has_funds_again() {
    let h = Harness::start().await;
    let services = h.services();
    let (_, key) = h
        .subscribe(
            &services,
            "cust_funds",
            "funds",
            "sandbox_insufficient_funds",
        )
        .await;
    let provider_key = h.provider_key("cust_funds", &key).await;
    h.sandbox
        .set_billing_key_behaviour(&provider_key, Behaviour::Approve)
        .unwrap();
    let report = h.run_due_at(&services, t0() + days(3)).await;
    assert_eq!(report.succeeded, 1);
    let state = status(&services, "funds").await;
    assert_eq!(state.status, SubscriptionStatus::Active);
    assert_eq!(state.retry_count(), 0);
    // The anchor holds: the next cycle is still the end of February.
    assert_eq!(
        state.next_charge_at,
        Some(Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap())
    );
    assert_eq!(h.provider_counts(&order_id("funds", 1)), (2, 1));
}

#[tokio::test]
async fn rows_expired_stopped_and_over_limit_cards_wait_for_a_new_method_without_retries() {
    let h = Harness::start().await;
    let services = h.services();
    for (name, auth_key) in [
        ("expired", "sandbox_expired_1"),
        ("stopped", "sandbox_stopped_1"),
        ("limit", "sandbox_limit_1"),
    ] {
        let (id, _) = h
            .subscribe(&services, &format!("cust_{name}"), name, auth_key)
            .await;
        let state = status(&services, name).await;
        assert_eq!(
            state.status,
            SubscriptionStatus::RequiresPaymentMethod,
            "{name}"
        );
        assert_eq!(state.grace_ends_at, None, "{name}");
        let types = h.event_types(&subscription::stream_id(&id)).await;
        assert!(
            types.contains(&"PaymentMethodUpdateNotificationRequested".to_string()),
            "{name}: the customer is asked for a new method"
        );
    }
    let report = h.run_due_at(&services, t0() + days(90)).await;
    assert_eq!(report.attempts, 0);
    for name in ["expired", "stopped", "limit"] {
        assert_eq!(h.provider_counts(&order_id(name, 1)), (1, 0), "{name}");
        assert_eq!(
            status(&services, name).await.status,
            SubscriptionStatus::RequiresPaymentMethod
        );
    }
}

#[tokio::test]
async fn row_invalid_billing_key_gets_seven_days_of_grace_then_suspension() {
    let h = Harness::start().await;
    let services = h.services();
    let (_, key) = h
        .subscribe(&services, "cust_revoked", "revoked", "sandbox_revoked_1")
        .await;
    let state = status(&services, "revoked").await;
    assert_eq!(state.status, SubscriptionStatus::RequiresPaymentMethod);
    assert_eq!(state.grace_ends_at, Some(t0() + days(7)));
    // The provider said the key is dead: the customer's key is marked expired.
    let info = services
        .billing_key(&customer("cust_revoked"), &key)
        .await
        .unwrap();
    assert_eq!(info.status, BillingKeyStatus::Expired);
    // Membership is kept through the grace period only if a cycle was ever paid: not here.
    assert_eq!(
        services
            .membership_level(&customer("cust_revoked"))
            .await
            .unwrap(),
        0
    );

    let early = h
        .run_due_at(&services, t0() + days(7) - Duration::seconds(1))
        .await;
    assert_eq!(early.suspended, 0);
    let report = h.run_due_at(&services, t0() + days(7)).await;
    assert_eq!(report.suspended, 1);
    let state = status(&services, "revoked").await;
    assert_eq!(state.status, SubscriptionStatus::Suspended);
    assert_eq!(
        state.suspended_reason.as_deref(),
        Some("BILLING_KEY_GRACE_EXPIRED")
    );
    assert_eq!(h.provider_counts(&order_id("revoked", 1)), (1, 0));
}

#[tokio::test]
async fn a_key_revoked_in_payledger_is_not_sent_to_the_provider() {
    let h = Harness::start().await;
    let services = h.services();
    let (_, key) = h
        .subscribe(&services, "cust_local", "local", "sandbox_approve_local")
        .await;
    services
        .revoke_billing_key(
            &customer("cust_local"),
            &key,
            "card removed".into(),
            &context(),
        )
        .await
        .unwrap();
    let second_cycle = Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap();
    let report = h.run_due_at(&services, second_cycle).await;
    assert_eq!((report.attempts, report.failed), (1, 1));
    let state = status(&services, "local").await;
    assert_eq!(state.status, SubscriptionStatus::RequiresPaymentMethod);
    assert_eq!(state.grace_ends_at, Some(second_cycle + days(7)));
    assert_eq!(
        state
            .last_failure
            .as_ref()
            .map(|f| f.provider_code.as_str()),
        Some("BILLING_KEY_REVOKED")
    );
    assert_eq!(h.provider_counts(&order_id("local", 2)), (0, 0));
    // Benefits of the grace period: paid once, so the level holds until the grace ends.
    assert_eq!(
        services
            .membership_level(&customer("cust_local"))
            .await
            .unwrap(),
        2
    );
    h.clock.set(second_cycle + days(7));
    assert_eq!(
        services
            .membership_level(&customer("cust_local"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn row_provider_errors_keep_the_status_and_retry_in_minutes_without_counting() {
    let h = Harness::start().await;
    let services = h.services();
    let (_, key) = h
        .subscribe(&services, "cust_flaky", "flaky", "sandbox_approve_flaky")
        .await;
    let provider_key = h.provider_key("cust_flaky", &key).await;
    h.sandbox
        .set_billing_key_behaviour(&provider_key, Behaviour::ProviderError)
        .unwrap();
    let second_cycle = Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap();
    let report = h.run_due_at(&services, second_cycle).await;
    assert_eq!(report.failed, 1);
    let state = status(&services, "flaky").await;
    assert_eq!(state.status, SubscriptionStatus::Active, "status unchanged");
    assert_eq!(state.retry_count(), 0, "not a dunning attempt");
    let backoff = state.provider_backoff.clone().unwrap();
    assert_eq!(backoff.next_attempt_at, second_cycle + Duration::minutes(1));

    // Minutes later, still failing: the next try is 5 minutes after that one.
    let at = second_cycle + Duration::minutes(1);
    h.run_due_at(&services, at).await;
    let state = status(&services, "flaky").await;
    assert_eq!(
        state.provider_backoff.unwrap().next_attempt_at,
        at + Duration::minutes(5)
    );
    // The provider recovers.
    h.sandbox
        .set_billing_key_behaviour(&provider_key, Behaviour::Approve)
        .unwrap();
    let report = h.run_due_at(&services, at + Duration::minutes(5)).await;
    assert_eq!(report.succeeded, 1);
    let state = status(&services, "flaky").await;
    assert_eq!(state.paid_cycles, 2);
    assert_eq!(state.provider_backoff, None);
    assert_eq!(h.provider_counts(&order_id("flaky", 2)), (3, 1));
}

#[tokio::test]
async fn row_unknown_codes_go_to_manual_review_and_are_not_retried() {
    let h = Harness::start().await;
    let services = h.services();
    h.subscribe(
        &services,
        "cust_unknown",
        "unknown",
        "sandbox_unknown_code_1",
    )
    .await;
    let state = status(&services, "unknown").await;
    assert_eq!(state.status, SubscriptionStatus::NeedsReview);
    assert_eq!(
        state.last_failure.map(|f| f.provider_code),
        Some("SANDBOX_UNKNOWN_CODE".to_string())
    );
    let report = h.run_due_at(&services, t0() + days(40)).await;
    assert_eq!(report.attempts, 0);
    h.index.caught_up().await;
    let review = payledger_read_models::subscriptions::list_subscriptions(
        &h.db.app_pool,
        &payledger_read_models::subscriptions::SubscriptionFilter {
            status: Some("needs_review"),
            ..Default::default()
        },
        100,
        h.now(),
    )
    .await
    .unwrap();
    assert_eq!(
        review
            .iter()
            .map(|v| v.subscription_id.as_str())
            .collect::<Vec<_>>(),
        ["unknown"]
    );
    // An admin may still charge it (the provider still answers the unknown code).
    let charged = services
        .charge(
            &SubscriptionId::parse("unknown").unwrap(),
            AttemptTrigger::Admin,
            &context(),
        )
        .await
        .unwrap();
    assert_eq!(charged.state.status, SubscriptionStatus::NeedsReview);
    assert_eq!(h.provider_counts(&order_id("unknown", 1)), (2, 0));
}

#[tokio::test]
async fn an_unknown_outcome_is_settled_by_looking_the_cycle_up_never_by_charging_again() {
    let h = Harness::start_with(SandboxConfig {
        timeout_after_charge_delay_ms: 3_000,
        ..SandboxConfig::default()
    })
    .await;
    let mut h = h;
    h.gateway_timeout_ms = 500;
    let services = h.services();
    let (id, _) = h
        .subscribe(
            &services,
            "cust_timeout",
            "timeout",
            "sandbox_timeout_after_charge_1",
        )
        .await;
    let state = status(&services, "timeout").await;
    let attempt = state.in_flight.clone().expect("the attempt stays open");
    assert!(attempt.outcome_unknown);
    assert_eq!(state.paid_cycles, 0);
    // The provider did charge.
    assert_eq!(h.provider_counts(&order_id("timeout", 1)), (1, 1));

    // Before the attempt is stale, nothing is done.
    let early = h
        .run_due_at(
            &services,
            t0() + Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS - 1),
        )
        .await;
    assert_eq!(early.resolved, 0);
    let report = h
        .run_due_at(
            &services,
            t0() + Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS + 60),
        )
        .await;
    assert_eq!((report.resolved, report.succeeded), (1, 1));
    let state = status(&services, "timeout").await;
    assert_eq!(state.status, SubscriptionStatus::Active);
    assert_eq!(state.paid_cycles, 1);
    assert_eq!(h.provider_counts(&order_id("timeout", 1)), (1, 1));
    let succeeded = h
        .events(&subscription::stream_id(&id))
        .await
        .into_iter()
        .find(|e| e.event_type == "ChargeSucceeded")
        .unwrap();
    assert_eq!(succeeded.payload["source"], "reconciler");
}

#[tokio::test]
async fn a_restart_between_recording_an_attempt_and_calling_the_provider_sends_the_same_attempt() {
    let h = Harness::start().await;
    let first_process = h.services();
    h.subscribe(
        &first_process,
        "cust_crash",
        "crash",
        "sandbox_approve_crash",
    )
    .await;
    let second_cycle = Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap();
    h.clock.set(second_cycle);
    // The first process records the attempt of cycle 2 and dies before calling the provider.
    let stream = subscription::stream_id(&SubscriptionId::parse("crash").unwrap());
    Executor::new(h.store.clone())
        .execute(
            &AggregateCache::<Subscription>::new(1),
            &stream,
            SubscriptionCommand::StartChargeAttempt {
                trigger: AttemptTrigger::Scheduled,
                at: second_cycle,
            },
            &context(),
        )
        .await
        .unwrap();
    drop(first_process);
    assert_eq!(h.provider_counts(&order_id("crash", 2)), (0, 0));

    // A new process on the same database. While the attempt is fresh it is left alone (it might
    // still be running somewhere); once stale, the provider is asked and the attempt sent again.
    let second_process = h.services();
    let fresh = h
        .run_due_at(&second_process, second_cycle + Duration::seconds(10))
        .await;
    assert_eq!((fresh.attempts, fresh.resolved), (0, 0));
    let report = h
        .run_due_at(
            &second_process,
            second_cycle + Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS),
        )
        .await;
    assert_eq!(
        (report.attempts, report.resolved, report.succeeded),
        (0, 1, 1)
    );
    let state = status(&second_process, "crash").await;
    assert_eq!(state.paid_cycles, 2);
    assert_eq!(h.provider_counts(&order_id("crash", 2)), (1, 1));
    let types = h.event_types(&stream).await;
    assert!(types.contains(&"ChargeAttemptRedriven".to_string()));
    // The same attempt: one ChargeAttemptStarted for cycle 2, key crash:2:1.
    let started: Vec<_> = h
        .events(&stream)
        .await
        .into_iter()
        .filter(|e| e.event_type == "ChargeAttemptStarted" && e.payload["cycle"] == 2)
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].payload["idempotencyKey"], "crash:2:1");
}

#[tokio::test]
async fn two_schedulers_racing_charge_each_cycle_and_attempt_once() {
    let h = Harness::start().await;
    let setup = h.services();
    let names: Vec<String> = (0..12).map(|i| format!("race{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Every third customer's card is short of funds: retries race too.
        let auth = if i % 3 == 0 {
            format!("sandbox_insufficient_{name}")
        } else {
            format!("sandbox_approve_{name}")
        };
        h.subscribe(&setup, &format!("cust_{name}"), name, &auth)
            .await;
    }
    drop(setup);
    let (gateway_a, gateway_b) = (h.gateway(), h.gateway());
    let (a, b) = (
        h.services_on(gateway_a.clone()),
        h.services_on(gateway_b.clone()),
    );
    let mut at = t0();
    // Ten passes, each run by both processes at once, reach 11 April: cycles 1 to 3.
    for step in 0..10 {
        at += days(if step % 2 == 0 { 3 } else { 11 });
        h.clock.set(at);
        let (ra, rb) = tokio::join!(a.run_due(&h.index, at), b.run_due(&h.index, at));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.errors + rb.errors, 0, "step {step}: {ra:?} {rb:?}");
    }
    let stats = h.sandbox.stats();
    for (order, charges) in &stats.charges_by_order_id {
        assert_eq!(*charges, 1, "{order} charged more than once");
    }
    // No attempt was sent twice: attempts recorded in the streams equal what the provider saw.
    for name in &names {
        let stream = subscription::stream_id(&SubscriptionId::parse(name.clone()).unwrap());
        let events = h.events(&stream).await;
        for cycle in 1..=3u64 {
            let recorded = events
                .iter()
                .filter(|e| e.event_type == "ChargeAttemptStarted" && e.payload["cycle"] == cycle)
                .count() as u64;
            let seen = stats
                .attempts_by_order_id
                .get(&order_id(name, cycle as u32))
                .copied()
                .unwrap_or(0);
            assert_eq!(recorded, seen, "{name} cycle {cycle}");
        }
        let keys: Vec<String> = events
            .iter()
            .filter(|e| e.event_type == "ChargeAttemptStarted")
            .map(|e| e.payload["idempotencyKey"].to_string())
            .collect();
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(
            keys.len(),
            unique.len(),
            "{name}: an idempotency key was used twice"
        );
    }
    // The two processes together called the provider exactly once per attempt they recorded:
    // the loser of each race never called it at all (not even with the same idempotency key).
    let mut recorded_by_passes = 0;
    for name in &names {
        let stream = subscription::stream_id(&SubscriptionId::parse(name.clone()).unwrap());
        recorded_by_passes += h
            .events(&stream)
            .await
            .iter()
            .filter(|e| {
                e.event_type == "ChargeAttemptStarted" && e.metadata["actor"] == "system:scheduler"
            })
            .count() as u64;
    }
    let calls = gateway_a.stats().unwrap().calls + gateway_b.stats().unwrap().calls;
    assert_eq!(calls, recorded_by_passes);
    assert!(recorded_by_passes > 12, "the passes charged and retried");
    // Approving customers paid cycles 1 to 3 (anchor 31 Jan, then 28 Feb and 31 Mar).
    for name in names.iter().skip(1).step_by(3) {
        assert_eq!(status(&a, name).await.paid_cycles, 3, "{name}");
    }
}

#[tokio::test]
async fn after_downtime_one_pass_catches_up_on_every_missed_cycle() {
    let h = Harness::start().await;
    let services = h.services();
    h.subscribe(&services, "cust_down", "down", "sandbox_approve_down")
        .await;
    // Nothing ran from February to the middle of May.
    let report = h
        .run_due_at(
            &services,
            Utc.with_ymd_and_hms(2026, 5, 15, 0, 0, 0).unwrap(),
        )
        .await;
    assert_eq!(report.succeeded, 3, "February, March and April");
    let state = status(&services, "down").await;
    assert_eq!(state.paid_cycles, 4);
    assert_eq!(
        state.next_charge_at,
        Some(Utc.with_ymd_and_hms(2026, 5, 31, 0, 0, 0).unwrap())
    );
    for cycle in 2..=4 {
        assert_eq!(h.provider_counts(&order_id("down", cycle)), (1, 1));
    }
}

#[tokio::test]
async fn a_cancelled_subscription_keeps_benefits_to_the_period_end_and_is_not_charged_again() {
    let h = Harness::start().await;
    let services = h.services();
    let (id, _) = h
        .subscribe(&services, "cust_cancel", "cancel", "sandbox_approve_cancel")
        .await;
    let cancelled = services
        .cancel_at_period_end(&id, &context())
        .await
        .unwrap();
    let period_end = Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap();
    assert_eq!(cancelled.state.cancel_effective_at, Some(period_end));
    assert_eq!(cancelled.membership_level, 2);
    let report = h.run_due_at(&services, period_end).await;
    assert_eq!((report.attempts, report.ended), (0, 1));
    assert_eq!(
        status(&services, "cancel").await.status,
        SubscriptionStatus::Ended
    );
    assert_eq!(
        services
            .membership_level(&customer("cust_cancel"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(h.provider_counts(&order_id("cancel", 2)), (0, 0));
    assert!(matches!(
        services.resume(&id, &context()).await,
        Err(BillingError::Subscription(SubscriptionError::Ended))
    ));
}

#[tokio::test]
async fn the_dunning_policy_in_force_at_the_first_failure_is_the_one_the_retries_use() {
    let h = Harness::start().await;
    let services = h.services();
    let (_, key) = h
        .subscribe(
            &services,
            "cust_policy",
            "policy",
            "sandbox_insufficient_policy",
        )
        .await;
    // A restart with a shorter schedule configured.
    drop(services);
    let restarted = h.services_with(SubscriptionsConfig {
        dunning: DunningPolicy::new(vec![1, 2], 7, vec![1]).unwrap(),
        ..SubscriptionsConfig::default()
    });
    let report = h.run_due_at(&restarted, t0() + days(1)).await;
    assert_eq!(
        report.attempts, 0,
        "day 1 is the new policy, not this run's"
    );
    h.run_due_at(&restarted, t0() + days(3)).await;
    let state = status(&restarted, "policy").await;
    assert_eq!(state.retry_count(), 1);
    assert_eq!(state.next_retry_at(), Some(t0() + days(7)));
    // A new dunning run (next cycle) uses the new policy.
    let provider_key = h.provider_key("cust_policy", &key).await;
    h.sandbox
        .set_billing_key_behaviour(&provider_key, Behaviour::Approve)
        .unwrap();
    h.run_due_at(&restarted, t0() + days(7)).await;
    h.sandbox
        .set_billing_key_behaviour(&provider_key, Behaviour::InsufficientFunds)
        .unwrap();
    let second_cycle = Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap();
    h.run_due_at(&restarted, second_cycle).await;
    assert_eq!(
        status(&restarted, "policy").await.next_retry_at(),
        Some(second_cycle + days(1))
    );
}

#[tokio::test]
async fn the_billing_key_never_appears_in_clear_in_the_event_log() {
    let h = Harness::start().await;
    let services = h.services();
    let (_, key) = h
        .subscribe(&services, "cust_secret", "secret", "sandbox_approve_secret")
        .await;
    let provider_key = h.provider_key("cust_secret", &key).await;
    assert!(
        provider_key.starts_with("sbx_bk"),
        "the sandbox's key format"
    );
    let everything: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text || metadata::text FROM events ORDER BY global_position",
    )
    .fetch_all(&h.db.owner_pool)
    .await
    .unwrap();
    assert!(!everything.is_empty());
    for row in &everything {
        assert!(
            !row.contains(&provider_key),
            "the clear billing key is in an event: {row}"
        );
    }
    h.index.caught_up().await;
    let read_model: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(k)::text FROM rm.billing_keys k")
            .fetch_all(&h.db.owner_pool)
            .await
            .unwrap();
    assert_eq!(read_model.len(), 1);
    assert!(!read_model[0].contains(&provider_key));
    assert!(read_model[0].contains("\"status\":\"active\""));
}

#[tokio::test]
async fn the_all_payments_kill_switch_holds_charges_back_until_it_is_turned_off() {
    use payledger_app::operations::SalesSwitches;
    use payledger_domain::billing::{BillingInterval, PlanId};
    use payledger_domain::money::{Currency, Money};
    use payledger_domain::operations::SwitchCommand;

    let h = Harness::start().await;
    let switches = Arc::new(SalesSwitches::new(Arc::new(Executor::new(h.store.clone()))));
    let services = h.services().with_sales_switches(switches.clone());
    let (id, key) = h
        .subscribe(&services, "cust_kill", "kill", "sandbox_approve_kill")
        .await;
    assert_eq!(h.provider_counts(&order_id("kill", 1)), (1, 1));
    let due = status(&services, "kill").await.next_charge_at.unwrap();

    // Given the operator stopped all payments,
    switches
        .flip(
            SwitchCommand::SuspendPayments {
                reason: "incident 42".into(),
                at: h.now(),
            },
            &context(),
        )
        .await
        .unwrap();
    let stream = subscription::stream_id(&id);
    let recorded_before = h.events(&stream).await.len();

    // when the second cycle falls due, the scheduler holds it back: no attempt, no event,
    // nothing sent, no retry counted;
    let held = h.run_due_at(&services, due).await;
    assert_eq!((held.attempts, held.held_by_kill_switch), (0, 1));
    assert_eq!(h.provider_counts(&order_id("kill", 2)), (0, 0));
    assert_eq!(h.events(&stream).await.len(), recorded_before);
    // an admin's charge and a subscription whose first charge is due now are refused whole.
    let admin = services
        .charge(&id, AttemptTrigger::Admin, &context())
        .await;
    assert!(
        matches!(admin, Err(BillingError::PaymentsSuspended(_))),
        "{admin:?}"
    );
    let new_one = services
        .start(
            payledger_app::subscriptions::StartSubscriptionInput {
                subscription_id: Some(SubscriptionId::parse("kill_new").unwrap()),
                customer_id: customer("cust_kill"),
                plan_id: PlanId::parse("standard").unwrap(),
                amount: Money::new(9_900, Currency::KRW).unwrap(),
                interval: BillingInterval::monthly(),
                billing_key_id: key,
                anchor: None,
                order_name: None,
            },
            &context(),
        )
        .await;
    assert!(
        matches!(new_one, Err(BillingError::PaymentsSuspended(_))),
        "{new_one:?}"
    );
    assert!(h.events("subscription-kill_new").await.is_empty());

    // Then, once payments resume, the first pass charges the held cycle exactly once.
    switches
        .flip(SwitchCommand::ResumePayments { at: h.now() }, &context())
        .await
        .unwrap();
    let resumed = h.run_due_at(&services, due + Duration::hours(1)).await;
    assert_eq!((resumed.attempts, resumed.succeeded), (1, 1));
    assert_eq!(h.provider_counts(&order_id("kill", 2)), (1, 1));
    assert_eq!(status(&services, "kill").await.paid_cycles, 2);
}
