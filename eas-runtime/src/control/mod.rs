//! The control plane: the services a platform runs, their desired state, and the loop that
//! keeps their replicas where their controllers want them.
//!
//! [`ControlPlane`] is what the control API (`crate::http`) and an embedding application call:
//! create, update, delete, stop, start and restart services, restart instances, change the
//! autoscaler. Each operation validates, updates the desired state in the [`StateStore`]
//! (when the platform has one) and then the running service; [`ControlPlane::run`] ticks every
//! service's [`ServiceController`] each control period.
//!
//! What an update may change in place (no new instances): `metadata.instance`,
//! `metadata.group`, `autoscaler` (and so the cron scaler's `schedules`),
//! `networking.gateway_policy` (rate and concurrency limits) and `metadata.rpc.keepalive`. Anything else makes a new **version** of the service
//! (its number one more than the newest; the last [`MAX_VERSIONS`] are kept with their specs)
//! that the service's controller rolls out replica by replica within the spec's
//! `rolling_strategy` ([`crate::controller`]); [`ControlPlane::set_version`] moves to any kept
//! version the same way. A version whose replicas fail to start (or crash
//! [`ROLLOUT_MAX_RESTARTS`](crate::controller::ROLLOUT_MAX_RESTARTS) times) is rolled back: the
//! version before it keeps serving, and describe says why. The in-place fields are not part of
//! a version: moving to another version keeps their current values.

mod routing;

pub use routing::{MAX_MIRROR_TARGETS, MirrorView};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use eas_core::spec::ServiceSpec;
use eas_core::{Autoscaler, Clock};
use eas_scheduler::control::{NodeCapacity, ReplicaController, ScaleDecision, autoscaler_for};
use serde_json::Value;

use crate::controller::{Rollout, ServiceController, Tick};
use crate::directory::Directory;
use crate::fetch::Fetcher;
use crate::provider::InstanceProvider;
use crate::queue::QueueFactory;
use crate::registry::ProcessorRegistry;
use crate::replica::Replica;
use crate::service::{LocalPaths, Service, Template};
use crate::store::{ServiceRecord, StateStore, VersionRecord};

/// How many versions of a service are kept (with their specs) to move back or forward to.
pub const MAX_VERSIONS: usize = 10;

/// The default time between two control rounds.
pub const DEFAULT_CONTROL_PERIOD: Duration = Duration::from_secs(1);

/// Makes the autoscaler of a service in place of the one its spec selects: `None` keeps the
/// spec's. How an application plugs in its own [`Autoscaler`].
pub type AutoscalerFactory = Arc<dyn Fn(&ServiceSpec) -> Option<Box<dyn Autoscaler>> + Send + Sync>;

/// Why a control operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaneError {
    /// No service of that name.
    #[error("no service named `{0}`")]
    NotFound(String),
    /// A service of that name exists already.
    #[error("a service named `{0}` exists already")]
    Exists(String),
    /// The spec, or the change to it, is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The change needs something this platform does not do (yet).
    #[error("{0}")]
    Unsupported(String),
    /// Starting the service failed.
    #[error(transparent)]
    Start(#[from] crate::Error),
    /// The desired state could not be written; nothing changed.
    #[error("the desired state could not be saved: {0}")]
    Store(String),
}

/// One managed service: its desired state and its controller.
struct Managed {
    spec: Value,
    stopped: bool,
    version: u64,
    /// The versions kept, oldest first.
    versions: Vec<VersionRecord>,
    /// The version that runs, or is being rolled out.
    current: u32,
    /// The rollout under way, as the last round saw it.
    rollout: Option<Rollout>,
    /// Why the last rollout failed, until the next one starts.
    rollout_failure: Option<String>,
    created: SystemTime,
    updated: SystemTime,
    warnings: Vec<String>,
    controller: Arc<Mutex<ServiceController>>,
}

/// A service as the describe API shows it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceView {
    /// The name.
    pub name: String,
    /// The spec as given (after merged updates).
    pub spec: Value,
    /// Stopped on purpose.
    pub stopped: bool,
    /// Its desired-state version (each accepted change adds one).
    pub version: u64,
    /// The version of the service that runs, or is being rolled out.
    pub service_version: u32,
    /// The newest version kept.
    pub latest_version: u32,
    /// The rollout under way, as the last control round saw it.
    pub rollout: Option<Rollout>,
    /// Why the last rollout failed (the version before it kept serving), until the next one.
    pub rollout_failure: Option<String>,
    /// The group it is in (`metadata.group`).
    pub group: Option<String>,
    /// How it takes its group's traffic (`None`: never released).
    pub release: Option<crate::traffic::Release>,
    /// Its mirror and the mirror's counts.
    pub mirror: Option<routing::MirrorView>,
    /// When it was created.
    pub created: SystemTime,
    /// When its desired state last changed.
    pub updated: SystemTime,
    /// Spec fields without effect here, as `field: reason`.
    pub warnings: Vec<String>,
    /// The replicas the controller wants.
    pub desired: u32,
    /// Its replicas (the routing set).
    pub replicas: Vec<Replica>,
    /// Whether none of its replicas can become ready again.
    pub dead: bool,
    /// Recent scaling decisions, oldest first.
    pub decisions: Vec<ScaleDecision>,
    /// Why the last round started fewer replicas than desired.
    pub refused: Option<String>,
}

/// What the control plane needs to start services.
pub struct PlaneParts {
    /// The name of this deployment in the API (`local`).
    pub cluster: String,
    /// The services being served.
    pub directory: Arc<Directory>,
    /// Processors by name.
    pub registry: ProcessorRegistry,
    /// Async services' queues.
    pub queues: Arc<dyn QueueFactory>,
    /// Where instances run.
    pub provider: Arc<dyn InstanceProvider>,
    /// Fetches services' files.
    pub fetcher: Fetcher,
    /// Where decisions read the time.
    pub clock: Arc<dyn Clock>,
    /// The application's own autoscalers, if any.
    pub autoscalers: Option<AutoscalerFactory>,
    /// Where desired state survives restarts (`None`: in memory only).
    pub store: Option<StateStore>,
}

/// The control plane of one platform.
pub struct ControlPlane {
    cluster: String,
    directory: Arc<Directory>,
    registry: ProcessorRegistry,
    queues: Arc<dyn QueueFactory>,
    provider: Arc<dyn InstanceProvider>,
    fetcher: Fetcher,
    clock: Arc<dyn Clock>,
    autoscalers: Option<AutoscalerFactory>,
    store: Option<StateStore>,
    managed: Mutex<BTreeMap<String, Managed>>,
    /// Each service's release into its group and its mirror (`routing.rs`); its own lock, so
    /// that saving a record can read it while `managed` is held elsewhere.
    routing: Mutex<BTreeMap<String, routing::Routing>>,
    /// Serialises operations that start or stop services (they await storage fetches).
    ops: tokio::sync::Mutex<()>,
    /// The services' second-level series (the platform starts their sampler).
    series: Arc<crate::series::Series>,
    /// The spot price traces the platform was given, for the console's price curves.
    prices: std::sync::OnceLock<Arc<eas_scheduler::pricing::TraceOracle>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("cluster", &self.cluster)
            .field("provider", &self.provider.name())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A control plane with no services yet.
    #[must_use]
    pub fn new(parts: PlaneParts) -> Self {
        Self {
            cluster: parts.cluster,
            directory: parts.directory,
            registry: parts.registry,
            queues: parts.queues,
            provider: parts.provider,
            fetcher: parts.fetcher,
            clock: parts.clock,
            autoscalers: parts.autoscalers,
            store: parts.store,
            managed: Mutex::new(BTreeMap::new()),
            routing: Mutex::new(BTreeMap::new()),
            ops: tokio::sync::Mutex::new(()),
            series: Arc::new(crate::series::Series::new()),
            prices: std::sync::OnceLock::new(),
        }
    }

    /// The name of this deployment in the API.
    #[must_use]
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The services being served.
    #[must_use]
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The services' second-level series ([`crate::series`]).
    #[must_use]
    pub fn series(&self) -> &Arc<crate::series::Series> {
        &self.series
    }

    /// Gives the plane the spot price traces of the markets it may use (once; a second call
    /// changes nothing and returns `false`).
    pub fn set_price_traces(&self, oracle: Arc<eas_scheduler::pricing::TraceOracle>) -> bool {
        self.prices.set(oracle).is_ok()
    }

    /// The spot price traces it was given, if any.
    #[must_use]
    pub fn price_traces(&self) -> Option<&Arc<eas_scheduler::pricing::TraceOracle>> {
        self.prices.get()
    }

    /// Where instances run.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn InstanceProvider> {
        &self.provider
    }

    /// The spec's fields that have no effect here, with why: its notices and the built-in
    /// processors' ([`crate::registry::builtin_notices`]), less the fields the provider
    /// honours; and the autoscaler's `gpu` strategy when there is no GPU utilisation
    /// to read (no NVML, GPUs or `cuda` feature).
    fn warnings(&self, spec: &ServiceSpec) -> Vec<String> {
        let mut warnings: Vec<String> = spec
            .notices()
            .iter()
            .chain(&crate::registry::builtin_notices(spec))
            .filter(|notice| !self.provider.honours(&notice.field))
            .map(ToString::to_string)
            .collect();
        let gpu_strategy = spec
            .autoscaler
            .as_ref()
            .is_some_and(|a| a.strategies.gpu.is_some());
        if gpu_strategy && let Some(why) = crate::gpu::GpuMonitor::shared().unavailable() {
            warnings.push(format!(
                "autoscaler.strategies.gpu: no GPU utilisation to scale on: {why}"
            ));
        }
        warnings
    }

    fn managed(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Managed>> {
        self.managed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The services the store holds, to start again (a platform restarting).
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    pub fn stored(&self) -> Result<Vec<(String, ServiceRecord)>, PlaneError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let listed = store.list().map_err(|e| PlaneError::Store(e.to_string()))?;
        for error in &listed.errors {
            tracing::error!("a stored service cannot be read, skipped: {error}");
        }
        Ok(listed.records.into_iter().collect())
    }

    /// Creates and starts a service from its service.json; `replace` lets it take the place
    /// of a stored (not running) one of the same name. The desired state is saved before the
    /// service starts.
    ///
    /// # Errors
    ///
    /// An invalid spec, an existing service, a failed start or save.
    pub async fn create(&self, spec: Value) -> Result<String, PlaneError> {
        self.create_with(
            spec,
            false,
            1,
            None,
            Vec::new(),
            1,
            routing::Routing::default(),
        )
        .await
    }

    /// [`create`](Self::create) with the service's files already on this machine at `paths`
    /// (`None`: fetched as `create` does).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub async fn create_from(
        &self,
        spec: Value,
        paths: Option<LocalPaths>,
    ) -> Result<String, PlaneError> {
        self.create_with(
            spec,
            false,
            1,
            paths,
            Vec::new(),
            1,
            routing::Routing::default(),
        )
        .await
    }

    /// Starts a service the store held (`record`), as it was (stopped or not).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub async fn restore(&self, record: ServiceRecord) -> Result<String, PlaneError> {
        self.create_with(
            record.spec,
            record.stopped,
            record.version,
            None,
            record.versions,
            record.service_version.max(1),
            routing::Routing {
                release: record.release,
                mirror: record.mirror,
            },
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_with(
        &self,
        json: Value,
        stopped: bool,
        version: u64,
        paths: Option<LocalPaths>,
        mut versions: Vec<VersionRecord>,
        current: u32,
        routing: routing::Routing,
    ) -> Result<String, PlaneError> {
        let _op = self.ops.lock().await;
        let spec = parse(&json)?;
        let name = spec.metadata.name.clone();
        if self.managed().contains_key(&name) {
            return Err(PlaneError::Exists(name));
        }
        self.check_group(&spec)?;
        let unroute = self.route(&name, routing);
        let mut controller = self.controller_for(&spec)?;
        controller.decisions_mut().set_stopped(stopped);
        let warnings = self.warnings(&spec);
        for warning in &warnings {
            tracing::warn!(service = %name, "{warning}");
        }
        let now = self.clock.now();
        if versions.is_empty() {
            versions.push(VersionRecord {
                version: current,
                spec: json.clone(),
                built_at_unix_ms: self.unix_ms(),
                message: "created".to_owned(),
            });
        }
        self.save(&name, &json, stopped, version, None, &versions, current)?;
        let paths = match paths {
            Some(paths) => paths,
            None => self.fetcher.paths(&spec).await?,
        };
        let initial = if stopped {
            0
        } else {
            controller.initial(&self.node_for(&name), self.provider.gpus())
        };
        let service = Service::launch_version(
            spec,
            &self.registry,
            &paths,
            Arc::clone(self.directory.metrics()),
            self.queues.as_ref(),
            Arc::clone(&self.provider),
            initial,
            current,
        )?;
        self.directory.insert(service)?;
        self.managed().insert(
            name.clone(),
            Managed {
                spec: json,
                stopped,
                version,
                versions,
                current,
                rollout: None,
                rollout_failure: None,
                created: now,
                updated: now,
                warnings,
                controller: Arc::new(Mutex::new(controller)),
            },
        );
        unroute.keep();
        self.apply_routing(&name);
        Ok(name)
    }

    fn controller_for(&self, spec: &ServiceSpec) -> Result<ServiceController, PlaneError> {
        let custom = self.autoscalers.as_ref().and_then(|make| make(spec));
        match custom {
            Some(autoscaler) => {
                let decisions = ReplicaController::new(spec.metadata.instance, Some(autoscaler));
                Ok(ServiceController::new(spec, decisions))
            }
            None => ServiceController::from_spec(spec)
                .map_err(|e| PlaneError::Invalid(format!("{}: {e}", spec.metadata.name))),
        }
    }

    /// The autoscaler a spec gets: the application's, else the one its `autoscaler` block
    /// selects, else none (a fixed count).
    fn autoscaler_of(&self, spec: &ServiceSpec) -> Result<Option<Box<dyn Autoscaler>>, PlaneError> {
        if let Some(custom) = self.autoscalers.as_ref().and_then(|make| make(spec)) {
            return Ok(Some(custom));
        }
        spec.autoscaler
            .as_ref()
            .map(autoscaler_for)
            .transpose()
            .map_err(|e| PlaneError::Invalid(format!("autoscaler: {e}")))
    }

    fn unix_ms(&self) -> u64 {
        self.clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    #[allow(clippy::too_many_arguments)]
    fn save(
        &self,
        name: &str,
        spec: &Value,
        stopped: bool,
        version: u64,
        message: Option<String>,
        versions: &[VersionRecord],
        current: u32,
    ) -> Result<(), PlaneError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let routing = self.routing_of(name);
        let mut record = ServiceRecord::new(spec.clone())
            .with_stopped(stopped)
            .with_version(version)
            .with_updated_at_unix_ms(self.unix_ms())
            .with_versions(versions.to_vec(), current)
            .with_traffic(routing.release, routing.mirror);
        if let Some(message) = message {
            record = record.with_message(message);
        }
        store
            .put(name, &record)
            .map_err(|e| PlaneError::Store(e.to_string()))
    }

    /// Stops and forgets the service called `name` (its in-flight requests finish within its
    /// grace period, in the background).
    ///
    /// # Errors
    ///
    /// No such service, or the store could not be written.
    pub async fn delete(&self, name: &str) -> Result<(), PlaneError> {
        let _op = self.ops.lock().await;
        if !self.managed().contains_key(name) {
            return Err(PlaneError::NotFound(name.to_owned()));
        }
        if let Some(store) = &self.store {
            store
                .delete(name)
                .map_err(|e| PlaneError::Store(e.to_string()))?;
        }
        self.managed().remove(name);
        self.forget_routing(name);
        if let Some(entry) = self.directory.remove(name) {
            let service = Arc::clone(entry.service());
            let metrics = Arc::clone(self.directory.metrics());
            let name = name.to_owned();
            tokio::spawn(async move {
                service.shutdown().await;
                metrics.remove_service_scaling(&name);
            });
        }
        Ok(())
    }

    /// Brings the service to zero replicas, keeping its spec (`stopped`), or back to what its
    /// controller wants (`!stopped`).
    ///
    /// # Errors
    ///
    /// No such service, or the store could not be written.
    pub async fn set_stopped(&self, name: &str, stopped: bool) -> Result<(), PlaneError> {
        let _op = self.ops.lock().await;
        let (spec, version, versions, current, controller) = {
            let managed = self.managed();
            let m = managed
                .get(name)
                .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
            (
                m.spec.clone(),
                m.version,
                m.versions.clone(),
                m.current,
                Arc::clone(&m.controller),
            )
        };
        self.save(name, &spec, stopped, version, None, &versions, current)?;
        if let Some(m) = self.managed().get_mut(name) {
            m.stopped = stopped;
            m.updated = self.clock.now();
        }
        controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decisions_mut()
            .set_stopped(stopped);
        self.tick_one(name).await;
        Ok(())
    }

    /// Replaces every replica of the service (new ones start first).
    ///
    /// # Errors
    ///
    /// No such service.
    pub fn restart(&self, name: &str) -> Result<Vec<u32>, PlaneError> {
        let service = self.service(name)?;
        let all: Vec<u32> = service.instances().iter().map(Replica::index).collect();
        Ok(service.restart(&all))
    }

    /// Replaces the named replicas (`{service}-{index}` or the index alone).
    ///
    /// # Errors
    ///
    /// No such service, or a name that is not one of its replicas.
    pub fn restart_instances(
        &self,
        name: &str,
        instances: &[&str],
    ) -> Result<Vec<u32>, PlaneError> {
        let service = self.service(name)?;
        let prefix = format!("{name}-");
        let mut indices = Vec::new();
        for instance in instances {
            let index = instance
                .strip_prefix(&prefix)
                .unwrap_or(instance)
                .parse::<u32>()
                .ok()
                .filter(|i| service.instances().iter().any(|r| r.index() == *i))
                .ok_or_else(|| {
                    PlaneError::NotFound(format!("instance `{instance}` of service `{name}`"))
                })?;
            indices.push(index);
        }
        Ok(service.restart(&indices))
    }

    fn service(&self, name: &str) -> Result<Arc<Service>, PlaneError> {
        self.directory
            .get(name)
            .map(|e| Arc::clone(e.service()))
            .ok_or_else(|| PlaneError::NotFound(name.to_owned()))
    }

    /// Applies `change` to the service's spec and the result in place; refuses a change that
    /// needs new instances (see the [module docs](self)). Returns what changed, for a person.
    ///
    /// # Errors
    ///
    /// No such service, an invalid result, a change that needs new instances, a failed save.
    pub async fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut Value) -> Result<(), PlaneError>,
    ) -> Result<String, PlaneError> {
        let _op = self.ops.lock().await;
        let (old_json, stopped, version, controller) = {
            let managed = self.managed();
            let m = managed
                .get(name)
                .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
            (
                m.spec.clone(),
                m.stopped,
                m.version,
                Arc::clone(&m.controller),
            )
        };
        let mut new_json = old_json.clone();
        change(&mut new_json)?;
        let new = parse(&new_json)?;
        if new.metadata.name != name {
            return Err(PlaneError::Invalid(format!(
                "metadata.name: a service cannot be renamed (`{name}` to `{}`)",
                new.metadata.name
            )));
        }
        let changed = needs_new_instances(&old_json, &new_json);
        if !changed.is_empty() {
            let next = self
                .managed()
                .get(name)
                .and_then(|m| m.versions.iter().map(|v| v.version).max())
                .unwrap_or(0)
                + 1;
            let message = format!("update: {}", changed.join(", "));
            return self.roll_to(name, new_json, next, Some(message)).await;
        }
        if old_json == new_json {
            return Ok("nothing to change".to_owned());
        }
        self.check_group(&new)?;
        let autoscaler = self.autoscaler_of(&new)?;
        let version = version + 1;
        let (versions, current) = self.versions_of(name)?;
        self.save(name, &new_json, stopped, version, None, &versions, current)?;
        {
            // The history and the samples stay; the policy is the new one.
            let mut controller = controller.lock().unwrap_or_else(|e| e.into_inner());
            controller.set_autoscaler(autoscaler);
            controller.decisions_mut().set_fixed(new.metadata.instance);
        }
        if let Some(entry) = self.directory.get(name) {
            entry.admission().update(&new);
        }
        let warnings = self.warnings(&new);
        if let Some(m) = self.managed().get_mut(name) {
            m.spec = new_json;
            m.version = version;
            m.updated = self.clock.now();
            m.warnings = warnings;
        }
        self.sync_groups();
        self.tick_one(name).await;
        Ok(format!("service `{name}` updated to version {version}"))
    }

    /// Moves the service to version `version`, one of those kept
    /// ([`versions_of`](Self::versions_of)), back or forward, through a rollout; the in-place
    /// fields keep their current values.
    ///
    /// # Errors
    ///
    /// No such service or version, the version that runs already, a failed start or save.
    pub async fn set_version(&self, name: &str, version: u32) -> Result<String, PlaneError> {
        let _op = self.ops.lock().await;
        let json = {
            let managed = self.managed();
            let m = managed
                .get(name)
                .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
            if version == m.current {
                return Err(PlaneError::Invalid(format!(
                    "Version: {version} is the version `{name}` runs already"
                )));
            }
            let kept = m
                .versions
                .iter()
                .find(|v| v.version == version)
                .ok_or_else(|| {
                    PlaneError::NotFound(format!(
                        "version {version} of service `{name}` (kept: {})",
                        m.versions
                            .iter()
                            .map(|v| v.version.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            with_in_place(&kept.spec, &m.spec)
        };
        self.roll_to(name, json, version, None).await
    }

    /// The versions kept of the service, oldest first, and the one that runs.
    ///
    /// # Errors
    ///
    /// No such service.
    pub fn versions_of(&self, name: &str) -> Result<(Vec<VersionRecord>, u32), PlaneError> {
        let managed = self.managed();
        let m = managed
            .get(name)
            .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
        Ok((m.versions.clone(), m.current))
    }

    /// Makes `json` version `version` of the service (a new one when `message` is given) and
    /// starts its rollout. The caller holds the operations lock.
    async fn roll_to(
        &self,
        name: &str,
        json: Value,
        version: u32,
        message: Option<String>,
    ) -> Result<String, PlaneError> {
        let spec = parse(&json)?;
        let (stopped, state_version, mut versions, controller) = {
            let managed = self.managed();
            let m = managed
                .get(name)
                .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
            (
                m.stopped,
                m.version,
                m.versions.clone(),
                Arc::clone(&m.controller),
            )
        };
        let service = self.service(name)?;
        if spec.metadata.is_async() != service.spec().metadata.is_async() {
            return Err(PlaneError::Unsupported(
                "metadata.type: a service cannot change between sync and async; create a new \
                 service"
                    .to_owned(),
            ));
        }
        self.check_group(&spec)?;
        let autoscaler = self.autoscaler_of(&spec)?;
        // Everything that can fail before anything changes: the files, the processor.
        let paths = self.fetcher.paths(&spec).await?;
        let template = Template::build(Arc::new(spec.clone()), &self.registry, &paths, version)?;
        let made = message.is_some();
        if let Some(message) = message {
            versions.push(VersionRecord {
                version,
                spec: json.clone(),
                built_at_unix_ms: self.unix_ms(),
                message,
            });
            while versions.len() > MAX_VERSIONS {
                versions.remove(0);
            }
        }
        let state_version = state_version + 1;
        self.save(
            name,
            &json,
            stopped,
            state_version,
            None,
            &versions,
            version,
        )?;
        let before = service.set_template(template);
        {
            let mut controller = controller.lock().unwrap_or_else(|e| e.into_inner());
            controller.set_autoscaler(autoscaler);
            controller.decisions_mut().set_fixed(spec.metadata.instance);
        }
        if let Some(entry) = self.directory.get(name) {
            entry.admission().update(&spec);
        }
        let warnings = self.warnings(&spec);
        if let Some(m) = self.managed().get_mut(name) {
            m.spec = json;
            m.version = state_version;
            m.versions = versions;
            m.current = version;
            m.rollout_failure = None;
            m.updated = self.clock.now();
            m.warnings = warnings;
        }
        tracing::info!(
            service = name,
            "rolling out version {version} (from {before})"
        );
        self.tick_one(name).await;
        Ok(if made {
            format!("service `{name}`: version {version} made; rolling out from version {before}")
        } else {
            format!("service `{name}`: rolling out version {version} (from version {before})")
        })
    }

    /// Records a custom metric a client reported for the service (see
    /// [`ServiceController::report_metric`]).
    ///
    /// # Errors
    ///
    /// No such service, or a refused name or value.
    pub fn report_metric(&self, name: &str, metric: &str, value: f64) -> Result<(), PlaneError> {
        let managed = self.managed();
        let m = managed
            .get(name)
            .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
        m.controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report_metric(metric, value)
            .map_err(PlaneError::Invalid)
    }

    /// The service called `name` as the describe API shows it.
    ///
    /// # Errors
    ///
    /// No such service.
    pub fn describe(&self, name: &str) -> Result<ServiceView, PlaneError> {
        let managed = self.managed();
        let m = managed
            .get(name)
            .ok_or_else(|| PlaneError::NotFound(name.to_owned()))?;
        Ok(self.view(name, m))
    }

    /// Every service, by name.
    #[must_use]
    pub fn list(&self) -> Vec<ServiceView> {
        let managed = self.managed();
        managed.iter().map(|(name, m)| self.view(name, m)).collect()
    }

    fn view(&self, name: &str, m: &Managed) -> ServiceView {
        let controller = m.controller.lock().unwrap_or_else(|e| e.into_inner());
        let (replicas, dead) = self.directory.get(name).map_or((Vec::new(), false), |e| {
            let service = e.service();
            (service.instances().to_vec(), service.is_dead())
        });
        ServiceView {
            name: name.to_owned(),
            spec: m.spec.clone(),
            stopped: m.stopped,
            version: m.version,
            service_version: m.current,
            latest_version: m
                .versions
                .iter()
                .map(|v| v.version)
                .max()
                .unwrap_or(m.current),
            rollout: m.rollout.clone(),
            rollout_failure: m.rollout_failure.clone(),
            group: routing::group_of(&m.spec),
            release: self.routing_of(name).release,
            mirror: self
                .directory
                .traffic()
                .mirror(name)
                .map(|m| routing::MirrorView {
                    ratio: m.ratio(),
                    targets: m.counts(),
                }),
            created: m.created,
            updated: m.updated,
            warnings: m.warnings.clone(),
            desired: controller.decisions().desired(),
            replicas,
            dead,
            decisions: controller.decisions().history().cloned().collect(),
            refused: controller.refused().map(str::to_owned),
        }
    }

    /// Runs control rounds every `period` until `stop` turns `true`.
    pub async fn run(
        self: Arc<Self>,
        period: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(period.max(Duration::from_millis(10)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let names: Vec<String> = self.managed().keys().cloned().collect();
            for name in names {
                self.tick_one(&name).await;
            }
        }
    }

    /// One control round for one service.
    pub async fn tick_one(&self, name: &str) -> Option<Tick> {
        let entry = self.directory.get(name)?;
        let service = Arc::clone(entry.service());
        let controller = Arc::clone(&self.managed().get(name)?.controller);
        let backlog = match service.queues() {
            Some(queues) => queues.backlog().await.ok(),
            None => None,
        };
        let node = self.node_for(name);
        let at = self.clock.now();
        let before: Vec<u32> = service.instances().iter().map(Replica::index).collect();
        let tick = controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tick(&service, at, backlog, &node);
        self.publish(&service, &tick, &before);
        self.directory.metrics().set_rollout(
            name,
            tick.rollout
                .as_ref()
                .filter(|r| r.failed.is_none())
                .map(|r| [(r.new.ready, r.new.total), (r.old.ready, r.old.total)]),
        );
        self.follow_rollout(name, tick.rollout.as_ref());
        Some(tick)
    }

    /// Keeps the rollout's progress for describe; after a failed one, makes the version it
    /// went back to the desired one again (in the store too).
    fn follow_rollout(&self, name: &str, rollout: Option<&Rollout>) {
        let saved = {
            let mut managed = self.managed();
            let Some(m) = managed.get_mut(name) else {
                return;
            };
            m.rollout = rollout.cloned();
            let Some((back, why)) = rollout.and_then(|r| r.failed.clone()) else {
                return;
            };
            if let Some(kept) = m.versions.iter().find(|v| v.version == back) {
                m.spec = with_in_place(&kept.spec, &m.spec);
            }
            m.current = back;
            m.version += 1;
            m.rollout = None;
            m.rollout_failure = Some(why.clone());
            m.updated = self.clock.now();
            (
                m.spec.clone(),
                m.stopped,
                m.version,
                m.versions.clone(),
                why,
            )
        };
        let (spec, stopped, version, versions, why) = saved;
        let current = self.versions_of(name).map_or(1, |(_, c)| c);
        if let Err(e) = self.save(name, &spec, stopped, version, Some(why), &versions, current) {
            tracing::error!(service = name, "after a failed rollout: {e}");
        }
    }

    /// The node as one service's plan sees it: what the other services' replicas use is taken.
    fn node_for(&self, name: &str) -> NodeCapacity {
        let mut used = eas_core::resources::Resources::ZERO;
        for (other, entry) in self.directory.entries().iter() {
            if other == name {
                continue;
            }
            let service = entry.service();
            let per = eas_core::resources::Resources::per_instance(&service.spec());
            for _ in service.instances().iter() {
                used = used.saturating_add(&per);
            }
        }
        self.provider.node().with_used_by_others(used)
    }

    fn publish(&self, service: &Service, tick: &Tick, before: &[u32]) {
        let metrics = self.directory.metrics();
        let name = service.name();
        let instances = service.instances();
        let ready = instances.iter().filter(|r| r.is_ready()).count();
        metrics.set_replicas(
            name,
            crate::metrics::ReplicaCounts {
                desired: tick.decision.desired,
                ready: u32::try_from(ready).unwrap_or(u32::MAX),
                total: u32::try_from(instances.len()).unwrap_or(u32::MAX),
            },
        );
        let count = u32::try_from(before.len()).unwrap_or(u32::MAX);
        let now = u32::try_from(instances.len()).unwrap_or(u32::MAX);
        if let Some(direction) = metrics.record_scaling(name, count, now) {
            tracing::info!(
                service = name,
                "scaled {} from {count} to {now} replicas: {}",
                direction.as_str(),
                tick.decision.reason
            );
        }
        for (index, percent) in &tick.cpu_utilization {
            metrics.set_instance_cpu_utilization(name, *index, *percent);
        }
        for replica in instances.iter() {
            if let Some(bytes) = replica.resident_memory() {
                metrics.set_instance_memory(name, replica.index(), bytes);
            }
        }
        for (index, values) in &tick.custom_metrics {
            metrics.set_custom_metrics(name, *index, values);
        }
    }
}

/// Parses and validates a service.json value.
fn parse(json: &Value) -> Result<ServiceSpec, PlaneError> {
    ServiceSpec::from_json_value(json.clone()).map_err(|e| PlaneError::Invalid(e.to_string()))
}

/// The top-level paths whose change needs new instances: everything but the fields applied in
/// place (see the [module docs](self)).
/// The fields an update changes in place (no new instances), as JSON paths.
const IN_PLACE: [&[&str]; 5] = [
    &["metadata", "instance"],
    &["metadata", "group"],
    &["autoscaler"],
    &["networking", "gateway_policy"],
    &["metadata", "rpc", "keepalive"],
];

/// `base` with the in-place fields ([`IN_PLACE`]) as `from` has them (absent where `from` has
/// none).
fn with_in_place(base: &Value, from: &Value) -> Value {
    let mut out = base.clone();
    for path in IN_PLACE {
        let pointer = format!("/{}", path.join("/"));
        match from.pointer(&pointer) {
            Some(value) => set_path(&mut out, path, value.clone()),
            None => {
                if let Some((last, parents)) = path.split_last() {
                    let parent = format!("/{}", parents.join("/"));
                    let parent = if parents.is_empty() {
                        ""
                    } else {
                        parent.as_str()
                    };
                    if let Some(map) = out.pointer_mut(parent).and_then(Value::as_object_mut) {
                        map.remove(*last);
                    }
                }
            }
        }
    }
    out
}

/// Sets `value` at `path` in `target`, making the objects on the way.
fn set_path(target: &mut Value, path: &[&str], value: Value) {
    let Some((key, rest)) = path.split_first() else {
        *target = value;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Some(map) = target.as_object_mut() {
        let child = map.entry((*key).to_owned()).or_insert(Value::Null);
        set_path(child, rest, value);
    }
}

fn needs_new_instances(old: &Value, new: &Value) -> Vec<String> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("autoscaler");
            if let Some(networking) = map.get_mut("networking").and_then(Value::as_object_mut) {
                networking.remove("gateway_policy");
                if networking.is_empty() {
                    map.remove("networking");
                }
            }
            if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("instance");
                metadata.remove("group");
                if let Some(rpc) = metadata.get_mut("rpc").and_then(Value::as_object_mut) {
                    rpc.remove("keepalive");
                    if rpc.is_empty() {
                        metadata.remove("rpc");
                    }
                }
            }
        }
        v
    };
    let (old, new) = (strip(old), strip(new));
    let mut changed = Vec::new();
    diff_paths("", &old, &new, &mut changed);
    changed
}

/// The paths (`metadata.cpu`) at which `a` and `b` differ, down to the first level that
/// differs.
fn diff_paths(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                let null = Value::Null;
                diff_paths(
                    &path,
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        _ => out.push(if prefix.is_empty() {
            "the spec".to_owned()
        } else {
            prefix.to_owned()
        }),
    }
}

#[cfg(test)]
mod tests {
    use eas_core::control::merge_patch;
    use serde_json::json;

    use super::*;

    #[test]
    fn only_in_place_fields_should_be_allowed_to_change() {
        let old = json!({"metadata": {"name": "s", "instance": 1, "cpu": 1,
                          "rpc": {"keepalive": 1000}}, "processor": "echo"});
        let mut new = old.clone();
        merge_patch(
            &mut new,
            &json!({"metadata": {"instance": 3, "rpc": {"keepalive": 2000}},
                    "autoscaler": {"min": 1, "max": 2, "strategies": {"qps": 5}},
                    "networking": {"gateway_policy": {"rate_limit": {"enable": true}}}}),
        );
        assert!(needs_new_instances(&old, &new).is_empty());
        merge_patch(
            &mut new,
            &json!({"metadata": {"cpu": 2}, "processor": "onnx"}),
        );
        assert_eq!(
            needs_new_instances(&old, &new),
            vec!["metadata.cpu".to_owned(), "processor".to_owned()]
        );
    }
}
