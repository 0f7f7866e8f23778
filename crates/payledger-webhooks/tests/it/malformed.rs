//! Every way a header can be wrong maps to its own error variant and stable code, and no error
//! message repeats the secret, the expected signature or what the sender wrote.

use payledger_webhooks::{Scheme, SignatureError, WebhookSecret};

use crate::support::{
    check, paddle_h1, standard_v1, stripe_v1, toss_v1, BODY, NOW_TOSS, NOW_UNIX, PADDLE_SECRET,
    STANDARD_SECRET, STRIPE_SECRET, TOSS_SECRET,
};

/// What a case must produce: the error code and the header it blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Missing(&'static str),
    Malformed(&'static str),
    Encoding(&'static str),
}

impl Expect {
    fn matches(self, error: &SignatureError) -> bool {
        match (self, error) {
            (Expect::Missing(expected), SignatureError::MissingHeader { header }) => {
                *header == expected && error.code() == "E_WEBHOOK_SIGNATURE_MISSING"
            }
            (Expect::Malformed(expected), SignatureError::MalformedHeader { header, .. }) => {
                *header == expected && error.code() == "E_WEBHOOK_SIGNATURE_MALFORMED"
            }
            (Expect::Encoding(expected), SignatureError::BadSignatureEncoding { header, .. }) => {
                *header == expected && error.code() == "E_WEBHOOK_SIGNATURE_ENCODING"
            }
            _ => false,
        }
    }
}

struct Case {
    name: &'static str,
    scheme: Scheme,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn secret_for(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Stripe => STRIPE_SECRET,
        Scheme::Paddle => PADDLE_SECRET,
        Scheme::StandardWebhooks => STANDARD_SECRET,
        Scheme::TossSigned | Scheme::TossUnsigned => TOSS_SECRET,
    }
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let result = check(
            case.scheme,
            &headers,
            BODY,
            &[secret_for(case.scheme)],
            NOW_UNIX,
        );
        match result {
            Err(error) => assert!(
                case.expect.matches(&error),
                "{}: expected {:?}, got {error:?}",
                case.name,
                case.expect
            ),
            Ok(delivery) => panic!(
                "{}: expected {:?}, verified {delivery:?}",
                case.name, case.expect
            ),
        }
    }
}

fn stripe(name: &'static str, value: String, expect: Expect) -> Case {
    Case {
        name,
        scheme: Scheme::Stripe,
        headers: vec![("stripe-signature", value)],
        expect,
    }
}

fn paddle(name: &'static str, value: String, expect: Expect) -> Case {
    Case {
        name,
        scheme: Scheme::Paddle,
        headers: vec![("paddle-signature", value)],
        expect,
    }
}

const STRIPE: &str = "stripe-signature";
const PADDLE: &str = "paddle-signature";
const WH_ID: &str = "webhook-id";
const WH_TS: &str = "webhook-timestamp";
const WH_SIG: &str = "webhook-signature";
const TOSS_SIG: &str = "tosspayments-webhook-signature";
const TOSS_TIME: &str = "tosspayments-webhook-transmission-time";

fn standard(
    name: &'static str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    expect: Expect,
) -> Case {
    let mut headers = Vec::new();
    if let Some(id) = id {
        headers.push((WH_ID, id.to_owned()));
    }
    if let Some(timestamp) = timestamp {
        headers.push((WH_TS, timestamp.to_owned()));
    }
    if let Some(signature) = signature {
        headers.push((WH_SIG, signature.to_owned()));
    }
    Case {
        name,
        scheme: Scheme::StandardWebhooks,
        headers,
        expect,
    }
}

fn toss(name: &'static str, signature: Option<&str>, time: Option<&str>, expect: Expect) -> Case {
    let mut headers = Vec::new();
    if let Some(signature) = signature {
        headers.push((TOSS_SIG, signature.to_owned()));
    }
    if let Some(time) = time {
        headers.push((TOSS_TIME, time.to_owned()));
    }
    Case {
        name,
        scheme: Scheme::TossSigned,
        headers,
        expect,
    }
}

#[test]
fn missing_or_empty_headers_are_reported_as_missing() {
    let good_standard = format!(
        "v1,{}",
        standard_v1(STANDARD_SECRET, "msg_1", NOW_UNIX, BODY)
    );
    let good_toss = format!("v1:{}", toss_v1(TOSS_SECRET, NOW_TOSS, BODY));
    let now = NOW_UNIX.to_string();
    run(vec![
        Case {
            name: "no stripe header",
            scheme: Scheme::Stripe,
            headers: vec![],
            expect: Expect::Missing(STRIPE),
        },
        stripe(
            "empty stripe header",
            String::new(),
            Expect::Missing(STRIPE),
        ),
        stripe("blank stripe header", "   ".into(), Expect::Missing(STRIPE)),
        Case {
            name: "no paddle header",
            scheme: Scheme::Paddle,
            headers: vec![],
            expect: Expect::Missing(PADDLE),
        },
        // A Stripe header sent to a Paddle endpoint is still a missing Paddle header.
        Case {
            name: "paddle endpoint, stripe header",
            scheme: Scheme::Paddle,
            headers: vec![(
                STRIPE,
                format!(
                    "t={NOW_UNIX},v1={}",
                    stripe_v1(PADDLE_SECRET, NOW_UNIX, BODY)
                ),
            )],
            expect: Expect::Missing(PADDLE),
        },
        standard(
            "no webhook-id",
            None,
            Some(&now),
            Some(&good_standard),
            Expect::Missing(WH_ID),
        ),
        standard(
            "no webhook-timestamp",
            Some("msg_1"),
            None,
            Some(&good_standard),
            Expect::Missing(WH_TS),
        ),
        standard(
            "no webhook-signature",
            Some("msg_1"),
            Some(&now),
            None,
            Expect::Missing(WH_SIG),
        ),
        standard(
            "empty webhook-id",
            Some(""),
            Some(&now),
            Some(&good_standard),
            Expect::Missing(WH_ID),
        ),
        toss(
            "no toss signature",
            None,
            Some(NOW_TOSS),
            Expect::Missing(TOSS_SIG),
        ),
        toss(
            "no toss transmission time",
            Some(&good_toss),
            None,
            Expect::Missing(TOSS_TIME),
        ),
    ]);
}

#[test]
fn headers_of_the_wrong_shape_are_reported_as_malformed() {
    let v1 = stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY);
    let h1 = paddle_h1(PADDLE_SECRET, NOW_UNIX, BODY);
    let nine_signatures = format!("t={NOW_UNIX}{}", format!(",v1={v1}").repeat(9));
    let oversized = format!("t={NOW_UNIX},v1={v1}{}", ",v0=0".repeat(500));
    let sw = format!(
        "v1,{}",
        standard_v1(STANDARD_SECRET, "msg_1", NOW_UNIX, BODY)
    );
    let now = NOW_UNIX.to_string();
    let nine_standard = [sw.as_str(); 9].join(" ");
    let long_id = "m".repeat(257);
    let toss_sig = format!("v1:{}", toss_v1(TOSS_SECRET, NOW_TOSS, BODY));
    run(vec![
        stripe("not key=value", "garbage".into(), Expect::Malformed(STRIPE)),
        stripe(
            "timestamp only",
            format!("t={NOW_UNIX}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "signature only",
            format!("v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "two timestamps",
            format!("t={NOW_UNIX},t={NOW_UNIX},v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "letters in timestamp",
            format!("t=abc,v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "negative timestamp",
            format!("t=-{NOW_UNIX},v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "plus-signed timestamp",
            format!("t=+{NOW_UNIX},v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "fractional timestamp",
            format!("t={NOW_UNIX}.5,v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "empty timestamp",
            format!("t=,v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "13-digit timestamp",
            format!("t=1700000000000,v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "empty entry",
            format!("t={NOW_UNIX},,v1={v1}"),
            Expect::Malformed(STRIPE),
        ),
        stripe(
            "nine signatures",
            nine_signatures,
            Expect::Malformed(STRIPE),
        ),
        stripe("over 2048 bytes", oversized, Expect::Malformed(STRIPE)),
        paddle(
            "comma instead of semicolon",
            format!("ts={NOW_UNIX},h1={h1}"),
            Expect::Malformed(PADDLE),
        ),
        paddle(
            "stripe keys",
            format!("t={NOW_UNIX};v1={h1}"),
            Expect::Malformed(PADDLE),
        ),
        standard(
            "entry without comma",
            Some("msg_1"),
            Some(&now),
            Some("v1"),
            Expect::Malformed(WH_SIG),
        ),
        standard(
            "only unknown versions",
            Some("msg_1"),
            Some(&now),
            Some("v2,abc"),
            Expect::Malformed(WH_SIG),
        ),
        standard(
            "nine signatures",
            Some("msg_1"),
            Some(&now),
            Some(&nine_standard),
            Expect::Malformed(WH_SIG),
        ),
        standard(
            "id with a space",
            Some("msg 1"),
            Some(&now),
            Some(&sw),
            Expect::Malformed(WH_ID),
        ),
        standard(
            "id with a control character",
            Some("msg\u{7}1"),
            Some(&now),
            Some(&sw),
            Expect::Malformed(WH_ID),
        ),
        standard(
            "id over 256 bytes",
            Some(&long_id),
            Some(&now),
            Some(&sw),
            Expect::Malformed(WH_ID),
        ),
        standard(
            "fractional timestamp",
            Some("msg_1"),
            Some("1700000000.0"),
            Some(&sw),
            Expect::Malformed(WH_TS),
        ),
        standard(
            "iso timestamp",
            Some("msg_1"),
            Some("2023-11-14T22:13:20Z"),
            Some(&sw),
            Expect::Malformed(WH_TS),
        ),
        toss(
            "unix seconds as transmission time",
            Some(&toss_sig),
            Some(&now),
            Expect::Malformed(TOSS_TIME),
        ),
        toss(
            "transmission time without offset",
            Some(&toss_sig),
            Some("2023-11-15T07:13:20"),
            Expect::Malformed(TOSS_TIME),
        ),
        toss(
            "equals instead of colon",
            Some("v1=abc"),
            Some(NOW_TOSS),
            Expect::Malformed(TOSS_SIG),
        ),
        toss(
            "only unknown versions",
            Some("v2:abc"),
            Some(NOW_TOSS),
            Expect::Malformed(TOSS_SIG),
        ),
    ]);
}

#[test]
fn signatures_that_are_not_32_bytes_of_hex_or_base64_are_reported_as_badly_encoded() {
    let v1 = stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY);
    let now = NOW_UNIX.to_string();
    let sw = standard_v1(STANDARD_SECRET, "msg_1", NOW_UNIX, BODY);
    run(vec![
        stripe(
            "non-hex",
            format!("t={NOW_UNIX},v1={}", "zz".repeat(32)),
            Expect::Encoding(STRIPE),
        ),
        stripe(
            "31 bytes of hex",
            format!("t={NOW_UNIX},v1={}", &v1[..62]),
            Expect::Encoding(STRIPE),
        ),
        stripe(
            "33 bytes of hex",
            format!("t={NOW_UNIX},v1={v1}00"),
            Expect::Encoding(STRIPE),
        ),
        stripe(
            "odd hex length",
            format!("t={NOW_UNIX},v1={}", &v1[..63]),
            Expect::Encoding(STRIPE),
        ),
        // Strict: one broken entry refuses the header even when another entry is genuine.
        stripe(
            "broken next to genuine",
            format!("t={NOW_UNIX},v1=xyz,v1={v1}"),
            Expect::Encoding(STRIPE),
        ),
        paddle(
            "non-hex",
            format!("ts={NOW_UNIX};h1=not-hex"),
            Expect::Encoding(PADDLE),
        ),
        standard(
            "not base64",
            Some("msg_1"),
            Some(&now),
            Some("v1,!!!!"),
            Expect::Encoding(WH_SIG),
        ),
        standard(
            "base64 of 31 bytes",
            Some("msg_1"),
            Some(&now),
            Some(&format!("v1,{}", b64(&[7; 31]))),
            Expect::Encoding(WH_SIG),
        ),
        standard(
            "unpadded base64",
            Some("msg_1"),
            Some(&now),
            Some(&format!("v1,{}", sw.trim_end_matches('='))),
            Expect::Encoding(WH_SIG),
        ),
        standard(
            "hex instead of base64",
            Some("msg_1"),
            Some(&now),
            Some(&format!("v1,{v1}")),
            Expect::Encoding(WH_SIG),
        ),
        toss(
            "not base64",
            Some("v1:%%%"),
            Some(NOW_TOSS),
            Expect::Encoding(TOSS_SIG),
        ),
    ]);
}

#[test]
fn error_messages_never_repeat_the_secret_the_expected_signature_or_the_input() {
    let expected_signature = stripe_v1(STRIPE_SECRET, NOW_UNIX, BODY);
    let forged = stripe_v1("whsec_forger", NOW_UNIX, BODY);
    let header = format!("t={NOW_UNIX},v1={forged}");
    let error = check(
        Scheme::Stripe,
        &[(STRIPE, header.as_str())],
        BODY,
        &[STRIPE_SECRET],
        NOW_UNIX,
    )
    .expect_err("forged");
    let message = format!("{error} {error:?}");
    assert_eq!(error.code(), "E_WEBHOOK_SIGNATURE_MISMATCH");
    for secret_material in [STRIPE_SECRET, expected_signature.as_str(), forged.as_str()] {
        assert!(!message.contains(secret_material), "{message}");
    }

    let error = check(
        Scheme::Stripe,
        &[(STRIPE, "t=1700000000,v1=<script>")],
        BODY,
        &[STRIPE_SECRET],
        NOW_UNIX,
    )
    .expect_err("malformed");
    assert!(!error.to_string().contains("<script>"), "{error}");
}

#[test]
fn secrets_never_print() {
    let secret = WebhookSecret::new(STRIPE_SECRET);
    assert_eq!(format!("{secret:?}"), "WebhookSecret(<redacted>)");
    let key =
        payledger_webhooks::StandardWebhookKey::from_secret(&WebhookSecret::new(STANDARD_SECRET))
            .expect("valid");
    assert!(!format!("{key:?}").contains("MfKQ9r8"));
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
