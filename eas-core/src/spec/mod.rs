//! The `service.json` spec: every field of the EAS JSON reference, typed, with the reference's
//! defaults, a JSON Schema, and errors that name the field and the reason.
//!
//! Reading a spec runs three passes and reports every problem they find at once:
//! 1. JSON syntax, and keys written twice in one object (line and column);
//! 2. structure, against the spec's own JSON Schema: unknown fields (with the closest known
//!    name), wrong types, out-of-range numbers, malformed values such as `"capacity": "2O%"`;
//! 3. meaning: rules that span fields (a container needs a command or a script, mount paths
//!    may not nest, autoscaler `min <= max`, ...).
//!
//! A [`ServiceSpec`] returned by [`ServiceSpec::from_json_str`] has passed all three.
//!
//! ```
//! use eas_core::spec::ServiceSpec;
//!
//! let errors = ServiceSpec::from_json_str(r#"{
//!     "metadata": {"name": "demo", "instance": 1, "rpc": {"max_batch_sise": 8}},
//!     "containers": [{"image": "python:3.11", "script": "python app.py", "port": 8080}]
//! }"#).unwrap_err();
//! let lines: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
//! assert_eq!(lines, [
//!     "metadata.rpc.max_batch_sise: unknown field; did you mean max_batch_size?",
//!     "containers[0].port: port 8080 is reserved for the EAS engine; choose another port",
//! ]);
//! ```

mod autoscaler;
mod check;
mod cloud;
mod container;
mod error;
mod json;
mod location;
mod metadata;
mod networking;
mod notice;
mod sinker;
mod storage;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use autoscaler::{
    AutoscalerAlgorithm, AutoscalerSpec, Behavior, ScaleRules, ScheduledScaling, Strategies,
};
pub use cloud::{Cloud, CloudNetworking, Computing, InstanceTypeSpec};
pub use container::{Container, EnvVar, Prepare, RESERVED_PORTS};
pub use error::{SpecError, SpecErrors};
pub use location::{ArchiveFormat, BucketScheme, PathKind};
pub use metadata::{
    Metadata, Qos, RollingStrategy, Rpc, SUPPORTED_CUDA_VERSIONS, Scheduling, ServiceType, Spread,
    WorkloadType,
};
pub use networking::{GatewayPolicy, Limit, Networking};
pub use notice::{CONTAINERS_NOT_SUPPORTED, CUSTOM_PROCESSORS_NOT_SUPPORTED, FieldNotice};
pub use sinker::{FileSink, MaxComputeSink, Sinker, SinkerConfig, SinkerType, SlsSink};
pub use storage::{CacheMount, LocalDir, MountSource, MountSpec, NfsMount, OssMount};
pub use values::{ByteSize, CountOrPercent, CronExpr, TimeZone};

pub use crate::resources::SpreadPolicy;

use values::{EmptyOr, empty_as_none};

/// A service, as `service.json` describes it.
///
/// Build one from JSON with [`ServiceSpec::from_json_str`] (which validates it), or in code
/// with [`ServiceSpec::new`] and then [`ServiceSpec::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "EAS service.json")]
#[non_exhaustive]
pub struct ServiceSpec {
    /// Service metadata: name, instances, resources and runtime settings.
    pub metadata: Metadata,

    /// Compute (public-pool instance types) and VPC configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Cloud>,

    /// Images to run, for a custom-image deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,

    /// Credentials of a private image registry: Base64 of `username:password`.
    #[serde(
        rename = "dockerAuth",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub docker_auth: Option<String>,

    /// Gateway and service-wide limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,

    /// Storage mounted into the instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<MountSpec>,

    /// The access token of the service; generated when omitted (or `null`). An empty or
    /// blank token is refused, not read as omitted: requests are signed with the token, and
    /// anyone can sign with an empty key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"\S"))]
    pub token: Option<String>,

    /// Compute checks and fault tolerance for multi-node distributed inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aimaster: Option<AiMaster>,

    /// Where the model comes from: `oss://bucket/prefix/`, `s3://...`, an HTTP(S) URL of an
    /// archive (.tar.gz, .tgz, .tar, .tar.bz2, .tbz2, .zip), a local path, or a URI of a scheme
    /// the application registered a storage mount for (checked when the service starts).
    /// Required with a processor.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub model_path: Option<String>,

    /// The OSS endpoint, such as `oss-cn-beijing.aliyuncs.com`, or a URL of an S3-compatible
    /// server such as `http://127.0.0.1:9000`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub oss_endpoint: Option<String>,

    /// The model's entry file inside `model_path`, passed to the processor's initialize().
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub model_entry: Option<String>,

    /// Any text, passed to the processor's initialize().
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub model_config: Option<String>,

    /// A built-in processor by name (such as `echo` or `onnx`). Use it, or `processor_path`
    /// with `processor_type` for a custom processor, not both.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub processor: Option<String>,

    /// Where a custom processor package comes from (same forms as `model_path`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub processor_path: Option<String>,

    /// The processor's main file (such as `libprocessor.so` or `app.py`); required for cpp and
    /// python processors.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub processor_entry: Option<String>,

    /// The processor's main class in its JAR (such as `com.aliyun.TestProcessor`); required
    /// for java processors.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub processor_mainclass: Option<String>,

    /// The language of a custom processor: cpp, java or python.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    #[schemars(with = "EmptyOr<ProcessorType>")]
    pub processor_type: Option<ProcessorType>,

    /// A file of requests replayed through each instance before it is marked ready.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none::deserialize"
    )]
    pub warm_up_data_path: Option<String>,

    /// Runtime behaviour on crashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,

    /// Horizontal auto scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerSpec>,

    /// Labels of the service, `key: value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Machines per instance for distributed inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,

    /// Persists requests and responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinker: Option<Sinker>,

    /// Encrypted inference through a trust management service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidential: Option<Confidential>,

    /// Extra platform features, such as `eas.aliyun.com/extra-ephemeral-storage: 100Gi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, String>,
}

/// The language of a custom processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcessorType {
    /// A shared library (`processor_entry`: `libprocessor.so`).
    Cpp,
    /// A JAR (`processor_mainclass`: the main class).
    Java,
    /// A Python file (`processor_entry`: `app.py`).
    Python,
}

impl std::str::FromStr for ProcessorType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpp" => Ok(Self::Cpp),
            "java" => Ok(Self::Java),
            "python" => Ok(Self::Python),
            other => Err(format!(
                "unknown processor_type \"{other}\"; expected cpp, java or python"
            )),
        }
    }
}

/// `runtime`: behaviour on processor crashes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Runtime {
    /// When true, an instance whose processor crashed stays down (to keep its state for
    /// troubleshooting) instead of restarting. Default: false.
    #[serde(default)]
    pub enable_crash_block: bool,
}

/// `unit`: machines per instance in a distributed deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Unit {
    /// Machines per service instance. Default: 2.
    #[serde(default = "default_unit_size")]
    #[schemars(range(min = 1))]
    pub size: u32,
}

impl Default for Unit {
    fn default() -> Self {
        Self {
            size: default_unit_size(),
        }
    }
}

const fn default_unit_size() -> u32 {
    2
}

/// `confidential`: encrypted inference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Confidential {
    /// The URI of the trust management service (Trustee).
    pub trustee_endpoint: String,
    /// The KBS URI of the decryption key, such as `kbs:///default/key/test-key`.
    pub decryption_key: String,
}

/// `aimaster`: compute checks and fault tolerance for multi-node inference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AiMaster {
    /// Whether AIMaster is enabled.
    #[serde(default)]
    pub enable: bool,
}

impl ServiceSpec {
    /// A spec with this metadata and nothing else; add a processor or containers before
    /// [`validate`](Self::validate).
    #[must_use]
    pub fn new(metadata: Metadata) -> Self {
        Self {
            metadata,
            cloud: None,
            containers: Vec::new(),
            docker_auth: None,
            networking: None,
            storage: Vec::new(),
            token: None,
            aimaster: None,
            model_path: None,
            oss_endpoint: None,
            model_entry: None,
            model_config: None,
            processor: None,
            processor_path: None,
            processor_entry: None,
            processor_mainclass: None,
            processor_type: None,
            warm_up_data_path: None,
            runtime: None,
            autoscaler: None,
            labels: BTreeMap::new(),
            unit: None,
            sinker: None,
            confidential: None,
            features: BTreeMap::new(),
        }
    }

    /// Reads and validates a `service.json` document, reporting every problem at once.
    ///
    /// A key written twice in the same object is an error (with its line and column), as
    /// the text does not say which of the two values is meant.
    pub fn from_json_str(text: &str) -> Result<Self, SpecErrors> {
        Self::from_parsed(json::from_str(text))
    }

    /// Reads and validates a `service.json` document from bytes (which must be UTF-8).
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, SpecErrors> {
        Self::from_parsed(json::from_slice(bytes))
    }

    /// The outcome of the syntax pass, through the other passes: duplicate keys first, then
    /// the rest.
    fn from_parsed(
        parsed: Result<(serde_json::Value, Vec<SpecError>), serde_json::Error>,
    ) -> Result<Self, SpecErrors> {
        let (value, mut errors) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => return Err(SpecErrors::new(vec![syntax_error(&e)])),
        };
        match Self::from_json_value(value) {
            Ok(spec) if errors.is_empty() => Ok(spec),
            Ok(_) => Err(SpecErrors::new(errors)),
            Err(more) => {
                errors.extend(more);
                Err(SpecErrors::new(errors))
            }
        }
    }

    /// Validates and types an already parsed JSON document. A `Value` holds one value per
    /// key, so duplicate keys of the text it came from can no longer be seen: read text with
    /// [`from_json_str`](Self::from_json_str) or [`from_json_slice`](Self::from_json_slice).
    pub fn from_json_value(mut value: serde_json::Value) -> Result<Self, SpecErrors> {
        let mut errors = Vec::new();
        let mut typed = None;
        if check::check_document(&mut value, json_schema(), &mut errors) {
            match serde_json::from_value::<Self>(value) {
                Ok(spec) => {
                    validate::validate(&spec, &mut errors);
                    typed = Some(spec);
                }
                // The structural check mirrors the types, so this is only reached if the two
                // disagree; the error still says what serde found.
                Err(e) => errors.push(SpecError::new("", e.to_string())),
            }
        }
        match typed {
            Some(spec) if errors.is_empty() => Ok(spec),
            _ => Err(SpecErrors::new(errors)),
        }
    }

    /// Checks the rules that span fields, for a spec built in code.
    pub fn validate(&self) -> Result<(), SpecErrors> {
        let mut errors = Vec::new();
        validate::validate(self, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors::new(errors))
        }
    }

    /// The spec as pretty-printed JSON, which reads back to an equal spec.
    #[must_use]
    pub fn to_json_pretty(&self) -> String {
        // Every field serializes to plain JSON (strings, numbers, maps with string keys).
        serde_json::to_string_pretty(self).expect("a ServiceSpec always serializes")
    }

    /// A one-line summary: name, kind, instances, resources and what runs.
    #[must_use]
    pub fn summary(&self) -> String {
        let m = &self.metadata;
        let mut parts = vec![format!("service {}", m.name)];
        if let Some(kind) = m.service_type {
            parts.push(format!("type {kind:?}"));
        }
        parts.push(format!(
            "{} instance{}",
            m.instance,
            if m.instance == 1 { "" } else { "s" }
        ));
        let mut resources = Vec::new();
        if let Some(cpu) = m.cpu {
            resources.push(format!("{cpu} cpu"));
        }
        if let Some(memory) = m.memory {
            resources.push(format!("{memory} MB"));
        }
        if let Some(gpu) = m.gpu.filter(|g| *g > 0) {
            resources.push(format!("{gpu} gpu"));
        }
        if !resources.is_empty() {
            parts.push(resources.join(", "));
        }
        if let Some(processor) = &self.processor {
            parts.push(format!("processor {processor}"));
        } else if let Some(kind) = self.processor_type {
            parts.push(format!("custom {kind:?} processor"));
        }
        if !self.containers.is_empty() {
            parts.push(format!("{} container(s)", self.containers.len()));
        }
        if let Some(autoscaler) = &self.autoscaler {
            parts.push(format!(
                "autoscaler {}..={}",
                autoscaler.min, autoscaler.max
            ));
        }
        parts.join("; ")
    }
}

impl std::str::FromStr for ServiceSpec {
    type Err = SpecErrors;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_json_str(s)
    }
}

/// The JSON Schema of `service.json`, generated from these types (draft 2020-12), with the
/// reference's descriptions and defaults.
#[must_use]
pub fn json_schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = schemars::schema_for!(ServiceSpec).to_value();
        bound_integer_formats(&mut schema);
        schema
    })
}

/// Writes the range of fixed-width integers (`"format": "uint32"`) as `minimum`/`maximum`,
/// so that validators which ignore `format` refuse what the reader refuses.
fn bound_integer_formats(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            let bounds = match map.get("format").and_then(serde_json::Value::as_str) {
                Some("uint8") => Some((0, u64::from(u8::MAX))),
                Some("uint16") => Some((0, u64::from(u16::MAX))),
                Some("uint32") => Some((0, u64::from(u32::MAX))),
                Some("uint64" | "uint") => Some((0, u64::MAX)),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                map.entry("minimum").or_insert(min.into());
                map.entry("maximum").or_insert(max.into());
            }
            map.values_mut().for_each(bound_integer_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(bound_integer_formats),
        _ => {}
    }
}

fn syntax_error(e: &serde_json::Error) -> SpecError {
    let reason = e.to_string();
    let reason = reason.split(" at line ").next().unwrap_or(&reason);
    SpecError {
        path: String::new(),
        message: format!("invalid JSON: {reason}"),
        location: Some((e.line(), e.column().max(1))),
    }
}
