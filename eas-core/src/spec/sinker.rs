//! `sinker`: where request/response pairs are persisted.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Persists every request and response (`sinker`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Sinker {
    /// Where to: `maxcompute`, `sls` or `file` (matched without regard to case).
    #[serde(rename = "type")]
    pub sink_type: SinkerType,

    /// The destination's settings; the section named by `type` is required.
    #[serde(default)]
    pub config: SinkerConfig,
}

impl Sinker {
    /// A sink that appends one JSON object per request/response pair to `path`.
    #[must_use]
    pub fn file(path: impl Into<String>) -> Self {
        let config = SinkerConfig {
            file: Some(FileSink { path: path.into() }),
            ..SinkerConfig::default()
        };
        Self {
            sink_type: SinkerType::File,
            config,
        }
    }
}

/// The kinds of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkerType {
    /// A MaxCompute table.
    MaxCompute,
    /// A Simple Log Service logstore.
    Sls,
    /// A local JSON-lines file (eas extension, for local runs).
    File,
}

impl SinkerType {
    /// The canonical lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MaxCompute => "maxcompute",
            Self::Sls => "sls",
            Self::File => "file",
        }
    }
}

impl FromStr for SinkerType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "maxcompute" => Ok(Self::MaxCompute),
            "sls" => Ok(Self::Sls),
            "file" => Ok(Self::File),
            _ => Err(format!(
                "unknown sinker type \"{s}\"; expected maxcompute, sls or file"
            )),
        }
    }
}

impl fmt::Display for SinkerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SinkerType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SinkerType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for SinkerType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SinkerType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "maxcompute, sls or file, in any case.",
            "examples": ["maxcompute", "sls", "file"],
            "x-eas-format": "sinker_type"
        })
    }
}

/// `sinker.config`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SinkerConfig {
    /// The MaxCompute destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxcompute: Option<MaxComputeSink>,

    /// The Simple Log Service destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sls: Option<SlsSink>,

    /// The JSON-lines file destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSink>,
}

/// `sinker.config.maxcompute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxComputeSink {
    /// The MaxCompute project.
    pub project: String,
    /// The table.
    pub table: String,
}

/// `sinker.config.sls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlsSink {
    /// The SLS project.
    pub project: String,
    /// The logstore.
    pub logstore: String,
}

/// `sinker.config.file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// The file that receives one JSON object per line.
    pub path: String,
}
