//! Who is asking, carried from the edge into every event's metadata.

use payledger_store::EventMetadata;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// `client:NAME`, `admin:NAME`, `system:reconciler`, …
    pub actor: String,
    pub request_id: Option<String>,
    pub correlation_id: Uuid,
}

impl RequestContext {
    pub fn new(actor: impl Into<String>, request_id: Option<String>) -> RequestContext {
        RequestContext {
            actor: actor.into(),
            request_id,
            correlation_id: Uuid::now_v7(),
        }
    }

    /// Work payledger does by itself (reconciler, scheduler, process managers).
    pub fn system(component: &str) -> RequestContext {
        RequestContext::new(format!("system:{component}"), None)
    }

    pub fn metadata(&self) -> EventMetadata {
        EventMetadata {
            correlation_id: Some(self.correlation_id),
            causation_id: None,
            request_id: self.request_id.clone(),
            actor: Some(self.actor.clone()),
        }
    }
}
