//! Crypto-shredding: personal fields are sealed in the log, revealed on the way out, and erased
//! by destroying the subject's key — without changing the log, its hashes or the books.

use payledger_tests::spawn_app;
use serde_json::{json, Value};

const NAME: &str = "김민지 치과 검진";

async fn place(app: &payledger_tests::TestApp, order_id: &str, customer: &str, name: &str) {
    let response = app
        .post(
            "/v1/orders",
            &json!({"orderId": order_id, "amount": 30_000, "currency": "KRW", "customerId": customer,
                    "payeeId": "payee_1", "orderName": name}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["orderName"], name, "the answer shows the name as sent");
    let paid = app
        .confirm(order_id, &format!("pk_{order_id}"), 30_000)
        .await;
    assert_eq!(paid.status().as_u16(), 200);
}

async fn get(app: &payledger_tests::TestApp, key: &str, path: &str) -> Value {
    let response = app.get_as(key, path).await;
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.json().await.unwrap()
}

async fn erase(app: &payledger_tests::TestApp, customer: &str) -> Value {
    let response = app
        .post_as(
            &app.admin_key,
            &format!("/v1/admin/privacy/customers/{customer}/erase"),
            &json!({"reason": "erasure request (GDPR art. 17, PIPA art. 36)"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn an_erased_customer_s_order_names_read_as_erased_while_the_log_and_the_books_still_verify()
{
    let app = spawn_app().await;
    place(&app, "order-priv-1", "cust_priv", NAME).await;
    place(&app, "order-priv-2", "cust_keep", "Kept name").await;
    app.wait_for_projections().await;

    // Sealed in the log: the raw log (what the hashes cover) holds a token, not the name.
    let stream = get(&app, &app.auditor_key, "/v1/streams/order-order-priv-1").await;
    let stored = stream["events"][0]["payload"]["orderName"]
        .as_str()
        .unwrap();
    assert!(stored.starts_with("pl-sealed:v1:"), "{stored}");
    assert!(!stream.to_string().contains(NAME));
    // Revealed on the way out.
    let order = get(&app, &app.support_key, "/v1/orders/order-priv-1").await;
    assert_eq!(order["orderName"], NAME);
    let books_before = get(&app, &app.auditor_key, "/v1/journal/trial-balance").await;

    let first = erase(&app, "cust_priv").await;
    assert_eq!(first["keysDestroyed"], 1);
    assert_eq!(first["recorded"], true);

    let order = get(&app, &app.support_key, "/v1/orders/order-priv-1").await;
    assert_eq!(order["orderName"], "[erased]");
    assert_eq!(order["amount"], 30_000, "money is untouched");
    assert_eq!(
        order["customerId"], "cust_priv",
        "ids used for matching are untouched"
    );
    let timeline = get(&app, &app.support_key, "/v1/orders/order-priv-1/timeline").await;
    let text = timeline.to_string();
    assert!(text.contains("[erased]") && !text.contains(NAME), "{text}");
    let other = get(&app, &app.support_key, "/v1/orders/order-priv-2").await;
    assert_eq!(
        other["orderName"], "Kept name",
        "another customer is untouched"
    );

    // Idempotent: asking again destroys and records nothing.
    let again = erase(&app, "cust_priv").await;
    assert_eq!(
        (again["keysDestroyed"].clone(), again["recorded"].clone()),
        (json!(0), json!(false))
    );
    let erasures = get(
        &app,
        &app.auditor_key,
        "/v1/streams/privacy-customer-cust_priv",
    )
    .await;
    let events = erasures["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["eventType"], "SubjectErased");
    assert_eq!(events[0]["metadata"]["actor"], "admin:ops");

    // The log still verifies, the books are the same, and a rebuilt read model agrees.
    let chains = payledger_store::audit::verify_all(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(chains.first_problem, None);
    app.wait_for_projections().await;
    let books_after = get(&app, &app.auditor_key, "/v1/journal/trial-balance").await;
    assert_eq!(books_after["accounts"], books_before["accounts"]);
    let orders = payledger_read_models::projection_named("orders").unwrap();
    let report = payledger_projector::verify(&app.app_pool, orders.as_ref())
        .await
        .unwrap();
    assert!(report.matches(), "{report:?}");

    // A new order after the erasure is sealed with a new key and readable again.
    place(&app, "order-priv-3", "cust_priv", "New name").await;
    let order = get(&app, &app.support_key, "/v1/orders/order-priv-3").await;
    assert_eq!(order["orderName"], "New name");
}

/// The console's order page, fetched over plain HTTP as a signed-in admin.
async fn console_order_page(app: &payledger_tests::TestApp, order_id: &str) -> String {
    let (session, _) = crate::console::http_session(app, &app.admin_key).await;
    let page = reqwest::Client::new()
        .get(app.url(&format!("/console/orders/{order_id}")))
        .header("cookie", format!("payledger_console_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    page.text().await.unwrap()
}

#[tokio::test]
async fn the_console_shows_sealed_texts_escaped_for_html_and_erased_after_the_erasure() {
    let app = spawn_app().await;
    let name = "<b>Lee & \"Park\"</b> 치과";
    let refund_reason = "이수진 보호자 요청 <script>x</script>";
    let enrollment_reason = "이민지 전학 'moved'";
    place(&app, "order-html-1", "cust_html", name).await;
    let refunded = app
        .post(
            "/v1/orders/order-html-1/refunds",
            &json!({"refundId": "rf-html", "amount": 1_000, "reason": refund_reason}),
        )
        .await;
    assert_eq!(refunded.status().as_u16(), 201);
    let cancelled = app
        .post_as(
            &app.admin_key,
            "/v1/admin/orders/order-html-1/cancel-enrollment",
            &json!({"reason": enrollment_reason}),
        )
        .await;
    assert_eq!(cancelled.status().as_u16(), 200);
    app.wait_for_projections().await;
    let timeline = get(&app, &app.support_key, "/v1/orders/order-html-1/timeline").await;
    let text = timeline.to_string();
    assert!(
        text.contains(refund_reason) && text.contains(enrollment_reason),
        "{text}"
    );

    let page = console_order_page(&app, "order-html-1").await;
    assert!(!page.contains("pl-sealed:"), "a token reached the page");
    assert!(
        page.contains("&lt;b&gt;Lee &amp; &quot;Park&quot;&lt;/b&gt; 치과"),
        "the name, escaped"
    );
    assert!(page.contains("이수진 보호자 요청 &lt;script&gt;x&lt;/script&gt;"));
    assert!(page.contains("이민지 전학 &#x27;moved&#x27;"));
    assert!(
        !page.contains("<script>x"),
        "revealed text never becomes markup"
    );

    erase(&app, "cust_html").await;
    let page = console_order_page(&app, "order-html-1").await;
    assert!(page.contains("[erased]"));
    for gone in ["Lee &amp;", "이수진", "이민지"] {
        assert!(!page.contains(gone), "{gone} is still on the page");
    }
    let timeline = get(&app, &app.support_key, "/v1/orders/order-html-1/timeline").await;
    let text = timeline.to_string();
    assert!(
        !text.contains("이수진") && !text.contains("이민지"),
        "{text}"
    );
}
