//! The `eas` command line: check a `service.json`, print its JSON Schema, serve services,
//! replay policies in the simulator.

mod serve;
mod service;
mod simulate;
mod stress;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eas::core::spec::json_schema;

/// eas: elastic model serving.
#[derive(Debug, Parser)]
#[command(name = "eas", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a service.json: print every problem (path: reason) and exit 1, or a one-line
    /// summary and exit 0.
    Validate {
        /// The service.json file.
        file: PathBuf,
    },
    /// Print the JSON Schema of service.json, for editors and other tools.
    Schema,
    /// Replay a service's scaling and placement policy on price, preemption and arrival traces
    /// in virtual time, and report cost, availability and latency.
    Simulate(Box<simulate::SimulateArgs>),
    /// Serve services from their service.json files until Ctrl-C: the EAS predict protocol,
    /// batching, limits and metrics.
    Serve(Box<serve::ServeArgs>),
    /// Manage the services of a running eas server through its control API: create, list,
    /// describe, update, delete, start, stop, restart, versions, release, mirror, instances,
    /// autoscaler, cron scaler.
    Service(Box<service::ServiceArgs>),
    /// Stress-test an EAS endpoint: find its capacity (auto), raise the QPS step by step
    /// (scan) or hold a QPS or a concurrency (fixed); report per-second QPS, latency and
    /// errors as JSON and a self-contained HTML page.
    Stress(Box<stress::StressArgs>),
}

fn main() -> ExitCode {
    // `eas serve --provider child` starts this binary again for each instance.
    eas::runtime::worker::run_if_worker(&eas::runtime::registry::ProcessorRegistry::with_builtins());
    match Cli::parse().command {
        Command::Validate { file } => validate::run(&file),
        Command::Schema => print_schema(),
        Command::Simulate(args) => simulate::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Service(args) => service::run(&args),
        Command::Stress(args) => stress::run(&args),
    }
}

fn print_schema() -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{:#}", json_schema()) {
        // A closed pipe (`eas schema | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("eas schema: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
