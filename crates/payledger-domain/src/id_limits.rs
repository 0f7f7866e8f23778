//! Every identifier's limits in one list, for API descriptions (`payledger-http`'s OpenAPI
//! document). Above both `ids` and `billing`, whose identifiers it lists.

use crate::ids::IdLimits;

/// Every identifier's limits, ledger and billing ids alike.
pub const ID_LIMITS: &[IdLimits] = &[
    crate::ids::OrderId::LIMITS,
    crate::ids::CustomerId::LIMITS,
    crate::ids::PayeeId::LIMITS,
    crate::ids::PaymentKey::LIMITS,
    crate::ids::RefundId::LIMITS,
    crate::ids::ClaimId::LIMITS,
    crate::ids::AdminId::LIMITS,
    crate::billing::SubscriptionId::LIMITS,
    crate::billing::BillingKeyId::LIMITS,
    crate::billing::PlanId::LIMITS,
    crate::billing::CreditOperationId::LIMITS,
];
