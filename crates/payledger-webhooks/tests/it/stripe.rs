use payledger_webhooks::{Scheme, SignatureError};

use crate::support::{check, hmac_sha256, stripe_v1, BODY, NOW_UNIX, STRIPE_SECRET};

fn stripe_header(entries: &str) -> [(&str, &str); 1] {
    [("Stripe-Signature", entries)]
}

#[test]
fn a_v1_signature_over_timestamp_dot_body_verifies() {
    let header = format!(
        "t={NOW_UNIX},v1={}",
        stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY)
    );
    let delivery = check(
        Scheme::Stripe,
        &stripe_header(&header),
        BODY,
        &[STRIPE_SECRET],
        NOW_UNIX,
    )
    .expect("a correctly signed Stripe event verifies");
    assert_eq!(delivery.scheme, Scheme::Stripe);
    assert_eq!(delivery.timestamp.map(|t| t.timestamp()), Some(NOW_UNIX));
    assert_eq!(delivery.secret_index, Some(0));
    assert_eq!(
        delivery.delivery_id, None,
        "Stripe's event id lives in the body only"
    );
    assert!(!delivery.must_refetch);
}

#[test]
fn the_secret_is_keyed_as_its_raw_text_including_the_whsec_prefix() {
    // Signing with only the part after `whsec_`, or with anything derived from it, must fail.
    let without_prefix = STRIPE_SECRET.trim_start_matches("whsec_");
    let header = format!(
        "t={NOW_UNIX},v1={}",
        stripe_v1(without_prefix, NOW_UNIX, BODY)
    );
    assert_eq!(
        check(
            Scheme::Stripe,
            &stripe_header(&header),
            BODY,
            &[STRIPE_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn any_of_several_v1_signatures_may_match_and_v0_is_ignored() {
    let wrong = hex::encode(hmac_sha256(b"some other secret", BODY));
    let right = stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY);
    let header = format!("t={NOW_UNIX},v1={wrong},v1={right},v0={wrong}");
    assert!(check(
        Scheme::Stripe,
        &stripe_header(&header),
        BODY,
        &[STRIPE_SECRET],
        NOW_UNIX
    )
    .is_ok());
}

#[test]
fn a_correct_signature_under_v0_only_is_not_accepted() {
    // v0 is Stripe's test-mode scheme; it must never stand in for v1.
    let right = stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY);
    let header = format!("t={NOW_UNIX},v0={right}");
    assert!(matches!(
        check(
            Scheme::Stripe,
            &stripe_header(&header),
            BODY,
            &[STRIPE_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::MalformedHeader {
            header: "stripe-signature",
            ..
        })
    ));
}

#[test]
fn uppercase_hex_is_accepted() {
    let header = format!(
        "t={NOW_UNIX},v1={}",
        stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY).to_uppercase()
    );
    assert!(check(
        Scheme::Stripe,
        &stripe_header(&header),
        BODY,
        &[STRIPE_SECRET],
        NOW_UNIX
    )
    .is_ok());
}

#[test]
fn a_tampered_body_is_a_mismatch() {
    let header = format!(
        "t={NOW_UNIX},v1={}",
        stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY)
    );
    let tampered = BODY
        .to_vec()
        .into_iter()
        .map(|b| if b == b'5' { b'9' } else { b })
        .collect::<Vec<_>>();
    assert_ne!(tampered, BODY);
    assert_eq!(
        check(
            Scheme::Stripe,
            &stripe_header(&header),
            &tampered,
            &[STRIPE_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn a_timestamp_moved_without_re_signing_is_a_mismatch() {
    let signature = stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY);
    let header = format!("t={},v1={signature}", NOW_UNIX + 1);
    assert_eq!(
        check(
            Scheme::Stripe,
            &stripe_header(&header),
            BODY,
            &[STRIPE_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}
