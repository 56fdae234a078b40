//! `containers`: images to run, with their command or script, port and preparation steps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One container of a custom-image deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Container {
    /// The image address.
    pub image: String,

    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// The entry command: a single command, no shell. Exactly one of `command` and `script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,

    /// The entry script, run by a shell: commands separated by newlines or `;`. Exactly one
    /// of `command` and `script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,

    /// The container port. Ports 8080 and 9090 are reserved for the EAS engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,

    /// Steps run before the service starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare: Option<Prepare>,
}

/// Ports the EAS engine listens on, refused for containers.
pub const RESERVED_PORTS: [u16; 2] = [8080, 9090];

impl Container {
    /// A container of `image` with nothing to run yet: add a command or a script.
    #[must_use]
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            env: Vec::new(),
            command: None,
            script: None,
            port: None,
            prepare: None,
        }
    }

    /// This container running `command` (a single command, no shell).
    #[must_use]
    pub fn with_command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// This container running `script` in a shell.
    #[must_use]
    pub fn with_script(mut self, script: impl Into<String>) -> Self {
        self.script = Some(script.into());
        self
    }

    /// This container listening on `port`.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// This container with an environment variable.
    #[must_use]
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// An environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// The variable's value.
    #[serde(default)]
    pub value: String,
}

/// `containers[].prepare`: Python packages installed before the service starts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Prepare {
    /// Python packages to install, such as `numpy==1.16.4`.
    #[serde(
        rename = "pythonRequirements",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub python_requirements: Vec<String>,

    /// The path of a requirements.txt file to install.
    #[serde(
        rename = "pythonRequirementsPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub python_requirements_path: Option<String>,
}
