//! Paddle's payouts reconciled (issue 18), over HTTP with the sandbox: Paddle orders paid in
//! Paddle's checkout, the payout that pays them two days later (Paddle's `payout.created` and
//! `payout.paid` events, and the transactions of the balance it closed) imported through the
//! Paddle connector's settlement source, each transaction matched to its order with Paddle's
//! merchant-of-record fee as agreed, `provider_clearing` closed and the books balanced.

use crate::paddle_steps::paid_credit_order;
use crate::reconciliation_steps::{
    balance_in, balanced_books, import_settlements, spawn_with_provider_clock,
};
use chrono::{Days, Duration, Utc};
use serde_json::{json, Value};

#[tokio::test]
async fn paddle_payouts_net_of_its_fee_close_clearing_per_transaction() {
    let (app, offset) = spawn_with_provider_clock().await;
    paid_credit_order(&app, "recon-paddle-1").await;
    paid_credit_order(&app, "recon-paddle-2").await;

    let today = Utc::now().date_naive();
    let body = json!({"provider": "paddle", "from": today, "to": today + Days::new(10)});
    // Not paid out yet: nothing to import.
    let (status, early) = import_settlements(&app, &body).await;
    assert_eq!(status, 200, "{early}");
    assert_eq!(early["lines"], 0, "{early}");

    // Two days on, Paddle pays both out, net of its 5 % + 50 fee.
    *offset.lock().unwrap() = Duration::days(2);
    let (status, imported) = import_settlements(&app, &body).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["lines"], 2, "{imported}");
    assert_eq!(imported["matched"], 2, "{imported}");
    assert_eq!(imported["flags"], json!({}), "{imported}");
    let (_, again) = import_settlements(&app, &body).await;
    assert_eq!(again["alreadyImported"], 2, "{again}");

    // What the connector read: Paddle's payout events (there is no payouts endpoint), the
    // payout created the day after billing and paid the day after that, for both earnings.
    let events: Value = app
        .client
        .get(format!(
            "{}/events?event_type=payout.created,payout.paid&per_page=1",
            app.sandbox.paddle_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        events["data"][0]["event_type"], "payout.created",
        "{events}"
    );
    assert_eq!(events["data"][0]["data"]["status"], "unpaid", "{events}");
    assert_eq!(events["data"][0]["data"]["amount"], "1800", "{events}");
    assert_eq!(events["meta"]["pagination"]["has_more"], true, "{events}");
    let next = events["meta"]["pagination"]["next"].as_str().unwrap();
    let paid: Value = app
        .client
        .get(next)
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["data"][0]["event_type"], "payout.paid", "{paid}");
    assert_eq!(paid["data"][0]["data"]["status"], "paid", "{paid}");
    assert_eq!(
        paid["data"][0]["data"]["id"], events["data"][0]["data"]["id"],
        "{paid}"
    );
    assert!(paid["data"][0]["data"]["remittance_reference"].is_string());
    let invented = app
        .client
        .get(format!("{}/payouts", app.sandbox.paddle_base_url()))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        invented.status().as_u16(),
        404,
        "Paddle has no payouts endpoint"
    );

    app.wait_for_projections().await;
    let books = balanced_books(&app).await;
    assert_eq!(balance_in(&books, "provider_clearing", "USD"), 0, "{books}");
    assert_eq!(
        balance_in(&books, "provider_fees", "USD"),
        2 * 100,
        "{books}"
    );
    assert_eq!(balance_in(&books, "bank", "USD"), 2 * 900, "{books}");
    let timeline: Value = app
        .get("/v1/orders/recon-paddle-1/timeline")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        timeline.to_string().contains("paddle settled payment 1000"),
        "{timeline}"
    );
}
