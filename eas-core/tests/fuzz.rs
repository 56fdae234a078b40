//! Property tests of the `service.json` reader: arbitrary bytes and text, and randomly mutated
//! reference examples, never make it panic; what it accepts prints and reads back to an equal
//! spec; what it refuses comes with a message and a path for every problem.
//!
//! Case counts keep this file under about 15 s in a debug build on 2 cores. For a long run by
//! hand, set `EAS_FUZZ_CASES` (it applies to every property here) and build in release mode:
//!
//! ```text
//! EAS_FUZZ_CASES=200000 cargo test --release -p eas-core --test fuzz -- --nocapture
//! ```

mod spec_support;

use std::sync::OnceLock;

use eas_core::spec::{ServiceSpec, SpecErrors, json_schema};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value, json};
use spec_support::{REFERENCE_EXAMPLES, example_text, example_value, rich_specs};

/// `default` cases, or `EAS_FUZZ_CASES` when it is set.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("EAS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Failures are reported with their minimal input; there is no regressions file to keep.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

/// The documents mutations start from: the two reference examples (and, for variety, the
/// rich specs of the spec tests, which set the sections the examples leave out).
fn seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<Value> = REFERENCE_EXAMPLES
            .iter()
            .map(|n| example_value(n))
            .collect();
        seeds.extend(rich_specs().into_iter().map(|(_, spec)| spec));
        seeds
    })
}

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| jsonschema::validator_for(json_schema()).expect("a valid schema"))
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Strings that specs are made of, and near misses of them.
const INTERESTING_STRINGS: [&str; 38] = [
    "",
    "+5",
    "5.5",
    "5.%",
    "1e1%",
    "5kb",
    "99999999999",
    " ",
    "20%",
    "0%",
    "100%",
    "120%",
    "2O%",
    "%",
    "-1",
    "500",
    "abc",
    "oss://b/p/",
    "oss:///p",
    "https://h/m.tar.gz",
    "/data",
    "data",
    "/",
    "0 8 * * *",
    "0 0 8 * * MON-FRI",
    "*/0 * * * *",
    "Asia/Shanghai",
    "UTC",
    "BestEffort",
    "Async",
    "LLMGatewayService",
    "python",
    "java",
    "20G",
    "11.2",
    "MaxCompute",
    "SLS",
    "elasticjob",
];

/// A short decimal, the kind of float specs hold.
fn short_float() -> impl Strategy<Value = f64> {
    (-100_000_000_i64..100_000_000).prop_map(|thousandths| thousandths as f64 / 1000.0)
}

/// A JSON number: any `i64` or `u64`, small whole numbers, any finite `f64`, short decimals.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3_i64..70_000).prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        short_float().prop_map(Value::from),
    ]
}

/// Any JSON value: null, booleans, integers (negative and beyond `u32`), floats, strings
/// (spec-like and arbitrary), arrays and objects, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        number(),
        prop::sample::select(INTERESTING_STRINGS.as_slice()).prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
        "[0-9 .%+eE-]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,10}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// One value of each JSON kind, so a replacement can always change the kind.
fn one_of_each_kind() -> impl Strategy<Value = [Value; 7]> {
    (
        any::<bool>(),
        number(),
        short_float(),
        prop::sample::select(INTERESTING_STRINGS.as_slice()),
        prop::collection::vec(any_json(), 0..3),
        prop::collection::vec(("[a-z_]{1,10}", any_json()), 0..3),
    )
        .prop_map(|(b, n, f, s, array, object)| {
            [
                Value::Null,
                Value::Bool(b),
                n,
                Value::from(f),
                Value::from(s),
                Value::Array(array),
                Value::Object(object.into_iter().collect()),
            ]
        })
}

/// A one-character edit of a key.
#[derive(Debug, Clone)]
enum KeyEdit {
    Insert(Index, char),
    Delete(Index),
    Replace(Index, char),
    Swap(Index),
}

impl KeyEdit {
    fn apply(&self, key: &str) -> String {
        let mut chars: Vec<char> = key.chars().collect();
        match *self {
            Self::Insert(at, c) => chars.insert(at.index(chars.len() + 1), c),
            Self::Delete(at) if !chars.is_empty() => {
                chars.remove(at.index(chars.len()));
            }
            Self::Replace(at, c) if !chars.is_empty() => {
                let at = at.index(chars.len());
                chars[at] = c;
            }
            Self::Swap(at) if chars.len() >= 2 => {
                let at = at.index(chars.len() - 1);
                chars.swap(at, at + 1);
            }
            _ => chars.push('x'),
        }
        chars.into_iter().collect()
    }
}

fn key_edit() -> impl Strategy<Value = KeyEdit> {
    let key_char = prop_oneof![
        prop::char::range('a', 'z'),
        Just('_'),
        Just('.'),
        Just(' '),
        Just('A')
    ];
    prop_oneof![
        (any::<Index>(), key_char.clone()).prop_map(|(i, c)| KeyEdit::Insert(i, c)),
        any::<Index>().prop_map(KeyEdit::Delete),
        (any::<Index>(), key_char).prop_map(|(i, c)| KeyEdit::Replace(i, c)),
        any::<Index>().prop_map(KeyEdit::Swap),
    ]
}

/// One mutation, applied at the node `at` selects among all nodes of the document (so at
/// every depth, deeper levels being as likely as the top).
#[derive(Debug, Clone)]
enum Mutation {
    /// Removes the node from its object or array.
    Delete { at: Index },
    /// Replaces the node by a value of another JSON kind.
    Retype {
        at: Index,
        values: Box<[Value; 7]>,
        pick: Index,
    },
    /// Replaces the node by any value, possibly of the same kind.
    Replace { at: Index, value: Value },
    /// Replaces a scalar by a plausible value of the same kind (a flipped boolean, a small
    /// whole number, a short decimal, a spec-like string), which often keeps the spec valid.
    Tweak {
        at: Index,
        int: u64,
        float: f64,
        text: &'static str,
    },
    /// Renames the node's key by one character.
    RenameKey { at: Index, edit: KeyEdit },
    /// Adds a key (unknown, or a near miss of a known one) to an object.
    InsertKey {
        at: Index,
        key: String,
        value: Value,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(|at| Mutation::Delete { at }),
        2 => (any::<Index>(), one_of_each_kind(), any::<Index>())
            .prop_map(|(at, values, pick)| Mutation::Retype { at, values: Box::new(values), pick }),
        2 => (any::<Index>(), any_json()).prop_map(|(at, value)| Mutation::Replace { at, value }),
        4 => (
            any::<Index>(),
            prop_oneof![0_u64..4, 1_u64..200, 0_u64..100_000],
            (1_u32..1_000_000).prop_map(|n| f64::from(n) / 1000.0),
            prop::sample::select(INTERESTING_STRINGS.as_slice()),
        )
            .prop_map(|(at, int, float, text)| Mutation::Tweak { at, int, float, text }),
        1 => (any::<Index>(), key_edit()).prop_map(|(at, edit)| Mutation::RenameKey { at, edit }),
        1 => (any::<Index>(), "[a-z_.]{1,12}", any_json())
            .prop_map(|(at, key, value)| Mutation::InsertKey { at, key, value }),
    ]
}

/// A step from a node to one of its children.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Item(usize),
}

/// The path of every node below `value` (not `value` itself), parents before children.
fn node_paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let children: Vec<(Step, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Step::Item(i), v))
                .collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            prefix.push(step);
            out.push(prefix.clone());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'v>(mut value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    for step in path {
        value = match (step, value) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k)?,
            (Step::Item(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn kind(value: &Value) -> usize {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(n) if n.is_f64() => 3,
        Value::Number(_) => 2,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// Replaces `map[key]` by `new_key` in place, keeping the order of keys.
fn rename_key(map: &mut Map<String, Value>, key: &str, new_key: String) {
    let entries = std::mem::take(map);
    for (k, v) in entries {
        let k = if k == key { new_key.clone() } else { k };
        map.insert(k, v);
    }
}

fn apply(document: &mut Value, mutation: &Mutation) {
    let paths = node_paths(document);
    if paths.is_empty() {
        return;
    }
    let pick = |at: &Index| &paths[at.index(paths.len())];
    match mutation {
        Mutation::Delete { at } => {
            let path = pick(at);
            let (last, parent) = path.split_last().expect("a node below the root");
            match (node_mut(document, parent), last) {
                (Some(Value::Object(map)), Step::Key(k)) => {
                    map.shift_remove(k);
                }
                (Some(Value::Array(items)), Step::Item(i)) => {
                    items.remove(*i);
                }
                _ => {}
            }
        }
        Mutation::Retype {
            at,
            values,
            pick: choice,
        } => {
            if let Some(node) = node_mut(document, pick(at)) {
                let others: Vec<&Value> = values.iter().filter(|v| kind(v) != kind(node)).collect();
                *node = others[choice.index(others.len())].clone();
            }
        }
        Mutation::Replace { at, value } => {
            if let Some(node) = node_mut(document, pick(at)) {
                *node = value.clone();
            }
        }
        Mutation::Tweak {
            at,
            int,
            float,
            text,
        } => {
            if let Some(node) = node_mut(document, pick(at)) {
                let tweaked = match &*node {
                    Value::Bool(b) => Value::Bool(!*b),
                    Value::Number(n) if n.is_f64() => Value::from(*float),
                    Value::Number(_) => Value::from(*int),
                    Value::String(_) => Value::from(*text),
                    other => other.clone(),
                };
                *node = tweaked;
            }
        }
        Mutation::RenameKey { at, edit } => {
            let path = pick(at);
            let (last, parent) = path.split_last().expect("a node below the root");
            if let (Some(Value::Object(map)), Step::Key(k)) = (node_mut(document, parent), last) {
                rename_key(map, k, edit.apply(k));
            }
        }
        Mutation::InsertKey { at, key, value } => {
            // Into the selected node if it is an object, else into its parent object.
            let path = pick(at);
            let target = match node_mut(document, path) {
                Some(Value::Object(_)) => path.as_slice(),
                _ => &path[..path.len() - 1],
            };
            if let Some(Value::Object(map)) = node_mut(document, target) {
                map.insert(key.clone(), value.clone());
            }
        }
    }
}

fn mutated_document() -> impl Strategy<Value = Value> {
    (any::<Index>(), prop::collection::vec(mutation(), 1..=3)).prop_map(|(seed, mutations)| {
        let seeds = seeds();
        let mut document = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply(&mut document, m);
        }
        document
    })
}

/// The full reference example and the richest spec: between them they have every field that
/// `targeted_document` edits.
fn targeted_seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            example_value("reference-full.json"),
            rich_specs().swap_remove(0).1,
        ]
    })
}

/// The fields whose values go through a parser of their own (percentages, sizes, cron,
/// time zones, enums, floats), with a value for each: these get most of the mutations a
/// mutation-only fuzz would spread thinly.
fn targeted_document() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        any_json(),
        "[0-9 .%+eE-]{0,8}".prop_map(Value::from),
        "[0-9]{1,6}[ ]?[KMGTkmgtib]{0,3}".prop_map(Value::from),
        "[0-9*/,-]{1,4}( [0-9*/,A-Z-]{1,6}){3,6}".prop_map(Value::from),
        "[A-Za-z_/+-]{0,20}".prop_map(Value::from),
    ];
    let pointer = prop::sample::select(vec![
        "/cloud/computing/instances/0/capacity",
        "/cloud/computing/instances/1/spot_price_limit",
        "/metadata/rolling_strategy/max_surge",
        "/metadata/rolling_strategy/max_unavailable",
        "/metadata/qos",
        "/metadata/type",
        "/metadata/cuda",
        "/metadata/workload_type",
        "/metadata/scheduling/spread/policy",
        "/metadata/cpu",
        "/metadata/instance",
        "/metadata/name",
        "/metadata/eas.termination_grace_period",
        "/metadata/rpc/keepalive",
        "/processor_type",
        "/model_path",
        "/sinker/type",
        "/storage/0/mount_path",
        "/storage/3/cache/capacity",
        "/autoscaler/schedules/0/schedule",
        "/autoscaler/schedules/0/timezone",
        "/autoscaler/strategies/qps",
        "/containers/0/port",
        "/unit/size",
    ]);
    (
        any::<Index>(),
        prop::collection::vec((pointer, value), 1..=3),
    )
        .prop_map(|(seed, edits)| {
            let seeds = targeted_seeds();
            let mut document = seeds[seed.index(seeds.len())].clone();
            for (pointer, value) in edits {
                if let Some(node) = document.pointer_mut(pointer) {
                    *node = value;
                }
            }
            document
        })
}

/// The richest spec with a positive float field set to any float or a whole number (which
/// the reader keeps as an `f64`).
fn float_field_document() -> impl Strategy<Value = Value> {
    let pointer = prop::sample::select(vec![
        "/metadata/cpu",
        "/autoscaler/strategies/qps",
        "/autoscaler/strategies/custom/tokens_per_second",
    ]);
    let value = prop_oneof![
        (1e-3..1e9_f64).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
    ];
    (pointer, value).prop_map(|(pointer, value)| {
        let mut document = targeted_seeds()[1].clone();
        if let Some(node) = document.pointer_mut(pointer) {
            *node = value;
        }
        document
    })
}

/// A seed with a whole-number field set to any `i64` or `u64` (huge and negative ones
/// included), which the reader must refuse or keep exactly.
fn integer_field_document() -> impl Strategy<Value = Value> {
    let pointer = prop::sample::select(vec![
        "/metadata/instance",
        "/metadata/memory",
        "/metadata/gpu",
        "/metadata/gpu_memory",
        "/metadata/gpu_core_percentage",
        "/metadata/rdma",
        "/metadata/shm_size",
        "/metadata/eas.termination_grace_period",
        "/metadata/rpc/keepalive",
        "/metadata/rpc/max_batch_timeout",
        "/metadata/rpc/io_threads",
        "/metadata/rolling_strategy/max_surge",
        "/cloud/computing/instances/0/capacity",
        "/containers/0/port",
        "/unit/size",
        "/autoscaler/min",
        "/autoscaler/max",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0_u64..70_000).prop_map(Value::from),
    ];
    (any::<Index>(), pointer, value).prop_map(|(seed, pointer, value)| {
        let seeds = targeted_seeds();
        let mut document = seeds[seed.index(seeds.len())].clone();
        if let Some(node) = document.pointer_mut(pointer) {
            *node = value;
        }
        document
    })
}

/// The richest spec with a number-or-percentage or a byte size written as a near miss.
fn typed_value_document() -> impl Strategy<Value = Value> {
    let pointer = prop::sample::select(vec![
        "/metadata/rolling_strategy/max_surge",
        "/metadata/rolling_strategy/max_unavailable",
        "/storage/3/cache/capacity",
    ]);
    let text = prop_oneof![
        prop::sample::select(INTERESTING_STRINGS.as_slice()).prop_map(str::to_owned),
        "[0-9 .%+eE-]{0,6}",
        "[0-9]{1,4}[ ]?[KMGTkib]{0,3}",
    ];
    (pointer, text).prop_map(|(pointer, text)| {
        let mut document = targeted_seeds()[1].clone();
        if let Some(node) = document.pointer_mut(pointer) {
            *node = Value::from(text);
        }
        document
    })
}

/// A seed written as text with one key, anywhere, written twice (the second time with any
/// value), and the path the reader should report it at.
fn document_with_a_key_twice() -> impl Strategy<Value = (String, String)> {
    (any::<Index>(), any::<Index>(), any_json()).prop_filter_map(
        "the seed has no key",
        |(seed, at, value)| {
            let seeds = seeds();
            let document = &seeds[seed.index(seeds.len())];
            let keys: Vec<Vec<Step>> = node_paths(document)
                .into_iter()
                .filter(|p| matches!(p.last(), Some(Step::Key(_))))
                .collect();
            let target = keys.get(at.index(keys.len().max(1)))?;
            let mut text = String::new();
            write_with_key_twice(document, Some(target), &value, &mut text);
            Some((text, path_text(target)))
        },
    )
}

/// Writes `value` as JSON text, one entry per line, with the entry at `target` (relative to
/// `value`) followed by a second entry of the same key holding `second`.
fn write_with_key_twice(value: &Value, target: Option<&[Step]>, second: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                let rest = match target {
                    Some([Step::Key(k), rest @ ..]) if k == key => Some(rest),
                    _ => None,
                };
                out.push_str(&json(key.as_str()));
                out.push(':');
                write_with_key_twice(item, rest.filter(|r| !r.is_empty()), second, out);
                if rest.is_some_and(<[Step]>::is_empty) {
                    out.push_str(",\n");
                    out.push_str(&json(key.as_str()));
                    out.push(':');
                    out.push_str(&json(second));
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                let rest = match target {
                    Some([Step::Item(at), rest @ ..]) if *at == i => Some(rest),
                    _ => None,
                };
                write_with_key_twice(item, rest, second, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&json(scalar)),
    }
}

/// The JSON text of a key or a value.
fn json(value: &(impl serde::Serialize + ?Sized)) -> String {
    serde_json::to_string(value).expect("JSON text")
}

/// `path` as the reader writes paths: `metadata.rpc.keepalive`, `containers[0]`,
/// `metadata["eas.termination_grace_period"]`.
fn path_text(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Item(i) => text.push_str(&format!("[{i}]")),
            Step::Key(k)
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(k);
            }
            Step::Key(k) => text.push_str(&format!("[{k:?}]")),
        }
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Whether an error without a path is one about the document as a whole.
fn is_whole_document_error(message: &str) -> bool {
    message.starts_with("invalid JSON")
        || message.starts_with("expected an object")
        || message.starts_with("nothing to run")
}

/// Checks the outcome of reading a document: an accepted spec validates and survives
/// `to_json_pretty` and back; a refusal explains every problem with a message and a path.
fn check_outcome(outcome: Result<ServiceSpec, SpecErrors>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(spec) => {
            prop_assert!(spec.validate().is_ok(), "accepted but validate() refuses");
            let text = spec.to_json_pretty();
            let copy = ServiceSpec::from_json_str(&text);
            prop_assert!(
                copy.is_ok(),
                "the printed spec is refused: {:?}\n{}",
                copy.err(),
                text
            );
            let copy = copy.expect("checked");
            prop_assert_eq!(
                &copy,
                &spec,
                "the spec changed on the way through:\n{}",
                text
            );
            prop_assert_eq!(
                copy.to_json_pretty(),
                text,
                "printing the copy gave other text"
            );
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "refused without a reason");
            for error in errors.errors() {
                prop_assert!(
                    !error.message.trim().is_empty(),
                    "an empty message: {:?}",
                    error
                );
                prop_assert!(
                    !error.path.is_empty() || is_whole_document_error(&error.message),
                    "an error without a path: {:?}\nall errors:\n{}",
                    error,
                    errors
                );
                let syntax = error.message.starts_with("invalid JSON");
                prop_assert!(
                    !syntax || error.location.is_some(),
                    "a syntax error without a location: {:?}",
                    error
                );
                prop_assert!(
                    error.location.is_none()
                        || syntax
                        || error.message.starts_with("duplicate key"),
                    "only syntax errors and duplicate keys have a location: {:?}",
                    error
                );
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }
    Ok(())
}

/// Checks that a document the reader accepts also conforms to the published JSON Schema.
fn check_schema_agrees(document: &Value) -> Result<(), TestCaseError> {
    if ServiceSpec::from_json_value(document.clone()).is_ok() {
        let schema_errors: Vec<String> = schema_validator()
            .iter_errors(document)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        prop_assert!(
            schema_errors.is_empty(),
            "the reader accepts what the JSON Schema refuses: {:?}",
            schema_errors
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn arbitrary_bytes_should_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_outcome(ServiceSpec::from_json_slice(&bytes))?;
    }

    #[test]
    fn arbitrary_text_should_never_panic(text in "\\PC{0,128}") {
        check_outcome(ServiceSpec::from_json_str(&text))?;
    }

    #[test]
    fn json_like_text_should_never_panic(text in r#"[{}\[\]":, 0-9a-z.eE+-]{0,96}"#) {
        check_outcome(ServiceSpec::from_json_str(&text))?;
    }

    #[test]
    fn corrupted_example_text_should_never_panic(
        seed in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), 0..3_u8, any::<u8>()), 1..=4),
    ) {
        let name = REFERENCE_EXAMPLES[seed.index(REFERENCE_EXAMPLES.len())];
        let mut bytes = example_text(name).into_bytes();
        for (at, op, byte) in edits {
            match op {
                0 if !bytes.is_empty() => { bytes.remove(at.index(bytes.len())); }
                1 => bytes.insert(at.index(bytes.len() + 1), byte),
                _ if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes[i] = byte; }
                _ => {}
            }
        }
        check_outcome(ServiceSpec::from_json_slice(&bytes))?;
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn mutated_examples_should_be_read_or_refused_with_reasons(document in mutated_document()) {
        check_outcome(ServiceSpec::from_json_value(document))?;
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn mutated_parsed_values_should_be_read_or_refused_with_reasons(
        document in prop_oneof![targeted_document(), float_field_document()],
    ) {
        check_outcome(ServiceSpec::from_json_value(document))?;
    }

    #[test]
    fn what_the_reader_accepts_should_conform_to_the_json_schema(
        document in prop_oneof![mutated_document(), targeted_document(), typed_value_document()],
    ) {
        check_schema_agrees(&document)?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn any_whole_number_in_a_whole_number_field_should_be_read_exactly_or_refused(
        document in integer_field_document(),
    ) {
        check_outcome(ServiceSpec::from_json_value(document))?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// serde_json keeps the last of two equal keys without a word; the reader refuses the
    /// second, wherever it is, at its path and with its position.
    #[test]
    fn a_key_written_twice_anywhere_should_be_refused_at_its_path(
        (text, path) in document_with_a_key_twice(),
    ) {
        let outcome = ServiceSpec::from_json_str(&text);
        check_outcome(outcome.clone())?;
        let errors = outcome.expect_err("a duplicate key is refused");
        let duplicates: Vec<_> = errors
            .errors()
            .iter()
            .filter(|e| e.message.starts_with("duplicate key"))
            .collect();
        prop_assert_eq!(duplicates.len(), 1, "{}", errors);
        prop_assert_eq!(&duplicates[0].path, &path, "{}", errors);
        prop_assert!(duplicates[0].location.is_some(), "{}", errors);
    }
}

#[test]
fn every_seed_should_be_accepted() {
    for seed in seeds() {
        assert!(
            ServiceSpec::from_json_value(seed.clone()).is_ok(),
            "{seed:#}"
        );
    }
}

#[test]
fn mutations_should_change_the_document() {
    // A sanity check of the generators: a mutated seed rarely equals its origin.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = mutated_document();
    let unchanged = (0..200)
        .filter(|_| {
            let document = strategy.new_tree(&mut runner).expect("a value").current();
            seeds().contains(&document)
        })
        .count();
    assert!(
        unchanged < 20,
        "{unchanged} of 200 mutated documents were unchanged"
    );
}

#[test]
fn a_corrupted_document_with_a_required_field_missing_should_still_explain_itself() {
    let mut document = example_value("reference-full.json");
    document["metadata"]
        .as_object_mut()
        .expect("object")
        .remove("name");
    document["metadata"]["rpc"]["keepalive"] = json!(-5);
    let errors = ServiceSpec::from_json_value(document).expect_err("refused");
    assert!(errors.at("metadata.name").is_some(), "{errors}");
    assert!(errors.at("metadata.rpc.keepalive").is_some(), "{errors}");
}

#[test]
fn mutated_documents_should_be_accepted_often_enough_to_test_the_round_trip() {
    // A sanity check of the generators: the round-trip property is only exercised by
    // documents the reader accepts.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for (label, strategy) in [
        ("mutated", mutated_document().boxed()),
        ("targeted", targeted_document().boxed()),
    ] {
        let accepted = (0..300)
            .filter(|_| {
                let document = strategy.new_tree(&mut runner).expect("a value").current();
                ServiceSpec::from_json_value(document).is_ok()
            })
            .count();
        eprintln!("{label}: {accepted} of 300 documents accepted");
        assert!(
            accepted >= 15,
            "{label}: only {accepted} of 300 documents accepted"
        );
    }
}
