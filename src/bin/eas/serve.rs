//! `eas serve [SPEC...]`: run a platform until Ctrl-C (or SIGTERM), then shut down
//! gracefully: the services of the given specs, the ones the state directory kept from an
//! earlier run, and the ones the control API creates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use eas::core::spec::{ServiceSpec, WorkloadType};
use eas::core::storage::TransferProgress;
use eas::runtime::job::{self, ElasticJob};
use eas::runtime::platform::{Platform, RunningPlatform};
use eas::storage::peer::PeerSecret;

/// The environment variable `--cache-secret` falls back to.
const CACHE_SECRET_ENV: &str = "EAS_CACHE_SECRET";

/// The environment variable `--admin-token` falls back to.
const ADMIN_TOKEN_ENV: &str = "EAS_ADMIN_TOKEN";

/// The arguments of `eas serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The service.json files to serve (relative local paths in them are resolved against
    /// the current directory). None: only the services the state directory kept and the
    /// ones the control API creates.
    specs: Vec<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The largest request body accepted, in bytes; past it, 413.
    #[arg(long, default_value_t = eas::runtime::admission::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Where remote models and mounts are fetched to (one directory per service; reused
    /// after a restart). Default: `eas` under the system temp directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep fetched model and mount files in memory, up to this many MiB, and serve them to
    /// other servers of the same services.
    #[arg(long, value_name = "MIB")]
    memory_cache: Option<u64>,
    /// Another server of the same services (a base URL such as `http://10.0.0.2:8080`) to ask
    /// for model files before the store; repeat for several.
    #[arg(long = "cache-peer", value_name = "URL")]
    cache_peers: Vec<String>,
    /// The secret every server of the deployment shares to read each other's memory cache:
    /// sent to the cache peers, and required of every request for this server's cache (401
    /// without it). Without one, no peer can read this server's cache. Prefer the
    /// environment variable EAS_CACHE_SECRET, which `ps` does not show; the flag wins when
    /// both are set. Visible ASCII, no spaces; say, `openssl rand -hex 32`.
    #[arg(long, value_name = "SECRET")]
    cache_secret: Option<SecretArg>,
    /// Keep async services' queues in Redis Streams at this URL (`redis://127.0.0.1:6379`), so
    /// that several servers share them; default: in memory.
    #[cfg(feature = "redis")]
    #[arg(long, value_name = "URL")]
    queue_redis: Option<String>,
    /// For a service with `metadata.workload_type: "elasticjob"`: the inputs (a file with one
    /// request per line, or a directory with one request per file). The job runs, prints a
    /// summary and exits; rerun it to resume after a crash.
    #[arg(long, value_name = "PATH", requires = "job_output")]
    job_input: Option<PathBuf>,
    /// Where a job's results go (JSON lines, appended).
    #[arg(long, value_name = "FILE", requires = "job_input")]
    job_output: Option<PathBuf>,
    /// How long to wait for every service to become ready, in seconds.
    #[arg(long, default_value_t = 300)]
    ready_timeout: u64,
    /// The admin token of the control API (`/api/v2/services`, `eas service ...`), distinct
    /// from the services' tokens. Prefer the environment variable EAS_ADMIN_TOKEN, which `ps`
    /// does not show. Without either, a random one is generated and printed at start.
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<SecretArg>,
    /// Where the desired state (services, specs, stopped flags) is kept across restarts.
    /// Default: $EAS_STATE_DIR, else $XDG_STATE_HOME/eas, else ~/.local/state/eas. One
    /// server at a time may use a directory.
    #[arg(long, value_name = "DIR", conflicts_with = "no_state")]
    state_dir: Option<PathBuf>,
    /// Keep the desired state in memory only: services created through the control API are
    /// gone after a restart.
    #[arg(long)]
    no_state: bool,
    /// The time between two control rounds (autoscaling decisions), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    control_period_ms: u64,
    /// Where instances run: `in-process` (threads of this server), or `child` (a worker
    /// process each: a crash or OOM takes down one instance only; `metadata.cpu` and
    /// `metadata.memory` are enforced through cgroups where the machine allows it).
    #[arg(long, value_enum, default_value_t = ProviderArg::InProcess)]
    provider: ProviderArg,
    /// Spot price histories (AWS describe-spot-price-history CSV, as `eas simulate` reads
    /// them): the web console (`/console`) draws their last 48 hours per instance type and
    /// zone with the recommended bid. Needs --on-demand.
    #[arg(long, value_name = "P.csv", num_args = 1.., requires = "on_demand")]
    prices: Vec<PathBuf>,
    /// On-demand prices for --prices (columns instance_type, on_demand_usd_per_hour).
    #[arg(long = "on-demand", value_name = "O.csv", requires = "prices")]
    on_demand: Option<PathBuf>,
}

/// `--provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProviderArg {
    /// Replicas as threads of this process.
    InProcess,
    /// Replicas as worker processes of this binary.
    Child,
}

/// A secret as given on the command line: never printed (clap would quote a value it
/// refuses, so it is checked after parsing, by [`PeerSecret::new`]).
#[derive(Clone)]
struct SecretArg(String);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The cache secret: `--cache-secret`, else `EAS_CACHE_SECRET` (unless empty), else none.
/// The error names where the secret came from, never the secret.
fn cache_secret(
    flag: Option<&SecretArg>,
    env: impl FnOnce() -> Option<String>,
) -> Result<Option<PeerSecret>, String> {
    let (secret, source) = match flag {
        Some(SecretArg(secret)) => (secret.clone(), "--cache-secret"),
        None => match env().filter(|s| !s.is_empty()) {
            Some(secret) => (secret, CACHE_SECRET_ENV),
            None => return Ok(None),
        },
    };
    PeerSecret::new(secret)
        .map(Some)
        .map_err(|e| format!("{source}: {e}"))
}

/// Serves until interrupted; exits 1 when a spec is invalid or a service cannot start.
pub fn run(args: &ServeArgs) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("eas serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> ExitCode {
    let mut builder = Platform::builder()
        .bind(args.listen)
        .max_body_bytes(args.max_body_bytes)
        .control_period(Duration::from_millis(args.control_period_ms.max(10)))
        .storage_progress(Arc::new(show_progress));
    let admin = match admin_token(args.admin_token.as_ref(), || {
        std::env::var(ADMIN_TOKEN_ENV).ok()
    }) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("eas serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    builder = builder.admin_token(admin.token.clone());
    if let Some(on_demand) = &args.on_demand {
        match read_prices(&args.prices, on_demand) {
            Ok(oracle) => builder = builder.price_traces(oracle),
            Err(e) => {
                eprintln!("eas serve: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.provider == ProviderArg::Child {
        match eas::runtime::provider::ChildProcess::new() {
            Ok(provider) => {
                eprintln!(
                    "eas serve: instances run as worker processes; {}",
                    provider.limits().describe()
                );
                builder = builder.provider(Arc::new(provider));
            }
            Err(e) => {
                eprintln!("eas serve: cannot use child processes: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if !args.no_state {
        let dir = args
            .state_dir
            .clone()
            .unwrap_or_else(eas::runtime::store::StateStore::default_dir);
        builder = builder.state_dir(dir);
    }
    if let Some(dir) = &args.work_dir {
        builder = builder.work_dir(dir);
    }
    if let Some(mib) = args.memory_cache {
        builder = builder.memory_cache(mib << 20);
    }
    if !args.cache_peers.is_empty() {
        builder = builder.cache_peers(args.cache_peers.iter().cloned());
    }
    match cache_secret(args.cache_secret.as_ref(), || {
        std::env::var(CACHE_SECRET_ENV).ok()
    }) {
        Ok(Some(secret)) => builder = builder.cache_secret(secret),
        Ok(None) => {}
        Err(e) => {
            eprintln!("eas serve: {e}");
            return ExitCode::FAILURE;
        }
    }
    #[cfg(feature = "redis")]
    if let Some(url) = &args.queue_redis {
        match eas::runtime::queue::RedisQueues::new(url) {
            Ok(queues) => builder = builder.queues(Arc::new(queues)),
            Err(e) => {
                eprintln!("eas serve: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for path in &args.specs {
        match load(path) {
            Ok(spec) => builder = builder.service(spec),
            Err(problems) => {
                for problem in problems {
                    eprintln!("{}: {problem}", path.display());
                }
                return ExitCode::FAILURE;
            }
        }
    }
    let server = match builder.start().await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("eas serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = server
        .wait_ready(Duration::from_secs(args.ready_timeout))
        .await;
    announce(&server, &admin);
    if !ready {
        eprintln!(
            "eas serve: not every service became ready (see the instance states above); stopping"
        );
        server.shutdown().await;
        return ExitCode::FAILURE;
    }
    if let (Some(input), Some(output)) = (&args.job_input, &args.job_output) {
        return run_jobs(server, input, output).await;
    }
    wait_for_signal().await;
    eprintln!("eas serve: shutting down: finishing in-flight requests");
    let report = server.shutdown().await;
    if report.abandoned > 0 {
        eprintln!(
            "eas serve: {} requests were still unfinished at the end of the grace period",
            report.abandoned
        );
    }
    ExitCode::SUCCESS
}

/// Runs the elastic job of every `elasticjob` service, prints each summary and shuts down;
/// fails when a service is not a job or a result failed.
async fn run_jobs(server: RunningPlatform, input: &Path, output: &Path) -> ExitCode {
    let job = ElasticJob::new(input, output);
    let mut ok = true;
    let mut ran = 0;
    for service in server.services().values() {
        if service.spec().metadata.workload_type != Some(WorkloadType::ElasticJob) {
            continue;
        }
        ran += 1;
        match job::run(service, &job).await {
            Ok(summary) => {
                println!("job {}: {summary}", service.name());
                ok &= summary.failed == 0;
            }
            Err(e) => {
                eprintln!("job {}: {e}", service.name());
                ok = false;
            }
        }
    }
    if ran == 0 {
        eprintln!(
            "eas serve: --job-input needs a service with metadata.workload_type \"elasticjob\""
        );
        ok = false;
    }
    server.shutdown().await;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One progress line on stderr, rewritten in place: file, bytes, rate and ETA.
fn show_progress(progress: &TransferProgress) {
    use std::io::Write;
    const MIB: f64 = 1024.0 * 1024.0;
    let done = progress.bytes_done as f64 / MIB;
    let rate = progress.rate_bytes_per_sec() / MIB;
    let line = match progress.bytes_total {
        Some(total) if total > 0 => {
            let total_mib = total as f64 / MIB;
            let percent = 100.0 * progress.bytes_done as f64 / total as f64;
            let eta = progress
                .eta()
                .map_or_else(|| "?".to_owned(), |eta| format!("{} s", eta.as_secs()));
            format!(
                "fetching {}: {done:.1}/{total_mib:.1} MiB ({percent:.0}%) {rate:.1} MiB/s ETA {eta}",
                progress.path
            )
        }
        _ => format!("fetching {}: {done:.1} MiB {rate:.1} MiB/s", progress.path),
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{line}");
    if progress.bytes_total == Some(progress.bytes_done) {
        let _ = writeln!(err);
    }
}

fn load(path: &PathBuf) -> Result<ServiceSpec, Vec<String>> {
    let text = std::fs::read(path).map_err(|e| vec![format!("cannot read: {e}")])?;
    ServiceSpec::from_json_slice(&text)
        .map_err(|errors| errors.errors().iter().map(ToString::to_string).collect())
}

/// The control API's admin token and whether it was generated here.
struct AdminToken {
    token: String,
    generated: bool,
}

/// The spot price traces of `--prices` with the on-demand prices of `--on-demand`.
fn read_prices(
    spot: &[PathBuf],
    on_demand: &Path,
) -> Result<eas::scheduler::pricing::TraceOracle, String> {
    use eas::scheduler::pricing::{TraceOracle, aws};
    let open = |path: &Path| {
        std::fs::File::open(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    let mut oracle = TraceOracle::new();
    for path in spot {
        let trace = aws::read_spot_csv(open(path)?, &path.display().to_string())
            .map_err(|e| e.to_string())?;
        oracle = oracle.merge(trace);
    }
    let prices = aws::read_on_demand_csv(open(on_demand)?, &on_demand.display().to_string())
        .map_err(|e| e.to_string())?;
    Ok(oracle.with_on_demand_prices(prices))
}

/// The admin token: `--admin-token`, else `EAS_ADMIN_TOKEN` (unless empty), else a random one.
/// The error names where the token came from, never the token.
fn admin_token(
    flag: Option<&SecretArg>,
    env: impl FnOnce() -> Option<String>,
) -> Result<AdminToken, String> {
    let (token, source) = match flag {
        Some(SecretArg(token)) => (token.clone(), "--admin-token"),
        None => match env().filter(|s| !s.is_empty()) {
            Some(token) => (token, ADMIN_TOKEN_ENV),
            None => {
                let token = eas::runtime::auth::generate_token().map_err(|e| e.to_string())?;
                return Ok(AdminToken {
                    token,
                    generated: true,
                });
            }
        },
    };
    if token.trim().is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{source}: the admin token must be visible characters, no spaces"
        ));
    }
    Ok(AdminToken {
        token,
        generated: false,
    })
}

fn announce(server: &RunningPlatform, admin: &AdminToken) {
    let addr = server.local_addr();
    println!("eas: listening on http://{addr}");
    for service in server.services().values() {
        let states: Vec<String> = service
            .instances()
            .iter()
            .map(|i| eas::runtime::replica::describe_state(&i.state()))
            .collect();
        println!(
            "  service {}: POST http://{addr}/api/predict/{}  token {}  instances: {}",
            service.name(),
            service.name(),
            service.token(),
            states.join(", ")
        );
        if service.spec().metadata.enable_grpc {
            // gRPC shares the HTTP port (HTTP/2, told apart by its content type).
            println!(
                "    gRPC {addr}  inference.GRPCInferenceService, model `{}`, same token",
                service.name()
            );
        }
    }
    println!(
        "  metrics http://{addr}/metrics  status http://{addr}/api/services  ready http://{addr}/readyz"
    );
    if admin.generated {
        println!(
            "  control API http://{addr}/api/v2/services  admin token {} (generated; set \
             EAS_ADMIN_TOKEN to choose one)",
            admin.token
        );
    } else {
        println!("  control API http://{addr}/api/v2/services  (admin token as given)");
    }
    println!("  console http://{addr}/console?token=ADMIN_TOKEN");
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_secret_should_come_from_the_flag_then_the_environment_and_never_be_printed() {
        let flag = SecretArg("from-flag".into());
        let env = || Some("from-env".to_owned());
        assert!(
            cache_secret(Some(&flag), env)
                .is_ok_and(|s| s.is_some_and(|s| s.matches(b"from-flag")))
        );
        assert!(cache_secret(None, env).is_ok_and(|s| s.is_some_and(|s| s.matches(b"from-env"))));
        assert!(cache_secret(None, || Some(String::new())).is_ok_and(|s| s.is_none()));
        assert!(cache_secret(None, || None).is_ok_and(|s| s.is_none()));
        let err = cache_secret(None, || Some("has a space".into())).expect_err("invalid");
        assert!(
            err.starts_with("EAS_CACHE_SECRET: invalid cache secret"),
            "{err}"
        );
        assert!(!err.contains("has a space"), "{err}");
        let err = cache_secret(Some(&SecretArg(String::new())), env).expect_err("empty flag");
        assert!(err.starts_with("--cache-secret: "), "{err}");
        assert_eq!(format!("{flag:?}"), "***");
    }

    #[test]
    fn cache_secret_should_parse_and_be_documented_with_its_environment_variable() {
        use clap::{Args as _, FromArgMatches as _};
        let mut command = ServeArgs::augment_args(clap::Command::new("serve"));
        let help = command.render_long_help().to_string();
        assert!(help.contains("--cache-secret <SECRET>"), "{help}");
        assert!(help.contains("EAS_CACHE_SECRET"), "{help}");
        let matches = command
            .try_get_matches_from(["serve", "s.json", "--cache-secret", "a b"])
            .expect("any text parses; it is checked later");
        let args = ServeArgs::from_arg_matches(&matches).expect("args");
        assert!(!format!("{args:?}").contains("a b"), "{args:?}");
        assert!(cache_secret(args.cache_secret.as_ref(), || None).is_err());
    }
}
