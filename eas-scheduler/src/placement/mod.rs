//! The default placement policy: [`PlacementScheduler`]; and [`gpu`], which GPUs of one
//! machine an instance gets (whole GPUs, or slices packed onto one GPU).
//!
//! Each round, for every [`ServiceDemand`](eas_core::scheduler::ServiceDemand) (first entry
//! per service wins), the scheduler counts the service's active instances (pending, starting,
//! ready, unready) and answers with actions whose reasons say why each choice was made and
//! why the better ones were passed over:
//!
//! - **Tiers.** The service's dedicated group first (when `resource_group` is set), then, when
//!   there is no group or it is `burstable`, the public `instance_types` in order. Without
//!   `burstable` a full group is a [`Shortfall`], not an action.
//! - **Dedicated nodes: first fit.** The first node where the instance's charged resources
//!   fit (`charged_per_instance`: BestEffort instances are not charged CPU), in zone order,
//!   then CPU-only nodes before GPU nodes, then the group's node order. Nodes sit under a
//!   segment tree of free capacity (about `O(log n)` a placement), and what is placed is
//!   charged at once.
//! - **Public types.** A type is passed over when its `capacity` is reached (counting the
//!   service's live instances of that type and this round's), when its machine is too small,
//!   when a spot type's price at `now` is above its bid (or unknown), when a spot type got a
//!   preemption notice in that zone (any service) this round, or when the inventory of (type,
//!   zone) is 0 (unknown counts as 0, on demand too). Spot launches carry the bid in
//!   [`Market::Spot`](eas_core::resources::Market::Spot); the machine is billed at market.
//!   Inventory is consumed as machines are bought.
//! - **Spread.** Host: never a second instance of the service on a node. Zone: the zone with
//!   fewest instances of the service first, ties by zone order (tiers still come first:
//!   a dedicated node in a busier zone beats a public machine in an emptier one).
//! - **Preemption.** Instances with a preemption notice count as gone: replacements are
//!   launched first (same order), then the doomed instances are terminated
//!   (`preempted: notice at ...`).
//! - **Scale-in.** Unprotected before spot instances in their first hour (with
//!   `spot_protection`), public before dedicated, most expensive at current prices first (on
//!   demand usually goes before spot), newest first, then by id. Draining or stopped instances
//!   are never chosen: they are not active.
//! - **Rebalancing** (`rebalancing`, only for services at their wanted count with no
//!   preemption): the instances on the lowest-ranked tiers (public when the group has room,
//!   a later instance type when an earlier one can be bought) get [`Action::Migrate`]
//!   (start the new one, then stop the old: never below the wanted count). One probe at
//!   first; the number doubles after a round where every probe found a place (capped at the
//!   wanted count), and falls back to 1 when one does not. Spot instances in protection are
//!   never moved.
//!
//! Actions come in demand order; per service: launches, then scale-in terminations, then
//! preempted terminations, then migrations.
//!
//! [`Action::Migrate`]: eas_core::scheduler::Action::Migrate
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::Scheduler;
//! use eas_core::resources::{Market, Placement, Resources, Zone};
//! use eas_core::scheduler::{ClusterState, InstanceChoice, ScheduleInput, ServiceDemand};
//! use eas_scheduler::placement::PlacementScheduler;
//! use eas_scheduler::pricing::PriceTable;
//!
//! let prices = PriceTable::builder()
//!     .with_on_demand("ecs.g6", 1.0)
//!     .with_spot("ecs.g6", "a", 0.12)
//!     .build()?;
//! let mut cluster = ClusterState { zones: vec![Zone::from("a")], ..ClusterState::default() };
//! cluster.inventory.insert(("ecs.g6".into(), Zone::from("a")), 5);
//! let demand = [ServiceDemand::new("svc", 2, Resources::new(1_000, 2_048))
//!     .with_instance_types(vec![InstanceChoice::new("ecs.g6").with_spot_price_limit(0.5)])];
//! let input = ScheduleInput::new(SystemTime::UNIX_EPOCH, &demand, &cluster, &prices);
//! let actions = PlacementScheduler::new().schedule(&input);
//! assert_eq!(actions.len(), 2);
//! assert!(actions[0].reason().contains("spot ecs.g6 in zone a at 0.12 <= bid 0.5"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod gpu;
mod index;
mod round;
mod scheduler;

pub use scheduler::{PlacementScheduler, Shortfall};
