//! Erasure of a data subject's personal fields (crypto-shredding, docs/events.md). The fields
//! themselves are sealed outside the domain (payledger-app's `privacy`); the log records that,
//! when and by whom a subject was erased.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The stream of a customer's erasures: `privacy-customer-{customer_id}`.
pub fn customer_stream(customer_id: &str) -> String {
    subject_stream("customer", customer_id)
}

/// The stream of a subject's erasures: `privacy-{kind}-{id}` (`customer`, `payee`).
pub fn subject_stream(kind: &str, id: &str) -> String {
    format!("privacy-{kind}-{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivacyEvent {
    SubjectErased(SubjectErased),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectErased {
    /// `customer` or `payee`.
    pub subject_type: String,
    pub subject_id: String,
    /// How many subject keys were destroyed (0: asked again, or the subject had no sealed data).
    pub keys_destroyed: u64,
    /// Why (a request, the retention period, …); never personal data itself.
    pub reason: String,
    pub at: DateTime<Utc>,
}
