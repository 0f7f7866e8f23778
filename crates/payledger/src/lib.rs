//! The payledger service: how the crates are put together (`startup`), where the database comes
//! from (`database`), background jobs (`jobs`) and the operator commands (`commands`).

pub mod admin_cli;
pub mod alerts;
pub mod audit_checkpoints;
pub mod bench;
pub mod billing_jobs;
pub mod booking_cli;
pub mod booking_jobs;
pub mod clock_cli;
pub mod clock_jobs;
pub mod commands;
pub mod database;
pub mod jobs;
pub mod journal_cli;
pub mod keys;
pub mod privacy_cli;
pub mod progress_lines;
pub mod providers;
pub mod reconciliation_jobs;
pub mod replicas;
pub mod settings;
pub mod settlement_jobs;
pub mod startup;
pub mod webhook_jobs;
