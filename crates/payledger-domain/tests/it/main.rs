//! Given/when/then specifications of the aggregates.

mod booking;
mod claim;
mod customer;
mod journal;
mod operations;
mod order;
mod order_disputes;
mod order_refund_discrepancies;
mod payee;
mod provider_billed;
mod provider_facts;
mod reconciliation;
mod reconciliation_subscriptions;
mod refund_policy;
mod settlement;
mod slot;
mod subscription;
mod wallet;
