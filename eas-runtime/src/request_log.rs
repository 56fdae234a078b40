//! The request log: where request/response pairs go when a spec sets `sinker` (not to be
//! confused with an async service's sink queue, [`crate::queue`]).
//!
//! A [`RequestLog`] receives [`LogRecord`]s on a thread of its own, through a bounded buffer: a
//! slow log never blocks a request; when the buffer is full, records are dropped and counted
//! (`eas_sink_dropped_total`). The default log, [`JsonLinesLog`], appends one JSON object per
//! record to a file.
//!
//! ```no_run
//! use eas_runtime::request_log::{JsonLinesLog, LogRecord, LogWriter};
//!
//! let sink = JsonLinesLog::create("requests.jsonl")?;
//! let writer = LogWriter::spawn("echo", Box::new(sink), 1024, None)?;
//! writer.record(LogRecord::new("echo", b"hi", 200, b"hi", 0.4));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use crate::metrics::Metrics;

/// One request and what it was answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LogRecord {
    /// The service.
    pub service: String,
    /// Milliseconds since the Unix epoch when the answer was sent.
    pub timestamp_ms: u64,
    /// The request body: UTF-8 text as is, anything else in base64 (see `request_encoding`).
    pub request: String,
    /// `utf8` or `base64`.
    pub request_encoding: &'static str,
    /// The status answered.
    pub status: u16,
    /// The response body, encoded like the request.
    pub response: String,
    /// `utf8` or `base64`.
    pub response_encoding: &'static str,
    /// Time from arrival to answer, in milliseconds.
    pub latency_ms: f64,
}

impl LogRecord {
    /// A record stamped with the current time.
    #[must_use]
    pub fn new(
        service: &str,
        request: &[u8],
        status: u16,
        response: &[u8],
        latency_ms: f64,
    ) -> Self {
        let (request, request_encoding) = encode(request);
        let (response, response_encoding) = encode(response);
        Self {
            service: service.to_owned(),
            timestamp_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            request,
            request_encoding,
            status,
            response,
            response_encoding,
            latency_ms,
        }
    }
}

fn encode(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (BASE64.encode(bytes), "base64"),
    }
}

/// Receives records, one at a time, on the sink's own thread.
pub trait RequestLog: Send + 'static {
    /// Persists one record.
    fn write(&mut self, record: &LogRecord) -> std::io::Result<()>;

    /// Persists whatever is buffered; called when the buffer runs empty and at shutdown.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends one JSON object per record to a file.
#[derive(Debug)]
pub struct JsonLinesLog {
    out: BufWriter<File>,
}

impl JsonLinesLog {
    /// Opens `path` for appending, creating it (not its directory) if needed.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            out: BufWriter::new(file),
        })
    }
}

impl RequestLog for JsonLinesLog {
    fn write(&mut self, record: &LogRecord) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// What the sink's thread receives.
enum Message {
    Record(LogRecord),
    Stop,
}

/// The request side of a sink: hands records to the sink's thread without ever waiting.
#[derive(Clone)]
pub struct LogWriter {
    service: String,
    sender: SyncSender<Message>,
    metrics: Option<Arc<Metrics>>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Starts `sink` on its own thread behind a buffer of `capacity` records; drops are
    /// counted in `metrics` when given.
    pub fn spawn(
        service: &str,
        mut sink: Box<dyn RequestLog>,
        capacity: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = sync_channel::<Message>(capacity.max(1));
        let name = service.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("eas-{service}-sink"))
            .spawn(move || {
                let mut stopping = false;
                while !stopping {
                    let Ok(first) = receiver.recv() else { break };
                    // Write what is buffered, then flush once.
                    let mut result = Ok(());
                    let mut next = Some(first);
                    while let Some(message) = next.take() {
                        match message {
                            Message::Record(record) => result = result.and(sink.write(&record)),
                            Message::Stop => stopping = true,
                        }
                        next = if stopping {
                            None
                        } else {
                            receiver.try_recv().ok()
                        };
                    }
                    if let Err(e) = result.and(sink.flush()) {
                        tracing::warn!(service = %name, "sink write failed: {e}");
                    }
                }
            })?;
        Ok(Self {
            service: service.to_owned(),
            sender,
            metrics,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Hands a record over; drops it (and counts the drop) if the sink is behind.
    pub fn record(&self, record: LogRecord) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(Message::Record(record))
            && let Some(metrics) = &self.metrics
        {
            metrics
                .sink_dropped
                .get_or_create(&Metrics::service(&self.service))
                .inc();
        }
    }

    /// Stops the sink once everything handed over before is written; records handed over
    /// later (by other clones) are dropped and counted. Waits for the sink's thread.
    pub fn close(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = self.sender.send(Message::Stop);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow(std::sync::mpsc::Receiver<()>);
    impl RequestLog for Slow {
        fn write(&mut self, _: &LogRecord) -> std::io::Result<()> {
            let _ = self.0.recv();
            Ok(())
        }
    }

    #[test]
    fn file_sink_should_write_one_json_line_per_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink.jsonl");
        let writer = LogWriter::spawn(
            "echo",
            Box::new(JsonLinesLog::create(&path).expect("open")),
            16,
            None,
        )
        .expect("spawn");
        writer.record(LogRecord::new("echo", b"hello", 200, b"hello", 1.5));
        writer.record(LogRecord::new("echo", &[0xff, 0x00], 400, b"bad", 0.1));
        writer.close();
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["request"], "hello");
        assert_eq!(lines[1]["request"], "/wA=");
        assert_eq!(lines[1]["request_encoding"], "base64");
        assert_eq!(lines[1]["status"], 400);
    }

    #[test]
    fn slow_sink_should_drop_and_count_instead_of_blocking() {
        let (release, gate) = std::sync::mpsc::channel();
        let metrics = Arc::new(Metrics::new());
        let writer = LogWriter::spawn("s", Box::new(Slow(gate)), 2, Some(Arc::clone(&metrics)))
            .expect("spawn");
        for _ in 0..10 {
            writer.record(LogRecord::new("s", b"x", 200, b"x", 0.0));
        }
        let dropped = metrics
            .sink_dropped
            .get_or_create(&Metrics::service("s"))
            .get();
        assert!(
            dropped >= 7,
            "dropped {dropped} of 10 with room for 2 + 1 in hand"
        );
        for _ in 0..10 {
            let _ = release.send(());
        }
        writer.close();
    }
}
