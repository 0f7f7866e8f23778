//! How urgent an outbound notification is, so the receiving product can pick channels and
//! respect quiet hours (source document 5, "예외 처리 및 알림 시스템", §5.2 알림 우선순위).

use serde::{Deserialize, Serialize};

/// Notification priority, carried in every outbound notification. Serialised lowercase
/// (`"urgent"`, `"important"`, `"normal"`, `"info"`). The channel sets are the source
/// document's; the product decides, payledger only labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Priority 1 (긴급) — push + SMS + email: a claim was filed (to both sides at once), a
    /// claim's outcome, an emergency cancellation, a **payment failed**.
    Urgent,
    /// Priority 2 (중요) — push + email: a booking awaits the payee's confirmation, a booking is
    /// confirmed, a schedule change is confirmed, the 12-hour unconfirmed-booking reminder.
    Important,
    /// Priority 3 (일반) — push + in-app: session reminders, a session note was shared, a
    /// **settlement is ready** (정산 확정).
    Normal,
    /// Priority 4 (정보) — in-app only: a new review, recommended-content updates.
    Info,
}
