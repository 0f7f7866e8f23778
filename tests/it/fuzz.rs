//! Bad input, generated: arbitrary and mutated bodies on every command endpoint never produce a
//! 5xx, and a rejected request stores nothing.

use payledger_tests::{spawn_app, TestApp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

/// Generated cases per endpoint: enough to cover every field with odd values, small enough to
/// keep the suite fast.
const CASES: u32 = 150;

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1_000_000_000_001i64)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("\u{0}".into())),
        Just(Value::String("x".repeat(300))),
        Just(Value::String(
            payledger_domain::card_numbers::test_cards::VISA_SPACED.into()
        )),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A valid body with one field replaced, removed, or a field added.
fn mutated(valid: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = valid
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let key_count = keys.len().max(1);
    (0..key_count, arb_scalar(), 0..3u8).prop_map(move |(index, replacement, how)| {
        let mut body = valid.clone();
        if let Some(map) = body.as_object_mut() {
            let key = keys.get(index).cloned().unwrap_or_default();
            match how {
                0 => {
                    map.insert(key, replacement);
                }
                1 => {
                    map.remove(&key);
                }
                _ => {
                    map.insert("unexpected".into(), replacement);
                }
            }
        }
        body
    })
}

async fn assert_never_5xx_and_rejections_store_nothing(app: &TestApp, path: &str, body: &Value) {
    let before = app.head_position().await;
    let response = app.post(path, body).await;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status < 500, "{path} {body} → {status} {answer}");
    if status >= 400 {
        assert!(
            answer["code"].as_str().is_some_and(|c| c.starts_with("E_")),
            "{answer}"
        );
        assert_eq!(
            app.head_position().await,
            before,
            "{path} {body} was rejected but stored events"
        );
    }
}

fn cases(strategy: impl Strategy<Value = Value>) -> Vec<Value> {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        ..Config::default()
    });
    (0..CASES)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("generate a case")
                .current()
        })
        .collect()
}

#[tokio::test]
async fn generated_bodies_never_cause_a_5xx_or_a_stored_side_effect() {
    let app = spawn_app().await;
    app.place_order("order-fuzz-1", 10_000).await;
    app.confirm("order-fuzz-1", "pk_fuzz_1", 10_000).await;
    let valid_order = json!({"orderId": "order-fuzz-2", "amount": 5_000, "currency": "KRW", "customerId": "c1", "payeeId": "p1", "orderName": "n"});
    let valid_confirm =
        json!({"paymentKey": "pk_fuzz", "orderId": "order-fuzz-1", "amount": 10_000});
    let valid_refund = json!({"amount": 100, "reason": "fuzz"});
    let endpoints = [
        ("/v1/orders", valid_order),
        ("/v1/payments/confirm", valid_confirm),
        ("/v1/orders/order-fuzz-1/refunds", valid_refund),
    ];
    for (path, valid) in endpoints {
        for body in cases(arb_json()).into_iter().chain(cases(mutated(valid))) {
            assert_never_5xx_and_rejections_store_nothing(&app, path, &body).await;
        }
    }
}
