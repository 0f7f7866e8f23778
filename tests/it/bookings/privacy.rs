//! Crypto-shredding of the free texts about a person beyond the order name: a refund's reason,
//! a claim's description, statements, evidence and decision, an appeal's reason, an emergency's
//! evidence. Sealed in the log, revealed over the API, `[erased]` after the customer's erasure,
//! while the log, the books and every rebuilt read model stay as they were.

use super::*;
use sqlx::Row;

const REFUND_REASON: &str = "이민지 어린이 입원으로 일정 취소";
const DESCRIPTION: &str = "선생님이 오지 않았고 아이(이민지)가 40분 기다림";
const EVIDENCE: &str = "https://files.example/lee-minji-chat.png";
const STATEMENT: &str = "교통사고로 늦었습니다, 보호자 이수진님께 문자 드렸습니다";
const STATEMENT_EVIDENCE: &str = "police-report-2026-1005-lee";
const DECISION: &str = "보호자 이수진님의 통화 기록으로 확인됨";
const APPEAL: &str = "이수진: 사고 보고서가 반영되지 않았습니다";
const EMERGENCY_EVIDENCE: &str = "https://files.example/lee-minji-er-visit.pdf";
const PERSONAL: [&str; 8] = [
    REFUND_REASON,
    DESCRIPTION,
    EVIDENCE,
    STATEMENT,
    STATEMENT_EVIDENCE,
    DECISION,
    APPEAL,
    EMERGENCY_EVIDENCE,
];

async fn refund(app: &BookingApp, reason: &str) -> Answer {
    app.post(
        "/v1/orders/priv-claimed/refunds",
        &json!({"refundId": "rf-priv", "amount": 10_000, "reason": reason}),
    )
    .await
}

/// Every row of every read model, as JSON text, sorted.
async fn read_models(pool: &sqlx::PgPool) -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    for projection in payledger_read_models::all_projections() {
        for table in projection.tables() {
            let rows = sqlx::query(&format!(
                "SELECT to_jsonb(t)::text AS row FROM rm.{table} t ORDER BY 1"
            ))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("read rm.{table}: {e}"));
            all.push((
                table.to_string(),
                rows.iter().map(|r| r.get::<String, _>("row")).collect(),
            ));
        }
    }
    all
}

#[tokio::test]
async fn refund_reasons_claim_texts_and_evidence_are_sealed_revealed_and_erased_with_their_customer(
) {
    let app = spawn().await;
    let starts = t0() + Duration::hours(1);
    // parent-lee: a booking with a refund, a claim, an appeal; and a cancelled emergency.
    app.paid_booking("priv-claimed", 80_000, starts).await;
    app.paid_booking("priv-emergency", 50_000, t0() + Duration::days(3))
        .await;
    // Another customer, untouched by the erasure.
    app.place_booking(
        "priv-kept",
        "parent-park",
        60_000,
        starts + Duration::hours(2),
    )
    .await;
    assert_eq!(app.confirm("priv-kept", 60_000).await.status, 200);

    // A refund: its reason is sealed; a retry is recognised by the reason's keyed digest.
    let first = refund(&app, REFUND_REASON).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let retried = refund(&app, REFUND_REASON).await;
    assert_eq!(
        (retried.status, retried.body["replay"].as_bool()),
        (200, Some(true)),
        "{}",
        retried.body
    );
    let other = refund(&app, "another reason").await;
    assert_eq!(
        (other.status, other.body["code"].as_str()),
        (409, Some("E_REFUND_ID_CONFLICT"))
    );
    let kept_refund = app
        .post(
            "/v1/orders/priv-kept/refunds",
            &json!({"refundId": "rf-kept", "amount": 5_000, "reason": "kept reason"}),
        )
        .await;
    assert_eq!(kept_refund.status, 201, "{}", kept_refund.body);

    // An emergency cancellation with evidence.
    let cancelled = app
        .admin(
            "/v1/orders/priv-emergency/cancel",
            &json!({"emergency": {"evidence": [EMERGENCY_EVIDENCE], "refundBps": 10000}}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);

    // A claim with every kind of text.
    app.clock.set(starts + Duration::hours(1));
    let filed = app
        .post(
            "/v1/claims",
            &json!({"claimId": "clm-priv", "orderId": "priv-claimed", "type": "SERVICE_QUALITY",
                    "filedBy": "customer", "description": DESCRIPTION, "evidence": [EVIDENCE]}),
        )
        .await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    assert_eq!(
        filed.body["description"], DESCRIPTION,
        "revealed in the answer"
    );
    let stated = app
        .post(
            "/v1/claims/clm-priv/statements",
            &json!({"side": "respondent", "text": STATEMENT, "evidence": [STATEMENT_EVIDENCE]}),
        )
        .await;
    assert_eq!(stated.status, 201, "{}", stated.body);
    // The longest statement there is: 2 000 Hangul syllables, 6 000 bytes.
    let long_statement = "이".repeat(2_000);
    let claimant = app
        .post(
            "/v1/claims/clm-priv/statements",
            &json!({"side": "claimant", "text": long_statement}),
        )
        .await;
    assert_eq!(claimant.status, 201, "{}", claimant.body);
    app.admin("/v1/claims/clm-priv/assign", &json!({})).await;
    let resolved = app
        .admin(
            "/v1/claims/clm-priv/resolve",
            &json!({"outcome": "split", "reason": DECISION, "refundAmount": 30_000,
                    "providerPayoutAmount": 40_000, "penalties": ["warning"]}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    let appealed = app
        .post(
            "/v1/claims/clm-priv/appeal",
            &json!({"side": "claimant", "reason": APPEAL}),
        )
        .await;
    assert_eq!(appealed.status, 200, "{}", appealed.body);
    app.settle().await;

    // The log holds tokens only: no personal text in any stream of parent-lee.
    let mut raw = String::new();
    for stream in [
        "order-priv-claimed",
        "claim-clm-priv",
        "booking-priv-emergency",
    ] {
        let answer = app
            .get_as(&app.auditor_key, &format!("/v1/streams/{stream}"))
            .await;
        assert_eq!(answer.status, 200, "{stream}: {}", answer.body);
        raw.push_str(&answer.body.to_string());
    }
    let events = app.get_as(&app.auditor_key, "/v1/events?limit=1000").await;
    raw.push_str(&events.body.to_string());
    for text in PERSONAL {
        assert!(!raw.contains(text), "{text} is in the log in clear");
    }
    assert!(
        !raw.contains(&"이".repeat(100)),
        "the long statement is in the log in clear"
    );
    assert!(
        raw.contains("\"reasonDigest\""),
        "the refund keeps its digest"
    );
    assert!(
        raw.matches("pl-sealed:v1:").count() >= PERSONAL.len(),
        "every text is a token"
    );
    // The warning the decision gave the payee is the payee's own data: sealed under its key.
    let warned: Vec<&Value> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventType"] == "PayeeWarned")
        .collect();
    assert_eq!(warned.len(), 1, "{}", events.body);
    let warning = warned[0]["payload"]["reason"].as_str().unwrap();
    assert!(warning.starts_with("pl-sealed:v1:"), "{warning}");

    // Revealed for an authorised reader.
    let claim = app.get_as(&app.admin_key, "/v1/claims/clm-priv").await;
    assert_eq!(claim.status, 200, "{}", claim.body);
    assert_eq!(claim.body["description"], DESCRIPTION);
    assert_eq!(claim.body["evidence"], json!([EVIDENCE]));
    assert_eq!(claim.body["respondentStatement"]["text"], STATEMENT);
    assert_eq!(
        claim.body["respondentStatement"]["evidence"],
        json!([STATEMENT_EVIDENCE])
    );
    assert_eq!(claim.body["decision"]["reason"], DECISION);
    assert_eq!(
        claim.body["claimantStatement"]["text"],
        long_statement.as_str()
    );
    let timeline = app
        .get_as(&app.support_key, "/v1/orders/priv-claimed/timeline")
        .await;
    assert!(timeline.body.to_string().contains(REFUND_REASON));

    let books_before = app.trial_balance().await;
    let position_before = app.get_as(&app.auditor_key, "/v1/events?limit=1").await;
    assert_eq!(position_before.status, 200);

    // Erase parent-lee.
    let erased = app
        .admin(
            "/v1/admin/privacy/customers/parent-lee/erase",
            &json!({"reason": "erasure request"}),
        )
        .await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert_eq!(erased.body["keysDestroyed"], 1);
    app.settle().await;

    let claim = app.get_as(&app.admin_key, "/v1/claims/clm-priv").await;
    assert_eq!(claim.body["description"], "[erased]");
    assert_eq!(claim.body["evidence"], json!(["[erased]"]));
    assert_eq!(claim.body["respondentStatement"]["text"], "[erased]");
    assert_eq!(
        claim.body["respondentStatement"]["evidence"],
        json!(["[erased]"])
    );
    assert_eq!(claim.body["decision"]["reason"], "[erased]");
    assert_eq!(claim.body["claimantStatement"]["text"], "[erased]");
    assert_eq!(
        claim.body["decision"]["refundAmount"], 30_000,
        "money is untouched"
    );
    assert_eq!(claim.body["customerId"], "parent-lee", "ids are untouched");
    let timeline = app
        .get_as(&app.support_key, "/v1/orders/priv-claimed/timeline")
        .await;
    let text = timeline.body.to_string();
    assert!(
        text.contains("[erased]") && !text.contains(REFUND_REASON),
        "{text}"
    );
    let kept = app
        .get_as(&app.support_key, "/v1/orders/priv-kept/timeline")
        .await;
    assert!(
        kept.body.to_string().contains("kept reason"),
        "another customer is untouched"
    );
    // A retry of the refund after the erasure is still recognised (the digest's key is not the
    // customer's) and changes nothing.
    let retried = refund(&app, REFUND_REASON).await;
    assert_eq!(retried.status, 200, "{}", retried.body);

    // The log verifies, the books are the same, and every read model rebuilt from the log is
    // what the live projections hold.
    let chains = payledger_store::audit::verify_all(&app.db.app_pool)
        .await
        .unwrap();
    assert_eq!(chains.first_problem, None);
    let books_after = app.trial_balance().await;
    assert_eq!(books_after["accounts"], books_before["accounts"]);
    let pool = &app.db.app_pool;
    let live = read_models(pool).await;
    for projection in payledger_read_models::all_projections() {
        payledger_projector::rebuild(pool, projection.as_ref(), &|_, _| {})
            .await
            .unwrap_or_else(|e| panic!("rebuild {}: {e}", projection.name()));
    }
    assert_eq!(read_models(pool).await, live, "rebuilt read models differ");
    for (table, rows) in &live {
        for row in rows {
            for text in PERSONAL {
                assert!(!row.contains(text), "rm.{table} holds {text} in clear");
            }
        }
    }
    let claim = app.get_as(&app.admin_key, "/v1/claims/clm-priv").await;
    assert_eq!(claim.body["description"], "[erased]", "after the rebuild");
}

#[tokio::test]
async fn retention_spares_a_customer_whose_claim_is_still_open() {
    let app = spawn().await;
    let starts = t0() + Duration::hours(1);
    app.paid_booking("ret-claimed", 80_000, starts).await;
    app.place_booking(
        "ret-done",
        "parent-done",
        50_000,
        starts + Duration::hours(2),
    )
    .await;
    assert_eq!(app.confirm("ret-done", 50_000).await.status, 200);
    app.clock.set(starts + Duration::hours(3));
    for order in ["ret-claimed", "ret-done"] {
        let fulfilled = app
            .post(&format!("/v1/orders/{order}/fulfil"), &json!({}))
            .await;
        assert_eq!(fulfilled.status, 200, "{}", fulfilled.body);
    }
    let filed = app
        .post(
            "/v1/claims",
            &json!({"claimId": "clm-ret", "orderId": "ret-claimed", "type": "SERVICE_QUALITY",
                    "filedBy": "customer", "description": DESCRIPTION}),
        )
        .await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    app.settle().await;

    // Every order is closed, but parent-lee's claim is open: an admin still has to read it.
    let pool = &app.db.app_pool;
    // Erasing destroys keys; it needs no master key to unwrap them.
    let vault = payledger_app::privacy::PrivacyVault::new(pool.clone(), &[0u8; 32]);
    let erased = payledger::privacy_cli::retention_pass(pool, &vault, chrono::Duration::zero())
        .await
        .unwrap();
    assert_eq!(erased, vec!["parent-done".to_string()]);
    let claim = app.get_as(&app.admin_key, "/v1/claims/clm-ret").await;
    assert_eq!(claim.body["description"], DESCRIPTION);

    // Resolved, and past its appeal window (by the claim's own clock): now it may go.
    app.admin("/v1/claims/clm-ret/assign", &json!({})).await;
    let resolved = app
        .admin(
            "/v1/claims/clm-ret/resolve",
            &json!({"outcome": "rejected", "reason": DECISION, "refundAmount": 0,
                    "providerPayoutAmount": 80_000}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    app.settle().await;
    let erased = payledger::privacy_cli::retention_pass(pool, &vault, chrono::Duration::zero())
        .await
        .unwrap();
    assert_eq!(erased, vec!["parent-lee".to_string()]);
    let claim = app.get_as(&app.admin_key, "/v1/claims/clm-ret").await;
    assert_eq!(claim.body["description"], "[erased]");
}
