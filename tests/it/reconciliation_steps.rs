//! The steps the reconciliation end-to-end tests share: a payledger whose sandbox provider runs
//! on a clock the test moves ahead (so that payouts come due), the settlement import an admin
//! asks for, and the books read back balanced.

use chrono::{Duration, Utc};
use payledger_sandbox::SandboxClock;
use payledger_tests::{spawn_app_with, SpawnOptions, TestApp};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A test app whose sandbox provider runs the returned offset ahead of the wall clock: set it to
/// `Duration::days(2)` and the provider's payouts of today come due.
pub(crate) async fn spawn_with_provider_clock() -> (TestApp, Arc<Mutex<Duration>>) {
    spawn_with_provider_clock_and(SpawnOptions::default()).await
}

/// As [`spawn_with_provider_clock`], built from `options` otherwise.
pub(crate) async fn spawn_with_provider_clock_and(
    options: SpawnOptions,
) -> (TestApp, Arc<Mutex<Duration>>) {
    let offset = Arc::new(Mutex::new(Duration::zero()));
    let read = offset.clone();
    let clock: SandboxClock = Arc::new(move || Utc::now() + *read.lock().unwrap());
    let app = spawn_app_with(SpawnOptions {
        sandbox_clock: Some(clock),
        ..options
    })
    .await;
    (app, offset)
}

/// The status and body of an answer (the body as a JSON string when it is not JSON).
pub(crate) async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An admin imports the provider's settlements: `body` is `{provider, from, to}`.
pub(crate) async fn import_settlements(app: &TestApp, body: &Value) -> (u16, Value) {
    json_of(
        app.post_as(&app.admin_key, "/v1/admin/reconciliation/imports", body)
            .await,
    )
    .await
}

/// The trial balance as it stands (an auditor's read), checked to balance.
pub(crate) async fn balanced_books(app: &TestApp) -> Value {
    let (status, books) = json_of(
        app.get_as(&app.auditor_key, "/v1/journal/trial-balance")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{books}");
    assert_eq!(books["balanced"], true, "{books}");
    books
}

/// The balance of `account` in `currency` in a trial balance (0 when it has none).
pub(crate) fn balance_in(books: &Value, account: &str, currency: &str) -> i64 {
    books["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["account"] == account && a["currency"] == currency)
        .map_or(0, |a| a["balance"].as_i64().unwrap_or(0))
}
