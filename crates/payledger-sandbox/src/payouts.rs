//! Payouts to sellers (Toss's 지급대행, `POST /v2/payouts`), as settlement pays a payee. Shaped
//! like one item of Toss's payout request: `refPayoutId` is the caller's id and the idempotency
//! of the payout (the same id with the same amount answers the first payout, with another amount
//! 409 `ALREADY_EXISTS_REF_PAYOUT_ID`); `destination` is the seller; `amount` `{currency, value}`.
//! The sandbox pays at once (`status: "COMPLETED"`). A destination starting with
//! `sandbox_payout_fail_` is refused (`INVALID_SELLER_STATUS`), to test a failed payout.

use crate::http::{authenticate_request, read_body, respond_json, Shared};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// Payouts one sandbox remembers; it answers 503 `SANDBOX_CAPACITY_EXCEEDED` beyond.
const MAX_PAYOUTS: usize = 100_000;
const MAX_ID_CHARS: usize = 200;

#[derive(Default)]
pub(crate) struct Payouts {
    by_ref: Mutex<HashMap<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayoutBody {
    ref_payout_id: String,
    destination: String,
    amount: AmountBody,
}

#[derive(Deserialize)]
struct AmountBody {
    currency: String,
    value: i64,
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    respond_json(status, json!({"code": code, "message": message}))
}

pub(crate) async fn request_payout(
    shared: web::Data<Shared>,
    payouts: web::Data<Payouts>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(refused) = authenticate_request(&shared, &req) {
        return refused;
    }
    let body = match read_body(payload, shared.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Ok(body) = serde_json::from_value::<PayoutBody>(body) else {
        return error(
            400,
            "INVALID_REQUEST",
            "잘못된 요청입니다. (refPayoutId, destination, amount {currency, value})",
        );
    };
    let valid = |s: &str| !s.is_empty() && s.chars().count() <= MAX_ID_CHARS;
    if !valid(&body.ref_payout_id) || !valid(&body.destination) || body.amount.value <= 0 {
        return error(400, "INVALID_REQUEST", "잘못된 요청입니다.");
    }
    if body.destination.starts_with("sandbox_payout_fail_") {
        return error(
            400,
            "INVALID_SELLER_STATUS",
            "지급대행을 할 수 없는 셀러 상태입니다.",
        );
    }
    let mut by_ref = payouts
        .by_ref
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(existing) = by_ref.get(&body.ref_payout_id) {
        let same = existing["amount"]["value"] == body.amount.value
            && existing["amount"]["currency"] == body.amount.currency.as_str()
            && existing["destination"] == body.destination.as_str();
        return if same {
            respond_json(200, existing.clone())
        } else {
            error(
                409,
                "ALREADY_EXISTS_REF_PAYOUT_ID",
                "이미 존재하는 refPayoutId 입니다.",
            )
        };
    }
    if by_ref.len() >= MAX_PAYOUTS {
        return error(
            503,
            "SANDBOX_CAPACITY_EXCEEDED",
            "the sandbox holds its maximum number of payouts; restart it",
        );
    }
    let payout = json!({
        "id": format!("FPA_sbx_{}", uuid::Uuid::now_v7().simple()),
        "refPayoutId": body.ref_payout_id,
        "destination": body.destination,
        "amount": {"currency": body.amount.currency, "value": body.amount.value},
        "status": "COMPLETED",
    });
    by_ref.insert(body.ref_payout_id, payout.clone());
    respond_json(200, payout)
}
