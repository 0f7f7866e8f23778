//! Weekly settlement statements, one per payee, week and currency.
//! Stream `settlement-{payee}-{YYYY-MM-DD}-{CUR}` (the date is the week's Monday).
//!
//! A week runs from Monday 00:00 to Sunday 24:00 in a configured IANA time zone (default
//! Asia/Seoul, domain spec §3.7). Lines arrive as money events happen — a fulfilled payment, a
//! refund, a platform-funded compensation, a hold while a claim is open and its release — each
//! with an id derived from what caused it, so adding one twice adds it once.
//!
//! Confirming freezes the statement: its totals are computed from its own lines and recorded in
//! `StatementConfirmed`, and from then on it takes no line. A line that arrives late (a claim
//! filed on a payment whose statement is confirmed, a refund after the payout) is refused with
//! [`StatementError::Closed`] and its sender carries it to the next week's statement
//! ([`StatementKey::next`]); the line says where it was carried from. Recording the payout
//! reference closes the statement.
//!
//! Totals (all integer minor units):
//! - net sales = payments − refunds;
//! - platform fee = net sales × fee basis points, rounded toward zero (a week whose refunds
//!   exceed its payments gives the fee on the difference back);
//! - net = net sales − fee + compensations − (holds − releases) + carried balances;
//! - net payable = net when positive; a negative net is carried to the next statement.

use crate::ids::{ClaimId, OrderId, PayeeId};
use crate::money::{fee_by_basis_points, BasisPoints, Currency};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Where a week starts and ends unless configured otherwise.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Asia::Seoul;
/// The platform's fee unless configured otherwise: 10 %.
pub const DEFAULT_PLATFORM_FEE_BPS: u32 = 1_000;
/// Lines one statement holds; a bound so a statement's state stays small.
pub const MAX_LINES_PER_STATEMENT: usize = 10_000;
/// How many weeks a late line is carried forward looking for an open statement.
pub const MAX_CARRY_WEEKS: u32 = 520;
pub const MAX_PAYOUT_REFERENCE_CHARS: usize = 100;

/// One statement: payee, week (its Monday) and currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementKey {
    pub payee_id: PayeeId,
    pub week_start: NaiveDate,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a statement id is PAYEE-YYYY-MM-DD-CUR with the week's Monday")]
pub struct InvalidStatementId;

impl StatementKey {
    /// `{payee}-{YYYY-MM-DD}-{CUR}`: readable, and parsed from the end because payee ids may
    /// contain `-`.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.payee_id,
            self.week_start.format("%Y-%m-%d"),
            self.currency
        )
    }

    pub fn parse(id: &str) -> Result<StatementKey, InvalidStatementId> {
        // ASCII only, so byte offsets from the end are character offsets.
        if !id.is_ascii() || id.len() < 1 + 1 + 10 + 1 + 3 {
            return Err(InvalidStatementId);
        }
        let (rest, currency) = id.split_at(id.len() - 3);
        let rest = rest.strip_suffix('-').ok_or(InvalidStatementId)?;
        let (payee, date) = rest.split_at(rest.len() - 10);
        let payee = payee.strip_suffix('-').ok_or(InvalidStatementId)?;
        let currency = Currency::parse(currency).map_err(|_| InvalidStatementId)?;
        let week_start =
            NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| InvalidStatementId)?;
        if week_start.weekday().num_days_from_monday() != 0 {
            return Err(InvalidStatementId);
        }
        let payee_id = PayeeId::parse(payee).map_err(|_| InvalidStatementId)?;
        Ok(StatementKey {
            payee_id,
            week_start,
            currency,
        })
    }

    pub fn stream_id(&self) -> String {
        crate::streams::StreamKind::Settlement.name(self.id())
    }

    /// The same payee's statement of the following week.
    pub fn next(&self) -> StatementKey {
        StatementKey {
            week_start: self.week_start + Duration::days(7),
            ..self.clone()
        }
    }

    pub fn for_time(
        payee_id: PayeeId,
        currency: Currency,
        at: DateTime<Utc>,
        tz: Tz,
    ) -> StatementKey {
        StatementKey {
            payee_id,
            week_start: week_start_of(at, tz),
            currency,
        }
    }
}

/// The Monday (in `tz`) of the week containing `at`.
pub fn week_start_of(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    let local_date = at.with_timezone(&tz).date_naive();
    local_date - Duration::days(i64::from(local_date.weekday().num_days_from_monday()))
}

/// The instant local midnight of `date` happens in `tz`. Where a clock change skips midnight,
/// the day starts at the first instant that exists.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    (0..=3)
        .find_map(|hour| {
            tz.from_local_datetime(&(midnight + Duration::hours(hour)))
                .earliest()
        })
        .map(|local| local.with_timezone(&Utc))
        // No zone skips more than a couple of hours; reading midnight as UTC is a safe last resort.
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

/// `[Monday 00:00, next Monday 00:00)` of the week starting `week_start`, in `tz`, as UTC.
pub fn period_of(week_start: NaiveDate, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        local_midnight(week_start, tz),
        local_midnight(week_start + Duration::days(7), tz),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// A payment that became payable: fulfilled, cancelled late, or awarded by a claim.
    Payment,
    /// Money given back to the customer out of a settled payment.
    Refund,
    /// Paid to the payee by the platform on a claim's decision.
    Compensation,
    /// Held back while a claim about the order is open.
    Hold,
    /// A hold given back when the claim was resolved.
    HoldReleased,
    /// A negative net carried from an earlier statement (signed).
    CarriedBalance,
}

/// One line. Amounts are positive except a carried balance, whose sign is its effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLine {
    /// Derived from the cause (`payment:{order}`, `hold:{claim}:{round}`, …): unique per payee.
    pub line_id: String,
    pub kind: LineKind,
    pub order_id: Option<OrderId>,
    pub claim_id: Option<ClaimId>,
    pub amount_minor: i64,
    pub occurred_at: DateTime<Utc>,
    /// The week this line belonged to before it was carried (its statement was confirmed).
    pub carried_from: Option<NaiveDate>,
    pub memo: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementTotals {
    pub payments_minor: i64,
    pub refunds_minor: i64,
    pub compensations_minor: i64,
    pub held_minor: i64,
    pub released_minor: i64,
    pub carried_minor: i64,
    pub net_sales_minor: i64,
    pub platform_fee_bps: u32,
    pub platform_fee_minor: i64,
    /// Before carrying: may be negative.
    pub net_minor: i64,
    /// What the payee is paid: the net when positive, else 0.
    pub net_payable_minor: i64,
    /// What goes to the next statement: the net when negative, else 0.
    pub carry_forward_minor: i64,
}

/// Running sums of a statement's lines by kind: enough to compute its totals without keeping
/// every line (the settlements read model folds these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementSums {
    pub payments_minor: i64,
    pub refunds_minor: i64,
    pub compensations_minor: i64,
    pub held_minor: i64,
    pub released_minor: i64,
    pub carried_minor: i64,
}

impl StatementSums {
    pub fn add(&mut self, line: &StatementLine) {
        let sum = match line.kind {
            LineKind::Payment => &mut self.payments_minor,
            LineKind::Refund => &mut self.refunds_minor,
            LineKind::Compensation => &mut self.compensations_minor,
            LineKind::Hold => &mut self.held_minor,
            LineKind::HoldReleased => &mut self.released_minor,
            LineKind::CarriedBalance => &mut self.carried_minor,
        };
        *sum += line.amount_minor;
    }

    /// The totals these sums give with a fee of `fee_bps` (see the module documentation).
    pub fn totals(&self, fee_bps: BasisPoints) -> StatementTotals {
        let net_sales_minor = self.payments_minor - self.refunds_minor;
        // Toward zero both ways: the payee is never charged a fraction of a minor unit.
        let platform_fee_minor =
            net_sales_minor.signum() * fee_by_basis_points(net_sales_minor.abs(), fee_bps);
        let net_minor = net_sales_minor - platform_fee_minor + self.compensations_minor
            - (self.held_minor - self.released_minor)
            + self.carried_minor;
        StatementTotals {
            payments_minor: self.payments_minor,
            refunds_minor: self.refunds_minor,
            compensations_minor: self.compensations_minor,
            held_minor: self.held_minor,
            released_minor: self.released_minor,
            carried_minor: self.carried_minor,
            net_sales_minor,
            platform_fee_bps: fee_bps.get(),
            platform_fee_minor,
            net_minor,
            net_payable_minor: net_minor.max(0),
            carry_forward_minor: net_minor.min(0),
        }
    }
}

/// Computes a statement's totals from its lines (see the module documentation).
pub fn compute_totals(lines: &[StatementLine], fee_bps: BasisPoints) -> StatementTotals {
    let mut sums = StatementSums::default();
    for line in lines {
        sums.add(line);
    }
    sums.totals(fee_bps)
}

// ---------------------------------------------------------------------------------------------
// Commands and events
// ---------------------------------------------------------------------------------------------

/// How a statement is set up when its first line arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSetup {
    pub key: StatementKey,
    pub time_zone: Tz,
    pub platform_fee: BasisPoints,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementCommand {
    AddLine {
        setup: StatementSetup,
        line: StatementLine,
        at: DateTime<Utc>,
    },
    Confirm {
        at: DateTime<Utc>,
    },
    RecordPayout {
        reference: String,
        amount_minor: i64,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatementEvent {
    StatementOpened(StatementOpened),
    StatementLineAdded(StatementLineAdded),
    StatementConfirmed(StatementConfirmed),
    StatementPaidOut(StatementPaidOut),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementOpened {
    pub statement_id: String,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub week_start: NaiveDate,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub time_zone: String,
    pub platform_fee_bps: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLineAdded {
    pub line: StatementLine,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementConfirmed {
    pub statement_id: String,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub line_count: u32,
    pub totals: StatementTotals,
    pub at: DateTime<Utc>,
    /// Sessions whose payment this statement holds because their session notes are missing
    /// (a `notes:{order}` hold not released on the same statement): the Monday notification's
    /// "상담일지 미작성으로 N건이 보류되었습니다". 0 in events recorded before it existed.
    #[serde(default)]
    pub sessions_held_for_notes: u32,
    /// What those holds add up to.
    #[serde(default)]
    pub held_for_notes_minor: i64,
}

/// The lines of `lines` held for missing session notes and not released on them: how many,
/// and their sum.
pub fn held_for_notes(lines: &[StatementLine]) -> (u32, i64) {
    let released: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.kind == LineKind::HoldReleased)
        .filter_map(|l| l.line_id.strip_prefix("notes-release:"))
        .collect();
    lines
        .iter()
        .filter(|l| l.kind == LineKind::Hold)
        .filter_map(|l| l.line_id.strip_prefix("notes:").map(|order| (order, l)))
        .filter(|(order, _)| !released.contains(order))
        .fold((0, 0), |(count, sum), (_, l)| {
            (count + 1, sum + l.amount_minor)
        })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementPaidOut {
    pub statement_id: String,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub reference: String,
    pub amount_minor: i64,
    pub at: DateTime<Utc>,
}

impl DomainEvent for StatementEvent {
    fn event_type(&self) -> String {
        match self {
            StatementEvent::StatementOpened(_) => "StatementOpened",
            StatementEvent::StatementLineAdded(_) => "StatementLineAdded",
            StatementEvent::StatementConfirmed(_) => "StatementConfirmed",
            StatementEvent::StatementPaidOut(_) => "StatementPaidOut",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("statement does not exist")]
    NotFound,
    #[error("the line belongs to another statement")]
    WrongStatement,
    #[error("the statement is {0:?}: it takes no more lines")]
    Closed(StatementStatus),
    #[error("the statement's week ends at {period_end}: it cannot be confirmed before")]
    PeriodNotOver { period_end: DateTime<Utc> },
    #[error("the statement is not confirmed")]
    NotConfirmed,
    #[error("the statement was paid out with another reference")]
    AlreadyPaidOut,
    #[error("the payout of {amount_minor} differs from the net payable {net_payable_minor}")]
    PayoutAmountMismatch {
        amount_minor: i64,
        net_payable_minor: i64,
    },
    #[error("the payout reference must be 1 to {MAX_PAYOUT_REFERENCE_CHARS} printable characters")]
    InvalidReference,
    #[error("a line's amount is out of range for its kind")]
    InvalidLine,
    #[error("the statement has {MAX_LINES_PER_STATEMENT} lines; refusing more")]
    TooManyLines,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementStatus {
    #[default]
    Open,
    Confirmed,
    PaidOut,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    pub opened: Option<StatementOpened>,
    pub status: StatementStatus,
    pub lines: Vec<StatementLine>,
    pub line_ids: BTreeSet<String>,
    pub confirmed: Option<StatementConfirmed>,
    pub paid_out: Option<StatementPaidOut>,
}

impl Statement {
    pub fn fee(&self) -> BasisPoints {
        self.opened
            .as_ref()
            .and_then(|o| BasisPoints::new(o.platform_fee_bps).ok())
            .unwrap_or(BasisPoints::ZERO)
    }

    /// A statement's invariants: one line per line id, and frozen totals that are the sum of
    /// its lines, paid as the net when positive and carried when negative. Asserted after every
    /// decision and by the settlements read model before it writes a statement.
    pub fn assert_invariants(&self) {
        assert_eq!(self.lines.len(), self.line_ids.len(), "a line id twice");
        let totals = self.totals();
        if self.confirmed.is_some() {
            assert_eq!(
                totals,
                compute_totals(&self.lines, self.fee()),
                "frozen totals differ from the lines"
            );
        }
        assert_eq!(totals.net_payable_minor, totals.net_minor.max(0), "payable");
        assert_eq!(
            totals.carry_forward_minor,
            totals.net_minor.min(0),
            "carried"
        );
    }

    /// The totals now: frozen ones once confirmed, else computed from the lines.
    pub fn totals(&self) -> StatementTotals {
        match &self.confirmed {
            Some(confirmed) => confirmed.totals,
            None => compute_totals(&self.lines, self.fee()),
        }
    }

    fn decide(&self, command: StatementCommand) -> Result<Vec<StatementEvent>, StatementError> {
        match command {
            StatementCommand::AddLine { setup, line, at } => self.add_line(setup, line, at),
            StatementCommand::Confirm { at } => {
                let opened = self.opened.as_ref().ok_or(StatementError::NotFound)?;
                if self.status != StatementStatus::Open {
                    // Confirmed already: the frozen statement stands.
                    return Ok(vec![]);
                }
                if at < opened.period_end {
                    return Err(StatementError::PeriodNotOver {
                        period_end: opened.period_end,
                    });
                }
                let (sessions_held_for_notes, held_for_notes_minor) = held_for_notes(&self.lines);
                Ok(vec![StatementEvent::StatementConfirmed(
                    StatementConfirmed {
                        statement_id: opened.statement_id.clone(),
                        payee_id: opened.payee_id.clone(),
                        currency: opened.currency,
                        line_count: self.lines.len() as u32,
                        totals: compute_totals(&self.lines, self.fee()),
                        at,
                        sessions_held_for_notes,
                        held_for_notes_minor,
                    },
                )])
            }
            StatementCommand::RecordPayout {
                reference,
                amount_minor,
                at,
            } => self.record_payout(reference, amount_minor, at),
        }
    }

    fn add_line(
        &self,
        setup: StatementSetup,
        line: StatementLine,
        at: DateTime<Utc>,
    ) -> Result<Vec<StatementEvent>, StatementError> {
        let valid_amount = match line.kind {
            LineKind::CarriedBalance => line.amount_minor != 0,
            _ => line.amount_minor > 0,
        };
        let id_len = line.line_id.chars().count();
        if !valid_amount || id_len == 0 || id_len > 200 || line.memo.chars().count() > 500 {
            return Err(StatementError::InvalidLine);
        }
        let mut events = Vec::with_capacity(2);
        match &self.opened {
            Some(opened) => {
                let same = opened.payee_id == setup.key.payee_id
                    && opened.week_start == setup.key.week_start
                    && opened.currency == setup.key.currency;
                if !same {
                    return Err(StatementError::WrongStatement);
                }
            }
            None => {
                let (period_start, period_end) = period_of(setup.key.week_start, setup.time_zone);
                events.push(StatementEvent::StatementOpened(StatementOpened {
                    statement_id: setup.key.id(),
                    payee_id: setup.key.payee_id.clone(),
                    currency: setup.key.currency,
                    week_start: setup.key.week_start,
                    period_start,
                    period_end,
                    time_zone: setup.time_zone.name().to_string(),
                    platform_fee_bps: setup.platform_fee.get(),
                    at,
                }));
            }
        }
        // A line already here stays as it is, whatever the statement's status: this is how a
        // retried sender finds where its line went.
        if self.line_ids.contains(&line.line_id) {
            return Ok(vec![]);
        }
        if self.status != StatementStatus::Open {
            return Err(StatementError::Closed(self.status));
        }
        if self.lines.len() >= MAX_LINES_PER_STATEMENT {
            return Err(StatementError::TooManyLines);
        }
        events.push(StatementEvent::StatementLineAdded(StatementLineAdded {
            line,
            at,
        }));
        Ok(events)
    }

    fn record_payout(
        &self,
        reference: String,
        amount_minor: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<StatementEvent>, StatementError> {
        let opened = self.opened.as_ref().ok_or(StatementError::NotFound)?;
        let len = reference.chars().count();
        if len == 0 || len > MAX_PAYOUT_REFERENCE_CHARS || reference.chars().any(char::is_control) {
            return Err(StatementError::InvalidReference);
        }
        match self.status {
            StatementStatus::Open => return Err(StatementError::NotConfirmed),
            StatementStatus::PaidOut => {
                return match &self.paid_out {
                    Some(paid) if paid.reference == reference => Ok(vec![]),
                    _ => Err(StatementError::AlreadyPaidOut),
                }
            }
            StatementStatus::Confirmed => {}
        }
        let net_payable_minor = self.totals().net_payable_minor;
        if amount_minor != net_payable_minor {
            return Err(StatementError::PayoutAmountMismatch {
                amount_minor,
                net_payable_minor,
            });
        }
        Ok(vec![StatementEvent::StatementPaidOut(StatementPaidOut {
            statement_id: opened.statement_id.clone(),
            payee_id: opened.payee_id.clone(),
            currency: opened.currency,
            reference,
            amount_minor,
            at,
        })])
    }
}

impl Aggregate for Statement {
    const TYPE: &'static str = "statement";
    type Command = StatementCommand;
    type Event = StatementEvent;
    type Error = StatementError;
    type Services = ();

    async fn handle(
        &mut self,
        command: StatementCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), StatementError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        self.assert_invariants();
        Ok(())
    }

    fn apply(&mut self, event: StatementEvent) {
        match event {
            StatementEvent::StatementOpened(opened) => self.opened = Some(opened),
            StatementEvent::StatementLineAdded(added) => {
                self.line_ids.insert(added.line.line_id.clone());
                self.lines.push(added.line);
            }
            StatementEvent::StatementConfirmed(confirmed) => {
                self.status = StatementStatus::Confirmed;
                self.confirmed = Some(confirmed);
            }
            StatementEvent::StatementPaidOut(paid) => {
                self.status = StatementStatus::PaidOut;
                self.paid_out = Some(paid);
            }
        }
    }
}
