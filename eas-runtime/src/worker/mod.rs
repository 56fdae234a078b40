//! Worker mode: the far end of the child-process provider ([`crate::provider::ChildProcess`]).
//!
//! A worker is the parent's own binary (the `eas` CLI, or an application that embeds a
//! [`Platform`](crate::platform::Platform)) started again with [`wire::SOCKET_ENV`] set. Its
//! `main` calls [`run_if_worker`] first thing, with the processor registry it gives its
//! platform; the call returns at once in the parent and never returns in a worker. The worker
//! connects to the parent's socket, reads what to run ([`wire::Hello`]), builds and
//! initializes that processor, and runs the batches the parent sends on one thread per data
//! connection. When the parent closes the control connection (or dies) the worker exits, so
//! a worker never outlives its server.
//!
//! A processor that segfaults, aborts or runs out of memory takes down only its worker; the
//! parent sees the connection end, names the cause from the exit status and starts another
//! (see [`crate::provider`]).

pub mod wire;

use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use eas_core::processor::{MetricReporter, Processor};
use eas_core::spec::ServiceSpec;

use crate::registry::ProcessorRegistry;
use wire::{Hello, Results, Started, WireRequest};

/// In a worker process (started by the child-process provider: [`wire::SOCKET_ENV`] is set),
/// serves the instance the parent asks for and exits the process; anywhere else, returns at
/// once. Call it at the top of `main`, before starting a runtime or threads, with the same
/// registry the platform uses, so that the worker knows the same processors.
///
/// ```no_run
/// // First thing in `main`:
/// let registry = eas_runtime::registry::ProcessorRegistry::with_builtins();
/// eas_runtime::worker::run_if_worker(&registry);
/// // ... then build the Platform with `registry` and a ChildProcess provider ...
/// ```
pub fn run_if_worker(registry: &ProcessorRegistry) {
    let Some(socket) = std::env::var_os(wire::SOCKET_ENV) else {
        return;
    };
    let code = match serve(Path::new(&socket), registry) {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("eas worker: {why}");
            1
        }
    };
    std::process::exit(code);
}

/// Connects, builds the processor, serves the data connections until the parent closes the
/// control connection.
fn serve(socket: &Path, registry: &ProcessorRegistry) -> Result<(), String> {
    let connect = || {
        UnixStream::connect(socket)
            .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))
    };
    let mut control = connect()?;
    let hello: Hello =
        wire::receive(&mut control).map_err(|e| format!("no instructions from the server: {e}"))?;
    if let Some(limit) = hello.memory_rlimit {
        limit_memory(limit);
    }
    let (processor, started) = match build(&hello, registry) {
        Ok(processor) => {
            let metadata = processor.0.metadata();
            let described = !(metadata.inputs.is_empty() && metadata.outputs.is_empty());
            (
                Some(processor),
                Started::Ready(described.then_some(metadata)),
            )
        }
        Err(why) => (None, Started::Failed(why)),
    };
    wire::send(&mut control, &started).map_err(|e| format!("cannot answer the server: {e}"))?;
    let Some((processor, reporter)) = processor else {
        return Ok(());
    };
    for n in 0..hello.connections {
        let stream = connect()?;
        let processor = Arc::clone(&processor);
        let reporter = reporter.clone();
        std::thread::Builder::new()
            .name(format!("eas-worker-{n}"))
            .spawn(move || run(stream, processor.as_ref(), &reporter))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    // The parent never writes on the control connection again: this read ends when it closes
    // it (the instance stops) or dies.
    let _ = wire::receive::<()>(&mut control);
    Ok(())
}

/// The processor the hello names, initialized, and the reporter its metrics go to.
fn build(
    hello: &Hello,
    registry: &ProcessorRegistry,
) -> Result<(Arc<dyn Processor>, MetricReporter), String> {
    let spec = ServiceSpec::from_json_str(&hello.spec)
        .map_err(|e| format!("the server sent a spec that does not parse: {e}"))?;
    let name = spec.processor.as_deref().unwrap_or("(none)");
    let factory = registry.get(name).ok_or_else(|| {
        format!(
            "the worker binary has no processor `{name}` (it knows: {}); register it in the \
             registry passed to run_if_worker",
            registry.names().join(", ")
        )
    })?;
    let reporter = MetricReporter::new();
    let ctx = hello.init.context().with_metrics(reporter.clone());
    let made = catch_unwind(AssertUnwindSafe(|| {
        let mut processor = factory(&spec).map_err(|e| e.to_string())?;
        processor
            .initialize(&ctx)
            .map_err(|e| format!("processor initialization failed: {e}"))?;
        Ok::<_, String>(processor)
    }));
    match made {
        Ok(Ok(processor)) => Ok((Arc::from(processor), reporter)),
        Ok(Err(why)) => Err(why),
        Err(panic) => Err(format!(
            "processor panicked while starting: {}",
            crate::replica::panic_message(&*panic)
        )),
    }
}

/// One data connection: batches in, results out, until the parent closes it.
fn run(mut stream: UnixStream, processor: &dyn Processor, reporter: &MetricReporter) {
    while let Ok(batch) = wire::receive::<Vec<WireRequest>>(&mut stream) {
        let requests: Vec<_> = batch.into_iter().map(Into::into).collect();
        let results = match catch_unwind(AssertUnwindSafe(|| processor.process(&requests))) {
            Ok(outcomes) => Results::Done {
                outcomes: outcomes.into_iter().map(Into::into).collect(),
                custom: reporter.values().into_iter().collect(),
            },
            Err(panic) => Results::Panicked(crate::replica::panic_message(&*panic)),
        };
        if wire::send(&mut stream, &results).is_err() {
            return;
        }
    }
}

/// Limits this process's data segment and private memory (`RLIMIT_DATA`): an allocation past
/// it fails (Rust aborts), so the instance dies instead of the machine swapping.
fn limit_memory(bytes: u64) {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_DATA, bytes, bytes) {
        eprintln!("eas worker: cannot limit memory to {bytes} bytes: {e}");
    }
}
