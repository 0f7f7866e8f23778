//! The application layer: commands in, events out, provider calls in between.
//!
//! This crate knows the event store and the gateway trait, and nothing about HTTP or the read
//! models. Each flow records its intent before it calls the provider and its outcome after, so a
//! crash anywhere leaves something the reconciler can finish.

pub mod api_keys;
pub mod billing_key_cipher;
pub mod booking_confirmations;
pub mod booking_schedule;
pub mod bookings;
pub mod claims;
pub mod clock;
pub mod console_sessions;
pub mod context;
pub mod executor;
pub mod operations;
pub mod payments;
pub mod privacy;
pub mod processes;
pub mod reconciliation;
pub mod reminders;
pub mod scenario_clock;
pub mod settlements;
pub mod subscriptions;
pub mod switches;
pub mod tokens;
