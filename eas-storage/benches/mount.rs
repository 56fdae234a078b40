//! Mount bench (figures, not pass/fail), for one large model file (1 GiB by default;
//! `EAS_BENCH_MIB` changes it):
//!
//! - cold eager mount from moto (S3-compatible, loopback) vs a plain read of the same bytes
//!   from local disk (goal: cold >= 0.7x the local rate);
//! - peer-cache hit (another instance's memory, over HTTP) vs cold mount (goal: >= 6x faster).
//!
//! Each figure is the median of `EAS_BENCH_RUNS` runs (default 3). `EAS_BENCH_CONCURRENCY`
//! (8), `EAS_BENCH_PART_MIB` (16) and `EAS_BENCH_MD5` (1: check MD5 ETags) set the transfer
//! options. Needs `EAS_PYTHON` (moto
//! lives next to it). Run: `cargo bench -p eas-storage --bench mount`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::{BucketMount, MemoryCache, TransferOptions};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn rate(bytes: usize, time: Duration) -> String {
    format!("{:8.1} MB/s", bytes as f64 / time.as_secs_f64() / 1e6)
}

#[tokio::main]
async fn main() {
    let mib = env_usize("EAS_BENCH_MIB", 1024);
    let runs = env_usize("EAS_BENCH_RUNS", 3).max(1);
    let size = mib << 20;
    let Some(moto) = support::Moto::start("bench mount").await else {
        return;
    };
    moto.create_bucket("models").await;
    let content = support::bytes(size, 7);
    moto.put("models", &[("big/model.bin", &content)]).await;
    let work = tempfile::tempdir_in(
        std::env::var("EAS_BENCH_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into()),
    )
    .unwrap();

    // Baseline: the same bytes read from a local file.
    let local_file = work.path().join("local.bin");
    std::fs::write(&local_file, &content).unwrap();
    drop(content);
    let local = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                let bytes = std::fs::read(&local_file).unwrap();
                assert_eq!(bytes.len(), size);
                start.elapsed()
            })
            .collect(),
    );

    // For reference: one plain GET of the whole object, what moto serves by itself.
    let raw = {
        use object_store::ObjectStoreExt as _;
        let store = moto.store("models");
        let mut samples = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let bytes = store
                .get(&"big/model.bin".into())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(bytes.len(), size);
            samples.push(start.elapsed());
        }
        median(samples)
    };

    let transfer = TransferOptions::default()
        .with_concurrency(env_usize("EAS_BENCH_CONCURRENCY", 8))
        .with_part_size(env_usize("EAS_BENCH_PART_MIB", 16) as u64 * (1 << 20))
        .with_verify_md5(env_usize("EAS_BENCH_MD5", 1) == 1);
    let mount = |dir: std::path::PathBuf, cache: Option<Arc<MemoryCache>>| {
        let mut builder = BucketMount::builder(moto.location("models", "big/"), dir)
            .credentials(support::credentials())
            .options(transfer);
        if let Some(cache) = cache {
            builder = builder.cache(cache);
        }
        builder.build().unwrap()
    };

    // Cold: a fresh directory each run, straight from the store.
    let mut cold = Vec::new();
    for run in 0..runs {
        let target = work.path().join(format!("cold-{run}"));
        let start = Instant::now();
        let report = mount(target.clone(), None)
            .mount(MountMode::Eager, None)
            .await
            .unwrap();
        cold.push(start.elapsed());
        assert_eq!(report.fetched_bytes, size as u64);
        std::fs::remove_dir_all(target).unwrap();
    }
    let cold = median(cold);

    // Peer hit: the first instance holds the file in memory; others fetch it over HTTP.
    let first_cache = Arc::new(MemoryCache::new(size as u64 + (1 << 20)));
    let server = support::serve(eas_storage::peer::router(Arc::clone(&first_cache))).await;
    mount(work.path().join("first"), Some(Arc::clone(&first_cache)))
        .mount(MountMode::Eager, None)
        .await
        .unwrap();
    let mut peer = Vec::new();
    for run in 0..runs {
        let target = work.path().join(format!("peer-{run}"));
        let cache =
            Arc::new(MemoryCache::new(size as u64 + (1 << 20)).with_peers([server.base.clone()]));
        let start = Instant::now();
        mount(target.clone(), Some(Arc::clone(&cache)))
            .mount(MountMode::Eager, None)
            .await
            .unwrap();
        peer.push(start.elapsed());
        assert_eq!(cache.stats().peer_hits, 1, "served by the peer");
        std::fs::remove_dir_all(target).unwrap();
    }
    let peer = median(peer);

    println!(
        "mount bench: {mib} MiB file, median of {runs} runs, concurrency {}, parts of {} MiB, MD5 check {}",
        transfer.concurrency,
        transfer.part_size >> 20,
        transfer.verify_md5
    );
    let line = |name: &str, time: Duration| {
        println!(
            "  {name:<18}{:>9.3} s  {}",
            time.as_secs_f64(),
            rate(size, time)
        );
    };
    line("local disk read", local);
    line("one plain GET", raw);
    line("cold mount (moto)", cold);
    line("peer-cache hit", peer);
    println!(
        "  cold / local rate: {:.2}x (goal >= 0.7x); cold / plain GET rate: {:.2}x",
        local.as_secs_f64() / cold.as_secs_f64(),
        raw.as_secs_f64() / cold.as_secs_f64()
    );
    println!(
        "  peer hit vs cold:  {:.2}x faster (goal >= 6x)",
        cold.as_secs_f64() / peer.as_secs_f64()
    );
}
