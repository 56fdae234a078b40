//! The child-process provider: each instance's processor runs in a worker process of its own
//! (this binary again, in [`worker`](crate::worker) mode), so a processor that segfaults,
//! aborts or runs out of memory takes down only its instance.
//!
//! The instance itself (admission, queue, batcher, metrics) stays in the server; its
//! processor is a [`Remote`] that sends each batch over a Unix socket to the worker and reads
//! the answers, on one connection per worker thread. When the worker dies the connection
//! ends: the requests of that batch fail with [`Failure::Died`](crate::replica::Failure::Died)
//! naming the exit status or signal (a batch of several runs again request by request on the
//! next worker, so that only the request that kills it fails; a batch that never reached the
//! worker runs again whole), and the instance starts a new worker the way an in-process
//! instance rebuilds a crashed processor: counted as a restart, held down by
//! `runtime.enable_crash_block`. When workers die within [`CRASH_LOOP_WINDOW`] of their start
//! twice or more in a row, each next one starts after a back-off (0.5 s, doubling up to 30 s),
//! logged as crash-looping.
//!
//! Stopping an instance closes its connections (the worker exits at end of input); with
//! `metadata.rpc.enable_sigterm` it sends SIGTERM first. A worker still there after
//! `eas.termination_grace_period` is killed. `metadata.cpu` and `metadata.memory` are held
//! by [`Limits`]. The CPU time of the worker process counts as the instance's CPU time for
//! the autoscaler, and its resident memory as the instance's ([`Replica::resident_memory`]).

use std::ffi::OsString;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use eas_core::processor::{
    InitContext, MetricReporter, ModelMetadata, ProcessError, Processor, Request, Response,
};
use eas_scheduler::control::NodeCapacity;

use super::limits::{Group, Limits};
use super::{InstanceProvider, detect_node};
use crate::gpu::GpuInventory;
use crate::gpu::mps::{self, CoreShare};
use crate::replica::{CpuClock, MemoryProbe, ProcessDied, Replica, ReplicaParts};
use crate::worker::wire::{self, Hello, Results, Started, WireRequest};

/// A worker that dies within this long of its start counts toward a crash loop.
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(10);

/// The first back-off of a crash loop; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest back-off between two starts of a crash-looping worker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a worker may take to connect after it was started.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Instances as worker processes of this binary.
#[derive(Debug, Clone)]
pub struct ChildProcess {
    node: NodeCapacity,
    program: PathBuf,
    args: Vec<OsString>,
    limits: Arc<Limits>,
    sockets: Arc<tempfile::TempDir>,
    gpus: GpuInventory,
}

impl ChildProcess {
    /// Workers run this very binary ([`std::env::current_exe`]), which must call
    /// [`run_if_worker`](crate::worker::run_if_worker) first thing in `main`; control groups
    /// as [`Limits::detect`] finds them.
    ///
    /// # Errors
    /// When the binary's path or a private directory for the sockets cannot be had.
    pub fn new() -> io::Result<Self> {
        Self::with_command(std::env::current_exe()?, Vec::<OsString>::new())
    }

    /// Workers run `program args...` (with [`wire::SOCKET_ENV`] set), which must reach
    /// [`run_if_worker`](crate::worker::run_if_worker) with a registry that knows the
    /// services' processors.
    ///
    /// # Errors
    /// When a private directory for the sockets cannot be made.
    pub fn with_command(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> io::Result<Self> {
        // Mode 0700: only this user can connect to a worker socket before its worker does.
        let sockets = tempfile::Builder::new().prefix("eas-workers-").tempdir()?;
        Ok(Self {
            node: detect_node(),
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            limits: Arc::new(Limits::detect()),
            sockets: Arc::new(sockets),
            gpus: GpuInventory::shared().clone(),
        })
    }

    /// On a node of the given capacity instead of this machine's.
    #[must_use]
    pub fn with_node(mut self, node: NodeCapacity) -> Self {
        self.node = node;
        self
    }

    /// Granting GPUs from `gpus` (a share of the machine's, or a test's) instead of the
    /// process's.
    #[must_use]
    pub fn with_gpus(mut self, gpus: GpuInventory) -> Self {
        self.gpus = gpus;
        self
    }

    /// With these limits instead of the detected ones ([`Limits::none`] to use no cgroups).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// How `metadata.cpu` and `metadata.memory` are enforced.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl InstanceProvider for ChildProcess {
    fn name(&self) -> &'static str {
        "child-process"
    }

    fn node(&self) -> NodeCapacity {
        self.node
    }

    fn gpus(&self) -> &GpuInventory {
        &self.gpus
    }

    fn honours(&self, field: &str) -> bool {
        // Worker threads: each sends its batches to the worker process on a connection of its
        // own, and the processor there runs them as they come.
        matches!(
            field,
            "metadata.rpc.enable_sigterm" | "metadata.memory" | "metadata.rpc.worker_threads"
        )
            // With an MPS daemon, worker processes get their core share.
            || (field == "metadata.gpu_core_percentage" && mps::pipe_directory().is_some())
    }

    fn launch(&self, mut parts: ReplicaParts) -> Replica {
        let spec = &parts.spec;
        let settings = Arc::new(Settings {
            program: self.program.clone(),
            args: self.args.clone(),
            sockets: Arc::clone(&self.sockets),
            limits: Arc::clone(&self.limits),
            spec: serde_json::to_string(spec.as_ref()).unwrap_or_default(),
            processor: spec.processor.clone().unwrap_or_default(),
            label: format!("instance {} of service `{}`", parts.index, parts.service),
            connections: parts.config.worker_threads.max(1) as u32,
            cpu: spec.metadata.cpu,
            memory_mb: spec.metadata.memory,
            sigterm: spec.metadata.rpc.enable_sigterm,
            grace: spec.metadata.termination_grace_period,
            crash_loop: Mutex::new(CrashLoop::default()),
            meter: Arc::new(CpuMeter::default()),
        });
        // The worker blocks on its socket: never on the server's I/O threads.
        parts.config.inline = false;
        let meter = Arc::clone(&settings.meter);
        let clock: CpuClock = Arc::new(move || meter.read());
        parts.process_cpu = Some(clock);
        let meter = Arc::clone(&settings.meter);
        let memory: MemoryProbe = Arc::new(move || meter.resident_memory());
        parts.process_memory = Some(memory);
        parts.make_processor = Arc::new(move || {
            Ok(Box::new(Remote {
                settings: Arc::clone(&settings),
                worker: None,
            }))
        });
        Replica::start(parts)
    }
}

/// What every worker of one instance is started with.
struct Settings {
    program: PathBuf,
    args: Vec<OsString>,
    sockets: Arc<tempfile::TempDir>,
    limits: Arc<Limits>,
    spec: String,
    processor: String,
    label: String,
    connections: u32,
    cpu: Option<f64>,
    memory_mb: Option<u64>,
    sigterm: bool,
    grace: Duration,
    crash_loop: Mutex<CrashLoop>,
    meter: Arc<CpuMeter>,
}

/// When the instance's last worker started, and how many in a row died young.
#[derive(Default)]
struct CrashLoop {
    last_start: Option<Instant>,
    streak: u32,
}

/// The processor of an instance whose real processor runs in a worker process.
pub struct Remote {
    settings: Arc<Settings>,
    worker: Option<Worker>,
}

/// A running worker process and its connections.
struct Worker {
    child: Arc<Mutex<Child>>,
    pid: u32,
    control: Option<UnixStream>,
    pool: Mutex<Vec<UnixStream>>,
    returned: Condvar,
    metadata: ModelMetadata,
    reporter: MetricReporter,
    /// Set once the worker is known dead: why.
    dead: OnceLock<String>,
    group: Option<Group>,
}

impl Processor for Remote {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        self.back_off();
        let worker = Worker::start(&self.settings, ctx).map_err(|reason| {
            eas_core::Error::ProcessorInit {
                processor: self.settings.processor.clone(),
                reason: format!("in its worker process: {reason}"),
                source: None,
            }
        })?;
        self.settings.meter.switch(worker.pid);
        self.worker = Some(worker);
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        let Some(worker) = &self.worker else {
            return batch
                .iter()
                .map(|_| {
                    Err(ProcessError::internal(
                        "the worker process was never started",
                    ))
                })
                .collect();
        };
        worker.process(&self.settings, batch)
    }

    fn metadata(&self) -> ModelMetadata {
        self.worker
            .as_ref()
            .map(|w| w.metadata.clone())
            .unwrap_or_default()
    }
}

impl Remote {
    /// Waits before starting a worker whose predecessor died young, longer each time.
    fn back_off(&self) {
        let wait = {
            let mut state = self
                .settings
                .crash_loop
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let young = state
                .last_start
                .is_some_and(|at| at.elapsed() < CRASH_LOOP_WINDOW);
            state.streak = if young { state.streak + 1 } else { 0 };
            // The first young death restarts at once; a second in a row is a loop.
            let wait = (state.streak > 1).then(|| {
                FIRST_BACKOFF
                    .saturating_mul(1 << (state.streak - 2).min(16))
                    .min(MAX_BACKOFF)
            });
            if let Some(wait) = wait {
                tracing::warn!(
                    "{} is crash-looping: its worker died within {} s of starting, {} times in a row; \
                     the next one starts in {:.1} s",
                    self.settings.label,
                    CRASH_LOOP_WINDOW.as_secs(),
                    state.streak,
                    wait.as_secs_f64()
                );
            }
            wait
        };
        if let Some(wait) = wait {
            std::thread::sleep(wait);
        }
        self.settings
            .crash_loop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_start = Some(Instant::now());
    }
}

impl Worker {
    /// Starts a worker, hands it the instance, waits for its processor to be initialized and
    /// for its data connections.
    fn start(settings: &Settings, ctx: &InitContext) -> Result<Self, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = settings
            .sockets
            .path()
            .join(format!("w{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)));
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        let mut command = Command::new(&settings.program);
        command
            .args(&settings.args)
            .env(wire::SOCKET_ENV, &path)
            .stdin(Stdio::null());
        // A slice's core share holds for a process of its own, through an MPS daemon that
        // already runs; eas never starts one.
        if let Some(percent) = ctx.gpu_core_percentage {
            match mps::core_share(percent) {
                CoreShare::Enforced { env } => {
                    command.envs(env);
                }
                CoreShare::NotEnforced { why } => {
                    tracing::warn!("{}: {why}", settings.label);
                }
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", settings.program.display()))?;
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let group = settings.limits.apply(pid, settings.cpu, settings.memory_mb);
        let started = Self::handshake(settings, ctx, &listener, &child, &group);
        let _ = std::fs::remove_file(&path);
        let (control, pool, metadata) = match started {
            Ok(connected) => connected,
            Err(why) => {
                reap(&child, Some(group), Duration::ZERO);
                return Err(why);
            }
        };
        Ok(Self {
            child,
            pid,
            control: Some(control),
            pool: Mutex::new(pool),
            returned: Condvar::new(),
            metadata,
            reporter: ctx.metrics().clone(),
            dead: OnceLock::new(),
            group: Some(group),
        })
    }

    /// The control connection, the hello and its answer, then the data connections.
    fn handshake(
        settings: &Settings,
        ctx: &InitContext,
        listener: &UnixListener,
        child: &Mutex<Child>,
        group: &Group,
    ) -> Result<(UnixStream, Vec<UnixStream>, ModelMetadata), String> {
        let mut control = accept(listener, child)?;
        let hello = Hello {
            spec: settings.spec.clone(),
            init: ctx.into(),
            connections: settings.connections,
            memory_rlimit: settings
                .memory_mb
                .filter(|_| !settings.limits.limits_memory_by_cgroup())
                .map(|mb| mb.saturating_mul(1024 * 1024)),
        };
        wire::send(&mut control, &hello).map_err(|e| format!("cannot reach the worker: {e}"))?;
        let metadata = match wire::receive::<Started>(&mut control) {
            Ok(Started::Ready(metadata)) => metadata.unwrap_or_default(),
            Ok(Started::Failed(why)) => return Err(why),
            Err(_) => return Err(death(child, Some(group), settings, "while starting")),
        };
        let pool = (0..settings.connections)
            .map(|_| accept(listener, child))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((control, pool, metadata))
    }

    /// Runs a batch on the worker; unwinds with [`ProcessDied`] when the worker is dead, and
    /// with the worker's panic message when the processor panicked there.
    fn process(
        &self,
        settings: &Settings,
        batch: &[Request],
    ) -> Vec<Result<Response, ProcessError>> {
        if let Some(why) = self.dead.get() {
            died(why.clone(), false);
        }
        let mut connection = self.take();
        let requests: Vec<WireRequest> = batch.iter().map(WireRequest::from).collect();
        if wire::send(&mut connection, &requests).is_err() {
            let why = self
                .dead
                .get_or_init(|| death(&self.child, self.group.as_ref(), settings, ""))
                .clone();
            died(why, false);
        }
        let results = match wire::receive::<Results>(&mut connection) {
            Ok(results) => results,
            Err(_) => {
                let why = self
                    .dead
                    .get_or_init(|| {
                        death(
                            &self.child,
                            self.group.as_ref(),
                            settings,
                            "while it had the request",
                        )
                    })
                    .clone();
                died(why, true);
            }
        };
        self.give_back(connection);
        match results {
            Results::Done { outcomes, custom } => {
                for (name, value) in custom {
                    self.reporter.report(&name, value);
                }
                outcomes.into_iter().map(Into::into).collect()
            }
            Results::Panicked(why) => std::panic::resume_unwind(Box::new(why)),
        }
    }

    fn take(&self) -> UnixStream {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(connection) = pool.pop() {
                return connection;
            }
            pool = self.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, connection: UnixStream) {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
        self.returned.notify_one();
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        let (sigterm, grace) = (self.settings.sigterm, self.settings.grace);
        // Waiting for the worker is a thread's job, not the caller's (the last handle of an
        // instance may go on an async thread).
        let reaper = std::thread::Builder::new()
            .name("eas-reaper".into())
            .spawn(move || stop(worker, sigterm, grace));
        if let Err(e) = reaper {
            tracing::warn!("cannot start a thread to stop a worker process: {e}");
        }
    }
}

/// Stops a worker: with `sigterm`, SIGTERM and up to `grace` to exit on its own, then its
/// connections close; without, its connections close (it exits at end of input) and it has
/// `grace` to go. Still there after that: SIGKILL.
fn stop(mut worker: Worker, sigterm: bool, grace: Duration) {
    let child = Arc::clone(&worker.child);
    let group = worker.group.take();
    if sigterm {
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        wait_for_exit(&child, grace);
        drop(worker);
        reap(&child, group, Duration::from_secs(1));
    } else {
        drop(worker);
        reap(&child, group, grace);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.control.take());
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Unwinds out of `Processor::process` with the death of the worker.
fn died(why: String, delivered: bool) -> ! {
    std::panic::resume_unwind(Box::new(ProcessDied { why, delivered }))
}

/// Accepts one connection from the worker, giving up when it exits first or takes too long.
fn accept(listener: &UnixListener, child: &Mutex<Child>) -> Result<UnixStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot poll the worker socket: {e}"))?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(|e| format!("cannot use the worker connection: {e}"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("cannot accept the worker's connection: {e}")),
        }
        if let Ok(Some(status)) = lock(child).try_wait() {
            return Err(format!(
                "the worker process {} before it connected",
                describe_exit(status)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the worker process did not connect within {} s (does its main call \
                 eas_runtime::worker::run_if_worker first?)",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Why the worker's connection ended: its exit status once it has one (within a second; a
/// worker that closed its connection and lives on is killed), with a hint for SIGKILL under a
/// memory limit.
fn death(child: &Mutex<Child>, group: Option<&Group>, settings: &Settings, when: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(1);
    let status = loop {
        match lock(child).try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => break None,
        }
    };
    let pid = lock(child).id();
    let what = status.map_or_else(
        || {
            let mut child = lock(child);
            let _ = child.kill();
            let _ = child.wait();
            "closed its connection and was killed".to_owned()
        },
        describe_exit,
    );
    let when = if when.is_empty() {
        String::new()
    } else {
        format!(" {when}")
    };
    let mut why = format!(
        "the worker process (pid {pid}) of {} {what}{when}",
        settings.label
    );
    if let (Some(status), Some(mb)) = (status, settings.memory_mb) {
        let oom = group.and_then(Group::oom_kills).is_some_and(|n| n > 0);
        let hint = match status.signal() {
            Some(9) if oom => Some("the kernel's OOM killer ended it"),
            Some(6) if !settings.limits.limits_memory_by_cgroup() => {
                Some("an allocation past the memory rlimit aborts")
            }
            _ => None,
        };
        if let Some(hint) = hint {
            why.push_str(&format!(
                " ({hint}: the instance's memory limit is {mb} MB, metadata.memory)"
            ));
        }
    }
    why
}

/// An exit status in words: "exited with status 3", "was killed by signal 9 (SIGKILL)".
fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map_or_else(|_| "unknown".to_owned(), |s| s.as_str().to_owned());
            format!("was killed by signal {signal} ({name})")
        }
        None => format!("ended ({status})"),
    }
}

/// Sends `signal` to the worker unless it has exited.
fn signal(child: &Mutex<Child>, signal: nix::sys::signal::Signal) {
    let mut child = lock(child);
    if child.try_wait().ok().flatten().is_none() {
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Waits up to `within` for the worker to exit; whether it did.
fn wait_for_exit(child: &Mutex<Child>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match lock(child).try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) => return false,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Gives a worker whose connections are closed up to `within` to exit, then kills it; waits
/// for it and removes its control groups.
fn reap(child: &Mutex<Child>, group: Option<Group>, within: Duration) {
    if !wait_for_exit(child, within) {
        let mut child = lock(child);
        tracing::warn!(
            pid = child.id(),
            "a worker process did not exit within its grace period; killing it"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(group);
}

fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child.lock().unwrap_or_else(|e| e.into_inner())
}

/// The CPU time of an instance's workers: the current one's from `/proc`, plus what the
/// earlier ones had used when last read.
#[derive(Default)]
struct CpuMeter {
    state: Mutex<MeterState>,
}

#[derive(Default)]
struct MeterState {
    /// Ticks of the workers before the current one.
    earlier: u64,
    pid: Option<u32>,
    /// The current worker's ticks when last read.
    current: u64,
}

impl CpuMeter {
    fn read(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ticks) = state.pid.and_then(process_ticks) {
            state.current = state.current.max(ticks);
        }
        ticks_to_duration(state.earlier + state.current)
    }

    /// The current worker's resident memory (`None` before the first worker starts or once
    /// it is gone).
    fn resident_memory(&self) -> Option<u64> {
        let pid = self.state.lock().unwrap_or_else(|e| e.into_inner()).pid?;
        super::resident_memory(pid)
    }

    fn switch(&self, pid: u32) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ticks) = state.pid.and_then(process_ticks) {
            state.current = state.current.max(ticks);
        }
        state.earlier += state.current;
        state.current = 0;
        state.pid = Some(pid);
    }
}

/// User plus system CPU time of a process, in clock ticks (`/proc/PID/stat` fields 14, 15).
fn process_ticks(pid: u32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    static PER_SECOND: OnceLock<u64> = OnceLock::new();
    let per_second = *PER_SECOND.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    });
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_should_be_told_in_words() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }

    #[test]
    fn our_own_cpu_time_should_be_readable_from_proc() {
        let ticks = process_ticks(std::process::id()).expect("readable");
        let spent = ticks_to_duration(ticks);
        assert!(spent < Duration::from_secs(3600), "{spent:?}");
    }
}
