//! The CUDA MPS (Multi-Process Service) core share of child-process instances.
//!
//! A slice's `gpu_core_percentage` can be enforced for a process of its own when an MPS
//! control daemon already runs on the machine: the process is started with
//! `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` set, and the MPS server limits its kernels to that
//! share of the GPU's SMs. eas never starts, stops or configures MPS: [`pipe_directory`]
//! only looks for the daemon's pipe directory (`CUDA_MPS_PIPE_DIRECTORY`, else
//! `/tmp/nvidia-mps`) and its `control` pipe. Without one, or for in-process instances (one
//! process shares one context), the core share is not enforced, and [`core_share`] says so.
//!
//! ```
//! use eas_runtime::gpu::mps::{core_share, CoreShare};
//!
//! match core_share(30) {
//!     CoreShare::Enforced { env } => println!("child env: {env:?}"),
//!     CoreShare::NotEnforced { why } => println!("{why}"),
//!     _ => {}
//! }
//! ```

use std::path::PathBuf;

/// The variable that limits a process's share of the GPU under MPS.
pub const ACTIVE_THREAD_PERCENTAGE: &str = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";

/// The variable that says where the MPS daemon's pipes are.
pub const PIPE_DIRECTORY_ENV: &str = "CUDA_MPS_PIPE_DIRECTORY";

/// Where the MPS daemon's pipes are by default.
pub const DEFAULT_PIPE_DIRECTORY: &str = "/tmp/nvidia-mps";

/// The MPS daemon's pipe directory when a daemon seems to run: the directory exists and has
/// its `control` pipe.
#[must_use]
pub fn pipe_directory() -> Option<PathBuf> {
    let dir = std::env::var_os(PIPE_DIRECTORY_ENV)
        .map_or_else(|| PathBuf::from(DEFAULT_PIPE_DIRECTORY), PathBuf::from);
    dir.join("control").exists().then_some(dir)
}

/// Whether a core percentage can be enforced for a worker process, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreShare {
    /// Start the worker with this environment.
    Enforced {
        /// Variables to set in the worker's environment.
        env: Vec<(String, String)>,
    },
    /// Not enforced; why.
    NotEnforced {
        /// Why, in words.
        why: String,
    },
}

/// How a worker process gets `percent` % of its GPU ([`CoreShare`]).
#[must_use]
pub fn core_share(percent: u32) -> CoreShare {
    share_with(percent, pipe_directory())
}

fn share_with(percent: u32, pipes: Option<PathBuf>) -> CoreShare {
    match pipes {
        Some(_) => CoreShare::Enforced {
            env: vec![(ACTIVE_THREAD_PERCENTAGE.to_owned(), percent.to_string())],
        },
        None => CoreShare::NotEnforced {
            why: format!(
                "gpu_core_percentage {percent} is not enforced: no CUDA MPS daemon runs (no \
                 `control` pipe in ${PIPE_DIRECTORY_ENV} or {DEFAULT_PIPE_DIRECTORY}); eas does \
                 not start one"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_share_should_set_the_variable_only_with_a_daemon() {
        assert_eq!(
            share_with(30, Some(PathBuf::from("/tmp/nvidia-mps"))),
            CoreShare::Enforced {
                env: vec![(ACTIVE_THREAD_PERCENTAGE.to_owned(), "30".to_owned())]
            }
        );
        let CoreShare::NotEnforced { why } = share_with(30, None) else {
            panic!("no daemon");
        };
        assert!(why.contains("not enforced") && why.contains("MPS"), "{why}");
    }
}
