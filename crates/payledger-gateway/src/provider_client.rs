//! The one constructor of every connector's client: [`ProviderTransport::build`] checks the
//! base URL and the limits (`transport`), makes the credential header and the HTTP client, and
//! holds the breaker and counters the retry loop (`retries`) runs with. Connectors keep their
//! own wire types and the reading of their provider's answers.

use crate::circuit::{CircuitBreaker, Clock};
use crate::retries::{CallCounters, RetryLoop};
use crate::transport::{checked_base_url, provider_client_builder, BaseUrlError, TransportLimits};
use reqwest::header::HeaderValue;
use std::sync::Arc;
use std::time::Duration;

/// Why a connector's settings cannot make its client (the same for every provider).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorConfigError {
    #[error("base_url is not a URL: {0}")]
    BaseUrl(String),
    #[error("base_url must use https unless it points at this machine")]
    InsecureBaseUrl,
    #[error("{0}")]
    OutOfRange(String),
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
}

/// A connector's side of the wire, made once from its settings: the checked base URL, the
/// credential header, one HTTP client, the limits every call runs under, the provider's circuit
/// breaker and the call counters.
pub struct ProviderTransport {
    /// What orders record as their `provider`, and the name in logs and metrics.
    pub provider_name: String,
    pub base_url: reqwest::Url,
    /// Marked sensitive, so that no debug output of a request shows it.
    pub authorization: HeaderValue,
    pub http: reqwest::Client,
    /// Per attempt of a call that may move money.
    pub timeout: Duration,
    /// Per attempt of a lookup.
    pub lookup_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub breaker: CircuitBreaker,
    pub counters: CallCounters,
}

impl ProviderTransport {
    /// Checks `base_url` and `limits`, and builds the client. `authorization` is the whole
    /// `Authorization` header value (`Bearer …`, `Basic …`).
    pub fn build(
        provider_name: String,
        base_url: &str,
        authorization: &str,
        limits: TransportLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<ProviderTransport, ConnectorConfigError> {
        let base_url = checked_base_url(base_url).map_err(|err| match err {
            BaseUrlError::Invalid(reason) => ConnectorConfigError::BaseUrl(reason),
            BaseUrlError::Insecure => ConnectorConfigError::InsecureBaseUrl,
        })?;
        limits.check().map_err(ConnectorConfigError::OutOfRange)?;
        // Never echo the value: it holds the key.
        let mut authorization = HeaderValue::from_str(authorization).map_err(|_| {
            ConnectorConfigError::OutOfRange("the API key is not header-safe".to_owned())
        })?;
        authorization.set_sensitive(true);
        let http = provider_client_builder()
            .connect_timeout(Duration::from_millis(limits.connect_timeout_ms))
            .build()
            .map_err(|err| ConnectorConfigError::HttpClient(err.without_url().to_string()))?;
        Ok(ProviderTransport {
            provider_name,
            base_url,
            authorization,
            http,
            timeout: Duration::from_millis(limits.timeout_ms),
            lookup_timeout: Duration::from_millis(limits.lookup_timeout_ms),
            max_attempts: limits.max_attempts,
            backoff_base_ms: limits.backoff_base_ms,
            backoff_max_ms: limits.backoff_max_ms,
            breaker: CircuitBreaker::with_clock(limits.circuit, clock),
            counters: CallCounters::default(),
        })
    }

    /// The shared retry loop over this transport's limits, breaker and counters.
    pub fn retry_loop(&self) -> RetryLoop<'_> {
        RetryLoop {
            provider_name: &self.provider_name,
            max_attempts: self.max_attempts,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
            breaker: &self.breaker,
            counters: &self.counters,
        }
    }

    /// The base URL with `segments` appended, each percent-encoded so that an id cannot
    /// reshape the path.
    pub fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}
