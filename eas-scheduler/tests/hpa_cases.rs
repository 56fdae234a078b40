//! The Kubernetes HPA replica-calculation cases (`replica_calculator_test.go`, restated as
//! data in `shared/data/k8s_hpa_replica_calc_cases/cases.csv`) through [`replica_count`].
//!
//! `EAS_HPA_CASES` names another file with the same columns. When the file is missing the test
//! prints `SKIPPED` and passes, unless `EAS_REQUIRE_ALL=1`, where it fails (`support::skip`).

mod support;

use std::path::PathBuf;
use std::time::SystemTime;

use eas_core::autoscaler::{InstanceSample, Observation, PodPhase, metric};
use eas_core::resources::InstanceId;
use eas_scheduler::autoscale::{
    DEFAULT_TOLERANCE, MetricSource, MetricTarget, Target, replica_count,
};
use serde::Deserialize;

const DEFAULT_CASES: &str = "k8s_hpa_replica_calc_cases/cases.csv";

/// One row of `cases.csv` (see its PROVENANCE.md for the columns).
#[derive(Debug, Deserialize)]
struct Case {
    case_id: String,
    k8s_test_func: String,
    metric_source: String,
    target_type: String,
    target_value: f64,
    current_replicas: u32,
    pod_requests_milli: String,
    pod_usage_milli: String,
    pod_ready: String,
    pod_phase: String,
    pod_hot_cpu: String,
    pod_deleting: String,
    total_value_milli: String,
    expected_replicas: u32,
    note: String,
}

fn list(field: &str) -> Vec<&str> {
    if field.trim().is_empty() {
        Vec::new()
    } else {
        field.split(';').map(str::trim).collect()
    }
}

fn flag(values: &[&str], i: usize, default: bool) -> Result<bool, String> {
    match values.get(i).copied() {
        None | Some("") => Ok(default),
        Some("T" | "t" | "true") => Ok(true),
        Some("F" | "f" | "false") => Ok(false),
        Some(other) => Err(format!("not a T/F flag: {other}")),
    }
}

fn phase(values: &[&str], i: usize) -> Result<PodPhase, String> {
    match values
        .get(i)
        .copied()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "running") => Ok(PodPhase::Running),
        Some("pending") => Ok(PodPhase::Pending),
        Some("failed") => Ok(PodPhase::Failed),
        Some("succeeded") => Ok(PodPhase::Succeeded),
        Some("unknown") => Ok(PodPhase::Unknown),
        Some(other) => Err(format!("unknown pod phase: {other}")),
    }
}

fn number(value: &str) -> Result<Option<f64>, String> {
    match value.trim() {
        "" | "-" => Ok(None),
        v => v
            .parse::<f64>()
            .map(Some)
            .map_err(|e| format!("not a number {v:?}: {e}")),
    }
}

/// The metric target and the observation that a row describes.
fn build(case: &Case) -> Result<(MetricTarget, Observation), String> {
    let source = match case.metric_source.as_str() {
        "resource_cpu" => MetricSource::ResourceCpu,
        s => {
            let (kind, name) = s
                .split_once("_metric_")
                .or_else(|| s.split_once("_metric").map(|(k, _)| (k, "qps")))
                .ok_or_else(|| format!("unknown metric_source {s}"))?;
            let name = if name.is_empty() { "qps" } else { name }.to_owned();
            match kind {
                "pods" | "pod" => MetricSource::Pods(name),
                "object" => MetricSource::Object(name),
                "external" => MetricSource::External(name),
                _ => return Err(format!("unknown metric_source {s}")),
            }
        }
    };
    let cpu = source == MetricSource::ResourceCpu;
    // Milli-units become units, except CPU, which is counted in milli-cores.
    let scale = |v: f64| if cpu { v } else { v / 1000.0 };
    let target = match case.target_type.as_str() {
        "utilization_percent" => Target::Utilization(case.target_value),
        "average_value" => Target::AverageValue(scale(case.target_value)),
        "value" => Target::Value(scale(case.target_value)),
        t => return Err(format!("unknown target_type {t}")),
    };

    let requests = list(&case.pod_requests_milli);
    let usage = list(&case.pod_usage_milli);
    let ready = list(&case.pod_ready);
    let phases = list(&case.pod_phase);
    let hot = list(&case.pod_hot_cpu);
    let deleting = list(&case.pod_deleting);
    // As the Go test does: current_replicas pods, or more when more phases are listed.
    let pods = [
        case.current_replicas as usize,
        requests.len(),
        ready.len(),
        phases.len(),
        hot.len(),
        deleting.len(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);

    let mut observation = Observation::new(SystemTime::UNIX_EPOCH, case.current_replicas);
    for i in 0..pods {
        let mut sample = InstanceSample::new(InstanceId::new(format!("pod-{i}")))
            .with_phase(phase(&phases, i)?)
            .with_ready(flag(&ready, i, true)?)
            .with_cpu_initializing(flag(&hot, i, false)?)
            .with_deleting(flag(&deleting, i, false)?);
        if let Some(request) = requests.get(i).map(|r| number(r)).transpose()?.flatten() {
            sample = sample.with_cpu_request_millis(request as u64);
        }
        if let Some(value) = usage.get(i).map(|u| number(u)).transpose()?.flatten() {
            let name = match &source {
                MetricSource::ResourceCpu => metric::CPU_MILLIS,
                other => other.name(),
            };
            sample = sample.with_metric(name, scale(value));
        }
        observation = observation.with_instance(sample);
    }
    if let Some(total) = number(&case.total_value_milli)? {
        observation = observation.with_service_metric(source.name(), scale(total));
    }
    Ok((MetricTarget::new(source, target), observation))
}

#[test]
fn every_kubernetes_replica_calculation_case_should_give_the_expected_replicas() {
    let test = "every_kubernetes_replica_calculation_case_should_give_the_expected_replicas";
    let path = match std::env::var_os("EAS_HPA_CASES") {
        Some(path) => PathBuf::from(path),
        None => support::shared_dir().join("data").join(DEFAULT_CASES),
    };
    if !path.exists() {
        support::skip(test, &format!("{} not found", path.display()));
        return;
    }
    let mut reader = csv::Reader::from_path(&path).expect("the cases file opens");
    let mut failures = Vec::new();
    let mut total = 0;
    for row in reader.deserialize::<Case>() {
        let case = row.expect("a well-formed row");
        total += 1;
        let outcome = build(&case).and_then(|(target, observation)| {
            replica_count(&observation, &target, DEFAULT_TOLERANCE)
                .map_err(|e| e.to_string())
                .map(|count| (target, count))
        });
        match outcome {
            Ok((_, count)) if count.replicas == case.expected_replicas => {}
            Ok((target, count)) => failures.push(format!(
                "case {} ({}): {target}: got {}, expected {}; {}\n  note: {}",
                case.case_id,
                case.k8s_test_func,
                count.replicas,
                case.expected_replicas,
                count.reason,
                case.note
            )),
            Err(e) => failures.push(format!(
                "case {} ({}): error {e}\n  note: {}",
                case.case_id, case.k8s_test_func, case.note
            )),
        }
    }
    assert!(total > 0, "no cases in {}", path.display());
    eprintln!(
        "{} of {total} cases from {} as expected",
        total - failures.len(),
        path.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
