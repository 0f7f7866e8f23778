//! What every page shares (the chrome: navigation, language, who is signed in) and the small
//! formatting helpers templates use. Templates live in `templates/` and are compiled in.

use crate::i18n::Lang;
use crate::session::Session;
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use payledger_app::api_keys::Role;

/// A moment shown in the configured zone, with UTC on hover.
#[derive(Debug, Clone)]
pub struct Time {
    pub local: String,
    pub utc: String,
    pub iso: String,
}

impl Time {
    pub fn new(at: DateTime<Utc>, zone: chrono_tz::Tz) -> Time {
        Time {
            local: at
                .with_timezone(&zone)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            utc: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// An amount in minor units with its currency, digits grouped: `1,250,000 KRW`. Integers only.
pub fn money(amount_minor: i64, currency: &str) -> String {
    let digits = amount_minor.unsigned_abs().to_string();
    // Groups of three from the right; digits are ASCII, so every chunk is valid UTF-8.
    let grouped = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",");
    let sign = if amount_minor < 0 { "-" } else { "" };
    format!("{sign}{grouped} {currency}")
}

/// One entry of the navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: String,
    pub current: bool,
}

/// The frame of every signed-in page.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub lang: Lang,
    pub who: String,
    pub role: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub zone: String,
    /// This page's path and query, for the language switch to come back to.
    pub here: String,
    pub expires: Time,
    /// A fresh idempotency token for the forms of this page: a form posted twice (double
    /// click, back and resubmit) carries the same token and so does its work once.
    pub idem: String,
}

/// The screens, each shown to the roles its API route admits.
const SCREENS: &[(&str, &str, &str, &str)] = &[
    ("home", "/console/home", "", ""),
    ("orders", "/console/orders", "GET", "/v1/orders/{order_id}"),
    ("claims", "/console/claims", "GET", "/v1/claims"),
    (
        "customers",
        "/console/customers",
        "GET",
        "/v1/subscriptions",
    ),
    (
        "settlements",
        "/console/settlements",
        "GET",
        "/v1/settlements",
    ),
    (
        "operations",
        "/console/operations",
        "GET",
        "/v1/admin/switches",
    ),
    (
        "webhooks",
        "/console/webhooks",
        "GET",
        "/v1/admin/webhooks/dead-letters",
    ),
    ("api_keys", "/console/keys", "", "admin"),
    ("ledger", "/console/ledger", "GET", "/v1/events"),
];

impl Chrome {
    pub fn new(
        request: &HttpRequest,
        session: &Session,
        console: &Console,
        active: &str,
    ) -> Chrome {
        let lang = Lang::of(request);
        let nav = SCREENS
            .iter()
            .filter(|(_, _, method, pattern)| match (*method, *pattern) {
                ("", "") => true,
                ("", "admin") => session.principal.role == Role::Admin,
                (method, pattern) => session.may(method, pattern),
            })
            .map(|(key, href, _, _)| NavItem {
                href,
                label: lang.t(if *key == "home" { "dashboard" } else { key }),
                current: *key == active,
            })
            .collect();
        let here = match request.query_string() {
            "" => request.path().to_string(),
            query => format!("{}?{}", request.path(), query),
        };
        Chrome {
            lang,
            who: session.principal.name.clone(),
            role: session.principal.role.to_string(),
            csrf: session.csrf_token.clone(),
            nav,
            zone: console.config.time_zone.name().to_string(),
            here: here.chars().take(500).collect(),
            expires: Time::new(session.expires_at, console.config.time_zone),
            idem: random_token(),
        }
    }

    pub fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }

    pub fn other_lang(&self) -> &'static str {
        self.lang.other().code()
    }
}

/// The sign-in form's CSRF token: never card-shaped, since it goes back past the card-data
/// screen (`payledger_app::tokens`).
pub fn random_token() -> String {
    payledger_app::tokens::random_hex(16)
}

/// Renders a template as a complete HTML response.
pub fn render(status: StatusCode, template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(error) => {
            tracing::error!(%error, "failed to render a console page");
            plain_error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be drawn",
            )
        }
    }
}

pub use crate::error_page::plain_error_page;

/// What happened to an action, shown after the form was posted.
#[derive(Template)]
#[template(path = "result.html")]
pub struct ResultPage {
    pub c: Chrome,
    pub ok: bool,
    pub heading: String,
    pub message: String,
    pub code: Option<String>,
    /// Extra lines (ids, the new state), shown as a list.
    pub details: Vec<(String, String)>,
    pub back: String,
    /// A secret shown once (a new API key).
    pub secret: Option<String>,
}

/// Percent-encodes a query value (ids are ASCII; anything else is encoded byte by byte).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_digits_without_floats() {
        assert_eq!(money(0, "KRW"), "0 KRW");
        assert_eq!(money(1_250_000, "KRW"), "1,250,000 KRW");
        assert_eq!(money(-999, "USD"), "-999 USD");
        assert_eq!(money(100, "KRW"), "100 KRW");
    }

    #[test]
    fn times_show_the_zone_and_keep_utc() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let time = Time::new(at, chrono_tz::Asia::Seoul);
        assert_eq!(time.local, "2026-03-02 00:30:00");
        assert_eq!(time.utc, "2026-03-01 15:30:00 UTC");
    }
}
