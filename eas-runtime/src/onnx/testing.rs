//! Test and bench support: writes the ONNX models of `tests/support/make_models.py` with a
//! Python that has `onnx`, `numpy` and `onnxruntime` (`EAS_PYTHON`). Not a stable API.

use std::ffi::OsString;
use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The model-writing script (`eas-runtime/tests/support/make_models.py`).
pub const MAKE_MODELS_PY: &str = include_str!("../../tests/support/make_models.py");

/// The Python named by `EAS_PYTHON`, if set and not empty.
#[must_use]
pub fn python_from_env() -> Option<OsString> {
    std::env::var_os(super::PYTHON_ENV).filter(|p| !p.is_empty())
}

/// Writes the test models and `expected.json` into `dir`; with `bench`, also
/// `bench_mlp.onnx` (x FP32 [N, 256] -> y FP32 [N, 10], a 256-1024-1024-10 MLP).
///
/// # Errors
/// A message with Python's error output when the script fails.
pub fn write_models(python: &OsString, dir: &Path, bench: bool) -> Result<(), String> {
    let mut command = Command::new(python);
    command.arg("-").arg(dir);
    if bench {
        command.arg("--bench");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.to_string_lossy()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(MAKE_MODELS_PY.as_bytes())
            .map_err(|e| format!("cannot send make_models.py to Python: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("make_models.py did not finish: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "make_models.py failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The models in `parent/onnx-models-<hash of the script and python>[-bench]`, written there by
/// [`write_models`] unless a previous run did (they are deterministic). A half-written
/// directory is never reused: the models are written to a temporary directory and renamed.
///
/// # Errors
/// As [`write_models`], or a message when the directory cannot be made.
pub fn cached_models(python: &OsString, parent: &Path, bench: bool) -> Result<PathBuf, String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    MAKE_MODELS_PY.hash(&mut hasher);
    python.hash(&mut hasher);
    let suffix = if bench { "-bench" } else { "" };
    let dir = parent.join(format!("onnx-models-{:016x}{suffix}", hasher.finish()));
    if dir.join("expected.json").is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let staging = parent.join(format!(".onnx-models-{}-{call}", std::process::id()));
    let written = write_models(python, &staging, bench);
    // Another process may have won the race; its models are the same.
    let moved = written.and_then(|()| match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.join("expected.json").is_file() => Ok(()),
        Err(e) => Err(format!("cannot move the models to {}: {e}", dir.display())),
    });
    // Gone after a rename; left over when another process won or the script failed.
    let _ = std::fs::remove_dir_all(&staging);
    moved?;
    Ok(dir)
}
