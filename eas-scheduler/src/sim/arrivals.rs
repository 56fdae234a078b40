//! [`Arrivals`]: request arrivals replayed from a trace, counted per second and repeated.
//!
//! Two formats, told apart by their header:
//!
//! - **Azure LLM inference** (`TIMESTAMP,ContextTokens,GeneratedTokens`): one row per request,
//!   `TIMESTAMP` as `2023-11-16 18:15:46.6805900` (no time zone; only differences matter).
//!   Offsets are taken from the first row; the trace lasts up to the second after its last row.
//! - **Mooncake** (`timestamp_ms,input_length,output_length,...`): one row per request,
//!   `timestamp_ms` in milliseconds from the trace start. The published trace is quantised
//!   (about 3 s): the `n` requests that share a timestamp are spread evenly over the quantum
//!   (the smallest gap between two distinct timestamps), and the trace lasts up to its last
//!   timestamp plus one quantum.
//!
//! Either way the result is a count of requests per second over one *period* (whole seconds);
//! the simulator replays the period from its start again and again to fill its duration.
//!
//! ```
//! use eas_scheduler::sim::Arrivals;
//!
//! let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
//!            2023-11-16 18:15:46.1000000,374,44\n\
//!            2023-11-16 18:15:46.9000000,396,109\n\
//!            2023-11-16 18:15:48.5000000,100,10\n";
//! let arrivals = Arrivals::from_csv(csv.as_bytes(), "azure.csv")?;
//! assert_eq!(arrivals.per_second(), [2, 0, 1]);
//! assert_eq!(arrivals.count_at(4), 0, "the second second of the next period");
//! assert_eq!(arrivals.count_at(5), 1);
//! # Ok::<(), eas_scheduler::Error>(())
//! ```

use std::io::Read;

use crate::Error;
use crate::pricing::input::{CsvTrace, trace_error};

/// Requests per second over one period of a trace, replayed cyclically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrivals {
    name: String,
    per_second: Vec<u32>,
    total: u64,
}

impl Arrivals {
    /// Arrivals from counts per second (one period); `name` names them in reports.
    ///
    /// # Errors
    /// [`Error::Trace`] (line 0) when `per_second` is empty.
    pub fn from_counts(name: impl Into<String>, per_second: Vec<u32>) -> Result<Self, Error> {
        let name = name.into();
        if per_second.is_empty() {
            return Err(trace_error(&name, 0, "no requests"));
        }
        let total = per_second.iter().map(|&n| u64::from(n)).sum();
        Ok(Self {
            name,
            per_second,
            total,
        })
    }

    /// Reads an Azure or a Mooncake CSV (see the `sim::arrivals` module docs), choosing by header.
    ///
    /// # Errors
    /// [`Error::Trace`] naming the line of the first bad row (missing column, bad timestamp,
    /// timestamps going backwards), or line 1 when the header is neither format, or line 0 when
    /// the file has no rows.
    pub fn from_csv(reader: impl Read, name: &str) -> Result<Self, Error> {
        let mut text = String::new();
        let mut reader = reader;
        reader
            .read_to_string(&mut text)
            .map_err(|e| trace_error(name, 0, format!("cannot read: {e}")))?;
        let header = text.lines().next().unwrap_or_default();
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        if columns.contains(&"TIMESTAMP") {
            Self::azure_csv(text.as_bytes(), name)
        } else if columns.contains(&"timestamp_ms") {
            Self::mooncake_csv(text.as_bytes(), name)
        } else {
            Err(trace_error(
                name,
                1,
                format!(
                    "the header `{header}` is neither the Azure format (TIMESTAMP,...) nor the \
                     Mooncake format (timestamp_ms,...)"
                ),
            ))
        }
    }

    /// Reads an Azure LLM inference CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`).
    ///
    /// # Errors
    /// As [`from_csv`](Self::from_csv).
    pub fn azure_csv(reader: impl Read, name: &str) -> Result<Self, Error> {
        let mut micros: Vec<i64> = Vec::new();
        CsvTrace::open(reader, name, &["TIMESTAMP"])?.for_each(|row| {
            let text = row.text(0, "TIMESTAMP")?;
            let at = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map_err(
                |e| {
                    row.error(format!(
                        "`TIMESTAMP` is `{text}`, not `YYYY-MM-DD HH:MM:SS.fffffff`: {e}"
                    ))
                },
            )?;
            let us = at.and_utc().timestamp_micros();
            if micros.last().is_some_and(|&last| us < last) {
                return Err(row.error(format!("`TIMESTAMP` {text} is earlier than the row before")));
            }
            micros.push(us);
            Ok(())
        })?;
        let first = *micros
            .first()
            .ok_or_else(|| trace_error(name, 0, "no requests"))?;
        let seconds: Vec<u64> = micros
            .iter()
            .map(|&us| u64::try_from((us - first) / 1_000_000).unwrap_or(0))
            .collect();
        Self::from_seconds(name, &seconds, None)
    }

    /// Reads a Mooncake CSV (`timestamp_ms,input_length,output_length,...`).
    ///
    /// # Errors
    /// As [`from_csv`](Self::from_csv).
    pub fn mooncake_csv(reader: impl Read, name: &str) -> Result<Self, Error> {
        let mut millis: Vec<u64> = Vec::new();
        CsvTrace::open(reader, name, &["timestamp_ms"])?.for_each(|row| {
            let text = row.text(0, "timestamp_ms")?;
            let ms = text.parse::<u64>().map_err(|_| {
                row.error(format!(
                    "`timestamp_ms` is `{text}`, not a whole number of milliseconds"
                ))
            })?;
            if millis.last().is_some_and(|&last| ms < last) {
                return Err(row.error(format!(
                    "`timestamp_ms` {ms} is earlier than the row before"
                )));
            }
            millis.push(ms);
            Ok(())
        })?;
        if millis.is_empty() {
            return Err(trace_error(name, 0, "no requests"));
        }
        let quantum = millis
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|&gap| gap > 0)
            .min()
            .unwrap_or(1_000);
        let mut spread: Vec<u64> = Vec::with_capacity(millis.len());
        let mut i = 0;
        while i < millis.len() {
            let same = millis[i..].iter().take_while(|&&m| m == millis[i]).count();
            for k in 0..same {
                let offset = quantum * k as u64 / same as u64;
                spread.push((millis[i] + offset) / 1_000);
            }
            i += same;
        }
        let period = (millis[millis.len() - 1] + quantum).div_ceil(1_000);
        Self::from_seconds(name, &spread, Some(period))
    }

    /// Counts per second from each request's second; the period is `period` seconds or up to
    /// the last request's second.
    fn from_seconds(name: &str, seconds: &[u64], period: Option<u64>) -> Result<Self, Error> {
        let last = seconds.iter().copied().max().unwrap_or(0);
        let period = period.unwrap_or(last + 1).max(last + 1);
        let len = usize::try_from(period)
            .map_err(|_| trace_error(name, 0, format!("a period of {period} s is too long")))?;
        let mut per_second = vec![0_u32; len];
        for &s in seconds {
            // In range: `s <= last < period`.
            let slot = &mut per_second[usize::try_from(s).unwrap_or(0)];
            *slot = slot.saturating_add(1);
        }
        Self::from_counts(name, per_second)
    }

    /// The trace's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests in each second of one period.
    #[must_use]
    pub fn per_second(&self) -> &[u32] {
        &self.per_second
    }

    /// The period's length in seconds.
    #[must_use]
    pub fn period_seconds(&self) -> u64 {
        self.per_second.len() as u64
    }

    /// Requests in one period.
    #[must_use]
    pub const fn requests_per_period(&self) -> u64 {
        self.total
    }

    /// The mean arrival rate, in requests per second.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn mean_qps(&self) -> f64 {
        self.total as f64 / self.per_second.len() as f64
    }

    /// Requests in second `second` from the start of the replay (the period repeats).
    #[must_use]
    pub fn count_at(&self, second: u64) -> u32 {
        let i = usize::try_from(second % self.period_seconds()).unwrap_or(0);
        self.per_second[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mooncake_buckets_should_be_spread_over_the_quantum() {
        let csv = "timestamp_ms,input_length,output_length,prefix_blocks\n\
                   0,1,1,1\n0,1,1,1\n0,1,1,1\n3000,1,1,1\n";
        let a = Arrivals::from_csv(csv.as_bytes(), "m.csv").expect("valid");
        assert_eq!(a.per_second(), [1, 1, 1, 1, 0, 0]);
        assert_eq!(a.requests_per_period(), 4);
    }

    #[test]
    fn bad_rows_should_name_their_line() {
        let csv = "timestamp_ms,input_length\n0,1\nx,1\n";
        let err = Arrivals::from_csv(csv.as_bytes(), "m.csv").expect_err("bad");
        assert_eq!(
            err.to_string(),
            "m.csv, line 3: `timestamp_ms` is `x`, not a whole number of milliseconds"
        );
        let csv = "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.1,1\n2023-11-16 18:15:45.1,1\n";
        let err = Arrivals::from_csv(csv.as_bytes(), "a.csv").expect_err("backwards");
        assert!(err.to_string().starts_with("a.csv, line 3:"), "{err}");
        let err = Arrivals::from_csv("a,b\n1,2\n".as_bytes(), "x.csv").expect_err("unknown");
        assert!(err.to_string().starts_with("x.csv, line 1:"), "{err}");
        let err = Arrivals::from_csv("TIMESTAMP\n".as_bytes(), "e.csv").expect_err("empty");
        assert_eq!(err.to_string(), "e.csv, line 0: no requests");
    }
}
