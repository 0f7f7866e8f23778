use payledger_webhooks::{Scheme, SignatureError};

use crate::support::{
    check, standard_v1, stripe_v1, BODY, NOW_UNIX, STANDARD_SECRET, STANDARD_SECRET_NEXT,
    STRIPE_SECRET,
};

const STRIPE_SECRET_NEXT: &str = "whsec_rotated_stripe_endpoint_secret";

fn stripe_signed_with(secret: &str) -> String {
    format!("t={NOW_UNIX},v1={}", stripe_v1(secret, NOW_UNIX, BODY))
}

#[test]
fn during_rotation_a_delivery_signed_with_the_second_secret_verifies_and_says_so() {
    let header = stripe_signed_with(STRIPE_SECRET_NEXT);
    let delivery = check(
        Scheme::Stripe,
        &[("stripe-signature", header.as_str())],
        BODY,
        &[STRIPE_SECRET, STRIPE_SECRET_NEXT],
        NOW_UNIX,
    )
    .expect("the second secret matches");
    assert_eq!(delivery.secret_index, Some(1));
}

#[test]
fn during_rotation_a_delivery_signed_with_the_first_secret_still_verifies() {
    let header = stripe_signed_with(STRIPE_SECRET);
    let delivery = check(
        Scheme::Stripe,
        &[("stripe-signature", header.as_str())],
        BODY,
        &[STRIPE_SECRET, STRIPE_SECRET_NEXT],
        NOW_UNIX,
    )
    .expect("the first secret matches");
    assert_eq!(delivery.secret_index, Some(0));
}

#[test]
fn standard_webhooks_rotation_works_the_same_way() {
    let id = "msg_rotation";
    let signature = format!(
        "v1,{}",
        standard_v1(STANDARD_SECRET_NEXT, id, NOW_UNIX, BODY)
    );
    let timestamp = NOW_UNIX.to_string();
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    let delivery = check(
        Scheme::StandardWebhooks,
        &headers,
        BODY,
        &[STANDARD_SECRET, STANDARD_SECRET_NEXT],
        NOW_UNIX,
    )
    .expect("the second secret matches");
    assert_eq!(delivery.secret_index, Some(1));
}

#[test]
fn a_signature_from_neither_secret_is_a_mismatch() {
    let header = stripe_signed_with("whsec_a_secret_nobody_configured");
    assert_eq!(
        check(
            Scheme::Stripe,
            &[("stripe-signature", header.as_str())],
            BODY,
            &[STRIPE_SECRET, STRIPE_SECRET_NEXT],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn no_secret_or_more_than_two_is_a_misconfiguration_not_the_senders_fault() {
    let header = stripe_signed_with(STRIPE_SECRET);
    let headers = [("stripe-signature", header.as_str())];
    for configured in [
        &[][..],
        &[STRIPE_SECRET, STRIPE_SECRET_NEXT, "whsec_third"][..],
    ] {
        let error = check(Scheme::Stripe, &headers, BODY, configured, NOW_UNIX)
            .expect_err("must be refused");
        assert!(error.is_misconfiguration(), "{error:?}");
        assert_eq!(error.code(), "E_WEBHOOK_VERIFIER_MISCONFIGURED");
    }
}

#[test]
fn a_standard_webhooks_secret_that_is_not_base64_is_a_misconfiguration() {
    let headers = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1700000000"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let error = check(
        Scheme::StandardWebhooks,
        &headers,
        BODY,
        &["whsec_not*base64!"],
        NOW_UNIX,
    )
    .expect_err("an unusable secret cannot verify anything");
    assert!(error.is_misconfiguration(), "{error:?}");
}
