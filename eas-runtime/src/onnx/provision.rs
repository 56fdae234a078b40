//! Fetching the ONNX Runtime library on first use, so that a machine with a stock Python needs
//! no setup: pip installs the pinned `onnxruntime` wheel into a cache directory, once.
//!
//! - **Where**: `$EAS_CACHE_DIR/onnxruntime-1.31.1`, else `$XDG_CACHE_HOME/eas/onnxruntime-1.31.1`,
//!   else `~/.cache/eas/onnxruntime-1.31.1` ([`default_dir`]). The directory holds what
//!   `pip install --no-deps --target DIR onnxruntime==1.31.1` writes; the library is
//!   `DIR/onnxruntime/capi/libonnxruntime.so.1.31.1`.
//! - **When is it complete**: pip's own manifest, `onnxruntime-1.31.1.dist-info/RECORD`, lists
//!   the library with the size the file has ([`installed`]). A directory that fails this (a run
//!   killed half-way, a truncated file) is never loaded: it is removed and fetched again.
//! - **How**: `python -m pip install --no-deps --only-binary=:all:` (a Python without pip
//!   borrows the pip of a throw-away `python -m venv`), bounded by a timeout, into a staging
//!   directory beside the target; the library is checked there (the manifest as above, and a
//!   child Python loads it with `ctypes` and must report version 1.31.1), then the staging
//!   directory is renamed to the target in one step, so the target is either absent or
//!   complete.
//! - **Concurrency**: the whole fetch holds an exclusive lock on `onnxruntime-1.31.1.lock`
//!   beside the target (`std::fs::File::lock`: `flock` on Unix, released by the kernel when
//!   the process dies, and distinct for each open, so it also orders threads of one process).
//!   The second process or thread waits, then finds the directory complete and fetches nothing.
//!   Holding the lock, a fetch removes staging directories of killed runs. Where the file
//!   system cannot lock, the atomic rename alone keeps the target whole (two fetches may then
//!   both download).
//!
//! Progress goes to the `tracing` log when the application installed a subscriber (`eas serve`
//! does), else to stderr.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The ONNX Runtime release this build loads and fetches (`ort`'s `api-31`).
pub(crate) const ORT_VERSION: &str = "1.31.1";
/// The environment variable that allows (`auto`, the default) or forbids (`never`) fetching.
pub(crate) const PROVISION_ENV: &str = "EAS_ORT_PROVISION";
/// The environment variable naming the cache root (the library goes in a directory under it).
pub(crate) const CACHE_DIR_ENV: &str = "EAS_CACHE_DIR";
/// How long pip may take before it is stopped.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The name of the cache directory, under the cache root.
const DIR_NAME: &str = "onnxruntime-1.31.1";
/// The requirement given to pip.
const REQUIREMENT: &str = "onnxruntime==1.31.1";
/// The wheel's metadata directory, whose `RECORD` lists every installed file with its size.
const DIST_INFO: &str = "onnxruntime-1.31.1.dist-info";
/// The library inside the directory, as pip's `RECORD` names it (always with `/`).
#[cfg(target_os = "macos")]
pub(crate) const LIBRARY: &str = "onnxruntime/capi/libonnxruntime.1.31.1.dylib";
/// The library inside the directory, as pip's `RECORD` names it (always with `/`).
#[cfg(target_os = "windows")]
pub(crate) const LIBRARY: &str = "onnxruntime/capi/onnxruntime.dll";
/// The library inside the directory, as pip's `RECORD` names it (always with `/`).
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
pub(crate) const LIBRARY: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";

/// What a machine without Python needs.
pub(crate) const INSTALL_PYTHON: &str = "install Python 3 with pip (Debian/Ubuntu: `sudo apt-get \
install python3-pip`), or set EAS_PYTHON to a Python that has pip";
/// What a Debian or Ubuntu machine without pip needs.
const INSTALL_PIP: &str = "install pip for it (Debian/Ubuntu: `sudo apt-get install python3-pip`; \
or set EAS_PYTHON to a Python that has pip)";

/// Loads the library in a child Python and prints the version it reports
/// (`OrtGetApiBase()->GetVersionString()`), without the `onnxruntime` package.
const VERIFY_PY: &str = r#"
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
get_base = lib.OrtGetApiBase
get_base.restype = ctypes.POINTER(ctypes.c_void_p * 2)
base = get_base().contents
print(ctypes.CFUNCTYPE(ctypes.c_char_p)(base[1])().decode())
"#;

/// pip settings from the environment that would send the files elsewhere or refuse `--target`;
/// the others (index URL, proxy, certificates) are kept.
const PIP_ENV_REMOVED: [&str; 5] = [
    "PIP_USER",
    "PIP_TARGET",
    "PIP_PREFIX",
    "PIP_ROOT",
    "PIP_REQUIRE_VIRTUALENV",
];

/// Whether fetching is allowed, from `EAS_ORT_PROVISION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Fetch when nothing else is found (unset, empty, `auto`, `1`, `on`, `true`, `yes`).
    Auto,
    /// Never fetch nor use the cache (`never`, `0`, `off`, `false`, `no`).
    Never,
}

impl Policy {
    /// Parses the variable's value; `Err` says which values are accepted.
    pub(crate) fn parse(value: Option<&OsStr>) -> Result<Self, String> {
        let text = value.map(|v| v.to_string_lossy().trim().to_ascii_lowercase());
        match text.as_deref() {
            None | Some("" | "auto" | "1" | "on" | "true" | "yes") => Ok(Self::Auto),
            Some("never" | "0" | "off" | "false" | "no") => Ok(Self::Never),
            Some(other) => Err(format!(
                "{PROVISION_ENV}={other} is not one of `auto` (the default: fetch when not \
                 found) or `never` (also 0, off, false, no)"
            )),
        }
    }
}

/// The cache directory from these variables: `EAS_CACHE_DIR`, else `XDG_CACHE_HOME/eas` (when
/// absolute, as the XDG spec asks), else `HOME/.cache/eas`, each with `onnxruntime-1.31.1`
/// under it; `None` when none is set.
pub(crate) fn default_dir(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let non_empty = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let root = non_empty(CACHE_DIR_ENV)
        .or_else(|| {
            non_empty("XDG_CACHE_HOME")
                .filter(|p| p.is_absolute())
                .map(|p| p.join("eas"))
        })
        .or_else(|| non_empty("HOME").map(|home| home.join(".cache").join("eas")))?;
    Some(root.join(DIR_NAME))
}

/// The library file in a cache directory, whether or not it is there.
pub(crate) fn library_in(dir: &Path) -> PathBuf {
    LIBRARY
        .split('/')
        .fold(dir.to_path_buf(), |p, part| p.join(part))
}

/// The library of a complete cache directory; `Err` says what is missing or wrong.
///
/// Complete means: pip's `RECORD` of the 1.31.1 wheel lists the library, and the file has the
/// size `RECORD` gives (pip writes `RECORD` last, and a truncated library would crash the
/// process that maps it, so this is checked on every start; it reads one small file).
pub(crate) fn installed(dir: &Path) -> Result<PathBuf, String> {
    let record_path = dir.join(DIST_INFO).join("RECORD");
    let record = fs::read_to_string(&record_path)
        .map_err(|e| format!("cannot read {}: {e}", record_path.display()))?;
    let size = record
        .lines()
        .find_map(|line| {
            let mut fields = line.rsplitn(3, ',');
            let size = fields.next()?;
            let _hash = fields.next()?;
            if fields.next()? == LIBRARY {
                size.trim().parse::<u64>().ok()
            } else {
                None
            }
        })
        .ok_or_else(|| format!("{} does not list {LIBRARY}", record_path.display()))?;
    let library = library_in(dir);
    let actual = fs::metadata(&library)
        .map_err(|e| format!("cannot read {}: {e}", library.display()))?
        .len();
    if actual == size {
        Ok(library)
    } else {
        Err(format!(
            "{} has {actual} bytes, not the {size} pip installed",
            library.display()
        ))
    }
}

/// A command to give to someone who installs the library by hand into `dir`.
pub(crate) fn by_hand(python: &OsStr, dir: &Path) -> String {
    format!(
        "`{} -m pip install --no-deps --target {} {REQUIREMENT}` then \
         `export ORT_DYLIB_PATH={}`",
        python.to_string_lossy(),
        dir.display(),
        library_in(dir).display()
    )
}

/// A fetched (or already complete) cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Provisioned {
    /// The library file in it.
    pub(crate) library: PathBuf,
    /// Whether this call ran pip (`false`: the directory was complete already).
    pub(crate) fetched: bool,
}

/// Fetches the library into one cache directory with one Python.
#[derive(Debug, Clone)]
pub(crate) struct Provisioner {
    /// The cache directory (`.../onnxruntime-1.31.1`).
    pub(crate) dir: PathBuf,
    /// The Python whose pip installs the wheel.
    pub(crate) python: OsString,
    /// The limit for pip (and for the wait on another fetch, with a minute more).
    pub(crate) timeout: Duration,
}

impl Provisioner {
    /// The library from the cache directory, fetching it first unless the directory is
    /// complete already; with `redo`, an existing directory is fetched again (its library
    /// failed to load).
    ///
    /// # Errors
    /// A message that says what failed and, where something is missing, what to install.
    pub(crate) fn provision(&self, redo: bool) -> Result<Provisioned, String> {
        if !redo && let Ok(library) = installed(&self.dir) {
            return Ok(Provisioned {
                library,
                fetched: false,
            });
        }
        let (parent, name) = self.parent_and_name()?;
        fs::create_dir_all(&parent).map_err(|e| {
            format!(
                "cannot create {}: {e} (set {CACHE_DIR_ENV} to a writable directory)",
                parent.display()
            )
        })?;
        let _lock = self.lock(&parent, &name)?;
        // Whoever held the lock before may have fetched it meanwhile.
        if !redo && let Ok(library) = installed(&self.dir) {
            return Ok(Provisioned {
                library,
                fetched: false,
            });
        }
        remove_leftovers(&parent, &name);
        if self.dir.exists() {
            let why = installed(&self.dir)
                .err()
                .unwrap_or_else(|| "it does not load".into());
            progress(&format!(
                "discarding the incomplete ONNX Runtime in {} ({why})",
                self.dir.display()
            ));
            let aside = staging_path(&parent, &name);
            fs::rename(&self.dir, &aside)
                .map_err(|e| format!("cannot move {} aside: {e}", self.dir.display()))?;
            // Whatever stays behind is removed with the leftovers of the next fetch.
            let _ = fs::remove_dir_all(&aside);
        }
        let started = Instant::now();
        let staging = staging_path(&parent, &name);
        let result = self.fetch_into(&staging);
        let library = match result.and_then(|()| self.publish(&staging)) {
            Ok(library) => library,
            Err(why) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(why);
            }
        };
        progress(&format!(
            "ONNX Runtime {ORT_VERSION} is in {} ({:.1} s)",
            self.dir.display(),
            started.elapsed().as_secs_f64()
        ));
        Ok(Provisioned {
            library,
            fetched: true,
        })
    }

    /// The directory above the cache directory and the cache directory's name.
    fn parent_and_name(&self) -> Result<(PathBuf, String), String> {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{} names no directory", self.dir.display()))?;
        let parent = match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok((parent, name))
    }

    /// Takes the lock beside the cache directory, waiting for another fetch at most the pip
    /// timeout and a minute; `None` where the file system cannot lock.
    fn lock(&self, parent: &Path, name: &str) -> Result<Option<File>, String> {
        let path = parent.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the lock {}: {e}", path.display()))?;
        let deadline = Instant::now() + self.timeout + Duration::from_secs(60);
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                    return Ok(None);
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(format!("cannot lock {}: {e}", path.display()));
                }
            }
            if !said {
                progress(&format!(
                    "waiting for another process fetching ONNX Runtime into {}",
                    self.dir.display()
                ));
                said = true;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "another process held {} for over {} s",
                    path.display(),
                    (self.timeout + Duration::from_secs(60)).as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs pip into `staging` (made here), then checks the library there.
    fn fetch_into(&self, staging: &Path) -> Result<(), String> {
        fs::create_dir_all(staging)
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        let mut venv = staging.as_os_str().to_owned();
        venv.push("-venv");
        let venv = PathBuf::from(venv);
        let result = self.pip_python(&venv).and_then(|python| {
            self.pip_install(&python, staging)?;
            let library = installed(staging)
                .map_err(|why| format!("pip finished but the library is not there: {why}"))?;
            verify(&python, &library)
        });
        let _ = fs::remove_dir_all(&venv);
        result
    }

    /// The Python that has pip: this one, else a virtualenv made from it in `venv`.
    fn pip_python(&self, venv: &Path) -> Result<OsString, String> {
        let python = &self.python;
        let shown = python.to_string_lossy();
        let short = Duration::from_secs(120).min(self.timeout);
        let probe = run_bounded(Command::new(python).args(["-m", "pip", "--version"]), short)
            .map_err(|e| format!("cannot run `{shown}` ({e}): {INSTALL_PYTHON}"))?;
        // Said once the Python is known to run: what follows may take a while.
        progress(&format!(
            "fetching ONNX Runtime {ORT_VERSION} through pip into {} (one time)...",
            self.dir.display()
        ));
        if probe.succeeded() {
            return Ok(python.clone());
        }
        let no_pip = probe.last_line();
        let made = run_bounded(Command::new(python).arg("-m").arg("venv").arg(venv), short)
            .map_err(|e| e.to_string())
            .and_then(|ran| {
                if ran.succeeded() {
                    Ok(())
                } else {
                    Err(ran.last_line())
                }
            });
        match made {
            Ok(()) if cfg!(windows) => Ok(venv.join("Scripts").join("python.exe").into()),
            Ok(()) => Ok(venv.join("bin").join("python").into()),
            Err(why) => Err(format!(
                "`{shown}` has no pip (`{shown} -m pip`: {no_pip}) and cannot make a virtualenv \
                 that has one (`{shown} -m venv`: {why}): {INSTALL_PIP}"
            )),
        }
    }

    /// `python -m pip install` of the pinned wheel into `target`, within the timeout.
    fn pip_install(&self, python: &OsStr, target: &Path) -> Result<(), String> {
        let mut command = Command::new(python);
        command
            .args(["-m", "pip", "install", "--no-deps", "--only-binary=:all:"])
            .args([
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ])
            .arg("--target")
            .arg(target)
            .arg(REQUIREMENT);
        for name in PIP_ENV_REMOVED {
            command.env_remove(name);
        }
        let shown = format!(
            "`{} -m pip install {REQUIREMENT}`",
            python.to_string_lossy()
        );
        let ran = run_bounded(&mut command, self.timeout)
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        match ran.status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!(
                "{shown} failed ({status}); its last lines:\n{}",
                ran.tail(15)
            )),
            None => Err(format!(
                "{shown} did not finish within {:?} and was stopped; its last lines:\n{}",
                self.timeout,
                ran.tail(15)
            )),
        }
    }

    /// Renames the checked staging directory to the cache directory.
    fn publish(&self, staging: &Path) -> Result<PathBuf, String> {
        match fs::rename(staging, &self.dir) {
            Ok(()) => installed(&self.dir),
            // Only a fetch that did not take the lock can have put it there; it is complete.
            Err(_) if installed(&self.dir).is_ok() => {
                let _ = fs::remove_dir_all(staging);
                installed(&self.dir)
            }
            Err(e) => Err(format!(
                "cannot rename {} to {}: {e}",
                staging.display(),
                self.dir.display()
            )),
        }
    }
}

/// Loads the library in a child Python; it must report [`ORT_VERSION`].
fn verify(python: &OsStr, library: &Path) -> Result<(), String> {
    let ran = run_bounded(
        Command::new(python).arg("-c").arg(VERIFY_PY).arg(library),
        Duration::from_secs(120),
    )
    .map_err(|e| format!("cannot check {}: {e}", library.display()))?;
    let version = String::from_utf8_lossy(&ran.stdout).trim().to_owned();
    if ran.succeeded() && version == ORT_VERSION {
        Ok(())
    } else if ran.succeeded() {
        Err(format!(
            "{} reports version {version}, not {ORT_VERSION}",
            library.display()
        ))
    } else {
        Err(format!(
            "{} does not load ({}): {}",
            library.display(),
            ran.status
                .map_or_else(|| "timed out".to_owned(), |s| s.to_string()),
            ran.tail(5)
        ))
    }
}

/// A fresh staging path beside the cache directory: `.NAME.tmp-PID-N`.
fn staging_path(parent: &Path, name: &str) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    parent.join(format!(".{name}.tmp-{}-{call}", std::process::id()))
}

/// Removes staging directories (and their virtualenvs) of earlier fetches; called with the
/// lock held, so none of them is in use.
fn remove_leftovers(parent: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// Says what provisioning does: in the `tracing` log when a subscriber is installed, else on
/// stderr (an application that logs nothing still shows why its first start is slow).
fn progress(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::info!("{message}");
    } else {
        eprintln!("eas: {message}");
    }
}

/// What a bounded child process did.
#[derive(Debug)]
struct Ran {
    /// Its exit status; `None` when it ran out of time and was killed.
    status: Option<ExitStatus>,
    /// Its standard output.
    stdout: Vec<u8>,
    /// Its standard output and error, interleaved as they came.
    all: Vec<u8>,
}

impl Ran {
    /// Whether it finished with status 0.
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Its last `n` non-empty lines of output.
    fn tail(&self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.all);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        if tail.is_empty() {
            "(no output)".to_owned()
        } else {
            tail
        }
    }

    /// Its last non-empty line of output.
    fn last_line(&self) -> String {
        self.tail(1)
    }
}

/// Runs a command with no input, collecting its output, killing it after `timeout`.
///
/// Output is read by two threads, so a chatty child never blocks on a full pipe; after the
/// child ends they get two seconds to drain (a grandchild may still hold a pipe open).
fn run_bounded(command: &mut Command, timeout: Duration) -> std::io::Result<Ran> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let all = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    let streams: [(Option<Box<dyn Read + Send>>, bool); 2] = [
        (child.stdout.take().map(|r| Box::new(r) as _), true),
        (child.stderr.take().map(|r| Box::new(r) as _), false),
    ];
    for (stream, is_stdout) in streams {
        let Some(mut stream) = stream else { continue };
        let (stdout, all) = (Arc::clone(&stdout), Arc::clone(&all));
        readers.push(thread::spawn(move || {
            let mut buf = [0_u8; 8192];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                if is_stdout && let Ok(mut out) = stdout.lock() {
                    out.extend_from_slice(&buf[..n]);
                }
                if let Ok(mut out) = all.lock() {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }));
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let drained = Instant::now() + Duration::from_secs(2);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < drained {
        thread::sleep(Duration::from_millis(10));
    }
    let take = |buf: &Arc<Mutex<Vec<u8>>>| buf.lock().map(|b| b.clone()).unwrap_or_default();
    Ok(Ran {
        status,
        stdout: take(&stdout),
        all: take(&all),
    })
}

#[cfg(all(test, unix))]
pub(super) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt as _;

    /// A stand-in for Python, answering what provisioning asks of it: `-m pip --version`,
    /// `-m pip install ... --target DIR ...` (writes a fake library and its RECORD after
    /// `$FAKE_SLEEP` seconds, or hangs with `HANG=1`; counts calls in `pip-calls` beside the
    /// fake), `-m venv`
    /// (fails), the question where onnxruntime is (answers `$ORT_IN_PYTHON`, or that there is
    /// none) and the ctypes check (prints `$FAKE_VERSION`). Its behaviour is set by the
    /// variables at the top, overridden by `settings`.
    pub(crate) fn fake_python(dir: &Path, settings: &str) -> OsString {
        let path = dir.join("python");
        let script = format!(
            r#"#!/bin/sh
HAS_PIP=1; PIP_FAILS=0; FAKE_SLEEP=0; HANG=0; FAKE_VERSION={ORT_VERSION}; WRITE_LIB=1; ORT_IN_PYTHON=""
{settings}
here="$(dirname "$0")"
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  if [ "$HAS_PIP" != 1 ]; then echo "$0: No module named pip" >&2; exit 1; fi
  if [ "$3" = "--version" ]; then echo "pip 99"; exit 0; fi
  echo call >> "$here/pip-calls"
  if [ "$PIP_FAILS" = 1 ]; then
    echo "Collecting {REQUIREMENT}"; echo "ERROR: Could not find a version that satisfies the requirement {REQUIREMENT}" >&2; exit 1
  fi
  [ "$HANG" = 1 ] && exec sleep 30
  [ "$FAKE_SLEEP" != 0 ] && sleep "$FAKE_SLEEP"
  target=""; prev=""
  for a in "$@"; do [ "$prev" = "--target" ] && target="$a"; prev="$a"; done
  [ "$WRITE_LIB" = 1 ] || exit 0
  mkdir -p "$target/onnxruntime/capi" "$target/{DIST_INFO}"
  printf 'not really a library' > "$target/{LIBRARY}"
  size=$(wc -c < "$target/{LIBRARY}" | tr -d ' ')
  printf 'onnxruntime/__init__.py,sha256=x,10\n{LIBRARY},sha256=y,%s\n{DIST_INFO}/RECORD,,\n' "$size" > "$target/{DIST_INFO}/RECORD"
  exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then echo "Error: ensurepip is not available" >&2; exit 1; fi
if [ "$1" = "-c" ]; then
  case "$2" in
    *find_spec*)
      if [ -z "$ORT_IN_PYTHON" ]; then echo "the Python package onnxruntime is not installed" >&2; exit 1; fi
      echo "$ORT_IN_PYTHON"; exit 0;;
    *) echo "$FAKE_VERSION"; exit 0;;
  esac
fi
exit 3
"#
        );
        fs::write(&path, script).expect("write the fake python");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        // A test on another thread that forks while the file is open for writing holds it
        // open until its child execs: running the file meanwhile fails with ETXTBSY. Wait that
        // out here, so that the tests see the fake as a user's Python.
        for _ in 0..200 {
            match std::process::Command::new(&path)
                .args(["-c", "probe"])
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        path.into_os_string()
    }

    /// How many times the fake in `fake_dir` ran `pip install`.
    pub(crate) fn pip_calls(fake_dir: &Path) -> usize {
        fs::read_to_string(fake_dir.join("pip-calls")).map_or(0, |s| s.lines().count())
    }

    fn provisioner(python: OsString, cache: &Path) -> Provisioner {
        Provisioner {
            dir: cache.join(DIR_NAME),
            python,
            timeout: Duration::from_secs(30),
        }
    }

    fn leftovers(parent: &Path) -> Vec<String> {
        fs::read_dir(parent)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn policy_should_accept_auto_and_never_spellings_and_refuse_others() {
        let cases = [
            (None, Ok(Policy::Auto)),
            (Some(""), Ok(Policy::Auto)),
            (Some("auto"), Ok(Policy::Auto)),
            (Some("1"), Ok(Policy::Auto)),
            (Some("YES"), Ok(Policy::Auto)),
            (Some("never"), Ok(Policy::Never)),
            (Some("0"), Ok(Policy::Never)),
            (Some(" off "), Ok(Policy::Never)),
            (Some("false"), Ok(Policy::Never)),
            (Some("no"), Ok(Policy::Never)),
        ];
        for (value, want) in cases {
            assert_eq!(Policy::parse(value.map(OsStr::new)), want, "{value:?}");
        }
        let err = Policy::parse(Some(OsStr::new("sometimes"))).expect_err("unknown");
        assert!(err.contains("EAS_ORT_PROVISION=sometimes"), "{err}");
        assert!(err.contains("never"), "{err}");
    }

    #[test]
    fn cache_dir_should_prefer_eas_cache_dir_then_xdg_then_home() {
        let dir = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, OsString> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
                .collect();
            default_dir(|name| vars.get(name).cloned())
        };
        let all = [
            ("EAS_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir(&all), Some(PathBuf::from("/c/onnxruntime-1.31.1")));
        assert_eq!(
            dir(&all[1..]),
            Some(PathBuf::from("/x/eas/onnxruntime-1.31.1"))
        );
        assert_eq!(
            dir(&all[2..]),
            Some(PathBuf::from("/h/.cache/eas/onnxruntime-1.31.1"))
        );
        // A relative XDG_CACHE_HOME is ignored, as the XDG spec says; empty values too.
        assert_eq!(
            dir(&[
                ("EAS_CACHE_DIR", ""),
                ("XDG_CACHE_HOME", "rel"),
                ("HOME", "/h")
            ]),
            Some(PathBuf::from("/h/.cache/eas/onnxruntime-1.31.1"))
        );
        assert_eq!(dir(&[]), None);
    }

    #[test]
    fn installed_should_check_the_library_against_pips_record() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "");
        let dir = tmp.path().join("cache").join(DIR_NAME);
        assert!(installed(&dir).expect_err("empty").contains("RECORD"));
        let ran = run_bounded(
            Command::new(&fake)
                .args(["-m", "pip", "install", "--target"])
                .arg(&dir),
            Duration::from_secs(10),
        )
        .expect("fake pip");
        assert!(ran.succeeded());
        assert_eq!(installed(&dir), Ok(library_in(&dir)));
        // A truncated library (or one being written) is not complete.
        fs::write(library_in(&dir), b"not").expect("truncate");
        let err = installed(&dir).expect_err("truncated");
        assert!(err.contains("has 3 bytes"), "{err}");
        fs::remove_file(library_in(&dir)).expect("remove");
        assert!(installed(&dir).is_err());
    }

    #[test]
    fn provision_should_fetch_once_then_reuse_the_cache() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "");
        let cache = tmp.path().join("cache");
        let p = provisioner(fake, &cache);
        let first = p.provision(false).expect("fetches");
        assert!(first.fetched);
        assert_eq!(first.library, library_in(&cache.join(DIR_NAME)));
        let again = p.provision(false).expect("reuses");
        assert!(!again.fetched);
        assert_eq!(pip_calls(tmp.path()), 1);
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
        // A library that fails to load is fetched again on request.
        assert!(p.provision(true).expect("redoes").fetched);
        assert_eq!(pip_calls(tmp.path()), 2);
    }

    #[test]
    fn provision_should_redo_a_half_written_cache_and_remove_leftovers_of_killed_runs() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "");
        let cache = tmp.path().join("cache");
        let dir = cache.join(DIR_NAME);
        // A killed run: a staging directory with part of the files, and a target directory
        // (from a copy by hand, say) without pip's RECORD.
        let stale = cache.join(format!(".{DIR_NAME}.tmp-999999-0"));
        fs::create_dir_all(stale.join("onnxruntime/capi")).expect("stale");
        fs::create_dir_all(dir.join("onnxruntime/capi")).expect("half");
        fs::write(library_in(&dir), b"half").expect("half library");
        let got = provisioner(fake, &cache).provision(false).expect("redoes");
        assert!(got.fetched);
        assert_eq!(installed(&dir), Ok(got.library));
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    }

    #[test]
    fn threads_provisioning_at_once_should_fetch_once_and_agree() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "FAKE_SLEEP=0.3");
        let cache = tmp.path().join("cache");
        let p = provisioner(fake, &cache);
        let results: Vec<Provisioned> = thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| p.provision(false))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic").expect("provisions"))
                .collect()
        });
        assert_eq!(results.iter().filter(|r| r.fetched).count(), 1);
        assert!(results.iter().all(|r| r.library == results[0].library));
        assert_eq!(pip_calls(tmp.path()), 1);
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    }

    #[test]
    fn pip_failure_should_be_reported_with_its_last_lines_and_leave_no_cache() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "PIP_FAILS=1");
        let cache = tmp.path().join("cache");
        let err = provisioner(fake, &cache)
            .provision(false)
            .expect_err("pip fails");
        assert!(err.contains("failed (exit status: 1)"), "{err}");
        assert!(err.contains("Collecting onnxruntime==1.31.1"), "{err}");
        assert!(err.contains("ERROR: Could not find a version"), "{err}");
        assert!(!cache.join(DIR_NAME).exists());
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    }

    #[test]
    fn pip_past_its_timeout_should_be_stopped_and_reported() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "HANG=1");
        let cache = tmp.path().join("cache");
        let mut p = provisioner(fake, &cache);
        p.timeout = Duration::from_millis(500);
        let started = Instant::now();
        let err = p.provision(false).expect_err("times out");
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        assert!(
            err.contains("did not finish within 500ms and was stopped"),
            "{err}"
        );
        assert!(!cache.join(DIR_NAME).exists());
    }

    #[test]
    fn a_python_without_pip_nor_venv_should_say_what_to_install() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "HAS_PIP=0");
        let err = provisioner(fake.clone(), &tmp.path().join("cache"))
            .provision(false)
            .expect_err("no pip");
        let shown = fake.to_string_lossy();
        assert!(err.contains(&format!("`{shown}` has no pip")), "{err}");
        assert!(err.contains("No module named pip"), "{err}");
        assert!(err.contains("ensurepip is not available"), "{err}");
        assert!(err.contains("apt-get install python3-pip"), "{err}");
    }

    #[test]
    fn a_missing_python_should_say_what_to_install() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let err = provisioner("/nonexistent/python3".into(), &tmp.path().join("cache"))
            .provision(false)
            .expect_err("no python");
        assert!(err.contains("cannot run `/nonexistent/python3`"), "{err}");
        assert!(err.contains("apt-get install python3-pip"), "{err}");
    }

    #[test]
    fn a_library_that_reports_another_version_should_not_be_published() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "FAKE_VERSION=1.20.0");
        let cache = tmp.path().join("cache");
        let err = provisioner(fake, &cache)
            .provision(false)
            .expect_err("wrong version");
        assert!(err.contains("reports version 1.20.0, not 1.31.1"), "{err}");
        assert!(!cache.join(DIR_NAME).exists());
    }

    #[test]
    fn pip_that_installs_no_library_should_be_reported() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fake = fake_python(tmp.path(), "WRITE_LIB=0");
        let err = provisioner(fake, &tmp.path().join("cache"))
            .provision(false)
            .expect_err("nothing installed");
        assert!(err.contains("the library is not there"), "{err}");
    }

    #[test]
    fn by_hand_should_name_the_pip_command_and_the_library() {
        let text = by_hand(OsStr::new("python3"), Path::new("/c/onnxruntime-1.31.1"));
        assert!(
            text.contains(
                "`python3 -m pip install --no-deps --target /c/onnxruntime-1.31.1 \
                 onnxruntime==1.31.1`"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "ORT_DYLIB_PATH={}",
                library_in(Path::new("/c/onnxruntime-1.31.1")).display()
            )),
            "{text}"
        );
    }
}
