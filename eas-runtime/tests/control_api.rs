//! The control API (`/api/v2/services...`) over a real socket on 127.0.0.1, against a
//! platform with an admin token and a state directory: a service's whole life (create, list,
//! describe, update in place, refused updates, stop, start, restart instances, delete), the
//! admin token on every route, hostile input, desired state across a restart of the platform
//! and a second platform on a state directory that is in use.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use eas_core::control::{
    AutoscalerConfig, ListInstancesResponse, ListServicesResponse, ScaleStrategy, ScalingBehavior,
    ScalingRules, ServiceStatus, ServiceSummary,
};
use eas_runtime::platform::{Platform, RunningPlatform};
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN: &str = "adm";
const SERVICE_TOKEN: &str = "svc-token";

/// A platform with the control API behind [`ADMIN`] and its desired state in `state`.
async fn platform(state: &Path) -> RunningPlatform {
    Platform::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .admin_token(ADMIN)
        .state_dir(state)
        .control_period(Duration::from_millis(50))
        .start()
        .await
        .expect("the platform starts")
}

/// An echo service with `instance` instances, the service token and no autoscaler.
fn echo(name: &str, instance: u32) -> Value {
    json!({
        "metadata": {"name": name, "instance": instance},
        "processor": "echo",
        "model_path": ".",
        "token": SERVICE_TOKEN,
    })
}

/// A status, and the body as JSON (or as a JSON string when it is not JSON).
struct Answer {
    status: u16,
    body: Value,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:#}", self.status, self.body)
    }
}

impl Answer {
    /// Asserts a 2xx answer; its body.
    #[track_caller]
    fn ok(self) -> Value {
        assert!((200..300).contains(&self.status), "{self:?}");
        self.body
    }

    /// Asserts an EAS error answer with `status` and `code`; its message.
    #[track_caller]
    fn refused(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["Code"], code, "{self:?}");
        let message = self.body["Message"].as_str().unwrap_or_default().to_owned();
        assert!(!message.is_empty(), "{self:?}");
        message
    }
}

/// Raw HTTP to one platform.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &RunningPlatform) -> Self {
        Self {
            // A connection per request: the server closes a connection after refusing a body
            // it did not read (413), and a pooled one could be picked just as it closes.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            base: format!("http://{}", server.local_addr()),
        }
    }

    /// A client whose connections come from `local` (any of 127.0.0.0/8 on loopback): the
    /// server throttles wrong admin tokens per client address.
    fn from_address(server: &RunningPlatform, local: [u8; 4]) -> Self {
        Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .local_address(std::net::IpAddr::from(local))
                .build()
                .expect("client"),
            base: format!("http://{}", server.local_addr()),
        }
    }

    /// `method path` with `Authorization: auth` (none when `None`) and `body`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        self.try_send(method, path, auth, body)
            .await
            .unwrap_or_else(|e| panic!("the server does not answer: {e}"))
    }

    /// [`send`](Self::send), or why no answer came back (a server that refuses a request
    /// before reading its body may close the connection while the client still writes it).
    async fn try_send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer { status, body })
    }

    /// `method path` as the admin, with a JSON body.
    async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let body = body.map(|b| b.to_string().into_bytes());
        self.send(method, path, Some(ADMIN), body).await
    }

    async fn create(&self, spec: &Value) -> Answer {
        self.admin(Method::POST, "/api/v2/services", Some(spec))
            .await
    }

    async fn describe(&self, name: &str) -> ServiceSummary {
        let body = self
            .admin(Method::GET, &format!("/api/v2/services/local/{name}"), None)
            .await
            .ok();
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("not a ServiceSummary ({e}): {body:#}"))
    }

    async fn list(&self) -> ListServicesResponse {
        let body = self.admin(Method::GET, "/api/v2/services", None).await.ok();
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("not a ListServicesResponse ({e}): {body:#}"))
    }

    async fn instances(&self, name: &str) -> ListInstancesResponse {
        let path = format!("/api/v2/services/local/{name}/instances");
        let body = self.admin(Method::GET, &path, None).await.ok();
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("not a ListInstancesResponse ({e}): {body:#}"))
    }

    /// Describes `name` until `done` holds (up to 30 s); the last description.
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&ServiceSummary) -> bool,
    ) -> ServiceSummary {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let summary = self.describe(name).await;
            if done(&summary) {
                return summary;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {what}: {summary:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A predict request with the service's token.
    async fn predict(&self, name: &str, body: &str) -> Answer {
        let path = format!("/api/predict/{name}");
        self.send(
            Method::POST,
            &path,
            Some(SERVICE_TOKEN),
            Some(body.as_bytes().to_vec()),
        )
        .await
    }
}

/// One request with the admin token over a fresh connection, its path sent byte for byte;
/// the status.
fn raw(addr: SocketAddr, method: &str, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {ADMIN}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"))
}

/// A create with the admin token and a body of `length` spaces, sent whole before the answer
/// is read (so that no unread byte makes the server's close a reset); the whole answer.
fn create_raw(addr: SocketAddr, length: usize) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "POST /api/v2/services HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    stream.write_all(&vec![b' '; length]).expect("body");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn running_with(n: u32) -> impl Fn(&ServiceSummary) -> bool {
    move |s| s.status == ServiceStatus::Running && s.running_instance == n && s.total_instance == n
}

fn stopped(s: &ServiceSummary) -> bool {
    s.status == ServiceStatus::Stopped && s.running_instance == 0 && s.total_instance == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_should_live_its_whole_life_through_the_control_api() {
    let state = tempfile::tempdir().expect("tempdir");
    let server = platform(state.path()).await;
    let api = Api::new(&server);
    let path = "/api/v2/services/local/life";

    // create
    let created = api.create(&echo("life", 1)).await.ok();
    assert_eq!(created["ServiceName"], "life", "{created:#}");
    assert_eq!(created["ClusterId"], "local", "{created:#}");
    assert!(created["Status"].is_string(), "{created:#}");

    // list
    let listed = api.list().await;
    assert_eq!(listed.total_count, 1, "{listed:#?}");
    let names: Vec<&str> = listed
        .services
        .iter()
        .map(|s| s.service_name.as_str())
        .collect();
    assert_eq!(names, ["life"]);

    // describe: EAS's shape, Running, the spec without its token
    let summary = api.wait_for("life", "Running", running_with(1)).await;
    assert_eq!(summary.service_name, "life");
    assert_eq!(summary.cluster_id, "local");
    assert_eq!(summary.desired_instance, 1);
    assert_eq!(summary.message, "version 1");
    assert_eq!(summary.service_config["metadata"]["name"], "life");
    assert_eq!(summary.service_config["processor"], "echo");
    assert!(
        summary.service_config.get("token").is_none(),
        "{summary:#?}"
    );
    let raw = api.admin(Method::GET, path, None).await.ok();
    for field in [
        "ServiceName",
        "Status",
        "RunningInstance",
        "TotalInstance",
        "ServiceConfig",
    ] {
        assert!(raw.get(field).is_some(), "{field} missing: {raw:#}");
    }
    assert!(
        !raw.to_string().contains(SERVICE_TOKEN),
        "the service's token leaks: {raw:#}"
    );
    assert_eq!(api.predict("life", "hi").await.ok(), "hi");

    // update metadata.instance in place (a merge patch): TotalInstance follows
    let answer = api
        .admin(
            Method::PUT,
            path,
            Some(&json!({"metadata": {"instance": 2}})),
        )
        .await
        .ok();
    assert!(answer["Message"].is_string(), "{answer:#}");
    let summary = api
        .wait_for("life", "Running with 2", running_with(2))
        .await;
    assert_eq!(summary.message, "version 2");
    assert_eq!(summary.service_config["metadata"]["instance"], 2);
    assert_eq!(
        summary.service_config["model_path"], ".",
        "the merge patch keeps the rest"
    );

    // a processor this platform does not have is refused before anything changes
    let message = api
        .admin(Method::PUT, path, Some(&json!({"processor": "nope"})))
        .await
        .refused(400, "InvalidParameter");
    assert!(message.contains("nope"), "{message}");
    let message = api
        .admin(
            Method::PUT,
            path,
            Some(&json!({"metadata": {"name": "other"}})),
        )
        .await
        .refused(400, "InvalidParameter");
    assert!(message.contains("metadata.name"), "{message}");
    let summary = api.describe("life").await;
    assert_eq!(summary.message, "version 2", "{summary:#?}");
    assert_eq!(summary.service_config["processor"], "echo");
    assert_eq!(summary.current_version, 1, "{summary:#?}");

    // a change that needs new instances makes version 2 of the service and rolls it out
    let answer = api
        .admin(Method::PUT, path, Some(&json!({"metadata": {"cpu": 2}})))
        .await
        .ok();
    assert!(
        answer["Message"]
            .as_str()
            .unwrap_or("")
            .contains("version 2"),
        "{answer:#}"
    );
    let summary = api
        .wait_for("life", "version 2 rolled out", |s| {
            running_with(2)(s) && s.current_version == 2 && s.rollout.is_none()
        })
        .await;
    assert_eq!(summary.service_config["metadata"]["cpu"], 2);
    assert_eq!(summary.latest_version, 2);

    // the autoscaler: set, read back as set, seen in the spec
    let wanted = AutoscalerConfig {
        min: 1,
        max: 3,
        scale_strategies: vec![ScaleStrategy::new("qps", 100.0)],
        behavior: Some(ScalingBehavior {
            scale_up: None,
            scale_down: Some(ScalingRules {
                stabilization_window_seconds: Some(0),
            }),
        }),
    };
    let autoscaler = format!("{path}/autoscaler");
    let body = serde_json::to_value(&wanted).expect("JSON");
    api.admin(Method::PUT, &autoscaler, Some(&body)).await.ok();
    let got: AutoscalerConfig =
        serde_json::from_value(api.admin(Method::GET, &autoscaler, None).await.ok())
            .expect("an AutoscalerConfig");
    assert_eq!(got, wanted);
    let config = api.describe("life").await.service_config;
    assert_eq!(config["autoscaler"]["min"], 1, "{config:#}");
    assert_eq!(config["autoscaler"]["max"], 3, "{config:#}");
    assert_eq!(
        config["autoscaler"]["strategies"]["qps"], 100.0,
        "{config:#}"
    );

    // stop: no instances, the spec kept, predict refused
    api.admin(Method::PUT, &format!("{path}/stop"), None)
        .await
        .ok();
    let summary = api.wait_for("life", "Stopped", stopped).await;
    assert_eq!(summary.service_config["metadata"]["name"], "life");
    let answer = api.predict("life", "hi").await;
    assert!(
        answer.status >= 400,
        "a stopped service answered: {answer:?}"
    );

    // start: back within the autoscaler's bounds
    api.admin(Method::PUT, &format!("{path}/start"), None)
        .await
        .ok();
    let summary = api
        .wait_for("life", "Running again", |s| {
            s.status == ServiceStatus::Running
                && s.running_instance >= 1
                && s.running_instance == s.desired_instance
                && s.total_instance == s.desired_instance
        })
        .await;
    assert!(summary.desired_instance <= 3, "{summary:#?}");
    assert_eq!(api.predict("life", "again").await.ok(), "again");

    // restart one instance: it is replaced by one with a new name
    let before = api.instances("life").await;
    let old = before.instances[0].instance_name.clone();
    let others: BTreeSet<String> = before
        .instances
        .iter()
        .skip(1)
        .map(|i| i.instance_name.clone())
        .collect();
    let restart = format!("{path}/instances?InstanceList={old}");
    let answer = api.admin(Method::DELETE, &restart, None).await.ok();
    assert!(answer["Message"].is_string(), "{answer:#}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = api.instances("life").await;
        let names: BTreeSet<String> = now
            .instances
            .iter()
            .map(|i| i.instance_name.clone())
            .collect();
        if !names.contains(&old)
            && names.is_superset(&others)
            && now.instances.len() == before.instances.len()
            && now.instances.iter().all(|i| i.ready)
        {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "{old} is never replaced: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fresh: Vec<&String> = after.difference(&others).collect();
    assert_eq!(fresh.len(), 1, "{after:?}");
    assert_ne!(fresh[0], &old);
    api.admin(
        Method::DELETE,
        &format!("{path}/instances?InstanceList=life-999"),
        None,
    )
    .await
    .refused(404, "NotFound");

    // delete: gone from describe, list and predict
    api.admin(Method::DELETE, path, None).await.ok();
    api.admin(Method::GET, path, None)
        .await
        .refused(404, "NotFound");
    api.admin(Method::DELETE, path, None)
        .await
        .refused(404, "NotFound");
    assert_eq!(api.list().await.total_count, 0);
    assert_eq!(api.predict("life", "hi").await.status, 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_control_route_should_want_the_admin_token() {
    let state = tempfile::tempdir().expect("tempdir");
    let server = platform(state.path()).await;
    let api = Api::new(&server);
    api.create(&echo("guarded", 1)).await.ok();
    api.wait_for("guarded", "Running", running_with(1)).await;

    let service = "/api/v2/services/local/guarded";
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v2/services".to_owned()),
        (Method::POST, "/api/v2/services".to_owned()),
        (Method::GET, service.to_owned()),
        (Method::PUT, service.to_owned()),
        (Method::DELETE, service.to_owned()),
        (Method::PUT, format!("{service}/start")),
        (Method::PUT, format!("{service}/stop")),
        (Method::PUT, format!("{service}/restart")),
        (Method::GET, format!("{service}/instances")),
        (
            Method::DELETE,
            format!("{service}/instances?InstanceList=guarded-0"),
        ),
        (Method::GET, format!("{service}/autoscaler")),
        (Method::PUT, format!("{service}/autoscaler")),
        (Method::DELETE, format!("{service}/autoscaler")),
        (Method::GET, format!("{service}/cronscaler")),
        (Method::PUT, format!("{service}/cronscaler")),
        (Method::DELETE, format!("{service}/cronscaler")),
        (Method::POST, format!("{service}/metrics")),
    ];
    // A body that would be accepted with the token, so that only the token is missing.
    let body = |method: &Method, path: &str| -> Option<Vec<u8>> {
        let value = if path == "/api/v2/services" {
            echo("intruder", 1)
        } else if path.ends_with("/autoscaler") {
            json!({"min": 1, "max": 2, "scaleStrategies": [{"metricName": "qps", "threshold": 1}]})
        } else if path.ends_with("/cronscaler") {
            json!({"ScaleJobs": []})
        } else if path.ends_with("/metrics") {
            json!({"m": 1.0})
        } else if *method == Method::PUT && path == service {
            json!({"metadata": {"instance": 3}})
        } else {
            return None;
        };
        Some(value.to_string().into_bytes())
    };
    let wrong = [
        None,
        Some("wrong"),
        Some("Bearer wrong"),
        Some(SERVICE_TOKEN),
        Some("Bearer svc-token"),
        Some("adm2"),
        Some("ad"),
        Some("Basic adm"),
    ];
    for (n, (method, path)) in routes.iter().enumerate() {
        // Each route's 7 wrong tokens from an address of their own, under the 10 failures an
        // address may make before it is throttled (see the next test).
        let from = Api::from_address(&server, [127, 0, 1, u8::try_from(n + 1).unwrap()]);
        for auth in wrong {
            let answer = from
                .send(method.clone(), path, auth, body(method, path))
                .await;
            assert_eq!(
                (answer.status, &answer.body["Code"]),
                (401, &json!("Unauthorized")),
                "{method} {path} with {auth:?}: {answer:?}"
            );
        }
    }
    // Nothing was done by any of them.
    let listed = api.list().await;
    assert_eq!(listed.total_count, 1, "{listed:#?}");
    let summary = api.wait_for("guarded", "Running", running_with(1)).await;
    assert_eq!(summary.message, "version 1", "{summary:#?}");
    assert!(summary.service_config.get("autoscaler").is_none());

    // The `Bearer` form is accepted, on reads and writes.
    let bearer = format!("Bearer {ADMIN}");
    let answer = api
        .send(Method::GET, "/api/v2/services", Some(&bearer), None)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = api
        .send(
            Method::PUT,
            service,
            Some(&bearer),
            body(&Method::PUT, service),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    api.wait_for("guarded", "Running with 3", running_with(3))
        .await;
    server.shutdown().await;
}

/// Guessing the admin token: an address gets 10 wrong tries, then 429 with `Retry-After` for
/// anything it sends with a token, the right one included (so a guess cannot be confirmed),
/// on the control API, the benchmark-task API and the console's sign-in alike; other addresses
/// go on as before.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_admin_tokens_should_be_throttled_per_address() {
    let state = tempfile::tempdir().expect("tempdir");
    let server = platform(state.path()).await;
    let guesser = Api::from_address(&server, [127, 0, 0, 3]);
    for n in 0..10 {
        if n == 5 {
            // Without a token it is not a guess: 401, and it costs no attempt.
            guesser
                .send(Method::GET, "/api/v2/services", None, None)
                .await
                .refused(401, "Unauthorized");
        }
        let answer = guesser
            .send(
                Method::GET,
                "/api/v2/services",
                Some(&format!("guess-{n}")),
                None,
            )
            .await;
        answer.refused(401, "Unauthorized");
    }
    for auth in ["guess-10", ADMIN] {
        let response = guesser
            .client
            .get(format!("{}/api/v2/services", guesser.base))
            .header("authorization", auth)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 429, "{auth}");
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .expect("text")
            .parse()
            .expect("seconds");
        assert!((1..=10).contains(&retry), "Retry-After: {retry}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["Code"], "TooManyRequests", "{body}");
    }
    // The same gate guards the benchmark-task API and the console's sign-in.
    guesser
        .send(Method::GET, "/api/v2/benchmark-tasks", Some(ADMIN), None)
        .await
        .refused(429, "TooManyRequests");
    let login = guesser
        .client
        .get(format!("{}/console?token={ADMIN}", guesser.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(login.status().as_u16(), 429);
    assert!(login.headers().get("set-cookie").is_none());
    // Another address is not affected.
    let operator = Api::new(&server);
    assert_eq!(
        operator
            .admin(Method::GET, "/api/v2/services", None)
            .await
            .status,
        200
    );
    server.shutdown().await;
}

/// A request the handler would refuse for its query (no `InstanceList`) must still be told
/// about the token first: 401 in EAS's shape, not the query extractor's plain-text 400.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_the_admin_token_should_get_401_before_its_query_is_parsed() {
    let state = tempfile::tempdir().expect("tempdir");
    let server = platform(state.path()).await;
    let api = Api::new(&server);
    api.create(&echo("guarded", 1)).await.ok();
    let path = "/api/v2/services/local/guarded/instances";
    for auth in [None, Some("wrong")] {
        api.send(Method::DELETE, path, auth, None)
            .await
            .refused(401, "Unauthorized");
        api.send(
            Method::DELETE,
            &format!("{path}?SoftRestart=maybe"),
            auth,
            None,
        )
        .await
        .refused(401, "Unauthorized");
    }
    // With the token, the missing list is the caller's mistake.
    api.admin(Method::DELETE, path, None).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_should_be_refused_with_the_right_code() {
    let state = tempfile::tempdir().expect("tempdir");
    let server = platform(state.path()).await;
    let api = Api::new(&server);
    let create =
        |body: Vec<u8>| api.send(Method::POST, "/api/v2/services", Some(ADMIN), Some(body));

    // not JSON
    let message = create(b"{\"metadata\": ".to_vec())
        .await
        .refused(400, "InvalidParameter");
    assert!(message.contains("not valid JSON"), "{message}");
    create(b"\xff\xfe\x00garbage".to_vec())
        .await
        .refused(400, "InvalidParameter");
    create(Vec::new()).await.refused(400, "InvalidParameter");
    create(b"[1, 2]".to_vec())
        .await
        .refused(400, "InvalidParameter");
    // nested past serde_json's recursion limit: refused, not a stack overflow
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    create(deep.into_bytes())
        .await
        .refused(400, "InvalidParameter");

    // a spec with errors: each named
    let bad = json!({"metadata": {"name": "bad", "instance": 1, "rpc": {"max_batch_sise": 4}},
                     "processor": "echo", "model_path": "."});
    let message = api.create(&bad).await.refused(400, "InvalidParameter");
    assert!(message.contains("metadata.rpc.max_batch_sise"), "{message}");
    let bad = json!({"metadata": {"name": "bad", "instance": 1, "cpu": -1},
                     "processor": "echo", "model_path": "."});
    let message = api.create(&bad).await.refused(400, "InvalidParameter");
    assert!(message.contains("metadata.cpu"), "{message}");

    // names that could escape a path or a route
    for name in ["../etc", "a/b", "..", "a..b", "A", "a b", "a%2Fb"] {
        let message = api
            .create(&echo(name, 1))
            .await
            .refused(400, "InvalidParameter");
        assert!(message.contains("metadata.name"), "{name}: {message}");
    }
    for path in [
        "/api/v2/services/local/..%2F..%2Fetc",
        "/api/v2/services/local/a%2Fb",
    ] {
        api.admin(Method::GET, path, None)
            .await
            .refused(404, "NotFound");
        api.admin(Method::DELETE, path, None)
            .await
            .refused(404, "NotFound");
    }
    // `..` as it is sent, not as a URL library would normalise it away
    for path in [
        "/api/v2/services/local/..",
        "/api/v2/services/local/../../../etc/passwd",
        "/api/v2/services/../../state.redb",
    ] {
        for method in ["GET", "DELETE", "PUT"] {
            let status = raw(server.local_addr(), method, path);
            assert!(
                [400, 404, 405].contains(&status),
                "{method} {path}: {status}"
            );
        }
    }
    let files: Vec<String> = std::fs::read_dir(state.path())
        .expect("state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, [eas_runtime::store::FILE_NAME], "{files:?}");

    // A huge body is refused, not buffered: past axum's default limit on bodies (2 MB) the
    // answer is 413 in the API's shape. Without the token the answer is 401 or 413, and the
    // server may close the connection before the client has written it all.
    // One byte past axum's default limit of 2 MiB.
    let answer = create_raw(server.local_addr(), (2 << 20) + 1);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""Code":"PayloadTooLarge""#), "{answer}");
    let huge = vec![b' '; 8 << 20];
    if let Ok(answer) = api
        .try_send(
            Method::POST,
            "/api/v2/services",
            Some(ADMIN),
            Some(huge.clone()),
        )
        .await
    {
        assert_eq!(answer.status, 413, "{answer:?}");
    }
    for auth in [None, Some("wrong")] {
        let answer = api
            .try_send(Method::POST, "/api/v2/services", auth, Some(huge.clone()))
            .await;
        if let Ok(answer) = answer {
            assert!([401, 413].contains(&answer.status), "{auth:?}: {answer:?}");
        }
    }
    let mut padded = echo("padded", 1);
    padded["metadata"]["padding"] = json!("x".repeat(3 << 20));
    let padded = serde_json::to_vec(&padded).expect("json");
    if let Ok(answer) = api
        .try_send(Method::POST, "/api/v2/services", Some(ADMIN), Some(padded))
        .await
    {
        assert_eq!(answer.status, 413, "{answer:?}");
    }
    assert_eq!(api.list().await.total_count, 0, "nothing was created");

    // any cluster name names this deployment
    api.create(&echo("anywhere", 1)).await.ok();
    api.wait_for("anywhere", "Running", running_with(1)).await;
    for cluster in ["local", "cn-hangzhou", "us-west-1", "x"] {
        let path = format!("/api/v2/services/{cluster}/anywhere");
        let summary = api.admin(Method::GET, &path, None).await.ok();
        assert_eq!(summary["ServiceName"], "anywhere", "{cluster}: {summary:#}");
        assert_eq!(summary["ClusterId"], "local", "{cluster}: {summary:#}");
    }
    api.admin(
        Method::PUT,
        "/api/v2/services/cn-shanghai/anywhere/stop",
        None,
    )
    .await
    .ok();
    api.wait_for("anywhere", "Stopped", stopped).await;

    // a duplicate
    let message = api
        .create(&echo("anywhere", 2))
        .await
        .refused(409, "Conflict");
    assert!(message.contains("anywhere"), "{message}");
    let summary = api.describe("anywhere").await;
    assert_eq!(summary.service_config["metadata"]["instance"], 1);
    assert_eq!(summary.status, ServiceStatus::Stopped);

    // updates with hostile bodies
    let path = "/api/v2/services/local/anywhere";
    api.send(Method::PUT, path, Some(ADMIN), Some(b"nope".to_vec()))
        .await
        .refused(400, "InvalidParameter");
    api.admin(
        Method::PUT,
        path,
        Some(&json!({"metadata": {"instance": -1}})),
    )
    .await
    .refused(400, "InvalidParameter");
    api.admin(Method::PUT, path, Some(&json!({"metadata": null})))
        .await
        .refused(400, "InvalidParameter");
    let message = api
        .admin(
            Method::PUT,
            &format!("{path}/autoscaler"),
            Some(&json!({"min": 1, "max": 2, "bogus": 1})),
        )
        .await
        .refused(400, "InvalidParameter");
    assert!(message.contains("bogus"), "{message}");
    assert_eq!(api.describe("anywhere").await.message, "version 1");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn desired_state_should_survive_a_restart_of_the_platform() {
    let state = tempfile::tempdir().expect("tempdir");
    let autoscaler = json!({"min": 1, "max": 2,
                            "scaleStrategies": [{"metricName": "qps", "threshold": 50}]});
    {
        let server = platform(state.path()).await;
        let api = Api::new(&server);
        api.create(&echo("kept_running", 1)).await.ok();
        api.create(&echo("kept_stopped", 1)).await.ok();
        api.wait_for("kept_running", "Running", running_with(1))
            .await;
        api.wait_for("kept_stopped", "Running", running_with(1))
            .await;
        api.admin(
            Method::PUT,
            "/api/v2/services/local/kept_stopped/stop",
            None,
        )
        .await
        .ok();
        api.admin(
            Method::PUT,
            "/api/v2/services/local/kept_running/autoscaler",
            Some(&autoscaler),
        )
        .await
        .ok();
        api.wait_for("kept_stopped", "Stopped", stopped).await;
        server.shutdown().await;
    }

    // A new platform on the same directory, given no specs.
    let server = platform(state.path()).await;
    let api = Api::new(&server);
    let listed = api.list().await;
    let names: Vec<&str> = listed
        .services
        .iter()
        .map(|s| s.service_name.as_str())
        .collect();
    assert_eq!(names, ["kept_running", "kept_stopped"], "{listed:#?}");

    let summary = api
        .wait_for("kept_running", "Running", |s| {
            s.status == ServiceStatus::Running && s.running_instance >= 1
        })
        .await;
    assert_eq!(summary.message, "version 2", "{summary:#?}");
    let config = &summary.service_config;
    assert_eq!(config["autoscaler"]["min"], 1, "{config:#}");
    assert_eq!(config["autoscaler"]["max"], 2, "{config:#}");
    assert_eq!(
        config["autoscaler"]["strategies"]["qps"], 50.0,
        "{config:#}"
    );
    assert!(config.get("token").is_none(), "{config:#}");
    let got: AutoscalerConfig = serde_json::from_value(
        api.admin(
            Method::GET,
            "/api/v2/services/local/kept_running/autoscaler",
            None,
        )
        .await
        .ok(),
    )
    .expect("an AutoscalerConfig");
    assert_eq!((got.min, got.max), (1, 2));
    // The token came back with the spec: predict still wants it.
    assert_eq!(api.predict("kept_running", "back").await.ok(), "back");

    // Stopped, and it stays so over a few control rounds.
    let summary = api.describe("kept_stopped").await;
    assert!(stopped(&summary), "{summary:#?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let summary = api.describe("kept_stopped").await;
    assert!(stopped(&summary), "{summary:#?}");
    assert!(api.predict("kept_stopped", "x").await.status >= 400);
    api.admin(
        Method::PUT,
        "/api/v2/services/local/kept_stopped/start",
        None,
    )
    .await
    .ok();
    api.wait_for("kept_stopped", "Running", running_with(1))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_platform_on_a_state_dir_in_use_should_fail_naming_the_file() {
    let state = tempfile::tempdir().expect("tempdir");
    let first = platform(state.path()).await;
    let api = Api::new(&first);
    api.create(&echo("owned", 1)).await.ok();

    let second = Platform::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .admin_token(ADMIN)
        .state_dir(state.path())
        .start()
        .await;
    let error = match second {
        Ok(second) => {
            second.shutdown().await;
            panic!("a second platform started on a state directory in use");
        }
        Err(error) => error.to_string(),
    };
    let file = state.path().join(eas_runtime::store::FILE_NAME);
    assert!(
        error.contains(&file.display().to_string()),
        "names the file: {error}"
    );
    assert!(
        error.contains("another eas server holds it"),
        "says why: {error}"
    );

    // The first one is unharmed.
    api.wait_for("owned", "Running", running_with(1)).await;
    api.create(&echo("after", 1)).await.ok();
    first.shutdown().await;
}
