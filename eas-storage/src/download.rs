//! Where fetched bytes go while they stream in: a temporary file, memory (one buffer of the
//! object's size), or both, with the CRC-32C, the store's CRC-64 when it keeps one
//! ([`Download::with_crc64`]) and, when an ETag stands for one, the MD5 computed on the way,
//! so that hashing and disk writes overlap the download instead of following it.
//!
//! An object arrives as one stream ([`Download::push`]) or as several ranges at once
//! ([`Download::part`], one [`Part`] per ranged GET, each in its own task). Each part:
//!
//! - copies its chunks once, into its slice of the object's buffer when the bytes are kept
//!   in memory (the slices are carved from one allocation and joined again at the end
//!   without a copy), else into a reused staging buffer of about [`BATCH`] bytes (so the
//!   HTTP client's buffers are freed at once and reused);
//! - computes the CRC-32C (and the CRC-64, when asked) of its range (the ranges' CRCs are
//!   combined at the end);
//! - hands full batches, without copying them, to a writer thread that writes them at their
//!   offset in the temporary file (positional writes: ranges land where they belong, in any
//!   order) and passes them on, in object order, to a thread that computes the MD5. A range
//!   that arrives before the ones in front of it is hashed once those are in: from memory
//!   when the object is kept there anyway, else read back from the file (page cache), so
//!   nothing extra is held.
//!
//! At most [`DEPTH`] batches wait for each thread, so memory stays bounded whatever the
//! object's size (beyond the object itself when it is kept). The caller verifies what
//! [`Download::finish`] reports, then persists the temporary file (dropping it instead
//! removes it: nothing half-written remains; a killed process's file is removed by the next
//! mount, see [`sweep_leftovers`](crate::local_fs::sweep_leftovers)).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::verify::Md5;
use crate::{Error, Result};

/// Bytes gathered before a batch goes to the writer and MD5 threads.
pub const BATCH: usize = 1 << 20;
/// Batches that may wait for each thread.
pub const DEPTH: usize = 16;

/// Bytes handed to the threads; a part takes its staging buffers back once they are done.
type Batch = Arc<BytesMut>;

/// A batch and where it lies in the object.
struct Piece {
    offset: u64,
    bytes: Batch,
}

/// What the MD5 thread hashes, in object order.
enum Hashable {
    /// The temporary file, to read back ranges that were not kept in memory.
    File(std::fs::File),
    /// Bytes.
    Bytes(Batch),
    /// Bytes already written to the file.
    OnDisk { offset: u64, len: u64 },
}

/// What arrived, once the stream ended.
#[derive(Debug)]
pub struct Finished {
    /// Bytes received.
    pub len: u64,
    /// Their CRC-32C.
    pub crc32c: u32,
    /// Their MD5 in lower-case hex, when asked for.
    pub md5: Option<String>,
    /// Their CRC-64, when asked for ([`Download::with_crc64`]).
    pub crc64: Option<u64>,
    /// The temporary file holding them, when asked for (not yet renamed).
    pub file: Option<tempfile::NamedTempFile>,
    /// The bytes, when asked for.
    pub memory: Option<Bytes>,
}

/// A download in progress; see the [module docs](self).
pub struct Download {
    name: String,
    size: u64,
    /// The part of the object's buffer no [`Part`] has taken yet.
    memory: Option<BytesMut>,
    keep: bool,
    /// Where parts send their batches: the writer thread, else the MD5 thread.
    pieces: Option<mpsc::Sender<Piece>>,
    writer: Option<JoinHandle<std::io::Result<tempfile::NamedTempFile>>>,
    md5: Option<JoinHandle<std::io::Result<String>>>,
    /// The CRC-64 each part computes too, if any.
    crc64: Option<crc_fast::CrcAlgorithm>,
    /// The part [`push`](Self::push) feeds.
    stream: Option<Part>,
    /// Where the next part must start.
    next_part: u64,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// A download of at most `size` bytes of `name` (a URI, for errors): into a temporary file
    /// in `dir` when given, into memory when `memory`, hashing MD5 too when `md5`.
    #[must_use]
    pub fn new(name: &str, size: u64, dir: Option<&Path>, memory: bool, md5: bool) -> Self {
        let (pieces, writer, md5) = match dir {
            Some(dir) => {
                let (md5_sender, md5) = if md5 {
                    let (sender, receiver) = mpsc::channel(DEPTH);
                    let md5 = tokio::task::spawn_blocking(move || hash_in_order(receiver));
                    (Some(sender), Some(md5))
                } else {
                    (None, None)
                };
                let (sender, receiver) = mpsc::channel(DEPTH);
                let dir = dir.to_path_buf();
                let writer = tokio::task::spawn_blocking(move || {
                    write_pieces(&dir, receiver, md5_sender, memory)
                });
                (Some(sender), Some(writer), md5)
            }
            // No file to read back from: the MD5 thread orders the pieces itself.
            None if md5 => {
                let (sender, receiver) = mpsc::channel(DEPTH);
                let md5 = tokio::task::spawn_blocking(move || hash_pieces(receiver));
                (Some(sender), None, Some(md5))
            }
            None => (None, None, None),
        };
        let memory = memory.then(|| BytesMut::zeroed(usize::try_from(size).unwrap_or(0)));
        Self {
            name: name.to_owned(),
            size,
            keep: memory.is_some(),
            memory,
            pieces,
            writer,
            md5,
            crc64: None,
            stream: None,
            next_part: 0,
        }
    }

    /// The same, computing this CRC-64 of the bytes too (for a store's checksum): take it
    /// before the first part.
    #[must_use]
    pub fn with_crc64(mut self, algorithm: crc_fast::CrcAlgorithm) -> Self {
        self.crc64 = Some(algorithm);
        self
    }

    /// The writer of the bytes `range` of the object, to be fed by one ranged GET. Parts
    /// must be taken in order, each starting where the previous one ended.
    ///
    /// # Panics
    /// When `range` does not start where the previous part ended or ends past the size.
    pub fn part(&mut self, range: Range<u64>) -> Part {
        assert!(
            range.start == self.next_part && range.start <= range.end && range.end <= self.size,
            "parts in order, within the object"
        );
        self.next_part = range.end;
        let len = range.end - range.start;
        let memory = self.memory.as_mut().map(|memory| {
            let take = usize::try_from(len).unwrap_or(usize::MAX).min(memory.len());
            memory.split_to(take)
        });
        let name = if range.start == 0 && range.end == self.size {
            self.name.clone()
        } else {
            format!("{} (bytes {}-{})", self.name, range.start, range.end)
        };
        Part {
            name,
            offset: range.start,
            len,
            received: 0,
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi),
            crc64: self.crc64.map(crc_fast::Digest::new),
            memory,
            unsent: 0,
            sent: 0,
            staging: None,
            segments: Vec::new(),
            returned: VecDeque::new(),
            pieces: self.pieces.clone(),
        }
    }

    /// Takes the next chunk of a download fed as one stream.
    ///
    /// # Errors
    /// [`Error::Truncated`] when more than the size arrives (the answer is refused before it
    /// is all read); [`Error::Io`] when the file cannot be written.
    pub async fn push(&mut self, chunk: Bytes) -> Result<()> {
        if self.stream.is_none() {
            self.stream = Some(self.part(0..self.size));
        }
        match &mut self.stream {
            Some(part) => part.push(chunk).await,
            None => Ok(()),
        }
    }

    /// Ends a download fed as one stream ([`push`](Self::push)): see
    /// [`finish_parts`](Self::finish_parts).
    ///
    /// # Errors
    /// [`Error::Io`] when the file could not be written.
    pub async fn finish(mut self) -> Result<Finished> {
        let part = match self.stream.take() {
            Some(part) => part,
            None => self.part(0..self.size),
        };
        let done = part.finish().await?;
        self.finish_parts(vec![done]).await
    }

    /// Ends the download, once its parts are done: waits for the threads and reports what
    /// arrived (a stream may have brought less than the size; parts brought all of theirs).
    /// Verifying it is the caller's job.
    ///
    /// # Errors
    /// [`Error::Io`] when the file could not be written or read back.
    pub async fn finish_parts(mut self, mut parts: Vec<PartDone>) -> Result<Finished> {
        drop(self.pieces.take());
        let name = self.name.clone();
        let join = |e: tokio::task::JoinError| Error::io(&name, std::io::Error::other(e));
        let file = match self.writer.take() {
            Some(writer) => Some(writer.await.map_err(join)?.map_err(|e| self.io(e))?),
            None => None,
        };
        let md5 = match self.md5.take() {
            Some(md5) => Some(md5.await.map_err(join)?.map_err(|e| self.io(e))?),
            None => None,
        };
        parts.sort_by_key(|p| p.offset);
        let mut len = 0;
        let mut crc: Option<crc_fast::Digest> = None;
        let mut crc64: Option<crc_fast::Digest> = None;
        let mut memory = self.keep.then(BytesMut::new);
        for part in parts {
            len += part.received;
            match &mut crc {
                Some(crc) => crc.combine(&part.crc),
                None => crc = Some(part.crc),
            }
            if let Some(part) = part.crc64 {
                match &mut crc64 {
                    Some(crc64) => crc64.combine(&part),
                    None => crc64 = Some(part),
                }
            }
            if let Some(memory) = &mut memory {
                // The threads are done: every segment is ours again, and the segments of one
                // buffer join without a copy.
                for segment in part.segments {
                    match Arc::try_unwrap(segment) {
                        Ok(segment) => memory.unsplit(segment),
                        Err(shared) => memory.extend_from_slice(&shared),
                    }
                }
                if let Some(rest) = part.memory {
                    memory.unsplit(rest);
                }
            }
        }
        let memory = memory.map(|mut memory| {
            memory.truncate(usize::try_from(len).unwrap_or(usize::MAX));
            memory.freeze()
        });
        let crc32c = crc.map_or(0, |crc| crc.finalize());
        Ok(Finished {
            len,
            crc32c: u32::try_from(crc32c).unwrap_or(0),
            md5,
            crc64: crc64.map(|crc| crc.finalize()),
            file,
            memory,
        })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(&self.name, e)
    }
}

/// One range of a [`Download`], fed by one ranged GET (in a task of its own); see the
/// [module docs](self).
pub struct Part {
    name: String,
    offset: u64,
    len: u64,
    received: u64,
    crc: crc_fast::Digest,
    crc64: Option<crc_fast::Digest>,
    /// This range's slice of the object's buffer, from the first byte not yet handed on.
    memory: Option<BytesMut>,
    /// Bytes at the front of `memory` not yet handed on.
    unsent: usize,
    /// Bytes handed on so far.
    sent: u64,
    /// Where chunks gather when they are not kept in memory.
    staging: Option<BytesMut>,
    /// The slices of `memory` handed on, in order.
    segments: Vec<Batch>,
    /// Staging buffers handed on, to take back once the threads are done with them.
    returned: VecDeque<Batch>,
    pieces: Option<mpsc::Sender<Piece>>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// A part whose bytes all arrived (or, for a stream, all that came).
#[derive(Debug)]
pub struct PartDone {
    offset: u64,
    received: u64,
    crc: crc_fast::Digest,
    crc64: Option<crc_fast::Digest>,
    segments: Vec<Batch>,
    memory: Option<BytesMut>,
}

impl PartDone {
    /// Bytes received.
    #[must_use]
    pub const fn len(&self) -> u64 {
        self.received
    }
}

impl Part {
    /// Takes the next chunk of the range.
    ///
    /// # Errors
    /// [`Error::Truncated`] when more than the range arrives (refused before it is all
    /// read); [`Error::Io`] when the file cannot be written.
    pub async fn push(&mut self, chunk: Bytes) -> Result<()> {
        let got = self.received + chunk.len() as u64;
        if got > self.len {
            return Err(Error::Truncated {
                uri: self.name.clone(),
                expected: self.len,
                got,
            });
        }
        self.crc.update(&chunk);
        if let Some(crc64) = &mut self.crc64 {
            crc64.update(&chunk);
        }
        let at = usize::try_from(self.received - self.sent).unwrap_or(usize::MAX);
        self.received = got;
        if let Some(memory) = &mut self.memory {
            memory[at..at + chunk.len()].copy_from_slice(&chunk);
            self.unsent += chunk.len();
            if self.pieces.is_some() && self.unsent >= BATCH {
                self.flush().await?;
            }
            return Ok(());
        }
        if self.pieces.is_none() {
            return Ok(());
        }
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let staging = match &mut self.staging {
                Some(staging) => staging,
                None => self.staging.insert(take_back(&mut self.returned)),
            };
            let n = rest.len().min(BATCH - staging.len());
            staging.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if staging.len() >= BATCH {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Hands the bytes gathered so far on to the threads.
    async fn flush(&mut self) -> Result<()> {
        let Some(pieces) = &self.pieces else {
            return Ok(());
        };
        let batch = if let Some(memory) = &mut self.memory {
            if self.unsent == 0 {
                return Ok(());
            }
            let segment = Arc::new(memory.split_to(self.unsent));
            self.unsent = 0;
            self.segments.push(Arc::clone(&segment));
            segment
        } else {
            match self.staging.take() {
                Some(staging) if !staging.is_empty() => {
                    let batch = Arc::new(staging);
                    self.returned.push_back(Arc::clone(&batch));
                    if self.returned.len() > 2 * DEPTH {
                        self.returned.pop_front();
                    }
                    batch
                }
                _ => return Ok(()),
            }
        };
        let piece = Piece {
            offset: self.offset + self.sent,
            bytes: batch,
        };
        self.sent += piece.bytes.len() as u64;
        if pieces.send(piece).await.is_err() {
            // A thread ended early: only on an I/O error, which `finish_parts` reports.
            return Err(Error::io(
                &self.name,
                std::io::Error::other("the writer stopped"),
            ));
        }
        Ok(())
    }

    /// Ends the range: hands the rest on and reports what arrived.
    ///
    /// # Errors
    /// [`Error::Io`] when the writer stopped.
    pub async fn finish(mut self) -> Result<PartDone> {
        self.flush().await?;
        Ok(PartDone {
            offset: self.offset,
            received: self.received,
            crc: self.crc,
            crc64: self.crc64,
            segments: self.segments,
            memory: self.memory,
        })
    }

    /// Ends a range that must have come whole.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer bytes than the range arrived; as [`finish`](Self::finish).
    pub async fn finish_whole(self) -> Result<PartDone> {
        let (name, expected) = (self.name.clone(), self.len);
        let done = self.finish().await?;
        crate::verify::check_size(&name, expected, done.received)?;
        Ok(done)
    }
}

/// A staging buffer: the oldest one handed on, when the threads are done with it, else a
/// new one.
fn take_back(returned: &mut VecDeque<Batch>) -> BytesMut {
    if returned.front().is_some_and(|b| Arc::strong_count(b) == 1)
        && let Some(batch) = returned.pop_front()
        && let Ok(mut staging) = Arc::try_unwrap(batch)
    {
        staging.clear();
        return staging;
    }
    BytesMut::with_capacity(BATCH)
}

/// Puts pieces (which arrive out of order when ranges come at once) back in object order.
struct Sequencer {
    next: u64,
    /// Hold early pieces in memory (they are part of the kept object anyway, or there is no
    /// file to read them back from) rather than reading them back from the file.
    hold: bool,
    waiting: BTreeMap<u64, Waiting>,
}

enum Waiting {
    Held(Batch),
    OnDisk(u64),
}

impl Sequencer {
    const fn new(hold: bool) -> Self {
        Self {
            next: 0,
            hold,
            waiting: BTreeMap::new(),
        }
    }

    /// Takes a piece; hands on, in order, what can be hashed now. `false` when `out` did.
    fn push(&mut self, piece: Piece, out: &mut impl FnMut(Hashable) -> bool) -> bool {
        let len = piece.bytes.len() as u64;
        if piece.offset != self.next {
            let waiting = if self.hold {
                Waiting::Held(piece.bytes)
            } else {
                Waiting::OnDisk(len)
            };
            self.waiting.insert(piece.offset, waiting);
            return true;
        }
        self.next += len;
        if !out(Hashable::Bytes(piece.bytes)) {
            return false;
        }
        while let Some(waiting) = self.waiting.remove(&self.next) {
            let offset = self.next;
            let next = match waiting {
                Waiting::Held(bytes) => {
                    self.next += bytes.len() as u64;
                    Hashable::Bytes(bytes)
                }
                Waiting::OnDisk(len) => {
                    self.next += len;
                    Hashable::OnDisk { offset, len }
                }
            };
            if !out(next) {
                return false;
            }
        }
        true
    }
}

fn write_pieces(
    dir: &PathBuf,
    mut pieces: mpsc::Receiver<Piece>,
    md5: Option<mpsc::Sender<Hashable>>,
    kept: bool,
) -> std::io::Result<tempfile::NamedTempFile> {
    std::fs::create_dir_all(dir)?;
    let file = crate::local_fs::partial_file(dir)?;
    let mut md5 = md5;
    if let Some(sender) = &md5
        && sender
            .blocking_send(Hashable::File(file.as_file().try_clone()?))
            .is_err()
    {
        md5 = None;
    }
    let mut sequencer = Sequencer::new(kept);
    while let Some(piece) = pieces.blocking_recv() {
        file.as_file().write_all_at(&piece.bytes, piece.offset)?;
        if let Some(sender) = &md5
            && !sequencer.push(piece, &mut |h| sender.blocking_send(h).is_ok())
        {
            md5 = None; // the MD5 thread failed: `finish_parts` reports why
        }
    }
    Ok(file)
}

/// The MD5 of what the writer hands on, in order.
fn hash_in_order(mut input: mpsc::Receiver<Hashable>) -> std::io::Result<String> {
    let mut md5 = Md5::default();
    let mut file = None;
    let mut buffer = Vec::new();
    while let Some(next) = input.blocking_recv() {
        match next {
            Hashable::File(f) => file = Some(f),
            Hashable::Bytes(bytes) => md5.update(&bytes),
            Hashable::OnDisk { mut offset, len } => {
                let file = file
                    .as_ref()
                    .ok_or_else(|| std::io::Error::other("no file to read back"))?;
                let end = offset + len;
                buffer.resize(BATCH, 0);
                while offset < end {
                    let n = usize::try_from(end - offset).map_or(BATCH, |n| n.min(BATCH));
                    file.read_exact_at(&mut buffer[..n], offset)?;
                    md5.update(&buffer[..n]);
                    offset += n as u64;
                }
            }
        }
    }
    Ok(md5.hex())
}

/// The MD5 of pieces handed on without a file: ordered here, early ones held.
fn hash_pieces(mut pieces: mpsc::Receiver<Piece>) -> std::io::Result<String> {
    let mut md5 = Md5::default();
    let mut sequencer = Sequencer::new(true);
    while let Some(piece) = pieces.blocking_recv() {
        sequencer.push(piece, &mut |h| {
            if let Hashable::Bytes(bytes) = h {
                md5.update(&bytes);
            }
            true
        });
    }
    Ok(md5.hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::crc32c;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn md5_of(data: &[u8]) -> String {
        let mut md5 = Md5::default();
        md5.update(data);
        md5.hex()
    }

    #[tokio::test]
    async fn download_should_write_hash_and_keep_what_streams_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = data(3 * BATCH + 17);
        for keep in [true, false] {
            let mut download = Download::new("t", data.len() as u64, Some(dir.path()), keep, true);
            for chunk in data.chunks(100_000) {
                download
                    .push(Bytes::copy_from_slice(chunk))
                    .await
                    .expect("push");
            }
            let done = download.finish().await.expect("finish");
            assert_eq!(done.len, data.len() as u64);
            assert_eq!(done.crc32c, crc32c(&data));
            assert_eq!(done.md5, Some(md5_of(&data)));
            assert_eq!(done.memory.as_deref(), keep.then_some(&data[..]));
            let file = done.file.expect("file");
            assert_eq!(std::fs::read(file.path()).expect("read"), data);
        }
    }

    #[tokio::test]
    async fn ranges_arriving_out_of_order_should_land_in_place_and_hash_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = data(5 * BATCH + 4321);
        let part = 2 * BATCH as u64 + 77;
        let size = data.len() as u64;
        for (keep, in_dir) in [(true, true), (false, true), (true, false)] {
            let dir = in_dir.then_some(dir.path());
            let mut download = Download::new("t", size, dir, keep, true)
                .with_crc64(crc_fast::CrcAlgorithm::Crc64Nvme);
            let mut parts: Vec<(Range<u64>, Part)> = (0..size.div_ceil(part))
                .map(|i| {
                    let range = i * part..((i + 1) * part).min(size);
                    (range.clone(), download.part(range))
                })
                .collect();
            // The last range first, then the others: the MD5 must wait for the front.
            parts.reverse();
            let mut done = Vec::new();
            for (range, mut part) in parts {
                let bytes = &data[range.start as usize..range.end as usize];
                for chunk in bytes.chunks(70_000) {
                    part.push(Bytes::copy_from_slice(chunk))
                        .await
                        .expect("push");
                }
                done.push(part.finish_whole().await.expect("whole"));
            }
            let done = download.finish_parts(done).await.expect("finish");
            assert_eq!(done.len, size);
            assert_eq!(done.crc32c, crc32c(&data), "CRCs of the ranges combined");
            assert_eq!(
                done.crc64,
                Some(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &data)),
                "CRC-64s of the ranges combined"
            );
            assert_eq!(done.md5, Some(md5_of(&data)), "keep {keep}, dir {in_dir}");
            assert_eq!(done.memory.as_deref(), keep.then_some(&data[..]));
            if let Some(file) = done.file {
                assert_eq!(std::fs::read(file.path()).expect("read"), data);
            }
        }
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

    #[tokio::test]
    async fn a_range_should_refuse_more_or_fewer_bytes_than_it_asked_for() {
        let mut download = Download::new("t", 10, None, true, false);
        let mut first = download.part(0..4);
        let mut second = download.part(4..10);
        assert!(matches!(
            first.push(Bytes::from_static(b"abcde")).await,
            Err(Error::Truncated {
                expected: 4,
                got: 5,
                ..
            })
        ));
        second.push(Bytes::from_static(b"efg")).await.expect("fits");
        assert!(matches!(
            second.finish_whole().await,
            Err(Error::Truncated {
                expected: 6,
                got: 3,
                ..
            })
        ));
    }
}
