//! `payledger bench`: the measurements payledger's performance claims rest on.
//!
//! - [`load`] drives the HTTP API with N concurrent clients through place-order + confirm-payment
//!   and reports commands/s and latency quantiles.
//! - [`rebuild`] fills a store with realistic events (or reuses one it filled before) and times
//!   a rebuild of every read model.
//!
//! Figures come from these benchmarks, never from timed assertions in tests.

pub mod load;
pub mod rebuild;
