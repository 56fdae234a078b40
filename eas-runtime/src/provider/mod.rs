//! Instance providers: where the controller's "start an instance" and "stop that one" run.
//!
//! The controller ([`crate::controller`]) decides how many instances a service has and which
//! one goes first; an [`InstanceProvider`] only carries the decisions out. [`InProcess`], the
//! embedded default, runs each instance as a [`Replica`] in this process: its batcher on the
//! tokio runtime and its workers on threads of their own. A provider that runs instances
//! elsewhere (child processes, a cluster) implements the same trait and hands back a
//! [`Replica`] handle whose state the controller watches like any other.
//!
//! The provider also says what the machine can hold ([`InstanceProvider::node`]): the
//! controller's placement step counts every instance's request against it before it starts
//! one, and refuses (with the reason in the service's scaling decisions) what does not fit.
//! Its GPUs are a [`GpuInventory`] ([`InstanceProvider::gpus`]): when an instance that asks
//! for GPUs starts, the service leases them there (whole GPUs, or a slice packed onto one GPU)
//! and the instance gives them back when it stops; one that does not get them fails to start,
//! saying what is missing.

mod child;
pub mod limits;

use eas_scheduler::control::NodeCapacity;

use crate::gpu::GpuInventory;

pub use child::{CRASH_LOOP_WINDOW, ChildProcess, Remote};
pub use limits::Limits;

use crate::replica::{Replica, ReplicaParts};

/// Starts instances of services.
pub trait InstanceProvider: Send + Sync + std::fmt::Debug {
    /// A short name for logs and the describe API (`in-process`).
    fn name(&self) -> &'static str;

    /// The one node it runs instances on, and what that node holds.
    fn node(&self) -> NodeCapacity;

    /// Whether this provider gives effect to a spec field that has none in process (its path,
    /// as `eas_core::spec::notices` names it: `metadata.memory`, `metadata.rpc.enable_sigterm`).
    /// Start-up warnings about such fields are left out for services it runs.
    fn honours(&self, field: &str) -> bool {
        let _ = field;
        false
    }

    /// The GPUs its instances are granted from: by default the process's
    /// ([`GpuInventory::shared`]), which all services share.
    fn gpus(&self) -> &GpuInventory {
        GpuInventory::shared()
    }

    /// Starts one instance. It becomes ready in the background (model load, warm-up); the
    /// controller watches [`Replica::state`]. Must be called within a tokio runtime.
    fn launch(&self, parts: ReplicaParts) -> Replica;
}

/// Instances as replicas in this process: the embedded default.
#[derive(Debug, Clone)]
pub struct InProcess {
    node: NodeCapacity,
    gpus: GpuInventory,
}

impl InProcess {
    /// On this machine, as [`detect_node`] reads it.
    #[must_use]
    pub fn new() -> Self {
        Self {
            node: detect_node(),
            gpus: GpuInventory::shared().clone(),
        }
    }

    /// On a node of the given capacity (a share of the machine, or a test's).
    #[must_use]
    pub fn with_node(node: NodeCapacity) -> Self {
        Self {
            node,
            gpus: GpuInventory::shared().clone(),
        }
    }

    /// The same, granting GPUs from `gpus` (a share of the machine's, or a test's) instead of
    /// the process's.
    #[must_use]
    pub fn with_gpus(mut self, gpus: GpuInventory) -> Self {
        self.gpus = gpus;
        self
    }
}

/// This machine as a node: its cores (as the process may use them:
/// [`std::thread::available_parallelism`], which honours CPU affinity and cgroup quotas), its
/// memory (`MemTotal` of `/proc/meminfo`; where that cannot be read, memory is not counted)
/// and its GPUs ([`GpuInventory::shared`]: none without the `cuda` feature or a driver). CPU may be overcommitted by the default
/// factor ([`eas_scheduler::control::DEFAULT_CPU_OVERCOMMIT`]): in-process instances share
/// the cores, so a laptop can still run several small instances.
#[must_use]
pub fn detect_node() -> NodeCapacity {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024)
        })
        .unwrap_or(u64::MAX);
    NodeCapacity::new(
        cores as u64 * 1000,
        memory_mb,
        GpuInventory::shared().count(),
    )
}

/// The resident memory of process `pid`, in bytes (`VmRSS` of `/proc/PID/status`); `None`
/// when it cannot be read (no such process, or no `/proc`).
#[must_use]
pub fn resident_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

impl InstanceProvider for InProcess {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn node(&self) -> NodeCapacity {
        self.node
    }

    fn gpus(&self) -> &GpuInventory {
        &self.gpus
    }

    fn launch(&self, parts: ReplicaParts) -> Replica {
        Replica::start(parts)
    }
}
