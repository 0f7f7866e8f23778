//! Behaviour of payledger-webhooks, driven through its public API only.
//!
//! Expected signatures are computed in `support` with `hmac` + `sha2` directly, following each
//! provider's published recipe, so a mistake in the crate's message construction cannot hide
//! behind the same mistake in the tests.

mod malformed;
mod paddle;
mod priority;
mod properties;
mod rotation;
mod schedule;
mod signing;
mod standard_webhooks;
mod stripe;
mod support;
mod tolerance;
mod toss;
