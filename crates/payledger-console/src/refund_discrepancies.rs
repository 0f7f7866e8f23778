//! Refunds under review on the order page: each refund whose request the provider reports
//! differently (`RefundDiscrepancyRecorded`), what the ledger expected against what the provider
//! said and when, and for admins the form that resolves it with a note
//! (`POST /v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve`, the API's own handler:
//! its note rules, its codes, its `audit-admin` record).
//!
//! What is open comes from the order's state (the log, as the API answers it); when it was
//! recorded, and who resolved it with which note, from the order's timeline.

use crate::actions::{self, Route};
use crate::pages::Time;
use crate::session::Refusal;
use crate::Console;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payledger_domain::ids::RefundId;
use payledger_domain::order::{DiscrepancyResolution, RefundState};
use payledger_http::refund_discrepancies as api;
use payledger_read_models::orders::TimelineEntry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;

pub const RESOLVE: Route =
    Route::post("/v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve");

/// One fact the provider reports differently: `amount`, 1000 expected, 999 reported.
pub struct DifferenceRow {
    pub fact: String,
    pub expected: String,
    pub provider: String,
}

/// How an admin resolved it, as the timeline tells.
pub struct ResolutionView {
    pub resolution: String,
    pub resolved_by: String,
    pub note: String,
    pub at: Option<Time>,
}

/// A refund whose provider request differs from it, open or resolved.
pub struct DiscrepancyView {
    pub refund_id: String,
    pub provider_refund_id: String,
    /// The request's status as the provider reported it (`approved`, `rejected`).
    pub provider_status: String,
    pub differences: Vec<DifferenceRow>,
    /// When the difference was recorded (the newest `RefundDiscrepancyRecorded` of the refund
    /// on the timeline; empty while the timeline has not caught up).
    pub recorded: Option<Time>,
    /// `open`, `resolved`, or `closed` (the provider's later fact completed or failed it).
    pub state: &'static str,
    /// Set when `state` is `resolved` and the timeline holds the resolution.
    pub resolution: Option<ResolutionView>,
    /// The form's action, for an admin while it is open.
    pub resolve_action: String,
}

fn at_of(payload: &serde_json::Value, zone: chrono_tz::Tz) -> Option<Time> {
    payload
        .get("at")
        .and_then(|v| v.as_str())
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|t| Time::new(t, zone))
}

fn text_of(payload: &serde_json::Value, name: &str) -> String {
    payload
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The events [`views`] reads from the timeline.
const DISCREPANCY_EVENTS: [&str; 2] = ["RefundDiscrepancyRecorded", "RefundDiscrepancyResolved"];
/// Timeline pages read at most past the order page's own when looking for [`DISCREPANCY_EVENTS`]
/// (at 200 entries a page, 10 000 events: far beyond any order).
const MORE_TIMELINE_PAGES: usize = 50;

/// The discrepancy events of the order's timeline after `shown`, the first entries the order
/// page shows (at most `page_limit`), read with `next_page` (the page after a position) when
/// `shown` is a full page and a refund carries a discrepancy; empty otherwise. [`views`] takes
/// the newest difference and resolution of each refund from the timeline: from a cut one it
/// would show an older difference's time, or an older resolution's author and note, as the
/// current ones.
pub async fn later_entries<Next, Page, E>(
    shown: &[TimelineEntry],
    page_limit: i64,
    has_discrepancy: bool,
    mut next_page: Next,
) -> Result<Vec<TimelineEntry>, E>
where
    Next: FnMut(i64) -> Page,
    Page: Future<Output = Result<Vec<TimelineEntry>, E>>,
{
    let mut later = Vec::new();
    if !has_discrepancy {
        return Ok(later);
    }
    let mut full = shown.len() as i64 >= page_limit;
    let mut after = shown.last().map(|e| e.global_position);
    for _ in 0..MORE_TIMELINE_PAGES {
        let Some(position) = after.filter(|_| full) else {
            break;
        };
        let page = next_page(position).await?;
        full = page.len() as i64 >= page_limit;
        after = page.last().map(|e| e.global_position);
        later.extend(
            page.into_iter()
                .filter(|e| DISCREPANCY_EVENTS.contains(&e.event_type.as_str())),
        );
    }
    Ok(later)
}

/// The order's refunds that carry a discrepancy, by refund id.
pub fn views(
    order_id: &str,
    refunds: &BTreeMap<RefundId, RefundState>,
    timeline: &[TimelineEntry],
    zone: chrono_tz::Tz,
) -> Vec<DiscrepancyView> {
    refunds
        .iter()
        .filter_map(|(refund_id, refund)| {
            let discrepancy = refund.discrepancy.as_ref()?;
            let refund_id = refund_id.to_string();
            let of_refund = |event_type: &str| {
                timeline
                    .iter()
                    .rev()
                    .filter(move |e| e.event_type == event_type)
                    .find(|e| {
                        e.payload.get("refundId").and_then(|v| v.as_str()) == Some(&refund_id)
                    })
            };
            let recorded = of_refund("RefundDiscrepancyRecorded");
            // The resolution of this discrepancy: one recorded after the newest difference.
            let resolved = of_refund("RefundDiscrepancyResolved").filter(|resolved| {
                recorded.is_none_or(|r| r.global_position < resolved.global_position)
            });
            let state = if refund.discrepancy_open() {
                "open"
            } else if refund.discrepancy_resolution.is_some() {
                "resolved"
            } else {
                "closed"
            };
            let resolution = (state == "resolved").then(|| match resolved {
                Some(e) => ResolutionView {
                    resolution: text_of(&e.payload, "resolution"),
                    resolved_by: text_of(&e.payload, "resolvedBy"),
                    note: text_of(&e.payload, "note"),
                    at: at_of(&e.payload, zone),
                },
                None => ResolutionView {
                    resolution: refund
                        .discrepancy_resolution
                        .map(DiscrepancyResolution::name)
                        .unwrap_or_default()
                        .to_string(),
                    resolved_by: String::new(),
                    note: String::new(),
                    at: None,
                },
            });
            Some(DiscrepancyView {
                resolve_action: format!(
                    "/console/orders/{}/refunds/{}/discrepancy/resolve",
                    crate::pages::encode(order_id),
                    crate::pages::encode(&refund_id)
                ),
                provider_refund_id: refund.provider_refund_id.clone().unwrap_or_default(),
                provider_status: discrepancy.provider_status.clone(),
                differences: discrepancy
                    .differences
                    .iter()
                    .map(|d| DifferenceRow {
                        fact: d.fact.name().to_string(),
                        expected: d.expected.clone(),
                        provider: d.provider.clone(),
                    })
                    .collect(),
                recorded: recorded.and_then(|e| at_of(&e.payload, zone)),
                state,
                resolution,
                refund_id,
            })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

/// Resolves a refund's open discrepancy with the admin's note, through the API's handler: the
/// note's rules (1 to 500 characters, no control characters) and the refusals (`E_INVALID_FIELD`,
/// `E_REFUND_DISCREPANCY_NOT_OPEN`) are the API's.
pub async fn resolve(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<(String, String)>,
    form: web::Form<ResolveForm>,
) -> Result<HttpResponse, Refusal> {
    let (order_id, refund_id) = path.into_inner();
    let form = form.into_inner();
    let subject = format!("{order_id} · {refund_id}");
    let page = actions::ActionPage {
        route: RESOLVE,
        section: "orders",
        label: "resolve_discrepancy",
        subject: &subject,
        details: &["status", "refundPendingAmount"],
        back: format!("/console/orders/{}", crate::pages::encode(&order_id)),
    };
    let body = api::RefundDiscrepancyResolveBody {
        resolution: DiscrepancyResolution::Acknowledged.name().to_string(),
        note: form.note,
    };
    actions::perform(&request, &console, page, &form.csrf, None, |state| {
        api::resolve(
            state,
            request.clone(),
            web::Path::from((order_id.clone(), refund_id.clone())),
            web::Json(body),
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refund(status: &str, resolution: Option<&str>) -> RefundState {
        serde_json::from_value(json!({
            "amountMinor": 1000, "reason": "changed my mind", "status": status,
            "idempotencyKey": "k", "requestedAt": "2026-12-01T00:00:00Z", "failure": null,
            "providerRefundId": "adj_1",
            "discrepancy": {"providerStatus": "rejected", "differences": [
                {"fact": "currency", "expected": "USD", "provider": "EUR"}]},
            "discrepancyResolution": resolution,
        }))
        .unwrap()
    }

    fn entry(position: i64, event_type: &str, payload: serde_json::Value) -> TimelineEntry {
        TimelineEntry {
            global_position: position,
            stream_id: "order-o-1".into(),
            stream_version: position,
            event_type: event_type.into(),
            recorded_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            actor: None,
            summary: String::new(),
            payload,
            hash_hex: String::new(),
        }
    }

    fn refunds(state: RefundState) -> BTreeMap<RefundId, RefundState> {
        BTreeMap::from([(RefundId::parse("rf_1".to_string()).unwrap(), state)])
    }

    const UTC: chrono_tz::Tz = chrono_tz::UTC;

    #[test]
    fn an_open_discrepancy_shows_what_differs_when_and_where_to_resolve_it() {
        let timeline = [entry(
            7,
            "RefundDiscrepancyRecorded",
            json!({"refundId": "rf_1", "at": "2026-12-01T09:30:00Z"}),
        )];
        let shown = views(
            "order 1",
            &refunds(refund("AWAITING_PROVIDER", None)),
            &timeline,
            UTC,
        );
        assert_eq!(shown.len(), 1);
        let d = &shown[0];
        assert_eq!((d.state, d.refund_id.as_str()), ("open", "rf_1"));
        assert_eq!(
            (d.provider_refund_id.as_str(), d.provider_status.as_str()),
            ("adj_1", "rejected")
        );
        let difference = &d.differences[0];
        assert_eq!(
            (
                difference.fact.as_str(),
                difference.expected.as_str(),
                difference.provider.as_str()
            ),
            ("currency", "USD", "EUR")
        );
        assert_eq!(d.recorded.as_ref().unwrap().iso, "2026-12-01T09:30:00.000Z");
        assert!(d.resolution.is_none());
        assert_eq!(
            d.resolve_action,
            "/console/orders/order%201/refunds/rf_1/discrepancy/resolve"
        );
    }

    #[test]
    fn a_resolution_shows_only_when_it_follows_the_newest_difference() {
        let timeline = [
            entry(
                7,
                "RefundDiscrepancyRecorded",
                json!({"refundId": "rf_1", "at": "2026-12-01T09:30:00Z"}),
            ),
            entry(
                8,
                "RefundDiscrepancyResolved",
                json!({"refundId": "rf_1", "resolution": "acknowledged",
                       "resolvedBy": "admin:ops", "note": "ticket 42",
                       "at": "2026-12-01T10:00:00Z"}),
            ),
        ];
        let resolved = views(
            "o-1",
            &refunds(refund("AWAITING_PROVIDER", Some("acknowledged"))),
            &timeline,
            UTC,
        );
        let r = resolved[0].resolution.as_ref().unwrap();
        assert_eq!(resolved[0].state, "resolved");
        assert_eq!(
            (
                r.resolution.as_str(),
                r.resolved_by.as_str(),
                r.note.as_str()
            ),
            ("acknowledged", "admin:ops", "ticket 42")
        );
        // A new difference after it: under review again, the old resolution not shown.
        let mut again = timeline.to_vec();
        again.push(entry(
            9,
            "RefundDiscrepancyRecorded",
            json!({"refundId": "rf_1", "at": "2026-12-02T00:00:00Z"}),
        ));
        let reopened = views(
            "o-1",
            &refunds(refund("AWAITING_PROVIDER", None)),
            &again,
            UTC,
        );
        assert_eq!(reopened[0].state, "open");
        assert!(reopened[0].resolution.is_none());
        assert_eq!(
            reopened[0].recorded.as_ref().unwrap().iso,
            "2026-12-02T00:00:00.000Z"
        );
    }

    #[actix_web::test]
    async fn a_long_timeline_is_read_on_for_the_newest_difference_and_resolution() {
        // The page shows the first 2 entries of a timeline of 7; a resolution (3) and the
        // newest difference after it (6) are past the page.
        let timeline: Vec<TimelineEntry> = (1..=7)
            .map(|position| match position {
                1 => entry(
                    1,
                    "RefundDiscrepancyRecorded",
                    json!({"refundId": "rf_1", "at": "2026-12-01T09:30:00Z"}),
                ),
                3 => entry(
                    3,
                    "RefundDiscrepancyResolved",
                    json!({"refundId": "rf_1", "resolution": "acknowledged",
                           "resolvedBy": "admin:old", "note": "old", "at": "2026-12-01T10:00:00Z"}),
                ),
                6 => entry(
                    6,
                    "RefundDiscrepancyRecorded",
                    json!({"refundId": "rf_1", "at": "2026-12-03T00:00:00Z"}),
                ),
                n => entry(n, "RefundRequested", json!({"refundId": "rf_1"})),
            })
            .collect();
        let shown = &timeline[..2];
        let asked = std::cell::RefCell::new(Vec::new());
        let next_page = |after: i64| {
            asked.borrow_mut().push(after);
            let page: Vec<TimelineEntry> = timeline
                .iter()
                .filter(|e| e.global_position > after)
                .take(2)
                .cloned()
                .collect();
            async move { Ok::<_, ()>(page) }
        };
        let later = later_entries(shown, 2, true, next_page).await.unwrap();
        assert_eq!(*asked.borrow(), vec![2, 4, 6], "read on until a short page");
        let positions: Vec<i64> = later.iter().map(|e| e.global_position).collect();
        assert_eq!(
            positions,
            vec![3, 6],
            "only the discrepancy events are kept"
        );
        let all: Vec<TimelineEntry> = shown.iter().cloned().chain(later).collect();
        let shown_views = views(
            "o-1",
            &refunds(refund("AWAITING_PROVIDER", None)),
            &all,
            UTC,
        );
        assert_eq!(shown_views[0].state, "open");
        assert!(
            shown_views[0].resolution.is_none(),
            "the old resolution is not the current one"
        );
        assert_eq!(
            shown_views[0].recorded.as_ref().unwrap().iso,
            "2026-12-03T00:00:00.000Z",
            "the newest difference's time"
        );
        // Nothing is read when the page holds the whole timeline or nothing is under review.
        let never = |_: i64| async { Err::<Vec<TimelineEntry>, _>("read") };
        assert!(later_entries(&timeline[..1], 2, true, never)
            .await
            .unwrap()
            .is_empty());
        assert!(later_entries(shown, 2, false, never)
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_refund_decided_since_is_closed_and_one_without_a_difference_is_not_listed() {
        let closed = views("o-1", &refunds(refund("COMPLETED", None)), &[], UTC);
        assert_eq!(closed[0].state, "closed");
        assert!(
            closed[0].recorded.is_none(),
            "the timeline has not caught up"
        );
        let mut plain = refund("AWAITING_PROVIDER", None);
        plain.discrepancy = None;
        assert!(views("o-1", &refunds(plain), &[], UTC).is_empty());
    }
}
