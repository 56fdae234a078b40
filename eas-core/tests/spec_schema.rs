//! The JSON Schema of `service.json`, checked by an independent validator (the `jsonschema`
//! crate): the examples conform, mistakes do not, and fields carry the reference's words.

mod support;

use eas_core::spec::json_schema;
use serde_json::{Value, json};
use support::{base, edited, example_text};

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(json_schema()).expect("the generated schema is a valid JSON Schema")
}

#[test]
fn the_examples_should_conform_to_the_schema() {
    let validator = validator();
    for name in [
        "reference-full.json",
        "reference-quickstart.json",
        "echo.json",
    ] {
        let document: Value = serde_json::from_str(&example_text(name)).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
    assert!(validator.is_valid(&base()));
}

#[test]
fn mistakes_should_fail_the_schema_too() {
    let validator = validator();
    let cases = [
        edited(|s| s["metadata"]["rpc"]["max_batch_sise"] = json!(8)),
        edited(|s| s["metadata"]["instance"] = json!(-1)),
        edited(|s| s["metadata"]["type"] = json!("Asyc")),
        edited(|s| s["metadata"]["gpu_core_percentage"] = json!(101)),
        edited(|s| s["cloud"]["computing"]["instances"][0]["capacity"] = json!("lots")),
        edited(|s| s["containers"] = json!("python:3.11")),
        json!({"processor": "echo"}),
    ];
    for document in cases {
        assert!(
            !validator.is_valid(&document),
            "the schema accepted:\n{document:#}"
        );
    }
}

#[test]
fn the_schema_should_describe_fields_in_the_references_words() {
    let schema = json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let rpc = &schema["$defs"]["Rpc"]["properties"];
    let description = rpc["max_queue_size"]["description"]
        .as_str()
        .expect("a description");
    assert!(description.contains("450"), "{description}");
    assert_eq!(rpc["max_batch_size"]["default"], json!(16));
    let metadata = &schema["$defs"]["Metadata"];
    assert_eq!(metadata["required"], json!(["name", "instance"]));
    assert!(
        metadata["properties"]["qos"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("BestEffort"))
    );
}
