//! The test PaymentMethods the sandbox knows: Stripe's own ids (stripe.com/docs/testing) where
//! Stripe publishes one, and `pm_sandbox_…` ids for what only a sandbox can script.

/// How a charge with this PaymentMethod ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardBehaviour {
    Succeed,
    /// 402 `card_error` with this `code` and `decline_code` (`None` for codes without one).
    Decline {
        code: &'static str,
        decline_code: Option<&'static str>,
        message: &'static str,
    },
    /// 3-D Secure is required: the PaymentIntent stops in `requires_action`.
    RequiresAction,
    /// The charge succeeds and a dispute opens on it at once (Stripe's `pm_card_createDispute`).
    SucceedThenDispute,
    /// The charge succeeds; the answer is held back past any client timeout.
    TimeoutAfterCharge,
    /// The charge succeeds; refunds of it stay `pending` until
    /// `POST /stripe/sandbox/refunds/{id}/settle` ends them.
    RefundsPending,
    /// The charge succeeds and the answer comes this late: a crash test's kill lands between
    /// the charge and payledger's record of it.
    SucceedSlowly {
        delay_ms: u64,
    },
}

/// A known test card.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestCard {
    pub id: &'static str,
    pub brand: &'static str,
    pub last4: &'static str,
    pub funding: &'static str,
    pub behaviour: CardBehaviour,
}

const fn card(id: &'static str, last4: &'static str, behaviour: CardBehaviour) -> TestCard {
    TestCard {
        id,
        brand: "visa",
        last4,
        funding: "credit",
        behaviour,
    }
}

const fn decline(
    code: &'static str,
    decline_code: Option<&'static str>,
    message: &'static str,
) -> CardBehaviour {
    CardBehaviour::Decline {
        code,
        decline_code,
        message,
    }
}

/// Every test PaymentMethod; anything else is `resource_missing`, as at Stripe.
pub(crate) const TEST_CARDS: &[TestCard] = &[
    card("pm_card_visa", "4242", CardBehaviour::Succeed),
    TestCard {
        brand: "visa",
        funding: "debit",
        ..card("pm_card_visa_debit", "5556", CardBehaviour::Succeed)
    },
    TestCard {
        brand: "mastercard",
        ..card("pm_card_mastercard", "4444", CardBehaviour::Succeed)
    },
    TestCard {
        brand: "amex",
        ..card("pm_card_amex", "8431", CardBehaviour::Succeed)
    },
    TestCard {
        brand: "jcb",
        ..card("pm_card_jcb", "0000", CardBehaviour::Succeed)
    },
    card(
        "pm_card_chargeDeclined",
        "0002",
        decline(
            "card_declined",
            Some("generic_decline"),
            "Your card was declined.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedInsufficientFunds",
        "9995",
        decline(
            "card_declined",
            Some("insufficient_funds"),
            "Your card has insufficient funds.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedLostCard",
        "9987",
        decline(
            "card_declined",
            Some("lost_card"),
            "Your card was declined.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedStolenCard",
        "9979",
        decline(
            "card_declined",
            Some("stolen_card"),
            "Your card was declined.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedFraudulent",
        "0019",
        decline(
            "card_declined",
            Some("fraudulent"),
            "Your card was declined.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedExpiredCard",
        "0069",
        decline(
            "expired_card",
            Some("expired_card"),
            "Your card has expired.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedIncorrectCvc",
        "0127",
        decline(
            "incorrect_cvc",
            Some("incorrect_cvc"),
            "Your card's security code is incorrect.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedProcessingError",
        "0119",
        decline(
            "processing_error",
            None,
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
    card(
        "pm_card_authenticationRequired",
        "3184",
        CardBehaviour::RequiresAction,
    ),
    card(
        "pm_card_threeDSecure2Required",
        "3220",
        CardBehaviour::RequiresAction,
    ),
    card(
        "pm_card_createDispute",
        "0259",
        CardBehaviour::SucceedThenDispute,
    ),
    card(
        "pm_sandbox_timeoutAfterCharge",
        "4242",
        CardBehaviour::TimeoutAfterCharge,
    ),
    card(
        "pm_sandbox_refundPending",
        "4242",
        CardBehaviour::RefundsPending,
    ),
    card(
        "pm_sandbox_slow100",
        "4242",
        CardBehaviour::SucceedSlowly { delay_ms: 100 },
    ),
    card(
        "pm_sandbox_slow300",
        "4242",
        CardBehaviour::SucceedSlowly { delay_ms: 300 },
    ),
    card(
        "pm_sandbox_slow600",
        "4242",
        CardBehaviour::SucceedSlowly { delay_ms: 600 },
    ),
    card(
        "pm_sandbox_slow850",
        "4242",
        CardBehaviour::SucceedSlowly { delay_ms: 850 },
    ),
];

pub(crate) fn find(id: &str) -> Option<&'static TestCard> {
    TEST_CARDS.iter().find(|card| card.id == id)
}

/// Stripe's zero-decimal currencies (stripe.com/docs/currencies#zero-decimal): the amount is in
/// whole units. Every other currency the sandbox takes has two decimals.
pub(crate) const ZERO_DECIMAL_CURRENCIES: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Currencies the sandbox charges in.
pub(crate) const SUPPORTED_CURRENCIES: &[&str] = &["usd", "eur", "gbp", "jpy", "krw"];

pub(crate) fn is_zero_decimal(currency: &str) -> bool {
    ZERO_DECIMAL_CURRENCIES.contains(&currency)
}

/// Stripe's minimum charge (stripe.com/docs/currencies#minimum-and-maximum-charge-amounts):
/// 50 cents in two-decimal currencies, ¥50, and 100 won (the sandbox's choice for KRW).
pub(crate) fn minimum_amount(currency: &str) -> i64 {
    match currency {
        "jpy" => 50,
        "krw" => 100,
        "gbp" => 30,
        _ => 50,
    }
}

/// Stripe's largest charge: eight digits in the currency's smallest unit.
pub(crate) const MAX_AMOUNT: i64 = 99_999_999;

/// The dispute fee withdrawn with a dispute, in the charge's currency and its smallest unit:
/// $15 / €15 / £15, ¥2,000, ₩20,000 (a sandbox table; Stripe's real fee varies by country).
pub(crate) fn dispute_fee(currency: &str) -> i64 {
    if is_zero_decimal(currency) {
        if currency == "krw" {
            20_000
        } else {
            2_000
        }
    } else {
        1_500
    }
}
