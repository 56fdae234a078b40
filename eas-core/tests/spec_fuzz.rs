//! Property tests of the spec reader: arbitrary bytes and randomly mutated specs never make
//! it panic; what it accepts round-trips; what it refuses is explained.
//!
//! The number of cases is `EAS_FUZZ_CASES` when set (for long runs by hand, with `--release`),
//! else a count that keeps this file to a few seconds in CI.

mod support;

use eas_core::spec::ServiceSpec;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use support::{base, example_text};

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("EAS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The documents mutations start from.
fn seeds() -> Vec<Value> {
    let mut seeds: Vec<Value> = [
        "reference-full.json",
        "reference-quickstart.json",
        "echo.json",
    ]
    .iter()
    .map(|name| serde_json::from_str(&example_text(name)).expect("JSON"))
    .collect();
    seeds.push(base());
    seeds
}

/// A JSON value of any kind, including the strings specs are made of.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "20%",
            "0%",
            "120%",
            "abc",
            "oss://b/p/",
            "/data",
            "0 8 * * *",
            "Asia/Shanghai",
            "BestEffort",
            "Async",
            "python",
            "20G",
            "11.2",
            "MaxCompute",
            "../../etc",
            "%",
            "-1",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One edit at a place chosen by `path_seed`.
#[derive(Debug, Clone)]
enum Mutation {
    Delete,
    Replace(Value),
    RenameByOneChar(usize, char),
    InsertUnknown(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Delete),
        any_json().prop_map(Mutation::Replace),
        (any::<usize>(), prop::char::range('a', 'z'))
            .prop_map(|(i, c)| Mutation::RenameByOneChar(i, c)),
        ("[a-z_]{1,10}", any_json()).prop_map(|(k, v)| Mutation::InsertUnknown(k, v)),
    ]
}

/// Walks down `document` by `steps` (each picks a child) and applies `mutation` there.
fn apply(document: &mut Value, steps: &[usize], mutation: &Mutation) {
    let mut node = document;
    for (depth, step) in steps.iter().enumerate() {
        let child_count = match node {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        // Stop at a leaf, or sometimes early, so every depth gets mutated.
        if child_count == 0 || (depth > 0 && step % 4 == 0) {
            break;
        }
        let index = step % child_count;
        let is_last = depth + 1 == steps.len();
        let next_is_leaf = match node {
            Value::Object(map) => map
                .values()
                .nth(index)
                .is_some_and(|v| !v.is_object() && !v.is_array()),
            Value::Array(items) => !items[index].is_object() && !items[index].is_array(),
            _ => true,
        };
        if is_last || next_is_leaf {
            mutate_child(node, index, mutation);
            return;
        }
        node = match node {
            Value::Object(map) => map.values_mut().nth(index).expect("index < len"),
            Value::Array(items) => &mut items[index],
            _ => return,
        };
    }
    if let Value::Object(map) = node {
        mutate_object(map, mutation);
    }
}

fn mutate_child(parent: &mut Value, index: usize, mutation: &Mutation) {
    match parent {
        Value::Object(map) => {
            let key = map.keys().nth(index).cloned().expect("index < len");
            match mutation {
                Mutation::Delete => {
                    map.remove(&key);
                }
                Mutation::Replace(value) => {
                    map.insert(key, value.clone());
                }
                Mutation::RenameByOneChar(position, c) => {
                    let value = map.remove(&key).expect("present");
                    let mut chars: Vec<char> = key.chars().collect();
                    let at = position % chars.len().max(1);
                    if chars.is_empty() {
                        chars.push(*c);
                    } else {
                        chars[at] = *c;
                    }
                    map.insert(chars.into_iter().collect(), value);
                }
                Mutation::InsertUnknown(..) => mutate_object(map, mutation),
            }
        }
        Value::Array(items) => match mutation {
            Mutation::Delete => {
                items.remove(index);
            }
            Mutation::Replace(value) => items[index] = value.clone(),
            _ => items.push(json!({})),
        },
        _ => {}
    }
}

fn mutate_object(map: &mut Map<String, Value>, mutation: &Mutation) {
    if let Mutation::InsertUnknown(key, value) = mutation {
        map.insert(key.clone(), value.clone());
    }
}

/// What must hold for any document, valid or not.
fn check_contract(document: Value) -> Result<(), TestCaseError> {
    match ServiceSpec::from_json_value(document) {
        Ok(spec) => {
            let written = spec.to_json_pretty();
            let again = ServiceSpec::from_json_str(&written);
            prop_assert!(
                again.is_ok(),
                "its own output was refused: {:?}\n{written}",
                again.err()
            );
            prop_assert_eq!(again.ok(), Some(spec));
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "refused without a reason");
            for error in errors.errors() {
                prop_assert!(
                    !error.message.trim().is_empty(),
                    "an error without a message at {}",
                    error.path
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(3_000))]

    #[test]
    fn mutated_specs_should_never_panic_and_accepted_ones_should_round_trip(
        seed in 0usize..4,
        edits in prop::collection::vec((prop::collection::vec(any::<usize>(), 1..6), mutation()), 1..4),
    ) {
        let mut document = seeds().swap_remove(seed);
        for (steps, edit) in &edits {
            apply(&mut document, steps, edit);
        }
        check_contract(document)?;
    }
}

proptest! {
    #![proptest_config(cases(2_000))]

    #[test]
    fn arbitrary_bytes_should_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let result = ServiceSpec::from_json_slice(&bytes);
        let starts_like_an_object = bytes.first() == Some(&b'{');
        prop_assert!(result.is_err() || starts_like_an_object, "accepted bytes that are no object");
    }

    #[test]
    fn arbitrary_json_should_never_panic(document in any_json()) {
        check_contract(document)?;
    }
}
