//! End-to-end tests, one binary (link time) with a module per feature.

mod access;
mod alerts;
mod architecture;
mod audit_log;
mod bench;
mod bookings;
mod card_data;
mod closed_doors;
mod console;
mod dependencies;
mod fuzz;
mod hygiene;
mod idempotency;
mod metrics;
mod openapi;
mod operations;
mod payments;
mod privacy;
mod projections;
mod provider_faults;
mod provider_truth;
mod scenario;
mod subscriptions;
mod test_clock;
mod validation;
mod webhooks;
