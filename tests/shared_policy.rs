//! One policy, two worlds: a custom [`Autoscaler`] written once drives a simulation in
//! virtual time and a live platform in real time, through the same decision code
//! (`eas_scheduler::control::ReplicaController`), with the same service spec.
//!
//! The policy, [`QpsSteps`], is a step function of the service's QPS with no state and no
//! clock: the simulator's timeline must ask for exactly the steps of its arrival trace, and
//! the live service must take the replica counts of the load this test drives at it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use eas::core::autoscaler::metric;
use eas::prelude::*;
use eas::runtime::control::AutoscalerFactory as LiveFactory;
use eas::scheduler::pricing::TraceOracle;
use eas::scheduler::sim::{
    Arrivals, AutoscalerFactory as SimFactory, SimCloud, SimConfig, Simulation,
};

const SERVICE: &str = "steps";
const TOKEN: &str = "shared-policy-token";

/// Under 10 requests/s one replica, under 100 two, else three. The steps are wide so that the
/// live test's load lands well inside one (a 250 ms control round counts a handful of requests).
#[derive(Debug)]
struct QpsSteps;

impl QpsSteps {
    fn replicas_for(qps: f64) -> u32 {
        if qps < 10.0 {
            1
        } else if qps < 100.0 {
            2
        } else {
            3
        }
    }
}

impl Autoscaler for QpsSteps {
    fn recommend(&mut self, observation: &Observation) -> Recommendation {
        let qps = observation.service_metric(metric::QPS).unwrap_or(0.0);
        let n = Self::replicas_for(qps);
        Recommendation::new(n, format!("qps steps: {qps:.1} req/s -> {n}"))
    }
}

/// The one spec both worlds run: the built-in `echo` processor, bought on demand as `c5`.
fn spec() -> ServiceSpec {
    ServiceSpec::from_json_str(&format!(
        r#"{{"metadata": {{"name": "{SERVICE}", "instance": 1}},
            "processor": "echo", "model_path": ".", "token": "{TOKEN}",
            "cloud": {{"computing": {{"instances": [{{"type": "c5"}}]}}}}}}"#
    ))
    .expect("a valid spec")
}

#[test]
fn the_custom_autoscaler_should_drive_the_simulation() {
    // Four quarters of an hour at 5, 40, 150, then 5 requests per second.
    let per_second: Vec<u32> = [5, 40, 150, 5]
        .into_iter()
        .flat_map(|qps| std::iter::repeat_n(qps, 900))
        .collect();
    let arrivals = Arrivals::from_counts("steps", per_second).expect("non-empty");
    let cloud = SimCloud::new(TraceOracle::new().with_on_demand("c5", 1.0));
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let config = SimConfig::new(start, Duration::from_secs(3_600), 50.0);
    let factory: SimFactory =
        Arc::new(|_spec: &ServiceSpec| Box::new(QpsSteps) as Box<dyn Autoscaler>);
    let report = Simulation::new(spec(), cloud, arrivals, config)
        .expect("a valid simulation")
        .with_autoscaler(factory)
        .run()
        .expect("runs");

    // Each 5-minute step's demand is flat, and the step's last control round saw it.
    let want: Vec<u32> = report
        .timeline
        .iter()
        .map(|p| QpsSteps::replicas_for(p.demand_qps))
        .collect();
    let desired: Vec<u32> = report.timeline.iter().map(|p| p.desired).collect();
    assert_eq!(desired, want);
    assert_eq!(desired, [1, 1, 1, 2, 2, 2, 3, 3, 3, 1, 1, 1]);
    let fleet: Vec<u32> = report
        .timeline
        .iter()
        .map(|p| p.spot + p.on_demand)
        .collect();
    assert_eq!(
        fleet, desired,
        "the simulated fleet follows within each step"
    );
    assert!(
        report.policy.ends_with("; custom autoscaler"),
        "{}",
        report.policy
    );
}

/// Sends `POST /api/predict/steps` on one keep-alive connection, every `every` (none when
/// zero: each as soon as the last answer is in), until `stop`.
fn client(addr: SocketAddr, every: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn: Option<BufReader<TcpStream>> = None;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if !every.is_zero() {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                // Sends at least `every` apart: a late one is not made up for.
                next = Instant::now() + every;
            }
            if conn.is_none() {
                conn = TcpStream::connect(addr)
                    .and_then(|s| s.set_nodelay(true).map(|()| s))
                    .ok()
                    .map(BufReader::new);
            }
            let Some(c) = conn.as_mut() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            if post(c, addr).is_err() {
                conn = None;
            }
        }
    })
}

/// One request and its answer (HTTP/1.1, `Content-Length`).
fn post(conn: &mut BufReader<TcpStream>, addr: SocketAddr) -> std::io::Result<()> {
    let body = "ping";
    // One write: the request in pieces would wait on Nagle and delayed ACKs.
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

/// Load at a service: client threads that stop when this is dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| client(addr, every, Arc::clone(&stop)))
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Waits until the controller wants `n` replicas and the service has `n`, all ready.
async fn settles_at(server: &RunningPlatform, n: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let view = server.control().describe(SERVICE).expect("the service");
        let ready = view.replicas.iter().filter(|r| r.is_ready()).count();
        if view.desired == n && view.replicas.len() == n as usize && ready == n as usize {
            return true;
        }
        if Instant::now() >= deadline {
            let last = view.decisions.last().map(|d| d.reason.clone());
            eprintln!(
                "wanted {n}: desired {}, {} replicas ({ready} ready), last decision {last:?}",
                view.desired,
                view.replicas.len()
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_autoscaler_should_drive_a_live_platform() {
    let factory: LiveFactory =
        Arc::new(|_spec: &ServiceSpec| Some(Box::new(QpsSteps) as Box<dyn Autoscaler>));
    let server = Platform::builder()
        .autoscalers(factory)
        .control_period(Duration::from_millis(250))
        .service(spec())
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .expect("starts");
    assert!(server.wait_ready(Duration::from_secs(10)).await);
    let addr = server.local_addr();
    let within = Duration::from_secs(10);

    // No load: one replica.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(settles_at(&server, 1, within).await, "idle: 1");
    {
        // About 40 requests/s (4 clients, one request each 100 ms): two.
        let _load = Load::start(addr, 4, Duration::from_millis(100));
        assert!(settles_at(&server, 2, within).await, "40 req/s: 2");
    }
    {
        // As fast as echo answers (thousands a second): three.
        let _load = Load::start(addr, 4, Duration::ZERO);
        assert!(settles_at(&server, 3, within).await, "flooded: 3");
    }
    // No load again: back to one.
    assert!(settles_at(&server, 1, within).await, "idle again: 1");

    let view = server.control().describe(SERVICE).expect("the service");
    let changes: Vec<(u32, u32)> = view
        .decisions
        .iter()
        .filter(|d| d.is_change())
        .map(|d| (d.current, d.desired))
        .collect();
    assert_eq!(changes.first(), Some(&(1, 2)), "{changes:?}");
    assert_eq!(changes.last().map(|c| c.1), Some(1), "{changes:?}");
    assert!(changes.iter().any(|c| c.1 == 3), "{changes:?}");
    assert!(
        view.decisions
            .iter()
            .all(|d| d.reason.starts_with("qps steps: ")),
        "every decision is the custom autoscaler's: {:?}",
        view.decisions
    );
    server.shutdown().await;
}
