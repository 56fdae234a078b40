//! The simulator: its cloud model (prices, closures, reclaims, notices, protection, fallback),
//! its service model (the fluid queue), determinism, and sanity on the shared traces.
//!
//! Tests that need `shared/data` print `SKIPPED` and pass when it is missing, unless
//! `EAS_REQUIRE_ALL=1`, where they fail (`support::skip`).

mod support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use eas_core::PricingOracle;
use eas_core::pricing::PricePoint;
use eas_core::resources::Zone;
use eas_core::spec::ServiceSpec;
use eas_scheduler::pricing::{AvailabilityTrace, TraceOracle, aws};
use eas_scheduler::sim::{
    Arrivals, Availability, FluidQueue, HedgePolicy, Report, SimCloud, SimConfig, Simulation,
    render_svg,
};
use support::{data, open};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/services");

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + s)
}

/// A spec buying `instances` (JSON list) with a QPS autoscaler.
fn spec(instances: &str, extra_metadata: &str, min: u32) -> ServiceSpec {
    ServiceSpec::from_json_str(&format!(
        r#"{{"metadata": {{"name": "svc", "instance": {min}{extra_metadata}}},
            "containers": [{{"image": "i", "command": "run"}}],
            "cloud": {{"computing": {{"instances": {instances}}}}},
            "autoscaler": {{"min": {min}, "max": 50, "strategies": {{"qps": 8}}}}}}"#
    ))
    .unwrap_or_else(|e| panic!("test spec: {e}"))
}

/// c5 on demand at 1.0; spot in zones a and b at 0.3, b's price jumping to 0.9 at `jump`.
fn two_zones(jump: u64) -> TraceOracle {
    TraceOracle::new()
        .with_on_demand("c5", 1.0)
        .with_series("c5", "a", [PricePoint::new(t(0), 0.3)])
        .with_series(
            "c5",
            "b",
            [PricePoint::new(t(0), 0.3), PricePoint::new(t(jump), 0.9)],
        )
}

fn flat(qps: u32) -> Arrivals {
    Arrivals::from_counts("flat", vec![qps; 60]).expect("non-empty")
}

fn run(spec: ServiceSpec, cloud: SimCloud, arrivals: Arrivals, config: SimConfig) -> Report {
    Simulation::new(spec, cloud, arrivals, config)
        .and_then(|s| s.run())
        .unwrap_or_else(|e| panic!("simulation: {e}"))
}

#[test]
fn closed_spot_markets_should_have_no_price_while_on_demand_stays() {
    let trace =
        AvailabilityTrace::new("x", t(0), Duration::from_secs(100), vec![1, 0, 2]).expect("valid");
    let cloud = SimCloud::new(two_zones(10_000)).with_availability(Availability::new(
        "c5",
        "a",
        &trace,
        t(0),
    ));
    let a = Zone::from("a");
    let cases = [
        (0, true),
        (99, true),
        (100, false),
        (199, false),
        (200, true),
        (300, true),
        (400, false),
    ];
    for (s, open) in cases {
        assert_eq!(
            cloud.spot_price("c5", &a, t(s)).is_ok(),
            open,
            "at {s} s (trace repeats)"
        );
        assert_eq!(cloud.is_open("c5", &a, t(s)), open, "at {s} s");
    }
    assert_eq!(cloud.on_demand_price("c5").ok(), Some(1.0));
    assert!(
        cloud.spot_price("c5", &Zone::from("b"), t(150)).is_ok(),
        "no trace: always open"
    );
    assert_eq!(cloud.slots("c5", &a), 2);
}

#[test]
fn reclaims_should_come_from_a_price_above_the_bid_or_a_lost_slot() {
    let trace = AvailabilityTrace::new("x", t(0), Duration::from_secs(600), vec![2, 2, 1, 2, 0, 2])
        .expect("valid");
    let cloud = SimCloud::new(two_zones(1_500)).with_availability(Availability::new(
        "c5",
        "a",
        &trace,
        t(0),
    ));
    let (a, b) = (Zone::from("a"), Zone::from("b"));
    // (zone, bid, slot, from) -> reclaim
    let cases: [(&Zone, f64, u32, u64, Option<u64>); 7] = [
        (&b, 0.5, 0, 0, Some(1_500)),     // price 0.9 > bid 0.5 from 1500 s
        (&b, 0.5, 0, 2_000, Some(2_000)), // already above at `from`: at once
        (&b, 1.0, 0, 0, None),            // bid above every price
        (&a, 1.0, 1, 0, Some(1_200)),     // slot 1 lost when the count drops to 1
        (&a, 1.0, 0, 0, Some(2_400)),     // slot 0 survives until the count is 0
        (&a, 1.0, 1, 1_800, Some(2_400)), // from after the first drop: the next one
        (&a, 1.0, 0, 3_000, Some(6_000)), // the trace repeats (period 3600 s): 3600 + 2400
    ];
    for (zone, bid, slot, from, want) in cases {
        let got = cloud.reclaim_at("c5", zone, bid, slot, t(from), t(100_000));
        assert_eq!(
            got,
            want.map(t),
            "zone {zone} bid {bid} slot {slot} from {from}"
        );
    }
    assert_eq!(
        cloud.reclaim_at("c5", &b, 0.5, 0, t(0), t(1_000)),
        None,
        "after the end"
    );
}

#[test]
fn cheapest_should_be_the_lowest_open_market_or_on_demand() {
    let trace =
        AvailabilityTrace::new("x", t(0), Duration::from_secs(100), vec![1, 0]).expect("valid");
    let cloud =
        SimCloud::new(two_zones(50)).with_availability(Availability::new("c5", "a", &trace, t(0)));
    let zones = [Zone::from("a"), Zone::from("b")];
    let cases = [(0, 1.0, 0.3), (60, 0.9, 0.27), (150, 1.0, 0.9)];
    for (s, factor, want) in cases {
        let got = cloud.cheapest(&["c5"], &zones, t(s), factor);
        assert!((got - want).abs() < 1e-12, "at {s}: {got} != {want}");
    }
}

#[test]
fn fluid_queue_should_give_waits_from_capacity_and_backlog() {
    // (arrivals per tick, capacity per tick, ticks) -> (availability, p50 ms, p99 range ms)
    /// Arrivals and capacity per tick, ticks; availability, p50 ms, p99 range ms.
    type Case = (f64, f64, u32, f64, f64, (f64, f64));
    let cases: [Case; 4] = [
        (5.0, 10.0, 10, 1.0, 100.0, (100.0, 100.0)), // ample: no wait
        (10.0, 10.0, 10, 1.0, 100.0, (100.0, 100.0)), // exactly enough: no wait
        (4.0, 2.0, 1, 1.0, 600.0, (1_000.0, 1_100.0)), // half served now, half next tick
        (20.0, 10.0, 10, 0.2, 5_100.0, (9_900.0, 10_100.0)), // falls behind: waits grow to 10 s
    ];
    for (arrivals, capacity, ticks, availability, p50, (lo, hi)) in cases {
        let mut q = FluidQueue::new(100.0, 2_100.0);
        for s in 0..ticks {
            q.step(f64::from(s), 1.0, arrivals, capacity);
        }
        let mut s = 0.0;
        while q.backlog() > 1e-9 && s < 1_000.0 {
            q.step(f64::from(ticks) + s, 1.0, 0.0, capacity);
            s += 1.0;
        }
        let sum = q.summary();
        let case = format!("{arrivals} on {capacity} for {ticks}: {sum:?}");
        assert!((sum.availability - availability).abs() < 0.02, "{case}");
        assert!((sum.p50_ms - p50).abs() <= p50 * 0.02 + 1.0, "{case}");
        assert!(sum.p99_ms >= lo && sum.p99_ms <= hi, "{case}");
    }
}

#[test]
fn all_on_demand_should_never_be_preempted_and_cost_what_on_demand_costs() {
    let report = run(
        spec(r#"[{"type": "c5"}]"#, "", 2),
        SimCloud::new(two_zones(600)),
        flat(20),
        SimConfig::new(t(0), Duration::from_secs(7_200), 10.0),
    );
    assert_eq!(report.preemptions, 0);
    assert_eq!(report.cost_usd, report.on_demand_cost_usd);
    assert_eq!(report.total_hours().spot, 0.0);
    // 3 instances (20 QPS at 8 per instance) for 2 h at 1.0.
    assert!((report.cost_usd - 6.0).abs() < 1e-6, "{}", report.cost_usd);
    assert!(report.optimal_cost_usd <= report.cost_usd);
    assert_eq!(report.availability, 1.0);
}

#[test]
fn a_price_above_the_bid_should_preempt_after_protection_with_a_replacement_in_time() {
    // Zone b's price jumps above the bid at 30 min; protection holds its machines to 1 h;
    // the notice at 55 min lets the replacement (zone a, spread) start before the reclaim.
    let spot = r#"[{"type": "c5", "spot_price_limit": 0.5}, {"type": "c5"}]"#;
    let zone_spread = r#", "scheduling": {"spread": {"policy": "zone"}}"#;
    let config = SimConfig::new(t(0), Duration::from_secs(7_200), 10.0);
    let report = run(
        spec(spot, zone_spread, 2),
        SimCloud::new(two_zones(1_800)),
        flat(20),
        config.clone(),
    );
    assert!(report.preemptions >= 1, "{report:?}");
    assert_eq!(report.preemptions, report.preemption_notices);
    assert_eq!(
        report.availability, 1.0,
        "replacement ready before the reclaim"
    );
    assert!(report.cost_usd < report.on_demand_cost_usd);
    // Without protection the machines in b go at once (notice at the launch of the jump).
    let unprotected = format!(r#"{zone_spread}, "resource_rebalancing": false"#);
    let mut s = spec(spot, &unprotected, 2);
    if let Some(c) = s.cloud.as_mut().and_then(|c| c.computing.as_mut()) {
        c.disable_spot_protection_period = true;
    }
    let fast = run(s, SimCloud::new(two_zones(1_800)), flat(20), config);
    assert!(fast.preemptions >= report.preemptions);
}

#[test]
fn spot_without_protection_should_cost_ten_percent_less() {
    let spot = r#"[{"type": "c5", "spot_price_limit": 0.5}]"#;
    let config = SimConfig::new(t(0), Duration::from_secs(3_600), 10.0);
    let protected = run(
        spec(spot, "", 2),
        SimCloud::new(two_zones(100_000)),
        flat(20),
        config.clone(),
    );
    let mut s = spec(spot, "", 2);
    if let Some(c) = s.cloud.as_mut().and_then(|c| c.computing.as_mut()) {
        c.disable_spot_protection_period = true;
    }
    let unprotected = run(s, SimCloud::new(two_zones(100_000)), flat(20), config);
    assert!(protected.cost_usd > 0.0);
    let ratio = unprotected.cost_usd / protected.cost_usd;
    assert!((ratio - 0.9).abs() < 1e-9, "{ratio}");
    assert!(
        unprotected.policy.contains("spot c5 (bid 0.5)"),
        "{}",
        unprotected.policy
    );
}

#[test]
fn closed_markets_should_fall_back_to_another_zone_then_on_demand() {
    let closed =
        AvailabilityTrace::new("x", t(0), Duration::from_secs(7_200), vec![0]).expect("valid");
    let spot = r#"[{"type": "c5", "spot_price_limit": 0.5}, {"type": "c5"}]"#;
    let config = SimConfig::new(t(0), Duration::from_secs(3_600), 10.0);
    // (zones closed, spot hours > 0, on-demand hours > 0)
    let cases = [(vec!["a"], true, false), (vec!["a", "b"], false, true)];
    for (zones, spot_used, od_used) in cases {
        let mut cloud = SimCloud::new(two_zones(100_000));
        for z in &zones {
            cloud = cloud.with_availability(Availability::new("c5", *z, &closed, t(0)));
        }
        let r = run(spec(spot, "", 2), cloud, flat(20), config.clone());
        let h = r.total_hours();
        assert_eq!(
            (h.spot > 0.0, h.on_demand > 0.0),
            (spot_used, od_used),
            "{zones:?}: {h:?}"
        );
        assert_eq!(r.availability, 1.0);
    }
}

#[test]
fn slow_launches_should_cost_availability_when_demand_jumps() {
    let mut counts = vec![5_u32; 1_800];
    counts.extend(vec![40_u32; 1_800]);
    let arrivals = Arrivals::from_counts("step", counts).expect("non-empty");
    let spec = spec(r#"[{"type": "c5"}]"#, "", 1);
    let base = SimConfig::new(t(0), Duration::from_secs(3_600), 10.0);
    let availability = |delay: u64| {
        let config = base.clone().with_launch_delay(Duration::from_secs(delay));
        run(
            spec.clone(),
            SimCloud::new(two_zones(0)),
            arrivals.clone(),
            config,
        )
        .availability
    };
    let (fast, slow) = (availability(10), availability(600));
    assert!(fast > slow, "fast {fast} vs slow {slow}");
    assert!(slow < 0.95, "{slow}");
}

#[test]
fn the_hedge_should_keep_extra_instances() {
    let spot = r#"[{"type": "c5", "spot_price_limit": 0.5}, {"type": "c5"}]"#;
    let config = SimConfig::new(t(0), Duration::from_secs(3_600), 10.0);
    let plain = run(
        spec(spot, "", 1),
        SimCloud::new(two_zones(100_000)),
        flat(20),
        config.clone(),
    );
    let hedged = run(
        spec(spot, "", 1),
        SimCloud::new(two_zones(100_000)),
        flat(20),
        config.with_hedge(HedgePolicy::over_provision(2)),
    );
    let last = |r: &Report| r.timeline.last().map(|p| p.spot + p.on_demand);
    assert_eq!(last(&plain), Some(3));
    assert_eq!(last(&hedged), Some(5));
    assert!(hedged.policy.contains("hedge +2"), "{}", hedged.policy);
    assert!(
        (hedged.on_demand_cost_usd - plain.on_demand_cost_usd).abs() < 1e-9,
        "same demand"
    );
}

#[test]
fn types_without_a_price_should_be_named() {
    let s = spec(
        r#"[{"type": "p3.2xlarge", "spot_price_limit": 1.0}, {"type": "c5"}, {"type": "m5"}]"#,
        "",
        1,
    );
    let err = Simulation::new(
        s,
        SimCloud::new(two_zones(0)),
        flat(1),
        SimConfig::new(t(0), Duration::from_secs(60), 1.0),
    )
    .expect_err("unpriced types");
    let text = err.to_string();
    for want in [
        "p3.2xlarge (no on-demand price)",
        "p3.2xlarge (no spot price in any zone)",
        "m5 (no on-demand price)",
    ] {
        assert!(text.contains(want), "{text}");
    }
    assert!(!text.contains("c5 ("), "{text}");
    let bad = SimConfig::new(t(0), Duration::from_secs(60), 0.0);
    let err = Simulation::new(
        spec(r#"[{"type": "c5"}]"#, "", 1),
        SimCloud::new(two_zones(0)),
        flat(1),
        bad,
    )
    .expect_err("qps 0");
    assert!(err.to_string().contains("instance_qps is 0"), "{err}");
}

/// The shared AWS prices with the four aligned SkyPilot availability traces (p3.2xlarge probes)
/// and the 4-node preemption trace applied to c5.2xlarge in the five us-east-1 zones.
fn shared_cloud(test: &str, start: SystemTime) -> Option<SimCloud> {
    let spot = data(
        test,
        "aws_spot_price_history/spot_prices_us-east-1_2021-03-02_to_2021-05-31.csv",
    )?;
    let od = data(
        test,
        "aws_spot_price_history/on_demand_prices_us-east-1.csv",
    )?;
    let oracle = aws::load(open(&spot), "spot.csv", open(&od), "od.csv").expect("shared prices");
    let mut cloud = SimCloud::new(oracle);
    for (zone, file) in SHARED_AVAILABILITY {
        let path = data(test, &format!("skypilot_spot_traces/{file}"))?;
        let trace = AvailabilityTrace::from_reader(open(&path), file, start).expect("shared trace");
        cloud = cloud.with_availability(Availability::new("c5.2xlarge", zone, &trace, start));
    }
    Some(cloud)
}

/// Which SkyPilot trace plays the spot availability of c5.2xlarge in which zone.
const SHARED_AVAILABILITY: [(&str, &str); 5] = [
    (
        "us-east-1a",
        "availability_1node_aws-02-15-2023_us-east-1a_v100_1.json",
    ),
    (
        "us-east-1b",
        "availability_1node_aws-02-15-2023_us-east-2a_v100_1.json",
    ),
    (
        "us-east-1c",
        "availability_1node_aws-02-15-2023_us-east-1c_v100_1.json",
    ),
    (
        "us-east-1d",
        "availability_1node_aws-02-15-2023_us-west-2a_v100_1.json",
    ),
    (
        "us-east-1f",
        "preemption_4node_aws-08-03-2023_us-east-1f_v100_1.json",
    ),
];

fn shared_arrivals(test: &str) -> Option<Arrivals> {
    let path = data(
        test,
        "azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv",
    )?;
    Some(Arrivals::from_csv(open(&path), "azure.csv").expect("shared arrivals"))
}

fn example(name: &str) -> ServiceSpec {
    let path = PathBuf::from(EXAMPLES).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ServiceSpec::from_json_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// 2021-03-10T00:00:00Z, inside the AWS history.
fn shared_start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_615_334_400)
}

#[test]
fn shared_arrival_traces_should_load_with_their_published_shape() {
    let Some(azure) =
        shared_arrivals("shared_arrival_traces_should_load_with_their_published_shape")
    else {
        return;
    };
    assert_eq!(azure.requests_per_period(), 19_366);
    assert_eq!(azure.period_seconds(), 3_502);
    let Some(path) = data(
        "shared_arrival_traces",
        "mooncake_conversation_2025/conversation_trace_first30min.csv",
    ) else {
        return;
    };
    let mooncake = Arrivals::from_csv(open(&path), "mooncake.csv").expect("mooncake");
    assert_eq!(mooncake.requests_per_period(), 5_719);
    assert_eq!(mooncake.period_seconds(), 1_800);
    assert!(
        mooncake.per_second().iter().all(|&n| n <= 23),
        "buckets are spread"
    );
}

#[test]
fn the_same_inputs_and_seed_should_give_the_same_report_bytes() {
    let test = "the_same_inputs_and_seed_should_give_the_same_report_bytes";
    let (Some(cloud), Some(arrivals)) = (shared_cloud(test, shared_start()), shared_arrivals(test))
    else {
        return;
    };
    let config = SimConfig::new(shared_start(), Duration::from_secs(4 * 3_600), 2.0).with_seed(7);
    let once = || {
        let report = run(
            example("sim-skyserve-hedge.json"),
            cloud.clone(),
            arrivals.clone(),
            config.clone().with_hedge(HedgePolicy::over_provision(1)),
        );
        (report.to_json().expect("serializes"), render_svg(&report))
    };
    let (a, b) = (once(), once());
    assert!(a.0 == b.0, "reports differ");
    assert!(a.1 == b.1, "plots differ");
    assert!(a.0.contains("\"cost_usd\""));
    assert!(a.1.starts_with("<svg") && a.1.trim_end().ends_with("</svg>"));
}

#[test]
fn policies_on_the_shared_traces_should_rank_as_expected() {
    let test = "policies_on_the_shared_traces_should_rank_as_expected";
    let (Some(cloud), Some(arrivals)) = (shared_cloud(test, shared_start()), shared_arrivals(test))
    else {
        return;
    };
    let config = SimConfig::new(shared_start(), Duration::from_secs(6 * 3_600), 2.0);
    let od = run(
        example("sim-on-demand.json"),
        cloud.clone(),
        arrivals.clone(),
        config.clone(),
    );
    let eas = run(
        example("sim-eas-spot.json"),
        cloud.clone(),
        arrivals.clone(),
        config.clone(),
    );
    let hedge = run(
        example("sim-skyserve-hedge.json"),
        cloud,
        arrivals,
        config.with_hedge(HedgePolicy::over_provision(1)),
    );
    assert_eq!(od.preemptions, 0);
    assert_eq!(od.cost_usd, od.on_demand_cost_usd);
    assert!(
        eas.cost_usd < od.cost_usd,
        "spot {} vs on-demand {}",
        eas.cost_usd,
        od.cost_usd
    );
    for r in [&od, &eas, &hedge] {
        assert!(
            r.optimal_cost_usd <= r.cost_usd,
            "{}: bound {} > {}",
            r.policy,
            r.optimal_cost_usd,
            r.cost_usd
        );
        assert!(
            r.requests > 0.0 && r.availability > 0.5,
            "{}: {}",
            r.policy,
            r.availability
        );
    }
    assert!(
        (od.optimal_cost_usd - hedge.optimal_cost_usd).abs() < 1e-9,
        "same bound: same types"
    );
}

#[test]
fn a_zone_closing_should_reclaim_all_its_spot_machines_at_once() {
    // One zone, open for 2 h, then closed for 1 h (the trace repeats every 4 h).
    let oracle = TraceOracle::new().with_on_demand("c5", 1.0).with_series(
        "c5",
        "a",
        [PricePoint::new(t(0), 0.3)],
    );
    let trace = AvailabilityTrace::new("x", t(0), Duration::from_secs(3_600), vec![1, 1, 0, 1])
        .expect("valid");
    let cloud = SimCloud::new(oracle).with_availability(Availability::new("c5", "a", &trace, t(0)));
    let spot = r#"[{"type": "c5", "spot_price_limit": 0.5}, {"type": "c5"}]"#;
    let config = SimConfig::new(t(0), Duration::from_secs(3 * 3_600), 10.0)
        .with_report_step(Duration::from_secs(600));
    let r = run(spec(spot, "", 1), cloud, flat(20), config);
    assert_eq!(
        r.preemptions, 3,
        "the three spot machines of zone a, together"
    );
    let at = |s: u64| {
        r.timeline
            .iter()
            .find(|p| p.t_s == s)
            .map(|p| (p.spot, p.on_demand))
    };
    assert_eq!(at(3_600), Some((3, 0)));
    assert_eq!(
        at(7_800),
        Some((0, 3)),
        "replaced on demand while the zone is closed"
    );
    assert_eq!(
        r.availability, 1.0,
        "the notice left time to start the replacements"
    );
}
