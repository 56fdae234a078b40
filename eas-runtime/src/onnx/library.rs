//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`), so the build downloads nothing.
//! [`LibraryDiscovery`] looks, in order, at:
//! 1. `ORT_DYLIB_PATH`: the library file itself;
//! 2. a Python (`EAS_PYTHON`, else `python3`) that has the `onnxruntime` wheel: its
//!    `onnxruntime/capi/libonnxruntime.so*`;
//!
//! and otherwise fails with an error that says how to install it. [`runtime`] loads what
//! discovery found with `ort::init_from` (a missing or wrong file is an `Err`, never a panic)
//! and keeps the one ONNX Runtime environment of the process.
//!
//! ```no_run
//! let runtime = eas_runtime::onnx::runtime()?;
//! println!("ONNX Runtime from {}", runtime.library());
//! # Ok::<(), eas_runtime::onnx::OnnxError>(())
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ort::environment::Environment;

use super::error::OnnxError;

/// The environment variable naming the library file.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// The environment variable naming the Python asked where `onnxruntime` is installed.
pub const PYTHON_ENV: &str = "EAS_PYTHON";

/// Asks Python where the onnxruntime wheel keeps its shared library, without importing it.
const FIND_IN_PYTHON: &str = r#"
import glob, importlib.util, os, sys
spec = importlib.util.find_spec("onnxruntime")
if spec is None or not spec.submodule_search_locations:
    sys.exit("the Python package onnxruntime is not installed")
capi = os.path.join(list(spec.submodule_search_locations)[0], "capi")
libs = glob.glob(os.path.join(capi, "libonnxruntime.so*")) + glob.glob(os.path.join(capi, "libonnxruntime*.dylib"))
if not libs:
    sys.exit("no libonnxruntime.so* in " + capi)
print(max(libs, key=len))
"#;

/// Where a library file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LibrarySource {
    /// The `ORT_DYLIB_PATH` environment variable (or [`LibraryDiscovery::with_dylib_path`]).
    DylibPath,
    /// The `onnxruntime` package of this Python interpreter.
    Python(OsString),
}

/// A library file that discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLibrary {
    /// The shared library file.
    pub path: PathBuf,
    /// How it was found.
    pub source: LibrarySource,
}

impl fmt::Display for FoundLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            LibrarySource::DylibPath => write!(f, "{} (from {DYLIB_ENV})", self.path.display()),
            LibrarySource::Python(python) => write!(
                f,
                "{} (from the onnxruntime package of {})",
                self.path.display(),
                python.to_string_lossy()
            ),
        }
    }
}

/// Where to look for the ONNX Runtime library; [`LibraryDiscovery::from_env`] is what the
/// processor uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryDiscovery {
    dylib_path: Option<PathBuf>,
    python: Option<OsString>,
}

impl LibraryDiscovery {
    /// Looks nowhere: add places with the `with_*` methods.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `ORT_DYLIB_PATH` if set and not empty, then `EAS_PYTHON`, else `python3`.
    #[must_use]
    pub fn from_env() -> Self {
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            dylib_path: non_empty(DYLIB_ENV).map(PathBuf::from),
            python: Some(non_empty(PYTHON_ENV).unwrap_or_else(|| OsString::from("python3"))),
        }
    }

    /// The same with this library file, checked first.
    #[must_use]
    pub fn with_dylib_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.dylib_path = Some(path.into());
        self
    }

    /// The same asking this Python interpreter where `onnxruntime` is.
    #[must_use]
    pub fn with_python(mut self, python: impl Into<OsString>) -> Self {
        self.python = Some(python.into());
        self
    }

    /// Finds the library file; does not load it.
    ///
    /// # Errors
    /// [`OnnxError::LibraryNotFound`] naming each place looked at and why it failed. A library
    /// path that is given but missing is an error even when Python would find another one: the
    /// person who set it meant that file.
    pub fn discover(&self) -> Result<FoundLibrary, OnnxError> {
        if let Some(path) = &self.dylib_path {
            return if path.is_file() {
                Ok(FoundLibrary {
                    path: path.clone(),
                    source: LibrarySource::DylibPath,
                })
            } else {
                Err(OnnxError::LibraryNotFound {
                    reason: format!("{DYLIB_ENV}={} is not a file", path.display()),
                })
            };
        }
        let Some(python) = &self.python else {
            return Err(OnnxError::LibraryNotFound {
                reason: format!("{DYLIB_ENV} is not set and no Python was given"),
            });
        };
        let not_found = |why: String| OnnxError::LibraryNotFound {
            reason: format!(
                "{DYLIB_ENV} is not set and Python `{}` did not help: {why}",
                python.to_string_lossy()
            ),
        };
        let output = Command::new(python)
            .args(["-c", FIND_IN_PYTHON])
            .output()
            .map_err(|e| not_found(format!("cannot run it: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(not_found(stderr.trim().to_owned()));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if path.is_file() {
            Ok(FoundLibrary {
                path,
                source: LibrarySource::Python(python.clone()),
            })
        } else {
            Err(not_found(format!(
                "it named {}, not a file",
                path.display()
            )))
        }
    }
}

/// The loaded ONNX Runtime: the library it came from and the process's environment.
#[derive(Debug)]
pub struct OrtRuntime {
    library: FoundLibrary,
    environment: Environment,
}

impl OrtRuntime {
    /// The library file this process loaded.
    #[must_use]
    pub fn library(&self) -> &FoundLibrary {
        &self.library
    }

    /// The process's ONNX Runtime environment, for building sessions.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        &self.environment
    }
}

/// The process's ONNX Runtime, found with [`LibraryDiscovery::from_env`] and loaded on the
/// first call; later calls return the same runtime (or the same error).
///
/// # Errors
/// [`OnnxError::LibraryNotFound`] or [`OnnxError::LibraryLoad`], saying how to install the
/// library.
pub fn runtime() -> Result<&'static OrtRuntime, OnnxError> {
    static RUNTIME: OnceLock<Result<OrtRuntime, (Option<PathBuf>, String)>> = OnceLock::new();
    let loaded = RUNTIME.get_or_init(|| {
        let library = LibraryDiscovery::from_env()
            .discover()
            .map_err(|e| match e {
                OnnxError::LibraryNotFound { reason } => (None, reason),
                other => (None, other.to_string()),
            })?;
        load(&library.path)
            .map(|environment| OrtRuntime {
                library: library.clone(),
                environment,
            })
            .map_err(|reason| (Some(library.path.clone()), reason))
    });
    match loaded {
        Ok(runtime) => Ok(runtime),
        Err((None, reason)) => Err(OnnxError::LibraryNotFound {
            reason: reason.clone(),
        }),
        Err((Some(path), reason)) => Err(OnnxError::LibraryLoad {
            path: path.clone(),
            reason: reason.clone(),
        }),
    }
}

/// Loads the library and builds the environment.
fn load(path: &Path) -> Result<Environment, String> {
    let builder = ort::init_from(path).map_err(|e| e.to_string())?;
    builder.with_name("eas").build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_should_refuse_a_missing_dylib_path_and_say_how_to_install() {
        let err = LibraryDiscovery::new()
            .with_dylib_path("/nonexistent/libonnxruntime.so.1.31.1")
            .with_python("python3")
            .discover()
            .expect_err("no such file");
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/libonnxruntime.so.1.31.1"),
            "{text}"
        );
        assert!(text.contains("pip install onnxruntime==1.31.1"), "{text}");
    }

    #[test]
    fn discovery_should_report_a_python_that_cannot_run() {
        let err = LibraryDiscovery::new()
            .with_python("/nonexistent/python3")
            .discover()
            .expect_err("no such python");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/python3"), "{text}");
        assert!(text.contains("cannot run it"), "{text}");
        assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
    }

    #[test]
    fn discovery_without_any_place_should_say_so() {
        let err = LibraryDiscovery::new().discover().expect_err("nowhere");
        assert!(err.to_string().contains("no Python was given"), "{err}");
    }
}
