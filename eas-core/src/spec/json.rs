//! The syntax pass: `service.json` text to a [`serde_json::Value`], refusing duplicate keys.
//!
//! `serde_json` keeps the last of two equal keys in an object and says nothing, so a spec with
//! two `token`s (or two `processor`s, at any depth) would run with whichever came last while a
//! reviewer reads the first. The reader here builds the same `Value` as
//! `serde_json::from_str`, in the same single pass, and notes every key already present in its
//! object (the lookup is the one inserting the value needs anyway), with its path.
//!
//! `serde_json` tells the position of the text only through an error, so a duplicate is
//! located by reading the text again and stopping there. Only the first [`MAX_LOCATED`] are
//! located: a document of many duplicates costs at most that many more reads, and a document
//! without any costs nothing more.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use super::error::{JsonPath, SpecError};

/// How many duplicate keys get a line and column.
const MAX_LOCATED: usize = 16;

/// Reads `text`; a JSON syntax error stops the reading, duplicate keys are returned as errors
/// beside the document (which holds the last value of each).
pub(crate) fn from_str(text: &str) -> Result<(Value, Vec<SpecError>), serde_json::Error> {
    read(|| serde_json::Deserializer::from_str(text))
}

/// [`from_str`] for bytes, which must be UTF-8.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<(Value, Vec<SpecError>), serde_json::Error> {
    read(|| serde_json::Deserializer::from_slice(bytes))
}

fn read<'de, R: serde_json::de::Read<'de>>(
    open: impl Fn() -> serde_json::Deserializer<R>,
) -> Result<(Value, Vec<SpecError>), serde_json::Error> {
    let duplicates = RefCell::new(Duplicates::default());
    let value = parse(open(), &duplicates)?;
    let errors = duplicates
        .into_inner()
        .found
        .into_iter()
        .enumerate()
        .map(|(i, (path, key))| SpecError {
            message: format!(
                "duplicate key {key:?}: it is already set earlier in the same object, and only \
                 one of the two values would be used; keep one"
            ),
            location: if i < MAX_LOCATED {
                locate(open(), i + 1)
            } else {
                None
            },
            path,
        })
        .collect();
    Ok((value, errors))
}

fn parse<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
    duplicates: &RefCell<Duplicates>,
) -> Result<Value, serde_json::Error> {
    let value = ValueSeed {
        duplicates,
        at: None,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The line and column of the closing quote of the `nth` duplicate key (from 1), by reading
/// again and stopping there.
fn locate<'de, R: serde_json::de::Read<'de>>(
    deserializer: serde_json::Deserializer<R>,
    nth: usize,
) -> Option<(usize, usize)> {
    let duplicates = RefCell::new(Duplicates {
        stop_at: Some(nth),
        ..Duplicates::default()
    });
    match parse(deserializer, &duplicates) {
        Err(e) if e.line() > 0 => Some((e.line(), e.column().max(1))),
        _ => None,
    }
}

/// The duplicate keys seen so far.
#[derive(Default)]
struct Duplicates {
    /// How many.
    seen: usize,
    /// When locating: stop at this one (from 1).
    stop_at: Option<usize>,
    /// When not locating: the path and the key of each, in document order.
    found: Vec<(String, String)>,
}

impl Duplicates {
    /// Notes a duplicate at `at`; returns whether to stop reading there.
    fn note(&mut self, at: &Node<'_>, key: &str) -> bool {
        self.seen += 1;
        match self.stop_at {
            Some(nth) => nth == self.seen,
            None => {
                self.found.push((at.path(), key.to_owned()));
                false
            }
        }
    }
}

/// Where a value is, as a chain of steps up to the document: built on the stack as the
/// reader descends, turned into a path only for a duplicate.
struct Node<'a> {
    parent: Option<&'a Node<'a>>,
    step: Step<'a>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl Node<'_> {
    fn path(&self) -> String {
        let mut steps = vec![self.step];
        let mut node = self;
        while let Some(parent) = node.parent {
            steps.push(parent.step);
            node = parent;
        }
        let mut path = JsonPath::default();
        for step in steps.into_iter().rev() {
            match step {
                Step::Key(key) => path.push_key(key),
                Step::Index(index) => path.push_index(index),
            }
        }
        path.to_string()
    }
}

/// Reads one value at `at`, as `serde_json::Value`'s own `Deserialize` does.
#[derive(Clone, Copy)]
struct ValueSeed<'s, 'n> {
    duplicates: &'s RefCell<Duplicates>,
    at: Option<&'n Node<'n>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let node = Node {
                parent: self.at,
                step: Step::Index(items.len()),
            };
            let seed = ValueSeed {
                duplicates: self.duplicates,
                at: Some(&node),
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Vacant(slot) => {
                    let node = Node {
                        parent: self.at,
                        step: Step::Key(slot.key()),
                    };
                    let value = access.next_value_seed(ValueSeed {
                        duplicates: self.duplicates,
                        at: Some(&node),
                    })?;
                    slot.insert(value);
                }
                Entry::Occupied(mut slot) => {
                    let node = Node {
                        parent: self.at,
                        step: Step::Key(slot.key()),
                    };
                    if self.duplicates.borrow_mut().note(&node, slot.key()) {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    let value = access.next_value_seed(ValueSeed {
                        duplicates: self.duplicates,
                        at: Some(&node),
                    })?;
                    // As serde_json does: the last value, in the first one's place.
                    slot.insert(value);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicates(text: &str) -> Vec<(String, Option<(usize, usize)>)> {
        let (_, errors) = from_str(text).expect("valid JSON");
        errors.into_iter().map(|e| (e.path, e.location)).collect()
    }

    #[test]
    fn the_value_should_be_what_serde_json_reads() {
        let text = r#"{"a": [1, -2, 3.5, 1e300, "x", true, null, {"b": {}}], "c": {"d": [[]]},
                      "u": 18446744073709551615, "s": "\u00e9\n"}"#;
        let (value, errors) = from_str(text).expect("valid JSON");
        assert!(errors.is_empty());
        let expected: Value = serde_json::from_str(text).expect("valid JSON");
        assert_eq!(value, expected);
        assert_eq!(
            serde_json::to_string(&value).expect("prints"),
            serde_json::to_string(&expected).expect("prints"),
            "same key order"
        );
        let (value, _) = from_slice(text.as_bytes()).expect("valid JSON");
        assert_eq!(value, expected);
    }

    /// Positions are those of each duplicate key's closing quote.
    #[test]
    fn duplicates_should_be_found_at_any_depth_with_their_path_and_position() {
        let text = "{\"a\": 1,\n \"b\": [{\"c\": 1, \"c\": 2}],\n \"a\": 3, \"a\": 4}";
        assert_eq!(
            duplicates(text),
            [
                ("b[0].c".to_owned(), Some((2, 19))),
                ("a".to_owned(), Some((3, 4))),
                ("a".to_owned(), Some((3, 12))),
            ]
        );
        let (value, _) = from_str(text).expect("valid JSON");
        assert_eq!(value, serde_json::json!({"a": 4, "b": [{"c": 2}]}));
    }

    #[test]
    fn keys_should_compare_after_unescaping() {
        assert_eq!(
            duplicates(r#"{"token": "a", "tok\u0065n": "b"}"#),
            [("token".to_owned(), Some((1, 27)))]
        );
        assert_eq!(
            duplicates(r#"{"eas.x": {"": 1, "": 2}}"#),
            [(r#"["eas.x"][""]"#.to_owned(), Some((1, 20)))]
        );
    }

    #[test]
    fn only_the_first_duplicates_should_be_located() {
        let text = format!(
            "{{{}\"k\": 0}}",
            (0..MAX_LOCATED + 4)
                .map(|i| format!("\"k\": {i}, "))
                .collect::<String>()
        );
        let found = duplicates(&text);
        assert_eq!(found.len(), MAX_LOCATED + 4);
        assert!(found[..MAX_LOCATED].iter().all(|(_, at)| at.is_some()));
        assert!(found[MAX_LOCATED..].iter().all(|(_, at)| at.is_none()));
    }

    #[test]
    fn syntax_errors_should_be_serde_jsons() {
        for text in ["", "{", "{\"a\": 1,}", "[1] 2", "{\"a\": 1, \"a\": }"] {
            let mine = from_str(text).expect_err(text);
            let theirs = serde_json::from_str::<Value>(text).expect_err(text);
            assert_eq!(mine.to_string(), theirs.to_string(), "{text}");
        }
    }
}
