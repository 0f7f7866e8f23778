//! The ledger's rules: money, identifiers, aggregates, commands and events.
//!
//! This crate does no IO. It knows nothing about SQL, HTTP or payment providers: aggregates are
//! rebuilt from events handed to them and answer commands with new events, so every rule here is
//! testable in memory with cqrs-es's given/when/then framework.

pub mod billing;
pub mod booking;
pub mod card_numbers;
pub mod claim;
pub mod codec;
pub mod customer;
pub mod id_limits;
pub mod ids;
pub mod journal;
pub mod money;
pub mod operations;
pub mod order;
pub mod payee;
pub mod privacy;
pub mod provider_billed;
pub mod provider_fact;
pub mod provider_failure;
pub mod provider_refund;
pub mod reconciliation;
pub mod refund_policy;
pub mod reminder;
pub mod settlement;
pub mod slot;
pub mod streams;
pub mod subscription;
pub mod wallet;
pub mod webhook;
