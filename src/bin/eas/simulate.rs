//! `eas simulate`: replay a service's scaling and placement policy on price, availability and
//! arrival traces in virtual time; write a JSON report (and an SVG plot).
//!
//! Everything is read and checked before the run; the report and plot are written to a
//! temporary file beside their target and renamed, so a failed run leaves nothing half-written.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use eas::core::pricing::PricePoint;
use eas::core::resources::Zone;
use eas::core::spec::ServiceSpec;
use eas::scheduler::pricing::{AvailabilityTrace, TraceOracle, aws, skypilot};
use eas::scheduler::sim::{
    Arrivals, Availability, HedgePolicy, Report, SimCloud, SimConfig, Simulation, render_svg,
};

/// The arguments of `eas simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The service.json: its `cloud.computing.instances` and `autoscaler` are the policy.
    #[arg(long, value_name = "S.json")]
    service: PathBuf,
    /// The arrival trace: the Azure LLM CSV (TIMESTAMP,...) or the Mooncake CSV
    /// (timestamp_ms,...); shifted to --start and repeated to fill --duration.
    #[arg(long, value_name = "A.csv")]
    arrivals: PathBuf,
    /// Spot price histories (AWS describe-spot-price-history columns); several are merged.
    #[arg(long, value_name = "P.csv", required = true, num_args = 1..)]
    prices: Vec<PathBuf>,
    /// On-demand prices (columns instance_type, on_demand_usd_per_hour).
    #[arg(long = "on-demand", value_name = "O.csv")]
    on_demand: PathBuf,
    /// Requests per second one instance sustains.
    #[arg(long, value_name = "Q")]
    instance_qps: f64,
    /// The latency goal in ms (default: the service time plus 1000).
    #[arg(long, value_name = "L")]
    slo_ms: Option<f64>,
    /// Service time of one request in ms (default: 1000 / instance-qps).
    #[arg(long, value_name = "MS")]
    service_ms: Option<f64>,
    /// When the run starts, RFC 3339 (default: the first time every spot series of the
    /// service's types has a price).
    #[arg(long, value_name = "RFC3339")]
    start: Option<String>,
    /// How long the run lasts: a number with s, m, h, d or w.
    #[arg(long, default_value = "7d")]
    duration: String,
    /// SkyPilot availability/preemption traces, each `[TYPE@ZONE=]FILE` (type and zone read
    /// from the file name when left out); replayed from --start, repeated.
    #[arg(long, value_name = "T.json", num_args = 1..)]
    preemptions: Vec<String>,
    /// Seed of the random draws (launch delays).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mean launch delay (default 3m), with s, m, h, d or w.
    #[arg(long, value_name = "DURATION")]
    launch_delay: Option<String>,
    /// SkyServe-like hedge: keep N instances beyond the autoscaler's count (the spec cannot
    /// say this).
    #[arg(long, value_name = "N", default_value_t = 0)]
    hedge: u32,
    /// Where to write the JSON report.
    #[arg(long, value_name = "out.json")]
    report: PathBuf,
    /// Where to write an SVG plot of the timeline.
    #[arg(long, value_name = "out.svg")]
    plot: Option<PathBuf>,
}

/// Runs the simulation the arguments describe.
pub fn run(args: &SimulateArgs) -> ExitCode {
    match simulate(args) {
        Ok(report) => {
            println!(
                "{}: cost ${:.2} (on-demand ${:.2}, savings {:.1}%, bound ${:.2}); availability {:.5}; p50 {:.0} ms, p99 {:.0} ms; {} preemptions; report {}",
                report.service,
                report.cost_usd,
                report.on_demand_cost_usd,
                100.0 * report.savings_vs_on_demand,
                report.optimal_cost_usd,
                report.availability,
                report.p50_ms,
                report.p99_ms,
                report.preemptions,
                args.report.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("eas simulate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(args: &SimulateArgs) -> Result<Report, String> {
    let spec = read_spec(&args.service)?;
    let duration = parse_duration(&args.duration).map_err(|e| format!("--duration: {e}"))?;
    let mut oracle = TraceOracle::new();
    for path in &args.prices {
        let spot = aws::read_spot_csv(open(path)?, &path.display().to_string())
            .map_err(|e| e.to_string())?;
        oracle = oracle.merge(spot);
    }
    let on_demand = aws::read_on_demand_csv(
        open(&args.on_demand)?,
        &args.on_demand.display().to_string(),
    )
    .map_err(|e| e.to_string())?;
    oracle = oracle.with_on_demand_prices(on_demand);
    let start = match &args.start {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(SystemTime::from)
            .map_err(|e| format!("--start `{text}` is not an RFC 3339 time: {e}"))?,
        None => first_price(&oracle, &spec)?,
    };
    let mut availability = Vec::new();
    for arg in &args.preemptions {
        let (ty, zone, trace) = read_preemptions(arg, start)?;
        if let Some(points) = trace.price_series() {
            oracle = oracle.with_series(&ty, zone.clone(), repeat(&points, &trace, duration));
        }
        availability.push(Availability::new(ty, zone, &trace, start));
    }
    let cloud = availability
        .into_iter()
        .fold(SimCloud::new(oracle), SimCloud::with_availability);
    let arrivals = Arrivals::from_csv(open(&args.arrivals)?, &args.arrivals.display().to_string())
        .map_err(|e| e.to_string())?;
    let mut config = SimConfig::new(start, duration, args.instance_qps)
        .with_seed(args.seed)
        .with_hedge(HedgePolicy::over_provision(args.hedge));
    if let Some(slo) = args.slo_ms {
        config = config.with_slo_ms(slo);
    }
    if let Some(ms) = args.service_ms {
        config = config.with_service_ms(ms);
    }
    if let Some(text) = &args.launch_delay {
        let delay = parse_duration(text).map_err(|e| format!("--launch-delay: {e}"))?;
        config = config.with_launch_delay(delay);
    }
    let sim = Simulation::new(spec, cloud, arrivals, config)
        .map_err(|e| format!("{}: {e}", args.service.display()))?;
    let report = sim.run().map_err(|e| e.to_string())?;
    let json = report
        .to_json()
        .map_err(|e| format!("cannot write the report: {e}"))?;
    let mut outputs = vec![(args.report.clone(), json + "\n")];
    if let Some(plot) = &args.plot {
        outputs.push((plot.clone(), render_svg(&report)));
    }
    write_all(&outputs)?;
    Ok(report)
}

fn open(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn read_spec(path: &Path) -> Result<ServiceSpec, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    ServiceSpec::from_json_slice(&bytes).map_err(|errors| {
        errors
            .errors()
            .iter()
            .map(|error| match error.location {
                Some((line, column)) => format!("{shown}:{line}:{column}: {}", error.message),
                None => format!("{shown}: {error}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// The first moment every spot series of the spec's types has a price (every series when the
/// spec's types have none).
fn first_price(oracle: &TraceOracle, spec: &ServiceSpec) -> Result<SystemTime, String> {
    let types: Vec<&str> = spec
        .cloud
        .as_ref()
        .and_then(|c| c.computing.as_ref())
        .map(|c| {
            c.instances
                .iter()
                .map(|e| e.instance_type.as_str())
                .collect()
        })
        .unwrap_or_default();
    let firsts = |only_spec: bool| {
        oracle
            .series_keys()
            .filter(|(t, _)| !only_spec || types.contains(t))
            .filter_map(|(t, z)| oracle.series(t, z).and_then(|s| s.first()).map(|p| p.at))
            .max()
    };
    firsts(true)
        .or_else(|| firsts(false))
        .ok_or_else(|| "no spot price in the --prices files: give --start".to_owned())
}

/// Reads `[TYPE@ZONE=]FILE` as a SkyPilot trace starting at `start`.
fn read_preemptions(
    arg: &str,
    start: SystemTime,
) -> Result<(String, Zone, AvailabilityTrace), String> {
    let (named, file) = match arg.split_once('=') {
        Some((key, file)) => {
            let (ty, zone) = key.split_once('@').ok_or_else(|| {
                format!(
                    "--preemptions `{arg}`: write TYPE@ZONE=FILE, e.g. c5.large@us-east-1a=t.json"
                )
            })?;
            (Some((ty.to_owned(), Zone::from(zone))), file)
        }
        None => (None, arg),
    };
    let (ty, zone) = match named {
        Some(found) => found,
        None => {
            let ty = skypilot::instance_type_from_name(file);
            let zone = skypilot::zone_from_name(file);
            match (ty, zone) {
                (Some(ty), Some(zone)) => (ty.to_owned(), zone),
                _ => {
                    return Err(format!(
                        "{file}: cannot tell the instance type and zone from the file name; \
                         write TYPE@ZONE={file}"
                    ));
                }
            }
        }
    };
    let path = Path::new(file);
    let trace =
        AvailabilityTrace::from_reader(open(path)?, file, start).map_err(|e| e.to_string())?;
    if trace.is_empty() {
        return Err(format!("{file}: the trace has no ticks"));
    }
    Ok((ty, zone, trace))
}

/// A trace's prices repeated, as its counts are, to cover `duration` from its start.
fn repeat(points: &[PricePoint], trace: &AvailabilityTrace, duration: Duration) -> Vec<PricePoint> {
    let period = trace
        .end()
        .duration_since(trace.start())
        .unwrap_or_default();
    let mut out = Vec::new();
    if period.is_zero() {
        return out;
    }
    let cycles = duration.as_nanos().div_ceil(period.as_nanos());
    for k in 0..u32::try_from(cycles).unwrap_or(u32::MAX) {
        let shift = period.saturating_mul(k);
        out.extend(
            points
                .iter()
                .map(|p| PricePoint::new(p.at + shift, p.usd_per_hour)),
        );
    }
    out
}

/// `90s`, `15m`, `36h`, `7d`, `2w`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_secs = match unit.trim() {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use s, m, h, d or w)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 15m, 36h or 7d"))?;
    Duration::try_from_secs_f64(value * unit_secs)
        .ok()
        .filter(|d| d.as_secs() >= 1)
        .ok_or_else(|| format!("`{text}` is under one second"))
}

/// Writes every file to a temporary sibling, then renames them all into place.
fn write_all(outputs: &[(PathBuf, String)]) -> Result<(), String> {
    let mut written: Vec<(PathBuf, &PathBuf)> = Vec::new();
    for (path, text) in outputs {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(name);
        if let Err(e) = std::fs::write(&tmp, text) {
            for (t, _) in &written {
                let _ = std::fs::remove_file(t);
            }
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("{}: cannot write: {e}", path.display()));
        }
        written.push((tmp, path));
    }
    for (tmp, path) in written {
        std::fs::rename(&tmp, path)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_should_take_a_unit() {
        let cases = [
            ("7d", Some(604_800)),
            ("36h", Some(129_600)),
            ("90m", Some(5_400)),
            ("3600", Some(3_600)),
            ("1.5h", Some(5_400)),
            ("1w", Some(604_800)),
            ("7x", None),
            ("d", None),
            ("0s", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_secs()),
                want,
                "{text}"
            );
        }
    }
}
