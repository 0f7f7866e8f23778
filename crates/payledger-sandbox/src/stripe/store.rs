//! The sandbox's Stripe account in memory: PaymentIntents, charges, refunds, disputes, events,
//! webhook endpoints and idempotency records.
//!
//! As for Toss, every decision runs under one mutex held by the HTTP layer, so "check, charge,
//! store the idempotent answer, queue the events" is one atomic step. Objects are kept as typed
//! records and rendered into Stripe's JSON shapes (API version [`API_VERSION`]) when answered.

use super::cards::{self, CardBehaviour, TestCard};
use super::{Operation, API_VERSION};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Stripe keeps idempotency records for at least 24 hours.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most refunds one charge may collect (a sandbox limit; Stripe states none).
const MAX_REFUNDS_PER_CHARGE: usize = 1_000;
/// Most webhook endpoints one sandbox account may have (Stripe allows 16).
const MAX_WEBHOOK_ENDPOINTS: usize = 16;
/// Most metadata keys, and their lengths, as Stripe documents them.
const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_KEY_CHARS: usize = 40;
const MAX_METADATA_VALUE_CHARS: usize = 500;
/// Largest page a list or search answers (Stripe's own maximum).
const MAX_PAGE: usize = 100;

/// An answer decided by the store.
#[derive(Debug, Clone)]
pub(crate) struct StripeReply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
    /// Whether an `Idempotency-Key` replay returns it. Stripe stores every answer of an
    /// endpoint that began executing; validation failures before that are not stored.
    pub storable: bool,
}

impl StripeReply {
    pub(crate) fn ok(body: Value) -> StripeReply {
        StripeReply {
            status: 200,
            body,
            delay: Duration::ZERO,
            storable: true,
        }
    }

    /// `{"error": {...}}` with Stripe's fields; `None` fields are left out, as Stripe does.
    pub(crate) fn error(status: u16, kind: &str, code: Option<&str>, message: &str) -> StripeReply {
        let mut error = json!({ "type": kind, "message": message });
        if let Some(code) = code {
            error["code"] = json!(code);
            error["doc_url"] = json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            ));
        }
        StripeReply {
            status,
            body: json!({ "error": error }),
            delay: Duration::ZERO,
            storable: true,
        }
    }

    /// A request refused before the endpoint began: never stored under its key.
    pub(crate) fn invalid(code: Option<&str>, message: &str) -> StripeReply {
        StripeReply {
            storable: false,
            ..StripeReply::error(400, "invalid_request_error", code, message)
        }
    }

    fn with_param(mut self, param: &str) -> StripeReply {
        self.body["error"]["param"] = json!(param);
        self
    }

    fn missing(kind: &str, id: &str, param: Option<&str>) -> StripeReply {
        let reply = StripeReply {
            status: 404,
            ..StripeReply::invalid(Some("resource_missing"), &format!("No such {kind}: '{id}'"))
        };
        match param {
            Some(param) => reply.with_param(param),
            None => reply,
        }
    }

    fn unexpected_state(message: &str) -> StripeReply {
        StripeReply::error(
            400,
            "invalid_request_error",
            Some("payment_intent_unexpected_state"),
            message,
        )
    }

    pub(crate) fn capacity_exceeded(what: &str) -> StripeReply {
        StripeReply {
            storable: false,
            ..StripeReply::error(
                503,
                "api_error",
                Some("sandbox_capacity_exceeded"),
                &format!("the sandbox holds its maximum number of {what}; reset it"),
            )
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    RequiresCapture,
    Succeeded,
    Canceled,
}

impl IntentStatus {
    fn as_str(self) -> &'static str {
        match self {
            IntentStatus::RequiresPaymentMethod => "requires_payment_method",
            IntentStatus::RequiresConfirmation => "requires_confirmation",
            IntentStatus::RequiresAction => "requires_action",
            IntentStatus::RequiresCapture => "requires_capture",
            IntentStatus::Succeeded => "succeeded",
            IntentStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StripeMovementKind {
    Charge,
    Refund,
    Dispute,
}

/// One movement of the Stripe balance, as the Stripe store made it.
pub(crate) struct StripeMovement {
    pub(crate) txn_id: String,
    pub(crate) kind: StripeMovementKind,
    pub(crate) source_id: String,
    pub(crate) intent_id: String,
    pub(crate) order_id: Option<String>,
    /// Negative for refunds and disputes.
    pub(crate) amount: i64,
    pub(crate) dispute_fee: i64,
    pub(crate) currency: String,
    pub(crate) created: i64,
}

#[derive(Debug, Clone)]
struct Intent {
    id: String,
    client_secret: String,
    amount: i64,
    currency: String,
    status: IntentStatus,
    capture_manual: bool,
    payment_method: Option<String>,
    metadata: Map<String, Value>,
    description: Option<String>,
    latest_charge: Option<String>,
    last_payment_error: Option<Value>,
    return_url: Option<String>,
    amount_received: i64,
    cancellation_reason: Option<String>,
    canceled_at: Option<i64>,
    created: i64,
}

#[derive(Debug, Clone)]
struct Charge {
    id: String,
    intent_id: String,
    amount: i64,
    amount_captured: i64,
    currency: String,
    card: &'static TestCard,
    /// `succeeded` or `failed`.
    succeeded: bool,
    captured: bool,
    failure: Option<(String, String)>,
    refund_ids: Vec<String>,
    dispute_id: Option<String>,
    metadata: Map<String, Value>,
    created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct Refund {
    id: String,
    charge_id: String,
    intent_id: String,
    amount: i64,
    currency: String,
    status: RefundStatus,
    reason: Option<String>,
    failure_reason: Option<String>,
    metadata: Map<String, Value>,
    created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DisputeStatus {
    NeedsResponse,
    UnderReview,
    Won,
    Lost,
}

impl DisputeStatus {
    fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::NeedsResponse => "needs_response",
            DisputeStatus::UnderReview => "under_review",
            DisputeStatus::Won => "won",
            DisputeStatus::Lost => "lost",
        }
    }

    fn is_closed(self) -> bool {
        matches!(self, DisputeStatus::Won | DisputeStatus::Lost)
    }
}

#[derive(Debug, Clone)]
struct Dispute {
    id: String,
    charge_id: String,
    intent_id: String,
    amount: i64,
    currency: String,
    fee: i64,
    reason: String,
    status: DisputeStatus,
    evidence_text: Option<String>,
    withdrawal_txn: String,
    reinstatement_txn: Option<String>,
    created: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub secret: String,
    /// `*` or event types.
    pub enabled_events: Vec<String>,
}

impl WebhookEndpoint {
    fn wants(&self, event_type: &str) -> bool {
        self.enabled_events
            .iter()
            .any(|wanted| wanted == "*" || wanted == event_type)
    }
}

/// One event to send to one endpoint, rendered once so the signed bytes are what is sent.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub secret: String,
    pub payload: String,
}

#[derive(Debug, Clone)]
struct IdempotencyRecord {
    scope: String,
    params: Map<String, Value>,
    status: u16,
    body: Value,
    available_at: Instant,
    stored_at: Instant,
}

/// Limits the store enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StripeLimits {
    pub max_records: usize,
    pub timeout_after_charge_delay: Duration,
}

/// Who caused a change: an API request (with its id and key) or the sandbox's "dashboard".
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The sandbox's Stripe account.
pub(crate) struct StripeStore {
    limits: StripeLimits,
    intents: HashMap<String, Intent>,
    /// Creation order, for lists (newest first when answered).
    intent_order: Vec<String>,
    charges: HashMap<String, Charge>,
    refunds: HashMap<String, Refund>,
    disputes: HashMap<String, Dispute>,
    events: HashMap<String, Value>,
    endpoints: Vec<WebhookEndpoint>,
    idempotency: HashMap<String, IdempotencyRecord>,
    /// Events decided but not yet published: `(type, object)`.
    outbox: Vec<(String, Value)>,
    /// Successful charges per `metadata[order_id]`, so tests can show one charge per order.
    charges_by_order_id: BTreeMap<String, u64>,
    attempts_by_order_id: BTreeMap<String, u64>,
    next_id: u64,
}

impl StripeStore {
    pub(crate) fn new(limits: StripeLimits) -> StripeStore {
        StripeStore {
            limits,
            intents: HashMap::new(),
            intent_order: Vec::new(),
            charges: HashMap::new(),
            refunds: HashMap::new(),
            disputes: HashMap::new(),
            events: HashMap::new(),
            endpoints: Vec::new(),
            idempotency: HashMap::new(),
            outbox: Vec::new(),
            charges_by_order_id: BTreeMap::new(),
            attempts_by_order_id: BTreeMap::new(),
            next_id: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        let endpoints = std::mem::take(&mut self.endpoints);
        *self = StripeStore::new(self.limits);
        // Endpoints are configuration, not state: a reset keeps payledger's webhook target.
        self.endpoints = endpoints;
    }

    /// Ids look like Stripe's (`pi_3P…`): a prefix, then 24 characters, unique per sandbox.
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "{prefix}_{:08}{}",
            self.next_id,
            crate::ids::random_chars(16)
        )
    }

    pub(crate) fn add_endpoint(
        &mut self,
        url: String,
        secret: Option<String>,
        enabled: Vec<String>,
    ) -> Result<WebhookEndpoint, StripeReply> {
        if self.endpoints.len() >= MAX_WEBHOOK_ENDPOINTS {
            return Err(StripeReply::invalid(
                None,
                &format!("You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} test webhook endpoints."),
            ));
        }
        let id = self.new_id("we");
        let secret = secret.unwrap_or_else(|| format!("whsec_{}", uuid::Uuid::new_v4().simple()));
        let endpoint = WebhookEndpoint {
            id,
            url,
            secret,
            enabled_events: enabled,
        };
        self.endpoints.push(endpoint.clone());
        Ok(endpoint)
    }

    // ----- idempotency -----

    pub(crate) fn replay(
        &self,
        key: &str,
        scope: &str,
        params: &Map<String, Value>,
        now: Instant,
    ) -> Option<StripeReply> {
        let record = self.idempotency.get(key)?;
        if now.duration_since(record.stored_at) > IDEMPOTENCY_TTL {
            return None;
        }
        if record.scope != scope {
            return Some(StripeReply {
                storable: false,
                ..StripeReply::error(400, "idempotency_error", None, &format!(
                    "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{scope}'). Try using a key other than '{key}' if you meant to execute a different request.",
                    record.scope
                ))
            });
        }
        if record.params != *params {
            return Some(StripeReply {
                storable: false,
                ..StripeReply::error(400, "idempotency_error", None, &format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                ))
            });
        }
        if now < record.available_at {
            return Some(StripeReply {
                storable: false,
                ..StripeReply::error(409, "invalid_request_error", Some("idempotency_key_in_use"),
                    "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): {key}. Please try again later.")
            });
        }
        Some(StripeReply {
            status: record.status,
            body: record.body.clone(),
            delay: Duration::ZERO,
            storable: false,
        })
    }

    pub(crate) fn idempotency_has_room(&self) -> bool {
        self.idempotency.len() < self.limits.max_records
    }

    pub(crate) fn remember(
        &mut self,
        key: &str,
        scope: &str,
        params: Map<String, Value>,
        reply: &StripeReply,
        now: Instant,
    ) {
        self.idempotency.insert(
            key.to_owned(),
            IdempotencyRecord {
                scope: scope.to_owned(),
                params,
                status: reply.status,
                body: reply.body.clone(),
                available_at: now + reply.delay,
                stored_at: now,
            },
        );
    }

    // ----- events -----

    fn emit(&mut self, event_type: &str, object: Value) {
        self.outbox.push((event_type.to_owned(), object));
    }

    /// Turns the queued events into stored Event objects and the deliveries they cause.
    pub(crate) fn publish(&mut self, origin: &Origin, now_unix: i64) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for (event_type, object) in std::mem::take(&mut self.outbox) {
            if self.events.len() >= self.limits.max_records {
                tracing::warn!(event_type, "sandbox event store full; event dropped");
                continue;
            }
            let id = self.new_id("evt");
            let endpoints: Vec<&WebhookEndpoint> = self
                .endpoints
                .iter()
                .filter(|endpoint| endpoint.wants(&event_type))
                .collect();
            let event = json!({
                "id": id,
                "object": "event",
                "api_version": API_VERSION,
                "created": now_unix,
                "data": { "object": object },
                "livemode": false,
                "pending_webhooks": endpoints.len(),
                "request": {
                    "id": origin.request_id,
                    "idempotency_key": origin.idempotency_key,
                },
                "type": event_type,
            });
            let payload = event.to_string();
            for endpoint in endpoints {
                deliveries.push(Delivery {
                    event_id: id.clone(),
                    event_type: event_type.clone(),
                    url: endpoint.url.clone(),
                    secret: endpoint.secret.clone(),
                    payload: payload.clone(),
                });
            }
            self.events.insert(id, event);
        }
        deliveries
    }

    // ----- rendering -----

    fn render_intent(&self, intent: &Intent, expand: &[String]) -> Value {
        let latest_charge = match &intent.latest_charge {
            Some(charge_id) if expand.iter().any(|e| e == "latest_charge") => {
                let nested: Vec<String> = expand
                    .iter()
                    .filter_map(|e| e.strip_prefix("latest_charge.").map(str::to_owned))
                    .collect();
                self.charges
                    .get(charge_id)
                    .map_or(Value::Null, |charge| self.render_charge(charge, &nested))
            }
            Some(charge_id) => json!(charge_id),
            None => Value::Null,
        };
        let next_action = (intent.status == IntentStatus::RequiresAction).then(|| {
            match &intent.return_url {
                Some(return_url) => json!({
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": format!("https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={}", intent.id),
                        "return_url": return_url,
                    },
                }),
                None => json!({
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {
                        "type": "three_d_secure_redirect",
                        "stripe_js": format!("https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={}", intent.id),
                    },
                }),
            }
        });
        let amount_capturable = match (intent.status, &intent.latest_charge) {
            (IntentStatus::RequiresCapture, Some(_)) => intent.amount,
            _ => 0,
        };
        json!({
            "id": intent.id,
            "object": "payment_intent",
            "amount": intent.amount,
            "amount_capturable": amount_capturable,
            "amount_received": intent.amount_received,
            "canceled_at": intent.canceled_at,
            "cancellation_reason": intent.cancellation_reason,
            "capture_method": if intent.capture_manual { "manual" } else { "automatic" },
            "client_secret": intent.client_secret,
            "confirmation_method": "automatic",
            "created": intent.created,
            "currency": intent.currency,
            "customer": null,
            "description": intent.description,
            "last_payment_error": intent.last_payment_error,
            "latest_charge": latest_charge,
            "livemode": false,
            "metadata": intent.metadata,
            "next_action": next_action,
            "payment_method": intent.payment_method,
            "payment_method_types": ["card"],
            "status": intent.status.as_str(),
        })
    }

    fn amount_refunded(&self, charge: &Charge) -> i64 {
        charge
            .refund_ids
            .iter()
            .filter_map(|id| self.refunds.get(id))
            .filter(|refund| refund.status != RefundStatus::Failed)
            .map(|refund| refund.amount)
            .sum()
    }

    fn render_charge(&self, charge: &Charge, expand: &[String]) -> Value {
        let amount_refunded = self.amount_refunded(charge);
        let mut rendered = json!({
            "id": charge.id,
            "object": "charge",
            "amount": charge.amount,
            "amount_captured": charge.amount_captured,
            "amount_refunded": amount_refunded,
            "balance_transaction": if charge.captured { Value::String(format!("txn_{}", &charge.id[3..])) } else { Value::Null },
            "captured": charge.captured,
            "created": charge.created,
            "currency": charge.currency,
            "disputed": charge.dispute_id.is_some(),
            "failure_code": charge.failure.as_ref().map(|(code, _)| code.clone()),
            "failure_message": charge.failure.as_ref().map(|(_, message)| message.clone()),
            "livemode": false,
            "metadata": charge.metadata,
            "paid": charge.succeeded,
            "payment_intent": charge.intent_id,
            "payment_method": charge.card.id,
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": charge.card.brand,
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "funding": charge.card.funding,
                    "last4": charge.card.last4,
                },
            },
            "refunded": charge.captured && amount_refunded >= charge.amount_captured,
            "status": if charge.succeeded { "succeeded" } else { "failed" },
        });
        if expand.iter().any(|e| e == "refunds") {
            let data: Vec<Value> = charge
                .refund_ids
                .iter()
                .rev()
                .filter_map(|id| self.refunds.get(id))
                .map(render_refund)
                .collect();
            rendered["refunds"] = json!({
                "object": "list",
                "data": data,
                "has_more": false,
                "total_count": charge.refund_ids.len(),
                "url": format!("/v1/charges/{}/refunds", charge.id),
            });
        }
        rendered
    }

    fn render_dispute(&self, dispute: &Dispute) -> Value {
        let mut balance_transactions = vec![json!({
            "id": dispute.withdrawal_txn,
            "object": "balance_transaction",
            "amount": -dispute.amount,
            "currency": dispute.currency,
            "fee": dispute.fee,
            "fee_details": [{
                "amount": dispute.fee,
                "currency": dispute.currency,
                "description": "Dispute fee",
                "type": "stripe_fee",
            }],
            "net": -dispute.amount - dispute.fee,
            "reporting_category": "dispute",
            "type": "adjustment",
        })];
        if let Some(txn) = &dispute.reinstatement_txn {
            balance_transactions.push(json!({
                "id": txn,
                "object": "balance_transaction",
                "amount": dispute.amount,
                "currency": dispute.currency,
                "fee": 0,
                "fee_details": [],
                "net": dispute.amount,
                "reporting_category": "dispute_reversal",
                "type": "adjustment",
            }));
        }
        json!({
            "id": dispute.id,
            "object": "dispute",
            "amount": dispute.amount,
            "balance_transactions": balance_transactions,
            "charge": dispute.charge_id,
            "created": dispute.created,
            "currency": dispute.currency,
            "evidence": { "uncategorized_text": dispute.evidence_text },
            "evidence_details": {
                "due_by": dispute.created + 7 * 24 * 3600,
                "has_evidence": dispute.evidence_text.is_some(),
                "past_due": false,
                "submission_count": u8::from(dispute.evidence_text.is_some()),
            },
            "is_charge_refundable": false,
            "livemode": false,
            "metadata": {},
            "payment_intent": dispute.intent_id,
            "reason": dispute.reason,
            "status": dispute.status.as_str(),
        })
    }

    /// Every movement of the Stripe balance (captured charges, succeeded refunds, disputes'
    /// withdrawals), for the payouts and balance transactions ([`crate::settlements`]).
    pub(crate) fn balance_movements(&self) -> Vec<StripeMovement> {
        let order_of = |intent_id: &str| self.intents.get(intent_id).and_then(order_id_of);
        let mut movements = Vec::new();
        for charge in self.charges.values().filter(|c| c.succeeded && c.captured) {
            movements.push(StripeMovement {
                txn_id: format!("txn_{}", &charge.id[3..]),
                kind: StripeMovementKind::Charge,
                source_id: charge.id.clone(),
                intent_id: charge.intent_id.clone(),
                order_id: order_of(&charge.intent_id),
                amount: charge.amount_captured,
                dispute_fee: 0,
                currency: charge.currency.clone(),
                created: charge.created,
            });
        }
        for refund in self
            .refunds
            .values()
            .filter(|r| r.status == RefundStatus::Succeeded)
        {
            movements.push(StripeMovement {
                txn_id: format!("txn_{}", &refund.id[3..]),
                kind: StripeMovementKind::Refund,
                source_id: refund.id.clone(),
                intent_id: refund.intent_id.clone(),
                order_id: order_of(&refund.intent_id),
                amount: -refund.amount,
                dispute_fee: 0,
                currency: refund.currency.clone(),
                created: refund.created,
            });
        }
        for dispute in self.disputes.values() {
            movements.push(StripeMovement {
                txn_id: dispute.withdrawal_txn.clone(),
                kind: StripeMovementKind::Dispute,
                source_id: dispute.id.clone(),
                intent_id: dispute.intent_id.clone(),
                order_id: order_of(&dispute.intent_id),
                amount: -dispute.amount,
                dispute_fee: dispute.fee,
                currency: dispute.currency.clone(),
                created: dispute.created,
            });
        }
        movements.sort_by(|a, b| (a.created, &a.txn_id).cmp(&(b.created, &b.txn_id)));
        movements
    }

    // ----- operations -----

    /// Decides one operation. Errors are answers too (Stripe's error objects).
    pub(crate) fn execute(
        &mut self,
        operation: &Operation,
        params: &Map<String, Value>,
        now_unix: i64,
    ) -> StripeReply {
        let expand = match expand_list(params) {
            Ok(expand) => expand,
            Err(reply) => return reply,
        };
        let result = match operation {
            Operation::CreateIntent => self.create_intent(params, &expand, now_unix),
            Operation::RetrieveIntent(id) => self.retrieve_intent(id, &expand),
            Operation::ConfirmIntent(id) => self.confirm_intent(id, params, &expand, now_unix),
            Operation::CaptureIntent(id) => self.capture_intent(id, params, &expand),
            Operation::CancelIntent(id) => self.cancel_intent(id, params, &expand, now_unix),
            Operation::ListIntents => self.list_intents(params, &expand),
            Operation::SearchIntents => self.search_intents(params, &expand),
            Operation::RetrieveCharge(id) => self
                .charges
                .get(id)
                .map(|charge| StripeReply::ok(self.render_charge(charge, &expand)))
                .ok_or_else(|| StripeReply::missing("charge", id, Some("id"))),
            Operation::CreateRefund => self.create_refund(params, now_unix),
            Operation::RetrieveRefund(id) => self
                .refunds
                .get(id)
                .map(|refund| StripeReply::ok(render_refund(refund)))
                .ok_or_else(|| StripeReply::missing("refund", id, Some("id"))),
            Operation::ListRefunds => self.list_refunds(params),
            Operation::RetrieveDispute(id) => self
                .disputes
                .get(id)
                .map(|dispute| StripeReply::ok(self.render_dispute(dispute)))
                .ok_or_else(|| StripeReply::missing("dispute", id, Some("dispute"))),
            Operation::ListDisputes => self.list_disputes(params),
            Operation::UpdateDispute(id) => self.update_dispute(id, params),
            Operation::CloseDispute(id) => self.close_dispute(id, DisputeStatus::Lost, None),
            Operation::RetrieveEvent(id) => self
                .events
                .get(id)
                .map(|event| StripeReply::ok(event.clone()))
                .ok_or_else(|| StripeReply::missing("event", id, Some("id"))),
            Operation::CreateWebhookEndpoint => self.create_webhook_endpoint(params, now_unix),
            Operation::SandboxAuthenticate(id) => self.authenticate(id, params, now_unix),
            Operation::SandboxDashboardRefund(id) => self.dashboard_refund(id, params, now_unix),
            Operation::SandboxOpenDispute(id) => self.open_dispute_route(id, params, now_unix),
            Operation::SandboxSettleRefund(id) => self.settle_refund(id, params),
            Operation::SandboxStats => Ok(StripeReply::ok(self.stats())),
        };
        result.unwrap_or_else(|reply| reply)
    }

    pub(crate) fn stats(&self) -> Value {
        json!({
            "totalCharges": self.charges_by_order_id.values().sum::<u64>(),
            "chargesByOrderId": self.charges_by_order_id,
            "attemptsByOrderId": self.attempts_by_order_id,
            "paymentIntents": self.intents.len(),
            "refunds": self.refunds.len(),
            "disputes": self.disputes.len(),
            "events": self.events.len(),
        })
    }

    fn intent(&self, id: &str) -> Result<&Intent, StripeReply> {
        self.intents
            .get(id)
            .ok_or_else(|| StripeReply::missing("payment_intent", id, Some("intent")))
    }

    fn room_for(&self, count: usize, what: &str) -> Result<(), StripeReply> {
        if count >= self.limits.max_records {
            return Err(StripeReply::capacity_exceeded(what));
        }
        Ok(())
    }

    fn create_intent(
        &mut self,
        params: &Map<String, Value>,
        expand: &[String],
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(
            params,
            &[
                "amount",
                "currency",
                "payment_method",
                "confirm",
                "capture_method",
                "metadata",
                "description",
                "payment_method_types",
                "automatic_payment_methods",
                "return_url",
                "expand",
                "confirmation_method",
                "receipt_email",
                "statement_descriptor_suffix",
                "payment_method_options",
            ],
        )?;
        let currency = currency_param(params)?;
        let amount = amount_param(params, "amount", &currency)?.ok_or_else(|| {
            StripeReply::invalid(Some("parameter_missing"), "Missing required param: amount.")
                .with_param("amount")
        })?;
        let capture_manual = match str_param(params, "capture_method")? {
            None | Some("automatic") | Some("automatic_async") => false,
            Some("manual") => true,
            Some(other) => {
                return Err(StripeReply::invalid(
                    Some("parameter_invalid_string"),
                    &format!("Invalid capture_method: must be one of automatic, automatic_async, or manual (got {other})"),
                )
                .with_param("capture_method"))
            }
        };
        let confirm = bool_param(params, "confirm")?.unwrap_or(false);
        let payment_method = str_param(params, "payment_method")?.map(str::to_owned);
        if let Some(pm) = &payment_method {
            if cards::find(pm).is_none() {
                return Err(StripeReply::missing(
                    "PaymentMethod",
                    pm,
                    Some("payment_method"),
                ));
            }
        }
        let metadata = metadata_param(params)?;
        self.room_for(self.intents.len(), "payment intents")?;
        let id = self.new_id("pi");
        let client_secret = format!(
            "{id}_secret_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..24]
        );
        let intent = Intent {
            id: id.clone(),
            client_secret,
            amount,
            currency,
            status: if payment_method.is_some() {
                IntentStatus::RequiresConfirmation
            } else {
                IntentStatus::RequiresPaymentMethod
            },
            capture_manual,
            payment_method,
            metadata,
            description: str_param(params, "description")?.map(str::to_owned),
            latest_charge: None,
            last_payment_error: None,
            return_url: str_param(params, "return_url")?.map(str::to_owned),
            amount_received: 0,
            cancellation_reason: None,
            canceled_at: None,
            created: now,
        };
        self.intents.insert(id.clone(), intent);
        self.intent_order.push(id.clone());
        let created = self.render_intent(&self.intents[&id], &[]);
        self.emit("payment_intent.created", created);
        if confirm {
            return self.confirm_intent(&id, &Map::new(), expand, now);
        }
        Ok(StripeReply::ok(
            self.render_intent(&self.intents[&id], expand),
        ))
    }

    fn retrieve_intent(&self, id: &str, expand: &[String]) -> Result<StripeReply, StripeReply> {
        let intent = self.intent(id)?;
        Ok(StripeReply::ok(self.render_intent(intent, expand)))
    }

    fn confirm_intent(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
        expand: &[String],
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(
            params,
            &[
                "payment_method",
                "return_url",
                "expand",
                "payment_method_options",
                "receipt_email",
            ],
        )?;
        let intent = self.intent(id)?.clone();
        if !matches!(
            intent.status,
            IntentStatus::RequiresPaymentMethod
                | IntentStatus::RequiresConfirmation
                | IntentStatus::RequiresAction
        ) {
            return Err(StripeReply::unexpected_state(&format!(
                "You cannot confirm this PaymentIntent because it has a status of {}. Only a PaymentIntent with one of the following statuses may be confirmed: requires_confirmation, requires_action, requires_payment_method.",
                intent.status.as_str()
            )));
        }
        let payment_method = match str_param(params, "payment_method")? {
            Some(pm) => pm.to_owned(),
            None => intent.payment_method.clone().ok_or_else(|| {
                StripeReply::unexpected_state(
                    "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.",
                )
            })?,
        };
        let card = cards::find(&payment_method).ok_or_else(|| {
            StripeReply::missing("PaymentMethod", &payment_method, Some("payment_method"))
        })?;
        let return_url = str_param(params, "return_url")?
            .map(str::to_owned)
            .or(intent.return_url.clone());
        if let Some(order_id) = order_id_of(&intent) {
            *self.attempts_by_order_id.entry(order_id).or_insert(0) += 1;
        }
        {
            let stored = self.intents.get_mut(id).expect("looked up above");
            stored.payment_method = Some(payment_method);
            stored.return_url = return_url;
        }
        match card.behaviour {
            CardBehaviour::RequiresAction => {
                let stored = self.intents.get_mut(id).expect("looked up above");
                stored.status = IntentStatus::RequiresAction;
                stored.last_payment_error = None;
                let rendered = self.render_intent(&self.intents[id], &[]);
                self.emit("payment_intent.requires_action", rendered);
                Ok(StripeReply::ok(
                    self.render_intent(&self.intents[id], expand),
                ))
            }
            CardBehaviour::Decline {
                code,
                decline_code,
                message,
            } => Err(self.decline(id, card, code, decline_code, message, now)),
            CardBehaviour::Succeed
            | CardBehaviour::RefundsPending
            | CardBehaviour::SucceedThenDispute
            | CardBehaviour::SucceedSlowly { .. }
            | CardBehaviour::TimeoutAfterCharge => {
                self.room_for(self.charges.len(), "charges")?;
                self.charge(id, card, now);
                let mut reply = StripeReply::ok(self.render_intent(&self.intents[id], expand));
                match card.behaviour {
                    CardBehaviour::TimeoutAfterCharge => {
                        reply.delay = self.limits.timeout_after_charge_delay;
                    }
                    CardBehaviour::SucceedSlowly { delay_ms } => {
                        reply.delay = Duration::from_millis(delay_ms);
                    }
                    _ => {}
                }
                Ok(reply)
            }
        }
    }

    /// Records a successful charge on the intent and queues its events.
    fn charge(&mut self, intent_id: &str, card: &'static TestCard, now: i64) {
        let charge_id = self.new_id("ch");
        let intent = self
            .intents
            .get_mut(intent_id)
            .expect("caller looked it up");
        let captured = !intent.capture_manual;
        intent.latest_charge = Some(charge_id.clone());
        intent.last_payment_error = None;
        if captured {
            intent.status = IntentStatus::Succeeded;
            intent.amount_received = intent.amount;
        } else {
            intent.status = IntentStatus::RequiresCapture;
        }
        let charge = Charge {
            id: charge_id.clone(),
            intent_id: intent_id.to_owned(),
            amount: intent.amount,
            amount_captured: if captured { intent.amount } else { 0 },
            currency: intent.currency.clone(),
            card,
            succeeded: true,
            captured,
            failure: None,
            refund_ids: Vec::new(),
            dispute_id: None,
            metadata: intent.metadata.clone(),
            created: now,
        };
        if let Some(order_id) = order_id_of(intent) {
            *self.charges_by_order_id.entry(order_id).or_insert(0) += 1;
        }
        self.charges.insert(charge_id.clone(), charge);
        let charge_json = self.render_charge(&self.charges[&charge_id], &[]);
        self.emit("charge.succeeded", charge_json);
        let intent_json = self.render_intent(&self.intents[intent_id], &[]);
        if captured {
            self.emit("payment_intent.succeeded", intent_json);
        } else {
            self.emit("payment_intent.amount_capturable_updated", intent_json);
        }
        if card.behaviour == CardBehaviour::SucceedThenDispute && captured {
            let amount = self.charges[&charge_id].amount_captured;
            self.open_dispute(&charge_id, amount, "fraudulent", now);
        }
    }

    fn decline(
        &mut self,
        intent_id: &str,
        card: &'static TestCard,
        code: &str,
        decline_code: Option<&str>,
        message: &str,
        now: i64,
    ) -> StripeReply {
        let charge_id = self.new_id("ch");
        let intent = self
            .intents
            .get_mut(intent_id)
            .expect("caller looked it up");
        let mut error = json!({
            "type": "card_error",
            "code": code,
            "message": message,
            "charge": charge_id,
            "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
            "payment_method": { "id": card.id, "object": "payment_method", "type": "card",
                "card": { "brand": card.brand, "last4": card.last4, "funding": card.funding } },
        });
        if let Some(decline_code) = decline_code {
            error["decline_code"] = json!(decline_code);
        }
        intent.status = IntentStatus::RequiresPaymentMethod;
        intent.latest_charge = Some(charge_id.clone());
        intent.last_payment_error = Some(error.clone());
        let charge = Charge {
            id: charge_id.clone(),
            intent_id: intent_id.to_owned(),
            amount: intent.amount,
            amount_captured: 0,
            currency: intent.currency.clone(),
            card,
            succeeded: false,
            captured: false,
            failure: Some((code.to_owned(), message.to_owned())),
            refund_ids: Vec::new(),
            dispute_id: None,
            metadata: intent.metadata.clone(),
            created: now,
        };
        self.charges.insert(charge_id.clone(), charge);
        let charge_json = self.render_charge(&self.charges[&charge_id], &[]);
        self.emit("charge.failed", charge_json);
        let intent_json = self.render_intent(&self.intents[intent_id], &[]);
        self.emit("payment_intent.payment_failed", intent_json.clone());
        error["payment_intent"] = intent_json;
        StripeReply {
            status: 402,
            body: json!({ "error": error }),
            delay: Duration::ZERO,
            storable: true,
        }
    }

    fn capture_intent(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
        expand: &[String],
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["amount_to_capture", "expand", "metadata"])?;
        let intent = self.intent(id)?.clone();
        if intent.status != IntentStatus::RequiresCapture {
            return Err(StripeReply::unexpected_state(&format!(
                "This PaymentIntent could not be captured because it has a status of {}. Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
                intent.status.as_str()
            )));
        }
        let amount =
            amount_param(params, "amount_to_capture", &intent.currency)?.unwrap_or(intent.amount);
        if amount > intent.amount {
            return Err(StripeReply::error(
                400,
                "invalid_request_error",
                Some("amount_too_large"),
                "The amount_to_capture must be less than or equal to the amount_capturable.",
            )
            .with_param("amount_to_capture"));
        }
        let charge_id = intent.latest_charge.clone().unwrap_or_default();
        if let Some(charge) = self.charges.get_mut(&charge_id) {
            charge.captured = true;
            charge.amount_captured = amount;
        }
        let stored = self.intents.get_mut(id).expect("looked up above");
        stored.status = IntentStatus::Succeeded;
        stored.amount_received = amount;
        let charge_json = self.render_charge(&self.charges[&charge_id], &[]);
        self.emit("charge.captured", charge_json);
        let intent_json = self.render_intent(&self.intents[id], &[]);
        self.emit("payment_intent.succeeded", intent_json);
        Ok(StripeReply::ok(
            self.render_intent(&self.intents[id], expand),
        ))
    }

    fn cancel_intent(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
        expand: &[String],
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["cancellation_reason", "expand"])?;
        let reason = match str_param(params, "cancellation_reason")? {
            None => None,
            Some(reason @ ("duplicate" | "fraudulent" | "requested_by_customer" | "abandoned")) => Some(reason.to_owned()),
            Some(_) => return Err(StripeReply::invalid(Some("parameter_invalid_string"),
                "Invalid cancellation_reason: must be one of duplicate, fraudulent, requested_by_customer, or abandoned").with_param("cancellation_reason")),
        };
        let intent = self.intent(id)?;
        if matches!(
            intent.status,
            IntentStatus::Succeeded | IntentStatus::Canceled
        ) {
            return Err(StripeReply::unexpected_state(&format!(
                "You cannot cancel this PaymentIntent because it has a status of {}. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.",
                intent.status.as_str()
            )));
        }
        let stored = self.intents.get_mut(id).expect("looked up above");
        stored.status = IntentStatus::Canceled;
        stored.cancellation_reason = reason;
        stored.canceled_at = Some(now);
        let intent_json = self.render_intent(&self.intents[id], &[]);
        self.emit("payment_intent.canceled", intent_json);
        Ok(StripeReply::ok(
            self.render_intent(&self.intents[id], expand),
        ))
    }

    fn list_intents(
        &self,
        params: &Map<String, Value>,
        expand: &[String],
    ) -> Result<StripeReply, StripeReply> {
        known_params(
            params,
            &[
                "limit",
                "starting_after",
                "ending_before",
                "expand",
                "customer",
                "created",
            ],
        )?;
        let limit = limit_param(params)?;
        let newest_first: Vec<&String> = self.intent_order.iter().rev().collect();
        let start = match str_param(params, "starting_after")? {
            Some(after) => newest_first
                .iter()
                .position(|id| *id == after)
                .map(|at| at + 1)
                .ok_or_else(|| {
                    StripeReply::missing("payment_intent", after, Some("starting_after"))
                })?,
            None => 0,
        };
        let data: Vec<Value> = newest_first[start..]
            .iter()
            .take(limit)
            .map(|id| self.render_intent(&self.intents[*id], &expand_of_list(expand)))
            .collect();
        Ok(StripeReply::ok(json!({
            "object": "list",
            "data": data,
            "has_more": newest_first.len() > start + limit,
            "url": "/v1/payment_intents",
        })))
    }

    /// Stripe's search query language, the part a reconciler needs:
    /// `metadata['key']:'value'` and `status:'succeeded'`, joined by `AND`.
    fn search_intents(
        &self,
        params: &Map<String, Value>,
        expand: &[String],
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["query", "limit", "page", "expand"])?;
        let query = str_param(params, "query")?.ok_or_else(|| {
            StripeReply::invalid(Some("parameter_missing"), "Missing required param: query.")
                .with_param("query")
        })?;
        let clauses = parse_search(query)?;
        let limit = limit_param(params)?;
        let matching: Vec<&Intent> = self
            .intent_order
            .iter()
            .rev()
            .map(|id| &self.intents[id])
            .filter(|intent| {
                clauses.iter().all(|clause| match clause {
                    SearchClause::Metadata(key, value) => {
                        intent.metadata.get(key).and_then(Value::as_str) == Some(value.as_str())
                    }
                    SearchClause::Status(status) => intent.status.as_str() == status,
                })
            })
            .collect();
        let data: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(|intent| self.render_intent(intent, &expand_of_list(expand)))
            .collect();
        Ok(StripeReply::ok(json!({
            "object": "search_result",
            "data": data,
            "has_more": matching.len() > limit,
            "next_page": null,
            "url": "/v1/payment_intents/search",
        })))
    }

    fn refundable_charge(&self, intent_id: &str) -> Result<Charge, StripeReply> {
        let intent = self.intent(intent_id)?;
        let charge = intent
            .latest_charge
            .as_ref()
            .and_then(|id| self.charges.get(id))
            .filter(|charge| charge.succeeded && charge.captured)
            .ok_or_else(|| {
                StripeReply::error(400, "invalid_request_error", Some("charge_not_refundable"),
                    &format!("This PaymentIntent ({intent_id}) does not have a successful charge to refund."))
            })?;
        if let Some(dispute) = charge
            .dispute_id
            .as_ref()
            .and_then(|id| self.disputes.get(id))
        {
            if dispute.status != DisputeStatus::Won {
                return Err(StripeReply::error(
                    400,
                    "invalid_request_error",
                    Some("charge_disputed"),
                    &format!(
                        "Charge {} has been charged back; cannot issue a refund.",
                        charge.id
                    ),
                ));
            }
        }
        Ok(charge.clone())
    }

    fn create_refund(
        &mut self,
        params: &Map<String, Value>,
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(
            params,
            &[
                "payment_intent",
                "charge",
                "amount",
                "reason",
                "metadata",
                "expand",
            ],
        )?;
        let intent_id = match (str_param(params, "payment_intent")?, str_param(params, "charge")?) {
            (Some(intent), None) => intent.to_owned(),
            (None, Some(charge)) => self
                .charges
                .get(charge)
                .map(|charge| charge.intent_id.clone())
                .ok_or_else(|| StripeReply::missing("charge", charge, Some("charge")))?,
            (Some(_), Some(_)) => return Err(StripeReply::invalid(None, "You cannot pass both charge and payment_intent.")),
            (None, None) => return Err(StripeReply::invalid(Some("parameter_missing"), "One of the following params should be provided for this request: payment_intent or charge.")),
        };
        let reason = match str_param(params, "reason")? {
            None => None,
            Some(reason @ ("duplicate" | "fraudulent" | "requested_by_customer")) => {
                Some(reason.to_owned())
            }
            Some(_) => return Err(StripeReply::invalid(
                Some("parameter_invalid_string"),
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
            )
            .with_param("reason")),
        };
        let metadata = metadata_param(params)?;
        let currency = self.intent(&intent_id)?.currency.clone();
        let amount = amount_param(params, "amount", &currency)?;
        let refund = self.refund(&intent_id, amount, reason, metadata, now)?;
        Ok(StripeReply::ok(refund))
    }

    fn refund(
        &mut self,
        intent_id: &str,
        amount: Option<i64>,
        reason: Option<String>,
        metadata: Map<String, Value>,
        now: i64,
    ) -> Result<Value, StripeReply> {
        let charge = self.refundable_charge(intent_id)?;
        let refunded = self.amount_refunded(&charge);
        let remaining = charge.amount_captured - refunded;
        if remaining <= 0 {
            return Err(StripeReply::error(
                400,
                "invalid_request_error",
                Some("charge_already_refunded"),
                &format!("Charge {} has already been refunded.", charge.id),
            ));
        }
        let amount = amount.unwrap_or(remaining);
        if amount > remaining {
            return Err(StripeReply::error(400, "invalid_request_error", Some("amount_too_large"),
                &format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})")).with_param("amount"));
        }
        if charge.refund_ids.len() >= MAX_REFUNDS_PER_CHARGE {
            return Err(StripeReply::invalid(
                None,
                &format!(
                    "A charge may have at most {MAX_REFUNDS_PER_CHARGE} refunds in the sandbox."
                ),
            ));
        }
        self.room_for(self.refunds.len(), "refunds")?;
        let id = self.new_id("re");
        let status = if charge.card.behaviour == CardBehaviour::RefundsPending {
            RefundStatus::Pending
        } else {
            RefundStatus::Succeeded
        };
        let refund = Refund {
            id: id.clone(),
            charge_id: charge.id.clone(),
            intent_id: intent_id.to_owned(),
            amount,
            currency: charge.currency.clone(),
            status,
            reason,
            failure_reason: None,
            metadata,
            created: now,
        };
        let rendered = render_refund(&refund);
        self.refunds.insert(id.clone(), refund);
        self.charges
            .get_mut(&charge.id)
            .expect("refundable_charge found it")
            .refund_ids
            .push(id);
        self.emit("refund.created", rendered.clone());
        let charge_json = self.render_charge(&self.charges[&charge.id], &["refunds".to_owned()]);
        self.emit("charge.refunded", charge_json);
        Ok(rendered)
    }

    fn list_refunds(&self, params: &Map<String, Value>) -> Result<StripeReply, StripeReply> {
        known_params(
            params,
            &[
                "payment_intent",
                "charge",
                "limit",
                "starting_after",
                "ending_before",
                "expand",
                "created",
            ],
        )?;
        let limit = limit_param(params)?;
        let intent = str_param(params, "payment_intent")?;
        let charge = str_param(params, "charge")?;
        let mut matching: Vec<&Refund> = self
            .refunds
            .values()
            .filter(|refund| intent.is_none_or(|id| refund.intent_id == id))
            .filter(|refund| charge.is_none_or(|id| refund.charge_id == id))
            .collect();
        matching.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let data: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(|refund| render_refund(refund))
            .collect();
        Ok(StripeReply::ok(json!({
            "object": "list",
            "data": data,
            "has_more": matching.len() > limit,
            "url": "/v1/refunds",
        })))
    }

    fn list_disputes(&self, params: &Map<String, Value>) -> Result<StripeReply, StripeReply> {
        known_params(
            params,
            &[
                "payment_intent",
                "charge",
                "limit",
                "starting_after",
                "ending_before",
                "expand",
                "created",
            ],
        )?;
        let limit = limit_param(params)?;
        let intent = str_param(params, "payment_intent")?;
        let charge = str_param(params, "charge")?;
        let mut matching: Vec<&Dispute> = self
            .disputes
            .values()
            .filter(|dispute| intent.is_none_or(|id| dispute.intent_id == id))
            .filter(|dispute| charge.is_none_or(|id| dispute.charge_id == id))
            .collect();
        matching.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let data: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(|dispute| self.render_dispute(dispute))
            .collect();
        Ok(StripeReply::ok(json!({
            "object": "list",
            "data": data,
            "has_more": matching.len() > limit,
            "url": "/v1/disputes",
        })))
    }

    fn open_dispute(&mut self, charge_id: &str, amount: i64, reason: &str, now: i64) -> String {
        let id = self.new_id("dp");
        let withdrawal_txn = self.new_id("txn");
        let charge = self
            .charges
            .get_mut(charge_id)
            .expect("caller checked the charge");
        charge.dispute_id = Some(id.clone());
        let dispute = Dispute {
            id: id.clone(),
            charge_id: charge_id.to_owned(),
            intent_id: charge.intent_id.clone(),
            amount,
            currency: charge.currency.clone(),
            fee: cards::dispute_fee(&charge.currency),
            reason: reason.to_owned(),
            status: DisputeStatus::NeedsResponse,
            evidence_text: None,
            withdrawal_txn,
            reinstatement_txn: None,
            created: now,
        };
        let rendered = self.render_dispute(&dispute);
        self.disputes.insert(id.clone(), dispute);
        self.emit("charge.dispute.created", rendered.clone());
        self.emit("charge.dispute.funds_withdrawn", rendered);
        id
    }

    fn update_dispute(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["evidence", "submit", "metadata", "expand"])?;
        let dispute = self
            .disputes
            .get(id)
            .ok_or_else(|| StripeReply::missing("dispute", id, Some("dispute")))?;
        if dispute.status.is_closed() {
            return Err(StripeReply::invalid(
                None,
                &format!(
                    "This dispute is already closed ({}).",
                    dispute.status.as_str()
                ),
            ));
        }
        let text = params
            .get("evidence")
            .and_then(|evidence| evidence.get("uncategorized_text"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let submit = bool_param(params, "submit")?.unwrap_or(true);
        // Stripe's documented test evidence: these texts decide the dispute at once.
        match (text.as_deref(), submit) {
            (Some("winning_evidence"), true) => self.close_dispute(id, DisputeStatus::Won, text),
            (Some("losing_evidence"), true) => self.close_dispute(id, DisputeStatus::Lost, text),
            _ => {
                let stored = self.disputes.get_mut(id).expect("looked up above");
                if text.is_some() {
                    stored.evidence_text = text;
                }
                if submit {
                    stored.status = DisputeStatus::UnderReview;
                }
                let rendered = self.render_dispute(&self.disputes[id]);
                self.emit("charge.dispute.updated", rendered.clone());
                Ok(StripeReply::ok(rendered))
            }
        }
    }

    fn close_dispute(
        &mut self,
        id: &str,
        outcome: DisputeStatus,
        evidence: Option<String>,
    ) -> Result<StripeReply, StripeReply> {
        let dispute = self
            .disputes
            .get(id)
            .ok_or_else(|| StripeReply::missing("dispute", id, Some("dispute")))?;
        if dispute.status.is_closed() {
            return Err(StripeReply::invalid(
                None,
                &format!(
                    "This dispute is already closed ({}).",
                    dispute.status.as_str()
                ),
            ));
        }
        let reinstatement = (outcome == DisputeStatus::Won).then(|| self.new_id("txn"));
        let stored = self.disputes.get_mut(id).expect("looked up above");
        stored.status = outcome;
        if evidence.is_some() {
            stored.evidence_text = evidence;
        }
        stored.reinstatement_txn = reinstatement;
        let rendered = self.render_dispute(&self.disputes[id]);
        self.emit("charge.dispute.closed", rendered.clone());
        if outcome == DisputeStatus::Won {
            self.emit("charge.dispute.funds_reinstated", rendered.clone());
        }
        Ok(StripeReply::ok(rendered))
    }

    fn create_webhook_endpoint(
        &mut self,
        params: &Map<String, Value>,
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(
            params,
            &[
                "url",
                "enabled_events",
                "description",
                "api_version",
                "metadata",
                "expand",
            ],
        )?;
        let url = str_param(params, "url")?.ok_or_else(|| {
            StripeReply::invalid(Some("parameter_missing"), "Missing required param: url.")
                .with_param("url")
        })?;
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
            return Err(StripeReply::invalid(
                Some("url_invalid"),
                "Invalid URL: the URL must use http or https.",
            )
            .with_param("url"));
        }
        let enabled: Vec<String> = match params.get("enabled_events") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => {
                return Err(StripeReply::invalid(
                    Some("parameter_missing"),
                    "Missing required param: enabled_events.",
                )
                .with_param("enabled_events"))
            }
        };
        let endpoint = self.add_endpoint(url.to_owned(), None, enabled)?;
        Ok(StripeReply::ok(json!({
            "id": endpoint.id,
            "object": "webhook_endpoint",
            "api_version": API_VERSION,
            "created": now,
            "enabled_events": endpoint.enabled_events,
            "livemode": false,
            "secret": endpoint.secret,
            "status": "enabled",
            "url": endpoint.url,
        })))
    }

    // ----- sandbox controls: what would happen at Stripe without payledger asking -----

    /// The customer completes (or fails) 3-D Secure for an intent in `requires_action`.
    fn authenticate(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["outcome"])?;
        let intent = self.intent(id)?.clone();
        if intent.status != IntentStatus::RequiresAction {
            return Err(StripeReply::unexpected_state(&format!(
                "This PaymentIntent has a status of {}; only one in requires_action can be authenticated.",
                intent.status.as_str()
            )));
        }
        let card = intent
            .payment_method
            .as_deref()
            .and_then(cards::find)
            .ok_or_else(|| {
                StripeReply::unexpected_state("This PaymentIntent has no payment method.")
            })?;
        match str_param(params, "outcome")?.unwrap_or("succeed") {
            "succeed" => {
                self.room_for(self.charges.len(), "charges")?;
                self.charge(id, card, now);
            }
            "fail" => {
                let error = json!({
                    "type": "invalid_request_error",
                    "code": "payment_intent_authentication_failure",
                    "message": "We are unable to authenticate your payment method. Please choose a different payment method and try again.",
                    "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
                    "payment_method": { "id": card.id, "object": "payment_method", "type": "card" },
                });
                let stored = self.intents.get_mut(id).expect("looked up above");
                stored.status = IntentStatus::RequiresPaymentMethod;
                stored.last_payment_error = Some(error);
                let rendered = self.render_intent(&self.intents[id], &[]);
                self.emit("payment_intent.payment_failed", rendered);
            }
            other => {
                return Err(StripeReply::invalid(
                    None,
                    &format!("outcome must be succeed or fail, not {other}"),
                )
                .with_param("outcome"))
            }
        }
        Ok(StripeReply::ok(self.render_intent(&self.intents[id], &[])))
    }

    /// A refund made in Stripe's dashboard: no API request, so its events carry no request id.
    fn dashboard_refund(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["amount", "reason"])?;
        let currency = self.intent(id)?.currency.clone();
        let amount = amount_param(params, "amount", &currency)?;
        let reason = str_param(params, "reason")?.map(str::to_owned);
        let refund = self.refund(id, amount, reason, Map::new(), now)?;
        Ok(StripeReply::ok(refund))
    }

    fn open_dispute_route(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
        now: i64,
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["amount", "reason"])?;
        let intent = self.intent(id)?.clone();
        let charge = intent
            .latest_charge
            .as_ref()
            .and_then(|charge_id| self.charges.get(charge_id))
            .filter(|charge| charge.succeeded && charge.captured)
            .cloned()
            .ok_or_else(|| {
                StripeReply::unexpected_state(
                    "This PaymentIntent has no captured charge to dispute.",
                )
            })?;
        if charge.dispute_id.is_some() {
            return Err(StripeReply::invalid(
                None,
                &format!("Charge {} is already disputed.", charge.id),
            ));
        }
        let unrefunded = charge.amount_captured - self.amount_refunded(&charge);
        let amount = amount_param(params, "amount", &intent.currency)?.unwrap_or(unrefunded);
        if amount > unrefunded || amount <= 0 {
            return Err(StripeReply::invalid(
                None,
                &format!("A dispute amount must be between 1 and the unrefunded {unrefunded}."),
            )
            .with_param("amount"));
        }
        self.room_for(self.disputes.len(), "disputes")?;
        let reason = str_param(params, "reason")?
            .unwrap_or("fraudulent")
            .to_owned();
        let dispute_id = self.open_dispute(&charge.id, amount, &reason, now);
        Ok(StripeReply::ok(
            self.render_dispute(&self.disputes[&dispute_id]),
        ))
    }

    /// Ends a `pending` refund as `succeeded` or `failed` (Stripe's `refund.updated`).
    fn settle_refund(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
    ) -> Result<StripeReply, StripeReply> {
        known_params(params, &["outcome"])?;
        let refund = self
            .refunds
            .get(id)
            .ok_or_else(|| StripeReply::missing("refund", id, Some("id")))?;
        if refund.status != RefundStatus::Pending {
            return Err(StripeReply::invalid(
                None,
                &format!("Refund {id} is {}, not pending.", refund.status.as_str()),
            ));
        }
        let (status, failure_reason) = match str_param(params, "outcome")?.unwrap_or("succeeded") {
            "succeeded" => (RefundStatus::Succeeded, None),
            "failed" => (
                RefundStatus::Failed,
                Some("expired_or_canceled_card".to_owned()),
            ),
            other => {
                return Err(StripeReply::invalid(
                    None,
                    &format!("outcome must be succeeded or failed, not {other}"),
                )
                .with_param("outcome"))
            }
        };
        let stored = self.refunds.get_mut(id).expect("looked up above");
        stored.status = status;
        stored.failure_reason = failure_reason;
        let charge_id = stored.charge_id.clone();
        let rendered = render_refund(stored);
        self.emit("refund.updated", rendered.clone());
        if status == RefundStatus::Failed {
            self.emit("refund.failed", rendered.clone());
        }
        let charge_json = self.render_charge(&self.charges[&charge_id], &["refunds".to_owned()]);
        self.emit("charge.refund.updated", charge_json);
        Ok(StripeReply::ok(rendered))
    }
}

fn render_refund(refund: &Refund) -> Value {
    json!({
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "balance_transaction": format!("txn_{}", &refund.id[3..]),
        "charge": refund.charge_id,
        "created": refund.created,
        "currency": refund.currency,
        "failure_reason": refund.failure_reason,
        "metadata": refund.metadata,
        "payment_intent": refund.intent_id,
        "reason": refund.reason,
        "status": refund.status.as_str(),
    })
}

fn order_id_of(intent: &Intent) -> Option<String> {
    intent
        .metadata
        .get("order_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `expand[]` entries; only the ones the sandbox renders are accepted, as Stripe refuses
/// paths it cannot expand.
fn expand_list(params: &Map<String, Value>) -> Result<Vec<String>, StripeReply> {
    let Some(value) = params.get("expand") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(StripeReply::invalid(None, "Invalid array").with_param("expand"));
    };
    let mut out = Vec::new();
    for item in items {
        let path = item.as_str().unwrap_or_default();
        let known = [
            "latest_charge",
            "latest_charge.refunds",
            "refunds",
            "data.latest_charge",
            "data.latest_charge.refunds",
        ];
        if !known.contains(&path) {
            return Err(StripeReply::invalid(
                None,
                &format!("This property cannot be expanded ({path})."),
            )
            .with_param("expand"));
        }
        out.push(path.to_owned());
    }
    Ok(out)
}

/// On lists, `data.latest_charge` expands each item's `latest_charge`.
fn expand_of_list(expand: &[String]) -> Vec<String> {
    expand
        .iter()
        .filter_map(|path| path.strip_prefix("data.").map(str::to_owned))
        .collect()
}

fn known_params(params: &Map<String, Value>, known: &[&str]) -> Result<(), StripeReply> {
    match params.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(StripeReply::invalid(
            Some("parameter_unknown"),
            &format!("Received unknown parameter: {unknown}"),
        )
        .with_param(unknown)),
        None => Ok(()),
    }
}

fn str_param<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, StripeReply> {
    match params.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(StripeReply::invalid(
            Some("parameter_invalid_string"),
            &format!("Invalid string: {name}"),
        )
        .with_param(name)),
    }
}

fn bool_param(params: &Map<String, Value>, name: &str) -> Result<Option<bool>, StripeReply> {
    match str_param(params, name)? {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(StripeReply::invalid(
            Some("parameter_invalid_boolean"),
            &format!("Invalid boolean: {name}"),
        )
        .with_param(name)),
    }
}

/// A positive integer in the currency's smallest unit, within Stripe's minimum and maximum.
fn amount_param(
    params: &Map<String, Value>,
    name: &str,
    currency: &str,
) -> Result<Option<i64>, StripeReply> {
    let Some(text) = str_param(params, name)? else {
        return Ok(None);
    };
    let amount: i64 = text
        .parse()
        .ok()
        .filter(|amount| *amount > 0)
        .ok_or_else(|| {
            StripeReply::invalid(
                Some("parameter_invalid_integer"),
                &format!("Invalid positive integer: {name}"),
            )
            .with_param(name)
        })?;
    if amount > cards::MAX_AMOUNT {
        return Err(StripeReply::invalid(
            Some("amount_too_large"),
            &format!(
                "Amount must be no more than {} in the smallest currency unit.",
                cards::MAX_AMOUNT
            ),
        )
        .with_param(name));
    }
    if name == "amount"
        && amount < cards::minimum_amount(currency)
        && params.contains_key("currency")
    {
        let unit = if cards::is_zero_decimal(currency) {
            ""
        } else {
            " (in cents)"
        };
        return Err(StripeReply::invalid(
            Some("amount_too_small"),
            &format!(
                "Amount must be at least {} {}{unit}",
                cards::minimum_amount(currency),
                currency
            ),
        )
        .with_param(name));
    }
    Ok(Some(amount))
}

fn currency_param(params: &Map<String, Value>) -> Result<String, StripeReply> {
    let currency = str_param(params, "currency")?
        .ok_or_else(|| {
            StripeReply::invalid(
                Some("parameter_missing"),
                "Missing required param: currency.",
            )
            .with_param("currency")
        })?
        .to_ascii_lowercase();
    if !cards::SUPPORTED_CURRENCIES.contains(&currency.as_str()) {
        return Err(StripeReply::invalid(
            Some("parameter_invalid_string"),
            &format!(
                "Invalid currency: {currency}. The sandbox supports: {}.",
                cards::SUPPORTED_CURRENCIES.join(", ")
            ),
        )
        .with_param("currency"));
    }
    Ok(currency)
}

fn metadata_param(params: &Map<String, Value>) -> Result<Map<String, Value>, StripeReply> {
    match params.get("metadata") {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => {
            if map.len() > MAX_METADATA_KEYS {
                return Err(StripeReply::invalid(
                    None,
                    &format!("You can only specify up to {MAX_METADATA_KEYS} metadata keys."),
                )
                .with_param("metadata"));
            }
            for (key, value) in map {
                let too_long_value = value
                    .as_str()
                    .is_none_or(|v| v.chars().count() > MAX_METADATA_VALUE_CHARS);
                if key.chars().count() > MAX_METADATA_KEY_CHARS || too_long_value {
                    return Err(StripeReply::invalid(None, &format!(
                        "Metadata keys can be up to {MAX_METADATA_KEY_CHARS} characters and values up to {MAX_METADATA_VALUE_CHARS} characters."
                    )).with_param(&format!("metadata[{key}]")));
                }
            }
            Ok(map.clone())
        }
        Some(_) => Err(StripeReply::invalid(None, "Invalid object").with_param("metadata")),
    }
}

fn limit_param(params: &Map<String, Value>) -> Result<usize, StripeReply> {
    match str_param(params, "limit")? {
        None => Ok(10),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                StripeReply::invalid(
                    Some("parameter_invalid_integer"),
                    "This value must be greater than or equal to 1 and less than or equal to 100.",
                )
                .with_param("limit")
            }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SearchClause {
    Metadata(String, String),
    Status(String),
}

fn parse_search(query: &str) -> Result<Vec<SearchClause>, StripeReply> {
    let invalid = || {
        StripeReply::invalid(
            None,
            &format!("The sandbox understands metadata['key']:'value' and status:'value' clauses joined by AND; got: {query}"),
        )
        .with_param("query")
    };
    let mut clauses = Vec::new();
    for clause in query.split(" AND ") {
        let clause = clause.trim();
        let (field, value) = clause.split_once(':').ok_or_else(invalid)?;
        let value = unquote(value.trim()).ok_or_else(invalid)?;
        if field == "status" {
            clauses.push(SearchClause::Status(value));
        } else if let Some(key) = field
            .strip_prefix("metadata[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            clauses.push(SearchClause::Metadata(
                unquote(key).ok_or_else(invalid)?,
                value,
            ));
        } else {
            return Err(invalid());
        }
    }
    Ok(clauses)
}

fn unquote(text: &str) -> Option<String> {
    let quoted = (text.starts_with('\'') && text.ends_with('\''))
        || (text.starts_with('"') && text.ends_with('"'));
    (quoted && text.len() >= 2).then(|| text[1..text.len() - 1].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_queries_parse_as_stripe_writes_them() {
        assert_eq!(
            parse_search("metadata['order_id']:'o-1' AND status:\"succeeded\"").unwrap(),
            vec![
                SearchClause::Metadata("order_id".into(), "o-1".into()),
                SearchClause::Status("succeeded".into())
            ]
        );
        assert!(parse_search("amount>100").is_err());
        assert!(parse_search("metadata['x']:unquoted").is_err());
    }
}
