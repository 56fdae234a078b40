//! Shared pieces of the trace readers: CSV columns by name, prices, timestamps, and errors that
//! name the line.

use std::io::Read;
use std::time::SystemTime;

use csv::StringRecord;

use crate::Error;

/// An [`Error::Trace`].
pub(crate) fn trace_error(trace: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::Trace {
        trace: trace.to_owned(),
        line,
        reason: reason.into(),
    }
}

/// A CSV file with a header, its columns found by name.
pub(crate) struct CsvTrace<R> {
    trace: String,
    reader: csv::Reader<R>,
    columns: Vec<usize>,
}

impl<R: Read> CsvTrace<R> {
    /// Reads the header of `reader` and finds each of `names` in it.
    pub(crate) fn open(reader: R, trace: &str, names: &[&str]) -> Result<Self, Error> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let header = reader.headers().map_err(|e| csv_error(trace, &e))?.clone();
        let columns = names
            .iter()
            .map(|name| {
                header.iter().position(|h| h == *name).ok_or_else(|| {
                    trace_error(trace, 1, format!("the header has no column `{name}`"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trace: trace.to_owned(),
            reader,
            columns,
        })
    }

    /// Calls `row` with each record and its line, stopping at the first error.
    pub(crate) fn for_each(
        mut self,
        mut row: impl FnMut(Row<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut record = StringRecord::new();
        loop {
            match self.reader.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let line = record
                        .position()
                        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
                    row(Row {
                        trace: &self.trace,
                        line,
                        record: &record,
                        columns: &self.columns,
                    })?;
                }
                Err(e) => return Err(csv_error(&self.trace, &e)),
            }
        }
    }
}

/// One record of a [`CsvTrace`], its fields asked for by the index of their name in `open`.
pub(crate) struct Row<'a> {
    pub(crate) trace: &'a str,
    pub(crate) line: usize,
    record: &'a StringRecord,
    columns: &'a [usize],
}

impl Row<'_> {
    /// An [`Error::Trace`] at this row.
    pub(crate) fn error(&self, reason: impl Into<String>) -> Error {
        trace_error(self.trace, self.line, reason)
    }

    /// The non-empty field of column number `i` (named `name` in messages).
    pub(crate) fn text(&self, i: usize, name: &str) -> Result<&str, Error> {
        match self.columns.get(i).and_then(|&c| self.record.get(c)) {
            None => Err(self.error(format!(
                "missing column `{name}` ({} fields)",
                self.record.len()
            ))),
            Some("") => Err(self.error(format!("empty `{name}`"))),
            Some(text) => Ok(text),
        }
    }

    /// A price in USD per hour: a finite number, zero or more.
    pub(crate) fn price(&self, i: usize, name: &str) -> Result<f64, Error> {
        let text = self.text(i, name)?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(self.error(format!(
                "`{name}` is `{text}`, not a price (a finite number, zero or more)"
            ))),
        }
    }

    /// An RFC 3339 timestamp (`2021-03-02T02:38:36Z`, `2024-07-08T08:39:22+02:00`).
    pub(crate) fn time(&self, i: usize, name: &str) -> Result<SystemTime, Error> {
        let text = self.text(i, name)?;
        chrono::DateTime::parse_from_rfc3339(text)
            .map(SystemTime::from)
            .map_err(|e| self.error(format!("`{name}` is `{text}`, not an RFC 3339 time: {e}")))
    }
}

fn csv_error(trace: &str, error: &csv::Error) -> Error {
    let line = error
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
    trace_error(trace, line, format!("not valid CSV: {error}"))
}
