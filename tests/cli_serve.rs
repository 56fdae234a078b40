//! `eas serve` as a user runs it: it prints where it listens and the token, answers predict
//! requests, and exits 0 after Ctrl-C (SIGINT); a bad spec exits 1 naming the problem; and
//! `eas stress` measures what it serves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn example(name: &str) -> String {
    format!("{}/examples/services/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// One HTTP/1.1 POST over a fresh connection; the status and body.
fn post(addr: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// What `eas serve` goes on printing; dropping it would close the pipe under the server.
#[cfg(unix)]
type Output = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Starts `command` (an `eas serve`), reads the address and the service's token it prints.
#[cfg(unix)]
fn spawn_serve(mut command: Command) -> (std::process::Child, String, String, Output) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("eas serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("text");
    let addr = first
        .strip_prefix("eas: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    let service = lines.next().expect("a line").expect("text");
    assert!(service.contains("service echo: POST"), "{service}");
    let token = service
        .split("token ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a token is printed")
        .to_owned();
    (child, addr, token, lines)
}

/// `eas serve examples/services/echo.json` on a free port, without a state directory.
#[cfg(unix)]
fn serve_echo() -> (std::process::Child, String, String, Output) {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_eas"));
    serve.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "serve",
        &example("echo.json"),
        "--listen",
        "127.0.0.1:0",
        "--no-state",
    ]);
    spawn_serve(serve)
}

#[cfg(unix)]
#[test]
fn serve_should_answer_requests_and_exit_cleanly_on_sigint() {
    let (mut child, addr, token, _output) = serve_echo();

    assert_eq!(
        post(&addr, "/api/predict/echo", &token, "hi"),
        (200, "hi".into())
    );
    let (status, body) = post(&addr, "/api/predict/echo", "wrong", "hi");
    assert_eq!(status, 401, "{body}");

    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("eas serve exits");
    assert!(status.success(), "exit status after SIGINT: {status}");
}

#[test]
fn serve_should_refuse_a_bad_spec_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("eas-cli-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"metadata": {"name": "x", "instance": 1, "rpc": {"max_batch_sise": 4}}, "processor": "echo", "model_path": "."}"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_eas"))
        .args([
            "serve",
            &bad.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
            "--no-state",
        ])
        .output()
        .expect("eas runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metadata.rpc.max_batch_sise"), "{err}");
    assert!(err.contains("did you mean max_batch_size"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_eas"))
        .args([
            "serve",
            &example("echo.json"),
            "--listen",
            "127.0.0.1:0",
            "--no-state",
        ])
        .arg(example("echo.json"))
        .output()
        .expect("eas runs");
    assert_eq!(out.status.code(), Some(1), "two services named echo");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("two services are named `echo`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_should_run_an_elastic_job_and_resume_it() {
    let dir = std::env::temp_dir().join(format!("eas-cli-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spec = dir.join("job.json");
    std::fs::write(
        &spec,
        r#"{"metadata": {"name": "job", "instance": 1, "type": "Async", "workload_type": "elasticjob"},
            "processor": "echo", "model_path": "."}"#,
    )
    .expect("write");
    let inputs = dir.join("inputs.txt");
    std::fs::write(&inputs, "a\nb\nc\n").expect("write");
    let output = dir.join("results.jsonl");
    let _ = std::fs::remove_file(&output);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_eas"))
            .args([
                "serve",
                &spec.to_string_lossy(),
                "--listen",
                "127.0.0.1:0",
                "--no-state",
            ])
            .args(["--job-input", &inputs.to_string_lossy()])
            .args(["--job-output", &output.to_string_lossy()])
            .output()
            .expect("eas runs")
    };
    let first = run();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("job job:"), "{stdout}");
    let results = std::fs::read_to_string(&output).expect("results");
    assert_eq!(results.lines().count(), 3, "{results}");

    std::fs::write(&inputs, "a\nb\nc\nd\n").expect("write");
    let second = run();
    assert!(second.status.success());
    let results = std::fs::read_to_string(&output).expect("results");
    assert_eq!(
        results.lines().count(),
        4,
        "only the new input ran: {results}"
    );
}

/// The attack: a flood of connections that send nothing, against a server whose process may
/// open only 64 descriptors. Without a bound it runs out of them and a real request is never
/// accepted; with the default bound (derived from that limit) the idle ones are closed to make
/// room and the real request is answered.
#[cfg(unix)]
#[test]
fn a_connection_flood_should_not_exhaust_the_descriptors_of_eas_serve() {
    let mut serve = Command::new("sh");
    serve
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec '{}' serve '{}' --listen 127.0.0.1:0",
            env!("CARGO_BIN_EXE_eas"),
            example("echo.json")
        ));
    let (mut child, addr, token, _output) = spawn_serve(serve);

    let flood: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(
        flood.len() > 64,
        "the flood opened {} connections",
        flood.len()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let answered = std::thread::spawn({
        let addr = addr.clone();
        move || post(&addr, "/api/predict/echo", &token, "real")
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !answered.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let finished = answered.is_finished();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        finished,
        "a real request got no answer within 5 s under the flood"
    );
    assert_eq!(answered.join().expect("joins"), (200, "real".into()));
    drop(flood);
}

/// The children of process `pid` (every thread's), from `/proc`.
#[cfg(target_os = "linux")]
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` still runs (a zombie that no one reaped does not).
#[cfg(target_os = "linux")]
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

#[cfg(target_os = "linux")]
#[test]
fn serve_with_child_processes_should_run_each_instance_in_a_worker_and_stop_them() {
    // Two instances and no autoscaler: echo.json's schedules make its count depend on the
    // time of day, and its autoscaler may scale it in before the workers are counted.
    let dir = std::env::temp_dir().join(format!("eas-cli-child-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spec = dir.join("echo.json");
    let doc = serde_json::json!({
        "metadata": {"name": "echo", "instance": 2},
        "processor": "echo",
        "model_path": ".",
    });
    std::fs::write(&spec, doc.to_string()).expect("write the spec");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_eas"));
    serve.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "serve",
        spec.to_str().expect("a UTF-8 path"),
        "--listen",
        "127.0.0.1:0",
        "--no-state",
        "--provider",
        "child",
    ]);
    let (mut child, addr, token, _output) = spawn_serve(serve);
    assert_eq!(
        post(&addr, "/api/predict/echo", &token, "hi"),
        (200, "hi".into())
    );
    // 2 instances: 2 workers, this very binary (the second may still be starting).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let workers = loop {
        let workers = children(child.id());
        if workers.len() >= 2 || std::time::Instant::now() > deadline {
            break workers;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(workers.len(), 2, "{workers:?}");
    for worker in &workers {
        let exe = std::fs::read_link(format!("/proc/{worker}/exe")).expect("exe");
        assert!(exe.ends_with("eas"), "{exe:?}");
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("eas serve exits");
    assert!(status.success(), "exit status after SIGINT: {status}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while workers.iter().any(|w| runs(*w)) {
        assert!(
            std::time::Instant::now() < deadline,
            "workers outlived the server: {workers:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `eas stress` against `eas serve`: a fixed-rate run writes its JSON and HTML reports with the
/// answers counted; a wrong token shows as 401s in the report; a data file that is not base64
/// is refused with exit 1 naming its line.
#[cfg(unix)]
#[test]
fn stress_should_load_a_served_echo_and_report_it() {
    let (mut child, addr, token, _output) = serve_echo();
    let dir = std::env::temp_dir().join(format!("eas-cli-stress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let data = dir.join("bodies.txt");
    std::fs::write(&data, "hello\nworld\n").expect("write");
    let (json, html) = (dir.join("report.json"), dir.join("report.html"));
    let url = format!("http://{addr}/api/predict/echo");
    let stress = |token: &str, data: &std::path::Path, format: &str| {
        Command::new(env!("CARGO_BIN_EXE_eas"))
            .args(["stress", &url, "--token", token, "--data"])
            .arg(data)
            .args(["--data-format", format, "--mode", "fixed", "--qps", "100"])
            .args(["--duration", "2", "--quiet", "--report"])
            .arg(&json)
            .arg("--html")
            .arg(&html)
            .output()
            .expect("eas stress runs")
    };

    let out = stress(&token, &data, "lines");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("JSON");
    let ok = report["summary"]["ok"].as_u64().unwrap_or(0);
    assert!((150..=210).contains(&ok), "100 QPS for 2 s: {report}");
    assert_eq!(report["summary"]["errors"], 0, "{report}");
    assert_eq!(report["mode"], "fixed", "{report}");
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains("<svg"), "plots");

    let _ = stress("wrong", &data, "lines");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("JSON");
    assert!(
        report["summary"]["errors_by_status"]["401"].as_u64() > Some(100),
        "a wrong token: {report}"
    );

    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "aGVsbG8=\nnot base64!\n").expect("write");
    let out = stress(&token, &bad, "base64");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");

    child.kill().expect("kill");
    let _ = child.wait();
}
