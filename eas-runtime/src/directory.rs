//! The services a server runs, by name: the table the edge looks requests up in and the
//! control plane changes while requests flow.
//!
//! A request reads the table with one atomic load and keeps the [`Entry`] it found to the
//! end, so a service created, replaced or deleted meanwhile never changes a request half-way;
//! writers swap in a new table (copy on write: a table holds a handful to a few hundred
//! services, and changes are rare next to requests).

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admission::{Admission, BodyBudget, BodyLimits};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, ServiceMetrics};
use crate::service::Service;
use crate::traffic::Traffic;

/// What a predict path names ([`Directory::resolve`]).
#[derive(Debug)]
pub enum Resolved<'a> {
    /// A service (directly, or the member of a group its weights picked), and the rest of the
    /// path.
    Service(Arc<Entry>, &'a str),
    /// A group none of whose members takes traffic now.
    EmptyGroup(String),
    /// Nothing.
    Unknown,
}

/// One service as the edge serves it: its admission layers and its request metrics.
#[derive(Debug)]
pub struct Entry {
    admission: Arc<Admission>,
    metrics: ServiceMetrics,
}

impl Entry {
    /// Its admission layers.
    #[must_use]
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The service.
    #[must_use]
    pub fn service(&self) -> &Arc<Service> {
        self.admission.service()
    }

    /// Its request metrics.
    #[must_use]
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }
}

/// Services by name, swappable as a whole.
#[derive(Debug)]
pub struct Directory {
    entries: ArcSwap<BTreeMap<String, Arc<Entry>>>,
    traffic: Traffic,
    metrics: Arc<Metrics>,
    body: BodyLimits,
    body_budget: Arc<BodyBudget>,
}

impl Directory {
    /// An empty table; each service added gets admission layers built from its spec and
    /// `body`.
    #[must_use]
    pub fn new(metrics: Arc<Metrics>, body: BodyLimits) -> Self {
        Self {
            entries: ArcSwap::from_pointee(BTreeMap::new()),
            traffic: Traffic::new(),
            body_budget: Arc::new(BodyBudget::new(body.max_buffered_bytes)),
            metrics,
            body,
        }
    }

    /// Adds `service`; fails when one of that name is already there.
    pub fn insert(&self, service: Service) -> Result<Arc<Entry>> {
        let name = service.name().to_owned();
        let instances = u32::try_from(service.instances().len()).unwrap_or(u32::MAX);
        let entry = Arc::new(Entry {
            metrics: ServiceMetrics::new(&self.metrics, &name, instances),
            admission: Arc::new(Admission::new(
                Arc::new(service),
                self.body,
                Arc::clone(&self.body_budget),
            )),
        });
        let mut taken = false;
        self.entries.rcu(|current| {
            taken = current.contains_key(&name);
            let mut next = BTreeMap::clone(current);
            if !taken {
                next.insert(name.clone(), Arc::clone(&entry));
            }
            next
        });
        if taken {
            return Err(Error::DuplicateService(name));
        }
        Ok(entry)
    }

    /// Takes the service called `name` out of the table (requests already past the lookup
    /// finish on it); the caller shuts it down.
    pub fn remove(&self, name: &str) -> Option<Arc<Entry>> {
        let mut removed = None;
        self.entries.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            removed = next.remove(name);
            next
        });
        removed
    }

    /// The entry of the service called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries.load().get(name).cloned()
    }

    /// Every entry now, by name.
    #[must_use]
    pub fn entries(&self) -> Arc<BTreeMap<String, Arc<Entry>>> {
        self.entries.load_full()
    }

    /// Every service now, by name.
    #[must_use]
    pub fn services(&self) -> BTreeMap<String, Arc<Service>> {
        self.entries
            .load()
            .iter()
            .map(|(name, entry)| (name.clone(), Arc::clone(entry.service())))
            .collect()
    }

    /// The metrics every service records into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The bytes of request bodies being read now, across services, and their bound.
    #[must_use]
    pub fn body_budget(&self) -> &Arc<BodyBudget> {
        &self.body_budget
    }

    /// The groups and mirrors between the services.
    #[must_use]
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// What a predict path names: a service ([`find`](Self::find)), else a group (its first
    /// segment), whose weights pick the member.
    #[must_use]
    pub fn resolve<'a>(&self, path: &'a str) -> Resolved<'a> {
        if let Some((entry, rest)) = self.find(path) {
            return Resolved::Service(entry, rest);
        }
        let path = path.trim_start_matches('/');
        let (name, rest) = path.split_once('/').unwrap_or((path, ""));
        let Some(group) = self.traffic.group(name) else {
            return Resolved::Unknown;
        };
        match group.pick().and_then(|member| self.get(member)) {
            Some(entry) => Resolved::Service(entry, rest),
            None => Resolved::EmptyGroup(name.to_owned()),
        }
    }

    /// The entry a predict path names, and the rest of the path: the longest service name
    /// that is the path or a prefix of it followed by `/`.
    #[must_use]
    pub fn find<'a>(&self, path: &'a str) -> Option<(Arc<Entry>, &'a str)> {
        let entries = self.entries.load();
        let path = path.trim_start_matches('/');
        let mut end = path.len();
        loop {
            let candidate = &path[..end];
            if let Some(entry) = entries.get(candidate) {
                return Some((Arc::clone(entry), path[end..].trim_start_matches('/')));
            }
            end = candidate.rfind('/')?;
        }
    }
}
