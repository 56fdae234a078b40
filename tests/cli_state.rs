//! `kill -9` of a real `eas serve` in the middle of control API writes, three rounds: the
//! server starts again on the same state directory, every service it lists is whole and valid,
//! and no acknowledged create, update or delete is lost (nor one that was refused applied).
//!
//! One client thread writes in sequence, so at most one write is in flight when the server
//! dies: after a restart each service must be exactly as the acknowledged writes left it, or as
//! the one unacknowledged write would have left it. Each create and update carries a counter
//! (`metadata.rpc.keepalive`, a field updated in place) that no other write sends; stop and
//! start writes flip the service's stopped flag, which must survive as well.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eas::core::control::{ListServicesResponse, ServiceStatus, ServiceSummary};
use eas::core::spec::ServiceSpec;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "state-admin-T";
const SERVICES: usize = 6;
const ROUNDS: u64 = 3;
/// Counters start here, so that each is a valid keepalive in milliseconds.
const BASE_KEEPALIVE: u64 = 60_000;

/// A directory of its own under the system temp directory, empty.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eas-cli-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

/// Prints the servers' logs when the test fails.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for path in &self.0 {
                let log = std::fs::read_to_string(path).unwrap_or_default();
                eprintln!("----- {} -----\n{log}", path.display());
            }
        }
    }
}

/// An `eas serve` with no spec and its state in `dir/state`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    /// What the server goes on printing; dropping it would close the pipe under it.
    _output: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Server {
    fn start(dir: &Path, log_path: &Path) -> Self {
        let log = std::fs::File::create(log_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_eas"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                ADMIN_TOKEN,
            ])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env_remove("EAS_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("eas serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let Some(Ok(first)) = lines.next() else {
            let status = child.wait().expect("eas serve exits");
            panic!("eas serve printed no address and exited ({status})");
        };
        let addr = first
            .strip_prefix("eas: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .trim()
            .to_owned();
        Self {
            child,
            addr,
            _output: lines,
        }
    }

    /// `kill -9`: `Child::kill` sends SIGKILL on Unix.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn get(&self, path: &str) -> Value {
        match call(&self.addr, "GET", path, None) {
            Some((200, body)) => serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}")),
            other => panic!("GET {path}: {other:?}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request over a fresh connection with the admin token: the status and body, or `None`
/// when no whole answer came back (the server died before or while answering).
fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, String)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(body.len());
    (body.len() == length).then(|| (status, body.to_owned()))
}

/// The spec of service `name` carrying `counter`.
fn spec(name: &str, counter: u64) -> Value {
    json!({
        "metadata": {"name": name, "instance": 1, "rpc": {"keepalive": counter}},
        "processor": "echo",
        "model_path": format!("{}/examples/models", env!("CARGO_MANIFEST_DIR")),
    })
}

/// One service as the writes leave it: `Some((counter, stopped))`, or `None`: absent.
type State = Option<(u64, bool)>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Create(u64),
    Update(u64),
    Stop,
    Start,
    Delete,
}

impl Op {
    /// The state after this write was applied to `before` (a refused write changes nothing).
    fn apply(self, before: State) -> State {
        match (self, before) {
            (Op::Create(c), None) => Some((c, false)),
            (Op::Update(c), Some((_, stopped))) => Some((c, stopped)),
            (Op::Stop, Some((c, _))) => Some((c, true)),
            (Op::Start, Some((c, _))) => Some((c, false)),
            (Op::Delete, Some(_)) => None,
            _ => before,
        }
    }
}

#[derive(Debug)]
enum Outcome {
    /// 2xx: applied.
    Acknowledged,
    /// Another status: refused, not applied.
    Refused(u16, String),
    /// No answer: the server died before or after applying it.
    Unknown,
}

/// What the client sent, in order.
#[derive(Debug, Default)]
struct Log {
    writes: Vec<(usize, Op, Outcome)>,
}

/// A small deterministic generator (xorshift), seeded per round.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn name(i: usize) -> String {
    format!("svc{i}")
}

/// Writes until a write gets no answer (the server was killed); the log.
fn hammer(
    addr: &str,
    mut belief: Vec<State>,
    mut counter: u64,
    mut rng: Rng,
    started: &AtomicBool,
) -> Log {
    let mut log = Log::default();
    loop {
        let i = usize::try_from(rng.below(SERVICES as u64)).expect("small");
        let op = match belief[i] {
            None => {
                counter += 1;
                Op::Create(counter)
            }
            Some((_, stopped)) => match rng.below(8) {
                0 | 1 => Op::Delete,
                2 if stopped => Op::Start,
                2 => Op::Stop,
                _ => {
                    counter += 1;
                    Op::Update(counter)
                }
            },
        };
        let service = format!("/api/v2/services/local/{}", name(i));
        let answer = match op {
            Op::Create(c) => call(addr, "POST", "/api/v2/services", Some(&spec(&name(i), c))),
            Op::Update(c) => call(
                addr,
                "PUT",
                &service,
                Some(&json!({"metadata": {"rpc": {"keepalive": c}}})),
            ),
            Op::Stop => call(addr, "PUT", &format!("{service}/stop"), None),
            Op::Start => call(addr, "PUT", &format!("{service}/start"), None),
            Op::Delete => call(addr, "DELETE", &service, None),
        };
        started.store(true, Ordering::SeqCst);
        let outcome = match answer {
            Some((status, _)) if (200..300).contains(&status) => {
                belief[i] = op.apply(belief[i]);
                Outcome::Acknowledged
            }
            Some((status, body)) => Outcome::Refused(status, body),
            None => {
                log.writes.push((i, op, Outcome::Unknown));
                return log;
            }
        };
        log.writes.push((i, op, outcome));
    }
}

/// Every service the restarted server lists, by index, with its counter; asserts each is
/// whole: its spec parses and is the spec the client sent with that counter.
fn observe(server: &Server) -> Vec<State> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed: ListServicesResponse = loop {
        let listed: ListServicesResponse =
            serde_json::from_value(server.get("/api/v2/services")).expect("a service list");
        let settled = listed.services.iter().all(|s| match s.status {
            ServiceStatus::Running => s.running_instance == 1 && s.total_instance == 1,
            ServiceStatus::Stopped => s.total_instance == 0,
            _ => false,
        });
        if settled {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the restored services never all ran: {listed:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed.total_count as usize, listed.services.len());
    let mut seen = vec![None; SERVICES];
    for summary in &listed.services {
        let i = (0..SERVICES)
            .find(|&i| name(i) == summary.service_name)
            .unwrap_or_else(|| panic!("a service the client never created: {summary:#?}"));
        let config = &summary.service_config;
        let parsed = ServiceSpec::from_json_value(config.clone())
            .unwrap_or_else(|e| panic!("{}: its spec does not parse: {e}\n{config:#}", name(i)));
        assert_eq!(parsed.metadata.name, name(i));
        let counter = config["metadata"]["rpc"]["keepalive"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no counter: {config:#}", name(i)));
        assert_eq!(config, &spec(&name(i), counter), "{} is not whole", name(i));
        let described: ServiceSummary =
            serde_json::from_value(server.get(&format!("/api/v2/services/cluster_b/{}", name(i))))
                .expect("a ServiceSummary");
        assert_eq!(&described.service_config, config);
        seen[i] = Some((counter, summary.status == ServiceStatus::Stopped));
    }
    seen
}

#[cfg(unix)]
#[test]
fn kill_9_during_control_api_writes_should_lose_no_acknowledged_write() {
    let dir = temp_dir("kill9");
    let mut logs = LogsOnFailure(Vec::new());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    let mut known: Vec<State> = vec![None; SERVICES];
    let mut counter = BASE_KEEPALIVE;
    let first_log = dir.join("serve-0.log");
    logs.0.push(first_log.clone());
    let mut server = Server::start(&dir, &first_log);
    for round in 0..ROUNDS {
        let mut rng = Rng(seed.wrapping_mul(round + 1) | 1);
        let delay = Duration::from_millis(200 + rng.below(601));
        let started = Arc::new(AtomicBool::new(false));
        let client = std::thread::spawn({
            let addr = server.addr.clone();
            let (belief, started) = (known.clone(), Arc::clone(&started));
            move || hammer(&addr, belief, counter, rng, &started)
        });
        while !started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(delay);
        server.kill();
        let log = client.join().expect("the client thread");

        // What must be there: every acknowledged write applied, in order; and what may: the
        // one write that got no answer, applied after them.
        let mut must = known.clone();
        let mut unknown = None;
        for (i, op, outcome) in &log.writes {
            if let Op::Create(c) | Op::Update(c) = op {
                counter = counter.max(*c);
            }
            match outcome {
                Outcome::Acknowledged => must[*i] = op.apply(must[*i]),
                // The client writes only what its acknowledged history allows.
                Outcome::Refused(status, body) => {
                    panic!(
                        "round {round}: {op:?} on {} refused: {status} {body}",
                        name(*i)
                    )
                }
                Outcome::Unknown => unknown = Some((*i, *op)),
            }
        }
        println!(
            "round {round}: killed after {delay:?}: {} writes acknowledged, in flight: {unknown:?}",
            log.writes.len() - 1
        );
        assert!(
            log.writes.len() > 1,
            "round {round}: no write was acknowledged"
        );
        let mut may = must.clone();
        if let Some((i, op)) = unknown {
            may[i] = op.apply(may[i]);
        }

        let log_path = dir.join(format!("serve-{}.log", round + 1));
        logs.0.push(log_path.clone());
        server = Server::start(&dir, &log_path);
        let seen = observe(&server);
        let applied = unknown.map(|(i, _)| seen[i] != must[i] || must[i] == may[i]);
        println!("round {round}: the write in flight is there after the restart: {applied:?}");
        for (i, ((seen, must), may)) in seen.iter().zip(&must).zip(&may).enumerate() {
            assert!(
                seen == must || seen == may,
                "round {round}: {} is {seen:?} after the restart; the acknowledged writes left \
                 {must:?}, the one in flight would leave {may:?}\nwrites: {:#?}",
                name(i),
                log.writes
            );
        }
        known = seen;
    }
}
