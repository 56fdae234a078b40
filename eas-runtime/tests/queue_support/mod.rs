//! A real `redis-server` for the queue tests: started on a free loopback port in a temporary
//! directory, stopped (killed) when dropped.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eas_runtime::queue::RedisQueues;

/// How long a silent consumer keeps its items in the tests (30 s in production).
pub const RECLAIM_AFTER: Duration = Duration::from_secs(2);

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one; `durable` turns the append-only file on. `Err` says why not (for example,
    /// no `redis-server` on the PATH).
    ///
    /// The port is picked free, then released for redis-server to take, so another socket
    /// may grab it in between: the server is only accepted once the `redis-server` answering
    /// on the port reports this child's process id; otherwise another port is tried.
    pub fn start(durable: bool) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(durable) {
                Ok(server) => return Ok(server),
                Err(why) => last = why,
            }
        }
        Err(last)
    }

    fn try_start(durable: bool) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", if durable { "yes" } else { "no" }])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run redis-server ({e}); install it with .ci/setup/40-redis.sh")
            })?;
        let mut server = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server exited ({status}) on port {port}"));
            }
            if server.answering_pid() == Some(server.child.id()) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server did not answer on port {port} within 10 s"
        ))
    }

    /// The process id of the redis-server answering on the port, from `INFO server`.
    fn answering_pid(&self) -> Option<u32> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(b"INFO server\r\n").ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0_u8; 4096];
        let has_pid_line = |r: &[u8]| {
            r.windows(11)
                .position(|w| w == b"process_id:")
                .is_some_and(|at| r[at..].windows(2).any(|w| w == b"\r\n"))
        };
        while !has_pid_line(&reply) {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&reply);
        text.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Queues on it, reclaiming a silent consumer's items after [`RECLAIM_AFTER`].
    pub fn queues(&self) -> RedisQueues {
        RedisQueues::new(&self.url())
            .expect("a valid URL")
            .reclaim_after(RECLAIM_AFTER)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
