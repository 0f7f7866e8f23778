//! What applying one inbound delivery came to: below both the worker (`processor`), which
//! records it, and the provider-specific appliers (`toss`), which produce it.

use payledger_domain::ids::OrderId;
use payledger_domain::webhook::{ProviderStateDiffers, WebhookOutcome, WebhookVerified};

/// A delivery applied: what to record.
pub(crate) struct Applied {
    pub order_id: Option<String>,
    pub verified: Option<WebhookVerified>,
    pub differs: Option<ProviderStateDiffers>,
    pub outcome: WebhookOutcome,
    pub detail: String,
}

/// An attempt that failed: transient ones are retried, permanent ones dead-lettered at once.
#[derive(Debug)]
pub(crate) struct Failure {
    pub order_id: Option<String>,
    pub error: String,
    pub permanent: bool,
}

impl Failure {
    pub fn transient(order_id: Option<&OrderId>, error: impl Into<String>) -> Failure {
        Failure {
            order_id: order_id.map(ToString::to_string),
            error: error.into(),
            permanent: false,
        }
    }

    pub fn permanent(order_id: Option<&OrderId>, error: impl Into<String>) -> Failure {
        Failure {
            order_id: order_id.map(ToString::to_string),
            error: error.into(),
            permanent: true,
        }
    }
}
