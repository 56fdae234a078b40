//! How long a load step takes to reach new instances that serve: figures, not pass/fail.
//!
//! Each run starts a platform (in-process provider, a control round every 200 ms) with one
//! service at 1 replica whose `autoscaler` block targets 50 requests/s per instance with a
//! scale-up window of 0 s, lets the controller take a few idle samples, then steps the load
//! from nothing to about 180 requests/s (8 paced client connections), which needs 4 replicas.
//! It times, from the step:
//! - **decided**: the controller wants 4 replicas (`ControlPlane::describe().desired`);
//! - **launched**: 4 replicas are in the routing set;
//! - **ready**: all 4 are ready (processor initialized);
//! - **serving**: all 4 have answered requests (`Replica::usage().completed > 0`).
//!
//! Three processors, to show what dominates: the built-in `echo` (runs inline on the I/O
//! threads), the same echo on worker threads, and that echo with a 300 ms `initialize` (a
//! model load); the last two again with the child-process provider (each instance a worker
//! process of this bench binary, which calls `run_if_worker` first thing). Each is measured `EAS_BENCH_REPS` times (default 5), the step falling at
//! another point of the control period each time; the figures are median, min and max in ms.
//! `EAS_BENCH_DEBUG=1` prints each run's scaling decisions too. A run takes under a minute.
//!
//! ```sh
//! cargo bench --bench scale_up
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eas::prelude::*;

const SERVICE: &str = "step";
const TOKEN: &str = "bench-token";
const TARGET: usize = 4;
const CONTROL_PERIOD: Duration = Duration::from_millis(200);
/// 8 connections, one request each 45 ms: about 178 requests/s, 3.6 times the 50 per replica.
const CLIENTS: usize = 8;
const EVERY: Duration = Duration::from_millis(45);
/// The most a step may take before the run counts as failed.
const GIVE_UP: Duration = Duration::from_secs(10);

/// Echoes the body, after an `initialize` that takes `init`.
struct Echo {
    init: Duration,
}

impl Processor for Echo {
    fn initialize(&mut self, _ctx: &InitContext) -> eas::Result<()> {
        std::thread::sleep(self.init);
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|r| Ok(Response::ok(r.body.clone())))
            .collect()
    }
}

struct Case {
    name: &'static str,
    processor: &'static str,
    /// With the child-process provider.
    child: bool,
}

const CASES: [Case; 5] = [
    Case {
        name: "echo (inline)",
        processor: "echo",
        child: false,
    },
    Case {
        name: "echo (worker threads)",
        processor: "echo_worker",
        child: false,
    },
    Case {
        name: "echo, 300 ms initialize",
        processor: "slow_init",
        child: false,
    },
    Case {
        name: "echo, child processes",
        processor: "echo_worker",
        child: true,
    },
    Case {
        name: "echo, 300 ms init, child processes",
        processor: "slow_init",
        child: true,
    },
];

fn registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::with_builtins();
    registry.register("echo_worker", |_spec| {
        Ok(Box::new(Echo {
            init: Duration::ZERO,
        }))
    });
    registry.register("slow_init", |_spec| {
        Ok(Box::new(Echo {
            init: Duration::from_millis(300),
        }))
    });
    registry
}

fn spec(processor: &str) -> ServiceSpec {
    ServiceSpec::from_json_str(&format!(
        r#"{{"metadata": {{"name": "{SERVICE}", "instance": 1,
                           "eas.termination_grace_period": 1}},
            "processor": "{processor}", "model_path": ".", "token": "{TOKEN}",
            "autoscaler": {{"min": 1, "max": {TARGET}, "strategies": {{"qps": 50}},
                            "behavior": {{"scale_up": {{"stabilization_window_seconds": 0}}}}}}}}"#
    ))
    .unwrap()
}

/// Paced clients: each sends on its own keep-alive connection at most once per `EVERY`.
fn load(addr: SocketAddr, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|_| {
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut conn: Option<BufReader<TcpStream>> = None;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next = Instant::now() + EVERY;
                    if conn.is_none() {
                        conn = TcpStream::connect(addr)
                            .and_then(|s| s.set_nodelay(true).map(|()| s))
                            .ok()
                            .map(BufReader::new);
                    }
                    if let Some(c) = conn.as_mut()
                        && post(c, addr).is_err()
                    {
                        conn = None;
                    }
                }
            })
        })
        .collect()
}

/// One request and its answer (HTTP/1.1, `Content-Length`).
fn post(conn: &mut BufReader<TcpStream>, addr: SocketAddr) -> std::io::Result<()> {
    let body = "ping";
    let request = format!(
        "POST /api/predict/{SERVICE} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {TOKEN}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    let mut length = 0;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut answer = vec![0; length];
    conn.read_exact(&mut answer)
}

/// When each milestone was reached, from the step.
#[derive(Debug, Default, Clone, Copy)]
struct Milestones {
    decided: Option<Duration>,
    launched: Option<Duration>,
    ready: Option<Duration>,
    serving: Option<Duration>,
}

/// One step on a fresh platform, `phase` into a control period.
async fn step(case: &Case, phase: Duration, debug: bool) -> Milestones {
    let mut builder = Platform::builder().registry(registry());
    if case.child {
        builder = builder.provider(Arc::new(ChildProcess::new().unwrap()));
    }
    let server = builder
        .control_period(CONTROL_PERIOD)
        .service(spec(case.processor))
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .unwrap();
    assert!(server.wait_ready(Duration::from_secs(10)).await);
    // A few idle rounds, so the controller has samples of the one replica before the step;
    // then the step at another point of the control period each run (rounds run every period
    // from the platform's start).
    tokio::time::sleep(CONTROL_PERIOD * 3 + phase).await;
    let service = Arc::clone(&server.services()[SERVICE]);
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let clients = load(server.local_addr(), &stop);
    let mut m = Milestones::default();
    while m.serving.is_none() && t0.elapsed() < GIVE_UP {
        let at = t0.elapsed();
        if m.decided.is_none()
            && server.control().describe(SERVICE).unwrap().desired as usize >= TARGET
        {
            m.decided = Some(at);
        }
        let instances = service.instances();
        if instances.len() >= TARGET {
            m.launched.get_or_insert(at);
            if instances.iter().filter(|r| r.is_ready()).count() >= TARGET {
                m.ready.get_or_insert(at);
            }
            if instances.iter().filter(|r| r.usage().completed > 0).count() >= TARGET {
                m.serving = Some(at);
            }
        }
        drop(instances);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if debug {
        for d in server.control().describe(SERVICE).unwrap().decisions {
            println!(
                "  {} -> {} x{}: {}",
                d.current, d.desired, d.repeats, d.reason
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    server.shutdown().await;
    m
}

/// `median (min..max)` in ms, and how many runs reached it.
fn summary(values: &[Option<Duration>]) -> String {
    let mut ms: Vec<f64> = values
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    if ms.is_empty() {
        return "never".to_owned();
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        f64::midpoint(ms[n / 2 - 1], ms[n / 2])
    };
    let missed = if n < values.len() {
        format!(", {} of {} never", values.len() - n, values.len())
    } else {
        String::new()
    };
    format!("{median:6.0} ({:4.0}..{:4.0}){missed}", ms[0], ms[n - 1])
}

fn main() {
    // The child-process cases run their instances in this binary again.
    eas::runtime::worker::run_if_worker(&registry());
    let reps: usize = std::env::var("EAS_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let debug = std::env::var_os("EAS_BENCH_DEBUG").is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "scale_up: 1 -> {TARGET} replicas after a step to ~{:.0} requests/s (qps target 50, \
         control period {} ms), {reps} runs each, {cpus} CPUs",
        CLIENTS as f64 / EVERY.as_secs_f64(),
        CONTROL_PERIOD.as_millis()
    );
    println!(
        "{:<35} {:>22} {:>22} {:>22} {:>22}",
        "ms from the step, median (min..max)", "decided", "launched", "ready", "serving"
    );
    for case in &CASES {
        let runs: Vec<Milestones> = (0..reps)
            .map(|k| {
                let phase = CONTROL_PERIOD.mul_f64(k as f64 / reps as f64);
                runtime.block_on(step(case, phase, debug))
            })
            .collect();
        let column = |f: fn(&Milestones) -> Option<Duration>| {
            summary(&runs.iter().map(f).collect::<Vec<_>>())
        };
        println!(
            "{:<35} {:>22} {:>22} {:>22} {:>22}",
            case.name,
            column(|m| m.decided),
            column(|m| m.launched),
            column(|m| m.ready),
            column(|m| m.serving)
        );
    }
}
