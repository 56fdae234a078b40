//! The control API's wire types: request and response bodies of the EAS service-management
//! routes, shared by the server (`eas-runtime`) and the `eas service` CLI, and the pure
//! conversions between the API's autoscaler and cron-scaler shapes and the spec's
//! [`autoscaler`](crate::spec::AutoscalerSpec) block.
//!
//! Field names are EAS's own (`ServiceName`, `scaleStrategies`, `ScaleJobs`), so that people who
//! know eascmd or the EAS SDKs recognise them. `{cluster}` is any cluster name (`local`).
//! Every route needs the admin token: `Authorization: T` or `Authorization: Bearer T`.
//!
//! | operation | route | request | answer (200) |
//! |---|---|---|---|
//! | CreateService | `POST /api/v2/services` | a service.json | [`CreateServiceResponse`] (409 if it exists) |
//! | ListServices | `GET /api/v2/services` | [`ListServicesQuery`] | [`ListServicesResponse`] |
//! | DescribeService | `GET /api/v2/services/{cluster}/{name}` | — | [`ServiceSummary`] |
//! | UpdateService | `PUT /api/v2/services/{cluster}/{name}` | a partial service.json ([`merge_patch`]) | [`MessageResponse`] |
//! | DeleteService | `DELETE /api/v2/services/{cluster}/{name}` | — | [`MessageResponse`] |
//! | Start/Stop/RestartService | `PUT .../{name}/start`, `/stop`, `/restart` | — | [`MessageResponse`] |
//! | ListServiceInstances | `GET .../{name}/instances` | — | [`ListInstancesResponse`] |
//! | DeleteServiceInstances | `DELETE .../{name}/instances` | [`DeleteInstancesQuery`] | [`MessageResponse`] (restarts them) |
//! | Describe/Update/DeleteServiceAutoScaler | `GET`/`PUT`/`DELETE .../{name}/autoscaler` | [`AutoscalerConfig`] | [`AutoscalerConfig`] / [`MessageResponse`] |
//! | Describe/Update/DeleteServiceCronScaler | `GET`/`PUT`/`DELETE .../{name}/cronscaler` | [`CronScalerConfig`] | [`CronScalerConfig`] / [`MessageResponse`] |
//!
//! Any other answer than 2xx carries an [`ErrorResponse`] (`{"Code", "Message"}`).
//!
//! The conversions refuse only what the spec cannot hold (a strategy on another service's
//! metrics, `ExcludeDates`, a malformed cron expression or time zone, a metric named twice);
//! the rules of the spec itself (`min <= max`, targets above 0, windows up to an hour) stay with
//! [`ServiceSpec::validate`](crate::spec::ServiceSpec::validate), which the server runs on the
//! spec that holds the result.
//!
//! ```
//! use eas_core::control::{AutoscalerConfig, CronScalerConfig};
//! use eas_core::spec::AutoscalerSpec;
//!
//! let config: AutoscalerConfig = serde_json::from_str(r#"{
//!     "min": 1, "max": 8,
//!     "scaleStrategies": [{"metricName": "qps", "threshold": 100}],
//!     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
//! }"#).expect("an autoscaler config");
//! let spec = config.apply_to("demo", None).expect("the spec can hold it");
//! assert_eq!((spec.min, spec.max, spec.strategies.qps), (1, 8, Some(100.0)));
//!
//! // The cron scaler owns `schedules`; a six-field cron (seconds first) as EAS writes it.
//! let cron: CronScalerConfig = serde_json::from_str(r#"{
//!     "ScaleJobs": [{"Name": "morning", "Schedule": "0 0 8 * * *", "TargetSize": 4,
//!                    "TimeZone": "Asia/Shanghai"}],
//!     "ExcludeDates": []
//! }"#).expect("a cron scaler config");
//! let spec = cron.apply_to(Some(&spec), 1).expect("valid jobs").expect("an autoscaler");
//! assert_eq!(spec.schedules[0].replicas, Some(4));
//! assert_eq!(spec.strategies.qps, Some(100.0));
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{AutoscalerSpec, Behavior, ScaleRules, ScheduledScaling, Strategies};

/// Why a control request cannot be applied to a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A field holds a value that is malformed or contradicts another (answered as
    /// `InvalidParameter`).
    #[error("{field}: {reason}")]
    InvalidParameter {
        /// The field, as the API names it (`ScaleJobs[0].Schedule`).
        field: String,
        /// What is wrong, for a person.
        reason: String,
    },

    /// A field EAS accepts but eas cannot honour (answered as `Unsupported`).
    #[error("{field}: {reason}")]
    Unsupported {
        /// The field, as the API names it (`ExcludeDates`).
        field: String,
        /// Why it is refused and what to do instead.
        reason: String,
    },
}

impl ControlError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The API's error code for this error.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidParameter { .. } => ErrorCode::InvalidParameter,
            Self::Unsupported { .. } => ErrorCode::Unsupported,
        }
    }

    /// The error as the API answers it.
    #[must_use]
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse::new(self.code(), self.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The error codes the control API answers with, in [`ErrorResponse::code`]. Which HTTP status
/// goes with each is the edge's business (eas-runtime keeps that table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No admin token, or a wrong one.
    Unauthorized,
    /// No such service, instance or cluster.
    NotFound,
    /// The service already exists, or the request conflicts with its state.
    Conflict,
    /// The body or a parameter is malformed or invalid (a spec with errors, say).
    InvalidParameter,
    /// EAS has it, eas does not.
    Unsupported,
    /// The request body is larger than the control API takes.
    PayloadTooLarge,
    /// Too many failed attempts (wrong admin tokens) from the client's address lately.
    TooManyRequests,
    /// Something went wrong on the server.
    InternalError,
}

impl ErrorCode {
    /// The code as written on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::NotFound => "NotFound",
            Self::Conflict => "Conflict",
            Self::InvalidParameter => "InvalidParameter",
            Self::Unsupported => "Unsupported",
            Self::PayloadTooLarge => "PayloadTooLarge",
            Self::TooManyRequests => "TooManyRequests",
            Self::InternalError => "InternalError",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every answer other than 2xx: `{"Code": "NotFound", "Message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorResponse {
    /// A code such as `NotFound` (see [`ErrorCode`]); a string, so that a client keeps codes
    /// it does not know.
    #[serde(default)]
    pub code: String,
    /// What went wrong, for a person.
    #[serde(default)]
    pub message: String,
}

impl ErrorResponse {
    /// An error answer with one of the known codes.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }
}

/// `Code: Message`.
impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Services

/// A service's status, written as EAS writes it (`"Running"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServiceStatus {
    /// Accepted; its first instances are being built.
    #[default]
    Creating,
    /// Waiting for resources (or for instances to become ready).
    Waiting,
    /// Every desired instance is ready.
    Running,
    /// Adding or removing instances.
    Scaling,
    /// Rolling out a new version.
    Updating,
    /// Coming back after a stop.
    Starting,
    /// Going down to zero instances, keeping its spec.
    Stopping,
    /// Stopped: zero instances, spec kept.
    Stopped,
    /// Cannot run; `Reason` and `Message` say why.
    Failed,
    /// Being deleted.
    Deleting,
    /// An elastic job that finished its inputs.
    Completed,
    /// A status this client does not know (from a newer server).
    #[serde(other)]
    Unknown,
}

impl ServiceStatus {
    /// The status as written on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Waiting => "Waiting",
            Self::Running => "Running",
            Self::Scaling => "Scaling",
            Self::Updating => "Updating",
            Self::Starting => "Starting",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Failed => "Failed",
            Self::Deleting => "Deleting",
            Self::Completed => "Completed",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to CreateService.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateServiceResponse {
    /// The new service's name (`metadata.name`).
    pub service_name: String,
    /// The cluster it runs in (`local`).
    #[serde(default)]
    pub cluster_id: String,
    /// Its status, usually `Creating`.
    #[serde(default)]
    pub status: ServiceStatus,
    /// A line for a person.
    #[serde(default)]
    pub message: String,
}

/// The answer of the routes that only report: update, delete, start, stop, restart, and the
/// autoscaler and cron scaler updates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageResponse {
    /// What was done, for a person.
    #[serde(default)]
    pub message: String,
}

impl MessageResponse {
    /// An answer with this message.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The query of ListServices: `?PageNumber=1&PageSize=100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListServicesQuery {
    /// The page, from 1. Default: 1.
    #[serde(default = "ListServicesQuery::default_page_number")]
    pub page_number: u32,
    /// Services per page. Default: 100.
    #[serde(default = "ListServicesQuery::default_page_size")]
    pub page_size: u32,
}

impl ListServicesQuery {
    const fn default_page_number() -> u32 {
        1
    }

    const fn default_page_size() -> u32 {
        100
    }
}

impl Default for ListServicesQuery {
    fn default() -> Self {
        Self {
            page_number: Self::default_page_number(),
            page_size: Self::default_page_size(),
        }
    }
}

/// The answer to ListServices.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListServicesResponse {
    /// The services of this page, by name.
    #[serde(default)]
    pub services: Vec<ServiceSummary>,
    /// How many services there are in all.
    #[serde(default)]
    pub total_count: u64,
    /// The page, from 1.
    #[serde(default)]
    pub page_number: u32,
    /// Services per page.
    #[serde(default)]
    pub page_size: u32,
}

/// One service as DescribeService (and each entry of ListServices) shows it. The service's
/// access token is not part of it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSummary {
    /// `metadata.name`.
    pub service_name: String,
    /// The cluster it runs in (`local`).
    #[serde(default)]
    pub cluster_id: String,
    /// Where the service is in its life.
    #[serde(default)]
    pub status: ServiceStatus,
    /// A short machine-readable cause of the status (`ProcessorInitFailed`), or empty.
    #[serde(default)]
    pub reason: String,
    /// The cause for a person, or empty.
    #[serde(default)]
    pub message: String,
    /// Instances ready to take requests.
    #[serde(default)]
    pub running_instance: u32,
    /// Instances that exist, ready or not.
    #[serde(default)]
    pub total_instance: u32,
    /// Instances the controller wants (an eas addition to EAS's fields).
    #[serde(default)]
    pub desired_instance: u32,
    /// When the service was created (RFC 3339).
    #[serde(default)]
    pub create_time: String,
    /// When its spec last changed (RFC 3339).
    #[serde(default)]
    pub update_time: String,
    /// The spec as JSON (service.json, without the token); absent in list pages that leave
    /// it out.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub service_config: Value,
    /// Spec fields that have no effect on this server, one line each.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The latest scaling decisions, newest last.
    #[serde(default)]
    pub scaling_decisions: Vec<ScalingDecision>,
    /// The version that runs (or is being rolled out); 0 from a server without versions.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current_version: u32,
    /// The newest version kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub latest_version: u32,
    /// The rolling update under way, if any (an eas addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Why the last rolling update failed (the version before it kept serving), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rollout_failure: String,
    /// The service group it is in, or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Its weight in its group (0-1000); absent outside a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// `grouping` (takes its group's traffic) or `standalone`; empty outside a group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traffic_state: String,
    /// Its mirror and the mirror's counts, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorStatus>,
}

/// The body of ReleaseService: a member's share of its group's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseService {
    /// 0 to 1000; -1: the default weight.
    pub weight: i64,
    /// `grouping` (take group traffic) or `standalone` (only the member's own endpoint).
    pub traffic_state: String,
}

/// The body of Create/UpdateServiceMirror: copy `Ratio` percent of the requests to `Target`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceMirror {
    /// 0 to 100.
    pub ratio: u32,
    /// The services copies go to.
    #[serde(default)]
    pub target: Vec<String>,
}

/// A mirror as DescribeService (and GET .../mirror) shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MirrorStatus {
    /// The share copied, in percent.
    pub ratio: u32,
    /// Each target and what became of the copies due to it.
    pub targets: Vec<MirrorTargetStatus>,
}

/// One mirror target's counts, from the server's start (a mirror set again keeps counting).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MirrorTargetStatus {
    /// The target service.
    pub service: String,
    /// Copies due.
    pub attempted: u64,
    /// Copies shed (too many in flight to it, or it is gone).
    pub shed: u64,
    /// Copies it answered.
    pub answered: u64,
    /// Copies it refused or failed.
    pub failed: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A rolling update's progress, as DescribeService shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RolloutStatus {
    /// The version being rolled out.
    pub to_version: u32,
    /// Replicas of the new version that are ready.
    pub new_ready: u32,
    /// Replicas of the new version.
    pub new_total: u32,
    /// Replicas of older versions that are ready.
    pub old_ready: u32,
    /// Replicas of older versions.
    pub old_total: u32,
}

/// One version of a service, as ListServiceVersions shows it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceVersion {
    /// Its number.
    pub version: u32,
    /// When it was made (RFC 3339).
    pub build_time: String,
    /// What made it.
    pub message: String,
    /// Its spec (service.json, without the token).
    pub service_config: Value,
    /// Whether it is the version that runs (an eas addition).
    #[serde(default)]
    pub current: bool,
}

/// The body of UpdateServiceVersion: the version to move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateServiceVersion {
    /// A kept version other than the current one.
    pub version: u32,
}

/// One decision of the service's autoscaler.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingDecision {
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Instances before.
    pub current: u32,
    /// Instances wanted.
    pub desired: u32,
    /// Why, for a person (the strategy or schedule that decided).
    #[serde(default)]
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// Instances

/// An instance's status, written as EAS writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InstanceStatus {
    /// Waiting for resources.
    #[default]
    Pending,
    /// Fetching its model, initializing its processor or warming up.
    Starting,
    /// Taking requests (when `Ready`).
    Running,
    /// Rebuilding its processor after a crash.
    Restarting,
    /// Down after a crash because `runtime.enable_crash_block` is set.
    CrashBlocked,
    /// Its processor could not be built or initialized; `Reason` says why.
    Failed,
    /// Finishing its in-flight requests before it stops.
    Terminating,
    /// Shut down.
    Stopped,
    /// A status this client does not know (from a newer server).
    #[serde(other)]
    Unknown,
}

impl InstanceStatus {
    /// The status as written on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::CrashBlocked => "CrashBlocked",
            Self::Failed => "Failed",
            Self::Terminating => "Terminating",
            Self::Stopped => "Stopped",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to ListServiceInstances.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInstancesResponse {
    /// The service's instances.
    #[serde(default)]
    pub instances: Vec<InstanceSummary>,
    /// How many there are.
    #[serde(default)]
    pub total_count: u64,
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceSummary {
    /// Its name, unique within the service; what DeleteServiceInstances takes.
    pub instance_name: String,
    /// Where it is in its life.
    #[serde(default)]
    pub status: InstanceStatus,
    /// Whether it takes requests now.
    #[serde(default)]
    pub ready: bool,
    /// How many times it was rebuilt after a crash or a restart request.
    #[serde(default)]
    pub restart_count: u32,
    /// When it started (RFC 3339).
    #[serde(default)]
    pub start_time: String,
    /// The host it runs on.
    #[serde(default, rename = "HostIP")]
    pub host_ip: String,
    /// Requests it holds now, queued or being processed.
    #[serde(default)]
    pub in_flight: u32,
    /// Why it is not running, or empty.
    #[serde(default)]
    pub reason: String,
}

/// The query of DeleteServiceInstances: `?InstanceList=a,b&SoftRestart=true`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteInstancesQuery {
    /// The instances to restart, separated by commas.
    pub instance_list: String,
    /// EAS: restart the process in place instead of rebuilding the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_restart: Option<bool>,
}

impl DeleteInstancesQuery {
    /// The instance names, blanks dropped.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.instance_list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Autoscaler

/// The body of UpdateServiceAutoScaler, and the answer of DescribeServiceAutoScaler: the
/// spec's `min`, `max`, `strategies` and `behavior`, in EAS's camelCase shape.
///
/// Metric names `qps`, `cpu`, `gpu` and `queue` are the built-in strategies; any other name
/// is a custom metric. A strategy's `service` (EAS: read the metric of another service, the
/// queue service of an async one) must be absent or the service's own name: eas reads each
/// service's own metrics, and an async service's backlog is its `queue` metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerConfig {
    /// The fewest replicas; 0 allows scaling to zero.
    pub min: u32,
    /// The most replicas.
    pub max: u32,
    /// The metric targets.
    #[serde(default)]
    pub scale_strategies: Vec<ScaleStrategy>,
    /// How fast to scale up and down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
}

/// One metric target: `{"metricName": "qps", "threshold": 100}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleStrategy {
    /// `qps`, `cpu`, `gpu`, `queue`, or a custom metric's name.
    pub metric_name: String,
    /// The target per instance.
    pub threshold: f64,
    /// The service whose metric is read; absent (or this service's own name) here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl ScaleStrategy {
    /// A target on this service's own metric.
    #[must_use]
    pub fn new(metric_name: impl Into<String>, threshold: f64) -> Self {
        Self {
            metric_name: metric_name.into(),
            threshold,
            service: None,
        }
    }
}

/// `behavior`: the stabilization windows of each direction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingBehavior {
    /// Scale-up rules (default window: 0 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Scale-down rules (default window: 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// Rules for one direction: `{"stabilizationWindowSeconds": 300}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    /// Recommendations over this many past seconds are considered before scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<u32>,
}

impl From<&Behavior> for ScalingBehavior {
    fn from(behavior: &Behavior) -> Self {
        let rules = |rules: &ScaleRules| ScalingRules {
            stabilization_window_seconds: rules.stabilization_window_seconds,
        };
        Self {
            scale_up: behavior.scale_up.as_ref().map(rules),
            scale_down: behavior.scale_down.as_ref().map(rules),
        }
    }
}

impl From<ScalingBehavior> for Behavior {
    fn from(behavior: ScalingBehavior) -> Self {
        let rules = |rules: ScalingRules| ScaleRules {
            stabilization_window_seconds: rules.stabilization_window_seconds,
            ..ScaleRules::default()
        };
        Self {
            scale_up: behavior.scale_up.map(rules),
            scale_down: behavior.scale_down.map(rules),
            ..Self::default()
        }
    }
}

impl From<&AutoscalerSpec> for AutoscalerConfig {
    fn from(spec: &AutoscalerSpec) -> Self {
        Self::from_spec(spec)
    }
}

impl AutoscalerConfig {
    /// The API's view of a spec's autoscaler: bounds, strategies (built-in ones first, then
    /// custom metrics by name) and behavior. `schedules` belong to [`CronScalerConfig`].
    #[must_use]
    pub fn from_spec(spec: &AutoscalerSpec) -> Self {
        Self {
            min: spec.min,
            max: spec.max,
            scale_strategies: spec
                .strategies
                .targets()
                .into_iter()
                .map(|(name, threshold)| ScaleStrategy::new(name, threshold))
                .collect(),
            behavior: spec.behavior.as_ref().map(ScalingBehavior::from),
        }
    }

    /// The spec's autoscaler after this update of service `service`: bounds, strategies and
    /// behavior replaced; everything the config cannot express (the cron scaler's `schedules`,
    /// other settings) kept from `existing`.
    ///
    /// # Errors
    /// [`ControlError::Unsupported`] for a strategy on another service's metrics;
    /// [`ControlError::InvalidParameter`] for a blank metric name or one given twice. The rules
    /// of the spec itself are checked by [`ServiceSpec::validate`](crate::spec::ServiceSpec::validate).
    pub fn apply_to(
        self,
        service: &str,
        existing: Option<&AutoscalerSpec>,
    ) -> Result<AutoscalerSpec, ControlError> {
        let mut strategies = Strategies::default();
        for (i, strategy) in self.scale_strategies.into_iter().enumerate() {
            let field = format!("scaleStrategies[{i}]");
            if let Some(other) = strategy.service.as_deref().map(str::trim)
                && !other.is_empty()
                && other != service
            {
                return Err(ControlError::unsupported(
                    format!("{field}.service"),
                    format!(
                        "scaling on the metrics of another service (`{other}`) is not supported: \
                         eas scales `{service}` on its own metrics (for an async service's \
                         backlog, use metricName \"queue\" without a service)"
                    ),
                ));
            }
            let name = strategy.metric_name;
            if name.trim().is_empty() {
                return Err(ControlError::invalid(
                    format!("{field}.metricName"),
                    "a metric needs a name: qps, cpu, gpu, queue or a custom metric's",
                ));
            }
            let threshold = strategy.threshold;
            let duplicate = match name.as_str() {
                "qps" => strategies.qps.replace(threshold).is_some(),
                "cpu" => strategies.cpu.replace(threshold).is_some(),
                "gpu" => strategies.gpu.replace(threshold).is_some(),
                "queue" => strategies.queue.replace(threshold).is_some(),
                _ => strategies.custom.insert(name.clone(), threshold).is_some(),
            };
            if duplicate {
                return Err(ControlError::invalid(
                    format!("{field}.metricName"),
                    format!("metric `{name}` is given twice"),
                ));
            }
        }
        let mut spec = existing
            .cloned()
            .unwrap_or_else(|| AutoscalerSpec::new(self.min, self.max));
        spec.min = self.min;
        spec.max = self.max;
        spec.strategies = strategies;
        spec.behavior = self.behavior.map(Behavior::from);
        Ok(spec)
    }

    /// The spec's autoscaler after DeleteServiceAutoScaler: strategies and behavior gone; the
    /// block stays (with its bounds) only while the cron scaler has schedules in it, since an
    /// autoscaler with neither would not be a valid spec (the service then runs
    /// `metadata.instance` instances).
    #[must_use]
    pub fn remove_from(existing: Option<&AutoscalerSpec>) -> Option<AutoscalerSpec> {
        let mut spec = existing?.clone();
        if spec.schedules.is_empty() {
            return None;
        }
        spec.strategies = Strategies::default();
        spec.behavior = None;
        Some(spec)
    }
}

// ---------------------------------------------------------------------------------------------
// Cron scaler

/// The body of UpdateServiceCronScaler, and the answer of DescribeServiceCronScaler: the
/// spec's `autoscaler.schedules` as EAS's scale jobs.
///
/// A job's `Schedule` is a cron expression of six fields with seconds first, as EAS writes it
/// (five fields are accepted too, and kept as written). `ExcludeDates` cannot be expressed by
/// the spec's schedules and are refused unless empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CronScalerConfig {
    /// The jobs, in the order of `autoscaler.schedules`.
    #[serde(default)]
    pub scale_jobs: Vec<ScaleJob>,
    /// EAS: dates (cron expressions) on which no job runs. Must be empty here.
    #[serde(default)]
    pub exclude_dates: Vec<String>,
}

/// One scale job: from each occurrence of `Schedule` on, the service runs `TargetSize`
/// instances (or, an eas addition, stays within `MinSize`/`MaxSize`) until the next job's
/// occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScaleJob {
    /// The job's name. The spec keeps no names: jobs read back are named `schedule-N`, after
    /// their index in `autoscaler.schedules`.
    #[serde(default)]
    pub name: String,
    /// When the job takes effect: a cron expression, six fields with seconds first.
    pub schedule: String,
    /// The fixed number of instances from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_size: Option<u32>,
    /// Instead of `TargetSize`: the fewest instances from then on (an eas addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u32>,
    /// Instead of `TargetSize`: the most instances from then on (an eas addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u32>,
    /// The IANA time zone of `Schedule`. Default: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl ScaleJob {
    /// A job that fixes the instance count from each occurrence of `schedule` (UTC) on.
    #[must_use]
    pub fn fixed(name: impl Into<String>, schedule: impl Into<String>, target_size: u32) -> Self {
        Self {
            name: name.into(),
            schedule: schedule.into(),
            target_size: Some(target_size),
            ..Self::default()
        }
    }

    fn from_spec(index: usize, entry: &ScheduledScaling) -> Self {
        Self {
            name: format!("schedule-{index}"),
            schedule: entry.schedule.as_str().to_owned(),
            target_size: entry.replicas,
            min_size: entry.min,
            max_size: entry.max,
            time_zone: Some(entry.timezone.name().to_owned()),
        }
    }

    fn to_spec(&self, index: usize) -> Result<ScheduledScaling, ControlError> {
        let field = format!("ScaleJobs[{index}]");
        let schedule = self
            .schedule
            .parse()
            .map_err(|reason| ControlError::invalid(format!("{field}.Schedule"), reason))?;
        let mut entry = ScheduledScaling::bounds(schedule, self.min_size, self.max_size);
        // Whether TargetSize and MinSize/MaxSize go together is the spec's rule
        // (`ServiceSpec::validate`), so a job is carried over as it is.
        entry.replicas = self.target_size;
        if let Some(zone) = self.time_zone.as_deref().filter(|z| !z.trim().is_empty()) {
            entry.timezone = zone
                .parse()
                .map_err(|reason| ControlError::invalid(format!("{field}.TimeZone"), reason))?;
        }
        Ok(entry)
    }
}

impl CronScalerConfig {
    /// The API's view of a spec's schedules (none without an autoscaler).
    #[must_use]
    pub fn from_spec(spec: Option<&AutoscalerSpec>) -> Self {
        Self {
            scale_jobs: spec
                .map(|spec| {
                    spec.schedules
                        .iter()
                        .enumerate()
                        .map(|(i, entry)| ScaleJob::from_spec(i, entry))
                        .collect()
                })
                .unwrap_or_default(),
            exclude_dates: Vec::new(),
        }
    }

    /// The spec's autoscaler after this update: `schedules` replaced, everything else kept
    /// from `existing`. `None` means no autoscaler block.
    ///
    /// A service without an autoscaler gets one whose `min` and `max` are both `instance`
    /// (its `metadata.instance`), with no strategies: outside the jobs (before the first
    /// occurrence of any) it keeps the fixed count it had, and from each job's occurrence on
    /// that job's size holds. Jobs set to none leave no autoscaler behind when it has no
    /// strategies either.
    ///
    /// # Errors
    /// [`ControlError::Unsupported`] for a non-empty `ExcludeDates`;
    /// [`ControlError::InvalidParameter`] for a malformed `Schedule` or `TimeZone`.
    pub fn apply_to(
        self,
        existing: Option<&AutoscalerSpec>,
        instance: u32,
    ) -> Result<Option<AutoscalerSpec>, ControlError> {
        if !self.exclude_dates.is_empty() {
            return Err(ControlError::unsupported(
                "ExcludeDates",
                "excluded dates cannot be expressed by autoscaler.schedules; leave ExcludeDates \
                 empty and narrow each job's Schedule instead (day-of-month, month and \
                 day-of-week fields)",
            ));
        }
        let schedules = self
            .scale_jobs
            .iter()
            .enumerate()
            .map(|(i, job)| job.to_spec(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match existing {
            Some(existing) => {
                let mut spec = existing.clone();
                spec.schedules = schedules;
                keep_if_in_use(spec)
            }
            None if schedules.is_empty() => None,
            None => {
                let mut spec = AutoscalerSpec::new(instance, instance);
                spec.schedules = schedules;
                Some(spec)
            }
        })
    }

    /// The spec's autoscaler after DeleteServiceCronScaler: no schedules; the block stays only
    /// while it has strategies.
    #[must_use]
    pub fn remove_from(existing: Option<&AutoscalerSpec>) -> Option<AutoscalerSpec> {
        let mut spec = existing?.clone();
        spec.schedules.clear();
        keep_if_in_use(spec)
    }
}

/// An autoscaler with neither strategies nor schedules is not a valid spec: drop it.
fn keep_if_in_use(spec: AutoscalerSpec) -> Option<AutoscalerSpec> {
    (!spec.strategies.targets().is_empty() || !spec.schedules.is_empty()).then_some(spec)
}

// ---------------------------------------------------------------------------------------------
// UpdateService

/// Applies a JSON merge patch (RFC 7386) to `target`, as UpdateService applies a partial
/// service.json: objects merge key by key, `null` removes a key, anything else replaces.
/// Keys keep their order; new keys go last.
///
/// ```
/// use serde_json::json;
///
/// let mut spec = json!({"metadata": {"name": "demo", "instance": 1}, "token": "t"});
/// eas_core::control::merge_patch(&mut spec, &json!({"metadata": {"instance": 3}, "token": null}));
/// assert_eq!(spec, json!({"metadata": {"name": "demo", "instance": 3}}));
/// ```
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.shift_remove(key);
            } else {
                merge_patch(target.entry(key.as_str()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::ServiceSpec;

    /// A spec with every part the two configs split between them.
    fn full_autoscaler() -> AutoscalerSpec {
        serde_json::from_value(json!({
            "min": 1,
            "max": 8,
            "strategies": {"qps": 100.0, "cpu": 70.0, "queue": 5.0,
                           "custom": {"tokens_per_second": 900.0, "zz_latency": 0.5}},
            "behavior": {"scale_up": {"stabilization_window_seconds": 0},
                         "scale_down": {}},
            "schedules": [
                {"schedule": "0 0 8 * * MON-FRI", "timezone": "Asia/Shanghai", "replicas": 4},
                {"schedule": "0 20 * * *", "min": 1, "max": 2}
            ]
        }))
        .expect("an autoscaler spec")
    }

    fn config(value: serde_json::Value) -> AutoscalerConfig {
        serde_json::from_value(value).expect("an autoscaler config")
    }

    fn cron(value: serde_json::Value) -> CronScalerConfig {
        serde_json::from_value(value).expect("a cron scaler config")
    }

    fn echo_spec() -> ServiceSpec {
        ServiceSpec::from_json_str(
            r#"{
                "metadata": {"name": "echo", "instance": 2},
                "processor": "echo",
                "model_path": "/models/echo"
            }"#,
        )
        .expect("a valid spec")
    }

    #[test]
    fn autoscaler_config_should_serialize_with_eas_camel_case_names() {
        let config = AutoscalerConfig::from_spec(&full_autoscaler());
        assert_eq!(
            serde_json::to_value(&config).expect("serializes"),
            json!({
                "min": 1,
                "max": 8,
                "scaleStrategies": [
                    {"metricName": "qps", "threshold": 100.0},
                    {"metricName": "cpu", "threshold": 70.0},
                    {"metricName": "queue", "threshold": 5.0},
                    {"metricName": "tokens_per_second", "threshold": 900.0},
                    {"metricName": "zz_latency", "threshold": 0.5}
                ],
                "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}, "scaleDown": {}}
            })
        );
    }

    #[test]
    fn autoscaler_config_should_read_the_eas_reference_body() {
        let body = json!({
            "min": 2, "max": 10,
            "scaleStrategies": [{"metricName": "qps", "threshold": 100, "service": "demo"}],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                         "scaleDown": {"stabilizationWindowSeconds": 300}}
        });
        let config = config(body);
        assert_eq!(
            config.scale_strategies[0].service.as_deref(),
            Some("demo"),
            "service is read"
        );
        let spec = config.apply_to("demo", None).expect("own service is fine");
        assert_eq!((spec.min, spec.max), (2, 10));
        assert_eq!(spec.strategies.qps, Some(100.0));
        let behavior = spec.behavior.expect("behavior");
        assert_eq!(
            behavior
                .scale_down
                .and_then(|r| r.stabilization_window_seconds),
            Some(300)
        );
        assert_eq!(
            behavior
                .scale_up
                .and_then(|r| r.stabilization_window_seconds),
            Some(0)
        );
        assert!(spec.schedules.is_empty());
    }

    #[test]
    fn autoscaler_config_should_refuse_unknown_fields() {
        let err = serde_json::from_value::<AutoscalerConfig>(json!({
            "min": 1, "max": 2, "scaleStrategy": []
        }))
        .expect_err("typo");
        assert!(err.to_string().contains("scaleStrategy"), "{err}");
    }

    #[test]
    fn apply_to_should_map_builtin_metrics_and_others_to_custom() {
        let spec = config(json!({
            "min": 0, "max": 4,
            "scaleStrategies": [
                {"metricName": "qps", "threshold": 10},
                {"metricName": "cpu", "threshold": 60},
                {"metricName": "gpu", "threshold": 80},
                {"metricName": "queue", "threshold": 3},
                {"metricName": "QPS", "threshold": 7},
                {"metricName": "kv_cache_usage", "threshold": 0.8}
            ]
        }))
        .apply_to("demo", None)
        .expect("applies");
        let s = &spec.strategies;
        assert_eq!(
            (s.qps, s.cpu, s.gpu, s.queue),
            (Some(10.0), Some(60.0), Some(80.0), Some(3.0))
        );
        assert_eq!(
            s.custom
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
            [("QPS", 7.0), ("kv_cache_usage", 0.8)],
            "names are matched exactly, so custom names survive a round trip"
        );
        assert_eq!(spec.behavior, None);
    }

    #[test]
    fn apply_to_should_keep_the_cron_scalers_schedules_and_replace_the_rest() {
        let existing = full_autoscaler();
        let spec = config(json!({
            "min": 3, "max": 5, "scaleStrategies": [{"metricName": "gpu", "threshold": 50}]
        }))
        .apply_to("demo", Some(&existing))
        .expect("applies");
        assert_eq!((spec.min, spec.max), (3, 5));
        assert_eq!(spec.strategies.targets(), [("gpu", 50.0)]);
        assert_eq!(spec.behavior, None, "behavior is replaced, not merged");
        assert_eq!(spec.schedules, existing.schedules);
    }

    #[test]
    fn spec_to_config_to_spec_should_be_lossless() {
        let original = full_autoscaler();
        let wire = serde_json::to_string(&AutoscalerConfig::from_spec(&original)).expect("json");
        let back: AutoscalerConfig = serde_json::from_str(&wire).expect("reads back");
        let spec = back.apply_to("demo", Some(&original)).expect("applies");
        assert_eq!(spec, original);

        // The cron scaler's half, over the wire too.
        let wire =
            serde_json::to_string(&CronScalerConfig::from_spec(Some(&original))).expect("json");
        let back: CronScalerConfig = serde_json::from_str(&wire).expect("reads back");
        let spec = back.apply_to(Some(&original), 1).expect("applies");
        assert_eq!(spec, Some(original));
    }

    #[test]
    fn config_to_spec_to_config_should_keep_what_the_spec_holds() {
        let config = config(json!({
            "min": 1, "max": 3,
            "scaleStrategies": [
                {"metricName": "qps", "threshold": 10.5},
                {"metricName": "tokens", "threshold": 2}
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}
        }));
        let spec = config.clone().apply_to("demo", None).expect("applies");
        assert_eq!(AutoscalerConfig::from_spec(&spec), config);
    }

    #[test]
    fn apply_to_should_refuse_another_services_metrics() {
        let err = config(json!({
            "min": 1, "max": 2,
            "scaleStrategies": [{"metricName": "queue", "threshold": 5, "service": "other-queue"}]
        }))
        .apply_to("demo", None)
        .expect_err("another service");
        assert_eq!(err.code(), ErrorCode::Unsupported);
        let text = err.to_string();
        assert!(
            text.starts_with("scaleStrategies[0].service: "),
            "names the field: {text}"
        );
        assert!(text.contains("`other-queue`"), "{text}");
        let response = err.to_response();
        assert_eq!(response.code, "Unsupported");
        assert_eq!(response.message, text);

        // Blank is the same as absent.
        let spec = config(json!({
            "min": 1, "max": 2,
            "scaleStrategies": [{"metricName": "queue", "threshold": 5, "service": ""}]
        }))
        .apply_to("demo", None)
        .expect("blank service");
        assert_eq!(spec.strategies.queue, Some(5.0));
    }

    #[test]
    fn apply_to_should_refuse_a_metric_given_twice_or_without_a_name() {
        let twice = config(json!({
            "min": 1, "max": 2,
            "scaleStrategies": [{"metricName": "custom_a", "threshold": 5},
                                {"metricName": "custom_a", "threshold": 6}]
        }))
        .apply_to("demo", None)
        .expect_err("twice");
        assert_eq!(
            twice,
            ControlError::InvalidParameter {
                field: "scaleStrategies[1].metricName".into(),
                reason: "metric `custom_a` is given twice".into(),
            }
        );
        let builtin_twice = config(json!({
            "min": 1, "max": 2,
            "scaleStrategies": [{"metricName": "qps", "threshold": 5},
                                {"metricName": "qps", "threshold": 6}]
        }))
        .apply_to("demo", None)
        .expect_err("twice");
        assert_eq!(builtin_twice.code(), ErrorCode::InvalidParameter);

        let blank = config(json!({
            "min": 1, "max": 2, "scaleStrategies": [{"metricName": " ", "threshold": 5}]
        }))
        .apply_to("demo", None)
        .expect_err("blank");
        assert!(
            blank
                .to_string()
                .starts_with("scaleStrategies[0].metricName: "),
            "{blank}"
        );
    }

    #[test]
    fn the_spec_should_own_its_rules_after_apply_to() {
        let mut spec = echo_spec();
        spec.autoscaler = Some(
            config(json!({"min": 5, "max": 2, "scaleStrategies": [{"metricName": "cpu", "threshold": 150}]}))
                .apply_to("echo", None)
                .expect("the spec can hold it"),
        );
        let errors = spec.validate().expect_err("min > max, cpu > 100");
        let text = errors.to_string();
        assert!(text.contains("autoscaler.min"), "{text}");
        assert!(text.contains("autoscaler.strategies.cpu"), "{text}");
    }

    #[test]
    fn remove_autoscaler_should_keep_the_block_only_for_schedules() {
        let existing = full_autoscaler();
        let left = AutoscalerConfig::remove_from(Some(&existing)).expect("schedules remain");
        assert!(left.strategies.targets().is_empty());
        assert_eq!(left.behavior, None);
        assert_eq!(left.schedules, existing.schedules);
        assert_eq!((left.min, left.max), (1, 8));

        let only_qps = AutoscalerSpec::new(1, 4).with_qps(10.0);
        assert_eq!(AutoscalerConfig::remove_from(Some(&only_qps)), None);
        assert_eq!(AutoscalerConfig::remove_from(None), None);
    }

    #[test]
    fn cron_scaler_config_should_serialize_with_eas_names() {
        let config = CronScalerConfig::from_spec(Some(&full_autoscaler()));
        assert_eq!(
            serde_json::to_value(&config).expect("serializes"),
            json!({
                "ScaleJobs": [
                    {"Name": "schedule-0", "Schedule": "0 0 8 * * MON-FRI", "TargetSize": 4,
                     "TimeZone": "Asia/Shanghai"},
                    {"Name": "schedule-1", "Schedule": "0 20 * * *", "MinSize": 1, "MaxSize": 2,
                     "TimeZone": "UTC"}
                ],
                "ExcludeDates": []
            })
        );
        assert_eq!(
            serde_json::to_value(CronScalerConfig::from_spec(None)).expect("serializes"),
            json!({"ScaleJobs": [], "ExcludeDates": []})
        );
    }

    #[test]
    fn cron_apply_to_should_turn_six_field_jobs_into_fixed_schedules() {
        let existing = AutoscalerSpec::new(1, 4).with_qps(10.0);
        let spec = cron(json!({
            "ScaleJobs": [
                {"Name": "morning", "Schedule": "0 30 8 * * MON-FRI", "TargetSize": 6,
                 "TimeZone": "Asia/Shanghai"},
                {"Name": "night", "Schedule": "0 0 22 * * *", "TargetSize": 1}
            ],
            "ExcludeDates": []
        }))
        .apply_to(Some(&existing), 2)
        .expect("valid")
        .expect("an autoscaler");
        assert_eq!(spec.schedules.len(), 2);
        let morning = &spec.schedules[0];
        assert_eq!(morning.schedule.as_str(), "0 30 8 * * MON-FRI");
        assert_eq!(morning.timezone.name(), "Asia/Shanghai");
        assert_eq!(
            (morning.replicas, morning.min, morning.max),
            (Some(6), None, None)
        );
        assert_eq!(spec.schedules[1].timezone.name(), "UTC");
        assert_eq!(spec.schedules[1].replicas, Some(1));
        assert_eq!(
            (spec.min, spec.max, spec.strategies.qps),
            (1, 4, Some(10.0)),
            "the autoscaler's half is kept"
        );
    }

    #[test]
    fn cron_apply_to_should_create_an_autoscaler_at_the_current_instance_count() {
        let mut service = echo_spec();
        let jobs = cron(json!({
            "ScaleJobs": [{"Name": "peak", "Schedule": "0 0 9 * * *", "TargetSize": 5}]
        }));
        service.autoscaler = jobs
            .apply_to(service.autoscaler.as_ref(), service.metadata.instance)
            .expect("valid");
        let spec = service.autoscaler.as_ref().expect("an autoscaler");
        assert_eq!((spec.min, spec.max), (2, 2), "metadata.instance");
        assert!(spec.strategies.targets().is_empty());
        service
            .validate()
            .expect("a valid spec with schedules only");

        // Setting no jobs takes the block away again.
        service.autoscaler = CronScalerConfig::default()
            .apply_to(service.autoscaler.as_ref(), 2)
            .expect("valid");
        assert_eq!(service.autoscaler, None);
        service.validate().expect("still valid");
    }

    #[test]
    fn cron_apply_to_should_refuse_exclude_dates() {
        let err = cron(json!({
            "ScaleJobs": [{"Name": "peak", "Schedule": "0 0 9 * * *", "TargetSize": 5}],
            "ExcludeDates": ["* * * 1 1 *"]
        }))
        .apply_to(None, 1)
        .expect_err("not expressible");
        assert_eq!(err.code(), ErrorCode::Unsupported);
        assert!(err.to_string().starts_with("ExcludeDates: "), "{err}");
        assert!(err.to_string().contains("cannot be expressed"), "{err}");
    }

    #[test]
    fn cron_apply_to_should_name_the_job_with_a_bad_schedule_or_zone() {
        let bad_cron = cron(json!({
            "ScaleJobs": [{"Name": "a", "Schedule": "0 0 9 * * *", "TargetSize": 1},
                          {"Name": "b", "Schedule": "0 0 25 * * *", "TargetSize": 1}]
        }))
        .apply_to(None, 1)
        .expect_err("hour 25");
        assert_eq!(bad_cron.code(), ErrorCode::InvalidParameter);
        assert!(
            bad_cron.to_string().starts_with("ScaleJobs[1].Schedule: "),
            "{bad_cron}"
        );
        let seven = cron(json!({
            "ScaleJobs": [{"Name": "a", "Schedule": "0 0 9 * * * 2030", "TargetSize": 1}]
        }))
        .apply_to(None, 1)
        .expect_err("seven fields");
        assert!(seven.to_string().contains("has 7"), "{seven}");
        let bad_zone = cron(json!({
            "ScaleJobs": [{"Name": "a", "Schedule": "0 0 9 * * *", "TargetSize": 1,
                           "TimeZone": "Mars/Olympus"}]
        }))
        .apply_to(None, 1)
        .expect_err("zone");
        assert!(
            bad_zone.to_string().starts_with("ScaleJobs[0].TimeZone: "),
            "{bad_zone}"
        );
    }

    #[test]
    fn cron_jobs_with_both_sizes_should_be_refused_by_the_spec() {
        let mut service = echo_spec();
        service.autoscaler = cron(json!({
            "ScaleJobs": [{"Name": "a", "Schedule": "0 0 9 * * *", "TargetSize": 1, "MaxSize": 3},
                          {"Name": "b", "Schedule": "0 0 10 * * *"}]
        }))
        .apply_to(None, 1)
        .expect("carried over as written");
        let text = service
            .validate()
            .expect_err("both, then neither")
            .to_string();
        assert!(text.contains("autoscaler.schedules[0]"), "{text}");
        assert!(text.contains("autoscaler.schedules[1]"), "{text}");
    }

    #[test]
    fn remove_cron_scaler_should_keep_the_block_only_for_strategies() {
        let existing = full_autoscaler();
        let left = CronScalerConfig::remove_from(Some(&existing)).expect("strategies remain");
        assert!(left.schedules.is_empty());
        assert_eq!(left.strategies, existing.strategies);

        let mut schedules_only = existing;
        schedules_only.strategies = Strategies::default();
        assert_eq!(CronScalerConfig::remove_from(Some(&schedules_only)), None);
    }

    #[test]
    fn service_summary_should_use_eas_names_and_no_token() {
        let summary = ServiceSummary {
            service_name: "echo".into(),
            cluster_id: "local".into(),
            status: ServiceStatus::Running,
            running_instance: 2,
            total_instance: 2,
            desired_instance: 2,
            create_time: "2026-01-02T03:04:05Z".into(),
            update_time: "2026-01-02T03:04:05Z".into(),
            service_config: json!({"metadata": {"name": "echo"}}),
            warnings: vec!["metadata.rdma: no effect here".into()],
            scaling_decisions: vec![ScalingDecision {
                time: "2026-01-02T03:05:00Z".into(),
                current: 1,
                desired: 2,
                reason: "qps".into(),
            }],
            ..ServiceSummary::default()
        };
        let value = serde_json::to_value(&summary).expect("serializes");
        assert_eq!(
            value,
            json!({
                "ServiceName": "echo", "ClusterId": "local", "Status": "Running",
                "Reason": "", "Message": "", "RunningInstance": 2, "TotalInstance": 2,
                "DesiredInstance": 2, "CreateTime": "2026-01-02T03:04:05Z",
                "UpdateTime": "2026-01-02T03:04:05Z",
                "ServiceConfig": {"metadata": {"name": "echo"}},
                "Warnings": ["metadata.rdma: no effect here"],
                "ScalingDecisions": [{"Time": "2026-01-02T03:05:00Z", "Current": 1,
                                      "Desired": 2, "Reason": "qps"}]
            })
        );
        let back: ServiceSummary = serde_json::from_value(value).expect("reads back");
        assert_eq!(back, summary);
    }

    #[test]
    fn statuses_should_be_written_as_eas_writes_them() {
        for (status, text) in [
            (ServiceStatus::Creating, "Creating"),
            (ServiceStatus::Running, "Running"),
            (ServiceStatus::Waiting, "Waiting"),
            (ServiceStatus::Stopped, "Stopped"),
            (ServiceStatus::Failed, "Failed"),
            (ServiceStatus::Scaling, "Scaling"),
            (ServiceStatus::Deleting, "Deleting"),
        ] {
            assert_eq!(serde_json::to_value(status).expect("json"), json!(text));
            assert_eq!(status.to_string(), text);
        }
        let newer: ServiceStatus = serde_json::from_value(json!("HotUpdate")).expect("lenient");
        assert_eq!(newer, ServiceStatus::Unknown);
        let newer: InstanceStatus = serde_json::from_value(json!("Evicted")).expect("lenient");
        assert_eq!(newer, InstanceStatus::Unknown);
    }

    #[test]
    fn instances_and_errors_should_use_eas_names() {
        let list = ListInstancesResponse {
            instances: vec![InstanceSummary {
                instance_name: "echo-0".into(),
                status: InstanceStatus::Running,
                ready: true,
                restart_count: 1,
                start_time: "2026-01-02T03:04:05Z".into(),
                host_ip: "127.0.0.1".into(),
                in_flight: 3,
                reason: String::new(),
            }],
            total_count: 1,
        };
        assert_eq!(
            serde_json::to_value(&list).expect("json"),
            json!({"Instances": [{"InstanceName": "echo-0", "Status": "Running", "Ready": true,
                                  "RestartCount": 1, "StartTime": "2026-01-02T03:04:05Z",
                                  "HostIP": "127.0.0.1", "InFlight": 3, "Reason": ""}],
                   "TotalCount": 1})
        );
        let error = ErrorResponse::new(ErrorCode::NotFound, "no service `x`");
        assert_eq!(
            serde_json::to_value(&error).expect("json"),
            json!({"Code": "NotFound", "Message": "no service `x`"})
        );
        assert_eq!(error.to_string(), "NotFound: no service `x`");
        let created: CreateServiceResponse = serde_json::from_value(json!({
            "ServiceName": "echo", "ClusterId": "local", "Status": "Creating", "Message": "ok"
        }))
        .expect("reads");
        assert_eq!(created.status, ServiceStatus::Creating);
        let list: ListServicesResponse = serde_json::from_value(json!({
            "Services": [{"ServiceName": "echo", "Status": "Stopped"}],
            "TotalCount": 1, "PageNumber": 1, "PageSize": 100
        }))
        .expect("reads a summary without the spec");
        assert_eq!(list.services[0].service_config, Value::Null);
        assert!(
            !serde_json::to_string(&list.services[0])
                .expect("json")
                .contains("ServiceConfig"),
            "a list entry without its spec leaves the field out"
        );
    }

    #[test]
    fn queries_should_read_eas_parameters() {
        let query: DeleteInstancesQuery =
            serde_json::from_value(json!({"InstanceList": "echo-0, echo-1,,"})).expect("reads");
        assert_eq!(query.names(), ["echo-0", "echo-1"]);
        let page: ListServicesQuery = serde_json::from_value(json!({})).expect("defaults");
        assert_eq!(page, ListServicesQuery::default());
        assert_eq!((page.page_number, page.page_size), (1, 100));
    }

    #[test]
    fn merge_patch_should_follow_rfc_7386() {
        // The examples of RFC 7386, appendix A, that touch each rule.
        for (target, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ] {
            let mut merged = target.clone();
            merge_patch(&mut merged, &patch);
            assert_eq!(merged, result, "{target} + {patch}");
        }
    }

    #[test]
    fn merge_patch_should_keep_the_order_of_keys() {
        let mut spec = json!({"metadata": {}, "processor": "echo", "model_path": "/m"});
        merge_patch(&mut spec, &json!({"processor": null, "token": "t"}));
        let keys: Vec<&str> = spec
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["metadata", "model_path", "token"]);
    }
}
