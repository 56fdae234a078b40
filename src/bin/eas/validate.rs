//! `eas validate FILE`: every problem of a service.json, or a one-line summary and a warning
//! for each field that takes no effect here (`warning: FIELD: REASON` on stderr; the exit
//! status stays 0).

use std::path::Path;
use std::process::ExitCode;

use eas::core::spec::ServiceSpec;

/// Checks `file`, prints what is wrong (or a summary and the fields that take no effect) and
/// says how the command should exit.
pub fn run(file: &Path) -> ExitCode {
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
            let builtins = eas::runtime::registry::builtin_notices(&spec);
            for notice in spec.notices().iter().chain(&builtins) {
                eprintln!("warning: {notice}");
            }
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
