//! Request bodies from a file, as EAS's stress tool takes them: one body per line (raw text or
//! base64), or the whole file as one binary body (EAS `dataType: binary`). The load generator
//! sends them round-robin.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use super::StressError;

/// How a data file holds its request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DataFormat {
    /// One body per non-empty line, as written (the line ending is not part of it).
    #[default]
    Lines,
    /// One base64 body (standard alphabet) per non-empty line.
    Base64,
    /// The whole file is one body.
    Binary,
}

impl std::str::FromStr for DataFormat {
    type Err = StressError;

    fn from_str(s: &str) -> Result<Self, StressError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lines" | "raw" | "text" => Ok(Self::Lines),
            "base64" => Ok(Self::Base64),
            "binary" => Ok(Self::Binary),
            other => Err(StressError::Data(format!(
                "unknown data format `{other}`: use lines, base64 or binary"
            ))),
        }
    }
}

/// The request bodies of a stress test (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bodies(Vec<Bytes>);

impl Bodies {
    /// The bodies `content` holds in `format`; `source` names it in errors. An empty file, a
    /// file of blank lines, or a line that is not base64 is an error that says where.
    pub fn parse(content: &[u8], format: DataFormat, source: &str) -> Result<Self, StressError> {
        let bodies = match format {
            DataFormat::Binary => {
                if content.is_empty() {
                    Vec::new()
                } else {
                    vec![Bytes::copy_from_slice(content)]
                }
            }
            DataFormat::Lines => lines(content)
                .map(|(_, line)| Bytes::copy_from_slice(line))
                .collect(),
            DataFormat::Base64 => lines(content)
                .map(|(number, line)| {
                    let text = line.trim_ascii();
                    BASE64.decode(text).map(Bytes::from).map_err(|e| {
                        StressError::Data(format!(
                            "{source}: line {number} is not base64 ({e}); use --data-format \
                             lines for raw text"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if bodies.is_empty() {
            return Err(StressError::Data(format!(
                "{source}: no request bodies (the file is empty{})",
                if content.is_empty() {
                    ""
                } else {
                    " or only blank lines"
                }
            )));
        }
        Ok(Self(bodies))
    }

    /// One body.
    #[must_use]
    pub fn one(body: impl Into<Bytes>) -> Self {
        Self(vec![body.into()])
    }

    /// The bodies, in file order.
    #[must_use]
    pub fn as_slice(&self) -> &[Bytes] {
        &self.0
    }

    /// How many there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for parsed bodies.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The non-blank lines of `content` with their 1-based numbers, without line endings.
fn lines(content: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    content
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.trim_ascii().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_should_be_one_body_each_without_endings() {
        let bodies = Bodies::parse(b"a b\r\n\n{\"x\":1}\n", DataFormat::Lines, "f").unwrap();
        assert_eq!(
            bodies.as_slice(),
            &[Bytes::from("a b"), Bytes::from("{\"x\":1}")]
        );
    }

    #[test]
    fn base64_lines_should_decode() {
        let bodies = Bodies::parse(b"aGVsbG8=\n  AAEC \n", DataFormat::Base64, "f").unwrap();
        assert_eq!(
            bodies.as_slice(),
            &[Bytes::from("hello"), Bytes::from(vec![0, 1, 2])]
        );
    }

    #[test]
    fn binary_should_be_the_whole_file() {
        let content = b"\x00\x01\n\xff";
        let bodies = Bodies::parse(content, DataFormat::Binary, "f").unwrap();
        assert_eq!(bodies.as_slice(), &[Bytes::from(&content[..])]);
    }

    #[test]
    fn empty_files_should_be_refused_clearly() {
        for format in [DataFormat::Lines, DataFormat::Base64, DataFormat::Binary] {
            let error = Bodies::parse(b"", format, "data.txt")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("data.txt") && error.contains("empty"),
                "{error}"
            );
        }
        let error = Bodies::parse(b"\n \n", DataFormat::Lines, "d").unwrap_err();
        assert!(error.to_string().contains("blank lines"), "{error}");
    }

    #[test]
    fn bad_base64_should_name_the_line() {
        let error = Bodies::parse(b"aGVsbG8=\nnot base64!\n", DataFormat::Base64, "d.b64")
            .unwrap_err()
            .to_string();
        assert!(error.contains("d.b64: line 2 is not base64"), "{error}");
    }

    #[test]
    fn formats_should_parse_by_name() {
        assert_eq!("BASE64".parse::<DataFormat>().unwrap(), DataFormat::Base64);
        assert!("csv".parse::<DataFormat>().is_err());
    }
}
