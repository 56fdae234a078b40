//! The control plane's side of traffic between services ([`crate::traffic`]): which group a
//! service is in (`metadata.group`), how it is released into it (ReleaseService: weight and
//! traffic state), and its mirror (UpdateServiceMirror: ratio and targets). Kept with each
//! service's record in the store and pushed into the directory's traffic tables after every
//! change.
//!
//! Rules: a group may not share a name with a service (either way round); the members of a
//! group share one token (the group endpoint authenticates a request with the member its
//! weights picked, so differing tokens would fail requests at random); a member takes no group
//! traffic until it is released into it; asynchronous services neither join groups nor are
//! mirror targets (the spec refuses the first; [`ControlPlane::set_mirror`] the second).

use serde_json::Value;

use super::{ControlPlane, PlaneError};
use crate::store::MirrorRecord;
use crate::traffic::{DEFAULT_WEIGHT, MAX_WEIGHT, Mirror, MirrorCounts, Release};

/// The most services one service's requests are mirrored to.
pub const MAX_MIRROR_TARGETS: usize = 8;

/// A service's traffic settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Routing {
    /// Its release into its group; `None`: never released (standalone).
    pub(super) release: Option<Release>,
    /// Its mirror.
    pub(super) mirror: Option<MirrorRecord>,
}

/// Forgets a service's traffic settings when dropped, unless [`keep`](Self::keep) was called:
/// a create that fails half-way leaves none behind.
pub(super) struct Unroute<'a> {
    plane: &'a ControlPlane,
    name: String,
    armed: bool,
}

impl Unroute<'_> {
    /// The service was created: keep its settings.
    pub(super) fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Unroute<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.plane.forget_routing(&self.name);
        }
    }
}

/// A service's group, as its spec (JSON) names it.
pub(super) fn group_of(spec: &Value) -> Option<String> {
    spec.pointer("/metadata/group")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
}

/// A service's mirror as describe shows it: the share, and each target's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MirrorView {
    /// The share of requests copied, in percent.
    pub ratio: u32,
    /// Each target and its counts, by name.
    pub targets: std::collections::BTreeMap<String, MirrorCounts>,
}

impl ControlPlane {
    /// Records `routing` for a service being created.
    pub(super) fn route(&self, name: &str, routing: Routing) -> Unroute<'_> {
        self.routing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), routing);
        Unroute {
            plane: self,
            name: name.to_owned(),
            armed: true,
        }
    }

    /// A service's traffic settings (defaults for one it does not know).
    pub(super) fn routing_of(&self, name: &str) -> Routing {
        self.routing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets a service's traffic settings and takes it out of the traffic tables.
    pub(super) fn forget_routing(&self, name: &str) {
        self.routing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.directory.traffic().set_mirror(name, None);
        self.sync_groups();
    }

    /// Pushes a service's mirror and every group into the directory's traffic tables.
    pub(super) fn apply_routing(&self, name: &str) {
        let mirror = self.routing_of(name).mirror.map(|m| {
            let metrics = self.directory.metrics();
            let targets = m
                .targets
                .into_iter()
                .map(|target| {
                    let counters = metrics.mirror_counters(name, &target);
                    (target, counters)
                })
                .collect();
            Mirror::new(m.ratio, targets)
        });
        self.directory.traffic().set_mirror(name, mirror);
        self.sync_groups();
    }

    /// Rebuilds the groups from the services' specs and releases.
    pub(super) fn sync_groups(&self) {
        let memberships: Vec<(String, String)> = self
            .managed()
            .iter()
            .filter_map(|(name, m)| Some((name.clone(), group_of(&m.spec)?)))
            .collect();
        let routing = self.routing.lock().unwrap_or_else(|e| e.into_inner());
        let groups: Vec<(String, String, Release)> = memberships
            .into_iter()
            .map(|(name, group)| {
                let release = routing
                    .get(&name)
                    .and_then(|r| r.release)
                    .unwrap_or_default();
                (name, group, release)
            })
            .collect();
        drop(routing);
        let weights: Vec<(String, String, u32)> = groups
            .iter()
            .map(|(service, group, release)| {
                let weight = if release.grouping { release.weight } else { 0 };
                (group.clone(), service.clone(), weight)
            })
            .collect();
        self.directory.metrics().set_group_weights(&weights);
        self.directory.traffic().set_groups(groups);
    }

    /// Checks the group rules for `spec` (a service being created or updated): names, and the
    /// token its group's members share.
    pub(super) fn check_group(&self, spec: &eas_core::spec::ServiceSpec) -> Result<(), PlaneError> {
        let name = &spec.metadata.name;
        let managed = self.managed();
        if managed
            .iter()
            .any(|(other, m)| other != name && group_of(&m.spec).as_deref() == Some(name))
        {
            return Err(PlaneError::Invalid(format!(
                "metadata.name: `{name}` is the name of a service group; a service may not share \
                 a name with a group"
            )));
        }
        let Some(group) = &spec.metadata.group else {
            return Ok(());
        };
        if managed.contains_key(group) {
            return Err(PlaneError::Invalid(format!(
                "metadata.group: `{group}` is the name of a service; a group may not share a \
                 name with a service"
            )));
        }
        let members: Vec<String> = managed
            .iter()
            .filter(|(other, m)| *other != name && group_of(&m.spec).as_deref() == Some(group))
            .map(|(other, _)| other.clone())
            .collect();
        drop(managed);
        let Some(first) = members.first() else {
            return Ok(());
        };
        let shared = self
            .directory
            .get(first)
            .map(|e| e.service().token().to_owned());
        if spec.token.is_none() || spec.token != shared {
            return Err(PlaneError::Invalid(format!(
                "token: the members of group `{group}` share one token (the group endpoint \
                 checks a request with the member it picks); give `{name}` the token of `{first}`"
            )));
        }
        Ok(())
    }

    /// Releases the service into its group with `weight` (0 to 1000; -1: the default, 100)
    /// and `traffic_state` (`grouping`: it takes group traffic; `standalone`: only its own
    /// endpoint's).
    ///
    /// # Errors
    ///
    /// No such service, no group, a weight or state out of range, a failed save.
    pub async fn release(
        &self,
        name: &str,
        weight: i64,
        traffic_state: &str,
    ) -> Result<String, PlaneError> {
        let _op = self.ops.lock().await;
        let (spec, stopped, version) = self.desired_of(name)?;
        let group = group_of(&spec).ok_or_else(|| {
            PlaneError::Invalid(format!(
                "service `{name}` is in no group: set its metadata.group first"
            ))
        })?;
        let weight = match weight {
            -1 => DEFAULT_WEIGHT,
            w => u32::try_from(w)
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| {
                    PlaneError::Invalid(format!(
                        "Weight: -1 (the default, {DEFAULT_WEIGHT}) or 0 to {MAX_WEIGHT}, not {w}"
                    ))
                })?,
        };
        let grouping = match traffic_state.to_ascii_lowercase().as_str() {
            "grouping" => true,
            "standalone" => false,
            other => {
                return Err(PlaneError::Invalid(format!(
                    "TrafficState: `grouping` or `standalone`, not `{other}`"
                )));
            }
        };
        let before = self.routing_of(name);
        self.set_routing(
            name,
            Routing {
                release: Some(Release { weight, grouping }),
                ..before.clone()
            },
        );
        let (versions, current) = self.versions_of(name)?;
        if let Err(e) = self.save(name, &spec, stopped, version, None, &versions, current) {
            self.set_routing(name, before);
            return Err(e);
        }
        self.apply_routing(name);
        let state = if grouping { "grouping" } else { "standalone" };
        Ok(format!(
            "service `{name}`: weight {weight} in group `{group}`, {state}"
        ))
    }

    /// Copies `ratio` percent (0 to 100) of the service's requests to each of `targets`
    /// (other sync services of this platform, at most [`MAX_MIRROR_TARGETS`]); a ratio of 0
    /// or no target removes the mirror.
    ///
    /// # Errors
    ///
    /// No such service or target, a ratio past 100, an async or repeated target, a failed
    /// save.
    pub async fn set_mirror(
        &self,
        name: &str,
        ratio: u32,
        targets: Vec<String>,
    ) -> Result<String, PlaneError> {
        let _op = self.ops.lock().await;
        let (spec, stopped, version) = self.desired_of(name)?;
        if ratio > 100 {
            return Err(PlaneError::Invalid(format!("Ratio: 0 to 100, not {ratio}")));
        }
        if targets.len() > MAX_MIRROR_TARGETS {
            return Err(PlaneError::Invalid(format!(
                "Target: at most {MAX_MIRROR_TARGETS} services"
            )));
        }
        for (i, target) in targets.iter().enumerate() {
            if target == name {
                return Err(PlaneError::Invalid(format!(
                    "Target: `{name}` cannot mirror to itself"
                )));
            }
            if targets[..i].contains(target) {
                return Err(PlaneError::Invalid(format!(
                    "Target: `{target}` is named twice"
                )));
            }
            let entry = self
                .directory
                .get(target)
                .ok_or_else(|| PlaneError::NotFound(format!("mirror target `{target}`")))?;
            if entry.service().queues().is_some() {
                return Err(PlaneError::Invalid(format!(
                    "Target: `{target}` is an asynchronous (queue) service; mirrors copy sync \
                     predict requests"
                )));
            }
        }
        let mirror = (ratio > 0 && !targets.is_empty()).then_some(MirrorRecord { ratio, targets });
        let before = self.routing_of(name);
        self.set_routing(
            name,
            Routing {
                mirror: mirror.clone(),
                ..before.clone()
            },
        );
        let (versions, current) = self.versions_of(name)?;
        if let Err(e) = self.save(name, &spec, stopped, version, None, &versions, current) {
            self.set_routing(name, before);
            return Err(e);
        }
        self.apply_routing(name);
        Ok(match mirror {
            Some(m) => format!(
                "service `{name}`: {}% of its requests are copied to {}",
                m.ratio,
                m.targets.join(", ")
            ),
            None => format!("service `{name}`: no mirror"),
        })
    }

    /// The service's mirror and its counts, if it has one.
    ///
    /// # Errors
    ///
    /// No such service.
    pub fn mirror_of(&self, name: &str) -> Result<Option<MirrorView>, PlaneError> {
        self.desired_of(name)?;
        Ok(self.directory.traffic().mirror(name).map(|m| MirrorView {
            ratio: m.ratio(),
            targets: m.counts(),
        }))
    }

    fn set_routing(&self, name: &str, routing: Routing) {
        self.routing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), routing);
    }

    /// The service's spec (JSON), stopped flag and desired-state version.
    fn desired_of(&self, name: &str) -> Result<(Value, bool, u64), PlaneError> {
        let managed = self.managed();
        let m = managed
            .get(name)
            .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
        Ok((m.spec.clone(), m.stopped, m.version))
    }
}
