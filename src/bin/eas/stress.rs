//! `eas stress URL ...`: a stress test against an EAS endpoint (`eas_runtime::stress`): a
//! live progress line on stderr each second, a summary on stdout, and the report as JSON
//! (`--report`) and a self-contained HTML page (`--html`). Ctrl-C stops early and still writes
//! the report.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use eas::runtime::stress::{
    self, AutoPlan, Bodies, Credentials, DataFormat, FixedPlan, Goal, LoadOptions, Pace, Plan,
    Report, RtStat, RunOptions, ScanPlan, Second, Target,
};

/// The environment variable `--token` falls back to.
const TOKEN_ENV: &str = "EAS_TOKEN";

/// The arguments of `eas stress`.
#[derive(Debug, clap::Args)]
pub struct StressArgs {
    /// The endpoint, e.g. http://127.0.0.1:8080/api/predict/mlp (plain HTTP).
    url: String,
    /// The service token. Prefer the environment variable EAS_TOKEN, which `ps` does not show.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Sign requests as the EAS SDK does (HMAC-SHA1, `Authorization: EAS ...`) instead of
    /// sending the token.
    #[arg(long)]
    hmac: bool,
    /// The request bodies: one per line, or the whole file (see --data-format).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// How --data holds the bodies: lines (raw text, one per line), base64 (one per line) or
    /// binary (the whole file is one body, EAS's dataType binary).
    #[arg(long, default_value = "lines", value_name = "FORMAT")]
    data_format: String,
    /// The requests' Content-Type.
    #[arg(long, default_value = "application/octet-stream")]
    content_type: String,
    /// auto: find the capacity; scan: raise the QPS step by step; fixed: hold a QPS or a
    /// concurrency.
    #[arg(long, default_value = "auto", value_parser = ["auto", "scan", "fixed"])]
    mode: String,
    /// fixed: the QPS to hold (open loop).
    #[arg(long)]
    qps: Option<f64>,
    /// fixed: the connections to hold (closed loop), instead of --qps.
    #[arg(long)]
    concurrency: Option<usize>,
    /// fixed: how long to hold, seconds; auto: the most it may run.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// scan: the first level; auto: the first probe.
    #[arg(long)]
    min_qps: Option<f64>,
    /// scan: the last level; auto: the highest probe.
    #[arg(long)]
    max_qps: Option<f64>,
    /// scan: what each level adds.
    #[arg(long, default_value_t = 10.0)]
    qps_growth_delta: f64,
    /// scan: seconds per level.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    adjust_interval: f64,
    /// scan and auto: the response time goal, milliseconds (on --rt).
    #[arg(long, value_name = "MS")]
    max_rt: Option<f64>,
    /// Which statistic --max-rt bounds: avg, p50, p90 or p99.
    #[arg(long, default_value = "p99")]
    rt: String,
    /// The share of errors that still meets the goal (scan: 0, auto: 0.01 by default).
    #[arg(long)]
    error_budget: Option<f64>,
    /// auto: seconds each probe is judged over (after --settle-secs).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    probe_secs: f64,
    /// auto: seconds each probe runs before it is judged.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    settle_secs: f64,
    /// auto: seconds the final confirmation is judged over.
    #[arg(long, default_value_t = 6.0, value_name = "SECS")]
    confirm_secs: f64,
    /// auto: stop bisecting when the bounds are this close (relative).
    #[arg(long, default_value_t = 0.05)]
    precision: f64,
    /// The most connections (requests in flight) the open loop opens.
    #[arg(long, default_value_t = 1024)]
    connections: usize,
    /// Each request's timeout, milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u64,
    /// The load generator's threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// The report's name.
    #[arg(long)]
    name: Option<String>,
    /// Write the report as JSON here.
    #[arg(long, value_name = "OUT.json")]
    report: Option<PathBuf>,
    /// Write the report as a self-contained HTML page here.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

/// Runs `eas stress`.
pub fn run(args: &StressArgs) -> ExitCode {
    match prepare(args) {
        Ok((target, plan)) => execute(args, target, plan),
        Err(message) => {
            eprintln!("eas stress: {message}");
            ExitCode::FAILURE
        }
    }
}

fn positive(name: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{name} must be a positive number, not {value}"))
    }
}

fn secs(name: &str, value: f64) -> Result<Duration, String> {
    positive(name, value).map(Duration::from_secs_f64)
}

fn prepare(args: &StressArgs) -> Result<(Target, Plan), String> {
    let content =
        std::fs::read(&args.data).map_err(|e| format!("--data {}: {e}", args.data.display()))?;
    let format: DataFormat = args.data_format.parse().map_err(|e| format!("{e}"))?;
    let bodies = Bodies::parse(&content, format, &args.data.display().to_string())
        .map_err(|e| e.to_string())?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var(TOKEN_ENV).ok())
        .filter(|t| !t.is_empty());
    let credentials = match (token, args.hmac) {
        (None, true) => return Err("--hmac needs a token (--token or EAS_TOKEN)".into()),
        (None, false) => Credentials::None,
        (Some(t), false) => Credentials::Token(t),
        (Some(t), true) => Credentials::Hmac(t),
    };
    let target = Target::new(&args.url, &bodies)
        .and_then(|t| t.with_content_type(&args.content_type))
        .map_err(|e| e.to_string())?
        .with_credentials(credentials);
    let rt: RtStat = args.rt.parse().map_err(|e| format!("--rt {e}"))?;
    let max_rt = args
        .max_rt
        .map(|ms| positive("--max-rt", ms).map(|ms| Duration::from_secs_f64(ms / 1000.0)))
        .transpose()?;
    let budget = |default: f64| match args.error_budget {
        Some(b) if !(0.0..=1.0).contains(&b) => Err("--error-budget must lie in 0..=1".to_owned()),
        Some(b) => Ok(b),
        None => Ok(default),
    };
    let plan = match args.mode.as_str() {
        "fixed" => {
            let duration = secs("--duration", args.duration.unwrap_or(30.0))?;
            let pace = match (args.qps, args.concurrency) {
                (Some(q), None) => Pace::Qps(positive("--qps", q)?),
                (None, Some(c)) if c > 0 => Pace::Concurrency(c),
                _ => return Err("fixed mode wants --qps or --concurrency (one of them)".into()),
            };
            Plan::Fixed(FixedPlan::new(pace, duration))
        }
        "scan" => {
            let min = positive("--min-qps", args.min_qps.unwrap_or(10.0))?;
            let max = positive("--max-qps", args.max_qps.unwrap_or(1000.0))?;
            if min > max {
                return Err("--min-qps is above --max-qps".into());
            }
            Plan::Scan(
                ScanPlan::new(
                    min,
                    max,
                    positive("--qps-growth-delta", args.qps_growth_delta)?,
                    secs("--adjust-interval", args.adjust_interval)?,
                )
                .with_goal(Goal::new(budget(0.0)?).with_max_rt(max_rt, rt)),
            )
        }
        _ => {
            let defaults = AutoPlan::default();
            Plan::Auto(
                defaults
                    .with_qps_range(
                        positive("--min-qps", args.min_qps.unwrap_or(defaults.start_qps))?,
                        positive("--max-qps", args.max_qps.unwrap_or(defaults.max_qps))?,
                    )
                    .with_goal(Goal::new(budget(0.01)?).with_max_rt(max_rt, rt))
                    .with_timing(
                        secs("--settle-secs", args.settle_secs)?,
                        secs("--probe-secs", args.probe_secs)?,
                        secs("--confirm-secs", args.confirm_secs)?,
                    )
                    .with_precision(positive("--precision", args.precision)?)
                    .with_max_duration(secs(
                        "--duration",
                        args.duration.unwrap_or(defaults.max_duration.as_secs_f64()),
                    )?),
            )
        }
    };
    Ok((target, plan))
}

fn execute(args: &StressArgs, target: Target, plan: Plan) -> ExitCode {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
        .max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("eas-stress")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("eas stress: a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{} {}", plan.name(), args.url));
    let mut options = RunOptions::named(name).with_load(
        LoadOptions::default()
            .with_max_connections(args.connections)
            .with_request_timeout(Duration::from_millis(args.timeout_ms.max(1))),
    );
    if !args.quiet {
        options = options.with_progress(progress_line(plan));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    options = options.with_stop(stopped);
    let report = runtime.block_on(async {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\neas stress: stopping (Ctrl-C); the report follows");
                stop.send_replace(true);
            }
        });
        stress::run(target, plan, options).await
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("eas stress: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!();
    }
    println!("{}", summary(&report));
    let mut failed = false;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("eas stress: --report {}: {e}", path.display());
            failed = true;
        }
    }
    if let Some(path) = &args.html
        && let Err(e) = std::fs::write(path, report.to_html())
    {
        eprintln!("eas stress: --html {}: {e}", path.display());
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints each second: target, QPS, p50/p99, errors; over itself on a terminal.
fn progress_line(plan: Plan) -> stress::Progress {
    let terminal = std::io::stderr().is_terminal();
    let unit = match plan {
        Plan::Fixed(FixedPlan {
            pace: Pace::Concurrency(_),
            ..
        }) => "conns",
        _ => "QPS",
    };
    Arc::new(move |row: &Second| {
        let s = &row.stats;
        let errors = if s.errors_by_status.is_empty() {
            "0".to_owned()
        } else {
            s.errors_by_status
                .iter()
                .map(|(k, n)| format!("{k}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let line = format!(
            "[{:>4}s] target {:>8.1} {unit} | {:>8.1} QPS | p50 {:>8.2} ms p99 {:>8.2} ms | errors {errors}",
            row.second, row.target, s.qps, s.latency_ms.p50, s.latency_ms.p99
        );
        let mut err = std::io::stderr().lock();
        let _ = if terminal {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    })
}

fn summary(report: &Report) -> String {
    let s = &report.summary;
    let capacity = report
        .capacity_qps
        .map_or_else(|| "none".to_owned(), |c| format!("{c:.1} QPS"));
    format!(
        "{} ({} mode, {} loop) for {:.1} s: {}\n  capacity: {capacity}\n  {} ok, {} errors; \
         {:.1} QPS; latency avg {:.2} ms, p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        report.target,
        report.mode,
        report.load,
        report.duration_secs,
        report.stopped_because,
        s.ok,
        s.errors,
        s.qps,
        s.latency_ms.avg,
        s.latency_ms.p50,
        s.latency_ms.p90,
        s.latency_ms.p99,
        s.latency_ms.max
    )
}
