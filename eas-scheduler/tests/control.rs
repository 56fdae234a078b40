//! The controller's decisions as users plug their own policies in: a custom autoscaler (a
//! `Box<dyn Autoscaler>`) driving the simulator through the same `ReplicaController` the live
//! loop uses, a custom scheduler, and a custom pricing oracle under the simulated cloud.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use eas_core::autoscaler::{Observation, Recommendation};
use eas_core::pricing::PricePoint;
use eas_core::resources::Zone;
use eas_core::scheduler::{Action, ScheduleInput};
use eas_core::spec::ServiceSpec;
use eas_core::{Autoscaler, PricingOracle, Scheduler};
use eas_scheduler::control::ReplicaController;
use eas_scheduler::pricing::TraceOracle;
use eas_scheduler::sim::{Arrivals, Report, SimCloud, SimConfig, Simulation};

const START: u64 = 1_600_000_000;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(START + s)
}

/// A time-of-day plan: 2 replicas for the first 20 minutes, 5 for the next 20, then 3.
/// Reads nothing but the observation's time, as a policy should.
#[derive(Debug)]
struct Staircase {
    start: SystemTime,
}

impl Staircase {
    fn replicas_at(minute: u64) -> u32 {
        match minute {
            0..20 => 2,
            20..40 => 5,
            _ => 3,
        }
    }
}

impl Autoscaler for Staircase {
    fn recommend(&mut self, observation: &Observation) -> Recommendation {
        let minute = observation
            .at
            .duration_since(self.start)
            .unwrap_or_default()
            .as_secs()
            / 60;
        let n = Self::replicas_at(minute);
        Recommendation::new(n, format!("staircase at minute {minute}: {n}"))
    }
}

/// A spec buying `instances`, with or without an autoscaler block.
fn spec(instances: &str, autoscaler: bool) -> ServiceSpec {
    let block = if autoscaler {
        r#", "autoscaler": {"min": 1, "max": 50, "strategies": {"qps": 8}}"#
    } else {
        ""
    };
    ServiceSpec::from_json_str(&format!(
        r#"{{"metadata": {{"name": "svc", "instance": 1}},
            "containers": [{{"image": "i", "command": "run"}}],
            "cloud": {{"computing": {{"instances": {instances}}}}}{block}}}"#
    ))
    .unwrap_or_else(|e| panic!("test spec: {e}"))
}

const SPOT_THEN_ON_DEMAND: &str = r#"[{"type": "c5", "spot_price_limit": 0.5}, {"type": "c5"}]"#;

fn cloud() -> SimCloud {
    SimCloud::new(TraceOracle::new().with_on_demand("c5", 1.0).with_series(
        "c5",
        "a",
        [PricePoint::new(t(0), 0.3)],
    ))
}

fn flat(qps: u32) -> Arrivals {
    Arrivals::from_counts("flat", vec![qps; 60]).expect("non-empty")
}

/// One hour, 5-minute steps, 10 requests per second per instance.
fn config() -> SimConfig {
    SimConfig::new(t(0), Duration::from_secs(3_600), 10.0)
}

fn run(sim: Simulation) -> Report {
    sim.run().unwrap_or_else(|e| panic!("simulation: {e}"))
}

#[test]
fn a_custom_autoscaler_should_drive_the_simulation() {
    let built = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&built);
    for with_block in [true, false] {
        let counter = Arc::clone(&counter);
        let sim = Simulation::new(
            spec(SPOT_THEN_ON_DEMAND, with_block),
            cloud(),
            flat(20),
            config(),
        )
        .expect("valid")
        .with_autoscaler(Arc::new(move |_spec: &ServiceSpec| {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::new(Staircase { start: t(0) }) as Box<dyn Autoscaler>
        }));
        let report = run(sim);
        // The last control round of a step starts 15 s before its end.
        let want: Vec<u32> = report
            .timeline
            .iter()
            .map(|p| Staircase::replicas_at((p.t_s + 285) / 60))
            .collect();
        let got: Vec<u32> = report.timeline.iter().map(|p| p.desired).collect();
        assert_eq!(got, want, "block {with_block}");
        assert_eq!(got, [2, 2, 2, 2, 5, 5, 5, 5, 3, 3, 3, 3]);
        assert!(
            report.policy.ends_with("; custom autoscaler"),
            "{}",
            report.policy
        );
        let last = report.timeline.last().expect("steps");
        assert_eq!(last.spot + last.on_demand, 3, "the fleet follows");
    }
    // Each simulation runs twice (the policy, then the on-demand shadow), each from a fresh
    // autoscaler.
    assert_eq!(built.load(Ordering::SeqCst), 4);
}

#[test]
fn the_same_custom_autoscaler_should_drive_a_replica_controller_directly() {
    // What the live control loop does each tick, with the simulator's policy.
    let mut controller = ReplicaController::new(1, Some(Box::new(Staircase { start: t(0) })));
    let mut current = controller.desired();
    let mut seen = Vec::new();
    for minute in [0, 19, 20, 39, 40, 59] {
        let decision = controller.decide(&Observation::new(t(minute * 60), current));
        current = decision.desired;
        seen.push(current);
        assert!(
            decision.reason.starts_with("staircase"),
            "{}",
            decision.reason
        );
    }
    assert_eq!(seen, [2, 2, 5, 5, 3, 3]);
    let changes = controller.history().filter(|d| d.is_change()).count();
    assert_eq!(changes, 3, "1 -> 2 -> 5 -> 3");
}

/// Launches nothing, ever; counts its rounds.
#[derive(Debug)]
struct Idle(Arc<AtomicUsize>);

impl Scheduler for Idle {
    fn schedule(&mut self, _input: &ScheduleInput<'_>) -> Vec<Action> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Vec::new()
    }
}

#[test]
fn a_custom_scheduler_should_place_the_instances() {
    let rounds = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&rounds);
    let sim = Simulation::new(
        spec(r#"[{"type": "c5"}]"#, true),
        cloud(),
        flat(20),
        config(),
    )
    .expect("valid")
    .with_scheduler(Arc::new(move |_spec: &ServiceSpec| {
        Box::new(Idle(Arc::clone(&counter))) as Box<dyn Scheduler>
    }));
    let report = run(sim);
    assert_eq!(report.launches, 0);
    assert_eq!(report.cost_usd, 0.0);
    assert_eq!(report.availability, 0.0, "nothing serves");
    assert_eq!(
        rounds.load(Ordering::SeqCst),
        240,
        "one round per 15 s for an hour"
    );
    assert!(
        report.policy.ends_with("; custom scheduler"),
        "{}",
        report.policy
    );
}

/// c5 at 1.0 on demand, spot at 0.25 anywhere, any time.
#[derive(Debug)]
struct Flat;

impl PricingOracle for Flat {
    fn on_demand_price(&self, instance_type: &str) -> eas_core::Result<f64> {
        if instance_type == "c5" {
            Ok(1.0)
        } else {
            Err(eas_core::Error::NoPrice {
                instance_type: instance_type.to_owned(),
                zone: None,
            })
        }
    }

    fn spot_price(
        &self,
        instance_type: &str,
        _zone: &Zone,
        _at: SystemTime,
    ) -> eas_core::Result<f64> {
        Ok(self.on_demand_price(instance_type)? / 4.0)
    }

    fn spot_history(
        &self,
        instance_type: &str,
        zone: &Zone,
        from: SystemTime,
        _to: SystemTime,
    ) -> eas_core::Result<Vec<PricePoint>> {
        Ok(vec![PricePoint::new(
            from,
            self.spot_price(instance_type, zone, from)?,
        )])
    }
}

#[test]
fn any_pricing_oracle_should_price_the_simulated_cloud() {
    let cloud = SimCloud::from_oracle(Arc::new(Flat), [("c5".to_owned(), Zone::from("z"))]);
    assert_eq!(cloud.spot_markets().count(), 1);
    let sim = Simulation::new(spec(SPOT_THEN_ON_DEMAND, false), cloud, flat(20), config())
        .expect("valid")
        .with_autoscaler(Arc::new(|_spec: &ServiceSpec| {
            Box::new(Staircase { start: t(0) }) as Box<dyn Autoscaler>
        }));
    let report = run(sim);
    let hours = report.total_hours();
    assert!(hours.spot > 0.0 && hours.on_demand == 0.0, "{hours:?}");
    // Spot at 0.25 (with the one-hour protection: no discount) per instance-hour.
    assert!(
        (report.cost_usd - 0.25 * hours.spot).abs() < 1e-6,
        "{report:?}"
    );

    let no_market = SimCloud::from_oracle(Arc::new(Flat), []);
    let err = Simulation::new(
        spec(SPOT_THEN_ON_DEMAND, false),
        no_market,
        flat(20),
        config(),
    )
    .expect_err("a spot entry needs a market");
    assert!(
        err.to_string().contains("no spot price in any zone"),
        "{err}"
    );
}
