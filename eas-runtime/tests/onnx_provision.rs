//! Zero-setup first run, for real: with `ORT_DYLIB_PATH` unset and a Python that has pip but not
//! `onnxruntime`, the `onnx` processor fetches ONNX Runtime 1.31.1 through pip into the cache
//! directory on first use (saying so on stderr) and runs `examples/models/mlp.onnx`; a second
//! start reuses the cache, a damaged cache is fetched again, a Python without pip fetches through
//! a throw-away virtualenv, two processes starting at once fetch once, and `EAS_ORT_PROVISION=never` fetches nothing and says what to install.
//!
//! Why its own test binary, and each start in a child process: `ort` loads one ONNX Runtime
//! library per process and the first load decides for good (`runtime()` keeps it), while the
//! other test binaries load the library `ORT_DYLIB_PATH` names (`scripts/test` sets it). Each
//! start runs this binary again (only `child_process_entry`, with `CHILD_ENV` set) with
//! `ORT_DYLIB_PATH` removed, `EAS_PYTHON` a virtualenv made here (it never has onnxruntime;
//! one has pip, one has not, for the throw-away virtualenv route) and `EAS_CACHE_DIR` a temp dir: the very `from_env` route of a fresh machine,
//! checked from outside (its progress line, its answer), as many times as a case needs.
//!
//! Needs python3 with venv, and PyPI or pip's own download cache (which makes repeats quick);
//! without them it skips, or fails under `EAS_REQUIRE_ALL=1`. About 15 s here with pip's cache
//! warm (2 cores), plus the first download of the 24 MB wheel.

#![cfg(all(feature = "onnx", unix))]

#[path = "support/require.rs"]
mod require;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eas_core::Processor;
use eas_core::processor::{InitContext, Request};
use eas_runtime::onnx::OnnxProcessor;

/// Set in a child: run the start there.
const CHILD_ENV: &str = "EAS_TEST_PROVISION_CHILD";
/// The progress line of a fetch.
const FETCHING: &str = "fetching ONNX Runtime 1.31.1 through pip into";
/// The cache directory under `EAS_CACHE_DIR`.
const DIR_NAME: &str = "onnxruntime-1.31.1";
/// `y` for `x = [[5.1, 3.5, 1.4, 0.2]]` (examples/models/README.md).
const WANT: [f64; 3] = [0.338158, 0.2754726, 0.38636935];

/// Not a test of its own: the body of a child start (does nothing unless `CHILD_ENV` is set).
/// Prints `CHILD-LIBRARY:` and `CHILD-ANSWER:` lines, or `CHILD-ERROR:`.
#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let runtime = match eas_runtime::onnx::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("CHILD-ERROR: {e}");
            return;
        }
    };
    println!("CHILD-LIBRARY: {}", runtime.library());
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/mlp.onnx");
    let mut onnx = OnnxProcessor::new();
    onnx.initialize(
        &InitContext::new("mlp")
            .with_model_entry(model)
            .with_threads(1),
    )
    .expect("initializes");
    let answer = onnx.process(&[Request::new(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#)]);
    let body = &answer[0].as_ref().expect("answers").body;
    println!("CHILD-ANSWER: {}", String::from_utf8_lossy(body));
}

/// What a child start did.
struct Start {
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Start {
    fn line(&self, prefix: &str) -> Option<&str> {
        // libtest prints `test child_process_entry ... ` before the child's first line.
        self.stdout
            .lines()
            .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
    }

    fn fetched(&self) -> bool {
        self.stderr.contains(FETCHING)
    }

    /// Asserts that the model answered `WANT`, from a library of eas's cache.
    fn assert_served(&self, what: &str) {
        let library = self
            .line("CHILD-LIBRARY: ")
            .unwrap_or_else(|| panic!("{what}: no library:\n{self}"));
        assert!(
            library.contains("fetched through pip into eas's cache"),
            "{what}: {library}"
        );
        let answer: serde_json::Value = serde_json::from_str(
            self.line("CHILD-ANSWER: ")
                .unwrap_or_else(|| panic!("{what}: no answer:\n{self}")),
        )
        .expect("JSON answer");
        let data = answer["outputs"]["y"]["data"]
            .as_array()
            .expect("y.data")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect::<Vec<_>>();
        assert_eq!(data.len(), WANT.len(), "{what}: {answer}");
        for (got, want) in data.iter().zip(WANT) {
            assert!((got - want).abs() < 1e-5, "{what}: {answer}");
        }
    }
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// This binary, set up to run [`child_process_entry`] as a fresh machine would.
fn child(python: &Path, cache_root: &Path, extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("EAS_ORT_PROVISION")
        .env("EAS_PYTHON", python)
        .env("EAS_CACHE_DIR", cache_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in extra {
        command.env(name, value);
    }
    command
}

fn finish(output: Output, started: Instant) -> Start {
    let start = Start {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    };
    assert!(output.status.success(), "child failed:\n{start}");
    start
}

fn start(python: &Path, cache_root: &Path, extra: &[(&str, &str)]) -> Start {
    let started = Instant::now();
    let output = child(python, cache_root, extra)
        .output()
        .expect("runs the child");
    finish(output, started)
}

/// A virtualenv of `python3` under cargo's test temp dir, made once and reused: it never has
/// onnxruntime, and has pip unless `without_pip`; `Err` when python3 or its venv module is
/// missing.
fn make_venv(name: &str, without_pip: bool) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join(name);
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        let staging = root.join(format!("{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let mut command = Command::new("python3");
        command.args(["-m", "venv"]);
        if without_pip {
            command.arg("--without-pip");
        }
        let made = command
            .arg(&staging)
            .output()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if !made.status.success() {
            return Err(format!(
                "`python3 -m venv` failed: {}",
                String::from_utf8_lossy(&made.stderr).trim()
            ));
        }
        // Another run may have made it meanwhile: either is good.
        if std::fs::rename(&staging, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    let want_pip = if without_pip { "not " } else { "" };
    let check = Command::new(&python)
        .arg("-c")
        .arg(format!(
            "import importlib.util as u, sys; \
             sys.exit(0 if {want_pip}u.find_spec('pip') and not u.find_spec('onnxruntime') else 1)"
        ))
        .status()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    assert!(
        check.success(),
        "{} should {want_pip}have pip and have no onnxruntime",
        python.display()
    );
    Ok(python)
}

/// The Python with pip, or `None` after skipping (failing under `EAS_REQUIRE_ALL=1`).
fn python_or_skip(test: &str) -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| make_venv("onnx-provision-venv", false));
    or_skip(test, made)
}

/// The Python without pip (but with venv), or `None` after skipping.
fn python_without_pip_or_skip(test: &str) -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| make_venv("onnx-provision-venv-without-pip", true));
    or_skip(test, made)
}

fn or_skip(test: &str, made: &Result<PathBuf, String>) -> Option<PathBuf> {
    match made {
        Ok(python) => Some(python.clone()),
        Err(why) => {
            require::skip(test, &format!("{why} (needs python3 with venv and pip)"));
            None
        }
    }
}

/// Skips (fails under `EAS_REQUIRE_ALL=1`) when pip could not install, for example offline.
fn served_or_skip(test: &str, start: &Start) -> bool {
    match start.line("CHILD-ERROR: ") {
        Some(error) if error.contains("-m pip install onnxruntime==1.31.1` failed") => {
            require::skip(test, &format!("pip could not fetch onnxruntime: {error}"));
            false
        }
        _ => true,
    }
}

fn leftovers(cache_root: &Path) -> Vec<OsString> {
    std::fs::read_dir(cache_root)
        .expect("cache root")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect()
}

#[test]
fn first_start_should_fetch_onnx_runtime_through_pip_then_later_starts_should_reuse_it() {
    let test = "first_start_should_fetch_onnx_runtime_through_pip";
    let Some(python) = python_or_skip(test) else {
        return;
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let first = start(&python, cache.path(), &[]);
    if !served_or_skip(test, &first) {
        return;
    }
    assert!(first.fetched(), "the first start should fetch:\n{first}");
    assert!(first.stderr.contains("(one time)..."), "{first}");
    first.assert_served("first start");

    let second = start(&python, cache.path(), &[]);
    assert!(!second.fetched(), "the cache should be reused:\n{second}");
    second.assert_served("second start");

    // A damaged cache (a truncated library) is never loaded: fetched again, then used.
    let library = cache
        .path()
        .join(DIR_NAME)
        .join("onnxruntime/capi/libonnxruntime.so.1.31.1");
    std::fs::write(&library, [0_u8; 100]).expect("damage the library");
    let third = start(&python, cache.path(), &[]);
    assert!(
        third
            .stderr
            .contains("discarding the incomplete ONNX Runtime"),
        "{third}"
    );
    assert!(third.fetched(), "{third}");
    third.assert_served("after damage");
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
    println!(
        "first start (pip fetch + load + one inference): {:.1} s; second start: {:.1} s; \
         refetch after damage: {:.1} s",
        first.took.as_secs_f64(),
        second.took.as_secs_f64(),
        third.took.as_secs_f64()
    );
}

#[test]
fn a_python_without_pip_should_fetch_through_a_throwaway_virtualenv() {
    let test = "a_python_without_pip_should_fetch_through_a_throwaway_virtualenv";
    let Some(python) = python_without_pip_or_skip(test) else {
        return;
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let first = start(&python, cache.path(), &[]);
    if !served_or_skip(test, &first) {
        return;
    }
    assert!(first.fetched(), "{first}");
    first.assert_served("a Python without pip");
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
    println!(
        "first start through a throw-away virtualenv: {:.1} s",
        first.took.as_secs_f64()
    );
}

#[test]
fn two_processes_starting_at_once_should_fetch_once_and_both_serve() {
    let test = "two_processes_starting_at_once_should_fetch_once";
    let Some(python) = python_or_skip(test) else {
        return;
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|_| {
            child(&python, cache.path(), &[])
                .spawn()
                .expect("spawns a child")
        })
        .collect();
    let starts: Vec<Start> = children
        .into_iter()
        .map(|c| finish(c.wait_with_output().expect("child output"), started))
        .collect();
    if !starts.iter().all(|s| served_or_skip(test, s)) {
        return;
    }
    let fetches = starts.iter().filter(|s| s.fetched()).count();
    assert_eq!(
        fetches, 1,
        "exactly one should fetch:\n{}\n---\n{}",
        starts[0], starts[1]
    );
    for s in &starts {
        s.assert_served("concurrent start");
    }
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
    println!(
        "two concurrent first starts: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn eas_ort_provision_never_should_fetch_nothing_and_say_what_to_install() {
    let test = "eas_ort_provision_never_should_fetch_nothing";
    let Some(python) = python_or_skip(test) else {
        return;
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let refused = start(&python, cache.path(), &[("EAS_ORT_PROVISION", "never")]);
    let error = refused
        .line("CHILD-ERROR: ")
        .unwrap_or_else(|| panic!("should fail:\n{refused}"));
    for part in [
        "EAS_ORT_PROVISION=never forbids fetching it",
        "-m pip install --no-deps --target",
        "export ORT_DYLIB_PATH=",
        "pip install onnxruntime==1.31.1",
    ] {
        assert!(error.contains(part), "{part:?} not in {error}");
    }
    assert!(!refused.fetched(), "{refused}");
    assert!(!cache.path().join(DIR_NAME).exists());
}
