//! The API describes itself: `/openapi.json` and a viewer at `/docs` that needs no network.

use payledger_tests::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn the_document_and_its_viewer_are_served_without_a_key() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let confirm = &document["paths"]["/v1/payments/confirm"]["post"];
    assert_eq!(
        confirm["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ConfirmBody"
    );
    assert!(document["paths"]["/v1/webhooks/{provider}"]["post"].is_object());

    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("fetch(\"/openapi.json\")"));
    // Self-contained: nothing is loaded from another host.
    for needle in ["src=\"http", "href=\"http", "@import", "cdn."] {
        assert!(!html.contains(needle), "the page loads {needle}…");
    }
}
