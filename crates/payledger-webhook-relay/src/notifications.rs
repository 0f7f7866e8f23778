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
    pub priority: Priority,
}

const fn rule(
    event_type: &'static str,
    notification_type: &'static str,
    priority: Priority,
) -> NotificationRule {
    NotificationRule {
        event_type,
        notification_type,
        priority,
    }
}

pub const NOTIFICATIONS: &[NotificationRule] = &[
    // Orders (payledger_domain::order).
    rule("PaymentCaptured", "payment.confirmed", Priority::Important),
    rule("PaymentFailed", "payment.failed", Priority::Urgent),
    rule("RefundCompleted", "refund.completed", Priority::Important),
    // Subscriptions (payledger_domain::subscription): the aggregate decides when a customer
    // must hear of a failed charge, a needed payment method or a suspension.
    rule(
        "PaymentFailedNotificationRequested",
        "billing.payment_failed",
        Priority::Urgent,
    ),
    rule(
        "PaymentMethodUpdateNotificationRequested",
        "billing.payment_method_required",
        Priority::Urgent,
    ),
    rule(
        "SubscriptionSuspendedNotificationRequested",
        "subscription.suspended",
        Priority::Urgent,
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
];

/// The rule for a stored event type, if it notifies.
pub fn rule_for(event_type: &str) -> Option<&'static NotificationRule> {
    NOTIFICATIONS.iter().find(|r| r.event_type == event_type)
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
            assert_eq!(
                serde_json::to_value(rule.priority).unwrap(),
                priority_name(rule.priority)
            );
        }
    }

    #[test]
    fn a_failed_payment_is_urgent_and_a_settlement_normal_as_the_source_document_ranks_them() {
        assert_eq!(
            rule_for("PaymentFailed").unwrap().priority,
            Priority::Urgent
        );
        assert_eq!(rule_for("ClaimFiled").unwrap().priority, Priority::Urgent);
        assert_eq!(
            rule_for("StatementConfirmed").unwrap().priority,
            Priority::Normal
        );
        assert!(rule_for("OrderPlaced").is_none());
    }
}
