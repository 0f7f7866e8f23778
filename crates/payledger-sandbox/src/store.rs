//! The sandbox's in-memory provider: payments, billing keys, idempotency records and counters.
//!
//! Everything here is synchronous and runs under one mutex held by the HTTP layer for the whole
//! of a request's decision, so "check the order, charge it, store the idempotent answer" is one
//! atomic step and two concurrent confirms cannot both charge. Delays happen after the lock is
//! released.

use crate::behaviour::Behaviour;
use crate::wire::{
    BillingIssueBody, BillingKeyWire, CancelBody, CancelWire, CardWire, ChargeBody, ConfirmBody,
    PaymentWire, SandboxStats,
};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Toss answers in Korea Standard Time; the sandbox does too, so date parsing is exercised.
const KST_OFFSET_SECONDS: i32 = 9 * 3600;

/// The most cancels one payment may collect; Toss states no limit, the sandbox needs one.
const MAX_CANCELS_PER_PAYMENT: usize = 1_000;

/// Largest amount the sandbox accepts, in minor units (payledger's own maximum).
const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// An answer decided by the store: status, JSON body, and how long to hold it back.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
    /// Whether an `Idempotency-Key` replay returns this answer. Provider errors are not stored:
    /// the provider did nothing, so the same key must be free to try again.
    pub storable: bool,
}

impl Reply {
    pub(crate) fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            delay: Duration::ZERO,
            storable: true,
        }
    }

    pub(crate) fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply {
            status,
            body: serde_json::json!({ "code": code, "message": message }),
            delay: Duration::ZERO,
            storable: true,
        }
    }

    fn provider_error() -> Reply {
        Reply {
            storable: false,
            ..Reply::error(
                400,
                "PROVIDER_ERROR",
                "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
            )
        }
    }

    fn not_found_payment() -> Reply {
        Reply::error(404, "NOT_FOUND_PAYMENT", "존재하지 않는 결제 정보 입니다.")
    }

    pub(crate) fn capacity_exceeded(what: &str) -> Reply {
        Reply {
            storable: false,
            ..Reply::error(
                503,
                "SANDBOX_CAPACITY_EXCEEDED",
                &format!("the sandbox holds its maximum number of {what}; reset it"),
            )
        }
    }

    fn with_delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Limits the store enforces.
#[derive(Clone)]
pub(crate) struct StoreLimits {
    /// The time the sandbox stamps on what it answers (`approvedAt`, `canceledAt`, …): the
    /// system clock, or the clock of the ledger that embeds it (a scenario clock in tests).
    pub clock: Option<crate::SandboxClock>,
    /// Payments, billing keys, idempotency records and per-order counters, each.
    pub max_records: usize,
    pub timeout_after_charge_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PaymentStatus {
    Done,
    PartialCanceled,
    Canceled,
    /// A virtual account waiting for its deposit: nothing charged yet.
    WaitingForDeposit,
    /// The deposit window closed without a deposit: nothing was ever charged.
    Expired,
}

impl PaymentStatus {
    fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Done => "DONE",
            PaymentStatus::PartialCanceled => "PARTIAL_CANCELED",
            PaymentStatus::Canceled => "CANCELED",
            PaymentStatus::WaitingForDeposit => "WAITING_FOR_DEPOSIT",
            PaymentStatus::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone)]
struct Card {
    issuer_code: &'static str,
    company: &'static str,
    masked_number: String,
    card_type: &'static str,
}

#[derive(Debug, Clone)]
struct Cancel {
    transaction_key: String,
    amount: i64,
    reason: String,
    canceled_at: DateTime<FixedOffset>,
}

#[derive(Debug, Clone)]
struct Payment {
    payment_key: String,
    order_id: String,
    order_name: String,
    is_billing: bool,
    status: PaymentStatus,
    total_amount: i64,
    balance_amount: i64,
    requested_at: DateTime<FixedOffset>,
    approved_at: DateTime<FixedOffset>,
    card: Card,
    cancels: Vec<Cancel>,
    last_transaction_key: String,
    /// The approval's own transaction key: the id of the payment's settlement line.
    approval_transaction_key: String,
    /// A virtual account's deposit deadline: `WAITING_FOR_DEPOSIT` becomes `EXPIRED` at it.
    deposit_due: Option<DateTime<FixedOffset>>,
}

impl Payment {
    /// The status at `now`: a waiting virtual account whose window closed is `EXPIRED`. Read
    /// on every answer, so the expiry follows the clock with no job of its own.
    fn status_at(&self, now: DateTime<FixedOffset>) -> PaymentStatus {
        match (self.status, self.deposit_due) {
            (PaymentStatus::WaitingForDeposit, Some(due)) if now >= due => PaymentStatus::Expired,
            (status, _) => status,
        }
    }

    /// Money moved: approved (and perhaps cancelled since), not waiting or expired.
    fn charged(&self) -> bool {
        self.deposit_due.is_none()
    }
}

#[derive(Debug, Clone)]
struct BillingKey {
    customer_key: String,
    behaviour: Behaviour,
    card: Card,
    authenticated_at: DateTime<FixedOffset>,
}

#[derive(Debug, Clone)]
struct IdempotencyRecord {
    /// Compared as JSON values, so key order and whitespace do not make a different request.
    body: Value,
    status: u16,
    answer: Value,
    /// Before this instant the first request is still "processing": a replay gets 409.
    available_at: Instant,
}

/// One approval or cancel, as the store made it.
pub(crate) struct SoldTransaction {
    pub(crate) payment_key: String,
    pub(crate) order_id: String,
    pub(crate) transaction_key: String,
    /// Negative for a cancel.
    pub(crate) amount: i64,
    pub(crate) at: DateTime<FixedOffset>,
}

/// The whole sandbox state.
#[derive(Debug)]
pub(crate) struct Store {
    limits: StoreLimits,
    payments: HashMap<String, Payment>,
    payment_key_by_order_id: HashMap<String, String>,
    billing_keys: HashMap<String, BillingKey>,
    billing_key_by_auth_key: HashMap<String, String>,
    idempotency: HashMap<(String, String), IdempotencyRecord>,
    /// Failed-attempt counters for flaky inputs, keyed by payment (`confirm:{paymentKey}`) or by
    /// billing charge (`charge:{billingKey}:{orderId}`).
    flaky_attempts: HashMap<String, u32>,
    attempts_by_order_id: HashMap<String, u64>,
    charges_by_order_id: HashMap<String, u64>,
    total_charges: u64,
    canceled_amount_by_payment_key: HashMap<String, i64>,
    outage_until: Option<Instant>,
}

impl Store {
    /// Now, in Korea's time, by the store's clock.
    fn now_kst(&self) -> DateTime<FixedOffset> {
        kst(self
            .limits
            .clock
            .as_ref()
            .map_or_else(Utc::now, |clock| clock()))
    }

    pub(crate) fn new(limits: StoreLimits) -> Store {
        Store {
            limits,
            payments: HashMap::new(),
            payment_key_by_order_id: HashMap::new(),
            billing_keys: HashMap::new(),
            billing_key_by_auth_key: HashMap::new(),
            idempotency: HashMap::new(),
            flaky_attempts: HashMap::new(),
            attempts_by_order_id: HashMap::new(),
            charges_by_order_id: HashMap::new(),
            total_charges: 0,
            canceled_amount_by_payment_key: HashMap::new(),
            outage_until: None,
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = Store::new(self.limits.clone());
    }

    // ---- outage -------------------------------------------------------------------------

    pub(crate) fn start_outage(&mut self, duration: Duration, now: Instant) {
        self.outage_until = if duration.is_zero() {
            None
        } else {
            Some(now + duration)
        };
    }

    pub(crate) fn in_outage(&self, now: Instant) -> bool {
        self.outage_until.is_some_and(|until| now < until)
    }

    // ---- idempotency ----------------------------------------------------------------------

    /// The stored answer for `(scope, key)`, a conflict, or `None` when the key is new.
    pub(crate) fn replay(
        &self,
        scope: &str,
        key: &str,
        body: &Value,
        now: Instant,
    ) -> Option<Reply> {
        let record = self.idempotency.get(&(scope.to_owned(), key.to_owned()))?;
        if record.body != *body {
            return Some(Reply {
                storable: false,
                ..Reply::error(
                    422,
                    "IDEMPOTENT_REQUEST_MISMATCH",
                    "이 멱등키는 다른 요청 본문에 이미 사용되었습니다. (the Idempotency-Key was used with a different request body)",
                )
            });
        }
        if now < record.available_at {
            return Some(Reply {
                storable: false,
                ..Reply::error(
                    409,
                    "IDEMPOTENT_REQUEST_PROCESSING",
                    "이전 멱등 요청이 처리중입니다.",
                )
            });
        }
        Some(Reply {
            status: record.status,
            body: record.answer.clone(),
            delay: Duration::ZERO,
            storable: false,
        })
    }

    /// Remembers `reply` under the key; refuses when the store is full.
    pub(crate) fn remember(
        &mut self,
        scope: &str,
        key: &str,
        body: Value,
        reply: &Reply,
        now: Instant,
    ) -> Result<(), Reply> {
        if self.idempotency.len() >= self.limits.max_records {
            return Err(Reply::capacity_exceeded("idempotency records"));
        }
        self.idempotency.insert(
            (scope.to_owned(), key.to_owned()),
            IdempotencyRecord {
                body,
                status: reply.status,
                answer: reply.body.clone(),
                available_at: now + reply.delay,
            },
        );
        Ok(())
    }

    /// Whether one more idempotency record fits (checked before charging, so a charge is never
    /// made whose answer could not be stored).
    pub(crate) fn idempotency_has_room(&self) -> bool {
        self.idempotency.len() < self.limits.max_records
    }

    // ---- payments -------------------------------------------------------------------------

    pub(crate) fn confirm(&mut self, body: ConfirmBody) -> Reply {
        if let Err(reply) = validate_payment_key(&body.payment_key)
            .and_then(|()| validate_order_id(&body.order_id))
            .and_then(|()| validate_amount(body.amount))
        {
            return reply;
        }
        let behaviour = match Behaviour::from_test_input(&body.payment_key) {
            Ok(behaviour) => behaviour,
            Err(err) => return Reply::error(400, "INVALID_REQUEST", &err.to_string()),
        };
        if let Err(reply) = self.count_attempt(&body.order_id) {
            return reply;
        }
        if self.payment_key_by_order_id.contains_key(&body.order_id)
            || self.payments.contains_key(&body.payment_key)
        {
            return Reply::error(400, "ALREADY_PROCESSED_PAYMENT", "이미 처리된 결제 입니다.");
        }
        if let Behaviour::AwaitDeposit { valid_minutes } = behaviour {
            return self.open_virtual_account(body, valid_minutes);
        }
        let flaky_key = format!("confirm:{}", body.payment_key);
        let decided = match self.decide(behaviour, &flaky_key) {
            Ok(decided) => decided,
            Err(reply) => return reply,
        };
        let payment = Payment::approved(
            self.now_kst(),
            body.payment_key,
            body.order_id,
            "샌드박스 주문".to_owned(),
            false,
            body.amount,
        );
        match self.record_charge(payment) {
            Ok(payment) => Reply::ok(payment_json(&payment, self.now_kst())).with_delay(decided),
            Err(reply) => reply,
        }
    }

    /// A virtual-account payment: stored as `WAITING_FOR_DEPOSIT` with its deadline, never
    /// counted as a charge (no money moved). The sandbox takes no deposits, so it expires.
    fn open_virtual_account(&mut self, body: ConfirmBody, valid_minutes: u64) -> Reply {
        if self.payments.len() >= self.limits.max_records {
            return Reply::capacity_exceeded("payments");
        }
        let now = self.now_kst();
        let minutes = i64::try_from(valid_minutes).unwrap_or(1);
        let mut payment = Payment::approved(
            now,
            body.payment_key,
            body.order_id,
            "샌드박스 주문".to_owned(),
            false,
            body.amount,
        );
        payment.status = PaymentStatus::WaitingForDeposit;
        payment.deposit_due = Some(now + chrono::Duration::minutes(minutes));
        self.payment_key_by_order_id
            .insert(payment.order_id.clone(), payment.payment_key.clone());
        let reply = Reply::ok(payment_json(&payment, now));
        self.payments.insert(payment.payment_key.clone(), payment);
        reply
    }

    pub(crate) fn payment_by_key(&self, payment_key: &str) -> Reply {
        match self.payments.get(payment_key) {
            Some(payment) => Reply::ok(payment_json(payment, self.now_kst())),
            None => Reply::not_found_payment(),
        }
    }

    pub(crate) fn payment_by_order_id(&self, order_id: &str) -> Reply {
        match self
            .payment_key_by_order_id
            .get(order_id)
            .and_then(|key| self.payments.get(key))
        {
            Some(payment) => Reply::ok(payment_json(payment, self.now_kst())),
            None => Reply::not_found_payment(),
        }
    }

    pub(crate) fn cancel(&mut self, payment_key: &str, body: CancelBody) -> Reply {
        let reason_chars = body.cancel_reason.chars().count();
        if reason_chars == 0 || reason_chars > 200 {
            return Reply::error(
                400,
                "INVALID_REQUEST",
                "cancelReason은 1자 이상 200자 이하여야 합니다.",
            );
        }
        if let Some(amount) = body.cancel_amount {
            if let Err(reply) = validate_amount(amount) {
                return reply;
            }
        }
        let now = self.now_kst();
        let Some(payment) = self.payments.get_mut(payment_key) else {
            return Reply::not_found_payment();
        };
        if payment.status == PaymentStatus::Canceled {
            return Reply::error(400, "ALREADY_CANCELED_PAYMENT", "이미 취소된 결제 입니다.");
        }
        if !payment.charged() {
            // Nothing was paid into the account: there is nothing to give back.
            return Reply::error(
                403,
                "NOT_CANCELABLE_PAYMENT",
                "취소 할 수 없는 결제 입니다. (입금 전 가상계좌)",
            );
        }
        if payment.cancels.len() >= MAX_CANCELS_PER_PAYMENT {
            return Reply::error(
                403,
                "NOT_CANCELABLE_PAYMENT",
                "취소 할 수 없는 결제 입니다. (too many cancels)",
            );
        }
        let amount = body.cancel_amount.unwrap_or(payment.balance_amount);
        if amount > payment.balance_amount {
            return Reply::error(403, "NOT_CANCELABLE_AMOUNT", "취소 할 수 없는 금액 입니다.");
        }
        let transaction_key = new_key("sbx_tx");
        payment.balance_amount -= amount;
        payment.status = if payment.balance_amount == 0 {
            PaymentStatus::Canceled
        } else {
            PaymentStatus::PartialCanceled
        };
        payment.cancels.push(Cancel {
            transaction_key: transaction_key.clone(),
            amount,
            reason: body.cancel_reason,
            canceled_at: now,
        });
        payment.last_transaction_key = transaction_key;
        let reply = Reply::ok(payment_json(payment, now));
        *self
            .canceled_amount_by_payment_key
            .entry(payment_key.to_owned())
            .or_insert(0) += amount;
        reply
    }

    // ---- billing --------------------------------------------------------------------------

    pub(crate) fn issue_billing_key(&mut self, body: BillingIssueBody) -> Reply {
        if body.auth_key.is_empty() || body.auth_key.chars().count() > 300 {
            return Reply::error(
                400,
                "INVALID_REQUEST",
                "authKey는 1자 이상 300자 이하여야 합니다.",
            );
        }
        if let Err(reply) = validate_customer_key(&body.customer_key) {
            return reply;
        }
        let behaviour = match Behaviour::from_test_input(&body.auth_key) {
            Ok(behaviour) => behaviour,
            Err(err) => return Reply::error(400, "INVALID_REQUEST", &err.to_string()),
        };
        // An auth key is single-use at Toss. The sandbox answers a repeat with the same key
        // instead, so a client that lost the first answer can safely ask again.
        if let Some(existing) = self.billing_key_by_auth_key.get(&body.auth_key) {
            let Some(record) = self.billing_keys.get(existing) else {
                return Reply::error(
                    500,
                    "FAILED_INTERNAL_SYSTEM_PROCESSING",
                    "sandbox state is inconsistent",
                );
            };
            if record.customer_key != body.customer_key {
                return Reply::error(
                    400,
                    "NOT_MATCHES_CUSTOMER_KEY",
                    "빌링 인증 고객키와 결제 요청 고객키가 일치하지 않습니다.",
                );
            }
            return Reply::ok(billing_key_json(existing, record));
        }
        if self.billing_keys.len() >= self.limits.max_records {
            return Reply::capacity_exceeded("billing keys");
        }
        let billing_key = new_key("sbx_bk");
        let record = BillingKey {
            customer_key: body.customer_key,
            behaviour,
            card: Card::for_seed(&body.auth_key),
            authenticated_at: self.now_kst(),
        };
        let reply = Reply::ok(billing_key_json(&billing_key, &record));
        self.billing_key_by_auth_key
            .insert(body.auth_key, billing_key.clone());
        self.billing_keys.insert(billing_key, record);
        reply
    }

    pub(crate) fn charge_billing_key(&mut self, billing_key: &str, body: ChargeBody) -> Reply {
        if let Err(reply) = validate_order_id(&body.order_id)
            .and_then(|()| validate_amount(body.amount))
            .and_then(|()| validate_order_name(&body.order_name))
        {
            return reply;
        }
        let Some(record) = self.billing_keys.get(billing_key) else {
            return Reply::error(
                404,
                "NOT_FOUND_BILLING",
                "존재하지 않는 빌링 결제 인증 정보 입니다.",
            );
        };
        if record.customer_key != body.customer_key {
            return Reply::error(
                400,
                "NOT_MATCHES_CUSTOMER_KEY",
                "빌링 인증 고객키와 결제 요청 고객키가 일치하지 않습니다.",
            );
        }
        let behaviour = record.behaviour;
        let card = record.card.clone();
        if let Err(reply) = self.count_attempt(&body.order_id) {
            return reply;
        }
        if self.payment_key_by_order_id.contains_key(&body.order_id) {
            return Reply::error(
                400,
                "DUPLICATED_ORDER_ID",
                "이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.",
            );
        }
        let flaky_key = format!("charge:{billing_key}:{}", body.order_id);
        let delay = match self.decide(behaviour, &flaky_key) {
            Ok(delay) => delay,
            Err(reply) => return reply,
        };
        let mut payment = Payment::approved(
            self.now_kst(),
            new_key("sbx_pay"),
            body.order_id,
            body.order_name,
            true,
            body.amount,
        );
        payment.card = card;
        match self.record_charge(payment) {
            Ok(payment) => Reply::ok(payment_json(&payment, self.now_kst())).with_delay(delay),
            Err(reply) => reply,
        }
    }

    pub(crate) fn set_billing_key_behaviour(
        &mut self,
        billing_key: &str,
        behaviour: Behaviour,
    ) -> bool {
        match self.billing_keys.get_mut(billing_key) {
            Some(record) => {
                record.behaviour = behaviour.bounded();
                true
            }
            None => false,
        }
    }

    // ---- stats ----------------------------------------------------------------------------

    pub(crate) fn stats(&self) -> SandboxStats {
        SandboxStats {
            total_charges: self.total_charges,
            charges_by_order_id: sorted(&self.charges_by_order_id),
            attempts_by_order_id: sorted(&self.attempts_by_order_id),
            canceled_amount_by_payment_key: sorted(&self.canceled_amount_by_payment_key),
            total_canceled_amount: self.canceled_amount_by_payment_key.values().sum(),
            payments: self.payments.len() as u64,
            billing_keys: self.billing_keys.len() as u64,
        }
    }

    /// Every money movement the sandbox made (approvals and cancels), for the settlement report
    /// ([`crate::settlements`]), ordered by when it happened.
    pub(crate) fn transactions(&self) -> Vec<SoldTransaction> {
        let mut sold = Vec::new();
        for payment in self.payments.values().filter(|p| p.charged()) {
            sold.push(SoldTransaction {
                payment_key: payment.payment_key.clone(),
                order_id: payment.order_id.clone(),
                transaction_key: payment.approval_transaction_key.clone(),
                amount: payment.total_amount,
                at: payment.approved_at,
            });
            for cancel in &payment.cancels {
                sold.push(SoldTransaction {
                    payment_key: payment.payment_key.clone(),
                    order_id: payment.order_id.clone(),
                    transaction_key: cancel.transaction_key.clone(),
                    amount: -cancel.amount,
                    at: cancel.canceled_at,
                });
            }
        }
        sold.sort_by(|a, b| (a.at, &a.transaction_key).cmp(&(b.at, &b.transaction_key)));
        sold
    }

    /// Now by the store's clock (the sandbox's clock, shared by its Stripe side).
    pub(crate) fn now_utc(&self) -> DateTime<Utc> {
        self.limits
            .clock
            .as_ref()
            .map_or_else(Utc::now, |clock| clock())
    }

    /// Today in Korea by the store's clock: the settlement report's "now".
    pub(crate) fn today_kst(&self) -> chrono::NaiveDate {
        self.now_kst().date_naive()
    }

    // ---- shared steps ---------------------------------------------------------------------

    /// Counts a confirm or charge request for `order_id` (replays of a stored answer excluded).
    fn count_attempt(&mut self, order_id: &str) -> Result<(), Reply> {
        if !self.attempts_by_order_id.contains_key(order_id)
            && self.attempts_by_order_id.len() >= self.limits.max_records
        {
            return Err(Reply::capacity_exceeded("orders"));
        }
        *self
            .attempts_by_order_id
            .entry(order_id.to_owned())
            .or_insert(0) += 1;
        Ok(())
    }

    /// Applies a behaviour: `Ok(delay)` to approve and answer after `delay`, or the refusal.
    fn decide(&mut self, behaviour: Behaviour, flaky_key: &str) -> Result<Duration, Reply> {
        match behaviour {
            Behaviour::Approve => Ok(Duration::ZERO),
            Behaviour::Decline => Err(Reply::error(
                403,
                "REJECT_CARD_COMPANY",
                "결제 승인이 거절되었습니다.",
            )),
            Behaviour::InsufficientFunds => Err(Reply::error(
                403,
                "REJECT_CARD_COMPANY",
                "잔액부족으로 결제에 실패했습니다. (insufficient funds)",
            )),
            Behaviour::Expired => Err(Reply::error(
                400,
                "INVALID_CARD_EXPIRATION",
                "카드 정보를 다시 확인해주세요. (유효기간)",
            )),
            Behaviour::Stopped => Err(Reply::error(
                400,
                "INVALID_STOPPED_CARD",
                "정지된 카드 입니다.",
            )),
            Behaviour::ExceedLimit => Err(Reply::error(
                400,
                "EXCEED_MAX_AMOUNT",
                "거래금액 한도를 초과했습니다.",
            )),
            Behaviour::ProviderError => Err(Reply::provider_error()),
            Behaviour::Flaky { failures } => {
                if !self.flaky_attempts.contains_key(flaky_key)
                    && self.flaky_attempts.len() >= self.limits.max_records
                {
                    return Err(Reply::capacity_exceeded("flaky counters"));
                }
                let failed = self.flaky_attempts.entry(flaky_key.to_owned()).or_insert(0);
                if *failed < failures {
                    *failed += 1;
                    return Err(Reply::provider_error());
                }
                Ok(Duration::ZERO)
            }
            Behaviour::TimeoutAfterCharge => Ok(self.limits.timeout_after_charge_delay),
            Behaviour::Slow { delay_ms } => Ok(Duration::from_millis(delay_ms)),
            Behaviour::UnknownCode => Err(Reply::error(
                400,
                "SANDBOX_UNKNOWN_CODE",
                "a failure code payledger does not know (sandbox test input)",
            )),
            // Confirms open a virtual account before deciding; a billing charge cannot be one.
            Behaviour::AwaitDeposit { .. } => Err(Reply::error(
                400,
                "INVALID_REQUEST",
                "a virtual account (sandbox_virtual_account_) is not a card or billing charge",
            )),
            Behaviour::BillingKeyInvalid => Err(Reply::error(
                400,
                "INVALID_BILL_KEY_REQUEST",
                "빌링키 인증이 완료되지 않았거나 유효하지 않은 빌링 거래 건입니다.",
            )),
        }
    }

    /// Stores an approved payment and counts the charge.
    fn record_charge(&mut self, payment: Payment) -> Result<Payment, Reply> {
        if self.payments.len() >= self.limits.max_records {
            return Err(Reply::capacity_exceeded("payments"));
        }
        if !self.charges_by_order_id.contains_key(&payment.order_id)
            && self.charges_by_order_id.len() >= self.limits.max_records
        {
            return Err(Reply::capacity_exceeded("orders"));
        }
        *self
            .charges_by_order_id
            .entry(payment.order_id.clone())
            .or_insert(0) += 1;
        self.total_charges += 1;
        self.payment_key_by_order_id
            .insert(payment.order_id.clone(), payment.payment_key.clone());
        self.payments
            .insert(payment.payment_key.clone(), payment.clone());
        Ok(payment)
    }
}

impl std::fmt::Debug for StoreLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLimits")
            .field("max_records", &self.max_records)
            .field(
                "timeout_after_charge_delay",
                &self.timeout_after_charge_delay,
            )
            .field("clock", &self.clock.as_ref().map(|_| "ledger"))
            .finish()
    }
}

impl Payment {
    fn approved(
        now: DateTime<FixedOffset>,
        payment_key: String,
        order_id: String,
        order_name: String,
        is_billing: bool,
        amount: i64,
    ) -> Payment {
        let card = Card::for_seed(&payment_key);
        let approval_transaction_key = new_key("sbx_tx");
        Payment {
            last_transaction_key: approval_transaction_key.clone(),
            approval_transaction_key,
            payment_key,
            order_id,
            order_name,
            is_billing,
            status: PaymentStatus::Done,
            total_amount: amount,
            balance_amount: amount,
            requested_at: now,
            approved_at: now,
            card,
            cancels: Vec::new(),
            deposit_due: None,
        }
    }
}

impl Card {
    /// A made-up card chosen by the input, so one test input always shows the same card. Only
    /// the masked form ever exists: the sandbox never has a card number in clear.
    fn for_seed(seed: &str) -> Card {
        const ISSUERS: [(&str, &str, &str); 4] = [
            ("61", "현대", "43301234"),
            ("11", "KB국민", "94903512"),
            ("41", "신한", "45184210"),
            ("51", "삼성", "53651230"),
        ];
        let hash = fnv1a(seed);
        let (issuer_code, company, bin) = ISSUERS[(hash % ISSUERS.len() as u64) as usize];
        let last4 = (hash / 7) % 10_000;
        Card {
            issuer_code,
            company,
            masked_number: format!("{bin}****{last4:04}"),
            card_type: match hash % 3 {
                0 => "체크",
                _ => "신용",
            },
        }
    }

    fn wire(&self, amount: i64) -> CardWire {
        CardWire {
            issuer_code: self.issuer_code.to_owned(),
            acquirer_code: self.issuer_code.to_owned(),
            number: self.masked_number.clone(),
            card_type: self.card_type.to_owned(),
            owner_type: "개인".to_owned(),
            installment_plan_months: 0,
            amount,
        }
    }
}

fn payment_json(payment: &Payment, now: DateTime<FixedOffset>) -> Value {
    let wire = PaymentWire {
        m_id: "sandbox".to_owned(),
        version: "2022-11-16".to_owned(),
        last_transaction_key: payment.last_transaction_key.clone(),
        payment_key: payment.payment_key.clone(),
        order_id: payment.order_id.clone(),
        order_name: payment.order_name.clone(),
        status: payment.status_at(now).as_str().to_owned(),
        kind: if payment.is_billing {
            "BILLING"
        } else {
            "NORMAL"
        }
        .to_owned(),
        method: if payment.charged() {
            "카드"
        } else {
            "가상계좌"
        }
        .to_owned(),
        currency: "KRW".to_owned(),
        total_amount: payment.total_amount,
        balance_amount: payment.balance_amount,
        requested_at: kst_text(payment.requested_at),
        approved_at: payment.charged().then(|| kst_text(payment.approved_at)),
        card: payment
            .charged()
            .then(|| payment.card.wire(payment.total_amount)),
        // Toss sends `null` until the first cancel; the sandbox does too, so clients handle it.
        cancels: if payment.cancels.is_empty() {
            None
        } else {
            Some(
                payment
                    .cancels
                    .iter()
                    .map(|cancel| CancelWire {
                        transaction_key: cancel.transaction_key.clone(),
                        cancel_amount: cancel.amount,
                        cancel_reason: cancel.reason.clone(),
                        canceled_at: kst_text(cancel.canceled_at),
                        tax_free_amount: 0,
                        refundable_amount: payment.balance_amount,
                    })
                    .collect(),
            )
        },
        failure: None,
    };
    serde_json::to_value(wire).unwrap_or(Value::Null)
}

fn billing_key_json(billing_key: &str, record: &BillingKey) -> Value {
    let wire = BillingKeyWire {
        m_id: "sandbox".to_owned(),
        customer_key: record.customer_key.clone(),
        authenticated_at: kst_text(record.authenticated_at),
        method: "카드".to_owned(),
        billing_key: billing_key.to_owned(),
        card_company: record.card.company.to_owned(),
        card_number: record.card.masked_number.clone(),
        card: record.card.wire(0),
    };
    serde_json::to_value(wire).unwrap_or(Value::Null)
}

fn validate_payment_key(payment_key: &str) -> Result<(), Reply> {
    if payment_key.is_empty() || payment_key.chars().count() > 200 {
        return Err(Reply::error(
            400,
            "INVALID_PAYMENT_KEY",
            "잘못된 결제 키 입니다.",
        ));
    }
    Ok(())
}

/// Toss: 6 to 64 characters of letters, digits, `-` and `_`.
fn validate_order_id(order_id: &str) -> Result<(), Reply> {
    let ok = (6..=64).contains(&order_id.len())
        && order_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Reply::error(
            400,
            "INVALID_ORDER_ID",
            "orderId는 영문 대소문자, 숫자, 특수문자(-, _) 만 허용합니다. 6자 이상 64자 이하여야 합니다.",
        ))
    }
}

fn validate_order_name(order_name: &str) -> Result<(), Reply> {
    let chars = order_name.chars().count();
    if chars == 0 || chars > 100 {
        return Err(Reply::error(
            400,
            "INVALID_ORDER_NAME",
            "주문 이름은 100자 이하여야 합니다.",
        ));
    }
    Ok(())
}

/// Toss: 2 to 255 characters of letters, digits and `- _ = . @`.
fn validate_customer_key(customer_key: &str) -> Result<(), Reply> {
    let ok = (2..=255).contains(&customer_key.len())
        && customer_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Reply::error(
            400,
            "INVALID_CUSTOMER_KEY",
            "customerKey는 영문 대소문자, 숫자, 특수문자 -, _, =, ., @로 2자 이상 255자 이하여야 합니다.",
        ))
    }
}

fn validate_amount(amount: i64) -> Result<(), Reply> {
    if amount <= 0 {
        return Err(Reply::error(
            400,
            "BELOW_ZERO_AMOUNT",
            "금액은 0보다 커야 합니다.",
        ));
    }
    if amount > MAX_AMOUNT_MINOR {
        return Err(Reply::error(
            400,
            "EXCEED_MAX_AMOUNT",
            "거래금액 한도를 초과했습니다.",
        ));
    }
    Ok(())
}

fn kst(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    let kst = FixedOffset::east_opt(KST_OFFSET_SECONDS).expect("nine hours is a valid UTC offset");
    at.with_timezone(&kst)
}

fn kst_text(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn new_key(prefix: &str) -> String {
    format!("{prefix}_{}", crate::ids::random_chars(25))
}

fn sorted<V: Copy>(map: &HashMap<String, V>) -> BTreeMap<String, V> {
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

/// FNV-1a: a tiny stable hash so a test input maps to the same made-up card on every run.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_records: usize) -> Store {
        Store::new(StoreLimits {
            max_records,
            timeout_after_charge_delay: Duration::from_secs(30),
            clock: None,
        })
    }

    fn confirm_body(payment_key: &str, order_id: &str, amount: i64) -> ConfirmBody {
        ConfirmBody {
            payment_key: payment_key.to_owned(),
            order_id: order_id.to_owned(),
            amount,
        }
    }

    #[test]
    fn a_virtual_account_waits_for_its_deposit_then_expires_on_the_clock_uncharged() {
        let start = Utc::now();
        let offset_s = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let read = offset_s.clone();
        let mut store = Store::new(StoreLimits {
            max_records: 10,
            timeout_after_charge_delay: Duration::from_secs(30),
            clock: Some(std::sync::Arc::new(move || {
                start + chrono::Duration::seconds(read.load(std::sync::atomic::Ordering::SeqCst))
            })),
        });
        let opened = store.confirm(confirm_body(
            "sandbox_virtual_account_20_va",
            "order-va",
            9000,
        ));
        assert_eq!(opened.status, 200);
        assert_eq!(opened.body["status"], "WAITING_FOR_DEPOSIT");
        assert_eq!(opened.body["approvedAt"], Value::Null);
        let status = |store: &Store| store.payment_by_order_id("order-va").body["status"].clone();
        offset_s.store(20 * 60 - 1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(status(&store), "WAITING_FOR_DEPOSIT");
        offset_s.store(20 * 60, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(status(&store), "EXPIRED");
        assert_eq!(
            store.payment_by_key("sandbox_virtual_account_20_va").body["status"],
            "EXPIRED"
        );
        // Never charged, nothing to cancel, nothing on the settlement report.
        assert_eq!(store.stats().total_charges, 0);
        assert!(store.transactions().is_empty());
        let cancel = store.cancel(
            "sandbox_virtual_account_20_va",
            CancelBody {
                cancel_reason: "customer".into(),
                cancel_amount: None,
            },
        );
        assert_eq!(cancel.status, 403);
        // Confirming the order again is refused like any processed payment.
        assert_eq!(
            store
                .confirm(confirm_body("pk_other", "order-va", 9000))
                .status,
            400
        );
    }

    #[test]
    fn a_confirmed_order_cannot_be_charged_again() {
        let mut store = store(10);
        assert_eq!(
            store.confirm(confirm_body("pk_1", "order-1", 1000)).status,
            200
        );
        let second = store.confirm(confirm_body("pk_2", "order-1", 1000));
        assert_eq!(second.status, 400);
        assert_eq!(second.body["code"], "ALREADY_PROCESSED_PAYMENT");
        let stats = store.stats();
        assert_eq!(stats.charges_by_order_id.get("order-1"), Some(&1));
        assert_eq!(stats.attempts_by_order_id.get("order-1"), Some(&2));
    }

    #[test]
    fn a_full_store_refuses_instead_of_evicting() {
        let mut store = store(1);
        assert_eq!(
            store.confirm(confirm_body("pk_1", "order-1", 1000)).status,
            200
        );
        let refused = store.confirm(confirm_body("pk_2", "order-2", 1000));
        assert_eq!(refused.status, 503);
        assert_eq!(store.stats().payments, 1);
        assert_eq!(store.payment_by_order_id("order-1").status, 200);
    }

    #[test]
    fn cards_are_masked_and_stable_per_input() {
        let card = Card::for_seed("authkey-1");
        assert_eq!(card.masked_number.len(), 16);
        assert_eq!(&card.masked_number[8..12], "****");
        assert_eq!(
            Card::for_seed("authkey-1").masked_number,
            card.masked_number
        );
    }

    #[test]
    fn cancels_never_exceed_the_balance() {
        let mut store = store(10);
        store.confirm(confirm_body("pk_1", "order-1", 1000));
        let partial = store.cancel(
            "pk_1",
            CancelBody {
                cancel_reason: "partial".into(),
                cancel_amount: Some(400),
            },
        );
        assert_eq!(partial.body["status"], "PARTIAL_CANCELED");
        assert_eq!(partial.body["balanceAmount"], 600);
        let over = store.cancel(
            "pk_1",
            CancelBody {
                cancel_reason: "too much".into(),
                cancel_amount: Some(601),
            },
        );
        assert_eq!(over.body["code"], "NOT_CANCELABLE_AMOUNT");
        let rest = store.cancel(
            "pk_1",
            CancelBody {
                cancel_reason: "rest".into(),
                cancel_amount: None,
            },
        );
        assert_eq!(rest.body["status"], "CANCELED");
        assert_eq!(rest.body["balanceAmount"], 0);
        assert_eq!(store.stats().total_canceled_amount, 1000);
    }
}
