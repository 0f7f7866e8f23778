//! Properties over arbitrary bodies: what is signed verifies, and any changed byte does not.

use payledger_webhooks::{
    sign_standard_webhook, Scheme, SignatureError, StandardWebhookKey, WebhookSecret,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::support::{
    check, paddle_h1, stripe_v1, toss_v1, NOW_TOSS, NOW_UNIX, PADDLE_SECRET, STANDARD_SECRET,
    STRIPE_SECRET, TOSS_SECRET,
};

/// Headers as payledger would send them, signed by the crate's own signer.
fn standard_headers(id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let key = StandardWebhookKey::from_secret(&WebhookSecret::new(STANDARD_SECRET))
        .expect("valid secret");
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            sign_standard_webhook(&key, id, timestamp, body),
        ),
    ]
}

/// Headers as each provider would send them, signed by the independent recipes in `support`.
fn provider_headers(scheme: Scheme, body: &[u8]) -> (Vec<(&'static str, String)>, &'static str) {
    match scheme {
        Scheme::Stripe => (
            vec![(
                "stripe-signature",
                format!(
                    "t={NOW_UNIX},v1={}",
                    stripe_v1(STRIPE_SECRET, NOW_UNIX, body)
                ),
            )],
            STRIPE_SECRET,
        ),
        Scheme::Paddle => (
            vec![(
                "paddle-signature",
                format!(
                    "ts={NOW_UNIX};h1={}",
                    paddle_h1(PADDLE_SECRET, NOW_UNIX, body)
                ),
            )],
            PADDLE_SECRET,
        ),
        Scheme::TossSigned => (
            vec![
                (
                    "tosspayments-webhook-signature",
                    format!("v1:{}", toss_v1(TOSS_SECRET, NOW_TOSS, body)),
                ),
                (
                    "tosspayments-webhook-transmission-time",
                    NOW_TOSS.to_owned(),
                ),
            ],
            TOSS_SECRET,
        ),
        Scheme::StandardWebhooks => (
            standard_headers("msg_prop", NOW_UNIX, body),
            STANDARD_SECRET,
        ),
        Scheme::TossUnsigned => unreachable!("not generated"),
    }
}

fn borrowed<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

fn signed_scheme() -> impl Strategy<Value = Scheme> {
    prop_oneof![
        Just(Scheme::Stripe),
        Just(Scheme::Paddle),
        Just(Scheme::StandardWebhooks),
        Just(Scheme::TossSigned),
    ]
}

proptest! {
    #[test]
    fn what_payledger_signs_verifies(
        body in vec(any::<u8>(), 0..2048),
        id in "[A-Za-z0-9_-]{1,64}",
        skew_seconds in -300_i64..=300,
    ) {
        let headers = standard_headers(&id, NOW_UNIX + skew_seconds, &body);
        let delivery = check(Scheme::StandardWebhooks, &borrowed(&headers), &body, &[STANDARD_SECRET], NOW_UNIX);
        prop_assert!(delivery.is_ok(), "{:?}", delivery);
        let delivery = delivery.expect("checked above");
        prop_assert_eq!(delivery.delivery_id, Some(id));
    }

    #[test]
    fn flipping_any_byte_of_a_signed_body_fails(
        body in vec(any::<u8>(), 1..2048),
        position in any::<Index>(),
        flip in 1_u8..=255,
    ) {
        let headers = standard_headers("msg_flip", NOW_UNIX, &body);
        let mut tampered = body.clone();
        tampered[position.index(body.len())] ^= flip;
        prop_assert_eq!(
            check(Scheme::StandardWebhooks, &borrowed(&headers), &tampered, &[STANDARD_SECRET], NOW_UNIX),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn every_scheme_accepts_its_providers_signature_and_refuses_a_flipped_byte(
        scheme in signed_scheme(),
        body in vec(any::<u8>(), 1..1024),
        position in any::<Index>(),
        flip in 1_u8..=255,
    ) {
        let (headers, secret) = provider_headers(scheme, &body);
        let headers = borrowed(&headers);
        let verified = check(scheme, &headers, &body, &[secret], NOW_UNIX);
        prop_assert!(verified.is_ok(), "{:?}: {:?}", scheme, verified);

        let mut tampered = body.clone();
        tampered[position.index(body.len())] ^= flip;
        prop_assert_eq!(
            check(scheme, &headers, &tampered, &[secret], NOW_UNIX),
            Err(SignatureError::SignatureMismatch)
        );
    }
}
