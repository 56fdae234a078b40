//! `service.json` as users write it: the reference examples, the defaults, round trips, and
//! every rule refusing a crafted bad spec at the right path.

mod support;

use std::time::Duration;

use eas_core::spec::{CountOrPercent, ServiceSpec, ServiceType, SinkerType, SpreadPolicy};
use serde_json::{Value, json};
use support::{assert_error, base, edited, example_text, parse, refused};

/// Sets the value at a JSON pointer, creating objects on the way.
fn set(spec: &mut Value, pointer: &str, value: Value) {
    let mut node = spec;
    for key in pointer.trim_start_matches('/').split('/') {
        node = match node {
            Value::Array(items) => {
                let index = key.parse::<usize>().expect("an index");
                if index == items.len() {
                    items.push(json!({}));
                }
                &mut items[index]
            }
            other => other
                .as_object_mut()
                .expect("an object on the way")
                .entry(key.to_owned())
                .or_insert(json!({})),
        };
    }
    *node = value;
}

fn with(pointer: &str, value: Value) -> Value {
    edited(|spec| set(spec, pointer, value))
}

fn remove(spec: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer with a parent");
    let parent = if parent.is_empty() {
        &mut *spec
    } else {
        spec.pointer_mut(parent).expect("the parent exists")
    };
    parent.as_object_mut().expect("an object").remove(key);
}

#[test]
fn the_base_spec_of_these_tests_should_be_valid() {
    parse(base()).expect("the base spec is valid");
}

#[test]
fn both_reference_examples_should_parse_and_validate() {
    let quick = ServiceSpec::from_json_str(&example_text("reference-quickstart.json"))
        .expect("quick start");
    assert_eq!(quick.metadata.name, "demo");
    assert_eq!(quick.containers[0].port, Some(8000));

    let full =
        ServiceSpec::from_json_str(&example_text("reference-full.json")).expect("full example");
    assert_eq!(full.metadata.name, "test_eascmd");
    assert_eq!(full.metadata.rpc.keepalive, Duration::from_millis(5000));
    assert_eq!(
        full.metadata.termination_grace_period,
        Duration::from_secs(30)
    );
    assert_eq!(
        full.sinker.as_ref().map(|s| s.sink_type),
        Some(SinkerType::MaxCompute)
    );
    let instances = &full
        .cloud
        .as_ref()
        .and_then(|c| c.computing.as_ref())
        .expect("computing")
        .instances;
    assert_eq!(instances[0].capacity, Some(CountOrPercent::Count(800)));
    assert_eq!(instances[1].spot_price_limit, Some(3.6));
    assert_eq!(full.model_entry, None, "an empty string means not set");
    assert_eq!(full.metadata.qos, None);
    assert_eq!(full.unit.as_ref().map(|u| u.size), Some(2));
}

/// The two JSON examples of the reference text itself, found by brace matching.
fn reference_examples() -> Option<Vec<String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/eas-service-json-reference.txt"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("SKIPPED: shared reference not found at {path}");
        return None;
    };
    let grab = |marker: &str| {
        let start = text.find(marker)? + text[text.find(marker)?..].find('{')?;
        let mut depth = 0;
        for (offset, c) in text[start..].char_indices() {
            depth += match c {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            if depth == 0 {
                return Some(text[start..=start + offset].to_owned());
            }
        }
        None
    };
    Some(vec![
        grab("Example service.json file.").expect("the quick-start example"),
        grab("Sample JSON configuration:").expect("the full example"),
    ])
}

#[test]
fn the_examples_in_the_reference_text_itself_should_parse() {
    let Some(examples) = reference_examples() else {
        return;
    };
    for example in examples {
        if let Err(errors) = ServiceSpec::from_json_str(&example) {
            panic!("{errors}\nin:\n{example}");
        }
    }
}

#[test]
fn defaults_should_be_those_the_reference_states() {
    let spec = parse(json!({
        "metadata": {"name": "d", "instance": 1},
        "processor": "echo", "model_path": "/m", "unit": {},
        "cloud": {"computing": {"instances": [{"type": "ecs.c7.large"}]}}
    }))
    .expect("valid");
    let rpc = &spec.metadata.rpc;
    assert!(!rpc.batching);
    assert_eq!(rpc.io_threads, 4);
    assert_eq!(rpc.max_batch_size, 16);
    assert_eq!(rpc.max_batch_timeout, Duration::from_millis(50));
    assert_eq!(rpc.max_queue_size, 64);
    assert_eq!(rpc.worker_threads, 5);
    assert_eq!(rpc.rate_limit, 0);
    assert_eq!(rpc.keepalive, Duration::from_millis(600_000));
    assert!(!rpc.enable_sigterm);
    assert_eq!(
        spec.metadata.termination_grace_period,
        Duration::from_secs(30)
    );
    assert_eq!(spec.metadata.max_surge(), CountOrPercent::Percent(2.0));
    assert_eq!(
        spec.metadata.max_unavailable(),
        CountOrPercent::Count(0),
        "public group"
    );
    assert_eq!(spec.metadata.spread_policy(), SpreadPolicy::Default);
    assert_eq!(spec.unit.as_ref().map(|u| u.size), Some(2));
    assert!(
        !spec
            .cloud
            .and_then(|c| c.computing)
            .expect("computing")
            .disable_spot_protection_period
    );
    assert_eq!(spec.runtime.map(|r| r.enable_crash_block), None);

    let dedicated =
        parse(json!({"metadata": {"name": "d", "instance": 1, "resource": "eas-r-1"}, "processor": "echo", "model_path": "/m"}))
            .expect("valid");
    assert_eq!(
        dedicated.metadata.max_unavailable(),
        CountOrPercent::Count(1),
        "dedicated group"
    );
}

#[test]
fn a_spec_should_round_trip_through_its_json_form() {
    let specs = [
        example_text("reference-full.json"),
        example_text("reference-quickstart.json"),
        example_text("echo.json"),
        base().to_string(),
    ];
    for text in specs {
        let first = ServiceSpec::from_json_str(&text).expect("valid");
        let written = first.to_json_pretty();
        let second = ServiceSpec::from_json_str(&written).expect("its own output is valid");
        assert_eq!(first, second);
        assert_eq!(written, second.to_json_pretty(), "writing is stable");
    }
}

#[test]
fn typed_values_should_be_typed_once_parsed() {
    let spec = parse(edited(|s| {
        set(s, "/metadata/rpc/max_batch_timeout", json!(20));
        set(
            s,
            "/metadata/rolling_strategy",
            json!({"max_surge": "25%", "max_unavailable": 3}),
        );
        set(s, "/metadata/eas.termination_grace_period", json!(120));
    }))
    .expect("valid");
    assert_eq!(
        spec.metadata.rpc.max_batch_timeout,
        Duration::from_millis(20)
    );
    assert_eq!(spec.metadata.max_surge(), CountOrPercent::Percent(25.0));
    assert_eq!(spec.metadata.max_unavailable(), CountOrPercent::Count(3));
    assert_eq!(
        spec.metadata.termination_grace_period,
        Duration::from_secs(120)
    );
    assert_eq!(spec.metadata.spread_policy(), SpreadPolicy::Zone);
}

#[test]
fn service_names_should_follow_the_charset_and_length_rules() {
    for bad in ["", "Demo", "1demo", "de-mo", "demo.v2", "naïve"] {
        assert_error(
            &refused(with("/metadata/name", json!(bad))),
            "metadata.name",
            "must",
        );
    }
    assert_error(
        &refused(with("/metadata/name", json!("a".repeat(65)))),
        "metadata.name",
        "at most 64",
    );
    parse(with("/metadata/name", json!("a".repeat(64)))).expect("64 characters are allowed");
}

#[test]
fn a_negative_instance_count_should_be_refused() {
    assert_error(
        &refused(with("/metadata/instance", json!(-1))),
        "metadata.instance",
        "at least 0",
    );
    parse(with("/metadata/instance", json!(0))).expect("zero instances is a stopped service");
}

#[test]
fn a_wrong_type_should_say_what_was_expected() {
    let errors = refused(with("/metadata/instance", json!("2")));
    assert_error(&errors, "metadata.instance", "expected a whole number");
    assert_error(&errors, "metadata.instance", "\"2\"");
    assert_error(
        &refused(with("/metadata/rpc/batching", json!("yes"))),
        "metadata.rpc.batching",
        "true or false",
    );
    assert_error(
        &refused(with("/containers", json!({}))),
        "containers",
        "expected an array",
    );
}

#[test]
fn an_unknown_field_should_name_the_closest_known_field() {
    let errors = refused(with("/metadata/rpc/max_batch_sise", json!(8)));
    let error = errors
        .at("metadata.rpc.max_batch_sise")
        .expect("an error at the unknown field");
    assert_eq!(
        error.to_string(),
        "metadata.rpc.max_batch_sise: unknown field; did you mean max_batch_size?"
    );
    let errors = refused(with("/color", json!("blue")));
    assert_error(&errors, "color", "expected one of metadata");
}

#[test]
fn containers_should_have_exactly_one_of_command_and_script() {
    let both = with("/containers/0/command", json!("python app.py"));
    assert_error(&refused(both), "containers[0]", "not both");
    let neither = edited(|s| remove(s, "/containers/0/script"));
    assert_error(&refused(neither), "containers[0]", "command or a script");
}

#[test]
fn ports_reserved_for_the_engine_should_be_refused() {
    for port in [8080, 9090] {
        assert_error(
            &refused(with("/containers/0/port", json!(port))),
            "containers[0].port",
            "reserved",
        );
    }
    assert_error(
        &refused(with("/containers/0/port", json!(70000))),
        "containers[0].port",
        "65535",
    );
}

#[test]
fn capacity_should_be_a_count_or_a_percentage_in_range() {
    let capacity = "/cloud/computing/instances/1/capacity";
    let path = "cloud.computing.instances[1].capacity";
    for bad in [json!("0%"), json!("120%"), json!("-5%")] {
        let errors = refused(with(capacity, bad.clone()));
        assert!(
            errors.at(path).is_some(),
            "{bad} should be refused: {errors}"
        );
    }
    assert_error(&refused(with(capacity, json!("2O%"))), path, "percentage");
    assert_error(&refused(with(capacity, json!(0.5))), path, "whole number");
    for (good, expected) in [
        (json!(800), CountOrPercent::Count(800)),
        (json!("500"), CountOrPercent::Count(500)),
        (json!("20%"), CountOrPercent::Percent(20.0)),
        (json!("100%"), CountOrPercent::Percent(100.0)),
    ] {
        let spec = parse(with(capacity, good)).expect("a valid capacity");
        let instances = spec
            .cloud
            .and_then(|c| c.computing)
            .expect("computing")
            .instances;
        assert_eq!(instances[1].capacity, Some(expected));
    }
}

#[test]
fn spot_bids_should_be_positive() {
    for bid in [json!(0), json!(-1), json!(-0.01)] {
        let errors = refused(with("/cloud/computing/instances/0/spot_price_limit", bid));
        assert_error(
            &errors,
            "cloud.computing.instances[0].spot_price_limit",
            "greater than 0",
        );
    }
}

#[test]
fn the_same_instance_type_and_market_should_not_be_listed_twice() {
    let errors = refused(
        with(
            "/cloud/computing/instances/1/type",
            json!("ecs.gn6i-c4g1.xlarge"),
        )
        .pipe(|mut s| {
            set(
                &mut s,
                "/cloud/computing/instances/1/spot_price_limit",
                json!(0.4),
            );
            s
        }),
    );
    assert_error(
        &errors,
        "cloud.computing.instances[1].type",
        "already listed",
    );
    // The same type as spot first and on demand as the fallback is a sensible policy.
    parse(with(
        "/cloud/computing/instances/1/type",
        json!("ecs.gn6i-c4g1.xlarge"),
    ))
    .expect("spot then on-demand");
}

#[test]
fn autoscaler_min_should_not_exceed_max() {
    let errors = refused(edited(|s| {
        set(s, "/autoscaler/min", json!(6));
        set(s, "/autoscaler/max", json!(5));
    }));
    assert_error(&errors, "autoscaler.min", "greater than max");
    assert_error(
        &refused(with("/autoscaler/max", json!(0))),
        "autoscaler.max",
        "at least 1",
    );
    assert_error(
        &refused(with("/autoscaler/strategies/cpu", json!(150))),
        "autoscaler.strategies.cpu",
        "at most 100",
    );
    assert_error(
        &refused(with("/autoscaler/strategies/qps", json!(0))),
        "autoscaler.strategies.qps",
        "greater than 0",
    );
    assert_error(
        &refused(with("/autoscaler/strategies", json!({}))),
        "autoscaler.strategies",
        "at least one",
    );
}

#[test]
fn scheduled_scaling_should_check_cron_timezone_and_bounds() {
    let schedule = |entry: Value| with("/autoscaler/schedules", json!([entry]));
    let spec = parse(schedule(
        json!({"schedule": "0 8 * * MON-FRI", "timezone": "Asia/Shanghai", "min": 4, "max": 8}),
    ))
    .expect("a valid schedule");
    let entry = &spec.autoscaler.expect("autoscaler").schedules[0];
    assert_eq!(entry.timezone.name(), "Asia/Shanghai");
    assert_eq!(entry.schedule.as_str(), "0 8 * * MON-FRI");
    parse(schedule(json!({"schedule": "0 0 20 * * *", "replicas": 1})))
        .expect("six fields, fixed count, UTC");

    let cases = [
        (
            json!({"schedule": "0 25 * * *", "min": 1}),
            "autoscaler.schedules[0].schedule",
            "cron",
        ),
        (
            json!({"schedule": "* * *", "min": 1}),
            "autoscaler.schedules[0].schedule",
            "5 fields",
        ),
        (
            json!({"schedule": "0 8 * * *", "timezone": "Mars/Base", "min": 1}),
            "autoscaler.schedules[0].timezone",
            "time zone",
        ),
        (
            json!({"schedule": "0 8 * * *"}),
            "autoscaler.schedules[0]",
            "replicas",
        ),
        (
            json!({"schedule": "0 8 * * *", "replicas": 2, "min": 1}),
            "autoscaler.schedules[0]",
            "not both",
        ),
        (
            json!({"schedule": "0 8 * * *", "min": 5, "max": 2}),
            "autoscaler.schedules[0].min",
            "greater than max",
        ),
    ];
    for (entry, path, word) in cases {
        assert_error(&refused(schedule(entry)), path, word);
    }
}

#[test]
fn processor_fields_should_be_consistent() {
    let custom = |edit: fn(&mut Value)| {
        edited(|s| {
            remove(s, "/processor");
            set(
                s,
                "/processor_path",
                json!("oss://bucket/processors/p.tar.gz"),
            );
            edit(s);
        })
    };
    let cases: [(Value, &str, &str); 6] = [
        (
            with("/processor_path", json!("oss://bucket/p/")),
            "processor_path",
            "not both",
        ),
        (custom(|_| {}), "processor_type", "cpp, java or python"),
        (
            custom(|s| set(s, "/processor_type", json!("python"))),
            "processor_entry",
            "app.py",
        ),
        (
            custom(|s| set(s, "/processor_type", json!("cpp"))),
            "processor_entry",
            "libprocessor.so",
        ),
        (
            custom(|s| set(s, "/processor_type", json!("java"))),
            "processor_mainclass",
            "main class",
        ),
        (
            edited(|s| remove(s, "/model_path")),
            "model_path",
            "required",
        ),
    ];
    for (spec, path, word) in cases {
        assert_error(&refused(spec), path, word);
    }
    parse(custom(|s| {
        set(s, "/processor_type", json!("python"));
        set(s, "/processor_entry", json!("app.py"));
    }))
    .expect("a complete custom python processor");
    parse(custom(|s| {
        set(s, "/processor_type", json!("java"));
        set(s, "/processor_mainclass", json!("com.aliyun.TestProcessor"));
    }))
    .expect("a complete custom java processor");
    let without_type = edited(|s| {
        remove(s, "/processor");
        set(s, "/processor_type", json!("python"));
    });
    assert_error(
        &refused(without_type),
        "processor_path",
        "required with processor_type",
    );
    assert_error(
        &refused(with("/processor_type", json!("pyton"))),
        "processor_type",
        "did you mean \"python\"",
    );
}

#[test]
fn a_service_with_nothing_to_run_should_be_refused() {
    let errors = refused(edited(|s| {
        remove(s, "/processor");
        remove(s, "/containers");
    }));
    assert_error(&errors, "", "nothing to run");
    let gateway = edited(|s| {
        remove(s, "/processor");
        remove(s, "/containers");
        remove(s, "/model_path");
        set(s, "/metadata/type", json!("LLMGatewayService"));
    });
    let spec = parse(gateway).expect("an LLM gateway runs no processor of its own");
    assert_eq!(
        spec.metadata.service_type,
        Some(ServiceType::LlmGatewayService)
    );
}

#[test]
fn model_paths_should_use_a_supported_form() {
    for good in [
        "oss://bucket/m/",
        "s3://bucket/m/",
        "https://host/m.tar.gz",
        "http://h/m.zip",
        "/models/m",
        "./m",
    ] {
        parse(with("/model_path", json!(good))).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    assert_error(
        &refused(with("/model_path", json!("https://host/model.onnx"))),
        "model_path",
        "archive",
    );
    assert_error(
        &refused(with("/model_path", json!("ftp://host/m.tar"))),
        "model_path",
        "unsupported scheme",
    );
    assert_error(
        &refused(with("/model_path", json!("oss:///m"))),
        "model_path",
        "bucket",
    );
}

#[test]
fn cuda_versions_should_be_in_the_supported_list() {
    parse(with("/metadata/cuda", json!("11.2"))).expect("11.2 is supported");
    assert_error(
        &refused(with("/metadata/cuda", json!("12.1"))),
        "metadata.cuda",
        "unsupported CUDA",
    );
}

#[test]
fn gpu_core_percentage_should_be_from_1_to_100() {
    for bad in [0, 101] {
        assert_error(
            &refused(with("/metadata/gpu_core_percentage", json!(bad))),
            "metadata.gpu_core_percentage",
            "from 1 to 100",
        );
    }
    parse(with("/metadata/gpu_core_percentage", json!(100))).expect("100 is allowed");
    let both = edited(|s| {
        set(s, "/metadata/gpu", json!(1));
        set(s, "/metadata/gpu_memory", json!(8));
    });
    assert_error(&refused(both), "metadata.gpu", "not both");
}

#[test]
fn qos_should_be_empty_or_best_effort() {
    parse(with("/metadata/qos", json!(""))).expect("empty qos");
    let spec = parse(with("/metadata/qos", json!("BestEffort"))).expect("BestEffort");
    assert!(spec.metadata.qos.is_some());
    assert_error(
        &refused(with("/metadata/qos", json!("Guaranteed"))),
        "metadata.qos",
        "expected one of",
    );
}

#[test]
fn metadata_type_should_accept_async_and_the_llm_gateway() {
    let spec = parse(with("/metadata/type", json!("Async"))).expect("Async");
    assert!(spec.metadata.is_async());
    assert_error(
        &refused(with("/metadata/type", json!("Asyc"))),
        "metadata.type",
        "did you mean \"Async\"",
    );
}

#[test]
fn mount_paths_should_be_absolute_distinct_and_not_nested() {
    let mount =
        |index: usize, path: &str| with(&format!("/storage/{index}/mount_path"), json!(path));
    assert_error(
        &refused(mount(1, "data_nas")),
        "storage[1].mount_path",
        "absolute",
    );
    assert_error(
        &refused(mount(1, "/data_oss/")),
        "storage[1].mount_path",
        "already mounted",
    );
    assert_error(
        &refused(mount(1, "/data_oss/nas")),
        "storage[1].mount_path",
        "inside storage[0]",
    );
    assert_error(
        &refused(mount(1, "/")),
        "storage[1].mount_path",
        "contains storage[0]",
    );
    parse(mount(1, "/data_oss2")).expect("a sibling with a common prefix is not nested");
}

#[test]
fn a_mount_should_have_exactly_one_source() {
    let two = with("/storage/0/local", json!({"path": "/srv/data"}));
    assert_error(&refused(two), "storage[0]", "one source");
    let none = edited(|s| remove(s, "/storage/0/oss"));
    assert_error(&refused(none), "storage[0]", "one source");
    let bad_oss = with("/storage/0/oss/path", json!("bucket/data"));
    assert_error(&refused(bad_oss), "storage[0].oss.path", "oss://bucket");
    let cache = with(
        "/storage/2",
        json!({"mount_path": "/cache", "cache": {"capacity": "20G", "path": "/data_oss"}}),
    );
    let spec = parse(cache).expect("a memory cache of another mount");
    let capacity = spec.storage[2].cache.as_ref().map(|c| c.capacity.bytes());
    assert_eq!(capacity, Some(20 << 30));
    let dangling = with(
        "/storage/2",
        json!({"mount_path": "/cache", "cache": {"capacity": "1G", "path": "/elsewhere"}}),
    );
    assert_error(
        &refused(dangling),
        "storage[2].cache.path",
        "not the mount_path",
    );
}

#[test]
fn sinker_types_should_match_without_regard_to_case() {
    for (name, expected) in [
        ("MaxCompute", SinkerType::MaxCompute),
        ("SLS", SinkerType::Sls),
        ("file", SinkerType::File),
    ] {
        let config = json!({"maxcompute": {"project": "p", "table": "t"}, "sls": {"project": "p", "logstore": "l"}, "file": {"path": "/tmp/s.jsonl"}});
        let spec = parse(with("/sinker", json!({"type": name, "config": config})))
            .expect("a valid sinker");
        assert_eq!(spec.sinker.map(|s| s.sink_type), Some(expected));
    }
    assert_error(
        &refused(with("/sinker", json!({"type": "kafka"}))),
        "sinker.type",
        "unknown sinker type",
    );
    assert_error(
        &refused(with("/sinker", json!({"type": "sls"}))),
        "sinker.config.sls",
        "required",
    );
}

#[test]
fn gateway_limits_should_be_positive_when_enabled() {
    let limit = json!({"rate_limit": {"enable": true, "limit": 0}, "concurrency_limit": {"enable": true, "limit": 50}});
    let errors = refused(with("/networking/gateway_policy", limit));
    assert_error(
        &errors,
        "networking.gateway_policy.rate_limit.limit",
        "at least 1",
    );
    let spec = parse(with(
        "/networking/gateway_policy",
        json!({"rate_limit": {"enable": true, "limit": 100}}),
    ))
    .expect("valid");
    assert_eq!(spec.networking.expect("networking").rate_limit(), Some(100));
}

#[test]
fn a_rolling_update_that_cannot_progress_should_be_refused() {
    let errors = refused(with(
        "/metadata/rolling_strategy",
        json!({"max_surge": 0, "max_unavailable": 0}),
    ));
    assert_error(&errors, "metadata.rolling_strategy", "never progress");
}

#[test]
fn every_problem_should_be_reported_at_once() {
    let errors = refused(edited(|s| {
        set(s, "/metadata/name", json!("Bad-Name"));
        set(s, "/metadata/rpc/max_batch_sise", json!(8));
        set(s, "/metadata/cuda", json!("12.1"));
        set(s, "/containers/0/port", json!(8080));
        set(s, "/cloud/computing/instances/0/capacity", json!("120%"));
        set(s, "/autoscaler/min", json!(20));
        set(s, "/storage/1/mount_path", json!("/data_oss/x"));
        set(s, "/metadata/type", json!("Asyc"));
    }));
    for path in [
        "metadata.name",
        "metadata.rpc.max_batch_sise",
        "metadata.cuda",
        "containers[0].port",
        "cloud.computing.instances[0].capacity",
        "autoscaler.min",
        "storage[1].mount_path",
        "metadata.type",
    ] {
        assert!(
            errors.at(path).is_some(),
            "no error at {path} in:\n{errors}"
        );
    }
    assert_eq!(errors.len(), 8, "{errors}");
}

#[test]
fn invalid_json_should_give_a_line_and_column() {
    let errors = ServiceSpec::from_json_str("{\n  \"metadata\": {\"name\": \"x\",,}\n}")
        .expect_err("invalid JSON");
    let error = &errors.errors()[0];
    assert_eq!(error.location.map(|(line, _)| line), Some(2));
    assert!(error.message.starts_with("invalid JSON"), "{error}");
    assert!(error.to_string().starts_with("line 2, column "), "{error}");
}

#[test]
fn documents_that_are_not_specs_should_be_refused_with_a_reason() {
    for (text, word) in [
        ("", "invalid JSON"),
        ("[]", "expected an object"),
        ("null", "expected an object"),
        ("{}", "required"),
    ] {
        let errors = ServiceSpec::from_json_str(text).expect_err("not a spec");
        assert!(
            errors.errors().iter().any(|e| e.message.contains(word)),
            "{text:?}: {errors}"
        );
    }
    let errors = ServiceSpec::from_json_str("{}").expect_err("empty object");
    assert!(errors.at("metadata").is_some(), "{errors}");
}

#[test]
fn a_spec_built_in_code_should_be_validated_by_the_same_rules() {
    let mut spec = parse(base()).expect("valid");
    spec.validate().expect("still valid");
    spec.metadata.name = "Not Valid".to_owned();
    spec.containers[0].port = Some(9090);
    let errors = spec.validate().expect_err("invalid");
    assert!(
        errors.at("metadata.name").is_some() && errors.at("containers[0].port").is_some(),
        "{errors}"
    );
}

/// Lets a test chain an edit after building a value.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}

impl Pipe for Value {}

#[test]
fn a_spec_built_with_constructors_should_validate_and_read_back_equal() {
    use eas_core::spec::{
        AutoscalerSpec, ByteSize, Container, Metadata, MountSpec, ScheduledScaling, Sinker,
    };

    let mut spec = ServiceSpec::new(Metadata::new("built_in_code", 2));
    spec.containers.push(
        Container::new("python:3.11")
            .with_script("python app.py")
            .with_port(8000)
            .with_env("MODE", "prod"),
    );
    spec.storage = vec![
        MountSpec::oss("/data_oss", "oss://bucket/data/"),
        MountSpec::nfs("/data_nas", "nas.example.com", "/share"),
        MountSpec::local("/models", "./models"),
        MountSpec::cache("/cache", ByteSize::new(1 << 30), "/data_oss"),
    ];
    let weekday_mornings = "0 8 * * MON-FRI".parse().expect("a cron expression");
    let entry = ScheduledScaling::bounds(weekday_mornings, Some(3), None)
        .in_timezone("Asia/Shanghai".parse().expect("a zone"));
    spec.autoscaler = Some(
        AutoscalerSpec::new(1, 8)
            .with_qps(50.0)
            .with_schedule(entry),
    );
    spec.sinker = Some(Sinker::file("/tmp/requests.jsonl"));
    spec.validate().expect("a valid spec");
    let read_back = ServiceSpec::from_json_str(&spec.to_json_pretty()).expect("its JSON is valid");
    assert_eq!(read_back, spec);
}
