//! [`plan`]: which local instances to start and which to stop to go from the replicas a
//! service has to the count it should have, on the one machine ([`NodeCapacity`]) a local
//! provider runs on.
//!
//! **Which to stop.** Failed replicas are always stopped, and replaced: the count that is
//! compared with `desired` is that of the replicas that have not failed. When there are more
//! of those than `desired`, the surplus is stopped in this order: not ready first (starting
//! or unhealthy, serving nothing), then the fewest requests in flight, then the newest (latest
//! `started_at`), then the greatest id. Stopping happens before starting: a plan either starts
//! or stops live replicas, never both.
//!
//! **What fits.** New instances ask for `per_instance` ([`Resources::per_instance`] of the
//! spec). What is in use is the replicas that stay (their own `resources`) plus what the
//! node's other services use ([`NodeCapacity::with_used_by_others`]). The counting rule:
//!
//! | resource | counted against | when |
//! |---|---|---|
//! | CPU (`cpu`) | the node's cores × `cpu_overcommit` (default [`DEFAULT_CPU_OVERCOMMIT`], 4.0): CPU is shared time, a request is a weight, not a reservation | the spec sets `cpu` |
//! | memory (`memory`) | the node's memory, no overcommit | the spec sets `memory` |
//! | whole GPUs (`gpu`) | the node's GPUs, exactly | the spec sets `gpu` |
//! | a GPU slice (`gpu_memory`, `gpu_core_percentage` without `gpu`) | at least one GPU on the node | the spec sets either |
//!
//! This is a count. Which GPU an instance gets is decided when it starts, by
//! [`placement::gpu`](crate::placement::gpu) on the machine's live GPU ledger: whole GPUs
//! only on free GPUs, slices packed onto one GPU within its memory and 100% compute; an
//! instance that does not fit there fails to start, saying why.
//!
//! So a 2-core laptop runs 4 instances of `"cpu": 1` (8 cores of CPU weight). A scale-up that
//! does not fit starts as many as fit; `refused` says why the rest were not started: the
//! resource that ran out first, what one instance asks and what is free.
//!
//! ```
//! use std::time::SystemTime;
//!
//! use eas_core::resources::{InstanceId, Resources};
//! use eas_scheduler::control::{plan, NodeCapacity, ReplicaView};
//!
//! // examples/services/echo.json asks "cpu": 1, "memory": 1024; its autoscaler max is 4.
//! let echo = Resources::new(1_000, 1_024);
//! let laptop = NodeCapacity::new(2_000, 8_192, 0);
//! let running = [ReplicaView::new(InstanceId::from("echo-0"), SystemTime::UNIX_EPOCH, echo)
//!     .with_ready(true)];
//! let p = plan(4, &echo, &running, &laptop);
//! assert_eq!((p.start, p.refused), (3, None));
//! let p = plan(9, &echo, &running, &laptop);
//! assert_eq!(p.start, 7);
//! assert!(p.refused.expect("one refused").starts_with("1 of 8 instances not started: cpu"));
//! ```

use std::cmp::Reverse;
use std::time::SystemTime;

use eas_core::resources::{InstanceId, Resources};
use serde::Serialize;

/// How far requested CPU may exceed the node's cores by default: 4 times.
pub const DEFAULT_CPU_OVERCOMMIT: f64 = 4.0;

/// The one machine a local provider runs on: its cores, memory and GPUs, how far CPU may
/// be overcommitted, and what other services on it use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct NodeCapacity {
    /// CPU in milli-cores (1000 per core).
    pub cpu_millis: u64,
    /// Memory in MB.
    pub memory_mb: u64,
    /// Whole GPUs.
    pub gpu: u32,
    /// Requested CPU may reach `cpu_millis × cpu_overcommit`.
    pub cpu_overcommit: f64,
    /// What the node's other services use.
    pub used_by_others: Resources,
}

impl NodeCapacity {
    /// A node with `cpu_millis` of CPU, `memory_mb` of memory and `gpu` GPUs, the default
    /// CPU overcommit and nothing used by other services.
    #[must_use]
    pub const fn new(cpu_millis: u64, memory_mb: u64, gpu: u32) -> Self {
        Self {
            cpu_millis,
            memory_mb,
            gpu,
            cpu_overcommit: DEFAULT_CPU_OVERCOMMIT,
            used_by_others: Resources::ZERO,
        }
    }

    /// The same with another CPU overcommit factor (1.0: none; below 1.0 keeps headroom).
    #[must_use]
    pub const fn with_cpu_overcommit(mut self, factor: f64) -> Self {
        self.cpu_overcommit = factor;
        self
    }

    /// The same with `used` taken by the node's other services.
    #[must_use]
    pub const fn with_used_by_others(mut self, used: Resources) -> Self {
        self.used_by_others = used;
        self
    }

    /// The CPU requests may add up to, in milli-cores: cores times the overcommit.
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn cpu_limit_millis(&self) -> u64 {
        // Finite and non-negative after the max; the cast saturates.
        (self.cpu_millis as f64 * self.cpu_overcommit.max(0.0)).floor() as u64
    }
}

/// One local replica as [`plan`] sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicaView {
    /// The instance.
    pub id: InstanceId,
    /// Whether it passes its readiness check.
    pub ready: bool,
    /// Whether it failed for good (it will be stopped and replaced).
    pub failed: bool,
    /// When it started.
    pub started_at: SystemTime,
    /// Requests it is working on.
    pub in_flight: usize,
    /// What it was started with.
    pub resources: Resources,
}

impl ReplicaView {
    /// A replica started at `started_at` with `resources`: not ready yet, not failed, idle.
    #[must_use]
    pub const fn new(id: InstanceId, started_at: SystemTime, resources: Resources) -> Self {
        Self {
            id,
            ready: false,
            failed: false,
            started_at,
            in_flight: 0,
            resources,
        }
    }

    /// The same, ready or not.
    #[must_use]
    pub const fn with_ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }

    /// The same, failed or not.
    #[must_use]
    pub const fn with_failed(mut self, failed: bool) -> Self {
        self.failed = failed;
        self
    }

    /// The same with `in_flight` requests.
    #[must_use]
    pub const fn with_in_flight(mut self, in_flight: usize) -> Self {
        self.in_flight = in_flight;
        self
    }
}

/// What to do: how many instances to start, which to stop, and why some were not started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct ScalePlan {
    /// New instances to start.
    pub start: u32,
    /// Instances to stop, in this order.
    pub stop: Vec<InstanceId>,
    /// Why fewer than asked are started, when they are.
    pub refused: Option<String>,
}

impl ScalePlan {
    /// Whether there is nothing to do.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.start == 0 && self.stop.is_empty()
    }
}

/// The plan from `replicas` to `desired` instances of `per_instance` each on `node` (see the
/// [module docs](self) for the order of stops and the counting rule).
#[must_use]
pub fn plan(
    desired: u32,
    per_instance: &Resources,
    replicas: &[ReplicaView],
    node: &NodeCapacity,
) -> ScalePlan {
    let mut order: Vec<&ReplicaView> = replicas.iter().collect();
    order.sort_by_key(|r| {
        (
            !r.failed,
            r.ready,
            r.in_flight,
            Reverse(r.started_at),
            Reverse(&r.id),
        )
    });
    let failed = order.iter().take_while(|r| r.failed).count();
    let (failed, live) = order.split_at(failed);
    let mut stop: Vec<InstanceId> = failed.iter().map(|r| r.id.clone()).collect();
    let live_count = u32::try_from(live.len()).unwrap_or(u32::MAX);
    if live_count > desired {
        let surplus = usize::try_from(live_count - desired).unwrap_or(usize::MAX);
        stop.extend(live.iter().take(surplus).map(|r| r.id.clone()));
        return ScalePlan {
            start: 0,
            stop,
            refused: None,
        };
    }
    let wanted = desired - live_count;
    let in_use = live.iter().fold(node.used_by_others, |sum, r| {
        sum.saturating_add(&r.resources)
    });
    let (start, refused) = fit(wanted, per_instance, &in_use, node);
    ScalePlan {
        start,
        stop,
        refused,
    }
}

/// How many of `wanted` instances fit, and why not the rest.
fn fit(
    wanted: u32,
    per: &Resources,
    in_use: &Resources,
    node: &NodeCapacity,
) -> (u32, Option<String>) {
    if wanted == 0 {
        return (0, None);
    }
    // (resource, how many fit, what one asks, what is free)
    let mut limits: Vec<(&str, u64, String, String)> = Vec::new();
    let mut count = |name: &'static str, asks: u64, total: u64, used: u64, unit: &str| {
        let free = total.saturating_sub(used);
        // Nothing asked of a resource: it does not limit the count.
        if let Some(fits) = free.checked_div(asks) {
            limits.push((
                name,
                fits,
                format!("{asks}{unit}"),
                format!("{free}{unit} free of {total}{unit}"),
            ));
        }
    };
    let cpu_limit = node.cpu_limit_millis();
    count("cpu", per.cpu_millis, cpu_limit, in_use.cpu_millis, "m");
    count(
        "memory",
        per.memory_mb,
        node.memory_mb,
        in_use.memory_mb,
        " MB",
    );
    count(
        "gpu",
        u64::from(per.gpu),
        u64::from(node.gpu),
        u64::from(in_use.gpu),
        " GPU",
    );
    if per.gpu == 0 && (per.gpu_memory_gb > 0 || per.gpu_core_percent > 0) && node.gpu == 0 {
        limits.push((
            "gpu",
            0,
            "a GPU slice".to_owned(),
            "the node has no GPU".to_owned(),
        ));
    }
    let Some((name, fits, asks, free)) = limits.into_iter().min_by_key(|l| l.1) else {
        return (wanted, None);
    };
    let start = u32::try_from(fits).unwrap_or(u32::MAX).min(wanted);
    if start == wanted {
        return (wanted, None);
    }
    let mut why = format!(
        "{} of {wanted} instances not started: {name}: each asks {asks}, {free}",
        wanted - start
    );
    if name == "cpu" {
        why.push_str(&format!(
            " ({}m x {} overcommit)",
            node.cpu_millis, node.cpu_overcommit
        ));
    }
    (start, Some(why))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    const ECHO: Resources = Resources::new(1_000, 1_024);

    /// `(id, ready, failed, started at, in flight)` as views of echo-sized replicas.
    fn views(rows: &[(&str, bool, bool, u64, usize)]) -> Vec<ReplicaView> {
        rows.iter()
            .map(|&(id, ready, failed, started, in_flight)| {
                ReplicaView::new(InstanceId::from(id), at(started), ECHO)
                    .with_ready(ready)
                    .with_failed(failed)
                    .with_in_flight(in_flight)
            })
            .collect()
    }

    fn ids(plan: &ScalePlan) -> Vec<&str> {
        plan.stop.iter().map(InstanceId::as_str).collect()
    }

    #[test]
    fn plan_should_stop_failed_then_unready_then_idle_then_newest() {
        let replicas = views(&[
            ("busy-old", true, false, 10, 5),
            ("idle-old", true, false, 10, 0),
            ("idle-new", true, false, 20, 0),
            ("starting", false, false, 30, 0),
            ("crashed", false, true, 5, 0),
            ("busy-new", true, false, 20, 5),
        ]);
        let big = NodeCapacity::new(64_000, 1 << 20, 0);
        // (desired, started, stopped in order)
        let cases: [(u32, u32, &[&str]); 7] = [
            (5, 0, &["crashed"]),
            (6, 1, &["crashed"]), // replaced
            (4, 0, &["crashed", "starting"]),
            (3, 0, &["crashed", "starting", "idle-new"]),
            (2, 0, &["crashed", "starting", "idle-new", "idle-old"]),
            (
                1,
                0,
                &["crashed", "starting", "idle-new", "idle-old", "busy-new"],
            ),
            (
                0,
                0,
                &[
                    "crashed", "starting", "idle-new", "idle-old", "busy-new", "busy-old",
                ],
            ),
        ];
        for (desired, start, stopped) in cases {
            let p = plan(desired, &ECHO, &replicas, &big);
            assert_eq!(
                (p.start, ids(&p).as_slice()),
                (start, stopped),
                "desired {desired}"
            );
            assert_eq!(p.refused, None);
        }
        assert!(plan(0, &ECHO, &[], &big).is_empty());
    }

    #[test]
    fn plan_should_start_what_fits_and_say_what_ran_out() {
        let two_cores = NodeCapacity::new(2_000, 16_384, 0);
        let one_running = views(&[("a", true, false, 0, 0)]);
        // (per instance, node, replicas, desired, started, refusal mentions)
        type Case<'a> = (
            Resources,
            NodeCapacity,
            &'a [ReplicaView],
            u32,
            u32,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            // echo.json: 4 x cpu 1 on 2 cores (overcommit 4).
            (ECHO, two_cores, &[], 4, 4, None),
            (ECHO, two_cores, &one_running, 4, 3, None),
            (
                ECHO,
                two_cores,
                &[],
                9,
                8,
                Some(
                    "1 of 9 instances not started: cpu: each asks 1000m, 8000m free of 8000m (2000m x 4 overcommit)",
                ),
            ),
            (
                ECHO,
                two_cores.with_cpu_overcommit(1.0),
                &[],
                4,
                2,
                Some("cpu"),
            ),
            (
                ECHO,
                two_cores.with_used_by_others(Resources::new(6_000, 0)),
                &one_running,
                4,
                1,
                Some("2 of 3 instances not started: cpu: each asks 1000m, 1000m free"),
            ),
            // Memory: no overcommit.
            (
                Resources::new(0, 6_000),
                two_cores,
                &[],
                4,
                2,
                Some(
                    "2 of 4 instances not started: memory: each asks 6000 MB, 16384 MB free of 16384 MB",
                ),
            ),
            (
                ECHO,
                two_cores.with_used_by_others(Resources::new(0, 16_000)),
                &[],
                2,
                0,
                Some("memory: each asks 1024 MB, 384 MB free"),
            ),
            // No cpu and no memory in the spec: nothing to count.
            (
                Resources::ZERO,
                NodeCapacity::new(0, 0, 0),
                &[],
                50,
                50,
                None,
            ),
            // GPUs: exactly.
            (
                Resources::new(1_000, 0).with_gpu(1, 16),
                NodeCapacity::new(8_000, 65_536, 2),
                &[],
                3,
                2,
                Some("gpu: each asks 1 GPU, 2 GPU free of 2 GPU"),
            ),
            (
                Resources::new(1_000, 0).with_gpu(2, 16),
                NodeCapacity::new(8_000, 65_536, 2)
                    .with_used_by_others(Resources::ZERO.with_gpu(1, 0)),
                &[],
                1,
                0,
                Some("gpu"),
            ),
            (
                Resources::new(1_000, 0).with_gpu(1, 16),
                two_cores,
                &[],
                1,
                0,
                Some("0 GPU free of 0 GPU"),
            ),
            // A GPU slice needs a GPU on the node.
            (
                Resources::new(1_000, 0).with_gpu(0, 4),
                two_cores,
                &[],
                1,
                0,
                Some("a GPU slice, the node has no GPU"),
            ),
            (
                Resources::new(1_000, 0).with_gpu(0, 4),
                NodeCapacity::new(2_000, 8_192, 1),
                &[],
                3,
                3,
                None,
            ),
        ];
        for (per, node, replicas, desired, want, why) in cases {
            let p = plan(desired, &per, replicas, &node);
            assert_eq!(p.start, want, "{per:?} on {node:?}: {:?}", p.refused);
            assert!(p.stop.is_empty());
            match (why, &p.refused) {
                (None, None) => {}
                (Some(word), Some(refused)) => {
                    assert!(refused.contains(word), "{refused:?} should say {word:?}");
                }
                (want, got) => panic!("{per:?} on {node:?}: refused {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn failed_replicas_should_free_their_resources_for_their_replacements() {
        let node = NodeCapacity::new(1_000, 2_048, 0).with_cpu_overcommit(1.0);
        let replicas = views(&[("ok", true, false, 0, 0), ("dead", false, true, 0, 0)]);
        let p = plan(2, &ECHO, &replicas, &node);
        assert_eq!((p.start, ids(&p)), (0, vec!["dead"]));
        assert!(p.refused.is_some_and(|r| r.contains("cpu")));
        let node = node.with_cpu_overcommit(2.0);
        let p = plan(2, &ECHO, &replicas, &node);
        assert_eq!(
            (p.start, ids(&p), p.refused.as_deref()),
            (1, vec!["dead"], None)
        );
    }
}
