//! Progress of a whole mount, reported through an [`eas_core::storage::Progress`] callback.
//!
//! A mount reports as one transfer: `bytes_done` and `bytes_total` count every byte the mount
//! fetches, `path` names the file that advanced last, `elapsed` runs from the start of the
//! mount, so [`TransferProgress::rate_bytes_per_sec`] and [`TransferProgress::eta`] are the
//! mount's. Reports come at most every 100 ms, plus one when each file completes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eas_core::storage::{Progress, TransferProgress};

const INTERVAL: Duration = Duration::from_millis(100);

/// Counts bytes of a mount and forwards throttled reports to a callback.
pub struct Meter<'a> {
    receiver: Option<&'a dyn Progress>,
    total: Option<u64>,
    done: AtomicU64,
    start: Instant,
    last: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Meter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("total", &self.total)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a> Meter<'a> {
    /// A meter for a transfer of `total` bytes (when known).
    #[must_use]
    pub fn new(receiver: Option<&'a dyn Progress>, total: Option<u64>) -> Self {
        Self {
            receiver,
            total,
            done: AtomicU64::new(0),
            start: Instant::now(),
            last: Mutex::new(None),
        }
    }

    /// The callback, to start another meter on it.
    #[must_use]
    pub fn receiver(&self) -> Option<&'a dyn Progress> {
        self.receiver
    }

    /// Bytes counted so far.
    #[must_use]
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more of `path`; reports when the last report is old enough, or always
    /// when `file_done`.
    pub fn advance(&self, path: &str, bytes: u64, file_done: bool) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let Some(receiver) = self.receiver else {
            return;
        };
        let now = Instant::now();
        {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !file_done && last.is_some_and(|t| now.duration_since(t) < INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        receiver.on_progress(&TransferProgress {
            path: path.to_owned(),
            bytes_done: done,
            bytes_total: self.total.map(|t| t.max(done)),
            elapsed: now.duration_since(self.start),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_should_report_cumulative_bytes_and_every_completed_file() {
        let seen = Mutex::new(Vec::new());
        let receiver = |p: &TransferProgress| {
            seen.lock()
                .expect("not poisoned")
                .push((p.path.clone(), p.bytes_done, p.bytes_total));
        };
        let meter = Meter::new(Some(&receiver), Some(10));
        meter.advance("a", 4, false);
        meter.advance("a", 1, false); // throttled
        meter.advance("a", 1, true);
        meter.advance("b", 4, true);
        assert_eq!(meter.done(), 10);
        assert_eq!(
            seen.into_inner().expect("not poisoned"),
            vec![
                ("a".to_owned(), 4, Some(10)),
                ("a".to_owned(), 6, Some(10)),
                ("b".to_owned(), 10, Some(10))
            ]
        );
    }
}
