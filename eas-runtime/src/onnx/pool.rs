//! [`SessionPool`]: ONNX Runtime sessions of one model, one per concurrent caller.
//!
//! `Session::run` takes `&mut self`, so a session serves one call at a time. The pool hands an
//! idle session to each caller and builds another when all are busy, so N worker threads end
//! up with N sessions and never wait on each other; there is no lock around inference. The
//! sessions share their pre-packed weights.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ort::logging::LogLevel;
use ort::session::Session;
use ort::session::builder::PrepackedWeights;

use super::cuda::CudaDevice;
use super::library::OrtRuntime;

/// Builds sessions of one model with fixed options.
#[derive(Debug)]
pub(crate) struct SessionPool {
    runtime: &'static OrtRuntime,
    path: PathBuf,
    intra_threads: usize,
    /// The GPU its sessions run on (`None`: the CPU; always without the `cuda` feature, where
    /// the processor refuses a GPU before it builds a pool).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    cuda: Option<CudaDevice>,
    prepacked: PrepackedWeights,
    idle: Mutex<Vec<Session>>,
    /// Sessions built (or tried), for tests.
    #[cfg(test)]
    built: std::sync::atomic::AtomicUsize,
}

impl SessionPool {
    /// A pool for the model at `path`, with one session built now (returned for inspection
    /// and then kept idle).
    ///
    /// # Errors
    /// ONNX Runtime's message when the model cannot be loaded.
    pub fn new(
        runtime: &'static OrtRuntime,
        path: &Path,
        intra_threads: usize,
        cuda: Option<CudaDevice>,
    ) -> ort::Result<Self> {
        let pool = Self {
            runtime,
            path: path.to_owned(),
            intra_threads: intra_threads.max(1),
            cuda,
            prepacked: PrepackedWeights::new(),
            idle: Mutex::new(Vec::new()),
            #[cfg(test)]
            built: std::sync::atomic::AtomicUsize::new(0),
        };
        let first = pool.build()?;
        pool.lock().push(first);
        Ok(pool)
    }

    /// Runs `f` with an idle session (built if none is idle), then returns it to the pool.
    ///
    /// # Errors
    /// ONNX Runtime's message when a new session cannot be built (through `E::from`), or
    /// `f`'s error.
    pub fn with_session<T, E: From<ort::Error>>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self.lock().pop();
        let mut session = match idle {
            Some(session) => session,
            None => self.build()?,
        };
        let result = f(&mut session);
        self.lock().push(session);
        result
    }

    /// Runs `f` on an idle session without running the model (for reading its signature).
    pub fn inspect<T>(&self, f: impl FnOnce(&Session) -> T) -> ort::Result<T> {
        self.with_session(|session| Ok::<_, ort::Error>(f(session)))
    }

    /// The number of sessions built so far that are idle now.
    pub fn idle_sessions(&self) -> usize {
        self.lock().len()
    }

    /// Drops every idle session (tests: the next call has to build one).
    #[cfg(test)]
    pub fn drop_idle(&self) {
        self.lock().clear();
    }

    /// The number of sessions built so far (tests).
    #[cfg(test)]
    pub fn built(&self) -> usize {
        self.built.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn build(&self) -> ort::Result<Session> {
        #[cfg(test)]
        self.built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
        let mut builder = Session::builder(self.runtime.environment())?;
        #[cfg(feature = "cuda")]
        if let Some(cuda) = &self.cuda {
            // Fatal when it does not register: never a silent CPU fallback.
            builder = builder.with_execution_providers([cuda.provider()])?;
        }
        builder
            .with_intra_threads(self.intra_threads)?
            .with_inter_threads(1)?
            // Spinning intra-op threads burn the cores the server and other instances share
            // (measured: about 80 -> 40 us of CPU per row on 2 shared cores).
            .with_intra_op_spinning(false)?
            // Run errors reach the client in the answer; ONNX Runtime need not print them too.
            .with_log_level(LogLevel::Fatal)?
            .with_prepacked_weights(&self.prepacked)?
            .commit_from_file(&self.path)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Session>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
