//! Behaviour of the `service.json` reader (`eas_core::spec`), checked against the EAS
//! reference: its examples read, its defaults apply, specs survive printing, every rule is
//! reported at the path of the field that breaks it, and the published JSON Schema agrees.

mod spec_support;

use std::time::Duration;

use eas_core::spec::{
    AutoscalerSpec, ByteSize, Container, CountOrPercent, CronExpr, Metadata, MountSpec,
    ProcessorType, Qos, ScheduledScaling, ServiceSpec, ServiceType, Sinker, SinkerType,
    SpreadPolicy, TimeZone, json_schema,
};
use serde_json::{Value, json};
use spec_support::{
    REFERENCE_EXAMPLES, accepted, assert_error, assert_round_trip, example_text, example_value,
    json_object_after, minimal, minimal_with, reference_text_path, refused, rich_specs, skip,
    with_processor,
};

// ---------------------------------------------------------------------------------------------
// The reference examples
// ---------------------------------------------------------------------------------------------

#[test]
fn both_reference_examples_should_parse_and_validate() {
    for name in REFERENCE_EXAMPLES {
        let spec = ServiceSpec::from_json_str(&example_text(name))
            .unwrap_or_else(|e| panic!("{name} is refused:\n{e}"));
        spec.validate()
            .unwrap_or_else(|e| panic!("{name} fails validate():\n{e}"));
    }
}

#[test]
fn the_quickstart_example_should_read_as_written() {
    let spec = accepted(&example_value("reference-quickstart.json"));
    assert_eq!(spec.metadata.name, "demo");
    assert_eq!(spec.metadata.instance, 1);
    assert_eq!(
        spec.metadata.workspace_id.as_deref(),
        Some("your-workspace-id")
    );
    let computing = spec
        .cloud
        .as_ref()
        .and_then(|c| c.computing.as_ref())
        .expect("cloud.computing");
    assert_eq!(computing.instances.len(), 1);
    assert_eq!(computing.instances[0].instance_type, "ecs.c7a.large");
    assert!(!computing.instances[0].is_spot());
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(spec.containers[0].script.as_deref(), Some("python app.py"));
    assert_eq!(spec.containers[0].command, None);
    assert_eq!(spec.containers[0].port, Some(8000));
}

#[test]
fn the_full_example_should_read_as_written() {
    let spec = accepted(&example_value("reference-full.json"));
    assert_eq!(spec.processor.as_deref(), Some("tensorflow_cpu_1.12"));
    assert_eq!(
        spec.model_path.as_deref(),
        Some("oss://examplebucket/exampledir/")
    );
    let m = &spec.metadata;
    assert_eq!(m.name, "test_eascmd");
    assert_eq!(m.resource.as_deref(), Some("eas-r-9lkbl2jvdm0puv****"));
    assert_eq!(m.cpu, Some(1.0));
    assert_eq!(m.memory, Some(2000));
    assert_eq!(m.gpu, Some(0));
    assert_eq!(m.gpu_memory, Some(10));
    assert_eq!(m.gpu_core_percentage, Some(10));
    assert_eq!(m.qos, None);
    assert_eq!(m.cuda.as_deref(), Some("11.2"));
    assert_eq!(m.rpc.keepalive, Duration::from_millis(5000));
    assert_eq!(m.max_surge(), CountOrPercent::Count(1));
    assert_eq!(m.max_unavailable(), CountOrPercent::Count(1));
    assert_eq!(m.spread_policy(), SpreadPolicy::Host);
    assert_eq!(m.shm_size, Some(100));
    let computing = spec
        .cloud
        .as_ref()
        .and_then(|c| c.computing.as_ref())
        .expect("cloud.computing");
    assert_eq!(
        computing.instances[0].capacity,
        Some(CountOrPercent::Count(800))
    );
    assert_eq!(computing.instances[1].spot_price_limit, Some(3.6));
    assert!(computing.disable_spot_protection_period);
    let sinker = spec.sinker.as_ref().expect("sinker");
    assert_eq!(sinker.sink_type, SinkerType::MaxCompute);
    assert_eq!(spec.unit.as_ref().map(|u| u.size), Some(2));
    assert_eq!(spec.features.len(), 2);
    assert_eq!(spec.docker_auth.as_deref(), Some("dGVzdGNhbzoxM*******"));
    let autoscaler = spec.autoscaler.as_ref().expect("autoscaler");
    assert_eq!((autoscaler.min, autoscaler.max), (2, 5));
    assert_eq!(autoscaler.strategies.qps, Some(10.0));
}

#[test]
fn the_examples_printed_in_the_reference_text_should_parse() {
    let path = reference_text_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        let why = format!("the shared reference is not at {}", path.display());
        skip(
            "the_examples_printed_in_the_reference_text_should_parse",
            &why,
        );
        return;
    };
    let cases = [
        ("Example service.json file.", "reference-quickstart.json"),
        ("Sample JSON configuration:", "reference-full.json"),
    ];
    for (marker, copy) in cases {
        let json = json_object_after(&text, marker)
            .unwrap_or_else(|| panic!("no JSON object after {marker:?} in {}", path.display()));
        let spec = ServiceSpec::from_json_str(json)
            .unwrap_or_else(|e| panic!("the example after {marker:?} is refused:\n{e}"));
        assert!(spec.validate().is_ok());
        let printed: Value = serde_json::from_str(json).expect("JSON");
        assert_eq!(
            printed,
            example_value(copy),
            "examples/services/{copy} is not a faithful copy of the reference"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

#[test]
fn rpc_settings_should_default_to_the_references_values() {
    for spec in [
        minimal(),
        minimal_with(|s| s["metadata"]["rpc"] = json!({})),
    ] {
        let rpc = accepted(&spec).metadata.rpc;
        assert_eq!(rpc.io_threads, 4);
        assert_eq!(rpc.max_batch_size, 16);
        assert_eq!(rpc.max_batch_timeout, Duration::from_millis(50));
        assert_eq!(rpc.max_queue_size, 64);
        assert_eq!(rpc.worker_threads, 5);
        assert_eq!(rpc.rate_limit, 0);
        assert_eq!(rpc.keepalive, Duration::from_millis(600_000));
        assert!(!rpc.batching);
        assert!(!rpc.enable_sigterm);
    }
}

#[test]
fn an_rpc_setting_given_alone_should_leave_the_others_at_their_defaults() {
    let rpc = accepted(&minimal_with(|s| {
        s["metadata"]["rpc"] = json!({"max_batch_size": 8});
    }))
    .metadata
    .rpc;
    assert_eq!(rpc.max_batch_size, 8);
    assert_eq!(rpc.io_threads, 4);
    assert_eq!(rpc.keepalive, Duration::from_millis(600_000));
}

#[test]
fn termination_grace_period_should_default_to_30_seconds() {
    let spec = accepted(&minimal());
    assert_eq!(
        spec.metadata.termination_grace_period,
        Duration::from_secs(30)
    );
    let spec = accepted(&minimal_with(|s| {
        s["metadata"]["eas.termination_grace_period"] = json!(90);
    }));
    assert_eq!(
        spec.metadata.termination_grace_period,
        Duration::from_secs(90)
    );
}

#[test]
fn max_surge_should_default_to_2_percent() {
    let spec = accepted(&minimal());
    assert_eq!(spec.metadata.max_surge(), CountOrPercent::Percent(2.0));
    let spec = accepted(&minimal_with(|s| {
        s["metadata"]["rolling_strategy"] = json!({"max_unavailable": 1});
    }));
    assert_eq!(spec.metadata.max_surge(), CountOrPercent::Percent(2.0));
}

#[test]
fn max_unavailable_should_default_to_1_in_a_dedicated_group_and_0_in_the_public_one() {
    let public = accepted(&minimal());
    assert_eq!(public.metadata.max_unavailable(), CountOrPercent::Count(0));
    let dedicated = accepted(&minimal_with(|s| {
        s["metadata"]["resource"] = json!("eas-r-123");
    }));
    assert_eq!(
        dedicated.metadata.max_unavailable(),
        CountOrPercent::Count(1)
    );
    // An empty resource is the public group.
    let empty = accepted(&minimal_with(|s| s["metadata"]["resource"] = json!("")));
    assert_eq!(empty.metadata.max_unavailable(), CountOrPercent::Count(0));
}

#[test]
fn unit_size_should_default_to_2() {
    let spec = accepted(&minimal_with(|s| s["unit"] = json!({})));
    assert_eq!(spec.unit.as_ref().map(|u| u.size), Some(2));
    let spec = accepted(&minimal_with(|s| s["unit"] = json!({"size": 4})));
    assert_eq!(spec.unit.as_ref().map(|u| u.size), Some(4));
}

#[test]
fn spot_protection_should_stay_on_unless_disabled() {
    let spec = accepted(&minimal_with(|s| {
        s["cloud"] =
            json!({"computing": {"instances": [{"type": "ecs.c7.large", "spot_price_limit": 1}]}});
    }));
    let computing = spec
        .cloud
        .and_then(|c| c.computing)
        .expect("cloud.computing");
    assert!(!computing.disable_spot_protection_period);
}

#[test]
fn other_switches_should_default_to_off() {
    let spec = accepted(&minimal_with(|s| {
        s["runtime"] = json!({});
        s["aimaster"] = json!({});
        s["storage"] = json!([{"mount_path": "/m", "oss": {"path": "oss://b/p/"}}]);
        s["containers"][0]["env"] = json!([{"name": "A"}]);
        s["autoscaler"] =
            json!({"min": 1, "max": 2, "schedules": [{"schedule": "0 8 * * *", "replicas": 2}]});
    }));
    let m = &spec.metadata;
    assert!(!m.enable_grpc && !m.enable_webservice && !m.resource_rebalancing);
    assert!(!m.resource_burstable);
    assert_eq!(m.service_type, None);
    assert!(!m.is_async());
    assert_eq!(m.spread_policy(), SpreadPolicy::Default);
    assert_eq!(spec.runtime.map(|r| r.enable_crash_block), Some(false));
    assert_eq!(spec.aimaster.map(|a| a.enable), Some(false));
    assert_eq!(
        spec.storage[0].oss.as_ref().map(|o| o.read_only),
        Some(false)
    );
    assert_eq!(spec.containers[0].env[0].value, "");
    let autoscaler = spec.autoscaler.expect("autoscaler");
    assert_eq!(autoscaler.schedules[0].timezone, TimeZone::UTC);
}

#[test]
fn empty_strings_should_read_as_not_set() {
    let spec = accepted(&with_processor(|s| {
        for field in [
            "model_entry",
            "model_config",
            "processor_path",
            "processor_entry",
            "processor_mainclass",
            "processor_type",
            "warm_up_data_path",
            "oss_endpoint",
            "dockerAuth",
        ] {
            s[field] = json!("");
        }
        for field in ["workspace_id", "qos", "resource", "cuda"] {
            s["metadata"][field] = json!("");
        }
    }));
    assert_eq!(spec.model_entry, None);
    assert_eq!(spec.model_config, None);
    assert_eq!(spec.processor_path, None);
    assert_eq!(spec.processor_entry, None);
    assert_eq!(spec.processor_mainclass, None);
    assert_eq!(spec.processor_type, None);
    assert_eq!(spec.warm_up_data_path, None);
    assert_eq!(spec.oss_endpoint, None);
    assert_eq!(spec.docker_auth, None);
    assert_eq!(spec.metadata.workspace_id, None);
    assert_eq!(spec.metadata.qos, None);
    assert_eq!(spec.metadata.resource, None);
    assert_eq!(spec.metadata.cuda, None);
}

#[test]
fn null_should_read_as_not_set_for_optional_fields() {
    let spec = accepted(&with_processor(|s| {
        s["model_entry"] = Value::Null;
        s["processor_type"] = Value::Null;
        s["metadata"]["qos"] = Value::Null;
        s["metadata"]["cpu"] = Value::Null;
    }));
    assert_eq!(spec.model_entry, None);
    assert_eq!(spec.processor_type, None);
    assert_eq!(spec.metadata.qos, None);
    assert_eq!(spec.metadata.cpu, None);
}

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

#[test]
fn the_reference_examples_should_round_trip_through_their_printed_form() {
    for name in REFERENCE_EXAMPLES {
        assert_round_trip(name, &accepted(&example_value(name)));
    }
}

#[test]
fn rich_specs_should_round_trip_through_their_printed_form() {
    for (label, value) in rich_specs() {
        assert_round_trip(label, &accepted(&value));
    }
}

#[test]
fn the_printed_form_should_keep_what_was_read() {
    let (_, value) = rich_specs().swap_remove(0);
    let spec = accepted(&value);
    let printed: Value = serde_json::from_str(&spec.to_json_pretty()).expect("JSON");
    assert_eq!(printed["metadata"]["rolling_strategy"]["max_surge"], "10%");
    assert_eq!(printed["metadata"]["rpc"]["keepalive"], 1000);
    assert_eq!(printed["metadata"]["eas.termination_grace_period"], 60);
    assert_eq!(printed["storage"][3]["cache"]["capacity"], "20Gi");
    assert_eq!(
        printed["autoscaler"]["schedules"][0]["timezone"],
        "Asia/Shanghai"
    );
    assert_eq!(printed["processor_type"], "python");
    assert_eq!(printed["metadata"]["qos"], "BestEffort");
    assert_eq!(printed["metadata"]["type"], "Async");
    // Fields that were empty strings are left out rather than printed as "".
    let full = accepted(&example_value("reference-full.json"));
    let printed: Value = serde_json::from_str(&full.to_json_pretty()).expect("JSON");
    assert!(printed.get("model_entry").is_none());
    assert!(printed["metadata"].get("qos").is_none());
    assert_eq!(printed["sinker"]["type"], "maxcompute");
}

#[test]
fn a_spec_built_in_code_should_validate_and_round_trip() {
    let mut spec = ServiceSpec::new(Metadata::new("built_in_code", 2));
    spec.containers.push(
        Container::new("python:3.11")
            .with_script("python app.py")
            .with_port(8000)
            .with_env("MODE", "prod"),
    );
    spec.storage
        .push(MountSpec::oss("/models", "oss://bucket/models/"));
    spec.storage
        .push(MountSpec::nfs("/nas", "x.nas.aliyuncs.com", "/"));
    spec.storage.push(MountSpec::local("/host", "/var/data"));
    spec.storage
        .push(MountSpec::cache("/hot", ByteSize::new(1 << 30), "/models"));
    let at_eight: CronExpr = "0 8 * * MON-FRI".parse().expect("cron");
    let shanghai: TimeZone = "Asia/Shanghai".parse().expect("time zone");
    spec.autoscaler = Some(
        AutoscalerSpec::new(1, 4)
            .with_qps(50.0)
            .with_schedule(ScheduledScaling::fixed(at_eight.clone(), 3).in_timezone(shanghai))
            .with_schedule(ScheduledScaling::bounds(at_eight, Some(1), Some(4))),
    );
    spec.sinker = Some(Sinker::file("/tmp/sink.jsonl"));
    spec.validate()
        .unwrap_or_else(|e| panic!("the spec built in code is invalid:\n{e}"));
    assert_round_trip("built in code", &spec);
}

#[test]
fn a_spec_built_in_code_should_be_checked_by_validate() {
    let mut spec = ServiceSpec::new(Metadata::new("Bad-Name", 1));
    spec.containers
        .push(Container::new("img").with_command("run").with_port(9090));
    let errors = spec.validate().expect_err("invalid");
    assert_error(&errors, "metadata.name", "lowercase");
    assert_error(&errors, "containers[0].port", "reserved");
}

// ---------------------------------------------------------------------------------------------
// Rules, each at the path of the field that breaks it
// ---------------------------------------------------------------------------------------------

#[test]
fn service_names_should_follow_the_charset_and_length_rules() {
    let refused_names = [
        ("a".repeat(65), "64"),
        ("Demo".to_owned(), "lowercase"),
        ("demoService".to_owned(), "'S'"),
        ("1demo".to_owned(), "'1'"),
        ("_demo".to_owned(), "start"),
        ("de-mo".to_owned(), "'-'"),
        ("de mo".to_owned(), "' '"),
        ("démo".to_owned(), "'é'"),
        (String::new(), "empty"),
    ];
    for (name, word) in refused_names {
        let errors = refused(&minimal_with(|s| s["metadata"]["name"] = json!(name)));
        assert_error(&errors, "metadata.name", word);
    }
    for name in ["a".repeat(64), "demo_1".to_owned(), "a".to_owned()] {
        accepted(&minimal_with(|s| s["metadata"]["name"] = json!(name)));
    }
}

#[test]
fn a_negative_instance_count_should_be_refused() {
    let errors = refused(&minimal_with(|s| s["metadata"]["instance"] = json!(-1)));
    assert_error(&errors, "metadata.instance", "at least 0");
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn an_instance_count_too_large_for_u32_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["instance"] = json!(5_000_000_000_u64);
    }));
    assert_error(&errors, "metadata.instance", "at most");
}

#[test]
fn a_container_with_both_command_and_script_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["containers"][0]["command"] = json!("python app.py");
    }));
    assert_error(&errors, "containers[0]", "not both");
}

#[test]
fn a_container_with_neither_command_nor_script_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["containers"][0]
            .as_object_mut()
            .expect("object")
            .remove("script");
    }));
    assert_error(&errors, "containers[0]", "command or a script");
}

#[test]
fn ports_reserved_for_the_engine_should_be_refused() {
    for port in [8080, 9090] {
        let errors = refused(&minimal_with(|s| s["containers"][0]["port"] = json!(port)));
        assert_error(&errors, "containers[0].port", "reserved");
        assert_error(&errors, "containers[0].port", &port.to_string());
    }
    for (port, word) in [(json!(0), "1 to 65535"), (json!(70000), "1 to 65535")] {
        let errors = refused(&minimal_with(|s| s["containers"][0]["port"] = port));
        assert_error(&errors, "containers[0].port", word);
    }
    accepted(&minimal_with(|s| s["containers"][0]["port"] = json!(8081)));
}

#[test]
fn the_second_containers_mistakes_should_be_reported_at_index_1() {
    let errors = refused(&minimal_with(|s| {
        s["containers"]
            .as_array_mut()
            .expect("array")
            .push(json!({"image": "x", "command": "a", "script": "b", "port": 9090}));
    }));
    assert_error(&errors, "containers[1]", "not both");
    assert_error(&errors, "containers[1].port", "reserved");
    assert!(errors.at("containers[0]").is_none(), "{errors}");
}

fn with_capacity(capacity: Value) -> Value {
    minimal_with(|s| {
        s["cloud"] =
            json!({"computing": {"instances": [{"type": "ecs.c7.large", "capacity": capacity}]}});
    })
}

#[test]
fn capacity_percentage_out_of_range_or_malformed_should_be_refused() {
    let cases = [
        (json!("0%"), "greater than 0%"),
        (json!("120%"), "at most 100%"),
        (json!("2O%"), "2O%"),
        (json!("-5%"), "percentage"),
        (json!("lots"), "lots"),
        (json!(-1), "-1"),
        (json!(2.5), "whole number"),
        (json!(true), "expected"),
    ];
    for (capacity, word) in cases {
        let errors = refused(&with_capacity(capacity.clone()));
        assert_error(&errors, "cloud.computing.instances[0].capacity", word);
    }
}

#[test]
fn capacity_as_a_count_a_numeric_string_or_a_percentage_should_be_accepted() {
    let cases = [
        (json!(800), CountOrPercent::Count(800)),
        (json!("500"), CountOrPercent::Count(500)),
        (json!("20%"), CountOrPercent::Percent(20.0)),
        (json!("100%"), CountOrPercent::Percent(100.0)),
        (json!("12.5%"), CountOrPercent::Percent(12.5)),
        (json!(0), CountOrPercent::Count(0)),
    ];
    for (capacity, expected) in cases {
        let spec = accepted(&with_capacity(capacity));
        let computing = spec.cloud.and_then(|c| c.computing).expect("computing");
        assert_eq!(computing.instances[0].capacity, Some(expected));
    }
}

#[test]
fn a_spot_bid_of_zero_or_less_should_be_refused() {
    for bid in [json!(0), json!(-1), json!(-0.5)] {
        let errors = refused(&minimal_with(|s| {
            s["cloud"] = json!({"computing": {"instances": [
                {"type": "ecs.c7.large"},
                {"type": "ecs.c7.xlarge", "spot_price_limit": bid}
            ]}});
        }));
        assert_error(
            &errors,
            "cloud.computing.instances[1].spot_price_limit",
            "greater than 0",
        );
    }
}

#[test]
fn the_same_instance_type_in_the_same_market_should_not_be_listed_twice() {
    let errors = refused(&minimal_with(|s| {
        s["cloud"] = json!({"computing": {"instances": [
            {"type": "ecs.c7.large"}, {"type": "ecs.c7.large", "spot_price_limit": 1}, {"type": "ecs.c7.large"}
        ]}});
    }));
    assert_error(&errors, "cloud.computing.instances[2].type", "instances[0]");
    assert!(errors.at("cloud.computing.instances[1].type").is_none());
}

#[test]
fn autoscaler_min_greater_than_max_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["autoscaler"] = json!({"min": 5, "max": 2, "strategies": {"qps": 10}});
    }));
    assert_error(&errors, "autoscaler.min", "greater than max");
}

#[test]
fn an_autoscaler_without_strategy_or_schedule_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["autoscaler"] = json!({"min": 1, "max": 2})
    }));
    assert_error(&errors, "autoscaler.strategies", "at least one strategy");
}

#[test]
fn autoscaler_targets_should_be_positive_and_utilisation_at_most_100() {
    let cases = [
        (
            json!({"qps": 0}),
            "autoscaler.strategies.qps",
            "greater than 0",
        ),
        (
            json!({"cpu": 150}),
            "autoscaler.strategies.cpu",
            "at most 100",
        ),
        (
            json!({"custom": {"tokens": -1}}),
            "autoscaler.strategies.custom[\"tokens\"]",
            "greater than 0",
        ),
    ];
    for (strategies, path, word) in cases {
        let errors = refused(&minimal_with(|s| {
            s["autoscaler"] = json!({"min": 1, "max": 2, "strategies": strategies});
        }));
        assert_error(&errors, path, word);
    }
}

#[test]
fn processor_and_processor_path_together_should_be_refused() {
    let errors = refused(&with_processor(|s| {
        s["processor_path"] = json!("oss://bucket/proc/");
        s["processor_type"] = json!("python");
        s["processor_entry"] = json!("app.py");
    }));
    assert_error(&errors, "processor_path", "not both");
}

#[test]
fn processor_path_without_processor_type_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["processor_path"] = json!("oss://bucket/proc/");
        s["model_path"] = json!("oss://bucket/model/");
    }));
    assert_error(&errors, "processor_type", "required");
}

#[test]
fn processor_type_without_processor_path_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["processor_type"] = json!("python");
        s["processor_entry"] = json!("app.py");
    }));
    assert_error(&errors, "processor_path", "required");
}

#[test]
fn custom_processors_should_name_their_entry_or_main_class() {
    let cases = [
        ("python", "processor_entry", "python"),
        ("cpp", "processor_entry", "cpp"),
        ("java", "processor_mainclass", "java"),
    ];
    for (kind, path, word) in cases {
        let errors = refused(&json!({
            "metadata": {"name": "demo", "instance": 1},
            "processor_path": "oss://bucket/proc/",
            "processor_type": kind,
            "model_path": "oss://bucket/model/"
        }));
        assert_error(&errors, path, "required");
        assert_error(&errors, path, word);
    }
    let spec = accepted(&json!({
        "metadata": {"name": "demo", "instance": 1},
        "processor_path": "oss://bucket/proc/",
        "processor_type": "cpp",
        "processor_entry": "libprocessor.so",
        "model_path": "oss://bucket/model/"
    }));
    assert_eq!(spec.processor_type, Some(ProcessorType::Cpp));
}

#[test]
fn a_processor_without_model_path_should_be_refused() {
    let errors = refused(&with_processor(|s| {
        s.as_object_mut().expect("object").remove("model_path");
    }));
    assert_error(&errors, "model_path", "required");
}

#[test]
fn model_paths_should_use_a_supported_form() {
    for path in [
        "oss://bucket/dir/",
        "s3://bucket/key",
        "https://h/m.tar.gz",
        "https://h/m.tbz2",
        "/local/models",
    ] {
        accepted(&with_processor(|s| s["model_path"] = json!(path)));
    }
    for (path, word) in [
        ("oss:///dir", "bucket"),
        ("https://h/model.onnx", "archive"),
        ("https://h/model.bz2", ".tar.bz2 or .tbz2"),
        ("1ftp://h/m.tar", "malformed scheme"),
        ("mem://", "names nothing after mem://"),
    ] {
        let errors = refused(&with_processor(|s| s["model_path"] = json!(path)));
        assert_error(&errors, "model_path", word);
    }
}

#[test]
fn a_scheme_eas_does_not_know_should_be_left_to_the_runtime() {
    // Applications register storage mounts by scheme; only the runtime knows which.
    for path in ["mem://bucket/model/", "ftp://h/m.tar", "gs://b/p/"] {
        accepted(&with_processor(|s| s["model_path"] = json!(path)));
        accepted(&with_processor(|s| {
            s["processor_path"] = json!(path);
            s["processor_type"] = json!("python");
            s["processor_entry"] = json!("app.py");
            s.as_object_mut().expect("object").remove("processor");
        }));
    }
    accepted(&with_mounts(json!([
        {"mount_path": "/data", "oss": {"path": "mem://bucket/data/"}}
    ])));
}

#[test]
fn a_spec_with_nothing_to_run_should_be_refused() {
    let errors = refused(&json!({"metadata": {"name": "demo", "instance": 1}}));
    assert_error(&errors, "", "nothing to run");
}

#[test]
fn cuda_versions_outside_the_supported_list_should_be_refused() {
    let errors = refused(&minimal_with(|s| s["metadata"]["cuda"] = json!("12.1")));
    assert_error(&errors, "metadata.cuda", "unsupported");
    assert_error(&errors, "metadata.cuda", "11.2");
    for version in ["8.0", "10.2", "11.2"] {
        let spec = accepted(&minimal_with(|s| s["metadata"]["cuda"] = json!(version)));
        assert_eq!(spec.metadata.cuda.as_deref(), Some(version));
    }
}

#[test]
fn gpu_core_percentage_outside_1_to_100_should_be_refused() {
    for percentage in [0, 101] {
        let errors = refused(&minimal_with(|s| {
            s["metadata"]["gpu_core_percentage"] = json!(percentage);
        }));
        assert_error(&errors, "metadata.gpu_core_percentage", "1 to 100");
    }
    for percentage in [1, 100] {
        accepted(&minimal_with(|s| {
            s["metadata"]["gpu_core_percentage"] = json!(percentage);
        }));
    }
}

#[test]
fn whole_gpus_and_gpu_slicing_together_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["gpu"] = json!(1);
        s["metadata"]["gpu_memory"] = json!(8);
    }));
    assert_error(&errors, "metadata.gpu", "not both");
}

#[test]
fn qos_should_be_empty_or_best_effort() {
    let spec = accepted(&minimal_with(|s| s["metadata"]["qos"] = json!("")));
    assert_eq!(spec.metadata.qos, None);
    let spec = accepted(&minimal_with(|s| {
        s["metadata"]["qos"] = json!("BestEffort")
    }));
    assert_eq!(spec.metadata.qos, Some(Qos::BestEffort));
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["qos"] = json!("Guaranteed")
    }));
    assert_error(&errors, "metadata.qos", "BestEffort");
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["qos"] = json!("besteffort")
    }));
    assert_error(&errors, "metadata.qos", "did you mean \"BestEffort\"");
}

#[test]
fn burstable_outside_a_dedicated_group_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["resource_burstable"] = json!(true);
    }));
    assert_error(&errors, "metadata.resource_burstable", "metadata.resource");
}

#[test]
fn a_rolling_update_that_cannot_progress_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["rolling_strategy"] = json!({"max_surge": "0%", "max_unavailable": 0});
    }));
    assert_error(&errors, "metadata.rolling_strategy", "both 0");
}

fn with_mounts(mounts: Value) -> Value {
    minimal_with(|s| s["storage"] = mounts)
}

#[test]
fn a_relative_mount_path_should_be_refused() {
    let errors = refused(&with_mounts(json!([
        {"mount_path": "data", "oss": {"path": "oss://b/p/"}}
    ])));
    assert_error(&errors, "storage[0].mount_path", "absolute");
}

#[test]
fn the_same_mount_path_twice_should_be_refused() {
    let errors = refused(&with_mounts(json!([
        {"mount_path": "/data", "oss": {"path": "oss://b/p/"}},
        {"mount_path": "/data/", "local": {"path": "/x"}}
    ])));
    assert_error(
        &errors,
        "storage[1].mount_path",
        "already mounted by storage[0]",
    );
}

#[test]
fn nested_mount_paths_should_be_refused_in_either_order() {
    let inner_second = refused(&with_mounts(json!([
        {"mount_path": "/data", "oss": {"path": "oss://b/p/"}},
        {"mount_path": "/data/sub", "local": {"path": "/x"}}
    ])));
    assert_error(&inner_second, "storage[1].mount_path", "inside storage[0]");
    let inner_first = refused(&with_mounts(json!([
        {"mount_path": "/data/sub", "local": {"path": "/x"}},
        {"mount_path": "/data", "oss": {"path": "oss://b/p/"}}
    ])));
    assert_error(&inner_first, "storage[1].mount_path", "contains storage[0]");
    // A shared prefix that is not a parent directory is not nesting.
    accepted(&with_mounts(json!([
        {"mount_path": "/data", "oss": {"path": "oss://b/p/"}},
        {"mount_path": "/data2", "local": {"path": "/x"}}
    ])));
}

#[test]
fn a_mount_should_have_exactly_one_source() {
    let two = refused(&with_mounts(json!([
        {"mount_path": "/data", "oss": {"path": "oss://b/p/"}, "local": {"path": "/x"}}
    ])));
    assert_error(&two, "storage[0]", "one source, found 2");
    let none = refused(&with_mounts(json!([{"mount_path": "/data"}])));
    assert_error(&none, "storage[0]", "needs one source");
}

#[test]
fn mount_sources_should_be_well_formed() {
    let cases = [
        (
            json!([{"mount_path": "/d", "oss": {"path": "/not/oss"}}]),
            "storage[0].oss.path",
            "oss://",
        ),
        (
            json!([{"mount_path": "/d", "nfs": {"server": "s", "path": "rel"}}]),
            "storage[0].nfs.path",
            "absolute",
        ),
        (
            json!([{"mount_path": "/d", "cache": {"capacity": "1G", "path": "/elsewhere"}}]),
            "storage[0].cache.path",
            "not the mount_path",
        ),
        (
            json!([{"mount_path": "/d", "cache": {"capacity": "lots", "path": "/d"}}]),
            "storage[0].cache.capacity",
            "20G",
        ),
    ];
    for (mounts, path, word) in cases {
        let errors = refused(&with_mounts(mounts));
        assert_error(&errors, path, word);
    }
}

fn with_schedule(schedule: Value) -> Value {
    minimal_with(|s| {
        s["autoscaler"] = json!({"min": 1, "max": 4, "schedules": [schedule]});
    })
}

#[test]
fn an_invalid_cron_expression_should_be_refused() {
    for cron in ["0 25 * * *", "* * * *", "not a cron", "0 8 * * NOTADAY", ""] {
        let errors = refused(&with_schedule(json!({"schedule": cron, "replicas": 2})));
        assert_error(&errors, "autoscaler.schedules[0].schedule", "cron");
    }
    for cron in ["0 8 * * MON-FRI", "*/5 * * * *", "0 0 8 * * *"] {
        accepted(&with_schedule(json!({"schedule": cron, "replicas": 2})));
    }
}

#[test]
fn an_unknown_time_zone_should_be_refused() {
    let errors = refused(&with_schedule(json!({
        "schedule": "0 8 * * *", "timezone": "Mars/Olympus", "replicas": 2
    })));
    assert_error(&errors, "autoscaler.schedules[0].timezone", "time zone");
    let spec = accepted(&with_schedule(json!({
        "schedule": "0 8 * * *", "timezone": "Asia/Shanghai", "replicas": 2
    })));
    let autoscaler = spec.autoscaler.expect("autoscaler");
    assert_eq!(autoscaler.schedules[0].timezone.name(), "Asia/Shanghai");
}

#[test]
fn a_scheduled_entry_should_set_replicas_or_bounds_consistently() {
    let cases = [
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
            json!({"schedule": "0 8 * * *", "min": 3, "max": 2}),
            "autoscaler.schedules[0].min",
            "greater than max",
        ),
    ];
    for (entry, path, word) in cases {
        let errors = refused(&with_schedule(entry));
        assert_error(&errors, path, word);
    }
}

#[test]
fn an_unknown_field_should_be_named_with_the_closest_known_field() {
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["rpc"] = json!({"max_batch_sise": 8});
    }));
    let error = errors.at("metadata.rpc.max_batch_sise").expect("an error");
    assert_eq!(
        error.to_string(),
        "metadata.rpc.max_batch_sise: unknown field; did you mean max_batch_size?"
    );
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn unknown_fields_should_be_reported_at_every_level() {
    let errors = refused(&minimal_with(|s| {
        s["contianers"] = json!([]);
        s["metadata"]["nmae"] = json!("x");
        s["containers"][0]["imgae"] = json!("x");
        s["colour"] = json!("blue");
    }));
    assert_error(&errors, "contianers", "did you mean containers?");
    assert_error(&errors, "metadata.nmae", "did you mean name?");
    assert_error(&errors, "containers[0].imgae", "did you mean image?");
    assert_error(&errors, "colour", "unknown field");
}

#[test]
fn a_wrong_type_should_say_what_was_expected_and_what_was_found() {
    let cases = [
        (
            minimal_with(|s| s["metadata"]["instance"] = json!("2")),
            "metadata.instance",
            "expected a whole number, found a string (\"2\")",
        ),
        (
            minimal_with(|s| s["metadata"]["instance"] = json!(1.5)),
            "metadata.instance",
            "expected a whole number",
        ),
        (
            minimal_with(|s| s["metadata"]["name"] = json!(42)),
            "metadata.name",
            "expected a string, found an integer (42)",
        ),
        (
            minimal_with(|s| s["containers"] = json!("python:3.11")),
            "containers",
            "expected an array",
        ),
        (
            minimal_with(|s| s["metadata"]["enable_grpc"] = json!("yes")),
            "metadata.enable_grpc",
            "expected true or false",
        ),
        (
            minimal_with(|s| s["labels"] = json!({"team": 7})),
            "labels.team",
            "expected a string",
        ),
    ];
    for (spec, path, words) in cases {
        let errors = refused(&spec);
        assert_error(&errors, path, words);
    }
}

#[test]
fn a_missing_required_field_should_be_named() {
    let cases = [
        (json!({}), "metadata"),
        (json!({"metadata": {"instance": 1}}), "metadata.name"),
        (json!({"metadata": {"name": "demo"}}), "metadata.instance"),
        (
            minimal_with(|s| s["containers"] = json!([{"script": "x"}])),
            "containers[0].image",
        ),
    ];
    for (spec, path) in cases {
        let errors = refused(&spec);
        assert_error(&errors, path, "required field is missing");
    }
}

#[test]
fn sinker_types_should_match_without_regard_to_case() {
    let cases = [
        ("MaxCompute", "maxcompute", SinkerType::MaxCompute),
        ("maxcompute", "maxcompute", SinkerType::MaxCompute),
        ("SLS", "sls", SinkerType::Sls),
        ("Sls", "sls", SinkerType::Sls),
        ("FILE", "file", SinkerType::File),
    ];
    for (written, section, expected) in cases {
        let config = match section {
            "maxcompute" => json!({"maxcompute": {"project": "p", "table": "t"}}),
            "sls" => json!({"sls": {"project": "p", "logstore": "l"}}),
            _ => json!({"file": {"path": "/tmp/sink"}}),
        };
        let spec = accepted(&minimal_with(|s| {
            s["sinker"] = json!({"type": written, "config": config});
        }));
        assert_eq!(spec.sinker.map(|k| k.sink_type), Some(expected));
    }
    let errors = refused(&minimal_with(|s| s["sinker"] = json!({"type": "kafka"})));
    assert_error(&errors, "sinker.type", "maxcompute, sls or file");
}

#[test]
fn a_sinker_without_the_section_its_type_names_should_be_refused() {
    let errors = refused(&minimal_with(|s| {
        s["sinker"] =
            json!({"type": "SLS", "config": {"maxcompute": {"project": "p", "table": "t"}}});
    }));
    assert_error(&errors, "sinker.config.sls", "required");
}

#[test]
fn metadata_type_should_accept_async_and_the_llm_gateway() {
    let spec = accepted(&minimal_with(|s| s["metadata"]["type"] = json!("Async")));
    assert_eq!(spec.metadata.service_type, Some(ServiceType::Async));
    assert!(spec.metadata.is_async());
    let spec = accepted(&minimal_with(|s| {
        s["metadata"]["type"] = json!("LLMGatewayService");
    }));
    assert_eq!(
        spec.metadata.service_type,
        Some(ServiceType::LlmGatewayService)
    );
}

#[test]
fn a_misspelt_metadata_type_should_be_refused_with_a_suggestion() {
    for (typo, suggestion) in [
        ("Asyc", "Async"),
        ("async", "Async"),
        ("LLMGatewayServce", "LLMGatewayService"),
    ] {
        let errors = refused(&minimal_with(|s| s["metadata"]["type"] = json!(typo)));
        assert_error(
            &errors,
            "metadata.type",
            &format!("did you mean \"{suggestion}\"?"),
        );
    }
}

#[test]
fn gateway_limits_should_be_positive_when_enabled() {
    let errors = refused(&minimal_with(|s| {
        s["networking"] = json!({"gateway_policy": {"rate_limit": {"enable": true, "limit": 0}}});
    }));
    assert_error(
        &errors,
        "networking.gateway_policy.rate_limit.limit",
        "at least 1",
    );
}

#[test]
fn rpc_values_below_their_minimum_should_be_refused() {
    for field in [
        "io_threads",
        "max_batch_size",
        "max_queue_size",
        "worker_threads",
        "keepalive",
    ] {
        let errors = refused(&minimal_with(|s| s["metadata"]["rpc"][field] = json!(0)));
        assert_error(&errors, &format!("metadata.rpc.{field}"), "at least 1");
    }
}

// ---------------------------------------------------------------------------------------------
// Documents that are not specs
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_json_should_be_refused_with_a_line_and_column() {
    let missing_comma = "{\n  \"metadata\": {\n    \"name\": \"demo\"\n    \"instance\": 1\n  }\n}";
    let errors = ServiceSpec::from_json_str(missing_comma).expect_err("invalid JSON");
    assert_eq!(errors.len(), 1);
    let error = &errors.errors()[0];
    assert_eq!(error.location, Some((4, 5)), "{error}");
    assert!(error.message.starts_with("invalid JSON"), "{error}");
    assert!(
        error.to_string().starts_with("line 4, column 5: "),
        "{error}"
    );

    let cases = [
        "{\"metadata\": {\"name\": \"demo\", \"instance\": 1},}",
        "{\"metadata\": {\"name\": \"demo}}",
        "{'metadata': {}}",
        "{\"metadata\": {} // comment\n}",
        "{\"metadata\": NaN}",
        "{\"metadata\": {\"instance\": 1e999}}",
        "{\"metadata\": {\"name\": \"\\x\"}}",
        "{\"metadata\": {}} trailing",
        "{\"metadata\": {\"name\": \"de",
        "\u{feff}{}",
    ];
    for text in cases {
        let errors = ServiceSpec::from_json_str(text).expect_err("invalid JSON");
        assert_eq!(errors.len(), 1, "{text:?}: {errors}");
        let error = &errors.errors()[0];
        assert!(
            error.message.starts_with("invalid JSON"),
            "{text:?}: {error}"
        );
        assert_eq!(error.path, "", "{text:?}");
        let (line, column) = error.location.expect("a location");
        assert!(line >= 1 && column >= 1, "{text:?}: {error}");
    }
}

#[test]
fn invalid_utf8_should_be_refused_with_a_location() {
    let errors = ServiceSpec::from_json_slice(b"{\"metadata\": \"\xff\xfe\"}").expect_err("bad");
    assert!(errors.errors()[0].location.is_some(), "{errors}");
}

#[test]
fn deeply_nested_json_should_be_refused_without_overflowing_the_stack() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let errors = ServiceSpec::from_json_str(&deep).expect_err("refused");
    assert!(errors.errors()[0].message.contains("recursion"), "{errors}");
    let deep_in_metadata = format!(
        "{{\"metadata\": {}{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(ServiceSpec::from_json_str(&deep_in_metadata).is_err());
}

#[test]
fn a_document_that_is_not_an_object_should_be_refused() {
    for text in [
        "[]",
        "[{\"metadata\": {}}]",
        "42",
        "\"service\"",
        "null",
        "true",
    ] {
        let errors = ServiceSpec::from_json_str(text).expect_err("refused");
        assert_eq!(errors.len(), 1, "{text}: {errors}");
        assert_error(&errors, "", "expected an object");
        assert_eq!(errors.errors()[0].location, None);
        assert!(errors.to_string().starts_with("(root): "), "{errors}");
    }
}

#[test]
fn an_empty_document_should_be_refused_with_a_location() {
    for text in ["", "   ", "\n\n"] {
        let errors = ServiceSpec::from_json_str(text).expect_err("refused");
        assert_eq!(errors.len(), 1, "{text:?}: {errors}");
        assert!(errors.errors()[0].message.contains("EOF"), "{errors}");
        assert!(errors.errors()[0].location.is_some(), "{errors}");
    }
    let errors = ServiceSpec::from_json_slice(b"").expect_err("refused");
    assert!(errors.errors()[0].location.is_some(), "{errors}");
}

/// `SpecError::location` is documented as "Line and column (both from 1)".
#[test]
fn syntax_error_locations_should_count_columns_from_1() {
    for text in ["", "\n", "{\n", "{\"metadata\":\n"] {
        let errors = ServiceSpec::from_json_str(text).expect_err("refused");
        let (line, column) = errors.errors()[0].location.expect("a location");
        assert!(
            line >= 1 && column >= 1,
            "{text:?} gives line {line}, column {column}: {errors}"
        );
    }
}

/// A `u64::MAX` grace period passed `eas validate` and then panicked `eas serve` on SIGTERM
/// (`now + grace` overflowed); every duration is bounded, and the error names the field and
/// the bound.
#[test]
fn a_grace_period_of_u64_max_should_be_refused_naming_the_field_and_the_bound() {
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["eas.termination_grace_period"] = json!(u64::MAX);
    }));
    assert_error(
        &errors,
        r#"metadata["eas.termination_grace_period"]"#,
        "must be at most 86400 seconds (a day), found 18446744073709551615",
    );
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn every_duration_should_be_accepted_up_to_its_bound_and_refused_past_it() {
    let cases: [(&str, &[&str], u64, &str); 5] = [
        (
            r#"metadata["eas.termination_grace_period"]"#,
            &["metadata", "eas.termination_grace_period"],
            86_400,
            "86400 seconds",
        ),
        (
            "metadata.rpc.keepalive",
            &["metadata", "rpc", "keepalive"],
            86_400_000,
            "86400000 milliseconds",
        ),
        (
            "metadata.rpc.max_batch_timeout",
            &["metadata", "rpc", "max_batch_timeout"],
            60_000,
            "60000 milliseconds",
        ),
        (
            "autoscaler.behavior.scale_up.stabilization_window_seconds",
            &[
                "autoscaler",
                "behavior",
                "scale_up",
                "stabilization_window_seconds",
            ],
            3600,
            "3600 seconds",
        ),
        (
            "autoscaler.behavior.scale_down.stabilization_window_seconds",
            &[
                "autoscaler",
                "behavior",
                "scale_down",
                "stabilization_window_seconds",
            ],
            3600,
            "3600 seconds",
        ),
    ];
    let with = |keys: &[&str], value: u64| {
        minimal_with(|s| {
            s["autoscaler"] = json!({"min": 1, "max": 2, "strategies": {"qps": 10}});
            let mut node = s;
            for key in keys {
                node = &mut node[*key];
            }
            *node = json!(value);
        })
    };
    for (path, keys, max, bound) in cases {
        accepted(&with(keys, max));
        let too_long = [max + 1, u64::from(u32::MAX), u64::MAX];
        // stabilization_window_seconds is a u32: past it the structural check answers.
        let too_long = if path.starts_with("autoscaler") {
            &too_long[..2]
        } else {
            &too_long[..]
        };
        for value in too_long {
            let errors = refused(&with(keys, *value));
            assert_error(&errors, path, &format!("must be at most {bound}"));
            assert!(errors.to_string().contains(&value.to_string()), "{errors}");
        }
    }
}

#[test]
fn a_spec_built_in_code_with_duration_max_should_be_refused_by_validate() {
    let mut metadata = Metadata::new("demo", 1);
    metadata.termination_grace_period = Duration::MAX;
    metadata.rpc.keepalive = Duration::MAX;
    metadata.rpc.max_batch_timeout = Duration::MAX;
    let mut spec = ServiceSpec::new(metadata);
    spec.processor = Some("echo".to_owned());
    spec.model_path = Some("oss://bucket/models/".to_owned());
    let errors = spec.validate().expect_err("refused");
    assert_error(
        &errors,
        r#"metadata["eas.termination_grace_period"]"#,
        "at most 86400 seconds",
    );
    assert_error(&errors, "metadata.rpc.keepalive", "at most 86400000");
    assert_error(&errors, "metadata.rpc.max_batch_timeout", "at most 60000");
    assert_eq!(errors.len(), 3, "{errors}");
}

/// An empty token used to read as "not set" (and one generated); in a spec built in code it
/// reached the server, where anyone can sign requests with an empty key.
#[test]
fn an_empty_or_blank_token_should_be_refused_naming_the_field() {
    for token in ["", " ", "\t\n "] {
        let errors = refused(&with_processor(|s| s["token"] = json!(token)));
        assert_error(&errors, "token", "must not be empty or blank");
        assert_eq!(errors.len(), 1, "{token:?}: {errors}");
        let mut spec = accepted(&with_processor(|_| {}));
        spec.token = Some(token.to_owned());
        let errors = spec.validate().expect_err("refused");
        assert_error(&errors, "token", "must not be empty or blank");
    }
    let spec = accepted(&with_processor(|s| s["token"] = Value::Null));
    assert_eq!(spec.token, None, "null still means: generate one");
    let spec = accepted(&with_processor(|s| s["token"] = json!(" secret ")));
    assert_eq!(spec.token.as_deref(), Some(" secret "));
}

// ---------------------------------------------------------------------------------------------
// Duplicate keys
// ---------------------------------------------------------------------------------------------

/// serde_json keeps the last of two equal keys silently, so a second `token` (or `name`, or
/// `processor`, at any depth) would win over the one a reviewer reads first.
#[test]
fn a_duplicate_key_at_any_depth_should_be_refused_with_its_path_and_position() {
    // (document, path, the duplicate as written: its last occurrence in the document)
    let cases = [
        (
            "{\"metadata\": {\"name\": \"demo\", \"instance\": 1},\n \"processor\": \"echo\", \
             \"model_path\": \"oss://b/m/\",\n \"token\": \"a\", \"token\": \"b\"}",
            "token",
            "\"token\"",
        ),
        (
            "{\"metadata\": {\"name\": \"demo\",\n \"instance\": 1, \"name\": \"other\"},\n \
             \"processor\": \"echo\", \"model_path\": \"oss://b/m/\"}",
            "metadata.name",
            "\"name\"",
        ),
        (
            "{\"metadata\": {\"name\": \"demo\", \"instance\": 1}, \"processor\": \"echo\",\n \
             \"model_path\": \"oss://b/m/\", \"processor\": \"onnx\"}",
            "processor",
            "\"processor\"",
        ),
        (
            "{\"metadata\": {\"name\": \"demo\", \"instance\": 1, \"rpc\": {\"keepalive\": 5,\n \
             \"keepalive\": 6}}, \"processor\": \"echo\", \"model_path\": \"oss://b/m/\"}",
            "metadata.rpc.keepalive",
            "\"keepalive\"",
        ),
        (
            "{\"metadata\": {\"name\": \"demo\", \"instance\": 1}, \"containers\": [{\"image\": \
             \"a\", \"script\": \"s\",\n \"env\": [{\"name\": \"A\", \"value\": \"1\", \"name\": \
             \"B\"}], \"port\": 8000}]}",
            "containers[0].env[0].name",
            "\"name\"",
        ),
        (
            "{\"metadata\": {\"name\": \"demo\", \"instance\": 1}, \"processor\": \"echo\", \
             \"model_path\": \"oss://b/m/\",\n \"labels\": {\"a.b\": \"1\", \"a\\u002eb\": \"2\"}}",
            "labels[\"a.b\"]",
            "\"a\\u002eb\"",
        ),
    ];
    for (text, path, written) in cases {
        // The closing quote of the duplicate, lines and columns from 1.
        let end = text.rfind(written).expect("in the text") + written.len() - 1;
        let line = text[..end].matches('\n').count() + 1;
        let column = end - text[..end].rfind('\n').map_or(0, |n| n + 1) + 1;
        for errors in [
            ServiceSpec::from_json_str(text).expect_err(text),
            ServiceSpec::from_json_slice(text.as_bytes()).expect_err(text),
        ] {
            assert_eq!(errors.len(), 1, "{errors}");
            let error = &errors.errors()[0];
            assert_eq!(error.path, path, "{error}");
            assert!(error.message.starts_with("duplicate key"), "{error}");
            assert_eq!(error.location, Some((line, column)), "{text}\n{error}");
            assert_eq!(
                error.to_string(),
                format!("line {line}, column {column}: {path}: {}", error.message)
            );
        }
        // serde_json alone reads the same text without a word (the last value wins): the
        // duplicate is the only problem.
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        assert!(ServiceSpec::from_json_value(value).is_ok(), "{text}");
    }
}

#[test]
fn duplicate_keys_should_be_reported_with_every_other_problem() {
    let text = r#"{"metadata": {"name": "demo", "instance": 1, "name": "Bad"},
                   "processor": "echo", "model_path": "oss://b/m/", "token": "",
                   "labels": {"a": "1", "a": "2", "a": "3"}}"#;
    let errors = ServiceSpec::from_json_str(text).expect_err("refused");
    let paths: Vec<&str> = errors.errors().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "metadata.name",
            "labels.a",
            "labels.a",
            "metadata.name",
            "token"
        ],
        "{errors}"
    );
    assert!(errors.errors()[..3].iter().all(|e| e.location.is_some()));
    assert_error(&errors, "metadata.name", "duplicate key \"name\"");
    assert!(errors.errors()[3].message.contains("lowercase"), "{errors}");
}

#[test]
fn equal_keys_in_different_objects_should_not_be_duplicates() {
    accepted(&json!({
        "metadata": {"name": "demo", "instance": 1, "rpc": {"batching": true}},
        "containers": [
            {"image": "a", "script": "s", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"image": "b", "script": "s"}
        ],
        "labels": {"name": "x", "image": "y"}
    }));
}

// ---------------------------------------------------------------------------------------------
// Every problem at once
// ---------------------------------------------------------------------------------------------

#[test]
fn every_problem_should_be_reported_at_once() {
    let spec = json!({
        "metadata": {
            "name": "Bad-Name",
            "instance": 1,
            "cuda": "12.1",
            "gpu_core_percentage": 101,
            "rpc": {"max_batch_sise": 8}
        },
        "containers": [{"image": "x", "command": "a", "script": "b", "port": 8080}],
        "cloud": {"computing": {"instances": [{"type": "ecs.c7.large", "capacity": "2O%"}]}},
        "storage": [{"mount_path": "data", "oss": {"path": "oss://b/p/"}}],
        "autoscaler": {"min": 5, "max": 2, "strategies": {"qps": 10}},
        "sinker": {"type": "kafka"}
    });
    let errors = refused(&spec);
    let expected = [
        ("metadata.name", "lowercase"),
        ("metadata.cuda", "unsupported"),
        ("metadata.gpu_core_percentage", "1 to 100"),
        (
            "metadata.rpc.max_batch_sise",
            "did you mean max_batch_size?",
        ),
        ("containers[0]", "not both"),
        ("containers[0].port", "reserved"),
        ("cloud.computing.instances[0].capacity", "2O%"),
        ("storage[0].mount_path", "absolute"),
        ("autoscaler.min", "greater than max"),
        ("sinker.type", "kafka"),
    ];
    for (path, word) in expected {
        assert_error(&errors, path, word);
    }
    assert_eq!(errors.len(), expected.len(), "{errors}");
}

#[test]
fn structural_problems_should_all_be_reported_even_when_a_required_field_is_unusable() {
    let spec = json!({
        "metadata": {"name": "demo", "instance": "2", "qos": "Guaranteed", "type": "Asyc"},
        "containers": [{"image": "x", "script": "y", "port": 0}],
        "unit": {"size": 0},
        "labels": {"k": 1}
    });
    let errors = refused(&spec);
    for path in [
        "metadata.instance",
        "metadata.qos",
        "metadata.type",
        "containers[0].port",
        "unit.size",
        "labels.k",
    ] {
        assert!(errors.at(path).is_some(), "no error at {path}:\n{errors}");
    }
}

#[test]
fn errors_should_print_one_per_line_with_their_paths() {
    let errors = refused(&minimal_with(|s| {
        s["metadata"]["name"] = json!("X");
        s["containers"][0]["port"] = json!(9090);
    }));
    let text = errors.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), errors.len());
    assert!(lines.iter().any(|l| l.starts_with("metadata.name: ")));
    assert!(lines.iter().any(|l| l.starts_with("containers[0].port: ")));
}

// ---------------------------------------------------------------------------------------------
// The JSON Schema
// ---------------------------------------------------------------------------------------------

fn schema_validator() -> jsonschema::Validator {
    jsonschema::validator_for(json_schema()).expect("the generated schema is a valid JSON Schema")
}

fn schema_errors(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_reference_examples_should_conform_to_the_json_schema() {
    let validator = schema_validator();
    for name in REFERENCE_EXAMPLES {
        let errors = schema_errors(&validator, &example_value(name));
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn rich_specs_should_conform_to_the_json_schema() {
    let validator = schema_validator();
    for (label, spec) in rich_specs() {
        let errors = schema_errors(&validator, &spec);
        assert!(errors.is_empty(), "{label}: {errors:#?}");
    }
}

#[test]
fn the_json_schema_should_reject_structural_mistakes() {
    let validator = schema_validator();
    let unknown = minimal_with(|s| s["metadata"]["rpc"] = json!({"max_batch_sise": 8}));
    let errors: Vec<_> = validator.iter_errors(&unknown).collect();
    assert!(!errors.is_empty(), "the schema accepted an unknown field");
    assert!(
        errors
            .iter()
            .any(|e| e.instance_path().as_str() == "/metadata/rpc"),
        "{:?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    let mistakes = [
        minimal_with(|s| s["metadata"]["instance"] = json!("2")),
        minimal_with(|s| s["metadata"]["instance"] = json!(-1)),
        minimal_with(|s| s["metadata"]["type"] = json!("Asyc")),
        minimal_with(|s| s["metadata"]["qos"] = json!("Guaranteed")),
        minimal_with(|s| s["metadata"]["gpu_core_percentage"] = json!(0)),
        minimal_with(|s| s["containers"][0]["port"] = json!(0)),
        minimal_with(|s| {
            s["containers"][0]
                .as_object_mut()
                .expect("object")
                .remove("image");
        }),
        json!({"containers": []}),
        json!([]),
    ];
    for document in mistakes {
        assert!(
            !validator.is_valid(&document),
            "the schema accepted:\n{document:#}"
        );
    }
}

#[test]
fn the_json_schema_should_describe_metadata_in_the_references_words() {
    let schema = json_schema();
    let metadata = &schema["$defs"]["Metadata"];
    let expected = [
        ("name", "unique within a region"),
        ("instance", "number of service instances to launch"),
        ("workspace_id", "PAI workspace"),
        ("cpu", "CPU cores"),
        ("memory", "megabytes (MB)"),
        ("gpu", "number of GPUs"),
        ("gpu_memory", "GPU slicing"),
        ("qos", "BestEffort"),
        ("resource", "resource group"),
        ("cuda", "11.2"),
        ("rdma", "RDMA"),
        ("enable_grpc", "gRPC"),
        ("type", "LLMGatewayService"),
        ("eas.termination_grace_period", "30"),
        ("workload_type", "elasticjob"),
        ("shm_size", "hared memory"),
    ];
    for (field, words) in expected {
        let description = metadata["properties"][field]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("metadata.{field} has no description"));
        assert!(
            description.contains(words),
            "metadata.{field}: {description:?} does not mention {words:?}"
        );
    }
    assert_eq!(metadata["required"], json!(["name", "instance"]));
    let rpc = &schema["$defs"]["Rpc"]["properties"];
    for (field, default) in [
        ("io_threads", 4),
        ("max_batch_size", 16),
        ("max_batch_timeout", 50),
        ("max_queue_size", 64),
        ("worker_threads", 5),
        ("rate_limit", 0),
        ("keepalive", 600_000),
    ] {
        assert_eq!(rpc[field]["default"], json!(default), "rpc.{field}");
    }
}

#[test]
fn every_property_in_the_json_schema_should_have_a_description() {
    let schema = json_schema();
    let mut missing = Vec::new();
    let mut objects = vec![("(root)".to_owned(), schema)];
    if let Some(defs) = schema["$defs"].as_object() {
        objects.extend(defs.iter().map(|(name, def)| (name.clone(), def)));
    }
    for (name, object) in objects {
        if let Some(properties) = object["properties"].as_object() {
            for (field, property) in properties {
                let described = property["description"]
                    .as_str()
                    .is_some_and(|d| !d.trim().is_empty());
                if !described {
                    missing.push(format!("{name}.{field}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "no description: {missing:?}");
}

/// What the reader accepts and what the published schema accepts should be the same set of
/// documents, structurally. Fields chosen here carry no meaning-pass rule, so any difference
/// is a disagreement between the schema (`pattern`, `format`) and the parsers.
#[test]
fn the_json_schema_and_the_reader_should_agree_on_typed_values() {
    let validator = schema_validator();
    let surge = |value: Value| {
        minimal_with(|s| {
            s["metadata"]["rolling_strategy"] = json!({"max_surge": value, "max_unavailable": 1});
        })
    };
    let cache = |value: Value| {
        with_mounts(json!([
            {"mount_path": "/m", "oss": {"path": "oss://b/p/"}},
            {"mount_path": "/c", "cache": {"capacity": value, "path": "/m"}}
        ]))
    };
    // Strings too large for their type ("99999999999" as a count) are left out: a regular
    // expression cannot bound a magnitude; the reader refuses them and names the limit.
    let mut documents = Vec::new();
    for text in [
        "5", " 5 ", "20%", "2.5%", "5 %", "+5", "5.5", "1e1%", ".5%", "5.%", "-0%",
    ] {
        documents.push((format!("max_surge {text:?}"), surge(json!(text))));
    }
    for text in ["20G", "512Mi", "5 GiB", "5kb", "5Gbb"] {
        documents.push((format!("cache capacity {text:?}"), cache(json!(text))));
    }
    documents.push((
        "instance 5000000000".to_owned(),
        minimal_with(|s| s["metadata"]["instance"] = json!(5_000_000_000_u64)),
    ));
    documents.push((
        "port 70000".to_owned(),
        minimal_with(|s| s["containers"][0]["port"] = json!(70_000)),
    ));
    let disagreements: Vec<String> = documents
        .into_iter()
        .filter_map(|(label, document)| {
            let reader = ServiceSpec::from_json_value(document.clone()).is_ok();
            let schema = validator.is_valid(&document);
            (reader != schema)
                .then(|| format!("{label}: reader accepts {reader}, schema accepts {schema}"))
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "the schema and the reader disagree:\n{}",
        disagreements.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Floats
// ---------------------------------------------------------------------------------------------

/// `to_json_pretty` promises text "which reads back to an equal spec". Floats printed with
/// all 17 significant digits must read back to the same `f64`.
#[test]
fn a_float_with_full_precision_should_round_trip() {
    for cpu in [0.10957860598549463, 1.2653852959177379, 36.485766083945244] {
        let spec = accepted(&minimal_with(|s| s["metadata"]["cpu"] = json!(cpu)));
        assert_eq!(spec.metadata.cpu, Some(cpu), "read as written");
        assert_round_trip(&format!("cpu {cpu:?}"), &spec);
    }
}

/// The same, for a large whole number in a float field: it is printed as a float
/// (`1.2202373193100868e+17`, `7461886233335698.0`), which must read back as the same `f64`.
#[test]
fn a_large_whole_number_in_a_float_field_should_round_trip() {
    let spec = accepted(&minimal_with(|s| {
        s["cloud"] = json!({"computing": {"instances": [
            {"type": "ecs.c7.large", "spot_price_limit": 122_023_731_931_008_681_u64}
        ]}});
    }));
    assert_round_trip("spot_price_limit 122023731931008681", &spec);
    // Below 2^53 too: printed as `7461886233335698.0`, read back as 7461886233335697.
    let spec = accepted(&minimal_with(|s| {
        s["metadata"]["cpu"] = json!(7_461_886_233_335_698_u64);
    }));
    assert_round_trip("cpu 7461886233335698", &spec);
}

#[test]
fn a_custom_metric_should_not_shadow_a_built_in_strategy() {
    let errors = refused(&minimal_with(|s| {
        s["autoscaler"] = json!({"min": 1, "max": 3, "strategies": {"custom": {"qps": 5}}});
    }));
    assert_error(&errors, "autoscaler.strategies.custom[\"qps\"]", "built-in");
}

#[test]
fn rolling_settings_should_be_typed_once_parsed() {
    let spec = accepted(&minimal_with(|s| {
        s["metadata"]["rolling_strategy"] = json!({"max_surge": "25%", "max_unavailable": 3});
    }));
    assert_eq!(spec.metadata.max_surge(), CountOrPercent::Percent(25.0));
    assert_eq!(spec.metadata.max_unavailable(), CountOrPercent::Count(3));
}
