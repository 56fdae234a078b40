//! `eas service ...` against a real `eas serve` started with no spec: create a service through
//! the control API, list and describe it, set its autoscaler and cron scaler, stop, start,
//! restart an instance, delete it; and the errors a user sees (401, 404, 409, no server).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use eas::core::control::{
    AutoscalerConfig, CronScalerConfig, ListInstancesResponse, ScaleStrategy, ScalingBehavior,
    ScalingRules, ServiceStatus, ServiceSummary,
};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-secret-T";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory of its own under the system temp directory, empty.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eas-cli-service-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

/// An `eas serve` with no spec, killed when dropped.
struct Server {
    child: Child,
    url: String,
    /// What the server goes on printing; dropping it would close the pipe under it.
    _output: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Server {
    /// Starts `eas serve` with its state in `dir/state` and its log in `dir/serve.log`.
    fn start(dir: &std::path::Path) -> Self {
        let log_path = dir.join("serve.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_eas"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                ADMIN_TOKEN,
            ])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env_remove("EAS_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("eas serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let Some(Ok(first)) = lines.next() else {
            let status = child.wait().expect("eas serve exits");
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("eas serve printed no address and exited ({status}):\n{log}");
        };
        let addr = first
            .strip_prefix("eas: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .trim()
            .to_owned();
        Self {
            child,
            url: format!("http://{addr}"),
            _output: lines,
        }
    }

    /// `eas service --server URL --admin-token T ARGS...`.
    fn eas(&self, args: &[&str]) -> Output {
        self.eas_with_token(Some(ADMIN_TOKEN), args)
    }

    fn eas_with_token(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eas"));
        command
            .args(["service", "--server", &self.url])
            .env_remove("EAS_SERVER")
            .env_remove("EAS_ADMIN_TOKEN");
        if let Some(token) = token {
            command.args(["--admin-token", token]);
        }
        command.args(args).output().expect("the eas binary runs")
    }

    /// Runs a command that must succeed and print JSON; that JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.eas(args);
        assert!(
            out.status.success(),
            "eas service {args:?}: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "eas service {args:?}: not JSON ({e}): {}",
                text(&out.stdout)
            )
        })
    }

    fn describe(&self, name: &str) -> ServiceSummary {
        serde_json::from_value(self.json(&["describe", name])).expect("a ServiceSummary")
    }

    /// Describes `name` until `done` holds (up to a minute); the last description.
    fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&ServiceSummary) -> bool,
    ) -> ServiceSummary {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let summary = self.describe(name);
            if done(&summary) {
                return summary;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {what}: {summary:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts a command failed with exit 1 and `Code: ...` on stderr; the stderr.
fn assert_fails_with(out: &Output, code: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}, stderr: {err}",
        text(&out.stdout)
    );
    assert!(
        err.starts_with(&format!("{code}: ")),
        "expected {code}: {err}"
    );
    err
}

/// examples/services/echo.json with an absolute model path (the server reads it from its own
/// directory) and no autoscaler, so that it runs exactly `metadata.instance` (2) instances.
fn echo_spec(dir: &std::path::Path) -> PathBuf {
    let example = format!("{}/examples/services/echo.json", env!("CARGO_MANIFEST_DIR"));
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(example).expect("echo.json")).expect("JSON");
    spec["model_path"] = json!(format!("{}/examples/models", env!("CARGO_MANIFEST_DIR")));
    spec.as_object_mut().expect("object").remove("autoscaler");
    let path = dir.join("echo.json");
    std::fs::write(&path, spec.to_string()).expect("write");
    path
}

fn write(dir: &std::path::Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write");
    path.to_string_lossy().into_owned()
}

#[test]
fn service_commands_should_manage_a_service_through_the_control_api() {
    let dir = temp_dir("lifecycle");
    let server = Server::start(&dir);
    let spec = echo_spec(&dir);
    let spec = spec.to_string_lossy();

    // create, and create again
    let created = server.json(&["create", &spec]);
    assert_eq!(created["ServiceName"], "echo", "{created:#}");
    assert_eq!(created["ClusterId"], "local", "{created:#}");
    assert!(created["Status"].is_string(), "{created:#}");
    assert_fails_with(&server.eas(&["create", &spec]), "Conflict");

    // describe: running with its two instances, the spec without its token
    let summary = server.wait_for("echo", "Running with 2 instances", |s| {
        s.status == ServiceStatus::Running && s.running_instance == 2
    });
    assert_eq!(summary.service_name, "echo");
    assert_eq!(summary.cluster_id, "local");
    assert_eq!((summary.total_instance, summary.desired_instance), (2, 2));
    assert!(!summary.create_time.is_empty() && !summary.update_time.is_empty());
    assert_eq!(summary.service_config["metadata"]["name"], "echo");
    assert_eq!(summary.service_config["processor"], "echo");
    assert!(
        summary.service_config.get("token").is_none(),
        "{summary:#?}"
    );
    let raw = server.json(&["describe", "echo"]);
    assert!(raw.get("AccessToken").is_none(), "{raw:#}");

    // list: a table
    let out = server.eas(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "STATUS", "RUNNING/TOTAL"],
            vec!["echo", "Running", "2/2"]
        ],
        "{table}"
    );

    // instances
    let instances: ListInstancesResponse =
        serde_json::from_value(server.json(&["instances", "echo"])).expect("a list");
    assert_eq!(instances.total_count, 2);
    assert_eq!(instances.instances.len(), 2);
    assert!(
        instances.instances.iter().all(|i| i.ready),
        "{instances:#?}"
    );
    let first = instances.instances[0].instance_name.clone();
    let restarted = server.json(&["instances", "echo", "--restart", &first]);
    assert!(restarted["Message"].is_string(), "{restarted:#}");

    // autoscaler: set, read back as set, and seen in the spec
    let wanted = AutoscalerConfig {
        min: 1,
        max: 3,
        scale_strategies: vec![ScaleStrategy::new("qps", 500.0)],
        behavior: Some(ScalingBehavior {
            scale_up: None,
            scale_down: Some(ScalingRules {
                stabilization_window_seconds: Some(0),
            }),
        }),
    };
    let file = write(
        &dir,
        "autoscaler.json",
        &serde_json::to_value(&wanted).expect("json"),
    );
    let answer = server.json(&["autoscaler", "echo", &file]);
    assert!(answer["Message"].is_string(), "{answer:#}");
    let got: AutoscalerConfig =
        serde_json::from_value(server.json(&["autoscaler", "echo"])).expect("a config");
    assert_eq!(got, wanted);
    let config = server.describe("echo").service_config;
    assert_eq!(config["autoscaler"]["min"], 1, "{config:#}");
    assert_eq!(config["autoscaler"]["max"], 3, "{config:#}");
    assert_eq!(
        config["autoscaler"]["strategies"]["qps"], 500.0,
        "{config:#}"
    );

    // a strategy on another service's metrics is refused, naming the field
    let other = write(
        &dir,
        "other.json",
        &json!({"min": 1, "max": 3,
                "scaleStrategies": [{"metricName": "queue", "threshold": 5, "service": "x"}]}),
    );
    let err = assert_fails_with(&server.eas(&["autoscaler", "echo", &other]), "Unsupported");
    assert!(err.contains("scaleStrategies[0].service"), "{err}");

    // cron scaler: six-field jobs kept beside the autoscaler; ExcludeDates refused
    let jobs = write(
        &dir,
        "cron.json",
        &json!({"ScaleJobs": [{"Name": "night", "Schedule": "0 0 22 * * *", "TargetSize": 1,
                               "TimeZone": "Asia/Shanghai"}],
                "ExcludeDates": []}),
    );
    assert!(server.json(&["cronscaler", "echo", &jobs])["Message"].is_string());
    let cron: CronScalerConfig =
        serde_json::from_value(server.json(&["cronscaler", "echo"])).expect("a config");
    assert_eq!(cron.scale_jobs.len(), 1, "{cron:#?}");
    assert_eq!(cron.scale_jobs[0].schedule, "0 0 22 * * *");
    assert_eq!(cron.scale_jobs[0].target_size, Some(1));
    assert_eq!(
        cron.scale_jobs[0].time_zone.as_deref(),
        Some("Asia/Shanghai")
    );
    let got: AutoscalerConfig =
        serde_json::from_value(server.json(&["autoscaler", "echo"])).expect("a config");
    assert_eq!(got, wanted, "the cron scaler leaves the autoscaler alone");
    let excluded = write(
        &dir,
        "excluded.json",
        &json!({"ScaleJobs": [], "ExcludeDates": ["* * * 1 1 *"]}),
    );
    let err = assert_fails_with(
        &server.eas(&["cronscaler", "echo", &excluded]),
        "Unsupported",
    );
    assert!(err.contains("ExcludeDates"), "{err}");
    assert!(server.json(&["cronscaler", "echo", "--delete"])["Message"].is_string());
    let cron: CronScalerConfig =
        serde_json::from_value(server.json(&["cronscaler", "echo"])).expect("a config");
    assert!(cron.scale_jobs.is_empty(), "{cron:#?}");

    // versions: an update that needs new instances makes version 2 and rolls it out; `--set`
    // moves back to version 1 the same way
    let change = write(&dir, "v2.json", &json!({"model_config": "second"}));
    let answer = server.json(&["update", "echo", &change]);
    assert!(
        answer["Message"]
            .as_str()
            .unwrap_or("")
            .contains("version 2"),
        "{answer:#}"
    );
    let updated = server.wait_for("echo", "Running version 2", |s| {
        s.status == ServiceStatus::Running && s.current_version == 2 && s.rollout.is_none()
    });
    assert_eq!(updated.service_config["model_config"], "second");
    let versions = server.json(&["versions", "echo"]);
    let listed: Vec<(u64, bool)> = versions
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| {
            (
                v["Version"].as_u64().unwrap_or(0),
                v["Current"] == json!(true),
            )
        })
        .collect();
    assert_eq!(listed, vec![(1, false), (2, true)], "{versions:#}");
    assert!(server.json(&["versions", "echo", "--set", "1"])["Message"].is_string());
    let back = server.wait_for("echo", "Running version 1 again", |s| {
        s.status == ServiceStatus::Running && s.current_version == 1 && s.rollout.is_none()
    });
    assert!(
        back.service_config.get("model_config").is_none(),
        "{back:#?}"
    );
    assert_eq!(back.latest_version, 2);
    assert_fails_with(&server.eas(&["versions", "echo", "--set", "9"]), "NotFound");

    // stop keeps the spec at 0 instances; start brings it back within the autoscaler's bounds
    assert!(server.json(&["stop", "echo"])["Message"].is_string());
    let stopped = server.wait_for("echo", "Stopped", |s| {
        s.status == ServiceStatus::Stopped && s.running_instance == 0 && s.total_instance == 0
    });
    assert_eq!(stopped.service_config["metadata"]["name"], "echo");
    assert!(server.json(&["start", "echo"])["Message"].is_string());
    let running = server.wait_for("echo", "Running again", |s| {
        s.status == ServiceStatus::Running
            && s.running_instance >= 1
            && s.running_instance == s.desired_instance
    });
    assert!(running.desired_instance <= 3, "{running:#?}");

    // delete: gone from describe and list
    assert!(server.json(&["delete", "echo"])["Message"].is_string());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = server.eas(&["describe", "echo"]);
        if !out.status.success() {
            assert_fails_with(&out, "NotFound");
            break;
        }
        assert!(Instant::now() < deadline, "echo is never deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = server.eas(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "only the header: {}",
        text(&out.stdout)
    );
}

#[test]
fn service_commands_should_print_the_servers_error_and_exit_1() {
    let dir = temp_dir("errors");
    let server = Server::start(&dir);

    let err = assert_fails_with(&server.eas_with_token(None, &["list"]), "Unauthorized");
    assert!(err.contains("--admin-token"), "says how to give one: {err}");
    let err = assert_fails_with(
        &server.eas_with_token(Some("wrong"), &["list"]),
        "Unauthorized",
    );
    assert!(!err.contains("no admin token given"), "{err}");

    assert_fails_with(&server.eas(&["describe", "nosuch"]), "NotFound");
    assert_fails_with(&server.eas(&["stop", "nosuch"]), "NotFound");

    let bad = write(
        &dir,
        "bad.json",
        &json!({"metadata": {"name": "bad", "instance": 1, "rpc": {"max_batch_sise": 4}},
                "processor": "echo", "model_path": "."}),
    );
    let err = assert_fails_with(&server.eas(&["create", &bad]), "InvalidParameter");
    assert!(err.contains("metadata.rpc.max_batch_sise"), "{err}");

    // The token from the environment works as the flag does.
    let out = Command::new(env!("CARGO_BIN_EXE_eas"))
        .args(["service", "list"])
        .env("EAS_SERVER", &server.url)
        .env("EAS_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("the eas binary runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "NAME  STATUS  RUNNING/TOTAL");
}

#[test]
fn service_commands_should_name_the_server_they_cannot_reach() {
    // Bind and drop a listener: its port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_eas"))
        .args(["service", "--server", &url, "list"])
        .env_remove("EAS_ADMIN_TOKEN")
        .output()
        .expect("the eas binary runs");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach the eas server at {url}")),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let missing = std::env::temp_dir().join(format!(
        "eas-cli-service-{}-missing.json",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_eas"))
        .args(["service", "--server", &url, "create"])
        .arg(&missing)
        .output()
        .expect("the eas binary runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}
