//! `eas simulate`: replay a policy on traces in virtual time (being written).

use std::process::ExitCode;

/// The arguments of `eas simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

/// Runs the simulation the arguments describe.
pub fn run(_args: &SimulateArgs) -> ExitCode {
    eprintln!("eas simulate: not available yet");
    ExitCode::FAILURE
}
