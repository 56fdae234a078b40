//! Batching without tuning (issue 16, goal 1): the ONNX MLP (256 -> 1024 -> 1024 -> 10, FP32,
//! one row per request) behind the eas server with the spec's batching defaults
//! (`"batching": true`, every other `rpc` field at its default: `max_batch_size` 16,
//! `max_batch_timeout` 50 ms, `worker_threads` 5) against the best hand-tuned configuration
//! of a grid (`max_batch_size` 1, 8, 16, 32, 64 x `max_batch_timeout` 0, 1, 2, 5 ms x
//! `worker_threads` 1, 2), at 1, 8, 16 and 64 keep-alive connections.
//!
//! Goal, per concurrency level: the defaults get >= 0.9x the rows/s of the best configuration
//! at that level, with a p99 within 1.1x (or 1 ms) of that configuration's p99.
//!
//! On the CPU an `onnx` instance starts one worker whatever `worker_threads` says (each run
//! already uses its cores: `Processor::max_concurrent_batches`), so the grid's `w1` and `w2`
//! (and the defaults' 5) run alike; they stay in the grid to show it.
//!
//! Every service runs in one eas server with `cpu: 2` (two intra-op threads per ONNX
//! session), on a node declared as this machine times the number of services (only one
//! service is loaded at a time; the placement would otherwise refuse all but a few). For each level: one window per configuration (the sweep), then the defaults and
//! the best few of the sweep take turns for several rounds (in the reverse order every other
//! round); the figures are the medians of those rounds (latency percentiles over every answer
//! of them), so that the best of 40 noisy single windows does not stand as the reference. Two
//! ratios are printed: of the medians, and the median of the ratios of the windows of one round
//! (neighbours in time, so less swayed by what else the machine runs meanwhile). The load
//! generator is `support/load.rs` (a closed loop: each connection sends its next request when
//! the answer is in), on its own tokio runtime in this process; the server's and the
//! generator's CPU are printed, and the server CPU per row. The machine is shared and the
//! generator competes with the server for its cores: the load average is printed at the start
//! and after each level, and figures from a loaded machine are noisy (each window's rate is
//! printed to show how much).
//!
//! Run (about 4 minutes with the defaults):
//! ```text
//! source scripts/test-env.sh   # EAS_PYTHON and ORT_DYLIB_PATH
//! cargo bench -p eas-runtime --bench batching
//! ```
//! Settings (env): `EAS_BENCH_SWEEP_SECS` (sweep window, 0.5 s), `EAS_BENCH_SECS` (window of
//! the final comparison, 0.5 s), `EAS_BENCH_WARMUP_SECS` (before each window, 0.3 s),
//! `EAS_BENCH_ROUNDS` (rounds of the final comparison, 8), `EAS_BENCH_TOP` (configurations of
//! the sweep in it, 2), `EAS_BENCH_LEVELS` (connections, `1,8,16,64`), `EAS_BENCH_GRID` (the
//! configurations, `SIZE/TIMEOUT_MS/WORKERS,...`; the whole grid by default),
//! `EAS_BENCH_CLIENT_THREADS` and `EAS_BENCH_SERVER_THREADS` (tokio threads, 2 each). Without
//! `EAS_PYTHON` or ONNX Runtime it prints `SKIPPED`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

#[path = "support/load.rs"]
mod load;
#[path = "support/mlp.rs"]
mod mlp;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use eas_core::spec::ServiceSpec;
use eas_runtime::onnx::{runtime, testing};
use eas_runtime::platform::{Platform, RunningPlatform};
use serde_json::json;

use load::{Figure, Load, Target, Window, env_parse, ms};

const TOKEN: &str = "bench-token";
/// `metadata.cpu` of every service: the intra-op threads of its ONNX sessions.
const CPU: u32 = 2;
const SIZES: [u32; 5] = [1, 8, 16, 32, 64];
const TIMEOUTS_MS: [u64; 4] = [0, 1, 2, 5];
const WORKERS: [u32; 2] = [1, 2];
/// The service with the spec's batching defaults.
const DEFAULTS: &str = "mlp_defaults";

/// The run's settings, from the environment.
struct Settings {
    window: Duration,
    sweep_window: Duration,
    warmup: Duration,
    rounds: usize,
    top: usize,
    levels: Vec<usize>,
    client_threads: usize,
    server_threads: usize,
}

impl Settings {
    fn from_env() -> Self {
        let secs = |name: &str, default: f64| {
            Duration::from_secs_f64(env_parse(name).unwrap_or(default).max(0.05))
        };
        let levels = std::env::var("EAS_BENCH_LEVELS")
            .ok()
            .map(|v| {
                v.split(',')
                    .filter_map(|l| l.trim().parse::<usize>().ok())
                    .filter(|&l| l > 0)
                    .collect::<Vec<_>>()
            })
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| vec![1, 8, 16, 64]);
        let threads = |name: &str| env_parse::<usize>(name).unwrap_or(2).max(1);
        Self {
            window: secs("EAS_BENCH_SECS", 0.5),
            sweep_window: secs("EAS_BENCH_SWEEP_SECS", 0.5),
            warmup: secs("EAS_BENCH_WARMUP_SECS", 0.3),
            rounds: env_parse::<usize>("EAS_BENCH_ROUNDS").unwrap_or(8).max(1),
            top: env_parse::<usize>("EAS_BENCH_TOP").unwrap_or(2).max(1),
            levels,
            client_threads: threads("EAS_BENCH_CLIENT_THREADS"),
            server_threads: threads("EAS_BENCH_SERVER_THREADS"),
        }
    }

    fn describe(&self) -> String {
        format!(
            "sweep windows of {:.1} s, final windows of {:.1} s, each after {:.1} s warm-up; final \
             comparison: the defaults and the best {} of the sweep, {} rounds; {} client + {} \
             server tokio threads",
            self.sweep_window.as_secs_f64(),
            self.window.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.top,
            self.rounds,
            self.client_threads,
            self.server_threads
        )
    }
}

/// A hand-tuned configuration of the grid.
#[derive(Clone, Copy)]
struct Config {
    size: u32,
    timeout_ms: u64,
    workers: u32,
}

impl Config {
    /// `EAS_BENCH_GRID` (`SIZE/TIMEOUT_MS/WORKERS,...`), else the whole grid.
    fn grid() -> Vec<Self> {
        if let Ok(list) = std::env::var("EAS_BENCH_GRID") {
            let parsed: Vec<Self> = list
                .split(',')
                .filter_map(|c| {
                    let mut fields = c.trim().split('/').map(str::parse::<u64>);
                    let (Some(Ok(size)), Some(Ok(timeout_ms)), Some(Ok(workers))) =
                        (fields.next(), fields.next(), fields.next())
                    else {
                        return None;
                    };
                    Some(Self {
                        size: u32::try_from(size).ok()?.max(1),
                        timeout_ms,
                        workers: u32::try_from(workers).ok()?.max(1),
                    })
                })
                .collect();
            if !parsed.is_empty() {
                return parsed;
            }
        }
        let mut grid = Vec::new();
        for size in SIZES {
            for timeout_ms in TIMEOUTS_MS {
                for workers in WORKERS {
                    grid.push(Self {
                        size,
                        timeout_ms,
                        workers,
                    });
                }
            }
        }
        grid
    }

    fn name(self) -> String {
        format!("mlp_b{}_t{}_w{}", self.size, self.timeout_ms, self.workers)
    }

    fn spec(self, dir: &Path) -> ServiceSpec {
        service(
            &self.name(),
            dir,
            json!({"batching": true, "max_batch_size": self.size,
                   "max_batch_timeout": self.timeout_ms, "worker_threads": self.workers}),
        )
    }
}

fn service(name: &str, dir: &Path, rpc: serde_json::Value) -> ServiceSpec {
    ServiceSpec::from_json_value(json!({
        "metadata": {"name": name, "instance": 1, "cpu": CPU, "rpc": rpc},
        "processor": "onnx", "model_path": dir.to_string_lossy(),
        "model_entry": "bench_mlp.onnx", "token": TOKEN,
    }))
    .expect("the onnx spec is valid")
}

/// What one level found.
struct Level {
    connections: usize,
    defaults: Figure,
    defaults_batch: f64,
    best: Figure,
    best_batch: f64,
    /// The median over the rounds of the defaults' rate over the best's in the same round.
    paired: f64,
    load_after: String,
}

impl Level {
    fn ratio(&self) -> f64 {
        self.defaults.rate / self.best.rate.max(1e-9)
    }

    /// Whether the defaults' p99 is within 1.1x, or 1 ms, of the best configuration's.
    fn p99_ok(&self) -> bool {
        let bound = (f64::from(self.best.p99) * 1.1).max(f64::from(self.best.p99) + 1000.0);
        f64::from(self.defaults.p99) <= bound
    }

    fn line(&self) -> String {
        format!(
            "{:>3} connections: defaults {:>6.0} rows/s (p50 {}, p99 {}, mean batch {:.1}, {:.0} \
             us server CPU per row) vs best {} {:>6.0} rows/s (p50 {}, p99 {}, mean batch {:.1}, \
             {:.0} us): {:.2}x rows/s, {:.2}x paired by round (goal >= 0.9x) {}, p99 {:.2}x {}; \
             load average after: {}",
            self.connections,
            self.defaults.rate,
            ms(self.defaults.p50),
            ms(self.defaults.p99),
            self.defaults_batch,
            self.defaults.cpu_per_answer(),
            self.best.name,
            self.best.rate,
            ms(self.best.p50),
            ms(self.best.p99),
            self.best_batch,
            self.best.cpu_per_answer(),
            self.ratio(),
            self.paired,
            match (self.ratio() >= 0.9, self.paired >= 0.9) {
                (true, true) => "ok",
                (false, false) => "MISSED",
                _ => "ok by one measure only",
            },
            f64::from(self.defaults.p99) / f64::from(self.best.p99.max(1)),
            if self.p99_ok() {
                "ok (goal <= 1.1x or +1 ms)"
            } else {
                "MISSED (goal <= 1.1x or +1 ms)"
            },
            self.load_after,
        )
    }
}

fn main() {
    let settings = Settings::from_env();
    println!("batching: {}", settings.describe());
    println!("machine: {}", load::machine());
    println!("generator: {}", load::GENERATOR);
    println!(
        "note: the machine is shared and the generator runs on it too, competing with the server \
         for the CPU: figures are noisy, more so under a high load average"
    );
    let Some(python) = testing::python_from_env() else {
        println!("SKIPPED: batching: EAS_PYTHON is not set (the Python that writes the model)");
        return;
    };
    if let Err(e) = runtime() {
        println!("SKIPPED: batching: {e}");
        return;
    }
    let dir = testing::cached_models(&python, Path::new(env!("CARGO_TARGET_TMPDIR")), true)
        .expect("the bench model is written");
    let servers = load::runtime(settings.server_threads, "srv-io");
    let clients = load::runtime(settings.client_threads, "load-gen");
    let grid = Config::grid();
    let started = Instant::now();
    let eas = servers.block_on(start_server(&dir, &grid));
    println!(
        "{} services started in {:.1} s (model {})",
        grid.len() + 1,
        started.elapsed().as_secs_f64(),
        dir.join("bench_mlp.onnx").display()
    );

    // Every service answers, and the same.
    let body = Bytes::from(mlp::request_proto(&mlp::inputs(1, 3)));
    let path = |name: &str| format!("/api/predict/{name}");
    let reference = clients.block_on(load::post_once(
        eas.local_addr(),
        &path(DEFAULTS),
        Some(TOKEN),
        &body,
    ));
    let expected = mlp::decode_answer(&reference);
    let target = |name: &str| {
        let answer = clients.block_on(load::post_once(
            eas.local_addr(),
            &path(name),
            Some(TOKEN),
            &body,
        ));
        mlp::check_close(name, &mlp::decode_answer(&answer), &expected);
        Target::new(
            name,
            eas.local_addr(),
            &path(name),
            Some(TOKEN),
            "application/octet-stream",
            &body,
        )
        .expecting(answer.len())
        .with_service(name)
        .in_process()
    };
    let defaults = target(DEFAULTS);
    let candidates: Vec<Target> = grid.iter().map(|c| target(&c.name())).collect();
    println!(
        "protobuf DataProto bodies of {} bytes, one row each; b = max_batch_size, t = \
         max_batch_timeout ms, w = worker_threads",
        body.len()
    );

    let mut levels = Vec::new();
    for &connections in &settings.levels {
        let load = |window| Load {
            clients: &clients,
            connections,
            warmup: settings.warmup,
            window,
        };
        let loads = (load(settings.sweep_window), load(settings.window));
        levels.push(level(&eas, &loads, &settings, &defaults, &candidates));
        println!("{}", levels.last().map(Level::line).unwrap_or_default());
    }
    servers.block_on(eas.shutdown());

    println!();
    println!(
        "== summary: the spec's batching defaults vs the best of {} hand-tuned configurations \
         ({}) ==",
        grid.len(),
        settings.describe()
    );
    println!("machine: {}", load::machine());
    for level in &levels {
        println!("{}", level.line());
    }
    let met = |paired: bool| {
        let ok = levels.iter().all(|l| {
            let ratio = if paired { l.paired } else { l.ratio() };
            ratio >= 0.9 && l.p99_ok()
        });
        if ok { "met" } else { "NOT met" }
    };
    println!(
        "goal 1 of issue 16 at every level: {} by the ratio of the medians, {} by the median of \
         the ratios paired by round; total time {:.0} s",
        met(false),
        met(true),
        started.elapsed().as_secs_f64()
    );
}

/// One concurrency level: the sweep, then the defaults against the best few of it, taking
/// turns (in the reverse order every other round).
fn level(
    eas: &RunningPlatform,
    (sweep, load): &(Load<'_>, Load<'_>),
    settings: &Settings,
    defaults: &Target,
    candidates: &[Target],
) -> Level {
    println!();
    println!(
        "== {} connections (load average {}) ==",
        load.connections,
        load::load_average()
    );
    println!("sweep, one window each:");
    let mut swept = Vec::new();
    for (i, target) in std::iter::once(defaults).chain(candidates).enumerate() {
        let (window, batch) = measured(eas, sweep, target);
        let figure = Figure::of(target, vec![window]);
        println!(
            "  {:<20} {:>7.0} rows/s, p50 {}, p99 {}, mean batch {batch:>4.1}, server {:.2} \
             cores{}",
            figure.name,
            figure.rate,
            ms(figure.p50),
            ms(figure.p99),
            figure.cpu.server,
            if figure.errors > 0 {
                format!(
                    "; {} ERRORS, first: {}",
                    figure.errors,
                    figure.first_error.as_deref().unwrap_or("?")
                )
            } else {
                String::new()
            }
        );
        if i > 0 {
            swept.push((i - 1, figure.rate));
        }
    }
    swept.sort_by(|a, b| b.1.total_cmp(&a.1));
    let finalists: Vec<&Target> = swept
        .iter()
        .take(settings.top)
        .map(|&(i, _)| &candidates[i])
        .collect();
    println!(
        "final comparison, {} rounds: {}, {}",
        settings.rounds,
        defaults.name,
        finalists
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut windows: Vec<Vec<Window>> = (0..=finalists.len()).map(|_| Vec::new()).collect();
    let mut batches = vec![(0.0, 0.0); finalists.len() + 1];
    let turns: Vec<(usize, &Target)> = std::iter::once(defaults)
        .chain(finalists.iter().copied())
        .enumerate()
        .collect();
    for round in 0..settings.rounds {
        let order: Vec<&(usize, &Target)> = if round % 2 == 0 {
            turns.iter().collect()
        } else {
            turns.iter().rev().collect()
        };
        for &&(k, target) in &order {
            let before = mlp::batch_stats(eas, &target.name);
            windows[k].push(load.measure(target, &[]));
            let after = mlp::batch_stats(eas, &target.name);
            batches[k].0 += after.0 - before.0;
            batches[k].1 += after.1 - before.1;
        }
    }
    let rates: Vec<Vec<f64>> = windows
        .iter()
        .map(|w| w.iter().map(|w| w.rate).collect())
        .collect();
    let mut figures: Vec<(Figure, f64)> = std::iter::once(defaults)
        .chain(finalists.iter().copied())
        .zip(windows)
        .zip(batches)
        .map(|((target, windows), (sum, count))| {
            (Figure::of(target, windows), sum / f64::max(count, 1.0))
        })
        .collect();
    for ((figure, batch), rates) in figures.iter().zip(&rates) {
        let rates: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{}; mean batch {batch:.1}\n    windows (rows/s): {}",
            figure.line("rows/s"),
            rates.join(" ")
        );
    }
    let best = (1..figures.len())
        .max_by(|&a, &b| figures[a].0.rate.total_cmp(&figures[b].0.rate))
        .expect("at least one finalist");
    let paired = load::median(
        rates[0]
            .iter()
            .zip(&rates[best])
            .map(|(ours, theirs)| ours / theirs.max(1e-9))
            .collect(),
    );
    let best = figures.swap_remove(best);
    let (defaults, defaults_batch) = figures.swap_remove(0);
    Level {
        connections: load.connections,
        defaults,
        defaults_batch,
        best: best.0,
        best_batch: best.1,
        paired,
        load_after: load::load_average(),
    }
}

/// One window of `target`, and the mean batch size its service ran meanwhile.
fn measured(eas: &RunningPlatform, load: &Load<'_>, target: &Target) -> (Window, f64) {
    let before = mlp::batch_stats(eas, &target.name);
    let window = load.measure(target, &[]);
    let after = mlp::batch_stats(eas, &target.name);
    (window, (after.0 - before.0) / (after.1 - before.1).max(1.0))
}

/// The eas server with the defaults' service and one service per configuration of the grid.
async fn start_server(dir: &Path, grid: &[Config]) -> RunningPlatform {
    let mut node = eas_runtime::provider::detect_node();
    node.cpu_millis *= grid.len() as u64 + 1;
    let mut builder = Platform::builder()
        .bind("127.0.0.1:0".parse().expect("an address"))
        .provider(std::sync::Arc::new(
            eas_runtime::provider::InProcess::with_node(node),
        ))
        .service(service(DEFAULTS, dir, json!({"batching": true})));
    for config in grid {
        builder = builder.service(config.spec(dir));
    }
    let server = builder.start().await.expect("the eas server starts");
    assert!(
        server.wait_ready(Duration::from_secs(120)).await,
        "the onnx services become ready"
    );
    server
}
