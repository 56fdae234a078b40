//! The `eas` command line: check a `service.json`, print its JSON Schema.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eas::core::spec::{ServiceSpec, json_schema};

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { file } => validate(&file),
        Command::Schema => print_schema(),
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

fn validate(file: &Path) -> ExitCode {
    let shown = file.display();
    let text = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ServiceSpec::from_json_slice(&text) {
        Ok(spec) => {
            println!("{shown}: valid: {}", spec.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in errors.errors() {
                match error.location {
                    Some((line, column)) => eprintln!("{shown}:{line}:{column}: {}", error.message),
                    None => eprintln!("{shown}: {error}"),
                }
            }
            let count = errors.len();
            eprintln!(
                "{shown}: {count} problem{}",
                if count == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}
