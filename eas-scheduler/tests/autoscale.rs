//! Autoscaler behaviours over time: tolerance, stabilisation, rate policies, bounds, the EAS
//! strategies, scaling to and from zero, and scheduled scaling across time zones.

use std::time::{Duration, SystemTime};

use eas_core::Autoscaler;
use eas_core::autoscaler::{InstanceSample, Observation, Recommendation, metric};
use eas_core::resources::InstanceId;
use eas_core::spec::AutoscalerSpec;
use eas_scheduler::autoscale::{
    DEFAULT_SCHEDULE_LOOKBACK, EasAutoscaler, HpaAutoscaler, HpaBehavior, MetricTarget,
    ScalingRules, bounds_at,
};

/// 2024-03-05T00:00:00Z.
const BASE: u64 = 1_709_596_800;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(BASE + secs)
}

fn utc(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("an RFC 3339 time")
        .into()
}

/// `values.len()` running, ready instances, each reporting `name` at its value.
fn instances(name: &str, values: &[f64]) -> Vec<InstanceSample> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| InstanceSample::new(InstanceId::new(format!("i{i}"))).with_metric(name, *v))
        .collect()
}

/// `n` instances each reporting `name` at `value`.
fn uniform(name: &str, n: u32, value: f64) -> Vec<InstanceSample> {
    instances(name, &vec![value; n as usize])
}

fn observe(when: SystemTime, current: u32, samples: Vec<InstanceSample>) -> Observation {
    Observation::new(when, current).with_instances(samples)
}

fn spec(json: &str) -> AutoscalerSpec {
    serde_json::from_str(json).expect("a valid autoscaler block")
}

fn eas(json: &str) -> EasAutoscaler {
    EasAutoscaler::from_spec(&spec(json)).expect("a valid autoscaler")
}

fn no_scale_down_window() -> HpaBehavior {
    HpaBehavior::default().with_scale_down(
        ScalingRules::default_scale_down().with_stabilization_window(Duration::ZERO),
    )
}

fn check(r: &Recommendation, expected: u32, label: &str) {
    assert_eq!(r.replicas, expected, "{label}: {}", r.reason);
}

#[test]
fn ratios_within_tolerance_should_keep_the_current_count() {
    // (per-instance qps against 10 on 10 instances, expected)
    let cases = [
        (10.9, 10),
        (9.1, 10),
        (10.0, 10),
        (11.5, 12),
        (8.5, 9),
        (12.0, 12),
    ];
    for (qps, expected) in cases {
        let mut hpa = HpaAutoscaler::new(1, 100)
            .expect("bounds")
            .with_metric(MetricTarget::pods_average(metric::QPS, 10.0))
            .with_behavior(no_scale_down_window());
        let r = hpa.recommend(&observe(at(0), 10, uniform(metric::QPS, 10, qps)));
        check(&r, expected, &format!("qps {qps}"));
    }
}

#[test]
fn a_wider_tolerance_should_absorb_larger_changes() {
    let mut hpa = HpaAutoscaler::new(1, 100)
        .expect("bounds")
        .with_metric(MetricTarget::pods_average(metric::QPS, 10.0))
        .with_tolerance(0.3);
    let r = hpa.recommend(&observe(at(0), 10, uniform(metric::QPS, 10, 12.5)));
    check(&r, 10, "ratio 1.25 within 0.3");
}

#[test]
fn scale_down_should_wait_for_300_seconds_of_lower_recommendations() {
    let mut autoscaler = eas(r#"{"min": 1, "max": 10, "strategies": {"qps": 10}}"#);
    // (seconds, current, per-instance qps, expected)
    let steps = [
        (0, 4, 10.0, 4),
        (15, 4, 1.0, 4),
        (150, 4, 1.0, 4),
        (285, 4, 1.0, 4),
        (299, 4, 1.0, 4),
        // Nothing above 1 was recommended in the 300 s before now.
        (300, 4, 1.0, 1),
        (315, 1, 1.0, 1),
    ];
    for (secs, current, qps, expected) in steps {
        let r = autoscaler.recommend(&observe(
            at(secs),
            current,
            uniform(metric::QPS, current, qps),
        ));
        check(&r, expected, &format!("t={secs}s"));
    }
}

#[test]
fn a_spike_within_the_window_should_hold_the_count_up() {
    let mut autoscaler = eas(r#"{"min": 1, "max": 10, "strategies": {"qps": 10}}"#);
    let steps = [
        (0, 4, 1.0, 4),
        (200, 4, 10.0, 4), // a spike: recommends 4 again
        (300, 4, 1.0, 4),  // the spike at 200 s is still in the window
        (499, 4, 1.0, 4),
        (500, 4, 1.0, 1),
    ];
    for (secs, current, qps, expected) in steps {
        let r = autoscaler.recommend(&observe(
            at(secs),
            current,
            uniform(metric::QPS, current, qps),
        ));
        check(&r, expected, &format!("t={secs}s"));
    }
}

#[test]
fn the_scale_down_window_should_come_from_the_spec_behavior() {
    let mut autoscaler = eas(r#"{"min": 1, "max": 10, "strategies": {"qps": 10},
            "behavior": {"scale_down": {"stabilization_window_seconds": 60}}}"#);
    let steps = [(0, 4, 4), (30, 4, 4), (59, 4, 4), (60, 4, 1)];
    for (secs, current, expected) in steps {
        let r = autoscaler.recommend(&observe(
            at(secs),
            current,
            uniform(metric::QPS, current, 1.0),
        ));
        check(&r, expected, &format!("t={secs}s"));
    }
}

#[test]
fn scale_up_should_add_at_most_four_pods_or_double_per_15_seconds() {
    let mut hpa = HpaAutoscaler::new(1, 100)
        .expect("bounds")
        .with_metric(MetricTarget::pods_average(metric::QPS, 1.0));
    // (seconds, current, expected): each instance sees 50 qps against 1.
    let steps = [
        (0, 2, 6),   // max(2 + 4, 2 × 2)
        (5, 6, 6),   // the period started at 2 replicas
        (15, 6, 12), // a new period: 6 × 2
        (30, 12, 24),
        (45, 24, 48),
        (60, 48, 96),
        (75, 96, 100), // max
    ];
    for (secs, current, expected) in steps {
        let r = hpa.recommend(&observe(
            at(secs),
            current,
            uniform(metric::QPS, current, 50.0),
        ));
        check(&r, expected, &format!("t={secs}s"));
    }
}

#[test]
fn counts_should_stay_within_min_and_max() {
    // (current, per-instance qps against 10, expected) with min 2 and max 5.
    let cases = [
        (3, 100.0, 5, "max"),
        (8, 10.0, 5, "above max"),
        (1, 10.0, 2, "below min"),
        (3, 0.5, 2, "min"),
        (3, 10.0, 3, "steady"),
    ];
    for (current, qps, expected, label) in cases {
        let mut autoscaler = eas(r#"{"min": 2, "max": 5, "strategies": {"qps": 10}}"#)
            .with_behavior(no_scale_down_window());
        let r = autoscaler.recommend(&observe(at(0), current, uniform(metric::QPS, current, qps)));
        check(&r, expected, label);
    }
}

#[test]
fn each_eas_strategy_should_scale_on_its_own_metric() {
    let cpu = |util: f64| {
        (0..2)
            .map(|i| {
                InstanceSample::new(InstanceId::new(format!("i{i}")))
                    .with_cpu_request_millis(1_000)
                    .with_metric(metric::CPU_MILLIS, util * 10.0)
            })
            .collect::<Vec<_>>()
    };
    // (strategies, observation, expected, strategy named in the reason)
    let cases = [
        (
            r#"{"qps": 15}"#,
            observe(at(0), 3, instances(metric::QPS, &[20.0, 10.0, 30.0])),
            4,
            "qps",
        ),
        (
            r#"{"qps": 15}"#,
            observe(at(0), 3, vec![]).with_service_metric(metric::QPS, 90.0),
            6,
            "qps",
        ),
        (r#"{"cpu": 45}"#, observe(at(0), 2, cpu(90.0)), 4, "cpu"),
        (
            r#"{"cpu": 45}"#,
            observe(at(0), 2, uniform(metric::CPU_UTILIZATION, 2, 90.0)),
            4,
            "cpu",
        ),
        (
            r#"{"gpu": 40}"#,
            observe(at(0), 2, uniform(metric::GPU_UTILIZATION, 2, 80.0)),
            4,
            "gpu",
        ),
        (
            r#"{"queue": 5}"#,
            observe(at(0), 2, vec![]).with_service_metric(metric::QUEUE_BACKLOG, 30.0),
            6,
            "queue",
        ),
        (
            r#"{"queue": 5}"#,
            observe(at(0), 4, vec![]).with_service_metric(metric::QUEUE_BACKLOG, 21.0),
            4,
            "queue",
        ),
        (
            r#"{"custom": {"tokens_per_s": 100}}"#,
            observe(at(0), 2, uniform("tokens_per_s", 2, 300.0)),
            6,
            "tokens_per_s",
        ),
    ];
    for (strategies, observation, expected, name) in cases {
        let json = format!(r#"{{"min": 1, "max": 20, "strategies": {strategies}}}"#);
        let r = eas(&json).recommend(&observation);
        check(&r, expected, strategies);
        assert!(
            r.reason.contains(&format!(": {name}:")),
            "{strategies}: the reason should name {name}: {}",
            r.reason
        );
    }
}

#[test]
fn several_strategies_should_take_the_largest_and_say_which() {
    let mut autoscaler =
        eas(r#"{"min": 1, "max": 20, "strategies": {"qps": 10, "gpu": 40, "queue": 10}}"#);
    let samples = (0..2)
        .map(|i| {
            InstanceSample::new(InstanceId::new(format!("i{i}")))
                .with_metric(metric::QPS, 15.0) // qps: 3
                .with_metric(metric::GPU_UTILIZATION, 100.0) // gpu: 5
        })
        .collect();
    let observation = observe(at(0), 2, samples).with_service_metric(metric::QUEUE_BACKLOG, 20.0); // queue: 2
    let r = autoscaler.recommend(&observation);
    check(&r, 5, "gpu wins");
    assert!(r.reason.starts_with("5 replicas: gpu:"), "{}", r.reason);
}

#[test]
fn the_hpa_should_take_the_largest_metric_and_name_it() {
    let mut hpa = HpaAutoscaler::new(1, 20)
        .expect("bounds")
        .with_metric(MetricTarget::pods_average(metric::QPS, 10.0))
        .with_metric(MetricTarget::external_average("orders", 2.0));
    let observation =
        observe(at(0), 2, uniform(metric::QPS, 2, 15.0)).with_service_metric("orders", 11.0);
    let r = hpa.recommend(&observation);
    check(&r, 6, "orders: ceil(11 / 2)");
    assert!(
        r.reason.contains("external orders average 2"),
        "{}",
        r.reason
    );
}

#[test]
fn load_should_scale_a_service_up_from_zero() {
    // (strategies, observation at 0 replicas, expected)
    let cases = [
        (
            r#"{"queue": 5}"#,
            Observation::new(at(0), 0).with_service_metric(metric::QUEUE_BACKLOG, 3.0),
            1,
        ),
        (
            r#"{"queue": 5}"#,
            Observation::new(at(0), 0).with_service_metric(metric::QUEUE_BACKLOG, 12.0),
            3,
        ),
        (
            r#"{"qps": 10}"#,
            Observation::new(at(0), 0).with_service_metric(metric::QPS, 5.0),
            1,
        ),
        // No QPS sample to size it from, but a backlog: at least one.
        (
            r#"{"qps": 10}"#,
            Observation::new(at(0), 0).with_service_metric(metric::QUEUE_BACKLOG, 4.0),
            1,
        ),
        (
            r#"{"queue": 5}"#,
            Observation::new(at(0), 0).with_service_metric(metric::QUEUE_BACKLOG, 0.0),
            0,
        ),
    ];
    for (strategies, observation, expected) in cases {
        let json = format!(r#"{{"min": 0, "max": 10, "strategies": {strategies}}}"#);
        let r = eas(&json).recommend(&observation);
        check(&r, expected, strategies);
    }
}

#[test]
fn no_load_should_scale_to_zero_after_the_window_when_min_is_zero() {
    let mut autoscaler = eas(r#"{"min": 0, "max": 10, "strategies": {"qps": 10, "queue": 5}}"#);
    let idle = |secs: u64, current: u32| {
        observe(at(secs), current, uniform(metric::QPS, current, 0.0))
            .with_service_metric(metric::QUEUE_BACKLOG, 0.0)
    };
    let steps = [
        (0, 2, 2),
        (150, 2, 2),
        (299, 2, 2),
        (300, 2, 0),
        (315, 0, 0),
    ];
    for (secs, current, expected) in steps {
        let r = autoscaler.recommend(&idle(secs, current));
        check(&r, expected, &format!("t={secs}s"));
        if expected == 0 {
            assert!(r.reason.contains("no load"), "{}", r.reason);
        }
    }
    // And back up when requests arrive.
    let r = autoscaler
        .recommend(&Observation::new(at(330), 0).with_service_metric(metric::QUEUE_BACKLOG, 7.0));
    check(&r, 2, "backlog 7 against 5");
}

#[test]
fn no_load_should_stop_at_min_when_min_is_not_zero() {
    let mut autoscaler = eas(r#"{"min": 1, "max": 10, "strategies": {"qps": 10}}"#)
        .with_behavior(no_scale_down_window());
    let r = autoscaler.recommend(&observe(at(0), 3, uniform(metric::QPS, 3, 0.0)));
    check(&r, 1, "min 1");
}

const SHANGHAI_DAY_AND_NIGHT: &str = r#"{
    "min": 1, "max": 10, "strategies": {"qps": 10},
    "schedules": [
        {"schedule": "0 8 * * *", "timezone": "Asia/Shanghai", "min": 5},
        {"schedule": "0 20 * * *", "timezone": "Asia/Shanghai", "max": 3}
    ]
}"#;

#[test]
fn schedules_should_be_read_in_their_own_timezone() {
    let spec = spec(SHANGHAI_DAY_AND_NIGHT);
    // (UTC time, bounds in force)
    let cases = [
        ("2024-03-05T00:30:00Z", (5, 10)), // 08:30 in Shanghai: the morning entry
        ("2024-03-05T00:00:00Z", (5, 10)), // 08:00 exactly
        ("2024-03-04T23:59:59Z", (1, 3)),  // 07:59:59: still last night's entry
        ("2024-03-05T11:59:00Z", (5, 10)), // 19:59
        ("2024-03-05T12:00:00Z", (1, 3)),  // 20:00
    ];
    for (when, (min, max)) in cases {
        let bounds = bounds_at(&spec, utc(when), DEFAULT_SCHEDULE_LOOKBACK);
        assert_eq!(
            (bounds.min, bounds.max),
            (min, max),
            "{when}: {}",
            bounds.reason
        );
        assert!(bounds.reason.contains("Asia/Shanghai"), "{}", bounds.reason);
    }
}

#[test]
fn a_schedule_in_force_should_override_the_bounds_of_recommendations() {
    let mut autoscaler = eas(SHANGHAI_DAY_AND_NIGHT);
    // (UTC time, current, expected): light load (1 qps per instance) everywhere.
    let steps = [
        ("2024-03-05T00:30:00Z", 2, 5), // morning: min 5
        ("2024-03-05T00:45:00Z", 5, 5),
        ("2024-03-05T12:00:00Z", 5, 3), // evening: max 3
        // Within [1, 3] the light load decides: no higher recommendation in the last 300 s.
        ("2024-03-05T12:15:00Z", 3, 1),
    ];
    for (when, current, expected) in steps {
        let r = autoscaler.recommend(&observe(
            utc(when),
            current,
            uniform(metric::QPS, current, 1.0),
        ));
        check(&r, expected, when);
        assert!(r.reason.contains("schedule #"), "{when}: {}", r.reason);
    }
}

#[test]
fn schedules_should_follow_daylight_saving_time() {
    let spec = spec(
        r#"{"min": 1, "max": 10, "schedules": [
            {"schedule": "0 9 * * MON-FRI", "timezone": "America/New_York", "min": 4},
            {"schedule": "0 18 * * MON-FRI", "timezone": "America/New_York", "max": 2}
        ]}"#,
    );
    // New York moved to EDT (UTC-4) on Sunday 2024-03-10.
    let cases = [
        ("2024-03-08T14:30:00Z", (4, 10)), // Fri 09:30 EST
        ("2024-03-09T12:00:00Z", (1, 2)),  // Saturday: Friday evening's entry
        ("2024-03-11T12:30:00Z", (1, 2)),  // Mon 08:30 EDT
        ("2024-03-11T13:30:00Z", (4, 10)), // Mon 09:30 EDT
    ];
    for (when, (min, max)) in cases {
        let bounds = bounds_at(&spec, utc(when), DEFAULT_SCHEDULE_LOOKBACK);
        assert_eq!(
            (bounds.min, bounds.max),
            (min, max),
            "{when}: {}",
            bounds.reason
        );
    }
}

#[test]
fn a_fixed_count_schedule_should_hold_the_count_whatever_the_load() {
    let mut autoscaler = eas(r#"{"min": 1, "max": 10, "strategies": {"qps": 10},
            "schedules": [{"schedule": "0 0 * * *", "replicas": 7}]}"#);
    // (seconds after midnight UTC, current, per-instance qps, expected)
    let steps = [
        (60, 3, 100.0, 7),
        (120, 7, 100.0, 7),
        (180, 7, 0.0, 7),
        (240, 9, 5.0, 7),
    ];
    for (secs, current, qps, expected) in steps {
        let r = autoscaler.recommend(&observe(
            at(secs),
            current,
            uniform(metric::QPS, current, qps),
        ));
        check(&r, expected, &format!("t={secs}s"));
        assert!(r.reason.contains("fixed at 7"), "{}", r.reason);
    }
}

#[test]
fn recommendations_should_be_deterministic() {
    let run = || {
        let mut autoscaler = eas(SHANGHAI_DAY_AND_NIGHT);
        (0..40u64)
            .map(|i| {
                let current = 1 + u32::try_from(i % 7).expect("small");
                let qps = [3.0, 25.0, 8.0, 0.0][usize::try_from(i % 4).expect("small")];
                autoscaler.recommend(&observe(
                    at(i * 1_800),
                    current,
                    uniform(metric::QPS, current, qps),
                ))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}
