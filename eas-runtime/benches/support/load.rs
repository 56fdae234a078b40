//! The HTTP load generator and CPU accounting of the load benches, included by each bench with
//! `#[path = "support/load.rs"] mod load;` (a bench uses what it needs of it).
//!
//! The generator: a Rust client on hyper 1 (`client::conn::http1`), one task per keep-alive
//! connection, each sending its next request as soon as the previous answer is in (a closed
//! loop). A [`measure`] opens its connections, warms up, then counts the answers completed in a
//! fixed window, and reads from `/proc` the CPU that the generator's threads (`load-gen*` and
//! the main thread), the server (the other threads of this process, and any server processes
//! given) and the rest of the machine used meanwhile.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// How the load is generated, in words.
pub const GENERATOR: &str = "Rust hyper 1 client (client::conn::http1), one tokio task per \
                             keep-alive connection, next request as soon as the answer is in";

/// An environment variable parsed, if set and well-formed.
pub fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// A multi-threaded tokio runtime whose threads are named `name`.
pub fn runtime(threads: usize, name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
}

/// The machine in one line: cores, CPU model, load average.
pub fn machine() -> String {
    format!("{}; load average {}", cores_and_cpu(), load_average())
}

/// The cores available and the CPU model: `N cores available, MODEL`.
pub fn cores_and_cpu() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cores} cores available, {cpu}")
}

/// `/proc/loadavg`'s first three fields (1, 5 and 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/proc/loadavg` whole: the three load averages, running/all tasks, the last pid.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Where and what a load sends.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: &'static str,
    pub body: Bytes,
    /// The length every answer must have.
    pub answer_len: Option<usize>,
    /// The eas service, for its batch-size metric.
    pub service: Option<String>,
    /// Whether the server runs in this process (its threads are shown).
    pub in_process: bool,
}

impl Target {
    pub fn new(
        name: &str,
        addr: SocketAddr,
        path: &str,
        authorization: Option<&str>,
        content_type: &'static str,
        body: &Bytes,
    ) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            path: path.to_owned(),
            authorization: authorization.map(str::to_owned),
            content_type,
            body: body.clone(),
            answer_len: None,
            service: None,
            in_process: false,
        }
    }

    pub fn expecting(mut self, len: usize) -> Self {
        self.answer_len = Some(len);
        self
    }

    pub fn in_process(mut self) -> Self {
        self.in_process = true;
        self
    }

    pub fn with_service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    fn request(&self) -> hyper::Request<Full<Bytes>> {
        let mut request = hyper::Request::post(self.path.as_str())
            .header(HOST, "127.0.0.1")
            .header(CONTENT_TYPE, self.content_type);
        if let Some(token) = &self.authorization {
            request = request.header(AUTHORIZATION, token.as_str());
        }
        request
            .body(Full::new(self.body.clone()))
            .expect("the request is well-formed")
    }
}

/// What one connection did during a window.
#[derive(Default)]
pub struct Connection {
    answers: u64,
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Connection {
    pub fn error(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    /// Counts an answer completed in `[from, until)`, or the error.
    pub fn record(
        &mut self,
        outcome: Result<(), String>,
        sent: Instant,
        from: Instant,
        until: Instant,
    ) {
        let finished = Instant::now();
        match outcome {
            Ok(()) if finished >= from && finished < until => {
                self.answers += 1;
                let us = finished.duration_since(sent).as_micros();
                self.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(()) => {}
            Err(why) => self.error(why),
        }
    }
}

/// One keep-alive connection sending request after request until `until`; answers completed
/// in `[from, until)` are counted.
async fn connection(target: Arc<Target>, from: Instant, until: Instant) -> Connection {
    http_connection(
        target.addr,
        target.answer_len,
        || target.request(),
        from,
        until,
    )
    .await
}

/// One keep-alive HTTP/1.1 connection to `addr` sending `request()` after request until
/// `until`; answers completed in `[from, until)` are counted, each `answer_len` long if given.
pub async fn http_connection(
    addr: SocketAddr,
    answer_len: Option<usize>,
    request: impl Fn() -> hyper::Request<Full<Bytes>>,
    from: Instant,
    until: Instant,
) -> Connection {
    let mut done = Connection::default();
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => {
            done.error(format!("connect to {addr}: {e}"));
            return done;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => {
            done.error(format!("handshake: {e}"));
            return done;
        }
    };
    tokio::spawn(conn);
    while Instant::now() < until {
        let sent = Instant::now();
        let outcome = async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request())
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            match answer_len {
                Some(len) if body.len() != len => {
                    Err(format!("an answer of {} bytes, not {len}", body.len()))
                }
                _ => Ok(()),
            }
        }
        .await;
        let failed = outcome.is_err();
        done.record(outcome, sent, from, until);
        if failed && sender.is_closed() {
            break;
        }
    }
    done
}

/// One request on a fresh connection; panics (the bench cannot go on) unless it is a 200.
pub async fn post_once(addr: SocketAddr, path: &str, token: Option<&str>, body: &Bytes) -> Bytes {
    let target = Target::new("check", addr, path, token, "application/octet-stream", body);
    let (status, _, body) = send_once(addr, target.request()).await;
    assert!(
        status.is_success(),
        "POST {path}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// `request` on a fresh connection to `addr`: the answer's status, headers and body; panics
/// (the bench cannot go on) without an answer.
pub async fn send_once(
    addr: SocketAddr,
    request: hyper::Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, Bytes) {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1 handshake");
    tokio::spawn(conn);
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// How one measurement runs: `connections` fresh connections on `clients`, `warmup`, then the
/// measured `window`; `pids` (and their descendants) count as the server too.
pub struct Load<'a> {
    pub clients: &'a Runtime,
    pub connections: usize,
    pub warmup: Duration,
    pub window: Duration,
}

impl Load<'_> {
    /// One measurement of `target`.
    pub fn measure(&self, target: &Target, pids: &[u32]) -> Window {
        let target = Arc::new(target.clone());
        self.measure_with(pids, |from, until| {
            connection(Arc::clone(&target), from, until)
        })
    }

    /// One measurement of the connections that `connect(from, until)` runs (each counting
    /// the answers completed in `[from, until)`).
    pub fn measure_with<C, F>(&self, pids: &[u32], connect: C) -> Window
    where
        C: Fn(Instant, Instant) -> F,
        F: Future<Output = Connection> + Send + 'static,
    {
        let (warmup, window, connections) = (self.warmup, self.window, self.connections);
        self.clients.block_on(async {
            let start = Instant::now();
            let from = start + warmup;
            let until = from + window;
            let tasks: Vec<_> = (0..connections)
                .map(|_| tokio::spawn(connect(from, until)))
                .collect();
            tokio::time::sleep_until(from.into()).await;
            let before = CpuSnapshot::take(pids);
            tokio::time::sleep_until(until.into()).await;
            let after = CpuSnapshot::take(pids);
            let mut measured = Window {
                rate: 0.0,
                latencies_us: Vec::new(),
                errors: 0,
                first_error: None,
                cpu: after.since(&before),
            };
            let mut answers = 0u64;
            for task in tasks {
                let done = task.await.expect("a connection task does not panic");
                answers += done.answers;
                measured.latencies_us.extend(done.latencies_us);
                measured.errors += done.errors;
                if measured.first_error.is_none() {
                    measured.first_error = done.first_error;
                }
            }
            measured.rate = answers as f64 / window.as_secs_f64();
            measured
        })
    }
}

/// A measured window.
pub struct Window {
    pub rate: f64,
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub cpu: CpuUse,
}

/// The medians over a target's windows.
pub struct Figure {
    pub name: String,
    pub rate: f64,
    /// Latency percentiles over every answer of the windows, in microseconds.
    pub p50: u32,
    pub p99: u32,
    pub errors: u64,
    pub first_error: Option<String>,
    pub cpu: CpuUse,
    pub windows: usize,
    /// Whether to show the server's threads (an eas server in this process).
    pub threads: bool,
}

impl Figure {
    pub fn of(target: &Target, windows: Vec<Window>) -> Self {
        Self::of_windows(&target.name, target.in_process, windows)
    }

    /// The figure named `name` of `windows`; `threads`: whether to show the server's threads.
    pub fn of_windows(name: &str, threads: bool, windows: Vec<Window>) -> Self {
        let count = windows.len();
        let rate = median(windows.iter().map(|w| w.rate).collect());
        let mut groups = BTreeMap::new();
        for window in &windows {
            for (name, cores) in &window.cpu.groups {
                *groups.entry(name.clone()).or_insert(0.0) += cores / count as f64;
            }
        }
        let cpu = CpuUse {
            client: median(windows.iter().map(|w| w.cpu.client).collect()),
            server: median(windows.iter().map(|w| w.cpu.server).collect()),
            other: median(windows.iter().map(|w| w.cpu.other).collect()),
            groups,
            switches: median(windows.iter().map(|w| w.cpu.switches).collect()),
        };
        let errors = windows.iter().map(|w| w.errors).sum();
        let first_error = windows.iter().find_map(|w| w.first_error.clone());
        let mut latencies: Vec<u32> = windows.into_iter().flat_map(|w| w.latencies_us).collect();
        latencies.sort_unstable();
        Self {
            name: name.to_owned(),
            rate,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            errors,
            first_error,
            cpu,
            windows: count,
            threads,
        }
    }

    /// Microseconds of server CPU per answer: steadier than rates on a shared machine.
    pub fn cpu_per_answer(&self) -> f64 {
        self.cpu.server * 1e6 / self.rate.max(1.0)
    }

    pub fn line(&self, unit: &str) -> String {
        self.line_as(unit, &Layout::WIDE)
    }

    /// [`Figure::line`] laid out as `layout` says.
    pub fn line_as(&self, unit: &str, layout: &Layout) -> String {
        let mut line = format!(
            "  {:<name$} {:>rate$.0} {unit} (median of {}), p50 {} p99 {}; cores: client {:.2}, \
             server {:.2}, others {:.2}; server CPU {:.us$} us per answer",
            self.name,
            self.rate,
            self.windows,
            ms(self.p50),
            ms(self.p99),
            self.cpu.client,
            self.cpu.server,
            self.cpu.other,
            self.cpu_per_answer(),
            name = layout.name,
            rate = layout.rate,
            us = layout.us_digits,
        );
        if self.threads {
            let mut groups: Vec<_> = self.cpu.groups.iter().filter(|g| *g.1 >= 0.01).collect();
            groups.sort_by(|a, b| b.1.total_cmp(a.1));
            let groups: Vec<String> = groups
                .iter()
                .map(|(name, cores)| format!("{name}* {cores:.2}"))
                .collect();
            line.push_str(&format!(
                "\n    server threads (cores): {}",
                groups.join(", ")
            ));
            if layout.switches {
                line.push_str(&format!(
                    "; {:.1} context switches per answer",
                    self.cpu.switches / self.rate.max(1.0)
                ));
            }
        }
        if self.errors > 0 {
            line.push_str(&format!(
                "; {} ERRORS, first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        line
    }
}

/// How [`Figure::line_as`] lays a figure out.
pub struct Layout {
    /// The width of the name column.
    pub name: usize,
    /// The width of the rate column.
    pub rate: usize,
    /// The decimals of the server CPU per answer.
    pub us_digits: usize,
    /// Whether to show the context switches per answer (with the server's threads).
    pub switches: bool,
}

impl Layout {
    /// The layout of [`Figure::line`].
    pub const WIDE: Self = Self {
        name: 34,
        rate: 8,
        us_digits: 1,
        switches: true,
    };
}

/// Microseconds as milliseconds, for printing.
pub fn ms(us: u32) -> String {
    format!("{:.2} ms", f64::from(us) / 1000.0)
}

pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Cores used during a window: by the generator's threads, by the server (the other threads
/// of this process, or the server processes), and by everything else on the machine.
#[derive(Clone, Default)]
pub struct CpuUse {
    pub client: f64,
    pub server: f64,
    pub other: f64,
    /// Cores by group of server threads of this process (names without their trailing digits).
    pub groups: BTreeMap<String, f64>,
    /// Context switches a second of the server threads of this process.
    pub switches: f64,
}

/// CPU time so far, in clock ticks (`/proc` counts in USER_HZ, 100 a second on Linux).
pub struct CpuSnapshot {
    at: Instant,
    client: u64,
    server: u64,
    machine_busy: u64,
    groups: BTreeMap<String, u64>,
    switches: u64,
}

const TICKS_PER_SEC: f64 = 100.0;

impl CpuSnapshot {
    /// This process's threads (`load-gen*` and the main thread count as the client, the rest
    /// as the server), plus `server_pids` and their descendants as the server.
    pub fn take(server_pids: &[u32]) -> Self {
        let me = std::process::id().to_string();
        let (mut client, mut server, mut switches) = (0, 0, 0);
        let mut groups = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let tid = task.file_name().to_string_lossy().into_owned();
                let Some((comm, ticks)) = read_stat(&task.path().join("stat")) else {
                    continue;
                };
                if comm.starts_with("load-gen") || tid == me {
                    client += ticks;
                } else {
                    server += ticks;
                    let group = comm.trim_end_matches(|c: char| c.is_ascii_digit());
                    *groups.entry(group.to_owned()).or_insert(0) += ticks;
                    switches += context_switches(&task.path().join("status"));
                }
            }
        }
        for pid in descendants(server_pids) {
            if let Some((_, ticks)) = read_stat(Path::new(&format!("/proc/{pid}/stat"))) {
                server += ticks;
            }
        }
        Self {
            at: Instant::now(),
            client,
            server,
            machine_busy: machine_busy().unwrap_or(0),
            groups,
            switches,
        }
    }

    pub fn since(&self, before: &Self) -> CpuUse {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3) * TICKS_PER_SEC;
        let cores = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let client = cores(self.client, before.client);
        let server = cores(self.server, before.server);
        let machine = cores(self.machine_busy, before.machine_busy);
        let groups = self
            .groups
            .iter()
            .map(|(name, &ticks)| {
                let earlier = before.groups.get(name).copied().unwrap_or(0);
                (name.clone(), cores(ticks, earlier))
            })
            .collect();
        CpuUse {
            client,
            server,
            other: (machine - client - server).max(0.0),
            groups,
            switches: self.switches.saturating_sub(before.switches) as f64 * TICKS_PER_SEC / secs,
        }
    }
}

/// The command name and user + system ticks of a `/proc/.../stat` file.
fn read_stat(path: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the command: state (field 3) ... utime (14), stime (15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Voluntary and involuntary context switches in a `/proc/.../status` file.
fn context_switches(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// The parent process id in a `/proc/PID/stat` file.
fn parent_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    text.get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// `roots` and every process descended from them.
fn descendants(roots: &[u32]) -> BTreeSet<u32> {
    let mut found: BTreeSet<u32> = roots.iter().copied().collect();
    if roots.is_empty() {
        return found;
    }
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let parents: Vec<(u32, u32)> = all
        .into_iter()
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    loop {
        let before = found.len();
        for (pid, parent) in &parents {
            if found.contains(parent) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Busy ticks of the whole machine (all but idle and iowait), from `/proc/stat`.
fn machine_busy() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    Some(total - ticks.get(3)? - ticks.get(4)?)
}

/// A free port of 127.0.0.1 (bound, then let go).
pub fn free_port() -> Result<u16, String> {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A baseline server's process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// `child` (running `script`) once `GET health` on `addr` answers 200, within 60 s; or why
    /// not, with `hint` (what to check) should it exit.
    pub fn ready(
        child: Child,
        script: &Path,
        addr: SocketAddr,
        health: &str,
        hint: &str,
    ) -> Result<Self, String> {
        let mut server = Self { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} ({hint})",
                    script.display()
                ));
            }
            if healthy(addr, health) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server.stop();
        Err(format!("{} did not answer within 60 s", script.display()))
    }

    pub fn pids(&self) -> Vec<u32> {
        vec![self.child.id()]
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `GET path` answers 200 (a blocking probe).
fn healthy(addr: SocketAddr, path: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
