//! End-to-end tests, one binary (link time) with a module per feature.

mod access;
mod alerts;
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
mod scenario;
mod subscriptions;
mod test_clock;
mod validation;
mod webhooks;
