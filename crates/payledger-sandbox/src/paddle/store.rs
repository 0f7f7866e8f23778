//! Paddle's objects in memory, and what each request does to them. Every change that Paddle
//! notifies about queues an event ([`PaddleStore::take_events`]) for the deliverer.
//!
//! Amounts are strings of minor units, as Paddle sends them. Paddle's fee as the merchant of
//! record is `5 % + 50` minor units of the total (rounded down; `+ 0` in zero-decimal
//! currencies), and `earnings = total − fee`.
//!
//! Paddle pays the merchant out net of its fee and the tax it remits: each completed
//! transaction's `details.payout_totals` (Paddle's shape: `subtotal`, `tax`, `total`, `fee`,
//! `earnings`, `currency_code`) goes into a payout, announced as Paddle does it — the
//! `payout.created` and `payout.paid` notifications, also in the event log (`GET /events`);
//! Paddle Billing has no payouts endpoint ([`payouts`]).

use chrono::{DateTime, Duration, Months, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

mod payouts;

use super::{
    SANDBOX_APPROVE_CARD, SANDBOX_DECLINE_CARD, SANDBOX_PRICE_BASIC_MONTHLY,
    SANDBOX_PRICE_CREDITS_100, SANDBOX_PRICE_PRO_MONTHLY, SANDBOX_PRODUCT_CREDITS,
    SANDBOX_PRODUCT_MEMBERSHIP,
};

/// A request's answer: HTTP status and the JSON body (without `meta`, which http.rs adds).
#[derive(Debug, Clone)]
pub(crate) struct PaddleReply {
    pub status: u16,
    pub body: Value,
}

impl PaddleReply {
    pub fn ok(data: Value) -> PaddleReply {
        PaddleReply {
            status: 200,
            body: json!({ "data": data }),
        }
    }

    pub fn created(data: Value) -> PaddleReply {
        PaddleReply {
            status: 201,
            body: json!({ "data": data }),
        }
    }

    /// Paddle's error object: `{"error": {type, code, detail, documentation_url}}`.
    pub fn error(status: u16, code: &str, detail: &str) -> PaddleReply {
        let kind = if status >= 500 {
            "api_error"
        } else {
            "request_error"
        };
        PaddleReply {
            status,
            body: json!({ "error": {
                "type": kind,
                "code": code,
                "detail": detail,
                "documentation_url": format!("https://developer.paddle.com/v1/errors/shared/{code}"),
            }}),
        }
    }

    fn not_found(what: &str, id: &str) -> PaddleReply {
        PaddleReply::error(404, "not_found", &format!("Entity {what} {id} not found"))
    }

    fn invalid(detail: &str) -> PaddleReply {
        PaddleReply::error(400, "bad_request", detail)
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BillingCycle {
    pub interval: String,
    pub frequency: u32,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct UnitPrice {
    pub amount: String,
    pub currency_code: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Price {
    pub id: String,
    pub product_id: String,
    pub description: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub billing_cycle: Option<BillingCycle>,
    pub trial_period: Option<Value>,
    pub tax_mode: String,
    pub unit_price: UnitPrice,
    pub status: String,
    pub custom_data: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Period {
    pub starts_at: String,
    pub ends_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Totals {
    pub subtotal: String,
    pub tax: String,
    pub total: String,
    pub fee: String,
    pub earnings: String,
    pub currency_code: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LineItem {
    pub id: String,
    pub price_id: String,
    pub quantity: u32,
    pub totals: Value,
    pub product: Value,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransactionItem {
    pub price: Price,
    pub quantity: u32,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Transaction {
    pub id: String,
    pub status: String,
    pub customer_id: Option<String>,
    pub address_id: Option<String>,
    pub business_id: Option<String>,
    pub custom_data: Option<Value>,
    pub origin: String,
    pub collection_mode: String,
    pub subscription_id: Option<String>,
    pub invoice_id: Option<String>,
    pub invoice_number: Option<String>,
    pub billing_period: Option<Period>,
    pub currency_code: String,
    pub items: Vec<TransactionItem>,
    pub details: Value,
    pub payments: Vec<Value>,
    pub created_at: String,
    pub updated_at: String,
    pub billed_at: Option<String>,
    #[serde(skip)]
    pub total_minor: i64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScheduledChange {
    pub action: String,
    pub effective_at: String,
    pub resume_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SubscriptionItem {
    pub status: String,
    pub quantity: u32,
    pub recurring: bool,
    pub created_at: String,
    pub updated_at: String,
    pub previously_billed_at: Option<String>,
    pub next_billed_at: Option<String>,
    pub price: Price,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Subscription {
    pub id: String,
    pub status: String,
    pub customer_id: String,
    pub address_id: Option<String>,
    pub business_id: Option<String>,
    pub currency_code: String,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: String,
    pub first_billed_at: String,
    pub next_billed_at: Option<String>,
    pub paused_at: Option<String>,
    pub canceled_at: Option<String>,
    pub collection_mode: String,
    pub current_billing_period: Option<Period>,
    pub billing_cycle: BillingCycle,
    pub scheduled_change: Option<ScheduledChange>,
    pub items: Vec<SubscriptionItem>,
    pub custom_data: Option<Value>,
    /// The first period's start; every period is counted from it.
    #[serde(skip)]
    pub anchor: DateTime<Utc>,
    /// The current period, 1-based.
    #[serde(skip)]
    pub period: u32,
    #[serde(skip)]
    pub period_end: DateTime<Utc>,
    #[serde(skip)]
    pub past_due_transaction: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Adjustment {
    pub id: String,
    pub action: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub transaction_id: String,
    pub subscription_id: Option<String>,
    pub customer_id: Option<String>,
    pub reason: String,
    pub credit_applied_to_balance: Option<bool>,
    pub currency_code: String,
    pub status: String,
    pub items: Vec<Value>,
    pub totals: Totals,
    pub payout_totals: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub total_minor: i64,
}

/// A notification waiting to be sent: Paddle's event envelope.
#[derive(Debug, Clone)]
pub(crate) struct PendingEvent {
    pub event_id: String,
    pub event_type: String,
    pub body: String,
}

pub(crate) struct PaddleStore {
    prices: BTreeMap<String, Price>,
    products: BTreeMap<String, Value>,
    customers: BTreeMap<String, Value>,
    transactions: BTreeMap<String, Transaction>,
    subscriptions: BTreeMap<String, Subscription>,
    adjustments: BTreeMap<String, Adjustment>,
    /// Every event sent, by notification id, for `POST /notifications/{id}/replay`.
    sent: BTreeMap<String, PendingEvent>,
    pending: Vec<PendingEvent>,
    max_records: usize,
    clock: Option<crate::SandboxClock>,
    /// Planted settlement faults by transaction id (`crate::settlements`), shared with the
    /// Toss and Stripe desk and kept across a reset of the store (the desk clears them).
    settlement_faults: crate::settlements::SharedFaults,
    /// Payouts by balance day and currency ([`payouts`]).
    payouts: BTreeMap<(chrono::NaiveDate, String), payouts::SandboxPayout>,
    /// Every event notified, oldest first, for `GET /events` (Paddle's event log).
    event_log: Vec<Value>,
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `prefix_` + 26 characters of Paddle's alphabet, as Paddle's ids (`txn_01h04vsbhqc62t8hmd4z3b578c`).
fn new_id(prefix: &str) -> String {
    format!("{prefix}_01{}", crate::ids::random_chars(24))
}

/// The most periods of one subscription a renewal sweep bills (after a long move of the clock).
pub const MAX_RENEWALS_PER_SWEEP: usize = 36;

/// Days from a transaction's billing to the payout that pays it, in the sandbox.
pub const PAYOUT_DELAY_DAYS: u64 = 2;

/// Minor-unit decimals of Paddle's zero-decimal currencies that payledger settles in.
fn zero_decimal(currency: &str) -> bool {
    matches!(currency, "KRW" | "JPY")
}

/// Paddle's fee as the merchant of record, in the sandbox: 5 % + 50 minor units (0 for
/// zero-decimal currencies), never above the total.
pub(crate) fn fee_minor(total_minor: i64, currency: &str) -> i64 {
    let fixed = if zero_decimal(currency) { 0 } else { 50 };
    (total_minor * 5 / 100 + fixed).min(total_minor)
}

fn totals(total_minor: i64, currency: &str) -> Totals {
    let fee = fee_minor(total_minor, currency);
    Totals {
        subtotal: total_minor.to_string(),
        tax: "0".to_owned(),
        total: total_minor.to_string(),
        fee: fee.to_string(),
        earnings: (total_minor - fee).to_string(),
        currency_code: currency.to_owned(),
    }
}

/// The chargeback fee Paddle passes on to the merchant, in the sandbox: 1 500 minor units
/// (0 in zero-decimal currencies, like the fixed part of its fee).
pub(crate) fn chargeback_fee_minor(currency: &str) -> i64 {
    if zero_decimal(currency) {
        0
    } else {
        1_500
    }
}

/// An approved refund's or chargeback's `payout_totals`, as Paddle states them (positive
/// strings of minor units; `earnings` is what the adjustment takes from the payout): Paddle
/// keeps its fee on the payment (`fee` and `retained_fee` 0: nothing given back, as its fee
/// schedule's `refund_returns_fee=false`) and, on a chargeback, passes on
/// its `chargeback_fee`, so `earnings = total − tax − fee + chargeback_fee.amount`. A credit
/// (to the customer's balance) moves no payout money: `None`.
fn adjustment_payout_totals(adjustment: &Adjustment) -> Option<Value> {
    let chargeback_fee = match adjustment.action.as_str() {
        "refund" => None,
        "chargeback" => Some(chargeback_fee_minor(&adjustment.currency_code)),
        _ => return None,
    };
    let amount = adjustment.total_minor;
    let earnings = amount + chargeback_fee.unwrap_or(0);
    let mut totals = json!({
        "subtotal": amount.to_string(),
        "tax": "0",
        "total": amount.to_string(),
        "fee": "0",
        "retained_fee": "0",
        "earnings": earnings.to_string(),
        "currency_code": adjustment.currency_code,
    });
    if let Some(fee) = chargeback_fee {
        totals["chargeback_fee"] = json!({"amount": fee.to_string(), "original": null});
    }
    Some(totals)
}

/// The end of period `n` (1-based) of a subscription anchored at `anchor`: Paddle keeps the
/// billing day of the first payment, so periods are counted from the anchor, not chained.
fn period_end(anchor: DateTime<Utc>, cycle: &BillingCycle, n: u32) -> DateTime<Utc> {
    let steps = cycle.frequency.max(1) * n;
    match cycle.interval.as_str() {
        "day" => anchor + Duration::days(i64::from(steps)),
        "week" => anchor + Duration::weeks(i64::from(steps)),
        "year" => anchor
            .checked_add_months(Months::new(12 * steps))
            .unwrap_or(anchor + Duration::days(365 * i64::from(steps))),
        _ => anchor
            .checked_add_months(Months::new(steps))
            .unwrap_or(anchor + Duration::days(30 * i64::from(steps))),
    }
}

impl PaddleStore {
    pub(crate) fn new(max_records: usize, clock: Option<crate::SandboxClock>) -> PaddleStore {
        let mut store = PaddleStore {
            prices: BTreeMap::new(),
            products: BTreeMap::new(),
            customers: BTreeMap::new(),
            transactions: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            adjustments: BTreeMap::new(),
            sent: BTreeMap::new(),
            pending: Vec::new(),
            max_records,
            clock,
            settlement_faults: Default::default(),
            payouts: BTreeMap::new(),
            event_log: Vec::new(),
        };
        store.seed_catalogue();
        store
    }

    pub(crate) fn with_settlement_faults(
        mut self,
        faults: crate::settlements::SharedFaults,
    ) -> PaddleStore {
        self.settlement_faults = faults;
        self
    }

    pub(crate) fn reset(&mut self) {
        let faults = self.settlement_faults.clone();
        *self =
            PaddleStore::new(self.max_records, self.clock.clone()).with_settlement_faults(faults);
    }

    /// A transaction as Paddle answers it: its `payout_totals` as a planted settlement fault
    /// makes them (more fee, less earnings).
    fn answer(&self, txn: &Transaction) -> Value {
        let mut value = json!(txn);
        let fault = crate::settlements::fault_in(&self.settlement_faults, &txn.id);
        if fault.extra_fee_minor == 0 && fault.short_minor == 0 {
            return value;
        }
        let totals = &mut value["details"]["payout_totals"];
        let read = |v: &Value| v.as_str().and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
        let fee = read(&totals["fee"]) + fault.extra_fee_minor;
        let earnings = read(&totals["earnings"]) - fault.extra_fee_minor - fault.short_minor;
        if totals.is_object() {
            totals["fee"] = json!(fee.to_string());
            totals["earnings"] = json!(earnings.to_string());
        }
        value
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.as_ref().map_or_else(Utc::now, |clock| clock())
    }

    fn seed_catalogue(&mut self) {
        let now = iso(self.now());
        for (id, name) in [
            (SANDBOX_PRODUCT_MEMBERSHIP, "Membership"),
            (SANDBOX_PRODUCT_CREDITS, "Credits"),
        ] {
            self.products.insert(
                id.to_owned(),
                json!({"id": id, "name": name, "tax_category": "standard", "status": "active",
                       "created_at": now, "updated_at": now}),
            );
        }
        let monthly = || {
            Some(BillingCycle {
                interval: "month".to_owned(),
                frequency: 1,
            })
        };
        for (id, product, description, amount, cycle) in [
            (
                SANDBOX_PRICE_BASIC_MONTHLY,
                SANDBOX_PRODUCT_MEMBERSHIP,
                "Basic monthly",
                "990",
                monthly(),
            ),
            (
                SANDBOX_PRICE_PRO_MONTHLY,
                SANDBOX_PRODUCT_MEMBERSHIP,
                "Pro monthly",
                "2990",
                monthly(),
            ),
            (
                SANDBOX_PRICE_CREDITS_100,
                SANDBOX_PRODUCT_CREDITS,
                "100 credits",
                "1000",
                None,
            ),
        ] {
            self.prices.insert(
                id.to_owned(),
                Price {
                    id: id.to_owned(),
                    product_id: product.to_owned(),
                    description: description.to_owned(),
                    name: Some(description.to_owned()),
                    kind: "standard".to_owned(),
                    billing_cycle: cycle,
                    trial_period: None,
                    tax_mode: "account_setting".to_owned(),
                    unit_price: UnitPrice {
                        amount: amount.to_owned(),
                        currency_code: "USD".to_owned(),
                    },
                    status: "active".to_owned(),
                    custom_data: None,
                    created_at: now.clone(),
                    updated_at: now.clone(),
                },
            );
        }
    }

    fn records(&self) -> usize {
        self.prices.len()
            + self.customers.len()
            + self.transactions.len()
            + self.subscriptions.len()
            + self.adjustments.len()
            + self.sent.len()
            + self.payouts.len()
    }

    fn full(&self) -> Option<PaddleReply> {
        (self.records() >= self.max_records)
            .then(|| PaddleReply::error(503, "service_unavailable", "sandbox capacity exceeded"))
    }

    fn notify(&mut self, event_type: &str, data: Value) {
        let now = self.now();
        self.notify_at(event_type, data, now);
    }

    /// Notifies an event that happened at `occurred_at` (a payout due earlier on the clock).
    fn notify_at(&mut self, event_type: &str, data: Value, occurred_at: DateTime<Utc>) {
        let event_id = new_id("evt");
        let notification_id = new_id("ntf");
        let envelope = json!({
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": iso(occurred_at),
            "notification_id": notification_id,
            "data": data,
        });
        let body = envelope.to_string();
        if let Some(object) = envelope.as_object() {
            // The event log holds the event, not the notification that carried it.
            let mut logged = object.clone();
            logged.remove("notification_id");
            self.event_log.push(Value::Object(logged));
        }
        let event = PendingEvent {
            event_id,
            event_type: event_type.to_owned(),
            body,
        };
        self.sent.insert(notification_id, event.clone());
        self.pending.push(event);
    }

    pub(crate) fn take_events(&mut self) -> Vec<PendingEvent> {
        std::mem::take(&mut self.pending)
    }

    // -----------------------------------------------------------------------------------------
    // Catalogue and customers
    // -----------------------------------------------------------------------------------------

    pub(crate) fn get_price(&self, id: &str) -> PaddleReply {
        match self.prices.get(id) {
            Some(price) => PaddleReply::ok(json!(price)),
            None => PaddleReply::not_found("price", id),
        }
    }

    pub(crate) fn create_product(&mut self, body: &Value) -> PaddleReply {
        if let Some(full) = self.full() {
            return full;
        }
        let Some(name) = body["name"].as_str() else {
            return PaddleReply::invalid("name is required");
        };
        let id = new_id("pro");
        let now = iso(self.now());
        let product = json!({"id": id, "name": name, "tax_category": "standard",
            "status": "active", "created_at": now, "updated_at": now});
        self.products.insert(id, product.clone());
        PaddleReply::created(product)
    }

    pub(crate) fn create_price(&mut self, body: &Value) -> PaddleReply {
        if let Some(full) = self.full() {
            return full;
        }
        let Some(product_id) = body["product_id"].as_str() else {
            return PaddleReply::invalid("product_id is required");
        };
        if !self.products.contains_key(product_id) {
            return PaddleReply::not_found("product", product_id);
        }
        let (Some(amount), Some(currency)) = (
            body["unit_price"]["amount"].as_str(),
            body["unit_price"]["currency_code"].as_str(),
        ) else {
            return PaddleReply::invalid(
                "unit_price.amount and unit_price.currency_code are required",
            );
        };
        if amount.parse::<i64>().map_or(true, |a| a <= 0) {
            return PaddleReply::invalid("unit_price.amount must be a positive integer string");
        }
        let billing_cycle = match &body["billing_cycle"] {
            Value::Null => None,
            cycle => match (cycle["interval"].as_str(), cycle["frequency"].as_u64()) {
                (Some(interval @ ("day" | "week" | "month" | "year")), Some(frequency))
                    if (1..=12).contains(&frequency) =>
                {
                    Some(BillingCycle {
                        interval: interval.to_owned(),
                        frequency: frequency as u32,
                    })
                }
                _ => return PaddleReply::invalid("billing_cycle needs interval and frequency"),
            },
        };
        let now = iso(self.now());
        let price = Price {
            id: new_id("pri"),
            product_id: product_id.to_owned(),
            description: body["description"].as_str().unwrap_or("").to_owned(),
            name: body["name"].as_str().map(str::to_owned),
            kind: "standard".to_owned(),
            billing_cycle,
            trial_period: None,
            tax_mode: "account_setting".to_owned(),
            unit_price: UnitPrice {
                amount: amount.to_owned(),
                currency_code: currency.to_owned(),
            },
            status: "active".to_owned(),
            custom_data: None,
            created_at: now.clone(),
            updated_at: now,
        };
        self.prices.insert(price.id.clone(), price.clone());
        PaddleReply::created(json!(price))
    }

    pub(crate) fn create_customer(&mut self, body: &Value) -> PaddleReply {
        if let Some(full) = self.full() {
            return full;
        }
        let Some(email) = body["email"].as_str().filter(|e| e.contains('@')) else {
            return PaddleReply::invalid("email is required");
        };
        PaddleReply::created(self.new_customer(email, body["name"].as_str()))
    }

    fn new_customer(&mut self, email: &str, name: Option<&str>) -> Value {
        let id = new_id("ctm");
        let now = iso(self.now());
        let customer = json!({"id": id, "email": email, "name": name, "status": "active",
            "locale": "en", "marketing_consent": false, "custom_data": null,
            "created_at": now, "updated_at": now});
        self.customers.insert(id, customer.clone());
        customer
    }

    pub(crate) fn get_customer(&self, id: &str) -> PaddleReply {
        match self.customers.get(id) {
            Some(customer) => PaddleReply::ok(customer.clone()),
            None => PaddleReply::not_found("customer", id),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Transactions
    // -----------------------------------------------------------------------------------------

    pub(crate) fn get_transaction(&self, id: &str) -> PaddleReply {
        match self.transactions.get(id) {
            Some(txn) => PaddleReply::ok(self.answer(txn)),
            None => PaddleReply::not_found("transaction", id),
        }
    }

    /// `GET /transactions?subscription_id=…&id=…&status=…&customer_id=…` (comma-separated
    /// lists), `billed_at[…]`, `created_at[…]`, `updated_at[…]` (operators `LT`, `LTE`, `GT`,
    /// `GTE`; RFC 3339), in id order, paginated (`per_page` ≤ 200, `after`).
    pub(crate) fn list_transactions(&self, query: &BTreeMap<String, String>) -> PaddleReply {
        let listed = |key: &str, value: &str| {
            query
                .get(key)
                .is_none_or(|wanted| wanted.split(',').any(|w| w == value))
        };
        let mut bounds = Vec::new();
        for (key, text) in query {
            let Some((field, operator)) = key
                .strip_suffix(']')
                .and_then(|k| k.split_once('['))
                .filter(|(f, _)| matches!(*f, "billed_at" | "created_at" | "updated_at"))
            else {
                continue;
            };
            let Ok(at) = DateTime::parse_from_rfc3339(text) else {
                return PaddleReply::invalid(&format!("{key} is not an RFC 3339 date-time"));
            };
            if !matches!(operator, "LT" | "LTE" | "GT" | "GTE") {
                return PaddleReply::invalid(&format!("{key}: unknown operator"));
            }
            bounds.push((
                field.to_owned(),
                operator.to_owned(),
                at.with_timezone(&Utc),
            ));
        }
        let within = |t: &Transaction| {
            bounds.iter().all(|(field, operator, bound)| {
                let value = match field.as_str() {
                    "billed_at" => t.billed_at.as_deref(),
                    "created_at" => Some(t.created_at.as_str()),
                    _ => Some(t.updated_at.as_str()),
                };
                let Some(at) = value.and_then(|v| DateTime::parse_from_rfc3339(v).ok()) else {
                    return false;
                };
                let at = at.with_timezone(&Utc);
                match operator.as_str() {
                    "LT" => at < *bound,
                    "LTE" => at <= *bound,
                    "GT" => at > *bound,
                    _ => at >= *bound,
                }
            })
        };
        let data: Vec<Value> = self
            .transactions
            .values()
            .filter(|t| listed("id", &t.id))
            .filter(|t| listed("status", &t.status))
            .filter(|t| {
                listed(
                    "subscription_id",
                    t.subscription_id.as_deref().unwrap_or(""),
                )
            })
            .filter(|t| listed("customer_id", t.customer_id.as_deref().unwrap_or("")))
            .filter(|t| within(t))
            .map(|t| self.answer(t))
            .collect();
        payouts::page(data, "id", query)
    }

    fn build_transaction(
        &self,
        items: Vec<(Price, u32)>,
        customer_id: &str,
        custom_data: Option<Value>,
        origin: &str,
        subscription_id: Option<String>,
        billing_period: Option<Period>,
    ) -> Transaction {
        let now = iso(self.now());
        let currency = items[0].0.unit_price.currency_code.clone();
        let mut line_items = Vec::new();
        let mut total_minor = 0i64;
        for (price, quantity) in &items {
            let amount: i64 = price.unit_price.amount.parse().unwrap_or(0) * i64::from(*quantity);
            total_minor += amount;
            line_items.push(json!(LineItem {
                id: new_id("txnitm"),
                price_id: price.id.clone(),
                quantity: *quantity,
                totals: json!({"subtotal": amount.to_string(), "tax": "0", "discount": "0",
                               "total": amount.to_string()}),
                product: self
                    .products
                    .get(&price.product_id)
                    .cloned()
                    .unwrap_or_else(|| json!({"id": price.product_id})),
            }));
        }
        Transaction {
            id: new_id("txn"),
            status: "ready".to_owned(),
            customer_id: Some(customer_id.to_owned()),
            address_id: None,
            business_id: None,
            custom_data,
            origin: origin.to_owned(),
            collection_mode: "automatic".to_owned(),
            subscription_id,
            invoice_id: None,
            invoice_number: None,
            billing_period,
            currency_code: currency.clone(),
            items: items
                .into_iter()
                .map(|(price, quantity)| TransactionItem { price, quantity })
                .collect(),
            details: json!({"totals": totals(total_minor, &currency),
                            "payout_totals": totals(total_minor, &currency),
                            "line_items": line_items}),
            payments: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
            billed_at: None,
            total_minor,
        }
    }

    /// Records a payment attempt on `txn`: captured (the transaction completes) or declined.
    fn pay(&self, txn: &mut Transaction, card: &str) -> bool {
        let now = iso(self.now());
        let declined = card == SANDBOX_DECLINE_CARD;
        // The last four digits Paddle would show for its test cards.
        let last4 = if declined { "0002" } else { "4242" };
        txn.payments.insert(
            0,
            json!({
                "payment_attempt_id": uuid::Uuid::new_v4().to_string(),
                "stored_payment_method_id": uuid::Uuid::new_v4().to_string(),
                "amount": txn.total_minor.to_string(),
                "status": if declined { "error" } else { "captured" },
                "error_code": if declined { Some("declined") } else { None },
                "method_details": {"type": "card", "card": {"type": "visa", "last4": last4,
                    "expiry_month": 12, "expiry_year": 2030, "cardholder_name": "Sandbox"}},
                "created_at": now,
                "captured_at": if declined { None } else { Some(now.clone()) },
            }),
        );
        txn.updated_at = now.clone();
        if !declined {
            txn.status = "completed".to_owned();
            txn.billed_at = Some(now);
            txn.invoice_id = Some(new_id("inv"));
            txn.invoice_number = Some(format!("{}-{}", 325, self.transactions.len() + 10_000));
        }
        !declined
    }

    /// `POST /paddle/sandbox/checkout`: what Paddle's checkout does when a customer pays: a
    /// customer (unless `customer_id` names one), a transaction, and for recurring prices a
    /// subscription, with their notifications.
    pub(crate) fn checkout(&mut self, body: &Value) -> PaddleReply {
        if let Some(full) = self.full() {
            return full;
        }
        let Some(requested) = body["items"]
            .as_array()
            .filter(|i| !i.is_empty() && i.len() <= 10)
        else {
            return PaddleReply::invalid("items must list 1 to 10 prices");
        };
        let mut items = Vec::new();
        for item in requested {
            let Some(price_id) = item["price_id"].as_str() else {
                return PaddleReply::invalid("items[].price_id is required");
            };
            let Some(price) = self.prices.get(price_id) else {
                return PaddleReply::not_found("price", price_id);
            };
            let quantity = item["quantity"].as_u64().unwrap_or(1);
            if !(1..=100).contains(&quantity) {
                return PaddleReply::invalid("items[].quantity must be 1 to 100");
            }
            items.push((price.clone(), quantity as u32));
        }
        let currency = &items[0].0.unit_price.currency_code;
        let cycle = items[0].0.billing_cycle.clone();
        if items.iter().any(|(p, _)| {
            &p.unit_price.currency_code != currency
                || p.billing_cycle.as_ref().map(|c| (&c.interval, c.frequency))
                    != cycle.as_ref().map(|c| (&c.interval, c.frequency))
        }) {
            return PaddleReply::invalid("all items must share a currency and a billing cycle");
        }
        let customer = match body["customer_id"].as_str() {
            Some(id) => match self.customers.get(id) {
                Some(customer) => customer.clone(),
                None => return PaddleReply::not_found("customer", id),
            },
            None => {
                let email = body["customer_email"]
                    .as_str()
                    .unwrap_or("sandbox@example.com")
                    .to_owned();
                let customer = self.new_customer(&email, None);
                self.notify("customer.created", customer.clone());
                customer
            }
        };
        let customer_id = customer["id"].as_str().unwrap_or_default().to_owned();
        let custom_data = body.get("custom_data").filter(|v| v.is_object()).cloned();
        let card = body["card"]
            .as_str()
            .unwrap_or(SANDBOX_APPROVE_CARD)
            .to_owned();
        let now = self.now();
        let (subscription_id, period) = match &cycle {
            Some(cycle) => (
                Some(new_id("sub")),
                Some(Period {
                    starts_at: iso(now),
                    ends_at: iso(period_end(now, cycle, 1)),
                }),
            ),
            None => (None, None),
        };
        let mut txn = self.build_transaction(
            items.clone(),
            &customer_id,
            custom_data.clone(),
            "web",
            subscription_id.clone(),
            period.clone(),
        );
        self.notify("transaction.created", json!(txn));
        if !self.pay(&mut txn, &card) {
            self.notify("transaction.payment_failed", json!(txn));
            let data = json!(txn);
            self.transactions.insert(txn.id.clone(), txn);
            return PaddleReply::created(json!({"transaction": data, "customer": customer}));
        }
        self.notify("transaction.paid", json!(txn));
        let mut subscription = None;
        if let (Some(cycle), Some(id)) = (cycle, subscription_id) {
            let ends = period_end(now, &cycle, 1);
            let stamp = iso(now);
            let sub = Subscription {
                id,
                status: "active".to_owned(),
                customer_id: customer_id.clone(),
                address_id: None,
                business_id: None,
                currency_code: currency.clone(),
                created_at: stamp.clone(),
                updated_at: stamp.clone(),
                started_at: stamp.clone(),
                first_billed_at: stamp.clone(),
                next_billed_at: Some(iso(ends)),
                paused_at: None,
                canceled_at: None,
                collection_mode: "automatic".to_owned(),
                current_billing_period: period,
                billing_cycle: cycle,
                scheduled_change: None,
                items: items
                    .iter()
                    .map(|(price, quantity)| SubscriptionItem {
                        status: "active".to_owned(),
                        quantity: *quantity,
                        recurring: true,
                        created_at: stamp.clone(),
                        updated_at: stamp.clone(),
                        previously_billed_at: Some(stamp.clone()),
                        next_billed_at: Some(iso(ends)),
                        price: price.clone(),
                    })
                    .collect(),
                custom_data,
                anchor: now,
                period: 1,
                period_end: ends,
                past_due_transaction: None,
            };
            let mut created = json!(sub);
            created["transaction_id"] = json!(txn.id);
            self.notify("subscription.created", created);
            self.notify("subscription.activated", json!(sub));
            subscription = Some(json!(sub));
            self.subscriptions.insert(sub.id.clone(), sub);
        }
        self.notify("transaction.completed", json!(txn));
        let data = json!({"transaction": txn, "subscription": subscription, "customer": customer});
        self.transactions.insert(txn.id.clone(), txn);
        PaddleReply::created(data)
    }

    // -----------------------------------------------------------------------------------------
    // Subscriptions
    // -----------------------------------------------------------------------------------------

    pub(crate) fn get_subscription(&self, id: &str) -> PaddleReply {
        match self.subscriptions.get(id) {
            Some(sub) => PaddleReply::ok(json!(sub)),
            None => PaddleReply::not_found("subscription", id),
        }
    }

    /// `POST /subscriptions/{id}/cancel` `{effective_from}`: `next_billing_period` (default)
    /// schedules the cancel for the end of the billing period; `immediately` cancels now.
    pub(crate) fn cancel_subscription(&mut self, id: &str, body: &Value) -> PaddleReply {
        let now = self.now();
        let Some(sub) = self.subscriptions.get_mut(id) else {
            return PaddleReply::not_found("subscription", id);
        };
        if sub.status == "canceled" {
            return PaddleReply::error(
                400,
                "subscription_update_when_canceled",
                "subscription is canceled and cannot be changed",
            );
        }
        let effective_from = body["effective_from"]
            .as_str()
            .unwrap_or("next_billing_period");
        sub.updated_at = iso(now);
        match effective_from {
            "next_billing_period" if sub.status != "past_due" => {
                sub.scheduled_change = Some(ScheduledChange {
                    action: "cancel".to_owned(),
                    effective_at: iso(sub.period_end),
                    resume_at: None,
                });
                sub.next_billed_at = None;
                let data = json!(sub);
                self.notify("subscription.updated", data.clone());
                PaddleReply::ok(data)
            }
            "next_billing_period" | "immediately" => {
                cancel_now(sub, now);
                let data = json!(sub);
                self.notify("subscription.canceled", data.clone());
                PaddleReply::ok(data)
            }
            _ => PaddleReply::invalid("effective_from must be next_billing_period or immediately"),
        }
    }

    /// `POST /paddle/sandbox/subscriptions/{id}/advance` `{card?}`: the billing period ends. A
    /// scheduled cancel takes effect; otherwise Paddle bills the next period: a completed
    /// transaction (`subscription_recurring`), or with the decline card a past-due one and a
    /// past-due subscription.
    /// Paddle bills its subscriptions by itself: every active subscription whose period ended by
    /// the sandbox's clock (the scenario clock, when it follows one) is advanced as
    /// `POST /sandbox/subscriptions/{id}/advance` would with the approving card, once per period
    /// missed (at most [`MAX_RENEWALS_PER_SWEEP`] a sweep); a scheduled cancel takes effect
    /// instead. Returns how many periods were billed or ended.
    pub(crate) fn renew_due(&mut self) -> usize {
        let now = self.now();
        let is_due = |sub: &Subscription| sub.status == "active" && sub.period_end <= now;
        let due: Vec<String> = self
            .subscriptions
            .values()
            .filter(|sub| is_due(sub))
            .map(|sub| sub.id.clone())
            .collect();
        let mut renewed = 0;
        for id in due {
            for _ in 0..MAX_RENEWALS_PER_SWEEP {
                if !self.subscriptions.get(&id).is_some_and(is_due) {
                    break;
                }
                if self.advance_subscription(&id, &json!({})).status >= 400 {
                    break;
                }
                renewed += 1;
            }
        }
        renewed
    }

    pub(crate) fn advance_subscription(&mut self, id: &str, body: &Value) -> PaddleReply {
        if let Some(full) = self.full() {
            return full;
        }
        let Some(sub) = self.subscriptions.get(id).cloned() else {
            return PaddleReply::not_found("subscription", id);
        };
        if sub.status == "canceled" || sub.status == "past_due" {
            return PaddleReply::invalid("only an active subscription advances to its next period");
        }
        let current_end = sub.period_end;
        if sub
            .scheduled_change
            .as_ref()
            .is_some_and(|c| c.action == "cancel")
        {
            let sub = self.subscriptions.get_mut(id).expect("present above");
            cancel_now(sub, current_end);
            let data = json!(sub);
            self.notify("subscription.canceled", data.clone());
            return PaddleReply::ok(json!({"subscription": data}));
        }
        let next_end = period_end(sub.anchor, &sub.billing_cycle, sub.period + 1);
        let period = Period {
            starts_at: iso(current_end),
            ends_at: iso(next_end),
        };
        let items = sub
            .items
            .iter()
            .map(|item| (item.price.clone(), item.quantity))
            .collect();
        let mut txn = self.build_transaction(
            items,
            &sub.customer_id,
            sub.custom_data.clone(),
            "subscription_recurring",
            Some(sub.id.clone()),
            Some(period.clone()),
        );
        txn.status = "billed".to_owned();
        self.notify("transaction.billed", json!(txn));
        let card = body["card"]
            .as_str()
            .unwrap_or(SANDBOX_APPROVE_CARD)
            .to_owned();
        let paid = self.pay(&mut txn, &card);
        let stamp = iso(self.now());
        let sub = self.subscriptions.get_mut(id).expect("present above");
        sub.current_billing_period = Some(period);
        sub.period += 1;
        sub.period_end = next_end;
        sub.updated_at = stamp;
        if paid {
            sub.next_billed_at = Some(iso(next_end));
            let sub_data = json!(sub);
            self.notify("transaction.paid", json!(txn));
            self.notify("subscription.updated", sub_data.clone());
            self.notify("transaction.completed", json!(txn));
            let data = json!({"transaction": txn, "subscription": sub_data});
            self.transactions.insert(txn.id.clone(), txn);
            PaddleReply::ok(data)
        } else {
            txn.status = "past_due".to_owned();
            sub.status = "past_due".to_owned();
            sub.next_billed_at = None;
            sub.past_due_transaction = Some(txn.id.clone());
            let sub_data = json!(sub);
            self.notify("transaction.payment_failed", json!(txn));
            self.notify("transaction.past_due", json!(txn));
            self.notify("subscription.past_due", sub_data.clone());
            let data = json!({"transaction": txn, "subscription": sub_data});
            self.transactions.insert(txn.id.clone(), txn);
            PaddleReply::ok(data)
        }
    }

    /// `POST /paddle/sandbox/subscriptions/{id}/dunning` `{outcome: "recovered" | "canceled"}`:
    /// Paddle's retries of a past-due renewal end: paid (the subscription is active again) or
    /// given up (Paddle's default: the subscription is canceled).
    pub(crate) fn dunning_outcome(&mut self, id: &str, body: &Value) -> PaddleReply {
        let now = self.now();
        let Some(sub) = self.subscriptions.get(id).cloned() else {
            return PaddleReply::not_found("subscription", id);
        };
        let Some(txn_id) = sub
            .past_due_transaction
            .clone()
            .filter(|_| sub.status == "past_due")
        else {
            return PaddleReply::invalid("the subscription is not past due");
        };
        match body["outcome"].as_str() {
            Some("recovered") => {
                let Some(mut txn) = self.transactions.get(&txn_id).cloned() else {
                    return PaddleReply::not_found("transaction", &txn_id);
                };
                self.pay(&mut txn, SANDBOX_APPROVE_CARD);
                let sub = self.subscriptions.get_mut(id).expect("present above");
                sub.status = "active".to_owned();
                sub.past_due_transaction = None;
                sub.next_billed_at = Some(iso(sub.period_end));
                sub.updated_at = iso(now);
                let sub_data = json!(sub);
                self.notify("transaction.paid", json!(txn));
                self.notify("subscription.updated", sub_data.clone());
                self.notify("transaction.completed", json!(txn));
                let data = json!({"transaction": txn, "subscription": sub_data});
                self.transactions.insert(txn.id.clone(), txn);
                PaddleReply::ok(data)
            }
            Some("canceled") => {
                if let Some(txn) = self.transactions.get_mut(&txn_id) {
                    txn.status = "canceled".to_owned();
                    txn.updated_at = iso(now);
                }
                let txn_data = self.transactions.get(&txn_id).map(|t| json!(t));
                if let Some(txn) = txn_data {
                    self.notify("transaction.canceled", txn);
                }
                let sub = self.subscriptions.get_mut(id).expect("present above");
                cancel_now(sub, now);
                sub.past_due_transaction = None;
                let data = json!(sub);
                self.notify("subscription.canceled", data.clone());
                PaddleReply::ok(json!({"subscription": data}))
            }
            _ => PaddleReply::invalid("outcome must be recovered or canceled"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Adjustments
    // -----------------------------------------------------------------------------------------

    /// `POST /adjustments` `{action, transaction_id, reason, type?, items?}`: a refund waits for
    /// Paddle's approval (`pending_approval`); a credit is approved at once. `type: "full"`
    /// (the default) returns what is left of the transaction.
    pub(crate) fn create_adjustment(&mut self, body: &Value) -> PaddleReply {
        let action = body["action"].as_str().unwrap_or_default().to_owned();
        if action != "refund" && action != "credit" {
            return PaddleReply::invalid("action must be refund or credit");
        }
        let Some(reason) = body["reason"].as_str().filter(|r| !r.is_empty()) else {
            return PaddleReply::invalid("reason is required");
        };
        let Some(txn_id) = body["transaction_id"].as_str() else {
            return PaddleReply::invalid("transaction_id is required");
        };
        let kind = body["type"].as_str().unwrap_or("full");
        let amount = match kind {
            "full" => None,
            "partial" => {
                let total: Option<i64> = body["items"].as_array().map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            i["amount"]
                                .as_str()
                                .and_then(|a| a.parse().ok())
                                .unwrap_or(0)
                        })
                        .sum()
                });
                match total {
                    Some(total) if total > 0 => Some(total),
                    _ => {
                        return PaddleReply::invalid(
                            "a partial adjustment needs items with amounts",
                        )
                    }
                }
            }
            _ => return PaddleReply::invalid("type must be full or partial"),
        };
        // As Paddle: one refund request open per transaction; a second one (a duplicate, or
        // another refund) is refused until Paddle approves or rejects the first.
        if self.adjustments.values().any(|a| {
            a.transaction_id == txn_id && a.action == "refund" && a.status == "pending_approval"
        }) {
            return PaddleReply::error(
                400,
                "adjustment_pending_refund_request",
                "You are unable to create further adjustments against this transaction as there is a pending refund request",
            );
        }
        self.adjust(txn_id, &action, kind, reason, amount, "pending_approval")
    }

    fn adjust(
        &mut self,
        txn_id: &str,
        action: &str,
        kind: &str,
        reason: &str,
        amount: Option<i64>,
        status: &str,
    ) -> PaddleReply {
        if let Some(full) = self.full() {
            return full;
        }
        let Some(txn) = self.transactions.get(txn_id).cloned() else {
            return PaddleReply::not_found("transaction", txn_id);
        };
        if txn.status != "completed" {
            return PaddleReply::error(
                400,
                "adjustment_transaction_invalid_status_for_refund",
                "only a completed transaction can be adjusted",
            );
        }
        let adjusted: i64 = self
            .adjustments
            .values()
            .filter(|a| a.transaction_id == txn_id && a.status != "rejected")
            .map(|a| a.total_minor)
            .sum();
        let left = txn.total_minor - adjusted;
        let amount = amount.unwrap_or(left);
        if amount <= 0 || amount > left {
            return PaddleReply::error(
                400,
                "adjustment_amount_above_remaining_allowed",
                &format!("the adjustment is above what is left of the transaction ({left})"),
            );
        }
        let status = if action == "credit" {
            "approved"
        } else {
            status
        };
        let now = iso(self.now());
        let item_id = txn.details["line_items"][0]["id"]
            .as_str()
            .unwrap_or_default();
        let adjustment = Adjustment {
            id: new_id("adj"),
            action: action.to_owned(),
            kind: kind.to_owned(),
            transaction_id: txn_id.to_owned(),
            subscription_id: txn.subscription_id.clone(),
            customer_id: txn.customer_id.clone(),
            reason: reason.to_owned(),
            credit_applied_to_balance: (action == "credit").then_some(true),
            currency_code: txn.currency_code.clone(),
            status: status.to_owned(),
            items: vec![
                json!({"id": new_id("adjitm"), "item_id": item_id, "type": kind,
                "amount": amount.to_string(), "proration": null,
                "totals": {"subtotal": amount.to_string(), "tax": "0",
                           "total": amount.to_string()}}),
            ],
            totals: totals(amount, &txn.currency_code),
            payout_totals: None,
            created_at: now.clone(),
            updated_at: now,
            total_minor: amount,
        };
        let mut adjustment = adjustment;
        if adjustment.status == "approved" {
            adjustment.payout_totals = adjustment_payout_totals(&adjustment);
        }
        let data = json!(adjustment);
        self.adjustments.insert(adjustment.id.clone(), adjustment);
        self.notify("adjustment.created", data.clone());
        PaddleReply::created(data)
    }

    /// `GET /adjustments?id=…&transaction_id=…&subscription_id=…&action=…&status=…` (each a
    /// comma-separated list), oldest first, in cursor pages (`after`, `per_page`).
    pub(crate) fn list_adjustments(&self, query: &BTreeMap<String, String>) -> PaddleReply {
        let listed = |key: &str, value: &str| {
            query
                .get(key)
                .is_none_or(|wanted| wanted.split(',').any(|w| w == value))
        };
        let data: Vec<&Adjustment> = self
            .adjustments
            .values()
            .filter(|a| listed("id", &a.id))
            .filter(|a| listed("transaction_id", &a.transaction_id))
            .filter(|a| {
                listed(
                    "subscription_id",
                    a.subscription_id.as_deref().unwrap_or(""),
                )
            })
            .filter(|a| listed("action", &a.action))
            .filter(|a| listed("status", &a.status))
            .collect();
        let mut data = data;
        data.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        let data: Vec<Value> = data.into_iter().map(|a| json!(a)).collect();
        payouts::page(data, "id", query)
    }

    /// `POST /paddle/sandbox/adjustments/{id}/{approve|reject}`: Paddle's review of a refund.
    /// `POST /paddle/sandbox/adjustments/{id}/approve` or `/reject`: Paddle reviews a refund.
    /// A planted fault for tests: `{"total": "999", "currency_code": "EUR"}` (either or both)
    /// makes Paddle's reviewed adjustment state another total (minor units) or currency than
    /// was asked, as a decision the merchant's ledger must not take as its refund.
    pub(crate) fn review_adjustment(
        &mut self,
        id: &str,
        approve: bool,
        body: &Value,
    ) -> PaddleReply {
        let now = iso(self.now());
        let total = match body.get("total") {
            None | Some(Value::Null) => None,
            Some(total) => match total.as_str().and_then(|t| t.parse::<i64>().ok()) {
                Some(minor) if minor > 0 => Some(minor),
                _ => return PaddleReply::invalid("total must be a positive string of minor units"),
            },
        };
        let currency = match body.get("currency_code") {
            None | Some(Value::Null) => None,
            Some(code) => match code.as_str() {
                Some(code) if code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()) => {
                    Some(code.to_owned())
                }
                _ => return PaddleReply::invalid("currency_code must be three capital letters"),
            },
        };
        let Some(adjustment) = self.adjustments.get_mut(id) else {
            return PaddleReply::not_found("adjustment", id);
        };
        if adjustment.status != "pending_approval" {
            return PaddleReply::invalid("the adjustment is not pending approval");
        }
        if let Some(minor) = total {
            adjustment.total_minor = minor;
            adjustment.totals.subtotal = minor.to_string();
            adjustment.totals.total = minor.to_string();
            adjustment.totals.earnings = minor.to_string();
        }
        if let Some(code) = currency {
            adjustment.totals.currency_code = code.clone();
            adjustment.currency_code = code;
        }
        adjustment.status = if approve { "approved" } else { "rejected" }.to_owned();
        adjustment.updated_at = now;
        if approve {
            adjustment.payout_totals = adjustment_payout_totals(adjustment);
        }
        let data = json!(adjustment);
        self.notify("adjustment.updated", data.clone());
        PaddleReply::ok(data)
    }

    /// `POST /paddle/sandbox/transactions/{id}/chargeback`: the customer's bank took the money
    /// back; Paddle records an approved `chargeback` adjustment.
    pub(crate) fn chargeback(&mut self, txn_id: &str) -> PaddleReply {
        self.adjust(txn_id, "chargeback", "full", "chargeback", None, "approved")
    }

    // -----------------------------------------------------------------------------------------
    // Notifications
    // -----------------------------------------------------------------------------------------

    /// `POST /notifications/{id}/replay`: sends the same event again (same `event_id`), as a
    /// new notification.
    pub(crate) fn replay_notification(&mut self, notification_id: &str) -> PaddleReply {
        let Some(event) = self.sent.get(notification_id).cloned() else {
            return PaddleReply::not_found("notification", notification_id);
        };
        let new_notification = new_id("ntf");
        let mut body: Value = serde_json::from_str(&event.body).unwrap_or_default();
        body["notification_id"] = json!(new_notification);
        let replayed = PendingEvent {
            body: body.to_string(),
            ..event
        };
        self.pending.push(replayed);
        PaddleReply::created(json!({"notification_id": new_notification}))
    }

    /// The notification ids of events sent, with their event ids and types (for tests and for
    /// finding what to replay).
    pub(crate) fn notifications(&self) -> Value {
        Value::Array(
            self.sent
                .iter()
                .map(|(id, event)| {
                    json!({"id": id, "event_id": event.event_id, "type": event.event_type})
                })
                .collect(),
        )
    }
}

fn cancel_now(sub: &mut Subscription, at: DateTime<Utc>) {
    sub.status = "canceled".to_owned();
    sub.canceled_at = Some(iso(at));
    sub.scheduled_change = None;
    sub.next_billed_at = None;
    sub.current_billing_period = None;
    sub.updated_at = iso(at);
    for item in &mut sub.items {
        item.status = "inactive".to_owned();
        item.next_billed_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_five_percent_and_fifty_minor_units_never_above_the_total() {
        assert_eq!(fee_minor(990, "USD"), 99);
        assert_eq!(fee_minor(10_000, "KRW"), 500);
        assert_eq!(fee_minor(10, "USD"), 10);
    }

    #[test]
    fn a_checkout_of_a_recurring_price_bills_a_period_and_notifies_in_paddles_order() {
        let mut store = PaddleStore::new(1_000, None);
        let reply = store.checkout(
            &json!({"items": [{"price_id": SANDBOX_PRICE_BASIC_MONTHLY}],
            "customer_email": "a@example.com", "custom_data": {"customerId": "cust-1"}}),
        );
        assert_eq!(reply.status, 201);
        let txn = &reply.body["data"]["transaction"];
        assert_eq!(txn["status"], "completed");
        assert!(txn["id"].as_str().unwrap().starts_with("txn_"));
        let id = new_id("adj");
        assert_eq!(id.len(), "adj_".len() + 26, "{id}");
        assert!(
            id["adj_".len()..]
                .bytes()
                .all(|b| crate::ids::ID_ALPHABET.contains(&b)),
            "{id}"
        );
        assert_eq!(txn["details"]["totals"]["fee"], "99");
        let sub = &reply.body["data"]["subscription"];
        assert!(sub["id"].as_str().unwrap().starts_with("sub_"));
        assert_eq!(txn["subscription_id"], sub["id"]);
        let types: Vec<String> = store
            .take_events()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            [
                "customer.created",
                "transaction.created",
                "transaction.paid",
                "subscription.created",
                "subscription.activated",
                "transaction.completed"
            ]
        );
    }

    #[test]
    fn subscriptions_renew_by_themselves_when_the_clock_passes_their_period_end() {
        let now = std::sync::Arc::new(std::sync::Mutex::new(Utc::now()));
        let read = now.clone();
        let clock: crate::SandboxClock = std::sync::Arc::new(move || *read.lock().unwrap());
        let mut store = PaddleStore::new(1_000, Some(clock));
        let reply = store.checkout(
            &json!({"items": [{"price_id": SANDBOX_PRICE_BASIC_MONTHLY}],
            "customer_email": "a@example.com", "custom_data": {"customerId": "cust-1"}}),
        );
        let sub_id = reply.body["data"]["subscription"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        store.take_events();
        assert_eq!(
            store.renew_due(),
            0,
            "nothing is due before the period ends"
        );

        // Two periods later (the clock jumped): both are billed, in order.
        let period_end = store.subscriptions[&sub_id].period_end;
        *now.lock().unwrap() = period_end + Duration::days(32);
        assert_eq!(store.renew_due(), 2);
        assert_eq!(store.subscriptions[&sub_id].period, 3);
        let completed = store
            .take_events()
            .into_iter()
            .filter(|e| e.event_type == "transaction.completed")
            .count();
        assert_eq!(completed, 2);
        assert_eq!(store.renew_due(), 0, "a sweep bills each period once");

        // A scheduled cancel takes effect at the period's end instead of a renewal.
        store.cancel_subscription(&sub_id, &json!({"effective_from": "next_billing_period"}));
        let period_end = store.subscriptions[&sub_id].period_end;
        *now.lock().unwrap() = period_end + Duration::seconds(1);
        assert_eq!(store.renew_due(), 1);
        assert_eq!(store.subscriptions[&sub_id].status, "canceled");
        assert_eq!(store.renew_due(), 0);
    }
}

#[cfg(test)]
mod adjustment_tests {
    use super::*;

    fn adjustment(action: &str, amount: i64, currency: &str) -> Adjustment {
        Adjustment {
            id: "adj_1".into(),
            action: action.into(),
            kind: "full".into(),
            transaction_id: "txn_1".into(),
            subscription_id: None,
            customer_id: None,
            reason: "r".into(),
            credit_applied_to_balance: None,
            currency_code: currency.into(),
            status: "approved".into(),
            items: vec![],
            totals: totals(amount, currency),
            payout_totals: None,
            created_at: String::new(),
            updated_at: String::new(),
            total_minor: amount,
        }
    }

    #[test]
    fn an_approved_refund_or_chargeback_states_what_it_takes_from_the_payout() {
        let refund = adjustment_payout_totals(&adjustment("refund", 1000, "USD")).unwrap();
        assert_eq!(
            (&refund["total"], &refund["fee"], &refund["earnings"]),
            (&json!("1000"), &json!("0"), &json!("1000"))
        );
        assert!(refund.get("chargeback_fee").is_none());
        let chargeback = adjustment_payout_totals(&adjustment("chargeback", 1000, "USD")).unwrap();
        assert_eq!(chargeback["chargeback_fee"]["amount"], "1500");
        assert_eq!(chargeback["earnings"], "2500");
        let in_krw = adjustment_payout_totals(&adjustment("chargeback", 9900, "KRW")).unwrap();
        assert_eq!(in_krw["earnings"], "9900");
        assert_eq!(
            adjustment_payout_totals(&adjustment("credit", 10, "USD")),
            None
        );
    }
}
