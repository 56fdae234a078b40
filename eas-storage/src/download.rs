//! Where fetched bytes go while they stream in: a temporary file (written by its own
//! thread), memory (one preallocated buffer), or both; the CRC-32C is computed inline as the
//! chunks pass and the MD5 (when an ETag stands for one) in a thread of its own, so hashing
//! and disk writes overlap the download instead of following it.
//!
//! Chunks are handed on in batches of about [`BATCH`] bytes without being copied (`Bytes` are
//! reference counted); at most [`DEPTH`] batches wait for each thread, so memory stays bounded
//! whatever the object's size. The caller verifies what [`Download::finish`] reports, then
//! persists the temporary file (dropping it instead removes it: nothing half-written remains;
//! a killed process's file is removed by the next mount, see
//! [`sweep_leftovers`](crate::local_fs::sweep_leftovers)).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::verify::Md5;
use crate::{Error, Result};

/// Bytes gathered before a batch goes to the writer and MD5 threads.
pub const BATCH: usize = 1 << 20;
/// Batches that may wait for each thread.
pub const DEPTH: usize = 16;

type Batch = Arc<[Bytes]>;

/// What arrived, once the stream ended.
#[derive(Debug)]
pub struct Finished {
    /// Bytes received.
    pub len: u64,
    /// Their CRC-32C.
    pub crc32c: u32,
    /// Their MD5 in lower-case hex, when asked for.
    pub md5: Option<String>,
    /// The temporary file holding them, when asked for (not yet renamed).
    pub file: Option<tempfile::NamedTempFile>,
    /// The bytes, when asked for.
    pub memory: Option<Bytes>,
}

/// A download in progress; see the [module docs](self).
pub struct Download {
    name: String,
    limit: u64,
    len: u64,
    crc: crc_fast::Digest,
    batch: Vec<Bytes>,
    batch_len: usize,
    memory: Option<Vec<u8>>,
    writer: Option<Worker<std::io::Result<tempfile::NamedTempFile>>>,
    md5: Option<Worker<String>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("name", &self.name)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

struct Worker<T> {
    batches: mpsc::Sender<Batch>,
    done: JoinHandle<T>,
}

impl<T: Send + 'static> Worker<T> {
    fn start(work: impl FnOnce(mpsc::Receiver<Batch>) -> T + Send + 'static) -> Self {
        let (batches, receiver) = mpsc::channel(DEPTH);
        Self {
            batches,
            done: tokio::task::spawn_blocking(move || work(receiver)),
        }
    }

    /// Hands a batch on; `false` when the thread stopped (it failed: see `finish`).
    async fn send(&self, batch: &Batch) -> bool {
        self.batches.send(Arc::clone(batch)).await.is_ok()
    }

    async fn finish(self, what: &str) -> Result<T> {
        drop(self.batches);
        self.done
            .await
            .map_err(|e| Error::io(what, std::io::Error::other(e)))
    }
}

impl Download {
    /// A download of at most `limit` bytes of `name` (a URI, for errors): into a temporary file
    /// in `dir` when given, into memory when `memory`, hashing MD5 too when `md5`.
    #[must_use]
    pub fn new(name: &str, limit: u64, dir: Option<&Path>, memory: bool, md5: bool) -> Self {
        let writer = dir.map(|dir| {
            let dir = dir.to_path_buf();
            Worker::start(move |batches| write_batches(&dir, batches))
        });
        let md5 = md5.then(|| Worker::start(hash_batches));
        let capacity = usize::try_from(limit).unwrap_or(0);
        Self {
            name: name.to_owned(),
            limit,
            len: 0,
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi),
            batch: Vec::new(),
            batch_len: 0,
            memory: memory.then(|| Vec::with_capacity(capacity)),
            writer,
            md5,
        }
    }

    /// Takes the next chunk.
    ///
    /// # Errors
    /// [`Error::Truncated`] when more than the limit arrives (the answer is refused before it
    /// is all read); [`Error::Io`] when the file cannot be written.
    pub async fn push(&mut self, chunk: Bytes) -> Result<()> {
        let got = self.len + chunk.len() as u64;
        if got > self.limit {
            return Err(Error::Truncated {
                uri: self.name.clone(),
                expected: self.limit,
                got,
            });
        }
        self.len = got;
        self.crc.update(&chunk);
        if let Some(memory) = &mut self.memory {
            memory.extend_from_slice(&chunk);
        }
        if self.writer.is_none() && self.md5.is_none() {
            return Ok(());
        }
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch: Batch = std::mem::take(&mut self.batch).into();
        self.batch_len = 0;
        let mut stopped = false;
        if let Some(writer) = &self.writer {
            stopped |= !writer.send(&batch).await;
        }
        if let Some(md5) = &self.md5 {
            stopped |= !md5.send(&batch).await;
        }
        if stopped {
            // A thread ended early: only the writer can, on an I/O error. Report it.
            if let Some(writer) = self.writer.take() {
                writer.finish(&self.name).await?.map_err(|e| self.io(e))?;
            }
            return Err(self.io(std::io::Error::other("the writer stopped")));
        }
        Ok(())
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(&self.name, e)
    }

    /// Ends the stream: waits for the threads and reports what arrived. Verifying it is the
    /// caller's job.
    ///
    /// # Errors
    /// [`Error::Io`] when the file could not be written.
    pub async fn finish(mut self) -> Result<Finished> {
        self.flush().await?;
        let file = match self.writer.take() {
            Some(writer) => Some(writer.finish(&self.name).await?.map_err(|e| self.io(e))?),
            None => None,
        };
        let md5 = match self.md5.take() {
            Some(md5) => Some(md5.finish(&self.name).await?),
            None => None,
        };
        Ok(Finished {
            len: self.len,
            crc32c: u32::try_from(self.crc.finalize()).unwrap_or(0),
            md5,
            file,
            memory: self.memory.take().map(Bytes::from),
        })
    }
}

fn write_batches(
    dir: &PathBuf,
    mut batches: mpsc::Receiver<Batch>,
) -> std::io::Result<tempfile::NamedTempFile> {
    std::fs::create_dir_all(dir)?;
    let mut file = crate::local_fs::partial_file(dir)?;
    while let Some(batch) = batches.blocking_recv() {
        for chunk in batch.iter() {
            file.write_all(chunk)?;
        }
    }
    Ok(file)
}

fn hash_batches(mut batches: mpsc::Receiver<Batch>) -> String {
    let mut md5 = Md5::default();
    while let Some(batch) = batches.blocking_recv() {
        for chunk in batch.iter() {
            md5.update(chunk);
        }
    }
    md5.hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::crc32c;

    #[tokio::test]
    async fn download_should_write_hash_and_keep_what_streams_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..3 * BATCH + 17).map(|i| (i % 251) as u8).collect();
        let mut download = Download::new("t", data.len() as u64, Some(dir.path()), true, true);
        for chunk in data.chunks(100_000) {
            download
                .push(Bytes::copy_from_slice(chunk))
                .await
                .expect("push");
        }
        let done = download.finish().await.expect("finish");
        assert_eq!(done.len, data.len() as u64);
        assert_eq!(done.crc32c, crc32c(&data));
        let mut md5 = Md5::default();
        md5.update(&data);
        assert_eq!(done.md5, Some(md5.hex()));
        assert_eq!(done.memory.as_deref(), Some(&data[..]));
        let file = done.file.expect("file");
        assert_eq!(std::fs::read(file.path()).expect("read"), data);
    }

    #[tokio::test]
    async fn download_should_refuse_more_than_its_limit() {
        let mut download = Download::new("t", 4, None, true, false);
        download
            .push(Bytes::from_static(b"abc"))
            .await
            .expect("fits");
        assert!(matches!(
            download.push(Bytes::from_static(b"de")).await,
            Err(Error::Truncated { got: 5, .. })
        ));
    }
}
