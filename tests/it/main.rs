//! End-to-end tests, one binary (link time) with a module per feature.

mod access;
mod audit_log;
mod bench;
mod bookings;
mod console;
mod fuzz;
mod idempotency;
mod metrics;
mod openapi;
mod operations;
mod payments;
mod projections;
mod provider_faults;
mod subscriptions;
mod validation;
mod webhooks;
