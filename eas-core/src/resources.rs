//! The resource vocabulary: what an instance needs ([`Resources`]), what it runs on
//! ([`InstanceType`], [`Node`], [`ResourceGroup`], [`Zone`]), how it is paid for ([`Market`]),
//! where it was placed ([`Placement`]) and what state it is in ([`Instance`],
//! [`InstanceState`]).
//!
//! These are plain data, shared by schedulers, the controller and the simulator.
//!
//! ```
//! use eas_core::resources::{Node, NodeId, Resources, Zone};
//!
//! let per_instance = Resources::new(2_000, 4_096).with_gpu(1, 16);
//! let mut node = Node::new(NodeId::from("n-1"), Zone::from("cn-hangzhou-h"),
//!     Resources::new(8_000, 32_768).with_gpu(2, 32));
//! assert!(per_instance.fits_in(&node.free()));
//!
//! node.allocated = node.allocated.saturating_add(&per_instance).saturating_add(&per_instance);
//! assert!(!per_instance.fits_in(&node.free()), "both GPUs are taken");
//! assert_eq!(node.free().cpu_millis, 4_000);
//! ```

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// An amount of compute: what an instance asks for, or what a node has.
///
/// CPU is in milli-cores (1000 = one core), memory in MB, GPU memory in GB.
/// `gpu_core_percent` is GPU compute for shared-GPU instances, in percent of one card (a node
/// with two whole cards has 200).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in milli-cores (1000 = one core).
    pub cpu_millis: u64,
    /// Memory in MB.
    pub memory_mb: u64,
    /// Whole GPU cards.
    pub gpu: u32,
    /// GPU memory in GB (for shared-GPU instances, the slice asked for).
    pub gpu_memory_gb: u32,
    /// GPU compute in percent of one card (for shared-GPU instances).
    pub gpu_core_percent: u32,
}

impl Resources {
    /// Nothing at all.
    pub const ZERO: Self = Self::new(0, 0);

    /// What one instance of a spec asks for: `cpu` cores as millicores (rounded), `memory`
    /// in MB, whole `gpu`s, or a GPU slice (`gpu_memory` GB and `gpu_core_percentage`).
    /// Fields the spec leaves out count as zero.
    #[must_use]
    pub fn per_instance(spec: &crate::spec::ServiceSpec) -> Self {
        let m = &spec.metadata;
        // A validated cpu is finite and positive; the cast saturates anyway.
        let cpu_millis = m.cpu.map_or(0, |cores| (cores * 1000.0).round() as u64);
        Self::new(cpu_millis, m.memory.unwrap_or(0))
            .with_gpu(m.gpu.unwrap_or(0), m.gpu_memory.unwrap_or(0))
            .with_gpu_core_percent(m.gpu_core_percentage.unwrap_or(0))
    }

    /// CPU (milli-cores) and memory (MB), no GPU.
    #[must_use]
    pub const fn new(cpu_millis: u64, memory_mb: u64) -> Self {
        Self {
            cpu_millis,
            memory_mb,
            gpu: 0,
            gpu_memory_gb: 0,
            gpu_core_percent: 0,
        }
    }

    /// The same with `gpu` whole cards and `gpu_memory_gb` GB of GPU memory.
    #[must_use]
    pub const fn with_gpu(mut self, gpu: u32, gpu_memory_gb: u32) -> Self {
        self.gpu = gpu;
        self.gpu_memory_gb = gpu_memory_gb;
        self
    }

    /// The same with `percent` of GPU compute (shared GPU).
    #[must_use]
    pub const fn with_gpu_core_percent(mut self, percent: u32) -> Self {
        self.gpu_core_percent = percent;
        self
    }

    /// The same with no CPU: what a BestEffort instance is charged against a node.
    #[must_use]
    pub const fn without_cpu(mut self) -> Self {
        self.cpu_millis = 0;
        self
    }

    /// Whether every dimension is zero.
    #[must_use]
    pub const fn is_zero(&self) -> bool {
        self.cpu_millis == 0
            && self.memory_mb == 0
            && self.gpu == 0
            && self.gpu_memory_gb == 0
            && self.gpu_core_percent == 0
    }

    /// The sum, or `None` if any dimension overflows.
    #[must_use]
    pub fn checked_add(&self, other: &Self) -> Option<Self> {
        Some(Self {
            cpu_millis: self.cpu_millis.checked_add(other.cpu_millis)?,
            memory_mb: self.memory_mb.checked_add(other.memory_mb)?,
            gpu: self.gpu.checked_add(other.gpu)?,
            gpu_memory_gb: self.gpu_memory_gb.checked_add(other.gpu_memory_gb)?,
            gpu_core_percent: self.gpu_core_percent.checked_add(other.gpu_core_percent)?,
        })
    }

    /// The difference, or `None` if any dimension of `other` is larger than this one's.
    #[must_use]
    pub fn checked_sub(&self, other: &Self) -> Option<Self> {
        Some(Self {
            cpu_millis: self.cpu_millis.checked_sub(other.cpu_millis)?,
            memory_mb: self.memory_mb.checked_sub(other.memory_mb)?,
            gpu: self.gpu.checked_sub(other.gpu)?,
            gpu_memory_gb: self.gpu_memory_gb.checked_sub(other.gpu_memory_gb)?,
            gpu_core_percent: self.gpu_core_percent.checked_sub(other.gpu_core_percent)?,
        })
    }

    /// The sum, each dimension saturating at its maximum.
    #[must_use]
    pub const fn saturating_add(&self, other: &Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            gpu: self.gpu.saturating_add(other.gpu),
            gpu_memory_gb: self.gpu_memory_gb.saturating_add(other.gpu_memory_gb),
            gpu_core_percent: self.gpu_core_percent.saturating_add(other.gpu_core_percent),
        }
    }

    /// The difference, each dimension saturating at zero.
    #[must_use]
    pub const fn saturating_sub(&self, other: &Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            gpu: self.gpu.saturating_sub(other.gpu),
            gpu_memory_gb: self.gpu_memory_gb.saturating_sub(other.gpu_memory_gb),
            gpu_core_percent: self.gpu_core_percent.saturating_sub(other.gpu_core_percent),
        }
    }

    /// `n` times this amount, each dimension saturating at its maximum.
    #[must_use]
    pub const fn saturating_mul(&self, n: u32) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_mul(n as u64),
            memory_mb: self.memory_mb.saturating_mul(n as u64),
            gpu: self.gpu.saturating_mul(n),
            gpu_memory_gb: self.gpu_memory_gb.saturating_mul(n),
            gpu_core_percent: self.gpu_core_percent.saturating_mul(n),
        }
    }

    /// Whether this amount fits in `free`, dimension by dimension.
    #[must_use]
    pub const fn fits_in(&self, free: &Self) -> bool {
        self.cpu_millis <= free.cpu_millis
            && self.memory_mb <= free.memory_mb
            && self.gpu <= free.gpu
            && self.gpu_memory_gb <= free.gpu_memory_gb
            && self.gpu_core_percent <= free.gpu_core_percent
    }

    /// Whether this amount fits in `free` ignoring CPU, as for a BestEffort instance (EAS
    /// `metadata.qos: "BestEffort"`), whose CPU is shared rather than reserved.
    #[must_use]
    pub const fn fits_in_best_effort(&self, free: &Self) -> bool {
        self.without_cpu().fits_in(free)
    }
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a string.
            #[must_use]
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The string inside.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// An availability zone, e.g. `cn-hangzhou-h`.
    Zone
);
string_id!(
    /// The identifier of one instance (replica) of a service.
    InstanceId
);
string_id!(
    /// The identifier of a node (machine) in a dedicated resource group.
    NodeId
);

/// A machine type that can be bought in the public pool, e.g. `ecs.gn6i-c4g1.xlarge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    /// The type's name.
    pub name: String,
    /// What one machine of this type offers.
    pub resources: Resources,
    /// The pay-as-you-go price of one machine, in USD per hour.
    pub on_demand_usd_per_hour: f64,
    /// The GPU model (e.g. `T4`, `A10`), if it has GPUs.
    pub gpu_model: Option<String>,
}

impl InstanceType {
    /// A type without GPU model.
    #[must_use]
    pub fn new(name: impl Into<String>, resources: Resources, on_demand_usd_per_hour: f64) -> Self {
        Self {
            name: name.into(),
            resources,
            on_demand_usd_per_hour,
            gpu_model: None,
        }
    }

    /// The same with a GPU model.
    #[must_use]
    pub fn with_gpu_model(mut self, gpu_model: impl Into<String>) -> Self {
        self.gpu_model = Some(gpu_model.into());
        self
    }
}

/// How a public-pool machine is paid for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Market {
    /// Pay-as-you-go at the on-demand price; never preempted.
    #[default]
    OnDemand,
    /// A spot (preemptible) machine bought with a maximum price.
    Spot {
        /// The highest price paid, in USD per hour; above it the machine is preempted.
        bid_usd_per_hour: f64,
    },
}

impl Market {
    /// Whether this is a spot machine.
    #[must_use]
    pub const fn is_spot(&self) -> bool {
        matches!(self, Self::Spot { .. })
    }
}

/// One machine of a dedicated resource group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node's identifier.
    pub id: NodeId,
    /// Where the node is.
    pub zone: Zone,
    /// What the node offers in total.
    pub capacity: Resources,
    /// What instances placed on it already hold.
    pub allocated: Resources,
}

impl Node {
    /// An empty node.
    #[must_use]
    pub const fn new(id: NodeId, zone: Zone, capacity: Resources) -> Self {
        Self {
            id,
            zone,
            capacity,
            allocated: Resources::ZERO,
        }
    }

    /// What is left: capacity minus allocated, never below zero.
    #[must_use]
    pub const fn free(&self) -> Resources {
        self.capacity.saturating_sub(&self.allocated)
    }
}

/// Where instances can run: a dedicated group of nodes, or the public pool.
///
/// The public pool has no nodes of its own: what it offers is the
/// [`ClusterState`](crate::scheduler::ClusterState)'s instance types and inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ResourceGroup {
    /// A dedicated resource group: machines bought in advance, shared by its services.
    Dedicated {
        /// The group's identifier (EAS `metadata.resource`).
        id: String,
        /// The group's machines.
        nodes: Vec<Node>,
    },
    /// The public pool: machines bought per instance, by instance type.
    Public,
}

impl ResourceGroup {
    /// The identifier [`ResourceGroup::id`] gives the public pool.
    pub const PUBLIC_ID: &'static str = "public";

    /// A dedicated group.
    #[must_use]
    pub fn dedicated(id: impl Into<String>, nodes: Vec<Node>) -> Self {
        Self::Dedicated {
            id: id.into(),
            nodes,
        }
    }

    /// The group's identifier; [`Self::PUBLIC_ID`] for the public pool.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Dedicated { id, .. } => id,
            Self::Public => Self::PUBLIC_ID,
        }
    }

    /// The group's nodes; none for the public pool.
    #[must_use]
    pub fn nodes(&self) -> &[Node] {
        match self {
            Self::Dedicated { nodes, .. } => nodes,
            Self::Public => &[],
        }
    }

    /// The group's nodes, to update allocations; `None` for the public pool.
    pub fn nodes_mut(&mut self) -> Option<&mut Vec<Node>> {
        match self {
            Self::Dedicated { nodes, .. } => Some(nodes),
            Self::Public => None,
        }
    }

    /// The node with this identifier.
    #[must_use]
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes().iter().find(|n| &n.id == id)
    }

    /// Whether this is the public pool.
    #[must_use]
    pub const fn is_public(&self) -> bool {
        matches!(self, Self::Public)
    }

    /// Free resources summed over the group's nodes (zero for the public pool).
    #[must_use]
    pub fn free(&self) -> Resources {
        self.nodes()
            .iter()
            .fold(Resources::ZERO, |acc, n| acc.saturating_add(&n.free()))
    }
}

/// Where an instance runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Placement {
    /// On a node of a dedicated resource group.
    Dedicated {
        /// The group's identifier.
        group: String,
        /// The node.
        node: NodeId,
        /// The node's zone.
        zone: Zone,
    },
    /// On a machine of its own, bought in the public pool.
    Public {
        /// The instance type bought.
        instance_type: String,
        /// The zone it was bought in.
        zone: Zone,
        /// How it is paid for.
        market: Market,
    },
}

impl Placement {
    /// A placement on a dedicated node.
    #[must_use]
    pub fn dedicated(group: impl Into<String>, node: NodeId, zone: Zone) -> Self {
        Self::Dedicated {
            group: group.into(),
            node,
            zone,
        }
    }

    /// A public-pool placement.
    #[must_use]
    pub fn public(instance_type: impl Into<String>, zone: Zone, market: Market) -> Self {
        Self::Public {
            instance_type: instance_type.into(),
            zone,
            market,
        }
    }

    /// The zone, whichever the kind.
    #[must_use]
    pub const fn zone(&self) -> &Zone {
        match self {
            Self::Dedicated { zone, .. } | Self::Public { zone, .. } => zone,
        }
    }

    /// The market of a public placement; `None` on a dedicated node.
    #[must_use]
    pub const fn market(&self) -> Option<&Market> {
        match self {
            Self::Dedicated { .. } => None,
            Self::Public { market, .. } => Some(market),
        }
    }

    /// Whether it is a spot machine.
    #[must_use]
    pub const fn is_spot(&self) -> bool {
        matches!(
            self,
            Self::Public {
                market: Market::Spot { .. },
                ..
            }
        )
    }
}

/// The lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Asked for, not yet placed or not yet started.
    Pending,
    /// Placed; mounting storage and initializing the processor.
    Starting,
    /// Passing its readiness check; receives traffic.
    Ready,
    /// Running but failing its readiness check; receives no traffic.
    Unready,
    /// Finishing in-flight requests before it stops; receives no new traffic.
    Draining,
    /// Being stopped.
    Terminating,
    /// Stopped by an error (crash, failed initialization).
    Failed,
    /// Stopped because its spot machine was reclaimed.
    Preempted,
}

impl InstanceState {
    /// Whether the instance receives new traffic: only [`Ready`](Self::Ready).
    #[must_use]
    pub const fn is_serving(self) -> bool {
        matches!(self, Self::Ready)
    }

    /// Whether the instance counts towards a service's replicas: pending, starting, ready or
    /// unready (not on its way out, not stopped).
    #[must_use]
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Starting | Self::Ready | Self::Unready
        )
    }

    /// Whether the instance has stopped for good.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Preempted)
    }
}

/// One instance (replica) of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance's identifier.
    pub id: InstanceId,
    /// The service it belongs to.
    pub service: String,
    /// Where it runs.
    pub placement: Placement,
    /// Its state.
    pub state: InstanceState,
    /// What it holds.
    pub resources: Resources,
    /// When it was launched.
    pub launched_at: SystemTime,
    /// When its spot machine was told it will be reclaimed, if it was.
    pub preemption_notice_at: Option<SystemTime>,
}

impl Instance {
    /// A [`Pending`](InstanceState::Pending) instance without preemption notice.
    #[must_use]
    pub fn new(
        id: InstanceId,
        service: impl Into<String>,
        placement: Placement,
        resources: Resources,
        launched_at: SystemTime,
    ) -> Self {
        Self {
            id,
            service: service.into(),
            placement,
            state: InstanceState::Pending,
            resources,
            launched_at,
            preemption_notice_at: None,
        }
    }

    /// The same in `state`.
    #[must_use]
    pub const fn with_state(mut self, state: InstanceState) -> Self {
        self.state = state;
        self
    }
}

/// How a service's instances are spread (`metadata.scheduling.spread.policy`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SpreadPolicy {
    /// No constraint: the scheduler packs as it likes.
    #[default]
    Default,
    /// At most one instance of the service per node (host anti-affinity).
    Host,
    /// Instances spread evenly across zones.
    Zone,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPU_BOX: Resources = Resources::new(8_000, 32_768)
        .with_gpu(2, 32)
        .with_gpu_core_percent(200);

    #[test]
    fn resources_should_fit_when_every_dimension_fits() {
        let small = Resources::new(1_000, 1_024).with_gpu(1, 16);
        assert!(small.fits_in(&GPU_BOX));
        assert!(Resources::ZERO.fits_in(&Resources::ZERO));
        assert!(!Resources::new(1_000, 1).with_gpu(3, 0).fits_in(&GPU_BOX));
        assert!(!Resources::new(9_000, 1).fits_in(&GPU_BOX));
    }

    #[test]
    fn best_effort_fit_should_ignore_cpu_only() {
        let hungry = Resources::new(64_000, 1_024);
        assert!(!hungry.fits_in(&GPU_BOX));
        assert!(hungry.fits_in_best_effort(&GPU_BOX));
        assert!(!Resources::new(0, 40_000).fits_in_best_effort(&GPU_BOX));
    }

    #[test]
    fn checked_arithmetic_should_refuse_underflow_and_overflow() {
        let a = Resources::new(1_000, 1_000);
        let b = Resources::new(2_000, 500);
        assert_eq!(a.checked_sub(&b), None);
        assert_eq!(
            b.checked_sub(&Resources::new(500, 500)),
            Some(Resources::new(1_500, 0))
        );
        assert_eq!(Resources::new(u64::MAX, 0).checked_add(&a), None);
        assert_eq!(a.checked_add(&b), Some(Resources::new(3_000, 1_500)));
    }

    #[test]
    fn saturating_arithmetic_should_clamp() {
        let a = Resources::new(1_000, 1_000).with_gpu(1, 8);
        assert_eq!(a.saturating_sub(&GPU_BOX), Resources::ZERO);
        assert_eq!(
            Resources::new(u64::MAX, 0).saturating_add(&a).cpu_millis,
            u64::MAX
        );
        assert_eq!(
            a.saturating_mul(3),
            Resources::new(3_000, 3_000).with_gpu(3, 24)
        );
        assert!(Resources::ZERO.is_zero());
        assert!(!a.is_zero());
    }

    #[test]
    fn node_free_should_be_capacity_minus_allocated() {
        let mut node = Node::new(NodeId::from("n"), Zone::from("z"), GPU_BOX);
        node.allocated = Resources::new(3_000, 2_768).with_gpu(1, 16);
        assert_eq!(
            node.free(),
            Resources::new(5_000, 30_000)
                .with_gpu(1, 16)
                .with_gpu_core_percent(200)
        );
    }

    #[test]
    fn resource_group_should_expose_nodes_and_public_pool_has_none() {
        let node = Node::new(NodeId::from("n-1"), Zone::from("z"), GPU_BOX);
        let group = ResourceGroup::dedicated("eas-r-1", vec![node.clone()]);
        assert_eq!(group.id(), "eas-r-1");
        assert_eq!(group.node(&NodeId::from("n-1")), Some(&node));
        assert_eq!(group.free(), GPU_BOX);
        assert_eq!(ResourceGroup::Public.id(), ResourceGroup::PUBLIC_ID);
        assert!(ResourceGroup::Public.nodes().is_empty());
    }

    #[test]
    fn instance_state_should_serve_only_when_ready() {
        use InstanceState::*;
        let serving: Vec<_> = [
            Pending,
            Starting,
            Ready,
            Unready,
            Draining,
            Terminating,
            Failed,
            Preempted,
        ]
        .into_iter()
        .filter(|s| s.is_serving())
        .collect();
        assert_eq!(serving, vec![Ready]);
        assert!(Unready.is_active());
        assert!(!Draining.is_active());
        assert!(Preempted.is_terminal());
    }

    #[test]
    fn placement_should_report_zone_and_market() {
        let spot = Placement::public(
            "ecs.g6",
            Zone::from("b"),
            Market::Spot {
                bid_usd_per_hour: 0.1,
            },
        );
        assert_eq!(spot.zone().as_str(), "b");
        assert!(spot.is_spot());
        let node = Placement::dedicated("g", NodeId::from("n"), Zone::from("a"));
        assert_eq!(node.market(), None);
        assert!(!node.is_spot());
    }

    #[test]
    fn ids_should_display_and_serialize_as_plain_strings() {
        let zone = Zone::from("cn-hangzhou-h");
        assert_eq!(zone.to_string(), "cn-hangzhou-h");
        assert_eq!(
            serde_json::to_string(&zone).expect("serializes"),
            "\"cn-hangzhou-h\""
        );
        let market: Market =
            serde_json::from_str(r#"{"kind":"spot","bid_usd_per_hour":0.5}"#).expect("parses");
        assert_eq!(
            market,
            Market::Spot {
                bid_usd_per_hour: 0.5
            }
        );
    }
}
