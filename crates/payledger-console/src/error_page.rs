//! The page for refusals that happen before there is a page chrome to draw (a bad CSRF token,
//! no role, an expired session): below both the session checks and the pages.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

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
