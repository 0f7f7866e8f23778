//! End-to-end tests, one binary (link time) with a module per feature.

mod access;
mod audit_log;
mod bench;
mod bookings;
mod fuzz;
mod idempotency;
mod metrics;
mod openapi;
mod operations;
mod payments;
mod projections;
mod provider_faults;
mod provider_truth;
mod stripe;
mod subscriptions;
mod validation;
mod webhooks;
