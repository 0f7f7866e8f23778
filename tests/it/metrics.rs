//! `GET /metrics`: what a payment does shows up under the names the alert rules use.
//!
//! The registry is per process and the tests of this binary run in parallel, so counts are
//! checked as lower bounds.

use payledger_tests::spawn_app;
use std::collections::BTreeSet;

/// The value of the sample `series` (name with its labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Metric families (`# TYPE name kind`) the exposition declares.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_payment_and_a_mismatch_show_up_under_the_names_the_alert_rules_use() {
    let app = spawn_app().await;
    app.place_order("order-metrics-1", 9_000).await;
    assert_eq!(
        app.confirm("order-metrics-1", "pk_metrics_1", 9_000)
            .await
            .status()
            .as_u16(),
        200
    );
    app.place_order("order-metrics-2", 9_000).await;
    assert_eq!(
        app.confirm("order-metrics-2", "pk_metrics_2", 1)
            .await
            .status()
            .as_u16(),
        400
    );
    app.wait_for_projections().await;

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "open to scrapers, no API key"
    );
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));

    let confirm = r#"command="POST /v1/payments/confirm""#;
    assert!(
        sample(
            &text,
            &format!("payledger_commands_total{{{confirm},outcome=\"ok\"}}")
        ) >= Some(1.0)
    );
    assert!(
        sample(
            &text,
            &format!("payledger_commands_total{{{confirm},outcome=\"E_AMOUNT_MISMATCH\"}}")
        ) >= Some(1.0)
    );
    assert!(
        sample(
            &text,
            r#"payledger_http_request_duration_seconds_count{method="POST",route="/v1/payments/confirm",status_class="2xx"}"#
        ) >= Some(1.0)
    );
    assert!(
        sample(
            &text,
            r#"payledger_payment_outcomes_total{outcome="captured"}"#
        ) >= Some(1.0)
    );
    assert!(sample(&text, "payledger_amount_mismatches_total") >= Some(1.0));
    assert!(sample(&text, "payledger_confirmation_attempts_total") >= Some(2.0));
    assert_eq!(
        sample(
            &text,
            r#"payledger_provider_circuit_state{provider="toss",state="closed"}"#
        ),
        Some(1.0)
    );
    assert!(sample(&text, r#"payledger_provider_calls_total{provider="toss"}"#) >= Some(1.0));
    let head = app.head_position().await as f64;
    assert!(
        sample(
            &text,
            r#"payledger_projection_position{projection="orders"}"#
        ) >= Some(head)
    );
    assert!(sample(
        &text,
        r#"payledger_projection_lag_events{projection="webhook_outbox"}"#
    )
    .is_some());
    assert_eq!(
        sample(
            &text,
            r#"payledger_webhook_dead_letters{direction="inbound"}"#
        ),
        Some(0.0)
    );

    // Every metric the alert rules of docs/operations.md name is exposed.
    let declared = families(&text);
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .unwrap();
    let alerts = &docs[docs.find("## Alerts").expect("an Alerts section")..];
    // Up to the next section: other sections name other things (`payledger_app`, the role).
    let alerts = &alerts[..alerts[3..]
        .find("\n## ")
        .map_or(alerts.len(), |end| end + 3)];
    let mut named = BTreeSet::new();
    for token in alerts.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if token.starts_with("payledger_") {
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token);
            named.insert(family.to_string());
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    let missing: Vec<&String> = named.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "alert rules name metrics /metrics lacks: {missing:?}"
    );
}
