//! The customer aggregate: billing keys (encrypted, card facts only) and linked subscriptions.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use payledger_domain::billing::{BillingKeyId, SubscriptionId};
use payledger_domain::customer::*;

type CustomerTest = TestFramework<Customer>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn key_id(name: &str) -> BillingKeyId {
    BillingKeyId::parse(name).unwrap()
}

fn secret() -> EncryptedSecret {
    EncryptedSecret {
        key_id: "k0123456789abcdef".into(),
        nonce_b64: "AAECAwQFBgcICQoL".into(),
        ciphertext_b64: "c2VjcmV0LWNpcGhlcnRleHQtYnl0ZXM=".into(),
    }
}

fn card() -> CardSummary {
    CardSummary {
        issuer_code: "61".into(),
        last4: "1234".into(),
        card_type: "신용".into(),
        expiry: Some("2029-12".into()),
    }
}

fn registered(name: &str) -> BillingKeyRegistered {
    BillingKeyRegistered {
        billing_key_id: key_id(name),
        provider: "sandbox".into(),
        customer_key: "cust_1".into(),
        card: card(),
        secret: secret(),
        at: t0(),
    }
}

fn register(name: &str) -> CustomerCommand {
    CustomerCommand::RegisterBillingKey(registered(name))
}

#[test]
fn a_billing_key_is_registered_with_card_facts_and_the_encrypted_key() {
    CustomerTest::with(())
        .given_no_previous_events()
        .when(register("bk_1"))
        .then_expect_events(vec![CustomerEvent::BillingKeyRegistered(registered(
            "bk_1",
        ))]);
}

#[test]
fn a_billing_key_id_is_registered_once() {
    CustomerTest::with(())
        .given(vec![CustomerEvent::BillingKeyRegistered(registered(
            "bk_1",
        ))])
        .when(register("bk_1"))
        .then_expect_error(CustomerError::BillingKeyIdTaken);
}

#[test]
fn card_facts_that_hold_a_card_number_or_too_much_are_refused() {
    let bad_cards = [
        CardSummary {
            card_type: payledger_domain::card_numbers::test_cards::VISA_STRIPE.into(),
            ..card()
        },
        CardSummary {
            issuer_code: payledger_domain::card_numbers::test_cards::VISA_SPACED.into(),
            ..card()
        },
        CardSummary {
            last4: "12345".into(),
            ..card()
        },
        CardSummary {
            last4: "12a4".into(),
            ..card()
        },
        CardSummary {
            expiry: Some("12/29".into()),
            ..card()
        },
    ];
    for bad in bad_cards {
        let mut event = registered("bk_1");
        event.card = bad.clone();
        CustomerTest::with(())
            .given_no_previous_events()
            .when(CustomerCommand::RegisterBillingKey(event))
            .then_expect_error(CustomerError::InvalidCard);
    }
    // Masked digits are what Toss sends for some cards.
    let mut masked = registered("bk_1");
    masked.card.last4 = "123*".into();
    CustomerTest::with(())
        .given_no_previous_events()
        .when(CustomerCommand::RegisterBillingKey(masked.clone()))
        .then_expect_events(vec![CustomerEvent::BillingKeyRegistered(masked)]);
}

#[test]
fn a_malformed_secret_is_refused() {
    for bad in [
        EncryptedSecret {
            key_id: String::new(),
            ..secret()
        },
        EncryptedSecret {
            ciphertext_b64: "not base64!".into(),
            ..secret()
        },
        EncryptedSecret {
            ciphertext_b64: "A".repeat(MAX_CIPHERTEXT_B64_LEN + 1),
            ..secret()
        },
    ] {
        let mut event = registered("bk_1");
        event.secret = bad;
        CustomerTest::with(())
            .given_no_previous_events()
            .when(CustomerCommand::RegisterBillingKey(event))
            .then_expect_error(CustomerError::InvalidSecret);
    }
}

#[test]
fn the_encrypted_secret_never_prints_its_ciphertext() {
    let printed = format!("{:?}", registered("bk_1"));
    assert!(!printed.contains("c2VjcmV0"), "{printed}");
    assert!(printed.contains("k0123456789abcdef"));
}

#[test]
fn revoking_a_key_stops_it_being_charged_and_revoking_again_changes_nothing() {
    let revoke = CustomerCommand::RevokeBillingKey {
        billing_key_id: key_id("bk_1"),
        reason: "customer removed the card".into(),
        at: t0(),
    };
    let revoked = CustomerEvent::BillingKeyRevoked(BillingKeyRevoked {
        billing_key_id: key_id("bk_1"),
        reason: "customer removed the card".into(),
        at: t0(),
    });
    CustomerTest::with(())
        .given(vec![CustomerEvent::BillingKeyRegistered(registered(
            "bk_1",
        ))])
        .when(revoke.clone())
        .then_expect_events(vec![revoked.clone()]);
    CustomerTest::with(())
        .given(vec![
            CustomerEvent::BillingKeyRegistered(registered("bk_1")),
            revoked.clone(),
        ])
        .when(revoke)
        .then_expect_events(vec![]);
    let mut customer = Customer::default();
    customer.apply(CustomerEvent::BillingKeyRegistered(registered("bk_1")));
    assert!(customer.active_billing_key(&key_id("bk_1")).is_ok());
    customer.apply(revoked);
    assert_eq!(
        customer.active_billing_key(&key_id("bk_1")).err(),
        Some(CustomerError::BillingKeyNotActive)
    );
    assert_eq!(
        customer.active_billing_key(&key_id("bk_9")).err(),
        Some(CustomerError::BillingKeyNotFound)
    );
}

#[test]
fn revoking_an_unknown_key_is_refused() {
    CustomerTest::with(())
        .given_no_previous_events()
        .when(CustomerCommand::RevokeBillingKey {
            billing_key_id: key_id("bk_1"),
            reason: "gone".into(),
            at: t0(),
        })
        .then_expect_error(CustomerError::BillingKeyNotFound);
}

#[test]
fn a_key_the_provider_reports_invalid_expires_once() {
    let expire = CustomerCommand::MarkBillingKeyExpired {
        billing_key_id: key_id("bk_1"),
        provider_code: "INVALID_BILL_KEY_REQUEST".into(),
        at: t0(),
    };
    let expired = CustomerEvent::BillingKeyExpired(BillingKeyExpired {
        billing_key_id: key_id("bk_1"),
        provider_code: "INVALID_BILL_KEY_REQUEST".into(),
        at: t0(),
    });
    CustomerTest::with(())
        .given(vec![CustomerEvent::BillingKeyRegistered(registered(
            "bk_1",
        ))])
        .when(expire.clone())
        .then_expect_events(vec![expired.clone()]);
    CustomerTest::with(())
        .given(vec![
            CustomerEvent::BillingKeyRegistered(registered("bk_1")),
            expired,
        ])
        .when(expire)
        .then_expect_events(vec![]);
}

#[test]
fn a_customer_holds_a_bounded_number_of_billing_keys() {
    let history: Vec<CustomerEvent> = (0..MAX_BILLING_KEYS_PER_CUSTOMER)
        .map(|i| CustomerEvent::BillingKeyRegistered(registered(&format!("bk_{i}"))))
        .collect();
    CustomerTest::with(())
        .given(history)
        .when(register("bk_one_more"))
        .then_expect_error(CustomerError::TooManyBillingKeys);
}

#[test]
fn subscriptions_are_linked_once() {
    let sub = SubscriptionId::parse("sub_1").unwrap();
    let link = CustomerCommand::LinkSubscription {
        subscription_id: sub.clone(),
        at: t0(),
    };
    let linked = CustomerEvent::SubscriptionLinked(SubscriptionLinked {
        subscription_id: sub,
        at: t0(),
    });
    CustomerTest::with(())
        .given_no_previous_events()
        .when(link.clone())
        .then_expect_events(vec![linked.clone()]);
    CustomerTest::with(())
        .given(vec![linked])
        .when(link)
        .then_expect_events(vec![]);
}
