//! Gathers queued requests into batches: up to `max_batch_size`, waiting at most
//! `max_batch_timeout` after the first. While every worker is busy the batcher waits to hand
//! its batch over, so requests pile up in the queue and the next batch fills at once.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::Job;

/// Runs until the queue is closed and drained, or the workers are gone.
pub(super) async fn run(
    mut queue: mpsc::UnboundedReceiver<Job>,
    batches: async_channel::Sender<Vec<Job>>,
    max_batch_size: usize,
    max_batch_timeout: Duration,
) {
    while let Some(first) = queue.recv().await {
        let batch = gather(first, &mut queue, max_batch_size, max_batch_timeout).await;
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}

/// One batch starting with `first`.
async fn gather(
    first: Job,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    max_batch_size: usize,
    max_batch_timeout: Duration,
) -> Vec<Job> {
    let mut batch = Vec::with_capacity(max_batch_size);
    batch.push(first);
    let deadline = crate::limit::deadline(max_batch_timeout);
    while batch.len() < max_batch_size {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                if max_batch_timeout.is_zero() {
                    break;
                }
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use eas_core::processor::Request;
    use tokio::sync::oneshot;

    use super::*;

    fn job(body: &'static str) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            request: Request::new(body),
            enqueued_at: std::time::Instant::now(),
            reply,
        }
    }

    async fn batches_for(
        arrivals: Vec<(u64, &'static str)>,
        max: usize,
        timeout_ms: u64,
    ) -> Vec<Vec<String>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (btx, brx) = async_channel::unbounded();
        let batcher = tokio::spawn(run(rx, btx, max, Duration::from_millis(timeout_ms)));
        for (at_ms, body) in arrivals {
            tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(at_ms))
                .await;
            tx.send(job(body)).ok();
        }
        drop(tx);
        batcher.await.ok();
        let mut out = Vec::new();
        while let Ok(batch) = brx.try_recv() {
            out.push(
                batch
                    .iter()
                    .map(|j| String::from_utf8_lossy(&j.request.body).into_owned())
                    .collect(),
            );
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn batch_should_close_when_full() {
        let arrivals = (0..5).map(|_| (0, "x")).collect();
        let batches = batches_for(arrivals, 2, 1000).await;
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn batch_should_close_at_the_timeout_after_its_first_request() {
        // a at 0, b at 10 ms (joins), c at 60 ms from start (after the 50 ms timeout).
        let arrivals = vec![(0, "a"), (10, "b"), (50, "c")];
        let batches = batches_for(arrivals, 8, 50).await;
        assert_eq!(batches, vec![vec!["a", "b"], vec!["c"]]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_batching_every_request_should_be_its_own_batch() {
        let arrivals = vec![(0, "a"), (0, "b"), (0, "c")];
        let batches = batches_for(arrivals, 1, 0).await;
        assert_eq!(batches, vec![vec!["a"], vec!["b"], vec!["c"]]);
    }
}
