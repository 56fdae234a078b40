//! Runs a real Python client (the EAS SDK, tritonclient, kserve) against a test server: the
//! script prints one `name<TAB>value` line per result, and the test reads them by name.

use std::ffi::OsString;
use std::process::Command;

/// What a client script printed.
pub struct Printed(String);

impl Printed {
    /// The value on the line `name`; panics, showing the whole output, when there is none.
    pub fn get(&self, name: &str) -> String {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no `{name}` line in {}", self.0))
            .to_owned()
    }
}

/// Runs `python -c script args...` off the async threads; panics with its output when it
/// fails (`what` names the client in the message).
pub async fn run(
    python: OsString,
    script: &'static str,
    args: Vec<OsString>,
    what: &str,
) -> Printed {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("the client's Python runs")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Printed(stdout)
}
