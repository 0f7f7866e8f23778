use payledger_webhooks::{
    sign_standard_webhook, Scheme, SignatureError, StandardWebhookKey, WebhookSecret,
};

use crate::support::{check, standard_v1, STANDARD_SECRET, STANDARD_SECRET_NEXT};

const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TIMESTAMP: i64 = 1614265330;
const BODY: &[u8] = br#"{"test": 2432232314}"#;
const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn official_headers(signature: &str) -> [(&str, &str); 3] {
    [
        ("webhook-id", ID),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", signature),
    ]
}

#[test]
fn signing_reproduces_the_official_vector() {
    let key = StandardWebhookKey::from_secret(&WebhookSecret::new(STANDARD_SECRET))
        .expect("the official secret is valid");
    assert_eq!(sign_standard_webhook(&key, ID, TIMESTAMP, BODY), EXPECTED);
}

#[test]
fn the_official_vector_verifies_and_reports_the_delivery() {
    let delivery = check(
        Scheme::StandardWebhooks,
        &official_headers(EXPECTED),
        BODY,
        &[STANDARD_SECRET],
        TIMESTAMP,
    )
    .expect("the official vector verifies");
    assert_eq!(delivery.scheme, Scheme::StandardWebhooks);
    assert_eq!(delivery.delivery_id.as_deref(), Some(ID));
    assert_eq!(delivery.timestamp.map(|t| t.timestamp()), Some(TIMESTAMP));
    assert_eq!(delivery.secret_index, Some(0));
    assert!(!delivery.must_refetch);
}

#[test]
fn the_independent_recipe_agrees_with_the_official_vector() {
    // Guards the test helper itself, which the other schemes' tests rely on in the same way.
    assert_eq!(
        format!("v1,{}", standard_v1(STANDARD_SECRET, ID, TIMESTAMP, BODY)),
        EXPECTED
    );
}

#[test]
fn a_secret_without_the_whsec_prefix_is_decoded_the_same_way() {
    let bare = STANDARD_SECRET.trim_start_matches("whsec_");
    let delivery = check(
        Scheme::StandardWebhooks,
        &official_headers(EXPECTED),
        BODY,
        &[bare],
        TIMESTAMP,
    );
    assert!(delivery.is_ok(), "{delivery:?}");
}

#[test]
fn header_names_are_matched_case_insensitively() {
    let headers = [
        ("Webhook-Id", ID),
        ("WEBHOOK-TIMESTAMP", "1614265330"),
        ("Webhook-Signature", EXPECTED),
    ];
    let delivery = check(
        Scheme::StandardWebhooks,
        &headers,
        BODY,
        &[STANDARD_SECRET],
        TIMESTAMP,
    );
    assert!(delivery.is_ok(), "{delivery:?}");
}

#[test]
fn any_v1_signature_in_the_space_separated_list_may_match() {
    let other = standard_v1(STANDARD_SECRET_NEXT, ID, TIMESTAMP, BODY);
    let list = format!("v1,{other} {EXPECTED}");
    let delivery = check(
        Scheme::StandardWebhooks,
        &official_headers(&list),
        BODY,
        &[STANDARD_SECRET],
        TIMESTAMP,
    );
    assert!(delivery.is_ok(), "{delivery:?}");
}

#[test]
fn entries_of_other_versions_are_skipped_not_trusted() {
    // `v1a` is the asymmetric (ed25519) variant; this crate does not implement it, so the
    // entry must neither break parsing nor count as a signature.
    let asymmetric_only = "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert!(matches!(
        check(
            Scheme::StandardWebhooks,
            &official_headers(asymmetric_only),
            BODY,
            &[STANDARD_SECRET],
            TIMESTAMP
        ),
        Err(SignatureError::MalformedHeader {
            header: "webhook-signature",
            ..
        })
    ));
    let mixed = format!("{asymmetric_only} {EXPECTED}");
    assert!(check(
        Scheme::StandardWebhooks,
        &official_headers(&mixed),
        BODY,
        &[STANDARD_SECRET],
        TIMESTAMP
    )
    .is_ok());
}

#[test]
fn a_tampered_body_id_or_timestamp_is_a_mismatch() {
    let tampered_body = br#"{"test": 2432232315}"#;
    assert_eq!(
        check(
            Scheme::StandardWebhooks,
            &official_headers(EXPECTED),
            tampered_body,
            &[STANDARD_SECRET],
            TIMESTAMP
        ),
        Err(SignatureError::SignatureMismatch)
    );

    let other_id = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJeK"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", EXPECTED),
    ];
    assert_eq!(
        check(
            Scheme::StandardWebhooks,
            &other_id,
            BODY,
            &[STANDARD_SECRET],
            TIMESTAMP
        ),
        Err(SignatureError::SignatureMismatch)
    );

    // One second later is well inside the tolerance, so only the signature can refuse it.
    let other_timestamp = [
        ("webhook-id", ID),
        ("webhook-timestamp", "1614265331"),
        ("webhook-signature", EXPECTED),
    ];
    assert_eq!(
        check(
            Scheme::StandardWebhooks,
            &other_timestamp,
            BODY,
            &[STANDARD_SECRET],
            TIMESTAMP
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn a_signature_made_with_another_secret_is_a_mismatch() {
    assert_eq!(
        check(
            Scheme::StandardWebhooks,
            &official_headers(EXPECTED),
            BODY,
            &[STANDARD_SECRET_NEXT],
            TIMESTAMP
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn a_closure_over_the_http_layers_headers_is_a_header_source() {
    // The shape the HTTP crate uses: look the name up in its own map and hand back a `&str`.
    let map: std::collections::HashMap<String, String> = official_headers(EXPECTED)
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let headers = |name: &str| map.get(name).map(String::as_str);
    let delivery = payledger_webhooks::verify(
        Scheme::StandardWebhooks,
        &headers,
        BODY,
        &[WebhookSecret::new(STANDARD_SECRET)],
        crate::support::at(TIMESTAMP),
        payledger_webhooks::DEFAULT_TOLERANCE,
    );
    assert!(delivery.is_ok(), "{delivery:?}");
}
