//! Pricing oracles against the real traces in `shared/data`: AWS spot history, GCP weekly
//! snapshots and SkyPilot availability traces; bad input; bids on hand-made curves.
//!
//! When the shared data directory is missing, the tests that need it print `SKIPPED` and pass,
//! unless `EAS_REQUIRE_ALL=1`, where they fail (`support::skip`).

mod support;

use std::time::{Duration, Instant, SystemTime};

use eas_core::PricingOracle;
use eas_core::pricing::{DEFAULT_BID_FRACTION, PricePoint};
use eas_core::resources::Zone;
use eas_scheduler::Error;
use eas_scheduler::pricing::{
    AvailabilityTrace, BidPolicy, FractionBid, HistoryBid, PriceTable, TraceOracle, aws, gcp,
    skypilot, window_stats,
};
use support::{data, open};

const AWS_SPOT: &str = "aws_spot_price_history/spot_prices_us-east-1_2021-03-02_to_2021-05-31.csv";
const AWS_ON_DEMAND: &str = "aws_spot_price_history/on_demand_prices_us-east-1.csv";
const GCP: &str = "gcp_spot_price_weekly/gcp_ondemand_vs_spot_weekly_2023-05_to_2026-07.csv";

fn time(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(SystemTime::from)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
}

fn aws_oracle(test: &str) -> Option<TraceOracle> {
    let (spot, on_demand) = (data(test, AWS_SPOT)?, data(test, AWS_ON_DEMAND)?);
    let started = Instant::now();
    let oracle = aws::load(open(&spot), AWS_SPOT, open(&on_demand), AWS_ON_DEMAND)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("loaded {AWS_SPOT} in {:?}", started.elapsed());
    Some(oracle)
}

#[test]
fn aws_history_should_load_one_series_per_type_and_zone() {
    let Some(oracle) = aws_oracle("aws_history_should_load_one_series_per_type_and_zone") else {
        return;
    };
    assert_eq!(oracle.series_count(), 25, "5 types x 5 zones");
    assert_eq!(
        oracle.instance_types(),
        [
            "c5.2xlarge",
            "c5.4xlarge",
            "c5.9xlarge",
            "c5.large",
            "g4dn.xlarge"
        ]
    );
    let points: usize = oracle
        .series_keys()
        .map(|(t, z)| oracle.series(t, z).map_or(0, <[_]>::len))
        .sum();
    assert_eq!(points, 4352, "5,329 rows, repeated prices dropped");
    assert_eq!(oracle.on_demand_price("c5.2xlarge").ok(), Some(0.34));
    assert_eq!(oracle.on_demand_price("g4dn.xlarge").ok(), Some(0.526));
    let (all_priced, last_change) = oracle.span().expect("series");
    assert_eq!(all_priced, time("2021-03-02T22:08:26Z"));
    assert_eq!(last_change, time("2021-05-31T01:20:09Z"));
}

#[test]
fn aws_spot_price_should_be_the_csv_row_in_force() {
    let Some(oracle) = aws_oracle("aws_spot_price_should_be_the_csv_row_in_force") else {
        return;
    };
    let zone = Zone::from("us-east-1b");
    // Lines 418 and 419 of the CSV:
    // c5.2xlarge,us-east-1b,2021-04-14T21:14:41Z,us-east-1,Linux/UNIX,0.186800,2021-05-30
    // c5.2xlarge,us-east-1b,2021-04-15T03:03:27Z,us-east-1,Linux/UNIX,0.186700,2021-05-30
    let cases = [
        ("2021-04-14T21:14:40Z", 0.1866),
        ("2021-04-14T21:14:41Z", 0.1868),
        ("2021-04-15T00:00:00Z", 0.1868),
        ("2021-04-15T03:03:26Z", 0.1868),
        ("2021-04-15T03:03:27Z", 0.1867),
    ];
    for (at, want) in cases {
        let price = oracle.spot_price("c5.2xlarge", &zone, time(at));
        assert_eq!(price.ok(), Some(want), "at {at}");
    }
    // Before the first row of the series (2021-03-02T04:45:36Z at 0.1793), there is no price.
    let first = time("2021-03-02T04:45:36Z");
    assert_eq!(
        oracle.spot_price("c5.2xlarge", &zone, first).ok(),
        Some(0.1793)
    );
    let err = oracle
        .spot_price("c5.2xlarge", &zone, first - Duration::from_secs(1))
        .expect_err("before the trace");
    assert!(matches!(err, eas_core::Error::NoPrice { .. }));
}

#[test]
fn aws_history_over_48_hours_should_start_with_the_price_in_force() {
    let Some(oracle) = aws_oracle("aws_history_over_48_hours_should_start_with_the_price_in_force")
    else {
        return;
    };
    let zone = Zone::from("us-east-1b");
    let (from, to) = (time("2021-04-13T00:00:00Z"), time("2021-04-15T00:00:00Z"));
    let history = oracle
        .spot_history("c5.2xlarge", &zone, from, to)
        .expect("known series");
    assert_eq!(history.len(), 8);
    assert!(
        history[0].at < from,
        "the point in force at `from` is dated before it"
    );
    assert!(history.windows(2).all(|w| w[0].at < w[1].at));
    assert!(history.iter().skip(1).all(|p| p.at > from && p.at <= to));
    for point in &history {
        assert_eq!(
            oracle
                .spot_price("c5.2xlarge", &zone, point.at.max(from))
                .ok(),
            Some(point.usd_per_hour)
        );
    }
    let stats = window_stats(&history, from, to).expect("covered");
    assert_eq!((stats.min, stats.max), (0.1859, 0.1868));
    assert!((stats.mean - 0.186_262).abs() < 1e-6, "{}", stats.mean);
    assert_eq!(stats.covered, Duration::from_secs(48 * 3600));
}

#[test]
fn aws_bids_should_lie_between_the_window_minimum_and_on_demand() {
    let Some(oracle) = aws_oracle("aws_bids_should_lie_between_the_window_minimum_and_on_demand")
    else {
        return;
    };
    let at = time("2021-05-15T12:00:00Z");
    let from = at - eas_core::pricing::HISTORY_WINDOW;
    for (instance_type, zone) in oracle.series_keys() {
        let bid = oracle
            .recommend_bid(instance_type, zone, at)
            .expect("known");
        let history = oracle
            .spot_history(instance_type, zone, from, at)
            .expect("known");
        let stats = window_stats(&history, from, at).expect("covered");
        let on_demand = oracle.on_demand_price(instance_type).expect("listed");
        assert!(
            stats.min <= bid && bid <= stats.max.min(on_demand),
            "{instance_type} in {zone}: bid {bid}, window {stats:?}, on-demand {on_demand}"
        );
        // The 20 % rule would bid below every c5 spot price in this trace (0.38-0.59 of
        // on-demand): the history bid is what keeps a machine.
        assert!(
            bid > on_demand * DEFAULT_BID_FRACTION,
            "{instance_type} in {zone}"
        );
    }
    let z = Zone::from("us-east-1b");
    assert_eq!(
        oracle
            .recommend_bid("c5.2xlarge", &z, time("2021-04-15T00:00:00Z"))
            .ok(),
        Some(0.1868)
    );
    assert_eq!(
        oracle.recommend_bid("g4dn.xlarge", &z, at).ok(),
        Some(0.1578),
        "flat price"
    );
    let early = oracle
        .recommend_bid("c5.2xlarge", &z, time("2021-02-01T00:00:00Z"))
        .expect("known");
    assert!(
        (early - 0.34 * DEFAULT_BID_FRACTION).abs() < 1e-12,
        "no history: 20 % rule"
    );
}

#[test]
fn unknown_types_and_zones_should_have_no_price() {
    let Some(oracle) = aws_oracle("unknown_types_and_zones_should_have_no_price") else {
        return;
    };
    let at = time("2021-04-15T00:00:00Z");
    let cases = [
        (
            "p3.2xlarge",
            "us-east-1a",
            "no price for instance type `p3.2xlarge` in zone `us-east-1a`",
        ),
        (
            "c5.large",
            "us-east-1e",
            "no price for instance type `c5.large` in zone `us-east-1e`",
        ),
    ];
    for (instance_type, zone, message) in cases {
        let zone = Zone::from(zone);
        for err in [
            oracle.spot_price(instance_type, &zone, at).err(),
            oracle.spot_history(instance_type, &zone, at, at).err(),
            oracle.recommend_bid(instance_type, &zone, at).err(),
        ] {
            let err = err.expect("no price");
            assert!(matches!(err, eas_core::Error::NoPrice { .. }));
            assert_eq!(err.to_string(), message);
        }
    }
    let err = oracle.on_demand_price("p3.2xlarge").expect_err("unknown");
    assert_eq!(err.to_string(), "no price for instance type `p3.2xlarge`");
}

#[test]
fn bad_rows_should_fail_with_their_line_number() {
    let Some(path) = data("bad_rows_should_fail_with_their_line_number", AWS_SPOT) else {
        return;
    };
    let text = std::fs::read_to_string(&path).expect("readable");
    let lines: Vec<&str> = text.lines().take(10).collect();
    let good =
        "c5.2xlarge,us-east-1a,2021-03-03T00:00:00Z,us-east-1,Linux/UNIX,0.178000,2021-05-30";
    let cases = [
        (
            "c5.2xlarge,us-east-1a,2021-03-03T00:00:00Z,us-east-1,Linux/UNIX,n/a,2021-05-30",
            "`spot_price_usd_per_hour` is `n/a`",
        ),
        (
            "c5.2xlarge,us-east-1a,2021-03-03 00:00,us-east-1,Linux/UNIX,0.178000,2021-05-30",
            "`timestamp_utc` is `2021-03-03 00:00`",
        ),
        (
            "c5.2xlarge,us-east-1a,2021-03-03T00:00:00Z,us-east-1",
            "missing column `product_description`",
        ),
        (
            "c5.2xlarge,us-east-1a,2021-03-03T00:00:00Z,us-east-1,Linux/UNIX,,2021-05-30",
            "empty `spot_price_usd_per_hour`",
        ),
    ];
    assert!(aws::read_spot_csv(format!("{}\n{good}\n", lines.join("\n")).as_bytes(), "ok").is_ok());
    for (bad, reason_start) in cases {
        // Header on line 1, real rows on 2-7, the bad row on line 8.
        let csv = format!(
            "{}\n{bad}\n{}\n",
            lines[..7].join("\n"),
            lines[7..].join("\n")
        );
        match aws::read_spot_csv(csv.as_bytes(), "corrupt.csv") {
            Err(Error::Trace {
                trace,
                line,
                reason,
            }) => {
                assert_eq!((trace.as_str(), line), ("corrupt.csv", 8), "{bad}");
                assert!(reason.starts_with(reason_start), "{reason}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let err = aws::read_on_demand_csv(
        "instance_type,region\nc5.large,us-east-1\n".as_bytes(),
        "od.csv",
    )
    .expect_err("no price column");
    assert_eq!(
        err.to_string(),
        "od.csv, line 1: the header has no column `on_demand_usd_per_hour`"
    );
}

#[test]
fn gcp_snapshots_should_replay_spot_and_list_the_latest_on_demand() {
    let Some(path) = data(
        "gcp_snapshots_should_replay_spot_and_list_the_latest_on_demand",
        GCP,
    ) else {
        return;
    };
    let oracle = gcp::read_weekly_csv(open(&path), GCP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(oracle.series_count(), 12, "3 machine types x 4 regions");
    let zone = Zone::from("us-central1");
    // Rows 404..=859 of g2-standard-4 in us-central1 (2023-10-26 .. 2024-05-23) are 0.223804071.
    let cases = [
        ("2023-05-08T06:42:47Z", None),
        ("2023-05-08T06:42:48Z", Some(0.212_049_667)),
        ("2024-01-01T00:00:00Z", Some(0.223_804_071)),
        ("2026-07-22T14:23:37Z", Some(0.397_336)),
        ("2030-01-01T00:00:00Z", Some(0.397_336)),
    ];
    for (at, want) in cases {
        assert_eq!(
            oracle.spot_price("g2-standard-4", &zone, time(at)).ok(),
            want,
            "at {at}"
        );
    }
    assert_eq!(
        oracle.on_demand_price_in("g2-standard-4", &zone).ok(),
        Some(0.706_832_255)
    );
    let highest = oracle.on_demand_price("a2-highgpu-1g").expect("listed");
    for (t, z) in oracle.series_keys().filter(|(t, _)| *t == "a2-highgpu-1g") {
        assert!(oracle.on_demand_price_in(t, z).expect("listed") <= highest);
    }
    let at = time("2026-07-30T12:00:00Z");
    let from = at - eas_core::pricing::HISTORY_WINDOW;
    for (instance_type, zone) in oracle.series_keys() {
        let bid = oracle
            .recommend_bid(instance_type, zone, at)
            .expect("known");
        let stats = oracle
            .spot_history(instance_type, zone, from, at)
            .ok()
            .and_then(|h| window_stats(&h, from, at))
            .expect("covered");
        let on_demand = oracle
            .on_demand_price_in(instance_type, zone)
            .expect("listed");
        assert!(
            stats.min <= bid && bid <= on_demand,
            "{instance_type} in {zone}: {bid}"
        );
    }
}

#[test]
fn skypilot_traces_should_load_with_their_measured_availability() {
    // File, capacity, fraction of ticks with every instance up, with at least one, drops.
    let cases = [
        (
            "availability_1node_aws-02-15-2023_us-east-1a_v100_1.json",
            1,
            0.167,
            0.167,
            253,
        ),
        (
            "availability_1node_aws-02-15-2023_us-east-1c_v100_1.json",
            1,
            0.467,
            0.467,
            343,
        ),
        (
            "availability_1node_aws-02-15-2023_us-east-2a_v100_1.json",
            1,
            0.759,
            0.759,
            145,
        ),
        (
            "availability_1node_aws-02-15-2023_us-west-2a_v100_1.json",
            1,
            0.883,
            0.883,
            158,
        ),
        (
            "preemption_1node_aws-04-19-2023_us-east-1b_intel_64.json",
            1,
            0.851,
            0.851,
            66,
        ),
        (
            "preemption_1node_aws-04-19-2023_us-east-1c_intel_64.json",
            1,
            0.639,
            0.639,
            128,
        ),
        (
            "preemption_4node_aws-08-03-2023_us-east-1f_v100_1.json",
            4,
            0.304,
            0.383,
            136,
        ),
        (
            "preemption_4node_aws-08-03-2023_us-east-2a_v100_1.json",
            4,
            0.712,
            0.749,
            60,
        ),
    ];
    for (file, capacity, full, any, drops) in cases {
        let Some(path) = data(
            "skypilot_traces_should_load_with_their_measured_availability",
            &format!("skypilot_spot_traces/{file}"),
        ) else {
            return;
        };
        let start = skypilot::start_from_name(file).expect("a date in the name");
        let trace = AvailabilityTrace::from_reader(open(&path), file, start)
            .unwrap_or_else(|e| panic!("{e}"));
        println!(
            "{file}: {} ticks of {:?}, {:.3} available, {} drops",
            trace.len(),
            trace.gap(),
            trace.availability_fraction(),
            trace.preemptions().len()
        );
        assert_eq!(trace.capacity(), capacity, "{file}");
        assert!(
            (trace.full_availability_fraction() - full).abs() < 5e-4,
            "{file}"
        );
        assert!((trace.availability_fraction() - any).abs() < 5e-4, "{file}");
        assert_eq!(trace.preemptions().len(), drops, "{file}");
        let first_drop = trace.preemptions()[0];
        assert!(!trace.is_available(first_drop) || capacity > 1, "{file}");
        assert!(
            !trace.is_available(trace.end()),
            "{file}: nothing past the end"
        );
        assert!(skypilot::zone_from_name(file).is_some());
        assert!(skypilot::instance_type_from_name(file).is_some());
    }
}

#[test]
fn skypilot_prices_should_feed_a_trace_oracle() {
    let file = "preemption_1node_aws-04-19-2023_us-east-1b_intel_64.json";
    let Some(path) = data(
        "skypilot_prices_should_feed_a_trace_oracle",
        &format!("skypilot_spot_traces/{file}"),
    ) else {
        return;
    };
    let start = skypilot::start_from_name(file).expect("a date");
    let trace = AvailabilityTrace::from_reader(open(&path), file, start).expect("valid");
    let series = trace.price_series().expect("this file has prices");
    assert_eq!(series.len(), 24, "23 changes after the first price");
    let (zone, instance_type) = (
        skypilot::zone_from_name(file).expect("zone"),
        skypilot::instance_type_from_name(file).expect("type"),
    );
    let oracle = TraceOracle::new()
        .with_on_demand(instance_type, 4.032)
        .with_series(instance_type, zone.clone(), series);
    let stats = oracle
        .spot_history(instance_type, &zone, trace.start(), trace.end())
        .ok()
        .and_then(|h| window_stats(&h, trace.start(), trace.end()))
        .expect("covered");
    assert_eq!((stats.min, stats.max), (1.2754, 1.4107));
    let at = trace.start() + Duration::from_secs(3 * 24 * 3600);
    assert_eq!(
        oracle.spot_price(instance_type, &zone, at).ok(),
        trace.price_at(at)
    );
    let bid = oracle
        .recommend_bid(instance_type, &zone, at)
        .expect("known");
    assert!((1.2754..=1.4107).contains(&bid), "{bid}");
}

#[test]
fn a_p95_bid_should_cover_95_percent_of_the_window() {
    let h = |hours: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(hours * 3600);
    // Over the 48 h before hour 100: 0.30 for 40 h, a 2 h spike at 0.90, 0.35 for 6 h.
    let oracle = TraceOracle::new().with_on_demand("t", 1.0).with_series(
        "t",
        "z",
        [
            PricePoint::new(h(0), 0.30),
            PricePoint::new(h(92), 0.90),
            PricePoint::new(h(94), 0.35),
        ],
    );
    let zone = Zone::from("z");
    // 0.30 holds 83 % of the window, 0.35 96 %: p95 is 0.35, not the spike.
    assert_eq!(oracle.recommend_bid("t", &zone, h(100)).ok(), Some(0.35));
    let p99 = HistoryBid::new().with_percentile(99.0).expect("valid");
    assert_eq!(
        oracle
            .clone()
            .with_bid_policy(p99)
            .recommend_bid("t", &zone, h(100))
            .ok(),
        Some(0.90)
    );
    let p80 = HistoryBid::new().with_percentile(80.0).expect("valid");
    assert_eq!(p80.recommend(&oracle, "t", &zone, h(100)).ok(), Some(0.30));
    // Capped at on-demand.
    let cheap = oracle.clone().with_on_demand("t", 0.5).with_bid_policy(p99);
    assert_eq!(cheap.recommend_bid("t", &zone, h(100)).ok(), Some(0.5));
    // Works over a static table as well: one constant price.
    let table = PriceTable::builder()
        .with_on_demand("t", 2.0)
        .with_spot_fraction("t", 0.3)
        .build()
        .expect("valid");
    let bid = HistoryBid::new()
        .recommend(&table, "t", &zone, h(100))
        .expect("priced");
    assert!((bid - 0.6).abs() < 1e-12);
    let bid = FractionBid::default()
        .recommend(&table, "t", &zone, h(100))
        .expect("priced");
    assert!((bid - 0.4).abs() < 1e-12);
}
