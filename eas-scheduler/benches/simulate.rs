//! Simulator figures (not pass/fail): simulated hours per wall-second on the 1-hour Azure
//! trace (one hour and repeated over a week), and the three example policies' cost,
//! availability and p99 side by side on the shared traces.
//!
//! `cargo bench -p eas-scheduler --bench simulate` (reads `../shared/data` beside the checkout;
//! says SKIPPED and exits when it is missing). Spot availability of c5.2xlarge in the five
//! us-east-1 zones is played by the SkyPilot traces (p3.2xlarge probes of 2023) listed in
//! [`AVAILABILITY`]; prices are the AWS 2021 history; arrivals the Azure conversation trace.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use eas_core::spec::ServiceSpec;
use eas_scheduler::pricing::{AvailabilityTrace, aws};
use eas_scheduler::sim::{
    Arrivals, Availability, HedgePolicy, Report, SimCloud, SimConfig, Simulation,
};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/services");
const INSTANCE_QPS: f64 = 2.0;
const HEDGE: u32 = 1;
/// The published SkyServe figure: 43 % lower cost than on-demand at high availability.
const SKYSERVE_SAVINGS: f64 = 0.43;

/// Which SkyPilot trace plays the spot availability of c5.2xlarge in which zone.
const AVAILABILITY: [(&str, &str); 5] = [
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

fn open(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn spec(name: &str) -> Result<ServiceSpec, String> {
    let path = PathBuf::from(EXAMPLES).join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    ServiceSpec::from_json_str(&text).map_err(|e| format!("{name}: {e}"))
}

fn cloud(data: &Path, start: SystemTime, with_availability: bool) -> Result<SimCloud, String> {
    let dir = data.join("aws_spot_price_history");
    let oracle = aws::load(
        open(&dir.join("spot_prices_us-east-1_2021-03-02_to_2021-05-31.csv"))?,
        "spot.csv",
        open(&dir.join("on_demand_prices_us-east-1.csv"))?,
        "on_demand.csv",
    )
    .map_err(|e| e.to_string())?;
    let mut cloud = SimCloud::new(oracle);
    if with_availability {
        for (zone, file) in AVAILABILITY {
            let path = data.join("skypilot_spot_traces").join(file);
            let trace = AvailabilityTrace::from_reader(open(&path)?, file, start)
                .map_err(|e| e.to_string())?;
            cloud = cloud.with_availability(Availability::new("c5.2xlarge", zone, &trace, start));
        }
    }
    Ok(cloud)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Simulated hours per wall-second of `spec` over `hours`, median of `runs`.
fn speed(sim: &Simulation, hours: f64, runs: usize) -> Result<(f64, f64), String> {
    let mut rates = Vec::new();
    let mut walls = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let report = sim.run().map_err(|e| e.to_string())?;
        let wall = t0.elapsed().as_secs_f64();
        std::hint::black_box(report);
        rates.push(hours / wall);
        walls.push(wall);
    }
    Ok((median(rates), median(walls)))
}

fn row(name: &str, r: &Report) {
    let h = r.total_hours();
    println!(
        "{name:<22} {:>9.2} {:>9.2} {:>8.2} {:>8.1}% {:>8.1}% {:>9.5} {:>9.0} {:>9.0} {:>6} {:>8.1} {:>8.1}",
        r.cost_usd,
        r.on_demand_cost_usd,
        r.optimal_cost_usd,
        100.0 * r.savings_vs_on_demand,
        100.0 * (1.0 - r.optimal_cost_usd / r.on_demand_cost_usd),
        r.availability,
        r.p50_ms,
        r.p99_ms,
        r.preemptions,
        h.spot,
        h.on_demand
    );
}

fn main() -> Result<(), String> {
    let data = PathBuf::from(DATA);
    let azure = data.join("azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv");
    if !azure.exists() {
        println!("SKIPPED: simulate bench: {} not found", azure.display());
        return Ok(());
    }
    let arrivals = Arrivals::from_csv(open(&azure)?, "azure.csv").map_err(|e| e.to_string())?;
    // 2021-03-10T00:00:00Z, inside the AWS price history.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_615_334_400);
    let cloud_full = cloud(&data, start, true)?;
    println!(
        "arrivals: Azure LLM conversation trace, {} requests over {} s (mean {:.2} req/s), repeated; instance_qps {INSTANCE_QPS}",
        arrivals.requests_per_period(),
        arrivals.period_seconds(),
        arrivals.mean_qps()
    );

    println!("\n== simulation speed (simulated hours per wall-second, median) ==");
    let hour = Duration::from_secs(arrivals.period_seconds());
    let week = Duration::from_secs(7 * 24 * 3_600);
    for (name, file, hedge) in [
        (
            "on-demand (1 engine)",
            "sim-on-demand.json",
            HedgePolicy::NONE,
        ),
        (
            "eas-spot (2 engines)",
            "sim-eas-spot.json",
            HedgePolicy::NONE,
        ),
    ] {
        for (label, duration, runs) in [("1 h trace", hour, 9), ("1 week", week, 3)] {
            let config = SimConfig::new(start, duration, INSTANCE_QPS).with_hedge(hedge);
            let sim = Simulation::new(spec(file)?, cloud_full.clone(), arrivals.clone(), config)
                .map_err(|e| e.to_string())?;
            let hours = duration.as_secs_f64() / 3_600.0;
            let (rate, wall) = speed(&sim, hours, runs)?;
            println!(
                "{name:<22} {label:<10} {rate:>10.0} sim-h/s  ({wall:.3} s wall for {hours:.1} h)"
            );
        }
    }

    for (title, cloud) in [
        ("prices + SkyPilot availability", cloud_full.clone()),
        (
            "prices only (no availability traces)",
            cloud(&data, start, false)?,
        ),
    ] {
        println!("\n== three policies, 1 week from 2021-03-10, {title} ==");
        println!(
            "{:<22} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8}",
            "policy",
            "cost $",
            "od $",
            "bound $",
            "savings",
            "bound sv",
            "avail",
            "p50 ms",
            "p99 ms",
            "preem",
            "spot h",
            "od h"
        );
        for (name, file, hedge) in [
            ("all on-demand", "sim-on-demand.json", HedgePolicy::NONE),
            ("EAS ordered + bids", "sim-eas-spot.json", HedgePolicy::NONE),
            (
                "SkyServe-like hedge",
                "sim-skyserve-hedge.json",
                HedgePolicy::over_provision(HEDGE),
            ),
        ] {
            let config = SimConfig::new(start, week, INSTANCE_QPS).with_hedge(hedge);
            let report = Simulation::new(spec(file)?, cloud.clone(), arrivals.clone(), config)
                .and_then(|s| s.run())
                .map_err(|e| e.to_string())?;
            row(name, &report);
        }
    }
    println!(
        "\nreference: SkyServe reports {:.0}% lower cost than on-demand at high availability; \
         savings above are 1 - cost / on-demand cost of the same autoscaler (hedge: +{HEDGE} spare)",
        100.0 * SKYSERVE_SAVINGS
    );
    Ok(())
}
