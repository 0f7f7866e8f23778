//! The console's answer to a page past the read deadline: its own HTML page, not the API's JSON.
//!
//! The read deadline (`payledger_http::deadline::read_deadline`) wraps every `GET`/`HEAD`
//! request, the console's pages included, and gives up on one after
//! `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS` with the API's 503 `E_UNAVAILABLE` as an error (the
//! request went down with the abandoned future, so no response can be built from it). This
//! middleware, mounted just outside it, notes the operator's language before the request goes
//! in, and turns that error on a console path into the console's page: the same status, code
//! and `Retry-After`, in the operator's language ([`crate::error_page::unavailable_page`]).
//! A console request whose session could not be read in time (its own bound, for actions too)
//! gets the same page. Everything else, and every `/v1` route, passes through untouched.

use crate::i18n::Lang;
use crate::session::Refusal;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use payledger_http::errors::{ApiError, ErrorCode};
use std::fmt;

/// Where the console is mounted.
const CONSOLE_PREFIX: &str = "/console";

/// Mount with `actix_web::middleware::from_fn`, directly outside
/// `payledger_http::deadline::read_deadline` (inside `request_logging`, which logs the 503).
pub async fn read_deadline_pages(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = request.path();
    let is_console = path == CONSOLE_PREFIX || path.starts_with("/console/");
    if !is_console {
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    let lang = Lang::of(request.request());
    match next.call(request).await {
        // An action's (or a page's) session read given up at its own bound: the same page.
        Ok(response) if session_unavailable(&response) => {
            Ok(response.into_response(crate::error_page::unavailable_page(lang, 2)))
        }
        Ok(response) => Ok(response.map_into_boxed_body()),
        Err(error) => match error.as_error::<ApiError>() {
            Some(api) if api.code == ErrorCode::Unavailable => Err(ConsoleUnavailable {
                lang,
                retry_after_s: api.retry_after_s.unwrap_or(2),
                reason: api.message.clone(),
            }
            .into()),
            _ => Err(error),
        },
    }
}

fn session_unavailable<B>(response: &ServiceResponse<B>) -> bool {
    response
        .response()
        .error()
        .and_then(|error| error.as_error::<Refusal>())
        .is_some_and(|refusal| matches!(refusal, Refusal::Unavailable(_)))
}

/// The database did not answer a console page in time; rendered as the console's 503 page.
#[derive(Debug)]
pub struct ConsoleUnavailable {
    pub lang: Lang,
    pub retry_after_s: u64,
    /// What was given up (for the log, never shown: the page says it in the operator's words).
    pub reason: String,
}

impl fmt::Display for ConsoleUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", ErrorCode::Unavailable.as_str(), self.reason)
    }
}

impl ResponseError for ConsoleUnavailable {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        crate::error_page::unavailable_page(self.lang, self.retry_after_s)
    }
}
