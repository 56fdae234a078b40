//! The web console (`/console`) against a real platform under load: the session (token in the
//! URL, cookie, redirect; no data without it), the CSRF check of its one action, the series
//! and price routes, and a real browser: headless Chromium loads the console, runs its script
//! and the test reads the DOM (live figures, instance rows, a stress task run through the
//! benchmark-task API with its report's chart, the hostile model config shown as text and never
//! as an element), opens that task's HTML report, then saves a screenshot as a test artifact
//! (`target/test-artifacts/console.png`).
//!
//! Chromium (Debian's `chromium`, or `$EAS_CHROMIUM`) and the shared price traces are needed:
//! without them the test skips, or fails under `EAS_REQUIRE_ALL=1`.

#[path = "support/require.rs"]
mod require;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eas_core::spec::ServiceSpec;
use eas_runtime::platform::{Platform, RunningPlatform};
use serde_json::{Value, json};

const ADMIN: &str = "console-admin";
const TOKEN: &str = "svc-token";
const SERVICE: &str = "echo_console";
const HOSTILE: &str = "<img src=x onerror=alert(1)><script>alert(2)</script>";
const SPOT: &str = "aws_spot_price_history/spot_prices_us-east-1_2021-03-02_to_2021-05-31.csv";
const ON_DEMAND: &str = "aws_spot_price_history/on_demand_prices_us-east-1.csv";

fn shared(relative: &str) -> PathBuf {
    std::env::var_os("EAS_SHARED_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
            PathBuf::from,
        )
        .join("data")
        .join(relative)
}

/// Chromium's path, if there is one.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EAS_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|path| path.is_file())
    })
}

async fn platform() -> RunningPlatform {
    let spot = std::fs::File::open(shared(SPOT)).expect("the spot trace");
    let on_demand = std::fs::File::open(shared(ON_DEMAND)).expect("the on-demand prices");
    let oracle = eas_scheduler::pricing::aws::load(spot, SPOT, on_demand, ON_DEMAND)
        .expect("the shared traces load");
    let spec = ServiceSpec::from_json_value(json!({
        "metadata": {"name": SERVICE, "instance": 2},
        "processor": "echo",
        "model_path": ".",
        "model_config": HOSTILE,
        "token": TOKEN,
    }))
    .expect("a valid spec");
    Platform::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .admin_token(ADMIN)
        .control_period(Duration::from_millis(500))
        .price_traces(oracle)
        .service(spec)
        .start()
        .await
        .expect("the platform starts")
}

/// Predicts in a loop (and now and then with a wrong token, a 401) until `stop`.
fn load(base: String, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let url = format!("{base}/api/predict/{SERVICE}");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let token = if n.is_multiple_of(50) { "wrong" } else { TOKEN };
            let _ = client
                .post(&url)
                .header("Authorization", token)
                .body("hello")
                .send()
                .await;
            sent.fetch_add(1, Ordering::Relaxed);
            // About 200 requests a second: live figures without taking the CPU from the browser.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// Signs in with the token in the URL: the cookie pair (`eas_console=...`).
async fn sign_in(base: &str) -> String {
    let answer = no_redirects()
        .get(format!("{base}/console?token={ADMIN}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()["location"], "/console");
    let cookie = answer.headers()["set-cookie"].to_str().expect("ascii");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    cookie.split(';').next().expect("a pair").to_owned()
}

async fn check_sessions_and_csrf(base: &str) {
    let client = no_redirects();
    // No session: the login page, no data.
    let page = client
        .get(format!("{base}/console"))
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status(), 200);
    let text = page.text().await.expect("a body");
    assert!(text.contains("name=\"token\""), "{text}");
    assert!(!text.contains(SERVICE), "{text}");
    let wrong = client
        .get(format!("{base}/console?token=nope"))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    for path in [
        "/console/api/overview",
        "/console/api/series",
        "/console/api/prices",
    ] {
        let answer = client
            .get(format!("{base}{path}"))
            .header("cookie", "eas_console=forged")
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), 401, "{path}");
    }
    // The login form.
    let form = client
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(form.status(), 303);

    // A session: the page carries the CSRF token; the action wants it.
    let cookie = sign_in(base).await;
    let page = client
        .get(format!("{base}/console"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let text = page.text().await.expect("a body");
    let csrf = text
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned();
    assert_eq!(csrf.len(), 64, "{csrf}");
    let restart = format!("{base}/console/api/services/{SERVICE}/restart");
    for given in [None, Some("0".repeat(64))] {
        let mut request = client.post(&restart).header("cookie", &cookie);
        if let Some(token) = given {
            request = request.header("x-csrf-token", token);
        }
        assert_eq!(request.send().await.expect("answers").status(), 403);
    }
    let done = client
        .post(&restart)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("answers");
    assert_eq!(done.status(), 200);
}

/// The series JSON (control API) once it shows traffic: 3 points with QPS above 0.
async fn wait_for_series(base: &str) -> Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let series: Value = client
            .get(format!("{base}/api/v2/series?service={SERVICE}"))
            .header("Authorization", ADMIN)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        let busy = series["services"][0]["qps"]
            .as_array()
            .map_or(0, |q| q.iter().filter(|v| v.as_f64() > Some(0.0)).count());
        if busy >= 3 {
            return series;
        }
        assert!(Instant::now() < deadline, "no live series: {series:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The stress task the console shows.
const STRESS: &str = "console_stress";

/// Runs a 3-second fixed-rate stress task on the service through the benchmark-task API and
/// waits until it completed.
async fn run_stress_task(base: &str) {
    use base64::Engine as _;
    let client = reqwest::Client::new();
    let data = base64::engine::general_purpose::STANDARD.encode("hello\n");
    let task = json!({"name": STRESS, "base": {"mode": "fixed", "qps": 50, "duration": 3},
                      "service": {"serviceName": SERVICE},
                      "data": {"content": data, "dataType": "lines"}});
    let created = client
        .post(format!("{base}/api/v2/benchmark-tasks"))
        .header("Authorization", ADMIN)
        .json(&task)
        .send()
        .await
        .expect("answers");
    assert_eq!(created.status(), 200, "{:?}", created.text().await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view: Value = client
            .get(format!("{base}/api/v2/benchmark-tasks/local/{STRESS}"))
            .header("Authorization", ADMIN)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        if view["Status"] == "Completed" {
            return;
        }
        assert!(Instant::now() < deadline, "the stress task ends: {view:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs Chromium headless on `url` with `args`; its stdout.
fn browse(browser: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let output = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,2200",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn figure(dom: &str, name: &str) -> Option<f64> {
    let marker = format!("data-figure=\"{name}\">");
    let rest = dom.split(&marker).nth(1)?;
    rest.split('<').next()?.trim().parse().ok()
}

fn check_dom(dom: &str) {
    assert!(dom.contains("data-loaded=\"1\""), "the script ran: {dom}");
    assert!(
        dom.contains(&format!("<strong>{SERVICE}</strong>")),
        "the service row: {dom}"
    );
    let qps = figure(dom, "qps").expect("a QPS figure");
    assert!(qps > 0.0, "live QPS: {qps}");
    let service_qps = figure(dom, "service-qps").expect("the services table's QPS");
    assert!(service_qps > 0.0, "{service_qps}");
    let instances = dom.matches("class=\"instance-row\"").count();
    assert!(instances >= 2, "{instances} instance rows");
    assert!(
        dom.matches("class=\"price-row\"").count() >= 2,
        "spot price rows"
    );
    // The stress task run before: its row (status) and its report's QPS chart.
    assert!(
        !dom.contains("data-empty=\"stress\""),
        "a stress report: {dom}"
    );
    assert!(
        dom.contains(&format!("<td>{STRESS}</td>")),
        "the task row: {dom}"
    );
    assert!(
        dom.contains("<td>Completed</td>"),
        "the task's status: {dom}"
    );
    assert!(
        dom.contains(&format!("{STRESS}: QPS")),
        "the report's chart: {dom}"
    );
    // The hostile config is text: escaped in the serialised DOM, and no element came of it.
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;"),
        "the hostile model_config shown as text"
    );
    assert!(!dom.contains("<img"), "an <img> element was injected");
    let scripts = dom.matches("<script").count();
    assert_eq!(scripts, 1, "only the console's own script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_should_show_live_figures_in_a_real_browser_and_escape_user_text() {
    if !shared(SPOT).exists() {
        require::skip("console", &format!("{} not found", shared(SPOT).display()));
        return;
    }
    let server = platform().await;
    assert!(server.wait_ready(Duration::from_secs(30)).await);
    let base = format!("http://{}", server.local_addr());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let client = load(base.clone(), Arc::clone(&stop), Arc::clone(&sent));

    check_sessions_and_csrf(&base).await;
    let series = wait_for_series(&base).await;
    let echo = &series["services"][0];
    assert_eq!(echo["name"], SERVICE);
    assert!(echo["p99_ms"].as_array().is_some_and(|v| !v.is_empty()));
    assert!(echo["instances"].as_array().is_some_and(|v| !v.is_empty()));
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("eas_server_memory_bytes "), "{metrics}");
    run_stress_task(&base).await;
    let cookie = sign_in(&base).await;
    let prices: Value = no_redirects()
        .get(format!("{base}/console/api/prices"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let curves = prices["curves"].as_array().expect("curves");
    assert!(!curves.is_empty(), "{prices:#}");
    assert!(
        curves
            .iter()
            .all(|c| c["bid"].as_f64().is_some_and(|b| b > 0.0)),
        "{prices:#}"
    );
    assert_eq!(prices["window_h"], 48);

    match chromium() {
        None => require::skip(
            "console",
            "chromium not found (apt-get install -y chromium)",
        ),
        Some(browser) => {
            let profile = tempfile::tempdir().expect("a profile dir");
            let url = format!("{base}/console?token={ADMIN}");
            let dom = tokio::task::spawn_blocking({
                let (browser, profile) = (browser.clone(), profile.path().to_owned());
                move || browse(&browser, &profile, &["--dump-dom"], &url)
            })
            .await
            .expect("joins");
            check_dom(&dom);
            // The stress task's HTML report opens in the browser: its plots are there after load.
            let page = reqwest::Client::new()
                .get(format!(
                    "{base}/api/v2/benchmark-tasks/local/{STRESS}/report?Format=html"
                ))
                .header("Authorization", ADMIN)
                .send()
                .await
                .expect("answers")
                .text()
                .await
                .expect("text");
            let file = profile.path().join("report.html");
            std::fs::write(&file, page).expect("the report is written");
            let report = tokio::task::spawn_blocking({
                let (browser, profile) = (browser.clone(), profile.path().to_owned());
                let url = format!("file://{}", file.display());
                move || browse(&browser, &profile, &["--dump-dom"], &url)
            })
            .await
            .expect("joins");
            assert!(report.contains("<svg"), "the report's plots: {report}");
            assert!(
                report.contains(STRESS),
                "the report names its task: {report}"
            );
            let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("target/")
                .join("test-artifacts");
            std::fs::create_dir_all(&artifacts).expect("target/test-artifacts");
            let shot = artifacts.join("console.png");
            let _ = std::fs::remove_file(&shot);
            let url = format!("{base}/console?token={ADMIN}");
            let arg = format!("--screenshot={}", shot.display());
            tokio::task::spawn_blocking(move || {
                browse(&browser, profile.path(), &[arg.as_str()], &url)
            })
            .await
            .expect("joins");
            let png = std::fs::read(&shot).expect("a screenshot");
            assert!(png.starts_with(b"\x89PNG"), "a PNG");
            println!("screenshot: {}", shot.display());
        }
    }
    stop.store(true, Ordering::Relaxed);
    client.await.expect("the load stops");
    assert!(sent.load(Ordering::Relaxed) > 0);
    server.shutdown().await;
}
