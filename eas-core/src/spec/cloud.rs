//! `cloud`: public-pool instance types (ordered, with spot bids and capacity caps) and VPC
//! settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::CountOrPercent;

/// Compute and VPC configuration (`cloud`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Cloud {
    /// Instance types for the public resource group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computing: Option<Computing>,

    /// VPC settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<CloudNetworking>,
}

/// `cloud.computing`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Computing {
    /// Instance types in order of preference. When a spot bid fails or a type has no
    /// inventory, the next type is tried.
    #[serde(default)]
    pub instances: Vec<InstanceTypeSpec>,

    /// Disables the 1-hour protection period of spot instances (about 10% cheaper, but
    /// instances may be reclaimed at any time).
    #[serde(default)]
    pub disable_spot_protection_period: bool,
}

/// One entry of `cloud.computing.instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InstanceTypeSpec {
    /// The instance type, such as `ecs.c7.4xlarge`.
    #[serde(rename = "type")]
    pub instance_type: String,

    /// Makes this a spot instance with this maximum price in USD per hour. Billing follows
    /// the market price, not the bid. Omitted: a pay-as-you-go instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_price_limit: Option<f64>,

    /// The most instances of this type: a number (`500` or `"500"`) or a share of the
    /// service's instances (`"20%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CountOrPercent>,
}

impl InstanceTypeSpec {
    /// An on-demand instance type with no capacity cap.
    #[must_use]
    pub fn on_demand(instance_type: impl Into<String>) -> Self {
        Self {
            instance_type: instance_type.into(),
            spot_price_limit: None,
            capacity: None,
        }
    }

    /// A spot instance type with a bid in USD per hour.
    #[must_use]
    pub fn spot(instance_type: impl Into<String>, bid: f64) -> Self {
        Self {
            spot_price_limit: Some(bid),
            ..Self::on_demand(instance_type)
        }
    }

    /// This entry with a capacity cap.
    #[must_use]
    pub fn with_capacity(mut self, capacity: CountOrPercent) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Whether this entry buys spot instances.
    #[must_use]
    pub fn is_spot(&self) -> bool {
        self.spot_price_limit.is_some()
    }
}

/// VPC settings (`cloud.networking`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CloudNetworking {
    /// The ID of the VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,

    /// The ID of the vSwitch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vswitch_id: Option<String>,

    /// The ID of the security group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,

    /// The vSwitch CIDR block, when it conflicts with the EAS management blocks
    /// (10.224.0.0/16 or 10.240.0.0/12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_cidrs: Option<String>,
}
