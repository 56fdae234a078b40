//! `networking`: the gateway and its per-service rate and concurrency limits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Service invocation settings (`networking`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Networking {
    /// The dedicated gateway of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,

    /// Limits the gateway applies to the whole service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_policy: Option<GatewayPolicy>,
}

/// `networking.gateway_policy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewayPolicy {
    /// The most requests per second the whole service accepts (429 past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Limit>,

    /// The most concurrent requests the whole service accepts (429 past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<Limit>,
}

/// A limit that can be switched on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Whether the limit applies.
    #[serde(default)]
    pub enable: bool,
    /// The limit.
    #[serde(default)]
    pub limit: u32,
}

impl Limit {
    /// The limit when it is enabled.
    #[must_use]
    pub const fn active(self) -> Option<u32> {
        if self.enable { Some(self.limit) } else { None }
    }
}

impl Networking {
    /// The service-wide rate limit in requests per second, when enabled.
    #[must_use]
    pub fn rate_limit(&self) -> Option<u32> {
        self.gateway_policy.as_ref()?.rate_limit?.active()
    }

    /// The service-wide concurrency limit, when enabled.
    #[must_use]
    pub fn concurrency_limit(&self) -> Option<u32> {
        self.gateway_policy.as_ref()?.concurrency_limit?.active()
    }
}
