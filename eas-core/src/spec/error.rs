//! Errors from reading a `service.json`: each names where (a JSON path) and why.

use std::fmt;

/// One problem in a `service.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Where, as a JSON path such as `metadata.rpc.max_batch_size` or
    /// `cloud.computing.instances[1].capacity`; empty for the document as a whole.
    pub path: String,
    /// Why, in words a person can act on.
    pub message: String,
    /// Line and column (both from 1) for JSON syntax errors and duplicate keys.
    pub location: Option<(usize, usize)>,
}

impl SpecError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, self.path.as_str()) {
            (Some((line, column)), "") => {
                write!(f, "line {line}, column {column}: {}", self.message)
            }
            (Some((line, column)), path) => {
                write!(f, "line {line}, column {column}: {path}: {}", self.message)
            }
            (None, "") => write!(f, "(root): {}", self.message),
            (None, path) => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every problem found in a `service.json`, in document order where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(Vec<SpecError>);

impl SpecErrors {
    /// Wraps a list of errors.
    #[must_use]
    pub fn new(errors: Vec<SpecError>) -> Self {
        Self(errors)
    }

    /// The errors.
    #[must_use]
    pub fn errors(&self) -> &[SpecError] {
        &self.0
    }

    /// How many errors there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first error at exactly `path`, if any (handy in tests).
    #[must_use]
    pub fn at(&self, path: &str) -> Option<&SpecError> {
        self.0.iter().find(|e| e.path == path)
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl IntoIterator for SpecErrors {
    type Item = SpecError;
    type IntoIter = std::vec::IntoIter<SpecError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A JSON path being built while walking a document.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonPath(Vec<Segment>);

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

impl JsonPath {
    pub(crate) fn push_key(&mut self, key: &str) {
        self.0.push(Segment::Key(key.to_owned()));
    }

    pub(crate) fn push_index(&mut self, index: usize) {
        self.0.push(Segment::Index(index));
    }

    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }

    /// This path with `key` appended, as a string.
    pub(crate) fn with_key(&self, key: &str) -> String {
        let mut path = self.clone();
        path.push_key(key);
        path.to_string()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) if is_plain_key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{key:?}]")?,
            }
        }
        Ok(())
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The candidate closest to `word`, if it is close enough to be what was meant.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lowered = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lowered, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| *distance <= (c.chars().count() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_should_quote_keys_with_dots_and_index_arrays() {
        let mut path = JsonPath::default();
        path.push_key("metadata");
        path.push_key("eas.termination_grace_period");
        assert_eq!(
            path.to_string(),
            r#"metadata["eas.termination_grace_period"]"#
        );
        path.pop();
        path.pop();
        path.push_key("containers");
        path.push_index(2);
        path.push_key("port");
        assert_eq!(path.to_string(), "containers[2].port");
    }

    #[test]
    fn did_you_mean_should_suggest_close_names_only() {
        let known = ["max_batch_size", "max_batch_timeout", "batching"];
        assert_eq!(
            did_you_mean("max_batch_sise", known),
            Some("max_batch_size")
        );
        assert_eq!(did_you_mean("BATCHING", known), Some("batching"));
        assert_eq!(did_you_mean("color", known), None);
    }
}
