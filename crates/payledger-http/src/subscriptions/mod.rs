//! Billing keys, subscriptions and credit wallets.
//!
//! The billing service is a typed field of [`AppState`] (`state.subscriptions`). No answer, log line or error message ever holds a billing key: responses name
//! keys by payledger's `billingKeyId` and show card facts only. Every body is scanned for text that
//! looks like a card number before it is read, and refused with `E_CARD_DATA_REJECTED`.
//!
//! One room per area: `billing_keys`, `lifecycle` (start, change card, cancel, resume),
//! `charging`, `queries` (get and list), `wallets`; what they share is `bodies`, `parsing`
//! (the card-data screen and the id parsers) and `errors` (`BillingError` → `ApiError`). The
//! handlers, bodies and their OpenAPI items (`__path_*`) are re-exported here, so routes and the
//! OpenAPI document name them as `crate::subscriptions::…`.

mod billing_keys;
mod bodies;
mod charging;
mod errors;
mod lifecycle;
mod membership;
mod parsing;
mod queries;
mod wallets;

pub use billing_keys::*;
pub use bodies::*;
pub use charging::*;
pub use errors::billing_error;
pub use lifecycle::*;
pub use membership::*;
pub use parsing::parse_body;
pub use queries::*;
pub use wallets::*;

use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::HttpRequest;
use payledger_app::subscriptions::Subscriptions;
use payledger_domain::billing::SubscriptionId;

/// A client may act on a subscription only if its customer is one the client created (see
/// [`crate::auth::check_customer_access`]); another client's subscription answers 404 as if it
/// did not exist. A subscription that does not exist is left to the handler to report.
async fn check_subscription_access(
    state: &AppState,
    request: &HttpRequest,
    subscription_id: &SubscriptionId,
) -> Result<(), ApiError> {
    if crate::auth::calling_client(request).is_none() {
        return Ok(());
    }
    let snapshot = services(state)
        .load_subscription(subscription_id)
        .await
        .map_err(billing_error)?;
    let Some(terms) = snapshot.and_then(|s| s.state.terms) else {
        return Ok(());
    };
    crate::auth::check_customer_access(state, request, &terms.customer_id)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::SubscriptionNotFound,
                "subscription does not exist",
            )
        })
}

fn services(state: &AppState) -> &Subscriptions {
    &state.subscriptions
}
