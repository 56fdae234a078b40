//! Queue service figures (not pass/fail): put+consume throughput of the in-memory backend and,
//! with `--features redis` and `redis-server` on the PATH, of the Redis Streams backend on
//! loopback; each beside a baseline measured in the same run (a tokio mpsc channel carrying the
//! same items). Then the end-to-end latency of an async echo service: put into its input queue,
//! through a consumer, the instance batcher and the processor, out of its sink (p50/p99).
//!
//! `cargo bench -p eas-runtime --bench queue [--features redis]`; `QUEUE_BENCH_ITEMS` sets the
//! in-memory item count (default 200000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eas_core::spec::ServiceSpec;
use eas_runtime::platform::Platform;
use eas_runtime::queue::{DynQueue, MemoryQueue, NewItem, WatchOptions};

const RUNS: usize = 5;
const PAYLOAD: usize = 64;
const PRODUCERS: usize = 8;
const WINDOW: usize = 1024;
const BATCH: usize = 256;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Items per second through `queue`: `PRODUCERS` tasks put `items` while one consumer takes
/// batches and commits them.
async fn put_consume(queue: DynQueue, items: usize) -> f64 {
    let payload = Bytes::from(vec![7_u8; PAYLOAD]);
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let queue = Arc::clone(&queue);
        let payload = payload.clone();
        let share = items / PRODUCERS + usize::from(p < items % PRODUCERS);
        producers.push(tokio::spawn(async move {
            for _ in 0..share {
                queue.put(NewItem::new(payload.clone())).await.expect("put");
            }
        }));
    }
    let mut watch = queue
        .watch(WatchOptions::new("bench").with_window(WINDOW))
        .await
        .expect("watch");
    let mut done = 0;
    while done < items {
        let batch = watch.next(BATCH).await.expect("next");
        let indexes: Vec<u64> = batch.iter().map(|i| i.index).collect();
        queue.commit(&indexes).await.expect("commit");
        done += batch.len();
    }
    for producer in producers {
        producer.await.expect("producer");
    }
    items as f64 / started.elapsed().as_secs_f64()
}

/// The same shape through a bounded tokio channel: the floor of task hand-off costs.
async fn channel_baseline(items: usize) -> f64 {
    let payload = Bytes::from(vec![7_u8; PAYLOAD]);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WINDOW);
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        let payload = payload.clone();
        let share = items / PRODUCERS + usize::from(p < items % PRODUCERS);
        producers.push(tokio::spawn(async move {
            for _ in 0..share {
                tx.send(payload.clone()).await.expect("send");
            }
        }));
    }
    drop(tx);
    let mut buffer = Vec::with_capacity(BATCH);
    let mut done = 0;
    while done < items {
        done += rx.recv_many(&mut buffer, BATCH).await;
        buffer.clear();
    }
    for producer in producers {
        producer.await.expect("producer");
    }
    items as f64 / started.elapsed().as_secs_f64()
}

async fn throughput(label: &str, items: usize, open: impl Fn(usize) -> DynQueue) {
    let mut queue_rates = Vec::new();
    let mut base_rates = Vec::new();
    for run in 0..RUNS {
        // Alternate which goes first, so that neither always gets the warmer machine.
        if run % 2 == 0 {
            queue_rates.push(put_consume(open(run), items).await);
            base_rates.push(channel_baseline(items).await);
        } else {
            base_rates.push(channel_baseline(items).await);
            queue_rates.push(put_consume(open(run), items).await);
        }
    }
    let (q, b) = (median(queue_rates), median(base_rates));
    println!(
        "{label:<28} put+consume {q:>10.0} items/s   channel baseline {b:>10.0} items/s   ratio {:.3}   ({items} items x {RUNS} runs, {PRODUCERS} producers, {PAYLOAD} B, median)",
        q / b
    );
}

/// p50 and p99 of put -> sink through an async echo service, `outstanding` items in flight.
async fn end_to_end(items: usize, outstanding: usize, batching: bool) {
    let spec = ServiceSpec::from_json_value(serde_json::json!({
        "metadata": {"name": "echo", "instance": 1, "type": "Async",
                     "rpc": {"batching": batching, "max_batch_size": 16, "max_batch_timeout": 1,
                             "max_queue_size": 100000, "worker_threads": 2}},
        "processor": "echo", "model_path": ".", "token": "bench",
    }))
    .expect("spec");
    let server = Platform::builder()
        .service(spec)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("server");
    assert!(server.wait_ready(Duration::from_secs(10)).await);
    let service = Arc::clone(&server.services()["echo"]);
    let queues = service.queues().expect("async");
    let (input, sink) = (Arc::clone(queues.input()), Arc::clone(queues.sink()));
    let mut watch = sink
        .watch(
            WatchOptions::new("bench")
                .with_window(WINDOW)
                .with_auto_commit(true),
        )
        .await
        .expect("watch");
    let mut sent_at = std::collections::HashMap::new();
    let mut latencies = Vec::with_capacity(items);
    let started = Instant::now();
    let mut put = 0;
    while latencies.len() < items {
        while put < items && put - latencies.len() < outstanding {
            let at = Instant::now();
            let id = input
                .put(NewItem::new(Bytes::from_static(b"{\"x\": 1}")))
                .await
                .expect("put")
                .request_id;
            sent_at.insert(id, at);
            put += 1;
        }
        for item in watch.next(BATCH).await.expect("next") {
            if let Some(at) = item.request_id().and_then(|id| sent_at.remove(id)) {
                latencies.push(at.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let rate = items as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "end-to-end echo (memory)     p50 {:.3} ms   p99 {:.3} ms   {rate:>7.0} items/s   ({items} items, {outstanding} in flight, {})",
        p(0.5),
        p(0.99),
        if batching {
            "batches <= 16, 1 ms timeout"
        } else {
            "no batching"
        }
    );
    server.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let items: usize = std::env::var("QUEUE_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    println!(
        "queue bench on {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    runtime.block_on(async {
        throughput("memory", items, |_| {
            Arc::new(MemoryQueue::new("bench", None)) as DynQueue
        })
        .await;
        #[cfg(feature = "redis")]
        redis_throughput().await;
        end_to_end(5_000, 1, false).await;
        end_to_end(5_000, 1, true).await;
        end_to_end(20_000, 64, false).await;
        end_to_end(20_000, 64, true).await;
    });
}

#[cfg(feature = "redis")]
async fn redis_throughput() {
    use std::process::{Command, Stdio};
    let Ok(port) = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
    else {
        println!("redis: SKIPPED (no free port)");
        return;
    };
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        println!("redis: SKIPPED (no redis-server on the PATH; .ci/setup/40-redis.sh installs it)");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let queues =
        eas_runtime::queue::RedisQueues::new(&format!("redis://127.0.0.1:{port}/")).expect("url");
    use eas_runtime::queue::QueueFactory as _;
    throughput("redis (loopback)", 20_000, |run| {
        queues.open(&format!("bench-{run}"), None).expect("open")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}
