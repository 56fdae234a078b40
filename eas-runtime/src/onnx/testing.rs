//! Test and bench support: writes the ONNX models of `tests/support/make_models.py` with a
//! Python that has `onnx`, `numpy` and `onnxruntime` (`EAS_PYTHON`). Not a stable API.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

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
