//! Replay protection: the signed timestamp must be within the tolerance of now, both ways,
//! with the edge itself still accepted.

use std::time::Duration;

use chrono::FixedOffset;
use payledger_webhooks::{
    verify, HeaderPairs, Scheme, SignatureError, DEFAULT_TOLERANCE, MAX_TOLERANCE,
};

use crate::support::{
    at, paddle_h1, secrets, standard_v1, stripe_v1, toss_v1, BODY, NOW_UNIX, PADDLE_SECRET,
    STANDARD_SECRET, STRIPE_SECRET, TOSS_SECRET,
};

const SIGNED_SCHEMES: [Scheme; 4] = [
    Scheme::Stripe,
    Scheme::Paddle,
    Scheme::StandardWebhooks,
    Scheme::TossSigned,
];

/// Headers for a genuine delivery of `scheme` signed at `signed_at_unix`, plus its secret.
fn genuine(scheme: Scheme, signed_at_unix: i64) -> (Vec<(&'static str, String)>, &'static str) {
    match scheme {
        Scheme::Stripe => (
            vec![(
                "stripe-signature",
                format!(
                    "t={signed_at_unix},v1={}",
                    stripe_v1(STRIPE_SECRET, signed_at_unix, BODY)
                ),
            )],
            STRIPE_SECRET,
        ),
        Scheme::Paddle => (
            vec![(
                "paddle-signature",
                format!(
                    "ts={signed_at_unix};h1={}",
                    paddle_h1(PADDLE_SECRET, signed_at_unix, BODY)
                ),
            )],
            PADDLE_SECRET,
        ),
        Scheme::StandardWebhooks => (
            vec![
                ("webhook-id", "msg_tolerance".to_owned()),
                ("webhook-timestamp", signed_at_unix.to_string()),
                (
                    "webhook-signature",
                    format!(
                        "v1,{}",
                        standard_v1(STANDARD_SECRET, "msg_tolerance", signed_at_unix, BODY)
                    ),
                ),
            ],
            STANDARD_SECRET,
        ),
        Scheme::TossSigned => {
            let korea = FixedOffset::east_opt(9 * 3600).expect("valid offset");
            let time = at(signed_at_unix).with_timezone(&korea).to_rfc3339();
            let signature = format!("v1:{}", toss_v1(TOSS_SECRET, &time, BODY));
            (
                vec![
                    ("tosspayments-webhook-signature", signature),
                    ("tosspayments-webhook-transmission-time", time),
                ],
                TOSS_SECRET,
            )
        }
        Scheme::TossUnsigned => unreachable!("unsigned deliveries carry no timestamp"),
    }
}

fn verify_at(
    scheme: Scheme,
    signed_at_unix: i64,
    now_unix: i64,
    tolerance: Duration,
) -> Result<payledger_webhooks::VerifiedDelivery, SignatureError> {
    let (owned, secret) = genuine(scheme, signed_at_unix);
    let headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
    verify(
        scheme,
        &HeaderPairs(&headers),
        BODY,
        &secrets(&[secret]),
        at(now_unix),
        tolerance,
    )
}

#[test]
fn a_delivery_exactly_as_old_as_the_tolerance_is_accepted_one_second_more_is_not() {
    for scheme in SIGNED_SCHEMES {
        assert!(
            verify_at(scheme, NOW_UNIX - 300, NOW_UNIX, DEFAULT_TOLERANCE).is_ok(),
            "{scheme:?} at the edge"
        );
        let error = verify_at(scheme, NOW_UNIX - 301, NOW_UNIX, DEFAULT_TOLERANCE)
            .expect_err("one second past the edge");
        assert_eq!(
            error,
            SignatureError::TimestampTooOld {
                age_seconds: 301,
                tolerance_seconds: 300
            },
            "{scheme:?}"
        );
        assert_eq!(error.code(), "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE");
    }
}

#[test]
fn a_delivery_exactly_as_far_in_the_future_as_the_tolerance_is_accepted_one_second_more_is_not() {
    for scheme in SIGNED_SCHEMES {
        assert!(
            verify_at(scheme, NOW_UNIX + 300, NOW_UNIX, DEFAULT_TOLERANCE).is_ok(),
            "{scheme:?} at the edge"
        );
        let error = verify_at(scheme, NOW_UNIX + 301, NOW_UNIX, DEFAULT_TOLERANCE)
            .expect_err("one second past the edge");
        assert_eq!(
            error,
            SignatureError::TimestampInFuture {
                ahead_seconds: 301,
                tolerance_seconds: 300
            },
            "{scheme:?}"
        );
        assert_eq!(error.code(), "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE");
    }
}

#[test]
fn a_replay_a_day_later_is_refused() {
    for scheme in SIGNED_SCHEMES {
        assert!(matches!(
            verify_at(scheme, NOW_UNIX, NOW_UNIX + 86_400, DEFAULT_TOLERANCE),
            Err(SignatureError::TimestampTooOld { .. })
        ));
    }
}

#[test]
fn the_tolerance_is_the_callers_choice_up_to_the_maximum() {
    let ten_seconds = Duration::from_secs(10);
    assert!(verify_at(Scheme::Stripe, NOW_UNIX - 10, NOW_UNIX, ten_seconds).is_ok());
    assert!(verify_at(Scheme::Stripe, NOW_UNIX - 11, NOW_UNIX, ten_seconds).is_err());
    assert!(verify_at(Scheme::Stripe, NOW_UNIX - 3600, NOW_UNIX, MAX_TOLERANCE).is_ok());

    let error = verify_at(
        Scheme::Stripe,
        NOW_UNIX,
        NOW_UNIX,
        MAX_TOLERANCE + Duration::from_secs(1),
    )
    .expect_err("a wider window defeats replay protection");
    assert!(error.is_misconfiguration());
}

#[test]
fn the_signature_is_checked_before_the_timestamp() {
    // A stale delivery with a forged signature is reported as forged: a timestamp error always
    // means a genuine but late delivery, which is what an operator needs to know.
    let stale = NOW_UNIX - 10_000;
    let header = format!("t={stale},v1={}", stripe_v1("whsec_forger", stale, BODY));
    let headers = [("stripe-signature", header.as_str())];
    assert_eq!(
        verify(
            Scheme::Stripe,
            &HeaderPairs(&headers),
            BODY,
            &secrets(&[STRIPE_SECRET]),
            at(NOW_UNIX),
            DEFAULT_TOLERANCE
        ),
        Err(SignatureError::SignatureMismatch)
    );
}
