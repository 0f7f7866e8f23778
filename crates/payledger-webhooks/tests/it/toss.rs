use payledger_webhooks::{verify, HeaderPairs, Scheme, SignatureError, DEFAULT_TOLERANCE};

use crate::support::{at, check, hmac_sha256, toss_v1, NOW_TOSS, NOW_UNIX, TOSS_SECRET};

const PAYOUT_BODY: &[u8] = br#"{"eventType":"payout.changed","createdAt":"2023-11-15T07:13:19+09:00","eventId":"evt_payout_1","entityBody":{"amount":{"currency":"KRW","value":1111},"status":"COMPLETED"}}"#;

fn toss_headers<'a>(signature: &'a str, time: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("tosspayments-webhook-signature", signature),
        ("tosspayments-webhook-transmission-time", time),
        (
            "tosspayments-webhook-transmission-id",
            "wh_transmission_0001",
        ),
    ]
}

#[test]
fn a_payout_event_signed_over_body_colon_transmission_time_verifies() {
    let signature = format!("v1:{}", toss_v1(TOSS_SECRET, NOW_TOSS, PAYOUT_BODY));
    let delivery = check(
        Scheme::TossSigned,
        &toss_headers(&signature, NOW_TOSS),
        PAYOUT_BODY,
        &[TOSS_SECRET],
        NOW_UNIX,
    )
    .expect("a correctly signed payout event verifies");
    assert_eq!(delivery.scheme, Scheme::TossSigned);
    assert_eq!(
        delivery.timestamp.map(|t| t.timestamp()),
        Some(NOW_UNIX),
        "the +09:00 offset is honoured"
    );
    assert_eq!(
        delivery.delivery_id.as_deref(),
        Some("wh_transmission_0001")
    );
    assert_eq!(delivery.secret_index, Some(0));
    assert!(!delivery.must_refetch);
}

#[test]
fn the_transmission_time_is_signed_verbatim_after_the_body() {
    // The same instant written in UTC is a different signed text: the header is not normalised.
    let utc_text = "2023-11-14T22:13:20Z";
    let signed_with_utc_text = format!("v1:{}", toss_v1(TOSS_SECRET, utc_text, PAYOUT_BODY));
    assert_eq!(
        check(
            Scheme::TossSigned,
            &toss_headers(&signed_with_utc_text, NOW_TOSS),
            PAYOUT_BODY,
            &[TOSS_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
    assert!(check(
        Scheme::TossSigned,
        &toss_headers(&signed_with_utc_text, utc_text),
        PAYOUT_BODY,
        &[TOSS_SECRET],
        NOW_UNIX
    )
    .is_ok());

    // Time before body is the wrong order.
    let mut reversed = NOW_TOSS.as_bytes().to_vec();
    reversed.push(b':');
    reversed.extend_from_slice(PAYOUT_BODY);
    let reversed_signature = format!(
        "v1:{}",
        base64_of(&hmac_sha256(TOSS_SECRET.as_bytes(), &reversed))
    );
    assert_eq!(
        check(
            Scheme::TossSigned,
            &toss_headers(&reversed_signature, NOW_TOSS),
            PAYOUT_BODY,
            &[TOSS_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn either_of_the_two_v1_values_may_match() {
    let old = toss_v1("previous security key", NOW_TOSS, PAYOUT_BODY);
    let new = toss_v1(TOSS_SECRET, NOW_TOSS, PAYOUT_BODY);
    let signature = format!("v1:{old},v1:{new}");
    assert!(check(
        Scheme::TossSigned,
        &toss_headers(&signature, NOW_TOSS),
        PAYOUT_BODY,
        &[TOSS_SECRET],
        NOW_UNIX
    )
    .is_ok());
}

#[test]
fn a_tampered_payout_amount_is_a_mismatch() {
    let signature = format!("v1:{}", toss_v1(TOSS_SECRET, NOW_TOSS, PAYOUT_BODY));
    let tampered = String::from_utf8(PAYOUT_BODY.to_vec())
        .expect("utf-8 body")
        .replace("1111", "9999");
    assert_eq!(
        check(
            Scheme::TossSigned,
            &toss_headers(&signature, NOW_TOSS),
            tampered.as_bytes(),
            &[TOSS_SECRET],
            NOW_UNIX
        ),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn an_unsigned_payment_status_event_is_accepted_only_as_a_prompt_to_refetch() {
    let headers = [(
        "tosspayments-webhook-transmission-id",
        "wh_transmission_0002",
    )];
    let body = br#"{"eventType":"PAYMENT_STATUS_CHANGED","data":{"status":"DONE","totalAmount":99999999}}"#;
    let delivery = verify(
        Scheme::TossUnsigned,
        &HeaderPairs(&headers),
        body,
        &[],
        at(NOW_UNIX),
        DEFAULT_TOLERANCE,
    )
    .expect("unsigned events need no secret");
    assert!(delivery.must_refetch);
    assert_eq!(delivery.scheme, Scheme::TossUnsigned);
    assert_eq!(
        delivery.delivery_id.as_deref(),
        Some("wh_transmission_0002")
    );
    assert_eq!(delivery.timestamp, None);
    assert_eq!(delivery.secret_index, None);
    assert!(!Scheme::TossUnsigned.is_signed());
}

#[test]
fn an_unsigned_event_without_a_transmission_id_still_only_prompts_a_refetch() {
    let delivery = check(Scheme::TossUnsigned, &[], b"{}", &[], NOW_UNIX).expect("accepted");
    assert!(delivery.must_refetch);
    assert_eq!(delivery.delivery_id, None);
}

#[test]
fn an_oversized_transmission_id_is_refused_even_when_unsigned() {
    let long_id = "x".repeat(257);
    let headers = [("tosspayments-webhook-transmission-id", long_id.as_str())];
    assert!(matches!(
        check(Scheme::TossUnsigned, &headers, b"{}", &[], NOW_UNIX),
        Err(SignatureError::MalformedHeader {
            header: "tosspayments-webhook-transmission-id",
            ..
        })
    ));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
