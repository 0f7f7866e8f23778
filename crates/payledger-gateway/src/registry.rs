//! The connectors configured on this deployment, by provider name.
//!
//! `serve` builds one registry at startup (`crates/payledger/src/startup.rs`, `registry_from`)
//! and hands it to the application layer, which picks the connector of each order by the
//! `provider` the order was placed with. Adding a provider means registering its connector
//! there; nothing else in the application changes.

use crate::PaymentGateway;
use payledger_domain::money::Currency;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most connectors one deployment may hold (a bound, like every collection here).
pub const MAX_CONNECTORS: usize = 16;

/// Orders placed before connectors had names of their own recorded the Toss connector pointed at
/// the sandbox as `sandbox`; they belong to `toss`.
const LEGACY_NAMES: &[(&str, &str)] = &[("sandbox", "toss")];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("provider {provider} is not configured on this deployment (configured: {})", .configured.join(", "))]
    NotConfigured {
        provider: String,
        configured: Vec<String>,
    },
    #[error("provider {provider} does not take {currency} (it takes {})", .supported.iter().map(|c| c.code()).collect::<Vec<_>>().join(", "))]
    CurrencyNotSupported {
        provider: String,
        currency: Currency,
        supported: Vec<Currency>,
    },
    #[error("a connector named {0} is already registered")]
    Duplicate(String),
    #[error("at most {MAX_CONNECTORS} connectors can be registered")]
    TooMany,
}

/// The configured connectors, and the one orders use when they name none.
#[derive(Clone)]
pub struct ProviderRegistry {
    connectors: BTreeMap<String, Arc<dyn PaymentGateway>>,
    default_provider: String,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRegistry")
            .field("providers", &self.names())
            .field("default_provider", &self.default_provider)
            .finish()
    }
}

impl ProviderRegistry {
    /// A registry holding `default` (orders that name no provider use it).
    pub fn new(default: Arc<dyn PaymentGateway>) -> ProviderRegistry {
        let default_provider = default.provider_name().to_string();
        let mut connectors = BTreeMap::new();
        connectors.insert(default_provider.clone(), default);
        ProviderRegistry {
            connectors,
            default_provider,
        }
    }

    /// Adds a connector under its `provider_name()`.
    pub fn register(&mut self, connector: Arc<dyn PaymentGateway>) -> Result<(), RegistryError> {
        let name = connector.provider_name().to_string();
        if self.connectors.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        if self.connectors.len() >= MAX_CONNECTORS {
            return Err(RegistryError::TooMany);
        }
        self.connectors.insert(name, connector);
        Ok(())
    }

    /// As [`ProviderRegistry::register`], for building in one expression.
    pub fn with(mut self, connector: Arc<dyn PaymentGateway>) -> Result<Self, RegistryError> {
        self.register(connector)?;
        Ok(self)
    }

    pub fn default_provider(&self) -> &str {
        &self.default_provider
    }

    /// The default connector.
    pub fn default_connector(&self) -> &Arc<dyn PaymentGateway> {
        &self.connectors[&self.default_provider]
    }

    /// The configured provider names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.connectors.keys().cloned().collect()
    }

    pub fn connectors(&self) -> impl Iterator<Item = &Arc<dyn PaymentGateway>> {
        self.connectors.values()
    }

    /// The connector of a provider name as an order recorded it.
    pub fn get(&self, provider: &str) -> Result<&Arc<dyn PaymentGateway>, RegistryError> {
        let name = LEGACY_NAMES
            .iter()
            .find(|(legacy, _)| *legacy == provider)
            .map_or(provider, |(_, name)| name);
        self.connectors
            .get(name)
            .ok_or_else(|| RegistryError::NotConfigured {
                provider: provider.chars().take(32).collect(),
                configured: self.names(),
            })
    }

    /// The connector a new order in `currency` goes to: `provider`, or the default when `None`.
    /// Refuses an unconfigured provider and a currency the provider cannot take.
    pub fn for_new_order(
        &self,
        provider: Option<&str>,
        currency: Currency,
    ) -> Result<&Arc<dyn PaymentGateway>, RegistryError> {
        let connector = self.get(provider.unwrap_or(&self.default_provider))?;
        let supported = connector.supported_currencies();
        if !supported.contains(&currency) {
            return Err(RegistryError::CurrencyNotSupported {
                provider: connector.provider_name().to_string(),
                currency,
                supported: supported.to_vec(),
            });
        }
        Ok(connector)
    }
}
