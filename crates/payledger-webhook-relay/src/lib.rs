//! Webhooks in and out, around the pure signature code of `payledger-webhooks`.
//!
//! **In** ([`Relay::accept`], [`InboundWorker`]): `POST /v1/webhooks/{provider}` hands the raw
//! body and headers to [`Relay::accept`], which verifies them with the provider's real scheme
//! (timestamp tolerance, two secrets during rotation, constant-time comparison), stores the raw
//! delivery in `webhook_inbox` (unique per provider and event id, so a redelivery is answered
//! 2xx and has no second effect) and returns at once. Refusals are counted in metrics and in
//! `webhook_rejections`. The [`InboundWorker`] inside `serve` then applies each delivery,
//! retrying on the Standard Webhooks schedule and dead-lettering after the last attempt; an
//! admin replays dead letters ([`Relay::replay_inbound`]). Every step is an event in stream
//! `webhook-{provider}-{event_id}` (see `payledger_domain::webhook`), which the orders read model
//! shows in the timeline of the order concerned.
//!
//! Toss payment-status webhooks are unsigned: their body is only a prompt. The worker re-fetches
//! the payment from the provider ([`toss`]) and acts on that answer alone. Stripe's webhooks are
//! signed and still not trusted: the Stripe connector re-fetches the object each event names
//! (`PaymentGateway::recheck_webhook`) and the worker acts on that (`rechecked`): payments
//! waiting on 3-D Secure settle, dashboard refunds and disputes are recorded on the order.
//!
//! Paddle notifications are signed, and still only name what to look at: the worker asks
//! Paddle's API for the subscription and its transactions ([`paddle`]) and records what that
//! says on the subscription Paddle bills.
//!
//! **Out** ([`OutboxProjection`], [`NotificationSender`]): a follower of the global log, run by
//! the projector runtime like a read model, puts one row per notifiable event and endpoint into
//! `webhook_outbox` in the transaction that moves its checkpoint (exactly once into the outbox).
//! The sender delivers each row as a Standard Webhook (`webhook-id` = the event id, stable across
//! retries), retrying on the Standard Webhooks schedule, at least once, dead-lettering after the
//! last attempt. Which events notify, as what type and with which priority, is one table:
//! [`notifications::NOTIFICATIONS`].

mod applied;
pub mod config;
mod deliveries;
pub mod inbox;
pub mod intake;
pub mod notifications;
pub mod outbox;
pub mod paddle;
mod paddle_adjustments;
pub mod processor;
pub mod provider;
mod rechecked;
pub mod sender;
pub mod toss;

pub use config::{InboundConfig, OutboundConfig, RetryPolicy, WebhookSettings};
pub use inbox::{AcceptError, Accepted, InboundDeadLetter, Relay, ReplayError};
pub use outbox::{OutboundDeadLetter, OutboxProjection, OUTBOX_PROJECTION_NAME};
pub use paddle::PaddleApplier;
pub use processor::InboundWorker;
pub use provider::Provider;
pub use sender::NotificationSender;

/// Errors and descriptions stored or logged are cut to this many characters.
pub(crate) const MAX_ERROR_CHARS: usize = 300;

pub(crate) fn short(text: impl std::fmt::Display) -> String {
    text.to_string().chars().take(MAX_ERROR_CHARS).collect()
}
