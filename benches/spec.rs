//! Spec parsing and validation throughput: how many `service.json` documents per second
//! `ServiceSpec::from_json_str` reads, next to `serde_json` alone parsing the same text (the
//! floor: what any JSON-based spec reader pays).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eas::core::spec::ServiceSpec;

const FULL: &str = include_str!("../examples/services/reference-full.json");
const QUICKSTART: &str = include_str!("../examples/services/reference-quickstart.json");
const INVALID: &str = r#"{
  "metadata": {"name": "Bad-Name", "instance": 1, "rpc": {"max_batch_sise": 8}},
  "containers": [{"image": "x", "command": "a", "script": "b", "port": 8080}],
  "cloud": {"computing": {"instances": [{"type": "ecs.a", "capacity": "120%"}]}}
}"#;

fn spec_parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("spec");
    for (name, text) in [
        ("reference_full", FULL),
        ("reference_quickstart", QUICKSTART),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("{name}/parse_and_validate"), |b| {
            b.iter(|| ServiceSpec::from_json_str(black_box(text)).expect("the example is valid"));
        });
        group.bench_function(format!("{name}/serde_json_value_only"), |b| {
            b.iter(|| {
                serde_json::from_str::<serde_json::Value>(black_box(text)).expect("valid JSON")
            });
        });
    }
    group.throughput(Throughput::Bytes(INVALID.len() as u64));
    group.bench_function("invalid/report_all_errors", |b| {
        b.iter(|| ServiceSpec::from_json_str(black_box(INVALID)).expect_err("the spec is invalid"));
    });
    group.finish();
}

criterion_group!(benches, spec_parsing);
criterion_main!(benches);
