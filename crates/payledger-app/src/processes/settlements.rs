//! The settlement process: puts money events on the payees' weekly statements, remembering orders and claims in its own tables inside its transaction.

use super::*;

mod disputes;

/// Puts money events on the payees' weekly statements. Its memory of orders and claims lives in
/// `pm_settlement_orders` / `pm_settlement_claims`, written in the process's transaction.
pub struct SettlementProcess {
    settlements: Arc<Settlements>,
}

struct OrderRow {
    payee_id: PayeeId,
    currency: Currency,
    captured_minor: i64,
    refunded_minor: i64,
    payable_week: Option<NaiveDate>,
    is_booking: bool,
    notes_recorded: bool,
    notes_held_minor: i64,
    notes_hold_week: Option<NaiveDate>,
}

impl SettlementProcess {
    pub const NAME: &'static str = "settlements";

    pub fn new(settlements: Arc<Settlements>) -> SettlementProcess {
        SettlementProcess { settlements }
    }

    async fn order_row(
        state: &State<'_>,
        order_id: &OrderId,
    ) -> Result<Option<OrderRow>, ProcessError> {
        let row = sqlx::query(
            "SELECT payee_id, currency, captured_minor, refunded_minor, payable_week, is_booking, \
                    notes_recorded, notes_held_minor, notes_hold_week \
             FROM pm_settlement_orders WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .fetch_optional(&mut **state.lock().await)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let currency: String = row.try_get("currency")?;
        Ok(Some(OrderRow {
            payee_id: parse_id(PayeeId::parse(row.try_get::<String, _>("payee_id")?))?,
            currency: Currency::parse(&currency)
                .map_err(|e| ProcessError::GiveUp(e.to_string()))?,
            captured_minor: row.try_get("captured_minor")?,
            refunded_minor: row.try_get("refunded_minor")?,
            payable_week: row.try_get("payable_week")?,
            is_booking: row.try_get("is_booking")?,
            notes_recorded: row.try_get("notes_recorded")?,
            notes_held_minor: row.try_get("notes_held_minor")?,
            notes_hold_week: row.try_get("notes_hold_week")?,
        }))
    }

    fn line(
        line_id: String,
        kind: LineKind,
        order_id: &OrderId,
        claim_id: Option<&ClaimId>,
        amount_minor: i64,
        occurred_at: DateTime<Utc>,
        memo: &str,
    ) -> StatementLine {
        StatementLine {
            line_id,
            kind,
            order_id: Some(order_id.clone()),
            claim_id: claim_id.cloned(),
            amount_minor,
            occurred_at,
            carried_from: None,
            memo: memo.to_string(),
        }
    }

    async fn add(
        &self,
        base: StatementKey,
        line: StatementLine,
    ) -> Result<StatementKey, ProcessError> {
        self.settlements
            .add_line(base, line, &system_context(Self::NAME))
            .await
            .map_err(flow_error)
    }

    fn week_key(&self, order: &OrderRow, week_start: NaiveDate) -> StatementKey {
        StatementKey {
            payee_id: order.payee_id.clone(),
            week_start,
            currency: order.currency,
        }
    }

    /// Puts the order's payment (and what was refunded before) on the statement of `at`'s week,
    /// and holds it for claims already open. Once per order.
    async fn make_payable(
        &self,
        state: &State<'_>,
        order_id: &OrderId,
        at: DateTime<Utc>,
        memo: &str,
        needs_session_notes: bool,
    ) -> Result<(), ProcessError> {
        let Some(order) = Self::order_row(state, order_id).await? else {
            return Ok(());
        };
        if order.payable_week.is_some() || order.captured_minor == 0 {
            return Ok(());
        }
        let base = self
            .settlements
            .key_for(order.payee_id.clone(), order.currency, at);
        let payment = Self::line(
            format!("payment:{order_id}"),
            LineKind::Payment,
            order_id,
            None,
            order.captured_minor,
            at,
            memo,
        );
        let key = self.add(base, payment).await?;
        if order.refunded_minor > 0 {
            let refunds = Self::line(
                format!("refund:{order_id}:before-payable"),
                LineKind::Refund,
                order_id,
                None,
                order.refunded_minor,
                at,
                "refunded before the payment became payable",
            );
            self.add(key.clone(), refunds).await?;
        }
        sqlx::query("UPDATE pm_settlement_orders SET payable_week = $2 WHERE order_id = $1")
            .bind(order_id.as_str())
            .bind(key.week_start)
            .execute(&mut **state.lock().await)
            .await?;
        let open_claims: Vec<(String, i32)> = sqlx::query_as(
            "SELECT claim_id, round FROM pm_settlement_claims \
             WHERE order_id = $1 AND is_open AND held_minor = 0 ORDER BY claim_id",
        )
        .bind(order_id.as_str())
        .fetch_all(&mut **state.lock().await)
        .await?;
        let order = OrderRow {
            payable_week: Some(key.week_start),
            ..order
        };
        self.hold_for_dispute(state, &order, order_id, key.week_start, at)
            .await?;
        if needs_session_notes && order.is_booking && !order.notes_recorded {
            self.hold_for_notes(state, &order, order_id, key.week_start, at)
                .await?;
        }
        for (claim_id, round) in open_claims {
            let claim_id = parse_id(ClaimId::parse(claim_id))?;
            self.hold(
                state,
                &order,
                order_id,
                &claim_id,
                round,
                key.week_start,
                at,
            )
            .await?;
        }
        Ok(())
    }

    /// Holds what is left of a payable order while `claim_id` is open.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        state: &State<'_>,
        order: &OrderRow,
        order_id: &OrderId,
        claim_id: &ClaimId,
        round: i32,
        base_week: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        // What a missing session note holds already is not held twice.
        let at_stake = order.captured_minor - order.refunded_minor - order.notes_held_minor;
        if at_stake <= 0 {
            return Ok(());
        }
        let line = Self::line(
            format!("hold:{claim_id}:{round}"),
            LineKind::Hold,
            order_id,
            Some(claim_id),
            at_stake,
            at,
            "held while the claim is open",
        );
        let key = self.add(self.week_key(order, base_week), line).await?;
        sqlx::query(
            "UPDATE pm_settlement_claims SET held_minor = $2, hold_week = $3 WHERE claim_id = $1",
        )
        .bind(claim_id.as_str())
        .bind(at_stake)
        .bind(key.week_start)
        .execute(&mut **state.lock().await)
        .await?;
        Ok(())
    }

    /// A refund of the order (payledger's `RefundCompleted`, or `ProviderRefundRecorded` keyed by
    /// the provider's transaction): remembered, and a refund line once the order is payable.
    async fn on_refund(
        &self,
        state: &State<'_>,
        order_id: &OrderId,
        refund_key: &str,
        amount_minor: i64,
        at: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        sqlx::query(
            "UPDATE pm_settlement_orders SET refunded_minor = refunded_minor + $2 \
             WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .bind(amount_minor)
        .execute(&mut **state.lock().await)
        .await?;
        let Some(order) = Self::order_row(state, order_id).await? else {
            return Ok(());
        };
        if order.payable_week.is_some() {
            let line = Self::line(
                format!("refund:{order_id}:{refund_key}"),
                LineKind::Refund,
                order_id,
                None,
                amount_minor,
                at,
                refund_key,
            );
            let base = self
                .settlements
                .key_for(order.payee_id.clone(), order.currency, at);
            self.add(base, line).await?;
        }
        Ok(())
    }

    /// Holds what is left of a fulfilled booking, less what open claims hold, while its
    /// session notes are missing (상담일지 미작성으로 보류). Line `notes:{order}`.
    async fn hold_for_notes(
        &self,
        state: &State<'_>,
        order: &OrderRow,
        order_id: &OrderId,
        base_week: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        let claims_held: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(held_minor), 0)::bigint FROM pm_settlement_claims \
             WHERE order_id = $1 AND is_open",
        )
        .bind(order_id.as_str())
        .fetch_one(&mut **state.lock().await)
        .await?;
        let at_stake = order.captured_minor - order.refunded_minor - claims_held;
        if at_stake <= 0 {
            return Ok(());
        }
        let line = Self::line(
            format!("notes:{order_id}"),
            LineKind::Hold,
            order_id,
            None,
            at_stake,
            at,
            "held: session notes missing",
        );
        let key = self.add(self.week_key(order, base_week), line).await?;
        sqlx::query(
            "UPDATE pm_settlement_orders SET notes_held_minor = $2, notes_hold_week = $3 \
             WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .bind(at_stake)
        .bind(key.week_start)
        .execute(&mut **state.lock().await)
        .await?;
        Ok(())
    }

    /// The session notes arrived: what was held for them goes to the statement of the week they
    /// arrived (never before the hold's own). Line `notes-release:{order}`.
    async fn release_for_notes(
        &self,
        state: &State<'_>,
        order_id: &OrderId,
        at: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        let Some(order) = Self::order_row(state, order_id).await? else {
            return Ok(());
        };
        if order.notes_recorded {
            return Ok(());
        }
        if let (held, Some(hold_week)) = (order.notes_held_minor, order.notes_hold_week) {
            if held > 0 {
                let now_week = self
                    .settlements
                    .key_for(order.payee_id.clone(), order.currency, at);
                let line = Self::line(
                    format!("notes-release:{order_id}"),
                    LineKind::HoldReleased,
                    order_id,
                    None,
                    held,
                    at,
                    "session notes recorded",
                );
                self.add(
                    self.week_key(&order, hold_week.max(now_week.week_start)),
                    line,
                )
                .await?;
            }
        }
        sqlx::query(
            "UPDATE pm_settlement_orders SET notes_recorded = true, notes_held_minor = 0 \
             WHERE order_id = $1",
        )
        .bind(order_id.as_str())
        .execute(&mut **state.lock().await)
        .await?;
        Ok(())
    }

    async fn on_order_event(
        &self,
        state: &State<'_>,
        order_id: &OrderId,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        match decode::<OrderEvent>(event)? {
            // Placed and captured orders are `OrderFacts`, recorded before this is reached.
            OrderEvent::DisputeOpened(opened) => {
                self.on_dispute_opened(state, order_id, &opened).await?;
            }
            OrderEvent::DisputeWon(closed) => {
                self.on_dispute_closed(state, order_id, &closed, false)
                    .await?;
            }
            OrderEvent::DisputeLost(closed) => {
                self.on_dispute_closed(state, order_id, &closed, true)
                    .await?;
            }
            OrderEvent::ProviderRefundRecorded(refund) => {
                self.on_refund(
                    state,
                    order_id,
                    &format!("provider-{}", refund.transaction_key),
                    refund.amount_minor,
                    refund.at,
                )
                .await?;
            }
            OrderEvent::RefundCompleted(refund) => {
                self.on_refund(
                    state,
                    order_id,
                    refund.refund_id.as_str(),
                    refund.amount_minor,
                    refund.at,
                )
                .await?;
            }
            OrderEvent::OrderFulfilled(fulfilled) => {
                self.make_payable(state, order_id, fulfilled.at, "service delivered", true)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_claim_event(
        &self,
        state: &State<'_>,
        claim_id: &ClaimId,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        match decode::<ClaimEvent>(event)? {
            ClaimEvent::ClaimFiled(filed) => {
                sqlx::query(
                    "INSERT INTO pm_settlement_claims (claim_id, order_id, round, is_open) \
                     VALUES ($1, $2, 1, true) ON CONFLICT (claim_id) DO NOTHING",
                )
                .bind(claim_id.as_str())
                .bind(filed.order_id.as_str())
                .execute(&mut **state.lock().await)
                .await?;
                if let Some(order) = Self::order_row(state, &filed.order_id).await? {
                    if let Some(week) = order.payable_week {
                        self.hold(state, &order, &filed.order_id, claim_id, 1, week, filed.at)
                            .await?;
                    }
                }
            }
            ClaimEvent::ClaimResolved(resolved) => {
                let claim: Option<(i64, Option<NaiveDate>)> = sqlx::query_as(
                    "SELECT held_minor, hold_week FROM pm_settlement_claims WHERE claim_id = $1",
                )
                .bind(claim_id.as_str())
                .fetch_optional(&mut **state.lock().await)
                .await?;
                let Some(order) = Self::order_row(state, &resolved.order_id).await? else {
                    return Ok(());
                };
                if let Some((held_minor, Some(hold_week))) = claim {
                    if held_minor > 0 {
                        // Never before the hold's own statement.
                        let now_week = self.settlements.key_for(
                            order.payee_id.clone(),
                            order.currency,
                            resolved.at,
                        );
                        let base = self.week_key(&order, hold_week.max(now_week.week_start));
                        let line = Self::line(
                            format!("release:{claim_id}:{}", resolved.round),
                            LineKind::HoldReleased,
                            &resolved.order_id,
                            Some(claim_id),
                            held_minor,
                            resolved.at,
                            "claim resolved",
                        );
                        self.add(base, line).await?;
                    }
                }
                sqlx::query(
                    "UPDATE pm_settlement_claims SET is_open = false, held_minor = 0, round = $2 \
                     WHERE claim_id = $1",
                )
                .bind(claim_id.as_str())
                .bind(resolved.round as i32)
                .execute(&mut **state.lock().await)
                .await?;
                if resolved.provider_compensation_minor > 0 {
                    let line = Self::line(
                        format!("compensation:{claim_id}:{}", resolved.round),
                        LineKind::Compensation,
                        &resolved.order_id,
                        Some(claim_id),
                        resolved.provider_compensation_minor,
                        resolved.at,
                        "compensation decided by the claim",
                    );
                    let base = self.settlements.key_for(
                        order.payee_id.clone(),
                        order.currency,
                        resolved.at,
                    );
                    self.add(base, line).await?;
                }
                if resolved.provider_payout_minor > 0 {
                    self.make_payable(
                        state,
                        &resolved.order_id,
                        resolved.at,
                        "awarded by a claim",
                        false,
                    )
                    .await?;
                }
            }
            ClaimEvent::ClaimAppealed(appealed) => {
                let row: Option<(String, i32)> = sqlx::query_as(
                    "UPDATE pm_settlement_claims SET is_open = true, round = round + 1 \
                     WHERE claim_id = $1 RETURNING order_id, round",
                )
                .bind(claim_id.as_str())
                .fetch_optional(&mut **state.lock().await)
                .await?;
                let Some((order_id, round)) = row else {
                    return Ok(());
                };
                let order_id = parse_id(OrderId::parse(order_id))?;
                if let Some(order) = Self::order_row(state, &order_id).await? {
                    if order.payable_week.is_some() {
                        let week = self
                            .settlements
                            .key_for(order.payee_id.clone(), order.currency, appealed.at)
                            .week_start;
                        self.hold(state, &order, &order_id, claim_id, round, week, appealed.at)
                            .await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl ProcessManager for SettlementProcess {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        let stream = event.stream_id.as_str();
        match event.event_type.as_str() {
            "OrderPlaced"
            | "PaymentCaptured"
            | "RefundCompleted"
            | "OrderFulfilled"
            | "ProviderRefundRecorded"
            | "DisputeOpened"
            | "DisputeWon"
            | "DisputeLost" => StreamKind::Order.holds(stream),
            "ClaimFiled" | "ClaimResolved" | "ClaimAppealed" => StreamKind::Claim.holds(stream),
            "BookingCancelled" | "SessionNotesRecorded" => StreamKind::Booking.holds(stream),
            "StatementConfirmed" => StreamKind::Settlement.holds(stream),
            _ => false,
        }
    }

    /// A batch in segments, cut at the events handled alone ([`SettlementProcess::alone`]). In
    /// each segment, the placed and captured orders that come before anything else of their
    /// order are written at once (two statements), and the other events are handled in chains
    /// by order and claim, many at once: most of them wait for a statement line's commit, and
    /// together they share the store's group commits. Their state statements take turns on the
    /// one connection; no two chains touch the same rows.
    async fn handle_many(
        &self,
        state: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), Unhandled> {
        let state = State::new(state);
        let mut start = 0;
        while start < events.len() {
            let end = events[start..]
                .iter()
                .position(|event| Self::alone(event))
                .map_or(events.len(), |offset| start + offset);
            let shift = |Unhandled { index, error }| Unhandled {
                index: start + index,
                error,
            };
            if end == start {
                self.handle_event(&state, events[start])
                    .await
                    .map_err(|error| Unhandled {
                        index: start,
                        error,
                    })?;
                start += 1;
                continue;
            }
            self.handle_segment(&state, &events[start..end])
                .await
                .map_err(shift)?;
            start = end;
        }
        Ok(())
    }

    async fn handle(
        &self,
        state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        self.handle_event(&State::new(state), event).await
    }
}

/// The process's connection, shared by the chains of a batch: each statement takes it in turn
/// (inside the batch's transaction), and no one holds it while waiting for a command.
pub(super) struct State<'c>(tokio::sync::Mutex<&'c mut PgConnection>);

impl<'c> State<'c> {
    fn new(conn: &'c mut PgConnection) -> State<'c> {
        State(tokio::sync::Mutex::new(conn))
    }

    pub(super) async fn lock(&self) -> tokio::sync::MutexGuard<'_, &'c mut PgConnection> {
        self.0.lock().await
    }
}

impl SettlementProcess {
    /// Events handled alone, after everything before them and before everything after: a
    /// statement's confirmation (it concerns a whole statement) and an appeal (its order is
    /// known only from the process's state).
    fn alone(event: &RecordedEvent) -> bool {
        matches!(
            event.event_type.as_str(),
            "StatementConfirmed" | "ClaimAppealed"
        )
    }

    /// The orders and claims whose state `event` reads or writes. Empty when the event cannot
    /// be read: it is then handled in a chain of its own, and fails there.
    fn keys(event: &RecordedEvent) -> Vec<String> {
        let order_key = payledger_domain::order::stream_id;
        if StreamKind::Order.holds(&event.stream_id) {
            return vec![event.stream_id.clone()];
        }
        if StreamKind::Claim.holds(&event.stream_id) {
            return match decode::<ClaimEvent>(event) {
                Ok(ClaimEvent::ClaimFiled(filed)) => {
                    vec![event.stream_id.clone(), order_key(&filed.order_id)]
                }
                Ok(ClaimEvent::ClaimResolved(resolved)) => {
                    vec![event.stream_id.clone(), order_key(&resolved.order_id)]
                }
                _ => Vec::new(),
            };
        }
        match decode::<BookingEvent>(event) {
            Ok(BookingEvent::BookingCancelled(cancelled)) => vec![order_key(&cancelled.order_id)],
            Ok(BookingEvent::SessionNotesRecorded(recorded)) => {
                vec![order_key(&recorded.order_id)]
            }
            _ => Vec::new(),
        }
    }

    /// Handles a segment without events handled alone (see `handle_many`).
    async fn handle_segment(
        &self,
        state: &State<'_>,
        events: &[&RecordedEvent],
    ) -> Result<(), Unhandled> {
        let keys: Vec<Vec<String>> = events.iter().map(|event| Self::keys(event)).collect();
        // The first event of each order (and claim) that is not a placed or captured fact.
        let mut first_other: std::collections::HashMap<&str, usize> = Default::default();
        for (index, event) in events.iter().enumerate() {
            if !OrderFacts::covers(event) {
                for key in &keys[index] {
                    first_other.entry(key.as_str()).or_insert(index);
                }
            }
        }
        // Facts that nothing else of their order precedes in the segment are written first, at
        // once: only that order's later events read them.
        let early_fact = |index: usize| {
            OrderFacts::covers(events[index])
                && keys[index].iter().all(|key| {
                    first_other
                        .get(key.as_str())
                        .is_none_or(|&other| index < other)
                })
        };
        let early: Vec<&RecordedEvent> = (0..events.len())
            .filter(|&index| early_fact(index))
            .map(|index| events[index])
            .collect();
        let (facts, undecodable) = OrderFacts::gather(&early);
        // A fact that cannot be read is left to its chain, which names it; the others too.
        let hoisted = undecodable.is_none();
        if hoisted {
            facts
                .write(&mut **state.lock().await)
                .await
                .map_err(|error| Unhandled { index: 0, error })?;
        }
        let rest: Vec<usize> = (0..events.len())
            .filter(|&index| !(hoisted && early_fact(index)))
            .collect();
        let rest_events: Vec<&RecordedEvent> = rest.iter().map(|&index| events[index]).collect();
        let rest_keys: Vec<Vec<String>> = rest.iter().map(|&index| keys[index].clone()).collect();
        process::handle_in_chains(
            &rest_events,
            &rest_keys,
            process::MAX_CHAINS_IN_FLIGHT,
            |event| self.handle_event(state, event),
        )
        .await
        .map_err(|Unhandled { index, error }| Unhandled {
            index: rest[index],
            error,
        })
    }

    async fn handle_event(
        &self,
        state: &State<'_>,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        if OrderFacts::covers(event) {
            OrderFacts::record(&mut **state.lock().await, &[event])
                .await
                .map_err(|(_, error)| error)
        } else if let Some(order_id) = StreamKind::Order.id_of(&event.stream_id) {
            let order_id = parse_id(OrderId::parse(order_id))?;
            self.on_order_event(state, &order_id, event).await
        } else if let Some(claim_id) = StreamKind::Claim.id_of(&event.stream_id) {
            let claim_id = parse_id(ClaimId::parse(claim_id))?;
            self.on_claim_event(state, &claim_id, event).await
        } else if StreamKind::Booking.holds(&event.stream_id) {
            let cancelled = match decode(event)? {
                BookingEvent::BookingCancelled(cancelled) => cancelled,
                BookingEvent::SessionNotesRecorded(recorded) => {
                    return self
                        .release_for_notes(state, &recorded.order_id, recorded.at)
                        .await;
                }
                _ => return Ok(()),
            };
            if cancelled.decision.provider_minor > 0 {
                self.make_payable(
                    state,
                    &cancelled.order_id,
                    cancelled.at,
                    "cancelled late: the provider's share",
                    false,
                )
                .await?;
            }
            Ok(())
        } else if StreamKind::Settlement.holds(&event.stream_id) {
            if let StatementEvent::StatementConfirmed(confirmed) = decode(event)? {
                if confirmed.totals.carry_forward_minor < 0 {
                    let key = StatementKey::parse(&confirmed.statement_id)
                        .map_err(|e| ProcessError::GiveUp(e.to_string()))?;
                    let line = StatementLine {
                        line_id: format!("carry:{}", confirmed.statement_id),
                        kind: LineKind::CarriedBalance,
                        order_id: None,
                        claim_id: None,
                        amount_minor: confirmed.totals.carry_forward_minor,
                        occurred_at: confirmed.at,
                        carried_from: Some(key.week_start),
                        memo: format!("negative net of {}", confirmed.statement_id),
                    };
                    self.add(key.next(), line).await?;
                }
            }
            Ok(())
        } else {
            Ok(())
        }
    }
}

/// What placed and captured orders tell the settlement process, gathered from a run of such
/// events and written at once (one event is a run of one).
#[derive(Default)]
struct OrderFacts {
    placed_order_ids: Vec<String>,
    placed_payee_ids: Vec<String>,
    placed_currencies: Vec<String>,
    placed_is_booking: Vec<bool>,
    /// The captured amount per order; a later capture of the same order replaces an earlier
    /// one, as the one-by-one `UPDATE`s would.
    captured_minor: std::collections::BTreeMap<String, i64>,
}

impl OrderFacts {
    fn covers(event: &RecordedEvent) -> bool {
        StreamKind::Order.holds(&event.stream_id)
            && matches!(event.event_type.as_str(), "OrderPlaced" | "PaymentCaptured")
    }

    /// Records the facts of `events` (all [`OrderFacts::covers`] them). On failure, the offset
    /// of the first event not recorded: everything before it is written.
    async fn record(
        state: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), (usize, ProcessError)> {
        let (facts, undecodable) = OrderFacts::gather(events);
        facts.write(state).await.map_err(|error| (0, error))?;
        match undecodable {
            Some(failed) => Err(failed),
            None => Ok(()),
        }
    }

    /// The facts of `events` up to the first that cannot be read, and that one's offset and
    /// error.
    fn gather(events: &[&RecordedEvent]) -> (OrderFacts, Option<(usize, ProcessError)>) {
        let mut facts = OrderFacts::default();
        for (offset, event) in events.iter().enumerate() {
            if let Err(error) = facts.add(event) {
                return (facts, Some((offset, error)));
            }
        }
        (facts, None)
    }

    fn add(&mut self, event: &RecordedEvent) -> Result<(), ProcessError> {
        let order_id = StreamKind::Order
            .id_of(&event.stream_id)
            .unwrap_or_default();
        let order_id = parse_id(OrderId::parse(order_id))?.to_string();
        match decode::<OrderEvent>(event)? {
            OrderEvent::OrderPlaced(placed) => {
                self.placed_order_ids.push(order_id);
                self.placed_payee_ids.push(placed.payee_id.to_string());
                self.placed_currencies
                    .push(placed.amount.currency().code().to_string());
                self.placed_is_booking
                    .push(placed.service_starts_at.is_some());
            }
            OrderEvent::PaymentCaptured(captured) => {
                self.captured_minor.insert(order_id, captured.amount_minor);
            }
            _ => {
                return Err(ProcessError::GiveUp(format!(
                    "{} is not an order fact",
                    event.event_type
                )))
            }
        }
        Ok(())
    }

    /// Inserts the placed orders, then sets the captured amounts: an order placed and captured
    /// in the same run is inserted before its capture, as in the log.
    async fn write(&self, state: &mut PgConnection) -> Result<(), ProcessError> {
        if !self.placed_order_ids.is_empty() {
            sqlx::query(
                "INSERT INTO pm_settlement_orders (order_id, payee_id, currency, is_booking) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[]) \
                 ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(&self.placed_order_ids)
            .bind(&self.placed_payee_ids)
            .bind(&self.placed_currencies)
            .bind(&self.placed_is_booking)
            .execute(&mut *state)
            .await?;
        }
        if !self.captured_minor.is_empty() {
            let (order_ids, amounts): (Vec<&str>, Vec<i64>) = self
                .captured_minor
                .iter()
                .map(|(order_id, amount)| (order_id.as_str(), *amount))
                .unzip();
            sqlx::query(
                "UPDATE pm_settlement_orders o SET captured_minor = c.captured_minor \
                 FROM unnest($1::text[], $2::bigint[]) AS c(order_id, captured_minor) \
                 WHERE o.order_id = c.order_id",
            )
            // Planned per call: docs/architecture.md, "Lookups by many keys".
            .persistent(false)
            .bind(&order_ids)
            .bind(&amounts)
            .execute(&mut *state)
            .await?;
        }
        Ok(())
    }
}
