//! Who may do what: every route of the access table × every role, no key, a malformed, unknown
//! and revoked key; clients see only their own orders; admin actions land in `audit-admin`.

use payledger_app::api_keys::{self, Role};
use payledger_app::context::RequestContext;
use payledger_http::auth::{Access, ROUTES};
use payledger_store::{EventStore, WriterConfig};
use payledger_tests::{event_types, spawn_app, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

/// A concrete path for a route pattern: the order of the test for `{order_id}`, a plausible
/// value for every other parameter.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment {
            "{order_id}" => "order-matrix-1",
            "{stream_id}" => "order-order-matrix-1",
            "{provider}" => "toss",
            s if s.starts_with('{') => "param-1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn send(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = app.client.request(method.clone(), app.url(path));
    if method != reqwest::Method::GET {
        // An empty command: whoever is admitted gets a 4xx about the body, and nothing happens.
        request = request.json(&json!({}));
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

async fn revoked_key(app: &TestApp) -> String {
    let store = EventStore::new(app.app_pool.clone(), WriterConfig::default());
    let context = RequestContext::new("cli:test", None);
    let created = api_keys::create_key(&app.app_pool, &store, "leaver", Role::Admin, &context)
        .await
        .unwrap();
    api_keys::revoke(&app.app_pool, &store, "leaver", &context)
        .await
        .unwrap();
    created.secret.expose().to_string()
}

#[tokio::test]
async fn every_route_admits_exactly_the_roles_of_the_table() {
    let app = spawn_app().await;
    app.place_order("order-matrix-1", 1_000).await;
    let revoked = revoked_key(&app).await;
    let roles = [
        (Role::Client, app.client_key.clone()),
        (Role::Support, app.support_key.clone()),
        (Role::Auditor, app.auditor_key.clone()),
        (Role::Admin, app.admin_key.clone()),
    ];
    let unknown = format!("plk_{}", "0".repeat(64));
    let mut checked = 0;
    for rule in ROUTES {
        let path = concrete(rule.pattern);
        let Access::Roles(allowed) = rule.access else {
            let (status, _) = send(&app, rule.method, &path, None).await;
            assert_ne!(status, 401, "{} {path} is open", rule.method);
            continue;
        };
        // A route of the table that this build does not mount answers 404 to everyone.
        let (admin_status, admin_body) = send(&app, rule.method, &path, Some(&app.admin_key)).await;
        if admin_status == 404 && admin_body["code"] == "E_NOT_FOUND" {
            println!(
                "not mounted in this build: {} {}",
                rule.method, rule.pattern
            );
            continue;
        }
        for (label, key) in [
            ("no key", None),
            ("a malformed key", Some("not-a-key")),
            ("an unknown key", Some(unknown.as_str())),
            ("a revoked key", Some(revoked.as_str())),
        ] {
            let (status, body) = send(&app, rule.method, &path, key).await;
            assert_eq!(status, 401, "{} {path} with {label}: {body}", rule.method);
            assert_eq!(body["code"], "E_UNAUTHENTICATED");
        }
        for (role, key) in &roles {
            let (status, body) = send(&app, rule.method, &path, Some(key)).await;
            if allowed.contains(role) {
                assert!(
                    status != 401 && status != 403,
                    "{} {path} must admit {role}: {status} {body}",
                    rule.method
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{} {path} must refuse {role}: {body}",
                    rule.method
                );
                assert_eq!(body["code"], "E_FORBIDDEN");
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * 16, "the matrix covered only {checked} cases");
    // X-Api-Key works as well as Authorization: Bearer.
    let response = app
        .client
        .get(app.url("/v1/orders/order-matrix-1"))
        .header("x-api-key", &app.client_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Health stays open.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_the_cache_time() {
    let app = spawn_app().await;
    let store = EventStore::new(app.app_pool.clone(), WriterConfig::default());
    let context = RequestContext::new("cli:test", None);
    let key = api_keys::create_key(&app.app_pool, &store, "rotating", Role::Client, &context)
        .await
        .unwrap();
    let key = key.secret.expose().to_string();
    assert_eq!(
        app.get_as(&key, "/v1/orders?customerId=c").await.status(),
        200
    );
    api_keys::revoke(&app.app_pool, &store, "rotating", &context)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(payledger_http::auth::KEY_CACHE_TTL_MS + 2_000);
    loop {
        let status = app.get_as(&key, "/v1/orders?customerId=c").await.status();
        if status == 401 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Creating and revoking were admin actions: both are in the audit stream.
    let audit: Value = app
        .get("/v1/streams/audit-admin")
        .await
        .json()
        .await
        .unwrap();
    let types = event_types(&audit["events"]);
    assert_eq!(types, vec!["ApiKeyCreated", "ApiKeyRevoked"]);
}

#[tokio::test]
async fn clients_see_and_change_only_their_own_orders() {
    let app = spawn_app().await;
    app.place_order("order-mine-1", 5_000).await;
    app.confirm("order-mine-1", "pk_mine_1", 5_000).await;
    let other = &app.other_client_key;
    for path in [
        "/v1/orders/order-mine-1",
        "/v1/orders/order-mine-1/timeline",
    ] {
        let response = app.get_as(other, path).await;
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "E_ORDER_NOT_FOUND");
    }
    let refund = app
        .post_as(
            other,
            "/v1/orders/order-mine-1/refunds",
            &json!({"reason": "steal"}),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 404);
    let confirm = app
        .post_as(
            other,
            "/v1/payments/confirm",
            &json!({"paymentKey": "pk_x", "orderId": "order-mine-1", "amount": 5_000}),
        )
        .await;
    assert_eq!(confirm.status().as_u16(), 404);
    let status: Value = app
        .get_as(other, "/v1/orders/order-mine-1/payment-status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "not_found");

    // The search reads the read model: wait until it shows the order to its owner.
    let mut mine = Value::Null;
    for _ in 0..100 {
        mine = app
            .get("/v1/orders?customerId=cust_1")
            .await
            .json()
            .await
            .unwrap();
        if mine["orders"].as_array().is_some_and(|o| o.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mine["orders"][0]["orderId"], "order-mine-1");
    let found: Value = app
        .get_as(other, "/v1/orders?customerId=cust_1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["orders"], json!([]));
    // Support reads every order; the owner still sees its own.
    assert_eq!(
        app.get_as(&app.support_key, "/v1/orders/order-mine-1")
            .await
            .status(),
        200
    );
    assert_eq!(app.get("/v1/orders/order-mine-1").await.status(), 200);
    // The placing client is the events' actor.
    let stream: Value = app
        .get("/v1/streams/order-order-mine-1")
        .await
        .json()
        .await
        .unwrap();
    for event in stream["events"].as_array().unwrap() {
        assert_eq!(event["metadata"]["actor"], "client:e2e");
    }
}

#[tokio::test]
async fn admin_actions_are_recorded_in_the_audit_stream_for_auditors() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/admin/switches/payees/payee_9/suspend"))
        .bearer_auth(&app.admin_key)
        .header("user-agent", "ops-console/1")
        .header("x-request-id", "req-audit-1")
        .json(&json!({"reason": "price bug"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        app.get_as(&app.client_key, "/v1/streams/audit-admin")
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get_as(&app.support_key, "/v1/streams/audit-admin")
            .await
            .status(),
        403
    );
    let audit: Value = app
        .get_as(&app.auditor_key, "/v1/streams/audit-admin")
        .await
        .json()
        .await
        .unwrap();
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["eventType"], "AdminActionRecorded");
    assert_eq!(event["metadata"]["actor"], "admin:ops");
    assert_eq!(event["metadata"]["requestId"], "req-audit-1");
    let action = &event["payload"];
    assert_eq!(
        action["action"],
        "POST /v1/admin/switches/payees/{payee_id}/suspend"
    );
    assert_eq!(action["path"], "/v1/admin/switches/payees/payee_9/suspend");
    assert_eq!(action["status"], 200);
    assert_eq!(action["remoteAddr"], "127.0.0.1");
    assert_eq!(action["userAgent"], "ops-console/1");
    assert!(action["at"].as_str().is_some());
    // The switch itself is an event too, with the same actor.
    let switches: Value = app
        .get("/v1/streams/ops-switches")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(switches["events"][0]["eventType"], "PayeeSalesSuspended");
    assert_eq!(switches["events"][0]["metadata"]["actor"], "admin:ops");
}
