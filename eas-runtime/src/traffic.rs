//! Traffic between services: service groups (one endpoint whose requests are split by weight
//! among the member services released into it) and mirroring (a share of a service's requests
//! copied to other services, whose answers are discarded).
//!
//! Both are tables the control plane swaps whole ([`Traffic::set_groups`],
//! [`Traffic::set_mirror`]) and requests read with one atomic load, so a change applies to
//! every request admitted after the call that made it returns.
//!
//! Splits are exact, not random: the n-th request of a group takes slot `n * STRIDE mod total`
//! of the members' cumulative weights, a permutation of the slots over every `total` requests
//! (STRIDE is a prime larger than any total), so weights 80/20 give exactly 80 and 20 of every
//! 100 requests, interleaved. Mirroring samples the same way: `ratio` of every 100 requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::metrics::MirrorCounters;

/// The weight of a member that was never given one.
pub const DEFAULT_WEIGHT: u32 = 100;
/// The largest weight a member may have.
pub const MAX_WEIGHT: u32 = 1000;
/// The most copies of one service's requests in flight to one mirror target; past it, copies
/// are shed (counted), so a slow target cannot pile up work.
pub const MIRROR_IN_FLIGHT: usize = 64;

/// A prime larger than any weight total or ratio base: steps through slots in a permutation.
const STRIDE: u64 = 2_654_435_761;

/// How a member of a group takes the group's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Its share: the group's requests go to members in proportion to their weights (0-1000).
    pub weight: u32,
    /// Whether it takes group traffic at all (`grouping`), or only its own endpoint's
    /// (`standalone`, the state of a member until it is released).
    pub grouping: bool,
}

impl Default for Release {
    fn default() -> Self {
        Self {
            weight: DEFAULT_WEIGHT,
            grouping: false,
        }
    }
}

/// One group: its members that take traffic, with their weights.
#[derive(Debug)]
pub struct Group {
    /// Every member, released or not, and how.
    members: Vec<(String, Release)>,
    /// The members that take traffic, with the end of each one's slots.
    slots: Vec<(String, u64)>,
    total: u64,
    next: AtomicU64,
}

impl Group {
    /// A group of `members`.
    #[must_use]
    pub fn new(mut members: Vec<(String, Release)>) -> Self {
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let mut total = 0u64;
        let slots = members
            .iter()
            .filter(|(_, r)| r.grouping && r.weight > 0)
            .map(|(name, r)| {
                total += u64::from(r.weight);
                (name.clone(), total)
            })
            .collect();
        Self {
            members,
            slots,
            total,
            next: AtomicU64::new(0),
        }
    }

    /// The member the next request goes to; `None` when no member takes traffic.
    #[must_use]
    pub fn pick(&self) -> Option<&str> {
        if self.total == 0 {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = n.wrapping_mul(STRIDE) % self.total;
        self.slots
            .iter()
            .find(|(_, end)| slot < *end)
            .map(|(name, _)| name.as_str())
    }

    /// Every member and how it takes traffic, by name.
    #[must_use]
    pub fn members(&self) -> &[(String, Release)] {
        &self.members
    }
}

/// Where copies of a service's requests go, and what became of them.
#[derive(Debug)]
pub struct Mirror {
    ratio: u32,
    targets: Vec<MirrorTarget>,
    seen: AtomicU64,
}

/// One target of a mirror. A target that fails a copy (refuses it: a full queue, a limit;
/// or errs) is not sent copies for a back-off that doubles from [`BACKOFF_MIN_MS`] to
/// [`BACKOFF_MAX_MS`] while it keeps failing: those copies are shed at the cost of one atomic
/// load, so a failing target costs the primary next to nothing.
#[derive(Debug)]
pub struct MirrorTarget {
    /// The service copies go to.
    pub service: String,
    /// Bounds the copies in flight ([`MIRROR_IN_FLIGHT`]).
    pub permits: Arc<tokio::sync::Semaphore>,
    /// What became of its copies (the `eas_mirror_copies_total` series).
    pub copies: MirrorCounters,
    /// No copies before this time (milliseconds on [`clock_ms`]).
    closed_until_ms: AtomicU64,
    /// The current back-off, in milliseconds (0: none).
    backoff_ms: AtomicU64,
}

/// The shortest back-off after a failed copy.
pub const BACKOFF_MIN_MS: u64 = 10;
/// The longest back-off after failed copies.
pub const BACKOFF_MAX_MS: u64 = 1000;

/// Milliseconds on a monotonic clock that starts with the first call.
fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl MirrorTarget {
    /// Whether a copy may go now (not backing off after failures).
    #[must_use]
    pub fn open(&self) -> bool {
        clock_ms() >= self.closed_until_ms.load(Ordering::Relaxed)
    }

    /// Records what became of a copy: a success ends the back-off, a failure doubles it.
    pub fn finished(&self, ok: bool) {
        if ok {
            self.copies.answered.inc();
            self.backoff_ms.store(0, Ordering::Relaxed);
            return;
        }
        self.copies.failed.inc();
        let backoff =
            (self.backoff_ms.load(Ordering::Relaxed) * 2).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
        self.backoff_ms.store(backoff, Ordering::Relaxed);
        self.closed_until_ms
            .store(clock_ms().saturating_add(backoff), Ordering::Relaxed);
    }
}

/// A mirror target's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MirrorCounts {
    /// Copies that were due.
    pub attempted: u64,
    /// Copies shed.
    pub shed: u64,
    /// Copies answered.
    pub answered: u64,
    /// Copies refused or failed.
    pub failed: u64,
}

impl Mirror {
    /// Copies of `ratio` percent of the requests to each of `targets` (each with its
    /// counters: [`Metrics::mirror_counters`](crate::metrics::Metrics::mirror_counters)).
    #[must_use]
    pub fn new(ratio: u32, targets: Vec<(String, MirrorCounters)>) -> Self {
        Self {
            ratio: ratio.min(100),
            targets: targets
                .into_iter()
                .map(|(service, copies)| MirrorTarget {
                    service,
                    permits: Arc::new(tokio::sync::Semaphore::new(MIRROR_IN_FLIGHT)),
                    copies,
                    closed_until_ms: AtomicU64::new(0),
                    backoff_ms: AtomicU64::new(0),
                })
                .collect(),
            seen: AtomicU64::new(0),
        }
    }

    /// Whether the next request is copied.
    #[must_use]
    pub fn sample(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        n.wrapping_mul(STRIDE) % 100 < u64::from(self.ratio)
    }

    /// The share copied, in percent.
    #[must_use]
    pub fn ratio(&self) -> u32 {
        self.ratio
    }

    /// Its targets.
    #[must_use]
    pub fn targets(&self) -> &[MirrorTarget] {
        &self.targets
    }

    /// Each target's counts, by name.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<String, MirrorCounts> {
        self.targets
            .iter()
            .map(|t| {
                (
                    t.service.clone(),
                    MirrorCounts {
                        attempted: t.copies.attempted.get(),
                        shed: t.copies.shed.get(),
                        answered: t.copies.answered.get(),
                        failed: t.copies.failed.get(),
                    },
                )
            })
            .collect()
    }
}

/// The groups and mirrors of a server.
#[derive(Debug, Default)]
pub struct Traffic {
    groups: ArcSwap<BTreeMap<String, Arc<Group>>>,
    mirrors: ArcSwap<BTreeMap<String, Arc<Mirror>>>,
}

impl Traffic {
    /// No groups, no mirrors.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the groups with those `memberships` make: (service, group, release) each.
    /// A group whose members did not change keeps its place in the rotation.
    pub fn set_groups(&self, memberships: impl IntoIterator<Item = (String, String, Release)>) {
        let mut members: BTreeMap<String, Vec<(String, Release)>> = BTreeMap::new();
        for (service, group, release) in memberships {
            members.entry(group).or_default().push((service, release));
        }
        let current = self.groups.load();
        let groups = members
            .into_iter()
            .map(|(name, members)| {
                let group = Group::new(members);
                let kept = current
                    .get(&name)
                    .filter(|old| old.members == group.members)
                    .map_or_else(|| Arc::new(group), Arc::clone);
                (name, kept)
            })
            .collect();
        self.groups.store(Arc::new(groups));
    }

    /// The group called `name`.
    #[must_use]
    pub fn group(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.load().get(name).cloned()
    }

    /// Every group, by name.
    #[must_use]
    pub fn groups(&self) -> Arc<BTreeMap<String, Arc<Group>>> {
        self.groups.load_full()
    }

    /// Sets (or with `None` removes) the mirror of `service`.
    pub fn set_mirror(&self, service: &str, mirror: Option<Mirror>) {
        let mirror = mirror.map(Arc::new);
        self.mirrors.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            match &mirror {
                Some(m) => {
                    next.insert(service.to_owned(), Arc::clone(m));
                }
                None => {
                    next.remove(service);
                }
            }
            next
        });
    }

    /// The mirror of `service`, if it has one.
    #[must_use]
    pub fn mirror(&self, service: &str) -> Option<Arc<Mirror>> {
        self.mirrors.load().get(service).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(weight: u32) -> Release {
        Release {
            weight,
            grouping: true,
        }
    }

    #[test]
    fn weights_should_split_every_cycle_exactly_and_interleaved() {
        let group = Group::new(vec![
            ("a".into(), released(80)),
            ("b".into(), released(20)),
            ("c".into(), Release::default()),
        ]);
        let picks: Vec<&str> = (0..1000).filter_map(|_| group.pick()).collect();
        let b = picks.iter().filter(|p| **p == "b").count();
        assert_eq!((picks.len(), b), (1000, 200));
        // Interleaved: no run of b longer than a few.
        let longest = picks
            .split(|p| *p == "a")
            .map(<[&str]>::len)
            .max()
            .unwrap_or(0);
        assert!(longest <= 3, "{longest}");
    }

    #[test]
    fn a_group_with_no_released_member_should_pick_none() {
        let group = Group::new(vec![
            ("a".into(), Release::default()),
            ("b".into(), released(0)),
        ]);
        assert_eq!(group.pick(), None);
    }

    #[test]
    fn a_mirror_should_sample_its_ratio_of_every_hundred() {
        for ratio in [0, 1, 30, 99, 100] {
            let mirror = Mirror::new(ratio, vec![("t".into(), MirrorCounters::default())]);
            let copied = (0..1000).filter(|_| mirror.sample()).count();
            assert_eq!(copied, ratio as usize * 10, "{ratio}");
        }
    }

    #[test]
    fn a_failing_target_should_back_off_and_a_success_end_it() {
        let mirror = Mirror::new(100, vec![("t".into(), MirrorCounters::default())]);
        let target = &mirror.targets()[0];
        assert!(target.open());
        target.finished(false);
        assert!(!target.open(), "closed for {BACKOFF_MIN_MS} ms");
        std::thread::sleep(std::time::Duration::from_millis(BACKOFF_MIN_MS + 5));
        assert!(target.open());
        target.finished(true);
        assert_eq!(target.backoff_ms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unchanged_group_should_keep_its_rotation() {
        let traffic = Traffic::new();
        let members = || vec![("a".to_owned(), "g".to_owned(), released(1))];
        traffic.set_groups(members());
        let before = traffic.group("g").expect("g");
        traffic.set_groups(members());
        assert!(Arc::ptr_eq(&before, &traffic.group("g").expect("g")));
    }
}
