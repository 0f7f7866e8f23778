//! Card numbers never enter the log (issue 14, item 1), and a NUL is a 4xx (item 5).
//!
//! The walk reads the API's own OpenAPI document and, for EVERY operation, sends a card number
//! in each path parameter, each query parameter, each string field of the request body (at any
//! depth), and in the stored headers (`Idempotency-Key`, `X-Request-Id`). Each answer must be
//! 400 `E_CARD_DATA_REJECTED` without the number, and afterwards nothing may have been stored
//! (no event, no idempotency row, no webhook inbox or rejection row) or sent to the sandbox.

use payledger_domain::card_numbers::test_cards;
use payledger_tests::{spawn_app, TestApp};
use serde_json::{json, Value};

/// What a rejected request could have left behind.
async fn stored_rows(app: &TestApp) -> (i64, i64, i64, i64) {
    let count = |table: &'static str| {
        let pool = app.db.owner_pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("count {table}: {e}"))
        }
    };
    (
        count("events").await,
        count("idempotency_keys").await,
        count("webhook_inbox").await,
        count("webhook_rejections").await,
    )
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(document, &document["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// A body of the schema's shape with every field present: strings `"x"`, numbers 1.
fn template(document: &Value, schema: &Value, depth: usize) -> Value {
    let schema = resolve(document, schema);
    if depth > 6 {
        return Value::Null;
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        if let Some(options) = schema[combinator].as_array() {
            let non_null = options
                .iter()
                .find(|o| resolve(document, o)["type"] != "null")
                .unwrap_or(&options[0]);
            return template(document, non_null, depth + 1);
        }
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null")
            .to_string(),
        // No type: an object (free-form, or described by `properties`).
        _ => "object".into(),
    };
    match kind.as_str() {
        "object" => {
            let mut object = serde_json::Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    object.insert(name.clone(), template(document, property, depth + 1));
                }
            } else {
                // A free-form body (webhooks): the shape providers send.
                object.insert("eventType".into(), json!("x"));
                object.insert("data".into(), json!({"paymentKey": "x", "orderId": "x"}));
            }
            Value::Object(object)
        }
        "array" => json!([template(document, &schema["items"], depth + 1)]),
        "string" => schema["enum"]
            .as_array()
            .and_then(|e| e.first().cloned())
            .unwrap_or(json!("x")),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

/// JSON pointers of every string in `value`.
fn string_pointers(value: &Value, pointer: String, out: &mut Vec<String>) {
    match value {
        Value::String(_) => out.push(pointer),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_pointers(item, format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(fields) => {
            for (name, item) in fields {
                string_pointers(item, format!("{pointer}/{name}"), out);
            }
        }
        _ => {}
    }
}

struct Probe {
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    what: String,
}

/// Every probe of one operation, a card number in each place in turn.
fn probes(document: &Value, pattern: &str, method: &str, operation: &Value) -> Vec<Probe> {
    let method: reqwest::Method = method.to_uppercase().parse().unwrap();
    let parameters: Vec<&Value> = operation["parameters"]
        .as_array()
        .map(|p| p.iter().map(|p| resolve(document, p)).collect())
        .unwrap_or_default();
    let path_names: Vec<String> = parameters
        .iter()
        .filter(|p| p["in"] == "path")
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let fill = |card_in: Option<&str>, card: &str| {
        let mut path = pattern.to_string();
        for name in &path_names {
            let value = if Some(name.as_str()) == card_in {
                card.replace(' ', "%20")
            } else if name == "provider" {
                "toss".to_string()
            } else {
                "abc".to_string()
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
        path
    };
    let body = operation["requestBody"]["content"]["application/json"]["schema"]
        .is_object()
        .then(|| {
            template(
                document,
                &operation["requestBody"]["content"]["application/json"]["schema"],
                0,
            )
        });
    let cards = test_cards::ALL;
    let mut card_index = 0;
    let mut next_card = || {
        card_index += 1;
        cards[card_index % cards.len()]
    };
    let mut out = Vec::new();
    for name in &path_names {
        let card = next_card();
        out.push(Probe {
            method: method.clone(),
            path: fill(Some(name), card),
            body: body.clone(),
            headers: vec![],
            what: format!("path parameter {name}"),
        });
    }
    for parameter in parameters.iter().filter(|p| p["in"] == "query") {
        let name = parameter["name"].as_str().unwrap();
        let card = next_card();
        out.push(Probe {
            method: method.clone(),
            path: format!("{}?{name}={}", fill(None, card), card.replace(' ', "+")),
            body: body.clone(),
            headers: vec![],
            what: format!("query parameter {name}"),
        });
    }
    if let Some(body) = &body {
        let mut pointers = Vec::new();
        string_pointers(body, String::new(), &mut pointers);
        for pointer in pointers {
            let card = next_card();
            let mut with_card = body.clone();
            *with_card.pointer_mut(&pointer).unwrap() = json!(format!("Yoga {card}"));
            out.push(Probe {
                method: method.clone(),
                path: fill(None, card),
                body: Some(with_card),
                headers: vec![],
                what: format!("body field {pointer}"),
            });
        }
    }
    for header in ["idempotency-key", "x-request-id"] {
        let card = next_card();
        out.push(Probe {
            method: method.clone(),
            path: fill(None, card),
            body: body.clone(),
            headers: vec![(header, card.to_string())],
            what: format!("header {header}"),
        });
    }
    out
}

#[tokio::test]
async fn every_route_refuses_card_numbers_everywhere_and_stores_nothing() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = stored_rows(&app).await;
    let sandbox_before = app.sandbox.stats();
    let mut sent = 0;
    let mut operations = 0;
    for (pattern, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            for probe in probes(&document, pattern, method, operation) {
                let mut request = app
                    .client
                    .request(probe.method.clone(), app.url(&probe.path))
                    .bearer_auth(&app.admin_key);
                for (name, value) in &probe.headers {
                    request = request.header(*name, value);
                }
                if let Some(body) = &probe.body {
                    request = request.json(body);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                let context = format!("{method} {} ({}) → {status} {text}", probe.path, probe.what);
                assert_eq!(status, 400, "{context}");
                assert!(text.contains("E_CARD_DATA_REJECTED"), "{context}");
                for card in test_cards::ALL {
                    let digits: String = card.chars().filter(char::is_ascii_digit).collect();
                    assert!(!text.contains(card) && !text.contains(&digits), "{context}");
                }
                sent += 1;
            }
        }
    }
    assert!(
        operations >= 50,
        "only {operations} operations in the document"
    );
    assert!(sent > operations * 2, "only {sent} probes");
    // Give background work (webhook processing, outbox) a moment to show itself, then check.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        stored_rows(&app).await,
        before,
        "a refused request stored something"
    );
    assert_eq!(
        app.sandbox.stats(),
        sandbox_before,
        "a refused request reached the provider"
    );
}

#[tokio::test]
async fn the_issue_examples_are_refused_and_the_log_stays_clean() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/v1/orders",
            &json!({"orderId": "order-card-1", "amount": 1000, "currency": "KRW",
                "customerId": "cust_1", "payeeId": "payee_1",
                "orderName": format!("Yoga {}", test_cards::VISA_SPACED)}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_CARD_DATA_REJECTED");
    assert_eq!(body["field"], "orderName");
    // Legitimate ids that only look numeric pass the screen.
    let response = app
        .post(
            "/v1/orders",
            &json!({"orderId": "order-1733456789012", "amount": 1000, "currency": "KRW",
                "customerId": "cust_20261206052806", "payeeId": "payee_1",
                "orderName": "Yoga 2026-12-06 05:28 room 12"}),
        )
        .await;
    assert_eq!(
        response.status().as_u16(),
        201,
        "{}",
        response.text().await.unwrap()
    );
    assert_eq!(app.head_position().await, 1);
}

#[tokio::test]
async fn a_nul_in_a_query_path_or_body_is_a_4xx_that_says_so() {
    let app = spawn_app().await;
    for path in [
        "/v1/orders?customerId=a%00b",
        "/v1/orders?paymentKey=a%00b",
        "/v1/claims?orderId=a%00b",
        "/v1/orders/a%00b",
    ] {
        let response = app.get_as(&app.admin_key, path).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{path} → {body}");
        assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
    }
    let response = app.get("/v1/streams/order-a%00b").await;
    assert_eq!(response.status().as_u16(), 400);
    let response = app
        .post(
            "/v1/orders",
            &json!({"orderId": "order-nul", "amount": 1000, "currency": "KRW",
                "customerId": "cust_1", "payeeId": "payee_1", "orderName": "a\u{0}b"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_INVALID_FIELD");
    assert_eq!(body["field"], "orderName");
    assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
    assert_eq!(app.head_position().await, 0);
}
