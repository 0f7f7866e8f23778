use payledger_webhooks::{Scheme, SignatureError};

use crate::support::{check, paddle_h1, stripe_v1, BODY, NOW_UNIX, PADDLE_SECRET};

fn paddle_header(value: &str) -> [(&str, &str); 1] {
    [("Paddle-Signature", value)]
}

#[test]
fn an_h1_signature_over_timestamp_colon_body_verifies() {
    let header = format!(
        "ts={NOW_UNIX};h1={}",
        paddle_h1(PADDLE_SECRET, NOW_UNIX, BODY)
    );
    let delivery = check(
        Scheme::Paddle,
        &paddle_header(&header),
        BODY,
        &[PADDLE_SECRET],
        NOW_UNIX,
    )
    .expect("a correctly signed Paddle notification verifies");
    assert_eq!(delivery.scheme, Scheme::Paddle);
    assert_eq!(delivery.timestamp.map(|t| t.timestamp()), Some(NOW_UNIX));
    assert_eq!(delivery.secret_index, Some(0));
    assert_eq!(delivery.delivery_id, None);
}

#[test]
fn a_stripe_style_dot_separated_signature_does_not_verify_as_paddle() {
    let header = format!(
        "ts={NOW_UNIX};h1={}",
        stripe_v1(PADDLE_SECRET, NOW_UNIX, BODY)
    );
    assert_eq!(
        check(
            Scheme::Paddle,
            &paddle_header(&header),
            BODY,
            &[PADDLE_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn any_of_several_h1_signatures_may_match() {
    let old = paddle_h1("previous secret", NOW_UNIX, BODY);
    let new = paddle_h1(PADDLE_SECRET, NOW_UNIX, BODY);
    let header = format!("ts={NOW_UNIX};h1={old};h1={new}");
    assert!(check(
        Scheme::Paddle,
        &paddle_header(&header),
        BODY,
        &[PADDLE_SECRET],
        NOW_UNIX
    )
    .is_ok());
}

#[test]
fn a_tampered_body_is_a_mismatch() {
    let header = format!(
        "ts={NOW_UNIX};h1={}",
        paddle_h1(PADDLE_SECRET, NOW_UNIX, BODY)
    );
    let mut tampered = BODY.to_vec();
    tampered.push(b' ');
    assert_eq!(
        check(
            Scheme::Paddle,
            &paddle_header(&header),
            &tampered,
            &[PADDLE_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}
