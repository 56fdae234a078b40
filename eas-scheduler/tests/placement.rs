//! Behaviour of the default placement policy, [`PlacementScheduler`], on small hand-built
//! clusters: tiers, bids, capacity, inventory, spread, scale-in, preemption, protection,
//! rebalancing and determinism.

use std::time::{Duration, SystemTime};

use eas_core::resources::{
    Instance, InstanceId, InstanceState, Market, Node, NodeId, Placement, ResourceGroup, Resources,
    SpreadPolicy, Zone,
};
use eas_core::scheduler::{Action, ClusterState, InstanceChoice, ScheduleInput, ServiceDemand};
use eas_core::spec::CountOrPercent;
use eas_core::testing::StaticPrices;
use eas_core::{PricingOracle, Scheduler};
use eas_scheduler::placement::PlacementScheduler;
use eas_scheduler::pricing::PriceTable;

const SMALL: Resources = Resources::new(1_000, 2_048);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn node(id: &str, zone: &str, cpu: u64, mem: u64) -> Node {
    Node::new(NodeId::from(id), Zone::from(zone), Resources::new(cpu, mem))
}

/// Zones a, b, c; group g1 with `nodes`; the public pool; inventory 100 of every (type, zone)
/// named in `types`.
fn cluster(nodes: Vec<Node>, types: &[&str]) -> ClusterState {
    let zones: Vec<Zone> = ["a", "b", "c"].into_iter().map(Zone::from).collect();
    let mut c = ClusterState {
        groups: vec![ResourceGroup::dedicated("g1", nodes), ResourceGroup::Public],
        zones: zones.clone(),
        ..ClusterState::default()
    };
    for t in types {
        for z in &zones {
            c.inventory.insert(((*t).to_owned(), z.clone()), 100);
        }
    }
    c
}

fn prices() -> StaticPrices {
    StaticPrices::new()
        .with_on_demand("ecs.x", 1.0)
        .with_on_demand("ecs.y", 1.2)
        .with_spot("ecs.x", "a", 0.12)
        .with_spot("ecs.x", "b", 0.61)
        .with_spot("ecs.x", "c", 0.2)
}

fn spot(t: &str, bid: f64) -> InstanceChoice {
    InstanceChoice::new(t).with_spot_price_limit(bid)
}

fn public(t: &str, zone: &str, market: Market) -> Placement {
    Placement::public(t, Zone::from(zone), market)
}

fn spot_at(t: &str, zone: &str, bid: f64) -> Placement {
    public(
        t,
        zone,
        Market::Spot {
            bid_usd_per_hour: bid,
        },
    )
}

fn instance(id: &str, placement: Placement, age: Duration) -> Instance {
    Instance::new(InstanceId::from(id), "svc", placement, SMALL, now() - age)
        .with_state(InstanceState::Ready)
}

const OLD: Duration = Duration::from_secs(86_400);

fn schedule(
    s: &mut PlacementScheduler,
    demand: &ServiceDemand,
    c: &ClusterState,
    p: &dyn PricingOracle,
) -> Vec<Action> {
    let demand = [demand.clone()];
    s.schedule(&ScheduleInput::new(now(), &demand, c, p))
}

fn run(demand: &ServiceDemand, c: &ClusterState) -> (Vec<Action>, PlacementScheduler) {
    let mut s = PlacementScheduler::new();
    let actions = schedule(&mut s, demand, c, &prices());
    (actions, s)
}

fn launched(actions: &[Action]) -> Vec<&Placement> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch { placement, .. } => Some(placement),
            _ => None,
        })
        .collect()
}

fn terminated(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Terminate { instance, .. } => Some(instance.as_str()),
            _ => None,
        })
        .collect()
}

fn svc(replicas: u32) -> ServiceDemand {
    ServiceDemand::new("svc", replicas, SMALL)
}

#[test]
fn dedicated_group_should_be_used_before_the_public_pool() {
    let c = cluster(vec![node("n1", "a", 4_000, 8_192)], &["ecs.x"]);
    let d = svc(2)
        .with_resource_group("g1")
        .with_burstable(true)
        .with_instance_types(vec![InstanceChoice::new("ecs.x")]);
    let (actions, _) = run(&d, &c);
    let zone = Zone::from("a");
    let on_n1 = Placement::dedicated("g1", NodeId::from("n1"), zone);
    assert_eq!(launched(&actions), [&on_n1, &on_n1]);
    assert!(actions[0].reason().contains("dedicated group g1 node n1"));
}

#[test]
fn full_group_without_burstable_should_report_a_shortfall_and_launch_nothing_more() {
    let c = cluster(vec![node("n1", "a", 1_000, 8_192)], &["ecs.x"]);
    let d = svc(3)
        .with_resource_group("g1")
        .with_instance_types(vec![InstanceChoice::new("ecs.x")]);
    let (actions, s) = run(&d, &c);
    assert_eq!(launched(&actions).len(), 1);
    let short = &s.shortfalls()[0];
    assert_eq!((short.service.as_str(), short.missing), ("svc", 2));
    assert!(
        short.reason.contains("dedicated group g1 full"),
        "{short:?}"
    );
    assert!(short.reason.contains("not burstable"), "{short:?}");
}

#[test]
fn burstable_group_should_overflow_into_the_public_pool() {
    let c = cluster(vec![node("n1", "a", 1_000, 8_192)], &["ecs.x"]);
    let d = svc(3)
        .with_resource_group("g1")
        .with_burstable(true)
        .with_instance_types(vec![InstanceChoice::new("ecs.x")]);
    let (actions, s) = run(&d, &c);
    let placed = launched(&actions);
    assert_eq!(placed.len(), 3);
    assert!(matches!(placed[0], Placement::Dedicated { .. }));
    assert_eq!(placed[1], &public("ecs.x", "a", Market::OnDemand));
    assert!(
        actions[1]
            .reason()
            .starts_with("scale-out 0 -> 3: dedicated group g1 full")
    );
    assert!(s.shortfalls().is_empty());
}

#[test]
fn ordered_types_should_fall_through_a_failed_bid_spot_billed_at_market_with_the_bid() {
    // Table: (choices, expected first placement, expected reason fragment).
    let cases: Vec<(Vec<InstanceChoice>, Placement, &str)> = vec![
        (
            vec![spot("ecs.x", 0.5)],
            spot_at("ecs.x", "a", 0.5),
            "spot ecs.x in zone a at 0.12 <= bid 0.5",
        ),
        (
            vec![spot("ecs.x", 0.1), InstanceChoice::new("ecs.y")],
            public("ecs.y", "a", Market::OnDemand),
            "ecs.x: spot price 0.12 > bid 0.1 in zone a",
        ),
        (
            vec![spot("ecs.x", 0.15), InstanceChoice::new("ecs.y")],
            spot_at("ecs.x", "a", 0.15),
            "spot ecs.x in zone a at 0.12 <= bid 0.15",
        ),
        (
            vec![spot("ecs.nomarket", 9.0), InstanceChoice::new("ecs.y")],
            public("ecs.y", "a", Market::OnDemand),
            "ecs.nomarket in zone a: no spot price",
        ),
    ];
    let c = cluster(vec![], &["ecs.x", "ecs.y", "ecs.nomarket"]);
    for (choices, expected, fragment) in cases {
        let (actions, _) = run(&svc(1).with_instance_types(choices), &c);
        assert_eq!(launched(&actions), [&expected], "{actions:?}");
        assert!(actions[0].reason().contains(fragment), "{actions:?}");
    }
}

#[test]
fn spot_bid_should_be_checked_zone_by_zone() {
    // 0.61 > 0.5 in zone b: with zone a out of inventory, zone c (0.2) is used.
    let mut c = cluster(vec![], &["ecs.x"]);
    c.inventory.insert(("ecs.x".into(), Zone::from("a")), 0);
    let (actions, _) = run(&svc(1).with_instance_types(vec![spot("ecs.x", 0.5)]), &c);
    assert_eq!(launched(&actions), [&spot_at("ecs.x", "c", 0.5)]);
    let reason = actions[0].reason();
    assert!(reason.contains("ecs.x in zone a: no inventory"), "{reason}");
    assert!(
        reason.contains("ecs.x: spot price 0.61 > bid 0.5 in zone b"),
        "{reason}"
    );
}

#[test]
fn capacity_percent_should_cap_a_type_counting_its_live_instances() {
    // Table: (live ecs.x instances, expected new ecs.x, expected new ecs.y).
    for (live, new_x, new_y) in [(0_u32, 2_usize, 8_usize), (1, 1, 8), (2, 0, 8), (3, 0, 7)] {
        let mut c = cluster(vec![], &["ecs.x", "ecs.y"]);
        for i in 0..live {
            let p = public("ecs.x", "a", Market::OnDemand);
            c.instances.push(instance(&format!("x{i}"), p, OLD));
        }
        let choices = vec![
            InstanceChoice::new("ecs.x").with_capacity(CountOrPercent::Percent(20.0)),
            InstanceChoice::new("ecs.y"),
        ];
        let (actions, _) = run(&svc(10).with_instance_types(choices), &c);
        let count = |t: &str| {
            launched(&actions)
                .iter()
                .filter(
                    |p| matches!(p, Placement::Public { instance_type, .. } if instance_type == t),
                )
                .count()
        };
        assert_eq!(
            (count("ecs.x"), count("ecs.y")),
            (new_x, new_y),
            "live {live}"
        );
        let last = actions.last().map(Action::reason).unwrap_or_default();
        assert!(
            last.contains("ecs.x: capacity 20% of 10 = 2 reached"),
            "{last}"
        );
    }
}

#[test]
fn exhausted_inventory_should_fall_through_to_the_next_type_and_be_consumed() {
    let mut c = cluster(vec![], &["ecs.y"]);
    c.zones.truncate(1);
    c.inventory.insert(("ecs.x".into(), Zone::from("a")), 2);
    let choices = vec![InstanceChoice::new("ecs.x"), InstanceChoice::new("ecs.y")];
    let (actions, _) = run(&svc(3).with_instance_types(choices), &c);
    let x = public("ecs.x", "a", Market::OnDemand);
    let y = public("ecs.y", "a", Market::OnDemand);
    assert_eq!(launched(&actions), [&x, &x, &y]);
    assert!(
        actions[2]
            .reason()
            .contains("ecs.x in zone a: no inventory")
    );
    let nothing = cluster(vec![], &[]);
    let (actions, s) = run(
        &svc(1).with_instance_types(vec![InstanceChoice::new("ecs.x")]),
        &nothing,
    );
    assert!(actions.is_empty());
    assert!(s.shortfalls()[0].reason.contains("no inventory"));
}

#[test]
fn best_effort_should_not_count_cpu_against_nodes() {
    let hungry = Resources::new(2_000, 2_048);
    for (best_effort, expected) in [(true, 4), (false, 0)] {
        let c = cluster(vec![node("n1", "a", 1_000, 8_192)], &[]);
        let d = ServiceDemand::new("svc", 4, hungry)
            .with_resource_group("g1")
            .with_best_effort(best_effort);
        let (actions, _) = run(&d, &c);
        assert_eq!(
            launched(&actions).len(),
            expected,
            "best effort {best_effort}"
        );
    }
}

#[test]
fn host_spread_should_put_at_most_one_instance_per_node() {
    let nodes = vec![
        node("n1", "a", 16_000, 32_768),
        node("n2", "a", 16_000, 32_768),
        node("n3", "b", 16_000, 32_768),
    ];
    let mut c = cluster(nodes, &[]);
    c.instances.push(instance(
        "old",
        Placement::dedicated("g1", NodeId::from("n2"), Zone::from("a")),
        OLD,
    ));
    let d = svc(4)
        .with_resource_group("g1")
        .with_spread(SpreadPolicy::Host);
    let (actions, s) = run(&d, &c);
    let mut nodes: Vec<&str> = launched(&actions)
        .iter()
        .filter_map(|p| match p {
            Placement::Dedicated { node, .. } => Some(node.as_str()),
            Placement::Public { .. } => None,
        })
        .collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["n1", "n3"]);
    assert_eq!(s.shortfalls()[0].missing, 1);
    assert!(s.shortfalls()[0].reason.contains("host spread"));
}

#[test]
fn zone_spread_should_fill_the_zone_with_fewest_instances_first() {
    let mut c = cluster(vec![], &["ecs.x"]);
    for i in 0..2 {
        c.instances.push(instance(
            &format!("a{i}"),
            public("ecs.x", "a", Market::OnDemand),
            OLD,
        ));
    }
    let d = svc(6)
        .with_spread(SpreadPolicy::Zone)
        .with_instance_types(vec![InstanceChoice::new("ecs.x")]);
    let (actions, _) = run(&d, &c);
    let zones: Vec<&str> = launched(&actions)
        .iter()
        .map(|p| p.zone().as_str())
        .collect();
    assert_eq!(zones, ["b", "c", "b", "c"]);
    // Dedicated nodes spread too.
    let nodes = vec![
        node("na", "a", 8_000, 16_384),
        node("nb", "b", 8_000, 16_384),
    ];
    let c = cluster(nodes, &[]);
    let d = svc(4)
        .with_resource_group("g1")
        .with_spread(SpreadPolicy::Zone);
    let (actions, _) = run(&d, &c);
    let zones: Vec<&str> = launched(&actions)
        .iter()
        .map(|p| p.zone().as_str())
        .collect();
    assert_eq!(zones, ["a", "b", "a", "b"]);
}

#[test]
fn scale_in_should_remove_public_most_expensive_first_and_skip_draining() {
    let dedicated = Placement::dedicated("g1", NodeId::from("n1"), Zone::from("a"));
    let mut c = cluster(vec![node("n1", "a", 8_000, 16_384)], &[]);
    c.instances = vec![
        instance("ded", dedicated, OLD),
        instance("spot", spot_at("ecs.x", "a", 0.5), OLD),
        instance("od", public("ecs.y", "a", Market::OnDemand), OLD),
        instance("drain", public("ecs.y", "b", Market::OnDemand), OLD)
            .with_state(InstanceState::Draining),
    ];
    for (wanted, expected) in [
        (3, vec![]),
        (2, vec!["od"]),
        (1, vec!["od", "spot"]),
        (0, vec!["od", "spot", "ded"]),
    ] {
        let (actions, _) = run(&svc(wanted).with_resource_group("g1"), &c);
        assert_eq!(terminated(&actions), expected, "wanted {wanted}");
        assert!(launched(&actions).is_empty());
    }
    let (actions, _) = run(&svc(2), &c);
    assert!(
        actions[0]
            .reason()
            .contains("scale-in 3 -> 2: od on public on-demand ecs.y")
    );
}

#[test]
fn preempted_instance_should_be_replaced_first_then_terminated_avoiding_its_market() {
    let mut doomed = instance("doomed", spot_at("ecs.x", "a", 0.5), OLD);
    doomed.preemption_notice_at = Some(now() - Duration::from_secs(60));
    let mut c = cluster(vec![], &["ecs.x", "ecs.y"]);
    c.instances = vec![
        doomed,
        instance("ok", public("ecs.y", "b", Market::OnDemand), OLD),
    ];
    let d = svc(2).with_instance_types(vec![spot("ecs.x", 0.5), InstanceChoice::new("ecs.y")]);
    let (actions, _) = run(&d, &c);
    assert_eq!(actions.len(), 2, "{actions:?}");
    // Zone a's spot market just sent a notice; b is above the bid; c is fine.
    assert_eq!(launched(&actions), [&spot_at("ecs.x", "c", 0.5)]);
    assert!(
        actions[0]
            .reason()
            .starts_with("replaces preempted doomed: ")
    );
    assert!(
        actions[0]
            .reason()
            .contains("ecs.x in zone a: spot preemption notice this round")
    );
    assert_eq!(terminated(&actions), ["doomed"]);
    assert!(
        actions[1]
            .reason()
            .starts_with("preempted: notice at 2023-11-14T22:12:20Z")
    );
}

#[test]
fn spot_in_its_protection_hour_should_be_scaled_in_last() {
    // The protected spot costs more than the on-demand one.
    let p = PriceTable::builder()
        .with_on_demand("ecs.x", 1.0)
        .with_spot("ecs.s", "a", 2.0)
        .build()
        .expect("prices");
    for (protection, age, expected) in [
        (true, Duration::from_secs(600), "od"),
        (true, Duration::from_secs(3_700), "young"),
        (false, Duration::from_secs(600), "young"),
    ] {
        let mut c = cluster(vec![], &[]);
        c.instances = vec![
            instance("young", spot_at("ecs.s", "a", 3.0), age),
            instance("od", public("ecs.x", "a", Market::OnDemand), OLD),
        ];
        let d = svc(1).with_spot_protection(protection);
        let mut s = PlacementScheduler::new();
        let actions = schedule(&mut s, &d, &c, &p);
        assert_eq!(terminated(&actions), [expected], "{protection} {age:?}");
    }
}

#[test]
fn protected_spot_should_not_be_rebalanced_away() {
    let mut c = cluster(vec![node("n1", "a", 8_000, 16_384)], &[]);
    c.instances = vec![instance(
        "young",
        spot_at("ecs.x", "a", 0.5),
        Duration::from_secs(60),
    )];
    let d = svc(1)
        .with_resource_group("g1")
        .with_burstable(true)
        .with_rebalancing(true)
        .with_instance_types(vec![spot("ecs.x", 0.5)]);
    let (actions, _) = run(&d, &c);
    assert!(actions.is_empty(), "{actions:?}");
    let (actions, _) = run(&d.with_spot_protection(false), &c);
    assert!(
        matches!(actions[..], [Action::Migrate { .. }]),
        "{actions:?}"
    );
}

/// Applies migrations: the instance moves, its new node is charged.
fn apply(c: &mut ClusterState, actions: &[Action]) {
    for a in actions {
        let Action::Migrate { instance, to, .. } = a else {
            panic!("only migrations expected, got {a:?}");
        };
        if let Placement::Dedicated { node, .. } = to {
            for n in c.groups[0].nodes_mut().into_iter().flatten() {
                if &n.id == node {
                    n.allocated = n.allocated.saturating_add(&SMALL);
                }
            }
        }
        for i in c.instances.iter_mut().filter(|i| &i.id == instance) {
            i.placement = to.clone();
        }
    }
}

#[test]
fn rebalancing_should_double_probes_while_they_succeed_and_never_drop_below_wanted() {
    // Room for 7 of the 9 public instances on the group.
    let mut c = cluster(vec![node("n1", "a", 7_000, 65_536)], &["ecs.x"]);
    for i in 0..9 {
        let p = public("ecs.x", "a", Market::OnDemand);
        c.instances.push(instance(&format!("i{i}"), p, OLD));
    }
    let d = svc(9)
        .with_resource_group("g1")
        .with_burstable(true)
        .with_rebalancing(true)
        .with_instance_types(vec![InstanceChoice::new("ecs.x")]);
    let mut s = PlacementScheduler::new();
    let mut moves = Vec::new();
    for _ in 0..5 {
        let probes = s.probes("svc");
        let actions = schedule(&mut s, &d, &c, &prices());
        moves.push((probes, actions.len()));
        apply(&mut c, &actions);
        let active = c.instances.iter().filter(|i| i.state.is_active()).count();
        assert_eq!(active, 9, "migrations never lower the count");
    }
    // 1, 2, 4 succeed; the next 4 find room for 0 (7 used): back to 1.
    assert_eq!(moves, [(1, 1), (2, 2), (4, 4), (8, 0), (1, 0)]);
    assert!(s.shortfalls().is_empty());
}

#[test]
fn rebalancing_should_move_to_an_earlier_type_when_it_is_available_again() {
    let mut c = cluster(vec![], &["ecs.x", "ecs.y"]);
    c.instances = vec![instance("od", public("ecs.y", "a", Market::OnDemand), OLD)];
    let d = svc(1)
        .with_rebalancing(true)
        .with_instance_types(vec![spot("ecs.x", 0.5), InstanceChoice::new("ecs.y")]);
    let (actions, s) = run(&d, &c);
    let [
        Action::Migrate {
            instance,
            to,
            reason,
        },
    ] = &actions[..]
    else {
        panic!("{actions:?}");
    };
    assert_eq!((instance.as_str(), to), ("od", &spot_at("ecs.x", "a", 0.5)));
    assert!(
        reason.contains("replaces od on public on-demand ecs.y"),
        "{reason}"
    );
    assert_eq!(s.probes("svc"), 1, "capped at the wanted count");
}

#[test]
fn same_input_should_give_the_same_actions() {
    let nodes = (0..20)
        .map(|i| {
            node(
                &format!("n{i}"),
                ["a", "b", "c"][i % 3],
                4_000 * (1 + i as u64 % 3),
                16_384,
            )
        })
        .collect();
    let mut c = cluster(nodes, &["ecs.x", "ecs.y"]);
    c.instances
        .push(instance("p", public("ecs.y", "b", Market::OnDemand), OLD));
    let demand = [
        svc(30)
            .with_resource_group("g1")
            .with_burstable(true)
            .with_spread(SpreadPolicy::Zone)
            .with_instance_types(vec![spot("ecs.x", 0.5), InstanceChoice::new("ecs.y")]),
        ServiceDemand::new("other", 10, SMALL)
            .with_resource_group("g1")
            .with_spread(SpreadPolicy::Host),
    ];
    let p = prices();
    let input = ScheduleInput::new(now(), &demand, &c, &p);
    let mut s = PlacementScheduler::new();
    let first = s.schedule(&input);
    assert_eq!(first, s.schedule(&input));
    assert_eq!(first, PlacementScheduler::new().schedule(&input));
    assert_eq!(launched(&first).len(), 39);
}
