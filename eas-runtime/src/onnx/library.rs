//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`), so the build downloads nothing.
//! [`LibraryDiscovery`] looks, in order, at:
//! 1. `ORT_DYLIB_PATH`: the library file itself (given but missing is an error);
//! 2. a Python (`EAS_PYTHON`, else `python3`) that has the `onnxruntime` wheel, 1.31 or newer:
//!    its `onnxruntime/capi/libonnxruntime.so*`;
//! 3. eas's own copy, `onnxruntime-1.31.1` under `$EAS_CACHE_DIR`, else
//!    `$XDG_CACHE_HOME/eas`, else `~/.cache/eas`: used when complete, else fetched there first
//!    (once, with a progress line) by that Python's pip: `pip install --no-deps --target DIR
//!    onnxruntime==1.31.1`, bounded by a 10-minute timeout, staged beside DIR and renamed into
//!    place under a file lock, so concurrent first starts fetch once and a killed one leaves
//!    nothing half-written behind. `EAS_ORT_PROVISION=never` (or `0`) turns this step off;
//!
//! and otherwise fails with an error that names each place, why it failed, and what to
//! install. [`runtime`] loads what discovery found with `ort::init_from` (a missing or wrong
//! file is an `Err`, never a panic) and keeps the one ONNX Runtime environment of the process.
//!
//! ```no_run
//! let runtime = eas_runtime::onnx::runtime()?;
//! println!("ONNX Runtime from {}", runtime.library());
//! # Ok::<(), eas_runtime::onnx::OnnxError>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ort::environment::Environment;

use super::error::OnnxError;
use super::provision::{
    self, DEFAULT_TIMEOUT, ORT_VERSION, PROVISION_ENV, Policy, Provisioned, Provisioner,
};

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
    /// eas's cache directory, where pip fetched the pinned `onnxruntime` wheel (on this start
    /// or an earlier one).
    Provisioned(PathBuf),
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
            LibrarySource::Provisioned(dir) => write!(
                f,
                "{} (fetched through pip into eas's cache {})",
                self.path.display(),
                dir.display()
            ),
        }
    }
}

/// Where to look for the ONNX Runtime library, and whether to fetch it when it is nowhere;
/// [`LibraryDiscovery::from_env`] is what the processor uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryDiscovery {
    dylib_path: Option<PathBuf>,
    python: Option<OsString>,
    provision: Provision,
    provision_timeout: Option<Duration>,
}

/// Whether discovery fetches the library when it finds none, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Provision {
    /// Not asked for ([`LibraryDiscovery::new`]).
    #[default]
    Off,
    /// Into this cache directory.
    Into(PathBuf),
    /// `EAS_ORT_PROVISION` forbids it: its value, and the directory it would have used.
    Forbidden { value: String, dir: Option<PathBuf> },
    /// `EAS_ORT_PROVISION` has a value that means neither: why.
    Invalid(String),
    /// Allowed, but no variable names a cache directory.
    NoCacheDir,
}

impl LibraryDiscovery {
    /// Looks nowhere and fetches nothing: add places with the `with_*` methods.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `ORT_DYLIB_PATH` if set and not empty, then `EAS_PYTHON`, else `python3`, then eas's
    /// cache directory (`$EAS_CACHE_DIR/onnxruntime-1.31.1`, else
    /// `$XDG_CACHE_HOME/eas/onnxruntime-1.31.1`, else `~/.cache/eas/onnxruntime-1.31.1`),
    /// fetched into with that Python's pip unless `EAS_ORT_PROVISION` is `never` (or `0`,
    /// `off`, `false`, `no`).
    #[must_use]
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) with the variables `var` gives.
    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let non_empty = |name| var(name).filter(|v| !v.is_empty());
        let dir = provision::default_dir(&var);
        let value = var(PROVISION_ENV);
        let provision = match Policy::parse(value.as_deref()) {
            Ok(Policy::Auto) => dir.map_or(Provision::NoCacheDir, Provision::Into),
            Ok(Policy::Never) => Provision::Forbidden {
                value: value
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dir,
            },
            Err(why) => Provision::Invalid(why),
        };
        Self {
            dylib_path: non_empty(DYLIB_ENV).map(PathBuf::from),
            python: Some(non_empty(PYTHON_ENV).unwrap_or_else(|| OsString::from("python3"))),
            provision,
            provision_timeout: None,
        }
    }

    /// The same with this library file, checked first.
    #[must_use]
    pub fn with_dylib_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.dylib_path = Some(path.into());
        self
    }

    /// The same asking this Python interpreter where `onnxruntime` is (and fetching with its
    /// pip).
    #[must_use]
    pub fn with_python(mut self, python: impl Into<OsString>) -> Self {
        self.python = Some(python.into());
        self
    }

    /// The same, and when neither the library path nor Python has the library: ONNX Runtime
    /// 1.31.1 from this cache directory, fetched there first through pip unless it is complete
    /// (the directory itself, for example `~/.cache/eas/onnxruntime-1.31.1`).
    #[must_use]
    pub fn with_provisioning(mut self, dir: impl Into<PathBuf>) -> Self {
        self.provision = Provision::Into(dir.into());
        self
    }

    /// The same, never fetching the library nor using a cache directory.
    #[must_use]
    pub fn without_provisioning(mut self) -> Self {
        self.provision = Provision::Off;
        self
    }

    /// The same, stopping pip after `timeout` (10 minutes unless set).
    #[must_use]
    pub fn with_provision_timeout(mut self, timeout: Duration) -> Self {
        self.provision_timeout = Some(timeout);
        self
    }

    /// Finds the library file, fetching it into the cache directory first where that is how
    /// it is found; does not load it.
    ///
    /// # Errors
    /// [`OnnxError::LibraryNotFound`] naming each place looked at and why it failed, and what
    /// to install. A library path that is given but missing is an error even when Python would
    /// find another one: the person who set it meant that file.
    pub fn discover(&self) -> Result<FoundLibrary, OnnxError> {
        self.find().map(|(library, _fetched)| library)
    }

    /// [`discover`](Self::discover), also saying whether pip ran on this call.
    fn find(&self) -> Result<(FoundLibrary, bool), OnnxError> {
        if let Some(path) = &self.dylib_path {
            return if path.is_file() {
                Ok((
                    FoundLibrary {
                        path: path.clone(),
                        source: LibrarySource::DylibPath,
                    },
                    false,
                ))
            } else {
                Err(OnnxError::LibraryNotFound {
                    reason: format!("{DYLIB_ENV}={} is not a file", path.display()),
                })
            };
        }
        let mut tried = vec![format!("{DYLIB_ENV} is not set")];
        let mut python_runs = true;
        match &self.python {
            None => tried.push("no Python was given".to_owned()),
            Some(python) => match python_library(python) {
                Ok(path) => {
                    let source = LibrarySource::Python(python.clone());
                    return Ok((FoundLibrary { path, source }, false));
                }
                Err((why, runs)) => {
                    python_runs = runs;
                    tried.push(format!(
                        "Python `{}` did not help: {why}",
                        python.to_string_lossy()
                    ));
                }
            },
        }
        match &self.provision {
            Provision::Off => {}
            // Its pip would fail the same way; a complete cache needs no Python, though.
            Provision::Into(dir) if !python_runs && provision::installed(dir).is_err() => {
                tried.push(format!(
                    "so nothing can fetch ONNX Runtime {ORT_VERSION} into {}: {}",
                    dir.display(),
                    provision::INSTALL_PYTHON
                ));
            }
            Provision::Into(dir) => match self.provisioner(dir).provision(false) {
                Ok(provisioned) => return Ok(provisioned_library(dir, provisioned)),
                Err(why) => tried.push(format!(
                    "fetching ONNX Runtime {ORT_VERSION} into {} failed: {why}",
                    dir.display()
                )),
            },
            Provision::Forbidden { value, dir } => {
                let dir = dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("~/onnxruntime-1.31.1"));
                tried.push(format!(
                    "{PROVISION_ENV}={value} forbids fetching it; to install it by hand: {}",
                    provision::by_hand(self.pip_python(), &dir)
                ));
            }
            Provision::Invalid(why) => tried.push(why.clone()),
            Provision::NoCacheDir => tried.push(format!(
                "there is no cache directory to fetch it into: set {} (or HOME)",
                provision::CACHE_DIR_ENV
            )),
        }
        Err(OnnxError::LibraryNotFound {
            reason: tried.join("; "),
        })
    }

    /// Fetches the cached library again (it did not load), where discovery fetches at all.
    fn refetch(&self) -> Option<Result<FoundLibrary, OnnxError>> {
        let Provision::Into(dir) = &self.provision else {
            return None;
        };
        Some(
            self.provisioner(dir)
                .provision(true)
                .map(|provisioned| provisioned_library(dir, provisioned).0)
                .map_err(|why| OnnxError::LibraryNotFound {
                    reason: format!(
                        "the ONNX Runtime in {} did not load, and fetching it again failed: {why}",
                        dir.display()
                    ),
                }),
        )
    }

    /// The Python whose pip fetches the library.
    fn pip_python(&self) -> &OsStr {
        self.python.as_deref().unwrap_or(OsStr::new("python3"))
    }

    /// What fetches the library into `dir`.
    fn provisioner(&self, dir: &Path) -> Provisioner {
        Provisioner {
            dir: dir.to_path_buf(),
            python: self.pip_python().to_owned(),
            timeout: self.provision_timeout.unwrap_or(DEFAULT_TIMEOUT),
        }
    }
}

/// The library of a cache directory, and whether it was fetched on this call.
fn provisioned_library(dir: &Path, provisioned: Provisioned) -> (FoundLibrary, bool) {
    let library = FoundLibrary {
        path: provisioned.library,
        source: LibrarySource::Provisioned(dir.to_path_buf()),
    };
    (library, provisioned.fetched)
}

/// Asks a Python where its `onnxruntime` package keeps the library; `Err` says why not, and
/// whether the Python runs at all.
fn python_library(python: &OsStr) -> Result<PathBuf, (String, bool)> {
    let output = Command::new(python)
        .args(["-c", FIND_IN_PYTHON])
        .output()
        .map_err(|e| (format!("cannot run it: {e}"), false))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err((stderr.trim().to_owned(), true));
    }
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !path.is_file() {
        return Err((format!("it named {}, not a file", path.display()), true));
    }
    match library_version(&path) {
        Some((major, minor, _)) if (major, minor) < (1, 31) => Err((
            format!(
                "its onnxruntime is {}, older than the {ORT_VERSION} this build loads",
                version_text(&path).unwrap_or_default()
            ),
            true,
        )),
        _ => Ok(path),
    }
}

/// The version in a library's file name (`libonnxruntime.so.1.31.1`,
/// `libonnxruntime.1.31.1.dylib`).
fn version_text(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let version = name
        .strip_prefix("libonnxruntime.so.")
        .or_else(|| name.strip_prefix("libonnxruntime.")?.strip_suffix(".dylib"))?;
    Some(version.to_owned())
}

/// [`version_text`] as numbers (major, minor, patch; a missing patch is 0).
fn library_version(path: &Path) -> Option<(u32, u32, u32)> {
    let text = version_text(path)?;
    let mut parts = text.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(Result::ok).unwrap_or(0);
    Some((major, minor, patch))
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

/// The process's ONNX Runtime, found with [`LibraryDiscovery::from_env`] (which fetches it
/// into eas's cache through pip on a machine that has it nowhere, once, taking a few seconds)
/// and loaded on the first call; later calls return the same runtime (or the same error).
///
/// # Errors
/// [`OnnxError::LibraryNotFound`] or [`OnnxError::LibraryLoad`], saying how to install the
/// library.
pub fn runtime() -> Result<&'static OrtRuntime, OnnxError> {
    static RUNTIME: OnceLock<Result<OrtRuntime, (Option<PathBuf>, String)>> = OnceLock::new();
    let loaded = RUNTIME.get_or_init(|| load_runtime(&LibraryDiscovery::from_env()));
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

/// Finds and loads the library. A library from the cache that was complete on disk but does
/// not load is fetched again, once (`ort` keeps nothing of a failed load).
fn load_runtime(discovery: &LibraryDiscovery) -> Result<OrtRuntime, (Option<PathBuf>, String)> {
    let not_found = |e: OnnxError| match e {
        OnnxError::LibraryNotFound { reason } => (None, reason),
        other => (None, other.to_string()),
    };
    let (mut library, fetched) = discovery.find().map_err(not_found)?;
    let mut loaded = load(&library.path);
    if loaded.is_err()
        && !fetched
        && matches!(library.source, LibrarySource::Provisioned(_))
        && let Some(again) = discovery.refetch()
    {
        library = again.map_err(not_found)?;
        loaded = load(&library.path);
    }
    match loaded {
        Ok(environment) => Ok(OrtRuntime {
            library,
            environment,
        }),
        Err(reason) => Err((Some(library.path), reason)),
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

    use crate::onnx::provision::tests::{fake_python, pip_calls};
    use std::collections::HashMap;

    fn from_vars(vars: &[(&str, &str)]) -> LibraryDiscovery {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        LibraryDiscovery::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn from_env_should_fetch_into_the_cache_unless_eas_ort_provision_forbids_it() {
        let cache = PathBuf::from("/h/.cache/eas/onnxruntime-1.31.1");
        let cases = [
            (vec![("HOME", "/h")], Provision::Into(cache.clone())),
            (
                vec![("HOME", "/h"), ("EAS_ORT_PROVISION", "auto")],
                Provision::Into(cache.clone()),
            ),
            (
                vec![("HOME", "/h"), ("EAS_CACHE_DIR", "/c")],
                Provision::Into(PathBuf::from("/c/onnxruntime-1.31.1")),
            ),
            (
                vec![("HOME", "/h"), ("EAS_ORT_PROVISION", "never")],
                Provision::Forbidden {
                    value: "never".into(),
                    dir: Some(cache.clone()),
                },
            ),
            (
                vec![("HOME", "/h"), ("EAS_ORT_PROVISION", "0")],
                Provision::Forbidden {
                    value: "0".into(),
                    dir: Some(cache),
                },
            ),
            (vec![], Provision::NoCacheDir),
        ];
        for (vars, want) in cases {
            assert_eq!(from_vars(&vars).provision, want, "{vars:?}");
        }
        assert!(matches!(
            from_vars(&[("EAS_ORT_PROVISION", "maybe")]).provision,
            Provision::Invalid(_)
        ));
        let d = from_vars(&[("ORT_DYLIB_PATH", "/lib.so"), ("EAS_PYTHON", "/py")]);
        assert_eq!(d.dylib_path, Some(PathBuf::from("/lib.so")));
        assert_eq!(d.python, Some(OsString::from("/py")));
        assert_eq!(from_vars(&[]).python, Some(OsString::from("python3")));
    }

    /// A temp dir with a fake Python (see `fake_python`) and the cache directory it would
    /// fetch into.
    fn fake(settings: &str) -> (tempfile::TempDir, OsString, PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let python = fake_python(tmp.path(), settings);
        let cache = tmp.path().join("cache").join("onnxruntime-1.31.1");
        (tmp, python, cache)
    }

    #[test]
    fn ort_dylib_path_should_win_over_python_and_the_cache() {
        let (tmp, python, cache) = fake("");
        let lib = tmp.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&lib, b"x").expect("library");
        let found = LibraryDiscovery::new()
            .with_dylib_path(&lib)
            .with_python(python)
            .with_provisioning(&cache)
            .discover()
            .expect("found");
        assert_eq!(found.source, LibrarySource::DylibPath);
        assert_eq!(found.path, lib);
        assert!(!cache.exists());
    }

    #[test]
    fn a_python_with_onnxruntime_should_win_over_the_cache() {
        let (tmp, _, cache) = fake("");
        let lib = tmp.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&lib, b"x").expect("library");
        let python = fake_python(tmp.path(), &format!("ORT_IN_PYTHON={}", lib.display()));
        let found = LibraryDiscovery::new()
            .with_python(python.clone())
            .with_provisioning(&cache)
            .discover()
            .expect("found");
        assert_eq!(found.source, LibrarySource::Python(python));
        assert!(!cache.exists());
    }

    #[test]
    fn a_python_without_onnxruntime_should_lead_to_a_fetch_then_to_the_cache() {
        let (tmp, python, cache) = fake("");
        let discovery = LibraryDiscovery::new()
            .with_python(python)
            .with_provisioning(&cache);
        let (found, fetched) = discovery.find().expect("fetched");
        assert!(fetched);
        assert_eq!(found.source, LibrarySource::Provisioned(cache.clone()));
        assert_eq!(found.path, provision::library_in(&cache));
        let (again, fetched) = discovery.find().expect("cached");
        assert!(!fetched);
        assert_eq!(again, found);
        assert_eq!(pip_calls(tmp.path()), 1);
        assert!(found.to_string().contains("fetched through pip"), "{found}");
    }

    #[test]
    fn a_python_with_an_old_onnxruntime_should_lead_to_a_fetch() {
        let (tmp, _, cache) = fake("");
        let old = tmp.path().join("libonnxruntime.so.1.20.1");
        std::fs::write(&old, b"x").expect("library");
        let python = fake_python(tmp.path(), &format!("ORT_IN_PYTHON={}", old.display()));
        let found = LibraryDiscovery::new()
            .with_python(python)
            .with_provisioning(&cache)
            .discover()
            .expect("fetched");
        assert_eq!(found.source, LibrarySource::Provisioned(cache));
        let err = LibraryDiscovery::new()
            .with_python(fake_python(
                tmp.path(),
                &format!("ORT_IN_PYTHON={}", old.display()),
            ))
            .discover()
            .expect_err("too old, no fetch");
        assert!(
            err.to_string()
                .contains("its onnxruntime is 1.20.1, older than the 1.31.1"),
            "{err}"
        );
    }

    #[test]
    fn eas_ort_provision_never_should_fetch_nothing_and_say_what_to_install_where() {
        let (tmp, python, _) = fake("");
        let cache_root = tmp.path().join("cache");
        let discovery = from_vars(&[
            ("EAS_PYTHON", &python.to_string_lossy()),
            ("EAS_CACHE_DIR", &cache_root.to_string_lossy()),
            ("EAS_ORT_PROVISION", "never"),
        ]);
        let text = discovery.discover().expect_err("forbidden").to_string();
        let dir = cache_root.join("onnxruntime-1.31.1");
        for part in [
            "ONNX Runtime library not found: ORT_DYLIB_PATH is not set".to_owned(),
            "the Python package onnxruntime is not installed".to_owned(),
            "EAS_ORT_PROVISION=never forbids fetching it".to_owned(),
            format!(
                "-m pip install --no-deps --target {} onnxruntime==1.31.1",
                dir.display()
            ),
            format!(
                "export ORT_DYLIB_PATH={}",
                provision::library_in(&dir).display()
            ),
            "pip install onnxruntime==1.31.1".to_owned(),
        ] {
            assert!(text.contains(&part), "{part:?} not in {text}");
        }
        assert_eq!(pip_calls(tmp.path()), 0);
        assert!(!cache_root.exists());
    }

    #[test]
    fn a_cache_already_complete_should_be_used_without_pip() {
        let (tmp, python, cache) = fake("");
        LibraryDiscovery::new()
            .with_python(python)
            .with_provisioning(&cache)
            .discover()
            .expect("fetched");
        // Now a Python without pip: the cache alone must do.
        let no_pip = fake_python(tmp.path(), "HAS_PIP=0");
        let found = LibraryDiscovery::new()
            .with_python(no_pip)
            .with_provisioning(&cache)
            .discover()
            .expect("cached");
        assert_eq!(found.source, LibrarySource::Provisioned(cache));
        assert_eq!(pip_calls(tmp.path()), 1);
    }

    #[test]
    fn a_machine_without_python_should_be_told_to_install_pip_or_set_ort_dylib_path() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let text = LibraryDiscovery::new()
            .with_python("/nonexistent/python3")
            .with_provisioning(tmp.path().join("onnxruntime-1.31.1"))
            .discover()
            .expect_err("no python")
            .to_string();
        for part in [
            "Python `/nonexistent/python3` did not help: cannot run it",
            "so nothing can fetch ONNX Runtime 1.31.1 into",
            "install Python 3 with pip (Debian/Ubuntu: `sudo apt-get install python3-pip`)",
            "pip install onnxruntime==1.31.1",
            "set ORT_DYLIB_PATH",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
    }

    #[test]
    fn an_unknown_eas_ort_provision_value_should_be_named() {
        let text = from_vars(&[
            ("EAS_PYTHON", "/nonexistent/python3"),
            ("EAS_ORT_PROVISION", "sometimes"),
        ])
        .discover()
        .expect_err("invalid")
        .to_string();
        assert!(
            text.contains("EAS_ORT_PROVISION=sometimes is not one of"),
            "{text}"
        );
    }

    #[test]
    fn library_versions_should_be_read_from_file_names() {
        let cases = [
            ("/x/libonnxruntime.so.1.31.1", Some((1, 31, 1))),
            ("/x/libonnxruntime.1.20.0.dylib", Some((1, 20, 0))),
            ("/x/libonnxruntime.so.1.32", Some((1, 32, 0))),
            ("/x/libonnxruntime.so", None),
            ("/x/onnxruntime.dll", None),
        ];
        for (path, want) in cases {
            assert_eq!(library_version(Path::new(path)), want, "{path}");
        }
    }
}
