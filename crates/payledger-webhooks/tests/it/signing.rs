use base64::Engine as _;
use payledger_webhooks::{sign_standard_webhook, Scheme, StandardWebhookKey, WebhookSecret};

use crate::support::{check, standard_v1, NOW_UNIX};

#[test]
fn a_generated_secret_is_whsec_plus_base64_of_the_given_bytes() {
    let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
    let secret = WebhookSecret::generate_standard_webhooks(bytes);
    let text = secret.expose_secret();
    let encoded = text.strip_prefix("whsec_").expect("carries the prefix");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
        bytes
    );
    assert!(secret.check_usable_for(Scheme::StandardWebhooks).is_ok());
}

#[test]
fn what_payledger_signs_verifies_as_a_standard_webhook_and_matches_the_recipe() {
    let secret = WebhookSecret::generate_standard_webhooks([42; 32]);
    let key = StandardWebhookKey::from_secret(&secret).expect("generated secrets are valid");
    let body = br#"{"type":"payment.failed","priority":"urgent"}"#;
    let signature = sign_standard_webhook(&key, "msg_outbound_1", NOW_UNIX, body);

    assert_eq!(
        signature,
        format!(
            "v1,{}",
            standard_v1(secret.expose_secret(), "msg_outbound_1", NOW_UNIX, body)
        )
    );
    let timestamp = NOW_UNIX.to_string();
    let headers = [
        ("webhook-id", "msg_outbound_1"),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    let delivery = check(
        Scheme::StandardWebhooks,
        &headers,
        body,
        &[secret.expose_secret()],
        NOW_UNIX,
    );
    assert!(delivery.is_ok(), "{delivery:?}");
}

#[test]
fn secrets_that_cannot_key_standard_webhooks_are_refused_up_front() {
    let too_short = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([1_u8; 16])
    );
    let too_long = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([1_u8; 65])
    );
    for bad in [
        "",
        "whsec_",
        "whsec_not base64!",
        too_short.as_str(),
        too_long.as_str(),
    ] {
        let error =
            StandardWebhookKey::from_secret(&WebhookSecret::new(bad)).expect_err("unusable secret");
        assert_eq!(error.code(), "E_WEBHOOK_SECRET_INVALID");
        if !bad.is_empty() {
            assert!(!error.to_string().contains(bad), "{error}");
        }
    }
}

#[test]
fn a_stripe_secret_is_usable_for_stripe_but_not_as_a_standard_webhooks_key() {
    // Both start with `whsec_`; only Standard Webhooks decodes the rest.
    let stripe_style = WebhookSecret::new("whsec_stripe_endpoint_secret_for_tests");
    assert!(stripe_style.check_usable_for(Scheme::Stripe).is_ok());
    assert!(stripe_style
        .check_usable_for(Scheme::StandardWebhooks)
        .is_err());
}

#[test]
fn an_oversized_secret_is_a_configuration_mistake() {
    let pasted_file = WebhookSecret::new("k".repeat(257));
    assert!(pasted_file.check_usable_for(Scheme::Paddle).is_err());
}
