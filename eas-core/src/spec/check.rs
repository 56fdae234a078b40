//! The structural check: walks a JSON document against the spec's own JSON Schema (generated
//! by schemars from the types, so the two cannot drift) and reports every unknown field, wrong
//! type, out-of-range number and malformed value at once, each with its path.
//!
//! Offending values are removed from the document as they are found, so that a document whose
//! mistakes are all in optional fields can still be deserialized and checked for meaning; the
//! check answers whether what is left can be typed.

use serde_json::{Map, Value};

use super::error::{JsonPath, SpecError, did_you_mean};
use super::values::{check_format, describe_json};

/// Checks `value` against `root` (a schema with its `$defs`), pruning what is invalid.
/// Returns whether the pruned document still has every required part.
pub(crate) fn check_document(value: &mut Value, root: &Value, errors: &mut Vec<SpecError>) -> bool {
    let checker = Checker { root };
    checker.check(value, root, &mut JsonPath::default(), errors)
}

struct Checker<'s> {
    root: &'s Value,
}

impl<'s> Checker<'s> {
    /// Checks `value` against `schema`; returns false when the value must be removed.
    fn check(
        &self,
        value: &mut Value,
        schema: &'s Value,
        path: &mut JsonPath,
        errors: &mut Vec<SpecError>,
    ) -> bool {
        let Some(schema_obj) = schema.as_object() else {
            return schema.as_bool().unwrap_or(true);
        };
        if let Some(target) = schema_obj.get("$ref").and_then(Value::as_str)
            && !self.check(value, self.resolve(target), path, errors)
        {
            return false;
        }
        if let Some(format) = schema_obj.get("x-eas-format").and_then(Value::as_str)
            && let Err(reason) = check_format(format, value)
        {
            errors.push(SpecError::new(path.to_string(), reason));
            return false;
        }
        if let Some(branches) = schema_obj.get("anyOf").or_else(|| schema_obj.get("oneOf"))
            && let Some(branches) = branches.as_array()
            && !self.check_union(value, branches, path, errors)
        {
            return false;
        }
        if let Some(all) = schema_obj.get("allOf").and_then(Value::as_array) {
            for part in all {
                if !self.check(value, part, path, errors) {
                    return false;
                }
            }
        }
        if let Some(types) = schema_obj.get("type")
            && !type_matches(types, value)
        {
            let reason = format!(
                "expected {}, found {}",
                describe_types(types),
                describe_json(value)
            );
            errors.push(SpecError::new(path.to_string(), reason));
            return false;
        }
        if let Some(allowed) = allowed_values(schema_obj)
            && !allowed.contains(value)
        {
            errors.push(SpecError::new(
                path.to_string(),
                unknown_value(value, &allowed),
            ));
            return false;
        }
        if value.is_number() && !self.check_range(value, schema_obj, path, errors) {
            return false;
        }
        match value {
            Value::Object(map) => self.check_object(map, schema_obj, path, errors),
            Value::Array(items) => self.check_array(items, schema_obj, path, errors),
            _ => true,
        }
    }

    fn resolve(&self, reference: &str) -> &'s Value {
        reference
            .strip_prefix('#')
            .and_then(|pointer| self.root.pointer(pointer))
            .unwrap_or(&Value::Bool(true))
    }

    /// `anyOf` / `oneOf`: valid when one branch is. Otherwise the branches of the value's own
    /// JSON type decide the message: one such branch explains itself in detail; several enum
    /// branches become one "expected one of" list.
    fn check_union(
        &self,
        value: &mut Value,
        branches: &'s [Value],
        path: &mut JsonPath,
        errors: &mut Vec<SpecError>,
    ) -> bool {
        let compatible: Vec<&'s Value> = branches
            .iter()
            .filter(|b| self.branch_types(b).is_none_or(|t| type_matches(&t, value)))
            .collect();
        match compatible.as_slice() {
            [] if branches.iter().filter(|b| !is_null_schema(b)).count() == 1 => {
                let only = branches.iter().find(|b| !is_null_schema(b));
                only.is_some_and(|b| self.check(value, b, path, errors))
            }
            [] => {
                let expected: Vec<String> = branches
                    .iter()
                    .map(|b| {
                        self.branch_types(b)
                            .map_or_else(|| "a value".to_owned(), |t| describe_types(&t))
                    })
                    .collect();
                let reason = format!(
                    "expected {}, found {}",
                    expected.join(" or "),
                    describe_json(value)
                );
                errors.push(SpecError::new(path.to_string(), reason));
                false
            }
            [only] => self.check(value, only, path, errors),
            several => {
                let mut first_errors = None;
                for branch in several {
                    let mut candidate = value.clone();
                    let mut branch_errors = Vec::new();
                    if self.check(&mut candidate, branch, path, &mut branch_errors)
                        && branch_errors.is_empty()
                    {
                        *value = candidate;
                        return true;
                    }
                    first_errors.get_or_insert(branch_errors);
                }
                let enums: Option<Vec<Value>> = several
                    .iter()
                    .map(|b| self.resolve_ref(b).as_object().and_then(allowed_values))
                    .collect::<Option<Vec<_>>>()
                    .map(|lists| lists.into_iter().flatten().collect());
                match enums {
                    Some(allowed) => errors.push(SpecError::new(
                        path.to_string(),
                        unknown_value(value, &allowed),
                    )),
                    None => errors.extend(first_errors.unwrap_or_default()),
                }
                false
            }
        }
    }

    fn resolve_ref(&self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(target) => self.resolve(target),
            None => schema,
        }
    }

    /// The JSON types a branch accepts, when the branch says.
    fn branch_types(&self, schema: &'s Value) -> Option<Value> {
        let schema = self.resolve_ref(schema);
        if let Some(types) = schema.get("type") {
            return Some(types.clone());
        }
        if let Some(values) = schema.as_object().and_then(allowed_values) {
            let mut types: Vec<Value> = values.iter().map(|v| Value::from(json_type(v))).collect();
            types.dedup();
            return Some(Value::Array(types));
        }
        let branches = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))?
            .as_array()?;
        let mut types = Vec::new();
        for branch in branches {
            match self.branch_types(branch)? {
                Value::Array(list) => types.extend(list),
                single => types.push(single),
            }
        }
        Some(Value::Array(types))
    }

    fn check_range(
        &self,
        value: &Value,
        schema: &Map<String, Value>,
        path: &JsonPath,
        errors: &mut Vec<SpecError>,
    ) -> bool {
        let Some(number) = value.as_f64() else {
            return true;
        };
        let (format_min, format_max) = match schema.get("format").and_then(Value::as_str) {
            Some("uint8") => (Some(0.0), Some(f64::from(u8::MAX))),
            Some("uint16") => (Some(0.0), Some(f64::from(u16::MAX))),
            Some("uint32") => (Some(0.0), Some(f64::from(u32::MAX))),
            Some("uint64" | "uint") => (Some(0.0), Some(u64::MAX as f64)),
            Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
            _ => (None, None),
        };
        let minimum = schema.get("minimum").and_then(Value::as_f64).or(format_min);
        let maximum = schema.get("maximum").and_then(Value::as_f64).or(format_max);
        let too_small = minimum.is_some_and(|min| number < min);
        let too_large = maximum.is_some_and(|max| number > max);
        // A range is worth naming when its top is a number a person would write (ports: 1
        // to 65535); past a huge type limit the message names the one bound that was crossed.
        let reason = match (minimum, maximum) {
            (Some(min), Some(max)) if max < f64::from(u32::MAX) && (too_small || too_large) => {
                format!("must be from {min} to {max}, found {value}")
            }
            _ if too_small => format!(
                "must be at least {}, found {value}",
                minimum.unwrap_or_default()
            ),
            _ if too_large => format!(
                "must be at most {}, found {value}",
                maximum.unwrap_or_default()
            ),
            _ => return true,
        };
        errors.push(SpecError::new(path.to_string(), reason));
        false
    }

    fn check_object(
        &self,
        map: &mut Map<String, Value>,
        schema: &'s Map<String, Value>,
        path: &mut JsonPath,
        errors: &mut Vec<SpecError>,
    ) -> bool {
        let properties = schema.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let additional = schema.get("additionalProperties");
        let mut complete = true;
        let mut present_but_invalid = Vec::new();
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let property_schema = match properties.and_then(|p| p.get(&key)) {
                Some(known) => known,
                None => match additional {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> = properties
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        errors.push(SpecError::new(
                            path.with_key(&key),
                            unknown_field(&key, &known),
                        ));
                        map.remove(&key);
                        continue;
                    }
                    Some(extra) => extra,
                    None => continue,
                },
            };
            path.push_key(&key);
            let valid = map
                .get_mut(&key)
                .is_some_and(|v| self.check(v, property_schema, path, errors));
            path.pop();
            if !valid {
                map.remove(&key);
                if required.contains(&key.as_str()) {
                    complete = false;
                    present_but_invalid.push(key);
                }
            }
        }
        for key in required {
            if !map.contains_key(key) && !present_but_invalid.iter().any(|k| k == key) {
                errors.push(SpecError::new(
                    path.with_key(key),
                    "required field is missing",
                ));
                complete = false;
            }
        }
        complete
    }

    fn check_array(
        &self,
        items: &mut [Value],
        schema: &'s Map<String, Value>,
        path: &mut JsonPath,
        errors: &mut Vec<SpecError>,
    ) -> bool {
        let Some(item_schema) = schema.get("items") else {
            return true;
        };
        let mut all_valid = true;
        for (index, item) in items.iter_mut().enumerate() {
            path.push_index(index);
            all_valid &= self.check(item, item_schema, path, errors);
            path.pop();
        }
        all_valid
    }
}

/// The values an `enum`, a `const`, or a `oneOf` of constants allows.
fn allowed_values(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.clone());
    }
    if let Some(value) = schema.get("const") {
        return Some(vec![value.clone()]);
    }
    let branches = schema.get("oneOf")?.as_array()?;
    branches.iter().map(|b| b.get("const").cloned()).collect()
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(types: &Value, value: &Value) -> bool {
    let actual = json_type(value);
    let matches = |t: &str| t == actual || (t == "number" && actual == "integer");
    match types {
        Value::String(t) => matches(t),
        Value::Array(list) => list.iter().filter_map(Value::as_str).any(matches),
        _ => true,
    }
}

fn describe_types(types: &Value) -> String {
    let describe = |t: &str| match t {
        "integer" => "a whole number",
        "number" => "a number",
        "string" => "a string",
        "boolean" => "true or false",
        "array" => "an array",
        "object" => "an object",
        "null" => "null",
        _ => "a value",
    };
    match types {
        Value::String(t) => describe(t).to_owned(),
        Value::Array(list) => {
            let mut names: Vec<&str> = list
                .iter()
                .filter_map(Value::as_str)
                .map(describe)
                .collect();
            names.dedup();
            names.join(" or ")
        }
        _ => "a value".to_owned(),
    }
}

fn unknown_field(key: &str, known: &[&str]) -> String {
    match did_you_mean(key, known.iter().copied()) {
        Some(suggestion) => format!("unknown field; did you mean {suggestion}?"),
        None if known.is_empty() => "unknown field; this object takes no fields".to_owned(),
        None => format!("unknown field; expected one of {}", known.join(", ")),
    }
}

fn unknown_value(value: &Value, allowed: &[Value]) -> String {
    let shown: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
    let mut reason = format!(
        "unknown value {value}; expected one of {}",
        shown.join(", ")
    );
    if let Some(text) = value.as_str() {
        let names = allowed
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty());
        if let Some(suggestion) = did_you_mean(text, names) {
            reason.push_str(&format!("; did you mean \"{suggestion}\"?"));
        }
    }
    reason
}
