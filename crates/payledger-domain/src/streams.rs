//! Stream names: which aggregate a stream of the log holds, and that aggregate's id.
//!
//! The one place that knows the prefixes. Aggregates build their stream names from
//! [`StreamKind::name`]; followers of the global log (process managers, read models, the outbox)
//! ask [`StreamKind::id_of`] or [`StreamKind::holds`] instead of matching on string prefixes, so a
//! renamed prefix cannot leave a reader that silently stops seeing its events. The architecture
//! test (`tests/it/architecture.rs`) refuses a prefix literal anywhere else.

/// The kinds of stream in the log, by the aggregate (or record) each one holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `order-{order_id}`: one payment.
    Order,
    /// `customer-{customer_id}`: billing keys.
    Customer,
    /// `subscription-{subscription_id}`.
    Subscription,
    /// `wallet-{customer_id}`: credits.
    Wallet,
    /// `claim-{claim_id}`.
    Claim,
    /// `booking-{order_id}`: the booking beside a booked order.
    Booking,
    /// `slot-{payee_id}-{start}`: who holds a provider's time slot.
    Slot,
    /// `payee-{payee_id}`: warnings and suspensions.
    Payee,
    /// `settlement-{statement_id}`: one payee's weekly statement.
    Settlement,
    /// `webhook-{provider}-{event_id}`: one inbound delivery.
    Webhook,
    /// `provider-tx-{provider}-{transaction_id}`: guards a manually recorded payment.
    ProviderTransaction,
    /// `reminders-{order_id}`: the session reminders sent for a booking.
    Reminders,
    /// `reconciliation-{provider}-{line_id}`: one provider settlement line and its flags.
    Reconciliation,
}

impl StreamKind {
    pub const ALL: [StreamKind; 13] = [
        StreamKind::Order,
        StreamKind::Customer,
        StreamKind::Subscription,
        StreamKind::Wallet,
        StreamKind::Claim,
        StreamKind::Booking,
        StreamKind::Slot,
        StreamKind::Payee,
        StreamKind::Settlement,
        StreamKind::Webhook,
        StreamKind::ProviderTransaction,
        StreamKind::Reminders,
        StreamKind::Reconciliation,
    ];

    /// The prefix every stream of this kind starts with, dash included.
    pub const fn prefix(self) -> &'static str {
        match self {
            StreamKind::Order => "order-",
            StreamKind::Customer => "customer-",
            StreamKind::Subscription => "subscription-",
            StreamKind::Wallet => "wallet-",
            StreamKind::Claim => "claim-",
            StreamKind::Booking => "booking-",
            StreamKind::Slot => "slot-",
            StreamKind::Payee => "payee-",
            StreamKind::Settlement => "settlement-",
            StreamKind::Webhook => "webhook-",
            StreamKind::ProviderTransaction => "provider-tx-",
            StreamKind::Reminders => "reminders-",
            StreamKind::Reconciliation => "reconciliation-",
        }
    }

    /// The stream of this kind for `id`.
    pub fn name(self, id: impl std::fmt::Display) -> String {
        format!("{}{id}", self.prefix())
    }

    /// The id in `stream` when the stream is of this kind.
    pub fn id_of(self, stream: &str) -> Option<&str> {
        stream.strip_prefix(self.prefix())
    }

    /// Whether `stream` is of this kind.
    pub fn holds(self, stream: &str) -> bool {
        stream.starts_with(self.prefix())
    }

    /// The kind of `stream`, if it is an aggregate's stream (not `ops-switches` or `audit-admin`).
    pub fn of(stream: &str) -> Option<StreamKind> {
        StreamKind::ALL.into_iter().find(|kind| kind.holds(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::StreamKind;

    #[test]
    fn no_prefix_is_the_start_of_another() {
        // `of` takes the first kind whose prefix matches: that is only right while no prefix
        // starts another one.
        for a in StreamKind::ALL {
            for b in StreamKind::ALL {
                if a != b {
                    assert!(!b.prefix().starts_with(a.prefix()), "{a:?} shadows {b:?}");
                }
            }
        }
    }

    #[test]
    fn a_name_parses_back_to_its_kind_and_id() {
        for kind in StreamKind::ALL {
            let stream = kind.name("abc-1");
            assert_eq!(StreamKind::of(&stream), Some(kind));
            assert_eq!(kind.id_of(&stream), Some("abc-1"));
        }
        assert_eq!(StreamKind::of("audit-admin"), None);
        assert_eq!(StreamKind::Order.id_of("claim-1"), None);
    }
}
