//! Application-level tests against a real PostgreSQL (`payledger-testdb`) and a real sandbox
//! provider (`payledger-sandbox`). One binary, one module per feature.

mod console_sessions;
mod providers;
mod subscriptions;
mod support;
mod wallets;
