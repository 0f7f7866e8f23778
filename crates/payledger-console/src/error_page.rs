//! The page for refusals that happen before there is a page chrome to draw (a bad CSRF token,
//! no role, an expired session): below both the session checks and the pages.

use crate::i18n::Lang;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use askama::Template;
use payledger_http::errors::ErrorCode;

#[derive(Template)]
#[template(path = "plain_error.html")]
struct PlainError<'a> {
    status: u16,
    message: &'a str,
}

/// A page for refusals that happen before there is a chrome to draw (bad CSRF, no role).
pub fn plain_error_page(status: StatusCode, message: &str) -> HttpResponse {
    let page = PlainError {
        status: status.as_u16(),
        message,
    };
    let html = page
        .render()
        .unwrap_or_else(|_| "<!doctype html><title>error</title>".to_string());
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(html)
}

#[derive(Template)]
#[template(path = "unavailable.html")]
struct Unavailable<'a> {
    lang: &'a str,
    title: String,
    heading: String,
    message: String,
    code_label: String,
    code: &'a str,
    retry_label: String,
    retry_after_s: u64,
}

/// The console's 503: the database did not answer in time (a page past the read deadline, or
/// personal fields that could not be revealed). The API's stable code `E_UNAVAILABLE` and
/// `Retry-After`, in the operator's language, as a page rather than the API's JSON.
pub fn unavailable_page(lang: Lang, retry_after_s: u64) -> HttpResponse {
    let retry_after_s = retry_after_s.max(1);
    let page = Unavailable {
        lang: lang.code(),
        title: lang.t("title"),
        heading: lang.t("unavailable_title"),
        message: lang.t("unavailable_message"),
        code_label: lang.t("error_code"),
        code: ErrorCode::Unavailable.as_str(),
        retry_label: lang.t("retry_after_seconds"),
        retry_after_s,
    };
    let html = page
        .render()
        .unwrap_or_else(|_| "<!doctype html><title>503 E_UNAVAILABLE</title>".to_string());
    let mut response = HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::RETRY_AFTER, retry_after_s.to_string()))
        .body(html);
    crate::insert_security_headers(response.headers_mut());
    response
}
