//! The meaning pass: rules that span fields or need more than a type to state.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    AutoscalerSpec, Container, CountOrPercent, MountSource, MountSpec, PathKind, ProcessorType,
    RESERVED_PORTS, SUPPORTED_CUDA_VERSIONS, ServiceSpec, ServiceType, SinkerType, SpecError,
};

/// The longest service name.
const MAX_NAME_LEN: usize = 64;

/// A day.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The bounds of the duration fields. A larger value is a mistake, never a need, and an
/// unbounded one reaches the runtime's deadline arithmetic (a `u64::MAX` grace period once
/// overflowed `now + grace` and panicked the server on SIGTERM):
/// - `eas.termination_grace_period`, a day: instances drain in seconds to minutes (the
///   default is 30 s); a drain still going after a day is stuck, not graceful.
/// - `rpc.keepalive`, a day: the longest one synchronous request may take (the default is
///   10 minutes); longer work belongs in an asynchronous service or an Elastic Job.
/// - `rpc.max_batch_timeout`, a minute: every batch's first request waits that long for
///   company (the default is 50 ms); a minute already outlasts most clients' patience.
const DURATION_BOUNDS: [(&str, Duration, Unit, &str); 3] = [
    (
        "metadata[\"eas.termination_grace_period\"]",
        DAY,
        Unit::Seconds,
        "a day",
    ),
    ("metadata.rpc.keepalive", DAY, Unit::Milliseconds, "a day"),
    (
        "metadata.rpc.max_batch_timeout",
        Duration::from_secs(60),
        Unit::Milliseconds,
        "a minute",
    ),
];

/// The longest `autoscaler.behavior.*.stabilization_window_seconds`: an hour, the limit
/// Kubernetes puts on the HPA field this one copies.
const MAX_STABILIZATION_WINDOW_SECONDS: u32 = 3600;

/// The unit a duration field is written in.
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Milliseconds,
}

impl Unit {
    fn count(self, duration: Duration) -> u128 {
        match self {
            Self::Seconds => u128::from(duration.as_secs()),
            Self::Milliseconds => duration.as_millis(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Milliseconds => "milliseconds",
        }
    }
}

/// Appends every rule `spec` breaks to `errors`.
pub(crate) fn validate(spec: &ServiceSpec, errors: &mut Vec<SpecError>) {
    let mut report = |path: &str, message: String| errors.push(SpecError::new(path, message));
    check_metadata(spec, &mut report);
    check_processor(spec, &mut report);
    for (i, container) in spec.containers.iter().enumerate() {
        check_container(&format!("containers[{i}]"), container, &mut report);
    }
    check_cloud(spec, &mut report);
    check_storage(&spec.storage, &mut report);
    if let Some(autoscaler) = &spec.autoscaler {
        check_autoscaler(autoscaler, &mut report);
    }
    check_misc(spec, &mut report);
}

type Report<'a> = dyn FnMut(&str, String) + 'a;

fn check_metadata(spec: &ServiceSpec, report: &mut Report<'_>) {
    let m = &spec.metadata;
    if let Err(reason) = check_name(&m.name) {
        report("metadata.name", reason);
    }
    if let Some(group) = &m.group {
        if let Err(reason) = check_name(group) {
            report("metadata.group", reason);
        } else if *group == m.name {
            report(
                "metadata.group",
                "a group may not share its name with a service, this one included".to_owned(),
            );
        }
        if m.is_async() {
            report(
                "metadata.group",
                "asynchronous (queue) services cannot join a group: group weights split sync \
                 predict traffic only"
                    .to_owned(),
            );
        }
    }
    if let Some(cpu) = m.cpu
        && !(cpu.is_finite() && cpu > 0.0)
    {
        report(
            "metadata.cpu",
            format!("must be a number of cores greater than 0, found {cpu}"),
        );
    }
    if m.memory == Some(0) {
        report("metadata.memory", "must be at least 1 (MB)".to_owned());
    }
    if let Some(cuda) = &m.cuda
        && !SUPPORTED_CUDA_VERSIONS.contains(&cuda.as_str())
    {
        report(
            "metadata.cuda",
            format!(
                "unsupported CUDA version \"{cuda}\"; supported: {}",
                SUPPORTED_CUDA_VERSIONS.join(", ")
            ),
        );
    }
    if let Some(percent) = m.gpu_core_percentage
        && !(1..=100).contains(&percent)
    {
        report(
            "metadata.gpu_core_percentage",
            format!("must be from 1 to 100, found {percent}"),
        );
    }
    let slicing = m.gpu_memory.is_some() || m.gpu_core_percentage.is_some();
    if slicing && m.gpu.is_some_and(|g| g > 0) {
        report(
            "metadata.gpu",
            "set gpu (whole GPUs) or gpu_memory/gpu_core_percentage (a slice of one GPU), not both"
                .to_owned(),
        );
    }
    if m.resource_burstable && !m.is_dedicated() {
        report(
            "metadata.resource_burstable",
            "bursting overflows a dedicated resource group into the public pool; set metadata.resource too".to_owned(),
        );
    }
    let durations = [
        m.termination_grace_period,
        m.rpc.keepalive,
        m.rpc.max_batch_timeout,
    ];
    for ((path, max, unit, words), value) in DURATION_BOUNDS.into_iter().zip(durations) {
        if value > max {
            report(
                path,
                format!(
                    "must be at most {} {} ({words}), found {}",
                    unit.count(max),
                    unit.name(),
                    unit.count(value)
                ),
            );
        }
    }
    if let Some(rolling) = &m.rolling_strategy {
        let zero = |v: Option<CountOrPercent>| {
            matches!(v, Some(CountOrPercent::Count(0)))
                || v.is_some_and(|v| v == CountOrPercent::Percent(0.0))
        };
        let surge_zero = zero(rolling.max_surge);
        let unavailable_zero = match rolling.max_unavailable {
            Some(v) => zero(Some(v)),
            None => !m.is_dedicated(),
        };
        if surge_zero && unavailable_zero {
            report(
                "metadata.rolling_strategy",
                "max_surge and max_unavailable are both 0, so a rolling update could never progress".to_owned(),
            );
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let count = name.chars().count();
    if count == 0 {
        return Err("must not be empty".to_owned());
    }
    if count > MAX_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_NAME_LEN} characters, found {count}"
        ));
    }
    let rule = "must start with a lowercase letter and hold only lowercase letters, digits and underscores";
    let mut chars = name.chars().enumerate();
    if let Some((_, first)) = chars.next()
        && !first.is_ascii_lowercase()
    {
        return Err(format!("{rule}; it starts with '{first}'"));
    }
    match chars.find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
        Some((position, c)) => Err(format!("{rule}; found '{c}' at position {}", position + 1)),
        None => Ok(()),
    }
}

fn check_processor(spec: &ServiceSpec, report: &mut Report<'_>) {
    let uses_processor = spec.processor.is_some() || spec.processor_path.is_some();
    if spec.processor.is_some() && spec.processor_path.is_some() {
        report(
            "processor_path",
            "set either processor (a built-in processor) or processor_path with processor_type (a custom one), not both"
                .to_owned(),
        );
    }
    if spec.processor_path.is_some() && spec.processor_type.is_none() {
        report(
            "processor_type",
            "required with processor_path: cpp, java or python".to_owned(),
        );
    }
    if spec.processor_type.is_some() && spec.processor_path.is_none() {
        report(
            "processor_path",
            "required with processor_type: where the processor package comes from".to_owned(),
        );
    }
    match spec.processor_type {
        Some(kind @ (ProcessorType::Cpp | ProcessorType::Python)) if spec.processor_entry.is_none() => {
            let example = if kind == ProcessorType::Cpp { "libprocessor.so" } else { "app.py" };
            report(
                "processor_entry",
                format!("required when processor_type is {kind:?}: the main file, such as {example}").to_lowercase(),
            );
        }
        Some(ProcessorType::Java) if spec.processor_mainclass.is_none() => report(
            "processor_mainclass",
            "required when processor_type is java: the main class, such as com.aliyun.TestProcessor".to_owned(),
        ),
        _ => {}
    }
    if uses_processor && spec.model_path.is_none() {
        report(
            "model_path",
            "required when the service runs a processor: where the model comes from".to_owned(),
        );
    }
    for (field, value) in [
        ("model_path", &spec.model_path),
        ("processor_path", &spec.processor_path),
    ] {
        if let Some(Err(reason)) = value.as_deref().map(check_source_path) {
            report(field, reason);
        }
    }
    let is_gateway = spec.metadata.service_type == Some(ServiceType::LlmGatewayService);
    if !uses_processor && spec.containers.is_empty() && !is_gateway {
        report(
            "",
            "nothing to run: set processor (or processor_path), or containers".to_owned(),
        );
    }
}

/// A `model_path` or `processor_path`, read by [`PathKind::parse`], the rule `eas-storage`
/// resolves with. A scheme it does not know is accepted: the runtime refuses it when the
/// service starts unless a storage mount is registered for it (there is no warning channel to
/// say so here).
fn check_source_path(path: &str) -> Result<(), String> {
    PathKind::parse(path).map(drop)
}

fn check_container(path: &str, container: &Container, report: &mut Report<'_>) {
    if container.image.trim().is_empty() {
        report(&format!("{path}.image"), "must not be empty".to_owned());
    }
    match (&container.command, &container.script) {
        (Some(_), Some(_)) => report(path, "set either command or script, not both".to_owned()),
        (None, None) => report(path, "a container needs a command or a script".to_owned()),
        _ => {}
    }
    if let Some(port) = container.port
        && RESERVED_PORTS.contains(&port)
    {
        report(
            &format!("{path}.port"),
            format!("port {port} is reserved for the EAS engine; choose another port"),
        );
    }
    for (i, env) in container.env.iter().enumerate() {
        if env.name.trim().is_empty() {
            report(
                &format!("{path}.env[{i}].name"),
                "must not be empty".to_owned(),
            );
        }
    }
}

fn check_cloud(spec: &ServiceSpec, report: &mut Report<'_>) {
    let Some(computing) = spec.cloud.as_ref().and_then(|c| c.computing.as_ref()) else {
        return;
    };
    let mut seen: BTreeMap<(&str, bool), usize> = BTreeMap::new();
    for (i, entry) in computing.instances.iter().enumerate() {
        let path = format!("cloud.computing.instances[{i}]");
        if entry.instance_type.trim().is_empty() {
            report(&format!("{path}.type"), "must not be empty".to_owned());
        }
        if let Some(bid) = entry.spot_price_limit
            && !(bid.is_finite() && bid > 0.0)
        {
            report(
                &format!("{path}.spot_price_limit"),
                format!("a bid must be a price greater than 0, found {bid}"),
            );
        }
        if let Some(CountOrPercent::Percent(p)) = entry.capacity
            && !(p > 0.0 && p <= 100.0)
        {
            report(
                &format!("{path}.capacity"),
                format!("a percentage must be greater than 0% and at most 100%, found {p}%"),
            );
        }
        if let Some(first) = seen.insert((entry.instance_type.as_str(), entry.is_spot()), i) {
            let market = if entry.is_spot() { "spot" } else { "on-demand" };
            report(
                &format!("{path}.type"),
                format!(
                    "{market} {} is already listed at cloud.computing.instances[{first}]",
                    entry.instance_type
                ),
            );
        }
    }
}

fn check_storage(mounts: &[MountSpec], report: &mut Report<'_>) {
    let normalized: Vec<String> = mounts
        .iter()
        .map(|m| normalize_mount_path(&m.mount_path))
        .collect();
    for (i, mount) in mounts.iter().enumerate() {
        let path = format!("storage[{i}]");
        let mount_path = &normalized[i];
        if !mount.mount_path.starts_with('/') {
            report(
                &format!("{path}.mount_path"),
                format!("must be an absolute path, found \"{}\"", mount.mount_path),
            );
        }
        for (j, other) in normalized.iter().enumerate().take(i) {
            if other == mount_path {
                report(
                    &format!("{path}.mount_path"),
                    format!("{mount_path} is already mounted by storage[{j}]"),
                );
            } else if is_nested(mount_path, other) {
                report(
                    &format!("{path}.mount_path"),
                    format!("{mount_path} is inside storage[{j}].mount_path ({other})"),
                );
            } else if is_nested(other, mount_path) {
                report(
                    &format!("{path}.mount_path"),
                    format!("{mount_path} contains storage[{j}].mount_path ({other})"),
                );
            }
        }
        let sources = mount.sources();
        match sources.as_slice() {
            [] => report(
                &path,
                "a mount needs one source: oss, nfs, local or cache".to_owned(),
            ),
            [source] => check_mount_source(&path, *source, &normalized, report),
            several => report(
                &path,
                format!("a mount takes one source, found {}", several.len()),
            ),
        }
    }
}

fn check_mount_source(
    path: &str,
    source: MountSource<'_>,
    mount_paths: &[String],
    report: &mut Report<'_>,
) {
    match source {
        MountSource::Oss(oss) => {
            // The rule `eas-storage` resolves with; other schemes are left to registered mounts.
            if let Err(reason) = PathKind::parse_mount(&oss.path) {
                report(&format!("{path}.oss.path"), reason);
            }
        }
        MountSource::Nfs(nfs) => {
            if nfs.server.trim().is_empty() {
                report(
                    &format!("{path}.nfs.server"),
                    "must not be empty".to_owned(),
                );
            }
            if !nfs.path.starts_with('/') {
                report(
                    &format!("{path}.nfs.path"),
                    format!(
                        "must be an absolute path on the NAS, found \"{}\"",
                        nfs.path
                    ),
                );
            }
        }
        MountSource::Local(local) => {
            if local.path.trim().is_empty() {
                report(
                    &format!("{path}.local.path"),
                    "must not be empty".to_owned(),
                );
            }
        }
        MountSource::Cache(cache) => {
            if cache.capacity.bytes() == 0 {
                report(
                    &format!("{path}.cache.capacity"),
                    "must be greater than 0".to_owned(),
                );
            }
            if !mount_paths.contains(&normalize_mount_path(&cache.path)) {
                report(
                    &format!("{path}.cache.path"),
                    format!(
                        "{} is not the mount_path of another storage entry",
                        cache.path
                    ),
                );
            }
        }
    }
}

/// `/a//b/` and `/a/b` name the same mount point.
fn normalize_mount_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Whether `inner` lies strictly below `outer`.
fn is_nested(inner: &str, outer: &str) -> bool {
    outer == "/" && inner != "/"
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn check_autoscaler(autoscaler: &AutoscalerSpec, report: &mut Report<'_>) {
    if autoscaler.max == 0 {
        report("autoscaler.max", "must be at least 1".to_owned());
    }
    if autoscaler.min > autoscaler.max {
        report(
            "autoscaler.min",
            format!(
                "min ({}) is greater than max ({})",
                autoscaler.min, autoscaler.max
            ),
        );
    }
    if let Some(behavior) = &autoscaler.behavior {
        for (name, rules) in [
            ("scale_up", &behavior.scale_up),
            ("scale_down", &behavior.scale_down),
        ] {
            if let Some(window) = rules.as_ref().and_then(|r| r.stabilization_window_seconds)
                && window > MAX_STABILIZATION_WINDOW_SECONDS
            {
                report(
                    &format!("autoscaler.behavior.{name}.stabilization_window_seconds"),
                    format!(
                        "must be at most {MAX_STABILIZATION_WINDOW_SECONDS} seconds (an hour, \
                         as in Kubernetes), found {window}"
                    ),
                );
            }
        }
    }
    let strategies = &autoscaler.strategies;
    let built_in = [
        ("qps", strategies.qps),
        ("cpu", strategies.cpu),
        ("gpu", strategies.gpu),
        ("queue", strategies.queue),
    ];
    for (name, target) in built_in {
        let Some(target) = target else { continue };
        let path = format!("autoscaler.strategies.{name}");
        if let Err(reason) = check_target(target) {
            report(&path, reason);
        } else if matches!(name, "cpu" | "gpu") && target > 100.0 {
            report(
                &path,
                format!("a utilisation target is a percentage, at most 100, found {target}"),
            );
        }
    }
    for (name, target) in &strategies.custom {
        let path = format!("autoscaler.strategies.custom[{name:?}]");
        if let Err(reason) = check_target(*target) {
            report(&path, reason);
        }
        if name.trim().is_empty() {
            report(&path, "a custom metric needs a name".to_owned());
        } else if built_in.iter().any(|(b, _)| *b == name.trim()) {
            report(
                &path,
                format!(
                    "{name} is a built-in strategy; set autoscaler.strategies.{} instead",
                    name.trim()
                ),
            );
        }
    }
    if strategies.targets().is_empty() && autoscaler.schedules.is_empty() {
        report(
            "autoscaler.strategies",
            "set at least one strategy (qps, cpu, gpu, queue, custom) or a schedule".to_owned(),
        );
    }
    for (i, entry) in autoscaler.schedules.iter().enumerate() {
        let path = format!("autoscaler.schedules[{i}]");
        match (entry.replicas, entry.min, entry.max) {
            (Some(_), None, None) => {}
            (Some(_), _, _) => report(
                &path,
                "set replicas (a fixed count) or min/max, not both".to_owned(),
            ),
            (None, None, None) => report(
                &path,
                "set replicas (a fixed count), or min and/or max".to_owned(),
            ),
            (None, Some(min), Some(max)) if min > max => {
                report(
                    &format!("{path}.min"),
                    format!("min ({min}) is greater than max ({max})"),
                );
            }
            _ => {}
        }
    }
}

/// A strategy target: a finite number greater than 0.
fn check_target(target: f64) -> Result<(), String> {
    if target.is_finite() && target > 0.0 {
        Ok(())
    } else {
        Err(format!("a target must be greater than 0, found {target}"))
    }
}

fn check_misc(spec: &ServiceSpec, report: &mut Report<'_>) {
    if let Some(token) = &spec.token
        && token.trim().is_empty()
    {
        report(
            "token",
            "must not be empty or blank: anyone could sign requests with such a key; omit \
             token (or set it to null) to have one generated"
                .to_owned(),
        );
    }
    if let Some(sinker) = &spec.sinker {
        let config = &sinker.config;
        let (present, section) = match sinker.sink_type {
            SinkerType::MaxCompute => (config.maxcompute.is_some(), "maxcompute"),
            SinkerType::Sls => (config.sls.is_some(), "sls"),
            SinkerType::File => (config.file.is_some(), "file"),
        };
        if !present {
            report(
                &format!("sinker.config.{section}"),
                format!("required when sinker.type is {}", sinker.sink_type),
            );
        }
    }
    if let Some(policy) = spec
        .networking
        .as_ref()
        .and_then(|n| n.gateway_policy.as_ref())
    {
        for (name, limit) in [
            ("rate_limit", policy.rate_limit),
            ("concurrency_limit", policy.concurrency_limit),
        ] {
            if limit.is_some_and(|l| l.enable && l.limit == 0) {
                report(
                    &format!("networking.gateway_policy.{name}.limit"),
                    "must be at least 1 when the limit is enabled".to_owned(),
                );
            }
        }
    }
    if let Some(confidential) = &spec.confidential {
        if confidential.trustee_endpoint.trim().is_empty() {
            report(
                "confidential.trustee_endpoint",
                "must not be empty".to_owned(),
            );
        }
        if confidential.decryption_key.trim().is_empty() {
            report(
                "confidential.decryption_key",
                "must not be empty: the KBS URI of the key".to_owned(),
            );
        }
    }
    for (field, map) in [("labels", &spec.labels), ("features", &spec.features)] {
        if map.keys().any(|k| k.trim().is_empty()) {
            report(field, "keys must not be empty".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_should_follow_the_eas_charset_and_length() {
        assert!(check_name("demo_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("1demo").is_err());
        assert!(check_name("Demo").is_err());
        assert!(check_name("de-mo").is_err());
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn nesting_should_be_detected_at_component_boundaries_only() {
        assert!(is_nested("/data/a", "/data"));
        assert!(!is_nested("/data2", "/data"));
        assert!(is_nested("/x", "/"));
        assert_eq!(normalize_mount_path("/a//b/"), "/a/b");
    }

    #[test]
    fn source_paths_should_accept_the_documented_forms_only() {
        for ok in [
            "oss://bucket/dir/",
            "s3://b/k",
            "https://h/m.tar.gz",
            "http://h/m.zip?x=1",
            "https://h/m.tbz2",
            "/models",
            "models",
            "ftp://h/m.tar",
            "mem://bucket/model/",
        ] {
            assert!(check_source_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "oss:///dir",
            "https://h/model.onnx",
            "https://h/model.bz2",
            "1ftp://h/m.tar",
            "mem://",
        ] {
            assert!(check_source_path(bad).is_err(), "{bad}");
        }
    }
}
