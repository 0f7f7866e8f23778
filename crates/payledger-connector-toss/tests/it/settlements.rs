//! Toss's settlement report from the sandbox, read through `TossSettlements`: one line per
//! approval and cancel, fees at the sandbox's terms, paid out after the delay, and the faults
//! tests plant (short, extra fee, late, missing).

use crate::{confirm_request, fast_config};
use chrono::{Duration, Utc};
use payledger_connector_toss::settlements::TossSettlements;
use payledger_connector_toss::{TossGateway, TossSecretKey, SANDBOX_SECRET_KEY};
use payledger_gateway::settlements::{SettlementLineKind, SettlementPeriod, SettlementSource};
use payledger_gateway::{CancelRequest, PaymentGateway};
use payledger_sandbox::{SandboxConfig, SettlementFault};
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn the_report_follows_what_the_sandbox_processed() {
    // The sandbox's clock is the test's: payments today, the report read days later.
    let offset = Arc::new(Mutex::new(Duration::zero()));
    let clock_offset = offset.clone();
    let sandbox = payledger_sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            clock: Some(Arc::new(move || Utc::now() + *clock_offset.lock().unwrap())),
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let gateway = TossGateway::new(fast_config(sandbox.base_url())).unwrap();
    for (key, order, amount) in [
        ("pk_settle_clean", "order-settle-1", 50_000),
        ("pk_settle_short", "order-settle-2", 10_000),
        ("pk_settle_fee", "order-settle-3", 10_000),
        ("pk_settle_late", "order-settle-4", 10_000),
        ("pk_settle_gone", "order-settle-5", 10_000),
    ] {
        gateway
            .confirm(&confirm_request(key, order, amount))
            .await
            .unwrap();
    }
    gateway
        .cancel(&CancelRequest {
            payment_key: "pk_settle_clean".into(),
            cancel_amount_minor: Some(20_000),
            cancel_reason: "customer asked".into(),
            idempotency_key: "refund:settle-1".into(),
        })
        .await
        .unwrap();
    let fault =
        |key: &str, fault: SettlementFault| assert!(sandbox.set_settlement_fault(key, fault));
    fault(
        "pk_settle_short",
        SettlementFault {
            short_minor: 100,
            ..Default::default()
        },
    );
    fault(
        "pk_settle_fee",
        SettlementFault {
            extra_fee_minor: 50,
            ..Default::default()
        },
    );
    fault(
        "pk_settle_late",
        SettlementFault {
            late_days: 3,
            ..Default::default()
        },
    );
    fault(
        "pk_settle_gone",
        SettlementFault {
            missing: true,
            ..Default::default()
        },
    );

    let source = TossSettlements::new(
        &sandbox.base_url(),
        &TossSecretKey::new(SANDBOX_SECRET_KEY),
        "toss",
    )
    .unwrap();
    let today = (Utc::now() + Duration::hours(9)).date_naive();
    let period = SettlementPeriod {
        from: today,
        to: today + chrono::Days::new(10),
    };
    // Nothing is paid out before the settlement delay.
    assert!(source.settlement_lines(period).await.unwrap().is_empty());

    *offset.lock().unwrap() = Duration::days(2);
    let lines = source.settlement_lines(period).await.unwrap();
    let by_key = |key: &str| {
        lines
            .iter()
            .filter(|l| l.payment_key == key)
            .collect::<Vec<_>>()
    };
    let clean = by_key("pk_settle_clean");
    assert_eq!(clean.len(), 2, "{lines:?}");
    assert_eq!(clean[0].kind, SettlementLineKind::Payment);
    assert_eq!(
        (
            clean[0].amount_minor,
            clean[0].fee_minor,
            clean[0].vat_minor,
            clean[0].payout_minor
        ),
        (50_000, 1_760, 160, 48_240)
    );
    assert_eq!(clean[0].order_id.as_deref(), Some("order-settle-1"));
    assert_eq!(clean[0].method.as_deref(), Some("카드"));
    assert_eq!(
        clean[0].paid_out_on,
        clean[0].sold_on + chrono::Days::new(2)
    );
    assert_eq!(clean[1].kind, SettlementLineKind::Refund);
    assert_eq!(
        (
            clean[1].amount_minor,
            clean[1].fee_minor,
            clean[1].payout_minor
        ),
        (-20_000, -704, -19_296)
    );
    assert_ne!(clean[0].line_id, clean[1].line_id);
    let short = by_key("pk_settle_short");
    assert_eq!((short[0].fee_minor, short[0].payout_minor), (352, 9_548));
    let fee = by_key("pk_settle_fee");
    assert_eq!((fee[0].fee_minor, fee[0].payout_minor), (402, 9_598));
    assert!(by_key("pk_settle_late").is_empty());
    assert!(by_key("pk_settle_gone").is_empty());

    // Three days later the late line arrives; the missing one never does.
    *offset.lock().unwrap() = Duration::days(5);
    let lines = source.settlement_lines(period).await.unwrap();
    let late: Vec<_> = lines
        .iter()
        .filter(|l| l.payment_key == "pk_settle_late")
        .collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].paid_out_on, late[0].sold_on + chrono::Days::new(5));
    assert!(!lines.iter().any(|l| l.payment_key == "pk_settle_gone"));
    // The same report twice is the same lines.
    assert_eq!(source.settlement_lines(period).await.unwrap(), lines);
}

#[tokio::test]
async fn a_period_out_of_bounds_or_a_wrong_key_is_refused() {
    let sandbox = crate::sandbox().await;
    let source = TossSettlements::new(
        &sandbox.base_url(),
        &TossSecretKey::new("test_sk_wrong"),
        "toss",
    )
    .unwrap();
    let today = Utc::now().date_naive();
    let refused = source
        .settlement_lines(SettlementPeriod {
            from: today,
            to: today,
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(payledger_gateway::settlements::SettlementError::Unavailable(_))
        ),
        "{refused:?}"
    );
    let long = source
        .settlement_lines(SettlementPeriod {
            from: today,
            to: today + chrono::Days::new(40),
        })
        .await;
    assert!(matches!(
        long,
        Err(payledger_gateway::settlements::SettlementError::Malformed(
            _
        ))
    ));
}
