//! The read models: projections that turn the global log into rows, and the queries over them.
//!
//! Every table here is derived: dropping it and rebuilding from position 0 gives the same rows.
//! Nothing in this crate writes events.

pub mod bookings;
pub mod claims;
mod fold;
pub mod journal;
pub mod membership;
pub mod orders;
pub mod reconciliation;
pub mod settlements;
pub mod subscriptions;

use payledger_projector::Projection;
use std::sync::Arc;

/// Every projection payledger runs, in one place: `serve` runs them all and `projections
/// rebuild NAME` looks them up here.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(orders::OrdersProjection::default()),
        Arc::new(subscriptions::SubscriptionsProjection),
        Arc::new(claims::ClaimsProjection),
        Arc::new(settlements::SettlementsProjection),
        Arc::new(journal::JournalProjection),
        Arc::new(reconciliation::ReconciliationProjection),
        Arc::new(bookings::BookingsProjection),
    ]
}

pub fn projection_named(name: &str) -> Option<Arc<dyn Projection>> {
    all_projections().into_iter().find(|p| p.name() == name)
}
