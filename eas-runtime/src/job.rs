//! The offline batch mode (`metadata.workload_type: "elasticjob"`): read inputs from a file or
//! a directory (a mounted prefix), push them through an async service's queues, write every
//! result to a JSON-lines file, and say how it went.
//!
//! Inputs: a file gives one request per non-empty line (key `line:N`, N from 1); a directory
//! gives one request per regular file, in name order (key: the file name relative to it).
//!
//! Output: one JSON object per line, `{"key", "requestId", "ok", "data" | "data_base64",
//! "message"}`, flushed as results arrive. The job resumes where it stopped: keys already in the
//! output are skipped, and a last line cut short by a crash is dropped before appending. A key
//! whose result arrives twice (a redelivery after a crash) is written once.
//!
//! ```no_run
//! # async fn run(service: &eas_runtime::service::Service) -> eas_runtime::Result<()> {
//! use eas_runtime::job::{ElasticJob, run};
//!
//! let summary = run(service, &ElasticJob::new("inputs.jsonl", "results.jsonl")).await?;
//! println!("{summary}");
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::json;

use crate::error::{Error, Result};
use crate::queue::{Item, NewItem, QueueError, Tags, WatchOptions};
use crate::service::Service;

/// The tag that carries an input's key through the queues.
pub const KEY_TAG: &str = "batchKey";

/// What a batch job reads and where it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ElasticJob {
    /// A file (one request per line) or a directory (one request per file).
    pub inputs: PathBuf,
    /// The JSON-lines result file (appended to; created when missing).
    pub output: PathBuf,
}

impl ElasticJob {
    /// A job from `inputs` to `output`.
    #[must_use]
    pub fn new(inputs: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        Self {
            inputs: inputs.into(),
            output: output.into(),
        }
    }
}

/// How a batch job went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobSummary {
    /// Inputs found.
    pub total: usize,
    /// Inputs whose result was already in the output (an earlier run).
    pub skipped: usize,
    /// Results written now that succeeded.
    pub succeeded: usize,
    /// Results written now that carry an error message.
    pub failed: usize,
    /// How long this run took.
    pub elapsed: Duration,
}

impl std::fmt::Display for JobSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} inputs: {} done before, {} succeeded, {} failed, in {:.1} s",
            self.total,
            self.skipped,
            self.succeeded,
            self.failed,
            self.elapsed.as_secs_f64()
        )
    }
}

fn job_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Job {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The inputs: (key, body) in order.
fn read_inputs(path: &Path) -> Result<Vec<(String, Bytes)>> {
    let meta = std::fs::metadata(path).map_err(|e| job_error(path, e))?;
    if meta.is_file() {
        let text = std::fs::read(path).map_err(|e| job_error(path, e))?;
        return Ok(text
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(n, line)| (n, line.strip_suffix(b"\r").unwrap_or(line)))
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(n, line)| (format!("line:{}", n + 1), Bytes::copy_from_slice(line)))
            .collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| job_error(path, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let body = std::fs::read(&file).map_err(|e| job_error(&file, e))?;
            let key = file
                .strip_prefix(path)
                .unwrap_or(&file)
                .to_string_lossy()
                .into_owned();
            Ok((key, Bytes::from(body)))
        })
        .collect()
}

/// Keys already in the output; drops a last line cut short by a crash.
fn read_done(path: &Path) -> Result<HashSet<String>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(job_error(path, e)),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| job_error(path, e))?;
        file.set_len(complete as u64)
            .map_err(|e| job_error(path, e))?;
    }
    text[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(n, line)| {
            let value: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| job_error(path, format!("line {}: {e}", n + 1)))?;
            value["key"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| job_error(path, format!("line {}: no \"key\"", n + 1)))
        })
        .collect()
}

fn result_line(key: &str, item: &Item) -> String {
    let mut line = json!({
        "key": key,
        "requestId": item.request_id(),
        "ok": item.message.is_empty(),
    });
    match std::str::from_utf8(&item.data) {
        Ok(text) => line["data"] = json!(text),
        Err(_) => line["data_base64"] = json!(BASE64.encode(&item.data)),
    }
    if !item.message.is_empty() {
        line["message"] = json!(item.message);
    }
    line.to_string()
}

/// Runs `job` through the async `service`: puts every input not done yet (waiting while the
/// input queue is full), writes each result as it arrives, returns when every input has one.
pub async fn run(service: &Service, job: &ElasticJob) -> Result<JobSummary> {
    let started = Instant::now();
    let queues = service.queues().ok_or_else(|| {
        job_error(
            &job.inputs,
            format!("service `{}` is not an async service", service.name()),
        )
    })?;
    let inputs = read_inputs(&job.inputs)?;
    let mut done = read_done(&job.output)?;
    let total = inputs.len();
    let skipped = inputs.iter().filter(|(k, _)| done.contains(k)).count();
    let mut todo: Vec<(String, Bytes)> = inputs
        .into_iter()
        .filter(|(k, _)| !done.contains(k))
        .collect();
    todo.reverse();
    let wanted: HashMap<String, ()> = todo.iter().map(|(k, _)| (k.clone(), ())).collect();
    let mut output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&job.output)
        .map_err(|e| job_error(&job.output, e))?;
    let queue_error = |e: QueueError| job_error(&job.inputs, e);
    let mut sink = queues
        .sink()
        .watch(WatchOptions::new(format!("batch-{}", service.name())).with_window(256))
        .await
        .map_err(queue_error)?;
    let (mut succeeded, mut failed) = (0, 0);
    let mut remaining = todo.len();
    while remaining > 0 {
        // Put as much as the input queue takes.
        while let Some((key, body)) = todo.pop() {
            let mut tags = Tags::new();
            tags.insert(KEY_TAG.to_owned(), key.clone());
            match queues
                .input()
                .put(NewItem::new(body.clone()).with_tags(tags))
                .await
            {
                Ok(_) => {}
                Err(QueueError::Full { .. }) => {
                    todo.push((key, body));
                    break;
                }
                Err(e) => return Err(queue_error(e)),
            }
        }
        let wait = if todo.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(50)
        };
        let Ok(items) = tokio::time::timeout(wait, sink.next(256)).await else {
            if service.is_dead() {
                return Err(job_error(
                    &job.inputs,
                    format!(
                        "service `{}` has no instance left to process {remaining} inputs",
                        service.name()
                    ),
                ));
            }
            continue;
        };
        let items = items.map_err(queue_error)?;
        let mut lines = String::new();
        let mut ours = Vec::new();
        for item in &items {
            let Some(key) = item.tags.get(KEY_TAG) else {
                continue; // not this job's
            };
            ours.push(item.index);
            if !wanted.contains_key(key) || !done.insert(key.clone()) {
                continue; // a duplicate, or done before
            }
            lines.push_str(&result_line(key, item));
            lines.push('\n');
            remaining -= 1;
            if item.message.is_empty() {
                succeeded += 1;
            } else {
                failed += 1;
            }
        }
        output
            .write_all(lines.as_bytes())
            .and_then(|()| output.flush())
            .map_err(|e| job_error(&job.output, e))?;
        queues.sink().commit(&ours).await.map_err(queue_error)?;
    }
    Ok(JobSummary {
        total,
        skipped,
        succeeded,
        failed,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_should_be_lines_of_a_file_or_files_of_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("in.txt");
        std::fs::write(&file, "a\n\n  \nb\r\n").expect("write");
        let inputs = read_inputs(&file).expect("reads");
        assert_eq!(
            inputs,
            vec![
                ("line:1".to_owned(), Bytes::from_static(b"a")),
                ("line:4".to_owned(), Bytes::from_static(b"b")),
            ]
        );
        let prefix = dir.path().join("prefix");
        std::fs::create_dir(&prefix).expect("mkdir");
        std::fs::write(prefix.join("2.bin"), [2_u8]).expect("write");
        std::fs::write(prefix.join("1.bin"), [1_u8]).expect("write");
        let keys: Vec<String> = read_inputs(&prefix)
            .expect("reads")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["1.bin", "2.bin"]);
        let missing = read_inputs(&dir.path().join("nope")).expect_err("missing");
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn a_line_cut_short_should_be_dropped_and_done_keys_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        std::fs::write(&out, "{\"key\": \"line:1\"}\n{\"key\": \"li").expect("write");
        let done = read_done(&out).expect("reads");
        assert_eq!(done, HashSet::from(["line:1".to_owned()]));
        assert_eq!(
            std::fs::read_to_string(&out).expect("read"),
            "{\"key\": \"line:1\"}\n"
        );
        std::fs::write(&out, "not json\n").expect("write");
        let error = read_done(&out).expect_err("bad");
        assert!(error.to_string().contains("line 1"), "{error}");
    }
}
