//! Compose a whole platform in your own binary: your processor, your autoscaler, live.
//!
//! - **The processor**, `scorer`: a tiny linear model over comma-separated features. Its
//!   inference is simulated by a 20 ms pause per request, on one worker thread per replica,
//!   so one replica answers about 50 requests/s. It reports what a request costs it as the
//!   custom metric `model_ms` (through the `MetricReporter` of its `InitContext`): the
//!   processor is the one that knows its model's cost.
//! - **The autoscaler**, `BusyWorkers`: Little's law. The workers busy on average are the
//!   arrival rate times the time a request takes, so it asks for
//!   `ceil(qps × model_ms / 1000 / 0.6)` replicas (each replica's worker at most 60 % busy),
//!   within `[1, 4]`, reading `qps` from the runtime and `model_ms` from the processors. Up at
//!   once; down only to the largest need of the last 4 rounds (2 s), so a short lull keeps the
//!   replicas the next burst needs.
//! - **The platform**, built with `Platform::builder()`: the registry with `scorer`, the
//!   autoscaler factory, a control round every 500 ms, a free port on 127.0.0.1.
//!
//! The example then drives load at it over HTTP (8 clients, each sending its next request as
//! soon as its answer is in), prints each scaling decision with its reason
//! (`ControlPlane::describe`) and the replica count as it changes, stops the load, watches the
//! service scale back down to one replica, and shuts down. It takes under 10 s and exits with
//! an error unless it saw the scale-up (to 3 replicas or more) and the scale-down (to 1).
//!
//! ```sh
//! cargo run --example platform
//! ```

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use eas::core::autoscaler::metric;
use eas::prelude::*;
use eas::runtime::control::AutoscalerFactory;

const SERVICE: &str = "scorer";
const TOKEN: &str = "example-token";
/// What one request costs the model.
const MODEL_TIME: Duration = Duration::from_millis(20);
/// The custom metric the processor reports: milliseconds per request.
const MODEL_MS: &str = "model_ms";
const CLIENTS: usize = 8;

/// Scores `x1,x2,...` as `sum(w_i * x_i)` with fixed weights; reports `model_ms`.
struct Scorer {
    weights: Vec<f64>,
    metrics: Option<MetricReporter>,
}

impl Processor for Scorer {
    fn initialize(&mut self, ctx: &InitContext) -> eas::Result<()> {
        // A real processor would load its weights from `ctx.model_dir` here.
        self.weights = vec![0.5, -1.0, 2.0, 0.25];
        self.metrics = Some(ctx.metrics().clone());
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<std::result::Result<Response, ProcessError>> {
        let started = Instant::now();
        let answers = batch
            .iter()
            .map(|request| {
                let text = std::str::from_utf8(&request.body)
                    .map_err(|_| ProcessError::bad_request("features are not UTF-8"))?;
                let mut score = 0.0;
                for (field, weight) in text.split(',').zip(&self.weights) {
                    let x: f64 = field.trim().parse().map_err(|_| {
                        ProcessError::bad_request(format!("feature {field:?} is not a number"))
                    })?;
                    score += weight * x;
                }
                // The stand-in for inference.
                std::thread::sleep(MODEL_TIME);
                Ok(Response::ok(format!("{score}")).with_content_type("text/plain"))
            })
            .collect();
        if let Some(metrics) = &self.metrics {
            #[allow(clippy::cast_precision_loss)]
            let per_request = started.elapsed().as_secs_f64() * 1e3 / batch.len().max(1) as f64;
            metrics.report(MODEL_MS, per_request);
        }
        answers
    }
}

/// Replicas for the busy workers Little's law predicts (see the top of the file).
#[derive(Debug)]
struct BusyWorkers {
    /// The share of time each replica's worker should be busy at most.
    target: f64,
    min: u32,
    max: u32,
    /// The needs of the last rounds, newest last.
    recent: VecDeque<u32>,
    /// Rounds a scale-down waits for.
    window: usize,
    /// The last cost the processors reported (kept while no replica reports).
    model_ms: f64,
}

impl BusyWorkers {
    fn new() -> Self {
        Self {
            target: 0.6,
            min: 1,
            max: 4,
            recent: VecDeque::new(),
            window: 4,
            model_ms: 0.0,
        }
    }
}

impl Autoscaler for BusyWorkers {
    fn recommend(&mut self, observation: &Observation) -> Recommendation {
        let qps = observation.service_metric(metric::QPS).unwrap_or(0.0);
        let costs: Vec<f64> = observation
            .instances
            .iter()
            .filter_map(|i| i.metric(MODEL_MS))
            .collect();
        if !costs.is_empty() {
            #[allow(clippy::cast_precision_loss)]
            let mean = costs.iter().sum::<f64>() / costs.len() as f64;
            self.model_ms = mean;
        }
        let busy = qps * self.model_ms / 1e3;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let need = ((busy / self.target).ceil() as u32).clamp(self.min, self.max);
        self.recent.push_back(need);
        if self.recent.len() > self.window {
            self.recent.pop_front();
        }
        let desired = self.recent.iter().copied().max().unwrap_or(need);
        let mut reason = format!(
            "{qps:.0} req/s x {:.1} ms = {busy:.2} busy workers, at {:.0} % each: {need}",
            self.model_ms,
            self.target * 100.0
        );
        if desired > need {
            reason.push_str(&format!(
                "; holding {desired}, the most of the last {} rounds",
                self.window
            ));
        }
        Recommendation::new(desired, reason)
    }
}

/// One keep-alive HTTP/1.1 connection that posts bodies and reads `Content-Length` answers.
struct Client {
    addr: SocketAddr,
    conn: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            addr,
            conn: BufReader::new(stream),
        })
    }

    /// Posts `body` to `path`; the status and the answer's body.
    fn post(&mut self, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        // One write: a request in pieces makes small packets (or, without `TCP_NODELAY`,
        // waits on delayed ACKs).
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {TOKEN}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.conn.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        if self.conn.read_line(&mut line)? == 0 {
            return Err(bad("the server closed the connection"));
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = 0;
        loop {
            line.clear();
            if self.conn.read_line(&mut line)? == 0 {
                return Err(bad("the answer ended in its headers"));
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("bad Content-Length"))?;
            }
        }
        let mut body = vec![0; length];
        self.conn.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// Starts `CLIENTS` threads that post as fast as answers come until `stop`; counts answers.
fn drive_load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|k| {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let path = format!("/api/predict/{SERVICE}");
                let body = format!("{k},1.5,0.25,-2");
                let mut client = None;
                while !stop.load(Ordering::Relaxed) {
                    let c = match client.as_mut() {
                        Some(c) => c,
                        None => match Client::connect(addr) {
                            Ok(c) => client.insert(c),
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                        },
                    };
                    match c.post(&path, &body) {
                        Ok((200, _)) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => client = None,
                    }
                }
            })
        })
        .collect()
}

/// Prints the decisions that changed the desired count since `printed`, and the replica
/// count when it changed; returns the replicas there are and how many are ready.
fn report(
    server: &RunningPlatform,
    start: SystemTime,
    printed: &mut SystemTime,
    last: &mut (usize, usize),
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let view = server.control().describe(SERVICE)?;
    let secs = |at: SystemTime| at.duration_since(start).unwrap_or_default().as_secs_f64();
    let before = *printed;
    for d in view
        .decisions
        .iter()
        .filter(|d| d.is_change() && d.at > before)
    {
        println!(
            "{:6.2} s  decision: {} -> {} replicas: {}",
            secs(d.at),
            d.current,
            d.desired,
            d.reason
        );
        *printed = d.at;
    }
    let now = (
        view.replicas.len(),
        view.replicas.iter().filter(|r| r.is_ready()).count(),
    );
    if now != *last {
        println!(
            "{:6.2} s  replicas: {} ({} ready)",
            secs(SystemTime::now()),
            now.0,
            now.1
        );
        *last = now;
    }
    Ok(now)
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut registry = ProcessorRegistry::with_builtins();
    registry.register("scorer", |_spec| {
        Ok(Box::new(Scorer {
            weights: Vec::new(),
            metrics: None,
        }))
    });
    // Our autoscaler for every service (answering `None` would keep the spec's own).
    let autoscalers: AutoscalerFactory =
        Arc::new(|_spec: &ServiceSpec| Some(Box::new(BusyWorkers::new()) as Box<dyn Autoscaler>));
    let spec = ServiceSpec::from_json_str(&format!(
        r#"{{
            "metadata": {{"name": "{SERVICE}", "instance": 1, "rpc": {{"worker_threads": 1}}}},
            "processor": "scorer",
            "model_path": ".",
            "token": "{TOKEN}"
        }}"#
    ))?;
    let server = Platform::builder()
        .registry(registry)
        .autoscalers(autoscalers)
        .control_period(Duration::from_millis(500))
        .service(spec)
        .bind("127.0.0.1:0".parse()?)
        .start()
        .await?;
    if !server.wait_ready(Duration::from_secs(10)).await {
        return Err("the service did not become ready".into());
    }
    let addr = server.local_addr();
    let start = SystemTime::now();
    let mut printed = start;
    let mut last = (0, 0);
    println!("serving on http://{addr}/api/predict/{SERVICE}");
    report(&server, start, &mut printed, &mut last)?;

    println!("load on: {CLIENTS} clients");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients = drive_load(addr, Arc::clone(&stop), Arc::clone(&answered));
    // Load until the service has held 3 or more ready replicas for 2 s (or 9 s passed).
    let load_start = Instant::now();
    let mut peak = 0;
    let mut scaled_since: Option<Instant> = None;
    while load_start.elapsed() < Duration::from_secs(9) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, ready) = report(&server, start, &mut printed, &mut last)?;
        peak = peak.max(ready);
        if ready >= 3 {
            let since = *scaled_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(2) {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let seconds = load_start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = answered.load(Ordering::Relaxed) as f64 / seconds;
    println!("load off: {rate:.0} answers/s over {seconds:.1} s");

    // No load: back to one replica within a few rounds.
    let idle_start = Instant::now();
    let mut replicas = last.0;
    while replicas > 1 && idle_start.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        replicas = report(&server, start, &mut printed, &mut last)?.0;
    }
    server.shutdown().await;

    if peak < 3 {
        return Err(format!("the autoscaler scaled up to {peak} ready replicas, not 3").into());
    }
    if replicas != 1 {
        return Err(format!("{replicas} replicas 6 s after the load stopped, not 1").into());
    }
    println!("scaled up to {peak} replicas under load, and back to 1 after it: done");
    Ok(())
}
