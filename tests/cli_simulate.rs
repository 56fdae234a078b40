//! `eas simulate` as a user runs it: a real run on the shared traces, and bad inputs.
//!
//! The run on shared traces prints `SKIPPED` and passes when `../shared/data` (or
//! `$EAS_SHARED_DIR/data`) is missing, unless `EAS_REQUIRE_ALL=1`, where it fails (`skip`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SPOT: &str = "aws_spot_price_history/spot_prices_us-east-1_2021-03-02_to_2021-05-31.csv";
const ON_DEMAND: &str = "aws_spot_price_history/on_demand_prices_us-east-1.csv";
const AZURE: &str = "azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv";
const MOONCAKE: &str = "mooncake_conversation_2025/conversation_trace_first30min.csv";
const AVAILABILITY: &str =
    "skypilot_spot_traces/availability_1node_aws-02-15-2023_us-east-1a_v100_1.json";

fn eas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eas"))
        .args(args)
        .output()
        .expect("the eas binary runs")
}

fn example(name: &str) -> String {
    format!("{}/examples/services/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory of its own under the system temp directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eas-cli-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Skips the test: prints `SKIPPED: <test>: <why>`, or panics with the reason when
/// `EAS_REQUIRE_ALL=1` (README's test command, `scripts/test`, sets it).
fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("EAS_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test}: {why} (required: EAS_REQUIRE_ALL=1)"
    );
    println!("SKIPPED: {test}: {why}");
}

/// A file of the shared traces (`$EAS_SHARED_DIR/data`, or `shared/data` beside the
/// checkout), or `None` after [`skip`] when it is not there.
fn shared(relative: &str) -> Option<String> {
    let path = std::env::var_os("EAS_SHARED_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
            PathBuf::from,
        )
        .join("data")
        .join(relative);
    if path.exists() {
        return Some(path.display().to_string());
    }
    skip("cli_simulate", &format!("{} not found", path.display()));
    None
}

#[test]
fn simulate_should_write_a_report_and_a_plot_from_the_shared_traces() {
    let (Some(spot), Some(od), Some(azure), Some(avail)) = (
        shared(SPOT),
        shared(ON_DEMAND),
        shared(AZURE),
        shared(AVAILABILITY),
    ) else {
        return;
    };
    let dir = temp_dir("run");
    let (report, plot) = (dir.join("out.json"), dir.join("out.svg"));
    let preemptions = format!("c5.2xlarge@us-east-1a={avail}");
    let out = eas(&[
        "simulate",
        "--service",
        &example("sim-eas-spot.json"),
        "--arrivals",
        &azure,
        "--prices",
        &spot,
        "--on-demand",
        &od,
        "--instance-qps",
        "2",
        "--slo-ms",
        "2000",
        "--start",
        "2021-03-10T00:00:00Z",
        "--duration",
        "2h",
        "--preemptions",
        &preemptions,
        "--seed",
        "3",
        "--report",
        report.to_str().expect("utf-8"),
        "--plot",
        plot.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cost $"),
        "{}",
        text(&out.stdout)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
            .expect("report is JSON");
    for field in [
        "cost_usd",
        "on_demand_cost_usd",
        "optimal_cost_usd",
        "availability",
        "p50_ms",
        "p99_ms",
        "preemptions",
    ] {
        assert!(json[field].is_number(), "{field} in {json}");
    }
    assert_eq!(json["start"], "2021-03-10T00:00:00Z");
    assert_eq!(json["duration_s"], 7_200);
    assert_eq!(json["seed"], 3);
    assert_eq!(json["slo_ms"], 2000.0);
    assert!(
        json["instance_hours"]["c5.2xlarge"]["spot"].is_number(),
        "{json}"
    );
    let timeline = json["timeline"].as_array().expect("timeline");
    assert_eq!(timeline.len(), 24, "5-minute steps over 2 h");
    assert!(timeline[0]["demand_qps"].as_f64().is_some_and(|q| q > 0.0));
    assert!(json["cost_usd"].as_f64() < json["on_demand_cost_usd"].as_f64());
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn simulate_should_read_the_mooncake_trace_too() {
    let (Some(spot), Some(od), Some(mooncake)) =
        (shared(SPOT), shared(ON_DEMAND), shared(MOONCAKE))
    else {
        return;
    };
    let dir = temp_dir("mooncake");
    let report = dir.join("out.json");
    let out = eas(&[
        "simulate",
        "--service",
        &example("sim-on-demand.json"),
        "--arrivals",
        &mooncake,
        "--prices",
        &spot,
        "--on-demand",
        &od,
        "--instance-qps",
        "1",
        "--duration",
        "1h",
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    assert_eq!(json["requests"], 5_719.0 * 2.0, "30 minutes twice");
    assert_eq!(json["preemptions"], 0);
    assert_eq!(json["cost_usd"], json["on_demand_cost_usd"]);
}

/// Writes `contents` to `name` in `dir`.
fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp dir is writable");
    path.display().to_string()
}

#[test]
fn simulate_should_exit_1_naming_the_bad_input() {
    let dir = temp_dir("bad");
    let spot_ok = "instance_type,availability_zone,timestamp_utc,product_description,spot_price_usd_per_hour\n\
                   c5.2xlarge,us-east-1a,2021-03-02T00:00:00Z,Linux/UNIX,0.13\n";
    let spot = write(&dir, "spot.csv", spot_ok);
    let od = write(
        &dir,
        "od.csv",
        "instance_type,on_demand_usd_per_hour\nc5.2xlarge,0.34\n",
    );
    let arrivals = write(
        &dir,
        "arrivals.csv",
        "timestamp_ms,input_length,output_length\n0,1,1\n1000,1,1\n",
    );
    let bad_spot = write(
        &dir,
        "bad-spot.csv",
        &format!("{spot_ok}c5.2xlarge,us-east-1a,2021-03-03T00:00:00Z,Linux/UNIX,cheap\n"),
    );
    let no_c5_4x = example("sim-eas-spot.json");
    let bad_spec = write(
        &dir,
        "bad.json",
        "{\n  \"metadata\": {\"name\": \"x\",,}\n}\n",
    );
    let bad_arrivals = write(&dir, "bad-arrivals.csv", "when,what\n1,2\n");
    let report = dir.join("out.json");
    let report = report.to_str().expect("utf-8");
    let on_demand_spec = example("sim-on-demand.json");
    let base = |service: &str, prices: &str, arr: &str| -> Vec<String> {
        [
            "simulate",
            "--service",
            service,
            "--arrivals",
            arr,
            "--prices",
            prices,
            "--on-demand",
            &od,
            "--report",
            report,
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let with = |mut args: Vec<String>, extra: &[&str]| {
        args.extend(extra.iter().map(ToString::to_string));
        args
    };
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            base(&on_demand_spec, &bad_spot, &arrivals),
            vec![
                format!("{bad_spot}, line 3:"),
                "spot_price_usd_per_hour".into(),
            ],
        ),
        (
            base(&no_c5_4x, &spot, &arrivals),
            vec![
                "c5.4xlarge (no on-demand price)".into(),
                "c5.4xlarge (no spot price in any zone)".into(),
            ],
        ),
        (
            base(&bad_spec, &spot, &arrivals),
            vec![format!("{bad_spec}:2:")],
        ),
        (
            base(&on_demand_spec, &spot, &bad_arrivals),
            vec![
                format!("{bad_arrivals}, line 1:"),
                "neither the Azure format".into(),
            ],
        ),
        (
            base(
                &on_demand_spec,
                &spot,
                &dir.join("missing.csv").display().to_string(),
            ),
            vec!["missing.csv: cannot read".into()],
        ),
        (
            with(
                base(&on_demand_spec, &spot, &arrivals),
                &["--duration", "7x"],
            ),
            vec!["--duration: `7x`: unknown unit `x`".into()],
        ),
        (
            with(
                base(&on_demand_spec, &spot, &arrivals),
                &["--start", "yesterday"],
            ),
            vec!["--start `yesterday` is not an RFC 3339 time".into()],
        ),
        (
            with(
                base(&on_demand_spec, &spot, &arrivals),
                &["--preemptions", "trace.json"],
            ),
            vec!["trace.json: cannot tell the instance type and zone".into()],
        ),
        (
            with(
                base(&on_demand_spec, &spot, &arrivals),
                &["--instance-qps", "0"],
            ),
            vec!["instance_qps is 0".into()],
        ),
    ];
    for (mut args, wants) in cases {
        for (flag, value) in [("--duration", "1h"), ("--instance-qps", "2")] {
            if !args.iter().any(|a| a == flag) {
                args.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = eas(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for want in wants {
            assert!(stderr.contains(&want), "missing {want:?} in {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!Path::new(report).exists(), "nothing written on failure");
    }
}
