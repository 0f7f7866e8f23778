//! End-to-end tests, one binary (link time) with a module per feature.

mod access;
mod alerts;
mod architecture;
mod audit_log;
mod bench;
mod bookings;
mod card_data;
mod closed_doors;
mod dependencies;
mod fuzz;
mod hygiene;
mod idempotency;
mod metrics;
mod openapi;
mod operations;
mod payments;
mod projections;
mod provider_faults;
mod provider_truth;
mod scenario;
mod stripe;
mod subscriptions;
mod test_clock;
mod validation;
mod webhooks;
