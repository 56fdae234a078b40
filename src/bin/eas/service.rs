//! `eas service ...`: manage the services of a running eas server through its control API
//! (the EAS routes under `/api/v2/services`, see `eas_core::control`).
//!
//! Every command prints the server's JSON answer, pretty (`list` prints a table instead); an
//! answer other than 2xx prints `Code: Message` on stderr and exits 1, as does a server that
//! cannot be reached.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use eas::core::control::{ErrorResponse, ListServicesResponse};

/// The environment variable `--server` falls back to.
const SERVER_ENV: &str = "EAS_SERVER";
/// The environment variable `--admin-token` falls back to.
const ADMIN_TOKEN_ENV: &str = "EAS_ADMIN_TOKEN";
/// Where `eas serve` listens unless told otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The arguments of `eas service`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// The eas server's base URL. Default: the environment variable EAS_SERVER, else
    /// http://127.0.0.1:8080.
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// The server's admin token. Prefer the environment variable EAS_ADMIN_TOKEN, which `ps`
    /// does not show; the flag wins when both are set.
    #[arg(long, global = true, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// The cluster the services run in.
    #[arg(long, global = true, default_value = "local")]
    cluster: String,
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ServiceCommand {
    /// Create a service from its service.json (paths in it are read on the server).
    Create {
        /// The service.json file.
        file: PathBuf,
    },
    /// List the services: name, status, running/total instances.
    List,
    /// Describe a service: status, instances, the spec, recent scaling decisions.
    Describe {
        /// The service's name.
        name: String,
    },
    /// Update a service with a whole or partial service.json (a JSON merge patch: `null`
    /// removes a field).
    Update {
        /// The service's name.
        name: String,
        /// The (partial) service.json file.
        file: PathBuf,
    },
    /// Delete a service.
    Delete {
        /// The service's name.
        name: String,
    },
    /// Start a stopped service.
    Start {
        /// The service's name.
        name: String,
    },
    /// Stop a service: its instances go to 0, its spec is kept.
    Stop {
        /// The service's name.
        name: String,
    },
    /// Restart every instance of a service.
    Restart {
        /// The service's name.
        name: String,
    },
    /// List a service's versions (number, time, what made it, which runs), or move it to one
    /// of them through a rolling update (`--set N`: back or forward).
    Versions {
        /// The service's name.
        name: String,
        /// Roll the service out to this kept version.
        #[arg(long, value_name = "N")]
        set: Option<u32>,
    },
    /// Release a member of a service group into the group's traffic with a weight (0-1000),
    /// or take it out (`--standalone`).
    Release {
        /// The service's name.
        name: String,
        /// Its share of the group's requests, 0 to 1000 (-1: the default, 100).
        #[arg(long, allow_hyphen_values = true)]
        weight: i64,
        /// Take only its own endpoint's requests, none of the group's.
        #[arg(long)]
        standalone: bool,
    },
    /// Show a service's mirror and its counts; or copy `--ratio` percent of its requests to
    /// `--target` services (ratio 0 removes the mirror).
    Mirror {
        /// The service's name.
        name: String,
        /// The share of requests copied, 0 to 100.
        #[arg(long, requires = "target")]
        ratio: Option<u32>,
        /// The services copies go to, separated by commas.
        #[arg(long, value_delimiter = ',')]
        target: Vec<String>,
    },
    /// List a service's instances, or restart some of them.
    Instances {
        /// The service's name.
        name: String,
        /// Restart these instances (names separated by commas) instead of listing.
        #[arg(long, value_name = "NAMES")]
        restart: Option<String>,
    },
    /// Show a service's autoscaler; set it from FILE (`{"min", "max", "scaleStrategies",
    /// "behavior"}`), or remove it.
    Autoscaler {
        /// The service's name.
        name: String,
        /// The autoscaler config to set.
        #[arg(conflicts_with = "delete")]
        file: Option<PathBuf>,
        /// Remove the autoscaler's strategies.
        #[arg(long)]
        delete: bool,
    },
    /// Show a service's cron scaler; set it from FILE (`{"ScaleJobs": [{"Name", "Schedule",
    /// "TargetSize", "TimeZone"}]}`, six-field cron with seconds first), or remove it.
    Cronscaler {
        /// The service's name.
        name: String,
        /// The cron scaler config to set.
        #[arg(conflicts_with = "delete")]
        file: Option<PathBuf>,
        /// Remove every scale job.
        #[arg(long)]
        delete: bool,
    },
}

/// Runs one `eas service` command and says how the process should exit.
pub fn run(args: &ServiceArgs) -> ExitCode {
    let client = Client::new(args);
    match command(&client, &args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

fn command(client: &Client, command: &ServiceCommand) -> Result<(), Failure> {
    use ServiceCommand as C;
    let service = |name: &str| client.service_path(name, "");
    let answer = match command {
        C::Create { file } => client.send(Method::Post, "/api/v2/services", &[], Some(file))?,
        C::List => {
            let text = client.send(Method::Get, "/api/v2/services", &[], None)?;
            let list: ListServicesResponse = serde_json::from_str(&text)
                .map_err(|e| Failure(format!("eas service list: unexpected answer: {e}")))?;
            print!("{}", table(&list));
            return Ok(());
        }
        C::Describe { name } => client.send(Method::Get, &service(name), &[], None)?,
        C::Update { name, file } => client.send(Method::Put, &service(name), &[], Some(file))?,
        C::Delete { name } => client.send(Method::Delete, &service(name), &[], None)?,
        C::Start { name } => {
            client.send(Method::Put, &client.service_path(name, "/start"), &[], None)?
        }
        C::Stop { name } => {
            client.send(Method::Put, &client.service_path(name, "/stop"), &[], None)?
        }
        C::Restart { name } => client.send(
            Method::Put,
            &client.service_path(name, "/restart"),
            &[],
            None,
        )?,
        C::Versions { name, set } => match set {
            Some(version) => client.send_bytes(
                Method::Put,
                &client.service_path(name, "/version"),
                &[],
                Some(format!(r#"{{"Version": {version}}}"#).into_bytes()),
            )?,
            None => client.send(
                Method::Get,
                &client.service_path(name, "/versions"),
                &[],
                None,
            )?,
        },
        C::Release {
            name,
            weight,
            standalone,
        } => {
            let state = if *standalone {
                "standalone"
            } else {
                "grouping"
            };
            let body = serde_json::json!({"Weight": weight, "TrafficState": state});
            client.send_bytes(
                Method::Put,
                &client.service_path(name, "/release"),
                &[],
                Some(body.to_string().into_bytes()),
            )?
        }
        C::Mirror {
            name,
            ratio,
            target,
        } => {
            let path = client.service_path(name, "/mirror");
            match ratio {
                Some(ratio) => {
                    let body = serde_json::json!({"Ratio": ratio, "Target": target});
                    client.send_bytes(
                        Method::Put,
                        &path,
                        &[],
                        Some(body.to_string().into_bytes()),
                    )?
                }
                None => client.send(Method::Get, &path, &[], None)?,
            }
        }
        C::Instances { name, restart } => {
            let path = client.service_path(name, "/instances");
            match restart {
                Some(list) => {
                    client.send(Method::Delete, &path, &[("InstanceList", list)], None)?
                }
                None => client.send(Method::Get, &path, &[], None)?,
            }
        }
        C::Autoscaler { name, file, delete } => client.config(
            &client.service_path(name, "/autoscaler"),
            file.as_deref(),
            *delete,
        )?,
        C::Cronscaler { name, file, delete } => client.config(
            &client.service_path(name, "/cronscaler"),
            file.as_deref(),
            *delete,
        )?,
    };
    println!("{}", pretty(&answer));
    Ok(())
}

/// `list` as a table: name, status, running/total instances.
fn table(list: &ListServicesResponse) -> String {
    let rows: Vec<[String; 3]> = list
        .services
        .iter()
        .map(|s| {
            [
                s.service_name.clone(),
                s.status.to_string(),
                format!("{}/{}", s.running_instance, s.total_instance),
            ]
        })
        .collect();
    let header = ["NAME", "STATUS", "RUNNING/TOTAL"].map(str::to_owned);
    let width = |column: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (name, status) = (width(0), width(1));
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{:name$}  {:status$}  {}", row[0], row[1], row[2]);
    }
    out
}

/// The answer as indented JSON, or as it came when it is not JSON.
fn pretty(answer: &str) -> String {
    serde_json::from_str::<serde_json::Value>(answer).map_or_else(
        |_| answer.trim_end().to_owned(),
        |value| format!("{value:#}"),
    )
}

/// Why a command failed, as printed on stderr.
#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// The control API's client: base URL, admin token, cluster.
struct Client {
    agent: ureq::Agent,
    server: String,
    token: Option<String>,
    /// Whether the token came from nowhere, to explain a 401.
    token_missing: bool,
    cluster: String,
}

impl Client {
    fn new(args: &ServiceArgs) -> Self {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let server = args
            .server
            .clone()
            .or_else(|| from_env(SERVER_ENV))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let token = args
            .admin_token
            .clone()
            .or_else(|| from_env(ADMIN_TOKEN_ENV));
        let config = ureq::Agent::config_builder()
            // Non-2xx answers carry an ErrorResponse to print, not an error to bail out on.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // Creating a service can wait for its model; a stuck server should still end.
            .timeout_global(Some(Duration::from_secs(600)))
            .build();
        Self {
            agent: config.into(),
            server: server.trim_end_matches('/').to_owned(),
            token_missing: token.is_none(),
            token,
            cluster: args.cluster.clone(),
        }
    }

    /// `/api/v2/services/{cluster}/{name}{suffix}`.
    fn service_path(&self, name: &str, suffix: &str) -> String {
        format!(
            "/api/v2/services/{}/{}{suffix}",
            encode(&self.cluster),
            encode(name)
        )
    }

    /// GET the config at `path`, PUT `file` there, or DELETE it.
    fn config(&self, path: &str, file: Option<&Path>, delete: bool) -> Result<String, Failure> {
        match (file, delete) {
            (_, true) => self.send(Method::Delete, path, &[], None),
            (Some(file), false) => self.send(Method::Put, path, &[], Some(file)),
            (None, false) => self.send(Method::Get, path, &[], None),
        }
    }

    /// Sends one request (with `file`'s JSON as the body) and returns the body of a 2xx
    /// answer.
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        file: Option<&Path>,
    ) -> Result<String, Failure> {
        let body = file.map(read_json).transpose()?;
        self.send_bytes(method, path, query, body)
    }

    /// Sends one request with `body` (JSON) and returns the body of a 2xx answer.
    fn send_bytes(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<String, Failure> {
        let url = format!("{}{path}", self.server);
        let result = match (method, body) {
            (Method::Get, _) => self.prepare(self.agent.get(&url), query).call(),
            (Method::Delete, _) => self.prepare(self.agent.delete(&url), query).call(),
            (Method::Post, body) => self.send_body(self.agent.post(&url), query, body),
            (Method::Put, body) => self.send_body(self.agent.put(&url), query, body),
        };
        let response = result.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| Failure(format!("eas service: reading the answer of {url}: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let mut line = match serde_json::from_str::<ErrorResponse>(&text) {
            Ok(error) if !error.code.is_empty() => error.to_string(),
            _ => format!("HTTP {status}: {}", text.trim()),
        };
        if status == 401 && self.token_missing {
            line.push_str(" (no admin token given: use --admin-token or EAS_ADMIN_TOKEN)");
        }
        Err(Failure(line))
    }

    fn prepare<B>(
        &self,
        mut request: ureq::RequestBuilder<B>,
        query: &[(&str, &str)],
    ) -> ureq::RequestBuilder<B> {
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        request
    }

    fn send_body(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithBody>,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let request = self.prepare(request, query);
        match body {
            Some(body) => request
                .header("Content-Type", "application/json")
                .send(body),
            None => request.send_empty(),
        }
    }

    /// A request that got no answer: say which server, and what to check.
    fn unreachable(&self, error: &ureq::Error) -> Failure {
        let server = &self.server;
        let connection = matches!(
            error,
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_)
        ) || matches!(error, ureq::Error::Io(io) if matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::TimedOut
        ));
        if connection {
            Failure(format!(
                "eas service: cannot reach the eas server at {server} ({error}); is `eas serve` \
                 running there? Point to it with --server or {SERVER_ENV}"
            ))
        } else {
            Failure(format!("eas service: request to {server} failed: {error}"))
        }
    }
}

/// The file's bytes, once they are known to be JSON (the server checks what they mean).
fn read_json(file: &Path) -> Result<Vec<u8>, Failure> {
    let shown = file.display();
    let bytes = std::fs::read(file).map_err(|e| Failure(format!("{shown}: cannot read: {e}")))?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|e| Failure(format!("{shown}: not JSON: {e}")))?;
    Ok(bytes)
}

/// Percent-encodes a path segment (names are plain in practice; this keeps odd ones intact).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use eas::core::control::{ServiceStatus, ServiceSummary};

    use super::*;

    #[test]
    fn table_should_align_name_status_and_instances() {
        let list = ListServicesResponse {
            services: vec![
                ServiceSummary {
                    service_name: "echo".into(),
                    status: ServiceStatus::Running,
                    running_instance: 2,
                    total_instance: 2,
                    ..ServiceSummary::default()
                },
                ServiceSummary {
                    service_name: "a-longer-name".into(),
                    status: ServiceStatus::Stopped,
                    ..ServiceSummary::default()
                },
            ],
            ..ListServicesResponse::default()
        };
        assert_eq!(
            table(&list),
            "NAME           STATUS   RUNNING/TOTAL\n\
             echo           Running  2/2\n\
             a-longer-name  Stopped  0/0\n"
        );
    }

    #[test]
    fn encode_should_keep_plain_names_and_escape_the_rest() {
        assert_eq!(encode("echo_v2-1.0"), "echo_v2-1.0");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
