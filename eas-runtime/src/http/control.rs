//! The control API, modelled on the EAS API (`/api/v2/services...`, EAS field names; the
//! shapes are `eas_core::control`'s): create, list, describe, update, delete, start, stop and
//! restart services; list a service's versions and move to one; list and restart instances;
//! read, change and remove the autoscaler and the cron scaler; report a custom metric for the
//! autoscaler; read the services' second-level series (`GET /api/v2/series[?service=NAME]`,
//! [`crate::series`]).
//!
//! Every route wants the admin token, as `Authorization: T` or `Authorization: Bearer T`
//! (compared in constant time; wrong ones are throttled per client address, see
//! [`gate`](super::gate)); it is a different secret from the services' tokens. Any
//! `{cluster}` names this deployment. Errors answer `{"Code": ..., "Message": ...}` with the
//! status [`control_status`](super::error::control_status) gives the code.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use eas_core::control::{
    AutoscalerConfig, CreateServiceResponse, CronScalerConfig, DeleteInstancesQuery, ErrorCode,
    ErrorResponse, InstanceStatus, InstanceSummary, ListInstancesResponse, ListServicesResponse,
    MessageResponse, MirrorStatus, MirrorTargetStatus, ReleaseService, RolloutStatus,
    ScalingDecision, ServiceMirror, ServiceStatus, ServiceSummary, ServiceVersion,
    UpdateServiceVersion,
};
use eas_core::spec::AutoscalerSpec;
use serde_json::Value;

use super::error::control_status;
use super::gate::{AdminGate, Peer};
use eas_core::control::merge_patch;

use crate::control::{ControlPlane, PlaneError, ServiceView};
use crate::replica::{Replica, ReplicaState, describe_state};

/// What the control routes share.
#[derive(Clone)]
struct Control {
    plane: Arc<ControlPlane>,
    gate: Arc<AdminGate>,
}

/// The control API's routes behind `token`.
pub(super) fn router(plane: Arc<ControlPlane>, gate: Arc<AdminGate>) -> Router {
    let state = Control { plane, gate };
    Router::new()
        .route("/api/v2/services", get(list).post(create))
        .route(
            "/api/v2/services/{cluster}/{name}",
            get(describe).put(update).delete(delete),
        )
        .route("/api/v2/services/{cluster}/{name}/start", put(start))
        .route("/api/v2/services/{cluster}/{name}/stop", put(stop))
        .route("/api/v2/services/{cluster}/{name}/restart", put(restart))
        .route("/api/v2/services/{cluster}/{name}/versions", get(versions))
        .route(
            "/api/v2/services/{cluster}/{name}/version",
            put(set_version),
        )
        .route("/api/v2/services/{cluster}/{name}/release", put(release))
        .route(
            "/api/v2/services/{cluster}/{name}/mirror",
            get(get_mirror)
                .post(put_mirror)
                .put(put_mirror)
                .delete(delete_mirror),
        )
        .route(
            "/api/v2/services/{cluster}/{name}/instances",
            get(instances).delete(restart_instances),
        )
        .route(
            "/api/v2/services/{cluster}/{name}/autoscaler",
            get(get_autoscaler)
                .put(put_autoscaler)
                .delete(delete_autoscaler),
        )
        .route(
            "/api/v2/services/{cluster}/{name}/cronscaler",
            get(get_cronscaler)
                .put(put_cronscaler)
                .delete(delete_cronscaler),
        )
        .route(
            "/api/v2/services/{cluster}/{name}/metrics",
            post(report_metrics),
        )
        .route("/api/v2/series", get(series))
        .with_state(state)
}

/// An error answer in EAS's shape.
struct Refusal(ErrorCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(control_status(self.0))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(ErrorResponse::new(self.0, self.1))).into_response()
    }
}

impl From<PlaneError> for Refusal {
    fn from(error: PlaneError) -> Self {
        let code = match &error {
            PlaneError::NotFound(_) => ErrorCode::NotFound,
            PlaneError::Exists(_) => ErrorCode::Conflict,
            PlaneError::Invalid(_) | PlaneError::Start(_) => ErrorCode::InvalidParameter,
            PlaneError::Unsupported(_) => ErrorCode::Unsupported,
            PlaneError::Store(_) => ErrorCode::InternalError,
        };
        Self(code, error.to_string())
    }
}

impl From<eas_core::control::ControlError> for Refusal {
    fn from(error: eas_core::control::ControlError) -> Self {
        Self(error.code(), error.to_string())
    }
}

type Answer = Result<Response, Refusal>;

/// A request that carries the admin token: handlers take it as their first argument, so none
/// can forget the check.
struct Admin;

impl axum::extract::FromRequestParts<Control> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        control: &Control,
    ) -> Result<Self, Response> {
        let peer = parts.extensions.get::<Peer>().copied();
        control
            .gate
            .check_headers(peer, &parts.headers)
            .refusal("the control API")
            .map_or(Ok(Self), Err)
    }
}

/// A request's body, or a refusal in the API's shape (past axum's 2 MB default: 413).
struct Body(Bytes);

impl axum::extract::FromRequest<Control> for Body {
    type Rejection = Refusal;

    async fn from_request(
        request: axum::extract::Request,
        control: &Control,
    ) -> Result<Self, Refusal> {
        Bytes::from_request(request, control)
            .await
            .map(Self)
            .map_err(|e| {
                let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::PayloadTooLarge
                } else {
                    ErrorCode::InvalidParameter
                };
                Refusal(code, e.body_text())
            })
    }
}

/// The service a route names (`{cluster}` is any name for this deployment).
type Named = Path<(String, String)>;

fn json_body(body: &Bytes) -> Result<Value, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal(
            ErrorCode::InvalidParameter,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal(ErrorCode::InvalidParameter, format!("the body: {e}")))
}

fn message(text: impl Into<String>) -> Response {
    axum::Json(MessageResponse::new(text)).into_response()
}

async fn create(_: Admin, State(c): State<Control>, Body(body): Body) -> Answer {
    let spec = json_body(&body)?;
    let name = c.plane.create(spec).await?;
    Ok(axum::Json(CreateServiceResponse {
        service_name: name,
        cluster_id: c.plane.cluster().to_owned(),
        status: ServiceStatus::Creating,
        message: "the service is being created".to_owned(),
    })
    .into_response())
}

async fn list(_: Admin, State(c): State<Control>) -> Answer {
    let services: Vec<ServiceSummary> = c
        .plane
        .list()
        .iter()
        .map(|v| summary(c.plane.cluster(), v))
        .collect();
    let count = services.len();
    Ok(axum::Json(ListServicesResponse {
        total_count: count as u64,
        page_number: 1,
        page_size: u32::try_from(count).unwrap_or(u32::MAX),
        services,
    })
    .into_response())
}

async fn describe(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let view = c.plane.describe(&name)?;
    Ok(axum::Json(summary(c.plane.cluster(), &view)).into_response())
}

async fn update(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    Body(body): Body,
) -> Answer {
    let patch = json_body(&body)?;
    let done = c
        .plane
        .update(&name, |spec| {
            merge_patch(spec, &patch);
            Ok(())
        })
        .await?;
    Ok(message(done))
}

async fn versions(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let (versions, current) = c.plane.versions_of(&name)?;
    let versions: Vec<ServiceVersion> = versions
        .iter()
        .map(|v| ServiceVersion {
            version: v.version,
            build_time: rfc3339(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(v.built_at_unix_ms),
            ),
            message: v.message.clone(),
            service_config: without_token(&v.spec),
            current: v.version == current,
        })
        .collect();
    Ok(axum::Json(versions).into_response())
}

async fn set_version(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    Body(body): Body,
) -> Answer {
    let wanted: UpdateServiceVersion = parse_body(&body)?;
    let done = c.plane.set_version(&name, wanted.version).await?;
    Ok(message(done))
}

async fn release(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    Body(body): Body,
) -> Answer {
    let wanted: ReleaseService = parse_body(&body)?;
    let done = c
        .plane
        .release(&name, wanted.weight, &wanted.traffic_state)
        .await?;
    Ok(message(done))
}

async fn get_mirror(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let mirror = c.plane.mirror_of(&name)?.map(|m| mirror_status(&m));
    Ok(axum::Json(mirror.unwrap_or_default()).into_response())
}

async fn put_mirror(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    Body(body): Body,
) -> Answer {
    let wanted: ServiceMirror = parse_body(&body)?;
    let done = c
        .plane
        .set_mirror(&name, wanted.ratio, wanted.target)
        .await?;
    Ok(message(done))
}

async fn delete_mirror(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let done = c.plane.set_mirror(&name, 0, Vec::new()).await?;
    Ok(message(done))
}

fn mirror_status(mirror: &crate::control::MirrorView) -> MirrorStatus {
    MirrorStatus {
        ratio: mirror.ratio,
        targets: mirror
            .targets
            .iter()
            .map(|(service, c)| MirrorTargetStatus {
                service: service.clone(),
                attempted: c.attempted,
                shed: c.shed,
                answered: c.answered,
                failed: c.failed,
            })
            .collect(),
    }
}

async fn delete(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    c.plane.delete(&name).await?;
    Ok(message(format!("service `{name}` is being deleted")))
}

async fn start(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    c.plane.set_stopped(&name, false).await?;
    Ok(message(format!("service `{name}` is starting")))
}

async fn stop(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    c.plane.set_stopped(&name, true).await?;
    Ok(message(format!("service `{name}` is stopping")))
}

async fn restart(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let fresh = c.plane.restart(&name)?;
    Ok(message(format!(
        "service `{name}`: {} instances are being replaced",
        fresh.len()
    )))
}

async fn instances(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let view = c.plane.describe(&name)?;
    let instances: Vec<InstanceSummary> = view.replicas.iter().map(instance).collect();
    Ok(axum::Json(ListInstancesResponse {
        total_count: instances.len() as u64,
        instances,
    })
    .into_response())
}

async fn restart_instances(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    query: Result<Query<DeleteInstancesQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query.map_err(|e| Refusal(ErrorCode::InvalidParameter, e.body_text()))?;
    let names = query.names();
    if names.is_empty() {
        return Err(Refusal(
            ErrorCode::InvalidParameter,
            "InstanceList: name at least one instance".to_owned(),
        ));
    }
    let fresh = c.plane.restart_instances(&name, &names)?;
    Ok(message(format!(
        "service `{name}`: {} instances are being replaced",
        fresh.len()
    )))
}

/// The service's `autoscaler` block, as it is in its spec now.
fn autoscaler_of(view: &ServiceView) -> Result<Option<AutoscalerSpec>, Refusal> {
    match view.spec.get("autoscaler") {
        None | Some(Value::Null) => Ok(None),
        Some(block) => serde_json::from_value(block.clone())
            .map(Some)
            .map_err(|e| Refusal(ErrorCode::InternalError, format!("autoscaler: {e}"))),
    }
}

/// Replaces the spec's `autoscaler` block with `block` (`None`: removes it).
async fn set_autoscaler(
    plane: &ControlPlane,
    name: &str,
    block: Option<AutoscalerSpec>,
) -> Result<String, Refusal> {
    let block = match block {
        Some(block) => serde_json::to_value(block)
            .map_err(|e| Refusal(ErrorCode::InternalError, e.to_string()))?,
        None => Value::Null,
    };
    let done = plane
        .update(name, |spec| {
            merge_patch(spec, &serde_json::json!({ "autoscaler": Value::Null }));
            if !block.is_null()
                && let Some(map) = spec.as_object_mut()
            {
                map.insert("autoscaler".to_owned(), block);
            }
            Ok(())
        })
        .await?;
    Ok(done)
}

async fn get_autoscaler(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let view = c.plane.describe(&name)?;
    match autoscaler_of(&view)? {
        Some(spec) => Ok(axum::Json(AutoscalerConfig::from_spec(&spec)).into_response()),
        None => Err(Refusal(
            ErrorCode::NotFound,
            format!("service `{name}` has no autoscaler"),
        )),
    }
}

async fn put_autoscaler(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    Body(body): Body,
) -> Answer {
    let config: AutoscalerConfig = parse_body(&body)?;
    let view = c.plane.describe(&name)?;
    let block = config.apply_to(&name, autoscaler_of(&view)?.as_ref())?;
    Ok(message(set_autoscaler(&c.plane, &name, Some(block)).await?))
}

async fn delete_autoscaler(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let view = c.plane.describe(&name)?;
    let block = AutoscalerConfig::remove_from(autoscaler_of(&view)?.as_ref());
    Ok(message(set_autoscaler(&c.plane, &name, block).await?))
}

async fn get_cronscaler(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let view = c.plane.describe(&name)?;
    let block = autoscaler_of(&view)?;
    Ok(axum::Json(CronScalerConfig::from_spec(block.as_ref())).into_response())
}

async fn put_cronscaler(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    Body(body): Body,
) -> Answer {
    let config: CronScalerConfig = parse_body(&body)?;
    let view = c.plane.describe(&name)?;
    let instance = view
        .spec
        .pointer("/metadata/instance")
        .and_then(Value::as_u64)
        .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let block = config.apply_to(autoscaler_of(&view)?.as_ref(), instance)?;
    Ok(message(set_autoscaler(&c.plane, &name, block).await?))
}

async fn delete_cronscaler(_: Admin, State(c): State<Control>, Path((_, name)): Named) -> Answer {
    let view = c.plane.describe(&name)?;
    let block = CronScalerConfig::remove_from(autoscaler_of(&view)?.as_ref());
    Ok(message(set_autoscaler(&c.plane, &name, block).await?))
}

/// `POST .../metrics` with `{"name": value, ...}`: custom metrics for the service's
/// autoscaler (a `custom` strategy names them), as a client or an exporter reports them.
async fn report_metrics(
    _: Admin,
    State(c): State<Control>,
    Path((_, name)): Named,
    Body(body): Body,
) -> Answer {
    let values: std::collections::BTreeMap<String, f64> = parse_body(&body)?;
    for (metric, value) in &values {
        c.plane.report_metric(&name, metric, *value)?;
    }
    Ok(message(format!(
        "service `{name}`: {} metrics recorded",
        values.len()
    )))
}

/// What `GET /api/v2/series` takes.
#[derive(serde::Deserialize)]
struct SeriesQuery {
    service: Option<String>,
}

/// `GET /api/v2/series[?service=NAME]`: the second-level series of every service (or of one)
/// over the last 15 minutes ([`crate::series`]).
async fn series(
    _: Admin,
    State(c): State<Control>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query.map_err(|e| Refusal(ErrorCode::InvalidParameter, e.body_text()))?;
    if let Some(name) = &query.service {
        c.plane.describe(name)?;
    }
    Ok(axum::Json(c.plane.series().to_json(query.service.as_deref())).into_response())
}

pub(super) fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A service as DescribeService answers.
pub(super) fn summary(cluster: &str, view: &ServiceView) -> ServiceSummary {
    let total = u32::try_from(view.replicas.len()).unwrap_or(u32::MAX);
    let running =
        u32::try_from(view.replicas.iter().filter(|r| r.is_ready()).count()).unwrap_or(u32::MAX);
    let (status, reason) = if view.stopped {
        if total == 0 {
            (ServiceStatus::Stopped, String::new())
        } else {
            (ServiceStatus::Stopping, String::new())
        }
    } else if view.dead {
        let why = view
            .replicas
            .iter()
            .map(|r| format!("{}: {}", r.index(), describe_state(&r.state())))
            .collect::<Vec<_>>()
            .join("; ");
        (ServiceStatus::Failed, why)
    } else if let Some(rollout) = &view.rollout {
        (
            ServiceStatus::Updating,
            format!("rolling out version {}", rollout.to),
        )
    } else if running == view.desired && total == view.desired {
        (ServiceStatus::Running, String::new())
    } else if running == 0 && view.desired > 0 {
        (
            ServiceStatus::Waiting,
            view.refused.clone().unwrap_or_default(),
        )
    } else {
        (
            ServiceStatus::Scaling,
            view.refused.clone().unwrap_or_default(),
        )
    };
    ServiceSummary {
        service_name: view.name.clone(),
        cluster_id: cluster.to_owned(),
        status,
        reason,
        message: format!("version {}", view.version),
        running_instance: running,
        total_instance: total,
        desired_instance: view.desired,
        create_time: rfc3339(view.created),
        update_time: rfc3339(view.updated),
        service_config: without_token(&view.spec),
        warnings: view.warnings.clone(),
        scaling_decisions: view
            .decisions
            .iter()
            .map(|d| ScalingDecision {
                time: rfc3339(d.at),
                current: d.current,
                desired: d.desired,
                reason: d.reason.clone(),
            })
            .collect(),
        current_version: view.service_version,
        latest_version: view.latest_version,
        rollout: view.rollout.as_ref().map(|r| RolloutStatus {
            to_version: r.to,
            new_ready: r.new.ready,
            new_total: r.new.total,
            old_ready: r.old.ready,
            old_total: r.old.total,
        }),
        rollout_failure: view.rollout_failure.clone().unwrap_or_default(),
        group: view.group.clone().unwrap_or_default(),
        weight: view
            .group
            .as_ref()
            .map(|_| view.release.unwrap_or_default().weight),
        traffic_state: match (&view.group, view.release) {
            (None, _) => String::new(),
            (Some(_), Some(r)) if r.grouping => "grouping".into(),
            (Some(_), _) => "standalone".into(),
        },
        mirror: view.mirror.as_ref().map(mirror_status),
    }
}

/// The spec as DescribeService shows it: without its `token` (a secret that only the
/// service's owner holds).
fn without_token(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(map) = spec.as_object_mut() {
        map.remove("token");
    }
    spec
}

/// A replica as ListServiceInstances answers.
pub(super) fn instance(replica: &Replica) -> InstanceSummary {
    let state = replica.state();
    let status = match &state {
        ReplicaState::Starting => InstanceStatus::Starting,
        ReplicaState::Ready => InstanceStatus::Running,
        ReplicaState::Restarting => InstanceStatus::Restarting,
        ReplicaState::CrashBlocked(_) => InstanceStatus::CrashBlocked,
        ReplicaState::Failed(_) => InstanceStatus::Failed,
        ReplicaState::Stopped => InstanceStatus::Stopped,
    };
    let reason = match &state {
        ReplicaState::CrashBlocked(why) | ReplicaState::Failed(why) => why.clone(),
        _ => String::new(),
    };
    let usage = replica.usage();
    InstanceSummary {
        instance_name: format!("{}-{}", replica.service(), replica.index()),
        status,
        ready: replica.is_ready(),
        restart_count: u32::try_from(usage.restarts).unwrap_or(u32::MAX),
        start_time: rfc3339(usage.started_at),
        host_ip: "127.0.0.1".to_owned(),
        in_flight: u32::try_from(usage.in_flight).unwrap_or(u32::MAX),
        reason,
    }
}
