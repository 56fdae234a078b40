//! [`Scheduler`]: where instances run. A pure function of the demand, the cluster and prices.
//!
//! Each round the controller hands the scheduler what every service wants
//! ([`ServiceDemand`]), what the cluster looks like ([`ClusterState`]: dedicated groups and
//! their nodes, public instance types, inventory per type and zone, running instances) and a
//! [`PricingOracle`]. The scheduler answers with [`Action`]s (launch, terminate, migrate), each
//! with a reason. It does no I/O and reads no clock: `now` is in the input.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::{PricingOracle, Result, Scheduler};
//! use eas_core::pricing::PricePoint;
//! use eas_core::resources::{Market, Placement, Resources, Zone};
//! use eas_core::scheduler::{Action, ClusterState, InstanceChoice, ScheduleInput, ServiceDemand};
//!
//! /// Launches missing replicas on demand, on the first instance type, in the first zone.
//! #[derive(Debug)]
//! struct FirstType;
//!
//! impl Scheduler for FirstType {
//!     fn schedule(&mut self, input: &ScheduleInput<'_>) -> Vec<Action> {
//!         let mut actions = Vec::new();
//!         for demand in input.demand {
//!             let choice = demand.instance_types.first();
//!             let (Some(choice), Some(zone)) = (choice, input.cluster.zones.first()) else {
//!                 continue;
//!             };
//!             let running = input.cluster.instances_of(&demand.service).count() as u32;
//!             for _ in running..demand.replicas {
//!                 let placement =
//!                     Placement::public(&choice.instance_type, zone.clone(), Market::OnDemand);
//!                 actions.push(Action::launch(&demand.service, placement, "below desired"));
//!             }
//!         }
//!         actions
//!     }
//! }
//!
//! # #[derive(Debug)]
//! # struct Flat;
//! # impl PricingOracle for Flat {
//! #     fn on_demand_price(&self, _: &str) -> Result<f64> { Ok(1.0) }
//! #     fn spot_price(&self, _: &str, _: &Zone, _: SystemTime) -> Result<f64> { Ok(0.2) }
//! #     fn spot_history(&self, _: &str, _: &Zone, _: SystemTime, _: SystemTime)
//! #         -> Result<Vec<PricePoint>> { Ok(vec![]) }
//! # }
//! let demand = [ServiceDemand::new("demo", 2, Resources::new(1_000, 2_048))
//!     .with_instance_types(vec![InstanceChoice::new("ecs.c7.large")])];
//! let cluster =
//!     ClusterState { zones: vec![Zone::from("cn-hangzhou-h")], ..ClusterState::default() };
//! let input = ScheduleInput::new(SystemTime::UNIX_EPOCH, &demand, &cluster, &Flat);
//! let actions = FirstType.schedule(&input);
//! assert_eq!(actions.len(), 2);
//! assert_eq!(actions[0].reason(), "below desired");
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::PricingOracle;
use crate::resources::{
    Instance, InstanceId, InstanceType, Node, NodeId, Placement, ResourceGroup, Resources,
    SpreadPolicy, Zone,
};
use crate::spec::{CountOrPercent, Qos, ServiceSpec};

/// A placement policy: decides where instances run.
pub trait Scheduler: Send + std::fmt::Debug {
    /// Decides this round's actions. Called again after the actions took effect (or failed),
    /// so it may answer with only part of what is needed.
    fn schedule(&mut self, input: &ScheduleInput<'_>) -> Vec<Action>;
}

/// What a [`Scheduler`] sees in one round.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ScheduleInput<'a> {
    /// The current (real or virtual) time.
    pub now: SystemTime,
    /// What every service wants.
    pub demand: &'a [ServiceDemand],
    /// What the cluster looks like.
    pub cluster: &'a ClusterState,
    /// What machines cost.
    pub pricing: &'a dyn PricingOracle,
}

impl<'a> ScheduleInput<'a> {
    /// An input for one round.
    #[must_use]
    pub const fn new(
        now: SystemTime,
        demand: &'a [ServiceDemand],
        cluster: &'a ClusterState,
        pricing: &'a dyn PricingOracle,
    ) -> Self {
        Self {
            now,
            demand,
            cluster,
            pricing,
        }
    }

    /// The demand of `service`, if it has any.
    #[must_use]
    pub fn demand_of(&self, service: &str) -> Option<&'a ServiceDemand> {
        self.demand.iter().find(|d| d.service == service)
    }
}

/// What one service wants from the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceDemand {
    /// The service's name.
    pub service: String,
    /// How many instances it wants.
    pub replicas: u32,
    /// What each instance needs.
    pub per_instance: Resources,
    /// QoS BestEffort: CPU is shared, not counted against nodes.
    pub best_effort: bool,
    /// The dedicated resource group to run in; `None` for the public pool.
    pub resource_group: Option<String>,
    /// May overflow from the dedicated group to the public pool when the group is full.
    pub burstable: bool,
    /// The public instance types to use, in order of preference.
    pub instance_types: Vec<InstanceChoice>,
    /// How instances are spread.
    pub spread: SpreadPolicy,
    /// Move instances back to preferred placements (dedicated group, cheaper type) when they
    /// free up.
    pub rebalancing: bool,
    /// Buy spot machines with the one-hour protection period (not reclaimed in their first
    /// hour).
    pub spot_protection: bool,
}

impl ServiceDemand {
    /// A demand for `replicas` instances of `per_instance` each in the public pool, no instance
    /// types yet, default spread, no bursting or rebalancing, spot protection on.
    #[must_use]
    pub fn new(service: impl Into<String>, replicas: u32, per_instance: Resources) -> Self {
        Self {
            service: service.into(),
            replicas,
            per_instance,
            best_effort: false,
            resource_group: None,
            burstable: false,
            instance_types: Vec::new(),
            spread: SpreadPolicy::Default,
            rebalancing: false,
            spot_protection: true,
        }
    }

    /// The demand of a validated spec for `replicas` instances: its resources per instance,
    /// QoS, resource group, bursting, ordered instance types, spread, rebalancing and spot
    /// protection, all as the spec states them.
    #[must_use]
    pub fn from_spec(spec: &ServiceSpec, replicas: u32) -> Self {
        let m = &spec.metadata;
        let computing = spec.cloud.as_ref().and_then(|c| c.computing.as_ref());
        let instance_types = computing
            .map(|c| {
                c.instances
                    .iter()
                    .map(|entry| InstanceChoice {
                        instance_type: entry.instance_type.clone(),
                        spot_price_limit: entry.spot_price_limit,
                        capacity: entry.capacity,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            service: m.name.clone(),
            replicas,
            per_instance: Resources::per_instance(spec),
            best_effort: m.qos == Some(Qos::BestEffort),
            resource_group: m.resource.clone(),
            burstable: m.resource_burstable,
            instance_types,
            spread: m.spread_policy(),
            rebalancing: m.resource_rebalancing,
            spot_protection: !computing.is_some_and(|c| c.disable_spot_protection_period),
        }
    }

    /// The same with BestEffort QoS on or off.
    #[must_use]
    pub fn with_best_effort(mut self, best_effort: bool) -> Self {
        self.best_effort = best_effort;
        self
    }

    /// The same in dedicated group `group`.
    #[must_use]
    pub fn with_resource_group(mut self, group: impl Into<String>) -> Self {
        self.resource_group = Some(group.into());
        self
    }

    /// The same with bursting to the public pool on or off.
    #[must_use]
    pub fn with_burstable(mut self, burstable: bool) -> Self {
        self.burstable = burstable;
        self
    }

    /// The same with these instance types, in order of preference.
    #[must_use]
    pub fn with_instance_types(mut self, choices: Vec<InstanceChoice>) -> Self {
        self.instance_types = choices;
        self
    }

    /// The same with this spread policy.
    #[must_use]
    pub fn with_spread(mut self, spread: SpreadPolicy) -> Self {
        self.spread = spread;
        self
    }

    /// The same with rebalancing on or off.
    #[must_use]
    pub fn with_rebalancing(mut self, rebalancing: bool) -> Self {
        self.rebalancing = rebalancing;
        self
    }

    /// The same with spot protection on or off.
    #[must_use]
    pub fn with_spot_protection(mut self, spot_protection: bool) -> Self {
        self.spot_protection = spot_protection;
        self
    }

    /// What each instance is charged against a node: without CPU when best effort.
    #[must_use]
    pub const fn charged_per_instance(&self) -> Resources {
        if self.best_effort {
            self.per_instance.without_cpu()
        } else {
            self.per_instance
        }
    }
}

/// One acceptable public instance type (EAS `cloud.computing.instances[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceChoice {
    /// The instance type's name.
    pub instance_type: String,
    /// Buy it on the spot market with this maximum price (USD per hour); on demand when `None`.
    pub spot_price_limit: Option<f64>,
    /// How many of the service's instances may use this type: a count, or a percentage of
    /// the service's instances (rounded down).
    pub capacity: Option<CountOrPercent>,
}

impl InstanceChoice {
    /// An on-demand choice without capacity limit.
    #[must_use]
    pub fn new(instance_type: impl Into<String>) -> Self {
        Self {
            instance_type: instance_type.into(),
            spot_price_limit: None,
            capacity: None,
        }
    }

    /// The same bought on the spot market with this maximum price.
    #[must_use]
    pub fn with_spot_price_limit(mut self, usd_per_hour: f64) -> Self {
        self.spot_price_limit = Some(usd_per_hour);
        self
    }

    /// The same with a capacity limit.
    #[must_use]
    pub fn with_capacity(mut self, capacity: CountOrPercent) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Whether this choice buys spot machines.
    #[must_use]
    pub const fn is_spot(&self) -> bool {
        self.spot_price_limit.is_some()
    }

    /// How many of `total` instances may use this choice (all of them without a limit).
    #[must_use]
    pub fn max_instances(&self, total: u32) -> u32 {
        match self.capacity {
            None => total,
            Some(CountOrPercent::Count(n)) => n,
            Some(CountOrPercent::Percent(p)) => {
                CountOrPercent::Percent(p.clamp(0.0, 100.0)).resolve_floor(total)
            }
        }
    }
}

/// The cluster as the scheduler sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Resource groups (dedicated groups; the public pool may be listed too).
    pub groups: Vec<ResourceGroup>,
    /// The instance types on offer in the public pool.
    pub instance_types: Vec<InstanceType>,
    /// How many more machines of each (instance type, zone) can be bought now.
    #[serde(with = "inventory_serde")]
    pub inventory: BTreeMap<(String, Zone), u32>,
    /// The zones of the region.
    pub zones: Vec<Zone>,
    /// Every instance of every service, in any state.
    pub instances: Vec<Instance>,
}

impl ClusterState {
    /// The instance type named `name`.
    #[must_use]
    pub fn instance_type(&self, name: &str) -> Option<&InstanceType> {
        self.instance_types.iter().find(|t| t.name == name)
    }

    /// The instances of `service`, in any state.
    pub fn instances_of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.iter().filter(move |i| i.service == service)
    }

    /// The instance with this identifier.
    #[must_use]
    pub fn instance(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances.iter().find(|i| &i.id == id)
    }

    /// The resource group with this identifier.
    #[must_use]
    pub fn group(&self, id: &str) -> Option<&ResourceGroup> {
        self.groups.iter().find(|g| g.id() == id)
    }

    /// The node with this identifier, in whichever group holds it.
    #[must_use]
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.groups.iter().find_map(|g| g.node(id))
    }

    /// How many machines of `instance_type` can be bought in `zone` (0 when unknown).
    #[must_use]
    pub fn inventory_of(&self, instance_type: &str, zone: &Zone) -> u32 {
        self.inventory
            .get(&(instance_type.to_owned(), zone.clone()))
            .copied()
            .unwrap_or(0)
    }
}

/// The inventory map as a list of `{instance_type, zone, available}` (JSON keys must be strings).
mod inventory_serde {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::resources::Zone;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        instance_type: String,
        zone: Zone,
        available: u32,
    }

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<(String, Zone), u32>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let entries: Vec<Entry> = map
            .iter()
            .map(|((t, z), n)| Entry {
                instance_type: t.clone(),
                zone: z.clone(),
                available: *n,
            })
            .collect();
        entries.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<(String, Zone), u32>, D::Error> {
        let entries = Vec::<Entry>::deserialize(deserializer)?;
        Ok(entries
            .into_iter()
            .map(|e| ((e.instance_type, e.zone), e.available))
            .collect())
    }
}

/// What a scheduler asks the controller to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Start a new instance of `service` at `placement`.
    Launch {
        /// The service.
        service: String,
        /// Where to run it (for spot, the bid is in the placement's market).
        placement: Placement,
        /// Why, for a person.
        reason: String,
    },
    /// Stop an instance.
    Terminate {
        /// The instance.
        instance: InstanceId,
        /// Why, for a person.
        reason: String,
    },
    /// Replace an instance with one at another placement (start the new one, then stop the old).
    Migrate {
        /// The instance to replace.
        instance: InstanceId,
        /// Where its replacement runs.
        to: Placement,
        /// Why, for a person.
        reason: String,
    },
}

impl Action {
    /// A launch.
    #[must_use]
    pub fn launch(
        service: impl Into<String>,
        placement: Placement,
        reason: impl Into<String>,
    ) -> Self {
        Self::Launch {
            service: service.into(),
            placement,
            reason: reason.into(),
        }
    }

    /// A termination.
    #[must_use]
    pub fn terminate(instance: InstanceId, reason: impl Into<String>) -> Self {
        Self::Terminate {
            instance,
            reason: reason.into(),
        }
    }

    /// A migration.
    #[must_use]
    pub fn migrate(instance: InstanceId, to: Placement, reason: impl Into<String>) -> Self {
        Self::Migrate {
            instance,
            to,
            reason: reason.into(),
        }
    }

    /// Why the scheduler asked for it.
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Launch { reason, .. }
            | Self::Terminate { reason, .. }
            | Self::Migrate { reason, .. } => reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::resources::{InstanceState, Market};

    #[test]
    fn demand_from_spec_should_carry_the_placement_policy_of_the_spec() {
        let spec = ServiceSpec::from_json_str(
            r#"{"metadata": {"name": "svc", "instance": 3, "cpu": 1.5, "memory": 2048,
                "gpu_memory": 8, "gpu_core_percentage": 30, "qos": "BestEffort",
                "resource": "eas-r-1", "resource_burstable": true, "resource_rebalancing": true,
                "scheduling": {"spread": {"policy": "zone"}}},
               "cloud": {"computing": {"instances": [
                   {"type": "ecs.spot", "spot_price_limit": 0.5, "capacity": "20%"},
                   {"type": "ecs.od"}], "disable_spot_protection_period": true}},
               "containers": [{"image": "i", "command": "run"}]}"#,
        )
        .expect("a valid spec");
        let demand = ServiceDemand::from_spec(&spec, 10);
        assert_eq!(demand.replicas, 10);
        assert_eq!(
            demand.per_instance,
            Resources::new(1_500, 2_048)
                .with_gpu(0, 8)
                .with_gpu_core_percent(30)
        );
        assert!(demand.best_effort && demand.burstable && demand.rebalancing);
        assert!(!demand.spot_protection);
        assert_eq!(demand.resource_group.as_deref(), Some("eas-r-1"));
        assert_eq!(demand.spread, SpreadPolicy::Zone);
        assert_eq!(demand.instance_types.len(), 2);
        assert_eq!(demand.instance_types[0].max_instances(10), 2);
        assert!(demand.instance_types[0].is_spot() && !demand.instance_types[1].is_spot());
    }

    #[test]
    fn percent_capacity_should_round_down_a_share_of_the_total() {
        let capped = |c| InstanceChoice::new("t").with_capacity(c);
        assert_eq!(capped(CountOrPercent::Percent(20.0)).max_instances(200), 40);
        assert_eq!(capped(CountOrPercent::Percent(30.0)).max_instances(5), 1);
        assert_eq!(capped(CountOrPercent::Percent(150.0)).max_instances(4), 4);
        assert_eq!(capped(CountOrPercent::Count(7)).max_instances(3), 7);
        assert_eq!(InstanceChoice::new("t").max_instances(9), 9);
    }

    #[test]
    fn service_demand_should_default_to_public_on_demand_with_spot_protection() {
        let d = ServiceDemand::new("s", 3, Resources::new(4_000, 8_192));
        assert!(d.spot_protection);
        assert!(!d.best_effort && !d.burstable && !d.rebalancing);
        assert_eq!(d.resource_group, None);
        let d = d
            .with_best_effort(true)
            .with_resource_group("g")
            .with_spread(SpreadPolicy::Zone);
        assert_eq!(d.charged_per_instance(), Resources::new(0, 8_192));
        assert_eq!(d.resource_group.as_deref(), Some("g"));
    }

    fn cluster() -> ClusterState {
        let zone = Zone::from("z1");
        let node = Node::new(
            NodeId::from("n1"),
            zone.clone(),
            Resources::new(8_000, 16_384),
        );
        let placement = Placement::public("ecs.a", zone.clone(), Market::OnDemand);
        ClusterState {
            groups: vec![
                ResourceGroup::dedicated("g", vec![node]),
                ResourceGroup::Public,
            ],
            instance_types: vec![InstanceType::new(
                "ecs.a",
                Resources::new(4_000, 8_192),
                0.5,
            )],
            inventory: BTreeMap::from([(("ecs.a".to_owned(), zone.clone()), 12)]),
            zones: vec![zone],
            instances: vec![
                Instance::new(
                    InstanceId::from("s-0"),
                    "s",
                    placement.clone(),
                    Resources::ZERO,
                    SystemTime::UNIX_EPOCH,
                )
                .with_state(InstanceState::Ready),
                Instance::new(
                    InstanceId::from("t-0"),
                    "t",
                    placement,
                    Resources::ZERO,
                    SystemTime::UNIX_EPOCH,
                ),
            ],
        }
    }

    #[test]
    fn cluster_state_lookups_should_find_what_is_there() {
        let c = cluster();
        assert_eq!(
            c.instance_type("ecs.a").map(|t| t.on_demand_usd_per_hour),
            Some(0.5)
        );
        assert!(c.instance_type("ecs.b").is_none());
        assert_eq!(c.instances_of("s").count(), 1);
        assert_eq!(
            c.instance(&InstanceId::from("t-0"))
                .map(|i| i.service.as_str()),
            Some("t")
        );
        assert!(c.group("g").is_some());
        assert!(
            c.group(ResourceGroup::PUBLIC_ID)
                .is_some_and(ResourceGroup::is_public)
        );
        assert_eq!(
            c.node(&NodeId::from("n1")).map(Node::free),
            Some(Resources::new(8_000, 16_384))
        );
        assert_eq!(c.inventory_of("ecs.a", &Zone::from("z1")), 12);
        assert_eq!(c.inventory_of("ecs.a", &Zone::from("z2")), 0);
    }

    #[test]
    fn cluster_state_should_round_trip_through_json() {
        let c = cluster();
        let json = serde_json::to_string(&c).expect("serializes");
        assert!(
            json.contains(r#""inventory":[{"instance_type":"ecs.a","zone":"z1","available":12}]"#),
            "{json}"
        );
        let back: ClusterState = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, c);
    }

    #[test]
    fn actions_should_carry_their_reason() {
        let p = Placement::public(
            "t",
            Zone::from("z"),
            Market::Spot {
                bid_usd_per_hour: 0.1,
            },
        );
        let actions = [
            Action::launch("s", p.clone(), "scale up"),
            Action::terminate(InstanceId::from("i"), "scale down"),
            Action::migrate(InstanceId::from("i"), p, "preemption notice"),
        ];
        let reasons: Vec<_> = actions.iter().map(Action::reason).collect();
        assert_eq!(reasons, ["scale up", "scale down", "preemption notice"]);
    }

    #[test]
    fn schedule_input_should_find_a_service_demand() {
        #[derive(Debug)]
        struct Free;
        impl PricingOracle for Free {
            fn on_demand_price(&self, _: &str) -> crate::Result<f64> {
                Ok(0.0)
            }
            fn spot_price(&self, _: &str, _: &Zone, _: SystemTime) -> crate::Result<f64> {
                Ok(0.0)
            }
            fn spot_history(
                &self,
                _: &str,
                _: &Zone,
                _: SystemTime,
                _: SystemTime,
            ) -> crate::Result<Vec<crate::pricing::PricePoint>> {
                Ok(Vec::new())
            }
        }
        let demand = [ServiceDemand::new("a", 1, Resources::ZERO)];
        let c = ClusterState::default();
        let input = ScheduleInput::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            &demand,
            &c,
            &Free,
        );
        assert_eq!(input.demand_of("a").map(|d| d.replicas), Some(1));
        assert!(input.demand_of("b").is_none());
    }
}
