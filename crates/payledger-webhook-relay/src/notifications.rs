//! Which events the product hears about: the one table of event type → notification type →
//! priority (source document 5, §5.2). To notify about a new event, add a row; nothing else
//! changes. Event types are the stored ones (the variant names of the domain's event enums),
//! which are unique across aggregates.
//!
//! Priorities: 긴급 urgent — a payment failed, a claim filed or resolved, an emergency
//! cancellation; 중요 important — a booking (payment) confirmed, a schedule change; 일반 normal —
//! a settlement confirmed, session reminders; 정보 info — reviews, recommendations.

use payledger_webhooks::Priority;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationRule {
    /// The stored event type that triggers the notification.
    pub event_type: &'static str,
    /// The Standard Webhooks `type` the product receives.
    pub notification_type: &'static str,
    /// `None`: the priority follows from the event itself ([`PriorityFrom`]), so the
    /// notification and the event inside it can never disagree. One source of truth per
    /// notification type.
    pub priority: Option<Priority>,
    /// How the event gives the priority when `priority` is `None`.
    pub from_event: PriorityFrom,
}

/// Where a notification's priority comes from when the table does not fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityFrom {
    /// The table's `priority`.
    Table,
    /// The event's own `priority` field (the aggregate decided it, e.g. a subscription's
    /// failed charge).
    PriorityField,
    /// `urgent` when the event records an admin-approved emergency (`emergency` not null), else
    /// `important`: §5.2 ranks an emergency cancellation urgent; the other side still hears of
    /// an ordinary one.
    Emergency,
}

const fn rule(
    event_type: &'static str,
    notification_type: &'static str,
    priority: Priority,
) -> NotificationRule {
    NotificationRule {
        event_type,
        notification_type,
        priority: Some(priority),
        from_event: PriorityFrom::Table,
    }
}

/// A notification whose priority is the event's own `priority` field.
const fn rule_from_event(
    event_type: &'static str,
    notification_type: &'static str,
) -> NotificationRule {
    NotificationRule {
        event_type,
        notification_type,
        priority: None,
        from_event: PriorityFrom::PriorityField,
    }
}

pub const NOTIFICATIONS: &[NotificationRule] = &[
    // Orders (payledger_domain::order).
    rule("PaymentCaptured", "payment.confirmed", Priority::Important),
    rule("PaymentFailed", "payment.failed", Priority::Urgent),
    rule("RefundCompleted", "refund.completed", Priority::Important),
    // Subscriptions (payledger_domain::subscription): the aggregate decides when a customer
    // must hear of a failed charge, a needed payment method or a suspension, and how urgent it
    // is; the event records that decision and the notification repeats it.
    rule_from_event(
        "PaymentFailedNotificationRequested",
        "billing.payment_failed",
    ),
    rule_from_event(
        "PaymentMethodUpdateNotificationRequested",
        "billing.payment_method_required",
    ),
    rule_from_event(
        "SubscriptionSuspendedNotificationRequested",
        "subscription.suspended",
    ),
    // Bookings (payledger_domain::booking): the other side hears of a cancellation (the body
    // carries `cancelledBy`); urgent for an emergency.
    NotificationRule {
        event_type: "BookingCancelled",
        notification_type: "booking.cancelled",
        priority: None,
        from_event: PriorityFrom::Emergency,
    },
    // Session reminders (payledger_domain::reminder): the day before at 14:00 and 2 h before;
    // 세션 리마인드 is 일반 (normal) in §5.2.
    rule(
        "SessionReminderRequested",
        "booking.reminder",
        Priority::Normal,
    ),
    // Claims (payledger_domain::claim): both sides are told at once.
    rule("ClaimFiled", "claim.filed", Priority::Urgent),
    rule("ClaimResolved", "claim.resolved", Priority::Urgent),
    // Settlement (payledger_domain::settlement): 정산 확정.
    rule(
        "StatementConfirmed",
        "settlement.confirmed",
        Priority::Normal,
    ),
    // 입금 완료 (Wednesday): the payout reference is in the event.
    rule("StatementPaidOut", "settlement.paid_out", Priority::Normal),
    // The provider's confirmation of a booking (payledger_domain::booking, §5.1): asked for
    // (예약 확인 요청, to the provider; the customer hears 치료사 확인 중), reminded at 12 h,
    // unconfirmed at 24 h (to the admins), confirmed (예약 확정, to both). All 중요 in §5.2.
    rule(
        "BookingConfirmationRequested",
        "booking.confirmation_requested",
        Priority::Important,
    ),
    rule(
        "BookingConfirmationReminderRequested",
        "booking.confirmation_reminder",
        Priority::Important,
    ),
    rule(
        "BookingConfirmationOverdue",
        "booking.unconfirmed",
        Priority::Important,
    ),
    rule("BookingConfirmed", "booking.confirmed", Priority::Important),
    // 일정 변경 확정 (to both sides), 중요.
    rule(
        "BookingRescheduled",
        "booking.rescheduled",
        Priority::Important,
    ),
    // 상담일지 공유 (to the customer), 일반.
    rule(
        "SessionNotesRecorded",
        "booking.session_notes_shared",
        Priority::Normal,
    ),
];

/// The rule for a stored event type, if it notifies.
pub fn rule_for(event_type: &str) -> Option<&'static NotificationRule> {
    NOTIFICATIONS.iter().find(|r| r.event_type == event_type)
}

/// The priority a notification of `payload` goes out with under `rule`: the table's, or the
/// event's own. An event that should carry one and does not (never written so) is sent
/// `urgent`, the priority that reaches people on every channel, rather than dropped.
pub fn priority_for(rule: &NotificationRule, payload: &serde_json::Value) -> Priority {
    if let Some(priority) = rule.priority {
        return priority;
    }
    match rule.from_event {
        PriorityFrom::Table | PriorityFrom::PriorityField => payload
            .get("priority")
            .cloned()
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or(Priority::Urgent),
        PriorityFrom::Emergency => match payload.get("emergency") {
            Some(emergency) if !emergency.is_null() => Priority::Urgent,
            _ => Priority::Important,
        },
    }
}

pub fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Urgent => "urgent",
        Priority::Important => "important",
        Priority::Normal => "normal",
        Priority::Info => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn each_event_type_notifies_once_and_types_are_dotted_names() {
        let events: HashSet<&str> = NOTIFICATIONS.iter().map(|r| r.event_type).collect();
        assert_eq!(events.len(), NOTIFICATIONS.len());
        for rule in NOTIFICATIONS {
            assert!(rule.notification_type.contains('.'), "{rule:?}");
            if let Some(priority) = rule.priority {
                assert_eq!(
                    serde_json::to_value(priority).unwrap(),
                    priority_name(priority)
                );
            }
        }
    }

    #[test]
    fn a_failed_payment_is_urgent_and_a_settlement_normal_as_the_source_document_ranks_them() {
        assert_eq!(
            rule_for("PaymentFailed").unwrap().priority,
            Some(Priority::Urgent)
        );
        assert_eq!(
            rule_for("ClaimFiled").unwrap().priority,
            Some(Priority::Urgent)
        );
        assert_eq!(
            rule_for("StatementConfirmed").unwrap().priority,
            Some(Priority::Normal)
        );
        assert!(rule_for("OrderPlaced").is_none());
    }

    #[test]
    fn a_notification_the_event_ranks_goes_out_with_the_events_priority() {
        let rule = rule_for("PaymentFailedNotificationRequested").unwrap();
        for name in ["urgent", "important", "normal", "info"] {
            let payload = serde_json::json!({"priority": name});
            assert_eq!(priority_name(priority_for(rule, &payload)), name);
        }
        let cancelled = rule_for("BookingCancelled").unwrap();
        let emergency = serde_json::json!({"emergency": {"approvedBy": "ops"}});
        assert_eq!(priority_for(cancelled, &emergency), Priority::Urgent);
        let ordinary = serde_json::json!({"emergency": null});
        assert_eq!(priority_for(cancelled, &ordinary), Priority::Important);
        let fixed = rule_for("ClaimFiled").unwrap();
        let payload = serde_json::json!({"priority": "info"});
        assert_eq!(priority_for(fixed, &payload), Priority::Urgent);
    }
}
